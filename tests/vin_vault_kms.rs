//! The KMS key wrapper against moto's KMS (`FLEETWIRE_TEST_KMS_ENDPOINT`; `scripts/emulators
//! start s3` runs the moto server that serves it) and, for the vault over it, DynamoDB Local
//! (`FLEETWIRE_TEST_DYNAMODB_ENDPOINT`). Each test creates its own KMS keys.

mod common;

use std::sync::Arc;

use common::cloud::{create_kms_key, dynamodb_local, kms_local, unique};
use fleetwire::backends::conformance;
use fleetwire::backends::dynamodb::DynamoDbVaultStore;
use fleetwire::vault::keys::KeyWrapper;
use fleetwire::vault::kms::{KmsConfig, KmsError, KmsKeyWrapper};
use fleetwire::vault::{VaultConfig, VaultError, VaultStore, WrapperKind};

/// A wrapper with a fresh key of its own, reached through `vault.wrapper = "kms"` and an
/// alias, as the AWS profile configures it.
async fn wrapper_with_new_key() -> Arc<dyn KeyWrapper> {
    let key_id = create_kms_key().await;
    let alias = format!("alias/{}-vin-vault", unique("fleetwire-test"));
    kms_local(None)
        .client()
        .await
        .create_alias()
        .alias_name(&alias)
        .target_key_id(&key_id)
        .send()
        .await
        .expect("CreateAlias");
    let config = VaultConfig {
        wrapper: WrapperKind::Kms,
        kms: kms_local(Some(alias)),
        ..VaultConfig::default()
    };
    assert_eq!(config.problems(), Vec::<String>::new());
    config.key_wrapper().await.expect("a KMS wrapper")
}

#[tokio::test]
async fn kms_key_wrapper() {
    let wrapper = wrapper_with_new_key().await;
    let other = wrapper_with_new_key().await;
    conformance::check_key_wrapper(wrapper.as_ref(), other.as_ref()).await;
}

#[tokio::test]
async fn kms_wrapped_vault_on_dynamodb() {
    let cfg = dynamodb_local("fw-vault-kms");
    let store = Arc::new(DynamoDbVaultStore::connect(&cfg).await.expect("table created"));
    let wrapper = wrapper_with_new_key().await;
    let other = wrapper_with_new_key().await;
    let outcome = tokio::spawn({
        let store: Arc<dyn VaultStore> = store.clone();
        async move {
            conformance::check_vault_store_basics(store.as_ref()).await;
            conformance::check_vin_vault_with_stored_keys(store, wrapper, other).await;
        }
    })
    .await;
    store.delete_table().await.unwrap();
    if let Err(e) = outcome {
        std::panic::resume_unwind(e.into_panic());
    }
}

#[tokio::test]
async fn a_missing_key_is_refused() {
    let wrapper = KmsKeyWrapper::new(&kms_local(Some(format!(
        "alias/{}-never-created",
        unique("fleetwire-test")
    ))))
    .await
    .unwrap();
    let result = wrapper.wrap(1, &[7; 32]).await;
    assert!(
        matches!(result, Err(VaultError::Kms(KmsError::KeyRefused(_)))),
        "{result:?}"
    );
}

#[tokio::test]
async fn kms_unreachable_is_an_error_not_a_fallback() {
    // A loopback port nobody listens on.
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let config = KmsConfig {
        endpoint_url: Some(format!("http://127.0.0.1:{port}")),
        ..kms_local(Some(create_kms_key().await))
    };
    let wrapper = KmsKeyWrapper::new(&config).await.unwrap();
    let wrapped = wrapper.wrap(1, &[7; 32]).await;
    assert!(
        matches!(wrapped, Err(VaultError::Kms(KmsError::Unavailable(_)))),
        "{wrapped:?}"
    );
    let unwrapped = wrapper.unwrap(1, &[1; 60]).await;
    assert!(
        matches!(unwrapped, Err(VaultError::Kms(KmsError::Unavailable(_)))),
        "{unwrapped:?}"
    );
}
