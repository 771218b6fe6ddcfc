//! The enhanced fan-out reader ([`EnhancedFanOutStream`]: SubscribeToShard behind the
//! stream port) against kinesis-local's TLS (HTTP/2) port.
//!
//! Needs `FLEETWIRE_TEST_KINESIS_TLS_ENDPOINT` (e.g. `https://127.0.0.1:4567`) and
//! `FLEETWIRE_TEST_KINESIS_CA_FILE` (the CA of the emulator's certificate): run
//! `scripts/emulators start kinesis` and `eval "$(scripts/emulators env)"`. Without them
//! every test fails, so a missing emulator is never mistaken for a pass.
//!
//! Each test creates its own small stream (and consumer) and deletes both at the end.

mod common;

use common::cloud::unique;
use common::consumer::{RecordingRouter, assert_in_order, put_numbered, wait_until};
use std::collections::{BTreeMap, BTreeSet};
use std::future::Future;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::{Duration, Instant};

use bytes::Bytes;

use fleetwire::backends::conformance::{self, read_shard, stored};
use fleetwire::backends::embedded::{RedbLeaseStore, open_database};
use fleetwire::backends::kinesis::{
    EnhancedFanOutConfig, EnhancedFanOutStream, KinesisConfig, KinesisError, KinesisStream, ReadMode,
    connect_record_stream,
};
use fleetwire_actors::consumer::{ConsumerConfig, GracefulShutdown, LeaseCoordinator};
use fleetwire_actors::ports::{
    Checkpoint, LeaseStore, PutEntry, RecordStream, SequenceNumber, ShardId, ShardIterator, StartPosition,
    StreamError, StreamRecord,
};
use fleetwire_actors::registry::ActorRegistry;

const ENDPOINT_VAR: &str = "FLEETWIRE_TEST_KINESIS_TLS_ENDPOINT";
const CA_VAR: &str = "FLEETWIRE_TEST_KINESIS_CA_FILE";

fn var(name: &str) -> String {
    std::env::var(name).unwrap_or_else(|_| {
        panic!(
            "{name} is not set: these tests need kinesis-local's TLS port. Run \
             `scripts/emulators start kinesis` and `eval \"$(scripts/emulators env)\"`."
        )
    })
}

fn config(name: &str, create: Option<u32>) -> KinesisConfig {
    KinesisConfig {
        stream_name: name.to_owned(),
        endpoint_url: Some(var(ENDPOINT_VAR)),
        extra_ca_file: Some(PathBuf::from(var(CA_VAR))),
        create_if_missing: create,
        static_credentials: true,
        read_mode: ReadMode::EnhancedFanOut,
        enhanced_fan_out: EnhancedFanOutConfig {
            consumer_name: "fleetwire-test".into(),
            event_wait_ms: 1_000,
            register_timeout_secs: 30,
        },
        ..KinesisConfig::default()
    }
}

/// Runs `test` on a fresh stream of `shards` shards read through enhanced fan-out, and
/// deletes the stream (with its consumer) afterwards, also when the test panics.
async fn with_fan_out<F, Fut>(shards: u32, test: F)
where
    F: FnOnce(Arc<EnhancedFanOutStream>) -> Fut,
    Fut: Future<Output = ()> + Send + 'static,
{
    let _ = tracing_subscriber::fmt()
        .with_env_filter(tracing_subscriber::EnvFilter::from_default_env())
        .with_test_writer()
        .try_init();
    let name = unique("fw-efo");
    let cfg = config(&name, Some(shards));
    let polling = KinesisStream::connect(&cfg)
        .await
        .unwrap_or_else(|e| panic!("creating {name} on {} failed: {e}", var(ENDPOINT_VAR)));
    let outcome = match EnhancedFanOutStream::connect(polling.clone(), &cfg.enhanced_fan_out).await {
        Ok(efo) => tokio::spawn(test(Arc::new(efo))).await,
        Err(e) => {
            polling.delete_stream().await.ok();
            panic!("registering the consumer failed: {e}");
        }
    };
    polling.delete_stream().await.expect("delete_stream failed");
    if let Err(e) = outcome {
        std::panic::resume_unwind(e.into_panic());
    }
}

fn entry(key: &str, data: String) -> PutEntry {
    PutEntry {
        partition_key: key.to_owned(),
        data: Bytes::from(data),
    }
}

fn body(r: &StreamRecord) -> String {
    String::from_utf8(r.data.to_vec()).unwrap()
}

/// Reads from `it` until `want` records came, or panics after `within`; returns the
/// records and the next iterator.
async fn read_n(
    s: &dyn RecordStream,
    mut it: ShardIterator,
    want: usize,
    limit: usize,
    within: Duration,
) -> (Vec<StreamRecord>, Option<ShardIterator>) {
    let started = Instant::now();
    let mut got = Vec::new();
    while got.len() < want {
        assert!(
            started.elapsed() < within,
            "only {} of {want} records within {within:?}",
            got.len()
        );
        let out = s.get_records(&it, limit).await.expect("get_records failed");
        assert!(out.records.len() <= limit, "more records than the limit");
        got.extend(out.records);
        match out.next_iterator {
            Some(next) => it = next,
            None => return (got, None),
        }
    }
    (got, Some(it))
}

// ---- the shared conformance suite (its read parts) --------------------------------------

#[tokio::test]
async fn conformance_put_and_read_in_order() {
    with_fan_out(2, |s| async move {
        conformance::check_put_and_read_in_order(&*s).await
    })
    .await;
}

#[tokio::test]
async fn conformance_iterator_positions() {
    with_fan_out(
        2,
        |s| async move { conformance::check_iterator_positions(&*s).await },
    )
    .await;
}

/// Unlike the polling backend on this emulator (a bare HTTP 500), a token that is not
/// ours is rejected before any call, as AWS rejects a garbage iterator.
#[tokio::test]
async fn conformance_garbage_iterator_is_invalid() {
    with_fan_out(1, |s| async move {
        conformance::check_garbage_iterator_is_invalid(&*s).await;
        let wrong_limit = s
            .get_records(&ShardIterator("efo:shardId-000000000000:latest".into()), 0)
            .await;
        assert!(matches!(wrong_limit, Err(StreamError::InvalidArgument(_))));
    })
    .await;
}

// ---- enhanced fan-out specifics ------------------------------------------------------------

/// Records put after the subscription is open are pushed in put order, with exactly the
/// sequence numbers PutRecords returned, and nothing else.
#[tokio::test]
async fn records_put_after_subscribing_arrive_in_order_with_exact_sequence_numbers() {
    with_fan_out(1, |s| async move {
        let shard = ShardId("shardId-000000000000".into());
        let it = s.get_shard_iterator(&shard, StartPosition::Latest).await.unwrap();
        // Opens the subscription (at LATEST) before anything is put.
        let first = s.get_records(&it, 100).await.unwrap();
        assert!(first.records.is_empty(), "nothing was put yet");
        let it = first.next_iterator.expect("an open shard has a next iterator");

        let mut put = Vec::new();
        for batch in 0..2 {
            let outcomes = s
                .put_records(
                    (0..10)
                        .map(|i| entry("vehicle-1", format!("b{batch}-r{i}")))
                        .collect(),
                )
                .await
                .unwrap();
            put.extend(outcomes.iter().map(stored).map(|(_, seq)| seq));
        }
        let (got, next) = read_n(&*s, it, 20, 7, Duration::from_secs(20)).await;
        assert!(next.is_some());
        let seqs: Vec<SequenceNumber> = got.iter().map(|r| r.sequence_number.clone()).collect();
        assert_eq!(seqs, put, "exactly the put records, in order");
        let bodies: Vec<String> = got.iter().map(body).collect();
        let expected: Vec<String> = (0..2)
            .flat_map(|b| (0..10).map(move |i| format!("b{b}-r{i}")))
            .collect();
        assert_eq!(bodies, expected);
        assert!(got.iter().all(|r| r.partition_key == "vehicle-1"));
    })
    .await;
}

/// A reader restarting from a checkpoint (AFTER_SEQUENCE_NUMBER) gets exactly the records
/// after it, also while the previous subscription of that shard is still held.
#[tokio::test]
async fn restart_from_a_checkpoint_delivers_nothing_before_it() {
    with_fan_out(1, |s| async move {
        let shard = ShardId("shardId-000000000000".into());
        let outcomes = s
            .put_records((0..10).map(|i| entry("k", format!("r{i}"))).collect())
            .await
            .unwrap();
        let seqs: Vec<SequenceNumber> = outcomes.iter().map(stored).map(|(_, q)| q).collect();

        let it = s
            .get_shard_iterator(&shard, StartPosition::TrimHorizon)
            .await
            .unwrap();
        let (first, _) = read_n(&*s, it, 6, 3, Duration::from_secs(20)).await;
        assert_eq!(
            first.iter().map(body).collect::<Vec<_>>(),
            ["r0", "r1", "r2", "r3", "r4", "r5"]
        );

        // "Crash" after checkpointing r3: resume after it.
        let it = s
            .get_shard_iterator(&shard, StartPosition::AfterSequenceNumber(seqs[3].clone()))
            .await
            .unwrap();
        let (again, _) = read_n(&*s, it, 6, 100, Duration::from_secs(20)).await;
        assert_eq!(
            again
                .iter()
                .map(|r| r.sequence_number.clone())
                .collect::<Vec<_>>(),
            seqs[4..].to_vec()
        );

        // A checkpoint at the very end: nothing comes, then a new record does.
        let it = s
            .get_shard_iterator(&shard, StartPosition::AfterSequenceNumber(seqs[9].clone()))
            .await
            .unwrap();
        let out = s.get_records(&it, 100).await.unwrap();
        assert!(out.records.is_empty(), "nothing lies after the last record");
        s.put_records(vec![entry("k", "r10".into())]).await.unwrap();
        let (last, _) = read_n(&*s, out.next_iterator.unwrap(), 1, 100, Duration::from_secs(20)).await;
        assert_eq!(last.iter().map(body).collect::<Vec<_>>(), ["r10"]);
    })
    .await;
}

/// After a split, the parent's subscription delivers nothing more and the children are
/// readable through their own subscriptions, every record once.
///
/// kinesis-local 0.6.2 never ends a SubscribeToShard stream at a closed shard's end: its
/// events always carry a ContinuationSequenceNumber and never ChildShards (its
/// `SubscribeToShardRequest.subscriptionStream`), where AWS sends a last event with a null
/// ContinuationSequenceNumber and the ChildShards. That end is covered by the unit test
/// `the_end_event_returns_children_after_its_records` in `fan_out.rs`; this test checks
/// it does not happen early.
#[tokio::test]
async fn after_a_split_the_parent_delivers_nothing_more_and_the_children_are_readable() {
    with_fan_out(1, |s| async move {
        let parent = ShardId("shardId-000000000000".into());
        s.put_records(
            (0..3)
                .map(|i| entry(&format!("before-{i}"), format!("p{i}")))
                .collect(),
        )
        .await
        .unwrap();
        let it = s
            .get_shard_iterator(&parent, StartPosition::TrimHorizon)
            .await
            .unwrap();
        let (before, it) = read_n(&*s, it, 3, 100, Duration::from_secs(20)).await;
        assert_eq!(before.len(), 3);

        s.polling().split_shard(&parent, u128::MAX / 2 + 1).await.unwrap();
        let after = s
            .put_records(
                (0..20)
                    .map(|i| entry(&format!("after-{i}"), format!("c{i}")))
                    .collect(),
            )
            .await
            .unwrap();
        let children: Vec<ShardId> = s
            .list_shards()
            .await
            .unwrap()
            .into_iter()
            .filter(|d| d.parent_shard_ids.contains(&parent))
            .map(|d| d.shard_id)
            .collect();
        assert_eq!(children.len(), 2);
        assert!(
            after.iter().all(|o| children.contains(&stored(o).0)),
            "new records go to the children"
        );

        let mut it = it.expect("the parent was open");
        for _ in 0..3 {
            let out = s.get_records(&it, 100).await.unwrap();
            assert!(out.records.is_empty(), "no records after the split in the parent");
            match out.next_iterator {
                Some(next) => it = next,
                None => {
                    let mut reported = out.child_shard_ids.clone();
                    reported.sort();
                    let mut listed = children.clone();
                    listed.sort();
                    assert_eq!(reported, listed, "the end names exactly the children");
                    break;
                }
            }
        }

        let mut from_children = Vec::new();
        for child in &children {
            let read = read_shard(&*s, child, StartPosition::TrimHorizon, 100).await;
            assert!(!read.reached_end, "a child is open");
            from_children.extend(read.records.iter().map(body));
        }
        from_children.sort();
        let mut expected: Vec<String> = (0..20).map(|i| format!("c{i}")).collect();
        expected.sort();
        assert_eq!(from_children, expected, "every record put after the split, once");
    })
    .await;
}

/// MillisBehindLatest is reported per event: behind while old records are delivered, 0
/// once caught up. kinesis-local puts at most 10,000 records in one event and computes the
/// lag from the newest record of the shard, so the test puts 10,000, waits, puts one more.
#[tokio::test]
async fn millis_behind_latest_is_reported() {
    with_fan_out(1, |s| async move {
        let shard = ShardId("shardId-000000000000".into());
        for batch in 0..20 {
            s.put_records((0..500).map(|i| entry("k", format!("{batch}-{i}"))).collect())
                .await
                .unwrap();
        }
        tokio::time::sleep(Duration::from_millis(1_500)).await;
        s.put_records(vec![entry("k", "new".into())]).await.unwrap();
        let it = s
            .get_shard_iterator(&shard, StartPosition::TrimHorizon)
            .await
            .unwrap();
        let first = s.get_records(&it, 1_000).await.unwrap();
        assert_eq!(first.records.len(), 1_000);
        assert!(
            first.millis_behind_latest >= 1_000,
            "the first event is {} ms behind, expected at least 1,000",
            first.millis_behind_latest
        );
        let (rest, it) = read_n(
            &*s,
            first.next_iterator.unwrap(),
            9_001,
            10_000,
            Duration::from_secs(30),
        )
        .await;
        assert_eq!(rest.last().map(body).as_deref(), Some("new"));
        let caught_up = s.get_records(&it.unwrap(), 100).await.unwrap();
        assert!(caught_up.records.is_empty());
        assert_eq!(caught_up.millis_behind_latest, 0, "caught up");
    })
    .await;
}

// ---- registration and configuration --------------------------------------------------------

/// A consumer of the configured name that exists already is reused (a second node, a
/// restart), and `connect_record_stream` picks the reader by `read_mode`.
#[tokio::test]
async fn an_existing_consumer_is_reused() {
    with_fan_out(1, |s| async move {
        let cfg = config(s.polling().stream_name(), None);
        let again = EnhancedFanOutStream::connect(s.polling().clone(), &cfg.enhanced_fan_out)
            .await
            .unwrap();
        assert_eq!(again.consumer_arn(), s.consumer_arn());
        let stream = connect_record_stream(&cfg).await.unwrap();
        let shard = ShardId("shardId-000000000000".into());
        let it = stream
            .get_shard_iterator(&shard, StartPosition::Latest)
            .await
            .unwrap();
        assert!(
            it.0.starts_with("efo:"),
            "read_mode enhanced_fan_out gives fan-out tokens"
        );
    })
    .await;
}

#[tokio::test]
async fn configuration_errors_are_named_at_connect() {
    let name = unique("fw-efo-cfg");
    let plain = KinesisConfig {
        endpoint_url: Some("http://127.0.0.1:4568".into()),
        ..config(&name, None)
    };
    assert!(matches!(
        connect_record_stream(&plain).await,
        Err(KinesisError::InvalidConfig(m)) if m.contains("https://")
    ));
    let dir = std::env::temp_dir().join(unique("fw-efo-ca"));
    std::fs::create_dir_all(&dir).unwrap();
    let garbage = dir.join("garbage.pem");
    std::fs::write(&garbage, "not a certificate").unwrap();
    for file in [garbage, dir.join("missing.pem")] {
        let bad = KinesisConfig {
            extra_ca_file: Some(file.clone()),
            ..config(&name, None)
        };
        assert!(
            matches!(connect_record_stream(&bad).await, Err(KinesisError::InvalidConfig(m)) if m.contains("extra_ca_file")),
            "{file:?} must be rejected"
        );
    }
    std::fs::remove_dir_all(&dir).ok();
}

/// Without the emulator's CA the TLS endpoint is refused: the certificate is verified.
#[tokio::test]
async fn the_tls_endpoint_needs_the_extra_ca() {
    let untrusting = KinesisConfig {
        extra_ca_file: None,
        read_mode: ReadMode::Polling,
        ..config(&unique("fw-efo-tls"), None)
    };
    let stream = KinesisStream::connect(&untrusting).await.unwrap();
    match stream.ping().await {
        // rustls: "invalid peer certificate: UnknownIssuer".
        Err(StreamError::Unavailable(m)) => assert!(
            m.contains("invalid peer certificate"),
            "not a certificate failure: {m}"
        ),
        other => panic!("an untrusted certificate must fail the call, got {other:?}"),
    }
}

// ---- end to end: the real consumer on enhanced fan-out -------------------------------------

fn consumer_config(worker: &str) -> ConsumerConfig {
    ConsumerConfig {
        worker_id: Some(worker.into()),
        max_records_per_get: 50,
        idle_poll_ms: 10,
        checkpoint_interval_ms: 50,
        retry_backoff_initial_ms: 10,
        retry_backoff_max_ms: 200,
        ..ConsumerConfig::default()
    }
}

/// The real lease coordinator and shard consumers reading through enhanced fan-out route
/// every record exactly once, in order per vehicle, and checkpoint to the last record; a
/// second coordinator taking over from those checkpoints (new subscriptions at
/// AFTER_SEQUENCE_NUMBER while the first ones may still be held) routes only the new ones.
#[actix_rt::test]
async fn the_consumer_routes_every_record_once_on_enhanced_fan_out() {
    let name = unique("fw-efo-e2e");
    let cfg = config(&name, Some(2));
    let polling = KinesisStream::connect(&cfg).await.expect("creating the stream");
    let outcome = tokio::task::spawn_local({
        let cfg = cfg.clone();
        async move {
            let stream: Arc<dyn RecordStream> = connect_record_stream(&cfg).await.unwrap();
            let leases: Arc<dyn LeaseStore> =
                Arc::new(RedbLeaseStore::new(open_database(None).unwrap()).unwrap());
            let router = Arc::new(RecordingRouter::default());
            let expected = |to: i64| -> BTreeSet<(String, i64)> {
                (0..8)
                    .flat_map(|v| (0..to).map(move |n| (format!("car-{v}"), n)))
                    .collect()
            };
            let check = |routed: &[(String, i64)], to: i64| {
                let unique: BTreeSet<(String, i64)> = routed.iter().cloned().collect();
                assert_eq!(routed.len(), unique.len(), "some records were routed twice");
                assert_eq!(unique, expected(to), "routed records differ from the records put");
                assert_in_order(routed);
            };
            let checkpointed = |last: BTreeMap<ShardId, SequenceNumber>| {
                let leases = leases.clone();
                async move {
                    let held: BTreeMap<String, Checkpoint> = leases
                        .list_leases()
                        .await
                        .unwrap()
                        .into_iter()
                        .map(|l| (l.lease_key, l.checkpoint))
                        .collect();
                    last.iter()
                        .all(|(shard, seq)| held.get(&shard.0) == Some(&Checkpoint::Sequence(seq.clone())))
                }
            };

            let (first, _) = LeaseCoordinator::start(
                consumer_config("one"),
                stream.clone(),
                leases.clone(),
                router.clone(),
                ActorRegistry::new(),
            );
            let last = put_numbered(&*stream, 8, 0, 20).await;
            wait_until(Duration::from_secs(60), "all 160 records are routed", || async {
                router.routed().len() >= 160
            })
            .await;
            check(&router.routed(), 20);
            wait_until(
                Duration::from_secs(60),
                "the checkpoints reach the last records",
                || checkpointed(last.clone()),
            )
            .await;
            tokio::time::timeout(Duration::from_secs(30), first.send(GracefulShutdown))
                .await
                .expect("graceful shutdown in time")
                .unwrap();

            // A second worker on a fresh reader (another node) resumes from the checkpoints.
            let stream: Arc<dyn RecordStream> = connect_record_stream(&cfg).await.unwrap();
            let (second, _) = LeaseCoordinator::start(
                consumer_config("two"),
                stream.clone(),
                leases.clone(),
                router.clone(),
                ActorRegistry::new(),
            );
            let last = put_numbered(&*stream, 8, 20, 10).await;
            wait_until(Duration::from_secs(60), "all 240 records are routed", || async {
                router.routed().len() >= 240
            })
            .await;
            wait_until(
                Duration::from_secs(60),
                "the checkpoints reach the new last records",
                || checkpointed(last.clone()),
            )
            .await;
            tokio::time::sleep(Duration::from_millis(500)).await;
            check(&router.routed(), 30);
            assert!(router.dead.lock().unwrap().is_empty(), "no record is undecodable");
            tokio::time::timeout(Duration::from_secs(30), second.send(GracefulShutdown))
                .await
                .expect("graceful shutdown in time")
                .unwrap();
        }
    })
    .await;
    polling.delete_stream().await.expect("delete_stream failed");
    if let Err(e) = outcome {
        std::panic::resume_unwind(e.into_panic());
    }
}

/// A whole node configured with `kinesis.read_mode = "enhanced_fan_out"` (the wiring in
/// `node.rs`): records ingested over HTTP reach the vehicle state through SubscribeToShard,
/// the calls are counted, and the node drains at shutdown.
#[actix_rt::test]
async fn a_node_reads_its_stream_through_enhanced_fan_out() {
    let name = unique("fw-efo-node");
    let mut node_config = common::test_config(None);
    node_config.backends.stream = fleetwire::config::StreamBackend::Kinesis;
    node_config.kinesis = config(&name, Some(2));
    let t = common::TestNode::start(node_config.clone()).await;
    common::eventually("node ready", || async {
        t.get(&format!("{}/readyz", t.admin)).await.0 == 200
    })
    .await;
    let vehicles: Vec<String> = (0..10).map(|i| format!("efo-{i}")).collect();
    for second in 1..=3 {
        let batch: Vec<_> = vehicles
            .iter()
            .map(|v| common::record(v, second, f64::from(second) * 10.0))
            .collect();
        let (status, reply) = t.ingest(&serde_json::json!(batch)).await;
        assert_eq!((status, reply["accepted"].as_u64()), (200, Some(10)), "{reply}");
    }
    for v in &vehicles {
        common::eventually(&format!("{v}'s last record applied"), || async {
            let (status, state) = t.get(&format!("{}/v1/vehicles/{v}", t.api)).await;
            status == 200 && state["signals"]["Soc"]["value"] == 30.0 && state["version"] == 3
        })
        .await;
    }
    let (_, metrics) = t.get_text(&format!("{}/metrics", t.admin)).await;
    assert!(
        metrics
            .lines()
            .any(|l| l.starts_with("fleetwire_aws_calls_total{")
                && l.contains("operation=\"SubscribeToShard\"")
                && l.contains("result=\"ok\"")),
        "no successful SubscribeToShard counted in:\n{metrics}"
    );
    assert!(
        !metrics.contains("operation=\"GetRecords\""),
        "a fan-out node does not poll"
    );
    let report = t.shutdown(Duration::from_secs(30)).await;
    KinesisStream::connect(&node_config.kinesis)
        .await
        .unwrap()
        .delete_stream()
        .await
        .unwrap();
    assert!(report.drained, "every acked record was checkpointed");
}

/// A subscription outlives the SDK's per-operation timeout (30 s, `backends/aws.rs`): the
/// timeout covers the SubscribeToShard call, not the event stream that follows, so one
/// subscription keeps delivering (AWS keeps it for 5 minutes).
#[tokio::test]
async fn a_subscription_outlives_the_operation_timeout() {
    with_fan_out(1, |s| async move {
        let shard = ShardId("shardId-000000000000".into());
        let mut it = s.get_shard_iterator(&shard, StartPosition::Latest).await.unwrap();
        let started = Instant::now();
        let mut n = 0;
        while started.elapsed() < Duration::from_secs(35) {
            s.put_records(vec![entry("k", format!("r{n}"))]).await.unwrap();
            let (got, next) = read_n(&*s, it, 1, 100, Duration::from_secs(10)).await;
            assert_eq!(got.iter().map(body).collect::<Vec<_>>(), [format!("r{n}")]);
            it = next.unwrap();
            n += 1;
            tokio::time::sleep(Duration::from_secs(2)).await;
        }
    })
    .await;
}
