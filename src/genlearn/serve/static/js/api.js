// The JSON API of `genlearn serve` (documented in README): every request of the page goes
// through here, so that errors read the same everywhere and each answer carries the command
// that reproduces it (the X-Genlearn-Command header).

export class ApiError extends Error {
  constructor(message, status) {
    super(message);
    this.status = status;
  }
}

/** The API path of a run: its id URL-encoded segment by segment, the slashes kept. */
export function runUrl(id, rest = "") {
  const encoded = id.split("/").map(encodeURIComponent).join("/");
  return `/api/runs/${encoded}${rest}`;
}

/** A query string of the parameters that are set (null, undefined and "" are left out). */
export function query(params) {
  const q = new URLSearchParams();
  for (const [key, value] of Object.entries(params)) {
    if (value === null || value === undefined || value === "") continue;
    q.set(key, String(value));
  }
  const text = q.toString();
  return text ? `?${text}` : "";
}

async function request(path, signal) {
  let response;
  try {
    response = await fetch(path, { signal, headers: { Accept: "application/json, image/png" } });
  } catch (err) {
    if (err.name === "AbortError") throw err;
    throw new ApiError("the explorer's server cannot be reached; is `genlearn serve` still running?", 0);
  }
  if (!response.ok) throw new ApiError(await errorText(response), response.status);
  return response;
}

async function errorText(response) {
  try {
    const body = await response.json();
    if (body && typeof body.error === "string") return body.error;
  } catch {
    // not JSON: say what happened in words
  }
  return response.status === 404 ? "not found" : `the server answered ${response.status} ${response.statusText}`;
}

/** The command that reproduces an answer: its X-Genlearn-Command header, percent-encoded (UTF-8). */
function commandOf(response) {
  const raw = response.headers.get("X-Genlearn-Command");
  if (!raw) return null;
  try {
    return decodeURIComponent(raw);
  } catch {
    return raw;
  }
}

/** GET a JSON document: {data, command} (its own `command` field, else the header's). */
export async function getJSON(path, { signal } = {}) {
  const response = await request(path, signal);
  const data = await response.json();
  return { data, command: (data && typeof data.command === "string" && data.command) || commandOf(response) };
}

/** GET an image: {url (an object URL the caller may revoke), command, blob}. */
export async function getImage(path, { signal } = {}) {
  const response = await request(path, signal);
  const blob = await response.blob();
  return { url: URL.createObjectURL(blob), command: commandOf(response), blob };
}

/**
 * Latest-wins requests: `fetch(loader)` aborts the one still running, so an answer never
 * overwrites a newer one (a seed typed quickly, a run changed mid-flight).
 */
export class Latest {
  constructor() {
    this.controller = null;
  }
  async run(loader) {
    this.controller?.abort();
    const controller = new AbortController();
    this.controller = controller;
    const result = await loader(controller.signal);
    if (controller.signal.aborted) throw new DOMException("superseded", "AbortError");
    return result;
  }
  abort() {
    this.controller?.abort();
  }
}

/**
 * At most one request in flight; while it runs, only the newest call waits its turn and older
 * ones are dropped (the latent view's decode under a moving cursor).
 */
export class Throttled {
  constructor(loader, onResult, onError) {
    Object.assign(this, { loader, onResult, onError, busy: false, next: null });
  }
  push(args) {
    this.next = args;
    if (!this.busy) this.#drain();
  }
  async #drain() {
    while (this.next !== null) {
      const args = this.next;
      this.next = null;
      this.busy = true;
      try {
        this.onResult(await this.loader(args), args);
      } catch (err) {
        this.onError(err, args);
      } finally {
        this.busy = false;
      }
    }
  }
}

let runsPromise = null;

/** The served runs (GET /api/runs), fetched once per page load. */
export function loadRuns() {
  runsPromise ??= getJSON("/api/runs").then(({ data }) => data);
  return runsPromise;
}
