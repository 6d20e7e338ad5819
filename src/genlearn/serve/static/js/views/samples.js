// The samples view: a grid from one run with its seed, temperature, labels or caption, and
// beside each sample what the model says of it (its score) and its nearest training image.

import { ApiError, Latest, getImage, getJSON, query, runUrl } from "../api.js";
import {
  captionBox,
  captionProblem,
  labelPicker,
  labelsText,
  numberSelect,
  parseLabels,
  runSelect,
  seedControl,
  temperatureControl,
} from "../controls.js";
import { commandBox, fill, fmt, h, loadImage, noticeSlot } from "../dom.js";
import { gridLayout, zoom } from "../grid.js";
import {
  hasImages,
  sampleCommand,
  supports,
  takesCaptions,
  takesLabels,
  takesTemperature,
  update,
} from "../state.js";

const N_CHOICES = [16, 36, 64, 100, 256];
const CAPTION_N = [4, 8];
const SCORED_AT_MOST = 64; // scores.json's cap on n

/** What a grid request asks for, from the URL's parameters: {query, each, labels, caption}. */
export function sampleRequest(run, p) {
  const labels = takesLabels(run) ? parseLabels(p.labels) : [];
  const per = Number(p.per) || 8;
  const caption = takesCaptions(run) ? (p.caption ?? "").trim() : "";
  const seed = Number(p.seed) || 0;
  const temperature = takesTemperature(run) && p.temperature !== undefined ? Number(p.temperature) : null;
  if (labels.length) {
    return {
      n: labels.length * per,
      each: per,
      seed,
      temperature,
      labels: labelsText(labels),
      caption: null,
      per,
    };
  }
  if (caption) {
    const n = CAPTION_N.includes(Number(p.n)) ? Number(p.n) : 8;
    return { n, each: n, seed, temperature, labels: null, caption, per };
  }
  const n = Number(p.n) || (hasImages(run) ? 64 : 256);
  return { n, each: 1, seed, temperature, labels: null, caption: null, per };
}

export function requestQuery(r) {
  return query(
    {
      n: r.n,
      seed: r.seed,
      temperature: r.temperature === 1 ? null : r.temperature,
      labels: r.labels,
      caption: r.caption,
    },
  );
}

export class SamplesView {
  constructor(ctx) {
    this.ctx = ctx;
    this.grid = new Latest();
    this.scores = new Latest();
    this.runId = null;
    this.key = null;
    this.scoresKey = null;
    this.scoreData = null;
    this.pinned = null;
  }

  mount(root) {
    this.controls = h("div", { class: "card toolbar" });
    this.conditions = h("div", { class: "card conditions", hidden: true });
    this.picture = h("img", { class: "pixelated grid-img", alt: "samples", "data-testid": "samples-grid" });
    this.cells = h("div", { class: "cells" });
    this.frame = h("div", { class: "picture loading" }, this.picture, this.cells);
    this.inspector = h("aside", { class: "card inspector", "data-testid": "inspector" });
    this.notices = noticeSlot();
    this.info = noticeSlot();
    this.command = commandBox();
    this.summary = h("div", { class: "score-summary muted", "data-testid": "score-summary" });
    root.append(
      h(
        "div",
        { class: "view-head" },
        h("h1", {}, "Samples"),
        h(
          "p",
          { class: "lede" },
          "Draw from a model: the same seed always gives the same picture, byte for byte what the command below writes.",
        ),
      ),
      this.info,
      this.controls,
      this.conditions,
      this.notices,
      h(
        "div",
        { class: "stage" },
        h("div", { class: "card picture-card" }, this.frame, this.summary),
        this.inspector,
      ),
      this.command,
    );
  }

  update(p) {
    const run = this.ctx.byId.get(p.run) ?? this.ctx.runs[0];
    if (!run) {
      fill(
        this.controls,
        h("p", { class: "muted" }, "No run is served: train one (make demo) and start genlearn serve again."),
      );
      return;
    }
    if (p.run && !this.ctx.byId.has(p.run)) {
      update({ run: run.id }, { replace: true, quiet: true });
      this.info.show(`No run “${p.run}” is served here; showing ${run.id}.`, "info");
    } else if (p.run) this.info.clear();
    this.run = run;
    this.request = sampleRequest(run, p);
    this.params = p;
    if (run.id !== this.runId) {
      this.runId = run.id;
      this.scoreData = null;
      this.buildControls(run, p);
    } else {
      this.seed.set(this.request.seed);
      this.caption?.set(p.caption ?? "");
      this.labelPicker && this.refreshLabels(run, p);
    }
    this.showScores = p.scores === "1" && supports(run, "scores");
    this.scoresToggle.checked = this.showScores;
    this.loadGrid();
  }

  buildControls(run, p) {
    const r = this.request;
    this.seed = seedControl(r.seed, (seed) => update({ seed }));
    this.scoresToggle = h(
      "input",
      {
        type: "checkbox",
        "data-testid": "scores-toggle",
        onchange: () => update({ scores: this.scoresToggle.checked ? "1" : null }),
      },
    );
    const nChoices = r.caption ? CAPTION_N : N_CHOICES;
    fill(
      this.controls,
      runSelect(
        this.ctx.runs,
        run.id,
        (id) => update({ run: id, labels: null, caption: null, n: null, temperature: null }),
      ),
      this.seed,
      takesTemperature(run) ? temperatureControl(
        r.temperature ?? 1,
        true,
        (temperature) => update({ temperature }),
      ) : null,
      r.labels ? null : numberSelect(
        "Samples",
        r.n,
        nChoices.includes(r.n) ? nChoices : [...nChoices, r.n].sort((a, b) => a - b),
        (n) => update({ n }),
        "n",
      ),
      supports(run, "scores")
        ? h(
          "label",
          {
            class: "toggle",
            title: "Show, beside each sample, the model's score of it and its nearest training image",
          },
          this.scoresToggle,
          h("span", {}, "Scores & nearest"),
        )
        : null,
    );
    this.caption = null;
    this.labelPicker = null;
    if (takesLabels(run)) this.refreshLabels(run, p);
    else if (takesCaptions(run)) {
      this.caption = captionBox(
        run,
        p.caption ?? "",
        (caption, push) => update({ caption, n: null }, { replace: !push }),
      );
      fill(this.conditions, this.caption);
      this.conditions.hidden = false;
    } else {
      this.conditions.hidden = true;
    }
  }

  refreshLabels(run, p) {
    this.labelPicker = labelPicker(run, parseLabels(p.labels), Number(p.per) || 8, (labels, per) =>
      update({ labels: labels.length ? labelsText(labels) : null, per: labels.length ? per : null }),
    );
    fill(this.conditions, this.labelPicker);
    this.conditions.hidden = false;
  }

  async loadGrid() {
    const run = this.run;
    const r = this.request;
    if (r.caption && captionProblemOf(run, r.caption)) return; // the caption box says why; nothing is sent
    const q = requestQuery(r);
    const key = `${run.id}${q}`;
    if (key !== this.key) {
      this.key = key;
      this.scoresKey = null;
      this.frame.classList.add("loading");
      this.frame.setAttribute("aria-busy", "true");
      try {
        const { url, command } = await this.grid.run(
          (signal) => getImage(runUrl(run.id, `/samples.png${q}`), { signal }),
        );
        this.notices.clear();
        const img = await loadImage(url);
        if (this.picture.src.startsWith("blob:")) URL.revokeObjectURL(this.picture.src);
        this.picture.src = url;
        this.picture.dataset.key = key;
        this.picture.style.width = `${img.naturalWidth * zoom(img.naturalWidth)}px`;
        this.layout = hasImages(run) ? gridLayout(r.n, run.image_shape, img.naturalWidth, r.each) : null;
        this.command.set(command || sampleCommand(run, { ...r, temperature: r.temperature ?? 1 }));
        this.buildCells();
      } catch (err) {
        if (err.name === "AbortError") return;
        this.key = null;
        this.notices.show(politely(err, "Could not draw these samples"));
      } finally {
        this.frame.classList.remove("loading");
        this.frame.removeAttribute("aria-busy");
      }
    }
    this.loadScores(q);
  }

  async loadScores(q) {
    if (!this.showScores) {
      this.summary.replaceChildren();
      this.inspect(null);
      return;
    }
    const key = `${this.run.id}${q}`;
    if (key === this.scoresKey) return;
    this.scoresKey = key;
    this.scoreData = null;
    if (this.request.n > SCORED_AT_MOST) {
      this.summary.textContent = `Scores and nearest images are given for grids of up to ${SCORED_AT_MOST} samples; choose fewer samples to see them.`;
      return;
    }
    this.summary.textContent = "Scoring the samples…";
    try {
      const { data } = await this.scores.run(
        (signal) => getJSON(runUrl(this.run.id, `/scores.json${q}`), { signal }),
      );
      this.scoreData = data.samples ?? [];
      this.scoreAbout = data.score ?? null;
      this.summarise();
      this.inspect(this.pinned ?? 0);
    } catch (err) {
      if (err.name === "AbortError") return;
      this.scoresKey = null;
      this.summary.replaceChildren();
      this.notices.show(politely(err, "Could not score these samples"));
    }
  }

  summarise() {
    const values = this.scoreData.map((s) => s.score?.value).filter((v) => typeof v === "number");
    const first = this.scoreData.find((s) => s.score)?.score;
    if (!values.length || !first) {
      this.summary.textContent = "This model gives no score of its own; hover a sample for its nearest training image.";
      return;
    }
    const mean = values.reduce((a, b) => a + b, 0) / values.length;
    const about = this.scoreAbout?.about ? ` ${this.scoreAbout.about}` : "";
    this.summary.textContent = `${first.name}: mean ${fmt(mean)} ${first.unit ?? ""} over ${values.length} samples (${first.better === "lower" ? "lower" : "higher"} is better). Hover a sample for its own.${about}`;
  }

  buildCells() {
    this.cells.replaceChildren();
    const layout = this.layout;
    if (!layout) return;
    for (let i = 0; i < layout.n; i++) {
      const b = layout.cell(i);
      const cell = h("button", {
        class: "cell",
        type: "button",
        "aria-label": `sample ${i + 1}`,
        "data-index": i,
        style: {
          left: pct(b.x, layout.width),
          top: pct(b.y, layout.height),
          width: pct(b.w, layout.width),
          height: pct(b.h, layout.height),
        },
      });
      cell.addEventListener("mouseenter", () => this.inspect(i));
      cell.addEventListener("focus", () => this.inspect(i));
      cell.addEventListener("click", () => {
        this.pinned = this.pinned === i ? null : i;
        this.cells.querySelectorAll(".cell").forEach(
          (c) => c.classList.toggle("pinned", Number(c.dataset.index) === this.pinned),
        );
        if (!this.showScores) update({ scores: "1" });
      });
      this.cells.append(cell);
    }
    this.cells.addEventListener("mouseleave", () => this.inspect(this.pinned));
    this.inspect(this.pinned);
  }

  /** Show sample i beside the grid: the sample, its score and its nearest training image. */
  inspect(i) {
    const run = this.run;
    if (i === null || i === undefined || !this.layout || i >= this.layout.n) {
      fill(
        this.inspector,
        h("h2", {}, "What the model says"),
        h(
          "p",
          { class: "muted" },
          this.showScores ? "Hover or focus a sample to see its score and its nearest training image." : "Turn on “Scores & nearest” and hover a sample: its score under the model and the training image closest to it.",
        ),
      );
      return;
    }
    const s = this.scoreData?.[i];
    const r = this.request;
    const condition = r.labels ? `label ${r.labels.split(",")[Math.floor(i / r.each)]}` : r.caption ? `“${r.caption}”` : null;
    fill(
      this.inspector,
      h("h2", {}, `Sample ${i + 1}`, condition ? h("span", { class: "muted" }, ` · ${condition}`) : null),
      h(
        "div",
        { class: "pair" },
        h("figure", {}, crop(this.picture, this.layout.cell(i)), h("figcaption", {}, "sample")),
        s?.nearest ? h(
          "figure",
          {},
          h(
            "img",
            {
              class: "pixelated",
              src: s.nearest.image,
              alt: "nearest training image",
              "data-testid": "nearest",
              style: { width: `${Math.round(this.layout.cell(i).w * 2)}px` },
            },
          ),
          h("figcaption", {}, `nearest training image #${s.nearest.index}`),
        ) : null,
      ),
      s ? scoreLines(s) : h("p", { class: "muted" }, this.showScores ? "Scoring…" : "Scores are off."),
    );
  }
}

function scoreLines(s) {
  return h(
    "dl",
    { class: "figures" },
    s.score ? [
      h("dt", {}, s.score.name),
      h(
        "dd",
        { "data-testid": "score" },
        `${fmt(s.score.value)} ${s.score.unit ?? ""}`,
        h(
          "span",
          { class: "better", title: `${s.score.better ?? "higher"} is better` },
          s.score.better === "lower" ? " ↓" : " ↑",
        ),
      ),
    ] : [h("dt", {}, "score"), h("dd", { class: "muted" }, "this model gives none")],
    s.nearest ? [
      h("dt", {}, "distance to nearest"),
      h("dd", { "data-testid": "distance" }, fmt(s.nearest.distance)),
    ] : null,
  );
}

/** A canvas holding one image of a grid picture, enlarged with crisp pixels. */
function crop(img, box) {
  const canvas = h("canvas", { class: "pixelated", width: Math.round(box.w), height: Math.round(box.h) });
  canvas.getContext("2d").drawImage(img, box.x, box.y, box.w, box.h, 0, 0, box.w, box.h);
  canvas.style.width = `${Math.round(box.w * 2)}px`;
  return canvas;
}

function pct(a, b) {
  return `${(100 * a) / b}%`;
}

/** What keeps a caption from being sent (an unknown word...), or null. */
export function captionProblemOf(run, caption) {
  const c = run.conditions.captions;
  return captionProblem(caption, c.vocabulary ?? [], c.max_words);
}

/** An API error in words for the reader. */
export function politely(err, what) {
  if (err instanceof ApiError) return `${what}: ${err.message}.`.replace(/\.\.$/, ".");
  return `${what}: ${err.message ?? err}.`;
}
