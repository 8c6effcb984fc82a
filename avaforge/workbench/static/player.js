// The player: loops the rawframes within +-1.5 s of the selected keyframe (the img_%05d.jpg files training
// reads, preloaded, one canvas draw per 30 fps frame: frame-exact), draws the keyframe's boxes with their ids
// and highlights the selected person. Mouse: click a box to select its person, drag the selected box to move
// it, its lower-right corner to resize it; after startDraw(), a drag draws a new person.

import { loadImage } from "./api.js";

const FPS = 30;
const HALF = 45; // frames: 1.5 s each side of the keyframe
const MAX_WIDTH = 640;
const HANDLE = 10; // px on the canvas: the resize corner
const LOADING = 3; // frame requests in flight, of the browser's 6 connections to the server

export class Player {
  constructor(canvas, { onSelect, onMove, onDraw }) {
    this.canvas = canvas;
    this.ctx = canvas.getContext("2d");
    this.cb = { onSelect, onMove, onDraw };
    this.cache = new Map(); // "<clip>/<frame>" -> HTMLImageElement (loaded or loading)
    this.wanted = []; // frames of the shown window not yet asked for
    this.loading = 0;
    this.held = false; // while a save is on its way, no new frame request competes with it
    this.playing = true;
    this.drawing = false;
    this.drag = null;
    this.doc = null;
    this.sel = null;
    this.start = performance.now();
    canvas.addEventListener("mousedown", (e) => this.down(e));
    window.addEventListener("mousemove", (e) => this.moveTo(e));
    window.addEventListener("mouseup", (e) => this.up(e));
    requestAnimationFrame(() => this.tick());
  }

  show(doc, sel, clipId) {
    const changed = !this.doc || this.clipId !== clipId || this.sel?.second !== sel.second;
    this.doc = doc;
    this.sel = { ...sel };
    this.clipId = clipId;
    const [w, h] = doc.frame_size;
    this.scale = MAX_WIDTH / w; // the frame fills the player's width
    this.canvas.width = Math.round(w * this.scale);
    this.canvas.height = Math.round(h * this.scale);
    if (changed && sel.second !== null) {
      this.key = FPS * sel.second + 1;
      this.first = Math.max(1, this.key - HALF);
      this.last = Math.min(doc.num_frames, this.key + HALF);
      this.start = performance.now();
      // the keyframe first (what is labelled), then the loop in playing order
      this.wanted = [this.key];
      for (let f = this.first; f <= this.last; f++) if (f !== this.key) this.wanted.push(f);
      this.pump();
    }
    this.paint();
  }

  // At most LOADING frame requests at a time: the browser opens 6 connections to a host, and a save sent
  // while 90 frames are queued would wait behind them. A new selection replaces the frames still wanted.
  // While held (the annotator is saving, or typing: app.js), only the shown second's keyframe is asked for;
  // the loop's other frames load in the pause after.
  holdLoads(hold) {
    this.held = hold;
    if (!hold) this.pump();
  }

  pump() {
    while (this.loading < LOADING && this.wanted.length) {
      if (this.held && this.wanted[0] !== this.key) return;
      const frame = this.wanted.shift();
      const key = `${this.clipId}/${frame}`;
      if (this.cache.has(key)) continue;
      const img = new Image();
      this.cache.set(key, img);
      this.loading += 1;
      const done = () => {
        this.loading -= 1;
        this.pump();
      };
      img.onload = done;
      img.onerror = () => {
        this.cache.delete(key); // asked again the next time its second is shown
        done();
      };
      loadImage(img, `api/clips/${encodeURIComponent(this.clipId)}/frames/${frame}`);
    }
  }

  frameNow() {
    if (!this.playing || this.first === undefined) return this.key;
    const n = this.last - this.first + 1;
    const i = Math.floor(((performance.now() - this.start) / 1000) * FPS) % n;
    return this.first + i;
  }

  tick() {
    this.paint();
    requestAnimationFrame(() => this.tick());
  }

  togglePlay() {
    this.playing = !this.playing;
    this.start = performance.now();
    this.paint();
  }

  startDraw() {
    this.drawing = true;
    this.canvas.style.cursor = "cell";
  }

  cancelDraw() {
    this.drawing = false;
    this.drag = null;
    this.canvas.style.cursor = "";
  }

  paint() {
    if (!this.doc || this.key === undefined) return;
    const frame = this.frameNow();
    const ready = (f) => {
      const im = this.cache.get(`${this.clipId}/${f}`);
      return im && im.complete && im.naturalWidth ? im : null;
    };
    const img = ready(frame) || ready(this.key); // the keyframe stands in while the loop still loads
    const ctx = this.ctx;
    if (img) {
      ctx.drawImage(img, 0, 0, this.canvas.width, this.canvas.height);
    } else {
      ctx.fillStyle = "#000";
      ctx.fillRect(0, 0, this.canvas.width, this.canvas.height);
    }
    const atKey = frame === this.key;
    for (const b of this.doc.boxes.filter((x) => x.second === this.sel.second)) {
      const box = this.drag && this.drag.person === b.person && this.drag.box ? this.drag.box : b.box;
      const selected = b.person === this.sel.person;
      const [x1, y1, x2, y2] = box.map((v) => v * this.scale);
      ctx.globalAlpha = atKey || selected ? 1 : 0.45; // boxes belong to the keyframe
      ctx.lineWidth = selected ? 3 : 1.5;
      ctx.strokeStyle = selected ? "#ffeb3b" : b.actions.length ? "#4caf50" : "#ef5350";
      ctx.strokeRect(x1, y1, x2 - x1, y2 - y1);
      ctx.fillStyle = ctx.strokeStyle;
      ctx.font = "bold 13px system-ui";
      ctx.fillText(String(b.person), x1 + 3, y1 + 14);
      if (selected) ctx.fillRect(x2 - HANDLE / 2, y2 - HANDLE / 2, HANDLE, HANDLE);
      ctx.globalAlpha = 1;
    }
    if (this.drag && this.drag.kind === "draw" && this.drag.box) {
      const [x1, y1, x2, y2] = this.drag.box.map((v) => v * this.scale);
      ctx.strokeStyle = "#29b6f6";
      ctx.lineWidth = 2;
      ctx.strokeRect(x1, y1, x2 - x1, y2 - y1);
    }
    ctx.fillStyle = "rgba(0,0,0,.6)";
    ctx.fillRect(0, this.canvas.height - 18, 190, 18);
    ctx.fillStyle = "#fff";
    ctx.font = "12px monospace";
    const label = `frame ${frame}${atKey ? " (keyframe)" : ""} ${this.playing ? "▶" : "❚❚"}`;
    ctx.fillText(label, 4, this.canvas.height - 5);
    this.canvas.dataset.frame = String(frame);
    document.getElementById("player-info").textContent =
      `second ${this.sel.second}: frames ${this.first}–${this.last} around keyframe ${this.key}`;
  }

  point(e) {
    const r = this.canvas.getBoundingClientRect();
    return [(e.clientX - r.left) / this.scale, (e.clientY - r.top) / this.scale];
  }

  down(e) {
    if (!this.doc) return;
    const [x, y] = this.point(e);
    if (this.drawing) {
      this.drag = { kind: "draw", from: [x, y], box: null };
      return;
    }
    const here = this.doc.boxes.filter((b) => b.second === this.sel.second);
    const sel = here.find((b) => b.person === this.sel.person);
    const near = (b) => Math.abs(x - b.box[2]) * this.scale < HANDLE && Math.abs(y - b.box[3]) * this.scale < HANDLE;
    const inside = (b) => x >= b.box[0] && x <= b.box[2] && y >= b.box[1] && y <= b.box[3];
    if (sel && (near(sel) || inside(sel))) {
      this.drag = { kind: near(sel) ? "resize" : "move", person: sel.person, from: [x, y], orig: sel.box, box: null };
      return;
    }
    const hit = here.filter(inside).sort((a, b) => area(a.box) - area(b.box))[0];
    if (hit) this.cb.onSelect(hit.person);
  }

  moveTo(e) {
    if (!this.drag) return;
    const [x, y] = this.point(e);
    const [fx, fy] = this.drag.from;
    if (this.drag.kind === "draw") {
      this.drag.box = [Math.min(fx, x), Math.min(fy, y), Math.max(fx, x), Math.max(fy, y)];
    } else if (this.drag.kind === "move") {
      const [x1, y1, x2, y2] = this.drag.orig;
      this.drag.box = [x1 + x - fx, y1 + y - fy, x2 + x - fx, y2 + y - fy];
    } else {
      const [x1, y1] = this.drag.orig;
      this.drag.box = [x1, y1, Math.max(x1 + 2, x), Math.max(y1 + 2, y)];
    }
    this.paint();
  }

  up() {
    const drag = this.drag;
    this.drag = null;
    if (!drag || !drag.box) return;
    const box = drag.box.map((v) => Math.round(v * 10) / 10);
    if (drag.kind === "draw") {
      this.cancelDraw();
      this.cb.onDraw(this.sel.second, box);
    } else {
      this.cb.onMove(drag.person, this.sel.second, box);
    }
  }
}

function area([x1, y1, x2, y2]) {
  return (x2 - x1) * (y2 - y1);
}
