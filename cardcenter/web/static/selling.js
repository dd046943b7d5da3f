// The selling pages: the receipt's Print button (forms marked data-once are sent once by
// static/app.js). No inline script: the CSP allows only this site's files.
"use strict";

(function () {
  document.querySelectorAll("[data-print]").forEach((button) => {
    button.addEventListener("click", () => window.print());
  });
})();
