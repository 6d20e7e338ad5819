// The latent space of a model with an inference network: the encoded test set as points
// coloured by digit (the 2-D latent itself, else its first two principal components), the image
// decoded under the cursor (at most one request in flight), an interpolation strip between two
// picked points, and for a 2-D VAE its manifold with the cursor marked on it.

import { Latest, Throttled, getImage, getJSON, query, runUrl } from "../api.js";
import { runSelect } from "../controls.js";
import { commandBox, fill, fmt, h, loadImage, noticeSlot, perFrame } from "../dom.js";
import { curlCommand, params, supports, update } from "../state.js";
import { politely } from "./samples.js";

// Tableau 10: ten colours told apart by most readers, the digit's colour in every view.
export const DIGIT_COLOURS = [
  "#4e79a7",
  "#f28e2b",
  "#e15759",
  "#76b7b2",
  "#59a14f",
  "#edc948",
  "#b07aa1",
  "#ff9da7",
  "#9c755f",
  "#79706e",
];
const SIZE = 440; // the plane's side in CSS pixels
const DECODED_SIZE = 200; // about this many CSS pixels wide, in whole multiples of the picture

export class LatentView {
  constructor(ctx) {
    this.ctx = ctx;
    this.latest = new Latest();
    this.strip = new Latest();
    this.runId = null;
    this.cursor = null;
    this.decoder = new Throttled(
      ([x, y]) => getImage(runUrl(this.run.id, `/decode.png${query({ x: round(x), y: round(y) })}`)),
      (result, [x, y]) => this.showDecoded(result, x, y),
      (err) => this.notices.show(politely(err, "Could not decode this point")),
    );
  }

  mount(root) {
    this.root = root;
  }

  update(p) {
    const candidates = this.ctx.runs.filter((r) => supports(r, "latent"));
    const run = this.ctx.byId.get(p.run);
    if (!candidates.length) {
      fill(
        this.root,
        h("div", { class: "view-head" }, h("h1", {}, "Latent space")),
        h(
          "div",
          { class: "card empty" },
          h(
            "p",
            {},
            "None of the served runs has an inference network (a VAE or an autoencoder): there is no latent space to show.",
          ),
        ),
      );
      return;
    }
    if (!run || !supports(run, "latent")) {
      update({ run: candidates[0].id }, { replace: true });
      return;
    }
    this.p = p;
    if (run.id !== this.runId) {
      this.run = run;
      this.runId = run.id;
      this.build(run, candidates);
      this.loadPoints();
    } else {
      this.drawPlane();
      this.loadStrip();
    }
  }

  build(run, candidates) {
    this.notices = noticeSlot();
    this.canvas = h(
      "canvas",
      {
        class: "plane",
        "data-testid": "latent-plane",
        width: SIZE,
        height: SIZE,
        tabindex: 0,
        "aria-label": "latent plane: move the pointer or the arrow keys to decode, click or Enter to pick A and B",
      },
    );
    this.decoded = h(
      "img",
      { class: "pixelated decoded", alt: "image decoded under the cursor", "data-testid": "decoded" },
    );
    this.coords = h("div", { class: "coords mono", "data-testid": "coords" }, "move over the plane");
    this.stripImg = h(
      "img",
      { class: "pixelated strip", alt: "interpolation", "data-testid": "strip", hidden: true },
    );
    this.stripNote = h("p", { class: "muted" }, "Click the plane to pick A, click again for B.");
    this.manifold = null;
    this.command = commandBox();
    this.axes = h("div", { class: "axes muted" });
    const mode = h(
      "div",
      { class: "segmented", role: "radiogroup", "aria-label": "interpolation" },
      ["linear", "spherical"].map((m) =>
        h(
          "button",
          {
            type: "button",
            role: "radio",
            "aria-checked": String((this.p.mode ?? "linear") === m),
            "data-mode": m,
            onclick: () => update({ mode: m }),
          },
          m,
        ),
      ),
    );
    this.modeButtons = mode;
    const side = [
      h("div", { class: "card decoded-card" }, h("h2", {}, "Decoded"), this.decoded, this.coords),
    ];
    if (supports(run, "manifold")) {
      // the marker needs latent.json's manifold coordinates; the picture comes on its own
      this.manifoldImg = h(
        "img",
        { class: "pixelated manifold", alt: "the learned manifold", "data-testid": "manifold" },
      );
      this.marker = h("div", { class: "marker", hidden: true });
      this.manifold = h(
        "div",
        { class: "card manifold-card" },
        h("h2", {}, "Manifold"),
        h("div", { class: "manifold-frame" }, this.manifoldImg, this.marker),
        h(
          "p",
          { class: "muted small" },
          "The decoder's mean over a 20 × 20 grid of z = Φ⁻¹(u); the ring is the cursor.",
        ),
      );
      getImage(runUrl(run.id, "/manifold.png"))
        .then(({ url }) => (this.manifoldImg.src = url))
        .catch((err) => this.notices.show(politely(err, "Could not read the manifold")));
    }
    fill(
      this.root,
      h(
        "div",
        { class: "view-head" },
        h("h1", {}, "Latent space"),
        h(
          "p",
          { class: "lede" },
          "The test set encoded, one dot per image coloured by its digit. Move over the plane to decode that point; click twice to walk between two points.",
        ),
      ),
      h(
        "div",
        { class: "card toolbar" },
        runSelect(
          this.ctx.runs,
          run.id,
          (id) => update({ run: id, ax: null, ay: null, bx: null, by: null, z: null }),
          (r) => supports(r, "latent"),
        ),
        h("div", { class: "field" }, h("span", { class: "field-label" }, "Interpolation"), mode),
        h(
          "button",
          { class: "btn", type: "button", onclick: () => update({ ax: null, ay: null, bx: null, by: null }) },
          "Clear A and B",
        ),
      ),
      this.notices,
      h(
        "div",
        { class: "stage latent-stage" },
        h(
          "div",
          { class: "card plane-card" },
          h("div", { class: "plane-frame" }, this.canvas),
          this.axes,
          legend(),
        ),
        h("div", { class: "side-column" }, side, this.manifold),
      ),
      h("div", { class: "card strip-card" }, h("h2", {}, "From A to B"), this.stripNote, this.stripImg),
      this.command,
    );
    const move = perFrame((e) => this.hover(e));
    this.canvas.addEventListener("mousemove", move);
    this.canvas.addEventListener("click", (e) => this.pick(e));
    this.canvas.addEventListener("keydown", (e) => this.key(e));
    this.canvas.addEventListener("mouseleave", () => this.drawPlane());
  }

  async loadPoints() {
    const run = this.run;
    try {
      const { data } = await this.latest.run((signal) => getJSON(runUrl(run.id, "/latent.json"), { signal }));
      this.data = data;
      const [xmin, xmax, ymin, ymax] = data.bounds;
      this.bounds = xmax > xmin && ymax > ymin ? [xmin, xmax, ymin, ymax] : [
        xmin - 1,
        xmax + 1,
        ymin - 1,
        ymax + 1,
      ];
      const explained = data.explained ? ` (principal components of the codes, ${data.explained.map((e) => `${Math.round(e * 100)}%`).join(" and ")} of their variance)` : "";
      this.axes.textContent = `Horizontal ${data.axes[0]}, vertical ${data.axes[1]}${explained}; ${data.points.length.toLocaleString("en-US")} test images.`;
      this.canvas.dataset.ready = "true";
      this.drawPlane();
      const z = parsePair(this.p.z);
      if (z) this.decoder.push(z);
      this.loadStrip();
    } catch (err) {
      if (err.name !== "AbortError") this.notices.show(politely(err, "Could not encode the test set"));
    }
  }

  /** Plane coordinates of a mouse event. */
  toLatent(e) {
    const rect = this.canvas.getBoundingClientRect();
    const [xmin, xmax, ymin, ymax] = this.bounds;
    const fx = (e.clientX - rect.left) / rect.width;
    const fy = (e.clientY - rect.top) / rect.height;
    return [xmin + fx * (xmax - xmin), ymax - fy * (ymax - ymin)];
  }

  toCanvas([x, y]) {
    const [xmin, xmax, ymin, ymax] = this.bounds;
    return [((x - xmin) / (xmax - xmin)) * SIZE, ((ymax - y) / (ymax - ymin)) * SIZE];
  }

  hover(e) {
    if (!this.bounds) return;
    const z = this.toLatent(e);
    this.cursor = z;
    this.drawPlane();
    this.decoder.push(z);
  }

  pick(e) {
    if (this.bounds) this.pickAt(this.toLatent(e));
  }

  /** Arrow keys move the cursor (a fiftieth of the plane a press), Enter or space picks. */
  key(e) {
    if (!this.bounds) return;
    const [xmin, xmax, ymin, ymax] = this.bounds;
    const z = this.cursor ?? [(xmin + xmax) / 2, (ymin + ymax) / 2];
    const move = { ArrowLeft: [-1, 0], ArrowRight: [1, 0], ArrowUp: [0, 1], ArrowDown: [0, -1] }[e.key];
    if (move) {
      e.preventDefault();
      const x = Math.min(xmax, Math.max(xmin, z[0] + (move[0] * (xmax - xmin)) / 50));
      const y = Math.min(ymax, Math.max(ymin, z[1] + (move[1] * (ymax - ymin)) / 50));
      this.cursor = [x, y];
      this.drawPlane();
      this.decoder.push(this.cursor);
    } else if (e.key === "Enter" || e.key === " ") {
      e.preventDefault();
      this.pickAt(z);
    }
  }

  /** A, then B, then A again (B cleared): the ends of the interpolation. */
  pickAt(z) {
    const [x, y] = z.map(round);
    const p = params();
    if (p.ax === undefined || p.bx !== undefined) update({ ax: x, ay: y, bx: null, by: null });
    else update({ bx: x, by: y });
  }

  showDecoded({ url, command }, x, y) {
    if (this.decoded.src.startsWith("blob:")) URL.revokeObjectURL(this.decoded.src);
    this.decoded.src = url;
    loadImage(url).then((img) => {
      const zoom = Math.max(1, Math.floor(DECODED_SIZE / img.naturalWidth));
      this.decoded.style.width = `${img.naturalWidth * zoom}px`;
    });
    this.decoded.dataset.z = `${round(x)},${round(y)}`;
    this.coords.textContent = `${this.data.axes[0]} = ${fmt(x, 2)}, ${this.data.axes[1]} = ${fmt(y, 2)}`;
    this.command.set(
      command || curlCommand(
        runUrl(this.run.id, `/decode.png${query({ x: round(x), y: round(y) })}`),
        "decoded.png",
      ),
    );
    this.notices.clear();
    this.markManifold(x, y);
    update({ z: `${round(x)},${round(y)}` }, { replace: true, quiet: true });
  }

  /** The cursor on the manifold: cell (row r, column c) shows z = (z[c], z[steps - 1 - r]). */
  markManifold(x, y) {
    const m = this.data?.manifold;
    if (!this.manifold || !m) return;
    const W = this.run.image_shape[2];
    const H = this.run.image_shape[1];
    const steps = m.steps ?? m.z.length;
    const column = fractionalIndex(m.z, x);
    const row = steps - 1 - fractionalIndex(m.z, y);
    const fx = (2 + column * (W + 2) + W / 2) / (steps * (W + 2) + 2);
    const fy = (2 + row * (H + 2) + H / 2) / (steps * (H + 2) + 2);
    Object.assign(this.marker.style, { left: `${100 * clamp(fx)}%`, top: `${100 * clamp(fy)}%` });
    this.marker.hidden = false;
  }

  drawPlane() {
    if (!this.data) return;
    const ctx = setupCanvas(this.canvas);
    ctx.clearRect(0, 0, SIZE, SIZE);
    ctx.fillStyle = "#fbfcfe";
    ctx.fillRect(0, 0, SIZE, SIZE);
    this.drawAxes(ctx);
    ctx.globalAlpha = 0.7;
    for (const [x, y, digit] of this.data.points) {
      const [cx, cy] = this.toCanvas([x, y]);
      ctx.fillStyle = DIGIT_COLOURS[digit] ?? "#9aa0ad"; // digit -1: data without labels
      ctx.fillRect(cx - 1.5, cy - 1.5, 3, 3);
    }
    ctx.globalAlpha = 1;
    const p = this.p;
    const a = pairOf(p.ax, p.ay);
    const b = pairOf(p.bx, p.by);
    if (a && b) {
      ctx.strokeStyle = "#1c2030";
      ctx.setLineDash([5, 4]);
      ctx.lineWidth = 1.5;
      ctx.beginPath();
      ctx.moveTo(...this.toCanvas(a));
      ctx.lineTo(...this.toCanvas(b));
      ctx.stroke();
      ctx.setLineDash([]);
    }
    if (a) pin(ctx, this.toCanvas(a), "A");
    if (b) pin(ctx, this.toCanvas(b), "B");
    if (this.cursor) {
      const [cx, cy] = this.toCanvas(this.cursor);
      ctx.strokeStyle = "#1c2030";
      ctx.lineWidth = 2;
      ctx.beginPath();
      ctx.arc(cx, cy, 7, 0, 2 * Math.PI);
      ctx.stroke();
    }
  }

  drawAxes(ctx) {
    const [xmin, xmax, ymin, ymax] = this.bounds;
    ctx.strokeStyle = "#d9dde7";
    ctx.lineWidth = 1;
    if (xmin < 0 && xmax > 0) line(ctx, this.toCanvas([0, ymin]), this.toCanvas([0, ymax]));
    if (ymin < 0 && ymax > 0) line(ctx, this.toCanvas([xmin, 0]), this.toCanvas([xmax, 0]));
  }

  async loadStrip() {
    const p = this.p;
    const a = pairOf(p.ax, p.ay);
    const b = pairOf(p.bx, p.by);
    for (const button of this.modeButtons.children) button.setAttribute(
      "aria-checked",
      String(button.dataset.mode === (p.mode ?? "linear")),
    );
    if (!(a && b)) {
      this.stripImg.hidden = true;
      this.stripNote.textContent = a ? `A = (${fmt(a[0], 2)}, ${fmt(a[1], 2)}). Click again to pick B.` : "Click the plane to pick A, click again for B.";
      return;
    }
    const q = query({ ax: a[0], ay: a[1], bx: b[0], by: b[1], steps: 10, mode: p.mode ?? "linear" });
    try {
      const { url, command } = await this.strip.run(
        (signal) => getImage(runUrl(this.run.id, `/interpolate.png${q}`), { signal }),
      );
      const img = await loadImage(url);
      this.stripImg.src = url;
      this.stripImg.style.width = `${Math.min(img.naturalWidth * 2, 1100)}px`;
      this.stripImg.hidden = false;
      this.stripNote.textContent = `${p.mode ?? "linear"} interpolation in 10 steps from A = (${fmt(a[0], 2)}, ${fmt(a[1], 2)}) to B = (${fmt(b[0], 2)}, ${fmt(b[1], 2)}).`;
      this.command.set(
        command || curlCommand(runUrl(this.run.id, `/interpolate.png${q}`), "interpolation.png"),
      );
    } catch (err) {
      if (err.name !== "AbortError") this.notices.show(politely(err, "Could not interpolate"));
    }
  }
}

function legend() {
  return h(
    "div",
    { class: "legend" },
    DIGIT_COLOURS.map(
      (c, d) => h(
        "span",
        { class: "legend-item" },
        h("span", { class: "swatch", style: { background: c } }),
        String(d),
      ),
    ),
  );
}

/** A canvas sized for the screen's pixel density, drawn in CSS pixels. */
function setupCanvas(canvas) {
  const ratio = window.devicePixelRatio || 1;
  if (canvas.width !== SIZE * ratio) {
    canvas.width = SIZE * ratio;
    canvas.height = SIZE * ratio;
    canvas.style.width = `${SIZE}px`;
    canvas.style.height = `${SIZE}px`;
  }
  const ctx = canvas.getContext("2d");
  ctx.setTransform(ratio, 0, 0, ratio, 0, 0);
  return ctx;
}

function pin(ctx, [x, y], label) {
  ctx.fillStyle = "#1c2030";
  ctx.beginPath();
  ctx.arc(x, y, 9, 0, 2 * Math.PI);
  ctx.fill();
  ctx.fillStyle = "#fff";
  ctx.font = "bold 11px system-ui, sans-serif";
  ctx.textAlign = "center";
  ctx.textBaseline = "middle";
  ctx.fillText(label, x, y + 0.5);
}

function line(ctx, [x1, y1], [x2, y2]) {
  ctx.beginPath();
  ctx.moveTo(x1, y1);
  ctx.lineTo(x2, y2);
  ctx.stroke();
}

function round(v) {
  return Math.round(v * 1000) / 1000;
}

function pairOf(x, y) {
  if (x === undefined || y === undefined || x === null || y === null) return null;
  const a = [Number(x), Number(y)];
  return a.every(Number.isFinite) ? a : null;
}

function parsePair(text) {
  if (!text) return null;
  const [x, y] = String(text).split(",");
  return pairOf(x, y);
}

/** Where v falls among ascending coordinates zs, as a fractional index (linear between them). */
export function fractionalIndex(zs, v) {
  if (v <= zs[0]) return 0;
  for (let i = 1; i < zs.length; i++) {
    if (v <= zs[i]) return i - 1 + (v - zs[i - 1]) / (zs[i] - zs[i - 1]);
  }
  return zs.length - 1;
}

function clamp(f) {
  return Math.min(1, Math.max(0, f));
}
