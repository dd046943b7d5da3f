// The customer pages: the desk's reader shown live on the card forms (with a button that
// puts a new blank virtual card in the virtual reader), the account form's card/keypad
// fields, and card forms that cannot be sent twice while the card is being written.
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

  // A form that writes a card is sent once: the button waits for the answer.
  document.querySelectorAll("form.card-flow, #account-form").forEach((form) => {
    form.addEventListener("submit", (event) => {
      if (form.dataset.sent === "yes") {
        event.preventDefault();
        return;
      }
      form.dataset.sent = "yes";
      form.querySelectorAll("button[type=submit]").forEach((button) => {
        button.disabled = true;
        if (form.dataset.busyText) button.textContent = form.dataset.busyText;
      });
    });
  });
})();
