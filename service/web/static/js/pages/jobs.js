// Jobs: the list, the training form (built from the OpenAPI schema), and a job's page
// whose curves grow epoch by epoch from the job's event stream.

import { api, can, enc, follow, idempotencyKey } from "../api.js";
import { lineChart } from "../charts.js";
import { badge, fill, card, confirm, definitionList, el, errorBox, integer, link, loading, number, percent, seconds, shortId, table, value, when } from "../dom.js";
import { changedValues, knobGrid, openapi, requestSchema, showProblem } from "../schema.js";

const ACTIVE = new Set(["queued", "running"]);

// ---- the list ---------------------------------------------------------------

export async function list(ctx) {
  const { view, query } = ctx;
  const status = el("select", { id: "job-status-filter" }, ["", "queued", "running", "succeeded", "failed", "cancelled"].map((s) => el("option", { value: s, text: s || "any status" })));
  status.value = query.get("status") || "";
  const box = el("div", {}, loading());
  view.append(
    el(
      "div",
      { class: "page-head" },
      el("h1", { text: "Jobs" }),
      el("div", { class: "actions" }, el("a", { class: "button primary", href: "#/train", text: "Train a model", "data-scope": "train" }))
    ),
    el("section", { class: "card" }, el("div", { class: "toolbar" }, el("label", { for: "job-status-filter", text: "Show" }), status), box)
  );
  let active = false;
  const refresh = async () => {
    try {
      const filter = status.value ? `&status=${enc(status.value)}` : "";
      const jobs = await api(`/v1/jobs?limit=100${filter}`);
      active = jobs.some((j) => ACTIVE.has(j.status));
      fill(box, jobs.length || status.value ? jobTable(jobs) : quickStart());
    } catch (exc) {
      // The first page for a key that may not read jobs but may use models: the models.
      if (exc.status === 403 && !query.get("status") && location.hash.replace(/^#\/?/, "") === "" && can("models")) {
        ctx.go("#/models");
        return false;
      }
      fill(box, errorBox(exc, "list the jobs"));
      return exc.status !== 403;
    }
  };
  status.addEventListener("change", () => {
    history.replaceState(null, "", status.value ? `#/jobs?status=${status.value}` : "#/jobs");
    refresh();
  });
  await ctx.every(refresh, () => (active ? 2000 : 15000));
}

function quickStart() {
  return el(
    "div",
    { class: "quick-start" },
    el("p", { text: "No jobs yet. Three steps to a served model:" }),
    el(
      "ol",
      {},
      el("li", {}, link("#/datasets", "Upload a dataset"), " (drop a CSV file)."),
      el("li", {}, link("#/train", "Train a model"), " on it: pick the target column, keep or change the defaults."),
      el("li", {}, "Watch it learn, then try predictions or score a file on the model's page.")
    )
  );
}

function jobTable(jobs) {
  return table(
    ["Job", "Model", "Status", "Epoch", "Val loss", "Val acc", "Created"],
    jobs.map((job) => {
      const latest = job.latest || {};
      return el(
        "tr",
        { "data-job-id": job.id },
        el("td", {}, link(`#/jobs/${enc(job.id)}`, shortId(job.id), { class: "mono" }), job.sweep_id ? el("span", { class: "tag", text: ` trial ${job.trial}` }) : null),
        el("td", {}, job.model ? link(`#/models/${enc(job.model.name)}/${job.model.version}`, `${job.model.name} v${job.model.version}`) : job.model_name),
        el("td", {}, badge(job.status), job.stopped_early ? el("span", { class: "tag warn", text: " stopped early" }) : null),
        el("td", { class: "num", text: `${job.epoch}/${job.epochs}` }),
        el("td", { class: "num", text: number(latest.val_loss) }),
        el("td", { class: "num", text: percent(latest.val_accuracy) }),
        el("td", { text: when(job.created_at) })
      );
    }),
    { caption: "Jobs", empty: "No job with this status." }
  );
}

// ---- the training form ------------------------------------------------------

// The model name the API accepts, from a dataset's name.
export function modelNameFrom(name) {
  const cleaned = String(name).replace(/[^A-Za-z0-9._-]+/g, "-").replace(/^[^A-Za-z0-9]+/, "").slice(0, 128);
  return cleaned || "model";
}

const TARGET_NAMES = /^(target|label|labels|class|y|outcome|species|category)$/i;

// The column most likely meant as the target: a conventional name, else the last column.
export function guessTarget(columns) {
  const named = columns.find((c) => TARGET_NAMES.test(c.name));
  return (named || columns[columns.length - 1] || {}).name;
}

// Dataset, target and features: shared by the training and sweep forms.
export async function dataPicker(ctx, { datasets, chosen }) {
  const datasetSelect = el("select", { id: "train-dataset", name: "dataset_id" }, datasets.map((d) => el("option", { value: d.id, text: `${d.name} · ${integer(d.n_rows)} rows × ${d.n_columns} columns` })));
  if (chosen) datasetSelect.value = chosen;
  const target = el("select", { id: "train-target", name: "target" });
  const features = el("div", { class: "feature-list" });
  const featureSummary = el("summary", {});
  const modelName = el("input", { id: "train-model-name", type: "text", name: "model_name", autocomplete: "off", required: true });
  let columns = [];
  let nameTouched = false;
  modelName.addEventListener("input", () => (nameTouched = true));

  const fields = [
    wrap("dataset_id", "Dataset", datasetSelect, "The table to learn from."),
    wrap("target", "Target column", target, "The column to predict; its distinct values are the classes."),
    wrap("model_name", "Model name", modelName, "Versions of one name form a model; predict with its newest version or an alias."),
  ];
  const featuresField = {
    name: "features",
    path: "features",
    input: features,
    node: el("details", { class: "field features", "data-field": "features" }, featureSummary, features, el("p", { class: "field-error", hidden: true })),
    show(messages) {
      const error = this.node.querySelector(".field-error");
      error.textContent = messages.join(" ");
      error.hidden = !messages.length;
      if (messages.length) this.node.open = true;
    },
  };

  function renderFeatures() {
    const boxes = columns
      .filter((c) => c.name !== target.value)
      .map((c) => el("label", { class: "check" }, el("input", { type: "checkbox", value: c.name, checked: true, onchange: countFeatures }), el("span", { text: c.name }), el("span", { class: "muted", text: ` ${c.type}` })));
    fill(features, ...boxes);
    countFeatures();
  }
  function countFeatures() {
    const all = [...features.querySelectorAll("input")];
    const on = all.filter((b) => b.checked).length;
    featureSummary.textContent = on === all.length ? `Features: all ${all.length} other columns` : `Features: ${on} of ${all.length} columns`;
  }

  async function load() {
    const id = datasetSelect.value;
    if (!id) return;
    const dataset = await api(`/v1/datasets/${enc(id)}`);
    columns = dataset.columns;
    fill(target, ...columns.map((c) => el("option", { value: c.name, text: `${c.name} (${c.type}, ${integer(c.n_unique)} distinct)` })));
    target.value = guessTarget(columns);
    renderFeatures();
    if (!nameTouched) modelName.value = modelNameFrom(dataset.name);
  }
  datasetSelect.addEventListener("change", () => load().catch(() => {}));
  target.addEventListener("change", renderFeatures);
  await load();

  return {
    nodes: [...fields.map((f) => f.node), featuresField.node],
    fields: [...fields, featuresField],
    read() {
      const boxes = [...features.querySelectorAll("input")];
      const chosenFeatures = boxes.filter((b) => b.checked).map((b) => b.value);
      const body = { dataset_id: datasetSelect.value, target: target.value, model_name: modelName.value.trim() };
      if (chosenFeatures.length !== boxes.length) body.features = chosenFeatures;
      return body;
    },
  };
}

// A form with its error summary on top and the data picker first.
export function formFrame(id, picker, ...sections) {
  const summary = el("div", { class: "form-errors", role: "alert", tabindex: "-1", hidden: true });
  const form = el("form", { id, novalidate: true }, summary, el("fieldset", { class: "data" }, el("legend", { text: "Data" }), picker.nodes), ...sections);
  return { form, summary };
}

function wrap(path, label, input, hint) {
  const hintNode = el("p", { class: "hint", id: `${input.id}-hint`, text: hint });
  const error = el("p", { class: "field-error", hidden: true });
  input.setAttribute("aria-describedby", hintNode.id);
  const node = el("div", { class: "field", "data-field": path }, el("label", { for: input.id }, el("span", { class: "name", text: label })), input, hintNode, error);
  return {
    name: path,
    path,
    input,
    node,
    show(messages) {
      error.textContent = messages.join(" ");
      error.hidden = !messages.length;
      node.classList.toggle("invalid", messages.length > 0);
      if (messages.length) input.setAttribute("aria-invalid", "true");
      else input.removeAttribute("aria-invalid");
    },
  };
}

// What a form on data needs first: the OpenAPI document and the datasets (null, with a
// pointer to the upload, when there is none yet).
export async function formInputs(ctx, title) {
  ctx.view.append(loading());
  const [doc, datasets] = await Promise.all([openapi(), api("/v1/datasets?limit=200")]);
  if (datasets.length) return { doc, datasets };
  fill(ctx.view, el("h1", { text: title }), card(null, el("p", {}, "There is no dataset yet. ", link("#/datasets", "Upload one"), " first.")));
  return null;
}

export async function trainForm(ctx) {
  const { view, query } = ctx;
  const inputs = await formInputs(ctx, "Train a model");
  if (!inputs) return;
  const { doc, datasets } = inputs;
  const picker = await dataPicker(ctx, { datasets, chosen: query.get("dataset") });
  const knobs = knobGrid(doc);
  const submit = el("button", { type: "submit", class: "primary", text: "Start training", "data-scope": "train" });
  const reset = el("button", { type: "button", text: "Reset to defaults" });
  const { form, summary } = formFrame(
    "train-form",
    picker,
    el(
      "fieldset",
      { class: "hyperparameters" },
      el("legend", { text: `Hyperparameters (${knobs.fields.length}; defaults filled in)` }),
      el("p", { class: "muted", text: `From the API's schema (${requestSchema(doc, "/v1/jobs").title || "POST /v1/jobs"}): only the values you change are sent.` }),
      knobs.grid
    ),
    el("div", { class: "actions sticky" }, submit, reset)
  );
  const key = idempotencyKey();
  reset.addEventListener("click", () => {
    for (const f of knobs.fields) {
      const d = f.schema.default;
      if (f.input.type === "checkbox") f.input.checked = Boolean(d);
      else f.input.value = d === null || d === undefined ? "" : Array.isArray(d) ? d.join(", ") : String(d);
      f.show([]);
    }
  });
  form.addEventListener("submit", async (event) => {
    event.preventDefault();
    submit.disabled = true;
    summary.hidden = true;
    const body = { ...picker.read(), hyperparameters: changedValues(knobs.fields) };
    try {
      const job = await api("/v1/jobs", { method: "POST", json: body, headers: { "Idempotency-Key": key } });
      ctx.go(`#/jobs/${enc(job.id)}`);
    } catch (exc) {
      showProblem([...picker.fields, ...knobs.fields], summary, exc, errorBox(exc, "start the job").textContent);
    } finally {
      submit.disabled = false;
    }
  });
  fill(view, 
    el("div", { class: "page-head" }, el("h1", { text: "Train a model" })),
    el("p", { class: "scope-note", "data-scope-note": "train", hidden: true }),
    el("section", { class: "card" }, form)
  );
}

// ---- one job, live ------------------------------------------------------------

export async function detail(ctx) {
  const { view, params } = ctx;
  const jobId = params.id;
  view.append(loading());
  let job = await api(`/v1/jobs/${enc(jobId)}`);
  const epochs = [];
  const title = el("h1", {});
  const live = el("span", { class: "live", hidden: true, text: "● live" });
  const summary = el("p", { class: "facts-line" });
  const progress = el("progress", { max: "1", value: "0", "aria-label": "Epochs finished" });
  const cancel = el("button", { type: "button", class: "danger", text: "Cancel job", "data-scope": "train" });
  const outcome = el("div", { class: "outcome", "aria-live": "polite" });
  const charts = el("div", { class: "chart-grid" });
  const latestBox = el("div", {});
  const notes = el("div", {});
  const hyper = el("details", { class: "hyper" }, el("summary", { text: "Hyperparameters" }), definitionList(Object.entries(job.hyperparameters || {}).map(([k, v]) => [k, value(v)])));

  cancel.addEventListener("click", async () => {
    const ok = await confirm({
      title: "Cancel this job?",
      body: ["A running job stops within a few seconds, keeping the epochs it has finished. No model version is made."],
      ok: "Cancel the job",
      danger: true,
    });
    if (!ok) return;
    cancel.disabled = true;
    try {
      job = await api(`/v1/jobs/${enc(jobId)}/cancel`, { method: "POST" });
      render();
    } catch (exc) {
      fill(outcome, errorBox(exc, "cancel the job"));
      cancel.disabled = false;
    }
  });

  let drawScheduled = false;
  function draw() {
    if (drawScheduled) return;
    drawScheduled = true;
    requestAnimationFrame(() => {
      drawScheduled = false;
      const xMax = Math.max(job.epochs || 1, epochs.length);
      const series = (key) => epochs.filter((e) => e[key] !== null && e[key] !== undefined).map((e) => [e.epoch, e[key]]);
      fill(charts, 
        lineChart({
          title: "Loss per epoch",
          name: "loss",
          xMax,
          series: [
            { key: "train_loss", name: "train loss", cls: "s0", points: series("train_loss") },
            { key: "val_loss", name: "validation loss", cls: "s1", points: series("val_loss") },
          ],
        }),
        lineChart({
          title: "Accuracy per epoch",
          name: "accuracy",
          xMax,
          yRange: [0, 1],
          format: (v) => `${Math.round(v * 100)}%`,
          series: [
            { key: "train_accuracy", name: "train accuracy", cls: "s0", points: series("train_accuracy") },
            { key: "val_accuracy", name: "validation accuracy", cls: "s1", points: series("val_accuracy") },
          ],
        })
      );
      const last = epochs[epochs.length - 1];
      const best = epochs.filter((e) => e.val_loss !== null && e.val_loss !== undefined).sort((a, b) => a.val_loss - b.val_loss)[0];
      fill(latestBox, 
        last
          ? definitionList([
              ["Last epoch", String(last.epoch)],
              ["Validation loss", number(last.val_loss)],
              ["Validation accuracy", percent(last.val_accuracy)],
              best ? ["Best validation loss", `${number(best.val_loss)} (epoch ${best.epoch})`] : null,
              ["Learning rate", number(last.learning_rate, 3)],
              ["Epoch time", seconds(last.duration_s)],
              last.samples_per_s ? ["Rows per second", integer(Math.round(last.samples_per_s))] : null,
            ])
          : el("p", { class: "muted", text: "No epoch finished yet." })
      );
    });
  }

  function render() {
    fill(title, `Job ${shortId(job.id)} · ${job.model_name} `, badge(job.status));
    const parts = [`epoch ${job.epoch} of ${job.epochs}`, `target ${job.target}`, `attempt ${job.attempt}`, `created ${when(job.created_at)}`];
    fill(summary, 
      parts.join(" · "),
      job.dataset_id ? el("span", {}, " · ", link(`#/datasets/${enc(job.dataset_id)}`, "dataset")) : null,
      job.sweep_id ? el("span", {}, " · ", link(`#/sweeps/${enc(job.sweep_id)}`, `sweep trial ${job.trial}`)) : null
    );
    progress.value = job.epochs ? job.epoch / job.epochs : 0;
    progress.hidden = !ACTIVE.has(job.status);
    cancel.hidden = !ACTIVE.has(job.status) || job.cancel_requested;
    if (job.status === "succeeded" && job.model) {
      const href = `#/models/${enc(job.model.name)}/${job.model.version}`;
      fill(outcome, 
        el(
          "div",
          { class: "callout ok" },
          el("p", {}, el("strong", { text: `Model ${job.model.name} version ${job.model.version} is ready.` }), job.stopped_early ? ` Stopped early: ${job.stop_reason || ""}` : ""),
          el("div", { class: "actions" }, el("a", { class: "button primary", href, text: "Try predictions" }), el("a", { class: "button", href: `#/models/${enc(job.model.name)}`, text: "All versions" }))
        )
      );
    } else if (job.status === "failed") {
      fill(outcome, el("div", { class: "callout bad", role: "alert" }, el("strong", { text: "The job failed. " }), job.error ? `${job.error.type}: ${job.error.message}` : ""));
    } else if (job.status === "cancelled") {
      fill(outcome, el("div", { class: "callout" }, job.stopped_early ? `Stopped early by its sweep: ${job.stop_reason || ""}` : "Cancelled. The epochs it finished are kept below; no model version was made."));
    } else if (job.cancel_requested) {
      fill(outcome, el("div", { class: "callout" }, "Cancel requested: the job stops within a few seconds."));
    } else {
      fill(outcome);
    }
    fill(notes, ...(job.notes && job.notes.length ? [el("h2", { text: "What training noted" }), el("ul", {}, job.notes.map((n) => el("li", { text: n })))] : []));
  }

  fill(view, 
    el("nav", { class: "crumbs", "aria-label": "Breadcrumb" }, link("#/jobs", "Jobs"), " / "),
    el("div", { class: "page-head" }, title, el("div", { class: "actions" }, live, cancel)),
    summary,
    progress,
    outcome,
    el("section", { class: "card" }, charts, latestBox),
    el("section", { class: "card" }, notes, hyper)
  );
  render();
  draw();

  // The stream sends every finished epoch, then new ones as they come, then the final status.
  const stream = follow(`/v1/jobs/${enc(jobId)}/events`, {
    onEvent({ type, data }) {
      live.hidden = false;
      if (type === "epoch") {
        if (!epochs.some((e) => e.epoch === data.epoch)) epochs.push(data);
        epochs.sort((a, b) => a.epoch - b.epoch);
        job = { ...job, epoch: Math.max(job.epoch, data.epoch), latest: data };
        render();
        draw();
      } else if (type === "status") {
        job = { ...job, ...data, id: job.id, model_name: job.model_name, hyperparameters: job.hyperparameters };
        render();
        if (!ACTIVE.has(data.status)) {
          live.hidden = true;
          stream.close();
          // The final state has everything (model, stop reason): read it once.
          api(`/v1/jobs/${enc(jobId)}`).then((j) => {
            if (ctx.alive()) {
              job = j;
              render();
            }
          }).catch(() => {});
        }
      }
    },
    onError(exc, retrying) {
      live.hidden = true;
      if (!retrying) fill(outcome, errorBox(exc, "follow the job"));
    },
    onEnd() {
      live.hidden = true;
    },
  });
  ctx.onLeave(() => stream.close());
}
