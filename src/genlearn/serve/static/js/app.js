// The explorer's entry point: reads the served runs, draws the header and the navigation, and
// shows the view the URL names (?view=gallery|samples|latent|process|side), keeping it when only
// its parameters change so that a new seed redraws the grid and nothing else.

import { loadRuns } from "./api.js";
import { fill, h, notice } from "./dom.js";
import { href, onChange, params, supports } from "./state.js";
import { GalleryView } from "./views/gallery.js";
import { LatentView } from "./views/latent.js";
import { ProcessView } from "./views/process.js";
import { SamplesView } from "./views/samples.js";
import { SideView } from "./views/side.js";

const VIEWS = {
  gallery: { label: "Gallery", icon: "▦", View: GalleryView, blurb: "every run, and the table" },
  samples: { label: "Samples", icon: "◧", View: SamplesView, blurb: "seed, temperature, labels, captions" },
  latent: { label: "Latent space", icon: "◎", View: LatentView, blurb: "encode, decode, interpolate" },
  process: { label: "Processes", icon: "▶", View: ProcessView, blurb: "DRAW, alignDRAW, LAPGAN, Gibbs" },
  side: { label: "Side by side", icon: "◫", View: SideView, blurb: "one seed, several runs" },
};

const main = document.getElementById("view");
const nav = document.getElementById("nav");
const count = document.getElementById("run-count");
let current = { name: null, view: null };
let ctx = null;

async function start() {
  try {
    const runs = await loadRuns();
    ctx = { runs, byId: new Map(runs.map((r) => [r.id, r])) };
    count.textContent = `${runs.length} run${runs.length === 1 ? "" : "s"} served`;
    count.dataset.count = String(runs.length);
    route(params());
    onChange(route);
  } catch (err) {
    count.textContent = "no runs";
    fill(main, notice(`The explorer could not read its runs: ${err.message}`));
  }
}

/** Show the view of the URL: a new one when the view changes, else the same one updated. */
function route(p) {
  const name = VIEWS[p.view] ? p.view : "gallery";
  drawNav(name, p);
  if (current.name !== name) {
    current.view?.destroy?.();
    main.replaceChildren();
    main.dataset.view = name;
    const view = new VIEWS[name].View(ctx);
    view.mount(main);
    current = { name, view };
    document.title = `${VIEWS[name].label} · genlearn explorer`;
    window.scrollTo(0, 0);
  }
  current.view.update(p);
}

/** The navigation: a link per view, carrying the chosen run where that view offers it. */
function drawNav(active, p) {
  const run = ctx.byId.get(p.run);
  fill(
    nav,
    Object.entries(VIEWS).map(([name, v]) => {
      const available = name === "gallery" || name === "side" || ctx.runs.some((r) => supports(r, name));
      const keep = run && supports(run, name) && name !== "gallery" && name !== "side" ? run.id : null;
      return h(
        "a",
        {
          class: `nav-link${name === active ? " active" : ""}${available ? "" : " unavailable"}`,
          href: href({ view: name, run: keep }),
          "aria-current": name === active ? "page" : null,
          "data-view": name,
          title: available ? null : "none of the served runs offers this view",
        },
        h("span", { class: "nav-icon", "aria-hidden": "true" }, v.icon),
        h(
          "span",
          { class: "nav-text" },
          h("span", { class: "nav-label" }, v.label),
          h("span", { class: "nav-blurb" }, v.blurb),
        ),
      );
    }),
  );
}

// Links inside the page change the URL without a reload (a middle click still opens a tab).
document.addEventListener("click", (e) => {
  const a = e.target.closest("a[href^='?']");
  if (!a || e.defaultPrevented || e.button !== 0 || e.metaKey || e.ctrlKey || e.shiftKey || e.altKey) return;
  e.preventDefault();
  history.pushState(null, "", a.getAttribute("href"));
  route(params());
});

start();
