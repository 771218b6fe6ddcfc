//! The embedded backends: the shared port conformance suite, then what only the embedded
//! backends promise (restart from `data_dir`, retention, the memory bound, resharding,
//! group commit).

use std::collections::BTreeMap;
use std::path::Path;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicI64, Ordering};

use bytes::Bytes;
use chrono::{DateTime, Utc};
use futures_util::StreamExt;

use fleetwire::backends::conformance::{self, read_shard, stored};
use fleetwire::backends::embedded::{
    EmbeddedStream, EmbeddedStreamConfig, InProcessFanOut, RedbLeaseStore, RedbStateStore,
    RedbVehicleRegistry, open_database,
};
use fleetwire_actors::model::{TenantId, VehicleId, VehicleUpdate};
use fleetwire_actors::ports::{
    Checkpoint, FanOut, FanOutMessage, Lease, LeaseStore, LogEntry, PutEntry, PutOutcome, RecordStream,
    ReplayRetention, SaveOutcome, SequenceNumber, ShardId, StartPosition, StateStore, StreamError,
};

fn stream_cfg(shards: u32) -> EmbeddedStreamConfig {
    EmbeddedStreamConfig {
        shards,
        ..EmbeddedStreamConfig::default()
    }
}

fn memory_stream() -> EmbeddedStream {
    EmbeddedStream::open(&stream_cfg(4), None).unwrap()
}

fn entry(key: &str, data: &str) -> PutEntry {
    PutEntry {
        partition_key: key.to_owned(),
        data: Bytes::from(data.to_owned()),
    }
}

fn bodies(records: &[fleetwire_actors::ports::StreamRecord]) -> Vec<String> {
    records
        .iter()
        .map(|r| String::from_utf8(r.data.to_vec()).unwrap())
        .collect()
}

/// A clock the test moves by hand: the wall clock plus an offset.
#[derive(Clone, Default)]
struct TestClock(Arc<AtomicI64>);

impl TestClock {
    fn advance_secs(&self, secs: i64) {
        self.0.fetch_add(secs * 1000, Ordering::SeqCst);
    }

    fn now(&self) -> DateTime<Utc> {
        Utc::now() + chrono::Duration::milliseconds(self.0.load(Ordering::SeqCst))
    }
}

fn with_test_clock(stream: EmbeddedStream) -> (EmbeddedStream, TestClock) {
    let clock = TestClock::default();
    let c = clock.clone();
    (stream.with_clock(move || c.now()), clock)
}

// ---- conformance suite -------------------------------------------------------------

#[tokio::test]
async fn stream_conformance_in_memory() {
    conformance::check_put_and_read_in_order(&memory_stream()).await;
    conformance::check_partition_key_routing_is_stable(&memory_stream()).await;
    conformance::check_put_validation(&memory_stream()).await;
    conformance::check_iterator_positions(&memory_stream()).await;
    conformance::check_garbage_iterator_is_invalid(&memory_stream()).await;
}

#[tokio::test]
async fn stream_conformance_persisted() {
    let dir = tempfile::tempdir().unwrap();
    let open = |sub: &str| EmbeddedStream::open(&stream_cfg(4), Some(&dir.path().join(sub))).unwrap();
    conformance::check_put_and_read_in_order(&open("a")).await;
    conformance::check_partition_key_routing_is_stable(&open("b")).await;
    conformance::check_put_validation(&open("c")).await;
    conformance::check_iterator_positions(&open("d")).await;
}

#[tokio::test]
async fn stream_conformance_single_shard() {
    let stream = EmbeddedStream::open(&stream_cfg(1), None).unwrap();
    conformance::check_put_and_read_in_order(&stream).await;
    conformance::check_iterator_positions(&stream).await;
}

#[tokio::test]
async fn lease_store_conformance() {
    let store = RedbLeaseStore::new(open_database(None).unwrap()).unwrap();
    conformance::check_lease_fencing(&store).await;

    let dir = tempfile::tempdir().unwrap();
    let store = RedbLeaseStore::new(open_database(Some(dir.path())).unwrap()).unwrap();
    conformance::check_lease_fencing(&store).await;
}

#[tokio::test]
async fn state_store_conformance() {
    let store = RedbStateStore::new(open_database(None).unwrap()).unwrap();
    conformance::check_state_store_is_order_safe(&store).await;
    conformance::check_state_store_tenant_isolation(&store).await;

    let dir = tempfile::tempdir().unwrap();
    let store = RedbStateStore::new(open_database(Some(dir.path())).unwrap()).unwrap();
    conformance::check_state_store_is_order_safe(&store).await;
    conformance::check_state_store_tenant_isolation(&store).await;
    let store = Arc::new(store);
    conformance::check_state_store_racing_writers(store.clone(), store).await;
}

#[tokio::test]
async fn a_database_from_before_tenants_is_migrated_to_the_default_tenant() {
    let dir = tempfile::tempdir().unwrap();
    {
        // The layout before tenants: table `vehicles`, key = vehicle id, JSON without `tenant`.
        let db = open_database(Some(dir.path())).unwrap();
        let legacy: redb::TableDefinition<&str, &[u8]> = redb::TableDefinition::new("vehicles");
        let txn = db.begin_write().unwrap();
        {
            let mut table = txn.open_table(legacy).unwrap();
            let old = br#"{"vehicle_id":"old-car","signals":{},"last_seen":null,"version":7,"recent_records":[1,2]}"#;
            table.insert("old-car", old.as_slice()).unwrap();
        }
        txn.commit().unwrap();
    }
    let db = open_database(Some(dir.path())).unwrap();
    let store = RedbStateStore::new(db.clone()).unwrap();
    let moved = store
        .load(&TenantId::default(), &VehicleId("old-car".into()))
        .await
        .unwrap()
        .expect("the old snapshot is found under the default tenant");
    assert_eq!((moved.version, moved.recent_records.len()), (7, 2));
    let other = TenantId::parse("other").unwrap();
    assert_eq!(
        store.load(&other, &VehicleId("old-car".into())).await.unwrap(),
        None
    );
    use redb::ReadableDatabase as _;
    let names: Vec<String> = db
        .begin_read()
        .unwrap()
        .list_tables()
        .unwrap()
        .map(|t| redb::TableHandle::name(&t).to_owned())
        .collect();
    assert!(
        !names.contains(&"vehicles".to_owned()),
        "the old table is gone: {names:?}"
    );
}

#[tokio::test]
async fn vehicle_registry_conformance() {
    let registry = RedbVehicleRegistry::new(open_database(None).unwrap()).unwrap();
    conformance::check_registry_basics(&registry).await;
    let registry = Arc::new(registry);
    conformance::check_registry_provision_race(registry.clone(), registry).await;
    let dir = tempfile::tempdir().unwrap();
    let registry = RedbVehicleRegistry::new(open_database(Some(dir.path())).unwrap()).unwrap();
    conformance::check_registry_basics(&registry).await;
}

fn fanout(capacity: usize) -> InProcessFanOut {
    InProcessFanOut::new(capacity, ReplayRetention::from_config(10_000, 600))
}

#[tokio::test]
async fn fanout_conformance() {
    conformance::check_fanout_delivers_to_every_subscriber(&fanout(64)).await;
    conformance::check_fanout_replay(&fanout(64)).await;
    let bounded = InProcessFanOut::new(64, ReplayRetention::from_config(10, 1));
    conformance::check_fanout_replay_is_bounded(&bounded, 10).await;
}

#[tokio::test]
async fn ports_work_as_trait_objects() {
    let db = open_database(None).unwrap();
    let stream: Arc<dyn RecordStream> = Arc::new(memory_stream());
    let leases: Arc<dyn LeaseStore> = Arc::new(RedbLeaseStore::new(Arc::clone(&db)).unwrap());
    let states: Arc<dyn StateStore> = Arc::new(RedbStateStore::new(db).unwrap());
    let fanout: Arc<dyn FanOut> = Arc::new(fanout(8));
    stream.ping().await.unwrap();
    leases.ping().await.unwrap();
    states.ping().await.unwrap();
    fanout.ping().await.unwrap();
}

// ---- embedded stream specifics -------------------------------------------------------

#[tokio::test]
async fn new_stream_has_kinesis_style_shards_covering_the_key_space() {
    let shards = memory_stream().list_shards().await.unwrap();
    let ids: Vec<&str> = shards.iter().map(|s| s.shard_id.0.as_str()).collect();
    assert_eq!(
        ids,
        [
            "shardId-000000000000",
            "shardId-000000000001",
            "shardId-000000000002",
            "shardId-000000000003"
        ]
    );
    assert_eq!(shards[0].starting_hash_key, 0);
    assert_eq!(shards[3].ending_hash_key, u128::MAX);
    assert!(
        shards
            .windows(2)
            .all(|w| w[0].ending_hash_key + 1 == w[1].starting_hash_key)
    );
    assert!(shards.iter().all(|s| !s.closed && s.parent_shard_ids.is_empty()));
}

#[tokio::test]
async fn a_put_wakes_whoever_waits_for_records_on_that_shard_only() {
    let stream = memory_stream();
    let put = stream.put_records(vec![entry("car-1", "x")]).await.unwrap();
    let PutOutcome::Stored { shard_id, .. } = &put[0] else {
        panic!("{put:?}")
    };
    let other = ShardId(format!(
        "shardId-00000000000{}",
        if shard_id.0.ends_with('0') { 1 } else { 0 }
    ));
    let short = std::time::Duration::from_millis(100);
    // Taken before the put, as a consumer takes it before its read.
    let (mut mine, mut theirs) = (stream.records_added(shard_id), stream.records_added(&other));
    assert!(
        tokio::time::timeout(short, &mut mine).await.is_err(),
        "nothing added yet: the earlier put does not count"
    );
    stream.put_records(vec![entry("car-1", "y")]).await.unwrap();
    tokio::time::timeout(short, mine)
        .await
        .expect("the put to its shard wakes it");
    assert!(
        tokio::time::timeout(short, &mut theirs).await.is_err(),
        "another shard's put does not"
    );
    assert!(
        tokio::time::timeout(short, stream.records_added(&ShardId("shardId-999".into())))
            .await
            .is_err(),
        "an unknown shard never resolves"
    );
}

#[tokio::test]
async fn sequence_numbers_are_unique_across_shards() {
    let stream = memory_stream();
    let outcomes = stream
        .put_records((0..200).map(|i| entry(&format!("k{i}"), "x")).collect())
        .await
        .unwrap();
    let mut seqs: Vec<SequenceNumber> = outcomes.iter().map(|o| stored(o).1).collect();
    assert!(
        seqs.iter().all(|s| !s.0.starts_with('0') && s.0.len() >= 19),
        "large decimal numbers: {:?}",
        seqs[0]
    );
    seqs.sort();
    seqs.dedup();
    assert_eq!(seqs.len(), 200);
}

#[tokio::test]
async fn iterators_expire_after_five_minutes() {
    let (stream, clock) = with_test_clock(memory_stream());
    let shard = ShardId("shardId-000000000000".into());
    let it = stream
        .get_shard_iterator(&shard, StartPosition::TrimHorizon)
        .await
        .unwrap();
    clock.advance_secs(299);
    let out = stream
        .get_records(&it, 10)
        .await
        .expect("a 299 s old iterator is still valid");
    clock.advance_secs(300);
    assert_eq!(
        stream.get_records(&it, 10).await.unwrap_err(),
        StreamError::ExpiredIterator
    );
    let next = out.next_iterator.unwrap();
    assert_eq!(
        stream.get_records(&next, 10).await.unwrap_err(),
        StreamError::ExpiredIterator
    );
}

#[tokio::test]
async fn get_records_rejects_out_of_range_limits() {
    let stream = memory_stream();
    let it = stream
        .get_shard_iterator(&ShardId("shardId-000000000000".into()), StartPosition::Latest)
        .await
        .unwrap();
    for limit in [0, 10_001] {
        assert!(matches!(
            stream.get_records(&it, limit).await,
            Err(StreamError::InvalidArgument(_))
        ));
    }
}

#[tokio::test]
async fn retention_trims_records_and_trimmed_positions_start_at_the_horizon() {
    let cfg = EmbeddedStreamConfig {
        shards: 1,
        retention_secs: 60,
        ..EmbeddedStreamConfig::default()
    };
    let (stream, clock) = with_test_clock(EmbeddedStream::open(&cfg, None).unwrap());
    let shard = ShardId("shardId-000000000000".into());
    let old = stream
        .put_records(vec![entry("v", "old-0"), entry("v", "old-1")])
        .await
        .unwrap();
    let old_seq = stored(&old[0]).1;
    clock.advance_secs(30);
    stream.put_records(vec![entry("v", "new-0")]).await.unwrap();
    clock.advance_secs(31); // old records are now 61 s old, the new one 31 s

    let read = read_shard(&stream, &shard, StartPosition::TrimHorizon, 100).await;
    assert_eq!(
        bodies(&read.records),
        ["new-0"],
        "records past retention are trimmed"
    );
    let at = read_shard(
        &stream,
        &shard,
        StartPosition::AtSequenceNumber(old_seq.clone()),
        100,
    )
    .await;
    assert_eq!(
        bodies(&at.records),
        ["new-0"],
        "AT a trimmed record starts at the trim horizon"
    );
    let after = read_shard(&stream, &shard, StartPosition::AfterSequenceNumber(old_seq), 100).await;
    assert_eq!(bodies(&after.records), ["new-0"]);
    assert_eq!(
        stream.shard_bytes(&shard),
        Some(("v".len() + "new-0".len()) as u64)
    );
}

#[tokio::test]
async fn a_full_shard_throttles_until_retention_frees_memory() {
    let cfg = EmbeddedStreamConfig {
        shards: 1,
        retention_secs: 60,
        max_bytes_per_shard: 1000,
        ..EmbeddedStreamConfig::default()
    };
    let (stream, clock) = with_test_clock(EmbeddedStream::open(&cfg, None).unwrap());
    let body = "x".repeat(399); // 400 bytes with the key
    let outcomes = stream
        .put_records(vec![entry("v", &body), entry("v", &body), entry("v", &body)])
        .await
        .unwrap();
    stored(&outcomes[0]);
    stored(&outcomes[1]);
    match &outcomes[2] {
        PutOutcome::Failed { error } => {
            assert!(matches!(error, StreamError::Throttled(_)), "{error:?}");
            assert!(error.is_retryable());
        }
        other => panic!("the third record overflows the shard: {other:?}"),
    }
    let again = stream.put_records(vec![entry("v", &body)]).await.unwrap();
    assert!(matches!(
        &again[0],
        PutOutcome::Failed {
            error: StreamError::Throttled(_)
        }
    ));

    clock.advance_secs(61);
    let after = stream.put_records(vec![entry("v", &body)]).await.unwrap();
    stored(&after[0]);
    assert_eq!(
        stream.shard_bytes(&ShardId("shardId-000000000000".into())),
        Some(400)
    );
}

#[tokio::test]
async fn split_then_merge_keeps_parents_first_reading_possible() {
    let stream = EmbeddedStream::open(&stream_cfg(1), None).unwrap();
    let root = ShardId("shardId-000000000000".into());
    let keys: Vec<String> = (0..40).map(|k| format!("vehicle-{k}")).collect();
    let put = |tag: &'static str| {
        let entries: Vec<PutEntry> = keys.iter().map(|k| entry(k, &format!("{tag}:{k}"))).collect();
        let stream = &stream;
        async move { stream.put_records(entries).await.unwrap() }
    };
    put("before-split").await;

    let mid = u128::MAX / 2 + 1;
    let (left, right) = stream.split_shard(&root, mid).unwrap();
    assert_eq!(
        (left.0.as_str(), right.0.as_str()),
        ("shardId-000000000001", "shardId-000000000002")
    );
    assert!(
        matches!(
            stream.split_shard(&root, mid),
            Err(StreamError::InvalidArgument(_))
        ),
        "a closed shard cannot split"
    );
    assert!(
        matches!(stream.split_shard(&left, 0), Err(StreamError::InvalidArgument(_))),
        "the key must be inside the range"
    );

    let shards = stream.list_shards().await.unwrap();
    let by_id: BTreeMap<_, _> = shards.iter().map(|s| (s.shard_id.clone(), s)).collect();
    assert!(by_id[&root].closed, "the parent is closed");
    assert_eq!(by_id[&left].parent_shard_ids, std::slice::from_ref(&root));
    assert_eq!(
        (by_id[&left].starting_hash_key, by_id[&left].ending_hash_key),
        (0, mid - 1)
    );
    assert_eq!(
        (by_id[&right].starting_hash_key, by_id[&right].ending_hash_key),
        (mid, u128::MAX)
    );

    let after_split = put("after-split").await;
    assert!(
        after_split.iter().all(|o| stored(o).0 != root),
        "new writes go to the children"
    );
    assert!(
        after_split.iter().any(|o| stored(o).0 == left) && after_split.iter().any(|o| stored(o).0 == right)
    );

    // The parent reads to its end and names its children; iterators from before the
    // split (here: LATEST) end the same way.
    let parent = read_shard(&stream, &root, StartPosition::TrimHorizon, 7).await;
    assert!(parent.reached_end);
    assert_eq!(parent.child_shard_ids, [left.clone(), right.clone()]);
    assert_eq!(parent.records.len(), 40);
    assert!(
        bodies(&parent.records)
            .iter()
            .all(|b| b.starts_with("before-split"))
    );
    let at_end = read_shard(&stream, &root, StartPosition::Latest, 7).await;
    assert!(at_end.reached_end && at_end.records.is_empty());

    let merged = stream.merge_shards(&left, &right).unwrap();
    assert_eq!(merged.0, "shardId-000000000003");
    let after_merge = put("after-merge").await;
    assert!(
        after_merge.iter().all(|o| stored(o).0 == merged),
        "new writes go to the merged child"
    );

    // Parents first: root, then both children, then the merged shard: every record of a
    // key comes back in put order.
    let mut per_key: BTreeMap<String, Vec<String>> = BTreeMap::new();
    for shard in [&root, &left, &right, &merged] {
        let read = read_shard(&stream, shard, StartPosition::TrimHorizon, 100).await;
        if shard == &left || shard == &right {
            assert!(read.reached_end);
            assert_eq!(read.child_shard_ids, std::slice::from_ref(&merged));
        }
        for r in read.records {
            per_key
                .entry(r.partition_key.clone())
                .or_default()
                .push(String::from_utf8(r.data.to_vec()).unwrap());
        }
    }
    let merged_desc = stream
        .list_shards()
        .await
        .unwrap()
        .into_iter()
        .find(|s| s.shard_id == merged)
        .unwrap();
    assert_eq!(merged_desc.parent_shard_ids, [left.clone(), right.clone()]);
    assert_eq!(
        (merged_desc.starting_hash_key, merged_desc.ending_hash_key),
        (0, u128::MAX)
    );
    for k in &keys {
        assert_eq!(
            per_key[k],
            [
                format!("before-split:{k}"),
                format!("after-split:{k}"),
                format!("after-merge:{k}")
            ]
        );
    }
    assert!(matches!(
        stream.merge_shards(&left, &right),
        Err(StreamError::InvalidArgument(_))
    ));
}

#[tokio::test]
async fn non_adjacent_shards_cannot_merge() {
    let stream = memory_stream();
    let s = |n: u32| ShardId(format!("shardId-{n:012}"));
    assert!(matches!(
        stream.merge_shards(&s(0), &s(2)),
        Err(StreamError::InvalidArgument(_))
    ));
    assert!(matches!(
        stream.merge_shards(&s(0), &s(9)),
        Err(StreamError::NotFound(_))
    ));
    assert_eq!(stream.merge_shards(&s(2), &s(1)).unwrap(), s(4));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn concurrent_producers_and_consumers_see_every_record_in_order() {
    let dir = tempfile::tempdir().unwrap();
    let stream = Arc::new(EmbeddedStream::open(&stream_cfg(4), Some(dir.path())).unwrap());
    const PRODUCERS: usize = 4;
    const BATCHES: usize = 20;
    const PER_BATCH: usize = 50;

    let mut tasks = Vec::new();
    for p in 0..PRODUCERS {
        let stream = Arc::clone(&stream);
        tasks.push(tokio::spawn(async move {
            for b in 0..BATCHES {
                let entries = (0..PER_BATCH)
                    .map(|i| entry(&format!("p{p}-k{}", i % 10), &format!("{b}:{i}")))
                    .collect();
                for o in stream.put_records(entries).await.unwrap() {
                    stored(&o);
                }
            }
        }));
    }
    // Consumers read every shard while the producers write; once the producers are done,
    // an empty batch means the shard is drained.
    let done = Arc::new(AtomicBool::new(false));
    let mut readers = Vec::new();
    for shard in stream.list_shards().await.unwrap() {
        let (stream, done) = (Arc::clone(&stream), Arc::clone(&done));
        readers.push(tokio::spawn(async move {
            let mut it = stream
                .get_shard_iterator(&shard.shard_id, StartPosition::TrimHorizon)
                .await
                .unwrap();
            let mut got = Vec::new();
            loop {
                let finished = done.load(Ordering::SeqCst);
                let out = stream.get_records(&it, 500).await.unwrap();
                let empty = out.records.is_empty();
                got.extend(out.records);
                it = out.next_iterator.unwrap();
                if empty {
                    if finished {
                        return got;
                    }
                    tokio::task::yield_now().await;
                }
            }
        }));
    }
    for t in tasks {
        t.await.unwrap();
    }
    done.store(true, Ordering::SeqCst);
    let mut per_key: BTreeMap<String, Vec<String>> = BTreeMap::new();
    let mut total = 0;
    for r in readers {
        let got = r.await.unwrap();
        assert!(
            got.windows(2)
                .all(|w| w[0].sequence_number < w[1].sequence_number)
        );
        total += got.len();
        for rec in got {
            per_key
                .entry(rec.partition_key.clone())
                .or_default()
                .push(String::from_utf8(rec.data.to_vec()).unwrap());
        }
    }
    assert_eq!(
        total,
        PRODUCERS * BATCHES * PER_BATCH,
        "every record is read exactly once"
    );
    for (key, seen) in per_key {
        let order: Vec<(usize, usize)> = seen
            .iter()
            .map(|s| {
                let (b, i) = s.split_once(':').unwrap();
                (b.parse().unwrap(), i.parse().unwrap())
            })
            .collect();
        assert!(
            order.windows(2).all(|w| w[0] < w[1]),
            "{key} out of order: {order:?}"
        );
    }
}

// ---- restart from data_dir -----------------------------------------------------------

#[tokio::test]
async fn restart_keeps_stream_records_leases_and_snapshots() {
    let dir = tempfile::tempdir().unwrap();
    let cfg = stream_cfg(2);
    let keys: Vec<String> = (0..20).map(|k| format!("v{k}")).collect();

    let (last_seq, shards_before) = {
        let stream = EmbeddedStream::open(&cfg, Some(dir.path())).unwrap();
        let db = open_database(Some(dir.path())).unwrap();
        let leases = RedbLeaseStore::new(Arc::clone(&db)).unwrap();
        let states = RedbStateStore::new(db).unwrap();

        let mut last = None;
        for round in 0..3 {
            let outcomes = stream
                .put_records(keys.iter().map(|k| entry(k, &format!("{round}:{k}"))).collect())
                .await
                .unwrap();
            last = outcomes.iter().map(|o| stored(o).1).max();
        }
        let (left, _) = stream
            .split_shard(&ShardId("shardId-000000000000".into()), u128::MAX / 4)
            .unwrap();
        stream
            .put_records(vec![entry("v0", "after-split")])
            .await
            .unwrap();

        leases
            .create_lease_if_absent(Lease::new(
                left.0.clone(),
                vec!["shardId-000000000000".into()],
                Checkpoint::TrimHorizon,
            ))
            .await
            .unwrap();
        let lease = leases.list_leases().await.unwrap().pop().unwrap();
        leases.take_lease(&lease, "node-1").await.unwrap();
        leases
            .update_checkpoint(&left.0, "node-1", Checkpoint::Sequence(last.clone().unwrap()))
            .await
            .unwrap();
        for (n, k) in keys.iter().enumerate() {
            assert_eq!(
                states
                    .save(&conformance::snapshot(&TenantId::default(), k, n as u64 + 1))
                    .await
                    .unwrap(),
                SaveOutcome::Written
            );
        }
        (last.unwrap(), stream.list_shards().await.unwrap())
    };

    let stream = EmbeddedStream::open(&cfg, Some(dir.path())).unwrap();
    assert_eq!(
        stream.list_shards().await.unwrap(),
        shards_before,
        "the topology survives"
    );
    let mut per_key: BTreeMap<String, Vec<String>> = BTreeMap::new();
    for shard in &shards_before {
        for r in read_shard(&stream, &shard.shard_id, StartPosition::TrimHorizon, 1000)
            .await
            .records
        {
            per_key
                .entry(r.partition_key.clone())
                .or_default()
                .push(String::from_utf8(r.data.to_vec()).unwrap());
        }
    }
    for k in &keys {
        let mut expected: Vec<String> = (0..3).map(|round| format!("{round}:{k}")).collect();
        if k == "v0" {
            expected.push("after-split".into());
        }
        assert_eq!(per_key[k], expected, "records of {k} survive in order");
    }
    let new = stream
        .put_records(vec![entry("v0", "after-restart")])
        .await
        .unwrap();
    let (new_shard, new_seq) = stored(&new[0]);
    assert!(new_seq > last_seq, "sequence numbers continue after a restart");
    assert!(
        !shards_before
            .iter()
            .find(|s| s.shard_id == new_shard)
            .unwrap()
            .closed
    );

    let db = open_database(Some(dir.path())).unwrap();
    let leases = RedbLeaseStore::new(Arc::clone(&db)).unwrap();
    let states = RedbStateStore::new(db).unwrap();
    let lease = leases.list_leases().await.unwrap().pop().unwrap();
    assert_eq!(lease.lease_owner.as_deref(), Some("node-1"));
    assert_eq!(lease.checkpoint, Checkpoint::Sequence(last_seq));
    for (n, k) in keys.iter().enumerate() {
        let snap = states
            .load(&TenantId::default(), &VehicleId(k.clone()))
            .await
            .unwrap()
            .expect("snapshot survives");
        assert_eq!(snap.version, n as u64 + 1);
    }
}

#[tokio::test]
async fn reopening_drops_records_past_retention_and_compacts_files() {
    let dir = tempfile::tempdir().unwrap();
    let cfg = stream_cfg(1);
    let last = {
        let stream = EmbeddedStream::open(&cfg, Some(dir.path())).unwrap();
        let outcomes = stream
            .put_records((0..100).map(|i| entry("v", &format!("{i:0>100}"))).collect())
            .await
            .unwrap();
        stored(&outcomes[99]).1
    };
    let file = dir.path().join("stream").join("shardId-000000000000.log");
    let size = std::fs::metadata(&file).unwrap().len();
    assert!(size > 100 * 100, "records are on disk");

    let expired = EmbeddedStreamConfig {
        retention_secs: 0,
        ..cfg.clone()
    };
    let stream = EmbeddedStream::open(&expired, Some(dir.path())).unwrap();
    assert_eq!(
        std::fs::metadata(&file).unwrap().len(),
        0,
        "the file was compacted"
    );
    let shard = ShardId("shardId-000000000000".into());
    let read = read_shard(&stream, &shard, StartPosition::TrimHorizon, 100).await;
    assert!(read.records.is_empty());
    let new = stream.put_records(vec![entry("v", "x")]).await.unwrap();
    assert!(
        stored(&new[0]).1 > last,
        "numbers keep growing even when every record expired"
    );
}

#[tokio::test]
async fn a_torn_final_write_is_dropped_on_open() {
    let dir = tempfile::tempdir().unwrap();
    let cfg = stream_cfg(1);
    {
        let stream = EmbeddedStream::open(&cfg, Some(dir.path())).unwrap();
        stream
            .put_records(vec![entry("v", "a"), entry("v", "b")])
            .await
            .unwrap();
    }
    let file = dir.path().join("stream").join("shardId-000000000000.log");
    let mut bytes = std::fs::read(&file).unwrap();
    bytes.extend_from_slice(&[200, 0, 0, 0, 1, 2, 3]); // a frame header promising 200 bytes
    std::fs::write(&file, bytes).unwrap();

    let stream = EmbeddedStream::open(&cfg, Some(dir.path())).unwrap();
    stream.put_records(vec![entry("v", "c")]).await.unwrap();
    drop(stream);
    let stream = EmbeddedStream::open(&cfg, Some(dir.path())).unwrap();
    let read = read_shard(
        &stream,
        &ShardId("shardId-000000000000".into()),
        StartPosition::TrimHorizon,
        10,
    )
    .await;
    assert_eq!(bodies(&read.records), ["a", "b", "c"]);
}

#[tokio::test]
async fn persist_false_keeps_nothing_on_disk() {
    let dir = tempfile::tempdir().unwrap();
    let cfg = EmbeddedStreamConfig {
        persist: false,
        ..stream_cfg(1)
    };
    let stream = EmbeddedStream::open(&cfg, Some(dir.path())).unwrap();
    stream.put_records(vec![entry("v", "a")]).await.unwrap();
    assert!(!Path::new(&dir.path().join("stream")).exists());
}

// ---- state store, fan-out -------------------------------------------------------------

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn concurrent_group_commit_saves_are_all_durable() {
    let dir = tempfile::tempdir().unwrap();
    const TASKS: u64 = 64;
    const VERSIONS: u64 = 30;
    {
        let store = RedbStateStore::new(open_database(Some(dir.path())).unwrap()).unwrap();
        let mut tasks = Vec::new();
        for t in 0..TASKS {
            let store = store.clone();
            tasks.push(tokio::spawn(async move {
                for v in 1..=VERSIONS {
                    let outcome = store
                        .save(&conformance::snapshot(
                            &TenantId::default(),
                            &format!("car-{t:03}"),
                            v,
                        ))
                        .await
                        .unwrap();
                    assert_eq!(outcome, SaveOutcome::Written);
                }
                // A stale save racing in from a replay is refused.
                let stale = store
                    .save(&conformance::snapshot(
                        &TenantId::default(),
                        &format!("car-{t:03}"),
                        1,
                    ))
                    .await
                    .unwrap();
                assert_eq!(stale, SaveOutcome::AlreadyNewer);
            }));
        }
        for t in tasks {
            t.await.unwrap();
        }
    }
    // Reopened from the file: every acknowledged save is there.
    let store = RedbStateStore::new(open_database(Some(dir.path())).unwrap()).unwrap();
    let all = store.list(&TenantId::default(), None, 10_000).await.unwrap();
    assert_eq!(all.len(), TASKS as usize);
    assert!(all.iter().all(|s| s.version == VERSIONS));
    assert!(all.windows(2).all(|w| w[0].vehicle_id < w[1].vehicle_id));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn concurrent_provisions_share_commits_and_the_first_owner_wins() {
    use fleetwire_actors::ports::{ProvisionOutcome, Registration, VehicleRegistry, VehicleStatus};
    let dir = tempfile::tempdir().unwrap();
    let registration = |tenant: &str, vehicle: String| Registration {
        vehicle_id: VehicleId(vehicle),
        tenant: TenantId::parse(tenant).unwrap(),
        display_name: None,
        status: VehicleStatus::Active,
        provisioned_at: Utc::now(),
    };
    {
        let registry = RedbVehicleRegistry::new(open_database(Some(dir.path())).unwrap()).unwrap();
        // Two tenants race for each of 300 vehicles: the writes land in shared commits,
        // in which a later provision must still see the earlier one's row.
        let tasks: Vec<_> = (0..300)
            .flat_map(|i| ["a", "b"].map(|t| (t, format!("car-{i:03}"))))
            .map(|(tenant, vehicle)| {
                let (registry, r) = (registry.clone(), registration(tenant, vehicle));
                tokio::spawn(async move { registry.provision(&r).await.unwrap() })
            })
            .collect();
        let mut outcomes = Vec::new();
        for t in tasks {
            outcomes.push(t.await.unwrap());
        }
        for pair in outcomes.chunks(2) {
            let mut pair = pair.to_vec();
            pair.sort_by_key(|o| format!("{o:?}"));
            assert_eq!(pair, [ProvisionOutcome::Created, ProvisionOutcome::OwnedByOther]);
        }
    }
    // Reopened from the file: every vehicle has exactly one owner, listed under it.
    let registry = RedbVehicleRegistry::new(open_database(Some(dir.path())).unwrap()).unwrap();
    let (a, b) = (
        registry
            .list(&TenantId::parse("a").unwrap(), None, 1000)
            .await
            .unwrap(),
        registry
            .list(&TenantId::parse("b").unwrap(), None, 1000)
            .await
            .unwrap(),
    );
    assert_eq!(a.len() + b.len(), 300);
    for r in a.iter().chain(&b) {
        let owner = registry.lookup(&r.vehicle_id).await.unwrap().unwrap();
        assert_eq!(owner.tenant, r.tenant);
    }
}

#[tokio::test]
async fn a_slow_fanout_subscriber_is_told_it_lagged() {
    let fanout = fanout(2);
    let mut sub = fanout.subscribe();
    assert_eq!(fanout.subscriber_count(), 1);
    for version in 1..=5 {
        fanout
            .publish(Arc::new(VehicleUpdate {
                tenant: TenantId::default(),
                vehicle_id: VehicleId("car".into()),
                version,
                last_seen: None,
                changed: vec![],
                signals: Default::default(),
                ingest_received_at: Utc::now(),
                fleet_events: vec![],
            }))
            .await
            .unwrap();
    }
    assert_eq!(
        sub.next().await,
        Some(FanOutMessage::Lost {
            tenant: None,
            skipped: 3
        })
    );
    let versions: Vec<u64> = sub
        .take(2)
        .map(|m| match m {
            FanOutMessage::Entry(LogEntry::Update { update, .. }) => update.version,
            other => panic!("{other:?}"),
        })
        .collect()
        .await;
    assert_eq!(versions, [4, 5], "after the lag the newest updates follow");
}

/// Rough throughput figures (`cargo test --release --test embedded_backends -- --ignored
/// --nocapture`); asserts only that nothing failed.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "throughput smoke test; run on demand"]
async fn throughput_smoke() {
    async fn put_rate(stream: Arc<EmbeddedStream>) -> f64 {
        let start = std::time::Instant::now();
        let tasks: Vec<_> = (0..4)
            .map(|p| {
                let stream = Arc::clone(&stream);
                tokio::spawn(async move {
                    for b in 0..100 {
                        let entries = (0..500)
                            .map(|i| entry(&format!("car-{p}-{}", (b * 500 + i) % 1000), &"x".repeat(200)))
                            .collect();
                        for o in stream.put_records(entries).await.unwrap() {
                            stored(&o);
                        }
                    }
                })
            })
            .collect();
        for t in tasks {
            t.await.unwrap();
        }
        200_000.0 / start.elapsed().as_secs_f64()
    }
    let memory = put_rate(Arc::new(memory_stream())).await;
    let dir = tempfile::tempdir().unwrap();
    let persisted = put_rate(Arc::new(
        EmbeddedStream::open(&stream_cfg(4), Some(dir.path())).unwrap(),
    ))
    .await;

    let store = RedbStateStore::new(open_database(Some(dir.path())).unwrap()).unwrap();
    let start = std::time::Instant::now();
    let tasks: Vec<_> = (0..200)
        .map(|t| {
            let store = store.clone();
            tokio::spawn(async move {
                for v in 1..=50 {
                    store
                        .save(&conformance::snapshot(
                            &TenantId::default(),
                            &format!("car-{t}"),
                            v,
                        ))
                        .await
                        .unwrap();
                }
            })
        })
        .collect();
    for t in tasks {
        t.await.unwrap();
    }
    let saves = 10_000.0 / start.elapsed().as_secs_f64();
    println!(
        "stream in memory: {memory:.0} rec/s; persisted: {persisted:.0} rec/s; state saves: {saves:.0}/s"
    );
}
