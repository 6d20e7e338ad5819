// Side by side: one seed, labels or caption sent to several runs at once (cgan beside
// lapgan-conditional with the same labels, draw beside draw-noattn with the same seed).

import { Latest, getImage, runUrl } from "../api.js";
import {
  captionBox,
  labelPicker,
  labelsText,
  parseLabels,
  seedControl,
  temperatureControl,
} from "../controls.js";
import { commandBox, fill, h, loadImage, noticeSlot } from "../dom.js";
import { zoom } from "../grid.js";
import { sampleCommand, takesCaptions, takesLabels, takesTemperature, update } from "../state.js";
import { captionProblemOf, politely, requestQuery, sampleRequest } from "./samples.js";

/** Pairs worth seeing together, in order of preference, when the URL names no runs. */
const PAIRS = [
  ["cgan", "lapgan-conditional"],
  ["draw", "draw-noattn"],
  ["gan", "dcgan"],
  ["rbm", "dbn", "dbm"],
];

export function defaultRuns(runs) {
  for (const pair of PAIRS) {
    const picked = pair.map((model) => runs.find((r) => r.model === model)).filter(Boolean);
    if (picked.length >= 2) return picked.map((r) => r.id);
  }
  return runs.slice(0, 2).map((r) => r.id);
}

export class SideView {
  constructor(ctx) {
    this.ctx = ctx;
    this.panels = new Map();
  }

  mount(root) {
    this.root = root;
  }

  update(p) {
    const { runs, byId } = this.ctx;
    const ids = (p.runs ? p.runs.split(",") : defaultRuns(runs)).filter((id) => byId.has(id));
    const chosen = ids.map((id) => byId.get(id));
    this.p = p;
    const signature = ids.join(",");
    if (signature !== this.signature) {
      this.signature = signature;
      this.build(chosen);
    }
    this.seed.set(Number(p.seed) || 0);
    this.caption?.set(p.caption ?? "");
    for (const run of chosen) this.panels.get(run.id).load(p);
  }

  build(chosen) {
    const { runs } = this.ctx;
    const chosenIds = new Set(chosen.map((r) => r.id));
    const toggle = (id) => {
      const next = new Set(chosenIds);
      next.has(id) ? next.delete(id) : next.add(id);
      update({ runs: runs.filter((r) => next.has(r.id)).map((r) => r.id).join(",") || null });
    };
    const picker = h(
      "div",
      { class: "run-chips", "data-testid": "run-chips" },
      runs.map(
        (r) => h(
          "button",
          {
            type: "button",
            class: "chip chip-run",
            "aria-pressed": String(chosenIds.has(r.id)),
            onclick: () => toggle(r.id),
            title: r.family,
          },
          r.id,
        ),
      ),
    );
    this.seed = seedControl(Number(this.p.seed) || 0, (seed) => update({ seed }));
    const labelRun = chosen.find(takesLabels);
    const captionRun = chosen.find(takesCaptions);
    const temperatureRun = chosen.find(takesTemperature);
    this.caption = captionRun ? captionBox(
      captionRun,
      this.p.caption ?? "",
      (caption, push) => update({ caption }, { replace: !push }),
    ) : null;
    const conditions = [
      labelRun ? labelPicker(
        labelRun,
        parseLabels(this.p.labels),
        Number(this.p.per) || 8,
        (labels, per) => update(
          { labels: labels.length ? labelsText(labels) : null, per: labels.length ? per : null },
        ),
      ) : null,
      this.caption,
    ].filter(Boolean);
    this.panels = new Map(chosen.map((run) => [run.id, new Panel(run)]));
    fill(
      this.root,
      h(
        "div",
        { class: "view-head" },
        h("h1", {}, "Side by side"),
        h(
          "p",
          { class: "lede" },
          "One seed, the same labels or caption, sent to several runs at once. Labels go to the runs that take labels, a caption to those that read captions; the others draw with the seed alone.",
        ),
      ),
      h(
        "div",
        { class: "card side-controls conditions" },
        h("div", { class: "field-label" }, "Runs"),
        picker,
        h(
          "div",
          { class: "toolbar" },
          this.seed,
          temperatureRun ? temperatureControl(
            Number(this.p.temperature ?? 1),
            true,
            (temperature) => update({ temperature }),
          ) : null,
        ),
        conditions,
      ),
      chosen.length ? h(
        "div",
        { class: "side-grid" },
        [...this.panels.values()].map((panel) => panel.el),
      ) : h("div", { class: "card empty" }, h("p", {}, "Pick two runs or more above.")),
    );
  }
}

/** One run's column: its picture, a note on what applied to it, its command. */
class Panel {
  constructor(run) {
    this.run = run;
    this.latest = new Latest();
    this.img = h(
      "img",
      { class: "pixelated grid-img", alt: `samples of ${run.id}`, "data-testid": "side-grid" },
    );
    this.note = h("p", { class: "muted small" });
    this.notices = noticeSlot();
    this.command = commandBox("Command");
    this.frame = h("div", { class: "picture loading" }, this.img);
    this.el = h(
      "article",
      { class: "card side-panel", "data-run": run.id },
      h("header", {}, h("h2", {}, run.id), h("span", { class: "chip chip-family" }, run.family)),
      this.frame,
      this.note,
      this.notices,
      this.command,
    );
  }

  async load(p) {
    const run = this.run;
    const r = sampleRequest(run, { ...p, n: p.n ?? 16 });
    const q = requestQuery(r);
    if (q === this.key || (r.caption && captionProblemOf(run, r.caption))) return;
    this.key = q;
    const ignored = [
      p.labels && !takesLabels(run) ? "labels" : null,
      p.caption && !takesCaptions(run) ? "the caption" : null,
    ].filter(Boolean);
    this.note.textContent = ignored.length ? `Takes no ${ignored.join(" or ")}: drawn with the seed alone.` : "";
    this.frame.classList.add("loading");
    try {
      const { url, command } = await this.latest.run(
        (signal) => getImage(runUrl(run.id, `/samples.png${q}`), { signal }),
      );
      const img = await loadImage(url);
      this.img.src = url;
      this.img.style.width = `${img.naturalWidth * zoom(img.naturalWidth, 360, 2)}px`;
      this.command.set(command || sampleCommand(run, { ...r, temperature: r.temperature ?? 1 }));
      this.notices.clear();
    } catch (err) {
      if (err.name === "AbortError") return;
      this.key = null;
      this.notices.show(politely(err, "Could not draw"));
    } finally {
      this.frame.classList.remove("loading");
    }
  }
}
