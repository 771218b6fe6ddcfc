//! Conformance checks of the VIN vault's store port ([`VaultStore`]) and of the vault over
//! it: write-once items, ciphertext only, bound to its key, key rotation with config keys
//! and with stored (wrapped) keys.

use std::collections::BTreeMap;
use std::sync::Arc;

use chrono::Utc;
use fleetwire_actors::model::{TenantId, VehicleId};

use super::unique_tenant;
use crate::config::Secret;
use crate::vault::keys::{ConfigKeys, KeyWrapper, LocalKeyWrapper, StoredKeys, key_pk};
use crate::vault::{VaultConfig, VaultError, VaultItem, VaultStore, VinVault, vin_pk};

const VIN_A: &str = "5YJ3E1EA7RF261422";
const VIN_B: &str = "5YJYGDEE1LF000123";

fn contains(haystack: &[u8], needle: &str) -> bool {
    haystack.windows(needle.len()).any(|w| w == needle.as_bytes())
}

fn config_keys(versions: &[(u32, &str)]) -> Arc<ConfigKeys> {
    let keys: BTreeMap<String, Secret> = versions
        .iter()
        .map(|(v, k)| (v.to_string(), Secret::new(k.repeat(32))))
        .collect();
    let config = VaultConfig {
        keys,
        ..VaultConfig::default()
    };
    Arc::new(ConfigKeys::from_config(&config).expect("valid keys"))
}

/// Write-once put, get, delete.
pub async fn check_vault_store_basics(store: &dyn VaultStore) {
    let pk = format!("{}#v1-basics", unique_tenant("vault"));
    let first = VaultItem {
        ct: vec![1, 2, 3],
        key_version: 4,
        created_at: "2026-03-01T10:00:00.123Z".parse().unwrap(),
    };
    assert!(store.put_if_absent(&pk, &first).await.unwrap(), "created");
    let second = VaultItem {
        ct: vec![9],
        ..first.clone()
    };
    assert!(!store.put_if_absent(&pk, &second).await.unwrap(), "write-once");
    assert_eq!(
        store.get(&pk).await.unwrap(),
        Some(first),
        "the first write stays"
    );
    assert_eq!(store.get(&format!("{pk}-other")).await.unwrap(), None);
    assert!(store.delete(&pk).await.unwrap());
    assert!(!store.delete(&pk).await.unwrap());
    assert_eq!(store.get(&pk).await.unwrap(), None);
}

/// Config keys: items keep their version; after a new version is added, old items read
/// and new items use the newest; a vault without the old key cannot read old items.
/// Ciphertext only, bound to its item key; the pre-provisioning fallback.
pub async fn check_vin_vault_with_config_keys(store: Arc<dyn VaultStore>) {
    let tenant = unique_tenant("vault-cfg");
    let (a, b) = (VehicleId("v1-aaaa".into()), VehicleId("v1-bbbb".into()));
    let old = VinVault::new(store.clone(), config_keys(&[(1, "a1")]));
    assert!(old.record(&tenant, &a, VIN_A).await.unwrap());
    assert!(!old.record(&tenant, &a, VIN_B).await.unwrap(), "write-once");
    let item_a = store.get(&vin_pk(&tenant, &a)).await.unwrap().unwrap();
    assert_eq!(item_a.key_version, 1);
    assert!(!contains(&item_a.ct, VIN_A), "ciphertext only");
    assert_eq!(item_a.ct.len(), 45);

    let rotated = VinVault::new(store.clone(), config_keys(&[(1, "a1"), (2, "b2")]));
    assert!(rotated.record(&tenant, &b, VIN_B).await.unwrap());
    assert_eq!(
        store
            .get(&vin_pk(&tenant, &b))
            .await
            .unwrap()
            .unwrap()
            .key_version,
        2,
        "newest key for new items"
    );
    assert_eq!(
        rotated.resolve(&tenant, &a).await.unwrap().as_deref(),
        Some(VIN_A),
        "old item after rotation"
    );
    assert_eq!(
        rotated.resolve(&tenant, &b).await.unwrap().as_deref(),
        Some(VIN_B)
    );
    let only_new = VinVault::new(store.clone(), config_keys(&[(2, "b2")]));
    assert_eq!(
        only_new.resolve(&tenant, &a).await,
        Err(VaultError::MissingKey(1))
    );
    let wrong = VinVault::new(store.clone(), config_keys(&[(1, "c3")]));
    assert!(matches!(
        wrong.resolve(&tenant, &a).await,
        Err(VaultError::Crypto(_))
    ));

    // A ciphertext moved to another vehicle's key does not open.
    let moved = VehicleId("v1-moved".into());
    store
        .put_if_absent(&vin_pk(&tenant, &moved), &item_a)
        .await
        .unwrap();
    assert!(matches!(
        rotated.resolve(&tenant, &moved).await,
        Err(VaultError::Crypto(_))
    ));

    // Seen before it was provisioned: kept under `_unknown`, found for the owner.
    let early = VehicleId("v1-early".into());
    let unknown = TenantId::parse("_unknown").unwrap();
    rotated.record(&unknown, &early, VIN_A).await.unwrap();
    assert_eq!(
        rotated.resolve(&tenant, &early).await.unwrap().as_deref(),
        Some(VIN_A)
    );
    assert_eq!(
        rotated
            .resolve(&tenant, &VehicleId("v1-never".into()))
            .await
            .unwrap(),
        None
    );
    store.delete(&vin_pk(&unknown, &early)).await.unwrap();
}

/// Stored keys: the first use of a version creates its data key (wrapped, write-once);
/// raising the version rotates; old items read through a fresh vault (no cache); the
/// wrapped key is useless without the wrapping key.
pub async fn check_vin_vault_with_stored_keys(store: Arc<dyn VaultStore>) {
    let tenant = unique_tenant("vault-kms");
    let (a, b) = (VehicleId("v1-aaaa".into()), VehicleId("v1-bbbb".into()));
    let wrapping = "d4".repeat(32);
    let wrapper = || -> Arc<dyn KeyWrapper> { Arc::new(LocalKeyWrapper::new(Some(&wrapping)).unwrap()) };
    // Versions unique to this run: the key items are shared by every check on the store.
    let v1 = (Utc::now().timestamp_micros() % 1_000_000_000) as u32 * 2 + 10;
    let vault1 = VinVault::new(
        store.clone(),
        Arc::new(StoredKeys::new(store.clone(), wrapper(), v1)),
    );
    assert!(vault1.record(&tenant, &a, VIN_A).await.unwrap());
    let key_item = store.get(&key_pk(v1)).await.unwrap().expect("data key stored");
    assert_eq!(key_item.key_version, v1);
    assert_eq!(key_item.ct.len(), 12 + 32 + 16, "a wrapped AES-256 key");

    let vault2 = VinVault::new(
        store.clone(),
        Arc::new(StoredKeys::new(store.clone(), wrapper(), v1 + 1)),
    );
    vault2.record(&tenant, &b, VIN_B).await.unwrap();
    assert_eq!(
        store
            .get(&vin_pk(&tenant, &b))
            .await
            .unwrap()
            .unwrap()
            .key_version,
        v1 + 1
    );
    let fresh = VinVault::new(
        store.clone(),
        Arc::new(StoredKeys::new(store.clone(), wrapper(), v1 + 1)),
    );
    assert_eq!(fresh.resolve(&tenant, &a).await.unwrap().as_deref(), Some(VIN_A));
    assert_eq!(fresh.resolve(&tenant, &b).await.unwrap().as_deref(), Some(VIN_B));
    // Two nodes creating the same version agree on one key.
    let racer = StoredKeys::new(store.clone(), wrapper(), v1 + 1);
    let racer = VinVault::new(store.clone(), Arc::new(racer));
    assert_eq!(racer.resolve(&tenant, &b).await.unwrap().as_deref(), Some(VIN_B));

    let other_wrapping: Arc<dyn KeyWrapper> = Arc::new(LocalKeyWrapper::new(Some(&"e5".repeat(32))).unwrap());
    let thief = VinVault::new(
        store.clone(),
        Arc::new(StoredKeys::new(store.clone(), other_wrapping, v1 + 1)),
    );
    assert!(matches!(
        thief.resolve(&tenant, &a).await,
        Err(VaultError::Crypto(_))
    ));
}
