//! The lease store port: one lease per shard, with the fields and fencing rules of the
//! Kinesis Client Library's lease table (KCL `leases/Lease.java`, `docs/lease-lifecycle.md`).
//!
//! Fencing: every write that changes ownership is conditional on the lease counter the
//! writer last saw, and every checkpoint is conditional on the writer still being the
//! owner. A node that lost its lease therefore can never move its checkpoint.

use async_trait::async_trait;
use serde::{Deserialize, Serialize};

use super::stream::SequenceNumber;

/// Where a shard's consumer resumes.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub enum Checkpoint {
    /// Nothing processed yet: start from the oldest retained record.
    TrimHorizon,
    /// Nothing processed yet: start from new records only.
    Latest,
    /// Every record up to and including this one has been processed.
    Sequence(SequenceNumber),
    /// The (closed) shard was processed to its end; its children may start.
    ShardEnd,
}

/// One lease row.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Lease {
    /// The shard id the lease is for (KCL `leaseKey`).
    pub lease_key: String,
    /// The worker holding it, `None` when free.
    pub lease_owner: Option<String>,
    /// Bumped on every renew, take and release; the fencing token.
    pub lease_counter: u64,
    /// Progress of the shard.
    pub checkpoint: Checkpoint,
    /// Parent shards that must reach `ShardEnd` before this one is processed.
    pub parent_shard_ids: Vec<String>,
    /// How often the lease changed hands since the last checkpoint; a high number means
    /// a shard keeps failing over without progress.
    pub owner_switches_since_checkpoint: u64,
}

impl Lease {
    /// A new, unowned lease for a shard.
    pub fn new(lease_key: impl Into<String>, parent_shard_ids: Vec<String>, start: Checkpoint) -> Self {
        Self {
            lease_key: lease_key.into(),
            lease_owner: None,
            lease_counter: 0,
            checkpoint: start,
            parent_shard_ids,
            owner_switches_since_checkpoint: 0,
        }
    }
}

/// Errors of the lease store.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum LeaseError {
    /// The conditional write failed: someone else renewed, took or released the lease
    /// since we read it. The caller no longer owns it (KCL: lease lost).
    #[error("lease {0} changed underneath us")]
    ConditionFailed(String),
    /// No such lease.
    #[error("no lease {0}")]
    NotFound(String),
    /// The backend failed or cannot be reached; retry with backoff.
    #[error("lease store unavailable: {0}")]
    Unavailable(String),
}

/// The lease store port. Implementations: `src/backends/embedded/lease_store.rs`
/// (redb-backed), later DynamoDB.
#[async_trait]
pub trait LeaseStore: Send + Sync + 'static {
    /// Every lease.
    async fn list_leases(&self) -> Result<Vec<Lease>, LeaseError>;

    /// Creates the lease unless one with the same key exists. Returns whether it was created.
    async fn create_lease_if_absent(&self, lease: Lease) -> Result<bool, LeaseError>;

    /// Renews a lease we hold: counter + 1, conditional on `lease.lease_counter` and
    /// `lease.lease_owner` being unchanged. Returns the stored lease.
    async fn renew_lease(&self, lease: &Lease) -> Result<Lease, LeaseError>;

    /// Takes a lease (free, expired or stolen): owner = `new_owner`, counter + 1, and
    /// owner switches + 1 when the owner actually changes; conditional on
    /// `lease.lease_counter` being unchanged.
    async fn take_lease(&self, lease: &Lease, new_owner: &str) -> Result<Lease, LeaseError>;

    /// Releases a lease we hold so another worker can take it at once: owner = none,
    /// counter + 1, conditional on counter and owner.
    async fn evict_lease(&self, lease: &Lease) -> Result<Lease, LeaseError>;

    /// Moves the checkpoint, conditional on `owner` still owning the lease; resets the
    /// owner-switch count. Does not change the counter, so it never races a renewal.
    async fn update_checkpoint(
        &self,
        lease_key: &str,
        owner: &str,
        checkpoint: Checkpoint,
    ) -> Result<(), LeaseError>;

    /// Deletes a lease (a fully consumed parent shard after its children started).
    async fn delete_lease(&self, lease_key: &str) -> Result<(), LeaseError>;

    /// Cheap reachability check for `/readyz`.
    async fn ping(&self) -> Result<(), LeaseError>;
}
