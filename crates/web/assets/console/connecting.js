// Asking for a connection from the console: opens the console's WebSocket,
// shows the wait for email authorization (countdown, recipients, approvals,
// Cancel) and its outcome in words, then hands the session to the page (the
// terminal, the desktop or the Files view). The server decides everything;
// this only shows.

const waiting = document.getElementById("waiting");
const statusLine = document.getElementById("status");
const countdown = document.getElementById("countdown");
const recipientList = document.getElementById("recipients");
const cancelButton = document.getElementById("cancel");
const outcome = document.getElementById("outcome");
const form = document.getElementById("ask");

let ticking = null;
let ended = false;

export function say(text) {
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
      item.textContent = `${recipient}: queued`;
      return item;
    }),
  );
}

function showDelivery(message) {
  const words = {
    sending: "sending…",
    sent: "email sent",
    retrying: "retrying",
    failed: "could not be emailed",
  };
  for (const item of recipientList.children) {
    if (item.dataset.recipient === message.recipient) {
      const detail = message.detail ? ` (${message.detail})` : "";
      item.textContent = `${message.recipient}: ${words[message.state] || message.state}${detail}`;
    }
  }
}

/// Calls `run(reason)` when the page's form is submitted.
export function onAsk(run) {
  form.addEventListener("submit", (event) => {
    event.preventDefault();
    form.querySelector("button").disabled = true;
    // What the approvers read is what was sent: the field no longer changes.
    const reason = document.getElementById("reason");
    reason.readOnly = true;
    run(reason.value);
  });
}

/// Opens the socket for `query` (computer, reason, kind, rows, cols).
/// `session.started(socket)` once the session runs, `session.output(data)`
/// for each binary message, `session.ended(exit)` for the words shown when
/// it ends (the program's `exit`, or a copy's `copied`),
/// `session.error(message)` for the computer's complaints (why the program
/// or the desktop could not start), and `session.message(message)`, if
/// given, for every other message (the Files view's own).
export function connect(query, session) {
  const scheme = location.protocol === "https:" ? "wss:" : "ws:";
  const socket = new WebSocket(`${scheme}//${location.host}/console/socket?${new URLSearchParams(query)}`);
  socket.binaryType = "arraybuffer";
  let started = false;
  cancelButton.addEventListener("click", () => {
    cancelButton.disabled = true;
    socket.send(JSON.stringify({ type: "cancel" }));
  });
  statusLine.textContent = "Asking the server…";
  waiting.hidden = false;
  socket.addEventListener("message", (event) => {
    if (typeof event.data !== "string") {
      session.output(event.data);
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
        session.started(socket);
        break;
      case "exit":
      case "copied": // the Files view's last word: what it copied
        finish(session.ended(message));
        break;
      case "ended": // the server ended the session, and says why
        finish(message.message);
        break;
      case "error":
        session.error(message.message);
        break;
      default: // pings, anything newer, and the session's own words
        if (session.message) session.message(message);
        break;
    }
  });
  socket.addEventListener("close", () => {
    if (!ended) finish(started ? "The connection was cut." : "The connection to the server closed.");
  });
  return socket;
}
