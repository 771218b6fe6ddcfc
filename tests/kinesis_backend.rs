//! The Kinesis stream backend against a real emulator (kinesis-local): the shared port
//! conformance suite, then resharding, paging and errors as Kinesis does them.
//!
//! Needs `FLEETWIRE_TEST_KINESIS_ENDPOINT` (e.g. `http://127.0.0.1:4568`): run
//! `scripts/emulators start kinesis` and `eval "$(scripts/emulators env)"` (scripts/test
//! does both). Without it every test fails, so a missing emulator is never mistaken for a
//! pass.
//!
//! Each test creates its own small stream and deletes it at the end, even when the test
//! fails: kinesis-local gets slower as a stream grows (shared/notes/emulators.md).

mod common;

use common::cloud::unique;
use std::future::Future;
use std::sync::Arc;

use bytes::Bytes;

use fleetwire::backends::conformance::{self, read_shard, stored};
use fleetwire::backends::kinesis::{KinesisConfig, KinesisError, KinesisStream};
use fleetwire_actors::ports::stream::{even_hash_ranges, shard_for_key};
use fleetwire_actors::ports::{
    PutEntry, PutOutcome, RecordStream, ShardId, ShardIterator, StartPosition, StreamError,
};

const ENDPOINT_VAR: &str = "FLEETWIRE_TEST_KINESIS_ENDPOINT";

fn endpoint() -> String {
    std::env::var(ENDPOINT_VAR).unwrap_or_else(|_| {
        panic!(
            "{ENDPOINT_VAR} is not set: these tests need kinesis-local. Run \
             `scripts/emulators start kinesis` and `eval \"$(scripts/emulators env)\"` \
             (or use scripts/test, which does both)."
        )
    })
}

fn config(name: &str, create: Option<u32>) -> KinesisConfig {
    KinesisConfig {
        stream_name: name.to_owned(),
        region: "us-east-1".into(),
        endpoint_url: Some(endpoint()),
        create_if_missing: create,
        static_credentials: true,
        ..KinesisConfig::default()
    }
}

/// Runs `test` on a fresh stream of `shards` shards and deletes the stream afterwards,
/// also when the test panics (the panic is then re-raised).
async fn with_stream<F, Fut>(shards: u32, test: F)
where
    F: FnOnce(Arc<KinesisStream>) -> Fut,
    Fut: Future<Output = ()> + Send + 'static,
{
    let name = unique("fw-test");
    let stream = Arc::new(
        KinesisStream::connect(&config(&name, Some(shards)))
            .await
            .unwrap_or_else(|e| panic!("creating {name} on {} failed: {e}", endpoint())),
    );
    let outcome = tokio::spawn(test(Arc::clone(&stream))).await;
    stream.delete_stream().await.expect("delete_stream failed");
    if let Err(e) = outcome {
        std::panic::resume_unwind(e.into_panic());
    }
}

fn entry(key: &str, data: &str) -> PutEntry {
    PutEntry {
        partition_key: key.to_owned(),
        data: Bytes::from(data.to_owned()),
    }
}

// ---- conformance suite -------------------------------------------------------------

#[tokio::test]
async fn conformance_put_and_read_in_order() {
    with_stream(4, |s| async move {
        conformance::check_put_and_read_in_order(&*s).await
    })
    .await;
}

#[tokio::test]
async fn conformance_put_and_read_in_order_single_shard() {
    with_stream(1, |s| async move {
        conformance::check_put_and_read_in_order(&*s).await
    })
    .await;
}

#[tokio::test]
async fn conformance_partition_key_routing_is_stable() {
    with_stream(3, |s| async move {
        conformance::check_partition_key_routing_is_stable(&*s).await;
    })
    .await;
}

#[tokio::test]
async fn conformance_put_validation() {
    with_stream(2, |s| async move { conformance::check_put_validation(&*s).await }).await;
}

#[tokio::test]
async fn conformance_iterator_positions() {
    with_stream(
        2,
        |s| async move { conformance::check_iterator_positions(&*s).await },
    )
    .await;
}

/// AWS answers a garbage iterator with InvalidArgumentException (→ `InvalidArgument`), but
/// kinesis-local answers a bare HTTP 500, which this backend rightly treats as
/// `Unavailable` (on AWS a 500 is a real internal failure and must be retried). This test
/// pins the emulator's behaviour; if an upgrade fixes it, run the conformance check instead.
#[tokio::test]
async fn garbage_iterator_on_the_emulator() {
    with_stream(1, |s| async move {
        let garbage = ShardIterator("not-an-iterator".into());
        match s.get_records(&garbage, 10).await {
            Err(StreamError::Unavailable(_)) => {}
            Err(StreamError::InvalidArgument(_)) => {
                panic!("kinesis-local now rejects garbage iterators properly: use check_garbage_iterator_is_invalid")
            }
            other => panic!("unexpected answer to a garbage iterator: {other:?}"),
        }
    })
    .await;
}

// ---- what the emulator shows about Kinesis itself -----------------------------------

/// Splitting a shard closes it: new records go to the children, and reading the parent to
/// its end yields no next iterator but both children, which list_shards names with the
/// parent as their parent.
#[tokio::test]
async fn split_shard_closes_the_parent_and_names_its_children() {
    with_stream(1, |s| async move {
        let shards = s.list_shards().await.unwrap();
        assert_eq!(shards.len(), 1);
        let parent = shards[0].shard_id.clone();
        let before = s
            .put_records((0..10).map(|i| entry(&format!("v{i}"), "before")).collect())
            .await
            .unwrap();
        before.iter().for_each(|o| assert_eq!(stored(o).0, parent));

        let mid = even_hash_ranges(2)[1].0;
        s.split_shard(&parent, mid).await.unwrap();

        let shards = s.list_shards().await.unwrap();
        assert_eq!(shards.len(), 3, "parent plus two children: {shards:?}");
        let parent_desc = shards.iter().find(|d| d.shard_id == parent).unwrap();
        assert!(parent_desc.closed, "the split parent is closed");
        let children: Vec<_> = shards.iter().filter(|d| d.shard_id != parent).collect();
        for child in &children {
            assert!(!child.closed);
            assert_eq!(child.parent_shard_ids, std::slice::from_ref(&parent));
        }
        let mut ranges: Vec<_> = children
            .iter()
            .map(|c| (c.starting_hash_key, c.ending_hash_key))
            .collect();
        ranges.sort();
        assert_eq!(
            ranges,
            even_hash_ranges(2),
            "the children split the range at {mid}"
        );

        // New records route to the children by hash key.
        let after = s
            .put_records((0..10).map(|i| entry(&format!("v{i}"), "after")).collect())
            .await
            .unwrap();
        for (i, o) in after.iter().enumerate() {
            let expected = shard_for_key(&format!("v{i}"), &shards).unwrap();
            assert_eq!(stored(o).0, expected.shard_id);
        }

        let read = read_shard(&*s, &parent, StartPosition::TrimHorizon, 3).await;
        assert!(
            read.reached_end,
            "a closed parent read to its end has no next iterator"
        );
        assert_eq!(
            read.records.len(),
            10,
            "the parent holds exactly the records put before the split"
        );
        let mut got = read.child_shard_ids.clone();
        got.sort();
        let mut want: Vec<ShardId> = children.iter().map(|c| c.shard_id.clone()).collect();
        want.sort();
        assert_eq!(got, want, "the end of the parent names both children");
    })
    .await;
}

/// Merging two adjacent shards lists the merged child with both parents (the second as
/// AdjacentParentShardId).
#[tokio::test]
async fn merge_shards_lists_both_parents() {
    with_stream(2, |s| async move {
        let mut shards = s.list_shards().await.unwrap();
        shards.sort_by_key(|d| d.starting_hash_key);
        let (a, b) = (shards[0].shard_id.clone(), shards[1].shard_id.clone());
        s.merge_shards(&a, &b).await.unwrap();
        let shards = s.list_shards().await.unwrap();
        let open: Vec<_> = shards.iter().filter(|d| !d.closed).collect();
        assert_eq!(open.len(), 1, "{shards:?}");
        assert_eq!(open[0].parent_shard_ids, [a, b]);
        assert_eq!(
            (open[0].starting_hash_key, open[0].ending_hash_key),
            (0, u128::MAX)
        );
    })
    .await;
}

/// ListShards paging with NextToken alone (AWS rejects NextToken together with the stream
/// name): a page size of 1 walks every shard once.
#[tokio::test]
async fn list_shards_follows_next_token() {
    with_stream(4, |s| async move {
        let all = s.list_shards().await.unwrap();
        assert_eq!(all.len(), 4);
        let paged = KinesisStream::from_client(s.client().clone(), s.stream_name())
            .with_list_shards_page_size(1)
            .list_shards()
            .await
            .unwrap();
        assert_eq!(paged, all, "one shard per page gives the same list");
        // The open shards of a new stream tile the whole hash-key space. (The exact
        // boundaries are the server's choice: kinesis-local's differ by one or two from
        // `even_hash_ranges(4)`, so routing must always use the listed ranges.)
        let mut ranges: Vec<_> = all
            .iter()
            .map(|d| (d.starting_hash_key, d.ending_hash_key))
            .collect();
        ranges.sort();
        assert_eq!(ranges[0].0, 0);
        assert_eq!(ranges[3].1, u128::MAX);
        for w in ranges.windows(2) {
            assert_eq!(w[0].1 + 1, w[1].0, "no gaps or overlaps: {ranges:?}");
        }
    })
    .await;
}

#[tokio::test]
async fn ping_succeeds_on_an_active_stream_and_fails_with_not_found_when_missing() {
    with_stream(
        1,
        |s| async move { s.ping().await.expect("ping on an ACTIVE stream") },
    )
    .await;

    // No create_if_missing: connect makes no call, so it succeeds; ping then finds nothing.
    let missing = KinesisStream::connect(&config(&unique("fw-test"), None))
        .await
        .unwrap();
    match missing.ping().await {
        Err(StreamError::NotFound(_)) => {}
        other => panic!("ping on a missing stream must be NotFound, got {other:?}"),
    }
    match missing.put_records(vec![entry("k", "x")]).await {
        Err(StreamError::NotFound(_)) => {}
        other => panic!("put_records on a missing stream must be NotFound, got {other:?}"),
    }
    missing
        .delete_stream()
        .await
        .expect("deleting a missing stream is a no-op");
}

#[tokio::test]
async fn connect_rejects_invalid_config_and_reuses_an_existing_stream() {
    let bad = KinesisConfig {
        stream_name: "not a name".into(),
        ..config("x", None)
    };
    assert!(matches!(
        KinesisStream::connect(&bad).await,
        Err(KinesisError::InvalidConfig(_))
    ));

    with_stream(2, |s| async move {
        // A second node with create_if_missing finds the stream and keeps its shards.
        let again = KinesisStream::connect(&config(s.stream_name(), Some(5)))
            .await
            .unwrap();
        assert_eq!(again.list_shards().await.unwrap().len(), 2);
    })
    .await;
}

/// Errors the port distinguishes: unknown shard, bad sequence number, bad limit, and what
/// kinesis-local does with a garbage iterator (HTTP 500 → Unavailable; AWS says
/// InvalidArgumentException → InvalidArgument).
#[tokio::test]
async fn errors_are_classified() {
    with_stream(1, |s| async move {
        let shard = s.list_shards().await.unwrap()[0].shard_id.clone();
        match s
            .get_shard_iterator(&ShardId("shardId-000000000042".into()), StartPosition::Latest)
            .await
        {
            Err(StreamError::NotFound(_)) => {}
            other => panic!("unknown shard: {other:?}"),
        }
        match s
            .get_shard_iterator(
                &shard,
                StartPosition::AtSequenceNumber(fleetwire_actors::ports::SequenceNumber("garbage".into())),
            )
            .await
        {
            Err(StreamError::InvalidArgument(_)) => {}
            other => panic!("bad sequence number: {other:?}"),
        }
        let it = s
            .get_shard_iterator(&shard, StartPosition::TrimHorizon)
            .await
            .unwrap();
        for bad in [0, 10_001] {
            assert!(matches!(
                s.get_records(&it, bad).await,
                Err(StreamError::InvalidArgument(_))
            ));
        }
        match s.get_records(&ShardIterator("not-an-iterator".into()), 10).await {
            Err(StreamError::Unavailable(_) | StreamError::InvalidArgument(_)) => {}
            other => panic!("garbage iterator: {other:?}"),
        }
        // Nothing to send is no call and no error.
        assert_eq!(s.put_records(Vec::new()).await.unwrap(), Vec::<PutOutcome>::new());
        let only_bad = s.put_records(vec![entry("", "x")]).await.unwrap();
        assert!(matches!(
            only_bad[..],
            [PutOutcome::Failed {
                error: StreamError::InvalidArgument(_)
            }]
        ));
    })
    .await;
}

/// `limit` splits a read, an open shard read to its tip keeps a next iterator, and the
/// arrival time comes through.
#[tokio::test]
async fn get_records_reports_lag_and_keeps_iterating_open_shards() {
    with_stream(1, |s| async move {
        let shard = s.list_shards().await.unwrap()[0].shard_id.clone();
        s.put_records((0..5).map(|i| entry("lag", &format!("r{i}"))).collect())
            .await
            .unwrap();
        let it = s
            .get_shard_iterator(&shard, StartPosition::TrimHorizon)
            .await
            .unwrap();
        let first = s.get_records(&it, 2).await.unwrap();
        assert_eq!(first.records.len(), 2);
        assert!(first.child_shard_ids.is_empty());
        let rest = s
            .get_records(first.next_iterator.as_ref().unwrap(), 100)
            .await
            .unwrap();
        assert_eq!(rest.records.len(), 3);
        assert!(rest.next_iterator.is_some(), "an open shard never ends");
        let arrival = rest.records[0].approximate_arrival;
        let age = chrono::Utc::now() - arrival;
        assert!(
            age.num_seconds().abs() < 60,
            "approximate arrival {arrival} is close to now"
        );
    })
    .await;
}
