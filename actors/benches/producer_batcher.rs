//! Throughput of the producer's pure `Batcher`: offer records, form batches, apply
//! all-stored results, take the completions — everything but the stream call itself.
//!
//! `cargo bench -p fleetwire-actors --bench producer_batcher`
//!
//! - `distinct_keys`: 10 000 records of 10 000 vehicles (full 500-record batches).
//! - `hot_keys`: 10 000 records of 100 vehicles (one record per vehicle in flight, so
//!   batches of at most 100 and 100 rounds).

/// The fleetwire binary's allocator (src/main.rs), so allocation costs are the ones that run.
#[global_allocator]
static ALLOCATOR: tikv_jemallocator::Jemalloc = tikv_jemallocator::Jemalloc;

use std::hint::black_box;
use std::time::{Duration, Instant};

use bytes::Bytes;
use criterion::{BatchSize, BenchmarkId, Criterion, Throughput, criterion_group, criterion_main};
use fleetwire_actors::ports::{PutEntry, PutOutcome, SequenceNumber, ShardId};
use fleetwire_actors::producer::{Batch, Batcher, ProducerConfig};

const RECORDS: usize = 10_000;

fn entries(keys: usize) -> Vec<(usize, PutEntry)> {
    let data = Bytes::from(vec![b'x'; 240]);
    (0..RECORDS)
        .map(|i| {
            let entry = PutEntry {
                partition_key: format!("veh-{:05}", i % keys),
                data: data.clone(),
            };
            (i, entry)
        })
        .collect()
}

/// Drives one batcher until every record completed; returns the completions seen.
fn run(items: Vec<(usize, PutEntry)>) -> usize {
    let config = ProducerConfig {
        max_pending: RECORDS,
        ..ProducerConfig::default()
    };
    let mut batcher = Batcher::new(&config).with_jitter(|| 0.5);
    let start = Instant::now();
    // Past the linger, so partial batches go too.
    let now = start + Duration::from_secs(1);
    batcher.offer(items, start).expect("room for every record");
    let shard = ShardId("shardId-000000000000".to_owned());
    let mut in_flight: Vec<Batch> = Vec::new();
    let mut seq = 0u64;
    let mut completed = 0;
    loop {
        while let Some(batch) = batcher.next_batch(now) {
            in_flight.push(batch);
        }
        let Some(batch) = in_flight.pop() else { break };
        let outcomes = batch
            .entries
            .iter()
            .map(|_| {
                seq += 1;
                PutOutcome::Stored {
                    shard_id: shard.clone(),
                    sequence_number: SequenceNumber(seq.to_string()),
                }
            })
            .collect();
        batcher.on_result(batch.id, Ok(outcomes), now);
        completed += black_box(batcher.take_completions()).len();
    }
    assert_eq!(completed, RECORDS);
    completed
}

fn batcher(c: &mut Criterion) {
    let mut group = c.benchmark_group("producer_batcher");
    group.throughput(Throughput::Elements(RECORDS as u64));
    for (name, keys) in [("distinct_keys", RECORDS), ("hot_keys", 100)] {
        let items = entries(keys);
        group.bench_function(BenchmarkId::new(name, RECORDS), |b| {
            b.iter_batched(|| items.clone(), run, BatchSize::LargeInput)
        });
    }
    group.finish();
}

criterion_group!(benches, batcher);
criterion_main!(benches);
