//! Heap per idle vehicle actor, measured with dhat (the allocator records every live
//! block with its call stack): the attribution behind docs/performance.md, "Memory per
//! idle vehicle actor". A measurement, not a check, so ignored:
//!
//! ```text
//! cargo test --release --test idle_actor_memory -- --ignored --nocapture
//! ```
//!
//! A node on embedded backends (in memory) gets one 14-signal record for each of
//! `FLEETWIRE_MEASURE_VEHICLES` (default 2,000) vehicles; once every vehicle actor exists
//! and its deferred writes are flushed, the live heap minus the heap before the records,
//! divided by the vehicles, is the heap per idle actor (redb's page cache of the stored
//! data included, as in the node's resident memory). dhat's profile, written at that
//! moment (`target/dhat-idle-actors.json`, "t-end"; for dhat's viewer or a script), says
//! which call sites hold it.

mod common;

use std::time::Duration;

use common::{TestNode, test_config};
use serde_json::{Value, json};

#[global_allocator]
static ALLOC: dhat::Alloc = dhat::Alloc;

/// A driving car's 14 signals, as the `steady` scenario sends them.
fn record(vehicle: usize) -> Value {
    json!({
        "timestamp": "2026-03-01T10:00:00Z",
        "vehicle_id": format!("mem-{vehicle}"),
        "payload": {
            "VehicleSpeed": 64.5, "Odometer": 96510.1, "Soc": 74.1, "PackVoltage": 383.3,
            "PackCurrent": -16.7, "GpsHeading": 271.0, "EstBatteryRange": 210.4,
            "InsideTemp": 21.5, "OutsideTemp": 12.0, "Gear": "D", "Locked": true,
            "ChargeAmps": 0, "MinutesToArrival": 17,
            "Location": {"latitude": 37.3487, "longitude": -121.9142}
        }
    })
}

#[actix_rt::test]
#[ignore = "a measurement: run with --release --ignored --nocapture"]
async fn heap_per_idle_vehicle_actor() {
    let vehicles: usize = std::env::var("FLEETWIRE_MEASURE_VEHICLES")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(2_000);
    let profiler = dhat::Profiler::builder()
        .file_name(concat!(env!("CARGO_TARGET_TMPDIR"), "/../dhat-idle-actors.json"))
        .build();
    // On files, as a node runs: an in-memory database would count the stored data as heap.
    let dir = tempfile::tempdir().unwrap();
    let node = TestNode::start(test_config(Some(dir.path().to_owned()))).await;
    // Warm up the paths every record takes (pools, caches, metric handles) on one vehicle.
    assert_eq!(node.ingest(&json!([record(usize::MAX)])).await.0, 200);
    common::consumer::wait_until(Duration::from_secs(60), "the warm-up vehicle", || async {
        node.actor_count("vehicle_state").await == 1
    })
    .await;
    tokio::time::sleep(Duration::from_secs(3)).await;
    let before = dhat::HeapStats::get();

    for chunk in (0..vehicles).collect::<Vec<_>>().chunks(100) {
        let batch: Vec<Value> = chunk.iter().map(|&v| record(v)).collect();
        assert_eq!(node.ingest(&Value::Array(batch)).await.0, 200);
    }
    let expected = vehicles as u64 + 1;
    common::consumer::wait_until(Duration::from_secs(120), "every vehicle actor exists", || async {
        node.actor_count("vehicle_state").await == expected
    })
    .await;
    // Deferred state writes (persist_interval_ms, 1 s) and open history buckets
    // (idle_close_secs, 1 s in tests) are flushed by then: the actors are idle.
    tokio::time::sleep(Duration::from_secs(5)).await;
    let after = dhat::HeapStats::get();
    let bytes = after.curr_bytes as f64 - before.curr_bytes as f64;
    let blocks = after.curr_blocks as f64 - before.curr_blocks as f64;
    println!(
        "{vehicles} idle vehicle actors: {:.0} heap bytes and {:.1} blocks each ({:.1} MiB in all)",
        bytes / vehicles as f64,
        blocks / vehicles as f64,
        bytes / 1_048_576.0
    );
    // The profile's "t-end" is now: the idle actors, not the shutdown.
    drop(profiler);
    node.shutdown(Duration::from_secs(10)).await;
}
