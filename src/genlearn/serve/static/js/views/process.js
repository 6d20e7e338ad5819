// Processes on one play/scrub timeline: DRAW's canvas step by step with its attention window,
// alignDRAW's canvas with each caption word shaded by its alignment at that step, LAPGAN's
// pyramid coarse to fine, and a Gibbs chain of an RBM, DBN or DBM from a chosen start.

import { Latest, getJSON, query, runUrl } from "../api.js";
import {
  captionBox,
  labelPicker,
  labelsText,
  numberSelect,
  parseLabels,
  runSelect,
  seedControl,
  temperatureControl,
} from "../controls.js";
import { commandBox, fill, h, loadImage, noticeSlot } from "../dom.js";
import { gridLayout, zoom } from "../grid.js";
import {
  curlCommand,
  processKind,
  sampleCommand,
  supports,
  takesCaptions,
  takesLabels,
  takesTemperature,
  update,
} from "../state.js";
import { captionProblemOf, politely } from "./samples.js";

const TITLES = {
  canvas: [
    "DRAW, step by step",
    "The canvas after each of the T steps; the rectangle is where the write attention puts its patch.",
  ],
  alignment: [
    "alignDRAW, step by step",
    "The canvas after each step; each word of the caption is shaded by how much the model attends to it at that step.",
  ],
  pyramid: [
    "LAPGAN, coarse to fine",
    "From the coarsest level up: each level doubles the resolution and adds a residual generated from the image below it.",
  ],
  gibbs: [
    "A Gibbs chain",
    "Alternating Gibbs sampling from a chosen start, the visible units' probabilities after each kept step.",
  ],
};

const HOW_TO_READ = {
  canvas: "Red: the write window at this step (its part on the image; a window larger than the image tints all of it). Drag the slider or press play.",
  alignment: "Each word is shaded by the weight the alignment gives it at this step (darker: more). Click another image to see its alignment.",
  pyramid: "Frame by frame from the coarsest level to the finest: each level's images, and between two levels the residual that refines them (red adds intensity, blue removes it, white: nothing).",
  gibbs: "Each frame: the visible units' probabilities after that many Gibbs steps from the chosen start.",
};

/** What the timeline asks the server for, from the URL's parameters (nothing the server does not take). */
function processRequest(run, kind, p) {
  if (kind === "gibbs") {
    return {
      n: Number(p.n) || 16,
      seed: Number(p.seed) || 0,
      start: p.start ?? "noise",
      steps: Number(p.steps) || 100,
      every: Number(p.every) || 5,
      each: 1,
    };
  }
  const labels = takesLabels(run) ? parseLabels(p.labels) : [];
  const caption = takesCaptions(run) ? (p.caption ?? run.conditions.captions.examples?.[0] ?? "").trim() : "";
  const r = {
    n: Number(p.n) || (caption ? 4 : 16),
    seed: Number(p.seed) || 0,
    labels: labels.length ? labelsText(labels) : null,
    caption: caption || null,
    each: 1,
  };
  if (labels.length) {
    r.each = Number(p.per) || 4;
    r.n = labels.length * r.each;
  } else if (caption) r.each = r.n;
  if (takesTemperature(run) && p.temperature !== undefined) r.temperature = Number(p.temperature);
  return r;
}

export class ProcessView {
  constructor(ctx) {
    this.ctx = ctx;
    this.latest = new Latest();
    this.runId = null;
    this.key = null;
    this.timer = null;
    this.frame = 0;
    this.selected = 0;
  }

  mount(root) {
    this.root = root;
  }

  destroy() {
    this.pause();
  }

  update(p) {
    const candidates = this.ctx.runs.filter((r) => supports(r, "process"));
    if (!candidates.length) {
      fill(
        this.root,
        h("div", { class: "view-head" }, h("h1", {}, "Processes")),
        h(
          "div",
          { class: "card empty" },
          h(
            "p",
            {},
            "None of the served runs draws step by step (DRAW, alignDRAW, LAPGAN) or runs a Gibbs chain (RBM, DBN, DBM).",
          ),
        ),
      );
      return;
    }
    const run = this.ctx.byId.get(p.run);
    if (!run || !supports(run, "process")) {
      update({ run: candidates[0].id }, { replace: true });
      return;
    }
    this.p = p;
    this.kind = processKind(run);
    this.request = processRequest(run, this.kind, p);
    if (run.id !== this.runId) {
      this.run = run;
      this.runId = run.id;
      this.build(run);
    } else {
      this.seed.set(this.request.seed);
      this.caption?.set(p.caption ?? this.request.caption ?? "");
    }
    this.load();
  }

  build(run) {
    const kind = this.kind;
    const r = this.request;
    const [title, lede] = TITLES[kind];
    this.notices = noticeSlot();
    this.command = commandBox();
    this.canvas = h("canvas", { class: "pixelated process-canvas", "data-testid": "process-canvas" });
    this.words = h("div", { class: "alignment-words", "data-testid": "alignment-words" });
    this.slider = h(
      "input",
      {
        type: "range",
        min: 0,
        max: 0,
        value: 0,
        step: 1,
        class: "scrubber",
        "data-testid": "scrubber",
        "aria-label": "step",
      },
    );
    this.counter = h("span", { class: "counter mono", "data-testid": "step-counter" }, "—");
    this.play = h(
      "button",
      { class: "btn btn-primary play", type: "button", "data-testid": "play", "aria-label": "play" },
      "▶ Play",
    );
    this.speed = h(
      "select",
      { class: "input small" },
      [4, 8, 16, 30].map((fps) => h("option", { value: fps, selected: fps === 8 }, `${fps} steps/s`)),
    );
    this.slider.addEventListener("input", () => {
      this.pause();
      this.show(Number(this.slider.value));
    });
    this.slider.addEventListener(
      "change",
      () => update({ step: this.slider.value }, { replace: true, quiet: true }),
    );
    this.play.addEventListener("click", () => (this.timer ? this.pause() : this.start()));
    this.canvas.addEventListener("click", (e) => this.selectImage(e));

    const controls = [
      runSelect(
        this.ctx.runs,
        run.id,
        (id) => update({ run: id, labels: null, caption: null, n: null, step: null, start: null }),
        (x) => supports(x, "process"),
      ),
      (this.seed = seedControl(r.seed, (seed) => update({ seed, step: null }))),
      !r.caption && !r.labels ? numberSelect(
        "Images",
        r.n,
        [1, 4, 9, 16],
        (n) => update({ n, step: null }),
        "n",
      ) : null,
      takesTemperature(run) ? temperatureControl(
        r.temperature ?? 1,
        true,
        (temperature) => update({ temperature, step: null }),
      ) : null,
    ];
    if (kind === "gibbs") {
      const start = h(
        "select",
        {
          class: "input",
          "data-testid": "gibbs-start",
          onchange: () => update({ start: start.value, step: null }),
        },
        ["noise", "data", "zeros"].map((s) => h("option", { value: s, selected: s === r.start }, s)),
      );
      controls.push(h("label", { class: "field" }, h("span", { class: "field-label" }, "Start from"), start));
      controls.push(
        numberSelect("Steps", r.steps, [20, 50, 100, 200], (steps) => update({ steps, step: null })),
      );
      controls.push(
        numberSelect("A frame every", r.every, [1, 2, 5, 10], (every) => update({ every, step: null })),
      );
    }
    this.caption = null;
    let conditions = null;
    if (takesCaptions(run)) {
      this.caption = captionBox(
        run,
        r.caption ?? "",
        (caption, push) => update({ caption, step: null }, { replace: !push }),
      );
      conditions = h("div", { class: "card conditions" }, this.caption);
    } else if (takesLabels(run)) {
      conditions = h(
        "div",
        { class: "card conditions" },
        labelPicker(
          run,
          parseLabels(this.p.labels),
          r.each > 1 ? r.each : 4,
          (labels, per) => update({ labels: labels.length ? labelsText(labels) : null, per, step: null }),
        ),
      );
    }
    fill(
      this.root,
      h("div", { class: "view-head" }, h("h1", {}, title), h("p", { class: "lede" }, lede)),
      h("div", { class: "card toolbar" }, controls),
      this.notices,
      h(
        "div",
        { class: "card process-card" },
        h("div", { class: "process-frame loading" }, this.canvas),
        h(
          "div",
          { class: "process-side" },
          this.counter,
          h("div", { class: "timeline" }, this.play, this.speed),
          this.slider,
          kind === "alignment" ? this.words : null,
          h("p", { class: "muted small" }, HOW_TO_READ[kind]),
        ),
      ),
      conditions,
      this.command,
    );
  }

  async load() {
    const run = this.run;
    const r = this.request;
    const q = query(
      {
        n: r.n,
        seed: r.seed,
        temperature: r.temperature === 1 ? null : r.temperature,
        labels: r.labels,
        caption: r.caption,
        start: r.start,
        steps: r.steps,
        every: r.every,
      },
    );
    const key = `${run.id}${q}`;
    if (key === this.key || (r.caption && captionProblemOf(run, r.caption))) return;
    this.key = key;
    this.pause();
    const frame = this.canvas.parentElement;
    frame.classList.add("loading");
    try {
      const { data, command } = await this.latest.run(
        (signal) => getJSON(runUrl(run.id, `/process.json${q}`), { signal }),
      );
      const images = await Promise.all(data.frames.map(loadImage));
      this.data = data;
      this.images = images;
      this.notices.clear();
      const widest = Math.max(...images.map((img) => img.naturalWidth));
      this.layout = data.layout ? gridLayout(
        r.n,
        run.image_shape,
        images[0].naturalWidth,
        r.each,
        data.layout,
      ) : null;
      this.zoom = zoom(widest, 520, 4);
      this.selected = Math.min(this.selected, r.n - 1);
      this.slider.max = String(images.length - 1);
      this.command.set(command || this.fallbackCommand(q));
      this.show(Math.min(Number(this.p.step) || 0, images.length - 1));
      this.canvas.dataset.ready = "true";
    } catch (err) {
      if (err.name === "AbortError") return;
      this.key = null;
      this.notices.show(politely(err, "Could not run this process"));
    } finally {
      frame.classList.remove("loading");
    }
  }

  fallbackCommand(q) {
    if (this.kind === "gibbs") return curlCommand(runUrl(this.run.id, `/process.json${q}`), "chain.json");
    return sampleCommand(this.run, { ...this.request, out: "process.gif" });
  }

  /** Frame t: its picture, then DRAW's windows or alignDRAW's word shades on top. */
  show(t) {
    this.frame = t;
    this.slider.value = String(t);
    const img = this.images[t];
    if (this.canvas.width !== img.naturalWidth || this.canvas.height !== img.naturalHeight) {
      this.canvas.width = img.naturalWidth;
      this.canvas.height = img.naturalHeight;
      this.canvas.style.width = `${img.naturalWidth * this.zoom}px`;
    }
    const ctx = this.canvas.getContext("2d");
    ctx.imageSmoothingEnabled = false;
    ctx.clearRect(0, 0, this.canvas.width, this.canvas.height);
    ctx.drawImage(img, 0, 0);
    this.drawWindows(ctx, t);
    this.drawSelection(ctx);
    this.shadeWords(t);
    this.counter.textContent = `${this.data.labels?.[t] ?? `frame ${t + 1}`} · ${t + 1} / ${this.images.length}`;
    this.canvas.dataset.step = String(t);
  }

  /** DRAW's write window of each image at this step: [x0, y0, x1, y1] in pixels of one image. */
  drawWindows(ctx, t) {
    const windows = this.data.windows?.[t];
    const L = this.layout;
    if (!windows || !L) return;
    ctx.lineWidth = Math.max(1, Math.round(L.scale * 0.75));
    ctx.strokeStyle = "#e15759";
    ctx.fillStyle = "rgba(225, 87, 89, 0.16)";
    windows.forEach(([x0, y0, x1, y1], i) => {
      if (i >= L.n) return;
      // the window's part on this image: tinted, its edges drawn where they fall on the image
      const box = L.cell(i);
      ctx.save();
      ctx.beginPath();
      ctx.rect(box.x, box.y, box.w, box.h);
      ctx.clip();
      const rect = [box.x + x0 * L.scale, box.y + y0 * L.scale, (x1 - x0) * L.scale, (y1 - y0) * L.scale];
      ctx.fillRect(...rect);
      ctx.strokeRect(...rect);
      ctx.restore();
    });
  }

  drawSelection(ctx) {
    if (this.kind !== "alignment" || !this.layout || this.layout.n < 2) return;
    const box = this.layout.cell(this.selected);
    ctx.strokeStyle = "#4f46e5";
    ctx.lineWidth = 2;
    ctx.strokeRect(box.x - 1, box.y - 1, box.w + 2, box.h + 2);
  }

  /** alignDRAW: each word of the selected image's caption shaded by its weight at step t. */
  shadeWords(t) {
    if (this.kind !== "alignment") return;
    const ws = this.data.words?.[this.selected] ?? [];
    const weights = this.data.alignment?.[t]?.[this.selected] ?? [];
    const top = Math.max(...weights, 1e-9);
    fill(
      this.words,
      h(
        "span",
        { class: "muted small" },
        this.layout && this.layout.n > 1 ? `attention of image ${this.selected + 1} (click another):` : "attention:",
      ),
      ws.map((w, i) => {
        const weight = weights[i] ?? 0;
        const a = weight / top;
        return h(
          "span",
          {
            class: "word",
            style: {
              background: `rgba(79, 70, 229, ${0.08 + 0.82 * a})`,
              color: a > 0.5 ? "#fff" : "#1c2030",
            },
            title: `${(weight * 100).toFixed(1)}%`,
            "data-weight": weight.toFixed(4),
          },
          w,
        );
      }),
    );
  }

  selectImage(e) {
    if (this.kind !== "alignment" || !this.layout) return;
    const rect = this.canvas.getBoundingClientRect();
    const x = ((e.clientX - rect.left) / rect.width) * this.canvas.width;
    const y = ((e.clientY - rect.top) / rect.height) * this.canvas.height;
    for (let i = 0; i < this.layout.n; i++) {
      const b = this.layout.cell(i);
      if (x >= b.x && x < b.x + b.w && y >= b.y && y < b.y + b.h) {
        this.selected = i;
        this.show(this.frame);
      }
    }
  }

  start() {
    if (this.frame >= this.images.length - 1) this.show(0);
    this.play.textContent = "❚❚ Pause";
    this.play.setAttribute("aria-label", "pause");
    this.timer = setInterval(() => {
      this.show(this.frame + 1);
      if (this.frame >= this.images.length - 1) this.pause(); // the last frame stays
    }, 1000 / Number(this.speed.value));
  }

  pause() {
    clearInterval(this.timer);
    this.timer = null;
    if (this.play) {
      this.play.textContent = "▶ Play";
      this.play.setAttribute("aria-label", "play");
    }
  }
}

