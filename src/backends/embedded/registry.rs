//! [`RedbVehicleRegistry`]: the vehicle registry in the shared redb database.
//!
//! Two tables, written together in one transaction so they never disagree:
//! - `registry`: vehicle id → the [`Registration`] as JSON (the lookup of every record);
//! - `registry_by_tenant`: (tenant, vehicle id) → `()`, the listing of a tenant, in
//!   vehicle-id order (the embedded twin of DynamoDB's `by_tenant` index).
//!
//! redb has one writer at a time, so "insert unless another tenant owns it" is a plain
//! read-then-write inside the write transaction: two tenants provisioning the same vehicle
//! are serialized and the second one sees the first one's row. Provisions go through a
//! group-commit writer (`group_commit.rs`): a fleet seen for the first time (a new node,
//! `tenancy.unknown_vehicles = "provision"`) provisions thousands of vehicles a second,
//! and one fsync'd transaction each held redb's writer, ingest's stream appends included,
//! for seconds.

use std::sync::Arc;

use async_trait::async_trait;
use redb::{Database, ReadableDatabase, ReadableTable, TableDefinition, WriteTransaction};

use fleetwire_actors::model::{TenantId, VehicleId};
use fleetwire_actors::ports::{ProvisionOutcome, Registration, StoreError, VehicleRegistry};

use super::EmbeddedError;
use super::db::{self, StoreDb, unavailable};
use super::group_commit::GroupCommit;

/// `vehicle_id` → JSON of [`Registration`].
const REGISTRY: TableDefinition<&str, &[u8]> = TableDefinition::new("registry");
/// `(tenant, vehicle_id)` → nothing: the per-tenant listing.
const BY_TENANT: TableDefinition<(&str, &str), ()> = TableDefinition::new("registry_by_tenant");

/// [`VehicleRegistry`] on the shared redb database. Cheap to clone.
#[derive(Clone)]
pub struct RedbVehicleRegistry {
    /// The shared database, run on the blocking pool.
    db: StoreDb<StoreError>,
    /// The writer thread for provisions.
    provisions: GroupCommit<Registration, ProvisionOutcome, StoreError>,
}

impl std::fmt::Debug for RedbVehicleRegistry {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("RedbVehicleRegistry").finish_non_exhaustive()
    }
}

impl RedbVehicleRegistry {
    /// Creates the registry tables if needed. Blocking: call at startup.
    pub fn new(db: Arc<Database>) -> Result<Self, EmbeddedError> {
        db::init(&db, |txn| {
            db::create(txn, REGISTRY)?;
            db::create(txn, BY_TENANT)
        })?;
        let provisions = GroupCommit::start(&db, "registry", apply_provisions, StoreError::Unavailable)?;
        Ok(Self {
            db: StoreDb::new(db, "registry", StoreError::Unavailable),
            provisions,
        })
    }
}

#[async_trait]
impl VehicleRegistry for RedbVehicleRegistry {
    async fn lookup(&self, vehicle_id: &VehicleId) -> Result<Option<Registration>, StoreError> {
        let key = vehicle_id.0.clone();
        StoreDb::run(&self.db, move |db| {
            let txn = db.begin_read().map_err(unavailable)?;
            let table = txn.open_table(REGISTRY).map_err(unavailable)?;
            let row = table.get(key.as_str()).map_err(unavailable)?;
            row.map(|v| decode(v.value())).transpose()
        })
        .await
    }

    async fn provision(&self, registration: &Registration) -> Result<ProvisionOutcome, StoreError> {
        self.provisions.write(registration.clone()).await
    }

    async fn remove(&self, tenant: &TenantId, vehicle_id: &VehicleId) -> Result<bool, StoreError> {
        let (tenant, id) = (tenant.clone(), vehicle_id.0.clone());
        StoreDb::run(&self.db, move |db| {
            let txn = db.begin_write().map_err(unavailable)?;
            {
                let mut table = txn.open_table(REGISTRY).map_err(unavailable)?;
                let owned = match table.get(id.as_str()).map_err(unavailable)? {
                    Some(v) => decode(v.value())?.tenant == tenant,
                    None => false,
                };
                if !owned {
                    return Ok(false);
                }
                table.remove(id.as_str()).map_err(unavailable)?;
                let mut by_tenant = txn.open_table(BY_TENANT).map_err(unavailable)?;
                by_tenant
                    .remove((tenant.as_str(), id.as_str()))
                    .map_err(unavailable)?;
            }
            txn.commit().map_err(unavailable)?;
            Ok(true)
        })
        .await
    }

    async fn list(
        &self,
        tenant: &TenantId,
        after: Option<&VehicleId>,
        limit: usize,
    ) -> Result<Vec<Registration>, StoreError> {
        let (tenant, after) = (tenant.clone(), after.map(|a| a.0.clone()));
        StoreDb::run(&self.db, move |db| {
            let txn = db.begin_read().map_err(unavailable)?;
            let by_tenant = txn.open_table(BY_TENANT).map_err(unavailable)?;
            let table = txn.open_table(REGISTRY).map_err(unavailable)?;
            let t = tenant.as_str();
            db::tenant_rows(&by_tenant, t, after.as_deref(), limit, |id, ()| {
                table
                    .get(id)
                    .map_err(unavailable)?
                    .map(|v| decode(v.value()))
                    .transpose()?
                    .ok_or_else(|| {
                        StoreError::Corrupt(format!("registry index lists {id} for {t} but it has no row"))
                    })
            })
        })
        .await
    }
}

fn encode(registration: &Registration) -> Vec<u8> {
    serde_json::to_vec(registration).expect("a Registration always serializes to JSON")
}

fn decode(bytes: &[u8]) -> Result<Registration, StoreError> {
    serde_json::from_slice(bytes).map_err(|e| StoreError::Corrupt(format!("registry row: {e}")))
}

/// Applies provisions in the writer thread's transaction, in order: a later one sees the
/// rows of the earlier ones.
fn apply_provisions(
    txn: &WriteTransaction,
    batch: &[Registration],
) -> Result<Vec<Result<ProvisionOutcome, StoreError>>, StoreError> {
    let mut table = txn.open_table(REGISTRY).map_err(unavailable)?;
    let mut by_tenant = txn.open_table(BY_TENANT).map_err(unavailable)?;
    let mut outcomes = Vec::with_capacity(batch.len());
    for new in batch {
        let id = new.vehicle_id.as_str();
        let stored = match table
            .get(id)
            .map_err(unavailable)?
            .map(|v| decode(v.value()))
            .transpose()
        {
            Ok(stored) => stored,
            Err(corrupt) => {
                outcomes.push(Err(corrupt));
                continue;
            }
        };
        let (outcome, row) = match stored {
            Some(old) if old.tenant != new.tenant => {
                outcomes.push(Ok(ProvisionOutcome::OwnedByOther));
                continue;
            }
            // Same tenant: name and status change, the first provisioning time stays.
            Some(old) => (
                ProvisionOutcome::Updated,
                Registration {
                    provisioned_at: old.provisioned_at,
                    ..new.clone()
                },
            ),
            None => (ProvisionOutcome::Created, new.clone()),
        };
        table.insert(id, encode(&row).as_slice()).map_err(unavailable)?;
        by_tenant
            .insert((new.tenant.as_str(), id), ())
            .map_err(unavailable)?;
        outcomes.push(Ok(outcome));
    }
    Ok(outcomes)
}
