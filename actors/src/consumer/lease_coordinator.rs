//! The `LeaseCoordinator` actor: one per node. Every `failover_time / 3` (jittered down
//! to three quarters of it, so nodes do not tick in lockstep) it runs one
//! *lease round* (KCL `LeaseCoordinator.runLeaseRenewer` + `runLeaseTaker` +
//! `PeriodicShardSyncManager`):
//!
//! 1. renew every held lease (a fenced renewal means the lease is lost: its consumer is
//!    told `Shutdown(LeaseLost)`); held leases at `ShardEnd` are released instead;
//! 2. shard sync: create a lease for every shard that has none (children start at the
//!    horizon, root shards at `initial_position`), except finished ancestors whose lease
//!    was deleted; delete the leases of finished shards whose children have begun
//!    ([`super::lease_cleanup`]);
//! 3. take and steal, as the pure [`super::lease_taker`] decides;
//! 4. start a [`ShardConsumer`] for every held, unfinished lease whose parents are done;
//! 5. publish [`ConsumerStatus`], `LEASES_HELD` and the registry details.
//!
//! All I/O runs in futures spawned in the actor's context, so the mailbox stays
//! responsive. Rounds never overlap: a tick that finds a round running is skipped, and a
//! `ShardEnded` that arrives during a round schedules one more right after it.
//!
//! Registry kind `LeaseCoordinator`, id = worker id; details: `held_leases`, `held_count`.

use std::collections::{BTreeMap, HashMap, HashSet};
use std::sync::Arc;
use std::time::Instant;

use actix::prelude::*;
use futures_util::future::join_all;
use tokio::sync::oneshot;
use tracing::{debug, info, warn};

use super::lease_cleanup::{deletable, parents_first, retired_ancestors};
use super::lease_taker::{LeaseObservations, TakerConfig, all_owned, parents_done, plan_takes};
use super::shard_consumer::{ConsumerDeps, Shutdown, ShutdownReason};
use super::{ConsumerConfig, ConsumerStatus, RecordRouter, ShardConsumer, generate_worker_id};
use crate::ports::{Checkpoint, Lease, LeaseError, LeaseStore, RecordStream, ShardDescription, StreamError};
use crate::registry::{ActorKind, ActorRegistry, Registration};
use crate::telemetry;

/// Takes, renews and releases this node's shard leases and runs one [`ShardConsumer`]
/// per held lease.
pub struct LeaseCoordinator {
    config: ConsumerConfig,
    worker_id: String,
    stream: Arc<dyn RecordStream>,
    leases: Arc<dyn LeaseStore>,
    router: Arc<dyn RecordRouter>,
    registry: ActorRegistry,
    registration: Option<Registration>,
    status: ConsumerStatus,
    /// Counter and first-seen instant per lease, for expiry (KCL's local observation).
    observations: LeaseObservations,
    /// Leases this node holds, as last written by it (renew/take results): their counter
    /// is what the next conditional write must match.
    held: BTreeMap<String, Lease>,
    /// The consumer of each held lease that is being processed.
    consumers: HashMap<String, Addr<ShardConsumer>>,
    /// A round is running (its futures are in flight).
    round_running: bool,
    /// Run another round as soon as the current one ends (a shard ended meanwhile).
    round_again: bool,
    tick: Option<SpawnHandle>,
    /// Set by `GracefulShutdown`: no more rounds; the senders are answered when done.
    shutdown_waiters: Option<Vec<oneshot::Sender<()>>>,
}

impl std::fmt::Debug for LeaseCoordinator {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("LeaseCoordinator")
            .field("worker_id", &self.worker_id)
            .field("held", &self.held.keys().collect::<Vec<_>>())
            .field("round_running", &self.round_running)
            .finish_non_exhaustive()
    }
}

/// What the I/O half of a round found.
struct SyncResult {
    /// Per held lease: the renewed lease, `None` if it was released, or the error.
    renewals: Vec<(String, Result<Option<Lease>, LeaseError>)>,
    /// The lease list after the shard sync.
    leases: Result<Vec<Lease>, LeaseError>,
    shard_error: Option<StreamError>,
}

enum TakeKind {
    Taken,
    Stolen,
}

impl LeaseCoordinator {
    /// Starts the coordinator on the current arbiter. With `config.worker_id == None` a
    /// fresh worker id is generated. The returned status is shared with the actor.
    pub fn start(
        config: ConsumerConfig,
        stream: Arc<dyn RecordStream>,
        leases: Arc<dyn LeaseStore>,
        router: Arc<dyn RecordRouter>,
        registry: ActorRegistry,
    ) -> (Addr<LeaseCoordinator>, ConsumerStatus) {
        let worker_id = config.worker_id.clone().unwrap_or_else(generate_worker_id);
        let status = ConsumerStatus::new(worker_id.clone(), config.failover_time());
        let coordinator = LeaseCoordinator {
            config,
            worker_id,
            stream,
            leases,
            router,
            registry,
            registration: None,
            status: status.clone(),
            observations: LeaseObservations::new(),
            held: BTreeMap::new(),
            consumers: HashMap::new(),
            round_running: false,
            round_again: false,
            tick: None,
            shutdown_waiters: None,
        };
        (Actor::start(coordinator), status)
    }

    fn shutting_down(&self) -> bool {
        self.shutdown_waiters.is_some()
    }

    /// Ticks the next round after a jittered wait ([`ConsumerConfig::next_round_in`]).
    fn schedule_round(&mut self, ctx: &mut Context<Self>) {
        if self.shutting_down() {
            return;
        }
        let wait = self.config.next_round_in(rand::random());
        self.tick = Some(ctx.run_later(wait, |act, ctx| {
            act.begin_round(ctx);
            act.schedule_round(ctx);
        }));
    }

    /// Starts a round unless one is running or the node is shutting down.
    fn begin_round(&mut self, ctx: &mut Context<Self>) {
        if self.shutting_down() || self.round_running {
            return;
        }
        self.round_running = true;
        let held: Vec<Lease> = self.held.values().cloned().collect();
        let (stream, store) = (self.stream.clone(), self.leases.clone());
        let initial = self.config.initial_position.checkpoint();
        let fut = async move {
            // 1. Renew first: it is what keeps our leases ours.
            let renewals = join_all(held.into_iter().map(|lease| {
                let store = store.clone();
                async move {
                    let result = if lease.checkpoint == Checkpoint::ShardEnd {
                        store.evict_lease(&lease).await.map(|_| None)
                    } else {
                        store.renew_lease(&lease).await.map(Some)
                    };
                    (lease.lease_key, result)
                }
            }))
            .await;
            // 2. Shard sync, then the list the taker decides on.
            let (shards, list) = futures_util::join!(stream.list_shards(), store.list_leases());
            let shard_error = shards.as_ref().err().cloned();
            let leases = match (list, &shards) {
                (Ok(mut list), Ok(shards)) => match create_missing(&*store, shards, &list, initial).await {
                    Ok(created) => {
                        list.extend(created);
                        delete_finished(&*store, shards, &mut list).await;
                        Ok(list)
                    }
                    Err(error) => Err(error),
                },
                (list, _) => list,
            };
            SyncResult {
                renewals,
                leases,
                shard_error,
            }
        };
        ctx.spawn(
            fut.into_actor(self)
                .map(|result, act, ctx| act.after_sync(result, ctx)),
        );
    }

    /// Applies renewals, plans takes and spawns them.
    fn after_sync(&mut self, result: SyncResult, ctx: &mut Context<Self>) {
        for (key, renewal) in result.renewals {
            match renewal {
                Ok(Some(mut lease)) => {
                    lease_event("renewed");
                    // ShardEnd is final: a renewal read before the consumer's last
                    // checkpoint landed must not bring the shard back to life.
                    if self
                        .held
                        .get(&key)
                        .is_some_and(|l| l.checkpoint == Checkpoint::ShardEnd)
                    {
                        lease.checkpoint = Checkpoint::ShardEnd;
                    }
                    self.held.insert(key, lease);
                }
                Ok(None) => {
                    lease_event("released");
                    info!(worker = %self.worker_id, lease = %key, "Released a finished lease.");
                    self.held.remove(&key);
                    self.consumers.remove(&key);
                }
                Err(LeaseError::ConditionFailed(_) | LeaseError::NotFound(_)) => self.lose(&key),
                Err(error) => {
                    // Kept: the next round retries; after failover_time others may take it.
                    warn!(worker = %self.worker_id, lease = %key, %error, "Lease renewal failed.");
                    lease_event("error");
                }
            }
        }
        if let Some(error) = result.shard_error {
            warn!(worker = %self.worker_id, %error, "Listing shards failed; skipping the shard sync.");
        }
        let list = match result.leases {
            Ok(list) => list,
            Err(error) => {
                warn!(worker = %self.worker_id, %error, "Listing leases failed; retrying next round.");
                lease_event("error");
                self.finish_round(None, ctx);
                return;
            }
        };
        let now = Instant::now();
        self.observations.observe(&list, now);
        if self.shutting_down() {
            self.finish_round(Some(list), ctx);
            return;
        }
        let held_keys: HashSet<String> = self.held.keys().cloned().collect();
        let taker = TakerConfig {
            worker_id: self.worker_id.clone(),
            failover: self.config.failover_time(),
            max_leases_per_worker: self.config.max_leases_per_worker,
            max_leases_to_steal_at_once: self.config.max_leases_to_steal_at_once,
        };
        let plan = plan_takes(&list, &self.observations, &held_keys, now, &taker);
        if plan.take.is_empty() && plan.steal.is_empty() {
            self.finish_round(Some(list), ctx);
            return;
        }
        debug!(worker = %self.worker_id, target = plan.target, held = plan.held,
            take = plan.take.len(), steal = plan.steal.len(), "Taking leases.");
        let (store, me) = (self.leases.clone(), self.worker_id.clone());
        let attempts = plan
            .take
            .into_iter()
            .map(|l| (l, TakeKind::Taken))
            .chain(plan.steal.into_iter().map(|l| (l, TakeKind::Stolen)));
        let fut = join_all(attempts.map(|(lease, kind)| {
            let (store, me) = (store.clone(), me.clone());
            async move {
                let result = store.take_lease(&lease, &me).await;
                (lease, kind, result)
            }
        }));
        ctx.spawn(fut.into_actor(self).map(move |results, act, ctx| {
            let mut list = list;
            for (lease, kind, result) in results {
                match result {
                    Ok(taken) => {
                        let (event, verb) = match kind {
                            TakeKind::Taken => ("taken", "Took"),
                            TakeKind::Stolen => ("stolen", "Stole"),
                        };
                        lease_event(event);
                        info!(worker = %act.worker_id, lease = %taken.lease_key,
                            previous_owner = lease.lease_owner.as_deref().unwrap_or("none"), "{verb} a lease.");
                        if let Some(slot) = list.iter_mut().find(|l| l.lease_key == taken.lease_key) {
                            *slot = taken.clone();
                        }
                        act.held.insert(taken.lease_key.clone(), taken);
                    }
                    Err(LeaseError::ConditionFailed(_) | LeaseError::NotFound(_)) => {
                        debug!(worker = %act.worker_id, lease = %lease.lease_key, "Another worker was faster.");
                    }
                    Err(error) => {
                        warn!(worker = %act.worker_id, lease = %lease.lease_key, %error, "Taking a lease failed.");
                        lease_event("error");
                    }
                }
            }
            // The list now has our fresh counters; observe it so our takes count as live.
            act.observations.observe(&list, Instant::now());
            act.finish_round(Some(list), ctx);
        }));
    }

    /// Drops a lease another worker now owns; its consumer stops without checkpointing.
    fn lose(&mut self, key: &str) {
        warn!(worker = %self.worker_id, lease = %key, "Lost a lease.");
        lease_event("lost");
        self.held.remove(key);
        if let Some(consumer) = self.consumers.remove(key) {
            consumer.do_send(Shutdown {
                reason: ShutdownReason::LeaseLost,
            });
        }
    }

    /// Starts consumers, publishes status and either runs the shutdown, another round, or
    /// nothing until the next tick. `list` is `None` when the lease store was unreachable.
    fn finish_round(&mut self, list: Option<Vec<Lease>>, ctx: &mut Context<Self>) {
        self.round_running = false;
        if let Some(list) = &list {
            if !self.shutting_down() {
                self.start_consumers(list, ctx);
            }
            let owned = all_owned(
                list,
                &self.observations,
                Instant::now(),
                self.config.failover_time(),
            );
            self.status.round_succeeded(owned);
        }
        self.publish();
        if self.shutting_down() {
            self.begin_shutdown(ctx);
        } else if std::mem::take(&mut self.round_again) {
            self.begin_round(ctx);
        }
    }

    /// Parents first: a lease is processed once every parent shard is finished.
    fn start_consumers(&mut self, list: &[Lease], ctx: &mut Context<Self>) {
        self.consumers.retain(|_, addr| addr.connected());
        for (key, lease) in &self.held {
            if lease.checkpoint == Checkpoint::ShardEnd || self.consumers.contains_key(key) {
                continue;
            }
            if !parents_done(lease, list) {
                debug!(worker = %self.worker_id, lease = %key, "Waiting on parent shards.");
                continue;
            }
            let deps = ConsumerDeps {
                worker_id: self.worker_id.clone(),
                config: self.config.clone(),
                stream: self.stream.clone(),
                leases: self.leases.clone(),
                router: self.router.clone(),
                coordinator: ctx.address().recipient(),
                registry: self.registry.clone(),
            };
            let addr = ShardConsumer::new(lease, deps).start();
            self.consumers.insert(key.clone(), addr);
        }
    }

    fn publish(&self) {
        let held: Vec<String> = self.held.keys().cloned().collect();
        metrics::gauge!(telemetry::LEASES_HELD).set(held.len() as f64);
        if let Some(reg) = &self.registration {
            reg.set_detail("held_count", held.len());
            reg.set_detail("held_leases", held.clone());
        }
        self.status.set_held(held);
    }

    /// Stops every consumer (each finishes its batch and checkpoints), then releases
    /// every held lease so other nodes take them at once, then answers and stops.
    fn begin_shutdown(&mut self, ctx: &mut Context<Self>) {
        let consumers: Vec<Addr<ShardConsumer>> = self.consumers.drain().map(|(_, addr)| addr).collect();
        info!(worker = %self.worker_id, consumers = consumers.len(), held = self.held.len(),
            "Shutting down: stopping shard consumers.");
        let stop_all = async move {
            let requested = consumers.iter().map(|c| {
                c.send(Shutdown {
                    reason: ShutdownReason::Requested,
                })
            });
            // A consumer that already stopped answers with a mailbox error: also done.
            join_all(requested).await;
        };
        ctx.spawn(
            stop_all
                .into_actor(self)
                .then(|(), act, _| {
                    let (store, held) = (act.leases.clone(), std::mem::take(&mut act.held));
                    async move {
                        join_all(held.into_values().map(|lease| {
                            let store = store.clone();
                            async move { (store.evict_lease(&lease).await, lease.lease_key) }
                        }))
                        .await
                    }
                    .into_actor(act)
                })
                .map(|results, act, ctx| {
                    for (result, key) in results {
                        match result {
                            Ok(_) => lease_event("released"),
                            Err(error) => warn!(worker = %act.worker_id, lease = %key, %error,
                                "Releasing a lease failed; it expires after failover_time."),
                        }
                    }
                    info!(worker = %act.worker_id, "Lease coordinator stopped.");
                    act.status.set_not_ready();
                    act.publish();
                    for waiter in act.shutdown_waiters.iter_mut().flat_map(|w| w.drain(..)) {
                        let _ = waiter.send(());
                    }
                    ctx.stop();
                }),
        );
    }
}

/// Creates the lease of every shard that has none. Returns the leases it created.
async fn create_missing(
    store: &dyn LeaseStore,
    shards: &[ShardDescription],
    existing: &[Lease],
    initial: Checkpoint,
) -> Result<Vec<Lease>, LeaseError> {
    let known: HashSet<&str> = existing.iter().map(|l| l.lease_key.as_str()).collect();
    let retired = retired_ancestors(shards, existing);
    let mut created = Vec::new();
    let missing = parents_first(shards).into_iter().filter(|s| {
        let id = s.shard_id.0.as_str();
        !known.contains(id) && !retired.contains(id)
    });
    for shard in missing {
        let parents: Vec<String> = shard.parent_shard_ids.iter().map(|p| p.0.clone()).collect();
        // A child must not miss what was put between the split and its first read.
        let start = if parents.is_empty() {
            initial.clone()
        } else {
            Checkpoint::TrimHorizon
        };
        let lease = Lease::new(shard.shard_id.0.clone(), parents, start);
        if store.create_lease_if_absent(lease.clone()).await? {
            info!(lease = %lease.lease_key, "Created a lease for a new shard.");
            created.push(lease);
        }
    }
    Ok(created)
}

/// Deletes the leases of finished shards whose children have all begun (KCL's completed
/// lease cleanup, rules in [`super::lease_cleanup`]) and drops them from `list`. Any node
/// may do it: the lease is final and deleting twice is harmless. A failure is retried in
/// the next round.
async fn delete_finished(store: &dyn LeaseStore, shards: &[ShardDescription], list: &mut Vec<Lease>) {
    for key in deletable(shards, list) {
        match store.delete_lease(&key).await {
            Ok(()) | Err(LeaseError::NotFound(_)) => {
                info!(lease = %key, "Deleted the lease of a finished shard whose children have begun.");
                lease_event("deleted");
                list.retain(|l| l.lease_key != key);
            }
            Err(error) => {
                warn!(lease = %key, %error, "Deleting a finished lease failed; retrying next round.")
            }
        }
    }
}

fn lease_event(event: &'static str) {
    metrics::counter!(telemetry::LEASE_EVENTS_TOTAL, "event" => event).increment(1);
}

impl Actor for LeaseCoordinator {
    type Context = Context<Self>;

    fn started(&mut self, ctx: &mut Self::Context) {
        self.registration = Some(
            self.registry
                .register(ActorKind::LeaseCoordinator, self.worker_id.clone()),
        );
        info!(worker = %self.worker_id, "Lease coordinator started.");
        self.publish();
        self.begin_round(ctx);
        self.schedule_round(ctx);
    }

    fn stopped(&mut self, _: &mut Self::Context) {
        // Stopped without GracefulShutdown: do not leave consumers running unsupervised.
        for consumer in self.consumers.values() {
            consumer.do_send(Shutdown {
                reason: ShutdownReason::Requested,
            });
        }
    }
}

/// Sent by a ShardConsumer to the LeaseCoordinator when its shard is read to the end and
/// `ShardEnd` is checkpointed, so the child shards start without waiting for a tick.
#[derive(Debug, Clone, PartialEq, Eq, Message)]
#[rtype(result = "()")]
pub struct ShardEnded {
    /// The finished shard.
    pub shard_id: crate::ports::ShardId,
}

impl Handler<ShardEnded> for LeaseCoordinator {
    type Result = ();

    fn handle(&mut self, msg: ShardEnded, ctx: &mut Self::Context) {
        if let Some(reg) = &self.registration {
            reg.handled(false);
        }
        info!(worker = %self.worker_id, shard = %msg.shard_id, "Shard finished.");
        if let Some(lease) = self.held.get_mut(&msg.shard_id.0) {
            lease.checkpoint = Checkpoint::ShardEnd;
        }
        self.consumers.remove(&msg.shard_id.0);
        if self.round_running {
            self.round_again = true;
        } else {
            self.begin_round(ctx);
        }
    }
}

/// Sent by the node to the LeaseCoordinator on shutdown: every ShardConsumer finishes its in-flight batch,
/// writes a final checkpoint and stops; then held leases are released (evicted) so other nodes take them at once.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Message)]
#[rtype(result = "()")]
pub struct GracefulShutdown;

impl Handler<GracefulShutdown> for LeaseCoordinator {
    type Result = ResponseFuture<()>;

    fn handle(&mut self, _: GracefulShutdown, ctx: &mut Self::Context) -> Self::Result {
        if let Some(reg) = &self.registration {
            reg.handled(false);
        }
        let (tx, rx) = oneshot::channel();
        match &mut self.shutdown_waiters {
            Some(waiters) => waiters.push(tx),
            None => {
                self.shutdown_waiters = Some(vec![tx]);
                if let Some(tick) = self.tick.take() {
                    ctx.cancel_future(tick);
                }
                // A running round finishes first (its takes must be released too).
                if !self.round_running {
                    self.begin_shutdown(ctx);
                }
            }
        }
        Box::pin(async move {
            let _ = rx.await;
        })
    }
}
