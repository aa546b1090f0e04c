// Sweeps: the list, the form (a grid or random space per hyperparameter, from the API's
// schema) and a sweep's page: live leaderboard, overlaid curves, hyperparameter against
// metric, and the winner with its alias.

import { api, enc } from "../api.js";
import { lineChart, scatterChart } from "../charts.js";
import { badge, fill, card, confirm, el, errorBox, link, loading, number, shortId, table, uniqueId, value, when } from "../dom.js";
import { changedValues, deref, field, hyperparameters, knobGrid, propertiesOf, requestSchema, showProblem } from "../schema.js";
import { dataPicker, formFrame, formInputs } from "./jobs.js";
import { moveAlias } from "./models.js";

const ACTIVE_TRIAL = new Set(["pending", "queued", "running"]);

// ---- the list ---------------------------------------------------------------

export async function list(ctx) {
  const { view } = ctx;
  const box = el("div", {}, loading());
  view.append(
    el("div", { class: "page-head" }, el("h1", { text: "Sweeps" }), el("div", { class: "actions" }, el("a", { class: "button primary", href: "#/sweeps/new", text: "Start a sweep", "data-scope": "train" }))),
    el("section", { class: "card" }, box)
  );
  let running = false;
  await ctx.every(async () => {
    try {
      const sweeps = await api("/v1/sweeps?limit=100");
      running = sweeps.some((s) => s.status === "running");
      fill(box, 
        table(
          ["Sweep", "Model", "Status", "Trials", "Metric", "Best", "Winner", "Created"],
          sweeps.map((s) => {
            const done = (s.counts.succeeded || 0) + (s.counts.failed || 0) + (s.counts.cancelled || 0);
            return el(
              "tr",
              { "data-sweep-id": s.id },
              el("td", {}, link(`#/sweeps/${enc(s.id)}`, shortId(s.id), { class: "mono" })),
              el("td", { text: s.model_name }),
              el("td", {}, badge(s.status)),
              el("td", { class: "num", text: `${done}/${s.n_trials}` }),
              el("td", { text: `${s.metric} (${s.mode})` }),
              el("td", { class: "num", text: s.best ? number(s.best.value) : "–" }),
              el("td", {}, s.winner ? link(`#/models/${enc(s.winner.model.name)}/${s.winner.model.version}`, `v${s.winner.model.version}${s.winner.promoted_to ? ` (${s.winner.promoted_to})` : ""}`) : "–"),
              el("td", { text: when(s.created_at) })
            );
          }),
          { caption: "Sweeps", empty: "No sweeps yet: start one to train many variations and keep the best." }
        )
      );
    } catch (exc) {
      fill(box, errorBox(exc, "list the sweeps"));
      return exc.status !== 403;
    }
  }, () => (running ? 3000 : 15000));
}

// ---- the form -----------------------------------------------------------------

// Values typed as a list: "0.001, 0.01", "relu, tanh", "[32], [64, 64]".
export function parseValues(text) {
  const trimmed = text.trim();
  if (!trimmed) return [];
  try {
    const parsed = JSON.parse(`[${trimmed}]`);
    if (Array.isArray(parsed)) return parsed;
  } catch {
    /* not JSON: plain words */
  }
  return trimmed.split(",").map((token) => {
    const t = token.trim();
    if (/^-?\d+(\.\d+)?([eE][-+]?\d+)?$/.test(t)) return Number(t);
    if (t === "true" || t === "false") return t === "true";
    if (t === "null") return null;
    return t;
  });
}

const showValues = (values) => values.map((v) => (typeof v === "string" ? v : JSON.stringify(v))).join(", ");

// A starting grid for a knob: its choices, or a few values around its default.
function suggestion(schema) {
  if (schema.enum) return schema.enum.slice(0, 3);
  if (schema.type === "boolean") return [false, true];
  const d = schema.default;
  if (typeof d === "number" && d > 0) {
    if (schema.type === "integer") return [...new Set([Math.max(1, Math.round(d / 2)), d, d * 2])].filter((v) => schema.maximum === undefined || v <= schema.maximum);
    return [d / 3, d, d * 3].map((v) => Number(v.toPrecision(2))).filter((v) => schema.maximum === undefined || v <= schema.maximum);
  }
  if (Array.isArray(d)) return [d.slice(0, 1), d];
  return d === undefined || d === null ? [] : [d];
}

function searchRow(knobs, { name, kind, distributions, remove, onChange }) {
  const id = uniqueId("param");
  const knobSelect = el("select", { id: `${id}-name`, "aria-label": "Hyperparameter" }, knobs.map(([n]) => el("option", { value: n, text: n })));
  knobSelect.value = name;
  const valuesInput = el("input", { id: `${id}-values`, type: "text", spellcheck: "false", autocomplete: "off", "aria-label": "Values" });
  const dist = el("select", { id: `${id}-dist`, "aria-label": "Distribution" }, distributions.map((d) => el("option", { value: d, text: d })));
  const low = el("input", { id: `${id}-low`, type: "number", step: "any", "aria-label": "Low", placeholder: "low" });
  const high = el("input", { id: `${id}-high`, type: "number", step: "any", "aria-label": "High", placeholder: "high" });
  const hint = el("p", { class: "hint" });
  const error = el("p", { class: "field-error", hidden: true });
  const removeButton = el("button", { type: "button", class: "small", text: "Remove", "aria-label": "Remove this hyperparameter", onclick: remove });
  const node = el("div", { class: "search-row" }, el("div", { class: "search-controls" }, knobSelect, valuesInput, dist, low, high, removeButton), hint, error);
  const schemaOf = () => knobs.find(([n]) => n === knobSelect.value)[1];

  function fill() {
    const schema = schemaOf();
    const suggested = suggestion(schema);
    valuesInput.value = showValues(suggested);
    valuesInput.placeholder = schema.type === "integer" ? "e.g. 16, 32, 64" : schema.type === "number" ? "e.g. 0.001, 0.01" : schema.type === "array" ? "e.g. [32], [64, 64]" : "values, comma-separated";
    const numeric = schema.type === "number" || schema.type === "integer";
    dist.value = !numeric ? "choice" : schema.type === "integer" ? "int" : schema.default > 0 && schema.default < 0.1 ? "log_uniform" : "uniform";
    const nums = suggested.filter((v) => typeof v === "number");
    low.value = nums.length ? String(Math.min(...nums)) : "";
    high.value = nums.length ? String(Math.max(...nums)) : "";
    layout();
  }
  function layout() {
    const schema = schemaOf();
    const ranged = kind() === "random" && dist.value !== "choice";
    valuesInput.hidden = ranged;
    dist.hidden = kind() !== "random";
    low.hidden = high.hidden = !ranged;
    hint.textContent = ranged
      ? `${dist.value} between low and high · ${schema.description || ""} default ${value(schema.default)}`
      : `values, comma-separated${schema.type === "array" ? " (each a list, e.g. [32], [64, 64])" : ""} · ${schema.description ? `${schema.description} · ` : ""}default ${value(schema.default)}${schema.enum ? ` · one of ${schema.enum.join(", ")}` : ""}`;
    onChange();
  }
  knobSelect.addEventListener("change", fill);
  dist.addEventListener("change", layout);
  valuesInput.addEventListener("input", onChange);
  fill();

  return {
    node,
    input: knobSelect,
    layout,
    get name() {
      return knobSelect.value;
    },
    get path() {
      return kind() === "grid" ? `search.grid.${knobSelect.value}` : `search.random.parameters.${knobSelect.value}`;
    },
    count: () => parseValues(valuesInput.value).length,
    read() {
      if (kind() === "grid") return parseValues(valuesInput.value);
      if (dist.value === "choice") return { choice: parseValues(valuesInput.value) };
      const num = (input) => (input.value.trim() === "" ? null : Number(input.value));
      return { [dist.value]: [num(low), num(high)] };
    },
    show(messages) {
      error.textContent = messages.join(" ");
      error.hidden = !messages.length;
      node.classList.toggle("invalid", messages.length > 0);
    },
  };
}

export async function form(ctx) {
  const { view, query } = ctx;
  const inputs = await formInputs(ctx, "Start a sweep");
  if (!inputs) return;
  const { doc, datasets } = inputs;
  const sweepSchema = requestSchema(doc, "/v1/sweeps");
  const props = Object.fromEntries(propertiesOf(doc, sweepSchema));
  const search = Object.fromEntries(propertiesOf(doc, props.search));
  const randomProps = Object.fromEntries(propertiesOf(doc, search.random));
  const distributionSchema = deref(doc, (randomProps.parameters || {}).additionalProperties || {});
  const distributions = Object.keys(distributionSchema.properties || { uniform: 0, log_uniform: 0, int: 0, choice: 0 });
  const knobs = hyperparameters(doc);

  const picker = await dataPicker(ctx, { datasets, chosen: query.get("dataset") });
  const objective = [
    field("metric", props.metric, { path: "metric", label: "metric" }),
    field("mode", { ...props.mode, enum: ["min", "max"], nullable: true, default: null }, { path: "mode", label: "mode", note: props.mode.description, nullLabel: "auto" }),
    field("max_parallel", props.max_parallel, { path: "max_parallel", label: "max_parallel" }),
    field("promote_to", { ...props.promote_to, type: "string", default: "" }, { path: "promote_to", label: "promote_to", note: `${props.promote_to.description || ""} (empty: promote by hand from the leaderboard)` }),
  ];
  const stopping = propertiesOf(doc, props.early_stopping).map(([n, s]) => field(n, s, { path: `early_stopping.${n}`, label: n }));
  const base = knobGrid(doc, { initial: { epochs: 10 } });

  const kindName = uniqueId("kind");
  const radios = ["grid", "random"].map((k) => el("label", { class: "check" }, el("input", { type: "radio", name: kindName, value: k, checked: k === "grid" }), el("span", { text: k === "grid" ? "grid: every combination" : "random: draw trials from ranges" })));
  const kind = () => radios.find((r) => r.querySelector("input").checked).querySelector("input").value;
  const randomFields = [field("n_trials", randomProps.n_trials, { path: "search.random.n_trials", label: "n_trials", initial: 8 }), field("seed", randomProps.seed, { path: "search.random.seed", label: "seed" })];
  const randomBox = el("div", { class: "knobs", hidden: true }, randomFields.map((f) => f.node));
  const rowsBox = el("div", { class: "search-rows" });
  const trialCount = el("p", { class: "trial-count", "aria-live": "polite" });
  const rows = [];
  const searchField = { name: "search", path: "search", input: rowsBox, show: (m) => searchError(m) };
  const searchErrorNode = el("p", { class: "field-error", hidden: true });
  const searchError = (messages) => {
    searchErrorNode.textContent = messages.join(" ");
    searchErrorNode.hidden = !messages.length;
  };
  const updateCount = () => {
    if (kind() === "grid") {
      const n = rows.reduce((product, r) => product * Math.max(1, r.count()), rows.length ? 1 : 0);
      trialCount.textContent = `${n} trial${n === 1 ? "" : "s"} (every combination).`;
    } else {
      trialCount.textContent = `${randomFields[0].input.value || "?"} trials drawn from the ranges.`;
    }
  };
  function addRow(name) {
    const used = new Set(rows.map((r) => r.name));
    const free = name || (knobs.find(([n]) => !used.has(n) && ["learning_rate", "hidden_layers", "dropout", "batch_size"].includes(n)) || knobs.find(([n]) => !used.has(n)))[0];
    const row = searchRow(knobs, {
      name: free,
      kind,
      distributions,
      onChange: updateCount,
      remove: () => {
        rows.splice(rows.indexOf(row), 1);
        row.node.remove();
        updateCount();
      },
    });
    rows.push(row);
    rowsBox.append(row.node);
    updateCount();
    return row;
  }
  addRow("learning_rate");
  for (const r of radios) {
    r.querySelector("input").addEventListener("change", () => {
      randomBox.hidden = kind() !== "random";
      rows.forEach((row) => row.layout());
      updateCount();
    });
  }
  randomFields[0].input.addEventListener("input", updateCount);

  const submit = el("button", { type: "submit", class: "primary", text: "Start the sweep", "data-scope": "train" });
  const { form: theForm, summary } = formFrame(
    "sweep-form",
    picker,
    el(
      "fieldset",
      { class: "search" },
      el("legend", { text: "Search space" }),
      el("div", { class: "radios", role: "radiogroup", "aria-label": "Kind of search" }, radios),
      randomBox,
      rowsBox,
      searchErrorNode,
      el("div", { class: "actions" }, el("button", { type: "button", id: "add-search-row", text: "Add a hyperparameter", onclick: () => addRow().input.focus() }), trialCount)
    ),
    el("fieldset", { class: "objective" }, el("legend", { text: "Objective and early stopping" }), el("div", { class: "knobs" }, [...objective, ...stopping].map((f) => f.node))),
    el("details", { class: "base", open: true }, el("summary", { text: `Base hyperparameters (every trial; the search overrides them)` }), base.grid),
    el("div", { class: "actions sticky" }, submit)
  );
  theForm.addEventListener("submit", async (event) => {
    event.preventDefault();
    summary.hidden = true;
    const body = { ...picker.read(), hyperparameters: changedValues(base.fields) };
    for (const f of objective) {
      const { value: v, changed } = f.read();
      if (changed && v !== null && v !== "") body[f.name] = v;
    }
    const rule = {};
    for (const f of stopping) {
      const { value: v, changed } = f.read();
      if (changed) rule[f.name] = v;
    }
    if (Object.keys(rule).length) body.early_stopping = rule;
    const space = Object.fromEntries(rows.map((r) => [r.name, r.read()]));
    if (kind() === "grid") body.search = { grid: space };
    else {
      body.search = { random: { parameters: space } };
      for (const f of randomFields) {
        const { value: v } = f.read();
        if (v !== undefined && v !== null) body.search.random[f.name] = v;
      }
    }
    submit.disabled = true;
    try {
      const sweep = await api("/v1/sweeps", { method: "POST", json: body });
      ctx.go(`#/sweeps/${enc(sweep.id)}`);
    } catch (exc) {
      showProblem([...picker.fields, ...objective, ...stopping, ...randomFields, ...rows, searchField, ...base.fields], summary, exc, errorBox(exc, "start the sweep").textContent);
    } finally {
      submit.disabled = false;
    }
  });
  fill(view, el("div", { class: "page-head" }, el("h1", { text: "Start a sweep" })), el("p", { class: "scope-note", "data-scope-note": "train", hidden: true }), el("section", { class: "card" }, theForm));
}

// ---- one sweep, live ------------------------------------------------------------

export async function detail(ctx) {
  const { view, params } = ctx;
  const id = params.id;
  view.append(loading());
  const curves = new Map(); // job id → {epochs, status}
  const title = el("h1", {});
  const facts = el("p", { class: "facts-line" });
  const progress = el("progress", { max: "1", value: "0", "aria-label": "Trials finished" });
  const cancel = el("button", { type: "button", class: "danger", text: "Cancel sweep", "data-scope": "train" });
  const winnerBox = el("div", { "aria-live": "polite" });
  const board = el("div", {});
  const curveBox = el("div", {});
  const scatterBox = el("div", {});
  const xSelect = el("select", { id: "scatter-x" });
  let sweep = null;
  let aliases = {};

  cancel.addEventListener("click", async () => {
    const ok = await confirm({ title: "Cancel this sweep?", body: ["No new trial starts, and every unfinished trial is cancelled. Finished trials and their model versions stay."], ok: "Cancel the sweep", danger: true });
    if (!ok) return;
    try {
      sweep = await api(`/v1/sweeps/${enc(id)}/cancel`, { method: "POST" });
      await refresh();
    } catch (exc) {
      fill(winnerBox, errorBox(exc, "cancel the sweep"));
    }
  });
  xSelect.addEventListener("change", () => drawScatter());

  const searched = () => {
    const s = sweep.search || {};
    return Object.keys(s.grid || (s.random && s.random.parameters) || {});
  };
  const cls = (trial) => `s${trial % 10}`;
  const metricLabel = () => `${sweep.metric} (${sweep.mode === "min" ? "lower" : "higher"} is better)`;

  async function refresh() {
    sweep = await api(`/v1/sweeps/${enc(id)}`);
    try {
      aliases = (await api(`/v1/models/${enc(sweep.model_name)}`)).aliases || {};
    } catch {
      aliases = {};
    }
    // Curves of trials that have run: fetched again only while they change.
    await Promise.all(
      sweep.leaderboard
        .filter((t) => t.job_id && (!curves.has(t.job_id) || ACTIVE_TRIAL.has(curves.get(t.job_id).status) || curves.get(t.job_id).epochs.length < t.epoch))
        .map((t) => api(`/v1/jobs/${enc(t.job_id)}/metrics`).then((m) => curves.set(t.job_id, { epochs: m.epochs, status: t.status })).catch(() => {}))
    );
    if (!ctx.alive()) return false;
    render();
    return sweep.status === "running";
  }

  function render() {
    const c = sweep.counts || {};
    const done = (c.succeeded || 0) + (c.failed || 0) + (c.cancelled || 0);
    fill(title, `Sweep ${shortId(sweep.id)} · ${sweep.model_name} `, badge(sweep.status));
    const rule = sweep.early_stopping || {};
    fill(facts, 
      `${done} of ${sweep.n_trials} trials finished · ${c.running || 0} running · ${c.stopped_early || 0} stopped early · metric ${metricLabel()} · early stopping ${rule.rule || "–"}${rule.rule && rule.rule !== "none" ? ` after ${rule.grace_epochs} epochs` : ""} · target ${sweep.target} · `,
      sweep.dataset_id ? link(`#/datasets/${enc(sweep.dataset_id)}`, "dataset") : ""
    );
    progress.value = sweep.n_trials ? done / sweep.n_trials : 0;
    progress.hidden = sweep.status !== "running";
    cancel.hidden = sweep.status !== "running" || sweep.cancel_requested;
    renderWinner();
    renderBoard();
    drawCurves();
    if (!xSelect.options.length) {
      fill(xSelect, ...searched().map((n) => el("option", { value: n, text: n })));
    }
    drawScatter();
  }

  function renderWinner() {
    const w = sweep.winner;
    const best = sweep.best;
    if (w) {
      const v = w.model.version;
      const champion = aliases.champion;
      const promoteButton =
        champion === v
          ? null
          : el("button", {
              type: "button",
              class: "primary",
              id: "promote-winner",
              "data-scope": "admin",
              text: champion ? `Make v${v} champion (now v${champion})…` : `Make v${v} champion…`,
              onclick: () => promote(v),
            });
      const aliasNames = Object.entries(aliases).filter(([, x]) => x === v).map(([a]) => a);
      fill(winnerBox, 
        el(
          "div",
          { class: "callout ok winner" },
          el("p", {}, el("strong", { text: "Winner: " }), `trial ${best ? best.trial : "?"} → `, link(`#/models/${enc(w.model.name)}/${v}`, `${w.model.name} v${v}`), best ? ` · ${sweep.metric} ${number(best.value)} at epoch ${best.best_epoch}` : ""),
          el("p", {}, aliasNames.length ? ["Aliases: ", aliasNames.map((a) => el("span", { class: `alias${a === "champion" ? " champion" : ""}`, text: a }))] : `No alias points to it${w.promoted_to ? "" : " yet"}.`, w.promoted_to ? ` (promoted to “${w.promoted_to}” by the sweep)` : ""),
          el("div", { class: "actions" }, promoteButton, el("a", { class: "button", href: `#/models/${enc(w.model.name)}/compare?versions=${topVersions().join(",")}`, text: "Compare the top versions" }))
        )
      );
    } else if (best) {
      fill(winnerBox, el("div", { class: "callout" }, el("strong", { text: "Leading so far: " }), `trial ${best.trial}, ${sweep.metric} ${number(best.value)} (epoch ${best.best_epoch}).`));
    } else {
      fill(winnerBox, el("div", { class: "callout" }, sweep.status === "running" ? "No trial has a score yet." : "No trial finished with a score."));
    }
  }

  function topVersions() {
    return sweep.leaderboard.filter((t) => t.model_version).slice(0, 4).map((t) => t.model_version);
  }

  async function promote(versionNumber) {
    const v = await api(`/v1/models/${enc(sweep.model_name)}/versions/${versionNumber}`);
    await moveAlias(ctx, sweep.model_name, v, aliases, "champion", refresh);
  }

  function renderBoard() {
    const names = searched();
    const rows = sweep.leaderboard.map((t, rank) => {
      const isWinner = sweep.winner && t.job_id === sweep.winner.job_id;
      const status = el(
        "td",
        {},
        badge(t.status),
        t.stopped_early ? el("span", { class: "tag warn stopped", title: t.stop_reason || "", text: ` stopped early at epoch ${t.stopped_at_epoch ?? t.epoch}` }) : null
      );
      return el(
        "tr",
        { "data-trial": t.trial, class: isWinner ? "winner" : "" },
        el("td", { class: "num", text: t.value === null || t.value === undefined ? "–" : String(rank + 1) }),
        el("td", {}, el("span", { class: `swatch ${cls(t.trial)}`, "aria-hidden": "true" }), t.job_id ? link(`#/jobs/${enc(t.job_id)}`, `trial ${t.trial}`) : `trial ${t.trial}`, isWinner ? el("span", { class: "tag ok", text: " winner" }) : null),
        names.map((n) => el("td", { class: "mono", text: value((t.hyperparameters || {})[n]) })),
        status,
        el("td", { class: "num strong", text: number(t.value) }),
        el("td", { class: "num", text: t.best_epoch ?? "–" }),
        el("td", { class: "num", text: t.epochs ? `${t.epoch}/${t.epochs}` : "–" }),
        el("td", {}, t.model_version ? link(`#/models/${enc(sweep.model_name)}/${t.model_version}`, `v${t.model_version}`) : t.error ? el("span", { class: "error", text: t.error }) : "–")
      );
    });
    fill(board, table(["#", "Trial", ...names, "Status", sweep.metric, "Best epoch", "Epochs", "Version"], rows, { caption: "Leaderboard, best first", className: "leaderboard" }));
  }

  function drawCurves() {
    const key = sweep.metric;
    const winnerJob = sweep.winner ? sweep.winner.job_id : sweep.best && sweep.best.job_id;
    const series = sweep.leaderboard
      .filter((t) => t.job_id && curves.has(t.job_id))
      .sort((a, b) => a.trial - b.trial)
      .map((t) => ({
        key: `trial-${t.trial}`,
        name: `trial ${t.trial}: ${searched().map((n) => `${n}=${value((t.hyperparameters || {})[n])}`).join(", ")}${t.stopped_early ? ` (stopped at ${t.stopped_at_epoch ?? t.epoch})` : ""}`,
        cls: cls(t.trial),
        emphasis: t.job_id === winnerJob,
        dashed: t.status === "cancelled" && !t.stopped_early,
        stoppedAt: t.stopped_early ? t.stopped_at_epoch ?? t.epoch : null,
        points: curves.get(t.job_id).epochs.filter((e) => e[key] !== null && e[key] !== undefined).map((e) => [e.epoch, e[key]]),
      }));
    const epochs = Math.max(2, ...sweep.leaderboard.map((t) => t.epochs || 0));
    fill(curveBox, 
      lineChart({
        title: `${key} per epoch, every trial (× marks a trial stopped early; the winner is drawn thicker)`,
        name: "sweep-curves",
        xMax: epochs,
        series,
        markers: false,
        yRange: key.includes("accuracy") ? [0, 1] : undefined,
        format: key.includes("accuracy") ? (v) => `${Math.round(v * 100)}%` : undefined,
        height: 280,
      })
    );
  }

  function drawScatter() {
    const name = xSelect.value;
    if (!name) return;
    const spec = (sweep.search.random && sweep.search.random.parameters && sweep.search.random.parameters[name]) || null;
    const scored = sweep.leaderboard.filter((t) => t.value !== null && t.value !== undefined);
    const xs = scored.map((t) => (t.hyperparameters || {})[name]);
    const numeric = xs.every((x) => typeof x === "number");
    const positive = numeric && xs.every((x) => x > 0);
    const log = numeric && positive && (Boolean(spec && spec.log_uniform) || (xs.length > 1 && Math.max(...xs) / Math.min(...xs) >= 20));
    const categories = numeric ? null : [...new Set(xs.map((x) => JSON.stringify(x)))].sort();
    fill(scatterBox, 
      scatterChart({
        title: `${sweep.metric} against ${name} (one point per scored trial; hollow: stopped early)`,
        xLabel: name,
        yLabel: sweep.metric,
        log,
        categories,
        points: scored.map((t) => ({ x: (t.hyperparameters || {})[name], y: t.value, cls: cls(t.trial), hollow: t.stopped_early, tag: `t${t.trial}`, label: `trial ${t.trial}: ${name}=${value((t.hyperparameters || {})[name])}, ${sweep.metric} ${number(t.value)}` })),
      })
    );
  }

  await refresh();
  fill(view, 
    el("nav", { class: "crumbs", "aria-label": "Breadcrumb" }, link("#/sweeps", "Sweeps"), " / "),
    el("div", { class: "page-head" }, title, el("div", { class: "actions" }, cancel)),
    facts,
    progress,
    winnerBox,
    card("Leaderboard", board),
    el(
      "div",
      { class: "columns wide-left" },
      el("section", { class: "card" }, el("h2", { text: "Validation curves" }), curveBox),
      el("section", { class: "card" }, el("h2", { text: "Hyperparameter against metric" }), el("div", { class: "toolbar" }, el("label", { for: "scatter-x", text: "Hyperparameter" }), xSelect), scatterBox)
    )
  );
  if (sweep.status === "running") ctx.every(refresh, 2000);
}
