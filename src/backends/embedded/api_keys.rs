//! [`RedbApiKeyStore`]: ingest API keys in the shared redb database.
//!
//! - `api_keys`: key hash → the [`ApiKeyRecord`] as JSON (the lookup of every ingest);
//! - `api_keys_by_tenant`: (tenant, key id) → key hash (listing and revocation), the
//!   embedded twin of DynamoDB's `by_tenant` index. Both are written in one transaction.

use std::sync::Arc;

use async_trait::async_trait;
use chrono::{DateTime, Utc};
use redb::{Database, ReadableDatabase, ReadableTable, TableDefinition};

use fleetwire_actors::model::TenantId;
use fleetwire_actors::ports::StoreError;

use super::EmbeddedError;
use super::db::{self, StoreDb};
use crate::auth::api_keys::{ApiKeyRecord, ApiKeyStore};

const KEYS: TableDefinition<&str, &[u8]> = TableDefinition::new("api_keys");
const BY_TENANT: TableDefinition<(&str, &str), &str> = TableDefinition::new("api_keys_by_tenant");

/// [`ApiKeyStore`] on the shared redb database. Cheap to clone.
#[derive(Clone)]
pub struct RedbApiKeyStore {
    /// The shared database, run on the blocking pool.
    db: StoreDb<StoreError>,
}

impl std::fmt::Debug for RedbApiKeyStore {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("RedbApiKeyStore").finish_non_exhaustive()
    }
}

fn unavailable(e: impl std::fmt::Display) -> StoreError {
    StoreError::Unavailable(format!("api key store: {e}"))
}

fn decode(bytes: &[u8]) -> Result<ApiKeyRecord, StoreError> {
    serde_json::from_slice(bytes).map_err(|e| StoreError::Corrupt(format!("api key: {e}")))
}

impl RedbApiKeyStore {
    /// Creates the tables if needed. Blocking: call at startup.
    pub fn new(db: Arc<Database>) -> Result<Self, EmbeddedError> {
        db::init(&db, |txn| {
            db::create(txn, KEYS)?;
            db::create(txn, BY_TENANT)
        })?;
        Ok(Self {
            db: StoreDb::new(db, "api key", StoreError::Unavailable),
        })
    }
}

#[async_trait]
impl ApiKeyStore for RedbApiKeyStore {
    async fn create(&self, record: &ApiKeyRecord) -> Result<(), StoreError> {
        let record = record.clone();
        StoreDb::run(&self.db, move |db| {
            let txn = db.begin_write().map_err(unavailable)?;
            {
                let json = serde_json::to_vec(&record).expect("records serialize");
                let mut keys = txn.open_table(KEYS).map_err(unavailable)?;
                keys.insert(record.key_hash.as_str(), json.as_slice())
                    .map_err(unavailable)?;
                let mut by_tenant = txn.open_table(BY_TENANT).map_err(unavailable)?;
                by_tenant
                    .insert(
                        (record.tenant.as_str(), record.key_id.as_str()),
                        record.key_hash.as_str(),
                    )
                    .map_err(unavailable)?;
            }
            txn.commit().map_err(unavailable)
        })
        .await
    }

    async fn by_hash(&self, key_hash: &str) -> Result<Option<ApiKeyRecord>, StoreError> {
        let hash = key_hash.to_owned();
        StoreDb::run(&self.db, move |db| {
            let txn = db.begin_read().map_err(unavailable)?;
            let keys = txn.open_table(KEYS).map_err(unavailable)?;
            let row = keys.get(hash.as_str()).map_err(unavailable)?;
            row.map(|v| decode(v.value())).transpose()
        })
        .await
    }

    async fn list(&self, tenant: &TenantId) -> Result<Vec<ApiKeyRecord>, StoreError> {
        let tenant = tenant.clone();
        StoreDb::run(&self.db, move |db| {
            let txn = db.begin_read().map_err(unavailable)?;
            let keys = txn.open_table(KEYS).map_err(unavailable)?;
            let by_tenant = txn.open_table(BY_TENANT).map_err(unavailable)?;
            let t = tenant.as_str();
            let mut out = Vec::new();
            // Key ids are hex, so ("", ..) to ("~", ..) spans every key of the tenant.
            for row in by_tenant.range((t, "")..(t, "~")).map_err(unavailable)? {
                let (_, hash) = row.map_err(unavailable)?;
                if let Some(v) = keys.get(hash.value()).map_err(unavailable)? {
                    out.push(decode(v.value())?);
                }
            }
            Ok(out)
        })
        .await
    }

    async fn revoke(
        &self,
        tenant: &TenantId,
        key_id: &str,
        at: DateTime<Utc>,
    ) -> Result<Option<ApiKeyRecord>, StoreError> {
        let (tenant, key_id) = (tenant.clone(), key_id.to_owned());
        StoreDb::run(&self.db, move |db| {
            let txn = db.begin_write().map_err(unavailable)?;
            let revoked = {
                let by_tenant = txn.open_table(BY_TENANT).map_err(unavailable)?;
                let Some(hash) = by_tenant
                    .get((tenant.as_str(), key_id.as_str()))
                    .map_err(unavailable)?
                    .map(|h| h.value().to_owned())
                else {
                    return Ok(None);
                };
                let mut keys = txn.open_table(KEYS).map_err(unavailable)?;
                let stored = keys
                    .get(hash.as_str())
                    .map_err(unavailable)?
                    .map(|v| decode(v.value()));
                let Some(mut record) = stored.transpose()? else {
                    return Ok(None);
                };
                // Revoking twice keeps the first time.
                record.revoked_at.get_or_insert(at);
                let json = serde_json::to_vec(&record).expect("records serialize");
                keys.insert(hash.as_str(), json.as_slice()).map_err(unavailable)?;
                record
            };
            txn.commit().map_err(unavailable)?;
            Ok(Some(revoked))
        })
        .await
    }
}
