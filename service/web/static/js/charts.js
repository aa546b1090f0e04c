// Charts drawn as inline SVG by the page itself (no library, no CDN): curves per epoch,
// a scatter of hyperparameter against metric, a confusion matrix and a reliability diagram.
// Colours come from CSS classes (s0 … s9); the CSP allows no inline style attributes.

import { el, number } from "./dom.js";

const SVG = "http://www.w3.org/2000/svg";
export const PALETTE_SIZE = 10;

function svg(tag, attributes = {}, text = null) {
  const node = document.createElementNS(SVG, tag);
  for (const [name, value] of Object.entries(attributes)) {
    if (value !== undefined && value !== null) node.setAttribute(name, value);
  }
  if (text !== null) node.textContent = text;
  return node;
}

const tip = (node, words) => {
  node.append(svg("title", {}, words));
  return node;
};

// A step of 1, 2 or 5 × 10^n giving about `count` ticks over [low, high].
export function ticks(low, high, count) {
  const raw = (high - low) / Math.max(1, count);
  if (!(raw > 0)) return [low];
  const magnitude = Math.pow(10, Math.floor(Math.log10(raw)));
  const step = [1, 2, 5, 10].map((m) => m * magnitude).find((s) => s >= raw);
  const values = [];
  for (let v = Math.ceil(low / step) * step; v <= high + step / 1e6; v += step) values.push(+v.toFixed(10));
  return values;
}

const defaultFormat = (v) => String(Number(v.toPrecision(3)));

// The drawing's width in user units: on a narrow screen about the screen's width, so that
// its 12 px text stays 12 px instead of shrinking with the picture.
function fitWidth(preferred) {
  const screen = window.innerWidth || preferred;
  return screen < 720 ? Math.max(300, Math.min(preferred, screen - 40)) : preferred;
}

function frame(width, height, margin, label) {
  return svg("svg", { class: "chart", viewBox: `0 0 ${width} ${height}`, role: "img", "aria-label": label, preserveAspectRatio: "xMidYMid meet" });
}

function legend(series) {
  return el(
    "ul",
    { class: "legend" },
    series.map((s) =>
      el("li", { class: s.emphasis ? "emphasis" : "" }, el("span", { class: `swatch ${s.cls}${s.dashed ? " dashed" : ""}`, "aria-hidden": "true" }), el("span", { text: s.name }))
    )
  );
}

// Curves per epoch. series: [{key, name, cls, points: [[epoch, value]], emphasis, dashed,
// stoppedAt}] — stoppedAt marks a trial stopped early with a cross at that epoch.
export function lineChart({ title, series, xMax = 1, yRange, format = defaultFormat, xLabel = "epoch", name = "curves", height = 250, markers }) {
  const width = fitWidth(640);
  const margin = { top: 12, right: 16, bottom: 38, left: 56 };
  const plotW = width - margin.left - margin.right;
  const plotH = height - margin.top - margin.bottom;
  const values = series.flatMap((s) => s.points.map((p) => p[1])).filter((v) => Number.isFinite(v));
  let [yLow, yHigh] = yRange || [Math.min(0, ...values), values.length ? Math.max(...values) * 1.08 : 1];
  if (!(yHigh > yLow)) yHigh = yLow + 1;
  const xHigh = Math.max(2, xMax, ...series.flatMap((s) => s.points.map((p) => p[0])));
  const x = (epoch) => margin.left + ((epoch - 1) / (xHigh - 1)) * plotW;
  const y = (value) => margin.top + (1 - (Math.min(Math.max(value, yLow), yHigh) - yLow) / (yHigh - yLow)) * plotH;

  const chart = frame(width, height, margin, `${title}: ${series.map((s) => s.name).join(", ")}`);
  chart.classList.add(name);
  const grid = svg("g", { class: "grid" });
  for (const v of ticks(yLow, yHigh, 5)) {
    grid.append(svg("line", { x1: margin.left, x2: width - margin.right, y1: y(v), y2: y(v) }));
    grid.append(svg("text", { x: margin.left - 8, y: y(v) + 4, class: "tick y" }, format(v)));
  }
  for (const v of ticks(1, xHigh, width < 500 ? 5 : 8).filter((v) => Number.isInteger(v))) {
    grid.append(svg("text", { x: x(v), y: height - margin.bottom + 18, class: "tick x" }, String(v)));
  }
  grid.append(svg("text", { x: margin.left + plotW / 2, y: height - 4, class: "axis-label" }, xLabel));
  chart.append(grid, svg("rect", { class: "frame", x: margin.left, y: margin.top, width: plotW, height: plotH }));

  const beads = markers ?? (series.length <= 4 && series.every((s) => s.points.length <= 60));
  for (const s of series) {
    if (!s.points.length) continue;
    const d = s.points.map(([ex, ey], i) => `${i ? "L" : "M"}${x(ex).toFixed(1)},${y(ey).toFixed(1)}`).join(" ");
    const classes = `series ${s.cls}${s.emphasis ? " emphasis" : ""}${s.dashed ? " dashed" : ""}`;
    chart.append(tip(svg("path", { class: classes, "data-series": s.key, "data-points": s.points.length, d }), s.name));
    if (beads) {
      const dots = svg("g", { class: `points ${s.cls}` });
      for (const [ex, ey] of s.points) {
        dots.append(tip(svg("circle", { cx: x(ex).toFixed(1), cy: y(ey).toFixed(1), r: 3 }), `${s.name}, ${xLabel} ${ex}: ${format(ey)}`));
      }
      chart.append(dots);
    }
    if (s.stoppedAt) {
      const last = s.points.find((p) => p[0] === s.stoppedAt) || s.points[s.points.length - 1];
      const cx = x(last[0]), cy = y(last[1]);
      chart.append(
        tip(svg("path", { class: `stop-mark ${s.cls}`, "data-stopped-at": s.stoppedAt, d: `M${cx - 5},${cy - 5}L${cx + 5},${cy + 5}M${cx - 5},${cy + 5}L${cx + 5},${cy - 5}` }), `${s.name}: stopped early at ${xLabel} ${s.stoppedAt}`)
      );
    }
  }
  if (!values.length) {
    chart.append(svg("text", { class: "waiting", x: margin.left + plotW / 2, y: margin.top + plotH / 2 }, "waiting for the first epoch…"));
  }
  return el("figure", { class: "chart-figure" }, el("figcaption", { text: title }), chart, legend(series.filter((s) => s.name)));
}

// Hyperparameter (x) against metric (y). points: [{x, y, label, cls, hollow}];
// x is numeric (log scale when `log`) or categorical (`categories` gives the order).
export function scatterChart({ title, points, xLabel, yLabel, log = false, categories = null, format = defaultFormat }) {
  const width = fitWidth(460), height = 280;
  const margin = { top: 14, right: 20, bottom: 42, left: 60 };
  const plotW = width - margin.left - margin.right;
  const plotH = height - margin.top - margin.bottom;
  const chart = frame(width, height, margin, `${title}: ${yLabel} against ${xLabel}`);
  chart.classList.add("scatter");
  const ys = points.map((p) => p.y).filter(Number.isFinite);
  let yLow = ys.length ? Math.min(...ys) : 0, yHigh = ys.length ? Math.max(...ys) : 1;
  const pad = (yHigh - yLow) * 0.1 || Math.abs(yHigh) * 0.1 || 1;
  yLow -= pad;
  yHigh += pad;
  const y = (v) => margin.top + (1 - (v - yLow) / (yHigh - yLow)) * plotH;
  let x, xTicks;
  if (categories) {
    const slot = plotW / Math.max(1, categories.length);
    x = (v) => margin.left + slot * (categories.indexOf(JSON.stringify(v)) + 0.5);
    xTicks = categories.map((c) => [JSON.parse(c), c.replace(/^"|"$/g, "")]);
  } else {
    const xs = points.map((p) => p.x).filter(Number.isFinite);
    const t = log ? (v) => Math.log10(v) : (v) => v;
    let low = xs.length ? t(Math.min(...xs)) : 0, high = xs.length ? t(Math.max(...xs)) : 1;
    const margin_ = (high - low) * 0.06 || 0.5;
    low -= margin_;
    high += margin_;
    x = (v) => margin.left + ((t(v) - low) / (high - low)) * plotW;
    xTicks = log
      ? ticks(Math.ceil(low), Math.floor(high), 6).filter(Number.isInteger).map((e) => [Math.pow(10, e), String(Number(Math.pow(10, e).toPrecision(2)))])
      : ticks(low, high, 6).map((v) => [v, format(v)]);
  }
  const grid = svg("g", { class: "grid" });
  for (const v of ticks(yLow, yHigh, 5)) {
    grid.append(svg("line", { x1: margin.left, x2: width - margin.right, y1: y(v), y2: y(v) }));
    grid.append(svg("text", { x: margin.left - 8, y: y(v) + 4, class: "tick y" }, format(v)));
  }
  for (const [v, label] of xTicks) grid.append(svg("text", { x: x(v), y: height - margin.bottom + 18, class: "tick x" }, label));
  grid.append(svg("text", { x: margin.left + plotW / 2, y: height - 4, class: "axis-label" }, `${xLabel}${log ? " (log scale)" : ""}`));
  grid.append(svg("text", { x: 12, y: margin.top + plotH / 2, class: "axis-label", transform: `rotate(-90 12 ${margin.top + plotH / 2})` }, yLabel));
  chart.append(grid, svg("rect", { class: "frame", x: margin.left, y: margin.top, width: plotW, height: plotH }));
  const dots = svg("g", { class: "dots" });
  for (const p of points) {
    if (!Number.isFinite(p.y) || (!categories && !Number.isFinite(p.x))) continue;
    const cx = x(p.x), cy = y(p.y);
    dots.append(tip(svg("circle", { cx: cx.toFixed(1), cy: cy.toFixed(1), r: 6, class: `${p.cls}${p.hollow ? " hollow" : ""}` }), p.label));
    if (p.tag) dots.append(svg("text", { x: (cx + 9).toFixed(1), y: (cy + 4).toFixed(1), class: `dot-label ${p.cls}` }, p.tag));
  }
  chart.append(dots);
  if (!points.length) chart.append(svg("text", { class: "waiting", x: margin.left + plotW / 2, y: margin.top + plotH / 2 }, "no scored trial yet"));
  return el("figure", { class: "chart-figure" }, el("figcaption", { text: title }), chart);
}

// A confusion matrix as a table (rows: true class, columns: predicted), shaded by row share.
export function confusionMatrix(matrix, { title = "Confusion matrix" } = {}) {
  const { labels, counts } = matrix;
  const head = el("tr", {}, el("th", { scope: "col", class: "corner", text: "true ↓ / predicted →" }), labels.map((l) => el("th", { scope: "col", text: l })));
  const rows = counts.map((row, i) => {
    const total = row.reduce((a, b) => a + b, 0) || 1;
    return el(
      "tr",
      {},
      el("th", { scope: "row", text: labels[i] }),
      row.map((count, j) => {
        const level = Math.min(5, Math.ceil((count / total) * 5));
        return el("td", { class: `heat heat-${level}${i === j ? " diagonal" : ""}`, title: `true ${labels[i]}, predicted ${labels[j]}: ${count} of ${total}`, text: String(count) });
      })
    );
  });
  return el("figure", { class: "matrix" }, el("figcaption", { text: title }), el("div", { class: "table-wrap" }, el("table", { class: "confusion" }, el("thead", {}, head), el("tbody", {}, rows))));
}

// Reliability diagram: mean confidence against accuracy per bin; the diagonal is perfect
// calibration. bins: [{confidence, accuracy, count, lower?, upper?}].
export function reliabilityDiagram(bins, { title = "Reliability diagram", ece = null } = {}) {
  const size = 300;
  const margin = { top: 12, right: 12, bottom: 40, left: 48 };
  const plot = size - margin.left - margin.right;
  const x = (v) => margin.left + v * plot;
  const y = (v) => margin.top + (1 - v) * plot;
  const chart = frame(size, size, margin, `${title}: accuracy against confidence in ${bins.length} bins`);
  chart.classList.add("reliability");
  const grid = svg("g", { class: "grid" });
  for (const v of [0, 0.25, 0.5, 0.75, 1]) {
    grid.append(svg("line", { x1: x(0), x2: x(1), y1: y(v), y2: y(v) }));
    grid.append(svg("text", { x: margin.left - 6, y: y(v) + 4, class: "tick y" }, String(v)));
    grid.append(svg("text", { x: x(v), y: size - margin.bottom + 16, class: "tick x" }, String(v)));
  }
  grid.append(svg("text", { x: margin.left + plot / 2, y: size - 4, class: "axis-label" }, "confidence"));
  grid.append(svg("text", { x: 12, y: margin.top + plot / 2, class: "axis-label", transform: `rotate(-90 12 ${margin.top + plot / 2})` }, "accuracy"));
  chart.append(grid, svg("rect", { class: "frame", x: margin.left, y: margin.top, width: plot, height: plot }));
  chart.append(svg("line", { class: "diagonal", x1: x(0), y1: y(0), x2: x(1), y2: y(1) }));
  const n = bins.length || 1;
  const bars = svg("g", { class: "bars" });
  bins.forEach((bin, i) => {
    if (!bin.count) return;
    const lower = bin.lower ?? i / n;
    const upper = bin.upper ?? (i + 1) / n;
    const w = x(upper) - x(lower);
    bars.append(
      tip(svg("rect", { class: "bar", x: x(lower) + 1, width: Math.max(1, w - 2), y: y(bin.accuracy), height: y(0) - y(bin.accuracy) }), `confidence ${number(lower, 2)}–${number(upper, 2)}: accuracy ${number(bin.accuracy, 3)}, mean confidence ${number(bin.confidence, 3)}, ${bin.count} rows`)
    );
    bars.append(svg("circle", { class: "confidence", cx: x(bin.confidence), cy: y(bin.accuracy), r: 3 }));
  });
  chart.append(bars);
  const caption = ece === null || ece === undefined ? title : `${title} (ECE ${number(ece, 3)})`;
  return el("figure", { class: "chart-figure reliability-figure" }, el("figcaption", { text: caption }), chart);
}
