//! What the fleet machines report: trips, charging sessions and events, with ids derived
//! from their content so that a replayed or duplicated record can never create a second
//! copy of the same trip or event.

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};

use crate::model::{Location, VehicleId};

/// A finished trip.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Trip {
    /// Content id: vehicle, `trip`, start time.
    pub id: String,
    /// Source time the vehicle started to drive.
    pub started_at: DateTime<Utc>,
    /// Source time it stopped (the start of the stop that closed the trip).
    pub ended_at: DateTime<Utc>,
    /// First known position of the trip.
    pub start_location: Option<Location>,
    /// Where it stopped.
    pub end_location: Option<Location>,
    /// Haversine distance over the accepted positions, metres.
    pub distance_m: f64,
    /// `ended_at - started_at`, seconds.
    pub duration_secs: i64,
    /// Highest reported speed, km/h.
    pub max_speed_kmh: f64,
    /// Distance over duration, km/h.
    pub avg_speed_kmh: f64,
    /// State of charge at the start, percent.
    pub start_soc: Option<f64>,
    /// State of charge at the end, percent.
    pub end_soc: Option<f64>,
    /// Energy used as state-of-charge points (`start_soc - end_soc`).
    pub soc_used: Option<f64>,
    /// Energy used in kWh, when the vehicle reports `EnergyRemaining`.
    pub energy_used_kwh: Option<f64>,
}

/// A finished charging session.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ChargingSession {
    /// Content id: vehicle, `charging`, start time.
    pub id: String,
    /// Source time charging started.
    pub started_at: DateTime<Utc>,
    /// Source time it stopped.
    pub ended_at: DateTime<Utc>,
    /// `ended_at - started_at`, seconds.
    pub duration_secs: i64,
    /// Where the vehicle charged (last accepted position).
    pub location: Option<Location>,
    /// State of charge at the start, percent.
    pub start_soc: Option<f64>,
    /// State of charge at the end, percent.
    pub end_soc: Option<f64>,
    /// `end_soc - start_soc`.
    pub soc_added: Option<f64>,
    /// Energy added, kWh: from the vehicle's charged-energy counters when it reports them,
    /// else charging power integrated over time.
    pub energy_added_kwh: f64,
    /// Highest charging power seen, kW.
    pub max_power_kw: f64,
}

/// How an alert fires.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum AlertType {
    /// State of charge below the rule's threshold.
    LowSoc,
    /// Speed above the rule's limit.
    Overspeed,
    /// No record for longer than the rule's period.
    Offline,
    /// A geofence entered or left against the rule.
    Geofence,
}

/// What happened.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "type", rename_all = "snake_case")]
pub enum EventKind {
    /// The vehicle started a trip (reported once the trip is long enough to count).
    TripStarted {
        /// Id of the trip.
        trip_id: String,
    },
    /// A trip ended.
    TripEnded {
        /// The trip.
        trip: Trip,
    },
    /// Charging started.
    ChargingStarted {
        /// Id of the session.
        session_id: String,
    },
    /// Charging ended.
    ChargingEnded {
        /// The session.
        session: ChargingSession,
    },
    /// The vehicle entered a geofence.
    GeofenceEnter {
        /// Which.
        geofence_id: String,
        /// Its name.
        name: String,
    },
    /// The vehicle left a geofence.
    GeofenceExit {
        /// Which.
        geofence_id: String,
        /// Its name.
        name: String,
    },
    /// An alert rule fired.
    AlertRaised {
        /// Which rule.
        rule_id: String,
        /// Its type.
        alert: AlertType,
        /// The value that triggered it (SOC, km/h, minutes offline), when there is one.
        value: Option<f64>,
        /// For people.
        message: String,
    },
    /// A latched alert's condition is over.
    AlertCleared {
        /// Which rule.
        rule_id: String,
        /// Its type.
        alert: AlertType,
    },
}

impl EventKind {
    /// The `type` name.
    pub fn name(&self) -> &'static str {
        match self {
            EventKind::TripStarted { .. } => "trip_started",
            EventKind::TripEnded { .. } => "trip_ended",
            EventKind::ChargingStarted { .. } => "charging_started",
            EventKind::ChargingEnded { .. } => "charging_ended",
            EventKind::GeofenceEnter { .. } => "geofence_enter",
            EventKind::GeofenceExit { .. } => "geofence_exit",
            EventKind::AlertRaised { .. } => "alert_raised",
            EventKind::AlertCleared { .. } => "alert_cleared",
        }
    }

    /// What, besides type and time, tells two events apart (trip, geofence or rule id).
    fn discriminator(&self) -> &str {
        match self {
            EventKind::TripStarted { trip_id } => trip_id,
            EventKind::TripEnded { trip } => &trip.id,
            EventKind::ChargingStarted { session_id } => session_id,
            EventKind::ChargingEnded { session } => &session.id,
            EventKind::GeofenceEnter { geofence_id, .. } | EventKind::GeofenceExit { geofence_id, .. } => {
                geofence_id
            }
            EventKind::AlertRaised { rule_id, .. } | EventKind::AlertCleared { rule_id, .. } => rule_id,
        }
    }
}

/// One fleet event of one vehicle, as kept in its history, served by
/// `GET /v1/vehicles/{id}/events` and sent as SSE `fleet_event`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct FleetEvent {
    /// Content id (hash of vehicle, type, source time and trip/geofence/rule id): the same
    /// event derived twice (replay, duplicate, another node) has the same id.
    pub id: String,
    /// The vehicle.
    pub vehicle_id: VehicleId,
    /// Source time the event refers to.
    pub at: DateTime<Utc>,
    /// Where the vehicle was, when known.
    pub location: Option<Location>,
    /// What happened (`type` plus its fields, flattened).
    #[serde(flatten)]
    pub kind: EventKind,
}

impl FleetEvent {
    /// An event with its content id.
    pub fn new(vehicle: &VehicleId, at: DateTime<Utc>, location: Option<Location>, kind: EventKind) -> Self {
        let id = content_id(vehicle, kind.name(), at, kind.discriminator());
        Self {
            id,
            vehicle_id: vehicle.clone(),
            at,
            location,
            kind,
        }
    }
}

/// Stable id of a derived item: xxh3 (a fixed algorithm, so ids survive upgrades) of
/// vehicle, type, source time and discriminator, as 16 hex digits.
pub fn content_id(vehicle: &VehicleId, kind: &str, at: DateTime<Utc>, discriminator: &str) -> String {
    let canonical = format!(
        "{}\u{1f}{kind}\u{1f}{}\u{1f}{discriminator}",
        vehicle.as_str(),
        at.timestamp_micros()
    );
    format!("{:016x}", xxhash_rust::xxh3::xxh3_64(canonical.as_bytes()))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::vehicle::fakes::at;

    #[test]
    fn ids_depend_on_content_only_and_events_serialize_flat() {
        let v = VehicleId("v1".into());
        let enter = |t| {
            FleetEvent::new(
                &v,
                at(t),
                None,
                EventKind::GeofenceEnter {
                    geofence_id: "depot".into(),
                    name: "Depot".into(),
                },
            )
        };
        assert_eq!(enter(1).id, enter(1).id);
        assert_ne!(enter(1).id, enter(2).id);
        let json = serde_json::to_value(enter(1)).unwrap();
        assert_eq!(json["type"], "geofence_enter");
        assert_eq!(json["geofence_id"], "depot");
        let back: FleetEvent = serde_json::from_value(json).unwrap();
        assert_eq!(back, enter(1));
    }
}
