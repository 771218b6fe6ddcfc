//! The machines together on generated tracks: what a whole drive-and-charge yields,
//! and that replays, duplicates and restarts never change it.

use proptest::prelude::*;

use super::track::drive_and_charge;
use super::*;
use crate::model::{Location, TelemetryRecord, TenantId, VehicleId};
use crate::vehicle::fakes::at;

const ORIGIN: Location = Location {
    latitude: 52.52,
    longitude: 13.405,
};

fn rules() -> FleetRules {
    let book = FleetRules::default();
    let t = TenantId::default();
    book.put_geofence(
        &t,
        Geofence {
            id: "depot".into(),
            name: "Depot".into(),
            shape: Shape::Circle {
                center: ORIGIN,
                radius_m: 1000.0,
            },
        },
    )
    .unwrap();
    book.put_alert_rule(
        &t,
        AlertRule {
            id: "low-soc".into(),
            condition: AlertCondition::LowSoc { below_percent: 20.0 },
        },
    )
    .unwrap();
    book
}

fn vehicle() -> VehicleId {
    VehicleId("v1".into())
}

fn track() -> Vec<TelemetryRecord> {
    drive_and_charge(&vehicle(), ORIGIN, at(0))
}

/// Feeds records in order; returns the events emitted.
fn feed(state: &mut FleetState, records: &[TelemetryRecord]) -> Vec<FleetEvent> {
    let rules = rules().tenant(&TenantId::default());
    let config = FleetConfig::default();
    records
        .iter()
        .flat_map(|r| state.apply(&config, &rules, &vehicle(), r, at(10_000)).events)
        .collect()
}

fn types(events: &[FleetEvent]) -> Vec<&'static str> {
    events.iter().map(|e| e.kind.name()).collect()
}

#[test]
fn a_drive_and_charge_yields_every_kind_of_event() {
    let mut s = FleetState::default();
    let events = feed(&mut s, &track());
    assert_eq!(
        types(&events),
        [
            "geofence_enter",
            "trip_started",
            "geofence_exit",
            "alert_raised",
            "trip_ended",
            "charging_started",
            "alert_cleared",
            "charging_ended"
        ]
    );
    let trip = &s.trips[0];
    assert!((trip.distance_m - 3000.0).abs() < 5.0, "{}", trip.distance_m);
    assert_eq!(
        (trip.started_at, trip.ended_at, trip.duration_secs),
        (at(5), at(305), 300)
    );
    assert!((trip.soc_used.unwrap() - 11.8).abs() < 1e-6);
    assert_eq!(trip.max_speed_kmh, 36.0);
    let session = &s.charging_sessions[0];
    assert_eq!((session.started_at, session.duration_secs), (at(365), 1205));
    // 100 kW for 1205 s.
    assert!((session.energy_added_kwh - 100.0 * 1205.0 / 3600.0).abs() < 1e-6);
    assert!((session.soc_added.unwrap() - 42.0).abs() < 1e-6);
    assert!(session.location.is_some());
    assert_eq!(s.events.len(), 8);
    assert!(s.alerts.active.is_empty());
    assert!(s.trip.open.is_none() && s.charge.open.is_none());
}

#[test]
fn processing_the_track_twice_adds_nothing() {
    let mut s = FleetState::default();
    feed(&mut s, &track());
    let before = s.clone();
    // A replay from the start (e.g. on a node whose dedupe window lost the ids) is older
    // than the clock: nothing is derived again, only counted.
    assert!(feed(&mut s, &track()).is_empty());
    assert_eq!((s.trips.clone(), s.events.clone()), (before.trips, before.events));
}

#[test]
fn a_restart_mid_track_derives_the_same_history() {
    let records = track();
    let mut straight = FleetState::default();
    let all = feed(&mut straight, &records);

    let mut first = FleetState::default();
    let mut events = feed(&mut first, &records[..40]);
    // Passivation: the state goes through the snapshot's JSON and back.
    let json = serde_json::to_string(&first).unwrap();
    let mut restored: FleetState = serde_json::from_str(&json).unwrap();
    assert_eq!(restored, first);
    events.extend(feed(&mut restored, &records[40..]));
    // JSON keeps floats to the last digit or so; ids and counts must match exactly.
    let ids = |events: &[FleetEvent]| events.iter().map(|e| e.id.clone()).collect::<Vec<_>>();
    assert_eq!(ids(&events), ids(&all));
    assert_eq!(restored.trips.len(), 1);
    assert_eq!(restored.trips[0].id, straight.trips[0].id);
    assert!((restored.trips[0].distance_m - straight.trips[0].distance_m).abs() < 1e-6);
    assert_eq!(restored.charging_sessions, straight.charging_sessions);
}

#[test]
fn bad_positions_are_counted_not_used() {
    let mut records = track();
    let mut zero = records[10].clone();
    zero.timestamp += chrono::Duration::milliseconds(500);
    zero.payload.insert(
        "Location".into(),
        crate::model::SignalValue::Location(Location {
            latitude: 0.0,
            longitude: 0.0,
        }),
    );
    let mut jump = records[12].clone();
    jump.timestamp += chrono::Duration::milliseconds(500);
    jump.payload.insert(
        "Location".into(),
        crate::model::SignalValue::Location(Location {
            latitude: 53.0,
            longitude: 13.405,
        }),
    );
    records.insert(11, zero);
    records.insert(14, jump);
    let mut s = FleetState::default();
    let events = feed(&mut s, &records);
    assert_eq!(s.filtered[&FilterReason::Zero], 1);
    assert_eq!(s.filtered[&FilterReason::Jump], 1);
    assert_eq!(events.len(), 8, "the outliers change nothing");
    assert!((s.trips[0].distance_m - 3000.0).abs() < 5.0);
}

#[test]
fn the_offline_timer_raises_once_with_a_stable_id() {
    let book = rules();
    let t = TenantId::default();
    book.put_alert_rule(
        &t,
        AlertRule {
            id: "quiet".into(),
            condition: AlertCondition::Offline { after_minutes: 5 },
        },
    )
    .unwrap();
    let rules = book.tenant(&t);
    let mut a = FleetState::default();
    assert_eq!(a.offline_deadline(&rules, at(0)), Some(at(300)));
    let mut b = a.clone();
    let raised = a.tick(&rules, &vehicle(), at(0), at(301));
    assert_eq!(types(&raised), ["alert_raised"]);
    assert!(a.tick(&rules, &vehicle(), at(0), at(900)).is_empty());
    // Another node noticing later derives the same event.
    assert_eq!(b.tick(&rules, &vehicle(), at(0), at(700))[0].id, raised[0].id);
}

proptest! {
    /// Duplicates and reordering of any records never put two items with one id into
    /// the history.
    #[test]
    fn histories_never_hold_duplicates(picks in prop::collection::vec(0usize..82, 1..200)) {
        let records = track();
        let mut s = FleetState::default();
        let shuffled: Vec<_> = picks.iter().map(|&i| records[i % records.len()].clone()).collect();
        feed(&mut s, &shuffled);
        let mut ids: Vec<&String> = s.events.iter().map(|e| &e.id).collect();
        let n = ids.len();
        ids.sort();
        ids.dedup();
        prop_assert_eq!(ids.len(), n);
        let mut trips: Vec<&String> = s.trips.iter().map(|t| &t.id).collect();
        let n = trips.len();
        trips.dedup();
        prop_assert_eq!(trips.len(), n);
    }
}
