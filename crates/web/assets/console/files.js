// The console's Files view: once the connection is allowed (see
// connecting.js), the computer's shared folders, one folder shown at a time;
// uploads (the file input, or files dropped on the page, several at once)
// and downloads, each with its progress and its own error. Requests go one
// at a time, each waiting for its answer, so that an upload's bytes never
// queue behind a download's or the other way round. The computer checks
// every path and stores each upload whole or not at all; this page only asks
// and shows.
//
// Names travel as bytes (base64 in JSON): a name that is not UTF-8 is shown
// escaped, and still fetched as it is.
import { connect, onAsk, say } from "./connecting.js";
// SHA-256 a piece at a time (js-sha256, vendor/): neither an upload nor a
// download is held whole to be hashed, and it works over plain HTTP too,
// where the browser's own crypto.subtle is not offered.
import { sha256 } from "./vendor/sha256.js";

const computer = document.getElementById("ask").dataset.computer;
const view = document.getElementById("files");
const rootList = document.getElementById("roots");
const upButton = document.getElementById("up");
const where = document.getElementById("where");
const notice = document.getElementById("notice");
const listing = document.getElementById("listing");
const omittedLine = document.getElementById("omitted");
const upload = document.getElementById("upload");
const transfers = document.getElementById("transfers");

/// Bytes of an upload read and sent at a time: within one data frame
/// (256 KiB), which the server makes of each message.
const CHUNK = 192 * 1024;
/// Bytes the socket may hold unsent before an upload waits for it to drain.
const HIGH_WATER = 1024 * 1024;

const encoder = new TextEncoder();
const strictUtf8 = new TextDecoder("utf-8", { fatal: true, ignoreBOM: true });

let socket = null;
let closed = false;
let failure = null; // why the session could not start, in the computer's words
let root = null; // the shared folder browsed (bytes)
let here = null; // the folder shown (bytes)
const queue = [];
let current = null; // the request under way

// Names as bytes.

function fromBase64(text) {
  const raw = atob(text);
  const bytes = new Uint8Array(raw.length);
  for (let i = 0; i < raw.length; i++) bytes[i] = raw.charCodeAt(i);
  return bytes;
}

function toBase64(bytes) {
  let raw = "";
  for (let i = 0; i < bytes.length; i += 0x8000) {
    raw += String.fromCharCode(...bytes.subarray(i, i + 0x8000));
  }
  return btoa(raw);
}

/// A name as people read it: as it is when it is UTF-8 without control
/// characters, else each byte that is not printable ASCII escaped (`\n`,
/// `\xff`), as the command line shows names.
function shown(bytes) {
  try {
    const text = strictUtf8.decode(bytes);
    if (!/[\u0000-\u001f\u007f-\u009f]/.test(text)) return text;
  } catch (_) {
    // Not UTF-8: escaped below.
  }
  let text = "";
  for (const byte of bytes) {
    if (byte === 0x5c) text += "\\\\";
    else if (byte === 0x0a) text += "\\n";
    else if (byte === 0x0d) text += "\\r";
    else if (byte === 0x09) text += "\\t";
    else if (byte >= 0x20 && byte < 0x7f) text += String.fromCharCode(byte);
    else text += `\\x${byte.toString(16).padStart(2, "0")}`;
  }
  return text;
}

function join(dir, name) {
  const slash = dir.length > 0 && dir[dir.length - 1] === 0x2f ? 0 : 1;
  const path = new Uint8Array(dir.length + slash + name.length);
  path.set(dir);
  if (slash) path[dir.length] = 0x2f;
  path.set(name, dir.length + slash);
  return path;
}

function same(a, b) {
  return a !== null && b !== null && a.length === b.length && a.every((byte, i) => byte === b[i]);
}

function humanSize(bytes) {
  const units = ["KiB", "MiB", "GiB", "TiB"];
  if (bytes < 1024) return `${bytes} B`;
  let value = bytes / 1024;
  let unit = 0;
  while (value >= 1024 && unit + 1 < units.length) {
    value /= 1024;
    unit += 1;
  }
  return `${value.toFixed(1)} ${units[unit]}`;
}

const pause = (ms) => new Promise((resolve) => setTimeout(resolve, ms));

// One request at a time: each is { name, start(), answer(message),
// data(bytes)?, cut()? }, where `name` is what the computer's `file_failed`
// for it names (base64).

function send(message) {
  socket.send(JSON.stringify(message));
}

function enqueue(request) {
  queue.push(request);
  next();
}

function next() {
  if (current || !socket || closed || queue.length === 0) return;
  current = queue.shift();
  current.start();
}

function finished() {
  current = null;
  next();
}

function onMessage(message) {
  if (message.type === "roots") {
    showRoots(message.paths.map(fromBase64));
    return;
  }
  if (!current) return;
  // A failure names what failed: one for another request (given up
  // before) is not this one's answer.
  if (message.type === "file_failed" && message.name !== current.name) return;
  current.answer(message);
}

function onData(data) {
  if (current && current.data) current.data(data);
}

/// The session ended: nothing more goes, and what waited says so.
function onClose() {
  closed = true;
  upload.disabled = true;
  for (const request of [current, ...queue.splice(0)]) {
    if (request && request.cut) request.cut();
  }
  current = null;
  // Said again over "the connection was cut": why it ended is what counts.
  if (failure) say(failure);
}

function tell(text) {
  notice.textContent = text;
  notice.hidden = false;
}

// Folders.

function showRoots(paths) {
  rootList.replaceChildren(
    ...paths.map((path) => {
      const button = document.createElement("button");
      button.type = "button";
      button.className = "root";
      button.textContent = shown(path);
      button.addEventListener("click", () => list(path, path));
      return button;
    }),
  );
  view.hidden = false;
  if (paths.length > 0) list(paths[0], paths[0]);
}

/// Shows the folder at `path`, inside the shared folder `top`.
function list(path, top) {
  let entries = [];
  enqueue({
    name: toBase64(path),
    start() {
      send({ type: "list", path: toBase64(path) });
    },
    answer(message) {
      if (message.type === "listing") {
        entries = entries.concat(message.entries);
        if (message.last) {
          root = top;
          showListing(path, entries, message.omitted || 0);
          finished();
        }
      } else if (message.type === "file_failed") {
        tell(message.message);
        finished();
      }
    },
  });
}

function showListing(path, entries, omitted) {
  here = path;
  notice.hidden = true;
  where.textContent = shown(path);
  upButton.disabled = path.length <= root.length;
  listing.replaceChildren(...entries.map((entry) => row(path, entry)));
  omittedLine.hidden = omitted === 0;
  omittedLine.textContent = `${omitted} more entries are not shown.`;
}

function cell(text) {
  const td = document.createElement("td");
  td.textContent = text;
  return td;
}

function button(className, text, click) {
  const made = document.createElement("button");
  made.type = "button";
  made.className = className;
  made.textContent = text;
  made.addEventListener("click", click);
  return made;
}

function row(dir, entry) {
  const name = fromBase64(entry.name);
  const path = join(dir, name);
  const tr = document.createElement("tr");
  tr.dataset.name = shown(name);
  tr.className = entry.dir ? "dir" : "file";
  const nameCell = document.createElement("td");
  const actions = document.createElement("td");
  if (entry.dir) {
    const top = root;
    nameCell.append(button("open", `${shown(name)}/`, () => list(path, top)));
  } else {
    nameCell.textContent = shown(name);
    actions.append(button("download", "Download", () => download(path, name)));
  }
  const size = cell(entry.dir ? "" : humanSize(entry.size));
  const modified = cell(new Date(entry.mtime * 1000).toLocaleString());
  tr.append(nameCell, size, modified, actions);
  return tr;
}

upButton.addEventListener("click", () => {
  if (here === null || root === null || here.length <= root.length) return;
  const cut = here.lastIndexOf(0x2f);
  const up = cut > 0 ? here.slice(0, cut) : root;
  list(up.length < root.length ? root : up, root);
});

// Transfers.

/// A line of the transfers list, with its progress and outcome; the test
/// reads `data-direction`, `data-state` and, for a download, `data-sha256`.
function transfer(direction, name) {
  const item = document.createElement("li");
  item.dataset.direction = direction;
  item.dataset.name = name;
  item.dataset.state = "queued";
  const label = document.createElement("span");
  label.textContent = `${direction === "up" ? "↑" : "↓"} ${name}`;
  const bar = document.createElement("progress");
  bar.max = 1;
  bar.value = 0;
  const words = document.createElement("span");
  words.className = "words";
  words.textContent = "queued";
  item.append(label, " ", bar, " ", words);
  transfers.append(item);
  return {
    item,
    progress(done, total) {
      item.dataset.state = "going";
      bar.max = Math.max(total, 1);
      bar.value = done;
      words.textContent = `${humanSize(done)} of ${humanSize(total)}`;
    },
    done(text) {
      item.dataset.state = "done";
      bar.max = 1;
      bar.value = 1;
      words.textContent = text;
    },
    failed(text) {
      item.dataset.state = "failed";
      item.classList.add("failed");
      words.textContent = text;
    },
  };
}

function download(path, name) {
  const line = transfer("down", shown(name));
  let chunks = [];
  let hash = sha256.create();
  let size = 0;
  let received = 0;
  let expected = null;
  enqueue({
    name: toBase64(path),
    start() {
      line.progress(0, 0);
      send({ type: "get", path: toBase64(path) });
    },
    data(data) {
      chunks.push(data);
      hash.update(data);
      received += data.byteLength;
      line.progress(received, size);
    },
    answer(message) {
      switch (message.type) {
        case "file":
          size = message.size;
          line.progress(0, size);
          break;
        case "file_end":
          expected = message.sha256;
          break;
        case "file_abandoned": // it changed while read: its failure follows
          chunks = [];
          hash = sha256.create();
          break;
        case "file_copied":
          finished();
          save(line, name, chunks, hash.hex(), expected);
          break;
        case "file_failed":
          line.failed(message.message);
          finished();
          break;
        default:
          break;
      }
    },
    cut() {
      line.failed("the session ended before it arrived");
    },
  });
}

/// Saves a downloaded file once its bytes (whose SHA-256 is `ours`) match
/// the computer's SHA-256. The browser keeps a large Blob on disk.
function save(line, name, chunks, ours, expected) {
  line.item.dataset.sha256 = ours;
  if (ours !== expected) {
    line.failed("the bytes that arrived do not match their SHA-256");
    return;
  }
  const blob = new Blob(chunks);
  const url = URL.createObjectURL(blob);
  const link = document.createElement("a");
  link.href = url;
  link.download = shown(name);
  link.hidden = true;
  document.body.append(link);
  link.click();
  link.remove();
  setTimeout(() => URL.revokeObjectURL(url), 60_000);
  line.done(`downloaded (${humanSize(blob.size)})`);
}

function uploadFile(file) {
  if (here === null) return;
  const dir = here;
  const top = root;
  const name = toBase64(encoder.encode(file.name));
  const line = transfer("up", file.name);
  let failed = false;
  const abandon = (why) => {
    failed = true;
    line.failed(why);
    if (!closed) send({ type: "file_abandoned", message: why });
    finished();
  };
  enqueue({
    name,
    async start() {
      line.progress(0, file.size);
      if (closed) return;
      // Hashed as it is sent: the computer checks the bytes against it.
      const hash = sha256.create();
      send({ type: "put", dir: toBase64(dir), name, size: file.size });
      let sent = 0;
      while (sent < file.size) {
        // The socket drains at the pace of the computer's disk and link.
        while (!failed && !closed && socket.bufferedAmount > HIGH_WATER) await pause(20);
        if (failed || closed) return;
        let chunk;
        try {
          chunk = await file.slice(sent, sent + CHUNK).arrayBuffer();
        } catch (error) {
          if (!failed && !closed) abandon(`it could not be read on: ${error.message}`);
          return;
        }
        if (failed || closed) return;
        if (chunk.byteLength === 0) {
          abandon("it shrank while it was read");
          return;
        }
        hash.update(chunk);
        socket.send(chunk);
        sent += chunk.byteLength;
        line.progress(sent, file.size);
      }
      if (!failed && !closed) send({ type: "file_end", sha256: hash.hex() });
    },
    answer(message) {
      if (message.type === "file_copied") {
        line.done(`uploaded (${humanSize(message.size)})`);
        finished();
        if (same(dir, here)) list(dir, top);
      } else if (message.type === "file_failed") {
        failed = true;
        line.failed(message.message);
        finished();
      }
    },
    cut() {
      failed = true;
      line.failed("the session ended before it was stored");
    },
  });
}

function uploadAll(files) {
  for (const file of Array.from(files)) uploadFile(file);
}

upload.addEventListener("change", () => {
  uploadAll(upload.files);
  upload.value = "";
});

// Files dropped anywhere on the page go to the folder shown; a drop never
// makes the browser leave the page (and the session) to open the file.
window.addEventListener("dragover", (event) => {
  event.preventDefault();
  if (event.dataTransfer) event.dataTransfer.dropEffect = here !== null && !closed ? "copy" : "none";
  if (here !== null && !closed) view.classList.add("dropping");
});
window.addEventListener("dragleave", () => view.classList.remove("dropping"));
window.addEventListener("drop", (event) => {
  event.preventDefault();
  view.classList.remove("dropping");
  if (here !== null && !closed && event.dataTransfer) uploadAll(event.dataTransfer.files);
});

onAsk((reason) => {
  connect(
    { computer, reason, kind: "files" },
    {
      started: (open) => {
        socket = open;
        open.addEventListener("close", onClose);
        next();
      },
      output: onData,
      message: onMessage,
      ended: (end) => {
        const failed = end.failed ? `; ${end.failed} failed` : "";
        return `The session ended: ${end.files} files (${humanSize(end.bytes)}) copied${failed}.`;
      },
      error: (message) => {
        failure = message;
        view.hidden = true;
        say(message);
      },
    },
  );
});
