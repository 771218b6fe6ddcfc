//! [`TenantRouter`]: the [`RecordRouter`] of the shard consumers. It learns each vehicle's
//! tenant from the [`VehicleRegistry`] (through the node's [`RegistrationCache`]) and hands
//! the records to that tenant's vehicle actor; records of unprovisioned or suspended
//! vehicles go to the dead-letter sink with their reason.

use std::sync::{Arc, Mutex};
use std::time::Instant;

use async_trait::async_trait;
use chrono::Utc;
use metrics::counter;
use tracing::{debug, warn};

use super::cache::RegistrationCache;
use super::{TenancyConfig, UnknownVehiclePolicy};
use crate::archive::{ArchiveHandle, ArchiveRecord, encode_line};
use crate::codec::encode_record;
use crate::consumer::{DurabilityHold, RecordRouter, RouteError};
use crate::model::{TelemetryRecord, TenantId, VehicleId};
use crate::ports::{ProvisionOutcome, PutEntry, Registration, StoreError, VehicleRegistry, VehicleStatus};
use crate::producer::{DeadLetter, DeadLetterReason, DeadLetterSink};
use crate::telemetry::{TENANCY_DEAD_LETTERS_TOTAL, TENANCY_LOOKUPS_TOTAL, TENANCY_PROVISIONED_TOTAL};
use crate::vehicle::VehicleDirectory;

/// What the registry says about a vehicle's records.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Resolution {
    /// Apply them as this tenant's.
    Accept(TenantId),
    /// Dead-letter them for this reason.
    Refuse(DeadLetterReason),
}

/// Resolves tenants and routes records (see the module docs).
///
/// On a registry error nothing is applied or dead-lettered: the route fails with
/// [`RouteError::TenantUnresolved`], so the shard consumer retries the batch after a
/// backoff and its checkpoint waits, exactly as for a state-store error. Dead-lettering is
/// part of the route: if the sink fails, the route fails too and the records are retried,
/// so a refused record is never dropped silently.
pub struct TenantRouter {
    /// Where accepted records go.
    directory: VehicleDirectory,
    /// Vehicle → tenant.
    registry: Arc<dyn VehicleRegistry>,
    /// Where refused records go.
    dead_letters: Arc<dyn DeadLetterSink>,
    /// What to do with vehicles the registry does not know.
    unknown: UnknownVehiclePolicy,
    /// Recent lookups. A std mutex: never held across an await.
    cache: Mutex<RegistrationCache>,
    /// Name of the stream the consumers read, for the source of undecodable records.
    stream_name: String,
    /// The raw archive, when `[archive]` is enabled.
    archive: Option<ArchiveHandle>,
}

impl TenantRouter {
    /// A router over `directory`. `config` must have passed [`TenancyConfig::policy`].
    pub fn new(
        config: &TenancyConfig,
        directory: VehicleDirectory,
        registry: Arc<dyn VehicleRegistry>,
        dead_letters: Arc<dyn DeadLetterSink>,
    ) -> Result<Self, String> {
        Ok(Self {
            directory,
            registry,
            dead_letters,
            unknown: config.policy()?,
            cache: Mutex::new(RegistrationCache::new(config.cache_ttl(), config.cache_capacity)),
            stream_name: String::new(),
            archive: None,
        })
    }

    /// Also writes every routed record to the raw archive.
    pub fn with_archive(mut self, archive: ArchiveHandle) -> Self {
        self.archive = Some(archive);
        self
    }

    /// Names the stream the consumers read (the `stream` of undecodable records' source).
    pub fn with_stream_name(mut self, name: impl Into<String>) -> Self {
        self.stream_name = name.into();
        self
    }

    fn cache(&self) -> std::sync::MutexGuard<'_, RegistrationCache> {
        // The cache is consistent after every call; a panic elsewhere cannot break it.
        self.cache.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// The registration of `id`: from the cache, else from the registry (provisioning it
    /// when the policy says so).
    async fn registration(&self, id: &VehicleId) -> Result<Option<Registration>, StoreError> {
        if let Some(cached) = self.cache().get(id, Instant::now()) {
            counter!(TENANCY_LOOKUPS_TOTAL, "source" => "cache").increment(1);
            return Ok(cached.cloned());
        }
        counter!(TENANCY_LOOKUPS_TOTAL, "source" => "registry").increment(1);
        let mut found = self.registry.lookup(id).await?;
        if found.is_none()
            && let UnknownVehiclePolicy::Provision(tenant) = &self.unknown
        {
            found = Some(self.provision(id, tenant).await?);
        }
        self.cache().insert(id.clone(), found.clone(), Instant::now());
        Ok(found)
    }

    /// Registers an unknown vehicle to `tenant`. If another node (or a tenant admin) won
    /// the race, its registration is the answer.
    async fn provision(&self, id: &VehicleId, tenant: &TenantId) -> Result<Registration, StoreError> {
        let registration = Registration {
            vehicle_id: id.clone(),
            tenant: tenant.clone(),
            display_name: None,
            status: VehicleStatus::Active,
            provisioned_at: Utc::now(),
        };
        match self.registry.provision(&registration).await? {
            ProvisionOutcome::Created => {
                counter!(TENANCY_PROVISIONED_TOTAL).increment(1);
                debug!(vehicle = %id, %tenant, "Provisioned an unknown vehicle.");
                Ok(registration)
            }
            ProvisionOutcome::Updated | ProvisionOutcome::OwnedByOther => {
                self.registry.lookup(id).await?.ok_or_else(|| {
                    StoreError::Unavailable(format!(
                        "vehicle {id} vanished from the registry while provisioning"
                    ))
                })
            }
        }
    }

    /// What to do with `id`'s records.
    pub async fn resolve(&self, id: &VehicleId) -> Result<Resolution, StoreError> {
        Ok(match self.registration(id).await? {
            None => Resolution::Refuse(DeadLetterReason::Unprovisioned),
            Some(r) if r.status == VehicleStatus::Suspended => {
                Resolution::Refuse(DeadLetterReason::Suspended { tenant: r.tenant })
            }
            Some(r) => Resolution::Accept(r.tenant),
        })
    }
}

#[async_trait]
impl RecordRouter for TenantRouter {
    async fn release(&self, vehicles: Vec<VehicleId>) {
        self.directory.release(&vehicles);
    }

    async fn flush_deferred(&self, vehicles: Vec<VehicleId>) {
        self.directory.flush_vehicles(&vehicles);
    }

    async fn route(&self, vehicle_id: VehicleId, records: Vec<TelemetryRecord>) -> Result<(), RouteError> {
        self.route_held(vehicle_id, records, DurabilityHold::detached_released())
            .await
    }

    async fn route_held(
        &self,
        vehicle_id: VehicleId,
        records: Vec<TelemetryRecord>,
        hold: DurabilityHold,
    ) -> Result<(), RouteError> {
        let unresolved = |reason: String| RouteError::TenantUnresolved {
            vehicle: vehicle_id.clone(),
            reason,
        };
        let reason = match self.resolve(&vehicle_id).await {
            Ok(Resolution::Accept(tenant)) => {
                return self
                    .directory
                    .apply_held(tenant, vehicle_id, records, Some(hold))
                    .await;
            }
            Ok(Resolution::Refuse(reason)) => reason,
            Err(e) => {
                warn!(vehicle = %vehicle_id, error = %e, "Vehicle registry lookup failed; the batch will be retried.");
                return Err(unresolved(e.to_string()));
            }
        };
        let count = records.len() as u64;
        let tenant = match &reason {
            DeadLetterReason::Suspended { tenant } => Some(tenant.clone()),
            _ => None,
        };
        let letters = records
            .iter()
            .map(|record| DeadLetter {
                entry: PutEntry {
                    partition_key: vehicle_id.0.clone(),
                    data: encode_record(record),
                },
                reason: reason.clone(),
                // The record's own edge time, not now: a retried batch must rewrite the
                // same letter (the time is part of its key).
                at: record.ingest_received_at,
                tenant: tenant.clone(),
                source: None,
            })
            .collect();
        self.dead_letters
            .put(letters)
            .await
            .map_err(|e| unresolved(format!("refused ({reason}) but not dead-lettered: {e}")))?;
        counter!(TENANCY_DEAD_LETTERS_TOTAL, "reason" => reason.label()).increment(count);
        debug!(vehicle = %vehicle_id, records = count, %reason, "Records dead-lettered.");
        hold.release();
        Ok(())
    }

    fn archives(&self) -> bool {
        self.archive.is_some()
    }

    /// Each line gets the tenant the cache knows (the route just looked it up, so it is
    /// there unless evicted); no registry call is made for the archive.
    async fn archive(&self, records: Vec<ArchiveRecord>, hold: DurabilityHold) -> Result<(), RouteError> {
        let Some(archive) = &self.archive else {
            hold.release();
            return Ok(());
        };
        let now = Instant::now();
        let lines = {
            let cache = self.cache();
            records
                .into_iter()
                .map(|archived| {
                    let tenant = cache
                        .get(&archived.record.vehicle_id, now)
                        .flatten()
                        .map(|r| r.tenant.clone());
                    encode_line(&self.stream_name, tenant, archived)
                })
                .collect()
        };
        archive.archive(lines, hold).await
    }

    async fn dead_letter(&self, mut letters: Vec<DeadLetter>) -> Result<(), RouteError> {
        for letter in &mut letters {
            if let Some(source) = &mut letter.source
                && source.stream.is_empty()
            {
                source.stream = self.stream_name.clone();
            }
        }
        self.dead_letters
            .put(letters)
            .await
            .map_err(|e| RouteError::DeadLetterFailed {
                reason: e.to_string(),
            })
    }
}
