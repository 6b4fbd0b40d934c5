// The admin dashboard: polls the admin API's JSON endpoints once a second and
// redraws the tables and two charts (request rate, request time) without a reload.
// Plain browser JavaScript: no library, nothing fetched from elsewhere.
"use strict";

const POLL_MS = 1000;          // how often the stats are read (they are cheap to sum)
const HISTORY_POINTS = 60;     // one minute of points on the charts
const CHART_PADDING = { left: 48, right: 10, top: 10, bottom: 22 };  // px for the axes

const series = { rate: [], connections: [], mean: [], p99: [] };
let previous = null;  // the last stats sample: {time, stats, histograms}

function el(tag, text, className) {
  const node = document.createElement(tag);
  if (text !== undefined) node.textContent = String(text);
  if (className) node.className = className;
  return node;
}

function fill(tableId, rows) {
  const body = document.querySelector(`#${tableId} tbody`);
  body.replaceChildren(...rows.map((cells) => {
    const tr = el("tr");
    for (const cell of cells) tr.append(cell instanceof Node ? cell : el("td", cell));
    return tr;
  }));
}

function num(value) {
  return el("td", value, "num");
}

function delta(name, stats) {
  if (!previous || previous.stats[name] === undefined) return 0;
  return Math.max(0, (stats[name] || 0) - previous.stats[name]);
}

function perSecond(name, stats, seconds) {
  return seconds > 0 ? delta(name, stats) / seconds : 0;
}

// The q quantile of cumulative [bound, count] buckets, linear within a bucket
// (as the admin API's /stats and Prometheus' histogram_quantile estimate it).
function quantile(buckets, q) {
  const total = buckets[buckets.length - 1][1];
  if (!total) return null;
  const rank = q * total;
  let lower = 0;
  let below = 0;
  for (const [bound, count] of buckets) {
    if (count >= rank) {
      if (bound === null) return lower;
      const inside = count - below;
      return lower + (bound - lower) * (inside ? (rank - below) / inside : 1);
    }
    lower = bound;
    below = count;
  }
  return lower;
}

// Request time over the last interval, over every listener: the difference of the
// summed histograms between two samples.
function intervalLatency(listeners, histograms) {
  let count = 0;
  let sum = 0;
  let buckets = null;
  for (const listener of listeners) {
    const name = `listener.${listener.name}.downstream_rq_time`;
    const now = histograms[name];
    const before = previous && previous.histograms[name];
    if (!now || !before) continue;
    count += now.count - before.count;
    sum += now.sum_ms - before.sum_ms;
    const diff = now.buckets.map(([bound, c], i) => [bound, c - before.buckets[i][1]]);
    buckets = buckets ? buckets.map(([bound, c], i) => [bound, c + diff[i][1]]) : diff;
  }
  if (!count) return { mean: null, p99: null };
  return { mean: sum / count, p99: quantile(buckets, 0.99) };
}

function push(points, value) {
  points.push(value);
  if (points.length > HISTORY_POINTS) points.shift();
}

function niceCeiling(value) {
  if (value <= 0) return 1;
  const step = 10 ** Math.floor(Math.log10(value));
  for (const m of [1, 2, 5, 10]) if (m * step >= value) return m * step;
  return 10 * step;
}

function drawChart(canvas, lines) {
  const ratio = window.devicePixelRatio || 1;
  const width = canvas.clientWidth;
  const height = canvas.clientHeight;
  canvas.width = Math.round(width * ratio);
  canvas.height = Math.round(height * ratio);
  const ctx = canvas.getContext("2d");
  ctx.setTransform(ratio, 0, 0, ratio, 0, 0);
  ctx.clearRect(0, 0, width, height);
  const p = CHART_PADDING;
  const w = width - p.left - p.right;
  const h = height - p.top - p.bottom;
  const values = lines.flatMap((line) => line.values.filter((v) => v !== null));
  const top = niceCeiling(Math.max(0, ...values));
  ctx.font = "11px system-ui, sans-serif";
  ctx.fillStyle = "#6b7785";
  ctx.strokeStyle = "#dde3ea";
  ctx.lineWidth = 1;
  for (let i = 0; i <= 4; i++) {
    const y = p.top + h - (h * i) / 4;
    ctx.beginPath();
    ctx.moveTo(p.left, y);
    ctx.lineTo(p.left + w, y);
    ctx.stroke();
    ctx.textAlign = "right";
    ctx.fillText(String(+((top * i) / 4).toPrecision(3)), p.left - 6, y + 4);
  }
  ctx.textAlign = "left";
  ctx.fillText(`-${HISTORY_POINTS}s`, p.left, height - 6);
  ctx.textAlign = "right";
  ctx.fillText("now", p.left + w, height - 6);
  const x = (i) => p.left + (w * i) / (HISTORY_POINTS - 1);
  const y = (v) => p.top + h - (h * v) / top;
  ctx.lineWidth = 2;
  for (const line of lines) {
    ctx.strokeStyle = line.color;
    ctx.beginPath();
    const offset = HISTORY_POINTS - line.values.length;
    let drawing = false;
    line.values.forEach((v, i) => {
      if (v === null) { drawing = false; return; }
      if (drawing) ctx.lineTo(x(offset + i), y(v));
      else ctx.moveTo(x(offset + i), y(v));
      drawing = true;
    });
    ctx.stroke();
  }
}

function color(name) {
  return getComputedStyle(document.documentElement).getPropertyValue(name).trim();
}

function render(listeners, clusters, stats, histograms, seconds) {
  let rate = 0;
  let connections = 0;
  fill("listeners", listeners.map((l) => {
    const prefix = `listener.${l.name}.`;
    const rps = perSecond(prefix + "downstream_rq_total", stats, seconds);
    rate += rps;
    connections += perSecond(prefix + "downstream_cx_total", stats, seconds);
    return [l.name, l.address, l.filters.join(", "), num(stats[prefix + "downstream_cx_active"] ?? 0),
            num(stats[prefix + "downstream_rq_total"] ?? 0), num(rps.toFixed(1)),
            num(stats[prefix + "downstream_rq_2xx"] ?? 0), num(stats[prefix + "downstream_rq_4xx"] ?? 0),
            num(stats[prefix + "downstream_rq_5xx"] ?? 0)];
  }));
  fill("clusters", clusters.map((c) => {
    const prefix = `cluster.${c.name}.`;
    const healthy = c.hosts.filter((h) => h.healthy).length;
    return [c.name, c.type, c.lb_type, num(`${healthy} / ${c.hosts.length}`),
            num(stats[prefix + "upstream_rq_total"] ?? 0),
            num(perSecond(prefix + "upstream_rq_total", stats, seconds).toFixed(1)),
            num(stats[prefix + "upstream_rq_5xx"] ?? 0), num(stats[prefix + "upstream_rq_retry"] ?? 0),
            num(stats[prefix + "upstream_rq_timeout"] ?? 0)];
  }));
  fill("hosts", clusters.flatMap((c) => c.hosts.map((h) => {
    const health = h.healthy ? "healthy" : `unhealthy (${h.health_flags.join(", ")})`;
    return [c.name, h.address, el("td", health, h.healthy ? "healthy" : "unhealthy"),
            num(h.active_requests), num(h.rq_total), num(h.rq_error), num(h.cx_active),
            num(h.ejections)];
  })));
  const latency = intervalLatency(listeners, histograms);
  if (previous) {
    push(series.rate, rate);
    push(series.connections, connections);
    push(series.mean, latency.mean);
    push(series.p99, latency.p99);
  }
  document.getElementById("rate").textContent = rate.toFixed(1);
  document.getElementById("latency").textContent = latency.mean === null ? "–"
    : `mean ${latency.mean.toFixed(2)} · p99 ${latency.p99.toFixed(2)}`;
  drawChart(document.getElementById("rate-chart"),
            [{ values: series.rate, color: color("--rate") },
             { values: series.connections, color: color("--cx") }]);
  drawChart(document.getElementById("latency-chart"),
            [{ values: series.mean, color: color("--mean") },
             { values: series.p99, color: color("--p99") }]);
}

async function getJSON(path) {
  const response = await fetch(path, { cache: "no-store" });
  if (!response.ok) throw new Error(`${path}: ${response.status}`);
  return response.json();
}

async function tick() {
  const status = document.getElementById("status");
  try {
    const [listeners, clusters, body] = await Promise.all(
      [getJSON("/listeners"), getJSON("/clusters"), getJSON("/stats?format=json")]);
    const time = performance.now();
    const seconds = previous ? (time - previous.time) / 1000 : 0;
    render(listeners.listeners, clusters.clusters, body.stats, body.histograms, seconds);
    previous = { time, stats: body.stats, histograms: body.histograms };
    status.textContent = `updated ${new Date().toLocaleTimeString()}`;
    status.className = "";
  } catch (error) {
    // mosn restarting or gone: say so on the page and keep trying
    status.textContent = `cannot read the admin API: ${error.message}`;
    status.className = "error";
  }
  setTimeout(tick, POLL_MS);
}

tick();
