// The event feed: `fleet_event`s from the stream and the vehicles' recent events from
// REST, newest first by the time they happened, deduplicated by id (a resume may deliver
// an event twice, and REST and the stream overlap), and how to describe one in words.

import { clock, duration, fmt, parseTime } from "./model.js";

const MAX_ITEMS = 200;

/** Category (for the filter and the colour) and text of an event. */
export function describe(e) {
  const km = (m) => fmt(m / 1000, 1) + " km";
  switch (e.type) {
    case "trip_started": return ["trip", "Trip started"];
    case "trip_ended": {
      const t = e.trip || {};
      return ["trip", "Trip ended · " + km(t.distance_m) + " in " + duration(t.duration_secs) +
        (Number.isFinite(t.soc_used) ? " · " + fmt(t.soc_used, 1) + " % used" : "")];
    }
    case "charging_started": return ["charging", "Charging started"];
    case "charging_ended": {
      const s = e.session || {};
      return ["charging", "Charging ended · " + fmt(s.energy_added_kwh, 1) + " kWh in " + duration(s.duration_secs)];
    }
    case "geofence_enter": return ["geofence", "Entered " + (e.name || e.geofence_id)];
    case "geofence_exit": return ["geofence", "Left " + (e.name || e.geofence_id)];
    case "alert_raised": return ["alert", "Alert: " + (e.message || e.alert || e.rule_id)];
    case "alert_cleared": return ["alert", "Alert cleared: " + (e.alert || "") + " (" + e.rule_id + ")"];
    default: return ["other", String(e.type)];
  }
}

export class Feed {
  /** `onSelect(vehicleId)` is called when an event's vehicle is clicked. */
  constructor(list, filterSelect, counter, onSelect) {
    this.list = list;
    this.seen = new Set();
    this.count = 0;
    this.filter = "";
    this.counter = counter;
    this.empty = list.querySelector(".empty");
    filterSelect.addEventListener("change", () => { this.filter = filterSelect.value; this.applyFilter(); });
    list.addEventListener("click", (ev) => {
      const b = ev.target.closest("button[data-vehicle-id]");
      if (b) onSelect(b.dataset.vehicleId);
    });
  }

  /** Adds an event (`source`: "stream" or "rest") unless already shown; returns whether it was new. */
  add(e, source) {
    if (!e || typeof e.id !== "string" || this.seen.has(e.id)) return false;
    this.seen.add(e.id);
    const [category, text] = describe(e);
    const li = document.createElement("li");
    li.dataset.testid = "feed-item";
    li.dataset.id = e.id;
    li.dataset.source = source;
    li.dataset.category = category;
    li.dataset.type = e.type;
    li.className = "feed-" + category;
    li.innerHTML = '<time></time><span class="tag"></span><span class="what"></span><button type="button" class="link"></button>';
    const at = parseTime(e.at);
    li.dataset.at = String(at);
    li.children[0].textContent = clock(at);
    if (Number.isFinite(at)) li.children[0].dateTime = new Date(at).toISOString();
    li.children[1].textContent = category;
    li.children[2].textContent = text;
    li.children[3].textContent = e.vehicle_id;
    li.children[3].dataset.vehicleId = e.vehicle_id;
    li.children[3].setAttribute("aria-label", "Select vehicle " + e.vehicle_id);
    li.hidden = !!this.filter && this.filter !== category;
    // Newest first by event time; live events are usually the newest, so the scan is short.
    let before = this.list.firstElementChild;
    while (before && before.dataset.testid === "feed-item" && !(Number(before.dataset.at) <= at)) before = before.nextElementSibling;
    this.list.insertBefore(li, before);
    this.count++;
    while (this.count > MAX_ITEMS) {
      const last = this.list.lastElementChild;
      this.seen.delete(last.dataset.id);
      last.remove();
      this.count--;
    }
    this.counter.textContent = String(this.count);
    if (this.empty) { this.empty.remove(); this.empty = null; }
    return true;
  }

  applyFilter() {
    for (const li of this.list.querySelectorAll("li[data-testid=feed-item]")) {
      li.hidden = !!this.filter && this.filter !== li.dataset.category;
    }
  }
}
