//! The API key store port on both implementations: redb (in memory) and DynamoDB Local
//! (`FLEETWIRE_TEST_DYNAMODB_ENDPOINT`, `scripts/emulators start dynamodb`). The same checks
//! run on each: only hashes stored, lookups by hash, per-tenant listing, revocation confined
//! to the owning tenant and idempotent.

mod common;

use std::sync::Arc;

use chrono::{TimeZone, Utc};
use common::auth::tenant;
use common::cloud::dynamodb_local;
use fleetwire::auth::api_keys::{self, ApiKeyStore};
use fleetwire::backends::dynamodb::DynamoDbApiKeyStore;
use fleetwire::backends::embedded::{RedbApiKeyStore, open_database};

async fn check(store: Arc<dyn ApiKeyStore>) {
    let now = Utc.with_ymd_and_hms(2026, 1, 2, 3, 4, 5).unwrap();
    let (a, b) = (tenant("tenant-a"), tenant("tenant-b"));
    let (key_a1, rec_a1) = api_keys::generate(&a, "one", "alice", now);
    let (_, rec_a2) = api_keys::generate(&a, "two", "alice", now);
    let (_, rec_b) = api_keys::generate(&b, "bee", "bob", now);
    for r in [&rec_a1, &rec_a2, &rec_b] {
        store.create(r).await.unwrap();
    }
    assert_eq!(
        store
            .by_hash(&api_keys::hash_key(&key_a1))
            .await
            .unwrap()
            .as_ref(),
        Some(&rec_a1)
    );
    assert_eq!(
        store.by_hash(&api_keys::hash_key("fwk_nope")).await.unwrap(),
        None
    );

    let mut expected = vec![rec_a1.clone(), rec_a2.clone()];
    expected.sort_by(|x, y| x.key_id.cmp(&y.key_id));
    assert_eq!(store.list(&a).await.unwrap(), expected);
    assert_eq!(store.list(&b).await.unwrap(), vec![rec_b.clone()]);
    assert_eq!(store.list(&tenant("nobody")).await.unwrap(), vec![]);

    // Tenant B cannot revoke A's key; A can, once (a second revoke keeps the first time).
    assert_eq!(store.revoke(&b, &rec_a1.key_id, now).await.unwrap(), None);
    let later = now + chrono::Duration::seconds(10);
    let revoked = store.revoke(&a, &rec_a1.key_id, later).await.unwrap().unwrap();
    assert_eq!(revoked.revoked_at, Some(later));
    let again = store
        .revoke(&a, &rec_a1.key_id, later + chrono::Duration::seconds(5))
        .await
        .unwrap()
        .unwrap();
    assert_eq!(again.revoked_at, Some(later));
    assert_eq!(
        store.by_hash(&rec_a1.key_hash).await.unwrap().unwrap().revoked_at,
        Some(later)
    );
    assert_eq!(store.revoke(&a, "ffffffffffff", now).await.unwrap(), None);
    assert!(
        store
            .by_hash(&rec_a2.key_hash)
            .await
            .unwrap()
            .unwrap()
            .revoked_at
            .is_none()
    );
}

#[tokio::test]
async fn redb_store() {
    let db = open_database(None).unwrap();
    check(Arc::new(RedbApiKeyStore::new(db).unwrap())).await;
}

#[tokio::test]
async fn dynamodb_store() {
    fleetwire::install_crypto_provider();
    let config = dynamodb_local("fwkeys");
    let store = Arc::new(DynamoDbApiKeyStore::connect(&config).await.unwrap());
    let outcome = tokio::spawn(check(store.clone())).await;
    store.delete_table().await.unwrap();
    if let Err(panic) = outcome {
        std::panic::resume_unwind(panic.into_panic());
    }
}
