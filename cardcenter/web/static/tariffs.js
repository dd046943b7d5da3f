// The tariff form: show the parts the chosen kind uses, and add rows to a part.
"use strict";

(() => {
  const form = document.getElementById("tariff-form");
  if (!form) {
    return;
  }
  const kind = form.querySelector("#kind");
  const parts = form.querySelectorAll("fieldset.part");

  const showParts = () => {
    parts.forEach((part) => {
      const used = part.dataset.kinds.split(" ").includes(kind.value);
      part.hidden = !used;
    });
  };

  parts.forEach((part) => {
    const button = part.querySelector("button.add-row");
    const rows = part.querySelector(".rows");
    if (!button || !rows) {
      return;
    }
    button.hidden = false;
    button.addEventListener("click", () => {
      const last = rows.lastElementChild;
      if (!last) {
        return;
      }
      const copy = last.cloneNode(true);
      copy.querySelectorAll("input").forEach((input) => {
        input.value = "";
      });
      rows.appendChild(copy);
      const first = copy.querySelector("input");
      if (first) {
        first.focus();
      }
    });
  });

  kind.addEventListener("change", showParts);
  showParts();
})();
