//! How many latest-state writes per second DynamoDB Local sustains through fleetwire's
//! DynamoDB state store: the figure behind docs/performance.md, "DynamoDB Local".
//! A measurement, not a check, so it is ignored by default:
//!
//! ```text
//! scripts/emulators start dynamodb && eval "$(scripts/emulators env)"
//! cargo test --release --test dynamodb_throughput -- --ignored --nocapture
//! ```
//!
//! `FLEETWIRE_MEASURE_SECS` (default 20) sets the duration and
//! `FLEETWIRE_MEASURE_WRITERS` (default 32) the concurrent writers. Each writer owns its
//! vehicles and saves them at rising versions, as vehicle actors do; every save is the
//! store's conditional `UpdateItem` of a 14-signal snapshot.

mod common;

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use common::cloud::dynamodb_local;
use fleetwire::backends::conformance;
use fleetwire::backends::dynamodb::DynamoDbStateStore;
use fleetwire_actors::model::{Location, SignalReading, SignalValue, TenantId, VehicleSnapshot};
use fleetwire_actors::ports::{SaveOutcome, StateStore};

/// Vehicles each writer cycles through.
const VEHICLES_PER_WRITER: u64 = 50;

fn env_or(name: &str, default: u64) -> u64 {
    std::env::var(name)
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(default)
}

/// A snapshot shaped like a driving car's: 14 signals, as `hot_paths` benches.
fn car(tenant: &TenantId, vehicle: &str, version: u64) -> VehicleSnapshot {
    let now = chrono::Utc::now();
    let mut s = conformance::snapshot(tenant, vehicle, version);
    s.last_seen = Some(now);
    let f = |x: f64| SignalValue::Float(x + version as f64 / 10.0);
    let signals = [
        ("VehicleSpeed", f(64.5)),
        ("Odometer", f(96_510.1)),
        ("Soc", f(74.1)),
        ("PackVoltage", f(383.3)),
        ("PackCurrent", f(-16.7)),
        ("GpsHeading", f(271.0)),
        ("EstBatteryRange", f(210.4)),
        ("InsideTemp", f(21.5)),
        ("OutsideTemp", f(12.0)),
        ("Gear", SignalValue::Text("D".into())),
        ("Locked", SignalValue::Bool(true)),
        ("ChargeAmps", SignalValue::Int(0)),
        ("MinutesToArrival", SignalValue::Int(17)),
        (
            "Location",
            SignalValue::Location(Location {
                latitude: 37.3487,
                longitude: -121.9142,
            }),
        ),
    ];
    s.signals = signals
        .into_iter()
        .map(|(k, value)| {
            (
                k.into(),
                SignalReading {
                    value,
                    timestamp: now,
                },
            )
        })
        .collect();
    s
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "a measurement: run with --release --ignored --nocapture"]
async fn sustained_latest_state_writes() {
    let secs = env_or("FLEETWIRE_MEASURE_SECS", 20);
    let writers = env_or("FLEETWIRE_MEASURE_WRITERS", 32);
    let cfg = dynamodb_local("fw-measure");
    let store = Arc::new(DynamoDbStateStore::connect(&cfg).await.expect("vehicles table"));
    let tenant = TenantId::parse("measure").unwrap();
    let (saved, latency_us) = (Arc::new(AtomicU64::new(0)), Arc::new(AtomicU64::new(0)));
    let started = Instant::now();
    let deadline = started + Duration::from_secs(secs);
    let tasks: Vec<_> = (0..writers)
        .map(|w| {
            let (store, tenant) = (store.clone(), tenant.clone());
            let (saved, latency_us) = (saved.clone(), latency_us.clone());
            tokio::spawn(async move {
                let mut version = 0;
                // Bounded by the deadline: every round saves each of this writer's vehicles once.
                while Instant::now() < deadline {
                    version += 1;
                    for v in 0..VEHICLES_PER_WRITER {
                        let snapshot = car(&tenant, &format!("w{w}-car{v}"), version);
                        let t = Instant::now();
                        let outcome = store.save(&snapshot).await.expect("save");
                        assert_eq!(outcome, SaveOutcome::Written, "versions only rise");
                        latency_us.fetch_add(t.elapsed().as_micros() as u64, Ordering::Relaxed);
                        saved.fetch_add(1, Ordering::Relaxed);
                    }
                }
            })
        })
        .collect();
    for task in tasks {
        task.await.expect("writer");
    }
    let elapsed = started.elapsed().as_secs_f64();
    let saved = saved.load(Ordering::Relaxed);
    let mean_ms = latency_us.load(Ordering::Relaxed) as f64 / saved.max(1) as f64 / 1000.0;
    println!(
        "{saved} conditional latest-state writes in {elapsed:.1} s by {writers} writers: \
         {:.0} writes/s, mean {mean_ms:.1} ms per write",
        saved as f64 / elapsed
    );
    store.delete_table().await.expect("delete_table");
    assert!(saved > 0);
}
