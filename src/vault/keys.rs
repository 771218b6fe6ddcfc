//! Versioned data keys of the vault.
//!
//! - [`ConfigKeys`] (embedded backend): the keys of `[vault] keys`, by version; the
//!   highest encrypts.
//! - [`StoredKeys`] (DynamoDB backend): the keys live in the vault itself, under
//!   `~key#<version>` (`~` never starts a tenant id), wrapped by a [`KeyWrapper`], so vault
//!   and keys are backed up together and neither is usable without the wrapping key. The
//!   first node that needs version N generates it and writes it write-once; a node that
//!   loses that race reads the winner's.
//!
//! [`KeyWrapper`] implementations (`vault.wrapper`), both binding a wrapped key to its item
//! key `~key#<version>`, so a wrapped key copied to another version does not unwrap:
//! - [`LocalKeyWrapper`] (`local`): an AES-256-GCM key from config, the item key as
//!   associated data.
//! - [`KmsKeyWrapper`](super::kms::KmsKeyWrapper) (`kms`, the AWS profile): KMS
//!   `Encrypt`/`Decrypt` with the key `alias/fleetwire-<env>-vin-vault`, the item key as
//!   encryption context (docs/operations.md, "VIN vault").

use std::collections::{BTreeMap, HashMap};
use std::sync::{Arc, Mutex};

use async_trait::async_trait;
use chrono::Utc;
use tracing::{info, warn};

use super::crypto::{DataKey, KEY_BYTES};
use super::{DEVELOPMENT_KEY_HEX, VaultConfig, VaultError, VaultItem, VaultStore};

/// The vault's data keys.
#[async_trait]
pub trait DataKeys: Send + Sync + 'static {
    /// The version and key new items are sealed with.
    async fn current(&self) -> Result<(u32, DataKey), VaultError>;
    /// The key of `version`, to open an item sealed with it.
    async fn version(&self, version: u32) -> Result<DataKey, VaultError>;
}

/// Keys from `[vault] keys`.
#[derive(Debug, Clone)]
pub struct ConfigKeys {
    keys: BTreeMap<u32, DataKey>,
}

impl ConfigKeys {
    /// The keys of `config`; none configured → the development key as version 0.
    pub fn from_config(config: &VaultConfig) -> Result<Self, String> {
        let mut keys = BTreeMap::new();
        for (version, key) in &config.keys {
            let version: u32 = version
                .parse()
                .map_err(|_| format!("key version {version:?} is not a non-negative integer"))?;
            let key = DataKey::from_hex(key.expose()).map_err(|e| format!("version {version}: {e}"))?;
            keys.insert(version, key);
        }
        if keys.is_empty() {
            keys.insert(
                0,
                DataKey::from_hex(DEVELOPMENT_KEY_HEX).expect("the development key is valid"),
            );
        }
        Ok(Self { keys })
    }

    /// Whether only the development key is there.
    pub fn is_development(&self) -> bool {
        self.keys.len() == 1 && self.keys.contains_key(&0)
    }
}

#[async_trait]
impl DataKeys for ConfigKeys {
    async fn current(&self) -> Result<(u32, DataKey), VaultError> {
        let (version, key) = self.keys.last_key_value().expect("at least one key");
        Ok((*version, key.clone()))
    }

    async fn version(&self, version: u32) -> Result<DataKey, VaultError> {
        self.keys
            .get(&version)
            .cloned()
            .ok_or(VaultError::MissingKey(version))
    }
}

/// Wraps data keys for storage.
#[async_trait]
pub trait KeyWrapper: Send + Sync + 'static {
    /// Wraps the bytes of data key `version`.
    async fn wrap(&self, version: u32, key: &[u8]) -> Result<Vec<u8>, VaultError>;
    /// Unwraps what [`KeyWrapper::wrap`] made for `version`.
    async fn unwrap(&self, version: u32, wrapped: &[u8]) -> Result<Vec<u8>, VaultError>;
}

/// Wraps with a local AES-256-GCM key, the item key as associated data.
#[derive(Debug, Clone)]
pub struct LocalKeyWrapper(DataKey);

impl LocalKeyWrapper {
    /// A wrapper with `key` (64 hex digits), or the development key when `None`.
    pub fn new(key: Option<&str>) -> Result<Self, VaultError> {
        if key.is_none() {
            warn!(
                "vault.wrapping_key is not set: vault data keys are wrapped with the published development key."
            );
        }
        Ok(Self(DataKey::from_hex(key.unwrap_or(DEVELOPMENT_KEY_HEX))?))
    }
}

#[async_trait]
impl KeyWrapper for LocalKeyWrapper {
    async fn wrap(&self, version: u32, key: &[u8]) -> Result<Vec<u8>, VaultError> {
        Ok(self.0.seal(key_pk(version).as_bytes(), key)?)
    }

    async fn unwrap(&self, version: u32, wrapped: &[u8]) -> Result<Vec<u8>, VaultError> {
        Ok(self.0.open(key_pk(version).as_bytes(), wrapped)?)
    }
}

/// The item key of data key `version`.
pub fn key_pk(version: u32) -> String {
    format!("~key#{version}")
}

/// Data keys stored (wrapped) in the vault; `current` is the version new items use.
pub struct StoredKeys {
    store: Arc<dyn VaultStore>,
    wrapper: Arc<dyn KeyWrapper>,
    current: u32,
    /// Unwrapped keys by version (a std mutex, never held across an await).
    cache: Mutex<HashMap<u32, DataKey>>,
}

impl StoredKeys {
    /// Keys in `store`, wrapped by `wrapper`; new items use `current`.
    pub fn new(store: Arc<dyn VaultStore>, wrapper: Arc<dyn KeyWrapper>, current: u32) -> Self {
        Self {
            store,
            wrapper,
            current,
            cache: Mutex::new(HashMap::new()),
        }
    }

    fn cached(&self, version: u32) -> Option<DataKey> {
        self.cache
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .get(&version)
            .cloned()
    }

    async fn load(&self, version: u32) -> Result<Option<DataKey>, VaultError> {
        if let Some(key) = self.cached(version) {
            return Ok(Some(key));
        }
        let Some(item) = self.store.get(&key_pk(version)).await? else {
            return Ok(None);
        };
        let bytes = self.wrapper.unwrap(version, &item.ct).await?;
        let key = DataKey::from_bytes(&bytes)?;
        self.cache
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .insert(version, key.clone());
        Ok(Some(key))
    }
}

#[async_trait]
impl DataKeys for StoredKeys {
    async fn current(&self) -> Result<(u32, DataKey), VaultError> {
        if let Some(key) = self.load(self.current).await? {
            return Ok((self.current, key));
        }
        let (_, bytes) = DataKey::generate()?;
        let item = VaultItem {
            ct: self.wrapper.wrap(self.current, &bytes).await?,
            key_version: self.current,
            created_at: Utc::now(),
        };
        debug_assert_eq!(bytes.len(), KEY_BYTES);
        if self.store.put_if_absent(&key_pk(self.current), &item).await? {
            info!(version = self.current, "Created a vault data key.");
        }
        // Ours or the one another node wrote first.
        let key = self
            .load(self.current)
            .await?
            .ok_or(VaultError::MissingKey(self.current))?;
        Ok((self.current, key))
    }

    async fn version(&self, version: u32) -> Result<DataKey, VaultError> {
        self.load(version).await?.ok_or(VaultError::MissingKey(version))
    }
}
