// The gallery: every served run as a card (family, paper, key figures, 16 samples), grouped by
// family, and the cross-family comparison table with sortable columns.

import { getImage, getJSON, runUrl } from "../api.js";
import { append, commandBox, duration, fill, fmt, h, noticeSlot, shellQuote } from "../dom.js";
import { hasImages, href, supports } from "../state.js";
import { politely } from "./samples.js";

const VIEW_LINKS = [
  ["samples", "Samples"],
  ["latent", "Latent space"],
  ["process", "Process"],
];

export class GalleryView {
  constructor(ctx) {
    this.ctx = ctx;
    this.sort = { column: null, descending: false };
  }

  mount(root) {
    const { runs } = this.ctx;
    this.notices = noticeSlot();
    this.table = h(
      "div",
      { class: "table-wrap", "data-testid": "compare" },
      h("p", { class: "muted" }, "Reading the comparison…"),
    );
    this.command = commandBox("Reproduce the table");
    append(
      root,
      h(
        "div",
        { class: "view-head" },
        h("h1", {}, "Gallery"),
        h(
          "p",
          { class: "lede" },
          `${runs.length} trained run${runs.length === 1 ? "" : "s"}, grouped by family. Open a card to draw from it, look into its latent space or watch it work.`,
        ),
      ),
      runs.length ? null : h(
        "div",
        { class: "card empty" },
        h("h2", {}, "No finished runs here yet"),
        h(
          "p",
          {},
          "Train one with ",
          h("code", {}, "make demo"),
          " or ",
          h("code", {}, "genlearn train vae"),
          ", then reload.",
        ),
      ),
      h(
        "div",
        { class: "families" },
        families(runs).map(([family, members]) =>
          h(
            "section",
            { class: "family", "data-family": family },
            h("h2", { class: "family-title" }, family, h("span", { class: "count" }, `${members.length}`)),
            h("div", { class: "cards" }, members.map((run) => this.card(run))),
          ),
        ),
      ),
      h(
        "section",
        { class: "compare" },
        h("h2", {}, "All runs compared"),
        h(
          "p",
          { class: "muted" },
          "Every figure of every served run (genlearn compare). Click a column's header to sort the runs by it.",
        ),
        this.notices,
        this.table,
        this.command,
      ),
    );
    this.loadCompare();
  }

  update() {}

  card(run) {
    const picture = h(
      "img",
      { class: `thumb${hasImages(run) ? " pixelated" : ""}`, alt: `samples of ${run.id}` },
    );
    const frame = h(
      "a",
      {
        class: "thumb-link loading",
        href: href({ view: "samples", run: run.id }),
        "aria-label": `samples of ${run.id}`,
      },
      picture,
    );
    getImage(runUrl(run.id, `/samples.png?n=${hasImages(run) ? 16 : 256}&seed=0`))
      .then(({ url }) => {
        picture.src = url;
        frame.classList.remove("loading");
      })
      .catch((err) => fill(frame, h("span", { class: "thumb-error" }, politely(err, "No samples"))));
    const paper = run.paper ?? {};
    const t = run.training ?? {};
    return h(
      "article",
      { class: "card run-card", "data-testid": "run-card", "data-run": run.id },
      h(
        "header",
        {},
        h("a", { class: "run-title", href: href({ view: "samples", run: run.id }) }, run.id),
        h("span", { class: "chip chip-family" }, run.family),
      ),
      run.title ? h("p", { class: "run-subtitle" }, run.title) : null,
      frame,
      figuresList(run.figures ?? []),
      h(
        "p",
        { class: "paper muted" },
        paper.url ? h(
          "a",
          { href: paper.url, target: "_blank", rel: "noopener noreferrer" },
          paper.cite ?? paper.url,
        ) : paper.cite,
      ),
      h("p", { class: "training muted" }, trainingLine(t)),
      h(
        "nav",
        { class: "card-links" },
        VIEW_LINKS.filter(([view]) => supports(run, view)).map(
          ([view, label]) => h("a", { class: "btn btn-small", href: href({ view, run: run.id }) }, label),
        ),
      ),
    );
  }

  async loadCompare() {
    try {
      const { data, command } = await getJSON("/api/compare");
      this.data = data;
      this.command.set(
        command || `genlearn compare ${(data.runs ?? []).map((r) => shellQuote(r.path)).join(" ")}`,
      );
      this.renderTable();
    } catch (err) {
      fill(this.table);
      this.notices.show(politely(err, "Could not compare the runs"));
    }
  }

  renderTable() {
    const { runs = [], rows = [] } = this.data;
    const columns = rows.filter((row) => row.cells.some((c) => c.status === "value"));
    const order = runs.map((_, i) => i);
    const { column, descending } = this.sort;
    if (column !== null) {
      const cells = columns[column].cells;
      order.sort((a, b) => compareCells(cells[a], cells[b], descending));
    }
    const header = h(
      "tr",
      {},
      h("th", { class: "sticky", scope: "col" }, "run"),
      columns.map((row, j) => {
        const arrow = column === j ? (descending ? " ▼" : " ▲") : "";
        const better = betterOf(row);
        return h(
          "th",
          {
            scope: "col",
            class: "sortable",
            title: `${row.group}${row.metric ? ` · genlearn eval --metric ${row.metric}` : ""}`,
            "aria-sort": column === j ? (descending ? "descending" : "ascending") : "none",
          },
          h(
            "button",
            {
              type: "button",
              class: "sort",
              "data-testid": "sort",
              "data-row": row.id,
              onclick: () => this.sortBy(j, better),
            },
            row.label.trim(),
            h("span", { class: "arrow" }, arrow),
          ),
        );
      }),
    );
    const body = order.map((i) =>
      h(
        "tr",
        { "data-run": runs[i].column },
        h(
          "th",
          { class: "sticky", scope: "row" },
          h("span", { class: "run-name" }, runs[i].column),
          h("span", { class: "muted small" }, runs[i].model),
        ),
        columns.map((row) => {
          const cell = row.cells[i];
          return h(
            "td",
            {
              class: `num ${cell.status === "value" ? "" : "empty"}`,
              title: cell.status === "value" ? null : cell.status,
            },
            cell.text,
          );
        }),
      ),
    );
    fill(
      this.table,
      h("table", { class: "data" }, h("thead", {}, groupRow(columns), header), h("tbody", {}, body)),
    );
  }

  sortBy(column, better) {
    const same = this.sort.column === column;
    this.sort = { column, descending: same ? !this.sort.descending : better !== "lower" };
    this.renderTable();
  }
}

/** The groups above the columns (likelihood, sample quality, ...), each spanning its own. */
function groupRow(columns) {
  const spans = [];
  for (const row of columns) {
    const last = spans[spans.length - 1];
    if (last && last.group === row.group) last.count += 1;
    else spans.push({ group: row.group, count: 1 });
  }
  return h(
    "tr",
    { class: "groups" },
    h("th", { class: "sticky" }),
    spans.map(
      (s) => h("th", { colspan: s.count, scope: "colgroup", title: s.group }, s.group.split(" (")[0]),
    ),
  );
}

function families(runs) {
  const groups = new Map();
  for (const run of runs) {
    if (!groups.has(run.family)) groups.set(run.family, []);
    groups.get(run.family).push(run);
  }
  return [...groups];
}

function figuresList(figures) {
  if (!figures.length) return h(
    "p",
    { class: "muted figures-none" },
    "No figures recorded yet (genlearn eval).",
  );
  return h(
    "dl",
    { class: "figures" },
    figures.map((f) => [
      h("dt", {}, f.label),
      f.value === null || f.value === undefined
        ? h("dd", { class: "muted", title: "not measured yet (genlearn eval)" }, "not run")
        : h(
          "dd",
          {},
          fmt(f.value),
          f.stderr !== undefined && f.stderr !== null ? h(
            "span",
            { class: "muted" },
            ` ± ${fmt(f.stderr)}`,
          ) : null,
          h("span", { class: "better", title: `${f.better} is better` }, f.better === "lower" ? " ↓" : " ↑"),
        ),
    ]),
  );
}

function trainingLine(t) {
  const parts = [];
  if (t.epochs !== undefined && t.epochs !== null) parts.push(
    `${t.epochs} epoch${t.epochs === 1 ? "" : "s"}`,
  );
  if (t.steps) parts.push(`${fmt(t.steps)} steps`);
  if (t.seconds) parts.push(duration(t.seconds));
  if (t.device) parts.push(t.device);
  if (t.finished === false) parts.push("still training");
  return parts.join(" · ");
}

/** ↑ / ↓ of a row: its own `better`, else the arrow in its label. */
function betterOf(row) {
  if (row.better === "↓" || row.better === "lower") return "lower";
  if (row.better === "↑" || row.better === "higher") return "higher";
  return /↓/.test(row.label) ? "lower" : "higher";
}

/** Numbers sort by value; words after numbers; empty cells (—, not run) always last. */
function compareCells(a, b, descending) {
  const rank = (c) => (c.status !== "value" ? 2 : typeof c.value === "number" ? 0 : 1);
  const ra = rank(a);
  const rb = rank(b);
  if (ra !== rb) return ra - rb;
  if (ra === 2) return 0;
  const d = ra === 0 ? a.value - b.value : String(a.value).localeCompare(String(b.value));
  return descending ? -d : d;
}
