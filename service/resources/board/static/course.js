// A patient's course: PHQ-9 and GAD-7 totals over time, drawn as inline SVG over the
// instruments' severity bands, with treatment sessions (series sessions numbered) marked.

import { bandOf, INSTRUMENTS } from "./rules.js";
import { shortDate } from "./time.js";
import { el } from "./timeline.js";

const NS = "http://www.w3.org/2000/svg";
const DAY = 86400000;
const W = 720;
const H = 236;
const M = { left: 34, right: 150, top: 22, bottom: 30 };

function svg(tag, attrs = {}, ...children) {
  const node = document.createElementNS(NS, tag);
  for (const [name, value] of Object.entries(attrs)) {
    if (value === undefined || value === null) continue;
    if (name === "text") node.textContent = value;
    else node.setAttribute(name, String(value));
  }
  for (const child of children) if (child) node.append(child);
  return node;
}

let chartCount = 0;

/**
 * One instrument's chart.
 * scores: [{taken_at, total, band, urgent}], sessions: [{at, label, title, series, planned}]
 */
export function scoreChart(instrument, scores, sessions, zone, now) {
  const { max, bands } = INSTRUMENTS[instrument];
  chartCount += 1;
  const id = `chart-${chartCount}`;
  const points = scores.map((s) => ({ ...s, at: Date.parse(s.taken_at) }))
    .sort((a, b) => a.at - b.at);
  const times = [...points.map((p) => p.at), ...sessions.map((s) => s.at)];
  let lo = Math.min(...times);
  let hi = Math.max(...times);
  if (hi - lo < 14 * DAY) {
    const middle = (lo + hi) / 2;
    lo = middle - 7 * DAY;
    hi = middle + 7 * DAY;
  }
  const pad = (hi - lo) * 0.04;
  lo -= pad;
  hi += pad;
  const plotW = W - M.left - M.right;
  const plotH = H - M.top - M.bottom;
  const x = (ms) => M.left + ((ms - lo) / (hi - lo)) * plotW;
  const y = (value) => M.top + plotH * (1 - value / max);

  const summary = points.length
    ? `${points.length} ${points.length === 1 ? "score" : "scores"}, from ${points[0].total} `
      + `(${bandOf(instrument, points[0].total)}) on ${shortDate(points[0].at, zone)} to `
      + `${points[points.length - 1].total} (${bandOf(instrument, points[points.length - 1].total)}) `
      + `on ${shortDate(points[points.length - 1].at, zone)}`
    : "no scores yet";
  const chart = svg("svg", { viewBox: `0 0 ${W} ${H}`, class: "chart", role: "img",
    "aria-labelledby": `${id}-title ${id}-desc`, "data-instrument": instrument });
  chart.append(
    svg("title", { id: `${id}-title`, text: `${instrument} over time` }),
    svg("desc", { id: `${id}-desc`, text: `${summary}; ${sessions.length} treatment `
      + `${sessions.length === 1 ? "session" : "sessions"} marked.` }),
  );

  bands.forEach(([name, low, high], index) => {
    const top = y(Math.min(high + 0.5, max));
    const bottom = y(Math.max(low - 0.5, 0));
    chart.append(
      svg("rect", { class: `band band-${index}`, x: M.left, y: top, width: plotW, height: bottom - top }),
      svg("text", { class: "band-label", x: M.left + plotW + 6, y: (top + bottom) / 2 + 4,
        text: `${name} ${low}\u2013${high}` }),
    );
  });
  for (const [, low] of bands) {
    chart.append(svg("text", { class: "axis-label", x: M.left - 6, y: y(low) + 4,
      "text-anchor": "end", text: String(low) }));
  }
  chart.append(svg("text", { class: "axis-label", x: M.left - 6, y: y(max) + 4, "text-anchor": "end",
    text: String(max) }));

  const ticks = 5;
  for (let i = 0; i <= ticks; i += 1) {
    const at = lo + ((hi - lo) * i) / ticks;
    chart.append(svg("text", { class: "axis-label", x: x(at), y: H - 10, "text-anchor": "middle",
      text: shortDate(at, zone) }));
  }
  chart.append(svg("line", { class: "frame", x1: M.left, x2: M.left + plotW, y1: y(0), y2: y(0) }));

  if (now > lo && now < hi) {
    chart.append(svg("line", { class: "today", x1: x(now), x2: x(now), y1: M.top, y2: y(0) }),
      svg("text", { class: "today-label", x: x(now), y: M.top - 4, "text-anchor": "middle", text: "today" }));
  }

  for (const session of sessions) {
    const cx = x(session.at);
    const kind = session.series ? "marker-series" : "marker-session";
    chart.append(svg("g", { class: `marker ${kind}${session.planned ? " planned" : ""}` },
      svg("title", { text: session.title }),
      svg("line", { x1: cx, x2: cx, y1: M.top + 12, y2: y(0) }),
      svg("text", { x: cx, y: M.top + 9, "text-anchor": "middle", text: session.label })));
  }

  if (points.length > 1) {
    chart.append(svg("polyline", { class: "score-line",
      points: points.map((p) => `${x(p.at).toFixed(1)},${y(p.total).toFixed(1)}`).join(" ") }));
  }
  for (const p of points) {
    const group = svg("g", { class: `score${p.urgent ? " urgent" : ""}` },
      svg("title", { text: `${instrument} ${p.total}, ${bandOf(instrument, p.total)}, `
        + `${shortDate(p.at, zone)}${p.urgent ? ", item 9 above 0" : ""}` }),
      svg("circle", { cx: x(p.at), cy: y(p.total), r: p.urgent ? 7 : 5 }),
      svg("text", { class: "score-value", x: x(p.at), y: y(p.total) - 10, "text-anchor": "middle",
        text: String(p.total) }));
    chart.append(group);
  }
  return chart;
}

/** The course section's content for one patient. */
export function renderCourse({ patient, scores, sessions, zone, now }) {
  const wrap = el("div", { class: "course-content", "data-patient-id": patient.id });
  wrap.append(el("h3", { text: `${patient.first_name} ${patient.last_name}` }));
  const all = [...scores["PHQ-9"], ...scores["GAD-7"]];
  if (all.length === 0) {
    wrap.append(el("p", { class: "muted", text: "No PHQ-9 or GAD-7 scores recorded yet." }));
  }
  for (const instrument of ["PHQ-9", "GAD-7"]) {
    const rows = scores[instrument];
    const figure = el("figure", { class: "chart-figure" });
    figure.append(el("figcaption", { text: instrument }));
    if (rows.length === 0) {
      figure.append(el("p", { class: "muted", text: `No ${instrument} scores yet.` }));
    } else {
      figure.append(scoreChart(instrument, rows, sessions, zone, now));
    }
    wrap.append(figure);
  }
  wrap.append(el("p", { class: "chart-key" },
    el("span", { class: "key-series", "aria-hidden": "true", text: "1 2 3" }),
    document.createTextNode(" series sessions in order \u00b7 "),
    el("span", { class: "key-session", "aria-hidden": "true", text: "T" }),
    document.createTextNode(" other treatment sessions \u00b7 lighter: still planned")));

  const table = el("table", { class: "scores" });
  table.append(el("caption", { text: "Scores and sessions" }),
    el("thead", {}, el("tr", {}, ...["Date", "What", "Score", "Band"].map((h) => el("th", { scope: "col", text: h })))));
  const body = el("tbody");
  const rows = [
    ...all.map((s) => ({ at: Date.parse(s.taken_at), what: s.instrument, score: String(s.total),
      band: bandOf(s.instrument, s.total) + (s.urgent ? " (item 9 above 0)" : "") })),
    ...sessions.map((s) => ({ at: s.at, what: s.title, score: "", band: "" })),
  ].sort((a, b) => a.at - b.at);
  for (const row of rows) {
    body.append(el("tr", {}, el("td", { text: shortDate(row.at, zone) }), el("td", { text: row.what }),
      el("td", { text: row.score }), el("td", { text: row.band })));
  }
  table.append(body);
  wrap.append(el("details", {}, el("summary", { text: "Scores and sessions as a table" }), table));
  return wrap;
}
