// The console's desktop: noVNC showing the computer's VNC server over the
// console's WebSocket, once the connection is allowed (see connecting.js).
import RFB from "./vendor/novnc/core/rfb.js";
import { connect, onAsk, say } from "./connecting.js";

const computer = document.getElementById("ask").dataset.computer;
const screen = document.getElementById("screen");

/// What noVNC takes for a WebSocket: the console's socket, carrying only
/// the desktop's bytes (the server's words stay with connecting.js).
class DesktopChannel {
  constructor(socket) {
    this.socket = socket;
    this.binaryType = "arraybuffer";
    this.protocol = "";
    this.onerror = null;
    this.onopen = null;
    this.onclose = null;
    this.waiting = [];
    this.receive = null;
    socket.addEventListener("close", (event) => this.onclose && this.onclose(event));
  }

  get readyState() {
    return this.socket.readyState;
  }

  get onmessage() {
    return this.receive;
  }

  // noVNC sets this when it attaches; what arrived before is handed over
  // once it is ready for it.
  set onmessage(receive) {
    this.receive = receive;
    setTimeout(() => {
      for (const data of this.waiting.splice(0)) this.receive({ data });
    }, 0);
  }

  deliver(data) {
    if (this.receive && this.waiting.length === 0) this.receive({ data });
    else this.waiting.push(data);
  }

  send(data) {
    this.socket.send(data);
  }

  close() {
    this.socket.close();
  }
}

onAsk((reason) => {
  let channel = null;
  const early = [];
  // Why the desktop could not start, in the computer's words ("the computer
  // cannot reach its VNC server at …"): the end of the session says it
  // again, instead of only that it ended.
  let failure = null;
  const endWords = () => failure ?? "The desktop session ended.";
  connect(
    { computer, reason, kind: "desktop" },
    {
      started: (socket) => {
        screen.hidden = false;
        channel = new DesktopChannel(socket);
        for (const data of early.splice(0)) channel.deliver(data);
        const rfb = new RFB(screen, channel, { shared: true });
        rfb.scaleViewport = true;
        rfb.addEventListener("connect", () => say("Connected to the desktop."));
        rfb.addEventListener("disconnect", () => say(endWords()));
      },
      output: (data) => (channel ? channel.deliver(data) : early.push(data)),
      ended: endWords,
      error: (message) => {
        failure = message;
        screen.hidden = true;
        say(message);
      },
    },
  );
});
