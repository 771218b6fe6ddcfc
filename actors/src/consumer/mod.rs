//! The KCL-style shard consumer. (Stub: filled by the consumer work.)

use async_trait::async_trait;

use crate::model::{TelemetryRecord, VehicleId};

/// Why routing a batch of records to a vehicle failed. The shard consumer does not
/// checkpoint past a failed batch; it retries it (dedupe makes the retry safe).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum RouteError {
    /// The vehicle actor could not persist the new state.
    #[error("vehicle {vehicle}: {reason}")]
    NotPersisted {
        /// Which vehicle.
        vehicle: VehicleId,
        /// Why.
        reason: String,
    },
    /// The node is shutting down and no longer accepts records.
    #[error("shutting down")]
    ShuttingDown,
}

/// The consumer's output: hands a vehicle's records, in stream order, to whatever keeps
/// its state, and resolves once their effects are persisted (only then may the shard
/// checkpoint move past them). Implemented by [`crate::vehicle::VehicleDirectory`].
#[async_trait]
pub trait RecordRouter: Send + Sync + 'static {
    /// Applies `records` (all of one vehicle, in order) and returns after persistence.
    async fn route(&self, vehicle_id: VehicleId, records: Vec<TelemetryRecord>) -> Result<(), RouteError>;
}
