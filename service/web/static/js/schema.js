// Forms built from the API's own OpenAPI document (/openapi.json): every hyperparameter
// with its type, default, bounds or choices and description, so a knob the API gains
// appears here by itself. Validation is the API's: its problem+json `errors` are shown
// next to the field they name.

import { el, fill, uniqueId, value as show } from "./dom.js";

let documentPromise = null;

export function openapi() {
  if (!documentPromise) {
    documentPromise = fetch("/openapi.json", { headers: { Accept: "application/json" } }).then((r) => {
      if (!r.ok) throw new Error(`/openapi.json answered ${r.status}`);
      return r.json();
    });
    documentPromise.catch(() => (documentPromise = null));
  }
  return documentPromise;
}

export function deref(doc, schema) {
  let current = schema || {};
  for (let i = 0; current.$ref && i < 10; i++) {
    current = current.$ref.replace(/^#\//, "").split("/").reduce((node, part) => node[part], doc);
  }
  if (current.allOf && current.allOf.length === 1) return { ...deref(doc, current.allOf[0]), ...current, allOf: undefined };
  return current;
}

// The JSON schema of a request body: `POST /v1/jobs` → JobCreate.
export function requestSchema(doc, path, method = "post") {
  const operation = (doc.paths[path] || {})[method] || {};
  const content = (operation.requestBody || {}).content || {};
  return deref(doc, (content["application/json"] || {}).schema);
}

export function propertiesOf(doc, schema) {
  return Object.entries(deref(doc, schema).properties || {}).map(([name, s]) => [name, deref(doc, s)]);
}

export function hyperparameters(doc) {
  return propertiesOf(doc, requestSchema(doc, "/v1/jobs").properties.hyperparameters);
}

// The scopes an operation's security requirement lists (OpenAPI), or null if it lists none.
export function scopesOf(doc, path, method) {
  const operation = (doc.paths[path] || {})[method];
  const security = (operation && operation.security) || doc.security || [];
  const scopes = security.flatMap((requirement) => Object.values(requirement).flat());
  return scopes.length ? scopes : null;
}

function kindOf(schema, nullable) {
  if (schema.enum) return "enum";
  if (schema.type === "boolean") return nullable ? "enum" : "boolean"; // null needs a third choice
  if (schema.type === "integer" || schema.type === "number") return "number";
  if (schema.type === "array") return "list";
  return "text";
}

function hint(schema) {
  const parts = [];
  if (schema.description) parts.push(schema.description);
  if (schema.oneOf && !schema.description) parts.push(schema.oneOf.map(alternative).join(", or "));
  const bounds = [];
  if (schema.minimum !== undefined) bounds.push(`${schema.exclusiveMinimum === true ? ">" : "≥"} ${schema.minimum}`);
  if (schema.exclusiveMinimum !== undefined && typeof schema.exclusiveMinimum === "number") bounds.push(`> ${schema.exclusiveMinimum}`);
  if (schema.maximum !== undefined) bounds.push(`${schema.exclusiveMaximum === true ? "<" : "≤"} ${schema.maximum}`);
  if (schema.exclusiveMaximum !== undefined && typeof schema.exclusiveMaximum === "number") bounds.push(`< ${schema.exclusiveMaximum}`);
  if (bounds.length) parts.push(bounds.join(", "));
  if ("default" in schema) parts.push(`default ${schema.default === null ? "null" : show(schema.default)}`);
  return parts.join(" · ");
}

// One alternative of a oneOf, in words: "integer 1–65536", "auto".
function alternative(schema) {
  if (schema.enum) return schema.enum.join(" or ");
  const range = schema.minimum !== undefined && schema.maximum !== undefined ? ` ${schema.minimum}–${schema.maximum}` : "";
  return `${schema.type || "value"}${range}`;
}

function parseList(text) {
  return text
    .split(/[\s,]+/)
    .filter(Boolean)
    .map((token) => (/^-?\d+(\.\d+)?([eE][-+]?\d+)?$/.test(token) ? Number(token) : token));
}

function parseLoose(text) {
  try {
    return JSON.parse(text);
  } catch {
    return text;
  }
}

// One form field for a schema property. `path` is the name the API's errors use
// ("hyperparameters.epochs"). read() → {value, changed}; show(messages) puts an error
// next to it.
export function field(name, schema, { path = name, label = name, initial, required = false, note, nullLabel = "null" } = {}) {
  const id = uniqueId("f");
  const hintId = `${id}-hint`;
  const errorId = `${id}-error`;
  const nullable = schema.nullable === true || (Array.isArray(schema.type) && schema.type.includes("null")) || (schema.enum || []).includes(null);
  const kind = kindOf(schema, nullable);
  const start = initial !== undefined ? initial : schema.default;
  let input;
  if (kind === "enum") {
    const choices = schema.type === "boolean" && !schema.enum ? [true, false] : schema.enum.filter((o) => o !== null);
    const options = [...(nullable ? [null] : []), ...choices];
    input = el("select", { id }, options.map((o) => el("option", { value: o === null ? "" : String(o), text: o === null ? nullLabel : String(o) })));
    input.value = start === null || start === undefined ? "" : String(start);
  } else if (kind === "boolean") {
    input = el("input", { id, type: "checkbox", checked: Boolean(start) });
  } else if (kind === "number") {
    input = el("input", {
      id,
      type: "number",
      inputmode: schema.type === "integer" ? "numeric" : "decimal",
      step: schema.type === "integer" ? "1" : "any",
      min: schema.minimum,
      max: schema.maximum,
      placeholder: nullable ? nullLabel : "",
      value: start === null || start === undefined ? "" : String(start),
    });
  } else {
    const listText = Array.isArray(start) ? start.join(", ") : start === null || start === undefined ? "" : typeof start === "object" ? JSON.stringify(start) : String(start);
    input = el("input", { id, type: "text", spellcheck: "false", autocomplete: "off", value: listText, placeholder: kind === "list" ? `e.g. 64, 64${nullable ? ` (empty: ${nullLabel})` : ""}` : nullable ? nullLabel : "" });
  }
  input.setAttribute("aria-describedby", hintId);
  if (required) input.required = true;
  input.name = path;
  const error = el("p", { class: "field-error", id: errorId, hidden: true });
  const labelNode = el("label", { for: id }, el("span", { class: "name", text: label }));
  const node =
    kind === "boolean"
      ? el("div", { class: "field checkbox", "data-field": path }, el("div", { class: "check" }, input, labelNode), el("p", { class: "hint", id: hintId, text: note || hint(schema) }), error)
      : el("div", { class: "field", "data-field": path }, labelNode, input, el("p", { class: "hint", id: hintId, text: note || hint(schema) }), error);

  function read() {
    let v;
    if (kind === "boolean") v = input.checked;
    else if (kind === "enum") {
      v = input.value === "" && nullable ? null : input.value;
      if (schema.type === "boolean" && v !== null) v = v === "true";
      else if ((schema.type === "integer" || schema.type === "number") && v !== null) v = Number(v);
    }
    else if (kind === "number") {
      const t = input.value.trim();
      if (t === "") v = nullable ? null : undefined;
      else v = Number.isFinite(Number(t)) ? Number(t) : t;
    } else if (kind === "list") v = parseList(input.value);
    else {
      const t = input.value.trim();
      v = t === "" ? (nullable ? null : undefined) : parseLoose(t);
    }
    if (v === undefined) return { value: undefined, changed: false };
    const changed = JSON.stringify(v) !== JSON.stringify(schema.default);
    return { value: v, changed };
  }

  function showErrors(messages) {
    error.textContent = messages.join(" ");
    error.hidden = !messages.length;
    if (messages.length) {
      input.setAttribute("aria-invalid", "true");
      input.setAttribute("aria-describedby", `${errorId} ${hintId}`);
    } else {
      input.removeAttribute("aria-invalid");
      input.setAttribute("aria-describedby", hintId);
    }
    node.classList.toggle("invalid", messages.length > 0);
  }

  return { name, path, node, input, read, show: showErrors, schema };
}

// Shows a problem+json `errors` object next to the fields it names: the field whose
// path is the longest prefix of the error's key ("hyperparameters.hidden_layers[1]" →
// the hidden_layers field). Anything unmatched goes in `summary`. Focuses the first.
export function showProblem(fields, summary, error, fallback) {
  for (const f of fields) f.show([]);
  const byField = new Map();
  const unmatched = [];
  for (const [key, raw] of Object.entries(error.errors || {})) {
    const messages = [].concat(raw).map(String);
    const owner = fields
      .filter((f) => key === f.path || key.startsWith(`${f.path}.`) || key.startsWith(`${f.path}[`))
      .sort((a, b) => b.path.length - a.path.length)[0];
    if (!owner) {
      unmatched.push(`${key}: ${messages.join(" ")}`);
      continue;
    }
    // "[1]" → "item 2", ".uniform[0]" → "uniform[0]": where inside the field.
    const rest = key
      .slice(owner.path.length)
      .replace(/^\./, "")
      .replace(/^\[(\d+)\]/, (_, i) => `item ${Number(i) + 1}`);
    const list = byField.get(owner) || [];
    list.push(...messages.map((m) => (rest ? `${rest}: ${m}` : m)));
    byField.set(owner, list);
  }
  for (const [f, messages] of byField) f.show(messages);
  const lines = [];
  if (byField.size) lines.push(`The API refused this: ${byField.size === 1 ? "one field needs" : `${byField.size} fields need`} a change (marked below).`);
  else lines.push(fallback || error.message);
  lines.push(...unmatched);
  fill(summary, ...lines.map((line) => el("p", { text: line })));
  summary.hidden = false;
  const first = fields.find((f) => byField.has(f));
  if (first) first.input.focus();
  else summary.focus();
  return byField.size;
}

// The hyperparameter fields as a grid, in the API's order.
export function knobGrid(doc, { prefix = "hyperparameters", initial = {}, only = null } = {}) {
  const fields = hyperparameters(doc)
    .filter(([name]) => !only || only.includes(name))
    .map(([name, schema]) => field(name, schema, { path: `${prefix}.${name}`, initial: initial[name] }));
  const grid = el("div", { class: "knobs" }, fields.map((f) => f.node));
  return { fields, grid };
}

// The hyperparameters a user changed from their defaults.
export function changedValues(fields) {
  const out = {};
  for (const f of fields) {
    const { value, changed } = f.read();
    if (changed) out[f.name] = value;
  }
  return out;
}
