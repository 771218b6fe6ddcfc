//! The batching producer on the real embedded stream: concurrent producers store every
//! record exactly once and in per-key order; the stream's own throttling (a shard at its
//! memory bound) is retried until retention frees space; exhausted retries become dead
//! letters with their reason; a full producer refuses at once, and HTTP ingest turns that
//! into 503 + `Retry-After`.
//!
//! Faults are real where the embedded stream has them (`max_bytes_per_shard` throttles,
//! retention frees space under a test clock). Request-level failures, which it never
//! produces, are injected by a thin wrapper around the real stream.

mod common;

use std::collections::{HashMap, HashSet};
use std::sync::atomic::{AtomicI64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use async_trait::async_trait;
use bytes::Bytes;
use chrono::{DateTime, Utc};
use serde_json::Value;

use common::{TestNode, by_reason, eventually, record, test_config};
use fleetwire::backends::conformance::read_shard;
use fleetwire::backends::embedded::{EmbeddedStream, EmbeddedStreamConfig, InMemoryDeadLetters};
use fleetwire_actors::ports::{
    GetRecordsOutput, PutEntry, PutOutcome, RecordStream, SequenceNumber, ShardDescription, ShardId,
    ShardIterator, StartPosition, StreamError, StreamRecord,
};
use fleetwire_actors::producer::{
    DeadLetterReason, ProduceOutcome, Producer, ProducerConfig, ProducerHandle,
};

// ---- helpers -------------------------------------------------------------------------

fn entry(key: &str, data: impl Into<Bytes>) -> PutEntry {
    PutEntry {
        partition_key: key.to_owned(),
        data: data.into(),
    }
}

fn text(data: &Bytes) -> String {
    String::from_utf8(data.to_vec()).unwrap()
}

fn memory_stream(shards: u32, max_bytes_per_shard: u64) -> EmbeddedStream {
    let cfg = EmbeddedStreamConfig {
        shards,
        max_bytes_per_shard,
        persist: false,
        ..EmbeddedStreamConfig::default()
    };
    EmbeddedStream::open(&cfg, None).unwrap()
}

/// Fast retries for tests: small backoff, generous limits unless a test lowers them.
fn fast_config() -> ProducerConfig {
    ProducerConfig {
        linger_ms: 1,
        backoff_base_ms: 2,
        backoff_max_ms: 10,
        max_attempts: 10_000,
        max_retry_ms: 60_000,
        ..ProducerConfig::default()
    }
}

/// Every record of every shard, oldest first per shard.
async fn read_all(stream: &dyn RecordStream) -> Vec<StreamRecord> {
    let mut all = Vec::new();
    for shard in stream.list_shards().await.unwrap() {
        let read = read_shard(stream, &shard.shard_id, StartPosition::TrimHorizon, 10_000).await;
        all.extend(read.records);
    }
    all
}

/// One `put_records` call as the stream saw it.
#[derive(Debug, Clone)]
struct Call {
    entries: Vec<(String, String)>,
    result: Result<Vec<PutOutcome>, StreamError>,
}

/// A real stream seen through a recorder, optionally failing the first calls as a whole
/// (`Unavailable`, what a dropped connection or a 5xx looks like).
struct Recorded {
    inner: Arc<dyn RecordStream>,
    calls: Mutex<Vec<Call>>,
    /// Keep every call (off for throughput runs: only count them).
    keep_calls: bool,
    call_count: AtomicUsize,
    fail_first_calls: AtomicUsize,
}

impl Recorded {
    fn new(inner: Arc<dyn RecordStream>) -> Arc<Self> {
        Arc::new(Self {
            inner,
            calls: Mutex::new(Vec::new()),
            keep_calls: true,
            call_count: AtomicUsize::new(0),
            fail_first_calls: AtomicUsize::new(0),
        })
    }

    /// Counts calls without keeping them.
    fn counting(inner: Arc<dyn RecordStream>) -> Arc<Self> {
        Arc::new(Self {
            inner,
            calls: Mutex::new(Vec::new()),
            keep_calls: false,
            call_count: AtomicUsize::new(0),
            fail_first_calls: AtomicUsize::new(0),
        })
    }

    fn calls(&self) -> Vec<Call> {
        self.calls.lock().unwrap().clone()
    }

    /// How often an entry with this data was answered `Throttled`.
    fn throttled(&self, data: &str) -> usize {
        self.calls()
            .iter()
            .flat_map(|c| match &c.result {
                Ok(outcomes) => c.entries.iter().zip(outcomes).collect::<Vec<_>>(),
                Err(_) => Vec::new(),
            })
            .filter(|((_, d), o)| {
                d == data
                    && matches!(
                        o,
                        PutOutcome::Failed {
                            error: StreamError::Throttled(_)
                        }
                    )
            })
            .count()
    }
}

#[async_trait]
impl RecordStream for Recorded {
    async fn list_shards(&self) -> Result<Vec<ShardDescription>, StreamError> {
        self.inner.list_shards().await
    }

    async fn put_records(&self, entries: Vec<PutEntry>) -> Result<Vec<PutOutcome>, StreamError> {
        self.call_count.fetch_add(1, Ordering::Relaxed);
        if !self.keep_calls {
            return self.inner.put_records(entries).await;
        }
        let seen = entries
            .iter()
            .map(|e| (e.partition_key.clone(), text(&e.data)))
            .collect();
        let fail = self
            .fail_first_calls
            .fetch_update(Ordering::SeqCst, Ordering::SeqCst, |n| n.checked_sub(1))
            .is_ok();
        let result = if fail {
            Err(StreamError::Unavailable("injected: connection reset".into()))
        } else {
            self.inner.put_records(entries).await
        };
        self.calls.lock().unwrap().push(Call {
            entries: seen,
            result: result.clone(),
        });
        result
    }

    async fn get_shard_iterator(
        &self,
        shard_id: &ShardId,
        position: StartPosition,
    ) -> Result<ShardIterator, StreamError> {
        self.inner.get_shard_iterator(shard_id, position).await
    }

    async fn get_records(
        &self,
        iterator: &ShardIterator,
        limit: usize,
    ) -> Result<GetRecordsOutput, StreamError> {
        self.inner.get_records(iterator, limit).await
    }

    async fn ping(&self) -> Result<(), StreamError> {
        self.inner.ping().await
    }
}

fn start(
    config: &ProducerConfig,
    stream: Arc<dyn RecordStream>,
) -> (ProducerHandle, Arc<InMemoryDeadLetters>) {
    let dead = Arc::new(InMemoryDeadLetters::new(100));
    (Producer::start(config, stream, dead.clone()), dead)
}

fn stored(outcome: &ProduceOutcome) -> (ShardId, SequenceNumber) {
    match outcome {
        ProduceOutcome::Stored {
            shard_id,
            sequence_number,
        } => (shard_id.clone(), sequence_number.clone()),
        other => panic!("expected Stored, got {other:?}"),
    }
}

// ---- tests ---------------------------------------------------------------------------

/// Eight callers share ten keys; each sends its requests one after the other, four records
/// per key per request. Every record is on the stream once, and per key each caller's
/// records are in the order it sent them.
#[actix_rt::test]
async fn concurrent_producers_store_every_record_once_in_per_key_order() {
    let stream: Arc<dyn RecordStream> = Arc::new(memory_stream(4, 64 * 1024 * 1024));
    let (producer, dead) = start(&ProducerConfig::default(), stream.clone());
    let (tasks, requests, per_request) = (8, 25, 40);
    let mut handles = Vec::new();
    for task in 0..tasks {
        let producer = producer.clone();
        handles.push(actix_rt::spawn(async move {
            for req in 0..requests {
                let entries: Vec<PutEntry> = (0..per_request)
                    .map(|i| entry(&format!("veh-{}", i % 10), format!("{task}:{req}:{i}")))
                    .collect();
                let outcomes = producer.produce(entries).await.expect("never full here");
                assert_eq!(outcomes.len(), per_request);
                for outcome in &outcomes {
                    stored(outcome);
                }
            }
        }));
    }
    for h in handles {
        h.await.unwrap();
    }

    let records = read_all(stream.as_ref()).await;
    assert_eq!(records.len(), tasks * requests * per_request);
    let unique: HashSet<Bytes> = records.iter().map(|r| r.data.clone()).collect();
    assert_eq!(unique.len(), records.len(), "no record stored twice");
    // Per key and caller: (request, index) strictly increasing in stream order.
    let mut last: HashMap<(String, usize), (usize, usize)> = HashMap::new();
    for r in &records {
        let parts: Vec<usize> = text(&r.data).split(':').map(|p| p.parse().unwrap()).collect();
        let (task, pos) = (parts[0], (parts[1], parts[2]));
        if let Some(prev) = last.insert((r.partition_key.clone(), task), pos) {
            assert!(
                prev < pos,
                "key {} caller {task}: {prev:?} before {pos:?}",
                r.partition_key
            );
        }
    }
    assert_eq!(dead.summary().total, 0);
    producer.close(Duration::from_secs(5)).await;
    assert!(!producer.is_running());
}

/// A shard at its memory bound throttles (a real `Throttled` from the embedded stream).
/// Key `b`'s small records fit and go on; key `a`'s large first record does not, so it is
/// retried while `a`'s later records wait behind it. When retention frees the shard, `a`'s
/// records are stored, in order.
#[actix_rt::test]
async fn throttled_records_are_retried_until_the_stream_frees_space_and_keep_their_order() {
    let start_ms = Utc::now().timestamp_millis();
    let clock = Arc::new(AtomicI64::new(start_ms));
    let c = clock.clone();
    let cfg = EmbeddedStreamConfig {
        shards: 1,
        retention_secs: 60,
        max_bytes_per_shard: 5000,
        persist: false,
    };
    let embedded = EmbeddedStream::open(&cfg, None)
        .unwrap()
        .with_clock(move || DateTime::<Utc>::from_timestamp_millis(c.load(Ordering::SeqCst)).unwrap());
    let embedded: Arc<dyn RecordStream> = Arc::new(embedded);
    // Ballast: 4320 of 5000 bytes, so 680 bytes are free.
    let ballast: Vec<PutEntry> = (0..4).map(|_| entry("ballast", vec![0u8; 1073])).collect();
    embedded
        .put_records(ballast)
        .await
        .unwrap()
        .iter()
        .for_each(|o| assert!(matches!(o, PutOutcome::Stored { .. })));

    let stream = Recorded::new(embedded.clone());
    let (producer, dead) = start(&fast_config(), stream.clone());
    // a: 5 × 801 bytes (none fits in 680); b: 5 × 51 bytes (all fit).
    let a: Vec<PutEntry> = (1..=5)
        .map(|i| entry("a", format!("a{i}:{}", "x".repeat(797))))
        .collect();
    let b: Vec<PutEntry> = (1..=5)
        .map(|i| entry("b", format!("b{i}:{}", "y".repeat(47))))
        .collect();
    assert_eq!(a[0].data.len() + 1, 801);
    let a_data: Vec<String> = a.iter().map(|e| text(&e.data)).collect();
    let a_request = {
        let producer = producer.clone();
        actix_rt::spawn(async move { producer.produce(a).await.unwrap() })
    };
    let b_outcomes = producer.produce(b).await.unwrap();
    let b_seqs: Vec<SequenceNumber> = b_outcomes.iter().map(|o| stored(o).1).collect();
    assert!(
        b_seqs.windows(2).all(|w| w[0] < w[1]),
        "b stored in order: {b_seqs:?}"
    );

    eventually("a1 throttled a few times", || async {
        stream.throttled(&a_data[0]) >= 3
    })
    .await;
    assert!(!a_request.is_finished(), "a waits for space");
    // Retention passes: the ballast (and b) are trimmed on the next put.
    clock.store(start_ms + 61_000, Ordering::SeqCst);
    let a_outcomes = a_request.await.unwrap();
    let a_seqs: Vec<SequenceNumber> = a_outcomes.iter().map(|o| stored(o).1).collect();
    assert!(
        a_seqs.windows(2).all(|w| w[0] < w[1]),
        "a stored in order: {a_seqs:?}"
    );

    // On the stream: a1..a5, in order, once each.
    let on_stream: Vec<String> = read_all(embedded.as_ref())
        .await
        .into_iter()
        .filter(|r| r.partition_key == "a")
        .map(|r| text(&r.data))
        .collect();
    assert_eq!(on_stream, a_data);
    // Key a was only ever attempted in order: a1 (many times), then a2, a3, a4, a5.
    let attempted: Vec<String> = stream
        .calls()
        .iter()
        .flat_map(|c| c.entries.clone())
        .filter(|(k, _)| k == "a")
        .map(|(_, d)| d)
        .collect();
    let firsts: Vec<usize> = attempted
        .iter()
        .map(|d| a_data.iter().position(|x| x == d).unwrap())
        .collect();
    assert!(
        firsts.windows(2).all(|w| w[0] <= w[1]),
        "a attempted out of order: {firsts:?}"
    );
    assert!(firsts.iter().filter(|&&i| i == 0).count() >= 4);
    // No call ever held two records of one key.
    for call in stream.calls() {
        let keys: HashSet<&String> = call.entries.iter().map(|(k, _)| k).collect();
        assert_eq!(keys.len(), call.entries.len(), "{call:?}");
    }
    assert_eq!(dead.summary().total, 0);
}

/// Whole calls that fail (`Unavailable`) are retried; every record is stored once.
#[actix_rt::test]
async fn failed_calls_are_retried_as_a_whole() {
    let embedded: Arc<dyn RecordStream> = Arc::new(memory_stream(2, 64 * 1024 * 1024));
    let stream = Recorded::new(embedded.clone());
    stream.fail_first_calls.store(3, Ordering::SeqCst);
    let (producer, _) = start(&fast_config(), stream.clone());
    let entries: Vec<PutEntry> = (0..20)
        .map(|i| entry(&format!("k{i}"), format!("r{i}")))
        .collect();
    let outcomes = producer.produce(entries).await.unwrap();
    for outcome in &outcomes {
        stored(outcome);
    }
    let calls = stream.calls();
    assert_eq!(calls.iter().filter(|c| c.result.is_err()).count(), 3);
    assert_eq!(read_all(embedded.as_ref()).await.len(), 20);
}

/// A shard that never has room: records run out of attempts (or of retry time) and go to
/// the dead-letter sink with their reason; an invalid record fails at once instead.
#[actix_rt::test]
async fn exhausted_retries_become_dead_letters_with_their_reason() {
    let full: Arc<dyn RecordStream> = Arc::new(memory_stream(1, 64));
    let config = ProducerConfig {
        max_attempts: 3,
        ..fast_config()
    };
    let (producer, dead) = start(&config, full.clone());
    let outcomes = producer
        .produce(vec![
            entry("k1", vec![1u8; 100]),
            entry("k1", vec![2u8; 100]),
            entry("", "no key"),
            entry("k2", vec![3u8; 100]),
        ])
        .await
        .unwrap();
    for i in [0, 1, 3] {
        match &outcomes[i] {
            ProduceOutcome::DeadLettered {
                reason:
                    DeadLetterReason::AttemptsExhausted {
                        attempts: 3,
                        last_error: StreamError::Throttled(_),
                    },
            } => {}
            other => panic!("record {i}: {other:?}"),
        }
    }
    assert!(matches!(
        &outcomes[2],
        ProduceOutcome::Failed {
            error: StreamError::InvalidArgument(_),
            retryable: false
        }
    ));
    // The sink write runs right after the outcomes are handed out.
    eventually("dead letters kept", || async { dead.summary().total == 3 }).await;
    let summary = dead.summary();
    assert_eq!(summary.by_reason["attempts_exhausted"], 3);
    let kept: Vec<(&str, u8)> = summary
        .recent
        .iter()
        .map(|l| (l.partition_key.as_str(), l.payload[0]))
        .collect();
    assert_eq!(kept.len(), 3);
    assert!(kept.contains(&("k1", 1)) && kept.contains(&("k1", 2)) && kept.contains(&("k2", 3)));
    assert!(summary.recent.iter().all(|l| l.detail.contains("throttled")));

    // The time budget ends retries too.
    let config = ProducerConfig {
        max_attempts: 10_000,
        max_retry_ms: 30,
        backoff_base_ms: 5,
        backoff_max_ms: 5,
        ..fast_config()
    };
    let (producer, dead) = start(&config, full);
    let outcomes = producer.produce(vec![entry("k", vec![0u8; 100])]).await.unwrap();
    assert!(
        matches!(
            &outcomes[0],
            ProduceOutcome::DeadLettered {
                reason: DeadLetterReason::RetryTimeExhausted { .. }
            }
        ),
        "{outcomes:?}"
    );
    eventually("dead letter kept", || async {
        dead.summary().by_reason.get("retry_time_exhausted") == Some(&1)
    })
    .await;
}

/// With `max_pending` records waiting for a shard that has no room, the next request is
/// refused at once with `ProducerFull`. Closing gives the pending records up as dead
/// letters (reason `shutdown`) after the limit; later requests fail as retryable.
#[actix_rt::test]
async fn a_full_producer_refuses_at_once_and_close_gives_up_the_rest() {
    let stream = Recorded::new(Arc::new(memory_stream(1, 64)));
    let config = ProducerConfig {
        max_pending: 10,
        max_batch_entries: 10,
        ..fast_config()
    };
    let (producer, dead) = start(&config, stream.clone());
    let first = {
        let producer = producer.clone();
        let entries = (0..10).map(|i| entry(&format!("k{i}"), vec![0u8; 100])).collect();
        actix_rt::spawn(async move { producer.produce(entries).await })
    };
    eventually("the first request is being retried", || async {
        !stream.calls().is_empty()
    })
    .await;
    let refused = tokio::time::timeout(Duration::from_secs(5), producer.produce(vec![entry("late", "x")]))
        .await
        .expect("answered at once, not after the retries");
    let full = refused.unwrap_err();
    assert_eq!((full.pending, full.max_pending), (10, 10));
    assert!(!first.is_finished());

    producer.close(Duration::from_millis(50)).await;
    let outcomes = first.await.unwrap().unwrap();
    assert!(
        outcomes.iter().all(|o| matches!(
            o,
            ProduceOutcome::DeadLettered {
                reason: DeadLetterReason::Shutdown { .. }
            }
        )),
        "{outcomes:?}"
    );
    assert_eq!(dead.summary().by_reason["shutdown"], 10);
    let after = producer.produce(vec![entry("k", "x")]).await.unwrap();
    assert!(matches!(after[0], ProduceOutcome::Failed { retryable: true, .. }));
}

/// Black box: two ingest requests race for a producer with room for one (the stream has
/// none). One is answered 503 + Retry-After at once, every record `failed`/`retryable`
/// because the producer is full; the other waits for its retries, then is answered 503
/// with its records dead-lettered (not stored, may be resent).
#[actix_rt::test]
async fn http_ingest_answers_503_with_retry_after_when_the_producer_is_full() {
    let mut config = test_config(None);
    config.embedded.stream.shards = 1;
    config.embedded.stream.max_bytes_per_shard = 1;
    config.http.max_batch_records = 5;
    config.producer = ProducerConfig {
        max_pending: 5,
        backoff_base_ms: 10,
        backoff_max_ms: 50,
        max_attempts: 10_000,
        max_retry_ms: 1500,
        ..ProducerConfig::default()
    };
    let t = TestNode::start(config).await;
    let post = |vehicle: &'static str| {
        let (client, url) = (t.client.clone(), format!("{}/v1/ingest", t.api));
        let batch: Vec<Value> = (0..5).map(|i| record(vehicle, i, 50.0)).collect();
        actix_rt::spawn(async move {
            let r = client.post(url).json(&batch).send().await.unwrap();
            let retry_after = r
                .headers()
                .get("retry-after")
                .map(|v| v.to_str().unwrap().to_owned());
            (r.status().as_u16(), retry_after, r.json::<Value>().await.unwrap())
        })
    };
    let (mut one, mut two) = (post("veh-one"), post("veh-two"));
    let (first, other) = tokio::select! {
        r = &mut one => (r.unwrap(), two),
        r = &mut two => (r.unwrap(), one),
    };
    let (status, retry_after, body) = first;
    assert!(
        !other.is_finished(),
        "the refused request was answered first: {body}"
    );
    assert_eq!(status, 503, "{body}");
    assert_eq!(retry_after.as_deref(), Some("1"));
    assert_eq!(body["failed"], 5);
    for r in body["results"].as_array().unwrap() {
        assert_eq!(r["retryable"], true);
        assert!(r["error"].as_str().unwrap().contains("producer full"), "{r}");
    }

    let (status, retry_after, body) = other.await.unwrap();
    assert_eq!(status, 503, "{body}");
    assert_eq!(retry_after.as_deref(), Some("1"));
    assert_eq!(
        (body["failed"].as_u64(), body["accepted"].as_u64()),
        (Some(5), Some(0))
    );
    for r in body["results"].as_array().unwrap() {
        assert_eq!(r["retryable"], true);
        let error = r["error"].as_str().unwrap();
        assert!(
            error.contains("not stored") && error.contains("throttled"),
            "{error}"
        );
    }
    // The store write runs right after the outcomes are handed out; the letters are filed
    // under the ingest key's tenant, where its admins see them, not under `_unknown`.
    eventually("five dead letters stored", || async {
        by_reason(&t.dead_letters(&["default"]).await).get("retry_time_exhausted") == Some(&5)
    })
    .await;
    assert!(t.dead_letters(&["_unknown"]).await.is_empty());
    let metrics = t
        .get_request(&format!("{}/metrics", t.admin))
        .send()
        .await
        .unwrap();
    let metrics = metrics.text().await.unwrap();
    assert!(metrics.contains("fleetwire_producer_dead_letters_total{reason=\"retry_time_exhausted\"}"));
    assert!(metrics.contains("fleetwire_producer_full_total"));
    assert!(t.shutdown(Duration::from_secs(10)).await.drained);
}

/// Throughput of the producer on the in-memory embedded stream, and a direct
/// `put_records` baseline: many callers, 500-record requests over 10 000 vehicles.
/// Prints figures; asserts only that everything was stored. Run with
/// `cargo test --release --test producer -- --ignored --nocapture throughput`.
#[actix_rt::test]
#[ignore = "measurement: run on demand"]
async fn producer_throughput_on_the_embedded_stream() {
    const CALLERS: usize = 16;
    const REQUESTS: usize = 25;
    const PER_REQUEST: usize = 500;
    let total = CALLERS * REQUESTS * PER_REQUEST;
    let payload = Bytes::from(vec![b'x'; 240]);
    let make = move |caller: usize, req: usize| -> Vec<PutEntry> {
        (0..PER_REQUEST)
            .map(|i| {
                let n = (caller * 7919 + req * 104_729 + i * 31) % 10_000;
                entry(&format!("veh-{n:05}"), payload.clone())
            })
            .collect()
    };

    for persist in [false, true] {
        let dir = tempfile::tempdir().unwrap();
        let cfg = EmbeddedStreamConfig {
            shards: 4,
            max_bytes_per_shard: 1 << 30,
            persist,
            ..EmbeddedStreamConfig::default()
        };
        let label = if persist { "files + fsync" } else { "memory" };

        // Baseline: each caller puts its requests straight to the stream.
        let stream: Arc<dyn RecordStream> = Arc::new(
            EmbeddedStream::open(&cfg, persist.then(|| dir.path().join("direct")).as_deref()).unwrap(),
        );
        let started = Instant::now();
        let handles: Vec<_> = (0..CALLERS)
            .map(|caller| {
                let (stream, make) = (stream.clone(), make.clone());
                actix_rt::spawn(async move {
                    for req in 0..REQUESTS {
                        let out = stream.put_records(make(caller, req)).await.unwrap();
                        assert!(out.iter().all(|o| matches!(o, PutOutcome::Stored { .. })));
                    }
                })
            })
            .collect();
        for h in handles {
            h.await.unwrap();
        }
        let direct = total as f64 / started.elapsed().as_secs_f64();

        // Through the producer.
        let inner: Arc<dyn RecordStream> = Arc::new(
            EmbeddedStream::open(&cfg, persist.then(|| dir.path().join("producer")).as_deref()).unwrap(),
        );
        let stream = Recorded::counting(inner);
        let (producer, _) = start(&ProducerConfig::default(), stream.clone());
        let started = Instant::now();
        let handles: Vec<_> = (0..CALLERS)
            .map(|caller| {
                let (producer, make) = (producer.clone(), make.clone());
                actix_rt::spawn(async move {
                    for req in 0..REQUESTS {
                        let out = producer.produce(make(caller, req)).await.unwrap();
                        assert!(out.iter().all(|o| matches!(o, ProduceOutcome::Stored { .. })));
                    }
                })
            })
            .collect();
        for h in handles {
            h.await.unwrap();
        }
        let elapsed = started.elapsed();
        let calls = stream.call_count.load(Ordering::Relaxed);
        println!(
            "[{label}] producer: {total} records in {elapsed:.2?} = {:.0} records/s, {calls} PutRecords calls, \
             {:.1} records/call; direct put_records of the same requests: {direct:.0} records/s",
            total as f64 / elapsed.as_secs_f64(),
            total as f64 / calls as f64,
        );
        producer.close(Duration::from_secs(5)).await;
    }
}
