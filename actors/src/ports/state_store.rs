//! The state store port: the latest snapshot of every vehicle.

use async_trait::async_trait;

use crate::model::{TenantId, VehicleId, VehicleSnapshot};

/// What a save did.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SaveOutcome {
    /// The snapshot is now the stored one.
    Written,
    /// A snapshot with an equal or higher version was already stored; nothing changed.
    /// This is success for the caller: its effects are already durable.
    AlreadyNewer,
}

/// Errors of the state store.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum StoreError {
    /// Too many writes right now; retry with backoff (DynamoDB: throttling).
    #[error("state store throttled: {0}")]
    Throttled(String),
    /// The backend failed or cannot be reached; retry with backoff.
    #[error("state store unavailable: {0}")]
    Unavailable(String),
    /// Stored data could not be read back (corrupt or from an incompatible version).
    #[error("stored state is unreadable: {0}")]
    Corrupt(String),
}

/// The state store port. Implementations: `src/backends/embedded/state_store.rs` (redb) and
/// `src/backends/dynamodb/state_store.rs` (the `vehicles` table).
///
/// Every call is tenant-scoped: the key of a snapshot is (tenant, vehicle id), so the same
/// vehicle id under two tenants is two unrelated snapshots, and no call can reach another
/// tenant's data (docs/data-model.md: "every key that holds tenant data starts with the
/// tenant").
#[async_trait]
pub trait StateStore: Send + Sync + 'static {
    /// The stored snapshot of `tenant`'s vehicle, if any.
    async fn load(
        &self,
        tenant: &TenantId,
        vehicle_id: &VehicleId,
    ) -> Result<Option<VehicleSnapshot>, StoreError>;

    /// Stores `snapshot` under (`snapshot.tenant`, `snapshot.vehicle_id`) unless the stored
    /// one has an equal or higher `version` (idempotent and order-safe). Returns only once
    /// the write is durable.
    async fn save(&self, snapshot: &VehicleSnapshot) -> Result<SaveOutcome, StoreError>;

    /// `tenant`'s snapshots ordered by vehicle id, starting after `after`, at most `limit`.
    async fn list(
        &self,
        tenant: &TenantId,
        after: Option<&VehicleId>,
        limit: usize,
    ) -> Result<Vec<VehicleSnapshot>, StoreError>;

    /// Cheap reachability check for `/readyz`.
    async fn ping(&self) -> Result<(), StoreError>;
}
