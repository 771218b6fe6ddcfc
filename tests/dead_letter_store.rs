//! The dead-letter stores: the shared conformance checks on redb (in memory and on disk,
//! across a reopen), the in-process sink, and DynamoDB Local, plus the DynamoDB item
//! layout of docs/data-model.md.
//!
//! The DynamoDB tests need `FLEETWIRE_TEST_DYNAMODB_ENDPOINT` (`scripts/emulators start
//! dynamodb`, `eval "$(scripts/emulators env)"`).

mod common;

use aws_sdk_dynamodb::types::AttributeValue;
use chrono::{Duration, TimeZone, Utc};
use common::cloud::dynamodb_local;
use fleetwire::backends::conformance;
use fleetwire::backends::dynamodb::{DynamoDbConfig, DynamoDbDeadLetters};
use fleetwire::backends::embedded::{InMemoryDeadLetters, RedbDeadLetters, open_database};
use fleetwire_actors::model::TenantId;
use fleetwire_actors::producer::{DeadLetterReason, DeadLetterSink, DeadLetterSource};

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

#[tokio::test]
async fn dynamodb_conformance_and_item_layout() {
    let cfg = dynamodb_local("fw-dl");
    let store = DynamoDbDeadLetters::connect(&cfg).await.expect("table created");
    // A second connect finds the table (and its TTL) in place.
    DynamoDbDeadLetters::connect(&cfg).await.expect("connect again");
    let outcome = tokio::spawn({
        let store = store.clone();
        let cfg = cfg.clone();
        async move {
            conformance::check_dead_letters_basics(&store).await;
            conformance::check_dead_letters_large_payloads(&store).await;
            check_item_layout(&store, &cfg).await;
        }
    })
    .await;
    store.delete_table().await.unwrap();
    if let Err(e) = outcome {
        std::panic::resume_unwind(e.into_panic());
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
