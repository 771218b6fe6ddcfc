//! One conformance check of the `HistoryStore` port, run against the embedded store
//! (redb) and DynamoDB Local (`FLEETWIRE_TEST_DYNAMODB_ENDPOINT`,
//! `scripts/emulators start dynamodb`), the latter with injected unprocessed items.

mod common;

use std::sync::Arc;

use chrono::DateTime;
use fleetwire::backends::dynamodb::{BatchFaults, DynamoDbHistoryStore};
use fleetwire::backends::embedded::{RedbHistoryStore, open_database};
use fleetwire_actors::history::{HistoryConfig, HistoryRecord, codec};
use fleetwire_actors::model::{SignalValue, TenantId, VehicleId};
use fleetwire_actors::ports::{HistoryStore, HourAggregate, SignalStats};
use fleetwire_actors::vehicle::persist::encode_bucket;

use common::cloud::dynamodb_local;

/// An hour start two hours ago (fixed dates would fall out of the TTL filter).
fn t0() -> i64 {
    let now = chrono::Utc::now().timestamp_millis();
    now - now.rem_euclid(3_600_000) - 2 * 3_600_000
}

fn records(from_s: i64, to_s: i64) -> Vec<HistoryRecord> {
    let base = t0();
    (from_s..to_s)
        .map(|s| HistoryRecord {
            timestamp: DateTime::from_timestamp_millis(base + s * 1000).unwrap(),
            payload: [("Soc".to_string(), SignalValue::Int(s))].into(),
            can_id: None,
        })
        .collect()
}

async fn check(store: Arc<dyn HistoryStore>) {
    let t0 = t0();
    let config = HistoryConfig::default();
    let (tenant, other) = (TenantId::parse("t1").unwrap(), TenantId::parse("t2").unwrap());
    let v = VehicleId("v1".into());
    // 30 buckets: more than one BatchWriteItem.
    let buckets: Vec<_> = (0..30)
        .map(|i| {
            encode_bucket(
                &config,
                &tenant,
                &v,
                t0 + i * 60_000,
                &records(i * 60, i * 60 + 10),
            )
        })
        .collect();
    store.put_buckets(&buckets).await.unwrap();
    // A replay rewrites the same items.
    store.put_buckets(&buckets[..3]).await.unwrap();
    assert_eq!(
        store.latest_bucket(&tenant, &v).await.unwrap(),
        Some(t0 + 29 * 60_000)
    );
    assert_eq!(
        store.latest_bucket(&other, &v).await.unwrap(),
        None,
        "tenant-scoped"
    );

    // Pagination: 30 buckets in pages of 7.
    let (mut after, mut seen) = (None, Vec::new());
    loop {
        let page = store
            .query_buckets(&tenant, &v, t0, t0 + 3_600_000, after, 7)
            .await
            .unwrap();
        assert!(page.buckets.len() <= 7);
        seen.extend(page.buckets.iter().map(|b| b.start_ms));
        match page.next_after {
            Some(a) => after = Some(a),
            None => break,
        }
    }
    assert_eq!(seen, (0..30).map(|i| t0 + i * 60_000).collect::<Vec<_>>());
    let one = store
        .query_buckets(&tenant, &v, t0 + 60_000, t0 + 120_000, None, 10)
        .await
        .unwrap();
    assert_eq!(one.buckets.len(), 1);
    assert_eq!(
        one.buckets[0].expires_at,
        config.bucket_expiry(t0 + 60_000),
        "TTL attribute"
    );
    assert_eq!(codec::decode(&one.buckets[0].data).unwrap(), records(60, 70));

    // Merge: late records join, known ones are not added twice; a new key is created.
    let late = encode_bucket(&config, &tenant, &v, t0, &records(5, 15));
    let merged = store.merge_bucket(&late).await.unwrap();
    assert_eq!(merged.count, 15);
    let again = store.merge_bucket(&late).await.unwrap();
    assert_eq!(again.count, 15);
    let fresh = encode_bucket(&config, &tenant, &v, t0 + 31 * 60_000, &records(1860, 1862));
    assert_eq!(store.merge_bucket(&fresh).await.unwrap().count, 2);

    // Aggregates.
    let agg = HourAggregate {
        tenant: tenant.clone(),
        vehicle_id: v.clone(),
        hour_ms: t0,
        count: 3,
        signals: [(
            "Soc".to_string(),
            SignalStats {
                min: 1.0,
                max: 3.0,
                sum: 6.0,
                n: 3,
            },
        )]
        .into(),
        expires_at: config.aggregate_expiry(t0),
    };
    store.put_aggregate(&agg).await.unwrap();
    store.put_aggregate(&agg).await.unwrap();
    let rows = store
        .query_aggregates(&tenant, &v, t0, t0 + 3_600_000, 100)
        .await
        .unwrap();
    assert_eq!(rows, [agg]);
    assert!(
        store
            .query_aggregates(&other, &v, t0, t0 + 3_600_000, 100)
            .await
            .unwrap()
            .is_empty()
    );
}

#[tokio::test]
async fn redb_history_store() {
    let db = open_database(None).unwrap();
    check(Arc::new(
        RedbHistoryStore::new(db, Arc::new(HistoryConfig::default())).unwrap(),
    ))
    .await;
}

#[tokio::test]
async fn dynamodb_history_store_with_unprocessed_items() {
    fleetwire::install_crypto_provider();
    let config = dynamodb_local("fwhist");
    let store = DynamoDbHistoryStore::connect(&config, Arc::new(HistoryConfig::default()))
        .await
        .unwrap()
        .with_faults(BatchFaults { unprocessed_every: 4 });
    check(Arc::new(store)).await;
}
