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

  // Show a reader status (GET /reader/status) in stateEl, with the sentences a panel's
  // data-text-* attributes carry (text = panel.dataset).
  showReader(stateEl, text, status) {
    stateEl.classList.remove("present", "unreachable");
    if (status.error) {
      stateEl.textContent = text.textUnreachable + " " + status.error;
      stateEl.classList.add("unreachable");
    } else if (status.present) {
      stateEl.textContent = status.serial
        ? text.textPresent.replace("{serial}", status.serial)
        : text.textForeign;
      stateEl.classList.add("present");
    } else {
      stateEl.textContent = text.textEmpty;
    }
    stateEl.dataset.present = status.present ? "yes" : "no";
    stateEl.dataset.serial = status.serial || "";
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

// A form marked data-once is sent once: a second click while the first request runs
// (writing a card, say) would only get the same answer, but the operator should not
// have to wonder, so its buttons show they are busy (data-busy-text, if given).
document.querySelectorAll("form[data-once]").forEach((form) => {
  form.addEventListener("submit", (event) => {
    if (form.dataset.sent === "yes") {
      event.preventDefault();
      return;
    }
    form.dataset.sent = "yes";
    form.querySelectorAll("button[type=submit]").forEach((button) => {
      button.setAttribute("aria-busy", "true");
      if (form.dataset.busyText) button.textContent = form.dataset.busyText;
      // Disabled after this tick, so the button's own value is still sent.
      window.setTimeout(() => { button.disabled = true; }, 0);
    });
  });
});

// Back from the browser's cache (the back button): such a form may be sent again.
window.addEventListener("pageshow", (event) => {
  if (!event.persisted) return;
  document.querySelectorAll("form[data-once]").forEach((form) => {
    delete form.dataset.sent;
    form.querySelectorAll("button[type=submit]").forEach((button) => {
      button.disabled = false;
      button.removeAttribute("aria-busy");
    });
  });
});

document.querySelectorAll("select[data-autosubmit]").forEach((select) => {
  select.addEventListener("change", () => select.form.submit());
});
