// The console's terminal: the remote shell in xterm.js, once the connection
// is allowed (see connecting.js).
import { connect, onAsk } from "./connecting.js";

const computer = document.getElementById("ask").dataset.computer;
const box = document.getElementById("terminal");

onAsk((reason) => {
  // The terminal shows once the session starts, so the wait shows no empty
  // box; it starts at xterm's default size and is fitted then (the server
  // passes the new size on to the computer).
  const term = new Terminal({ cursorBlink: true, scrollback: 5000 });
  const fit = new FitAddon.FitAddon();
  term.loadAddon(fit);
  const encoder = new TextEncoder();
  let live = null;
  const socket = connect(
    { computer, reason, kind: "terminal", rows: term.rows, cols: term.cols },
    {
      started: (open) => {
        live = open;
        box.hidden = false;
        term.open(box);
        fit.fit();
        term.focus();
      },
      output: (data) => term.write(new Uint8Array(data)),
      ended: (exit) => `The shell ended with status ${exit.code ?? 128 + (exit.signal || 0)}.`,
      error: (message) => term.write(`\r\ndoorman: ${message}\r\n`),
    },
  );
  term.onData((data) => {
    if (live && live.readyState === WebSocket.OPEN) live.send(encoder.encode(data));
  });
  term.onResize(({ rows, cols }) => {
    if (socket.readyState === WebSocket.OPEN) socket.send(JSON.stringify({ type: "resize", rows, cols }));
  });
  window.addEventListener("resize", () => fit.fit());
});
