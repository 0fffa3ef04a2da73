// Keeps the console's list of computers current: asks the server every few
// seconds and redraws each computer (online state, whether it asks by
// email, what this operator may open) the way the page first drew it.
"use strict";

const list = document.getElementById("computers");

function link(href, className, text) {
  const a = document.createElement("a");
  a.href = href;
  a.className = className;
  a.textContent = text;
  return a;
}

function draw(computer) {
  const item = document.createElement("li");
  item.dataset.computer = computer.name;
  const name = document.createElement("strong");
  name.textContent = computer.name;
  const state = document.createElement("span");
  const word = computer.online ? "online" : "offline";
  state.className = `state ${word}`;
  state.textContent = word;
  item.append(name, " ", state);
  if (computer.email_authorization !== null) {
    const badge = document.createElement("span");
    badge.className = "asks";
    badge.textContent = asks(computer);
    item.append(" ", badge);
  }
  const path = encodeURIComponent(computer.name);
  if (computer.shell) item.append(" ", link(`/console/terminal/${path}`, "terminal-link", "Terminal"));
  if (computer.desktop) item.append(" ", link(`/console/desktop/${path}`, "desktop-link", "Desktop"));
  if (computer.files) item.append(" ", link(`/console/files/${path}`, "files-link", "Files"));
  return item;
}

function asks(computer) {
  if (computer.email_authorization === null) return "";
  return computer.email_authorization ? "asks by email" : "no email authorization";
}

// What a computer shows, from the server's answer and from the page: the
// list is redrawn only when they differ, so that a click is never lost to
// a redraw.
function shown(computer) {
  return [computer.name, computer.online ? "online" : "offline", asks(computer), computer.shell, computer.desktop, computer.files].join("|");
}

function showing(item) {
  return [
    item.dataset.computer,
    item.querySelector(".state").textContent,
    item.querySelector(".asks")?.textContent ?? "",
    item.querySelector(".terminal-link") !== null,
    item.querySelector(".desktop-link") !== null,
    item.querySelector(".files-link") !== null,
  ].join("|");
}

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
  const now = computers.map(shown);
  const before = Array.from(list.children, showing);
  if (now.join("\n") !== before.join("\n")) list.replaceChildren(...computers.map(draw));
}

if (list) {
  setInterval(refresh, 2000);
}
