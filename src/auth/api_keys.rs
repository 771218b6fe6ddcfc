//! Ingest API keys: the port, the key format, and the node-side check (cache + per-key
//! rate limit).
//!
//! A key is `fwk_<key id>_<secret>`: the key id (12 hex digits) is public and names the
//! key in listings and revocations; the secret is 256 random bits. Only the SHA-256 of the
//! whole key is stored (an unsalted hash is enough for 256-bit random secrets), so a
//! leaked table reveals no usable key. The key is shown once, when it is created.
//! Lookups are cached for at most 60 s, so a revocation reaches every node within a
//! minute (at once on the node that revoked it).

use std::collections::HashMap;
use std::num::NonZeroU32;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use async_trait::async_trait;
use base64::Engine as _;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use chrono::{DateTime, Utc};
use fleetwire_actors::model::TenantId;
use fleetwire_actors::ports::StoreError;
use governor::{DefaultKeyedRateLimiter, Quota, RateLimiter};
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};

/// Prefix of every key (lets secret scanners and log scrubbers recognise them).
pub const KEY_PREFIX: &str = "fwk_";
/// Longest a node trusts a cached lookup (data-model.md: revocation within a minute).
pub const CACHE_TTL: Duration = Duration::from_secs(60);
/// Most cached lookups per node; beyond it the cache starts over.
const CACHE_MAX: usize = 10_000;

/// A stored key (never the key itself).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ApiKeyRecord {
    /// Public id, e.g. `3f9a0c1b2d4e`.
    pub key_id: String,
    /// Hex SHA-256 of the whole key.
    pub key_hash: String,
    /// The tenant whose vehicles the key may write.
    pub tenant: TenantId,
    /// Label chosen by the tenant admin.
    pub name: String,
    /// When it was created.
    pub created_at: DateTime<Utc>,
    /// Who created it (token subject).
    pub created_by: String,
    /// When it was revoked; `None` while valid. Revoked keys are kept for the audit trail.
    pub revoked_at: Option<DateTime<Utc>>,
}

/// Where keys are stored. Implementations: `backends::embedded::RedbApiKeyStore`,
/// `backends::dynamodb::DynamoDbApiKeyStore` (table `api_keys`).
#[async_trait]
pub trait ApiKeyStore: Send + Sync + 'static {
    /// Stores a new key (its hash and id are fresh, so this never overwrites).
    async fn create(&self, record: &ApiKeyRecord) -> Result<(), StoreError>;
    /// The key with this hash, revoked or not.
    async fn by_hash(&self, key_hash: &str) -> Result<Option<ApiKeyRecord>, StoreError>;
    /// Every key of `tenant`, ordered by key id.
    async fn list(&self, tenant: &TenantId) -> Result<Vec<ApiKeyRecord>, StoreError>;
    /// Marks the key `key_id` of `tenant` revoked; `None` when `tenant` has no such key.
    async fn revoke(
        &self,
        tenant: &TenantId,
        key_id: &str,
        at: DateTime<Utc>,
    ) -> Result<Option<ApiKeyRecord>, StoreError>;
}

/// Hex SHA-256 of a presented key.
pub fn hash_key(key: &str) -> String {
    Sha256::digest(key.as_bytes())
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect()
}

/// A new key for `tenant`: the key (show it once) and its record.
pub fn generate(
    tenant: &TenantId,
    name: &str,
    created_by: &str,
    now: DateTime<Utc>,
) -> (String, ApiKeyRecord) {
    let key_id = format!("{:012x}", rand::random::<u64>() & 0xffff_ffff_ffff);
    let secret = URL_SAFE_NO_PAD.encode(rand::random::<[u8; 32]>());
    let key = format!("{KEY_PREFIX}{key_id}_{secret}");
    let record = ApiKeyRecord {
        key_id,
        key_hash: hash_key(&key),
        tenant: tenant.clone(),
        name: name.to_owned(),
        created_at: now,
        created_by: created_by.to_owned(),
        revoked_at: None,
    };
    (key, record)
}

/// Why a presented key is refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum KeyRejection {
    /// Unknown, malformed or revoked (all look the same to the caller).
    #[error("the API key is not valid (unknown or revoked)")]
    Invalid,
    /// Over the key's request rate; retry after the given seconds.
    #[error("this API key is over its rate limit")]
    RateLimited {
        /// Seconds for `Retry-After`.
        retry_after_secs: u64,
    },
    /// The key store cannot answer now.
    #[error("API key store: {0}")]
    Unavailable(String),
}

/// The node-side key check: cached lookups and a per-key rate limit.
pub struct ApiKeys {
    store: Arc<dyn ApiKeyStore>,
    cache: Mutex<HashMap<String, (Option<ApiKeyRecord>, Instant)>>,
    limiter: DefaultKeyedRateLimiter<String>,
}

impl ApiKeys {
    /// Checks keys from `store`, each allowed `per_second` requests with bursts of `burst`.
    pub fn new(store: Arc<dyn ApiKeyStore>, per_second: NonZeroU32, burst: NonZeroU32) -> Self {
        Self {
            store,
            cache: Mutex::new(HashMap::new()),
            limiter: RateLimiter::keyed(Quota::per_second(per_second).allow_burst(burst)),
        }
    }

    /// The store, for the management endpoints.
    pub fn store(&self) -> &Arc<dyn ApiKeyStore> {
        &self.store
    }

    /// The valid key `presented`, within its rate limit.
    pub async fn check(&self, presented: &str) -> Result<ApiKeyRecord, KeyRejection> {
        if !presented.starts_with(KEY_PREFIX) || presented.len() > 200 {
            return Err(KeyRejection::Invalid);
        }
        let hash = hash_key(presented);
        let cached = {
            let cache = self.cache.lock().unwrap_or_else(|e| e.into_inner());
            cache
                .get(&hash)
                .filter(|(_, at)| at.elapsed() < CACHE_TTL)
                .map(|(r, _)| r.clone())
        };
        let record = match cached {
            Some(record) => record,
            None => {
                let record = self
                    .store
                    .by_hash(&hash)
                    .await
                    .map_err(|e| KeyRejection::Unavailable(e.to_string()))?;
                let mut cache = self.cache.lock().unwrap_or_else(|e| e.into_inner());
                if cache.len() >= CACHE_MAX {
                    cache.clear();
                }
                cache.insert(hash, (record.clone(), Instant::now()));
                record
            }
        };
        let record = record
            .filter(|r| r.revoked_at.is_none())
            .ok_or(KeyRejection::Invalid)?;
        if let Err(not_until) = self.limiter.check_key(&record.key_id) {
            let wait = not_until.wait_time_from(governor::clock::Clock::now(
                &governor::clock::DefaultClock::default(),
            ));
            return Err(KeyRejection::RateLimited {
                retry_after_secs: wait.as_secs_f64().ceil().max(1.0) as u64,
            });
        }
        Ok(record)
    }

    /// Forgets a cached lookup (after a revocation on this node).
    pub fn forget(&self, key_hash: &str) {
        self.cache
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .remove(key_hash);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn keys_are_prefixed_random_and_only_their_hash_is_kept() {
        let tenant = TenantId::parse("acme").unwrap();
        let (key, record) = generate(&tenant, "gateway", "admin", Utc::now());
        let (other, _) = generate(&tenant, "gateway", "admin", Utc::now());
        assert!(key.starts_with(&format!("{KEY_PREFIX}{}_", record.key_id)));
        assert_ne!(key, other);
        assert_eq!(record.key_hash, hash_key(&key));
        assert_eq!(record.key_hash.len(), 64);
        assert!(!serde_json::to_string(&record).unwrap().contains(&key[17..]));
    }
}
