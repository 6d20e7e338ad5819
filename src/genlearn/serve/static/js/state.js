// The page's state lives in its URL (?view=samples&run=zoo/vae&seed=3...), so that every view
// can be bookmarked and shared and the browser's back and forward buttons walk through it.
// This module reads and writes that URL and answers which views a run offers.

import { shellQuote } from "./dom.js";

const listeners = new Set();

/** The URL's parameters as a plain object of strings. */
export function params() {
  return Object.fromEntries(new URLSearchParams(location.search));
}

/** A link to a state of the page (for <a href>, so a middle click opens a tab). */
export function href(state) {
  const parts = [];
  for (const [key, value] of Object.entries(state)) {
    if (value !== null && value !== undefined && value !== "") parts.push(
      `${encodeURIComponent(key)}=${readable(String(value))}`,
    );
  }
  return `?${parts.join("&")}`;
}

/** A query value encoded, but with the characters a query may hold as they are (zoo/vae, 3,5). */
function readable(value) {
  return encodeURIComponent(value).replace(/%2F/gi, "/").replace(/%2C/gi, ",").replace(/%3A/gi, ":").replace(/%20/g, "+");
}

/**
 * Go to a state: `replace` for what should not make a step of the history (a slider being
 * dragged, a caption being typed), push otherwise. Listeners are told either way.
 */
export function go(state, { replace = false, quiet = false } = {}) {
  const url = href(state);
  if (url === location.search || (url === "?" && location.search === "")) return;
  history[replace ? "replaceState" : "pushState"](null, "", url);
  if (!quiet) notify();
}

/** Change some parameters of the current state (null removes one). */
export function update(changes, options = {}) {
  go({ ...params(), ...changes }, options);
}

export function onChange(listener) {
  listeners.add(listener);
}

function notify() {
  for (const listener of listeners) listener(params());
}

window.addEventListener("popstate", notify);

// ---- what a run offers ----------------------------------------------------------------------

export const takesLabels = (run) => Boolean(run?.conditions?.labels);
export const takesCaptions = (run) => Boolean(run?.conditions?.captions);
export const takesTemperature = (run) => (run?.capabilities ?? []).includes("temperature");
export const hasImages = (run) => Array.isArray(run?.image_shape);

/** Whether the server offers `view` (samples, latent, manifold, process, scores) for this run. */
export function supports(run, view) {
  if (view === "gallery" || view === "side") return true;
  return (run?.views ?? []).includes(view);
}

/** The process a run shows on the timeline: canvas, alignment, pyramid or gibbs. */
export function processKind(run) {
  return run?.process ?? null;
}

/** Words of a caption as the model reads them (alignDRAW's tokenizer: lower case, "." a word). */
export function words(text) {
  return String(text).toLowerCase().match(/[^\s.]+|\./g) ?? [];
}

// ---- commands that reproduce a view ----------------------------------------------------------

/** `genlearn sample ...` for a grid, as the server would say it (used until its header arrives). */
export function sampleCommand(run, { n, seed, temperature, labels, caption, out = "samples.png" }) {
  const parts = ["genlearn", "sample", shellQuote(run.path ?? run.id)];
  if (n) parts.push("--n", String(n));
  parts.push("--seed", String(seed ?? 0));
  if (temperature !== undefined && temperature !== null && Number(temperature) !== 1) {
    parts.push("--temperature", String(temperature));
  }
  if (labels) parts.push("--labels", shellQuote(labels));
  if (caption) parts.push("--caption", shellQuote(caption));
  parts.push("--out", out);
  return parts.join(" ");
}

/** A `curl` line fetching an API path from this server: what reproduces views without a CLI command. */
export function curlCommand(path, out) {
  return `curl -o ${shellQuote(out)} ${shellQuote(location.origin + path)}`;
}
