//! How fast the KCL-style consumer reads one kinesis-local shard, by polling (GetRecords)
//! and by enhanced fan-out (SubscribeToShard): the figure behind docs/performance.md,
//! "Kinesis consumer: records/s per shard". A measurement, not a check, so ignored:
//!
//! ```text
//! scripts/emulators start kinesis && eval "$(scripts/emulators env)"
//! cargo test --release --test kinesis_read_rate -- --ignored --nocapture --test-threads 1
//! ```
//!
//! `FLEETWIRE_MEASURE_RECORDS` (default 5,000) records of 100 vehicles go into a fresh
//! one-shard stream first (kinesis-local slows down as a stream grows, so keep it small);
//! then one lease coordinator with the default consumer settings (1,000 records per
//! GetRecords, 200 ms idle poll) routes them, and the time from its start to the last
//! record routed is the read rate, lease taking included.

mod common;

use std::path::PathBuf;
use std::sync::Arc;
use std::time::{Duration, Instant};

use common::cloud::unique;
use common::consumer::{RecordingRouter, put_numbered, wait_until};
use fleetwire::backends::embedded::{RedbLeaseStore, open_database};
use fleetwire::backends::kinesis::{KinesisConfig, KinesisStream, ReadMode, connect_record_stream};
use fleetwire_actors::consumer::{ConsumerConfig, GracefulShutdown, LeaseCoordinator};
use fleetwire_actors::ports::RecordStream;
use fleetwire_actors::registry::ActorRegistry;

const VEHICLES: usize = 100;

fn var(name: &str) -> String {
    std::env::var(name).unwrap_or_else(|_| panic!("{name} is not set: see this file's header"))
}

async fn measure(read_mode: ReadMode) {
    let records: i64 = std::env::var("FLEETWIRE_MEASURE_RECORDS")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(5_000);
    let per_vehicle = records / VEHICLES as i64;
    let fan_out = read_mode == ReadMode::EnhancedFanOut;
    let cfg = KinesisConfig {
        stream_name: unique("fw-rate"),
        endpoint_url: Some(var(if fan_out {
            "FLEETWIRE_TEST_KINESIS_TLS_ENDPOINT"
        } else {
            "FLEETWIRE_TEST_KINESIS_ENDPOINT"
        })),
        extra_ca_file: fan_out.then(|| PathBuf::from(var("FLEETWIRE_TEST_KINESIS_CA_FILE"))),
        create_if_missing: Some(1),
        static_credentials: true,
        read_mode,
        ..KinesisConfig::default()
    };
    let admin = KinesisStream::connect(&cfg).await.expect("stream");
    let stream: Arc<dyn RecordStream> = connect_record_stream(&cfg).await.expect("reader");
    let put_started = Instant::now();
    put_numbered(&*stream, VEHICLES, 0, per_vehicle).await;
    let put_secs = put_started.elapsed().as_secs_f64();

    let router = Arc::new(RecordingRouter::default());
    let leases = Arc::new(RedbLeaseStore::new(open_database(None).unwrap()).unwrap());
    let config = ConsumerConfig {
        worker_id: Some("rate".into()),
        ..ConsumerConfig::default()
    };
    let started = Instant::now();
    let (coordinator, _) = LeaseCoordinator::start(
        config,
        stream.clone(),
        leases,
        router.clone(),
        ActorRegistry::new(),
    );
    let total = (per_vehicle * VEHICLES as i64) as usize;
    wait_until(Duration::from_secs(300), "every record is routed", || async {
        router.count() >= total
    })
    .await;
    let read_secs = started.elapsed().as_secs_f64();
    coordinator.send(GracefulShutdown).await.unwrap();
    println!(
        "{read_mode:?}: {total} records put in {put_secs:.1} s ({:.0}/s); routed from one shard in \
         {read_secs:.1} s: {:.0} records/s",
        total as f64 / put_secs,
        total as f64 / read_secs
    );
    admin.delete_stream().await.expect("delete_stream");
}

#[actix_rt::test]
#[ignore = "a measurement: run with --release --ignored --nocapture"]
async fn one_shard_by_polling() {
    measure(ReadMode::Polling).await;
}

#[actix_rt::test]
#[ignore = "a measurement: run with --release --ignored --nocapture"]
async fn one_shard_by_enhanced_fan_out() {
    measure(ReadMode::EnhancedFanOut).await;
}
