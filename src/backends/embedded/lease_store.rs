//! The KCL-style lease table in redb.
//!
//! One table, `leases`: key = lease key (the shard id), value = the `Lease` as JSON. Every
//! conditional operation reads and writes inside one redb write transaction; redb runs
//! one write transaction at a time, so check-then-write is atomic, exactly like a DynamoDB
//! conditional write. redb calls block, so each runs on `spawn_blocking`.

use std::sync::Arc;

use async_trait::async_trait;
use redb::{Database, ReadableDatabase, ReadableTable, TableDefinition};

use fleetwire_actors::ports::{Checkpoint, Lease, LeaseError, LeaseStore};

use super::EmbeddedError;
use super::db::{self, StoreDb};

/// `lease_key` → JSON of [`Lease`].
const LEASES: TableDefinition<&str, &[u8]> = TableDefinition::new("leases");

/// [`LeaseStore`] on the shared redb database.
#[derive(Clone)]
pub struct RedbLeaseStore {
    /// Shared with the other stores (see `open_database`), run on the blocking pool.
    db: StoreDb<LeaseError>,
}

impl std::fmt::Debug for RedbLeaseStore {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("RedbLeaseStore").finish_non_exhaustive()
    }
}

impl RedbLeaseStore {
    /// Creates the `leases` table if needed, so reads never meet a missing table.
    /// Blocking: call at startup.
    pub fn new(db: Arc<Database>) -> Result<Self, EmbeddedError> {
        db::init(&db, |txn| db::create(txn, LEASES))?;
        Ok(Self {
            db: StoreDb::new(db, "lease store", LeaseError::Unavailable),
        })
    }

    /// Reads the lease `key`, lets `change` edit it (or refuse), and writes it back, all in
    /// one write transaction. Returns the lease as stored.
    async fn modify<F>(&self, key: String, change: F) -> Result<Lease, LeaseError>
    where
        F: FnOnce(&mut Lease) -> Result<(), LeaseError> + Send + 'static,
    {
        StoreDb::run(&self.db, move |db| {
            let txn = db.begin_write().map_err(unavailable)?;
            let lease = {
                let mut table = txn.open_table(LEASES).map_err(unavailable)?;
                let mut lease = match table.get(key.as_str()).map_err(unavailable)? {
                    Some(bytes) => decode(bytes.value())?,
                    None => return Err(LeaseError::NotFound(key)),
                };
                change(&mut lease)?;
                table
                    .insert(key.as_str(), encode(&lease).as_slice())
                    .map_err(unavailable)?;
                lease
            };
            txn.commit().map_err(unavailable)?;
            Ok(lease)
        })
        .await
    }
}

#[async_trait]
impl LeaseStore for RedbLeaseStore {
    async fn list_leases(&self) -> Result<Vec<Lease>, LeaseError> {
        StoreDb::run(&self.db, |db| {
            let txn = db.begin_read().map_err(unavailable)?;
            let table = txn.open_table(LEASES).map_err(unavailable)?;
            let mut leases = Vec::new();
            for row in table.iter().map_err(unavailable)? {
                let (_, value) = row.map_err(unavailable)?;
                leases.push(decode(value.value())?);
            }
            Ok(leases)
        })
        .await
    }

    async fn create_lease_if_absent(&self, lease: Lease) -> Result<bool, LeaseError> {
        StoreDb::run(&self.db, move |db| {
            let txn = db.begin_write().map_err(unavailable)?;
            {
                let mut table = txn.open_table(LEASES).map_err(unavailable)?;
                if table
                    .get(lease.lease_key.as_str())
                    .map_err(unavailable)?
                    .is_some()
                {
                    return Ok(false);
                }
                table
                    .insert(lease.lease_key.as_str(), encode(&lease).as_slice())
                    .map_err(unavailable)?;
            }
            txn.commit().map_err(unavailable)?;
            Ok(true)
        })
        .await
    }

    async fn renew_lease(&self, lease: &Lease) -> Result<Lease, LeaseError> {
        let (counter, owner) = (lease.lease_counter, lease.lease_owner.clone());
        self.modify(lease.lease_key.clone(), move |stored| {
            if stored.lease_counter != counter || stored.lease_owner != owner {
                return Err(LeaseError::ConditionFailed(stored.lease_key.clone()));
            }
            stored.lease_counter += 1;
            Ok(())
        })
        .await
    }

    async fn take_lease(&self, lease: &Lease, new_owner: &str) -> Result<Lease, LeaseError> {
        let counter = lease.lease_counter;
        let new_owner = new_owner.to_owned();
        self.modify(lease.lease_key.clone(), move |stored| {
            if stored.lease_counter != counter {
                return Err(LeaseError::ConditionFailed(stored.lease_key.clone()));
            }
            // Re-taking our own lease (e.g. after a missed renewal) is not a failover.
            if stored.lease_owner.as_deref() != Some(new_owner.as_str()) {
                stored.owner_switches_since_checkpoint += 1;
            }
            stored.lease_owner = Some(new_owner);
            stored.lease_counter += 1;
            Ok(())
        })
        .await
    }

    async fn evict_lease(&self, lease: &Lease) -> Result<Lease, LeaseError> {
        let (counter, owner) = (lease.lease_counter, lease.lease_owner.clone());
        self.modify(lease.lease_key.clone(), move |stored| {
            if stored.lease_counter != counter || stored.lease_owner != owner {
                return Err(LeaseError::ConditionFailed(stored.lease_key.clone()));
            }
            stored.lease_owner = None;
            stored.lease_counter += 1;
            Ok(())
        })
        .await
    }

    async fn update_checkpoint(
        &self,
        lease_key: &str,
        owner: &str,
        checkpoint: Checkpoint,
    ) -> Result<(), LeaseError> {
        let owner = owner.to_owned();
        self.modify(lease_key.to_owned(), move |stored| {
            if stored.lease_owner.as_deref() != Some(owner.as_str()) {
                return Err(LeaseError::ConditionFailed(stored.lease_key.clone()));
            }
            stored.checkpoint = checkpoint;
            stored.owner_switches_since_checkpoint = 0;
            Ok(())
        })
        .await
        .map(drop)
    }

    /// Deletes the lease; `NotFound` when it is already gone (callers that retry a delete
    /// may treat that as success).
    async fn delete_lease(&self, lease_key: &str) -> Result<(), LeaseError> {
        let key = lease_key.to_owned();
        StoreDb::run(&self.db, move |db| {
            let txn = db.begin_write().map_err(unavailable)?;
            let removed = {
                let mut table = txn.open_table(LEASES).map_err(unavailable)?;
                table.remove(key.as_str()).map_err(unavailable)?.is_some()
            };
            if !removed {
                return Err(LeaseError::NotFound(key));
            }
            txn.commit().map_err(unavailable)?;
            Ok(())
        })
        .await
    }

    async fn ping(&self) -> Result<(), LeaseError> {
        StoreDb::run(&self.db, |db| {
            let txn = db.begin_read().map_err(unavailable)?;
            txn.open_table(LEASES).map_err(unavailable)?;
            Ok(())
        })
        .await
    }
}

fn unavailable(e: impl Into<redb::Error>) -> LeaseError {
    LeaseError::Unavailable(e.into().to_string())
}

fn encode(lease: &Lease) -> Vec<u8> {
    serde_json::to_vec(lease).expect("a Lease always serializes to JSON")
}

fn decode(bytes: &[u8]) -> Result<Lease, LeaseError> {
    // The port has no "corrupt" variant; an unreadable row is a broken backend.
    serde_json::from_slice(bytes).map_err(|e| LeaseError::Unavailable(format!("unreadable lease row: {e}")))
}
