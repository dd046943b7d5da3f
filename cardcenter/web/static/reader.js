// The dashboard's reader panel: polls /reader/status every second and, with the
// virtual reader, offers the virtual card tray.
"use strict";

(function () {
  const panel = document.getElementById("reader-panel");
  if (!panel) return;
  const text = panel.dataset;
  const nameEl = document.getElementById("reader-name");
  const stateEl = document.getElementById("reader-state");
  const tray = document.getElementById("tray");
  const list = document.getElementById("tray-list");
  let busy = false;

  function show(status) {
    nameEl.textContent = status.reader || "";
    cc.showReader(stateEl, text, status);
    tray.hidden = !status.virtual;
    if (status.virtual) showTray(status.tray || []);
  }

  function showTray(cards) {
    const key = JSON.stringify(cards);
    if (list.dataset.key === key) return;
    list.dataset.key = key;
    list.replaceChildren();
    if (!cards.length) {
      const li = document.createElement("li");
      li.className = "muted";
      li.textContent = text.textNoCards;
      list.append(li);
    }
    for (const card of cards) {
      const li = document.createElement("li");
      const code = document.createElement("code");
      code.textContent = card.serial;
      li.append(code);
      if (card.inserted) {
        const tag = document.createElement("span");
        tag.className = "tag on";
        tag.textContent = text.textInserted;
        li.append(tag);
      } else {
        const button = document.createElement("button");
        button.type = "button";
        button.textContent = text.textInsert;
        button.dataset.serial = card.serial;
        button.addEventListener("click", () => act(text.insertUrl, { serial: card.serial }));
        li.append(button);
      }
      list.append(li);
    }
  }

  async function poll() {
    if (!busy) {
      try {
        show(await cc.get(text.statusUrl));
      } catch (error) {
        stateEl.textContent = text.textUnreachable;
      }
    }
    window.setTimeout(poll, 1000);
  }

  async function act(url, body) {
    busy = true;
    try {
      const status = await cc.post(url, body);
      if (status.reader !== undefined) show(status);
      else show(await cc.get(text.statusUrl));
    } catch (error) {
      stateEl.textContent = error.message;
      stateEl.classList.add("unreachable");
    } finally {
      busy = false;
    }
  }

  document.getElementById("vcard-new").addEventListener("click", () => act(text.newUrl));
  document.getElementById("vcard-remove").addEventListener("click", () => act(text.removeUrl));
  poll();
})();
