//! The KCL-style shard consumer: which node reads which shard, and how far it got.
//!
//! The vocabulary and the rules are those of the Kinesis Client Library
//! (awslabs/amazon-kinesis-client, `leases/` and `lifecycle/`):
//!
//! - [`LeaseCoordinator`] (one per node, [`lease_coordinator`]): every `failover_time / 3`
//!   it syncs shards into leases, renews the leases it holds, takes free or expired leases
//!   and steals from overloaded workers (the pure [`lease_taker`] decides which), and starts
//!   one [`ShardConsumer`] per held lease whose parent shards are finished.
//! - [`ShardConsumer`] (one per held lease, [`shard_consumer`]): reads its shard, decodes
//!   and groups the records by vehicle, hands them to the [`RecordRouter`] and checkpoints
//!   only the prefix whose effects are persisted. Its decisions live in the pure
//!   [`shard_state::ShardConsumerState`]; the actor only runs the I/O it asks for.
//! - [`checkpointer::Checkpointer`] (pure): processed prefix versus written checkpoint, and
//!   when the next write is due.
//!
//! Shutdown follows KCL's `ShutdownReason`: on `Requested` the consumer finishes its batch
//! and checkpoints, on `LeaseLost` it must not checkpoint, at shard end it must checkpoint
//! `ShardEnd` so the child shards can start (parents first).

use std::collections::BTreeSet;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use async_trait::async_trait;
use serde::{Deserialize, Serialize};

use crate::archive::ArchiveRecord;
use crate::model::{TelemetryRecord, VehicleId};
use crate::ports::Checkpoint;
use crate::producer::DeadLetter;

pub mod checkpointer;
pub mod durability;
pub mod lease_cleanup;
pub mod lease_coordinator;
pub mod lease_taker;
mod pseudonymizing;
pub mod shard_consumer;
pub mod shard_state;

pub use durability::{BatchDurability, Durability, DurabilityHold};
pub use lease_coordinator::{GracefulShutdown, LeaseCoordinator, ShardEnded};
pub use pseudonymizing::PseudonymizingRouter;
pub use shard_consumer::{ShardConsumer, Shutdown, ShutdownReason};

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
    /// The vehicle's tenant could not be resolved (the vehicle registry failed, or the
    /// dead-letter sink did not take a refused record); retried like a store error.
    #[error("vehicle {vehicle}: tenant unresolved: {reason}")]
    TenantUnresolved {
        /// Which vehicle.
        vehicle: VehicleId,
        /// Why.
        reason: String,
    },
    /// The node is shutting down and no longer accepts records.
    #[error("shutting down")]
    ShuttingDown,
    /// Records the consumer could not decode were not kept as dead letters; retried like a
    /// store error, so an undecodable record is never skipped unrecorded.
    #[error("undecodable records not dead-lettered: {reason}")]
    DeadLetterFailed {
        /// Why.
        reason: String,
    },
}

/// The consumer's output: hands a vehicle's records, in stream order, to whatever keeps
/// its state, and resolves once their effects are persisted (only then may the shard
/// checkpoint move past them). Implemented by [`crate::tenancy::TenantRouter`] (which
/// resolves the tenant and hands on to [`crate::vehicle::VehicleDirectory`]).
#[async_trait]
pub trait RecordRouter: Send + Sync + 'static {
    /// Applies `records` (all of one vehicle, in order) and returns after persistence.
    async fn route(&self, vehicle_id: VehicleId, records: Vec<TelemetryRecord>) -> Result<(), RouteError>;

    /// Like [`route`](Self::route), but the router may answer before every effect is
    /// durable, keeping clones of `hold` until its deferred writes succeed (see
    /// [`durability`]). The default is `route` with every effect durable at the answer.
    async fn route_held(
        &self,
        vehicle_id: VehicleId,
        records: Vec<TelemetryRecord>,
        hold: DurabilityHold,
    ) -> Result<(), RouteError> {
        let result = self.route(vehicle_id, records).await;
        if result.is_ok() {
            hold.release();
        }
        result
    }

    /// The consumer of a shard stopped (lease lost or handed over, shard ended, shutdown)
    /// after routing these vehicles. Their in-memory state would go stale while another
    /// node applies their records to the shared store, and applying a later record on a
    /// stale copy loses the records in between (the store's version guard takes an equal
    /// version for "already written"); so it is dropped, and the next record reloads it.
    async fn release(&self, vehicles: Vec<VehicleId>) {
        let _ = vehicles;
    }

    /// Asks these vehicles to write their deferred state and history now instead of at
    /// their next coalescing or idle deadline (a shard ended and waits for them). Does not
    /// wait for the writes: their durability holds tell the consumer.
    async fn flush_deferred(&self, vehicles: Vec<VehicleId>) {
        let _ = vehicles;
    }

    /// Keeps records the consumer could not decode (reason
    /// [`DeadLetterReason::Undecodable`](crate::producer::DeadLetterReason), source set) and
    /// returns once they are stored; an error holds the batch back like a failed route.
    async fn dead_letter(&self, letters: Vec<DeadLetter>) -> Result<(), RouteError>;

    /// Whether [`archive`](Self::archive) keeps anything; when false the consumer does not
    /// build the archive records at all.
    fn archives(&self) -> bool {
        false
    }

    /// Queues a routed batch's decoded records, with their source, for the raw archive
    /// ([`crate::archive`]); waits while the archive's queue is full. The router keeps
    /// clones of `hold` until the lines are durable. The default keeps nothing.
    async fn archive(&self, records: Vec<ArchiveRecord>, hold: DurabilityHold) -> Result<(), RouteError> {
        let _ = records;
        hold.release();
        Ok(())
    }
}

/// Where a consumer starts in a shard that has no parents and no checkpoint yet.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum InitialPosition {
    /// The oldest record the stream still retains (KCL `TRIM_HORIZON`).
    #[default]
    TrimHorizon,
    /// Only records put after the consumer starts (KCL `LATEST`).
    Latest,
}

impl InitialPosition {
    /// The checkpoint a new lease for a root shard starts with.
    pub fn checkpoint(self) -> Checkpoint {
        match self {
            InitialPosition::TrimHorizon => Checkpoint::TrimHorizon,
            InitialPosition::Latest => Checkpoint::Latest,
        }
    }
}

/// Settings of the consumer (lease coordinator and shard consumers). Defaults follow the
/// KCL's (`docs/kcl-configurations.md`) where it has one.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct ConsumerConfig {
    /// This node's identity in the lease table. Default `None`: a fresh
    /// `"<hostname-or-'node'>-<6 random hex digits>"` is generated at start, so a restarted
    /// node never mistakes the leases of its previous life for live ones.
    pub worker_id: Option<String>,
    /// Milliseconds after which a lease whose counter did not move is considered expired
    /// and may be taken by another worker. Held leases are renewed every third of it.
    /// Default 10 000 (KCL `failoverTimeMillis`).
    pub failover_time_ms: u64,
    /// Most leases this worker holds; 0 means unlimited. Default 0 (KCL
    /// `maxLeasesForWorker`, unlimited by default).
    pub max_leases_per_worker: usize,
    /// Most leases stolen from another worker in one round. Default 1 (KCL
    /// `maxLeasesToStealAtOneTime`).
    pub max_leases_to_steal_at_once: usize,
    /// Where a shard without parents starts when its lease is created. Default
    /// `trim_horizon`. Child shards always start at `trim_horizon` so nothing between the
    /// split and the first read is lost.
    pub initial_position: InitialPosition,
    /// Most records per `get_records` call. Default 1000.
    pub max_records_per_get: usize,
    /// Milliseconds to wait after a read returned no records. Default 200.
    pub idle_poll_ms: u64,
    /// A shard checkpoints at most once per this many milliseconds; it always does on
    /// shutdown and at shard end. Default 1000.
    pub checkpoint_interval_ms: u64,
    /// First retry delay after a failed read, route or checkpoint, in milliseconds; doubles
    /// per failure with jitter up to `retry_backoff_max_ms`. Default 100.
    pub retry_backoff_initial_ms: u64,
    /// Longest retry delay, in milliseconds. Default 5000.
    pub retry_backoff_max_ms: u64,
    /// What the stream's partition keys are: `vehicle_ids` (streams fleetwire writes:
    /// already pseudonyms) or `vins` (a stream written by Tesla's own Fleet Telemetry
    /// server, keyed by the clear VIN: the consumer pseudonymizes every record before it
    /// is stored or published). Default `vehicle_ids`.
    pub partition_keys: PartitionKeys,
}

/// What a stream's partition keys identify (see [`ConsumerConfig::partition_keys`]).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum PartitionKeys {
    /// fleetwire's own streams: the key is the vehicle id (a pseudonym).
    #[default]
    VehicleIds,
    /// Tesla fleet-telemetry's streams: the key is the clear VIN.
    Vins,
}

impl Default for ConsumerConfig {
    fn default() -> Self {
        Self {
            worker_id: None,
            failover_time_ms: 10_000,
            max_leases_per_worker: 0,
            max_leases_to_steal_at_once: 1,
            initial_position: InitialPosition::TrimHorizon,
            max_records_per_get: 1000,
            idle_poll_ms: 200,
            checkpoint_interval_ms: 1000,
            retry_backoff_initial_ms: 100,
            retry_backoff_max_ms: 5000,
            partition_keys: PartitionKeys::VehicleIds,
        }
    }
}

impl ConsumerConfig {
    /// The failover time as a duration.
    pub fn failover_time(&self) -> Duration {
        Duration::from_millis(self.failover_time_ms)
    }

    /// How often the coordinator runs a lease round: a third of the failover time, so a
    /// lease is renewed about three times before anyone may consider it expired.
    pub fn renew_interval(&self) -> Duration {
        Duration::from_millis((self.failover_time_ms / 3).max(1))
    }

    /// The wait before the next lease round: `renew_interval` scaled by `unit` (in
    /// `[0, 1)`) into its upper quarter, `[3/4, 1)` of it. Never longer, so renewals stay
    /// three per failover time. The jitter matters: nodes started together would
    /// otherwise tick in lockstep, and one node's renewals could land between another's
    /// lease read and its conditional steal in every round, so the steal never succeeds.
    pub fn next_round_in(&self, unit: f64) -> Duration {
        self.renew_interval().mul_f64(0.75 + 0.25 * unit.clamp(0.0, 1.0))
    }
}

/// A fresh worker id: `"<hostname-or-'node'>-<6 random hex digits>"`.
pub fn generate_worker_id() -> String {
    let host = std::env::var("HOSTNAME")
        .ok()
        .or_else(|| std::fs::read_to_string("/etc/hostname").ok())
        .map(|h| h.trim().to_owned())
        .filter(|h| !h.is_empty())
        .unwrap_or_else(|| "node".to_owned());
    format!("{host}-{:06x}", rand::random::<u32>() & 0xff_ffff)
}

/// Shared, cheaply readable status for /readyz and the admin page.
#[derive(Clone, Debug)]
pub struct ConsumerStatus {
    inner: Arc<StatusInner>,
}

#[derive(Debug)]
struct StatusInner {
    worker_id: String,
    failover_time: Duration,
    state: Mutex<StatusState>,
}

#[derive(Debug, Default)]
struct StatusState {
    /// Lease keys this worker holds, sorted.
    held: BTreeSet<String>,
    /// When the last lease round that reached the lease store ended.
    last_good_round: Option<Instant>,
    /// Whether, in that round, every lease not at `ShardEnd` had a live owner.
    all_leases_owned: bool,
    /// Lease rounds that reached the lease store since the start.
    completed_rounds: u64,
}

impl ConsumerStatus {
    pub(crate) fn new(worker_id: String, failover_time: Duration) -> Self {
        Self {
            inner: Arc::new(StatusInner {
                worker_id,
                failover_time,
                state: Mutex::new(StatusState::default()),
            }),
        }
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, StatusState> {
        self.inner.state.lock().expect("status lock never poisoned")
    }

    /// This node's worker id in the lease table.
    pub fn worker_id(&self) -> String {
        self.inner.worker_id.clone()
    }

    /// The lease keys (shard ids) this node holds, sorted.
    pub fn held_leases(&self) -> Vec<String> {
        self.lock().held.iter().cloned().collect()
    }

    /// true when the last lease round succeeded within failover_time and every unfinished
    /// lease has a live owner.
    pub fn is_ready(&self) -> bool {
        let state = self.lock();
        state.all_leases_owned
            && state
                .last_good_round
                .is_some_and(|t| t.elapsed() < self.inner.failover_time)
    }

    /// How many lease rounds reached the lease store since the node started.
    pub fn completed_rounds(&self) -> u64 {
        self.lock().completed_rounds
    }

    pub(crate) fn set_held(&self, held: impl IntoIterator<Item = String>) {
        self.lock().held = held.into_iter().collect();
    }

    pub(crate) fn round_succeeded(&self, all_leases_owned: bool) {
        let mut state = self.lock();
        state.last_good_round = Some(Instant::now());
        state.all_leases_owned = all_leases_owned;
        state.completed_rounds += 1;
    }

    pub(crate) fn set_not_ready(&self) {
        self.lock().all_leases_owned = false;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn config_defaults_and_serde() {
        let c: ConsumerConfig = serde_json::from_str("{}").unwrap();
        assert_eq!(c, ConsumerConfig::default());
        assert_eq!(c.renew_interval(), Duration::from_millis(3333));
        let c: ConsumerConfig =
            serde_json::from_str(r#"{"initial_position":"latest","failover_time_ms":300}"#).unwrap();
        assert_eq!(c.initial_position, InitialPosition::Latest);
        assert_eq!(c.renew_interval(), Duration::from_millis(100));
        assert!(serde_json::from_str::<ConsumerConfig>(r#"{"nope":1}"#).is_err());
    }

    #[test]
    fn rounds_are_jittered_within_the_renew_interval() {
        let c: ConsumerConfig = serde_json::from_str(r#"{"failover_time_ms":3000}"#).unwrap();
        assert_eq!(c.next_round_in(0.0), Duration::from_millis(750));
        assert_eq!(c.next_round_in(0.5), Duration::from_millis(875));
        assert!(c.next_round_in(0.999_999) < c.renew_interval());
        assert_eq!(c.next_round_in(7.0), c.renew_interval(), "clamped");
    }

    #[test]
    fn worker_ids_are_unique() {
        let a = generate_worker_id();
        assert_ne!(a, generate_worker_id());
        let suffix = a.rsplit('-').next().unwrap();
        assert_eq!(suffix.len(), 6);
        assert!(suffix.chars().all(|c| c.is_ascii_hexdigit()));
    }

    #[test]
    fn status_readiness() {
        let s = ConsumerStatus::new("w".into(), Duration::from_secs(10));
        assert!(!s.is_ready(), "not ready before the first round");
        s.round_succeeded(false);
        assert!(!s.is_ready(), "an unowned lease makes the node not ready");
        s.round_succeeded(true);
        assert!(s.is_ready());
        s.set_held(["b".to_string(), "a".to_string()]);
        assert_eq!(s.held_leases(), ["a", "b"]);
        let stale = ConsumerStatus::new("w".into(), Duration::ZERO);
        stale.round_succeeded(true);
        assert!(
            !stale.is_ready(),
            "a round older than failover_time is not good enough"
        );
    }
}
