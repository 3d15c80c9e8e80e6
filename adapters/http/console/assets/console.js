// gatehouse console: the live tail (Server-Sent Events) and the sessions table refresh.
// No framework; served from the gateway itself (the CSP allows only this file).
"use strict";

function startTail(box) {
  const status = document.getElementById("tail-status");
  const es = new EventSource(box.dataset.src);
  let seen = 0;
  es.addEventListener("open", () => { status.textContent = "Connected: new records appear below as they are written."; });
  es.addEventListener("error", () => { status.textContent = "Disconnected; reconnecting…"; });
  es.addEventListener("record", (ev) => {
    const tpl = document.createElement("template");
    tpl.innerHTML = ev.data;
    const row = tpl.content.firstElementChild;
    if (!row) return;
    row.classList.add("fresh");
    const head = box.querySelector(".head");
    box.insertBefore(row, head ? head.nextSibling : box.firstChild);
    seen += 1;
    status.textContent = "Connected: " + seen + " new record" + (seen === 1 ? "" : "s") + ".";
    // Keep the page light: the newest 500 rows.
    const rows = box.querySelectorAll("details.rec");
    for (let i = 500; i < rows.length; i++) rows[i].remove();
  });
}

function startRefresh(box) {
  const url = box.dataset.refresh;
  setInterval(async () => {
    // Do not swap the table under a pointer or focus that is about to press a button.
    if (box.contains(document.activeElement) && document.activeElement.tagName === "BUTTON") return;
    try {
      const r = await fetch(url, { credentials: "same-origin", cache: "no-store" });
      if (r.ok) box.innerHTML = await r.text();
    } catch (_) { /* next tick */ }
  }, 2000);
}

document.addEventListener("DOMContentLoaded", () => {
  const tail = document.getElementById("tail");
  if (tail) startTail(tail);
  const sessions = document.getElementById("sessions");
  if (sessions) startRefresh(sessions);
});
