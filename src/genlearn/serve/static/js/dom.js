// Small DOM helpers shared by the views: an element builder, the command box with its copy
// button, polite error notices and number formatting. No framework: the page stays a few files.

/** h("div", {class: "card", onclick: f, "data-x": 1}, child, [children], "text") -> Element. */
export function h(tag, attrs = {}, ...children) {
  const svg = tag.startsWith("svg:");
  const el = svg
    ? document.createElementNS("http://www.w3.org/2000/svg", tag.slice(4))
    : document.createElement(tag);
  for (const [key, value] of Object.entries(attrs || {})) {
    if (value === null || value === undefined || value === false) continue;
    if (key.startsWith("on") && typeof value === "function") el.addEventListener(key.slice(2), value);
    else if (key === "class") el.setAttribute("class", value);
    else if (key === "style" && typeof value === "object") Object.assign(el.style, value);
    else if (key in el && !svg && !key.includes("-")) el[key] = value;
    else el.setAttribute(key, value === true ? "" : String(value));
  }
  append(el, children);
  return el;
}

/** Append children (nodes, text, nested arrays; null and false skipped). */
export function append(el, ...children) {
  for (const child of children.flat(Infinity)) {
    if (child === null || child === undefined || child === false) continue;
    el.append(child instanceof Node ? child : document.createTextNode(String(child)));
  }
}

/** Replace an element's children. */
export function fill(el, ...children) {
  el.replaceChildren();
  append(el, children);
  return el;
}

/** A figure as text: integers with separators, others to a sensible number of digits. */
export function fmt(value, digits = null) {
  if (value === null || value === undefined) return "—";
  if (typeof value !== "number") return String(value);
  if (!Number.isFinite(value)) return "non-finite";
  if (Number.isInteger(value) && digits === null) return value.toLocaleString("en-US");
  const d = digits ?? (Math.abs(value) >= 100 ? 1 : Math.abs(value) >= 1 ? 2 : 3);
  return value.toLocaleString("en-US", { minimumFractionDigits: d, maximumFractionDigits: d });
}

/** Seconds as "42 s", "12 min", "3.1 h". */
export function duration(seconds) {
  if (seconds === null || seconds === undefined) return "—";
  if (seconds < 90) return `${Math.round(seconds)} s`;
  if (seconds < 5400) return `${Math.round(seconds / 60)} min`;
  return `${(seconds / 3600).toFixed(1)} h`;
}

/** An argument for the shell: quoted when it holds anything but safe characters. */
export function shellQuote(text) {
  const s = String(text);
  return /^[\w@%+=:,./-]+$/.test(s) ? s : `'${s.replaceAll("'", `'"'"'`)}'`;
}

async function copyText(text) {
  if (navigator.clipboard && window.isSecureContext) {
    try {
      await navigator.clipboard.writeText(text);
      return true;
    } catch {
      // fall through to the selection copy (a denied permission, a headless browser)
    }
  }
  const area = h("textarea", { style: { position: "fixed", opacity: "0" } }, text);
  document.body.append(area);
  area.select();
  const done = document.execCommand("copy");
  area.remove();
  return done;
}

/** The command that reproduces a view, with a copy button: `box.set(command)`. */
export function commandBox(label = "Reproduce this view") {
  const code = h("code", { class: "command-text", "data-testid": "command" });
  const button = h(
    "button",
    { class: "btn btn-small copy", type: "button", title: "Copy the command" },
    "Copy",
  );
  button.addEventListener("click", async () => {
    const ok = await copyText(code.textContent);
    button.textContent = ok ? "Copied" : "Select and copy";
    button.classList.toggle("done", ok);
    setTimeout(() => {
      button.textContent = "Copy";
      button.classList.remove("done");
    }, 1400);
  });
  const box = h(
    "div",
    { class: "command", hidden: true },
    h("span", { class: "command-label" }, label),
    h(
      "div",
      { class: "command-line" },
      h("span", { class: "prompt", "aria-hidden": "true" }, "$"),
      code,
      button,
    ),
  );
  box.set = (command) => {
    code.textContent = command || "";
    box.hidden = !command;
    const snippet = Boolean(command) && command.includes("\n");
    box.classList.toggle("snippet", snippet);
    box.querySelector(".prompt").textContent = snippet ? "py" : "$";
  };
  return box;
}

/** An inline notice for what the server refused or could not do, worded for the reader. */
export function notice(message, kind = "error") {
  return h(
    "div",
    { class: `notice ${kind}`, role: kind === "error" ? "alert" : "status", "data-testid": `notice-${kind}` },
    message,
  );
}

/** A slot that shows one notice at a time: `slot.show(msg)`, `slot.clear()`. */
export function noticeSlot() {
  const slot = h("div", { class: "notice-slot", "aria-live": "polite" });
  slot.show = (message, kind = "error") => fill(slot, notice(message, kind));
  slot.clear = () => slot.replaceChildren();
  return slot;
}

/** A labelled control: <label><span>text</span>control</label>. */
export function field(text, control, hint = null) {
  return h(
    "label",
    { class: "field" },
    h("span", { class: "field-label" }, text),
    control,
    hint && h("span", { class: "field-hint" }, hint),
  );
}

/** Calls `fn` at most once per animation frame with the latest arguments. */
export function perFrame(fn) {
  let pending = null;
  return (...args) => {
    const first = pending === null;
    pending = args;
    if (first)
      requestAnimationFrame(() => {
        const latest = pending;
        pending = null;
        fn(...latest);
      });
  };
}

/** Load an image from a URL (an object URL or data: URL) and resolve once it is decoded. */
export function loadImage(src) {
  return new Promise((resolve, reject) => {
    const img = new Image();
    img.onload = () => resolve(img);
    img.onerror = () => reject(new Error("the image could not be decoded"));
    img.src = src;
  });
}
