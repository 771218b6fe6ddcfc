//! The VIN vault on redb and on DynamoDB Local: the shared store and vault checks
//! (write-once, ciphertext bound to its key, rotation with config keys and with stored
//! wrapped keys), with the local key wrapper (the KMS one: tests/vin_vault_kms.rs). The
//! DynamoDB test needs `FLEETWIRE_TEST_DYNAMODB_ENDPOINT`.

mod common;

use std::sync::Arc;

use common::cloud::dynamodb_local;
use fleetwire::backends::conformance;
use fleetwire::backends::dynamodb::DynamoDbVaultStore;
use fleetwire::backends::embedded::{RedbVaultStore, open_database};
use fleetwire::vault::VaultStore;

#[tokio::test]
async fn redb_vault() {
    let store: Arc<dyn VaultStore> = Arc::new(RedbVaultStore::new(open_database(None).unwrap()).unwrap());
    conformance::check_vault_store_basics(store.as_ref()).await;
    conformance::check_vin_vault_with_config_keys(store.clone()).await;
    let (wrapper, other) = conformance::local_wrappers();
    conformance::check_vin_vault_with_stored_keys(store, wrapper, other).await;
}

#[tokio::test]
async fn local_key_wrapper() {
    let (wrapper, other) = conformance::local_wrappers();
    conformance::check_key_wrapper(wrapper.as_ref(), other.as_ref()).await;
}

#[tokio::test]
async fn dynamodb_vault() {
    let cfg = dynamodb_local("fw-vault");
    let store = Arc::new(DynamoDbVaultStore::connect(&cfg).await.expect("table created"));
    let outcome = tokio::spawn({
        let store: Arc<dyn VaultStore> = store.clone();
        async move {
            conformance::check_vault_store_basics(store.as_ref()).await;
            conformance::check_vin_vault_with_config_keys(store.clone()).await;
            let (wrapper, other) = conformance::local_wrappers();
            conformance::check_vin_vault_with_stored_keys(store, wrapper, other).await;
        }
    })
    .await;
    store.delete_table().await.unwrap();
    if let Err(e) = outcome {
        std::panic::resume_unwind(e.into_panic());
    }
}
