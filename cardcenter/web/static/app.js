// Shared by every page: CSRF-carrying fetch, and selects that submit their form.
"use strict";

const cc = {
  csrfToken() {
    const meta = document.querySelector('meta[name="csrf-token"]');
    return meta ? meta.content : "";
  },

  // POST JSON (or nothing) with the session's CSRF token; resolves to the parsed JSON.
  // A 401 (the log-in ended) goes to the log-in page; other errors reject with the sentence.
  async post(url, body) {
    const response = await fetch(url, {
      method: "POST",
      headers: {
        "Accept": "application/json",
        "Content-Type": "application/json",
        "X-CSRF-Token": cc.csrfToken(),
      },
      body: JSON.stringify(body || {}),
      credentials: "same-origin",
    });
    return cc.answer(response);
  },

  async get(url) {
    const response = await fetch(url, {
      headers: { "Accept": "application/json" },
      credentials: "same-origin",
    });
    return cc.answer(response);
  },

  async answer(response) {
    if (response.status === 401) {
      window.location.assign("/login?next=" + encodeURIComponent(window.location.pathname));
      throw new Error("logged out");
    }
    const data = await response.json().catch(() => ({}));
    if (!response.ok) {
      throw new Error(data.error || response.statusText);
    }
    return data;
  },
};

document.querySelectorAll("select[data-autosubmit]").forEach((select) => {
  select.addEventListener("change", () => select.form.submit());
});
