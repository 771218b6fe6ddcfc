//! [`VehicleDirectory`]: finds the actor of a vehicle, spawning it on the first record,
//! and forgets it when it passivates. Actors are keyed by (tenant, vehicle): the tenant is
//! resolved before (`crate::tenancy::TenantRouter`, the [`RecordRouter`] the shard
//! consumers use), and a vehicle moved to another tenant gets a fresh actor with that
//! tenant's state, never the old tenant's.
//!
//! Each spawned actor gets a *generation* number. An actor that passivates removes its
//! directory entry only if the entry still holds its own generation, so it can never
//! remove a newer actor of the same vehicle. A route that raced a passivation (it took
//! the address just before the actor stopped) sees a closed mailbox, spawns a fresh
//! actor and retries once; the batch was not applied by the stopped actor (a message is
//! either handled and answered, or dropped unanswered), and dedupe covers the rest.

use std::collections::HashMap;
use std::fmt;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, MutexGuard, Weak};

use actix::{Actor, Addr, Arbiter, MailboxError};
use tokio::sync::watch;

use super::actor::{ApplyRecords, FlushDeferred, Stop, VehicleStateActor};
use super::{FleetServices, HistoryServices, VehicleConfig};
use crate::consumer::DurabilityHold;
use crate::consumer::RouteError;
use crate::model::{TelemetryRecord, TenantId, VehicleId};
use crate::ports::{FanOut, StateStore};
use crate::registry::{ActorKind, ActorRegistry, ActorStats};

/// Spawns, finds and passivates vehicle actors. Cheap to clone; clones share the actors.
#[derive(Clone)]
pub struct VehicleDirectory {
    shared: Arc<Shared>,
}

/// State shared by every clone of a directory.
struct Shared {
    /// Settings for new actors.
    config: VehicleConfig,
    /// Handed to every actor.
    store: Arc<dyn StateStore>,
    /// Handed to every actor.
    fanout: Arc<dyn FanOut>,
    /// Fleet settings and rules, handed to every actor.
    fleet: FleetServices,
    /// History port, handed to every actor; `None`: no history.
    history: Option<HistoryServices>,
    /// Where actors register.
    registry: ActorRegistry,
    /// Threads the actors run on; owned here so they stop with the directory.
    arbiters: Vec<Arbiter>,
    /// Round-robin position for the next spawn.
    next_arbiter: AtomicUsize,
    /// The live actors. A std mutex: it is never held across an await.
    table: Mutex<Table>,
    /// Every actor holds a receiver (in its [`DirectorySlot`]); `shutdown` waits until
    /// all are dropped, i.e. until every actor has stopped.
    alive: watch::Sender<()>,
}

/// The directory's mutable part.
#[derive(Default)]
struct Table {
    /// (Tenant, vehicle) → its current actor.
    actors: HashMap<VehicleKey, Entry>,
    /// Generation of the next spawned actor.
    next_generation: u64,
    /// Set by `shutdown`; no actor is spawned after it.
    shutting_down: bool,
}

/// A vehicle actor's identity: the tenant and the vehicle.
type VehicleKey = (TenantId, VehicleId);

/// One live actor.
#[derive(Clone)]
struct Entry {
    /// Distinguishes this actor from earlier and later actors of the same vehicle.
    generation: u64,
    /// Where to send batches.
    addr: Addr<VehicleStateActor>,
    /// The actor's registry counters (mailbox depth is counted by the sender).
    stats: Arc<ActorStats>,
}

/// A vehicle actor's link back to the directory that spawned it.
pub(crate) struct DirectorySlot {
    /// Weak, so actors do not keep a dropped directory (and its arbiters) alive.
    shared: Weak<Shared>,
    /// The generation the actor was spawned with.
    generation: u64,
    /// Liveness guard counted by `shutdown`; dropped with the slot.
    _alive: watch::Receiver<()>,
}

impl DirectorySlot {
    /// Removes the directory entry of `tenant`'s `id` if it still belongs to this actor.
    pub(crate) fn release(&self, tenant: &TenantId, id: &VehicleId) {
        let Some(shared) = self.shared.upgrade() else {
            return;
        };
        let mut table = shared.lock();
        let key = (tenant.clone(), id.clone());
        if table
            .actors
            .get(&key)
            .is_some_and(|e| e.generation == self.generation)
        {
            table.actors.remove(&key);
        }
    }
}

impl Shared {
    fn lock(&self) -> MutexGuard<'_, Table> {
        self.table.lock().expect("vehicle directory lock never poisoned")
    }

    fn stop_arbiters(&self) {
        for arbiter in &self.arbiters {
            arbiter.stop();
        }
    }
}

impl Drop for Shared {
    fn drop(&mut self) {
        // Arbiters do not stop when dropped; without this their threads would outlive us.
        self.stop_arbiters();
    }
}

/// What one delivery attempt gave.
enum Attempt {
    /// The actor answered.
    Done(Result<(), RouteError>),
    /// The actor of this generation stopped before handling the batch.
    Closed(u64),
}

impl VehicleDirectory {
    /// A directory with no actors yet. Starts `config.effective_arbiters()` arbiter threads.
    ///
    /// # Panics
    /// Panics outside an actix `System` (arbiters need one) or if a thread cannot be spawned.
    pub fn new(
        config: VehicleConfig,
        store: Arc<dyn StateStore>,
        fanout: Arc<dyn FanOut>,
        registry: ActorRegistry,
    ) -> Self {
        Self::with_fleet(config, store, fanout, registry, FleetServices::default())
    }

    /// Like [`VehicleDirectory::new`], with the node's fleet settings and rules book.
    ///
    /// # Panics
    /// As `new`.
    pub fn with_fleet(
        config: VehicleConfig,
        store: Arc<dyn StateStore>,
        fanout: Arc<dyn FanOut>,
        registry: ActorRegistry,
        fleet: FleetServices,
    ) -> Self {
        let arbiters = (0..config.effective_arbiters()).map(|_| Arbiter::new()).collect();
        let (alive, _) = watch::channel(());
        Self {
            shared: Arc::new(Shared {
                config,
                store,
                fanout,
                fleet,
                history: None,
                registry,
                arbiters,
                next_arbiter: AtomicUsize::new(0),
                table: Mutex::new(Table::default()),
                alive,
            }),
        }
    }

    /// Gives every vehicle actor spawned from now on the history port.
    ///
    /// # Panics
    /// Panics if the directory was already cloned.
    pub fn with_history(mut self, history: HistoryServices) -> Self {
        Arc::get_mut(&mut self.shared)
            .expect("with_history is called before the directory is shared")
            .history = Some(history);
        self
    }

    /// Asks every vehicle actor to write its deferred state and open history buckets now
    /// (the node's drain before shutdown). Does not wait.
    pub fn flush_deferred(&self) {
        self.flush_where(|_| true);
    }

    /// Like [`flush_deferred`](Self::flush_deferred), for the actors of these vehicles
    /// only (any tenant).
    pub fn flush_vehicles(&self, vehicles: &[VehicleId]) {
        let wanted: std::collections::HashSet<&VehicleId> = vehicles.iter().collect();
        self.flush_where(|id| wanted.contains(id));
    }

    fn flush_where(&self, pick: impl Fn(&VehicleId) -> bool) {
        let addrs: Vec<Addr<VehicleStateActor>> = self
            .shared
            .lock()
            .actors
            .iter()
            .filter(|((_, id), _)| pick(id))
            .map(|(_, e)| e.addr.clone())
            .collect();
        for addr in addrs {
            // A control message: it must not wait behind blocked senders.
            addr.do_send(FlushDeferred);
        }
    }

    /// Vehicle actors currently in the directory.
    pub fn active_count(&self) -> usize {
        self.shared.lock().actors.len()
    }

    /// Stops accepting records (route → [`RouteError::ShuttingDown`]), stops every vehicle
    /// actor and waits for them. Batches already in a mailbox are still applied and
    /// persisted first; batches behind the stop are refused. Has no deadline of its own:
    /// a hung store keeps it waiting, so the caller wraps it in its shutdown timeout.
    /// The directory's arbiters are stopped at the end.
    pub async fn shutdown(&self) {
        let entries: Vec<Entry> = {
            let mut table = self.shared.lock();
            table.shutting_down = true;
            table.actors.drain().map(|(_, entry)| entry).collect()
        };
        for entry in entries {
            // `do_send` ignores the mailbox capacity: the stop must not wait behind
            // blocked senders, only behind the batches already queued.
            entry.addr.do_send(Stop);
        }
        self.shared.alive.closed().await;
        self.shared.stop_arbiters();
    }

    /// Stops the actors of these vehicles (any tenant) and forgets them, so that their
    /// next record starts a fresh actor that loads the stored state (see
    /// [`RecordRouter::release`](crate::consumer::RecordRouter::release)). Batches already
    /// in their mailboxes are still applied and persisted first.
    pub fn release(&self, vehicles: &[VehicleId]) {
        if vehicles.is_empty() {
            return;
        }
        let wanted: std::collections::HashSet<&VehicleId> = vehicles.iter().collect();
        let released: Vec<Entry> = {
            let mut table = self.shared.lock();
            let keys: Vec<VehicleKey> = table
                .actors
                .keys()
                .filter(|(_, id)| wanted.contains(id))
                .cloned()
                .collect();
            keys.iter().filter_map(|k| table.actors.remove(k)).collect()
        };
        for entry in released {
            // Not bounded by the mailbox: the stop must not wait behind blocked senders.
            entry.addr.do_send(Stop);
        }
    }

    /// The current actor of `id`, or a new one if there is none or the current one is
    /// the `stale` generation that just refused a batch.
    fn get_or_spawn(&self, key: &VehicleKey, stale: Option<u64>) -> Result<Entry, RouteError> {
        let mut table = self.shared.lock();
        if table.shutting_down {
            return Err(RouteError::ShuttingDown);
        }
        if let Some(entry) = table.actors.get(key)
            && Some(entry.generation) != stale
            && entry.addr.connected()
        {
            return Ok(entry.clone());
        }
        let generation = table.next_generation;
        table.next_generation += 1;
        let entry = self.spawn(key, generation);
        table.actors.insert(key.clone(), entry.clone());
        Ok(entry)
    }

    /// Starts an actor on the next arbiter. Cheap (no I/O): the actor loads its state
    /// on its own thread once started, so this may run under the table lock.
    fn spawn(&self, (tenant, id): &VehicleKey, generation: u64) -> Entry {
        let shared = &self.shared;
        let registration = shared.registry.register(ActorKind::VehicleState, id.as_str());
        registration.set_detail("tenant", tenant.as_str());
        let stats = registration.stats().clone();
        let slot = DirectorySlot {
            shared: Arc::downgrade(shared),
            generation,
            _alive: shared.alive.subscribe(),
        };
        let arbiter =
            &shared.arbiters[shared.next_arbiter.fetch_add(1, Ordering::Relaxed) % shared.arbiters.len()];
        let (tenant, id, config, store, fanout, fleet, history) = (
            tenant.clone(),
            id.clone(),
            shared.config.clone(),
            shared.store.clone(),
            shared.fanout.clone(),
            shared.fleet.clone(),
            shared.history.clone(),
        );
        let addr = VehicleStateActor::start_in_arbiter(&arbiter.handle(), move |ctx| {
            ctx.set_mailbox_capacity(config.mailbox_capacity.max(1));
            VehicleStateActor::new(tenant, id, &config, store, fanout, registration, Some(slot))
                .with_fleet(fleet)
                .with_history(history)
        });
        Entry {
            generation,
            addr,
            stats,
        }
    }

    /// Sends the batch to the vehicle's actor once.
    async fn attempt(
        &self,
        key: &VehicleKey,
        stale: Option<u64>,
        records: Vec<TelemetryRecord>,
        hold: Option<DurabilityHold>,
    ) -> Attempt {
        let entry = match self.get_or_spawn(key, stale) {
            Ok(entry) => entry,
            Err(err) => return Attempt::Done(Err(err)),
        };
        entry.stats.enqueued();
        // `send` waits while the mailbox is full: that is the backpressure on the shard
        // consumer, which then reads the stream more slowly.
        match entry.addr.send(ApplyRecords { records, hold }).await {
            Ok(result) => Attempt::Done(result.map(|_report| ())),
            Err(MailboxError::Closed | MailboxError::Timeout) => Attempt::Closed(entry.generation),
        }
    }
}

impl VehicleDirectory {
    /// Applies `records` (all of `tenant`'s vehicle `vehicle_id`, in stream order) in the
    /// vehicle's actor and returns once the resulting state is persisted.
    pub async fn apply(
        &self,
        tenant: TenantId,
        vehicle_id: VehicleId,
        records: Vec<TelemetryRecord>,
    ) -> Result<(), RouteError> {
        self.apply_held(tenant, vehicle_id, records, None).await
    }

    /// Like [`apply`](Self::apply), but the actor may answer before every effect is
    /// durable: it keeps clones of `hold` for its deferred writes (see
    /// [`crate::consumer::durability`]).
    pub async fn apply_held(
        &self,
        tenant: TenantId,
        vehicle_id: VehicleId,
        records: Vec<TelemetryRecord>,
        hold: Option<DurabilityHold>,
    ) -> Result<(), RouteError> {
        let key = (tenant, vehicle_id);
        // The clone is kept for the one retry after a lost race with passivation; the
        // stopped actor dropped its copy unapplied (and with it a hold clone, which marks
        // the batch failed: the consumer then re-reads from its processed prefix).
        let stale = match self.attempt(&key, None, records.clone(), hold.clone()).await {
            Attempt::Done(result) => {
                if let Some(h) = hold {
                    h.release();
                }
                return result;
            }
            Attempt::Closed(generation) => generation,
        };
        let vehicle_id = key.1.clone();
        let second = self.attempt(&key, Some(stale), records, hold.clone()).await;
        if let Some(h) = hold {
            h.release();
        }
        match second {
            Attempt::Done(result) => result,
            Attempt::Closed(_) if self.shared.lock().shutting_down => Err(RouteError::ShuttingDown),
            // Twice in a row: the actor could not load its state (store down). The shard
            // consumer retries the batch later.
            Attempt::Closed(_) => Err(RouteError::NotPersisted {
                vehicle: vehicle_id,
                reason: "vehicle actor stopped before applying the batch (state could not be loaded)".into(),
            }),
        }
    }
}

impl fmt::Debug for VehicleDirectory {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let table = self.shared.lock();
        f.debug_struct("VehicleDirectory")
            .field("active", &table.actors.len())
            .field("shutting_down", &table.shutting_down)
            .field("arbiters", &self.shared.arbiters.len())
            .finish()
    }
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use super::*;
    use crate::vehicle::fakes::{ports, record};

    fn directory(
        config: VehicleConfig,
    ) -> (
        VehicleDirectory,
        Arc<crate::vehicle::fakes::FakeStore>,
        ActorRegistry,
    ) {
        let (store, fanout) = ports();
        let registry = ActorRegistry::new();
        let dir = VehicleDirectory::new(config, store.clone(), fanout, registry.clone());
        (dir, store, registry)
    }

    fn vid(s: &str) -> VehicleId {
        VehicleId(s.into())
    }

    fn key(s: &str) -> VehicleKey {
        (TenantId::default(), vid(s))
    }

    /// Routes like the tenant router does for a vehicle of the default tenant.
    trait RouteDefault {
        async fn route(&self, id: VehicleId, records: Vec<TelemetryRecord>) -> Result<(), RouteError>;
    }

    impl RouteDefault for VehicleDirectory {
        async fn route(&self, id: VehicleId, records: Vec<TelemetryRecord>) -> Result<(), RouteError> {
            self.apply(TenantId::default(), id, records).await
        }
    }

    #[actix_rt::test]
    async fn spawns_lazily_and_reuses_the_actor() {
        let (dir, store, registry) = directory(VehicleConfig {
            arbiters: 2,
            ..Default::default()
        });
        assert_eq!(dir.active_count(), 0);
        dir.route(vid("a"), vec![record("a", 1, &[("Soc", 1)])])
            .await
            .unwrap();
        dir.route(vid("a"), vec![record("a", 2, &[("Soc", 2)])])
            .await
            .unwrap();
        dir.route(vid("b"), vec![record("b", 1, &[("Soc", 1)])])
            .await
            .unwrap();
        assert_eq!(dir.active_count(), 2);
        assert_eq!(registry.counts()[&ActorKind::VehicleState], 2);
        // The second save is coalesced (within `persist_interval_ms` of the first) ...
        assert_eq!(store.snapshots.lock().unwrap()[&vid("a")].version, 1);
        let info = registry.get(ActorKind::VehicleState, "a").unwrap();
        assert_eq!((info.messages_handled, info.mailbox_depth), (2, 0));
        dir.shutdown().await;
        // ... and written when the actor stops.
        assert_eq!(store.snapshots.lock().unwrap()[&vid("a")].version, 2);
    }

    #[actix_rt::test]
    async fn a_stale_generation_does_not_remove_its_successor() {
        let (dir, _store, _registry) = directory(VehicleConfig {
            arbiters: 1,
            ..Default::default()
        });
        dir.route(vid("a"), vec![record("a", 1, &[("Soc", 1)])])
            .await
            .unwrap();
        let first = dir.shared.lock().actors[&key("a")].clone();
        // Pretend the first actor refused a batch: the next route replaces it.
        let second = dir.get_or_spawn(&key("a"), Some(first.generation)).unwrap();
        assert_ne!(first.generation, second.generation);
        // The old actor releasing its slot late must leave the new entry alone.
        let (_tx, rx) = watch::channel(());
        DirectorySlot {
            shared: Arc::downgrade(&dir.shared),
            generation: first.generation,
            _alive: rx,
        }
        .release(&TenantId::default(), &vid("a"));
        assert_eq!(dir.shared.lock().actors[&key("a")].generation, second.generation);
        first.addr.do_send(Stop);
        dir.shutdown().await;
    }

    #[actix_rt::test]
    async fn a_load_failure_fails_the_route_and_the_next_route_recovers() {
        let (dir, store, registry) = directory(VehicleConfig {
            arbiters: 1,
            ..Default::default()
        });
        store
            .fail_loads
            .store(usize::MAX / 2, std::sync::atomic::Ordering::SeqCst);
        let err = dir
            .route(vid("a"), vec![record("a", 1, &[("Soc", 1)])])
            .await
            .unwrap_err();
        assert!(matches!(err, RouteError::NotPersisted { .. }), "{err:?}");
        assert_eq!(dir.active_count(), 0);
        assert_eq!(registry.counts()[&ActorKind::VehicleState], 0);
        store.fail_loads.store(0, std::sync::atomic::Ordering::SeqCst);
        dir.route(vid("a"), vec![record("a", 1, &[("Soc", 1)])])
            .await
            .unwrap();
        dir.shutdown().await;
    }

    #[actix_rt::test]
    async fn shutdown_refuses_routes_and_stops_every_actor() {
        let (dir, _store, registry) = directory(VehicleConfig {
            arbiters: 2,
            ..Default::default()
        });
        for i in 0..10 {
            let id = format!("v{i}");
            dir.route(vid(&id), vec![record(&id, 1, &[("Soc", i)])])
                .await
                .unwrap();
        }
        tokio::time::timeout(Duration::from_secs(5), dir.shutdown())
            .await
            .expect("shutdown finishes");
        assert_eq!(dir.active_count(), 0);
        assert_eq!(registry.counts()[&ActorKind::VehicleState], 0);
        let err = dir
            .route(vid("v1"), vec![record("v1", 2, &[("Soc", 1)])])
            .await
            .unwrap_err();
        assert_eq!(err, RouteError::ShuttingDown);
    }
}
