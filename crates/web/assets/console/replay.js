// The console's player: a recorded shell session written to xterm.js at the
// pace it happened (divided by the chosen speed).
const form = document.getElementById("player");
const progress = document.getElementById("progress");
const box = document.getElementById("terminal");
let run = 0;

async function play() {
  const mine = ++run;
  const response = await fetch(`/console/recordings/${form.dataset.recording}/events`);
  if (!response.ok) {
    progress.textContent = `Cannot load the recording: ${await response.text()}`;
    return;
  }
  const { header, events } = await response.json();
  box.replaceChildren();
  const term = new Terminal({ cols: header.width, rows: header.height, disableStdin: true });
  term.open(box);
  const speed = Number(document.getElementById("speed").value) || 1;
  const start = performance.now();
  progress.textContent = "Playing";
  for (const [at, code, text] of events) {
    if (mine !== run) return;
    const wait = (at * 1000) / speed - (performance.now() - start);
    if (wait > 0) await new Promise((done) => setTimeout(done, wait));
    if (code === "o") term.write(text);
    else if (code === "r") {
      const [cols, rows] = text.split("x").map(Number);
      if (cols > 0 && rows > 0) term.resize(cols, rows);
    }
  }
  if (mine === run) progress.textContent = "Played to the end";
}

form.addEventListener("submit", (event) => {
  event.preventDefault();
  play();
});
window.addEventListener("DOMContentLoaded", play);
