// Models: the list, a model's version table (aliases, picking versions to compare), a
// version's page (metrics, a one-row prediction, scoring a whole file) and the comparison.

import { api, can, enc, send } from "../api.js";
import { confusionMatrix, lineChart, reliabilityDiagram } from "../charts.js";
import { fill, bytes, card, confirm, definitionList, download, dropzone, el, errorBox, integer, link, loading, number, percent, shortId, stem, table, uniqueId, value, when } from "../dom.js";
import { openapi } from "../schema.js";

const MAX_COMPARED = 6;

// Final metrics of a version, wherever the API keeps them (the kept epoch or the evaluation).
export function finalMetrics(version) {
  const m = version.metrics || {};
  const v = m.validation || {};
  return {
    val_accuracy: m.val_accuracy ?? v.accuracy,
    val_loss: m.val_loss ?? v.log_loss,
    macro_f1: v.macro_f1 ?? m.macro_f1,
    epochs: m.epochs_run ?? m.epoch,
  };
}

const versionHref = (name, version) => `#/models/${enc(name)}/${version}`;

function aliasBadges(aliases, version) {
  return Object.entries(aliases || {})
    .filter(([, v]) => v === version)
    .map(([alias]) => el("span", { class: `alias${alias === "champion" ? " champion" : ""}`, text: alias }));
}

// ---- the list -------------------------------------------------------------

export async function list(ctx) {
  const { view } = ctx;
  const box = el("div", {}, loading());
  view.append(el("div", { class: "page-head" }, el("h1", { text: "Models" })), el("section", { class: "card" }, box));
  try {
    const summaries = await api("/v1/models");
    const models = await Promise.all(summaries.map((s) => api(`/v1/models/${enc(s.name)}`).then((m) => ({ ...s, ...m })).catch(() => s)));
    fill(box, 
      table(
        ["Model", "Versions", "Latest", "Best val acc", "Aliases", "Updated"],
        models.map((m) => {
          const versions = m.versions || [];
          const best = versions.map(finalMetrics).map((f) => f.val_accuracy).filter((a) => a !== undefined && a !== null);
          return el(
            "tr",
            { "data-model": m.name },
            el("td", {}, link(`#/models/${enc(m.name)}`, m.name)),
            el("td", { class: "num", text: String(m.n_versions) }),
            el("td", {}, link(versionHref(m.name, m.latest_version), `v${m.latest_version}`)),
            el("td", { class: "num", text: best.length ? percent(Math.max(...best)) : "–" }),
            el("td", {}, Object.entries(m.aliases || {}).map(([a, v]) => el("span", { class: `alias${a === "champion" ? " champion" : ""}`, text: `${a} → v${v}` }))),
            el("td", { text: when(m.updated_at) })
          );
        }),
        { caption: "Models", empty: "No models yet: a job that succeeds makes one." }
      )
    );
  } catch (exc) {
    fill(box, errorBox(exc, "list the models"));
  }
}

// ---- one model: its versions ---------------------------------------------------

const ORDERS = [
  ["-version", "newest first"],
  ["-val_accuracy", "best validation accuracy"],
  ["val_loss", "lowest validation loss"],
  ["-macro_f1", "best macro F1"],
];

export async function model(ctx) {
  const { view, params, query } = ctx;
  const name = params.name;
  view.append(loading());
  const order = el("select", { id: "version-order" }, ORDERS.map(([v, t]) => el("option", { value: v, text: t })));
  order.value = query.get("order") || "-version";
  const box = el("div", {});
  const compareButton = el("button", { type: "button", id: "compare-selected", class: "primary", text: "Compare", disabled: true });
  const compareHint = el("span", { class: "muted", text: "Tick 2 to 6 versions to compare them." });
  const aliasBox = el("div", { class: "alias-line" });
  const chosen = new Set((query.get("compare") || "").split(",").filter(Boolean).map(Number));

  async function refresh() {
    const [info, versions] = await Promise.all([api(`/v1/models/${enc(name)}`), api(`/v1/models/${enc(name)}/versions?order_by=${enc(order.value)}`)]);
    fill(aliasBox, 
      ...(Object.keys(info.aliases || {}).length
        ? [el("span", { class: "muted", text: "Aliases: " }), ...Object.entries(info.aliases).map(([a, v]) => el("span", { class: `alias${a === "champion" ? " champion" : ""}` }, `${a} → `, link(versionHref(name, v), `v${v}`)))]
        : [el("span", { class: "muted", text: "No aliases yet: give one (champion) from the table below, and predict through it." })])
    );
    fill(box, versionTable(ctx, name, versions, info.aliases, chosen, updateCompare, refresh));
    updateCompare();
  }
  function updateCompare() {
    const n = chosen.size;
    compareButton.disabled = n < 2 || n > MAX_COMPARED;
    compareHint.textContent = n < 2 ? `Tick 2 to ${MAX_COMPARED} versions to compare them.` : n > MAX_COMPARED ? `At most ${MAX_COMPARED} at once (${n} ticked).` : `${n} versions ticked.`;
  }
  compareButton.addEventListener("click", () => ctx.go(`#/models/${enc(name)}/compare?versions=${[...chosen].sort((a, b) => a - b).join(",")}`));
  order.addEventListener("change", refresh);
  await refresh();
  fill(view, 
    el("nav", { class: "crumbs", "aria-label": "Breadcrumb" }, link("#/models", "Models"), " / "),
    el("div", { class: "page-head" }, el("h1", { text: name })),
    aliasBox,
    el(
      "section",
      { class: "card" },
      el("div", { class: "toolbar" }, el("label", { for: "version-order", text: "Order" }), order, el("span", { class: "spacer" }), compareHint, compareButton),
      box
    )
  );
}

function versionTable(ctx, name, versions, aliases, chosen, onPick, refresh) {
  return table(
    [el("th", { scope: "col" }, el("span", { class: "sr-only", text: "Compare" })), "Version", "Aliases", "Val acc", "Val loss", "Macro F1", "Epochs", "Job", "Created", el("th", { scope: "col" }, el("span", { class: "sr-only", text: "Actions" }))],
    versions.map((v) => {
      const f = finalMetrics(v);
      const box = el("input", { type: "checkbox", checked: chosen.has(v.version), "aria-label": `Compare version ${v.version}` });
      box.addEventListener("change", () => {
        if (box.checked) chosen.add(v.version);
        else chosen.delete(v.version);
        onPick();
      });
      const isChampion = aliases && aliases.champion === v.version;
      return el(
        "tr",
        { "data-version": v.version },
        el("td", {}, box),
        el("td", {}, link(versionHref(name, v.version), `v${v.version}`)),
        el("td", {}, aliasBadges(aliases, v.version)),
        el("td", { class: "num", text: percent(f.val_accuracy) }),
        el("td", { class: "num", text: number(f.val_loss) }),
        el("td", { class: "num", text: number(f.macro_f1, 3) }),
        el("td", { class: "num", text: f.epochs ?? "–" }),
        el("td", {}, v.job_id ? link(`#/jobs/${enc(v.job_id)}`, shortId(v.job_id), { class: "mono", "data-scope": "read" }) : "–"),
        el("td", { text: when(v.created_at) }),
        el(
          "td",
          { class: "row-actions" },
          el("button", {
            type: "button",
            class: "small",
            text: isChampion ? "champion ✓" : "Make champion…",
            disabled: isChampion,
            "data-scope": "admin",
            "data-action": "make-champion",
            onclick: () => moveAlias(ctx, name, v, aliases, "champion", refresh),
          })
        )
      );
    }),
    { caption: `Versions of ${name}`, empty: "No versions." }
  );
}

// Move (or create) an alias, after a confirmation that says what changes.
export async function moveAlias(ctx, name, version, aliases, alias, after) {
  const from = aliases ? aliases[alias] : undefined;
  const f = finalMetrics(version);
  const body = [
    from
      ? `“${alias}” points to version ${from} now. Move it to version ${version.version}?`
      : `Create the alias “${alias}” pointing to version ${version.version}?`,
    `Version ${version.version}: validation accuracy ${percent(f.val_accuracy)}, validation loss ${number(f.val_loss)}.`,
    `Everything that predicts through /v1/models/${name}/aliases/${alias}/predict uses version ${version.version} within about a second.`,
  ];
  const ok = await confirm({ title: `${from ? "Move" : "Set"} “${alias}”`, body, ok: from ? `Move ${alias} to v${version.version}` : `Set ${alias} to v${version.version}` });
  if (!ok) return false;
  try {
    await api(`/v1/models/${enc(name)}/aliases/${enc(alias)}`, { method: "PUT", json: { version: version.version } });
  } catch (exc) {
    await confirm({ title: "The alias did not move", body: [errorBox(exc, `move “${alias}”`).textContent], ok: "OK" });
    return false;
  }
  if (after) await after();
  return true;
}

// ---- one version -----------------------------------------------------------------

export async function version(ctx) {
  const { view, params } = ctx;
  const name = params.name;
  const number_ = Number(params.version);
  view.append(loading());
  const [v, info] = await Promise.all([api(`/v1/models/${enc(name)}/versions/${number_}`), api(`/v1/models/${enc(name)}`).catch(() => ({ aliases: {} }))]);
  const aliasLine = el("div", { class: "alias-line" });
  const renderAliases = (aliases) => {
    fill(aliasLine, 
      ...aliasBadges(aliases, v.version),
      aliases.champion === v.version
        ? null
        : el("button", {
            type: "button",
            class: "small",
            "data-scope": "admin",
            text: aliases.champion ? `Make champion (now v${aliases.champion})…` : "Make champion…",
            onclick: () => moveAlias(ctx, name, v, aliases, "champion", async () => renderAliases((await api(`/v1/models/${enc(name)}`)).aliases || {})),
          })
    );
  };
  renderAliases(info.aliases || {});
  const f = finalMetrics(v);
  const validation = (v.metrics || {}).validation;
  fill(view, 
    el("nav", { class: "crumbs", "aria-label": "Breadcrumb" }, link("#/models", "Models"), " / ", link(`#/models/${enc(name)}`, name), " / "),
    el("div", { class: "page-head" }, el("h1", { text: `${name} v${v.version}` }), aliasLine),
    el(
      "p",
      { class: "facts-line" },
      `target ${v.target} · classes ${v.classes.join(", ")} · ${v.features.length} features · created ${when(v.created_at)} · `,
      v.job_id ? link(`#/jobs/${enc(v.job_id)}`, "its training job", { "data-scope": "read" }) : "",
      v.dataset_id ? el("span", { "data-scope": "read", "data-scope-hide": "" }, " · ", link(`#/datasets/${enc(v.dataset_id)}`, "its dataset")) : null
    ),
    el(
      "div",
      { class: "columns" },
      predictCard(name, v),
      card(
        "Validation metrics",
        definitionList([
          ["Accuracy", percent(f.val_accuracy)],
          ["Log-loss", number(f.val_loss)],
          ["Macro F1", number(f.macro_f1, 3)],
          ["Epochs", String(f.epochs ?? "–")],
          (v.metrics || {}).n_parameters ? ["Parameters", integer(v.metrics.n_parameters)] : null,
        ]),
        validation && validation.ece !== undefined ? el("p", { class: "muted", text: `Expected calibration error (ECE): ${number(validation.ece, 3)}` }) : null,
        el(
          "div",
          { class: "figures" },
          validation && validation.confusion_matrix ? confusionMatrix(validation.confusion_matrix, { title: "Confusion matrix (validation split)" }) : null,
          validation && reliabilityBins(validation) ? reliabilityDiagram(reliabilityBins(validation), { title: "Reliability (validation split)", ece: validation.ece }) : null
        ),
        validation && validation.per_class ? perClassTable(validation.per_class) : null
      )
    ),
    await scoreCard(ctx, name, v)
  );
}

function perClassTable(perClass) {
  return table(
    ["Class", "Precision", "Recall", "F1", "Support"],
    Object.entries(perClass).map(([label, m]) =>
      el("tr", {}, el("th", { scope: "row", text: label }), el("td", { class: "num", text: number(m.precision, 3) }), el("td", { class: "num", text: number(m.recall, 3) }), el("td", { class: "num", text: number(m.f1, 3) }), el("td", { class: "num", text: integer(m.support) }))
    ),
    { caption: "Per-class metrics", className: "compact" }
  );
}

// A horizontal bar for a share in [0, 1] (its width set through the CSSOM, which the CSP allows).
function bar(share) {
  const fill = el("span", { class: "fill" });
  fill.style.width = `${Math.max(0, Math.min(1, share)) * 100}%`;
  return el("span", { class: "share-bar", "aria-hidden": "true", "data-share": String(share) }, fill);
}

// One row, a field per feature (as the model's input schema says), answered with bars.
function predictCard(name, v) {
  const fields = (v.input_schema || []).map((column) => {
    const id = uniqueId("feature");
    let input;
    if (column.type === "categorical") {
      input = el("select", { id }, el("option", { value: "", text: "(missing)" }), (column.categories || []).map((c) => el("option", { value: c, text: c })));
      if ((column.categories || []).length) input.value = column.categories[0];
    } else if (column.type === "boolean") {
      input = el("select", { id }, ["true", "false", ""].map((b) => el("option", { value: b, text: b || "(missing)" })));
    } else {
      input = el("input", { id, type: "number", step: "any", inputmode: "decimal", placeholder: "(missing)", value: "0" });
    }
    return { column, input, node: el("div", { class: "field" }, el("label", { for: id }, el("span", { class: "name", text: column.name }), el("span", { class: "muted", text: ` ${column.type}` })), input) };
  });
  const answer = el("div", { class: "prediction", "aria-live": "polite" });
  const submit = el("button", { type: "submit", class: "primary", text: "Predict", "data-scope": "predict" });
  const form = el("form", { id: "predict-form", novalidate: true }, el("div", { class: "knobs compact" }, fields.map((f) => f.node)), el("div", { class: "actions" }, submit));
  form.addEventListener("submit", async (event) => {
    event.preventDefault();
    const record = {};
    for (const { column, input } of fields) {
      if (input.value === "") continue; // missing: imputed as at training
      record[column.name] = column.type === "numeric" ? Number(input.value) : column.type === "boolean" ? input.value === "true" : input.value;
    }
    submit.disabled = true;
    try {
      const result = await api(`/v1/models/${enc(name)}/versions/${v.version}/predict`, { method: "POST", json: { records: [record] } });
      const p = result.predictions[0];
      const ranked = Object.entries(p.probabilities).sort((a, b) => b[1] - a[1]);
      fill(answer, 
        el("p", { class: "label-line" }, "Predicted ", el("strong", { class: "predicted-label", text: String(p.label) })),
        el(
          "table",
          { class: "probabilities" },
          el("caption", { class: "sr-only", text: "Probability of each class" }),
          el("tbody", {}, ranked.map(([label, prob]) => el("tr", {}, el("th", { scope: "row", text: label }), el("td", { class: "bar-cell" }, bar(prob)), el("td", { class: "num", text: percent(prob) }))))
        )
      );
    } catch (exc) {
      fill(answer, errorBox(exc, "predict"), ...Object.entries(exc.errors || {}).map(([k, m]) => el("p", { class: "error", text: `${k}: ${[].concat(m).join(" ")}` })));
    } finally {
      submit.disabled = false;
    }
  });
  return card("Try a prediction", el("p", { class: "muted", text: "One row: leave a field empty for a missing value (imputed as at training)." }), form, answer);
}

// ---- scoring a file ------------------------------------------------------------

// The column names on a CSV file's first line (read from its first 64 KiB only).
export async function csvHeader(file) {
  const head = await file.slice(0, 65536).text();
  const line = head.split(/\r?\n/, 1)[0].replace(/^\uFEFF/, "");
  const names = [];
  let current = "";
  let quoted = false;
  for (let i = 0; i < line.length; i++) {
    const c = line[i];
    if (quoted) {
      if (c === '"' && line[i + 1] === '"') (current += '"'), i++;
      else if (c === '"') quoted = false;
      else current += c;
    } else if (c === '"') quoted = true;
    else if (c === ",") names.push(current.trim()), (current = "");
    else current += c;
  }
  names.push(current.trim());
  return names;
}

// The first rows of a CSV blob as a table (reads at most 32 KiB of it).
async function preview(blob, rows = 8) {
  const lines = (await blob.slice(0, 32768).text()).split(/\r?\n/).filter(Boolean).slice(0, rows + 1);
  if (!lines.length) return null;
  const split = (line) => line.split(",");
  const cell = (text) => (/^-?\d*\.?\d+(e-?\d+)?$/i.test(text) ? el("td", { class: "num", text: Number(text).toFixed(4) }) : el("td", { text }));
  return table(split(lines[0]), lines.slice(1).map((line) => el("tr", {}, split(line).map(cell))), { caption: "The first predictions", className: "compact preview" });
}

async function scoreCard(ctx, name, v) {
  const doc = await openapi().catch(() => ({ paths: {} }));
  const evaluatePath = Object.keys(doc.paths).find((p) => /^\/v1\/models\/\{[^}]+\}\/versions\/\{[^}]+\}\/evaluate$/.test(p));
  const result = el("div", { class: "score-result", "aria-live": "polite" });
  const uploads = [];
  ctx.onLeave(() => uploads.forEach((u) => u.abort()));
  const zone = dropzone({
    label: "Drop a CSV file to score, or choose one",
    hint: `One prediction per row, as a CSV to download. If the file has the “${v.target}” column, the model is also evaluated on it.`,
    accept: ".csv,text/csv",
    onFile: (file) => score(file),
  });
  zone.input.id = "score-file";
  zone.querySelector("label").htmlFor = "score-file";
  zone.input.dataset.scope = "predict";

  async function score(file) {
    const names = await csvHeader(file);
    const labelled = names.includes(v.target);
    const predictBar = el("progress", { max: "1", value: "0", "aria-label": "Scoring" });
    const predictWords = el("span", { class: "muted", text: "" });
    const predictions = el("div", { class: "score-predictions" }, el("h3", { text: `Predictions for ${file.name}` }), predictBar, el("p", {}, predictWords));
    const evaluation = el("div", { class: "score-evaluation" });
    fill(result, predictions, evaluation);
    zone.classList.add("busy");
    const progress = (bar, words) => ({ phase, loaded, total }) => {
      if (phase === "processing") {
        bar.removeAttribute("value");
        words.textContent = `Sent ${bytes(total)}; the model is scoring it…`;
      } else {
        bar.value = total ? loaded / total : 0;
        words.textContent = `${bytes(loaded)} of ${bytes(total)} sent`;
      }
    };
    const predict = send(`/v1/models/${enc(name)}/versions/${v.version}/predict`, file, {
      contentType: "text/csv",
      accept: "text/csv",
      responseType: "blob",
      onProgress: progress(predictBar, predictWords),
    });
    uploads.push(predict);
    const tasks = [
      predict.promise.then(
        async ({ body, header }) => {
          const ignored = header("X-Ignored-Columns") || header("X-Trainserve-Ignored-Columns") || header("Ignored-Columns");
          const filename = `${stem(file.name)}-predictions-${name}-v${v.version}.csv`;
          fill(predictions, 
            el("h3", { text: `Predictions for ${file.name}` }),
            el("p", { class: "ok" }, `Scored with ${name} v${v.version}: ${bytes(body.size)} of CSV (label, then one probability per class). `, download(body, filename)),
            ignored ? el("p", { class: "muted", text: `The API ignored the column${ignored.includes(",") ? "s" : ""} ${ignored} (not a feature).` }) : null,
            await preview(body)
          );
        },
        (exc) => fill(predictions, el("h3", { text: `Predictions for ${file.name}` }), errorBox(exc, "score the file"), ...Object.entries(exc.errors || {}).map(([k, m]) => el("p", { class: "error", text: `${k}: ${[].concat(m).join(" ")}` })))
      ),
    ];
    if (labelled && evaluatePath) {
      const evalBar = el("progress", { max: "1", value: "0", "aria-label": "Evaluating" });
      const evalWords = el("span", { class: "muted" });
      fill(evaluation, el("h3", { text: `Evaluation on ${file.name}` }), evalBar, el("p", {}, evalWords));
      const evaluate = send(`/v1/models/${enc(name)}/versions/${v.version}/evaluate`, file, { contentType: "text/csv", onProgress: progress(evalBar, evalWords) });
      uploads.push(evaluate);
      tasks.push(
        evaluate.promise.then(
          ({ body }) => fill(evaluation, el("h3", { text: `Evaluation on ${file.name}` }), evaluationView(body)),
          (exc) => fill(evaluation, el("h3", { text: `Evaluation on ${file.name}` }), errorBox(exc, "evaluate the model on this file"))
        )
      );
    } else if (labelled) {
      fill(evaluation, el("p", { class: "muted", text: `The file has the target column “${v.target}”, but this server has no evaluate endpoint.` }));
    } else {
      fill(evaluation, el("p", { class: "muted", text: `No “${v.target}” column in this file, so there is nothing to evaluate against: predictions only.` }));
    }
    await Promise.all(tasks);
    zone.classList.remove("busy");
  }

  return el(
    "section",
    { class: "card", id: "score" },
    el("h2", { text: "Score a file" }),
    el("p", { class: "scope-note", "data-scope-note": "predict", hidden: true }),
    zone,
    result
  );
}

// The bins of a reliability diagram in an evaluation: `reliability` [{lower, upper, count,
// confidence, accuracy}] (or `calibration.bins`).
function reliabilityBins(e) {
  if (Array.isArray(e.reliability)) return e.reliability;
  if (e.calibration && Array.isArray(e.calibration.bins)) return e.calibration.bins;
  return null;
}

// The evaluate endpoint's answer: headline metrics, confusion matrix, reliability diagram.
export function evaluationView(e) {
  const bins = reliabilityBins(e);
  const ece = e.ece ?? (e.calibration || {}).ece;
  const rows = e.n_rows ?? e.rows ?? e.n;
  return el(
    "div",
    { class: "evaluation" },
    definitionList([
      rows !== undefined ? ["Rows", integer(rows)] : null,
      ["Accuracy", percent(e.accuracy)],
      ["Log-loss", number(e.log_loss)],
      ["Macro F1", number(e.macro_f1, 3)],
      ece !== undefined && ece !== null ? ["ECE", number(ece, 3)] : null,
    ]),
    el(
      "div",
      { class: "figures" },
      e.confusion_matrix ? confusionMatrix(e.confusion_matrix) : null,
      Array.isArray(bins) ? reliabilityDiagram(bins, { ece }) : el("p", { class: "muted", text: "The API gave no calibration bins, so there is no reliability diagram." })
    ),
    e.per_class ? perClassTable(e.per_class) : null
  );
}

// ---- comparing versions -------------------------------------------------------------

const METRIC_LABELS = {
  val_accuracy: "Validation accuracy",
  val_loss: "Validation loss",
  accuracy: "Accuracy (evaluation)",
  macro_f1: "Macro F1",
  log_loss: "Log-loss",
  train_accuracy: "Train accuracy",
  train_loss: "Train loss",
};

export async function compare(ctx) {
  const { view, params, query } = ctx;
  const name = params.name;
  const refs = (query.get("versions") || "").split(",").filter(Boolean);
  view.append(loading());
  const info = await api(`/v1/models/${enc(name)}`);
  const picker = comparePicker(ctx, name, info, refs);
  if (refs.length < 2) {
    fill(view, el("h1", { text: `Compare versions of ${name}` }), picker);
    return;
  }
  const comparison = await api(`/v1/models/${enc(name)}/compare?versions=${refs.map(enc).join(",")}`);
  const numbers = comparison.versions.map((v) => v.version);
  const [details, curves] = await Promise.all([
    Promise.all(numbers.map((n) => api(`/v1/models/${enc(name)}/versions/${n}`))),
    // The curves are the jobs' epochs, which a key needs `read` for.
    Promise.all(comparison.versions.map((v) => (v.job_id && can("read") ? api(`/v1/jobs/${enc(v.job_id)}/metrics`).then((m) => m.epochs).catch(() => []) : []))),
  ]);
  const cls = (i) => `s${i % 10}`;
  const series = (key) =>
    comparison.versions.map((v, i) => ({ key: `v${v.version}`, name: `v${v.version}${aliasText(info.aliases, v.version)}`, cls: cls(i), points: curves[i].filter((e) => e[key] !== null && e[key] !== undefined).map((e) => [e.epoch, e[key]]) }));
  const xMax = Math.max(2, ...curves.map((c) => c.length));

  const header = el("tr", {}, el("th", { scope: "col", text: "" }), comparison.versions.map((v, i) => el("th", { scope: "col" }, el("span", { class: `swatch ${cls(i)}`, "aria-hidden": "true" }), link(versionHref(name, v.version), `v${v.version}`), aliasText(info.aliases, v.version))));

  // accuracy and log_loss repeat val_accuracy and val_loss when the evaluation is of the
  // same split (it is, today): shown only where they say something else.
  const same = (a, b) => comparison.versions.every((v) => v.metrics[a] === null || v.metrics[a] === undefined || Math.abs(v.metrics[a] - v.metrics[b]) <= 1e-6 * Math.max(1, Math.abs(v.metrics[b])));
  const metricNames = Object.keys(METRIC_LABELS)
    .filter((m) => comparison.versions.some((v) => v.metrics && v.metrics[m] !== null && v.metrics[m] !== undefined))
    .filter((m) => !(m === "accuracy" && same("accuracy", "val_accuracy")) && !(m === "log_loss" && same("log_loss", "val_loss")));
  const metricsTable = el(
    "div",
    { class: "table-wrap" },
    sideBySide(
      "compare-metrics",
      "Final metrics side by side; the best of each row is marked ★",
      header,
      metricNames.map((m) =>
        el(
          "tr",
          {},
          el("th", { scope: "row", text: METRIC_LABELS[m] }),
          comparison.versions.map((v) => {
            // The API names one best version; a tie with it is marked too.
            const top = comparison.versions.find((w) => comparison.best && comparison.best[m] === w.version);
            const x = v.metrics[m];
            const best = top !== undefined && x === top.metrics[m];
            const text = m.includes("accuracy") ? percent(x) : number(x);
            return el("td", { class: `num${best ? " best" : ""}`, text: best ? `★ ${text}` : text });
          })
        )
      )
    )
  );

  const differing = new Set(comparison.differing_hyperparameters || []);
  const keys = [...new Set(comparison.versions.flatMap((v) => Object.keys(v.hyperparameters || {})))].sort((a, b) => (differing.has(b) - differing.has(a)) || a.localeCompare(b));
  const onlyDiff = el("input", { type: "checkbox", id: "only-differing", checked: differing.size > 0 });
  const hyperTable = sideBySide(
    "compare-hyperparameters",
    "Hyperparameters; rows that differ are marked",
    header,
    keys.map((k) =>
      el(
        "tr",
        { class: differing.has(k) ? "differs" : "same", "data-hyperparameter": k },
        el("th", { scope: "row" }, k, differing.has(k) ? el("span", { class: "tag warn", text: " differs" }) : null),
        comparison.versions.map((v) => el("td", { text: value((v.hyperparameters || {})[k]) }))
      )
    ),
    differing.size ? "only-differing" : ""
  );
  onlyDiff.addEventListener("change", () => hyperTable.classList.toggle("only-differing", onlyDiff.checked));

  const classes = details[0].classes.map(String);
  const perClass = details.map((d) => ((d.metrics || {}).validation || {}).per_class || {});
  const f1Table = el(
    "div",
    { class: "table-wrap" },
    sideBySide(
      "compare-f1",
      "F1 per class on each version's validation split; the best of each row is marked ★",
      header,
      classes.map((c) => {
        const scores = perClass.map((p) => (p[c] ? p[c].f1 : null));
        const top = Math.max(...scores.filter((s) => s !== null));
        return el(
          "tr",
          {},
          el("th", { scope: "row", text: c }),
          scores.map((s) => el("td", { class: `num${s !== null && s === top ? " best" : ""}`, text: s === null ? "–" : `${s === top ? "★ " : ""}${number(s, 3)}` }))
        );
      })
    )
  );

  fill(view, 
    el("nav", { class: "crumbs", "aria-label": "Breadcrumb" }, link("#/models", "Models"), " / ", link(`#/models/${enc(name)}`, name), " / "),
    el("div", { class: "page-head" }, el("h1", { text: `Compare ${numbers.map((n) => `v${n}`).join(", ")} of ${name}` })),
    picker,
    el(
      "section",
      { class: "card" },
      el("h2", { text: "Validation curves" }),
      can("read") ? null : el("p", { class: "muted", text: "The curves come from the training jobs, which this API key may not read (it needs the “read” scope)." }),
      el(
        "div",
        { class: "chart-grid", hidden: !can("read") },
        lineChart({ title: "Validation loss per epoch", name: "compare-loss", xMax, series: series("val_loss") }),
        lineChart({ title: "Validation accuracy per epoch", name: "compare-accuracy", xMax, yRange: [0, 1], format: (x) => `${Math.round(x * 100)}%`, series: series("val_accuracy") })
      )
    ),
    el("div", { class: "columns" }, card("Final metrics", metricsTable), card("F1 per class (validation split)", f1Table)),
    el(
      "section",
      { class: "card" },
      el("h2", { text: "Hyperparameters" }),
      el("p", { class: "toolbar" }, el("span", { class: "muted", text: differing.size ? `${differing.size} differ: ${[...differing].join(", ")}. ` : "All the same. " }), el("label", { class: "check" }, onlyDiff, el("span", { text: `show only those that differ (${differing.size} of ${keys.length})` }))),
      el("div", { class: "table-wrap" }, hyperTable)
    ),
    el(
      "section",
      { class: "card" },
      el("h2", { text: "Confusion matrices (validation split)" }),
      el(
        "div",
        { class: "matrices" },
        details.map((d) => {
          const cm = ((d.metrics || {}).validation || {}).confusion_matrix;
          return cm ? confusionMatrix(cm, { title: `v${d.version}${aliasText(info.aliases, d.version)}` }) : el("p", { class: "muted", text: `v${d.version}: no validation split` });
        })
      )
    )
  );
}

// A table with one column per compared version, under the shared header row.
function sideBySide(id, caption, header, rows, extraClass = "") {
  return el(
    "table",
    { class: `list compare-table ${extraClass}`.trim(), id },
    el("caption", { class: "sr-only", text: caption }),
    el("thead", {}, header.cloneNode(true)),
    el("tbody", {}, rows)
  );
}

function aliasText(aliases, version) {
  const names = Object.entries(aliases || {}).filter(([, v]) => v === version).map(([a]) => a);
  return names.length ? ` (${names.join(", ")})` : "";
}

function comparePicker(ctx, name, info, refs) {
  const chosen = new Set(refs.map(Number));
  const button = el("button", { type: "submit", class: "primary", text: "Compare these" });
  const hint = el("span", { class: "muted" });
  const update = () => {
    button.disabled = chosen.size < 2 || chosen.size > MAX_COMPARED;
    hint.textContent = `${chosen.size} ticked (2 to ${MAX_COMPARED}).`;
  };
  const boxes = info.versions.map((v) => {
    const box = el("input", { type: "checkbox", checked: chosen.has(v.version), value: String(v.version) });
    box.addEventListener("change", () => {
      if (box.checked) chosen.add(v.version);
      else chosen.delete(v.version);
      update();
    });
    return el("label", { class: "check" }, box, el("span", { text: `v${v.version}${aliasText(info.aliases, v.version)} · ${percent(finalMetrics(v).val_accuracy)}` }));
  });
  const form = el("form", { class: "compare-picker" }, el("fieldset", {}, el("legend", { text: "Versions" }), el("div", { class: "check-row" }, boxes)), el("div", { class: "actions" }, button, hint));
  form.addEventListener("submit", (event) => {
    event.preventDefault();
    ctx.go(`#/models/${enc(name)}/compare?versions=${[...chosen].sort((a, b) => a - b).join(",")}`);
  });
  update();
  return el("details", { class: "card picker", open: refs.length < 2 }, el("summary", { text: "Choose the versions to compare" }), form);
}
