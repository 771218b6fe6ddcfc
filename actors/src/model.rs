//! The data that flows through the pipeline: telemetry records, signal values and the
//! per-vehicle snapshot that is persisted and published.
//!
//! The wire contract of `POST /v1/ingest` is the "seed data contract":
//! `{"timestamp": RFC3339, "vehicle_id": "...", "payload": {signal: value, ...}, "can_id": optional}`.
//! The server adds `ingest_received_at`. The same JSON is the record body on the stream.

use std::collections::BTreeMap;
use std::fmt;

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};

use crate::fleet::{FleetEvent, FleetState};

mod signal_de;

/// A signal's name, e.g. `BatteryLevel`. Names up to 24 bytes (nearly all of Tesla's) are
/// stored inline: a vehicle holds one per signal, and a published update copies them all.
pub type SignalName = compact_str::CompactString;

/// Latest reading per signal name, sorted by name. A sorted `Vec` (litemap) rather than a
/// `BTreeMap`: a vehicle has tens of signals, where B-tree nodes (eleven slots each) cost
/// about three times the entries themselves, and every idle vehicle keeps one map
/// (measured by `tests/idle_actor_memory.rs`; docs/performance.md). Serializes as the
/// same JSON object, keys in order.
pub type Signals = litemap::LiteMap<SignalName, SignalReading>;

/// Serializes [`Signals`] as a JSON object, also when empty: litemap writes an empty map as
/// `[]` to human-readable formats (it cannot see from no entry that keys are strings).
/// Every `Signals` field that reaches JSON uses it (`serialize_with`).
pub fn serialize_signals<S: serde::Serializer>(signals: &Signals, serializer: S) -> Result<S::Ok, S::Error> {
    serializer.collect_map(signals.iter())
}

/// Identifier of a vehicle inside fleetwire. Once pseudonymization lands this is the
/// pseudonym, never a clear VIN; it is also the stream partition key.
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[cfg_attr(
    feature = "openapi",
    schema(pattern = r"^[A-Za-z0-9_.:-]{1,128}$", example = "car-42")
)]
#[derive(Debug, Clone, Default, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(transparent)]
pub struct VehicleId(pub String);

impl VehicleId {
    /// Longest id accepted at the edge (Kinesis partition keys are limited to 256 chars).
    pub const MAX_LEN: usize = 128;

    /// Builds an id after checking it is 1..=128 chars of `[A-Za-z0-9_.:-]`.
    pub fn parse(raw: &str) -> Result<Self, String> {
        if raw.is_empty() || raw.len() > Self::MAX_LEN {
            return Err(format!("vehicle_id must be 1 to {} characters", Self::MAX_LEN));
        }
        if let Some(c) = raw
            .chars()
            .find(|c| !(c.is_ascii_alphanumeric() || matches!(c, '_' | '-' | '.' | ':')))
        {
            return Err(format!(
                "vehicle_id contains the character {c:?}; allowed: A-Z a-z 0-9 _ - . :"
            ));
        }
        Ok(Self(raw.to_owned()))
    }

    /// The id as text.
    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl fmt::Display for VehicleId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

/// The tenant (customer fleet) a piece of data belongs to. Every update is published to
/// its tenant's channel and replay log, and subscribers only ever see their own tenant's
/// updates.
///
/// Until authentication (issue #6) decides the tenant of a request, everything belongs to
/// [`TenantId::DEFAULT`]. Ids are 1–64 characters of `A-Z a-z 0-9 _ -`: they become part of
/// Redis key and channel names, where `:` separates levels and `*?[]` are glob syntax.
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[cfg_attr(
    feature = "openapi",
    schema(pattern = r"^[A-Za-z0-9_-]{1,64}$", example = "demo")
)]
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(transparent)]
pub struct TenantId(String);

impl TenantId {
    /// The tenant of everything while there is no authentication.
    pub const DEFAULT: &'static str = "default";
    /// Longest tenant id.
    pub const MAX_LEN: usize = 64;

    /// Builds an id after checking it is 1..=64 chars of `[A-Za-z0-9_-]`.
    pub fn parse(raw: &str) -> Result<Self, String> {
        if raw.is_empty() || raw.len() > Self::MAX_LEN {
            return Err(format!("tenant must be 1 to {} characters", Self::MAX_LEN));
        }
        if let Some(c) = raw
            .chars()
            .find(|c| !(c.is_ascii_alphanumeric() || matches!(c, '_' | '-')))
        {
            return Err(format!(
                "tenant contains the character {c:?}; allowed: A-Z a-z 0-9 _ -"
            ));
        }
        Ok(Self(raw.to_owned()))
    }

    /// The id as text.
    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl Default for TenantId {
    fn default() -> Self {
        Self(Self::DEFAULT.to_owned())
    }
}

impl fmt::Display for TenantId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

/// A geographic position in WGS84 degrees.
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Location {
    /// Degrees north, -90..=90.
    pub latitude: f64,
    /// Degrees east, -180..=180.
    pub longitude: f64,
}

/// One signal value. JSON numbers that are integers stay integers so counters and
/// enums survive a round trip; everything else a vehicle reports is one of these shapes.
/// Serialized untagged (the bare JSON value); deserialized by [`signal_de`], which picks
/// the variant from the JSON token in one pass.
#[derive(Debug, Clone, PartialEq, Serialize)]
#[serde(untagged)]
pub enum SignalValue {
    /// `true` / `false`.
    Bool(bool),
    /// A JSON integer.
    Int(i64),
    /// Any other JSON number.
    Float(f64),
    /// Text, including enum names such as `"D"` for a gear.
    Text(String),
    /// `{"latitude": .., "longitude": ..}`.
    Location(Location),
    /// A small record of named values, e.g. Tesla's `Doors` (`{"DriverFront": true, ..}`),
    /// `TireLocation` or `Time` (`{"hour": 7, "minute": 30, "second": 0}`). Declared after
    /// `Location` so an object with exactly `latitude` and `longitude` stays a location.
    Fields(BTreeMap<String, SignalValue>),
    /// The vehicle says the signal is currently unavailable (Tesla's `invalid: true`); JSON
    /// `null`.
    Invalid,
}

impl SignalValue {
    /// The value as a number, when it is one (used by aggregates and the live page).
    pub fn as_f64(&self) -> Option<f64> {
        match self {
            SignalValue::Int(i) => Some(*i as f64),
            SignalValue::Float(f) => Some(*f),
            _ => None,
        }
    }
}

/// One telemetry record as it travels on the stream.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TelemetryRecord {
    /// When the vehicle measured the values (source time; orders updates).
    pub timestamp: DateTime<Utc>,
    /// Which vehicle sent it.
    pub vehicle_id: VehicleId,
    /// Signal name → value.
    pub payload: BTreeMap<String, SignalValue>,
    /// CAN bus id of the frame the values came from, when the source has one.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub can_id: Option<u32>,
    /// When fleetwire accepted the record at its edge (set by the server).
    pub ingest_received_at: DateTime<Utc>,
}

impl TelemetryRecord {
    /// A stable identity of the record's content, used by the dedupe window: the same
    /// vehicle, source time and payload is the same record however often it arrives
    /// (client retries, stream replays after a failover).
    pub fn content_id(&self) -> RecordId {
        // The canonical JSON of the parts that define the record (BTreeMap keeps keys sorted),
        // hashed with xxh3, which is a fixed algorithm so ids persisted today still match
        // after an upgrade.
        let canonical = serde_json::to_vec(&(&self.vehicle_id, self.timestamp, &self.payload, self.can_id))
            .expect("record parts always serialize");
        RecordId(xxhash_rust::xxh3::xxh3_64(&canonical))
    }
}

/// Content hash of a record (see [`TelemetryRecord::content_id`]).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(transparent)]
pub struct RecordId(pub u64);

/// The latest value of one signal and the source time it was measured at.
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct SignalReading {
    /// The value.
    pub value: SignalValue,
    /// Source timestamp of the record that carried it.
    pub timestamp: DateTime<Utc>,
}

/// Everything fleetwire keeps about one vehicle: persisted by the StateStore, restored
/// when the vehicle's actor is reactivated, and published (in full) on every change.
#[derive(Debug, Clone, PartialEq, Default, Serialize, Deserialize)]
pub struct VehicleSnapshot {
    /// The tenant the vehicle belongs to (from the vehicle registry); part of the store key,
    /// so one tenant can never load or list another's snapshot. Absent in snapshots written
    /// before tenants existed, which belong to the default tenant.
    #[serde(default)]
    pub tenant: TenantId,
    /// The vehicle.
    pub vehicle_id: VehicleId,
    /// Latest reading per signal name.
    #[serde(serialize_with = "serialize_signals")]
    pub signals: Signals,
    /// Newest source timestamp seen in any applied record.
    pub last_seen: Option<DateTime<Utc>>,
    /// Number of records applied so far; grows by one per applied record and orders
    /// writes to the store (a save with a lower version never replaces a higher one).
    pub version: u64,
    /// Recently applied record ids, oldest first, so replays after a restart are
    /// recognised as duplicates.
    pub recent_records: Vec<RecordId>,
    /// Fleet state derived from the records (open trip and charging session, geofence
    /// membership, alert latches, recent trips, sessions and events). Absent in
    /// snapshots written before fleet intelligence existed, and while nothing is derived.
    #[serde(default, skip_serializing_if = "FleetState::is_empty")]
    pub derived: FleetState,
}

/// A change to one vehicle, as published through the FanOut port to every node's
/// subscribers. Carries the full latest state so that a subscriber that coalesces or
/// misses an update still ends up with the right picture from the next one.
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct VehicleUpdate {
    /// The tenant the vehicle belongs to. Absent in updates written before tenants
    /// existed, which therefore belong to the default tenant.
    #[serde(default)]
    pub tenant: TenantId,
    /// The vehicle.
    pub vehicle_id: VehicleId,
    /// Snapshot version after the change.
    pub version: u64,
    /// Newest source time seen.
    pub last_seen: Option<DateTime<Utc>>,
    /// Names of the signals this change touched.
    #[cfg_attr(feature = "openapi", schema(value_type = Vec<String>))]
    pub changed: Vec<SignalName>,
    /// Latest reading of every signal.
    #[cfg_attr(feature = "openapi", schema(value_type = BTreeMap<String, SignalReading>))]
    #[serde(serialize_with = "serialize_signals")]
    pub signals: Signals,
    /// Ingest time of the newest record in the change; lets a client measure
    /// record → browser latency.
    pub ingest_received_at: DateTime<Utc>,
    /// Fleet events the change derived (trips, charging, geofences, alerts), oldest
    /// first; SSE sends each as a `fleet_event`. Absent when there are none, so updates
    /// without events look exactly as before (older nodes ignore the field).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub fleet_events: Vec<FleetEvent>,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn vehicle_id_rejects_bad_input() {
        assert!(VehicleId::parse("car-1").is_ok());
        assert!(VehicleId::parse("").is_err());
        assert!(VehicleId::parse("a b").unwrap_err().contains("' '"));
        assert!(VehicleId::parse(&"x".repeat(129)).is_err());
    }

    #[test]
    fn tenant_ids_are_checked_and_default_for_old_updates() {
        assert!(TenantId::parse("acme_fleet-2").is_ok());
        assert!(TenantId::parse("").is_err());
        assert!(TenantId::parse("a:b").unwrap_err().contains("':'"));
        assert!(TenantId::parse("a*").is_err());
        assert!(TenantId::parse(&"t".repeat(65)).is_err());
        let old = r#"{"vehicle_id":"v","version":1,"last_seen":null,"changed":[],"signals":{},
            "ingest_received_at":"2026-01-01T00:00:00Z"}"#;
        let update: VehicleUpdate = serde_json::from_str(old).unwrap();
        assert_eq!(update.tenant.as_str(), "default");
        let json = serde_json::to_string(&update).unwrap();
        assert!(json.contains(r#""tenant":"default""#));
        assert!(
            json.contains(r#""signals":{}"#),
            "no signals is an empty object: {json}"
        );
        let snapshot = VehicleSnapshot::default();
        assert!(
            serde_json::to_string(&snapshot)
                .unwrap()
                .contains(r#""signals":{}"#)
        );
        // No fleet events: the wire is what it was before they existed.
        assert!(update.fleet_events.is_empty() && !json.contains("fleet_events"));
    }

    #[test]
    fn signal_values_keep_their_json_shape() {
        let json = r#"{"a":true,"b":3,"c":2.5,"d":"D","e":{"latitude":1.0,"longitude":2.0}}"#;
        let map: BTreeMap<String, SignalValue> = serde_json::from_str(json).unwrap();
        assert_eq!(map["a"], SignalValue::Bool(true));
        assert_eq!(map["b"], SignalValue::Int(3));
        assert_eq!(map["c"], SignalValue::Float(2.5));
        assert_eq!(map["d"], SignalValue::Text("D".into()));
        assert!(matches!(map["e"], SignalValue::Location(_)));
        assert_eq!(serde_json::to_string(&map).unwrap(), json);
    }

    #[test]
    fn nested_fields_and_invalid_round_trip() {
        let json = r#"{"doors":{"DriverFront":true,"TrunkRear":false},"range":null,"t":{"hour":7}}"#;
        let map: BTreeMap<String, SignalValue> = serde_json::from_str(json).unwrap();
        assert_eq!(map["range"], SignalValue::Invalid);
        assert_eq!(
            map["doors"],
            SignalValue::Fields(
                [
                    ("DriverFront".to_string(), SignalValue::Bool(true)),
                    ("TrunkRear".to_string(), SignalValue::Bool(false)),
                ]
                .into()
            )
        );
        assert_eq!(
            map["t"],
            SignalValue::Fields([("hour".to_string(), SignalValue::Int(7))].into())
        );
        assert_eq!(serde_json::to_string(&map).unwrap(), json);
        // An object with a third key is not a location.
        let other: SignalValue = serde_json::from_str(r#"{"latitude":1.0,"longitude":2.0,"x":1}"#).unwrap();
        assert!(matches!(other, SignalValue::Fields(_)));
    }

    #[test]
    fn content_id_depends_on_content_only() {
        let mut r = TelemetryRecord {
            timestamp: "2026-01-01T00:00:00Z".parse().unwrap(),
            vehicle_id: VehicleId("v1".into()),
            payload: [("Soc".to_string(), SignalValue::Int(80))].into(),
            can_id: None,
            ingest_received_at: "2026-01-01T00:00:01Z".parse().unwrap(),
        };
        let id = r.content_id();
        r.ingest_received_at = "2026-01-01T00:00:09Z".parse().unwrap();
        assert_eq!(id, r.content_id(), "arrival time is not part of the identity");
        r.payload.insert("Soc".into(), SignalValue::Int(79));
        assert_ne!(id, r.content_id());
    }
}
