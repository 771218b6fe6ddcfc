// Wiring: loads the fleet and its geofences over REST, follows the SSE stream (resuming
// with Last-Event-ID, reloading on `reset`), and renders the header, map, list, detail
// panel and event feed at most every RENDER_MS.

import { api, streamUrl } from "./api.js";
import { Fleet, STATES, ago, fmt, speed, soc, stateOf } from "./model.js";
import { FleetMap } from "./map.js";
import { Detail } from "./detail.js";
import { Feed } from "./feed.js";

const RENDER_MS = 250, PAGE = 1000, SEED_VEHICLES = 500, SEED_PARALLEL = 4;
const $ = (id) => document.getElementById(id);
const fleet = new Fleet();
let geofences = [], selected = null;

// ---- connection --------------------------------------------------------
let source = null, lastEventId = null, retryMs = 1000, loaded = false, reloadWanted = true, loading = null;
const updateTimes = [];

function setStatus(state, text) {
  const el = $("status");
  if (el.dataset.state === state && el.textContent === text) return;
  el.dataset.state = state;
  el.textContent = text;
}

/**
 * Loads every vehicle page and the geofences. A reload after `reset` (or once the stream
 * is back after an outage that broke the resume) lets the server's state win.
 */
function load() {
  if (loading) { reloadWanted = true; return loading; }
  reloadWanted = false;
  const reload = loaded;
  loading = (async () => {
    try {
      const fences = await api("/v1/geofences");
      geofences = Array.isArray(fences.geofences) ? fences.geofences : [];
      if (reload) fleet.beginReload();
      let after = null;
      do {
        const body = await api("/v1/vehicles?limit=" + PAGE + (after ? "&after=" + encodeURIComponent(after) : ""));
        for (const snap of body.vehicles || []) fleet.apply(snap);
        after = body.next_after || null;
      } while (after);
      if (reload) fleet.endReload();
      if (selected && !fleet.vehicles.has(selected.id)) select(null);
      loaded = true;
      seedFeed();
    } catch (err) {
      // Typically the server is restarting; the stream's reopening triggers the next try.
      console.warn("loading the fleet failed; will retry when the stream is back:", err.message);
      reloadWanted = true;
    } finally {
      loading = null;
      schedule();
    }
    if (reloadWanted && source && source.readyState === EventSource.OPEN) load();
  })();
  return loading;
}

/**
 * Fills the feed with the vehicles' recent events (REST keeps the last 50 per vehicle), so
 * it does not start empty; the stream adds the new ones. At most SEED_VEHICLES vehicles,
 * SEED_PARALLEL requests at a time; a failed request just leaves its vehicle out.
 */
async function seedFeed() {
  const ids = Array.from(fleet.vehicles.keys()).slice(0, SEED_VEHICLES);
  const next = async () => {
    for (let id = ids.pop(); id !== undefined; id = ids.pop()) {
      try {
        const body = await api("/v1/vehicles/" + encodeURIComponent(id) + "/events");
        for (const e of body.events || []) feed.add(e, "rest");
      } catch { /* shown live once the vehicle has new events */ }
    }
  };
  await Promise.all(Array.from({ length: SEED_PARALLEL }, next));
}

/** Tries `connect` again after a growing pause (the server may be restarting). */
function retryLater() {
  setStatus("down", "reconnecting in " + Math.round(retryMs / 1000) + " s");
  setTimeout(connect, retryMs);
  retryMs = Math.min(retryMs * 2, 30000);
}

async function connect() {
  let url;
  try {
    url = await streamUrl(lastEventId);
  } catch {
    // No ticket (server down or restarting): try again later.
    retryLater();
    return;
  }
  source = new EventSource(url);
  source.onopen = () => {
    retryMs = 1000;
    setStatus("live", "live");
    if (reloadWanted) load();
  };
  source.onerror = () => {
    // Not the browser's own reconnect: it would present the same stream ticket, which is
    // short-lived and may be unknown to a restarted server. A new EventSource with a
    // fresh ticket resumes where this one stopped (last_event_id).
    source.close();
    retryLater();
  };
  source.addEventListener("vehicle", (e) => {
    if (e.lastEventId) lastEventId = e.lastEventId;
    let data;
    try { data = JSON.parse(e.data); } catch { return; }
    updateTimes.push(performance.now());
    if (fleet.apply(data)) schedule();
  });
  source.addEventListener("fleet_event", (e) => {
    if (e.lastEventId) lastEventId = e.lastEventId;
    let data;
    try { data = JSON.parse(e.data); } catch { return; }
    if (feed.add(data, "stream")) detail.eventFor(data.vehicle_id);
  });
  source.addEventListener("reset", (e) => {
    // The server could not give us everything we missed: reload the state from REST.
    if (e.lastEventId) lastEventId = e.lastEventId;
    load();
  });
}

// ---- rendering ---------------------------------------------------------
let renderPending = false, lastRender = 0;
function schedule() {
  if (renderPending) return;
  renderPending = true;
  const wait = Math.max(0, RENDER_MS - (performance.now() - lastRender));
  setTimeout(() => requestAnimationFrame(render), wait);
}

function render() {
  renderPending = false;
  lastRender = performance.now();
  const now = Date.now();
  renderHeader(now);
  renderList(now);
  map.draw(fleet.vehicles.values(), geofences, selected, now);
  detail.render(now);
}

function renderHeader(now) {
  const counts = Object.fromEntries(STATES.map((s) => [s, 0]));
  for (const v of fleet.vehicles.values()) counts[stateOf(v, now)]++;
  $("count").textContent = fleet.vehicles.size.toLocaleString();
  for (const s of STATES) $("count-" + s).textContent = counts[s].toLocaleString();
  const t = performance.now();
  while (updateTimes.length && updateTimes[0] < t - 5000) updateTimes.shift();
  $("rate").textContent = fmt(updateTimes.length / 5, updateTimes.length < 50 ? 1 : 0);
}

// ---- vehicle list ------------------------------------------------------
const rows = new Map(), collator = new Intl.Collator(undefined, { numeric: true });
let sortKey = "id", sortDir = 1, filter = "", order = [], membershipSeen = -1, lastFull = 0;

function sortValue(v, now) {
  switch (sortKey) {
    case "soc": return soc(v);
    case "speed": return speed(v);
    case "seen": return -v.lastSeen;
    default: return v.id;
  }
}
function compare(a, b, now) {
  const x = sortValue(a, now), y = sortValue(b, now);
  // Missing values sort last; ties fall back to the id so the order is stable.
  const c = typeof x === "string" ? collator.compare(x, y) : (Number.isNaN(x) ? Infinity : x) - (Number.isNaN(y) ? Infinity : y);
  return (c || 0) * sortDir || collator.compare(a.id, b.id);
}

function makeRow(v) {
  const tr = document.createElement("tr");
  tr.dataset.testid = "vehicle-row";
  tr.dataset.vehicleId = v.id;
  tr.tabIndex = 0;
  tr.setAttribute("aria-selected", "false");
  tr.innerHTML = '<th scope="row"><span class="dot" role="img"></span><span class="id"></span></th>' +
    '<td class="num"><span class="bar"><i></i></span><span class="soc"></span></td><td class="num speed"></td><td class="seen"></td>';
  tr.querySelector(".id").textContent = v.id;
  tr.querySelector(".id").title = v.id;
  const cells = { dot: tr.querySelector(".dot"), bar: tr.querySelector(".bar"),
    fill: tr.querySelector(".bar i"), soc: tr.querySelector(".soc"), speed: tr.querySelector(".speed"),
    seen: tr.querySelector(".seen"), shown: {} };
  const row = { tr, cells };
  rows.set(v.id, row);
  return row;
}

// Writes only what changed, so rows never re-layout needlessly and focus stays put.
function setText(cells, key, text) {
  if (cells.shown[key] === text) return;
  cells.shown[key] = text;
  cells[key].textContent = text;
}

function updateRow(v, now) {
  const { tr, cells } = rows.get(v.id) || makeRow(v);
  const state = stateOf(v, now), s = soc(v), sp = speed(v);
  if (cells.shown.cls !== state) {
    cells.shown.cls = state;
    cells.dot.className = "dot " + state;
    cells.dot.setAttribute("aria-label", state);
    cells.dot.title = state;
  }
  setText(cells, "soc", Number.isFinite(s) ? fmt(s) + " %" : "–");
  const width = Number.isFinite(s) ? Math.max(0, Math.min(100, s)).toFixed(0) + "%" : "0%";
  if (cells.shown.width !== width) { cells.shown.width = width; cells.fill.style.width = width; cells.bar.classList.toggle("low", s < 20); }
  setText(cells, "speed", Number.isFinite(sp) ? fmt(sp) : "–");
  setText(cells, "seen", ago(now - v.lastSeen));
  const visible = !filter || v.id.toLowerCase().includes(filter) || state.startsWith(filter);
  if (tr.hidden === visible) tr.hidden = !visible;
}

function renderList(now) {
  // Relative times and offline states change without updates: refresh every row each second.
  const full = now - lastFull >= 1000;
  if (full) lastFull = now;
  for (const v of full ? fleet.vehicles.values() : fleet.dirty) if (fleet.vehicles.has(v.id)) updateRow(v, now);
  fleet.dirty.clear();
  for (const [id, row] of rows) if (!fleet.vehicles.has(id)) { row.tr.remove(); rows.delete(id); }
  if (membershipSeen !== fleet.membership || (full && sortKey !== "id")) {
    membershipSeen = fleet.membership;
    const next = Array.from(fleet.vehicles.values()).sort((a, b) => compare(a, b, now));
    if (next.length !== order.length || next.some((v, i) => v !== order[i])) {
      // Reinserting in order moves existing nodes; rows are never rebuilt.
      const frag = document.createDocumentFragment();
      for (const v of next) frag.appendChild((rows.get(v.id) || makeRow(v)).tr);
      $("rows").appendChild(frag);
      order = next;
    }
  }
  const shown = Array.from(rows.values()).filter((r) => !r.tr.hidden).length;
  $("list-count").textContent = shown === fleet.vehicles.size ? String(shown) : shown + " of " + fleet.vehicles.size;
}

// ---- selection ---------------------------------------------------------
function select(v, scroll = false) {
  if (selected === v) return;
  if (selected) rows.get(selected.id)?.tr.setAttribute("aria-selected", "false");
  selected = v;
  const row = v && rows.get(v.id);
  if (row) {
    row.tr.setAttribute("aria-selected", "true");
    if (scroll) row.tr.scrollIntoView({ block: "nearest" });
  }
  detail.show(v);
  schedule();
}

const map = new FleetMap($("map"), $("tip"), (v) => select(v, true));
map.onHover = schedule;
const detail = new Detail($("detail"), () => select(null));
const feed = new Feed($("feed"), $("feed-filter"), $("feed-count"), (id) => {
  const v = fleet.vehicles.get(id);
  if (v) select(v, true);
});
detail.show(null);

$("rows").addEventListener("click", (ev) => {
  const tr = ev.target.closest("tr");
  if (tr) select(fleet.vehicles.get(tr.dataset.vehicleId) || null);
});
$("rows").addEventListener("keydown", (ev) => {
  const tr = ev.target.closest("tr");
  if (!tr) return;
  if (ev.key === "Enter" || ev.key === " ") { ev.preventDefault(); select(fleet.vehicles.get(tr.dataset.vehicleId) || null); }
  else if (ev.key === "ArrowDown" || ev.key === "ArrowUp") {
    ev.preventDefault();
    const step = (n) => (ev.key === "ArrowDown" ? n.nextElementSibling : n.previousElementSibling);
    let n = step(tr);
    while (n && n.hidden) n = step(n);
    if (n) n.focus();
  }
});
$("search").addEventListener("input", (ev) => {
  filter = ev.target.value.trim().toLowerCase();
  for (const v of fleet.vehicles.values()) fleet.dirty.add(v);
  schedule();
});
for (const th of document.querySelectorAll("#vehicles thead th")) {
  th.querySelector("button").addEventListener("click", () => {
    const key = th.dataset.key;
    sortDir = key === sortKey ? -sortDir : 1;
    sortKey = key;
    for (const other of document.querySelectorAll("#vehicles thead th")) other.removeAttribute("aria-sort");
    th.setAttribute("aria-sort", sortDir > 0 ? "ascending" : "descending");
    membershipSeen = -1;
    schedule();
  });
}
new ResizeObserver(schedule).observe($("map"));
setInterval(schedule, 1000);

// Snapshots first, then the stream: an update older than a snapshot is ignored by version.
load().then(connect);
