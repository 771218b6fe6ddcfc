// The page's model of the fleet: the latest state per vehicle (from REST snapshots and
// SSE updates, merged by version), its recent history, and the one rule that gives a
// vehicle its display state.

/** No record for this long: offline. */
export const OFFLINE_MS = 5 * 60 * 1000;
/** Without a gear signal, faster than this is driving (the trip machine's MOVING_KMH). */
export const MOVING_KMH = 2;
/** Updates kept per vehicle for its chart, and how far back. */
const HISTORY = 600, HISTORY_MS = 15 * 60 * 1000;
/** Positions kept per vehicle for its trail on the map. */
const TRAIL = 24;

export const STATES = ["driving", "charging", "parked", "offline"];

// Timestamps may carry nanoseconds; Date.parse is only specified for milliseconds.
export function parseTime(s) { return s ? Date.parse(String(s).replace(/(\.\d{3})\d+/, "$1")) : NaN; }
export function value(v, name) { const s = v.signals[name]; return s ? s.value : undefined; }
export function num(v, name) { const x = value(v, name); return typeof x === "number" ? x : NaN; }
export function position(v) {
  const x = value(v, "Location");
  return x && typeof x.latitude === "number" && typeof x.longitude === "number" ? x : null;
}
export function soc(v) { const s = num(v, "Soc"); return Number.isFinite(s) ? s : num(v, "BatteryLevel"); }
export function speed(v) { return num(v, "VehicleSpeed"); }
/** Gear as a letter (P, R, N, D) from Tesla's `ShiftStateD` or the simulator's `D`. */
export function gear(v) {
  const g = value(v, "Gear");
  if (typeof g !== "string") return null;
  const letter = g.replace(/^ShiftState/, "");
  return ["P", "R", "N", "D"].includes(letter) ? letter : null;
}
/** Charge state without its prefix: Charging, Starting, Complete, Stopped, Disconnected, … */
export function chargeState(v) {
  const c = value(v, "DetailedChargeState") ?? value(v, "ChargeState");
  return typeof c === "string" ? c.replace(/^(DetailedChargeState|ChargeState)/, "") : null;
}

/**
 * Display state, the same reading of the signals as the fleet machines
 * (actors/src/fleet/signals.rs, trips.rs):
 * offline: no record for OFFLINE_MS; charging: the charge state is Charging or Starting;
 * driving: the gear is R, N or D, or, without a gear, the speed is above MOVING_KMH;
 * parked: everything else.
 */
export function stateOf(v, now) {
  if (!(now - v.lastSeen < OFFLINE_MS)) return "offline";
  const c = chargeState(v);
  if (c === "Charging" || c === "Starting") return "charging";
  const g = gear(v);
  if (g) return g === "P" ? "parked" : "driving";
  return speed(v) > MOVING_KMH ? "driving" : "parked";
}

export function ago(ms) {
  if (!Number.isFinite(ms)) return "never";
  const s = Math.max(0, Math.round(ms / 1000));
  return s < 2 ? "now" : s < 60 ? s + " s ago" : s < 3600 ? Math.floor(s / 60) + " min ago"
    : s < 86400 ? Math.floor(s / 3600) + " h ago" : Math.floor(s / 86400) + " d ago";
}
export function fmt(x, digits = 0) {
  return Number.isFinite(x) ? x.toLocaleString(undefined, { minimumFractionDigits: digits, maximumFractionDigits: digits }) : "–";
}
export function clock(t) {
  return Number.isFinite(t) ? new Date(t).toLocaleTimeString(undefined, { hour: "2-digit", minute: "2-digit", second: "2-digit" }) : "–";
}
export function duration(secs) {
  if (!Number.isFinite(secs)) return "–";
  const m = Math.round(secs / 60);
  return m < 1 ? Math.round(secs) + " s" : m < 60 ? m + " min" : Math.floor(m / 60) + " h " + (m % 60) + " min";
}

/** The vehicles the page knows, by id. */
export class Fleet {
  constructor() {
    this.vehicles = new Map();
    /** Vehicles changed since the last render. */
    this.dirty = new Set();
    /** Bumped when vehicles are added or removed. */
    this.membership = 0;
  }

  vehicle(id) {
    let v = this.vehicles.get(id);
    if (!v) {
      v = { id, signals: {}, lastSeen: NaN, version: -1, trail: [], history: [], seenInReload: true };
      this.vehicles.set(id, v);
      this.membership++;
    }
    return v;
  }

  /**
   * Applies a snapshot or an update (both carry the full signal map and a version). Only
   * a newer version is applied, so the initial load and the live stream may interleave.
   * Returns the vehicle when something was applied.
   */
  apply(data) {
    if (!data || typeof data.vehicle_id !== "string") return null;
    const v = this.vehicle(data.vehicle_id);
    v.seenInReload = true;
    const version = typeof data.version === "number" ? data.version : 0;
    if (version <= v.version) return null;
    v.version = version;
    v.signals = { ...v.signals, ...(data.signals || {}) };
    v.lastSeen = parseTime(data.last_seen);
    const p = position(v);
    if (p) {
      const last = v.trail[v.trail.length - 1];
      if (!last || last[0] !== p.latitude || last[1] !== p.longitude) {
        v.trail.push([p.latitude, p.longitude]);
        if (v.trail.length > TRAIL) v.trail.shift();
      }
    }
    const t = v.lastSeen, h = v.history, last = h[h.length - 1];
    if (Number.isFinite(t) && (!last || t > last.t)) {
      h.push({ t, speed: speed(v), soc: soc(v) });
      while (h.length > HISTORY || (h.length && h[0].t < t - HISTORY_MS)) h.shift();
    }
    this.dirty.add(v);
    return v;
  }

  /**
   * Starts a reload after a `reset`: the server's state wins whatever its versions (after
   * a restart without data they start again from zero). Vehicles keep their trail and
   * history for continuity; those the reload does not list are removed by endReload().
   */
  beginReload() {
    for (const v of this.vehicles.values()) { v.version = -1; v.seenInReload = false; }
  }

  endReload() {
    for (const [id, v] of this.vehicles) {
      if (!v.seenInReload) { this.vehicles.delete(id); this.membership++; }
    }
  }
}
