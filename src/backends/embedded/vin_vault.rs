//! [`RedbVaultStore`]: the VIN vault's items in the node's redb database. One table,
//! `vin_vault`: item key (`<tenant>#<vehicle_id>`, or `~key#<version>`) → `key_version`
//! (u32 LE), `created_at` (i64 LE, ms), then the ciphertext. Write-once: the insert is a
//! read-then-write inside redb's single write transaction. Inserts go through a
//! group-commit writer (`group_commit.rs`): 10,000 vehicles reconnecting after a restart
//! each record their VIN, and one fsync'd transaction each held redb's writer for seconds.

use std::sync::Arc;

use async_trait::async_trait;
use chrono::{TimeZone, Utc};
use redb::{Database, ReadableDatabase, ReadableTable, TableDefinition, WriteTransaction};

use super::EmbeddedError;
use super::db::{self, StoreDb};
use super::group_commit::GroupCommit;
use crate::vault::{VaultError, VaultItem, VaultStore};

const VIN_VAULT: TableDefinition<&str, &[u8]> = TableDefinition::new("vin_vault");

/// The vault store on the shared redb database. Cheap to clone.
#[derive(Clone)]
pub struct RedbVaultStore {
    /// The shared database, run on the blocking pool.
    db: StoreDb<VaultError>,
    /// The writer thread for inserts.
    inserts: GroupCommit<(String, Vec<u8>), bool, VaultError>,
}

impl std::fmt::Debug for RedbVaultStore {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("RedbVaultStore").finish_non_exhaustive()
    }
}

fn failed(e: impl Into<redb::Error>) -> VaultError {
    VaultError::Store(format!("redb: {}", e.into()))
}

fn encode(item: &VaultItem) -> Vec<u8> {
    let mut out = Vec::with_capacity(12 + item.ct.len());
    out.extend_from_slice(&item.key_version.to_le_bytes());
    out.extend_from_slice(&item.created_at.timestamp_millis().to_le_bytes());
    out.extend_from_slice(&item.ct);
    out
}

fn decode(bytes: &[u8]) -> Result<VaultItem, VaultError> {
    if bytes.len() < 12 {
        return Err(VaultError::Store("corrupt vault row".into()));
    }
    let version = u32::from_le_bytes(bytes[..4].try_into().expect("4 bytes"));
    let ms = i64::from_le_bytes(bytes[4..12].try_into().expect("8 bytes"));
    Ok(VaultItem {
        ct: bytes[12..].to_vec(),
        key_version: version,
        created_at: Utc.timestamp_millis_opt(ms).single().unwrap_or_default(),
    })
}

impl RedbVaultStore {
    /// Creates the table if needed. Blocking: call at startup.
    pub fn new(db: Arc<Database>) -> Result<Self, EmbeddedError> {
        db::init(&db, |txn| db::create(txn, VIN_VAULT))?;
        let inserts = GroupCommit::start(&db, "vault", apply_inserts, VaultError::Store)?;
        Ok(Self {
            db: StoreDb::new(db, "vault", VaultError::Store),
            inserts,
        })
    }
}

#[async_trait]
impl VaultStore for RedbVaultStore {
    async fn put_if_absent(&self, pk: &str, item: &VaultItem) -> Result<bool, VaultError> {
        self.inserts.write((pk.to_owned(), encode(item))).await
    }

    async fn get(&self, pk: &str) -> Result<Option<VaultItem>, VaultError> {
        let pk = pk.to_owned();
        StoreDb::run(&self.db, move |db| {
            let txn = db.begin_read().map_err(failed)?;
            let table = txn.open_table(VIN_VAULT).map_err(failed)?;
            let row = table.get(pk.as_str()).map_err(failed)?;
            row.map(|v| decode(v.value())).transpose()
        })
        .await
    }

    async fn delete(&self, pk: &str) -> Result<bool, VaultError> {
        let pk = pk.to_owned();
        StoreDb::run(&self.db, move |db| {
            let txn = db.begin_write().map_err(failed)?;
            let removed = {
                let mut table = txn.open_table(VIN_VAULT).map_err(failed)?;
                table.remove(pk.as_str()).map_err(failed)?.is_some()
            };
            txn.commit().map_err(failed)?;
            Ok(removed)
        })
        .await
    }
}

/// Inserts each (key, row) unless the key exists, in the writer thread's transaction;
/// `true` for the ones inserted.
fn apply_inserts(
    txn: &WriteTransaction,
    batch: &[(String, Vec<u8>)],
) -> Result<Vec<Result<bool, VaultError>>, VaultError> {
    let mut table = txn.open_table(VIN_VAULT).map_err(failed)?;
    let mut created = Vec::with_capacity(batch.len());
    for (pk, row) in batch {
        let exists = table.get(pk.as_str()).map_err(failed)?.is_some();
        if !exists {
            table.insert(pk.as_str(), row.as_slice()).map_err(failed)?;
        }
        created.push(Ok(!exists));
    }
    Ok(created)
}
