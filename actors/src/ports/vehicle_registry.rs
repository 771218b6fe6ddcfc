//! The vehicle registry port: which tenant a vehicle (its VIN pseudonym) belongs to.
//!
//! Every record is attributed to a tenant through this registry before anything is stored
//! or published; a vehicle that is not provisioned (or is suspended) is refused at the
//! edge and its records go to dead letters, unless the node is configured to provision
//! unknown vehicles to a default tenant. Tenant admins provision, suspend and remove
//! vehicles through the API. DynamoDB table: `registry` (docs/data-model.md).

use async_trait::async_trait;
use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};

use crate::model::{TenantId, VehicleId};
use crate::ports::StoreError;

/// Whether a provisioned vehicle's records are accepted.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum VehicleStatus {
    /// Records are accepted.
    Active,
    /// Records are refused (dead-lettered with reason `suspended`); the state is kept.
    Suspended,
}

/// One vehicle's registration.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Registration {
    /// The VIN pseudonym (never a clear VIN).
    pub vehicle_id: VehicleId,
    /// The owning tenant.
    pub tenant: TenantId,
    /// Operator-chosen label, e.g. a fleet number.
    pub display_name: Option<String>,
    /// Whether records are accepted.
    pub status: VehicleStatus,
    /// When it was first provisioned.
    pub provisioned_at: DateTime<Utc>,
}

/// What [`VehicleRegistry::provision`] did.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ProvisionOutcome {
    /// The vehicle was not registered; it is now.
    Created,
    /// The vehicle was already registered to the same tenant; its name/status were updated.
    Updated,
    /// The vehicle belongs to another tenant; nothing changed. Callers must not reveal
    /// which tenant (a tenant admin only learns "already provisioned elsewhere").
    OwnedByOther,
}

/// The vehicle registry port. Implementations: embedded (redb) and DynamoDB (`registry`).
#[async_trait]
pub trait VehicleRegistry: Send + Sync + 'static {
    /// The registration of a vehicle, whatever its tenant. Edges and the consumer call this
    /// to learn a record's tenant; nodes cache the answer briefly.
    async fn lookup(&self, vehicle_id: &VehicleId) -> Result<Option<Registration>, StoreError>;

    /// Registers `registration` unless another tenant owns the vehicle (conditional write).
    async fn provision(&self, registration: &Registration) -> Result<ProvisionOutcome, StoreError>;

    /// Removes a vehicle of `tenant`; `false` when it is not registered to that tenant.
    async fn remove(&self, tenant: &TenantId, vehicle_id: &VehicleId) -> Result<bool, StoreError>;

    /// Registrations of `tenant` ordered by vehicle id, after `after`, at most `limit`.
    async fn list(
        &self,
        tenant: &TenantId,
        after: Option<&VehicleId>,
        limit: usize,
    ) -> Result<Vec<Registration>, StoreError>;
}
