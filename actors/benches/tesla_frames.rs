//! Decode + validate + route of typical `V` frames (`process_frame`), per core.
//!
//! `cargo bench -p fleetwire-actors --bench tesla_frames`; criterion prints elements/s,
//! one element being one frame.
//!
//! On a shared machine wall-clock figures move with the load. For a load-independent
//! figure, count cycles over a fixed number of frames:
//! `TESLA_FRAMES_LOOP=2000000 perf stat -e cycles,instructions target/release/deps/tesla_frames-* --bench`
//! (15-datum frames, or `TESLA_FRAMES_DATUMS`; divide by the count).

/// The fleetwire binary's allocator (src/main.rs), so allocation costs are the ones that run.
#[global_allocator]
static ALLOCATOR: tikv_jemallocator::Jemalloc = tikv_jemallocator::Jemalloc;

use std::collections::BTreeMap;
use std::hint::black_box;

use criterion::{Criterion, Throughput, criterion_group};
use fleetwire_actors::model::{Location, SignalValue};
use fleetwire_actors::tesla::{
    DataFrame, FrameContext, Topic, Verdict, ack, data_frame, encode_vehicle_data, process_frame,
};

const VIN: &str = "5YJ3E1EA7RF261422";

/// A frame with `n` datums of the mix a driving car reports.
fn v_frame(n: usize) -> Vec<u8> {
    let mix: [(&str, SignalValue); 20] = [
        ("VehicleSpeed", SignalValue::Float(64.5)),
        ("Odometer", SignalValue::Float(96510.1)),
        ("Soc", SignalValue::Float(74.137)),
        ("PackVoltage", SignalValue::Float(383.3)),
        ("PackCurrent", SignalValue::Float(-16.7)),
        (
            "Location",
            SignalValue::Location(Location {
                latitude: 37.3487,
                longitude: -121.9142,
            }),
        ),
        ("GpsHeading", SignalValue::Float(271.0)),
        ("Gear", SignalValue::Text("ShiftStateD".into())),
        ("BatteryLevel", SignalValue::Float(74.0)),
        ("EstBatteryRange", SignalValue::Float(210.4)),
        ("InsideTemp", SignalValue::Float(21.5)),
        ("OutsideTemp", SignalValue::Float(12.0)),
        ("Locked", SignalValue::Bool(true)),
        ("SentryMode", SignalValue::Bool(false)),
        ("ChargeAmps", SignalValue::Int(0)),
        ("RatedRange", SignalValue::Float(205.2)),
        ("MinutesToArrival", SignalValue::Int(17)),
        (
            "DetailedChargeState",
            SignalValue::Text("DetailedChargeStateDisconnected".into()),
        ),
        ("TpmsPressureFl", SignalValue::Float(2.9)),
        ("VehicleName", SignalValue::Text("Zephyr".into())),
    ];
    let signals: BTreeMap<String, SignalValue> =
        mix.into_iter().take(n).map(|(k, v)| (k.to_string(), v)).collect();
    let payload = encode_vehicle_data(VIN, "2026-03-01T10:00:00Z".parse().unwrap(), &signals).unwrap();
    data_frame(&DataFrame {
        txid: b"f4002180-f19b-49c1-845b-681c179b238d",
        topic: Topic::V,
        message_id: b"906b684d-5364-4ed8-abd5-dadc77d2a5a2",
        created_at: 1_772_359_200,
        vin: VIN,
        payload: &payload,
    })
}

fn bench(c: &mut Criterion) {
    let ctx = FrameContext {
        vin: VIN,
        vehicle_id: "veh-0c5e2a9f",
        topics: &Topic::ALL,
    };
    let mut group = c.benchmark_group("process_frame");
    group.throughput(Throughput::Elements(1));
    for n in [10, 15, 20] {
        let frame = v_frame(n);
        assert!(matches!(process_frame(&frame, &ctx), Verdict::Dispatch(_)));
        group.bench_function(format!("V_{n}_datums_{}_bytes", frame.len()), |b| {
            b.iter(|| process_frame(black_box(&frame), black_box(&ctx)))
        });
    }
    group.finish();
    let mut group = c.benchmark_group("reply");
    group.throughput(Throughput::Elements(1));
    group.bench_function("ack", |b| {
        b.iter(|| {
            ack(
                black_box(b"f4002180-f19b-49c1-845b-681c179b238d"),
                black_box(b"V"),
            )
        })
    });
    group.finish();
}

criterion_group!(benches, bench);

fn main() {
    if let Some(n) = std::env::var("TESLA_FRAMES_LOOP")
        .ok()
        .and_then(|n| n.parse::<u64>().ok())
    {
        let datums = std::env::var("TESLA_FRAMES_DATUMS")
            .ok()
            .and_then(|n| n.parse().ok())
            .unwrap_or(15);
        let frame = v_frame(datums);
        let ctx = FrameContext {
            vin: VIN,
            vehicle_id: "veh-0c5e2a9f",
            topics: &Topic::ALL,
        };
        let start = std::time::Instant::now();
        for _ in 0..n {
            black_box(process_frame(black_box(&frame), black_box(&ctx)));
        }
        let elapsed = start.elapsed();
        println!(
            "{n} frames in {elapsed:?}: {:.0} frames/s",
            n as f64 / elapsed.as_secs_f64()
        );
        return;
    }
    benches();
    Criterion::default().configure_from_args().final_summary();
}
