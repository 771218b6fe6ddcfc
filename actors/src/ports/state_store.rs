//! The state store port: the latest snapshot of every vehicle.

use async_trait::async_trait;

use crate::model::{VehicleId, VehicleSnapshot};

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

/// The state store port. Implementations: `src/backends/embedded/state_store.rs` (redb),
/// later DynamoDB.
#[async_trait]
pub trait StateStore: Send + Sync + 'static {
    /// The stored snapshot of a vehicle, if any.
    async fn load(&self, vehicle_id: &VehicleId) -> Result<Option<VehicleSnapshot>, StoreError>;

    /// Stores `snapshot` unless the stored one has an equal or higher `version`
    /// (idempotent and order-safe). Returns only once the write is durable.
    async fn save(&self, snapshot: &VehicleSnapshot) -> Result<SaveOutcome, StoreError>;

    /// Snapshots ordered by vehicle id, starting after `after`, at most `limit`.
    async fn list(&self, after: Option<&VehicleId>, limit: usize)
    -> Result<Vec<VehicleSnapshot>, StoreError>;

    /// Cheap reachability check for `/readyz`.
    async fn ping(&self) -> Result<(), StoreError>;
}
