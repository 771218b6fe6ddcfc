// The fleet map: an equirectangular projection (longitude scaled by the cosine of the
// view's middle latitude, so distances look right at city scale) on a canvas, fitted to
// the fleet and its geofences, over a graticule. No tiles, nothing from the network.

import { position, stateOf, speed, soc, fmt } from "./model.js";

const COLOR_KEYS = ["driving", "charging", "parked", "offline", "grid", "grid-major", "fg", "muted", "bg", "fence", "panel"];
/** Graticule steps, degrees. */
const STEPS = [0.001, 0.002, 0.005, 0.01, 0.02, 0.05, 0.1, 0.2, 0.5, 1, 2, 5, 10, 15, 30];
const M_PER_DEG = 111320;

export class FleetMap {
  /** `onSelect(vehicle)` is called when a vehicle is clicked. */
  constructor(canvas, tip, onSelect) {
    this.canvas = canvas;
    this.ctx = canvas.getContext("2d");
    this.tip = tip;
    this.onSelect = onSelect;
    this.colors = {};
    this.view = null;
    this.screen = [];
    this.hovered = null;
    this.onHover = () => {};
    this.readColors();
    matchMedia("(prefers-color-scheme: dark)").addEventListener("change", () => this.readColors());
    canvas.addEventListener("mousemove", (ev) => this.hover(ev));
    canvas.addEventListener("mouseleave", () => { this.tip.hidden = true; this.setHovered(null); });
    canvas.addEventListener("click", (ev) => { const { v } = this.nearest(ev); if (v) this.onSelect(v); });
  }

  readColors() {
    const css = getComputedStyle(document.documentElement);
    for (const k of COLOR_KEYS) this.colors[k] = css.getPropertyValue("--" + k).trim();
  }

  resize() {
    const dpr = window.devicePixelRatio || 1, r = this.canvas.getBoundingClientRect();
    const w = Math.max(1, Math.round(r.width * dpr)), h = Math.max(1, Math.round(r.height * dpr));
    if (this.canvas.width !== w || this.canvas.height !== h) { this.canvas.width = w; this.canvas.height = h; }
    return { w: r.width, h: r.height, dpr };
  }

  /**
   * The view follows the bounding box of the vehicles and geofences: it grows at once but
   * shrinks slowly, so one vehicle moving along the edge does not make the map jitter.
   */
  fit(vehicles, geofences) {
    let b = [Infinity, -Infinity, Infinity, -Infinity];
    const add = (lat, lon) => { b = [Math.min(b[0], lat), Math.max(b[1], lat), Math.min(b[2], lon), Math.max(b[3], lon)]; };
    for (const v of vehicles) { const p = position(v); if (p) add(p.latitude, p.longitude); }
    for (const g of geofences) {
      const s = g.shape;
      if (s.type === "circle") {
        const dLat = s.radius_m / M_PER_DEG, dLon = dLat / Math.cos(s.center.latitude * Math.PI / 180);
        add(s.center.latitude - dLat, s.center.longitude - dLon);
        add(s.center.latitude + dLat, s.center.longitude + dLon);
      } else if (s.type === "polygon") {
        for (const p of s.points) add(p.latitude, p.longitude);
      }
    }
    if (b[0] > b[1]) return;
    const padLat = Math.max((b[1] - b[0]) * 0.05, 0.002), padLon = Math.max((b[3] - b[2]) * 0.05, 0.003);
    const target = [b[0] - padLat, b[1] + padLat, b[2] - padLon, b[3] + padLon];
    if (!this.view) { this.view = target; return; }
    const ease = (cur, tgt, grow) => (grow ? tgt : cur + (tgt - cur) * 0.08);
    const v = this.view;
    this.view = [ease(v[0], target[0], target[0] < v[0]), ease(v[1], target[1], target[1] > v[1]),
      ease(v[2], target[2], target[2] < v[2]), ease(v[3], target[3], target[3] > v[3])];
  }

  /** Draws everything; `selected` gets a ring. */
  draw(vehicles, geofences, selected, now) {
    const { w, h, dpr } = this.resize(), ctx = this.ctx, c = this.colors;
    ctx.setTransform(dpr, 0, 0, dpr, 0, 0);
    ctx.fillStyle = c.bg;
    ctx.fillRect(0, 0, w, h);
    const list = Array.from(vehicles);
    this.fit(list, geofences);
    this.screen = [];
    if (!this.view) {
      ctx.fillStyle = c.muted;
      ctx.font = "13px system-ui, sans-serif";
      ctx.fillText(list.length ? "no positions yet" : "waiting for vehicles…", 16, 24);
      this.canvas.dataset.vehiclesDrawn = "0";
      return;
    }
    const [lat0, lat1, lon0, lon1] = this.view, cos = Math.cos(((lat0 + lat1) / 2) * Math.PI / 180);
    const k = Math.min(w / ((lon1 - lon0) * cos), h / (lat1 - lat0));
    const ox = (w - (lon1 - lon0) * cos * k) / 2, oy = (h - (lat1 - lat0) * k) / 2;
    const X = (lon) => ox + (lon - lon0) * cos * k, Y = (lat) => h - oy - (lat - lat0) * k;
    const P = { X, Y, k, cos, w, h };
    this.graticule(P);
    this.fences(geofences, P);

    // Trails first, then dots, so no trail covers a vehicle.
    ctx.lineCap = "round";
    ctx.lineWidth = 2;
    const states = new Map();
    for (const v of list) {
      const state = stateOf(v, now);
      states.set(v, state);
      const t = v.trail;
      if (t.length < 2 || state === "offline") continue;
      ctx.strokeStyle = c[state];
      for (let i = 1; i < t.length; i++) {
        ctx.globalAlpha = (i / t.length) * 0.45;
        ctx.beginPath();
        ctx.moveTo(X(t[i - 1][1]), Y(t[i - 1][0]));
        ctx.lineTo(X(t[i][1]), Y(t[i][0]));
        ctx.stroke();
      }
    }
    ctx.globalAlpha = 1;
    for (const [v, state] of states) {
      const p = position(v);
      if (!p) continue;
      const x = X(p.longitude), y = Y(p.latitude);
      this.screen.push([x, y, v]);
      ctx.fillStyle = c[state];
      ctx.strokeStyle = c.panel;
      ctx.lineWidth = 1;
      ctx.beginPath();
      ctx.arc(x, y, v === selected || v === this.hovered ? 6.5 : 4.5, 0, Math.PI * 2);
      ctx.fill();
      ctx.stroke();
      if (v === selected) {
        ctx.strokeStyle = c.fg;
        ctx.lineWidth = 2;
        ctx.beginPath();
        ctx.arc(x, y, 11, 0, Math.PI * 2);
        ctx.stroke();
      }
    }
    this.scaleBar(P);
    this.canvas.dataset.vehiclesDrawn = String(this.screen.length);
  }

  /** Parallels and meridians every `step` degrees (about six across), labelled at the edges. */
  graticule({ X, Y, w, h }) {
    const ctx = this.ctx, c = this.colors, [lat0, lat1, lon0, lon1] = this.view;
    const step = STEPS.find((s) => (lat1 - lat0) / s <= 6) || 30;
    const digits = Math.max(0, Math.ceil(-Math.log10(step)));
    ctx.lineWidth = 1;
    ctx.font = "10px system-ui, sans-serif";
    ctx.fillStyle = c.muted;
    const label = (x, hemis) => Math.abs(x).toFixed(digits) + "°" + hemis;
    for (let i = Math.ceil(lat0 / step); i * step <= lat1; i++) {
      const lat = i * step, y = Math.round(Y(lat)) + 0.5;
      if (y < 0 || y > h) continue;
      ctx.strokeStyle = c.grid;
      ctx.beginPath(); ctx.moveTo(0, y); ctx.lineTo(w, y); ctx.stroke();
      ctx.fillText(label(lat, lat >= 0 ? "N" : "S"), 4, y - 3);
    }
    for (let i = Math.ceil(lon0 / step); i * step <= lon1; i++) {
      const lon = i * step, x = Math.round(X(lon)) + 0.5;
      if (x < 0 || x > w) continue;
      ctx.strokeStyle = c.grid;
      ctx.beginPath(); ctx.moveTo(x, 0); ctx.lineTo(x, h); ctx.stroke();
      ctx.fillText(label(lon, lon >= 0 ? "E" : "W"), x + 3, 12);
    }
  }

  /** Geofences: translucent areas with a dashed outline and their name. */
  fences(geofences, { X, Y, k }) {
    const ctx = this.ctx, c = this.colors;
    ctx.font = "11px system-ui, sans-serif";
    for (const g of geofences) {
      const s = g.shape;
      ctx.beginPath();
      let lx, ly;
      if (s.type === "circle") {
        const x = X(s.center.longitude), y = Y(s.center.latitude), r = (s.radius_m / M_PER_DEG) * k;
        ctx.arc(x, y, r, 0, Math.PI * 2);
        lx = x; ly = y - r - 4;
      } else if (s.type === "polygon" && s.points.length) {
        s.points.forEach((p, i) => (i ? ctx.lineTo : ctx.moveTo).call(ctx, X(p.longitude), Y(p.latitude)));
        ctx.closePath();
        lx = s.points.reduce((a, p) => a + X(p.longitude), 0) / s.points.length;
        ly = Math.min(...s.points.map((p) => Y(p.latitude))) - 4;
      } else continue;
      ctx.fillStyle = c.fence;
      ctx.globalAlpha = 0.1;
      ctx.fill();
      ctx.globalAlpha = 0.8;
      ctx.setLineDash([6, 4]);
      ctx.strokeStyle = c.fence;
      ctx.lineWidth = 1.5;
      ctx.stroke();
      ctx.setLineDash([]);
      ctx.globalAlpha = 1;
      ctx.fillStyle = c.fence;
      ctx.textAlign = "center";
      ctx.fillText(g.name || g.id, lx, ly);
      ctx.textAlign = "left";
    }
  }

  scaleBar({ k, h }) {
    const ctx = this.ctx, pxPerKm = (k * 1000) / M_PER_DEG;
    const km = [0.05, 0.1, 0.2, 0.5, 1, 2, 5, 10, 20, 50, 100, 200, 500, 1000].find((s) => s * pxPerKm >= 60) || 1000;
    const bar = km * pxPerKm;
    ctx.strokeStyle = ctx.fillStyle = this.colors.muted;
    ctx.lineWidth = 2;
    ctx.beginPath();
    ctx.moveTo(12, h - 12); ctx.lineTo(12 + bar, h - 12);
    ctx.stroke();
    ctx.font = "11px system-ui, sans-serif";
    ctx.fillText(km < 1 ? km * 1000 + " m" : km + " km", 12, h - 18);
  }

  nearest(ev) {
    const r = this.canvas.getBoundingClientRect(), x = ev.clientX - r.left, y = ev.clientY - r.top;
    let best = null, bestD = 12 * 12;
    for (const [sx, sy, v] of this.screen) {
      const d = (sx - x) ** 2 + (sy - y) ** 2;
      if (d < bestD) { bestD = d; best = v; }
    }
    return { v: best, x, y };
  }

  setHovered(v) {
    if (v === this.hovered) return;
    this.hovered = v;
    this.onHover();
  }

  hover(ev) {
    const { v, x, y } = this.nearest(ev);
    this.canvas.classList.toggle("pointing", !!v);
    this.setHovered(v);
    if (!v) { this.tip.hidden = true; return; }
    const s = soc(v), sp = speed(v);
    this.tip.textContent = v.id + " · " + stateOf(v, Date.now()) + (Number.isFinite(sp) ? " · " + fmt(sp) + " km/h" : "") +
      (Number.isFinite(s) ? " · " + fmt(s) + " %" : "");
    this.tip.hidden = false;
    this.tip.style.left = this.canvas.offsetLeft + x + 12 + "px";
    this.tip.style.top = this.canvas.offsetTop + y + 12 + "px";
  }
}
