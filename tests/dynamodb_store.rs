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

use common::cloud::unique;

use fleetwire::backends::conformance;
use fleetwire::backends::dynamodb::{DynamoDbConfig, DynamoDbVehicleRegistry};

const ENDPOINT_VAR: &str = "FLEETWIRE_TEST_DYNAMODB_ENDPOINT";

fn config(prefix: &str) -> DynamoDbConfig {
    let endpoint = std::env::var(ENDPOINT_VAR).unwrap_or_else(|_| {
        panic!(
            "{ENDPOINT_VAR} is not set: these tests need DynamoDB Local. Run \
             `scripts/emulators start dynamodb` and `eval \"$(scripts/emulators env)\"`."
        )
    });
    DynamoDbConfig {
        endpoint_url: Some(endpoint),
        static_credentials: true,
        table_prefix: prefix.to_owned(),
        create_tables_if_missing: true,
        ..DynamoDbConfig::default()
    }
}

/// Runs `test` on a registry over a fresh table, deleting it afterwards (panics re-raised).
async fn with_registry<F, Fut>(test: F)
where
    F: FnOnce(Arc<DynamoDbVehicleRegistry>, DynamoDbConfig) -> Fut,
    Fut: Future<Output = ()> + Send + 'static,
{
    let cfg = config(&format!("{}-", unique("fw-test")));
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
