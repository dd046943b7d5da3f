// The selling pages: a form is sent once (its button is disabled while the page changes),
// and the receipt's Print button. No inline script: the CSP allows only this site's files.
"use strict";

(function () {
  // A second click on "write the card" while the first request runs would only be
  // answered with the same sale (the form carries one request id), but the operator
  // should not have to wonder: the button says it is busy.
  document.querySelectorAll("form[data-once]").forEach((form) => {
    form.addEventListener("submit", (event) => {
      if (form.dataset.sent === "yes") {
        event.preventDefault();
        return;
      }
      form.dataset.sent = "yes";
      form.querySelectorAll("button[type=submit]").forEach((button) => {
        button.setAttribute("aria-busy", "true");
        // Disabled after this tick, so the button's own value is still sent.
        window.setTimeout(() => { button.disabled = true; }, 0);
      });
    });
  });

  // Back from the browser's cache (the back button): the form may be sent again.
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

  document.querySelectorAll("[data-print]").forEach((button) => {
    button.addEventListener("click", () => window.print());
  });
})();
