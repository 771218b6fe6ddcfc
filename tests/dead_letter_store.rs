//! The dead-letter stores: the shared conformance checks on redb (in memory and on disk,
//! across a reopen), the in-process sink, and DynamoDB Local with its large payloads in
//! S3 (moto), plus the DynamoDB item layout of docs/data-model.md; without a bucket a
//! large payload is cut and reported, and with the bucket missing or S3 unreachable a put
//! fails before any item is written.
//!
//! The DynamoDB tests need `FLEETWIRE_TEST_DYNAMODB_ENDPOINT` and
//! `FLEETWIRE_TEST_S3_ENDPOINT` (`scripts/emulators start dynamodb`, `… start s3`,
//! `eval "$(scripts/emulators env)"`).

mod common;

use aws_sdk_dynamodb::types::AttributeValue;
use bytes::Bytes;
use chrono::{Duration, TimeZone, Utc};
use common::cloud::{create_bucket, dynamodb_local, s3_settings};
use fleetwire::backends::conformance;
use fleetwire::backends::dynamodb::{DynamoDbConfig, DynamoDbDeadLetters};
use fleetwire::backends::embedded::{InMemoryDeadLetters, RedbDeadLetters, open_database};
use fleetwire::backends::s3::S3Bucket;
use fleetwire_actors::model::TenantId;
use fleetwire_actors::producer::dead_letter::MAX_INLINE_PAYLOAD;
use fleetwire_actors::producer::{DeadLetter, DeadLetterReason, DeadLetterSink, DeadLetterSource};

#[tokio::test]
async fn redb_conformance() {
    let store = RedbDeadLetters::new(open_database(None).unwrap()).unwrap();
    conformance::check_dead_letters_basics(&store).await;
    conformance::check_dead_letters_large_payloads(&store).await;
}

#[tokio::test]
async fn in_memory_conformance() {
    let store = InMemoryDeadLetters::new(1000);
    conformance::check_dead_letters_basics(&store).await;
    conformance::check_dead_letters_large_payloads(&store).await;
}

#[tokio::test]
async fn redb_keeps_letters_across_a_restart() {
    let dir = tempfile::tempdir().unwrap();
    let tenant = TenantId::parse("acme").unwrap();
    let fresh = conformance::dead_letter(&tenant, Utc::now(), 1, DeadLetterReason::Unprovisioned);
    let id = fresh.id();
    {
        let store = RedbDeadLetters::new(open_database(Some(dir.path())).unwrap()).unwrap();
        store.put(vec![fresh]).await.unwrap();
    }
    let store = RedbDeadLetters::new(open_database(Some(dir.path())).unwrap()).unwrap();
    let back = store.get(&id).await.unwrap().expect("kept across a restart");
    assert_eq!(back.payload.as_ref(), br#"{"n":1}"#);
}

/// A bucket for large payloads under the key prefix `fleetwire/`, created.
async fn payload_bucket() -> S3Bucket {
    let bucket = S3Bucket::connect(&s3_settings("fleetwire/")).await.unwrap();
    create_bucket(bucket.client(), bucket.bucket()).await;
    bucket
}

/// Runs `check` on a fresh table and deletes the table afterwards, also when it panics.
async fn on_table<F, Fut>(prefix: &str, bucket: Option<S3Bucket>, check: F)
where
    F: FnOnce(DynamoDbDeadLetters, DynamoDbConfig) -> Fut,
    Fut: std::future::Future<Output = ()> + Send + 'static,
{
    let cfg = dynamodb_local(prefix);
    let store = DynamoDbDeadLetters::connect(&cfg, bucket)
        .await
        .expect("table created");
    let outcome = tokio::spawn(check(store.clone(), cfg)).await;
    store.delete_table().await.unwrap();
    if let Err(e) = outcome {
        std::panic::resume_unwind(e.into_panic());
    }
}

#[tokio::test]
async fn dynamodb_conformance_and_item_layout() {
    let bucket = payload_bucket().await;
    on_table("fw-dl", Some(bucket.clone()), |store, cfg| async move {
        // A second connect finds the table (and its TTL) in place.
        DynamoDbDeadLetters::connect(&cfg, None)
            .await
            .expect("connect again");
        conformance::check_dead_letters_basics(&store).await;
        conformance::check_dead_letters_large_payloads(&store).await;
        check_item_layout(&store, &cfg).await;
        check_large_item_layout(&store, &cfg, &bucket).await;
    })
    .await;
}

/// A letter of `tenant` whose payload is `len` bytes.
fn large_letter(tenant: &str, n: u32, len: usize) -> DeadLetter {
    let mut letter = conformance::dead_letter(
        &TenantId::parse(tenant).unwrap(),
        Utc::now(),
        n,
        DeadLetterReason::Unprovisioned,
    );
    letter.entry.data = Bytes::from(vec![b'z'; len]);
    letter
}

/// The raw item of `id` in `store`'s table.
async fn raw_item(
    store: &DynamoDbDeadLetters,
    cfg: &DynamoDbConfig,
    id: &fleetwire_actors::producer::DeadLetterId,
) -> Option<std::collections::HashMap<String, AttributeValue>> {
    cfg.client()
        .await
        .get_item()
        .table_name(store.table())
        .key(
            "pk",
            AttributeValue::S(format!("{}#{}#{}", id.tenant, id.day(), id.shard())),
        )
        .key("sk", AttributeValue::S(id.sort_key()))
        .consistent_read(true)
        .send()
        .await
        .unwrap()
        .item
}

/// A large payload: no inline `payload`, `payload_object` naming
/// `<prefix>dead-letters/<id>/<received_at ms>`, which holds the whole body; deleting the
/// letter deletes the object.
async fn check_large_item_layout(store: &DynamoDbDeadLetters, cfg: &DynamoDbConfig, bucket: &S3Bucket) {
    let letter = large_letter("layout-big", 1, MAX_INLINE_PAYLOAD + 1);
    let id = letter.id();
    store.put(vec![letter.clone()]).await.unwrap();
    let item = raw_item(store, cfg, &id).await.expect("the item");
    assert!(!item.contains_key("payload"), "no inline payload");
    assert_eq!(
        item["payload_bytes"],
        AttributeValue::N((MAX_INLINE_PAYLOAD + 1).to_string())
    );
    let AttributeValue::N(received) = &item["received_at"] else {
        panic!("received_at is N")
    };
    let key = format!("fleetwire/dead-letters/{id}/{received}");
    assert_eq!(item["payload_object"], AttributeValue::S(key.clone()));
    let body = bucket.get(&key).await.unwrap().expect("the object");
    assert!(body == letter.entry.data, "the object holds the whole body");
    assert!(store.delete(&id).await.unwrap());
    assert_eq!(bucket.get(&key).await.unwrap(), None, "deleted with its letter");
}

/// Without a bucket a payload over 64 KiB keeps its first 64 KiB: the letter reads back
/// `truncated`, is not replayable, and the cut is counted (and logged), not silent. A plain
/// test on a current-thread runtime, so the metrics recorder local to this thread sees
/// every increment of the store's code.
#[test]
fn dynamodb_without_a_bucket_cuts_large_payloads_and_says_so() {
    let recorder = metrics_exporter_prometheus::PrometheusBuilder::new().build_recorder();
    let handle = recorder.handle();
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    metrics::with_local_recorder(&recorder, || {
        runtime.block_on(on_table("fw-dl-cut", None, |store, _| async move {
            let big = large_letter("cut", 1, MAX_INLINE_PAYLOAD + 1000);
            let small = large_letter("cut", 2, 10);
            let (big_id, small_id) = (big.id(), small.id());
            store.put(vec![big, small]).await.unwrap();
            let big = store.get(&big_id).await.unwrap().expect("kept");
            assert!(big.truncated, "reported as cut");
            assert_eq!(big.payload.len(), MAX_INLINE_PAYLOAD);
            assert_eq!(big.payload_bytes, (MAX_INLINE_PAYLOAD + 1000) as u64);
            assert_eq!(big.replay_entry(), None, "a cut letter is not replayed");
            let small = store.get(&small_id).await.unwrap().expect("kept");
            assert!(!small.truncated && small.replay_entry().is_some());
        }))
    });
    let metrics = handle.render();
    assert!(
        metrics.contains(r#"fleetwire_dead_letters_truncated_total{reason="unprovisioned"} 1"#),
        "one cut counted:\n{metrics}"
    );
}

/// With the bucket missing, or S3 unreachable, `put` fails (the writer retries its batch)
/// and writes no item, not even for the small letters of the batch; once the bucket exists
/// the same put succeeds.
#[tokio::test]
async fn dynamodb_put_fails_whole_while_s3_fails() {
    let missing = S3Bucket::connect(&s3_settings("")).await.unwrap();
    let unreachable = S3Bucket::connect(&fleetwire_actors::archive::ArchiveConfig {
        // Nothing listens on port 1 of loopback: every call is refused.
        endpoint_url: Some("http://127.0.0.1:1".into()),
        ..s3_settings("")
    })
    .await
    .unwrap();
    for (name, bucket) in [("missing bucket", missing.clone()), ("unreachable", unreachable)] {
        let create_later = name == "missing bucket";
        on_table(
            "fw-dl-s3down",
            Some(bucket.clone()),
            move |store, cfg| async move {
                let big = large_letter("s3down", 1, MAX_INLINE_PAYLOAD + 1);
                let small = large_letter("s3down", 2, 10);
                let batch = vec![big.clone(), small.clone()];
                let err = store
                    .put(batch.clone())
                    .await
                    .expect_err("S3 fails: the put fails");
                assert!(err.to_string().contains("PutObject"), "{name}: {err}");
                for id in [big.id(), small.id()] {
                    assert_eq!(raw_item(&store, &cfg, &id).await, None, "{name}: no item written");
                }
                if create_later {
                    create_bucket(bucket.client(), bucket.bucket()).await;
                    store.put(batch).await.expect("the retried put succeeds");
                    let back = store.get(&big.id()).await.unwrap().expect("stored");
                    assert!(back.payload == big.entry.data);
                }
            },
        )
        .await;
    }
}

/// The raw item: sharded partition key, time-ordered sort key, TTL in seconds, source map,
/// payload bytes; and the table's TTL attribute.
async fn check_item_layout(store: &DynamoDbDeadLetters, cfg: &DynamoDbConfig) {
    let client = cfg.client().await;
    let tenant = TenantId::parse("layout").unwrap();
    let at = Utc.with_ymd_and_hms(2026, 3, 1, 12, 0, 0).unwrap() + Duration::milliseconds(5);
    let mut letter = conformance::dead_letter(
        &tenant,
        at,
        7,
        DeadLetterReason::Undecodable { error: "bad".into() },
    );
    letter.source = Some(DeadLetterSource {
        stream: "fleetwire-prod-telemetry".into(),
        shard: "shardId-000000000003".into(),
        sequence: Some("49590".into()),
    });
    let id = letter.id();
    store.put(vec![letter]).await.unwrap();
    let pk = format!("layout#20260301#{}", id.hash % 16);
    let item = client
        .get_item()
        .table_name(store.table())
        .key("pk", AttributeValue::S(pk.clone()))
        .key("sk", AttributeValue::S(format!("1772366400005#{:016x}", id.hash)))
        .consistent_read(true)
        .send()
        .await
        .unwrap()
        .item
        .unwrap_or_else(|| panic!("no item under {pk}"));
    assert_eq!(item["reason"], AttributeValue::S("undecodable".into()));
    assert_eq!(item["tenant_id"], AttributeValue::S("layout".into()));
    let AttributeValue::B(payload) = &item["payload"] else {
        panic!("payload is B")
    };
    assert_eq!(payload.as_ref(), br#"{"n":7}"#);
    let AttributeValue::M(source) = &item["source"] else {
        panic!("source is M")
    };
    assert_eq!(source["sequence"], AttributeValue::S("49590".into()));
    let (AttributeValue::N(received), AttributeValue::N(expires)) =
        (&item["received_at"], &item["expires_at"])
    else {
        panic!("numbers")
    };
    let (received_ms, expires_s): (i64, i64) = (received.parse().unwrap(), expires.parse().unwrap());
    assert_eq!(
        expires_s,
        received_ms / 1000 + 30 * 86_400,
        "TTL in seconds, 30 days"
    );
    let ttl = client
        .describe_time_to_live()
        .table_name(store.table())
        .send()
        .await
        .unwrap();
    assert_eq!(
        ttl.time_to_live_description().and_then(|d| d.attribute_name()),
        Some("expires_at")
    );
}
