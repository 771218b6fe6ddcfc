//! Port conformance checks, written once against the port traits so that every backend
//! (embedded now; Kinesis, DynamoDB and Redis later) runs the same suite.
//!
//! Each check is an `async fn` that takes a backend and panics with a message naming the
//! broken rule. Give each check a fresh backend: the stream checks tag their partition keys
//! with a per-run nonce and only look at their own records, and the store checks use their
//! own keys, but they assume nobody else writes those keys meanwhile.
//!
//! Stream facts checked here follow the AWS Kinesis Data Streams API reference
//! (PutRecords, GetShardIterator, GetRecords). The fan-out, state-store and vehicle-registry
//! checks are in `conformance/`.

mod dead_letters;
mod fanout;
mod registry;
mod state_store;
mod vin_vault;

pub use dead_letters::{check_dead_letters_basics, check_dead_letters_large_payloads, dead_letter};
pub use fanout::{
    check_fanout_delivers_to_every_subscriber, check_fanout_replay, check_fanout_replay_is_bounded, update_of,
};
pub use registry::{check_registry_basics, check_registry_provision_race, registration, unique_tenant};
pub use state_store::{
    check_state_store_is_order_safe, check_state_store_racing_writers, check_state_store_tenant_isolation,
    snapshot,
};
pub use vin_vault::{
    check_key_wrapper, check_vault_store_basics, check_vin_vault_with_config_keys,
    check_vin_vault_with_stored_keys, local_wrappers,
};

use std::collections::{BTreeMap, HashMap};
use std::sync::atomic::{AtomicU64, Ordering};

use bytes::Bytes;

use fleetwire_actors::ports::stream::{MAX_PUT_RECORDS_ENTRIES, MAX_RECORD_BYTES, hash_key};
use fleetwire_actors::ports::{
    Checkpoint, Lease, LeaseError, LeaseStore, PutEntry, PutOutcome, RecordStream, SequenceNumber, ShardId,
    StartPosition, StreamError, StreamRecord,
};

/// Upper bound on `get_records` calls while draining one shard; reaching it means the
/// backend never reports the end or catching up.
const MAX_READ_CALLS: usize = 10_000;

/// A prefix unique to this process and call, so checks on a shared backend only see their
/// own records.
fn nonce(check: &str) -> String {
    static COUNTER: AtomicU64 = AtomicU64::new(0);
    let n = COUNTER.fetch_add(1, Ordering::Relaxed);
    let t = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_nanos());
    format!("{check}-{}-{t}-{n}", std::process::id())
}

fn entry(key: &str, data: impl Into<Bytes>) -> PutEntry {
    PutEntry {
        partition_key: key.to_owned(),
        data: data.into(),
    }
}

/// The shard and sequence number of a stored put; panics on a failed one.
pub fn stored(outcome: &PutOutcome) -> (ShardId, SequenceNumber) {
    match outcome {
        PutOutcome::Stored {
            shard_id,
            sequence_number,
        } => (shard_id.clone(), sequence_number.clone()),
        PutOutcome::Failed { error } => panic!("put failed where it should succeed: {error}"),
    }
}

/// What [`read_shard`] found.
#[derive(Debug, Default)]
pub struct ShardRead {
    /// Every record read, in the order the stream returned them.
    pub records: Vec<StreamRecord>,
    /// `true` when the shard is closed and was read to its end (no next iterator).
    pub reached_end: bool,
    /// The children reported at the end of a closed shard.
    pub child_shard_ids: Vec<ShardId>,
}

/// Reads one shard from `position` until it is caught up (an empty batch with
/// `millis_behind_latest == 0`) or, for a closed shard, until its end.
///
/// # Panics
///
/// When a call fails or the shard never ends or catches up.
pub async fn read_shard(
    stream: &dyn RecordStream,
    shard: &ShardId,
    position: StartPosition,
    limit: usize,
) -> ShardRead {
    let mut it = stream
        .get_shard_iterator(shard, position)
        .await
        .unwrap_or_else(|e| panic!("get_shard_iterator({shard}) failed: {e}"));
    let mut read = ShardRead::default();
    for _ in 0..MAX_READ_CALLS {
        let out = stream
            .get_records(&it, limit)
            .await
            .unwrap_or_else(|e| panic!("get_records on {shard} failed: {e}"));
        assert!(
            out.records.len() <= limit,
            "get_records returned more than its limit of {limit}"
        );
        let empty = out.records.is_empty();
        read.records.extend(out.records);
        match out.next_iterator {
            None => {
                read.reached_end = true;
                read.child_shard_ids = out.child_shard_ids;
                return read;
            }
            Some(next) => {
                assert!(
                    out.child_shard_ids.is_empty(),
                    "child shards may only be reported at the end of a shard"
                );
                if empty && out.millis_behind_latest == 0 {
                    return read;
                }
                it = next;
            }
        }
    }
    panic!("{shard} neither ended nor caught up after {MAX_READ_CALLS} get_records calls");
}

/// Every record of every listed shard whose partition key starts with `prefix`, per shard.
async fn read_all(stream: &dyn RecordStream, prefix: &str) -> BTreeMap<ShardId, Vec<StreamRecord>> {
    let shards = stream.list_shards().await.expect("list_shards failed");
    let mut out = BTreeMap::new();
    for shard in shards {
        let read = read_shard(stream, &shard.shard_id, StartPosition::TrimHorizon, 1000).await;
        let mine: Vec<_> = read
            .records
            .into_iter()
            .filter(|r| r.partition_key.starts_with(prefix))
            .collect();
        if !mine.is_empty() {
            out.insert(shard.shard_id, mine);
        }
    }
    out
}

/// Records put in one call (and over several calls) come back once each, in put order per
/// partition key, with strictly increasing sequence numbers per shard, matching the put
/// outcomes.
pub async fn check_put_and_read_in_order(stream: &dyn RecordStream) {
    let prefix = nonce("order");
    let keys: Vec<String> = (0..5).map(|k| format!("{prefix}-key{k}")).collect();
    let mut put: HashMap<String, (ShardId, SequenceNumber)> = HashMap::new();
    for round in 0..3 {
        let entries: Vec<PutEntry> = (0..60)
            .map(|i| entry(&keys[i % keys.len()], format!("{round}:{i}")))
            .collect();
        let outcomes = stream
            .put_records(entries.clone())
            .await
            .expect("put_records failed");
        assert_eq!(outcomes.len(), entries.len(), "one outcome per entry");
        for (e, o) in entries.iter().zip(&outcomes) {
            put.insert(String::from_utf8(e.data.to_vec()).unwrap(), stored(o));
        }
    }

    let by_shard = read_all(stream, &prefix).await;
    let mut seen = 0;
    let mut per_key: BTreeMap<String, Vec<String>> = BTreeMap::new();
    for (shard, records) in &by_shard {
        for pair in records.windows(2) {
            assert!(
                pair[0].sequence_number < pair[1].sequence_number,
                "sequence numbers must increase within {shard}: {} then {}",
                pair[0].sequence_number,
                pair[1].sequence_number
            );
        }
        for r in records {
            let body = String::from_utf8(r.data.to_vec()).expect("bodies are UTF-8 here");
            let (put_shard, put_seq) = put
                .get(&body)
                .unwrap_or_else(|| panic!("read a record that was never put: {body}"));
            assert_eq!(
                put_shard, shard,
                "record {body} read from another shard than put_records said"
            );
            assert_eq!(
                put_seq, &r.sequence_number,
                "record {body} has another sequence number than put_records said"
            );
            per_key.entry(r.partition_key.clone()).or_default().push(body);
            seen += 1;
        }
    }
    assert_eq!(seen, put.len(), "every stored record is read exactly once");
    for (key, bodies) in per_key {
        let k: usize = key.rsplit("key").next().unwrap().parse().unwrap();
        let expected: Vec<String> = (0..3)
            .flat_map(|round| {
                (0..60)
                    .filter(move |i| i % 5 == k)
                    .map(move |i| format!("{round}:{i}"))
            })
            .collect();
        assert_eq!(bodies, expected, "records of {key} must come back in put order");
    }
}

/// One partition key always maps to the same shard, and that shard's hash-key range holds
/// the key's MD5 hash key.
pub async fn check_partition_key_routing_is_stable(stream: &dyn RecordStream) {
    let prefix = nonce("route");
    let shards = stream.list_shards().await.expect("list_shards failed");
    let keys: Vec<String> = (0..50).map(|k| format!("{prefix}-{k}")).collect();
    let mut first_shard: HashMap<&str, ShardId> = HashMap::new();
    for _ in 0..2 {
        let outcomes = stream
            .put_records(keys.iter().map(|k| entry(k, "x")).collect())
            .await
            .expect("put_records failed");
        for (key, outcome) in keys.iter().zip(&outcomes) {
            let (shard_id, _) = stored(outcome);
            let prev = first_shard.entry(key).or_insert_with(|| shard_id.clone());
            assert_eq!(
                prev, &shard_id,
                "key {key} moved between shards without resharding"
            );
            let desc = shards
                .iter()
                .find(|s| s.shard_id == shard_id)
                .unwrap_or_else(|| panic!("put_records named {shard_id}, which list_shards does not know"));
            let h = hash_key(key);
            assert!(
                !desc.closed && desc.starting_hash_key <= h && h <= desc.ending_hash_key,
                "key {key} (hash {h}) went to {shard_id}, whose range is {}..={}",
                desc.starting_hash_key,
                desc.ending_hash_key
            );
        }
    }
    if shards.iter().filter(|s| !s.closed).count() > 1 {
        let distinct: std::collections::HashSet<_> = first_shard.values().collect();
        assert!(distinct.len() > 1, "50 keys all landed on one of several shards");
    }
}

/// PutRecords limits: more than 500 entries fails the call; an entry over 1 MiB or with a
/// partition key outside 1..=256 characters fails alone while the others are stored, and
/// outcomes keep the input order.
pub async fn check_put_validation(stream: &dyn RecordStream) {
    let prefix = nonce("valid");
    let too_many: Vec<PutEntry> = (0..=MAX_PUT_RECORDS_ENTRIES)
        .map(|_| entry(&prefix, "x"))
        .collect();
    match stream.put_records(too_many).await {
        Err(StreamError::InvalidArgument(_)) => {}
        other => panic!("501 entries must fail the call with InvalidArgument, got {other:?}"),
    }

    let key_256: String = format!("{prefix}-")
        .chars()
        .chain(std::iter::repeat('é'))
        .take(256)
        .collect();
    let key_257: String = format!("{key_256}z");
    let exactly_max = vec![0u8; MAX_RECORD_BYTES - prefix.len()];
    let over_max = vec![0u8; MAX_RECORD_BYTES - prefix.len() + 1];
    let entries = vec![
        entry(&prefix, "ok-0"),
        entry(&prefix, over_max),
        entry("", "empty key"),
        entry(&key_257, "long key"),
        entry(&key_256, "ok-4"),
        entry(&prefix, exactly_max),
        entry(&prefix, "ok-6"),
    ];
    let outcomes = stream.put_records(entries).await.expect("put_records failed");
    assert_eq!(outcomes.len(), 7, "one outcome per entry");
    for (i, outcome) in outcomes.iter().enumerate() {
        let should_fail = matches!(i, 1..=3);
        match (should_fail, outcome) {
            (
                true,
                PutOutcome::Failed {
                    error: StreamError::InvalidArgument(_),
                },
            ) => {}
            (false, PutOutcome::Stored { .. }) => {}
            _ => panic!(
                "entry {i}: expected {} but got {outcome:?}",
                if should_fail {
                    "Failed(InvalidArgument)"
                } else {
                    "Stored"
                }
            ),
        }
    }
}

/// TRIM_HORIZON, LATEST, AT_SEQUENCE_NUMBER and AFTER_SEQUENCE_NUMBER start where Kinesis
/// starts; `limit` is honoured and the next iterator continues; unknown shards are
/// `NotFound`.
pub async fn check_iterator_positions(stream: &dyn RecordStream) {
    let key = nonce("pos");
    let outcomes = stream
        .put_records((0..5).map(|i| entry(&key, format!("r{i}"))).collect())
        .await
        .expect("put_records failed");
    let put: Vec<(ShardId, SequenceNumber)> = outcomes.iter().map(stored).collect();
    let shard = put[0].0.clone();
    let mine = |records: Vec<StreamRecord>| -> Vec<String> {
        records
            .into_iter()
            .filter(|r| r.partition_key == key)
            .map(|r| String::from_utf8(r.data.to_vec()).unwrap())
            .collect()
    };
    let all: Vec<String> = (0..5).map(|i| format!("r{i}")).collect();

    let read = read_shard(stream, &shard, StartPosition::TrimHorizon, 2).await;
    assert_eq!(
        mine(read.records),
        all,
        "TRIM_HORIZON reads everything, 2 at a time"
    );

    let at = read_shard(
        stream,
        &shard,
        StartPosition::AtSequenceNumber(put[2].1.clone()),
        100,
    )
    .await;
    assert_eq!(
        mine(at.records),
        all[2..],
        "AT_SEQUENCE_NUMBER includes that record"
    );

    let after = read_shard(
        stream,
        &shard,
        StartPosition::AfterSequenceNumber(put[2].1.clone()),
        100,
    )
    .await;
    assert_eq!(
        mine(after.records),
        all[3..],
        "AFTER_SEQUENCE_NUMBER starts after that record"
    );

    let latest = stream
        .get_shard_iterator(&shard, StartPosition::Latest)
        .await
        .expect("get_shard_iterator(LATEST) failed");
    let out = stream
        .get_records(&latest, 100)
        .await
        .expect("get_records failed");
    assert!(
        mine(out.records).is_empty(),
        "LATEST must not return records put before it"
    );
    stream
        .put_records(vec![entry(&key, "r5")])
        .await
        .expect("put_records failed");
    let mut from_latest = Vec::new();
    let mut it = latest;
    for _ in 0..MAX_READ_CALLS {
        let out = stream.get_records(&it, 100).await.expect("get_records failed");
        from_latest.extend(mine(out.records));
        if !from_latest.is_empty() {
            break;
        }
        it = out
            .next_iterator
            .expect("an open shard always has a next iterator");
    }
    assert_eq!(from_latest, ["r5"], "LATEST returns records put after it");

    let limited = stream
        .get_records(
            &stream
                .get_shard_iterator(&shard, StartPosition::AtSequenceNumber(put[0].1.clone()))
                .await
                .unwrap(),
            1,
        )
        .await
        .unwrap();
    assert_eq!(limited.records.len(), 1, "limit 1 returns one record");
    assert!(
        limited.millis_behind_latest < 24 * 3600 * 1000,
        "millis_behind_latest is a plausible lag"
    );

    match stream
        .get_shard_iterator(
            &ShardId("shardId-999999999999".into()),
            StartPosition::TrimHorizon,
        )
        .await
    {
        Err(StreamError::NotFound(_)) => {}
        other => panic!("an unknown shard must be NotFound, got {other:?}"),
    }
}

/// A garbage iterator is `InvalidArgument` (AWS: InvalidArgumentException), never retried.
pub async fn check_garbage_iterator_is_invalid(stream: &dyn RecordStream) {
    let garbage = fleetwire_actors::ports::ShardIterator("not-an-iterator".into());
    match stream.get_records(&garbage, 10).await {
        Err(StreamError::InvalidArgument(_)) => {}
        other => panic!("a garbage iterator must be InvalidArgument, got {other:?}"),
    }
}

/// The lease table's fencing: create-if-absent is idempotent; renew, take and evict are
/// conditional on the counter (and owner for renew/evict) and bump it; a stale counter
/// fails with `ConditionFailed`; checkpoints need the current owner, keep the counter and
/// reset the owner-switch count; take counts real owner changes; missing leases are
/// `NotFound`.
pub async fn check_lease_fencing(store: &dyn LeaseStore) {
    let key = nonce("lease");
    let parents = vec!["shardId-000000000001".to_owned()];
    assert!(
        store
            .create_lease_if_absent(Lease::new(&key, parents.clone(), Checkpoint::TrimHorizon))
            .await
            .expect("create failed"),
        "a new lease is created"
    );
    assert!(
        !store
            .create_lease_if_absent(Lease::new(&key, vec![], Checkpoint::Latest))
            .await
            .expect("create failed"),
        "an existing lease is not replaced"
    );
    let fresh = find(store, &key).await;
    assert_eq!(fresh.parent_shard_ids, parents, "create keeps the first lease");
    assert_eq!((fresh.lease_owner.as_deref(), fresh.lease_counter), (None, 0));

    // A takes the free lease.
    let a = store
        .take_lease(&fresh, "worker-a")
        .await
        .expect("take of a free lease failed");
    assert_eq!(a.lease_owner.as_deref(), Some("worker-a"));
    assert_eq!(a.lease_counter, fresh.lease_counter + 1, "take bumps the counter");
    assert_eq!(
        a.owner_switches_since_checkpoint, 1,
        "a change of owner is counted"
    );
    assert_eq!(find(store, &key).await, a, "take returns the stored lease");

    // A renews.
    let a2 = store.renew_lease(&a).await.expect("renew by the owner failed");
    assert_eq!(a2.lease_counter, a.lease_counter + 1, "renew bumps the counter");
    assert_eq!(a2.lease_owner.as_deref(), Some("worker-a"));
    assert_eq!(
        a2.owner_switches_since_checkpoint, 1,
        "renew is not an owner switch"
    );

    // A stale counter (the copy before the renewal) fails everything that is fenced.
    assert_condition_failed(store.renew_lease(&a).await, "renew with a stale counter");
    assert_condition_failed(
        store.take_lease(&a, "worker-b").await,
        "take with a stale counter",
    );
    assert_condition_failed(store.evict_lease(&a).await, "evict with a stale counter");
    let mut wrong_owner = a2.clone();
    wrong_owner.lease_owner = Some("worker-b".into());
    assert_condition_failed(store.renew_lease(&wrong_owner).await, "renew by a non-owner");
    assert_condition_failed(store.evict_lease(&wrong_owner).await, "evict by a non-owner");

    // Checkpoints: only the owner, counter unchanged, switches reset.
    let seq = Checkpoint::Sequence(SequenceNumber("12345".into()));
    store
        .update_checkpoint(&key, "worker-a", seq.clone())
        .await
        .expect("checkpoint by the owner failed");
    let after_cp = find(store, &key).await;
    assert_eq!(after_cp.checkpoint, seq);
    assert_eq!(
        after_cp.lease_counter, a2.lease_counter,
        "a checkpoint does not change the counter"
    );
    assert_eq!(
        after_cp.owner_switches_since_checkpoint, 0,
        "a checkpoint resets the owner-switch count"
    );
    assert_condition_failed(
        store
            .update_checkpoint(&key, "worker-b", Checkpoint::ShardEnd)
            .await,
        "checkpoint by a non-owner",
    );
    // The renewal still works after a checkpoint, since the counter did not move.
    let a3 = store
        .renew_lease(&after_cp)
        .await
        .expect("renew after checkpoint failed");

    // B steals it; A is now fenced out of checkpoints and renewals.
    let b = store.take_lease(&a3, "worker-b").await.expect("steal failed");
    assert_eq!(b.lease_owner.as_deref(), Some("worker-b"));
    assert_eq!(b.owner_switches_since_checkpoint, 1);
    assert_eq!(b.checkpoint, seq, "take keeps the checkpoint");
    assert_condition_failed(store.renew_lease(&a3).await, "renew by the previous owner");
    assert_condition_failed(
        store
            .update_checkpoint(&key, "worker-a", Checkpoint::ShardEnd)
            .await,
        "checkpoint by the previous owner",
    );
    // Re-taking one's own lease is not an owner switch.
    let b2 = store.take_lease(&b, "worker-b").await.expect("re-take failed");
    assert_eq!(
        b2.owner_switches_since_checkpoint, 1,
        "taking from oneself is not a switch"
    );

    // B releases it.
    let free = store.evict_lease(&b2).await.expect("evict by the owner failed");
    assert_eq!(free.lease_owner, None);
    assert_eq!(
        free.lease_counter,
        b2.lease_counter + 1,
        "evict bumps the counter"
    );
    assert_condition_failed(
        store
            .update_checkpoint(&key, "worker-b", Checkpoint::ShardEnd)
            .await,
        "checkpoint of a released lease",
    );

    // Missing leases.
    let ghost = Lease::new(nonce("ghost"), vec![], Checkpoint::TrimHorizon);
    assert_not_found(store.renew_lease(&ghost).await.map(drop), "renew");
    assert_not_found(store.take_lease(&ghost, "worker-a").await.map(drop), "take");
    assert_not_found(store.evict_lease(&ghost).await.map(drop), "evict");
    assert_not_found(
        store
            .update_checkpoint(&ghost.lease_key, "worker-a", Checkpoint::ShardEnd)
            .await,
        "checkpoint",
    );

    store.delete_lease(&key).await.expect("delete failed");
    assert!(
        store
            .list_leases()
            .await
            .unwrap()
            .iter()
            .all(|l| l.lease_key != key),
        "a deleted lease is gone"
    );
    store.ping().await.expect("ping failed");
}

async fn find(store: &dyn LeaseStore, key: &str) -> Lease {
    store
        .list_leases()
        .await
        .expect("list_leases failed")
        .into_iter()
        .find(|l| l.lease_key == key)
        .unwrap_or_else(|| panic!("lease {key} is missing from list_leases"))
}

fn assert_condition_failed<T: std::fmt::Debug>(result: Result<T, LeaseError>, what: &str) {
    match result {
        Err(LeaseError::ConditionFailed(_)) => {}
        other => panic!("{what} must fail with ConditionFailed, got {other:?}"),
    }
}

fn assert_not_found(result: Result<(), LeaseError>, what: &str) {
    match result {
        Err(LeaseError::NotFound(_)) => {}
        other => panic!("{what} of a missing lease must be NotFound, got {other:?}"),
    }
}
