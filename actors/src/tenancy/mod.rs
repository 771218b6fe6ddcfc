//! Tenancy on the consumer path: every record is attributed to the tenant the vehicle
//! registry names before anything is applied, stored or published.
//!
//! - [`cache`]: [`RegistrationCache`], bounded and expiring registry answers (pure).
//! - [`router`]: [`TenantRouter`], the shard consumers' [`RecordRouter`](crate::consumer::RecordRouter):
//!   resolve → vehicle actor of (tenant, vehicle), or → dead letters (`unprovisioned`,
//!   `suspended`), counted by `fleetwire_tenancy_dead_letters_total`.
//!
//! Config section `[tenancy]` ([`TenancyConfig`]).

pub mod cache;
pub mod router;

use std::time::Duration;

use serde::{Deserialize, Serialize};

pub use cache::RegistrationCache;
pub use router::{Resolution, TenantRouter};

use crate::model::TenantId;

/// What the consumer does with records of a vehicle the registry does not know.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum UnknownVehicles {
    /// Dead-letter them (reason `unprovisioned`): a tenant admin must provision the vehicle
    /// first. The production default.
    #[default]
    DeadLetter,
    /// Register the vehicle to `tenancy.provision_tenant` on its first record, then apply
    /// it. For development, tests and the demo.
    Provision,
}

/// [`UnknownVehicles`] with its tenant, checked.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum UnknownVehiclePolicy {
    /// See [`UnknownVehicles::DeadLetter`].
    DeadLetter,
    /// See [`UnknownVehicles::Provision`].
    Provision(TenantId),
}

/// Settings of tenant resolution (config section `tenancy`).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct TenancyConfig {
    /// `dead_letter` (default) or `provision`.
    pub unknown_vehicles: UnknownVehicles,
    /// The tenant unknown vehicles are provisioned to with `unknown_vehicles = "provision"`
    /// (required then, ignored otherwise). Default: unset.
    pub provision_tenant: Option<String>,
    /// Seconds a registry answer is reused by this node (default 30): provisioning,
    /// suspending or transferring a vehicle takes effect on the consumer within this time.
    /// 0 looks up every batch.
    pub cache_ttl_secs: u64,
    /// Most vehicles whose registry answer the node remembers (default 100,000); beyond it
    /// the oldest answers are dropped.
    pub cache_capacity: usize,
}

impl Default for TenancyConfig {
    fn default() -> Self {
        Self {
            unknown_vehicles: UnknownVehicles::DeadLetter,
            provision_tenant: None,
            cache_ttl_secs: 30,
            cache_capacity: 100_000,
        }
    }
}

impl TenancyConfig {
    /// Provision unknown vehicles to `tenant` (tests, demo, local development).
    pub fn provisioning_to(tenant: &str) -> Self {
        Self {
            unknown_vehicles: UnknownVehicles::Provision,
            provision_tenant: Some(tenant.to_owned()),
            ..Self::default()
        }
    }

    /// The checked policy: `provision` needs a valid `provision_tenant`.
    pub fn policy(&self) -> Result<UnknownVehiclePolicy, String> {
        match (self.unknown_vehicles, &self.provision_tenant) {
            (UnknownVehicles::DeadLetter, _) => Ok(UnknownVehiclePolicy::DeadLetter),
            (UnknownVehicles::Provision, None) => {
                Err("tenancy.unknown_vehicles = \"provision\" needs tenancy.provision_tenant".into())
            }
            (UnknownVehicles::Provision, Some(raw)) => TenantId::parse(raw)
                .map(UnknownVehiclePolicy::Provision)
                .map_err(|e| format!("tenancy.provision_tenant: {e}")),
        }
    }

    /// The cache TTL.
    pub fn cache_ttl(&self) -> Duration {
        Duration::from_secs(self.cache_ttl_secs)
    }
}

#[cfg(test)]
mod tests;
