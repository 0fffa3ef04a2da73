// Keeps the console's list of computers current: asks the server every few
// seconds and updates each computer's online state in place.
"use strict";

const list = document.getElementById("computers");

async function refresh() {
  let computers;
  try {
    const response = await fetch("/console/computers", { credentials: "same-origin" });
    if (response.status === 401) {
      window.location.assign("/console");
      return;
    }
    if (!response.ok) return;
    computers = await response.json();
  } catch (_) {
    return; // the server is away for a moment; try again at the next tick
  }
  for (const computer of computers) {
    const item = list.querySelector(`li[data-computer="${CSS.escape(computer.name)}"]`);
    if (!item) continue;
    const state = item.querySelector(".state");
    const word = computer.online ? "online" : "offline";
    if (state.textContent !== word) {
      state.textContent = word;
      state.className = `state ${word}`;
    }
  }
}

if (list) {
  setInterval(refresh, 2000);
}
