// The selected vehicle: key figures and a speed/SOC chart from the updates the page has
// seen, and its recent trips, charging sessions and events from REST (reloaded when one
// of its fleet events arrives).

import { api } from "./api.js";
import { ago, chargeState, clock, duration, fmt, gear, num, parseTime, position, soc, speed, stateOf } from "./model.js";
import { describe } from "./feed.js";

const SVG = "http://www.w3.org/2000/svg";
const RELOAD_DEBOUNCE_MS = 800;
const GAP_MS = 10000;

export function esc(s) {
  return String(s).replace(/[&<>"]/g, (c) => ({ "&": "&amp;", "<": "&lt;", ">": "&gt;", '"': "&quot;" })[c]);
}

function formatSignal(x) {
  if (x === null) return "unavailable";  // Tesla's `invalid`
  if (x && typeof x === "object") {
    if (typeof x.latitude === "number") return x.latitude.toFixed(5) + ", " + x.longitude.toFixed(5);
    return Object.entries(x).map(([k, v]) => k + " " + formatSignal(v)).join(", ");
  }
  if (typeof x === "number") return Number.isInteger(x) ? String(x) : fmt(x, Math.abs(x) < 100 ? 2 : 1);
  return String(x);
}

export class Detail {
  /** `onClose()` clears the selection. */
  constructor(box, onClose) {
    this.box = box;
    this.onClose = onClose;
    this.v = null;
    this.generation = 0;
    this.reloadTimer = null;
    this.rest = null;
  }

  /** Shows `v` (or the placeholder for null) and loads its history from REST. */
  show(v) {
    this.v = v;
    this.generation++;
    clearTimeout(this.reloadTimer);
    this.rest = null;
    if (!v) {
      this.box.innerHTML = '<p class="muted placeholder">Select a vehicle on the map, in the list or in the event feed.</p>';
      this.parts = null;
      return;
    }
    this.box.innerHTML = `
      <div class="detail-head"><span class="dot"></span><h3></h3><span class="state muted"></span>
        <button type="button" class="close" aria-label="Close vehicle details">✕</button></div>
      <dl class="figures" data-testid="detail-figures"></dl>
      <figure class="chart"><figcaption>Speed <span class="key speed"></span> and SOC <span class="key soc"></span>
        over the updates seen</figcaption><svg role="img" data-testid="detail-chart"></svg></figure>
      <h4>Trips</h4><div class="rest" data-testid="detail-trips" data-loaded="false"><p class="muted">loading…</p></div>
      <h4>Charging sessions</h4><div class="rest" data-testid="detail-charging" data-loaded="false"><p class="muted">loading…</p></div>
      <h4>Events</h4><div class="rest" data-testid="detail-events" data-loaded="false"><p class="muted">loading…</p></div>
      <details><summary>All signals</summary><dl class="signals"></dl></details>`;
    const q = (s) => this.box.querySelector(s);
    q("h3").textContent = v.id;
    q(".close").addEventListener("click", () => this.onClose());
    this.parts = { dot: q(".dot"), state: q(".state"), figures: q(".figures"), svg: q("svg"), signals: q(".signals"),
      trips: q("[data-testid=detail-trips]"), charging: q("[data-testid=detail-charging]"),
      events: q("[data-testid=detail-events]"), shown: {} };
    this.load();
  }

  /** A fleet event for the selected vehicle: its trips/sessions/events changed. */
  eventFor(vehicleId) {
    if (!this.v || this.v.id !== vehicleId) return;
    clearTimeout(this.reloadTimer);
    this.reloadTimer = setTimeout(() => this.load(), RELOAD_DEBOUNCE_MS);
  }

  async load() {
    const v = this.v, generation = this.generation, id = encodeURIComponent(v.id);
    const get = (what) => api("/v1/vehicles/" + id + "/" + what).then((body) => ({ body }), (error) => ({ error }));
    const [trips, charging, events] = await Promise.all([get("trips"), get("charging-sessions"), get("events")]);
    if (generation !== this.generation) return;
    this.rest = { events: events.body };
    this.fill(this.parts.trips, trips, (b) => this.tripsHtml(b));
    this.fill(this.parts.charging, charging, (b) => this.sessionsHtml(b));
    this.fill(this.parts.events, events, (b) => this.eventsHtml(b));
    this.render(Date.now());
  }

  fill(el, { body, error }, html) {
    if (error) {
      // Keep what was shown; say why it is not fresh (e.g. the server is restarting).
      el.dataset.error = error.message;
      if (el.dataset.loaded !== "true") el.innerHTML = '<p class="muted">not available: ' + esc(error.message) + "</p>";
      return;
    }
    delete el.dataset.error;
    el.innerHTML = html(body);
    el.dataset.loaded = "true";
  }

  tripsHtml(b) {
    const rows = [];
    if (b.open) {
      rows.push(`<tr class="open"><td>${esc(clock(parseTime(b.open.started_at)))}</td><td>driving</td>` +
        `<td class="num">${fmt(b.open.distance_m / 1000, 1)} km</td><td class="num">–</td><td class="num">${fmt(b.open.max_speed_kmh)}</td></tr>`);
    }
    for (const t of b.trips.slice(0, 8)) {
      rows.push(`<tr><td>${esc(clock(parseTime(t.started_at)))}</td><td>${esc(duration(t.duration_secs))}</td>` +
        `<td class="num">${fmt(t.distance_m / 1000, 1)} km</td><td class="num">${Number.isFinite(t.soc_used) ? fmt(t.soc_used, 1) + " %" : "–"}</td>` +
        `<td class="num">${fmt(t.max_speed_kmh)}</td></tr>`);
    }
    if (!rows.length) return '<p class="muted">No trips yet.</p>';
    return '<table class="mini"><thead><tr><th scope="col">Start</th><th scope="col">Duration</th><th scope="col" class="num">Distance</th>' +
      '<th scope="col" class="num">SOC used</th><th scope="col" class="num">Max km/h</th></tr></thead><tbody>' + rows.join("") + "</tbody></table>";
  }

  sessionsHtml(b) {
    const rows = [];
    if (b.open) {
      rows.push(`<tr class="open"><td>${esc(clock(parseTime(b.open.started_at)))}</td><td>charging</td>` +
        `<td class="num">${Number.isFinite(b.open.start_soc) ? fmt(b.open.start_soc) + " % →" : "–"}</td><td class="num">${fmt(b.open.max_power_kw)} kW</td></tr>`);
    }
    for (const s of b.charging_sessions.slice(0, 6)) {
      rows.push(`<tr><td>${esc(clock(parseTime(s.started_at)))}</td><td>${esc(duration(s.duration_secs))}</td>` +
        `<td class="num">${Number.isFinite(s.soc_added) ? "+" + fmt(s.soc_added, 1) + " %" : "–"}</td><td class="num">${fmt(s.energy_added_kwh, 1)} kWh</td></tr>`);
    }
    if (!rows.length) return '<p class="muted">No charging sessions yet.</p>';
    return '<table class="mini"><thead><tr><th scope="col">Start</th><th scope="col">Duration</th><th scope="col" class="num">SOC</th>' +
      '<th scope="col" class="num">Energy / power</th></tr></thead><tbody>' + rows.join("") + "</tbody></table>";
  }

  eventsHtml(b) {
    if (!b.events.length) return '<p class="muted">No events yet.</p>';
    return '<ul class="mini-events">' + b.events.slice(0, 8).map((e) => {
      const [category, text] = describe(e);
      return `<li class="feed-${category}"><time>${esc(clock(parseTime(e.at)))}</time> ${esc(text)}</li>`;
    }).join("") + "</ul>";
  }

  /** Refreshes the live parts (figures, chart, signals); called on every render. */
  render(now) {
    const v = this.v, p = this.parts;
    if (!v || !p) return;
    const state = stateOf(v, now);
    p.dot.className = "dot " + state;
    p.state.textContent = state;
    const pos = position(v), ev = this.rest && this.rest.events;
    const figures = [
      ["SOC", Number.isFinite(soc(v)) ? fmt(soc(v), 1) + " %" : "–"],
      ["Speed", Number.isFinite(speed(v)) ? fmt(speed(v)) + " km/h" : "–"],
      ["Gear", gear(v) || "–"],
      ["Charge state", chargeState(v) || "–"],
      ["Range", Number.isFinite(num(v, "EstBatteryRange")) ? fmt(num(v, "EstBatteryRange")) + " km" : "–"],
      ["Odometer", Number.isFinite(num(v, "Odometer")) ? fmt(num(v, "Odometer")) + " km" : "–"],
      ["Position", pos ? pos.latitude.toFixed(5) + ", " + pos.longitude.toFixed(5) : "–"],
      ["In geofences", ev ? (ev.geofences.join(", ") || "none") : "…"],
      ["Active alerts", ev ? (ev.active_alerts.join(", ") || "none") : "…"],
      // A reload after a `reset` marks versions -1 until the server's state arrives.
      ["Last seen", ago(now - v.lastSeen) + (v.version >= 0 ? " · version " + v.version : " · reloading")],
    ];
    const html = figures.map(([k, x]) => `<div><dt>${esc(k)}</dt><dd>${esc(x)}</dd></div>`).join("");
    if (p.shown.figures !== html) { p.shown.figures = html; p.figures.innerHTML = html; }
    this.chart(v.history);
    const names = Object.keys(v.signals).sort();
    const sig = names.map((n) => `<dt>${esc(n)}</dt><dd title="measured ${esc(v.signals[n].timestamp || "")}">${esc(formatSignal(v.signals[n].value))}</dd>`).join("");
    if (p.shown.signals !== sig) { p.shown.signals = sig; p.signals.innerHTML = sig; }
  }

  /** Speed (left axis, km/h) and SOC (right axis, 0–100 %) against time. */
  chart(history) {
    const svg = this.parts.svg, W = 360, H = 120, L = 30, R = 30, T = 8, B = 18;
    const key = history.length + ":" + (history.length ? history[history.length - 1].t : 0);
    if (this.parts.shown.chart === key) return;
    this.parts.shown.chart = key;
    svg.setAttribute("viewBox", `0 0 ${W} ${H}`);
    svg.textContent = "";
    const el = (name, attrs, text) => {
      const e = document.createElementNS(SVG, name);
      for (const [k, x] of Object.entries(attrs)) e.setAttribute(k, x);
      if (text !== undefined) e.textContent = text;
      svg.appendChild(e);
      return e;
    };
    const pts = history.filter((h) => Number.isFinite(h.t));
    if (pts.length < 2) {
      el("text", { x: W / 2, y: H / 2, "text-anchor": "middle", class: "axis" }, "waiting for updates…");
      svg.setAttribute("aria-label", "No updates yet");
      return;
    }
    const t0 = pts[0].t, t1 = pts[pts.length - 1].t;
    let vmax = 10;
    for (const h of pts) if (Number.isFinite(h.speed)) vmax = Math.max(vmax, h.speed);
    vmax = Math.ceil(vmax / 20) * 20;
    const x = (t) => L + ((t - t0) / (t1 - t0 || 1)) * (W - L - R);
    const ys = (s) => T + (1 - s / vmax) * (H - T - B), yc = (c) => T + (1 - c / 100) * (H - T - B);
    for (const f of [0, 0.5, 1]) {
      const y = T + f * (H - T - B);
      el("line", { x1: L, x2: W - R, y1: y, y2: y, class: "gridline" });
      el("text", { x: L - 4, y: y + 3, "text-anchor": "end", class: "axis speed" }, fmt(vmax * (1 - f)));
      el("text", { x: W - R + 4, y: y + 3, class: "axis soc" }, fmt(100 * (1 - f)) + "%");
    }
    el("text", { x: L, y: H - 4, class: "axis" }, clock(t0));
    el("text", { x: W - R, y: H - 4, "text-anchor": "end", class: "axis" }, clock(t1));
    // A gap of more than GAP_MS without updates (e.g. the server restarting) breaks the line.
    const line = (get, y, cls) => {
      let run = [], prev = -Infinity;
      const flush = () => { if (run.length) el("polyline", { points: run.join(" "), class: "series " + cls }); run = []; };
      for (const h of pts) {
        if (!Number.isFinite(get(h))) continue;
        if (h.t - prev > GAP_MS) flush();
        run.push(x(h.t).toFixed(1) + "," + y(get(h)).toFixed(1));
        prev = h.t;
      }
      flush();
    };
    line((h) => h.speed, ys, "speed");
    line((h) => h.soc, yc, "soc");
    const last = pts[pts.length - 1];
    svg.setAttribute("aria-label", `Speed and SOC over ${duration((t1 - t0) / 1000)}: now ${fmt(last.speed)} km/h, ${fmt(last.soc, 1)} %`);
  }
}
