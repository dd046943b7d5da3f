// The customer pages: the desk's reader shown live on the card forms (with a button that
// puts a new blank virtual card in the virtual reader), the account form's card/keypad
// fields (card forms are sent once: data-once, static/app.js).
"use strict";

(function () {
  const panel = document.getElementById("desk-reader");
  if (panel) {
    const text = panel.dataset;
    const stateEl = document.getElementById("desk-reader-state");
    const virtual = document.getElementById("desk-reader-virtual");
    const blank = document.getElementById("blank-card");
    let busy = false;

    const show = (status) => {
      cc.showReader(stateEl, text, status);
      if (virtual) virtual.hidden = !status.virtual;
    };

    const poll = async () => {
      if (!busy) {
        try {
          show(await cc.get(text.statusUrl));
        } catch (error) {
          stateEl.textContent = text.textUnreachable;
        }
      }
      window.setTimeout(poll, 1000);
    };

    const putBlank = async () => {
      busy = true;
      blank.disabled = true;
      try {
        const made = await cc.post(text.newUrl);
        show(await cc.post(text.insertUrl, { serial: made.serial }));
      } catch (error) {
        stateEl.textContent = error.message;
        stateEl.classList.add("unreachable");
      } finally {
        busy = false;
        blank.disabled = false;
      }
    };
    if (blank) blank.addEventListener("click", putBlank);
    poll();
  }

  // The account form: card-meter fields or keypad-meter fields, as the meter kind says.
  const accountForm = document.getElementById("account-form");
  if (accountForm) {
    const sections = accountForm.querySelectorAll("[data-kind]");
    const issue = document.getElementById("issue");
    const amount = document.getElementById("amount");
    const reader = document.getElementById("reader-section");
    const update = () => {
      const kind = accountForm.querySelector("input[name=kind]:checked");
      const chosen = kind ? kind.value : "card";
      sections.forEach((section) => {
        section.hidden = section.dataset.kind !== chosen;
      });
      const issuing = chosen === "card" && issue.checked;
      amount.disabled = !issuing;
      reader.hidden = !issuing;
    };
    accountForm.querySelectorAll("input[name=kind]").forEach((radio) => {
      radio.addEventListener("change", update);
    });
    issue.addEventListener("change", update);
    update();
  }
})();
