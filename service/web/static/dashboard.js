// The trainserve dashboard: reads the v1 API and draws its own charts as inline SVG.
// No framework, no CDN. While a job runs its curves are polled every 2 s.
"use strict";

(function () {
  const KEY_STORAGE = "trainserve.apiKey";
  const ACTIVE = new Set(["queued", "running"]);
  const POLL_ACTIVE_MS = 2000;
  const POLL_IDLE_MS = 10000;
  const SVG = "http://www.w3.org/2000/svg";

  const state = {
    key: sessionStorage.getItem(KEY_STORAGE),
    jobs: [],
    selectedJob: location.hash.startsWith("#job=") ? location.hash.slice(5) : null,
    versions: new Map(), // "name/version" → model version
    finished: null, // the finished jobs last seen: models and datasets follow them
    timer: null,
  };

  const $ = (selector) => document.querySelector(selector);

  // ---- the API ------------------------------------------------------------

  class ApiError extends Error {
    constructor(status, problem) {
      super((problem && (problem.detail || problem.title)) || `HTTP ${status}`);
      this.status = status;
      this.problem = problem || {};
    }
  }

  async function api(path, options = {}) {
    const headers = Object.assign({ Accept: "application/json" }, options.headers || {});
    if (state.key) headers.Authorization = `Bearer ${state.key}`;
    const response = await fetch(path, Object.assign({}, options, { headers }));
    const body = await response.json().catch(() => null);
    if (response.status === 401) {
      askForKey(state.key ? "That API key was refused; enter another one." : null);
    }
    if (!response.ok) throw new ApiError(response.status, body);
    return body;
  }

  // ---- small DOM helpers --------------------------------------------------

  function el(tag, attributes = {}, ...children) {
    const node = document.createElement(tag);
    for (const [name, value] of Object.entries(attributes)) {
      if (name === "text") node.textContent = value;
      else if (name.startsWith("on")) node.addEventListener(name.slice(2), value);
      else node.setAttribute(name, value);
    }
    node.append(...children);
    return node;
  }

  function svg(tag, attributes = {}, text = null) {
    const node = document.createElementNS(SVG, tag);
    for (const [name, value] of Object.entries(attributes)) node.setAttribute(name, value);
    if (text !== null) node.textContent = text;
    return node;
  }

  const number = (value, digits = 4) =>
    value === null || value === undefined ? "–" : Number(value).toPrecision(digits);
  const percent = (value) =>
    value === null || value === undefined ? "–" : `${(100 * value).toFixed(1)} %`;
  const when = (iso) =>
    iso
      ? new Date(iso).toLocaleString(undefined, { month: "short", day: "numeric", hour: "2-digit", minute: "2-digit" })
      : "–";
  const bytes = (n) =>
    n >= 1 << 20 ? `${(n / (1 << 20)).toFixed(1)} MiB` : n >= 1024 ? `${(n / 1024).toFixed(1)} KiB` : `${n} B`;

  function fillTable(table, rows, emptyNote) {
    const body = table.querySelector("tbody");
    body.replaceChildren(...rows);
    table.hidden = rows.length === 0;
    if (emptyNote) emptyNote.hidden = rows.length !== 0;
  }

  function notice(message) {
    const node = $("#notice");
    node.textContent = message || "";
    node.hidden = !message;
  }

  // ---- the key ------------------------------------------------------------

  function askForKey(message) {
    $("#key-panel").hidden = false;
    notice(message || "This server needs an API key.");
    $("#key-input").focus();
  }

  function setupKey() {
    $("#key-form").addEventListener("submit", (event) => {
      event.preventDefault();
      state.key = $("#key-input").value.trim();
      sessionStorage.setItem(KEY_STORAGE, state.key);
      $("#key-input").value = "";
      $("#key-panel").hidden = true;
      $("#change-key").hidden = false;
      notice(null);
      refresh();
    });
    $("#change-key").hidden = !state.key;
    $("#change-key").addEventListener("click", () => askForKey("Enter another API key."));
  }

  // ---- jobs and their curves ---------------------------------------------

  function statusBadge(status) {
    return el("span", { class: `badge ${status}`, text: status });
  }

  function renderJobs() {
    const rows = state.jobs.map((job) => {
      const latest = job.latest || {};
      const row = el(
        "tr",
        { "data-job-id": job.id, class: job.id === state.selectedJob ? "selected" : "" },
        el("td", {}, el("code", { text: job.id.slice(0, 8) })),
        el("td", { text: job.model_name }),
        el("td", {}, statusBadge(job.status)),
        el("td", { text: `${job.epoch}/${job.epochs}` }),
        el("td", { text: number(latest.val_loss) }),
        el("td", { text: percent(latest.val_accuracy) }),
        el("td", { text: when(job.created_at) })
      );
      row.addEventListener("click", () => selectJob(job.id));
      return row;
    });
    fillTable($("#jobs"), rows, $("#jobs-empty"));
  }

  function selectJob(jobId) {
    state.selectedJob = jobId;
    history.replaceState(null, "", `#job=${jobId}`);
    renderJobs();
    refreshSelectedJob();
  }

  async function refreshSelectedJob() {
    const jobId = state.selectedJob;
    if (!jobId) return;
    const [job, metrics] = await Promise.all([
      api(`/v1/jobs/${encodeURIComponent(jobId)}`),
      api(`/v1/jobs/${encodeURIComponent(jobId)}/metrics`),
    ]);
    if (jobId !== state.selectedJob) return; // another job was picked meanwhile
    renderJob(job, metrics.epochs);
  }

  function renderJob(job, epochs) {
    $("#job-title").replaceChildren(
      document.createTextNode(`Job ${job.id.slice(0, 8)} · ${job.model_name} `),
      statusBadge(job.status)
    );
    const parts = [`epoch ${job.epoch} of ${job.epochs}`, `attempt ${job.attempt}`];
    if (job.model) parts.push(`model ${job.model.name} version ${job.model.version}`);
    if (job.error) parts.push(`error: ${job.error.message}`);
    $("#job-summary").textContent = parts.join(" · ");
    const progress = $("#job-progress");
    progress.value = job.epochs ? job.epoch / job.epochs : 0;
    progress.hidden = !ACTIVE.has(job.status);
    const xMax = Math.max(job.epochs || 1, epochs.length);
    const series = (key) => epochs.filter((e) => e[key] !== null && e[key] !== undefined).map((e) => [e.epoch, e[key]]);
    drawChart($("#loss-chart"), {
      name: "loss",
      xMax,
      series: [
        { name: "train loss", key: "train_loss", points: series("train_loss") },
        { name: "validation loss", key: "val_loss", points: series("val_loss") },
      ],
    });
    drawChart($("#accuracy-chart"), {
      name: "accuracy",
      xMax,
      yRange: [0, 1],
      format: (v) => `${Math.round(v * 100)}%`,
      series: [
        { name: "train accuracy", key: "train_accuracy", points: series("train_accuracy") },
        { name: "validation accuracy", key: "val_accuracy", points: series("val_accuracy") },
      ],
    });
  }

  // A step of 1, 2 or 5 × 10^n giving about `count` ticks over [low, high].
  function ticks(low, high, count) {
    const raw = (high - low) / Math.max(1, count);
    const magnitude = Math.pow(10, Math.floor(Math.log10(raw)));
    const step = [1, 2, 5, 10].map((m) => m * magnitude).find((s) => s >= raw);
    const values = [];
    for (let v = Math.ceil(low / step) * step; v <= high + step / 1e6; v += step) values.push(+v.toFixed(10));
    return values;
  }

  function drawChart(box, { name, series, xMax, yRange, format = (v) => String(Number(v.toPrecision(3))) }) {
    const width = 640, height = 260;
    const margin = { top: 28, right: 20, bottom: 40, left: 56 };
    const plotW = width - margin.left - margin.right;
    const plotH = height - margin.top - margin.bottom;
    const values = series.flatMap((s) => s.points.map((p) => p[1]));
    let [yLow, yHigh] = yRange || [0, values.length ? Math.max(...values) * 1.08 : 1];
    if (!(yHigh > yLow)) yHigh = yLow + 1;
    const xLow = 1, xHigh = Math.max(2, xMax);
    const x = (epoch) => margin.left + ((epoch - xLow) / (xHigh - xLow)) * plotW;
    const y = (value) => margin.top + (1 - (value - yLow) / (yHigh - yLow)) * plotH;

    const chart = svg("svg", {
      class: `chart ${name}`,
      viewBox: `0 0 ${width} ${height}`,
      role: "img",
      "aria-label": `${name} per epoch`,
    });
    const grid = svg("g", { class: "grid" });
    for (const v of ticks(yLow, yHigh, 5)) {
      grid.append(svg("line", { x1: margin.left, x2: width - margin.right, y1: y(v), y2: y(v) }));
      grid.append(svg("text", { x: margin.left - 8, y: y(v) + 4, class: "tick y" }, format(v)));
    }
    for (const v of ticks(xLow, xHigh, 8).filter((v) => Number.isInteger(v))) {
      grid.append(svg("text", { x: x(v), y: height - margin.bottom + 18, class: "tick x" }, String(v)));
    }
    grid.append(svg("text", { x: margin.left + plotW / 2, y: height - 6, class: "axis-label" }, "epoch"));
    chart.append(grid);
    chart.append(svg("rect", { class: "frame", x: margin.left, y: margin.top, width: plotW, height: plotH }));

    series.forEach((s, index) => {
      const legendX = margin.left + 8 + index * 170;
      chart.append(svg("line", { class: `legend series-${index}`, x1: legendX, x2: legendX + 22, y1: 14, y2: 14 }));
      chart.append(svg("text", { class: "legend-label", x: legendX + 28, y: 18 }, s.name));
      if (!s.points.length) return;
      const d = s.points.map(([ex, ey], i) => `${i ? "L" : "M"}${x(ex).toFixed(1)},${y(ey).toFixed(1)}`).join(" ");
      chart.append(svg("path", { class: `series series-${index}`, "data-series": s.key, "data-points": s.points.length, d }));
      if (s.points.length > 60) return; // many epochs: the line alone reads better than beads
      const dots = svg("g", { class: `points series-${index}` });
      for (const [ex, ey] of s.points) {
        const dot = svg("circle", { cx: x(ex).toFixed(1), cy: y(ey).toFixed(1), r: 3 });
        dot.append(svg("title", {}, `${s.name}, epoch ${ex}: ${format(ey)}`));
        dots.append(dot);
      }
      chart.append(dots);
    });
    if (!values.length) {
      chart.append(svg("text", { class: "waiting", x: margin.left + plotW / 2, y: margin.top + plotH / 2 }, "waiting for the first epoch…"));
    }
    box.replaceChildren(chart);
  }

  // ---- models and predictions --------------------------------------------

  async function refreshModels() {
    const summaries = await api("/v1/models");
    const models = await Promise.all(summaries.map((m) => api(`/v1/models/${encodeURIComponent(m.name)}`)));
    const select = $("#predict-model");
    const chosen = select.value;
    state.versions.clear();
    const rows = [];
    for (const model of models) {
      for (const version of model.versions) {
        const id = `${version.name}/${version.version}`;
        state.versions.set(id, version);
        const m = version.metrics || {};
        const validation = m.validation || {};
        rows.push(
          el(
            "tr",
            {},
            el("td", { text: version.name }),
            el("td", { text: String(version.version) }),
            el("td", { text: percent(validation.accuracy ?? m.val_accuracy) }),
            el("td", { text: number(m.val_loss) }),
            el("td", { text: number(validation.macro_f1, 3) }),
            el("td", { text: m.epochs_run ?? m.epoch ?? "–" }),
            el("td", { text: when(version.created_at) }),
            el("td", {}, el("button", { type: "button", class: "link", text: "try", onclick: () => choose(id) }))
          )
        );
      }
    }
    fillTable($("#models"), rows, $("#models-empty"));
    select.replaceChildren(...[...state.versions.keys()].map((id) => el("option", { value: id, text: id.replace("/", " v") })));
    if (state.versions.has(chosen)) select.value = chosen;
    else if (state.versions.size) choose(select.value);
  }

  function choose(id) {
    $("#predict-model").value = id;
    const records = $("#predict-records");
    records.defaultValue = JSON.stringify([exampleRecord(state.versions.get(id))], null, 2);
    records.value = records.defaultValue;
    $("#predictions").hidden = true;
    $("#predict-error").hidden = true;
  }

  // One row a user can edit: a category the model knows, true, or 0.
  function exampleRecord(version) {
    const record = {};
    for (const column of version.input_schema || []) {
      if (column.type === "categorical") record[column.name] = (column.categories || [""])[0];
      else if (column.type === "boolean") record[column.name] = true;
      else record[column.name] = 0;
    }
    return record;
  }

  async function predict(event) {
    event.preventDefault();
    const error = $("#predict-error");
    error.hidden = true;
    const version = state.versions.get($("#predict-model").value);
    if (!version) {
      error.textContent = "There is no model version yet: train one first.";
      error.hidden = false;
      return;
    }
    let records;
    try {
      records = JSON.parse($("#predict-records").value);
    } catch (exc) {
      error.textContent = `The records are not valid JSON: ${exc.message}`;
      error.hidden = false;
      return;
    }
    try {
      const answer = await api(
        `/v1/models/${encodeURIComponent(version.name)}/versions/${version.version}/predict`,
        { method: "POST", headers: { "Content-Type": "application/json" }, body: JSON.stringify({ records: Array.isArray(records) ? records : [records] }) }
      );
      renderPredictions(answer);
    } catch (exc) {
      const fields = Object.entries(exc.problem?.errors || {}).map(([field, messages]) => `${field}: ${messages.join("; ")}`);
      error.textContent = [exc.message, ...fields].join(" · ");
      error.hidden = false;
    }
  }

  function renderPredictions(answer) {
    const table = $("#predictions");
    const keys = answer.predictions.length ? Object.keys(answer.predictions[0].probabilities) : [];
    table.querySelector("thead").replaceChildren(
      el("tr", {}, el("th", { text: "Row" }), el("th", { text: "Label" }), ...keys.map((k) => el("th", { text: `p(${k})` })))
    );
    fillTable(
      table,
      answer.predictions.map((p, i) =>
        el("tr", {}, el("td", { text: String(i + 1) }), el("td", {}, el("strong", { text: String(p.label) })), ...keys.map((k) => el("td", { text: p.probabilities[k].toFixed(4) })))
      )
    );
  }

  // ---- datasets ------------------------------------------------------------

  async function refreshDatasets() {
    const datasets = await api("/v1/datasets");
    fillTable(
      $("#datasets"),
      datasets.map((d) =>
        el("tr", {}, el("td", { text: d.name }), el("td", { text: String(d.n_rows) }), el("td", { text: String(d.n_columns) }), el("td", { text: bytes(d.size_bytes || 0) }), el("td", { text: when(d.created_at) }), el("td", {}, el("code", { text: d.id })))
      ),
      $("#datasets-empty")
    );
  }

  // ---- the loop ------------------------------------------------------------

  async function refresh() {
    clearTimeout(state.timer);
    let active = false;
    try {
      state.jobs = await api("/v1/jobs?limit=50");
      if (!state.selectedJob && state.jobs.length) {
        state.selectedJob = (state.jobs.find((j) => ACTIVE.has(j.status)) || state.jobs[0]).id;
      }
      renderJobs();
      active = state.jobs.some((j) => ACTIVE.has(j.status));
      const finished = state.jobs.filter((j) => !ACTIVE.has(j.status)).map((j) => j.id).join();
      const others = !active || finished !== state.finished ? [refreshModels(), refreshDatasets()] : [];
      await Promise.all([refreshSelectedJob(), ...others]);
      state.finished = finished;
      notice(null);
    } catch (exc) {
      if (exc.status !== 401) notice(`Could not reach the API: ${exc.message}`);
      if (exc.status === 401) return; // wait for a key
    }
    state.timer = setTimeout(refresh, active ? POLL_ACTIVE_MS : POLL_IDLE_MS);
  }

  document.addEventListener("DOMContentLoaded", () => {
    setupKey();
    $("#predict-form").addEventListener("submit", predict);
    $("#predict-model").addEventListener("change", (event) => choose(event.target.value));
    refresh();
  });
})();
