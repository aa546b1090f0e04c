// The v1 API as the dashboard uses it: JSON requests with the tab's API key, uploads
// that send a File as the body (never read into memory) with progress, and a
// Server-Sent Events reader over fetch (EventSource cannot send a key).

const KEY_STORAGE = "trainserve.apiKey";

export const session = {
  key: sessionStorage.getItem(KEY_STORAGE),
  tenant: null,
  scopes: null, // the key's scopes when the API says (null: not known)
  denied: new Set(), // scopes a 403 named
};

const listeners = { unauthorized: new Set(), scopes: new Set() };
export const on = (what, fn) => listeners[what].add(fn);
const emit = (what, detail) => listeners[what].forEach((fn) => fn(detail));

export function setKey(key) {
  session.key = key || null;
  session.scopes = null;
  session.tenant = null;
  session.denied.clear();
  if (key) sessionStorage.setItem(KEY_STORAGE, key);
  else sessionStorage.removeItem(KEY_STORAGE);
  emit("scopes");
}

export function setScopes(scopes, tenant) {
  session.scopes = scopes ? new Set(scopes) : null;
  session.tenant = tenant || null;
  emit("scopes");
}

// Whether the key may do what needs `scope` (true while nothing says otherwise). A key
// with `read` may also read models, which otherwise needs `predict`.
export function can(scope) {
  if (!scope) return true;
  if (scope === "models") return can("predict") || can("read");
  if (session.denied.has(scope)) return false;
  return session.scopes === null || session.scopes.has(scope);
}

export class ApiError extends Error {
  constructor(status, problem) {
    const body = problem && typeof problem === "object" ? problem : { detail: problem ? String(problem).slice(0, 300) : "" };
    super(body.detail || body.title || `HTTP ${status}`);
    this.status = status;
    this.problem = body;
    this.errors = body.errors || {};
    this.scope = status === 403 ? scopeOf(body) : null;
  }
}

// The scope a 403 names: a field of the problem, or its words ("... the 'train' scope").
function scopeOf(problem) {
  for (const name of ["scope", "required_scope", "missing_scope"]) {
    if (typeof problem[name] === "string") return problem[name];
  }
  const words = `${problem.detail || ""} ${problem.title || ""}`;
  const match = words.match(/[‘'"“`]?\b(predict|read|train|admin)\b[’'"”`]?\s+scope/i) || words.match(/scope\W+(predict|read|train|admin)\b/i);
  return match ? match[1].toLowerCase() : null;
}

// A 403 says what the key lacks, and often what it has ("the key's scopes: predict"):
// from then on the page disables what the key cannot do.
function failure(status, body) {
  const error = new ApiError(status, body);
  if (status === 401) emit("unauthorized", error);
  if (status === 403) {
    const held = `${error.problem.detail || ""}`.match(/key's scopes: ([a-z, ]+)\)/);
    if (held && session.scopes === null) {
      session.scopes = new Set(held[1].split(",").map((s) => s.trim()).filter((s) => s && s !== "none"));
      emit("scopes");
    }
    if (error.scope && !session.denied.has(error.scope)) {
      session.denied.add(error.scope);
      emit("scopes");
    }
  }
  return error;
}

function authHeaders(headers = {}) {
  return session.key ? { ...headers, Authorization: `Bearer ${session.key}` } : headers;
}

// fetch with the key: JSON in (`json`) and out; throws ApiError with the problem+json body.
export async function api(path, { method = "GET", json, body, headers = {}, accept = "application/json", signal, raw = false } = {}) {
  const sent = authHeaders({ Accept: accept, ...headers });
  if (json !== undefined) {
    sent["Content-Type"] = "application/json";
    body = JSON.stringify(json);
  }
  // A busy server (503 with Retry-After) or a dropped connection is tried again, up to
  // three times, for requests that mean the same when repeated (not POST).
  const attempts = method === "POST" ? 1 : 3;
  let response;
  for (let attempt = 1; ; attempt++) {
    try {
      response = await fetch(path, { method, headers: sent, body, signal, cache: "no-store" });
    } catch (exc) {
      if (exc.name === "AbortError") throw exc;
      if (attempt < attempts) {
        await new Promise((resolve) => setTimeout(resolve, 1000 * attempt));
        continue;
      }
      throw new ApiError(0, { detail: "the API did not answer" });
    }
    if (response.status !== 503 || attempt >= attempts) break;
    const wait = Math.min(10, Number(response.headers.get("Retry-After")) || attempt);
    await new Promise((resolve) => setTimeout(resolve, 1000 * wait));
  }
  if (raw && response.ok) return response;
  if (response.status === 204) return null;
  const type = response.headers.get("Content-Type") || "";
  const data = type.includes("json") ? await response.json().catch(() => null) : await response.text();
  if (!response.ok) throw failure(response.status, data);
  return data;
}

export const enc = encodeURIComponent;

// Send a File (or Blob) as the request body with XMLHttpRequest, for its upload progress.
// The browser streams the file from disk: nothing is read into script memory.
// Returns {promise, abort}; the promise resolves to {status, body, header(name)}.
export function send(path, file, { method = "POST", contentType, headers = {}, accept = "application/json", responseType = "json", onProgress } = {}) {
  const xhr = new XMLHttpRequest();
  const promise = new Promise((resolve, reject) => {
    xhr.open(method, path);
    const all = authHeaders({ Accept: accept, ...headers });
    if (contentType) all["Content-Type"] = contentType;
    for (const [name, value] of Object.entries(all)) xhr.setRequestHeader(name, value);
    xhr.responseType = responseType === "blob" ? "blob" : "text";
    xhr.upload.addEventListener("progress", (event) => onProgress && onProgress({ phase: "sending", loaded: event.loaded, total: event.lengthComputable ? event.total : file.size }));
    xhr.upload.addEventListener("load", () => onProgress && onProgress({ phase: "processing", loaded: file.size, total: file.size }));
    xhr.addEventListener("abort", () => reject(Object.assign(new Error("cancelled"), { name: "AbortError" })));
    xhr.addEventListener("error", () => reject(new ApiError(0, { detail: "the upload failed: the connection broke" })));
    xhr.addEventListener("load", async () => {
      const header = (name) => xhr.getResponseHeader(name);
      const type = header("Content-Type") || "";
      let body = xhr.response;
      const ok = xhr.status >= 200 && xhr.status < 300;
      if (responseType === "blob" && (!ok || type.includes("json"))) body = await xhr.response.text();
      if (typeof body === "string" && type.includes("json")) {
        try {
          body = JSON.parse(body);
        } catch {
          /* left as text */
        }
      }
      if (!ok) reject(failure(xhr.status, body));
      else resolve({ status: xhr.status, body, header });
    });
    xhr.send(file);
  });
  return { promise, abort: () => xhr.abort() };
}

// How a file is sent: its media type and encoding, from its name.
export function fileKind(file) {
  const name = file.name.toLowerCase();
  const encodings = { ".gz": "gzip", ".gzip": "gzip", ".zst": "zstd", ".zstd": "zstd" };
  let encoding = null;
  let base = name;
  for (const [suffix, value] of Object.entries(encodings)) {
    if (name.endsWith(suffix)) {
      encoding = value;
      base = name.slice(0, -suffix.length);
    }
  }
  let type = "text/csv";
  if (/\.(parquet|pq)$/.test(base)) type = "application/vnd.apache.parquet";
  else if (/\.(jsonl|ndjson)$/.test(base)) type = "application/x-ndjson";
  return { type, encoding };
}

// Server-Sent Events over fetch, resumed after the last id on reconnect (as EventSource
// would, but with the Authorization header). Calls onEvent({type, data, id}).
// Returns {close()}. A 4xx other than 429 ends it with onError(error, false).
export function follow(path, { onEvent, onError, onEnd }) {
  let closed = false;
  let controller = null;
  let lastId = null;
  let retryMs = 2000;

  async function connect() {
    while (!closed) {
      controller = new AbortController();
      const headers = authHeaders({ Accept: "text/event-stream" });
      if (lastId) headers["Last-Event-ID"] = lastId;
      try {
        const response = await fetch(path, { headers, signal: controller.signal, cache: "no-store" });
        if (response.status === 204) {
          closed = true;
          if (onEnd) onEnd();
          return;
        }
        if (!response.ok) throw failure(response.status, await response.json().catch(() => null));
        await read(response.body);
      } catch (exc) {
        if (closed) return;
        const final = exc instanceof ApiError && exc.status >= 400 && exc.status < 500 && exc.status !== 429;
        if (onError) onError(exc, !final);
        if (final) return;
      }
      if (!closed) await new Promise((resolve) => setTimeout(resolve, retryMs));
    }
  }

  async function read(body) {
    const reader = body.pipeThrough(new TextDecoderStream()).getReader();
    let buffer = "";
    let event = { type: "message", data: [], id: null };
    for (;;) {
      const { value, done } = await reader.read();
      if (done || closed) return;
      buffer += value;
      let newline;
      while ((newline = buffer.indexOf("\n")) >= 0) {
        const line = buffer.slice(0, newline).replace(/\r$/, "");
        buffer = buffer.slice(newline + 1);
        if (line === "") {
          if (event.id !== null) lastId = event.id;
          if (event.data.length) onEvent({ type: event.type, data: JSON.parse(event.data.join("\n")), id: event.id });
          event = { type: "message", data: [], id: null };
          if (closed) return;
          continue;
        }
        if (line.startsWith(":")) continue; // a heartbeat
        const colon = line.indexOf(":");
        const field = colon < 0 ? line : line.slice(0, colon);
        const data = colon < 0 ? "" : line.slice(colon + 1).replace(/^ /, "");
        if (field === "event") event.type = data;
        else if (field === "data") event.data.push(data);
        else if (field === "id") event.id = data;
        else if (field === "retry" && /^\d+$/.test(data)) retryMs = Number(data);
      }
    }
  }

  connect();
  return {
    close() {
      closed = true;
      if (controller) controller.abort();
    },
  };
}

// A key for POSTs a double click must not repeat (the API honours Idempotency-Key).
export function idempotencyKey() {
  if (crypto.randomUUID) return crypto.randomUUID();
  const bytes = crypto.getRandomValues(new Uint8Array(16));
  return [...bytes].map((b) => b.toString(16).padStart(2, "0")).join("");
}
