use std::collections::HashSet;

use chrono::{DateTime, Duration, Utc};
use serde_json::Value;

use super::*;

fn start() -> DateTime<Utc> {
    "2026-04-01T06:00:00Z".parse().unwrap()
}

fn config(vehicles: usize, seed: u64) -> FleetConfig {
    FleetConfig {
        vehicles,
        seed,
        ..FleetConfig::default()
    }
}

fn num(r: &IngestRecord, signal: &str) -> f64 {
    r.payload[signal]
        .as_f64()
        .unwrap_or_else(|| panic!("{signal} is not a number in {r:?}"))
}

fn text<'a>(r: &'a IngestRecord, signal: &str) -> &'a str {
    r.payload[signal]
        .as_str()
        .unwrap_or_else(|| panic!("{signal} is not text in {r:?}"))
}

/// Position of a record as km east/north of the centre.
fn offset_km(fleet: &Fleet, r: &IngestRecord) -> (f64, f64) {
    let loc = &r.payload["Location"];
    let (lat, lon) = (
        loc["latitude"].as_f64().unwrap(),
        loc["longitude"].as_f64().unwrap(),
    );
    let c = &fleet.config;
    (
        (lon - c.center_longitude) / fleet.projection.deg_per_km_lon,
        (lat - c.center_latitude) / fleet.projection.deg_per_km_lat,
    )
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
enum State {
    Parked,
    Driving,
    Charging,
}

fn state(r: &IngestRecord) -> State {
    if text(r, "DetailedChargeState") == "DetailedChargeStateCharging" {
        State::Charging
    } else if matches!(text(r, "Gear"), "D" | "R") {
        State::Driving
    } else {
        State::Parked
    }
}

/// Ticks `fleet` `steps` times `step_s` apart from [`start`], handing each batch to
/// `check` with every payload merged over the vehicle's earlier ones, i.e. the full
/// latest state a consumer keeping the newest value per signal would have.
fn run(fleet: &mut Fleet, step_s: i64, steps: usize, mut check: impl FnMut(&Fleet, &[IngestRecord])) {
    let mut merged: Vec<IngestRecord> = Vec::new();
    for n in 0..=steps {
        let records = fleet.tick(start() + Duration::seconds(step_s * n as i64));
        if merged.is_empty() {
            merged = records;
        } else {
            for (m, r) in merged.iter_mut().zip(records) {
                m.timestamp = r.timestamp;
                m.payload.extend(r.payload);
            }
        }
        check(fleet, &merged);
    }
}

#[test]
fn same_seed_gives_the_same_records_and_another_seed_does_not() {
    let (mut a, mut b, mut c) = (
        Fleet::new(config(30, 7)),
        Fleet::new(config(30, 7)),
        Fleet::new(config(30, 8)),
    );
    let mut differs = false;
    for n in 0..300 {
        let now = start() + Duration::seconds(n);
        let (ra, rb, rc) = (a.tick(now), b.tick(now), c.tick(now));
        assert_eq!(ra, rb, "tick {n}");
        differs |= ra != rc;
    }
    assert!(differs, "seed 8 produced exactly the fleet of seed 7");
}

#[test]
fn ids_are_prefixed_and_zero_padded_to_the_fleet_size() {
    let fleet = Fleet::new(config(200, 1));
    let ids = fleet.vehicle_ids();
    assert_eq!(
        (ids.len(), ids[0].as_str(), ids[199].as_str()),
        (200, "sim-0001", "sim-0200")
    );
    let big = Fleet::new(FleetConfig {
        vehicles: 12_345,
        id_prefix: "car:".into(),
        ..FleetConfig::default()
    });
    assert_eq!(big.vehicle_ids()[41], "car:00042");
    assert!(Fleet::new(config(0, 1)).tick(start()).is_empty());
}

#[test]
fn config_uses_defaults_and_rejects_unknown_fields() {
    let c: FleetConfig = serde_json::from_str(r#"{"vehicles": 5}"#).unwrap();
    assert_eq!(
        c,
        FleetConfig {
            vehicles: 5,
            ..FleetConfig::default()
        }
    );
    assert!(serde_json::from_str::<FleetConfig>(r#"{"vehicle": 5}"#).is_err());
}

/// Checks one record's JSON against the seed data contract; returns its signal names.
fn check_contract(r: &IngestRecord) -> Vec<String> {
    let json = serde_json::to_value(r).unwrap();
    let obj = json.as_object().unwrap();
    assert_eq!(
        obj.keys().collect::<Vec<_>>(),
        ["payload", "timestamp", "vehicle_id"]
    );
    DateTime::parse_from_rfc3339(obj["timestamp"].as_str().unwrap()).unwrap();
    let payload = obj["payload"].as_object().unwrap();
    assert!(!payload.is_empty(), "ingest rejects empty payloads: {r:?}");
    for (name, value) in payload {
        let ok = match name.as_str() {
            "Location" => {
                let loc = value.as_object().unwrap();
                loc.keys().collect::<Vec<_>>() == ["latitude", "longitude"] && loc.values().all(Value::is_f64)
            }
            "Gear" => matches!(value.as_str(), Some("P" | "D" | "R")),
            "DetailedChargeState" => matches!(
                value.as_str(),
                Some(
                    "DetailedChargeStateDisconnected"
                        | "DetailedChargeStateCharging"
                        | "DetailedChargeStateComplete"
                )
            ),
            "VehicleSpeed" | "GpsHeading" | "Odometer" | "Soc" | "BatteryLevel" | "EstBatteryRange"
            | "ACChargingPower" | "DCChargingPower" | "InsideTemp" | "OutsideTemp" => value.is_f64(),
            _ => false,
        };
        assert!(ok, "{name} = {value:?} in {r:?}");
    }
    let names = payload.keys().cloned().collect();
    let back: IngestRecord = serde_json::from_value(json).unwrap();
    assert_eq!(&back, r);
    names
}

#[test]
fn records_follow_the_contract_and_resend_every_signal_each_minute() {
    let mut fleet = Fleet::new(config(50, 3));
    let ids = fleet.vehicle_ids();
    // Per vehicle: the tick each signal was last sent.
    let mut last_sent: Vec<std::collections::HashMap<String, i64>> = vec![Default::default(); 50];
    let mut small = 0;
    for n in 0..=600 {
        let records = fleet.tick(start() + Duration::seconds(n));
        assert_eq!(
            records.iter().map(|r| &r.vehicle_id).collect::<Vec<_>>(),
            ids.iter().collect::<Vec<_>>()
        );
        for (r, sent) in records.iter().zip(&mut last_sent) {
            let names = check_contract(r);
            if n == 0 {
                assert_eq!(
                    names.len(),
                    13,
                    "first record of {} is not complete: {names:?}",
                    r.vehicle_id
                );
            }
            small += usize::from(names.len() <= 3);
            for name in names {
                sent.insert(name, n);
            }
            for (name, at) in sent.iter() {
                assert!(
                    n - at <= 60,
                    "{name} of {} not sent for {} s",
                    r.vehicle_id,
                    n - at
                );
            }
        }
    }
    assert!(
        small > 50 * 600 / 4,
        "idle vehicles repeat themselves: only {small} small records"
    );
}

/// Per-vehicle bookkeeping across a run.
#[derive(Default)]
struct Seen {
    states: HashSet<State>,
    last: Option<IngestRecord>,
}

#[test]
fn a_simulated_day_keeps_every_invariant() {
    let mut fleet = Fleet::new(config(12, 11));
    let radius = fleet.config.radius_km;
    let block = fleet.grid.block_km;
    let mut seen: Vec<Seen> = (0..12).map(|_| Seen::default()).collect();
    // Energy (from the range estimate, which is linear in pack energy) over distance
    // while driving, and SOC gained while charging.
    let (mut drive_kwh, mut drive_km, mut charge_gain) = (0.0, 0.0, 0.0);
    run(&mut fleet, 5, 24 * 720, |fleet, records| {
        for (r, seen) in records.iter().zip(&mut seen) {
            let (x, y) = offset_km(fleet, r);
            assert!(
                x.hypot(y) <= radius + 0.05,
                "{} left the area: {x:.3},{y:.3}",
                r.vehicle_id
            );
            let on_street = |v: f64| ((v / block) - (v / block).round()).abs() * block < 0.002;
            assert!(
                on_street(x) || on_street(y),
                "{} is off the street grid: {x:.4},{y:.4}",
                r.vehicle_id
            );
            let speed = num(r, "VehicleSpeed");
            assert!((0.0..=130.0).contains(&speed), "speed {speed}");
            let soc = num(r, "Soc");
            assert!((0.0..=100.0).contains(&soc), "soc {soc}");
            assert_eq!(soc, num(r, "BatteryLevel"));
            let st = state(r);
            if st != State::Driving {
                assert_eq!(speed, 0.0, "{r:?}");
            }
            if let Some(prev) = &seen.last {
                let distance = num(r, "Odometer") - num(prev, "Odometer");
                assert!(distance >= 0.0, "odometer went back: {prev:?} -> {r:?}");
                assert!(distance <= 5.0 * 130.0 / 3600.0 + 1e-3, "{distance} km in 5 s");
                let energy = (num(prev, "EstBatteryRange") - num(r, "EstBatteryRange")) * 0.16;
                match (state(prev), st) {
                    (State::Driving, State::Driving) => {
                        drive_kwh += energy;
                        drive_km += distance;
                    }
                    (State::Charging, State::Charging) => {
                        assert!(
                            num(r, "Soc") >= num(prev, "Soc"),
                            "SOC fell while charging: {prev:?} -> {r:?}"
                        );
                        charge_gain += num(r, "Soc") - num(prev, "Soc");
                        let power = num(r, "ACChargingPower") + num(r, "DCChargingPower");
                        assert!(power > 0.0 && power <= 150.0, "charging at {power} kW");
                    }
                    (State::Parked, State::Parked) => assert_eq!(distance, 0.0),
                    _ => {}
                }
            }
            seen.states.insert(st);
            seen.last = Some(r.clone());
        }
    });
    let all: HashSet<State> = seen.iter().flat_map(|s| s.states.iter().copied()).collect();
    assert_eq!(all.len(), 3, "states seen in a day: {all:?}");
    assert!(
        seen.iter().any(|s| s.states.len() == 3),
        "no vehicle parked, drove and charged in a day"
    );
    let per_100km = drive_kwh / drive_km * 100.0;
    assert!(
        drive_km > 12.0 * 50.0,
        "only {drive_km:.0} km driven by 12 vehicles in a day"
    );
    assert!(
        (12.0..25.0).contains(&per_100km),
        "consumption {per_100km:.1} kWh/100 km"
    );
    assert!(
        charge_gain > 50.0,
        "charging only added {charge_gain:.1} % SOC in total"
    );
}

#[test]
fn driving_is_smooth_and_stops_happen() {
    let mut fleet = Fleet::new(config(40, 5));
    let mut last: Vec<Option<IngestRecord>> = vec![None; 40];
    let (mut stops, mut max_speed) = (0, 0.0f64);
    run(&mut fleet, 1, 1800, |_, records| {
        for (r, last) in records.iter().zip(&mut last) {
            let speed = num(r, "VehicleSpeed");
            max_speed = max_speed.max(speed);
            if let Some(prev) = last.as_ref() {
                let dv = (speed - num(prev, "VehicleSpeed")).abs() / 3.6;
                assert!(dv <= 4.5, "{dv:.1} m/s² between {prev:?} and {r:?}");
                if state(r) == State::Driving && speed == 0.0 && num(prev, "VehicleSpeed") > 0.0 {
                    stops += 1;
                }
                if state(prev) == State::Driving && state(r) == State::Driving && speed > 0.0 {
                    let heading = num(r, "GpsHeading");
                    assert!([0.0, 90.0, 180.0, 270.0].contains(&heading), "heading {heading}");
                }
            }
            *last = Some(r.clone());
        }
    });
    assert!(
        stops > 20,
        "only {stops} stops at crossings in half an hour of 40 vehicles"
    );
    assert!(
        max_speed > 70.0,
        "nobody used a fast street: max {max_speed} km/h"
    );
}

#[test]
fn charging_raises_soc_over_a_few_hours_with_a_dc_taper() {
    let mut fleet = Fleet::new(config(100, 9));
    let mut first_soc: Vec<Option<f64>> = vec![None; 100];
    let (mut rose, mut dc_below_80, mut dc_above_85) = (0, 0.0f64, f64::INFINITY);
    run(&mut fleet, 60, 180, |_, records| {
        for (r, first) in records.iter().zip(&mut first_soc) {
            if state(r) != State::Charging {
                continue;
            }
            let soc = num(r, "Soc");
            match first {
                None => *first = Some(soc),
                Some(s0) if soc > *s0 + 5.0 => {
                    rose += 1;
                    *first = Some(f64::INFINITY);
                }
                _ => {}
            }
            let dc = num(r, "DCChargingPower");
            if dc > 0.0 && soc < 78.0 {
                dc_below_80 = dc_below_80.max(dc);
            } else if dc > 0.0 && soc > 85.0 {
                dc_above_85 = dc_above_85.min(dc);
            }
            assert!(num(r, "ACChargingPower") <= 11.0);
        }
    });
    assert!(rose >= 10, "only {rose} charging vehicles gained 5 % SOC in 3 h");
    assert!(dc_below_80 >= 100.0, "DC peak {dc_below_80} kW");
    if dc_above_85.is_finite() {
        assert!(
            dc_above_85 < dc_below_80 * 0.85,
            "no taper: {dc_above_85} kW above 85 %"
        );
    }
}

#[test]
fn odd_configs_are_clamped_not_broken() {
    for radius in [0.0, -3.0, f64::NAN, 0.3] {
        let mut fleet = Fleet::new(FleetConfig {
            vehicles: 5,
            radius_km: radius,
            ..FleetConfig::default()
        });
        let r = fleet.config().radius_km;
        run(&mut fleet, 10, 200, |fleet, records| {
            for rec in records {
                let (x, y) = offset_km(fleet, rec);
                assert!(x.hypot(y) <= r + 0.01, "radius {radius}: {x},{y}");
            }
        });
    }
}

#[test]
fn large_steps_and_clock_going_back_are_handled() {
    let mut fleet = Fleet::new(config(20, 2));
    fleet.tick(start());
    let after_day = fleet.tick(start() + Duration::days(1));
    let back = fleet.tick(start());
    for (a, b) in after_day.iter().zip(&back) {
        assert_eq!(
            a.payload.len(),
            13,
            "a day later every signal is due for a resend"
        );
        for (signal, value) in b.payload.iter().filter(|(s, _)| *s != "OutsideTemp") {
            assert_eq!(&a.payload[signal], value, "{signal} of {} moved", a.vehicle_id);
        }
        for signal in ["Location", "Odometer", "VehicleSpeed"] {
            assert!(
                !b.payload.contains_key(signal),
                "{signal} of {} re-sent unchanged",
                a.vehicle_id
            );
        }
    }
    assert!(
        after_day.iter().any(|r| state(r) == State::Driving),
        "nobody drives after a 1-day step"
    );
}

/// 10,000 vehicles must tick well under 50 ms in release:
/// `cargo test --release -p fleetwire-loadtest -- --ignored --nocapture`.
#[test]
#[ignore = "timing; run in release"]
fn ten_thousand_vehicles_tick_quickly() {
    let mut fleet = Fleet::new(config(10_000, 1));
    fleet.tick(start());
    let mut times = Vec::new();
    for n in 1..=120 {
        let t = std::time::Instant::now();
        let records = fleet.tick(start() + Duration::seconds(n));
        times.push(t.elapsed());
        assert_eq!(records.len(), 10_000);
    }
    times.sort();
    let (median, worst) = (times[times.len() / 2], times[times.len() - 1]);
    println!("10,000 vehicles: median tick {median:?}, worst {worst:?}");
    assert!(median < std::time::Duration::from_millis(25), "{median:?}");
}
