// Controls several views share: the run picker, the seed, the temperature, the label picker
// (a grid row per chosen digit) and the caption box that checks every word against the model's
// vocabulary before anything is sent.

import { field, h } from "./dom.js";
import { words } from "./state.js";

/** A <select> of runs grouped by family; `filter(run)` decides which are offered. */
export function runSelect(runs, current, onChoose, filter = () => true) {
  const select = h(
    "select",
    { class: "input", "data-testid": "run-select", onchange: () => onChoose(select.value) },
  );
  const families = new Map();
  for (const run of runs.filter(filter)) {
    if (!families.has(run.family)) families.set(run.family, []);
    families.get(run.family).push(run);
  }
  for (const [family, members] of families) {
    select.append(
      h(
        "optgroup",
        { label: family },
        members.map((r) => h("option", { value: r.id, selected: r.id === current }, r.id)),
      ),
    );
  }
  return field("Run", select);
}

/** Seed input with a "New seed" button; commits a whole number of 0 or more. */
export function seedControl(value, onCommit) {
  const input = h(
    "input",
    {
      class: "input seed",
      type: "number",
      min: 0,
      step: 1,
      value,
      "data-testid": "seed",
      inputmode: "numeric",
    },
  );
  const commit = () => {
    const seed = Math.max(0, Math.floor(Number(input.value)));
    if (Number.isFinite(seed)) onCommit(seed);
  };
  input.addEventListener("change", commit);
  input.addEventListener("keydown", (e) => e.key === "Enter" && commit());
  const fresh = h(
    "button",
    {
      class: "btn",
      type: "button",
      "data-testid": "new-seed",
      title: "Draw with a new random seed",
      onclick: () => {
        input.value = String(Math.floor(Math.random() * 100000));
        commit();
      },
    },
    "New seed",
  );
  const el = h("div", { class: "field-group" }, field("Seed", input), fresh);
  el.set = (v) => {
    input.value = v;
  };
  return el;
}

/** Temperature slider (0 to 2); only offered to models that scale their prior's noise. */
export function temperatureControl(value, enabled, onCommit) {
  const out = h("output", { class: "value" }, Number(value).toFixed(2));
  const input = h(
    "input",
    { type: "range", min: 0, max: 2, step: 0.05, value, disabled: !enabled, "data-testid": "temperature" },
  );
  input.addEventListener("input", () => (out.textContent = Number(input.value).toFixed(2)));
  input.addEventListener("change", () => onCommit(Number(input.value)));
  const hint = enabled ? null : "this model samples at temperature 1 only";
  return field("Temperature", h("span", { class: "range-row" }, input, out), hint);
}

/** A <select> of numbers. */
export function numberSelect(label, value, choices, onCommit, testid = null) {
  const select = h(
    "select",
    { class: "input", "data-testid": testid, onchange: () => onCommit(Number(select.value)) },
    choices.map((c) => h("option", { value: c, selected: Number(value) === c }, String(c))),
  );
  return field(label, select);
}

/** Labels as the API writes them ("3,5") to a list of digits, and back. */
export function parseLabels(text) {
  if (!text) return [];
  const out = [];
  for (const part of String(text).split(",")) {
    const [lo, hi] = part.split("-").map((s) => Number(s.trim()));
    if (!Number.isInteger(lo)) continue;
    for (let d = lo; d <= (Number.isInteger(hi) ? hi : lo); d++) out.push(d);
  }
  return out;
}

export function labelsText(labels) {
  return labels.join(",");
}

/** Ten digit toggles (a grid row per chosen digit), "all" and "none", and samples per row. */
export function labelPicker(run, chosen, perRow, onChange) {
  const { min = 0, max = 9 } = run.conditions.labels;
  let selected = new Set(chosen);
  const buttons = [];
  for (let d = min; d <= max; d++) {
    const b = h(
      "button",
      {
        class: "digit",
        type: "button",
        "aria-pressed": String(selected.has(d)),
        "data-testid": `label-${d}`,
      },
      String(d),
    );
    b.addEventListener("click", () => {
      selected.has(d) ? selected.delete(d) : selected.add(d);
      emit();
    });
    buttons.push(b);
  }
  const emit = () => onChange([...selected].sort((a, b) => a - b), perRow);
  const all = h(
    "button",
    {
      class: "btn btn-small",
      type: "button",
      onclick: () => ((selected = new Set(range(min, max))), emit()),
    },
    "All digits",
  );
  const none = h(
    "button",
    { class: "btn btn-small", type: "button", onclick: () => ((selected = new Set()), emit()) },
    "None",
  );
  const rows = numberSelect(
    "Per row",
    perRow,
    [1, 4, 8, 10],
    (v) => onChange([...selected].sort((a, b) => a - b), v),
  );
  return h(
    "div",
    { class: "labels", "data-testid": "label-picker" },
    h(
      "div",
      { class: "field-label" },
      "Labels ",
      h("span", { class: "muted" }, "— a row per chosen digit; none: drawn from the test set's labels"),
    ),
    h("div", { class: "digits" }, buttons, all, none),
    rows,
  );
}

function range(a, b) {
  return Array.from({ length: b - a + 1 }, (_, i) => a + i);
}

/** Edit distance, for "did you mean" on a word the model does not know. */
function distance(a, b) {
  const row = Array.from({ length: b.length + 1 }, (_, i) => i);
  for (let i = 1; i <= a.length; i++) {
    let prev = row[0];
    row[0] = i;
    for (let j = 1; j <= b.length; j++) {
      const cur = row[j];
      row[j] = Math.min(row[j] + 1, row[j - 1] + 1, prev + (a[i - 1] === b[j - 1] ? 0 : 1));
      prev = cur;
    }
  }
  return row[b.length];
}

/** What is wrong with a caption before it is sent, or null: unknown words, empty, too long. */
export function captionProblem(text, vocabulary, maxWords) {
  const ws = words(text);
  const known = new Set(vocabulary);
  const unknown = ws.filter((w) => !known.has(w));
  if (unknown.length) {
    const quoted = unknown.map((w) => `“${w}”`).join(", ");
    return `${quoted} ${unknown.length > 1 ? "are" : "is"} not in the model's vocabulary`;
  }
  if (!ws.length) return "type a caption, e.g. one of the examples below";
  if (maxWords && ws.length > maxWords) {
    return `a caption has at most ${maxWords} words; this one has ${ws.length}`;
  }
  return null;
}

/**
 * The caption box: every word checked against the vocabulary as it is typed (unknown ones
 * marked, with suggestions), and `onCommit(text, push)` called only for a caption the model can
 * read: a short pause in typing replaces the URL, Enter or "Draw" pushes it.
 */
export function captionBox(run, text, onCommit) {
  const { vocabulary = [], max_words: maxWords = null } = run.conditions.captions;
  const examples = [...new Set(run.conditions.captions.examples ?? [])];
  const known = new Set(vocabulary);
  const input = h("input", {
    class: "input caption",
    type: "text",
    value: text,
    spellcheck: false,
    autocomplete: "off",
    placeholder: examples[0] ?? "the digit 7 is at the top left of the image .",
    "data-testid": "caption",
    "aria-describedby": "caption-status",
  });
  const tokens = h("div", { class: "tokens", "data-testid": "caption-tokens" });
  const status = h("div", { class: "caption-status", id: "caption-status", "data-testid": "caption-status" });
  const suggestions = h("div", { class: "suggestions", "data-testid": "suggestions" });
  const draw = h("button", { class: "btn btn-primary", type: "button", "data-testid": "draw" }, "Draw");
  let timer = null;

  const replaceWord = (index, word) => {
    const ws = words(input.value);
    ws[index] = word;
    input.value = ws.join(" ");
    check(true);
    input.focus();
  };

  function showSuggestions(ws) {
    suggestions.replaceChildren();
    const trailing = /\s$/.test(input.value);
    const index = ws.findIndex((w) => !known.has(w));
    let picks = [];
    let at = -1;
    if (index >= 0) {
      at = index;
      const w = ws[index];
      const prefixed = vocabulary.filter((v) => v.startsWith(w));
      const near = Math.max(1, Math.floor(w.length / 2)); // a typo, not another word
      picks = prefixed.length
        ? prefixed
        : vocabulary.filter((v) => distance(w, v) <= near).sort(
          (a, b) => distance(w, a) - distance(w, b),
        ).slice(0, 4);
    } else if (ws.length && !trailing) {
      at = ws.length - 1;
      const w = ws[at];
      picks = vocabulary.filter((v) => v.startsWith(w) && v !== w);
    }
    picks = picks.slice(0, 6);
    if (!picks.length) return;
    suggestions.append(h("span", { class: "muted" }, index >= 0 ? "Did you mean" : "Complete with"));
    for (const p of picks) suggestions.append(
      h("button", { class: "chip chip-suggest", type: "button", onclick: () => replaceWord(at, p) }, p),
    );
  }

  function check(commitSoon, push = false) {
    const ws = words(input.value);
    tokens.replaceChildren(
      ...ws.map((w) =>
        h(
          "span",
          {
            class: known.has(w) ? "token" : "token unknown",
            title: known.has(w) ? null : "not in the model's vocabulary",
            "data-unknown": known.has(w) ? null : "true",
          },
          w,
        ),
      ),
    );
    const problem = captionProblem(input.value, vocabulary, maxWords);
    input.setAttribute("aria-invalid", String(Boolean(problem) && ws.length > 0));
    status.textContent = problem ? `${problem}. Nothing is sent until every word is known.` : `${ws.length} word${ws.length === 1 ? "" : "s"}, all known`;
    status.classList.toggle("bad", Boolean(problem));
    draw.disabled = Boolean(problem);
    showSuggestions(ws);
    clearTimeout(timer);
    if (problem) return;
    if (push) onCommit(input.value.trim(), true);
    else if (commitSoon) timer = setTimeout(() => onCommit(input.value.trim(), false), 450);
  }

  input.addEventListener("input", () => check(true));
  input.addEventListener("keydown", (e) => e.key === "Enter" && check(false, true));
  draw.addEventListener("click", () => check(false, true));

  const vocab = h(
    "details",
    { class: "vocabulary" },
    h("summary", {}, `Vocabulary (${vocabulary.length} words)`),
    h(
      "div",
      { class: "chips" },
      vocabulary.map((w) => h("button", { class: "chip", type: "button", onclick: () => appendWord(w) }, w)),
    ),
  );
  const appendWord = (w) => {
    input.value = `${input.value.trim()} ${w}`.trim();
    check(true);
  };
  const examplesRow = examples.length
    ? h(
      "div",
      { class: "examples" },
      h("span", { class: "muted" }, "Examples"),
      examples.map(
        (ex) => h(
          "button",
          {
            class: "chip chip-example",
            type: "button",
            onclick: () => ((input.value = ex), check(false, true)),
          },
          ex,
        ),
      ),
    )
    : null;

  const el = h(
    "div",
    { class: "caption-box", "data-testid": "caption-box" },
    field("Caption", h("div", { class: "caption-row" }, input, draw)),
    tokens,
    status,
    suggestions,
    examplesRow,
    vocab,
  );
  el.set = (value) => {
    if (document.activeElement !== input) input.value = value;
    check(false);
  };
  check(false);
  return el;
}
