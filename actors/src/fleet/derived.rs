//! [`FleetState`]: everything fleetwire derives for one vehicle — the machines' states,
//! the latest mapped values and the recent history — persisted with the vehicle's
//! snapshot (its `derived` field), so it survives passivation and restarts.
//!
//! Rules that make replays harmless:
//! - The vehicle's dedupe window drops repeated records before they get here.
//! - Records older than the newest one processed (`clock`) are history arriving late:
//!   they update the latest signals but not the machines (a trip cannot be re-split).
//! - Every trip, session and event has a content id, and the history never holds two
//!   items with one id, so a record processed again on another node after a failover
//!   (from a snapshot older than its effects) yields the same items, not new ones.

use std::collections::{BTreeMap, BTreeSet, VecDeque};

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};

use super::FleetConfig;
use super::alerts::{AlertState, Crossing};
use super::charging::{ChargeInput, ChargeOutput, ChargeState};
use super::events::{ChargingSession, EventKind, FleetEvent, Trip};
use super::geo_util::distance_m;
use super::geofence::cross;
use super::position::{FilterReason, FilterState, Fix};
use super::rules::TenantRules;
use super::signals::{Charging, Gear, Sample};
use super::trips::{MotionInput, TripOutput, TripState};
use crate::model::{Location, TelemetryRecord, VehicleId};

/// Finished trips kept per vehicle.
pub const MAX_TRIPS: usize = 20;
/// Finished charging sessions kept per vehicle.
pub const MAX_SESSIONS: usize = 20;
/// Events kept per vehicle.
pub const MAX_EVENTS: usize = 50;

/// The latest value of each mapped signal (records carry only what changed).
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(default)]
pub struct Latest {
    /// km/h.
    pub speed_kmh: Option<f64>,
    /// Percent.
    pub soc: Option<f64>,
    /// Gear.
    pub gear: Option<Gear>,
    /// Charge state.
    pub charging: Option<Charging>,
    /// kWh left.
    pub energy_kwh: Option<f64>,
    /// Charging power, kW.
    pub charge_power_kw: Option<f64>,
    /// Last accepted position.
    pub position: Option<Location>,
}

/// The derived state of one vehicle.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(default)]
pub struct FleetState {
    /// Newest source time the machines processed.
    pub clock: Option<DateTime<Utc>>,
    /// Latest mapped values.
    pub latest: Latest,
    /// The position filter's memory.
    pub filter: FilterState,
    /// Positions rejected so far, by reason.
    pub filtered: BTreeMap<FilterReason, u64>,
    /// The trip machine.
    pub trip: TripState,
    /// The charging machine.
    pub charge: ChargeState,
    /// Geofences (ids) the vehicle is inside.
    pub geofences: BTreeSet<String>,
    /// Alert latches.
    pub alerts: AlertState,
    /// Recent finished trips, oldest first.
    pub trips: VecDeque<Trip>,
    /// Recent finished charging sessions, oldest first.
    pub charging_sessions: VecDeque<ChargingSession>,
    /// Recent events, oldest first.
    pub events: VecDeque<FleetEvent>,
}

/// What applying one record derived.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct FleetOutcome {
    /// New events (not already in the history), in order.
    pub events: Vec<FleetEvent>,
    /// Positions the filter rejected.
    pub filtered: Vec<FilterReason>,
}

impl FleetState {
    /// Whether nothing was derived yet (old snapshots; skipped when serializing).
    pub fn is_empty(&self) -> bool {
        *self == Self::default()
    }

    /// Feeds one applied record. `now` is the node's clock (for the position filter).
    pub fn apply(
        &mut self,
        config: &FleetConfig,
        rules: &TenantRules,
        vehicle: &VehicleId,
        record: &TelemetryRecord,
        now: DateTime<Utc>,
    ) -> FleetOutcome {
        let mut out = FleetOutcome::default();
        let at = record.timestamp;
        let sample = Sample::from_record(record);
        if self.clock.is_some_and(|clock| at < clock) {
            if sample.position.is_some() {
                self.count(FilterReason::OutOfOrder, &mut out);
            }
            return out;
        }
        self.clock = Some(at);
        let l = &mut self.latest;
        l.speed_kmh = sample.speed_kmh.or(l.speed_kmh);
        l.soc = sample.soc.or(l.soc);
        l.gear = sample.gear.or(l.gear);
        l.charging = sample.charging.or(l.charging);
        l.energy_kwh = sample.energy_kwh.or(l.energy_kwh);
        l.charge_power_kw = sample.charge_power_kw.or(l.charge_power_kw);

        let (mut fix, mut implied) = (None, None);
        if let Some(location) = sample.position {
            let previous = self.filter.last;
            match self.filter.check(&config.filter, Fix { location, at }, now) {
                Ok(()) => {
                    fix = Some(location);
                    self.latest.position = Some(location);
                    implied = previous.map(|p| {
                        let secs = (at - p.at).num_milliseconds().max(1) as f64 / 1000.0;
                        distance_m(p.location, location) / secs * 3.6
                    });
                }
                Err(reason) => self.count(reason, &mut out),
            }
        }
        let l = self.latest.clone();
        let mut new = Vec::new();

        let motion = MotionInput {
            at: Some(at),
            fix,
            gear_driving: l.gear.map(Gear::is_driving),
            speed_kmh: l.speed_kmh,
            implied_speed_kmh: implied,
            soc: l.soc,
            energy_kwh: l.energy_kwh,
            charging: l.charging == Some(Charging::Active),
        };
        for step in self.trip.step(&config.trips, vehicle, motion) {
            new.push(match step {
                TripOutput::Started { id, at, location } => {
                    FleetEvent::new(vehicle, at, location, EventKind::TripStarted { trip_id: id })
                }
                TripOutput::Ended(trip) => {
                    push_unique(&mut self.trips, trip.clone(), MAX_TRIPS, |t| &t.id);
                    FleetEvent::new(
                        vehicle,
                        trip.ended_at,
                        trip.end_location,
                        EventKind::TripEnded { trip },
                    )
                }
            });
        }

        let charge = ChargeInput {
            at: Some(at),
            charging: l.charging.map(|c| c == Charging::Active),
            power_kw: l.charge_power_kw,
            counter_kwh: sample.charged_kwh,
            soc: l.soc,
            location: l.position,
        };
        match self.charge.step(vehicle, charge) {
            Some(ChargeOutput::Started(id, at)) => new.push(FleetEvent::new(
                vehicle,
                at,
                l.position,
                EventKind::ChargingStarted { session_id: id },
            )),
            Some(ChargeOutput::Ended(session)) => {
                push_unique(&mut self.charging_sessions, session.clone(), MAX_SESSIONS, |s| {
                    &s.id
                });
                new.push(FleetEvent::new(
                    vehicle,
                    at,
                    session.location,
                    EventKind::ChargingEnded { session },
                ));
            }
            None => {}
        }

        if let Some(fix) = fix {
            let crossings = cross(&rules.index, &mut self.geofences, fix);
            let name = |id: &str| rules.index.name(id).unwrap_or(id).to_owned();
            for (ids, crossing) in [
                (crossings.entered, Crossing::Enter),
                (crossings.left, Crossing::Exit),
            ] {
                for id in ids {
                    let name = name(&id);
                    let alerts = AlertState::on_crossing(&rules.alert_rules, &id, &name, crossing);
                    let kind = match crossing {
                        Crossing::Enter => EventKind::GeofenceEnter {
                            geofence_id: id,
                            name,
                        },
                        Crossing::Exit => EventKind::GeofenceExit {
                            geofence_id: id,
                            name,
                        },
                    };
                    new.push(FleetEvent::new(vehicle, at, Some(fix), kind));
                    new.extend(
                        alerts
                            .into_iter()
                            .map(|k| FleetEvent::new(vehicle, at, Some(fix), k)),
                    );
                }
            }
        }

        self.alerts.forget_missing(&rules.alert_rules);
        for kind in self.alerts.on_values(&rules.alert_rules, l.soc, l.speed_kmh) {
            new.push(FleetEvent::new(vehicle, at, l.position, kind));
        }
        out.events = self.record_events(new);
        out
    }

    /// The offline timer: raises `offline` alerts due at `now` for a vehicle last seen at
    /// `last_seen`.
    pub fn tick(
        &mut self,
        rules: &TenantRules,
        vehicle: &VehicleId,
        last_seen: DateTime<Utc>,
        now: DateTime<Utc>,
    ) -> Vec<FleetEvent> {
        self.alerts.forget_missing(&rules.alert_rules);
        let new = self
            .alerts
            .offline(&rules.alert_rules, last_seen, now)
            .into_iter()
            .map(|(at, kind)| FleetEvent::new(vehicle, at, self.latest.position, kind))
            .collect();
        self.record_events(new)
    }

    /// When the next `offline` alert would become due (the actor stays active until then).
    pub fn offline_deadline(&self, rules: &TenantRules, last_seen: DateTime<Utc>) -> Option<DateTime<Utc>> {
        self.alerts.next_offline_deadline(&rules.alert_rules, last_seen)
    }

    fn count(&mut self, reason: FilterReason, out: &mut FleetOutcome) {
        *self.filtered.entry(reason).or_default() += 1;
        out.filtered.push(reason);
    }

    /// Adds events to the history, skipping ids already there; returns those added.
    fn record_events(&mut self, new: Vec<FleetEvent>) -> Vec<FleetEvent> {
        new.into_iter()
            .filter(|e| push_unique(&mut self.events, e.clone(), MAX_EVENTS, |x| &x.id))
            .collect()
    }
}

/// Appends `item` unless an item with its id is there, dropping the oldest beyond `max`.
fn push_unique<T>(list: &mut VecDeque<T>, item: T, max: usize, id: impl Fn(&T) -> &String) -> bool {
    if list.iter().any(|x| id(x) == id(&item)) {
        return false;
    }
    list.push_back(item);
    while list.len() > max {
        list.pop_front();
    }
    true
}
