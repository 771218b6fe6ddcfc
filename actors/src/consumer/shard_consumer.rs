//! The `ShardConsumer` actor: a thin shell that performs the steps
//! [`ShardConsumerState`] asks for (read, route, checkpoint, wait) one at a time, as
//! futures spawned in its context so its mailbox stays responsive.
//!
//! Registry kind `ShardConsumer`, id = shard id; details: `checkpoint`,
//! `records_processed`, `millis_behind_latest`.

use std::collections::HashSet;
use std::future::Future;
use std::sync::Arc;
use std::time::{Duration, Instant};

use actix::prelude::*;
use futures_util::future::{BoxFuture, join_all};
use tokio::sync::oneshot;
use tracing::{debug, info, warn};

use super::shard_state::{Backoff, Batch, ShardConsumerState, StateConfig, Step, StopReason};
use super::{ConsumerConfig, DurabilityHold, RecordRouter, ShardEnded};
use crate::model::VehicleId;
use crate::ports::{Checkpoint, Lease, LeaseError, LeaseStore, PutEntry, RecordStream, ShardId};
use crate::producer::{DeadLetter, DeadLetterReason, DeadLetterSource};
use crate::registry::{ActorKind, ActorRegistry, Registration};
use crate::telemetry;

pub use super::shard_state::ShutdownReason;

/// Reads one shard for as long as this node holds its lease.
pub struct ShardConsumer {
    shard_id: ShardId,
    /// The lease owner this consumer checkpoints as (fencing: a write by a worker that no
    /// longer owns the lease fails).
    worker_id: String,
    state: ShardConsumerState,
    stream: Arc<dyn RecordStream>,
    leases: Arc<dyn LeaseStore>,
    router: Arc<dyn RecordRouter>,
    /// Told when the shard is finished so its children start without waiting a round.
    coordinator: Recipient<ShardEnded>,
    registry: ActorRegistry,
    registration: Option<Registration>,
    /// The one step in flight (a read, a route, a checkpoint write or a wait).
    in_flight: Option<InFlight>,
    /// Senders of `Shutdown` waiting for the consumer to stop; answered when it is dropped.
    shutdown_waiters: Vec<oneshot::Sender<()>>,
    /// Every vehicle this consumer routed (bounded by the shard's vehicles): released to
    /// the router when the consumer stops.
    routed: HashSet<VehicleId>,
    /// Taken before each read: resolves when records are added to the shard after it
    /// (`RecordStream::records_added`), which ends the idle wait after an empty read.
    records_added: Option<BoxFuture<'static, ()>>,
}

struct InFlight {
    handle: SpawnHandle,
    /// Only a wait may be cut short by a requested shutdown; a batch is always finished.
    is_wait: bool,
}

impl std::fmt::Debug for ShardConsumer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ShardConsumer")
            .field("shard_id", &self.shard_id)
            .field("worker_id", &self.worker_id)
            .field("state", &self.state)
            .finish_non_exhaustive()
    }
}

/// What a [`ShardConsumer`] needs besides its lease.
pub(crate) struct ConsumerDeps {
    pub worker_id: String,
    pub config: ConsumerConfig,
    pub stream: Arc<dyn RecordStream>,
    pub leases: Arc<dyn LeaseStore>,
    pub router: Arc<dyn RecordRouter>,
    pub coordinator: Recipient<ShardEnded>,
    pub registry: ActorRegistry,
}

impl ShardConsumer {
    /// A consumer for a lease this worker holds, resuming from its checkpoint.
    pub(crate) fn new(lease: &Lease, deps: ConsumerDeps) -> Self {
        let c = &deps.config;
        let state_config = StateConfig {
            max_records_per_get: c.max_records_per_get.max(1),
            idle_poll: Duration::from_millis(c.idle_poll_ms),
            checkpoint_interval: Duration::from_millis(c.checkpoint_interval_ms),
            backoff: Backoff {
                initial: Duration::from_millis(c.retry_backoff_initial_ms.max(1)),
                max: Duration::from_millis(c.retry_backoff_max_ms.max(c.retry_backoff_initial_ms).max(1)),
            },
        };
        Self {
            shard_id: ShardId(lease.lease_key.clone()),
            worker_id: deps.worker_id,
            state: ShardConsumerState::new(lease.checkpoint.clone(), state_config),
            stream: deps.stream,
            leases: deps.leases,
            router: deps.router,
            coordinator: deps.coordinator,
            registry: deps.registry,
            registration: None,
            in_flight: None,
            shutdown_waiters: Vec::new(),
            routed: HashSet::new(),
            records_added: None,
        }
    }

    /// Asks the state machine for the next step and starts it, unless one is in flight.
    fn drive(&mut self, ctx: &mut Context<Self>) {
        if self.in_flight.is_some() {
            return;
        }
        match self.state.next_step(Instant::now()) {
            Step::Wait(duration) => {
                let added = self.records_added.take().filter(|_| self.state.is_idle());
                let handle = match added {
                    // Idle after an empty read: whichever comes first, the poll interval
                    // or a put to this shard.
                    Some(added) => {
                        let wait = async move {
                            tokio::select! {
                                () = actix::clock::sleep(duration) => false,
                                () = added => true,
                            }
                        };
                        ctx.spawn(wait.into_actor(self).map(|added, act, ctx| {
                            if added {
                                act.state.on_records_added();
                            }
                            act.in_flight = None;
                            act.drive(ctx);
                        }))
                    }
                    None => ctx.run_later(duration, |act, ctx| {
                        act.in_flight = None;
                        act.drive(ctx);
                    }),
                };
                self.in_flight = Some(InFlight {
                    handle,
                    is_wait: true,
                });
            }
            Step::FlushDeferred => {
                let vehicles: Vec<VehicleId> = self.routed.iter().cloned().collect();
                debug!(shard = %self.shard_id, vehicles = vehicles.len(), "Shard ended: flushing deferred writes.");
                let router = self.router.clone();
                self.run(
                    ctx,
                    async move { router.flush_deferred(vehicles).await },
                    |_, ()| {},
                );
            }
            Step::GetIterator(position) => {
                let (stream, shard) = (self.stream.clone(), self.shard_id.clone());
                debug!(shard = %shard, ?position, "Getting a shard iterator.");
                self.run(
                    ctx,
                    async move { stream.get_shard_iterator(&shard, position).await },
                    |act, result| {
                        if let Err(e) = &result {
                            act.read_error("get_shard_iterator", e);
                        }
                        act.state.on_iterator(result, Instant::now());
                    },
                );
            }
            Step::GetRecords { iterator, max } => {
                // Before the read, so a put that lands while it runs still wakes the wait.
                self.records_added = Some(self.stream.records_added(&self.shard_id));
                let stream = self.stream.clone();
                self.run(ctx, async move { stream.get_records(&iterator, max).await }, |act, result| {
                    if let Err(e) = &result {
                        act.read_error("get_records", e);
                    }
                    let undecodable = act.state.on_records(result, Instant::now());
                    for error in &undecodable {
                        warn!(shard = %act.shard_id, %error, "An undecodable record goes to the dead letters.");
                    }
                    if !undecodable.is_empty() {
                        metrics::counter!(telemetry::ROUTE_RECORDS_TOTAL, "result" => "undecodable")
                            .increment(undecodable.len() as u64);
                    }
                    let behind = act.state.millis_behind_latest();
                    metrics::gauge!(telemetry::SHARD_MILLIS_BEHIND_LATEST, "shard" => act.shard_id.0.clone())
                        .set(behind as f64);
                    act.publish_details();
                });
            }
            Step::Route(batch) => {
                self.routed
                    .extend(batch.groups.iter().map(|(vehicle, _)| vehicle.clone()));
                let router = self.router.clone();
                let letters = undecodable_letters(&self.shard_id, &batch);
                let shard = self.shard_id.clone();
                let fut = async move {
                    // Kept first: if that fails, nothing of the batch is applied yet and
                    // the whole batch is retried.
                    if !letters.is_empty() {
                        router.dead_letter(letters).await?;
                    }
                    // One hold per attempt: a failed attempt's clones never count.
                    let (hold, tracker) = DurabilityHold::new();
                    let routes = batch.groups.iter().map(|(vehicle, records)| {
                        router.route_held(vehicle.clone(), records.clone(), hold.clone())
                    });
                    let result = join_all(routes)
                        .await
                        .into_iter()
                        .find_map(Result::err)
                        .map_or(Ok(Some(tracker)), Err);
                    // The raw archive keeps clones of the hold until its part files are
                    // durable; it waits here while the archiver's queue is full.
                    let result = match result {
                        Ok(tracker) if router.archives() => router
                            .archive(batch.archive_records(&shard), hold.clone())
                            .await
                            .map(|()| tracker),
                        other => other,
                    };
                    hold.release();
                    result
                };
                self.run(ctx, fut, |act, result| {
                    if let Err(error) = &result {
                        warn!(shard = %act.shard_id, %error, "Routing a batch failed; retrying it after a backoff.");
                    }
                    act.state.on_routed_deferred(result, Instant::now());
                    act.publish_details();
                });
            }
            Step::Checkpoint(checkpoint) => {
                let (leases, key, owner) = (
                    self.leases.clone(),
                    self.shard_id.0.clone(),
                    self.worker_id.clone(),
                );
                let written = checkpoint.clone();
                let fut = async move { leases.update_checkpoint(&key, &owner, written).await };
                self.run(ctx, fut, move |act, result| {
                    let label = match &result {
                        Ok(()) => "ok",
                        Err(LeaseError::ConditionFailed(_) | LeaseError::NotFound(_)) => "lease_lost",
                        Err(LeaseError::Unavailable(_)) => "error",
                    };
                    metrics::counter!(telemetry::CHECKPOINTS_TOTAL, "result" => label).increment(1);
                    if let Err(error) = &result {
                        warn!(shard = %act.shard_id, %error, "Checkpoint write failed.");
                    }
                    act.state.on_checkpoint(checkpoint, result, Instant::now());
                    act.publish_details();
                });
            }
            Step::Stop(reason) => {
                info!(shard = %self.shard_id, ?reason, checkpoint = %checkpoint_label(self.state.written_checkpoint()),
                    records = self.state.records_processed(), "Shard consumer stopping.");
                if reason == StopReason::ShardEnd {
                    self.coordinator.do_send(ShardEnded {
                        shard_id: self.shard_id.clone(),
                    });
                }
                ctx.stop();
            }
        }
    }

    /// Spawns one step's I/O; on completion hands the result to `done` and drives on.
    fn run<T: 'static>(
        &mut self,
        ctx: &mut Context<Self>,
        fut: impl Future<Output = T> + 'static,
        done: impl FnOnce(&mut Self, T) + 'static,
    ) {
        let handle = ctx.spawn(fut.into_actor(self).map(move |result, act, ctx| {
            act.in_flight = None;
            done(act, result);
            act.drive(ctx);
        }));
        self.in_flight = Some(InFlight {
            handle,
            is_wait: false,
        });
    }

    fn read_error(&self, call: &str, error: &crate::ports::StreamError) {
        let reason = match error {
            crate::ports::StreamError::Throttled(_) => "throttled",
            crate::ports::StreamError::ExpiredIterator => "expired_iterator",
            crate::ports::StreamError::NotFound(_) => "not_found",
            crate::ports::StreamError::InvalidArgument(_) => "invalid_argument",
            crate::ports::StreamError::Unavailable(_) => "unavailable",
        };
        metrics::counter!(telemetry::STREAM_READ_ERRORS_TOTAL, "reason" => reason).increment(1);
        warn!(shard = %self.shard_id, call, %error, "Stream read failed.");
    }

    fn publish_details(&self) {
        if let Some(reg) = &self.registration {
            reg.set_detail("checkpoint", checkpoint_label(self.state.written_checkpoint()));
            reg.set_detail("records_processed", self.state.records_processed());
            reg.set_detail("millis_behind_latest", self.state.millis_behind_latest());
        }
    }
}

/// Dead letters for the batch's undecodable records, with their source. Their time is the
/// stream's arrival time, so a retried batch rewrites the same letters.
fn undecodable_letters(shard: &ShardId, batch: &Batch) -> Vec<DeadLetter> {
    batch
        .undecodable
        .iter()
        .map(|(record, error)| DeadLetter {
            entry: PutEntry {
                partition_key: record.partition_key.clone(),
                data: record.data.clone(),
            },
            reason: DeadLetterReason::Undecodable {
                error: error.to_string(),
            },
            at: record.approximate_arrival,
            tenant: None,
            source: Some(DeadLetterSource {
                // Filled in by the router, which knows the stream's name.
                stream: String::new(),
                shard: shard.0.clone(),
                sequence: Some(record.sequence_number.0.clone()),
            }),
        })
        .collect()
}

/// A checkpoint as shown on the admin page.
pub(crate) fn checkpoint_label(checkpoint: &Checkpoint) -> String {
    match checkpoint {
        Checkpoint::TrimHorizon => "TRIM_HORIZON".into(),
        Checkpoint::Latest => "LATEST".into(),
        Checkpoint::Sequence(s) => s.0.clone(),
        Checkpoint::ShardEnd => "SHARD_END".into(),
    }
}

impl Actor for ShardConsumer {
    type Context = Context<Self>;

    fn started(&mut self, ctx: &mut Self::Context) {
        self.registration = Some(
            self.registry
                .register(ActorKind::ShardConsumer, self.shard_id.0.clone()),
        );
        self.publish_details();
        info!(shard = %self.shard_id, checkpoint = %checkpoint_label(self.state.written_checkpoint()),
            "Shard consumer started.");
        self.drive(ctx);
    }

    fn stopped(&mut self, _: &mut Self::Context) {
        let (router, routed) = (self.router.clone(), std::mem::take(&mut self.routed));
        actix::spawn(async move { router.release(routed.into_iter().collect()).await });
        for waiter in self.shutdown_waiters.drain(..) {
            let _ = waiter.send(());
        }
    }
}

/// Sent by the LeaseCoordinator to a ShardConsumer when the node shuts down (`Requested`)
/// or the lease was lost (`LeaseLost`); answered once the consumer has stopped.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Message)]
#[rtype(result = "()")]
pub struct Shutdown {
    /// Requested: finish the batch and checkpoint; LeaseLost: stop at once, no checkpoint.
    pub reason: ShutdownReason,
}

impl Handler<Shutdown> for ShardConsumer {
    type Result = ResponseFuture<()>;

    fn handle(&mut self, msg: Shutdown, ctx: &mut Self::Context) -> Self::Result {
        if let Some(reg) = &self.registration {
            reg.handled(false);
        }
        debug!(shard = %self.shard_id, reason = ?msg.reason, "Shutdown received.");
        self.state.request_shutdown(msg.reason);
        let cut_short =
            msg.reason == ShutdownReason::LeaseLost || self.in_flight.as_ref().is_some_and(|f| f.is_wait);
        if cut_short && let Some(in_flight) = self.in_flight.take() {
            // A lease-lost consumer drops even a half-routed batch: the new owner routes it
            // again from the last checkpoint (dedupe makes that safe).
            ctx.cancel_future(in_flight.handle);
        }
        let (tx, rx) = oneshot::channel();
        self.shutdown_waiters.push(tx);
        self.drive(ctx);
        Box::pin(async move {
            // Resolves when the consumer is stopped (the sender is answered or dropped).
            let _ = rx.await;
        })
    }
}
