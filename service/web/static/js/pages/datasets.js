// Datasets: the list with a drag-and-drop upload, and a page per dataset (its columns,
// and what can be done with it: train, sweep, delete).

import { api, enc, fileKind, send } from "../api.js";
import { badge, fill, bytes, card, confirm, dropzone, el, errorBox, integer, link, loading, number, shortId, stem, table, when } from "../dom.js";

const ACCEPT = ".csv,.tsv,.txt,.gz,.zst,.parquet,.pq,.jsonl,.ndjson,text/csv";

export async function list(ctx) {
  const { view } = ctx;
  const listBox = el("div", {}, loading());
  view.append(
    el("div", { class: "page-head" }, el("h1", { text: "Datasets" })),
    uploadCard(ctx),
    card("Your datasets", listBox)
  );
  await ctx.every(async () => {
    try {
      const datasets = await api("/v1/datasets?limit=200");
      fill(listBox, datasetTable(datasets));
    } catch (exc) {
      fill(listBox, errorBox(exc, "list the datasets"));
      return exc.status !== 403;
    }
  }, 15000);
}

function datasetTable(datasets) {
  return table(
    ["Name", "Rows", "Columns", "Size", "Uploaded", ""],
    datasets.map((d) =>
      el(
        "tr",
        { "data-dataset-id": d.id },
        el("td", {}, link(`#/datasets/${enc(d.id)}`, d.name)),
        el("td", { class: "num", text: integer(d.n_rows) }),
        el("td", { class: "num", text: integer(d.n_columns) }),
        el("td", { class: "num", text: bytes(d.size_bytes) }),
        el("td", { text: when(d.created_at) }),
        el("td", {}, el("a", { href: `#/train?dataset=${enc(d.id)}`, text: "Train…", "data-scope": "train", class: "small" }))
      )
    ),
    { caption: "Datasets", empty: "No datasets yet: drop a CSV file above." }
  );
}

// The upload: drop or choose a file; it is sent as the request body (streamed from disk
// by the browser) with a progress bar, then the dataset's page opens.
function uploadCard(ctx) {
  const status = el("div", { class: "upload-status", "aria-live": "polite" });
  const nameInput = el("input", { id: "upload-name", type: "text", placeholder: "default: the file's name", autocomplete: "off" });
  let active = null;
  const zone = dropzone({
    label: "Drop a data file here, or choose one",
    hint: "CSV (also .csv.gz / .csv.zst), Parquet or JSON Lines · the first row names the columns",
    accept: ACCEPT,
    onFile: (file) => start(file),
  });
  zone.input.dataset.scope = "train";
  zone.input.id = "upload-file";
  zone.querySelector("label").htmlFor = "upload-file";

  function start(file) {
    if (active) return;
    const name = nameInput.value.trim() || stem(file.name);
    const { type, encoding } = fileKind(file);
    const bar = el("progress", { max: "1", value: "0", "aria-label": `Uploading ${file.name}` });
    const words = el("span", { class: "muted", text: `0 of ${bytes(file.size)}` });
    const cancel = el("button", { type: "button", text: "Cancel upload" });
    fill(status, el("p", {}, el("strong", { text: `Uploading ${file.name} as “${name}”` })), bar, el("p", { class: "progress-words" }, words, " ", cancel));
    zone.classList.add("busy");
    const began = performance.now();
    const headers = encoding ? { "Content-Encoding": encoding } : {};
    active = send(`/v1/datasets?name=${enc(name)}`, file, {
      contentType: type,
      headers,
      onProgress: ({ phase, loaded, total }) => {
        if (phase === "processing") {
          bar.removeAttribute("value"); // indeterminate: the server is reading it
          words.textContent = `Sent ${bytes(total)}; the server is reading the table…`;
          cancel.hidden = true;
          return;
        }
        bar.value = total ? loaded / total : 0;
        const rate = loaded / Math.max(0.001, (performance.now() - began) / 1000);
        const left = rate > 0 ? (total - loaded) / rate : 0;
        words.textContent = `${bytes(loaded)} of ${bytes(total)} · ${bytes(rate)}/s${loaded < total ? ` · about ${Math.ceil(left)} s left` : ""}`;
      },
    });
    cancel.addEventListener("click", () => active && active.abort());
    active.promise
      .then(({ body }) => {
        fill(status, el("p", { class: "ok", text: `Uploaded “${body.name}”: ${integer(body.n_rows)} rows, ${body.n_columns} columns.` }));
        ctx.go(`#/datasets/${enc(body.id)}`);
      })
      .catch((exc) => {
        if (exc.name === "AbortError") fill(status, el("p", { class: "muted", text: "Upload cancelled; nothing was stored." }));
        else fill(status, errorBox(exc, `upload ${file.name}`), fieldErrors(exc));
      })
      .finally(() => {
        active = null;
        zone.classList.remove("busy");
      });
  }
  ctx.onLeave(() => active && active.abort());

  return el(
    "section",
    { class: "card upload" },
    el("h2", { text: "Upload a dataset" }),
    el("p", { class: "scope-note", "data-scope-note": "train", hidden: true }),
    zone,
    el("div", { class: "field inline-field" }, el("label", { for: "upload-name", text: "Name" }), nameInput),
    status
  );
}

function fieldErrors(exc) {
  const entries = Object.entries(exc.errors || {});
  if (!entries.length) return null;
  return el("ul", { class: "error" }, entries.map(([key, messages]) => el("li", { text: `${key}: ${[].concat(messages).join(" ")}` })));
}

// ---- one dataset ------------------------------------------------------------

export async function detail(ctx) {
  const { view, params } = ctx;
  view.append(loading());
  const dataset = await api(`/v1/datasets/${enc(params.id)}`);
  const actions = el(
    "div",
    { class: "actions" },
    el("a", { class: "button primary", href: `#/train?dataset=${enc(dataset.id)}`, text: "Train a model on it", "data-scope": "train" }),
    el("a", { class: "button", href: `#/sweeps/new?dataset=${enc(dataset.id)}`, text: "Start a sweep", "data-scope": "train" })
  );
  const deleteBox = el("div", { class: "delete-box" });
  const deleteButton = el("button", { type: "button", class: "danger", text: "Delete…", "data-scope": "admin", onclick: () => remove(ctx, dataset, deleteBox) });
  actions.append(deleteButton);
  fill(view, 
    el("nav", { class: "crumbs", "aria-label": "Breadcrumb" }, link("#/datasets", "Datasets"), " / "),
    el("div", { class: "page-head" }, el("h1", { text: dataset.name }), actions),
    el(
      "p",
      { class: "facts-line" },
      `${integer(dataset.n_rows)} rows · ${dataset.n_columns} columns · ${bytes(dataset.size_bytes)} · uploaded ${when(dataset.created_at)} · id `,
      el("code", { text: dataset.id })
    ),
    deleteBox,
    card("Columns", columnTable(dataset)),
    card("Jobs on this dataset", await jobsOn(dataset))
  );
}

function columnTable(dataset) {
  const rows = dataset.columns.map((c) => {
    const share = dataset.n_rows ? c.missing / dataset.n_rows : 0;
    return el(
      "tr",
      { "data-column": c.name },
      el("th", { scope: "row", text: c.name }),
      el("td", {}, badge(`type-${c.type}`, c.type)),
      el("td", { class: `num${c.missing ? " warn" : ""}`, text: c.missing ? `${integer(c.missing)} (${(100 * share).toFixed(1)} %)` : "0" }),
      el("td", { class: "num", text: integer(c.n_unique) }),
      el("td", { class: "summary" }, summary(c))
    );
  });
  return table(["Column", "Type", "Missing", "Distinct", "Summary"], rows, { caption: `Columns of ${dataset.name}` });
}

// The column's summary from the upload's statistics pass (`summary`): the most frequent
// values with their counts (categorical, boolean), or min / mean / max / std (numeric).
function summary(column) {
  const stats = column.summary || {};
  if (stats.counts && typeof stats.counts === "object") {
    const entries = Object.entries(stats.counts).sort((a, b) => b[1] - a[1]);
    const shown = entries.slice(0, 8);
    const rest = entries.slice(8).reduce((n, [, c]) => n + c, 0) + (stats.other || 0);
    const more = Math.max(0, (column.n_unique || entries.length) - shown.length);
    return el(
      "span",
      { class: "chips" },
      shown.map(([value, count]) => el("span", { class: "chip", text: `${value} · ${integer(count)}` })),
      more > 0 ? el("span", { class: "muted", text: ` +${integer(more)} more (${integer(rest)} rows)` }) : null
    );
  }
  const parts = [
    ["min", stats.min],
    ["mean", stats.mean],
    ["max", stats.max],
    ["std", stats.std],
  ].filter(([, v]) => v !== undefined && v !== null);
  if (parts.length) return el("span", { class: "stats" }, parts.map(([k, v]) => el("span", {}, el("span", { class: "muted", text: `${k} ` }), number(v, 4))));
  return el("span", { class: "muted", text: "–" });
}

async function jobsOn(dataset) {
  try {
    const jobs = await api(`/v1/jobs?dataset_id=${enc(dataset.id)}&limit=20`);
    return table(
      ["Job", "Model", "Target", "Status", "Created"],
      jobs.map((j) =>
        el(
          "tr",
          {},
          el("td", {}, link(`#/jobs/${enc(j.id)}`, shortId(j.id))),
          el("td", {}, j.model ? link(`#/models/${enc(j.model.name)}/${j.model.version}`, `${j.model.name} v${j.model.version}`) : j.model_name),
          el("td", { text: j.target }),
          el("td", {}, badge(j.status)),
          el("td", { text: when(j.created_at) })
        )
      ),
      { caption: "Jobs on this dataset", empty: "No job has used this dataset yet." }
    );
  } catch (exc) {
    return errorBox(exc, "list the jobs on this dataset");
  }
}

async function remove(ctx, dataset, box) {
  const ok = await confirm({
    title: `Delete the dataset “${dataset.name}”?`,
    body: [`Its ${integer(dataset.n_rows)} rows are removed for good. Finished jobs keep their history and model versions stay usable.`],
    ok: "Delete the dataset",
    danger: true,
  });
  if (!ok) return;
  try {
    await api(`/v1/datasets/${enc(dataset.id)}`, { method: "DELETE" });
    ctx.go("#/datasets");
  } catch (exc) {
    if (exc.status !== 409) {
      fill(box, errorBox(exc, "delete the dataset"));
      return;
    }
    // 409: a queued or running job still reads it; name them.
    let blocking = [];
    try {
      const [queued, running] = await Promise.all(["queued", "running"].map((s) => api(`/v1/jobs?dataset_id=${enc(dataset.id)}&status=${s}&limit=50`)));
      blocking = [...running, ...queued];
    } catch {
      /* the explanation below stands without the list */
    }
    fill(box, 
      el(
        "div",
        { class: "explain", role: "alert" },
        el("p", {}, el("strong", { text: "Not deleted: a job still uses this dataset. " }), `(The API answered 409 Conflict: ${exc.message})`),
        el("p", { text: "A queued or running job reads the dataset while it trains. Wait for it to finish, or cancel it, then delete the dataset." }),
        blocking.length
          ? el("ul", {}, blocking.map((j) => el("li", {}, link(`#/jobs/${enc(j.id)}`, `job ${shortId(j.id)}`), ` · ${j.model_name} · `, badge(j.status))))
          : null
      )
    );
    box.querySelector(".explain").setAttribute("tabindex", "-1");
    box.querySelector(".explain").focus();
  }
}
