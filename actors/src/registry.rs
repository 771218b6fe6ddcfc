//! The actor registry behind `GET /admin/actors`: every live actor registers here when
//! it starts and is removed when its [`Registration`] is dropped (when the actor is).
//!
//! Counters are atomics updated by the actor itself, so reading the registry never
//! sends a message to (or waits on) any actor.

use std::collections::{BTreeMap, HashMap};
use std::fmt;
use std::sync::atomic::{AtomicI64, AtomicU64, Ordering};
use std::sync::{Arc, Mutex, Weak};

use chrono::{DateTime, TimeZone, Utc};
use litemap::LiteMap;
use serde::Serialize;

/// The kinds of actor fleetwire runs.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum ActorKind {
    /// One per connected vehicle on the Tesla WebSocket listener.
    VehicleConnection,
    /// One per active vehicle: latest state, dedupe, persistence, publishing.
    VehicleState,
    /// One per browser SSE connection.
    Subscriber,
    /// One per node: routes fan-out updates to local subscribers.
    SubscriberHub,
    /// One per owned shard lease: reads the shard and checkpoints.
    ShardConsumer,
    /// One per node: takes, renews and releases shard leases.
    LeaseCoordinator,
    /// One per node: batches records into PutRecords calls.
    Producer,
    /// One per node with `[archive]` enabled: writes the raw archive's part files.
    Archiver,
}

impl ActorKind {
    /// Every kind, in display order.
    pub const ALL: [ActorKind; 8] = [
        ActorKind::VehicleConnection,
        ActorKind::VehicleState,
        ActorKind::Subscriber,
        ActorKind::SubscriberHub,
        ActorKind::ShardConsumer,
        ActorKind::LeaseCoordinator,
        ActorKind::Producer,
        ActorKind::Archiver,
    ];

    /// The snake_case name used in the admin API and metrics.
    pub fn as_str(self) -> &'static str {
        match self {
            ActorKind::VehicleConnection => "vehicle_connection",
            ActorKind::VehicleState => "vehicle_state",
            ActorKind::Subscriber => "subscriber",
            ActorKind::SubscriberHub => "subscriber_hub",
            ActorKind::ShardConsumer => "shard_consumer",
            ActorKind::LeaseCoordinator => "lease_coordinator",
            ActorKind::Producer => "producer",
            ActorKind::Archiver => "archiver",
        }
    }

    /// Parses the snake_case name.
    pub fn parse(s: &str) -> Option<Self> {
        Self::ALL.into_iter().find(|k| k.as_str() == s)
    }
}

impl fmt::Display for ActorKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// Live counters of one actor.
#[derive(Debug)]
pub struct ActorStats {
    kind: ActorKind,
    id: String,
    started_at: DateTime<Utc>,
    /// Unix milliseconds of the last handled message, 0 before the first.
    last_message_ms: AtomicI64,
    /// Messages handled so far.
    handled: AtomicU64,
    /// Messages sent through [`ActorStats::enqueued`] and not yet handled.
    queued: AtomicI64,
    /// Kind-specific fields shown by the admin API (filter, remote address, …). A sorted
    /// Vec with static keys: every vehicle actor has an entry, and a `serde_json::Map`
    /// (a B-tree with `String` keys) cost ~0.65 KB of each idle vehicle's heap.
    details: Mutex<LiteMap<&'static str, serde_json::Value>>,
}

impl ActorStats {
    /// A sender calls this right before sending a message it wants counted in the
    /// mailbox depth; the handler then calls [`ActorStats::handled`] with `dequeued = true`.
    pub fn enqueued(&self) {
        self.queued.fetch_add(1, Ordering::Relaxed);
    }

    /// Called by the actor for every handled message. `dequeued` says the message was
    /// counted by [`ActorStats::enqueued`].
    pub fn handled(&self, dequeued: bool) {
        if dequeued {
            self.queued.fetch_sub(1, Ordering::Relaxed);
        }
        self.handled.fetch_add(1, Ordering::Relaxed);
        self.last_message_ms
            .store(Utc::now().timestamp_millis(), Ordering::Relaxed);
    }

    /// Sets one kind-specific detail field.
    pub fn set_detail(&self, key: &'static str, value: impl Into<serde_json::Value>) {
        self.details
            .lock()
            .expect("details lock never poisoned")
            .insert(key, value.into());
    }

    /// Messages waiting in the mailbox (never negative).
    pub fn mailbox_depth(&self) -> u64 {
        self.queued.load(Ordering::Relaxed).max(0) as u64
    }

    /// A serializable copy.
    pub fn info(&self) -> ActorInfo {
        let last = self.last_message_ms.load(Ordering::Relaxed);
        ActorInfo {
            id: self.id.clone(),
            kind: self.kind,
            started_at: self.started_at,
            last_message_at: (last > 0)
                .then(|| Utc.timestamp_millis_opt(last).single())
                .flatten(),
            messages_handled: self.handled.load(Ordering::Relaxed),
            mailbox_depth: self.mailbox_depth(),
            details: self
                .details
                .lock()
                .expect("details lock never poisoned")
                .iter()
                .map(|(k, v)| ((*k).to_owned(), v.clone()))
                .collect(),
        }
    }
}

/// What the admin API shows of one actor.
#[derive(Debug, Clone, Serialize)]
pub struct ActorInfo {
    /// Actor id, unique within its kind (vehicle id, shard id, connection number…).
    pub id: String,
    /// Its kind.
    pub kind: ActorKind,
    /// When it started.
    pub started_at: DateTime<Utc>,
    /// When it last handled a message.
    pub last_message_at: Option<DateTime<Utc>>,
    /// Messages handled.
    pub messages_handled: u64,
    /// Messages waiting (of those senders count).
    pub mailbox_depth: u64,
    /// Kind-specific fields.
    pub details: serde_json::Map<String, serde_json::Value>,
}

type Table = Mutex<HashMap<(ActorKind, String), Arc<ActorStats>>>;

/// The registry. Cheap to clone; all clones share one table.
#[derive(Debug, Clone, Default)]
pub struct ActorRegistry {
    table: Arc<Table>,
}

impl ActorRegistry {
    /// An empty registry.
    pub fn new() -> Self {
        Self::default()
    }

    /// Registers an actor. A second registration with the same kind and id replaces the
    /// first in the table (the old actor's later drop does not remove the new entry).
    pub fn register(&self, kind: ActorKind, id: impl Into<String>) -> Registration {
        let id = id.into();
        let stats = Arc::new(ActorStats {
            kind,
            id: id.clone(),
            started_at: Utc::now(),
            last_message_ms: AtomicI64::new(0),
            handled: AtomicU64::new(0),
            queued: AtomicI64::new(0),
            details: Mutex::new(LiteMap::new()),
        });
        self.lock().insert((kind, id), stats.clone());
        Registration {
            stats,
            table: Arc::downgrade(&self.table),
        }
    }

    /// Number of live actors per kind; every kind is present, zero included.
    pub fn counts(&self) -> BTreeMap<ActorKind, usize> {
        let mut counts: BTreeMap<ActorKind, usize> = ActorKind::ALL.iter().map(|k| (*k, 0)).collect();
        for (kind, _) in self.lock().keys() {
            *counts.entry(*kind).or_default() += 1;
        }
        counts
    }

    /// Live actors, optionally of one kind, ordered by kind then id, at most `limit`.
    pub fn list(&self, kind: Option<ActorKind>, limit: usize) -> Vec<ActorInfo> {
        let table = self.lock();
        let mut keys: Vec<&(ActorKind, String)> = table
            .keys()
            .filter(|(k, _)| kind.is_none_or(|want| *k == want))
            .collect();
        keys.sort();
        keys.into_iter()
            .take(limit)
            .map(|key| table[key].info())
            .collect()
    }

    /// One actor.
    pub fn get(&self, kind: ActorKind, id: &str) -> Option<ActorInfo> {
        self.lock().get(&(kind, id.to_owned())).map(|s| s.info())
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, HashMap<(ActorKind, String), Arc<ActorStats>>> {
        self.table.lock().expect("registry lock never poisoned")
    }
}

/// An actor's entry; dropping it (with the actor) removes the entry.
#[derive(Debug)]
pub struct Registration {
    stats: Arc<ActorStats>,
    table: Weak<Table>,
}

impl Registration {
    /// The actor's counters.
    pub fn stats(&self) -> &Arc<ActorStats> {
        &self.stats
    }
}

impl std::ops::Deref for Registration {
    type Target = ActorStats;
    fn deref(&self) -> &ActorStats {
        &self.stats
    }
}

impl Drop for Registration {
    fn drop(&mut self) {
        let Some(table) = self.table.upgrade() else { return };
        let mut table = table.lock().expect("registry lock never poisoned");
        let key = (self.stats.kind, self.stats.id.clone());
        if table.get(&key).is_some_and(|s| Arc::ptr_eq(s, &self.stats)) {
            table.remove(&key);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn registration_lives_as_long_as_its_guard() {
        let reg = ActorRegistry::new();
        let a = reg.register(ActorKind::VehicleState, "v1");
        let _b = reg.register(ActorKind::Subscriber, "s1");
        assert_eq!(reg.counts()[&ActorKind::VehicleState], 1);
        assert_eq!(reg.counts()[&ActorKind::LeaseCoordinator], 0);
        a.enqueued();
        a.enqueued();
        a.handled(true);
        let info = reg.get(ActorKind::VehicleState, "v1").unwrap();
        assert_eq!((info.messages_handled, info.mailbox_depth), (1, 1));
        assert!(info.last_message_at.is_some());
        drop(a);
        assert!(reg.get(ActorKind::VehicleState, "v1").is_none());
        assert_eq!(reg.list(None, 10).len(), 1);
    }

    #[test]
    fn replaced_entry_survives_the_old_guard() {
        let reg = ActorRegistry::new();
        let old = reg.register(ActorKind::VehicleConnection, "car");
        let _new = reg.register(ActorKind::VehicleConnection, "car");
        drop(old);
        assert!(reg.get(ActorKind::VehicleConnection, "car").is_some());
    }

    #[test]
    fn list_filters_and_limits() {
        let reg = ActorRegistry::new();
        let _g: Vec<_> = (0..5)
            .map(|i| reg.register(ActorKind::VehicleState, format!("v{i}")))
            .collect();
        let _s = reg.register(ActorKind::Subscriber, "s");
        let ids: Vec<_> = reg
            .list(Some(ActorKind::VehicleState), 3)
            .into_iter()
            .map(|i| i.id)
            .collect();
        assert_eq!(ids, ["v0", "v1", "v2"]);
        assert_eq!(ActorKind::parse("shard_consumer"), Some(ActorKind::ShardConsumer));
    }
}
