// Small DOM helpers. Every value from the API goes in as text (textContent, attributes),
// never as markup: nothing here parses HTML.

export const $ = (selector, root = document) => root.querySelector(selector);
export const $$ = (selector, root = document) => [...root.querySelectorAll(selector)];

const PROPERTIES = new Set(["checked", "disabled", "hidden", "value", "selected", "open", "multiple", "required"]);

// el("a", {href: "#/x", text: "x", class: "c", onclick: f}, child, "text", [more])
export function el(tag, attributes = {}, ...children) {
  const node = document.createElement(tag);
  for (const [name, value] of Object.entries(attributes || {})) {
    if (value === undefined || value === null || value === false) continue;
    if (name === "text") node.textContent = String(value);
    else if (name.startsWith("on")) node.addEventListener(name.slice(2), value);
    else if (PROPERTIES.has(name)) node[name] = value;
    else node.setAttribute(name, value === true ? "" : String(value));
  }
  append(node, children);
  return node;
}

function append(node, children) {
  for (const child of children) {
    if (child === null || child === undefined || child === false) continue;
    if (Array.isArray(child)) append(node, child);
    else node.append(child instanceof Node ? child : String(child));
  }
}

export const text = (value) => document.createTextNode(String(value));

// Replace a node's children, skipping null/false (replaceChildren would write "null").
export function fill(node, ...children) {
  node.replaceChildren();
  append(node, children);
  return node;
}

// ---- formatting -----------------------------------------------------------

const missing = (value) => value === null || value === undefined || Number.isNaN(value);
export const number = (value, digits = 4) => (missing(value) ? "–" : String(Number(Number(value).toPrecision(digits))));
export const percent = (value) => (missing(value) ? "–" : `${(100 * value).toFixed(1)} %`);
export const integer = (value) => (missing(value) ? "–" : Number(value).toLocaleString("en"));
export const when = (iso) =>
  iso
    ? new Date(iso).toLocaleString(undefined, { month: "short", day: "numeric", hour: "2-digit", minute: "2-digit" })
    : "–";
export function bytes(n) {
  if (missing(n)) return "–";
  const units = ["B", "KiB", "MiB", "GiB", "TiB"];
  let i = 0;
  while (n >= 1024 && i < units.length - 1) (n /= 1024), i++;
  return i ? `${n.toFixed(1)} ${units[i]}` : `${n} B`;
}
export function seconds(s) {
  if (missing(s)) return "–";
  if (s < 90) return `${s.toFixed(s < 10 ? 1 : 0)} s`;
  if (s < 5400) return `${Math.round(s / 60)} min`;
  return `${(s / 3600).toFixed(1)} h`;
}
// A hyperparameter's value as people write it: lists as [64, 64], null as "–".
export const value = (v) =>
  v === null || v === undefined ? "–" : Array.isArray(v) ? `[${v.map(value).join(", ")}]` : typeof v === "object" ? JSON.stringify(v) : String(v);
export const shortId = (id) => String(id).slice(0, 8);

// ---- building blocks ------------------------------------------------------

export function badge(status, label = status) {
  return el("span", { class: `badge ${status}`, text: label });
}

export function link(href, label, attributes = {}) {
  return el("a", { href, text: label, ...attributes });
}

export function card(title, ...children) {
  return el("section", { class: "card" }, title ? el("h2", { text: title }) : null, ...children);
}

// A table in a horizontally scrolling box (narrow screens), with a caption for screen readers.
export function table(headers, rows, { caption, className = "", empty } = {}) {
  if (!rows.length && empty) return el("p", { class: "empty", text: empty });
  const head = el("tr", {}, headers.map((h) => (h instanceof Node ? h : el("th", { scope: "col", text: h }))));
  return el(
    "div",
    { class: "table-wrap" },
    el("table", { class: `list ${className}` }, caption ? el("caption", { class: "sr-only", text: caption }) : null, el("thead", {}, head), el("tbody", {}, rows))
  );
}

export function definitionList(pairs) {
  return el(
    "dl",
    { class: "facts" },
    pairs.filter(Boolean).map(([term, detail]) => el("div", {}, el("dt", { text: term }), el("dd", {}, detail instanceof Node ? detail : String(detail))))
  );
}

let uid = 0;
export const uniqueId = (prefix) => `${prefix}-${++uid}`;

// A message for a failed request: what was being done, and the API's own words.
export function problemText(error, doing) {
  const detail = error.message || "unknown error";
  if (error.status === 403) {
    const scope = error.scope ? `the “${error.scope}” scope` : "a scope it does not have";
    return `Your API key may not ${doing}: it needs ${scope}. (${detail})`;
  }
  if (error.status === 0) return `Could not ${doing}: the API did not answer. Is the service running?`;
  return `Could not ${doing}: ${detail}`;
}

export function errorBox(error, doing) {
  return el("p", { class: "error", role: "alert", text: problemText(error, doing) });
}

export function loading(what = "Loading…") {
  return el("p", { class: "muted loading", text: what });
}

// ---- dialogs ----------------------------------------------------------------

// A modal confirmation (keyboard: focus starts on Cancel, Esc cancels). Resolves true or false.
export function confirm({ title, body, ok = "Confirm", danger = false }) {
  const dialog = $("#confirm-dialog");
  $("#confirm-title").textContent = title;
  fill($("#confirm-body"), [].concat(body).filter(Boolean).map((b) => (b instanceof Node ? b : el("p", { text: b }))));
  const button = $("#confirm-ok");
  button.textContent = ok;
  button.classList.toggle("danger", danger);
  dialog.returnValue = "cancel";
  const form = $("form", dialog);
  return new Promise((resolve) => {
    // Answered by this showing's own submit (the button pressed) or Esc, both dispatched
    // at once; never by the close event, which is queued and can belong to an earlier one.
    const done = (answer) => {
      form.removeEventListener("submit", submitted);
      dialog.removeEventListener("cancel", cancelled);
      resolve(answer);
    };
    const submitted = (event) => done(Boolean(event.submitter) && event.submitter.value === "ok");
    const cancelled = () => done(false);
    form.addEventListener("submit", submitted);
    dialog.addEventListener("cancel", cancelled);
    dialog.showModal();
    $("#confirm-cancel").focus();
  });
}

// ---- files ----------------------------------------------------------------

// A drop target that is also a keyboard-reachable file picker.
export function dropzone({ label, hint, accept, onFile, disabled = false }) {
  const id = uniqueId("file");
  const input = el("input", { type: "file", id, accept, class: "file-input", disabled });
  const zone = el(
    "div",
    { class: "dropzone", "data-dropzone": "" },
    input,
    el("label", { for: id }, el("strong", { text: label }), el("span", { class: "muted", text: hint }))
  );
  const take = (file) => {
    if (file && !input.disabled) onFile(file);
  };
  input.addEventListener("change", () => {
    take(input.files[0]);
    input.value = "";
  });
  zone.addEventListener("dragover", (event) => {
    event.preventDefault();
    zone.classList.add("over");
  });
  zone.addEventListener("dragleave", () => zone.classList.remove("over"));
  zone.addEventListener("drop", (event) => {
    event.preventDefault();
    zone.classList.remove("over");
    take(event.dataTransfer && event.dataTransfer.files[0]);
  });
  zone.input = input;
  return zone;
}

// A file's name without its data extensions: "sales.csv.gz" → "sales".
export function stem(filename) {
  return filename.replace(/(\.(csv|tsv|txt|parquet|pq|jsonl|ndjson|json|gz|gzip|zst|zstd))+$/i, "") || filename;
}

export function download(blob, filename) {
  const url = URL.createObjectURL(blob);
  const anchor = el("a", { href: url, download: filename, text: `Download ${filename}`, class: "button" });
  return anchor;
}
