//! The KCL-style consumer (lease coordinator + shard consumers) against the real embedded
//! stream and redb lease store. The router is a recording test double: it is the
//! consumer's own output seam, not a backend.

use std::collections::{BTreeMap, BTreeSet};
use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::{Duration, Instant};

use actix::{Addr, Arbiter};
mod common;

use common::consumer::{RecordingRouter, assert_in_order, put_numbered, wait_until};
use fleetwire::backends::embedded::{EmbeddedStream, EmbeddedStreamConfig, RedbLeaseStore, open_database};
use fleetwire_actors::consumer::{ConsumerConfig, ConsumerStatus, GracefulShutdown, LeaseCoordinator};
use fleetwire_actors::ports::{Checkpoint, Lease, LeaseStore, PutEntry, PutOutcome, RecordStream};
use fleetwire_actors::registry::{ActorKind, ActorRegistry};

/// Longest any single wait in these tests may take.
const WAIT: Duration = Duration::from_secs(20);

struct Backends {
    stream: Arc<EmbeddedStream>,
    leases: Arc<RedbLeaseStore>,
}

fn backends(shards: u32) -> Backends {
    let db = open_database(None).expect("in-memory database");
    let config = EmbeddedStreamConfig {
        shards,
        ..Default::default()
    };
    Backends {
        stream: Arc::new(EmbeddedStream::open(&config, None).expect("in-memory stream")),
        leases: Arc::new(RedbLeaseStore::new(db).expect("lease table")),
    }
}

fn config(worker: &str, failover_ms: u64) -> ConsumerConfig {
    ConsumerConfig {
        worker_id: Some(worker.into()),
        failover_time_ms: failover_ms,
        max_records_per_get: 50,
        idle_poll_ms: 10,
        checkpoint_interval_ms: 50,
        retry_backoff_initial_ms: 10,
        retry_backoff_max_ms: 100,
        ..ConsumerConfig::default()
    }
}

fn start(
    b: &Backends,
    config: ConsumerConfig,
    router: &Arc<RecordingRouter>,
) -> (Addr<LeaseCoordinator>, ConsumerStatus) {
    LeaseCoordinator::start(
        config,
        b.stream.clone(),
        b.leases.clone(),
        router.clone(),
        ActorRegistry::new(),
    )
}

async fn leases(b: &Backends) -> BTreeMap<String, Lease> {
    b.leases
        .list_leases()
        .await
        .unwrap()
        .into_iter()
        .map(|l| (l.lease_key.clone(), l))
        .collect()
}

/// Every (vehicle, n) from `0..per_vehicle` for `vehicles` vehicles.
fn expected(vehicles: usize, per_vehicle: i64) -> BTreeSet<(String, i64)> {
    (0..vehicles)
        .flat_map(|v| (0..per_vehicle).map(move |n| (format!("car-{v}"), n)))
        .collect()
}

/// Asserts each record was routed exactly once and each vehicle's records in order.
fn assert_exactly_once_in_order(routed: &[(String, i64)], expected: &BTreeSet<(String, i64)>) {
    let unique: BTreeSet<(String, i64)> = routed.iter().cloned().collect();
    assert_eq!(routed.len(), unique.len(), "some records were routed twice");
    assert_eq!(&unique, expected, "routed records differ from the records put");
    assert_in_order(routed);
}

async fn shut_down(addr: &Addr<LeaseCoordinator>) {
    tokio::time::timeout(WAIT, addr.send(GracefulShutdown))
        .await
        .expect("graceful shutdown within the deadline")
        .expect("coordinator answers");
}

#[actix_rt::test]
async fn every_record_is_routed_once_in_order_and_checkpointed() {
    let b = backends(4);
    let router = Arc::new(RecordingRouter::default());
    let registry = ActorRegistry::new();
    let (addr, status) = LeaseCoordinator::start(
        config("solo", 3000),
        b.stream.clone(),
        b.leases.clone(),
        router.clone(),
        registry.clone(),
    );
    let last = put_numbered(&*b.stream, 12, 0, 25).await;
    wait_until(WAIT, "all 300 records are routed", || async {
        router.count() >= 300
    })
    .await;
    assert_exactly_once_in_order(&router.routed(), &expected(12, 25));
    wait_until(
        WAIT,
        "every checkpoint reaches its shard's last sequence",
        || async {
            let leases = leases(&b).await;
            last.iter()
                .all(|(shard, seq)| leases[&shard.0].checkpoint == Checkpoint::Sequence(seq.clone()))
        },
    )
    .await;
    assert_eq!(status.worker_id(), "solo");
    assert_eq!(status.held_leases().len(), 4);
    assert!(status.is_ready());
    assert_eq!(registry.counts()[&ActorKind::ShardConsumer], 4);
    let coordinator = registry
        .get(ActorKind::LeaseCoordinator, "solo")
        .expect("registered");
    assert_eq!(coordinator.details["held_count"], 4);

    shut_down(&addr).await;
    assert!(!addr.connected(), "the coordinator stopped");
    assert_eq!(
        registry.counts()[&ActorKind::ShardConsumer],
        0,
        "every consumer stopped"
    );
    assert!(
        leases(&b).await.values().all(|l| l.lease_owner.is_none()),
        "leases released"
    );
    assert_eq!(router.count(), 300, "nothing routed twice");
}

#[actix_rt::test]
async fn a_failing_router_is_retried_without_advancing_the_checkpoint() {
    let b = backends(1);
    let router = Arc::new(RecordingRouter::default());
    router.fail_remaining.store(usize::MAX, Ordering::SeqCst);
    let (addr, _status) = start(&b, config("solo", 3000), &router);
    let last = put_numbered(&*b.stream, 3, 0, 10).await;
    wait_until(WAIT, "the router has failed a few times", || async {
        router.failures.load(Ordering::SeqCst) >= 4
    })
    .await;
    let lease = leases(&b).await.into_values().next().unwrap();
    assert_eq!(
        lease.checkpoint,
        Checkpoint::TrimHorizon,
        "no checkpoint past unrouted records"
    );
    assert_eq!(router.count(), 0);

    // The store comes back after three more failures.
    router.fail_remaining.store(3, Ordering::SeqCst);
    wait_until(WAIT, "all 30 records are routed", || async {
        router.count() >= 30
    })
    .await;
    assert_exactly_once_in_order(&router.routed(), &expected(3, 10));
    let (shard, seq) = last.into_iter().next().unwrap();
    wait_until(WAIT, "the checkpoint reaches the last record", || async {
        leases(&b).await[&shard.0].checkpoint == Checkpoint::Sequence(seq.clone())
    })
    .await;
    shut_down(&addr).await;
}

#[actix_rt::test]
async fn undecodable_records_become_dead_letters_before_the_checkpoint_passes_them() {
    let b = backends(1);
    let router = Arc::new(RecordingRouter::default());
    // The dead-letter store is down at first: nothing may be checkpointed.
    router.fail_remaining.store(usize::MAX, Ordering::SeqCst);
    let (addr, _status) = start(&b, config("solo", 3000), &router);
    put_numbered(&*b.stream, 1, 0, 1).await;
    let outcomes = b
        .stream
        .put_records(vec![PutEntry {
            partition_key: "car-0".into(),
            data: bytes::Bytes::from_static(b"{not json"),
        }])
        .await
        .unwrap();
    let PutOutcome::Stored {
        shard_id,
        sequence_number,
    } = outcomes[0].clone()
    else {
        panic!("stored")
    };
    put_numbered(&*b.stream, 1, 1, 1).await;
    wait_until(WAIT, "the router has failed a few times", || async {
        router.failures.load(Ordering::SeqCst) >= 3
    })
    .await;
    assert_eq!(
        leases(&b).await[&shard_id.0].checkpoint,
        Checkpoint::TrimHorizon,
        "no checkpoint past a record that is neither applied nor dead-lettered"
    );
    router.fail_remaining.store(0, Ordering::SeqCst);
    wait_until(WAIT, "both good records are routed", || async {
        router.count() >= 2
    })
    .await;
    let dead = router.dead.lock().unwrap().clone();
    assert!(!dead.is_empty());
    assert!(
        dead.iter().all(|l| l.id() == dead[0].id()),
        "a retried batch hands over the same letter (same id)"
    );
    let letter = &dead[0];
    assert_eq!(letter.reason.label(), "undecodable");
    assert_eq!(letter.entry.data.as_ref(), b"{not json");
    assert_eq!(letter.entry.partition_key, "car-0");
    let source = letter.source.clone().expect("a source");
    assert_eq!(source.shard, shard_id.0);
    assert_eq!(source.sequence, Some(sequence_number.0.clone()));
    wait_until(WAIT, "the checkpoint passes the undecodable record", || async {
        matches!(&leases(&b).await[&shard_id.0].checkpoint, Checkpoint::Sequence(s) if *s > sequence_number)
    })
    .await;
    shut_down(&addr).await;
}

/// Waits until the two statuses hold 2 leases each and are ready.
async fn wait_for_even_split(a: &ConsumerStatus, b: &ConsumerStatus) {
    wait_until(WAIT, "the two workers hold 2 leases each", || async {
        a.held_leases().len() == 2 && b.held_leases().len() == 2 && a.is_ready() && b.is_ready()
    })
    .await;
    let all: BTreeSet<String> = a.held_leases().into_iter().chain(b.held_leases()).collect();
    assert_eq!(all.len(), 4, "no lease held twice");
}

#[actix_rt::test]
async fn two_workers_split_the_shards_and_a_graceful_stop_hands_over_at_once() {
    let b = backends(4);
    let router = Arc::new(RecordingRouter::default());
    // A generous failover: nothing here may depend on expiry. worker-a checkpoints at
    // most once a minute, so only its final checkpoint on shutdown can cover its records.
    let config_a = ConsumerConfig {
        checkpoint_interval_ms: 60_000,
        ..config("worker-a", 3000)
    };
    let (addr_a, status_a) = start(&b, config_a, &router);
    let (addr_b, status_b) = start(&b, config("worker-b", 3000), &router);
    wait_for_even_split(&status_a, &status_b).await;

    // Two waves: the first gets each shard's (immediate) first checkpoint, the second
    // is routed but not yet checkpointed when the shutdown comes.
    put_numbered(&*b.stream, 12, 0, 5).await;
    wait_until(WAIT, "the first 60 records are routed", || async {
        router.count() >= 60
    })
    .await;
    put_numbered(&*b.stream, 12, 5, 5).await;
    wait_until(WAIT, "the first 120 records are routed", || async {
        router.count() >= 120
    })
    .await;

    let stopped_at = Instant::now();
    shut_down(&addr_a).await;
    assert!(status_a.held_leases().is_empty());
    wait_until(WAIT, "worker-b holds all 4 leases", || async {
        status_b.held_leases().len() == 4
    })
    .await;
    let handover = stopped_at.elapsed();
    assert!(
        handover < Duration::from_millis(2500),
        "released leases are taken promptly, took {handover:?}"
    );

    let last = put_numbered(&*b.stream, 12, 10, 10).await;
    wait_until(WAIT, "all 240 records are routed", || async {
        router.count() >= 240
    })
    .await;
    // A's final checkpoints covered everything it routed, so B routed nothing again.
    assert_exactly_once_in_order(&router.routed(), &expected(12, 20));
    wait_until(WAIT, "worker-b checkpoints every shard to its end", || async {
        let leases = leases(&b).await;
        last.iter().all(|(shard, seq)| {
            let lease = &leases[&shard.0];
            lease.lease_owner.as_deref() == Some("worker-b")
                && lease.checkpoint == Checkpoint::Sequence(seq.clone())
        })
    })
    .await;
    shut_down(&addr_b).await;
}

#[actix_rt::test]
async fn a_killed_worker_loses_its_leases_after_the_failover_time() {
    const FAILOVER: u64 = 300;
    let b = backends(4);
    let router = Arc::new(RecordingRouter::default());

    // worker-a runs on its own arbiter so it can be killed without any goodbye.
    let arbiter = Arbiter::new();
    let (tx, rx) = tokio::sync::oneshot::channel();
    let (stream, lease_store, router_a) = (b.stream.clone(), b.leases.clone(), router.clone());
    arbiter.spawn(async move {
        let started = LeaseCoordinator::start(
            config("worker-a", FAILOVER),
            stream,
            lease_store,
            router_a,
            ActorRegistry::new(),
        );
        let _ = tx.send(started);
    });
    let (_addr_a, status_a) = rx.await.unwrap();
    let (addr_b, status_b) = start(&b, config("worker-b", FAILOVER), &router);
    wait_for_even_split(&status_a, &status_b).await;
    let a_leases = status_a.held_leases();

    put_numbered(&*b.stream, 12, 0, 10).await;
    wait_until(WAIT, "the first 120 records are routed", || async {
        router.count() >= 120
    })
    .await;

    assert!(arbiter.stop(), "worker-a's arbiter was running");
    let killed_at = Instant::now();
    put_numbered(&*b.stream, 12, 10, 10).await;
    wait_until(WAIT, "worker-b holds all 4 leases", || async {
        status_b.held_leases().len() == 4
    })
    .await;
    let takeover = killed_at.elapsed();
    // The counter must stand still for FAILOVER as seen by worker-b; its first sighting of
    // the last counter is at most one round (FAILOVER / 3) before the kill.
    assert!(
        takeover >= Duration::from_millis(FAILOVER / 2),
        "taken before expiry: {takeover:?}"
    );
    let leases_now = leases(&b).await;
    for key in &a_leases {
        assert_eq!(leases_now[key].lease_owner.as_deref(), Some("worker-b"));
    }

    let want = expected(12, 20);
    wait_until(WAIT, "every record put is routed", || async {
        router.routed().into_iter().collect::<BTreeSet<_>>() == want
    })
    .await;
    // Records after worker-a's last checkpoint may be routed again: at least once, not
    // exactly once (the vehicle actors' dedupe absorbs the replay).
    assert!(router.count() >= 240);
    shut_down(&addr_b).await;
}

#[actix_rt::test]
async fn after_a_split_the_parent_is_read_to_its_end_before_the_children() {
    let b = backends(1);
    // Slow routing and small reads: the parent still has a backlog when the children
    // exist, so starting them early would visibly reorder vehicles.
    let router = Arc::new(RecordingRouter {
        delay: Some(Duration::from_millis(3)),
        ..Default::default()
    });
    let parent = b.stream.list_shards().await.unwrap().remove(0);
    put_numbered(&*b.stream, 8, 0, 30).await;
    let middle = parent.starting_hash_key / 2 + parent.ending_hash_key / 2;
    let (first, second) = b.stream.split_shard(&parent.shard_id, middle).expect("split");
    let last_children = put_numbered(&*b.stream, 8, 30, 30).await;
    assert!(
        last_children.keys().all(|s| *s == first || *s == second),
        "new records go to the children"
    );

    let mut cfg = config("solo", 3000);
    cfg.max_records_per_get = 5;
    let (addr, status) = start(&b, cfg, &router);
    wait_until(WAIT, "all 480 records are routed", || async {
        router.count() >= 480
    })
    .await;
    assert_exactly_once_in_order(&router.routed(), &expected(8, 60));

    wait_until(
        WAIT,
        "the parent is at SHARD_END and the children at their ends",
        || async {
            let leases = leases(&b).await;
            leases
                .get(&parent.shard_id.0)
                .is_none_or(|l| l.checkpoint == Checkpoint::ShardEnd)
                && last_children
                    .iter()
                    .all(|(shard, seq)| leases[&shard.0].checkpoint == Checkpoint::Sequence(seq.clone()))
        },
    )
    .await;
    let table = leases(&b).await;
    assert_eq!(
        table[&first.0].parent_shard_ids,
        std::slice::from_ref(&parent.shard_id.0)
    );

    // The children have begun, so the parent's lease is deleted (KCL's completed lease
    // cleanup) — and the shard sync must not lease the still-listed parent again.
    wait_until(WAIT, "the finished parent's lease is deleted", || async {
        !leases(&b).await.contains_key(&parent.shard_id.0)
    })
    .await;
    let rounds = status.completed_rounds();
    wait_until(WAIT, "three more lease rounds", || async {
        status.completed_rounds() >= rounds + 3
    })
    .await;
    assert!(
        !leases(&b).await.contains_key(&parent.shard_id.0),
        "a deleted, finished parent is never leased again"
    );
    assert_eq!(router.count(), 480, "nothing was read twice");
    shut_down(&addr).await;
}

#[actix_rt::test]
async fn the_coordinator_is_not_ready_without_a_lease_store_round() {
    // A brand-new status is not ready until the first round completes.
    let b = backends(2);
    let router = Arc::new(RecordingRouter::default());
    let (addr, status) = start(
        &b,
        ConsumerConfig {
            worker_id: None,
            ..config("unused", 3000)
        },
        &router,
    );
    assert!(!status.is_ready());
    assert!(
        status.worker_id().len() > 7,
        "a generated worker id: {}",
        status.worker_id()
    );
    wait_until(WAIT, "the first round makes it ready", || async {
        status.is_ready()
    })
    .await;
    shut_down(&addr).await;
    assert!(!status.is_ready(), "a stopped coordinator is not ready");
}
