// Ops console: polls /console/summary with the user's key and draws tables and an SVG bar chart (no CDN).
"use strict";

const REFRESH_MS = 5000;
const COLOURS = { S2A: "#2f6fdf", S2B: "#e07a1f", S2C: "#2e9d5b", unknown: "#8a8f99" };
const SOURCE_COLOURS = { search: "#2f6fdf", subscription: "#e07a1f", stac: "#2e9d5b" };
const SVG = "http://www.w3.org/2000/svg";

// The key travels in the URL fragment (#token=…), which browsers never send to the server, so it is never logged.
function takeKeyFromFragment() {
  const match = location.hash.match(/token=([^&]+)/);
  if (match) {
    sessionStorage.setItem("gatewayKey", decodeURIComponent(match[1]));
    history.replaceState(null, "", location.pathname);
  }
  return sessionStorage.getItem("gatewayKey");
}

function cell(row, text, className) {
  const td = row.insertCell();
  td.textContent = text === null || text === undefined ? "" : String(text);
  if (className) td.className = className;
  return td;
}

function fill(tableId, rows, render, emptyText) {
  const body = document.querySelector(`#${tableId} tbody`);
  body.replaceChildren();
  if (!rows.length) {
    const row = body.insertRow();
    const td = cell(row, emptyText, "muted");
    td.colSpan = document.querySelectorAll(`#${tableId} thead th`).length;
    return;
  }
  rows.forEach((item) => render(body.insertRow(), item));
}

function drawStreams(streams) {
  fill("streams", streams, (row, stream) => {
    cell(row, stream.name);
    cell(row, stream.length, "number");
    cell(row, stream.last_entry_id || "—");
    const groups = stream.groups.map((g) => `${g.name}: ${g.pending} / ${g.lag === null ? "?" : g.lag}`);
    cell(row, groups.join(", ") || "—", stream.groups.some((g) => g.lag > 0) ? "bad" : "");
  }, "no streams visible");
}

function drawDeliveries(summary) {
  if (summary.database !== "ok") {
    const note = summary.database === "absent" ? "no database configured (DATABASE_URL)" : summary.database;
    fill("deliveries", [], null, note);
    fill("problems", [], null, note);
    fill("freshness", [], null, note);
    fill("lifecycle", [], null, note);
    return;
  }
  // Deletions (announced; remembered: never recorded) and reprocessings (replaced: earlier ones deleted), per day.
  const byDay = {};
  for (const row of summary.lifecycle.deleted.concat(summary.lifecycle.reprocessed)) {
    byDay[row.day] = Object.assign(byDay[row.day] || {}, row);
  }
  fill("lifecycle", Object.keys(byDay).sort().reverse().map((day) => byDay[day]), (row, counts) => {
    cell(row, counts.day);
    for (const key of ["announced", "remembered", "reprocessed", "replaced"]) cell(row, counts[key] || 0, "number");
  }, "no deletions or reprocessings in the last 30 days");
  const sinks = Object.entries(summary.deliveries.by_sink);
  fill("deliveries", sinks, (row, [sink, counts]) => {
    cell(row, sink);
    cell(row, counts.pending, "number");
    cell(row, counts.sent, "number");
    cell(row, counts.failed, counts.failed ? "number bad" : "number");
    cell(row, counts.pending ? duration(counts.oldest_pending_seconds) : "", "number");
  }, "no deliveries recorded");
  fill("freshness", Object.entries(summary.freshness.last_24h), (row, [source, figures]) => {
    cell(row, source);
    cell(row, figures.count, "number");
    cell(row, duration(figures.p50_seconds), "number");
    cell(row, duration(figures.p95_seconds), "number");
    cell(row, duration(figures.max_seconds), "number");
    cell(row, duration(figures.recording.p95_seconds), "number");
    cell(row, duration(figures.relaying.p95_seconds), "number");
    cell(row, figures.undelivered, figures.undelivered ? "number bad" : "number");
  }, "nothing recorded in the last 24 h");
  const problems = summary.deliveries.oldest_failed.concat(summary.deliveries.oldest_pending);
  fill("problems", problems, (row, delivery) => {
    cell(row, delivery.filename || delivery.id);
    cell(row, delivery.sink);
    cell(row, delivery.status, delivery.status === "failed" ? "bad" : "");
    cell(row, delivery.attempts, "number");
    cell(row, delivery.last_error || "");
  }, "nothing pending or failed");
}

// 42 s, 12.5 min, 3.2 h, 2.1 d (as `link-fetcher status` prints them); empty when there is nothing to measure.
function duration(seconds) {
  if (seconds === null || seconds === undefined) return "";
  for (const [unit, size] of [["d", 86400], ["h", 3600], ["min", 60]]) {
    if (Math.abs(seconds) >= size) return `${(seconds / size).toFixed(1)} ${unit}`;
  }
  return `${Math.round(seconds)} s`;
}

function svgElement(name, attributes, parent) {
  const element = document.createElementNS(SVG, name);
  Object.entries(attributes).forEach(([key, value]) => element.setAttribute(key, value));
  parent.appendChild(element);
  return element;
}

// The frame both charts share: the SVG, the baseline, three value ticks (0, half, top) and a label every
// fifth day. Returns the SVG and the geometry the bars are drawn in.
function chartFrame(chart, { height, left, label, top, tick, days }) {
  const width = 900, bottom = 40, plotHeight = height - bottom - 10;
  const slot = (width - left - 10) / days.length;
  chart.replaceChildren();
  chart.className = "";
  const svg = svgElement("svg", { viewBox: `0 0 ${width} ${height}`, role: "img", "aria-label": label }, chart);
  svgElement("line", { x1: left, y1: 10 + plotHeight, x2: width - 10, y2: 10 + plotHeight, stroke: "#99a" }, svg);
  [0, 0.5, 1].forEach((fraction) => {
    const y = 10 + plotHeight * (1 - fraction);
    svgElement("text", { x: left - 6, y: y + 4, "text-anchor": "end", "font-size": 11, fill: "#667" }, svg)
      .textContent = tick(top * fraction);
  });
  days.forEach((day, i) => {
    if (i % 5 === 0 || i === days.length - 1) {
      svgElement("text", { x: left + i * slot + slot / 2, y: height - 18, "text-anchor": "middle", "font-size": 11, fill: "#667" }, svg)
        .textContent = day.slice(5);
    }
  });
  return { svg, plotHeight, slot };
}

function legendItem(legend, colour, text) {
  const item = document.createElement("span");
  const swatch = document.createElement("i");
  swatch.style.background = colour;
  item.append(swatch, text);
  legend.appendChild(item);
}

// Stacked bars: one bar per day, one segment per platform.
function drawChart(recorded) {
  const chart = document.getElementById("chart");
  const legend = document.getElementById("legend");
  if (!recorded) {
    chart.textContent = "no database configured";
    legend.replaceChildren();
    return;
  }
  const platforms = Object.keys(recorded.platforms);
  const days = recorded.days;
  const totals = days.map((_, i) => platforms.reduce((sum, p) => sum + recorded.platforms[p][i], 0));
  const top = Math.max(1, ...totals);
  const left = 48;
  const { svg, plotHeight, slot } = chartFrame(chart, {
    height: 260, left, label: "granules per day", top, tick: (value) => Math.round(value), days,
  });
  days.forEach((day, i) => {
    let base = 10 + plotHeight;
    platforms.forEach((platform) => {
      const count = recorded.platforms[platform][i];
      if (!count) return;
      const barHeight = (count / top) * plotHeight;
      base -= barHeight;
      const bar = svgElement("rect", {
        class: "bar", x: left + i * slot + 2, y: base, width: Math.max(1, slot - 4), height: barHeight,
        fill: COLOURS[platform] || COLOURS.unknown, "data-day": day, "data-platform": platform, "data-count": count,
      }, svg);
      svgElement("title", {}, bar).textContent = `${day} ${platform}: ${count}`;
    });
  });
  legend.replaceChildren();
  platforms.forEach((platform) => {
    const total = recorded.platforms[platform].reduce((a, b) => a + b, 0);
    legendItem(legend, COLOURS[platform] || COLOURS.unknown, `${platform} (${total})`);
  });
}

// Grouped bars: one group per day with a p95 bar per source (its title gives count, p50, p95 and max).
function drawFreshness(freshness, days) {
  const chart = document.getElementById("freshness-chart");
  const legend = document.getElementById("freshness-legend");
  legend.replaceChildren();
  if (!freshness || !freshness.per_day.length) {
    chart.textContent = freshness ? "nothing delivered in these days" : "no database configured";
    chart.className = "muted";
    return;
  }
  const sources = [...new Set(freshness.per_day.map((d) => d.source))].sort();
  const top = Math.max(1, ...freshness.per_day.map((d) => d.p95_seconds || 0));
  const left = 64;
  const { svg, plotHeight, slot } = chartFrame(chart, {
    height: 220, left, label: "p95 freshness per day", top, tick: (value) => duration(value) || "0", days,
  });
  const barWidth = Math.max(1, (slot - 4) / sources.length);
  freshness.per_day.forEach((d) => {
    const i = days.indexOf(d.day);
    if (i < 0 || d.p95_seconds === null) return;
    const barHeight = (d.p95_seconds / top) * plotHeight;
    const bar = svgElement("rect", {
      class: "fresh", x: left + i * slot + 2 + sources.indexOf(d.source) * barWidth, y: 10 + plotHeight - barHeight,
      width: barWidth, height: barHeight, fill: SOURCE_COLOURS[d.source] || COLOURS.unknown,
      "data-day": d.day, "data-source": d.source, "data-p95": d.p95_seconds,
    }, svg);
    svgElement("title", {}, bar).textContent =
      `${d.day} ${d.source}: ${d.count} delivered, p50 ${duration(d.p50_seconds)}, p95 ${duration(d.p95_seconds)}, max ${duration(d.max_seconds)}`;
  });
  sources.forEach((source) => legendItem(legend, SOURCE_COLOURS[source] || COLOURS.unknown, source));
}

async function refresh() {
  const key = sessionStorage.getItem("gatewayKey");
  const status = document.getElementById("status");
  const form = document.getElementById("key-form");
  if (!key) {
    form.hidden = false;
    status.textContent = "give a read key to see the streams";
    return;
  }
  try {
    const response = await fetch("/console/summary", { headers: { Authorization: `Bearer ${key}` } });
    const body = await response.json();
    if (response.status === 401 || response.status === 403) {
      sessionStorage.removeItem("gatewayKey");
      form.hidden = false;
      status.textContent = body.error;
      status.className = "bad";
      return;
    }
    if (!response.ok) throw new Error(body.error || response.statusText);
    form.hidden = true;
    drawStreams(body.streams);
    drawDeliveries(body);
    drawChart(body.database === "ok" ? body.recorded : null);
    drawFreshness(body.database === "ok" ? body.freshness : null, body.database === "ok" ? body.recorded.days : []);
    status.textContent = `updated ${new Date().toISOString().slice(11, 19)} UTC · database: ${body.database}`;
    status.className = "muted";
    document.body.dataset.loaded = "true";
  } catch (error) {
    status.textContent = `refresh failed: ${error.message}`;
    status.className = "bad";
  }
}

document.getElementById("key-form").addEventListener("submit", (event) => {
  event.preventDefault();
  sessionStorage.setItem("gatewayKey", document.getElementById("key-input").value.trim());
  refresh();
});
takeKeyFromFragment();
refresh();
setInterval(refresh, REFRESH_MS);
