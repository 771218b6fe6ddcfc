//! Conformance checks of the VIN vault's store port ([`VaultStore`]) and of the vault over
//! it: write-once items, ciphertext only, bound to its key, key rotation with config keys
//! and with stored (wrapped) keys; and of the key wrappers (local AES, KMS).

use std::collections::BTreeMap;
use std::sync::Arc;

use chrono::Utc;
use fleetwire_actors::model::{TenantId, VehicleId};

use super::unique_tenant;
use crate::config::Secret;
use crate::vault::crypto::{CryptoError, DataKey};
use crate::vault::keys::{ConfigKeys, KeyWrapper, LocalKeyWrapper, StoredKeys, key_pk};
use crate::vault::kms::KmsError;
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

/// A local wrapper and one with another wrapping key, for [`check_key_wrapper`] and
/// [`check_vin_vault_with_stored_keys`].
pub fn local_wrappers() -> (Arc<dyn KeyWrapper>, Arc<dyn KeyWrapper>) {
    let wrapper =
        |hex: &str| -> Arc<dyn KeyWrapper> { Arc::new(LocalKeyWrapper::new(Some(&hex.repeat(32))).unwrap()) };
    (wrapper("d4"), wrapper("e5"))
}

/// Whether `result` is a wrapper's refusal of a wrapped key that is not its own: a
/// ciphertext that does not open (local, AWS KMS `IncorrectKeyException`) or a refused key
/// (moto answers `AccessDeniedException` for another key's ciphertext).
fn refused<T: std::fmt::Debug>(result: &Result<T, VaultError>) -> bool {
    matches!(
        result,
        Err(VaultError::Crypto(CryptoError::Open) | VaultError::Kms(KmsError::KeyRefused(_)))
    )
}

/// A [`KeyWrapper`]: round trip; the wrapped form hides the key and is fresh each time; it
/// is bound to its version (a wrapped key copied to another version does not unwrap) and
/// to the wrapping key (`other` wraps with another one); damage is detected.
pub async fn check_key_wrapper(wrapper: &dyn KeyWrapper, other: &dyn KeyWrapper) {
    let (_, key) = DataKey::generate().unwrap();
    let wrapped = wrapper.wrap(3, &key).await.unwrap();
    assert!(
        !wrapped.windows(key.len()).any(|w| w == key),
        "the key is not in the clear"
    );
    assert_eq!(wrapper.unwrap(3, &wrapped).await.unwrap(), key, "round trip");
    assert_ne!(
        wrapper.wrap(3, &key).await.unwrap(),
        wrapped,
        "fresh ciphertext per wrap"
    );
    assert_eq!(
        wrapper.unwrap(4, &wrapped).await,
        Err(VaultError::Crypto(CryptoError::Open)),
        "a wrapped key copied to another version does not unwrap"
    );
    let mut damaged = wrapped.clone();
    *damaged.last_mut().unwrap() ^= 1;
    assert_eq!(
        wrapper.unwrap(3, &damaged).await,
        Err(VaultError::Crypto(CryptoError::Open)),
        "damage is detected"
    );
    let theirs = other.unwrap(3, &wrapped).await;
    assert!(refused(&theirs), "another wrapping key: {theirs:?}");
}

/// Stored keys, wrapped by `wrapper`: the first use of a version creates its data key
/// (wrapped, write-once); raising the version rotates; old items read through a fresh
/// vault (no cache); the stored key is useless with another wrapping key (`other`).
pub async fn check_vin_vault_with_stored_keys(
    store: Arc<dyn VaultStore>,
    wrapper: Arc<dyn KeyWrapper>,
    other: Arc<dyn KeyWrapper>,
) {
    let tenant = unique_tenant("vault-stored");
    let (a, b) = (VehicleId("v1-aaaa".into()), VehicleId("v1-bbbb".into()));
    let keys = |version: u32, wrapper: &Arc<dyn KeyWrapper>| {
        Arc::new(StoredKeys::new(store.clone(), wrapper.clone(), version))
    };
    // Versions unique to this run: the key items are shared by every check on the store.
    let v1 = (Utc::now().timestamp_micros() % 1_000_000_000) as u32 * 2 + 10;
    let vault1 = VinVault::new(store.clone(), keys(v1, &wrapper));
    assert!(vault1.record(&tenant, &a, VIN_A).await.unwrap());
    let key_item = store.get(&key_pk(v1)).await.unwrap().expect("data key stored");
    assert_eq!(key_item.key_version, v1);
    let key = wrapper.unwrap(v1, &key_item.ct).await.expect("a wrapped key");
    assert_eq!(key.len(), 32, "an AES-256 key");
    assert!(
        !key_item.ct.windows(32).any(|w| w == key),
        "stored wrapped, not in the clear"
    );

    // Rotation: new items use the new version; a fresh vault (empty cache) reads both.
    let vault2 = VinVault::new(store.clone(), keys(v1 + 1, &wrapper));
    vault2.record(&tenant, &b, VIN_B).await.unwrap();
    let item_b = store.get(&vin_pk(&tenant, &b)).await.unwrap().unwrap();
    assert_eq!(item_b.key_version, v1 + 1);
    let fresh = VinVault::new(store.clone(), keys(v1 + 1, &wrapper));
    assert_eq!(fresh.resolve(&tenant, &a).await.unwrap().as_deref(), Some(VIN_A));
    assert_eq!(fresh.resolve(&tenant, &b).await.unwrap().as_deref(), Some(VIN_B));
    // Two nodes creating the same version agree on one key.
    let racer = VinVault::new(store.clone(), keys(v1 + 1, &wrapper));
    assert_eq!(racer.resolve(&tenant, &b).await.unwrap().as_deref(), Some(VIN_B));

    // A wrapped key copied to another version's item does not unwrap.
    let moved = v1 + 2;
    let copied = VaultItem {
        key_version: moved,
        ..key_item.clone()
    };
    assert!(store.put_if_absent(&key_pk(moved), &copied).await.unwrap());
    let reader = VinVault::new(store.clone(), keys(moved, &wrapper));
    assert_eq!(
        reader.record(&tenant, &VehicleId("v1-cccc".into()), VIN_A).await,
        Err(VaultError::Crypto(CryptoError::Open))
    );

    let thief = VinVault::new(store.clone(), keys(v1 + 1, &other));
    let stolen = thief.resolve(&tenant, &a).await;
    assert!(refused(&stolen), "{stolen:?}");
}
