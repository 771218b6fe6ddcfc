//! The per-record hot paths after ingest: routing a record to its shard, applying it to a
//! vehicle's state, and serializing the resulting update once for every SSE subscriber.
//!
//! `cargo bench -p fleetwire-actors --bench hot_paths`
//!
//! - `routing/hash_key`: MD5 of a vehicle id into the 128-bit key space.
//! - `routing/shard_for_key/{4,64}`: hash plus the scan for the owning open shard.
//! - `state_apply/{new_signals,stale}`: `VehicleState::apply` of a 14-signal record that
//!   changes every signal, and of a replayed (duplicate) one.
//! - `sse_serialize/full_state`: `HubEvent::new`, the one JSON serialization of a
//!   14-signal update that the hub shares between all subscribers.

/// The fleetwire binary's allocator (src/main.rs), so allocation costs are the ones that run.
#[global_allocator]
static ALLOCATOR: tikv_jemallocator::Jemalloc = tikv_jemallocator::Jemalloc;

use std::collections::BTreeMap;
use std::hint::black_box;
use std::sync::Arc;

use chrono::{DateTime, Duration, Utc};
use criterion::{BatchSize, BenchmarkId, Criterion, Throughput, criterion_group, criterion_main};
use fleetwire_actors::model::{
    Location, SignalReading, SignalValue, Signals, TelemetryRecord, TenantId, VehicleId, VehicleUpdate,
};
use fleetwire_actors::ports::stream::{even_hash_ranges, hash_key, shard_for_key};
use fleetwire_actors::ports::{EventId, ShardDescription, ShardId};
use fleetwire_actors::subscriber::HubEvent;
use fleetwire_actors::vehicle::VehicleState;

/// A realistic full payload: the simulated fleet's signals.
fn payload(n: i64) -> BTreeMap<String, SignalValue> {
    let f = n as f64;
    let mut p = BTreeMap::new();
    for (name, value) in [
        ("VehicleSpeed", SignalValue::Float(42.0 + f * 0.1)),
        ("GpsHeading", SignalValue::Float(181.5)),
        ("Gear", SignalValue::Text("D".into())),
        ("Odometer", SignalValue::Float(12_345.678 + f)),
        ("Soc", SignalValue::Float(81.25)),
        ("BatteryLevel", SignalValue::Float(81.25)),
        ("EstBatteryRange", SignalValue::Float(312.4)),
        (
            "DetailedChargeState",
            SignalValue::Text("DetailedChargeStateDisconnected".into()),
        ),
        ("ACChargingPower", SignalValue::Float(0.0)),
        ("DCChargingPower", SignalValue::Float(0.0)),
        ("InsideTemp", SignalValue::Float(21.5)),
        ("OutsideTemp", SignalValue::Float(8.5)),
        ("lt_seq", SignalValue::Int(n)),
    ] {
        p.insert(name.to_owned(), value);
    }
    p.insert(
        "Location".to_owned(),
        SignalValue::Location(Location {
            latitude: 52.52,
            longitude: 13.405,
        }),
    );
    p
}

fn at(n: i64) -> DateTime<Utc> {
    DateTime::<Utc>::from_timestamp(1_767_225_600, 0).expect("valid time") + Duration::milliseconds(n)
}

fn record(n: i64) -> TelemetryRecord {
    TelemetryRecord {
        timestamp: at(n),
        vehicle_id: VehicleId("LOADVIN00042".into()),
        payload: payload(n),
        can_id: None,
        ingest_received_at: at(n),
    }
}

fn routing(c: &mut Criterion) {
    let keys: Vec<String> = (0..1000).map(|i| format!("SIMVIN{i:05}")).collect();
    let mut g = c.benchmark_group("routing");
    g.throughput(Throughput::Elements(keys.len() as u64));
    g.bench_function("hash_key", |b| {
        b.iter(|| keys.iter().map(|k| hash_key(k)).fold(0u128, |a, h| a ^ h))
    });
    for shards in [4u32, 64] {
        let table: Vec<ShardDescription> = even_hash_ranges(shards)
            .into_iter()
            .enumerate()
            .map(|(i, (start, end))| ShardDescription {
                shard_id: ShardId(format!("shardId-{i:012}")),
                parent_shard_ids: Vec::new(),
                starting_hash_key: start,
                ending_hash_key: end,
                closed: false,
            })
            .collect();
        g.bench_with_input(BenchmarkId::new("shard_for_key", shards), &table, |b, table| {
            b.iter(|| keys.iter().filter_map(|k| shard_for_key(k, table)).count())
        });
    }
    g.finish();
}

fn state_apply(c: &mut Criterion) {
    let records: Vec<TelemetryRecord> = (1..=1000).map(record).collect();
    let mut g = c.benchmark_group("state_apply");
    g.throughput(Throughput::Elements(records.len() as u64));
    g.bench_function("new_signals", |b| {
        b.iter_batched(
            || VehicleState::new(TenantId::default(), VehicleId("LOADVIN00042".into()), 64),
            |mut state| {
                for r in &records {
                    black_box(state.apply(r));
                }
                state
            },
            BatchSize::SmallInput,
        )
    });
    g.bench_function("stale", |b| {
        let mut state = VehicleState::new(TenantId::default(), VehicleId("LOADVIN00042".into()), 64);
        state.apply(&record(5000));
        // Older records whose ids are not in the window: every signal is checked and kept.
        b.iter(|| {
            for r in &records {
                black_box(state.apply(r));
            }
        })
    });
    g.finish();
}

fn sse_serialize(c: &mut Criterion) {
    let signals: Signals = payload(7)
        .into_iter()
        .map(|(k, value)| {
            (
                k.into(),
                SignalReading {
                    value,
                    timestamp: at(7),
                },
            )
        })
        .collect();
    let update = Arc::new(VehicleUpdate {
        tenant: TenantId::default(),
        vehicle_id: VehicleId("LOADVIN00042".into()),
        version: 7,
        last_seen: Some(at(7)),
        changed: vec!["Odometer".into(), "VehicleSpeed".into(), "lt_seq".into()],
        signals,
        ingest_received_at: at(7),
        fleet_events: Vec::new(),
    });
    let mut g = c.benchmark_group("sse_serialize");
    g.throughput(Throughput::Elements(1));
    g.bench_function("full_state", |b| {
        b.iter(|| HubEvent::new(EventId::new(1_767_225_600_000, 3), update.clone()))
    });
    g.finish();
}

criterion_group!(benches, routing, state_apply, sse_serialize);
criterion_main!(benches);
