//! Vehicle snapshots in redb, written with group commit.
//!
//! Table `vehicle_state`: key = (tenant, vehicle id), value = the `VehicleSnapshot` as JSON.
//! The tenant leads the key, so a tenant's listing is one range scan and no key of one
//! tenant is reachable from another's (the embedded twin of DynamoDB's
//! `pk = <tenant>#<vehicle_id>`). Databases from before tenants had a table `vehicles`
//! keyed by vehicle id alone; opening one moves its rows over (under the tenant stored in
//! each snapshot, `default` for all of them) and drops the old table.
//!
//! Saves go through a group-commit writer thread (`group_commit.rs`): everything pending
//! is applied in one write transaction with one fsync, and a full queue makes `save` wait
//! (back-pressure up to the vehicle actors).
//!
//! Reads (`load`, `list`) are ordinary read transactions on the blocking pool; redb lets
//! them run alongside the writer.

use std::sync::Arc;

use async_trait::async_trait;
use redb::{Database, ReadableDatabase, ReadableTable, TableDefinition, TableHandle, WriteTransaction};
use serde::Deserialize;

use fleetwire_actors::model::{TenantId, VehicleId, VehicleSnapshot};
use fleetwire_actors::ports::{SaveOutcome, StateStore, StoreError};

use super::db::{self, StoreDb, unavailable};
use super::group_commit::GroupCommit;
use super::{EmbeddedError, redb_err};

/// `(tenant, vehicle_id)` → JSON of [`VehicleSnapshot`].
const VEHICLES: TableDefinition<(&str, &str), &[u8]> = TableDefinition::new("vehicle_state");
/// The table of databases written before tenants: `vehicle_id` → JSON. Migrated at open.
const LEGACY_VEHICLES: TableDefinition<&str, &[u8]> = TableDefinition::new("vehicles");

/// One save on its way to the writer thread.
struct SaveRequest {
    /// Key of the row: the tenant.
    tenant: String,
    /// Key of the row: the vehicle.
    vehicle_id: String,
    /// The snapshot's version, compared with the stored one.
    version: u64,
    /// The snapshot, already serialized by the caller so the JSON work is spread over the
    /// async workers instead of piling up on the single writer.
    json: Vec<u8>,
}

/// Reads only the `version` of a stored snapshot (serde skips the rest without
/// allocating it).
#[derive(Deserialize)]
struct StoredVersion {
    version: u64,
}

/// [`StateStore`] on the shared redb database with a group-commit writer thread.
///
/// The writer thread stops once the store (every clone) is dropped.
#[derive(Clone)]
pub struct RedbStateStore {
    /// For the read transactions, on the blocking pool.
    db: StoreDb<StoreError>,
    /// The writer thread.
    saves: GroupCommit<SaveRequest, SaveOutcome, StoreError>,
}

impl std::fmt::Debug for RedbStateStore {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("RedbStateStore").finish_non_exhaustive()
    }
}

impl RedbStateStore {
    /// Creates the `vehicle_state` table if needed (migrating a pre-tenant `vehicles`
    /// table) and starts the writer thread. Blocking: call at startup.
    pub fn new(db: Arc<Database>) -> Result<Self, EmbeddedError> {
        let migrated = db::init(&db, |txn| {
            db::create(txn, VEHICLES)?;
            migrate_legacy(txn)
        })?;
        if migrated > 0 {
            tracing::info!(
                snapshots = migrated,
                "Moved vehicle snapshots to the tenant-keyed table."
            );
        }

        let saves = GroupCommit::start(&db, "state", apply_batch, StoreError::Unavailable)?;
        Ok(Self {
            db: StoreDb::new(db, "state store", StoreError::Unavailable),
            saves,
        })
    }
}

#[async_trait]
impl StateStore for RedbStateStore {
    async fn load(
        &self,
        tenant: &TenantId,
        vehicle_id: &VehicleId,
    ) -> Result<Option<VehicleSnapshot>, StoreError> {
        let (tenant, key) = (tenant.as_str().to_owned(), vehicle_id.0.clone());
        StoreDb::run(&self.db, move |db| {
            let txn = db.begin_read().map_err(unavailable)?;
            let table = txn.open_table(VEHICLES).map_err(unavailable)?;
            let row = table.get((tenant.as_str(), key.as_str())).map_err(unavailable)?;
            row.map(|v| decode(v.value())).transpose()
        })
        .await
    }

    async fn save(&self, snapshot: &VehicleSnapshot) -> Result<SaveOutcome, StoreError> {
        let json = serde_json::to_vec(snapshot).expect("a VehicleSnapshot always serializes to JSON");
        let request = SaveRequest {
            tenant: snapshot.tenant.as_str().to_owned(),
            vehicle_id: snapshot.vehicle_id.0.clone(),
            version: snapshot.version,
            json,
        };
        self.saves.write(request).await
    }

    async fn list(
        &self,
        tenant: &TenantId,
        after: Option<&VehicleId>,
        limit: usize,
    ) -> Result<Vec<VehicleSnapshot>, StoreError> {
        let (tenant, after) = (tenant.as_str().to_owned(), after.map(|id| id.0.clone()));
        StoreDb::run(&self.db, move |db| {
            let txn = db.begin_read().map_err(unavailable)?;
            let table = txn.open_table(VEHICLES).map_err(unavailable)?;
            db::tenant_rows(&table, tenant.as_str(), after.as_deref(), limit, |_, json| {
                decode(json)
            })
        })
        .await
    }

    async fn ping(&self) -> Result<(), StoreError> {
        if self.saves.is_closed() {
            return Err(StoreError::Unavailable("state writer thread has stopped".into()));
        }
        StoreDb::run(&self.db, |db| {
            let txn = db.begin_read().map_err(unavailable)?;
            txn.open_table(VEHICLES).map_err(unavailable)?;
            Ok(())
        })
        .await
    }
}

fn apply_batch(
    txn: &WriteTransaction,
    batch: &[SaveRequest],
) -> Result<Vec<Result<SaveOutcome, StoreError>>, StoreError> {
    let mut table = txn.open_table(VEHICLES).map_err(unavailable)?;
    let mut outcomes = Vec::with_capacity(batch.len());
    for request in batch {
        // Reads see earlier inserts of this transaction, so two saves of one vehicle in the
        // same batch are still ordered by version.
        let key = (request.tenant.as_str(), request.vehicle_id.as_str());
        let stored = table
            .get(key)
            .map_err(unavailable)?
            .map(|v| serde_json::from_slice::<StoredVersion>(v.value()).map(|s| s.version));
        let outcome = match stored {
            Some(Err(e)) => Err(StoreError::Corrupt(format!(
                "stored snapshot of {} has no readable version: {e}",
                request.vehicle_id
            ))),
            Some(Ok(version)) if version >= request.version => Ok(SaveOutcome::AlreadyNewer),
            _ => {
                table.insert(key, request.json.as_slice()).map_err(unavailable)?;
                Ok(SaveOutcome::Written)
            }
        };
        outcomes.push(outcome);
    }
    Ok(outcomes)
}

/// Moves the rows of a pre-tenant `vehicles` table into `vehicle_state` and deletes it.
/// Returns how many snapshots moved (0 when there was no such table).
fn migrate_legacy(txn: &WriteTransaction) -> Result<usize, EmbeddedError> {
    let exists = txn
        .list_tables()
        .map_err(redb_err)?
        .any(|t| t.name() == LEGACY_VEHICLES.name());
    if !exists {
        return Ok(0);
    }
    let mut moved = 0;
    {
        let legacy = txn.open_table(LEGACY_VEHICLES).map_err(redb_err)?;
        let mut table = txn.open_table(VEHICLES).map_err(redb_err)?;
        for row in legacy.iter().map_err(redb_err)? {
            let (key, value) = row.map_err(redb_err)?;
            let snapshot = decode(value.value()).map_err(|e| {
                EmbeddedError::InvalidConfig(format!(
                    "cannot migrate the stored snapshot of {}: {e}",
                    key.value()
                ))
            })?;
            table
                .insert((snapshot.tenant.as_str(), key.value()), value.value())
                .map_err(redb_err)?;
            moved += 1;
        }
    }
    txn.delete_table(LEGACY_VEHICLES).map_err(redb_err)?;
    Ok(moved)
}

fn decode(bytes: &[u8]) -> Result<VehicleSnapshot, StoreError> {
    serde_json::from_slice(bytes).map_err(|e| StoreError::Corrupt(e.to_string()))
}
