//! Which updates a subscriber wants: `vehicles=`, `signals=` and `types=` of
//! `GET /v1/stream`.

use std::collections::{BTreeSet, HashSet};
use std::fmt;
use std::sync::Arc;

use crate::model::{VehicleId, VehicleUpdate};

/// Most vehicles one filter may list.
pub const MAX_FILTER_VEHICLES: usize = 1000;
/// Most signals one filter may list (a record carries at most 512).
pub const MAX_FILTER_SIGNALS: usize = 512;
/// Longest signal name (the ingest limit).
const MAX_SIGNAL_NAME_LEN: usize = 128;

/// The kinds of data event a stream carries. `reset` is a control event and not one of
/// them: it is always sent, whatever the filter.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum EventType {
    /// `event: vehicle`: a vehicle's update.
    Vehicle,
    /// `event: fleet_event`: a trip, charging, geofence or alert event.
    FleetEvent,
}

impl EventType {
    /// Every type, for error messages.
    pub const ALL: [EventType; 2] = [EventType::Vehicle, EventType::FleetEvent];

    /// The SSE `event:` name.
    pub fn as_str(self) -> &'static str {
        match self {
            EventType::Vehicle => "vehicle",
            EventType::FleetEvent => "fleet_event",
        }
    }

    fn parse(raw: &str) -> Result<Self, String> {
        Self::ALL.into_iter().find(|t| t.as_str() == raw).ok_or_else(|| {
            let known: Vec<&str> = Self::ALL.iter().map(|t| t.as_str()).collect();
            format!("unknown event type {raw:?}; known: {}", known.join(", "))
        })
    }
}

/// The raw query values a filter is parsed from (`None`: parameter absent).
#[derive(Debug, Clone, Copy, Default)]
pub struct FilterQuery<'a> {
    /// `vehicles=a,b`
    pub vehicles: Option<&'a str>,
    /// `signals=Soc,Gear`
    pub signals: Option<&'a str>,
    /// `types=vehicle`
    pub types: Option<&'a str>,
}

/// A subscriber's filter; the empty filter matches everything. Each part narrows it.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct SubscriptionFilter {
    /// Only these vehicles, when set.
    pub vehicles: Option<HashSet<VehicleId>>,
    /// Only updates that changed at least one of these signals, trimmed to these signals
    /// (in `changed` and `signals`), when set.
    pub signals: Option<BTreeSet<String>>,
    /// Only these event types, when set.
    pub types: Option<BTreeSet<EventType>>,
}

impl SubscriptionFilter {
    /// Parses the query values; an empty or missing value means "no restriction". The
    /// error names the parameter and the bad item.
    pub fn parse(query: FilterQuery<'_>) -> Result<Self, String> {
        let vehicles = list(query.vehicles, "vehicles", MAX_FILTER_VEHICLES, |raw| {
            VehicleId::parse(raw)
        })?;
        let signals = list(query.signals, "signals", MAX_FILTER_SIGNALS, |raw| {
            if raw.len() > MAX_SIGNAL_NAME_LEN {
                return Err(format!(
                    "signal names are at most {MAX_SIGNAL_NAME_LEN} characters"
                ));
            }
            Ok(raw.to_owned())
        })?;
        let types = list(query.types, "types", 16, EventType::parse)?;
        Ok(Self {
            vehicles: vehicles.map(|v| v.into_iter().collect()),
            signals: signals.map(|v| v.into_iter().collect()),
            types: types.map(|v| v.into_iter().collect()),
        })
    }

    /// Parses only `vehicles=a,b` (kept for callers that have no other filter).
    pub fn from_query(vehicles: Option<&str>) -> Result<Self, String> {
        Self::parse(FilterQuery {
            vehicles,
            ..FilterQuery::default()
        })
    }

    /// Whether `update` passes the filter: its vehicle is wanted, and either its
    /// `vehicle` event or its fleet events are.
    pub fn matches(&self, update: &VehicleUpdate) -> bool {
        self.vehicles
            .as_ref()
            .is_none_or(|set| set.contains(&update.vehicle_id))
            && (self.wants_vehicle_event(update)
                || (self.wants(EventType::FleetEvent) && !update.fleet_events.is_empty()))
    }

    /// Whether the filter takes events of this type.
    pub fn wants(&self, kind: EventType) -> bool {
        self.types.as_ref().is_none_or(|types| types.contains(&kind))
    }

    /// Whether the `vehicle` event of a (matching) update is sent: the type is wanted and
    /// the update changed a wanted signal. `signals=` does not narrow fleet events.
    pub fn wants_vehicle_event(&self, update: &VehicleUpdate) -> bool {
        self.wants(EventType::Vehicle)
            && self
                .signals
                .as_ref()
                .is_none_or(|set| update.changed.iter().any(|s| set.contains(s.as_str())))
    }

    /// The JSON a client with this filter gets for a matching update: `full` (serialized
    /// once by the hub for everyone) unless the filter names signals, in which case the
    /// update trimmed to them.
    pub fn render(&self, update: &VehicleUpdate, full: &Arc<str>) -> Arc<str> {
        let Some(set) = &self.signals else {
            return full.clone();
        };
        let mut trimmed = update.clone();
        trimmed.changed.retain(|s| set.contains(s.as_str()));
        trimmed.signals.retain(|name, _| set.contains(name.as_str()));
        serde_json::to_string(&trimmed)
            .expect("updates always serialize")
            .into()
    }

    /// A short description for the admin page, e.g. `vehicles=a,b signals=Soc`.
    pub fn describe(&self) -> String {
        self.to_string()
    }
}

impl fmt::Display for SubscriptionFilter {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let mut parts = Vec::new();
        if let Some(set) = &self.vehicles {
            let mut ids: Vec<&str> = set.iter().map(VehicleId::as_str).collect();
            ids.sort_unstable();
            parts.push(format!("vehicles={}", ids.join(",")));
        }
        if let Some(set) = &self.signals {
            parts.push(format!(
                "signals={}",
                set.iter().cloned().collect::<Vec<_>>().join(",")
            ));
        }
        if let Some(set) = &self.types {
            let names: Vec<&str> = set.iter().map(|t| t.as_str()).collect();
            parts.push(format!("types={}", names.join(",")));
        }
        if parts.is_empty() {
            f.write_str("all")
        } else {
            f.write_str(&parts.join(" "))
        }
    }
}

/// Splits a comma-separated query value and parses each item; `None` for an absent or
/// blank value. Empty items (`a,,b`) and more than `max` items are errors.
fn list<T>(
    raw: Option<&str>,
    name: &str,
    max: usize,
    parse: impl Fn(&str) -> Result<T, String>,
) -> Result<Option<Vec<T>>, String> {
    let Some(raw) = raw.map(str::trim).filter(|v| !v.is_empty()) else {
        return Ok(None);
    };
    let items: Vec<&str> = raw.split(',').map(str::trim).collect();
    if items.len() > max {
        return Err(format!("{name}: at most {max} items"));
    }
    items
        .into_iter()
        .map(|item| {
            if item.is_empty() {
                return Err(format!("{name}: empty item in {raw:?}"));
            }
            parse(item).map_err(|e| format!("{name}: {e}"))
        })
        .collect::<Result<Vec<_>, _>>()
        .map(Some)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::model::{SignalReading, SignalValue, TenantId};

    fn update(id: &str, changed: &[&str]) -> VehicleUpdate {
        let at = chrono::Utc::now();
        VehicleUpdate {
            tenant: TenantId::default(),
            vehicle_id: VehicleId(id.into()),
            version: 1,
            last_seen: None,
            changed: changed.iter().map(|s| (*s).into()).collect(),
            signals: ["Soc", "Gear", "Speed"]
                .into_iter()
                .map(|s| {
                    let reading = SignalReading {
                        value: SignalValue::Int(1),
                        timestamp: at,
                    };
                    (s.into(), reading)
                })
                .collect(),
            ingest_received_at: at,
            fleet_events: vec![],
        }
    }

    fn parse(
        vehicles: Option<&str>,
        signals: Option<&str>,
        types: Option<&str>,
    ) -> Result<SubscriptionFilter, String> {
        SubscriptionFilter::parse(FilterQuery {
            vehicles,
            signals,
            types,
        })
    }

    #[test]
    fn vehicles() {
        let all = SubscriptionFilter::from_query(None).unwrap();
        assert!(all.matches(&update("x", &[])));
        assert_eq!(all.describe(), "all");
        assert_eq!(SubscriptionFilter::from_query(Some(" ")).unwrap(), all);
        let some = SubscriptionFilter::from_query(Some("a, b")).unwrap();
        assert!(some.matches(&update("a", &[])) && some.matches(&update("b", &[])));
        assert!(!some.matches(&update("c", &[])));
        assert_eq!(some.describe(), "vehicles=a,b");
        assert!(
            SubscriptionFilter::from_query(Some("a,,b"))
                .unwrap_err()
                .contains("vehicles")
        );
        let many = vec!["v"; MAX_FILTER_VEHICLES + 1].join(",");
        assert!(SubscriptionFilter::from_query(Some(&many)).is_err());
    }

    #[test]
    fn signals_select_by_changed_and_trim() {
        let f = parse(None, Some("Soc,Gear"), None).unwrap();
        assert!(f.matches(&update("a", &["Soc", "Speed"])));
        assert!(!f.matches(&update("a", &["Speed"])));
        let u = update("a", &["Soc", "Speed"]);
        let full: Arc<str> = serde_json::to_string(&u).unwrap().into();
        let json: serde_json::Value = serde_json::from_str(&f.render(&u, &full)).unwrap();
        assert_eq!(json["changed"], serde_json::json!(["Soc"]));
        let names: Vec<&String> = json["signals"].as_object().unwrap().keys().collect();
        assert_eq!(names, ["Gear", "Soc"]);
        assert_eq!(f.describe(), "signals=Gear,Soc");
        let unfiltered = SubscriptionFilter::default();
        assert!(
            Arc::ptr_eq(&unfiltered.render(&u, &full), &full),
            "no copy without signals="
        );
        assert!(parse(None, Some(&"s".repeat(129)), None).is_err());
    }

    #[test]
    fn types_are_checked() {
        let f = parse(Some("a"), None, Some("vehicle")).unwrap();
        assert!(f.matches(&update("a", &[])));
        assert_eq!(f.describe(), "vehicles=a types=vehicle");
        let err = parse(None, None, Some("vehicle,alert")).unwrap_err();
        assert!(
            err.contains("types") && err.contains("\"alert\"") && err.contains("known: vehicle, fleet_event"),
            "{err}"
        );
        // Only fleet events: an update without any does not match, one with events does,
        // and its vehicle event is not sent.
        let f = parse(None, Some("Soc"), Some("fleet_event")).unwrap();
        let mut u = update("a", &["Soc"]);
        assert!(!f.matches(&u));
        u.fleet_events.push(crate::fleet::FleetEvent::new(
            &u.vehicle_id,
            u.ingest_received_at,
            None,
            crate::fleet::EventKind::TripStarted { trip_id: "t".into() },
        ));
        assert!(f.matches(&u) && !f.wants_vehicle_event(&u));
        // signals= narrows vehicle events, not fleet events.
        let f = parse(None, Some("Gear"), None).unwrap();
        assert!(f.matches(&u) && !f.wants_vehicle_event(&u));
    }
}
