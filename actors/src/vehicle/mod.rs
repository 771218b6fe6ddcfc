//! Per-vehicle state: one actor per active vehicle keeps its latest readings, drops
//! duplicate records, persists the snapshot and publishes every change.
//!
//! # Layout
//!
//! - [`state`]: [`VehicleState`], the pure state machine (dedupe window, latest value per
//!   signal, version). No actix, no I/O; unit-tested on its own.
//! - [`actor`]: [`VehicleStateActor`], the thin actix shell: restores the state from the
//!   [`StateStore`](crate::ports::StateStore) on start, applies batches atomically,
//!   publishes one [`VehicleUpdate`](crate::model::VehicleUpdate) per batch through the
//!   [`FanOut`](crate::ports::FanOut), persists, and passivates when idle.
//! - [`directory`]: [`VehicleDirectory`], the [`RecordRouter`](crate::consumer::RecordRouter)
//!   the shard consumers hand records to. It spawns vehicle actors lazily, spreads them
//!   over its own arbiters (threads), and forgets them when they passivate.
//!
//! # Flow of one batch
//!
//! shard consumer → `VehicleDirectory::route` → (mailbox, bounded: the consumer waits
//! when it is full) → `ApplyRecords` → `VehicleState::apply_batch` → `FanOut::publish`
//! (live first) → `StateStore::save` → reply. The consumer checkpoints only after `Ok`.

pub mod actor;
pub mod directory;
pub mod persist;
pub mod state;

use serde::{Deserialize, Serialize};

pub use actor::{ApplyRecords, GetSnapshot, Stop, VehicleStateActor};
pub use directory::VehicleDirectory;
pub use persist::HistoryServices;
pub use state::{ApplyOutcome, ApplyReport, BatchOutcome, VehicleState};

/// What vehicle actors need for fleet intelligence: the settings and the shared rules
/// book. Cheap to clone.
#[derive(Debug, Clone, Default)]
pub struct FleetServices {
    /// `[fleet]` settings.
    pub config: std::sync::Arc<crate::fleet::FleetConfig>,
    /// Geofences and alert rules per tenant.
    pub rules: crate::fleet::FleetRules,
}

/// Settings of the vehicle actors (config section `vehicle`).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct VehicleConfig {
    /// Seconds without a record after which a vehicle actor stops to free its memory
    /// (default 120). It persists nothing more when it does: every batch was already
    /// persisted before it was acknowledged. The next record reactivates the vehicle from
    /// the state store. Idleness is checked every quarter of this period; 0 passivates an
    /// actor as soon as it is idle (tests only).
    pub passivate_after_secs: u64,
    /// How many recent record ids each vehicle remembers to drop duplicates (default 256).
    /// The window is part of the persisted snapshot, so it survives passivation and
    /// restarts; it must cover the records a shard can replay after a failover.
    pub dedupe_window: usize,
    /// Capacity of each vehicle actor's mailbox, in batches (default 64). When it is full
    /// the sender (the shard consumer) waits: backpressure rather than unbounded memory.
    /// Values below 1 are treated as 1.
    pub mailbox_capacity: usize,
    /// Number of actix arbiters (threads) the vehicle actors are spread over; 0 (the
    /// default) means one per CPU.
    pub arbiters: usize,
    /// Latest-state write coalescing: at most one save per vehicle per this many
    /// milliseconds (default 1000; the AWS profile uses 60 000). Live updates are
    /// published at once regardless; the shard checkpoint waits for the save, so a
    /// failover replays at most this much, which the dedupe window must cover. 0 saves
    /// with every batch.
    pub persist_interval_ms: u64,
}

impl Default for VehicleConfig {
    fn default() -> Self {
        Self {
            passivate_after_secs: 120,
            dedupe_window: 256,
            mailbox_capacity: 64,
            arbiters: 0,
            persist_interval_ms: 1000,
        }
    }
}

impl VehicleConfig {
    /// The number of arbiters to start: `arbiters`, or one per CPU when it is 0.
    pub fn effective_arbiters(&self) -> usize {
        if self.arbiters > 0 {
            self.arbiters
        } else {
            std::thread::available_parallelism().map_or(1, |n| n.get())
        }
    }
}

/// In-memory fakes of the ports for the unit tests of this module.
#[cfg(test)]
pub(crate) mod fakes {
    use std::collections::BTreeMap;
    use std::sync::atomic::{AtomicUsize, Ordering};
    use std::sync::{Arc, Mutex};

    use async_trait::async_trait;
    use chrono::{DateTime, Utc};
    use futures_util::stream::BoxStream;

    use crate::model::{SignalValue, TelemetryRecord, TenantId, VehicleId, VehicleSnapshot, VehicleUpdate};
    use crate::ports::{
        EventId, FanOut, FanOutError, FanOutMessage, Replay, SaveOutcome, StateStore, StoreError,
    };

    /// What happened, in order, across the fake store and fan-out.
    #[derive(Debug, Clone, PartialEq)]
    pub enum Event {
        Published(VehicleId, u64),
        Saved(VehicleId, u64),
    }

    /// A state store in a map keyed by vehicle (tests use one tenant; `load` and `list`
    /// still only return the asked tenant's snapshots); `fail_saves` / `fail_loads` make the
    /// next N calls fail.
    #[derive(Default)]
    pub struct FakeStore {
        pub snapshots: Mutex<BTreeMap<VehicleId, VehicleSnapshot>>,
        pub fail_saves: AtomicUsize,
        pub fail_loads: AtomicUsize,
        pub loads: AtomicUsize,
        pub log: Arc<Mutex<Vec<Event>>>,
    }

    #[async_trait]
    impl StateStore for FakeStore {
        async fn load(
            &self,
            tenant: &TenantId,
            id: &VehicleId,
        ) -> Result<Option<VehicleSnapshot>, StoreError> {
            self.loads.fetch_add(1, Ordering::SeqCst);
            if take_one(&self.fail_loads) {
                return Err(StoreError::Unavailable("fake load failure".into()));
            }
            let map = self.snapshots.lock().unwrap();
            Ok(map.get(id).filter(|s| &s.tenant == tenant).cloned())
        }

        async fn save(&self, snapshot: &VehicleSnapshot) -> Result<SaveOutcome, StoreError> {
            if take_one(&self.fail_saves) {
                return Err(StoreError::Unavailable("fake save failure".into()));
            }
            let mut map = self.snapshots.lock().unwrap();
            if map
                .get(&snapshot.vehicle_id)
                .is_some_and(|s| s.version >= snapshot.version)
            {
                return Ok(SaveOutcome::AlreadyNewer);
            }
            map.insert(snapshot.vehicle_id.clone(), snapshot.clone());
            self.log
                .lock()
                .unwrap()
                .push(Event::Saved(snapshot.vehicle_id.clone(), snapshot.version));
            Ok(SaveOutcome::Written)
        }

        async fn list(
            &self,
            tenant: &TenantId,
            _: Option<&VehicleId>,
            _: usize,
        ) -> Result<Vec<VehicleSnapshot>, StoreError> {
            let map = self.snapshots.lock().unwrap();
            Ok(map.values().filter(|s| &s.tenant == tenant).cloned().collect())
        }

        async fn ping(&self) -> Result<(), StoreError> {
            Ok(())
        }
    }

    /// A fan-out that records what was published.
    #[derive(Default)]
    pub struct FakeFanOut {
        pub updates: Mutex<Vec<VehicleUpdate>>,
        pub fail: AtomicUsize,
        pub log: Arc<Mutex<Vec<Event>>>,
    }

    #[async_trait]
    impl FanOut for FakeFanOut {
        async fn publish(&self, update: Arc<VehicleUpdate>) -> Result<EventId, FanOutError> {
            if take_one(&self.fail) {
                return Err(FanOutError::Unavailable("fake publish failure".into()));
            }
            self.log
                .lock()
                .unwrap()
                .push(Event::Published(update.vehicle_id.clone(), update.version));
            let mut updates = self.updates.lock().unwrap();
            updates.push((*update).clone());
            Ok(EventId::new(updates.len() as u64, 0))
        }

        async fn replay(&self, _: &TenantId, _: EventId, _: usize) -> Result<Replay, FanOutError> {
            Ok(Replay::TooOld { head: None })
        }

        fn subscribe(&self) -> BoxStream<'static, FanOutMessage> {
            Box::pin(futures_util::stream::empty())
        }

        async fn ping(&self) -> Result<(), FanOutError> {
            Ok(())
        }
    }

    fn take_one(counter: &AtomicUsize) -> bool {
        counter
            .fetch_update(Ordering::SeqCst, Ordering::SeqCst, |n| n.checked_sub(1))
            .is_ok()
    }

    /// A store and a fan-out sharing one event log.
    pub fn ports() -> (Arc<FakeStore>, Arc<FakeFanOut>) {
        let log = Arc::new(Mutex::new(Vec::new()));
        (
            Arc::new(FakeStore {
                log: log.clone(),
                ..Default::default()
            }),
            Arc::new(FakeFanOut {
                log,
                ..Default::default()
            }),
        )
    }

    /// `2026-01-01T00:00:00Z` plus `secs`.
    pub fn at(secs: i64) -> DateTime<Utc> {
        DateTime::from_timestamp(1_767_225_600 + secs, 0).unwrap()
    }

    /// A record of `vehicle` at second `secs` with integer signals.
    pub fn record(vehicle: &str, secs: i64, signals: &[(&str, i64)]) -> TelemetryRecord {
        TelemetryRecord {
            timestamp: at(secs),
            vehicle_id: VehicleId(vehicle.into()),
            payload: signals
                .iter()
                .map(|(k, v)| (k.to_string(), SignalValue::Int(*v)))
                .collect(),
            can_id: None,
            ingest_received_at: at(secs + 1),
        }
    }
}
