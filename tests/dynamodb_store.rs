//! The DynamoDB vehicle registry and state store against DynamoDB Local: the shared
//! conformance checks (the embedded backends run the same ones in `embedded_backends.rs`),
//! then what only DynamoDB shows (item layout, a second client racing).
//!
//! Needs `FLEETWIRE_TEST_DYNAMODB_ENDPOINT` (`scripts/emulators start dynamodb` and
//! `eval "$(scripts/emulators env)"`); without it every test fails. Each test uses its own
//! table prefix and deletes its tables at the end, also when it fails.

mod common;

use std::future::Future;
use std::sync::Arc;

use common::cloud::dynamodb_local;

use aws_sdk_dynamodb::types::AttributeValue;
use fleetwire::backends::conformance;
use fleetwire::backends::dynamodb::{DynamoDbConfig, DynamoDbStateStore, DynamoDbVehicleRegistry};
use fleetwire_actors::model::TenantId;
use fleetwire_actors::ports::StateStore;

/// Runs `test` on a registry over a fresh table, deleting it afterwards (panics re-raised).
async fn with_registry<F, Fut>(test: F)
where
    F: FnOnce(Arc<DynamoDbVehicleRegistry>, DynamoDbConfig) -> Fut,
    Fut: Future<Output = ()> + Send + 'static,
{
    let cfg = dynamodb_local("fw-test");
    let registry = Arc::new(
        DynamoDbVehicleRegistry::connect(&cfg)
            .await
            .unwrap_or_else(|e| panic!("creating the registry table failed: {e}")),
    );
    let outcome = tokio::spawn(test(Arc::clone(&registry), cfg)).await;
    registry.delete_table().await.expect("delete_table failed");
    if let Err(e) = outcome {
        std::panic::resume_unwind(e.into_panic());
    }
}

#[tokio::test]
async fn registry_conformance() {
    with_registry(|registry, _| async move { conformance::check_registry_basics(registry.as_ref()).await })
        .await;
}

#[tokio::test]
async fn registry_provision_race_between_two_clients() {
    with_registry(|registry, cfg| async move {
        // Two clients, as two nodes would race.
        let second = DynamoDbVehicleRegistry::connect(&DynamoDbConfig {
            create_tables_if_missing: false,
            ..cfg
        })
        .await
        .unwrap();
        conformance::check_registry_provision_race(registry, Arc::new(second)).await;
    })
    .await;
}

/// Runs `test` on a state store over a fresh `vehicles` table, deleting it afterwards.
async fn with_state<F, Fut>(test: F)
where
    F: FnOnce(Arc<DynamoDbStateStore>, DynamoDbConfig) -> Fut,
    Fut: Future<Output = ()> + Send + 'static,
{
    let cfg = dynamodb_local("fw-test");
    let store = Arc::new(
        DynamoDbStateStore::connect(&cfg)
            .await
            .unwrap_or_else(|e| panic!("creating the vehicles table failed: {e}")),
    );
    let outcome = tokio::spawn(test(Arc::clone(&store), cfg)).await;
    store.delete_table().await.expect("delete_table failed");
    if let Err(e) = outcome {
        std::panic::resume_unwind(e.into_panic());
    }
}

#[tokio::test]
async fn state_store_conformance() {
    with_state(|store, _| async move {
        conformance::check_state_store_is_order_safe(store.as_ref()).await;
        conformance::check_state_store_tenant_isolation(store.as_ref()).await;
    })
    .await;
}

#[tokio::test]
async fn state_store_racing_writers_on_two_clients() {
    with_state(|store, cfg| async move {
        let second = DynamoDbStateStore::connect(&DynamoDbConfig {
            create_tables_if_missing: false,
            ..cfg
        })
        .await
        .unwrap();
        conformance::check_state_store_racing_writers(store, Arc::new(second)).await;
    })
    .await;
}

#[tokio::test]
async fn vehicle_items_follow_the_data_model() {
    with_state(|store, cfg| async move {
        let client = cfg.client().await;
        let tenant = TenantId::parse("acme").unwrap();
        let mut snap = conformance::snapshot(&tenant, "car-9", 1);
        snap.last_seen = Some("2026-03-01T10:00:00.123Z".parse().unwrap());
        store.save(&snap).await.unwrap();
        snap.version = 2;
        store.save(&snap).await.unwrap();
        let item = client
            .get_item()
            .table_name(store.table())
            .key("pk", AttributeValue::S("acme#car-9".into()))
            .send()
            .await
            .unwrap()
            .item
            .expect("the item is keyed <tenant>#<vehicle_id>");
        assert_eq!(item["tenant_id"], AttributeValue::S("acme".into()));
        assert_eq!(item["vehicle_id"], AttributeValue::S("car-9".into()));
        assert_eq!(item["version"], AttributeValue::N("2".into()));
        assert_eq!(item["last_seen"], AttributeValue::N("1772359200123".into()));
        assert_eq!(item["source_ts"], item["last_seen"]);
        assert!(item["signals"].is_m() && item["recent"].is_b());
        // The tenant listing index is KEYS_ONLY on tenant_id / vehicle_id.
        let table = client
            .describe_table()
            .table_name(store.table())
            .send()
            .await
            .unwrap()
            .table
            .unwrap();
        let gsi = &table.global_secondary_indexes()[0];
        assert_eq!(gsi.index_name(), Some("by_tenant"));
        let keys: Vec<_> = gsi.key_schema().iter().map(|k| k.attribute_name()).collect();
        assert_eq!(keys, ["tenant_id", "vehicle_id"]);
        assert_eq!(
            gsi.projection()
                .and_then(|p| p.projection_type())
                .map(|t| t.as_str()),
            Some("KEYS_ONLY")
        );
    })
    .await;
}

#[tokio::test]
async fn a_missing_table_is_unavailable_not_a_panic() {
    let cfg = dynamodb_local("fw-missing");
    let store = DynamoDbStateStore::connect(&DynamoDbConfig {
        create_tables_if_missing: false,
        ..cfg
    })
    .await
    .unwrap();
    let tenant = TenantId::default();
    let err = store
        .load(&tenant, &fleetwire_actors::model::VehicleId("x".into()))
        .await
        .unwrap_err();
    assert!(
        matches!(err, fleetwire_actors::ports::StoreError::Unavailable(_)),
        "{err:?}"
    );
    assert!(store.ping().await.is_err());
}
