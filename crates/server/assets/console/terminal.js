// The console's terminal: asks for the connection over the console's
// WebSocket, shows the wait for email authorization (countdown, recipients,
// approvals, Cancel) and its outcome in words, then runs the remote shell in
// xterm.js. The server decides everything; this page only shows it.
"use strict";

const form = document.getElementById("ask");
const computer = form.dataset.computer;
const waiting = document.getElementById("waiting");
const statusLine = document.getElementById("status");
const countdown = document.getElementById("countdown");
const recipientList = document.getElementById("recipients");
const cancelButton = document.getElementById("cancel");
const outcome = document.getElementById("outcome");
const box = document.getElementById("terminal");

let ticking = null;
let ended = false;

function say(text) {
  outcome.textContent = text;
  outcome.hidden = false;
}

function finish(text) {
  ended = true;
  clearInterval(ticking);
  waiting.hidden = true;
  say(text);
}

function startCountdown(seconds) {
  const deadline = Date.now() + seconds * 1000;
  const show = () => {
    const left = Math.max(0, Math.round((deadline - Date.now()) / 1000));
    const minutes = Math.floor(left / 60);
    const rest = String(left % 60).padStart(2, "0");
    countdown.textContent = `${minutes}:${rest} left`;
  };
  show();
  clearInterval(ticking);
  ticking = setInterval(show, 1000);
}

function showRecipients(recipients) {
  recipientList.replaceChildren(
    ...recipients.map((recipient) => {
      const item = document.createElement("li");
      item.dataset.recipient = recipient;
      item.textContent = `${recipient}: sending…`;
      return item;
    }),
  );
}

function showDelivery(message) {
  for (const item of recipientList.children) {
    if (item.dataset.recipient === message.recipient) {
      const words = { sent: "email sent", retrying: "retrying", failed: "could not be emailed" };
      const detail = message.detail ? ` (${message.detail})` : "";
      item.textContent = `${message.recipient}: ${words[message.state] || message.state}${detail}`;
    }
  }
}

function connect(reason) {
  box.hidden = false;
  const term = new Terminal({ cursorBlink: true, scrollback: 5000 });
  const fit = new FitAddon.FitAddon();
  term.loadAddon(fit);
  term.open(box);
  fit.fit();

  const scheme = location.protocol === "https:" ? "wss:" : "ws:";
  const query = new URLSearchParams({ computer, reason, rows: term.rows, cols: term.cols });
  const socket = new WebSocket(`${scheme}//${location.host}/console/socket?${query}`);
  socket.binaryType = "arraybuffer";
  const encoder = new TextEncoder();
  let started = false;

  const send = (data) => {
    if (socket.readyState === WebSocket.OPEN) socket.send(data);
  };
  term.onData((data) => {
    if (started) send(encoder.encode(data));
  });
  term.onResize(({ rows, cols }) => send(JSON.stringify({ type: "resize", rows, cols })));
  window.addEventListener("resize", () => fit.fit());
  cancelButton.addEventListener("click", () => {
    cancelButton.disabled = true;
    send(JSON.stringify({ type: "cancel" }));
  });

  statusLine.textContent = "Asking the server…";
  waiting.hidden = false;
  socket.addEventListener("message", (event) => {
    if (typeof event.data !== "string") {
      term.write(new Uint8Array(event.data));
      return;
    }
    const message = JSON.parse(event.data);
    switch (message.type) {
      case "pending":
        statusLine.textContent = "Waiting for email authorization";
        startCountdown(message.expires_in);
        showRecipients(message.recipients);
        break;
      case "delivery":
        showDelivery(message);
        break;
      case "approval":
        statusLine.textContent = `${message.approvals} of ${message.required} approvals (latest: ${message.by})`;
        break;
      case "admitted":
        statusLine.textContent = "Allowed by the person at the computer";
        break;
      case "allowed":
        statusLine.textContent = `Allowed by ${message.by}`;
        break;
      case "approved_earlier":
        statusLine.textContent = `Approved earlier by ${message.by}`;
        break;
      case "denied":
        finish(`Denied by ${message.by}.`);
        break;
      case "expired":
        finish("Nobody answered in time: the request expired.");
        break;
      case "cancelled":
        finish("Cancelled: the recipients' links say so.");
        break;
      case "refused":
        finish(message.message);
        break;
      case "session_started":
        started = true;
        clearInterval(ticking);
        waiting.hidden = true;
        form.hidden = true;
        say(message.time_limit_secs ? `Connected; the session may last ${message.time_limit_secs} s.` : "Connected.");
        term.focus();
        break;
      case "exit": {
        const status = message.code ?? 128 + (message.signal || 0);
        finish(`The shell ended with status ${status}.`);
        break;
      }
      case "error":
        term.write(`\r\ndoorman: ${message.message}\r\n`);
        break;
      default:
        break; // pings and anything newer
    }
  });
  socket.addEventListener("close", () => {
    if (!ended) finish(started ? "The connection was cut." : "The connection to the server closed.");
  });
}

form.addEventListener("submit", (event) => {
  event.preventDefault();
  form.querySelector("button").disabled = true;
  connect(document.getElementById("reason").value);
});
