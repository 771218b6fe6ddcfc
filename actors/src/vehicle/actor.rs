//! [`VehicleStateActor`]: the actix shell around [`VehicleState`]. One per active vehicle.
//!
//! Lifecycle: on start it restores the state from the store (the mailbox waits until
//! that is done), then handles `ApplyRecords` batches one at a time — apply, publish one
//! update, persist, reply — and stops itself after `passivate_after_secs` without a
//! batch. A persistent load failure also stops it, so the pending routes fail and the
//! shard consumer retries the batch later instead of acknowledging unpersisted records.

use std::sync::Arc;
use std::time::{Duration, Instant};

use actix::prelude::*;
use chrono::Utc;
use metrics::counter;
use tracing::{debug, error, warn};

use super::directory::DirectorySlot;
use super::persist::{Deferred, HistoryServices, run_flush, write_hours};
use super::state::{ApplyReport, VehicleState};
use super::{FleetServices, VehicleConfig};
use crate::consumer::{DurabilityHold, RouteError};
use crate::fleet::FleetContext;
use crate::model::{TelemetryRecord, TenantId, VehicleId, VehicleSnapshot, VehicleUpdate};
use crate::ports::{FanOut, HistoryError, StateStore, StoreError};
use crate::registry::Registration;
use crate::telemetry::{
    FLEET_EVENTS_TOTAL, FLEET_POSITIONS_FILTERED_TOTAL, INGEST_TO_APPLY_SECONDS, INGEST_TO_PUBLISH_SECONDS,
    PUBLISH_UPDATES_TOTAL, ROUTE_RECORDS_TOTAL, VEHICLE_ACTIVATIONS_TOTAL, VEHICLE_PASSIVATIONS_TOTAL,
    record_since_ingest,
};

/// Loads tried before a vehicle actor gives up and stops (transient store errors only).
const LOAD_ATTEMPTS: u32 = 4;
/// Wait after the first failed load; doubles after each further failure (0.1 + 0.2 + 0.4 s).
const LOAD_BACKOFF: Duration = Duration::from_millis(100);
/// Shortest passivation check period, so a tiny `passivate_after` does not spin.
const MIN_IDLE_CHECK: Duration = Duration::from_millis(10);

/// The actor that owns one vehicle's state while the vehicle is active.
pub struct VehicleStateActor {
    /// The pure state machine; the only place records are applied.
    state: VehicleState,
    /// Dedupe window size, needed again when the loaded snapshot replaces `state`.
    window: usize,
    /// Highest version known to be durable in the store; a batch is persisted whenever
    /// the state is ahead of it, which also retries a save that failed earlier.
    persisted_version: u64,
    /// Where snapshots are loaded from and saved to.
    store: Arc<dyn StateStore>,
    /// Where updates are published.
    fanout: Arc<dyn FanOut>,
    /// Idle time after which the actor stops.
    passivate_after: Duration,
    /// When the last batch finished (or the actor started).
    last_activity: Instant,
    /// The registry entry; dropped in `stopped` so `/admin/actors` stops listing the actor
    /// as soon as it has stopped.
    registration: Option<Registration>,
    /// The directory entry this actor occupies; `None` when started outside a directory.
    slot: Option<DirectorySlot>,
    /// Fleet settings and rules.
    fleet: FleetServices,
    /// Coalesced state saves, history buckets and aggregates not yet written.
    deferred: Deferred,
    /// The armed flush timer and when it fires; `None` while nothing is deferred, so
    /// idle actors cost no wake-ups.
    flush_timer: Option<(SpawnHandle, Instant)>,
}

impl VehicleStateActor {
    /// An actor for `tenant`'s vehicle `id` that has not loaded its state yet (it does on
    /// start). The tenant comes from the vehicle registry (the router resolved it).
    pub(crate) fn new(
        tenant: TenantId,
        id: VehicleId,
        config: &VehicleConfig,
        store: Arc<dyn StateStore>,
        fanout: Arc<dyn FanOut>,
        registration: Registration,
        slot: Option<DirectorySlot>,
    ) -> Self {
        let deferred = Deferred::new(Duration::from_millis(config.persist_interval_ms), None, &id);
        Self {
            deferred,
            state: VehicleState::new(tenant, id, config.dedupe_window),
            window: config.dedupe_window,
            persisted_version: 0,
            store,
            fanout,
            passivate_after: Duration::from_secs(config.passivate_after_secs),
            last_activity: Instant::now(),
            registration: Some(registration),
            slot,
            fleet: FleetServices::default(),
            flush_timer: None,
        }
    }

    /// Uses the node's fleet settings and rules instead of the defaults.
    pub(crate) fn with_fleet(mut self, fleet: FleetServices) -> Self {
        self.fleet = fleet;
        self
    }

    /// Keeps history and hour aggregates through `history`.
    pub(crate) fn with_history(mut self, history: Option<HistoryServices>) -> Self {
        let interval = self.deferred.persist_interval;
        self.deferred = Deferred::new(interval, history, self.state.vehicle_id());
        self
    }

    /// Arms the flush timer for the next deferred write (a coalesced save, a bucket that
    /// closes, a retry), or moves it earlier. Called whenever deferred work may have
    /// changed: after a batch, a round of writes, an offline alert.
    fn schedule_flush(&mut self, ctx: &mut Context<Self>) {
        let dirty = self.state.version() > self.persisted_version;
        let now = Instant::now();
        let Some(delay) = self
            .deferred
            .next_due_in(dirty, now, Utc::now().timestamp_millis())
        else {
            return;
        };
        let at = now + delay;
        if let Some((handle, armed_at)) = self.flush_timer {
            if armed_at <= at {
                return;
            }
            ctx.cancel_future(handle);
        }
        self.flush_timer = Some((ctx.run_later(delay, Self::flush_tick), at));
    }

    /// The flush timer: writes closed buckets and a due coalesced save. Timers wait while
    /// a batch runs in `ctx.wait`, so this never interleaves with one.
    fn flush_tick(&mut self, ctx: &mut Context<Self>) {
        self.flush_timer = None;
        let save = (self.state.version() > self.persisted_version && self.deferred.save_due())
            .then(|| self.state.snapshot());
        if save.is_none() && !self.deferred.writes_due(Utc::now().timestamp_millis()) {
            self.schedule_flush(ctx);
            return;
        }
        self.flush(ctx, save, false, false);
    }

    /// Writes the coalesced state and every open bucket now (node drain), keeping the
    /// actor and its hour accumulators.
    fn flush_now(&mut self, ctx: &mut Context<Self>) {
        let save = (self.state.version() > self.persisted_version).then(|| self.state.snapshot());
        let flush = self.deferred.take(save, true);
        let (store, history) = (self.store.clone(), self.deferred.services());
        let (tenant, vehicle) = (self.state.tenant().clone(), self.state.vehicle_id().clone());
        ctx.wait(
            run_flush(store, history, tenant, vehicle, flush)
                .into_actor(self)
                .map(|flushed, act, ctx| {
                    let (saved, _) = act.deferred.settle(flushed);
                    if let Some(v) = saved {
                        act.persisted_version = act.persisted_version.max(v);
                    }
                    act.write_hours(ctx, false, false);
                    act.schedule_flush(ctx);
                }),
        );
    }

    /// Runs one round of deferred writes (`all`: every open bucket and hour; `stop`:
    /// stop the actor afterwards).
    fn flush(&mut self, ctx: &mut Context<Self>, save: Option<VehicleSnapshot>, all: bool, stop: bool) {
        let flush = self.deferred.take(save, all);
        let (store, history) = (self.store.clone(), self.deferred.services());
        let (tenant, vehicle) = (self.state.tenant().clone(), self.state.vehicle_id().clone());
        ctx.wait(
            run_flush(store, history, tenant, vehicle, flush)
                .into_actor(self)
                .map(move |flushed, act, ctx| {
                    let (saved, result) = act.deferred.settle(flushed);
                    if let Some(v) = saved {
                        act.persisted_version = act.persisted_version.max(v);
                    }
                    if let Err(err) = result {
                        warn!(vehicle = %act.state.vehicle_id(), %err, "A deferred write failed; retrying.");
                    }
                    act.write_hours(ctx, all, stop);
                    if !stop {
                        act.schedule_flush(ctx);
                    }
                }),
        );
    }

    /// Writes the aggregates of closed hours in the background (they never hold the
    /// checkpoint back: an hour can be recomputed from its stored buckets).
    /// With `stop`, the actor stops once they are written.
    fn write_hours(&mut self, ctx: &mut Context<Self>, all: bool, stop: bool) {
        let hours = self.deferred.take_hours(all);
        let Some(history) = self.deferred.services().filter(|_| !hours.is_empty()) else {
            self.deferred.unwritten_hours.extend(hours);
            if stop {
                ctx.stop();
            }
            return;
        };
        let (tenant, vehicle) = (self.state.tenant().clone(), self.state.vehicle_id().clone());
        let fut =
            write_hours(history, tenant, vehicle, hours)
                .into_actor(self)
                .map(move |failed, act, ctx| {
                    act.deferred.unwritten_hours.extend(failed);
                    if stop {
                        ctx.stop();
                    } else {
                        act.schedule_flush(ctx);
                    }
                });
        if all {
            // Stopping: the actor must not stop before they are written.
            ctx.wait(fut);
        } else {
            ctx.spawn(fut);
        }
    }

    /// The offline timer: raises due `offline` alerts, publishes them and persists the
    /// snapshot that records them. Runs inside `ctx.wait`, so it never interleaves with a
    /// batch.
    fn check_offline(&mut self, ctx: &mut Context<Self>) {
        let rules = self.fleet.rules.tenant(self.state.tenant());
        let fleet = FleetContext {
            config: &self.fleet.config,
            rules: &rules,
            now: Utc::now(),
        };
        let events = self.state.fleet_tick(fleet);
        if events.is_empty() {
            return;
        }
        counter!(FLEET_EVENTS_TOTAL, "source" => "timer").increment(events.len() as u64);
        let update = Arc::new(self.state.update(Vec::new(), Utc::now(), events));
        let snapshot = self.state.snapshot();
        let (fanout, store) = (self.fanout.clone(), self.store.clone());
        ctx.wait(
            async move {
                publish(fanout.as_ref(), update).await;
                store.save(&snapshot).await.map(|_| snapshot.version)
            }
            .into_actor(self)
            .map(|saved, act, ctx| {
                match saved {
                    Ok(version) => act.persisted_version = act.persisted_version.max(version),
                    // The state stays ahead of the store, so the flush timer retries it.
                    Err(err) => {
                        warn!(vehicle = %act.state.vehicle_id(), %err, "Saving an offline alert failed.")
                    }
                }
                act.schedule_flush(ctx);
            }),
        );
    }

    /// Whether an `offline` rule still waits to fire for this vehicle (the actor stays
    /// active until it has, so the timer can raise it).
    fn offline_pending(&self) -> bool {
        let rules = self.fleet.rules.tenant(self.state.tenant());
        let fleet = FleetContext {
            config: &self.fleet.config,
            rules: &rules,
            now: Utc::now(),
        };
        self.state.offline_deadline(fleet).is_some()
    }

    /// How often to check for idleness: a quarter of the idle limit, computed in
    /// milliseconds so tests can passivate within about a second.
    fn idle_check_period(&self) -> Duration {
        (self.passivate_after / 4).max(MIN_IDLE_CHECK)
    }

    /// Stops the actor once it has been idle long enough. Never runs while a batch is in
    /// flight: `ctx.wait` (used by `ApplyRecords`) holds back interval callbacks too.
    fn passivate_if_idle(&mut self, ctx: &mut Context<Self>) {
        if self.last_activity.elapsed() < self.passivate_after || self.offline_pending() {
            return;
        }
        if self.state.version() > self.persisted_version {
            // Only after a failed save whose batch was never retried (the shard moved to
            // another node); those records were not checkpointed, so they will be replayed.
            warn!(vehicle = %self.state.vehicle_id(), version = self.state.version(),
                persisted = self.persisted_version, "Passivating with unpersisted changes.");
        }
        debug!(vehicle = %self.state.vehicle_id(), "Vehicle actor passivating.");
        counter!(VEHICLE_PASSIVATIONS_TOTAL).increment(1);
        // Leave the directory before stopping so new routes spawn a fresh actor rather
        // than queue behind this one; routes that already hold our address see a closed
        // mailbox and retry against the fresh actor.
        if let Some(slot) = &self.slot {
            slot.release(self.state.tenant(), self.state.vehicle_id());
        }
        self.flush_and_stop(ctx);
    }

    /// Writes everything deferred (state, every open bucket, every hour), then stops.
    fn flush_and_stop(&mut self, ctx: &mut Context<Self>) {
        let save = (self.state.version() > self.persisted_version).then(|| self.state.snapshot());
        self.flush(ctx, save, true, true);
    }

    /// Mirrors version and last_seen into the registry's details.
    fn show_details(&self) {
        if let Some(reg) = &self.registration {
            reg.set_detail("version", self.state.version());
            reg.set_detail("last_seen", self.state.last_seen().map(|t| t.to_rfc3339()));
        }
    }

    /// Drops records of other vehicles: applying them would mix two vehicles' signals in
    /// one snapshot. The router contract forbids them, so this is a bug upstream.
    fn own_records(&self, mut records: Vec<TelemetryRecord>) -> Vec<TelemetryRecord> {
        let own = self.state.vehicle_id();
        let before = records.len();
        records.retain(|r| &r.vehicle_id == own);
        if records.len() != before {
            error!(vehicle = %own, dropped = before - records.len(), "Records of another vehicle were routed here; dropped.");
        }
        records
    }
}

impl Actor for VehicleStateActor {
    type Context = Context<Self>;

    fn started(&mut self, ctx: &mut Context<Self>) {
        counter!(VEHICLE_ACTIVATIONS_TOTAL).increment(1);
        let store = self.store.clone();
        let id = self.state.vehicle_id().clone();
        let tenant = self.state.tenant().clone();
        // `wait`, not `spawn`: the mailbox is not read until the state is restored, so no
        // record is ever applied to an empty state and then overwritten by the load.
        let history = self.deferred.services();
        let load = async move {
            let snapshot = load_with_retry(store.as_ref(), &tenant, &id).await?;
            let latest = match history {
                Some(h) => latest_bucket_with_retry(&h, &tenant, &id)
                    .await
                    .map_err(|e| StoreError::Unavailable(e.to_string()))?,
                None => None,
            };
            Ok::<_, StoreError>((snapshot, latest))
        };
        ctx.wait(load.into_actor(self).map(|loaded, act, ctx| match loaded {
            Ok((snapshot, latest)) => {
                if let Some((_, builder)) = &mut act.deferred.history {
                    builder.restore(latest);
                }
                if let Some(snapshot) = snapshot {
                    act.persisted_version = snapshot.version;
                    act.state = VehicleState::restore(snapshot, act.window);
                }
                act.show_details();
            }
            Err(err) => {
                error!(vehicle = %act.state.vehicle_id(), %err, "Could not load vehicle state; stopping.");
                if let Some(slot) = &act.slot {
                    slot.release(act.state.tenant(), act.state.vehicle_id());
                }
                ctx.stop();
            }
        }));
        ctx.run_interval(self.idle_check_period(), Self::passivate_if_idle);
        let offline_every = Duration::from_secs(self.fleet.config.offline_check_secs.max(1));
        ctx.run_interval(offline_every, Self::check_offline);
    }

    fn stopped(&mut self, _ctx: &mut Context<Self>) {
        // Registry first, then the directory slot: once the slot (and with it the
        // directory's liveness guard) is gone, `VehicleDirectory::shutdown` may return,
        // and by then the registry must no longer list this actor.
        self.registration = None;
        if let Some(slot) = self.slot.take() {
            slot.release(self.state.tenant(), self.state.vehicle_id());
        }
    }
}

/// Loads the vehicle's snapshot, retrying transient errors with exponential backoff.
async fn load_with_retry(
    store: &dyn StateStore,
    tenant: &TenantId,
    id: &VehicleId,
) -> Result<Option<VehicleSnapshot>, StoreError> {
    let mut delay = LOAD_BACKOFF;
    let mut attempt = 1;
    loop {
        match store.load(tenant, id).await {
            Ok(Some(snapshot)) if &snapshot.vehicle_id != id || &snapshot.tenant != tenant => {
                return Err(StoreError::Corrupt(format!(
                    "snapshot stored for {tenant}/{id} belongs to {}/{}",
                    snapshot.tenant, snapshot.vehicle_id
                )));
            }
            Ok(loaded) => return Ok(loaded),
            // Unreadable data stays unreadable; retrying only delays the error.
            Err(err @ StoreError::Corrupt(_)) => return Err(err),
            Err(err) if attempt >= LOAD_ATTEMPTS => return Err(err),
            Err(err) => {
                warn!(vehicle = %id, %err, attempt, "Loading vehicle state failed; retrying.");
                actix::clock::sleep(delay).await;
                delay *= 2;
                attempt += 1;
            }
        }
    }
}

/// The start of the vehicle's newest stored bucket, retrying transient errors.
async fn latest_bucket_with_retry(
    h: &HistoryServices,
    tenant: &TenantId,
    id: &VehicleId,
) -> Result<Option<i64>, HistoryError> {
    let mut delay = LOAD_BACKOFF;
    let mut attempt = 1;
    loop {
        match h.store.latest_bucket(tenant, id).await {
            Ok(latest) => return Ok(latest),
            Err(err @ HistoryError::Corrupt(_)) => return Err(err),
            Err(err) if attempt >= LOAD_ATTEMPTS => return Err(err),
            Err(err) => {
                warn!(vehicle = %id, %err, attempt, "Reading the newest history bucket failed; retrying.");
                actix::clock::sleep(delay).await;
                delay *= 2;
                attempt += 1;
            }
        }
    }
}

/// Publishes one update; a failure is counted and logged but does not fail the batch
/// (subscribers catch up from the next update, which carries the full state).
async fn publish(fanout: &dyn FanOut, update: Arc<VehicleUpdate>) {
    let ingest = update.ingest_received_at;
    match fanout.publish(update.clone()).await {
        Ok(_id) => {
            counter!(PUBLISH_UPDATES_TOTAL, "result" => "ok").increment(1);
            record_since_ingest(INGEST_TO_PUBLISH_SECONDS, ingest);
        }
        Err(err) => {
            counter!(PUBLISH_UPDATES_TOTAL, "result" => "error").increment(1);
            warn!(vehicle = %update.vehicle_id, version = update.version, %err, "Publishing a vehicle update failed.");
        }
    }
}

/// Sent by the `VehicleDirectory` to a vehicle's actor when a shard consumer routes a
/// batch of that vehicle's records. Replies once the resulting state is persisted.
#[derive(Debug, Message)]
#[rtype(result = "Result<ApplyReport, RouteError>")]
pub struct ApplyRecords {
    /// Records of this vehicle, in stream order.
    pub records: Vec<TelemetryRecord>,
    /// The batch's durability hold: the actor keeps clones of it for every write it
    /// defers (coalesced state, open history buckets) and releases them once written.
    /// `None`: the caller does not track durability.
    pub hold: Option<DurabilityHold>,
}

impl Handler<ApplyRecords> for VehicleStateActor {
    // Atomic: the actor handles nothing else (no other batch, no passivation tick) until
    // this batch is persisted, so one vehicle's batches never interleave.
    type Result = AtomicResponse<Self, Result<ApplyReport, RouteError>>;

    fn handle(&mut self, msg: ApplyRecords, _ctx: &mut Context<Self>) -> Self::Result {
        if let Some(reg) = &self.registration {
            reg.handled(true);
        }
        let records = self.own_records(msg.records);
        if let Some(newest) = records.iter().map(|r| r.ingest_received_at).max() {
            record_since_ingest(INGEST_TO_APPLY_SECONDS, newest);
        }
        let rules = self.fleet.rules.tenant(self.state.tenant());
        let fleet = FleetContext {
            config: &self.fleet.config,
            rules: &rules,
            now: Utc::now(),
        };
        let outcome = self.state.apply_batch_with(&records, Some(fleet));
        for reason in &outcome.filtered {
            counter!(FLEET_POSITIONS_FILTERED_TOTAL, "reason" => reason.as_str()).increment(1);
        }
        if !outcome.fleet_events.is_empty() {
            counter!(FLEET_EVENTS_TOTAL, "source" => "records").increment(outcome.fleet_events.len() as u64);
        }
        let report = outcome.report;
        for (result, n) in [
            ("applied", report.applied),
            ("duplicate", report.duplicate),
            ("stale", report.stale),
        ] {
            if n > 0 {
                counter!(ROUTE_RECORDS_TOTAL, "result" => result).increment(n as u64);
            }
        }
        let update = outcome.newest_ingest.map(|ingest| {
            let changed = outcome.changed.into_iter().collect();
            Arc::new(self.state.update(changed, ingest, outcome.fleet_events))
        });
        // History sees every record, duplicates of the state's window included: a bucket
        // drops what it already holds, and a replay after a failover must rebuild the
        // buckets that were not written yet (their records are in the restored window).
        if let Some((_, builder)) = &mut self.deferred.history {
            builder.add_batch(&records, msg.hold.as_ref(), Utc::now().timestamp_millis());
        }
        // Persist whenever the state is ahead of the store, not only when this batch
        // applied something: a retried batch after a failed save is all duplicates, yet
        // its effects still have to be made durable before it is acknowledged. Coalesced:
        // at most one save per `persist_interval_ms`; until then the batch's hold waits
        // (the checkpoint does not pass it) and the flush timer saves.
        let ahead = self.state.version() > self.persisted_version;
        let save = (ahead && self.deferred.save_due()).then(|| self.state.snapshot());
        if ahead
            && save.is_none()
            && let Some(hold) = &msg.hold
        {
            self.deferred.state_holds.push(hold.clone());
        }
        let flush = self.deferred.take(save, false);
        self.show_details();

        let fanout = self.fanout.clone();
        let (store, history) = (self.store.clone(), self.deferred.services());
        let (tenant, vehicle) = (self.state.tenant().clone(), self.state.vehicle_id().clone());
        let hold = msg.hold;
        let work = async move {
            // Publish first: live views wait for no store. A crash between the two replays
            // the batch, which is then re-published — harmless, updates carry full state.
            if let Some(update) = update {
                publish(fanout.as_ref(), update).await;
            }
            run_flush(store, history, tenant, vehicle, flush).await
        };
        AtomicResponse::new(Box::pin(work.into_actor(self).map(move |flushed, act, ctx| {
            act.last_activity = Instant::now();
            let (saved, result) = act.deferred.settle(flushed);
            if let Some(v) = saved {
                act.persisted_version = act.persisted_version.max(v);
            }
            act.write_hours(ctx, false, false);
            act.schedule_flush(ctx);
            // The batch's own hold: what it deferred holds clones.
            if let Some(hold) = hold {
                hold.release();
            }
            match result {
                Ok(()) => Ok(report),
                Err(reason) => {
                    let vehicle = act.state.vehicle_id().clone();
                    warn!(%vehicle, %reason, "Persisting failed; the batch will be retried.");
                    // The state keeps the applied records; dedupe stops the retried batch
                    // from applying them twice and the next batch or tick saves them.
                    Err(RouteError::NotPersisted { vehicle, reason })
                }
            }
        })))
    }
}

/// Sent by the `VehicleDirectory` to every vehicle actor when the node shuts down.
/// Batches queued before it are still handled; later ones are refused.
#[derive(Debug, Message)]
#[rtype(result = "()")]
pub struct Stop;

impl Handler<Stop> for VehicleStateActor {
    type Result = ();

    fn handle(&mut self, _: Stop, ctx: &mut Context<Self>) {
        self.flush_and_stop(ctx);
    }
}

/// Sent by the `VehicleDirectory` to every vehicle actor when the node drains before
/// shutdown: write everything deferred now, so the shard checkpoints can reach every
/// acknowledged record.
#[derive(Debug, Message)]
#[rtype(result = "()")]
pub struct FlushDeferred;

impl Handler<FlushDeferred> for VehicleStateActor {
    type Result = ();

    fn handle(&mut self, _: FlushDeferred, ctx: &mut Context<Self>) {
        self.flush_now(ctx);
    }
}

/// Sent by tests and admin tooling to a vehicle actor when they want its current state.
#[derive(Debug, Message)]
#[rtype(result = "VehicleSnapshot")]
pub struct GetSnapshot;

impl Handler<GetSnapshot> for VehicleStateActor {
    type Result = MessageResult<GetSnapshot>;

    fn handle(&mut self, _: GetSnapshot, _ctx: &mut Context<Self>) -> Self::Result {
        MessageResult(self.state.snapshot())
    }
}

#[cfg(test)]
mod tests {
    use std::sync::atomic::Ordering;

    use super::*;
    use crate::registry::{ActorKind, ActorRegistry};
    use crate::vehicle::fakes::{Event, FakeFanOut, FakeStore, ports, record};

    fn start(
        store: &Arc<FakeStore>,
        fanout: &Arc<FakeFanOut>,
        config: &VehicleConfig,
    ) -> (Addr<VehicleStateActor>, ActorRegistry) {
        let registry = ActorRegistry::new();
        let registration = registry.register(ActorKind::VehicleState, "v1");
        let (store, fanout, config) = (store.clone(), fanout.clone(), config.clone());
        let addr = VehicleStateActor::create(move |_| {
            VehicleStateActor::new(
                TenantId::default(),
                VehicleId("v1".into()),
                &config,
                store,
                fanout,
                registration,
                None,
            )
        });
        (addr, registry)
    }

    fn apply(records: Vec<TelemetryRecord>) -> ApplyRecords {
        ApplyRecords { records, hold: None }
    }

    #[actix_rt::test]
    async fn publishes_once_per_batch_before_persisting() {
        let (store, fanout) = ports();
        let (addr, registry) = start(&store, &fanout, &VehicleConfig::default());
        let report = addr
            .send(apply(vec![
                record("v1", 1, &[("Soc", 80)]),
                record("v1", 2, &[("Speed", 5)]),
                record("v1", 0, &[("Soc", 1)]),
            ]))
            .await
            .unwrap()
            .unwrap();
        assert_eq!(
            report,
            ApplyReport {
                applied: 2,
                duplicate: 0,
                stale: 1
            }
        );
        let id = VehicleId("v1".into());
        assert_eq!(
            *store.log.lock().unwrap(),
            [Event::Published(id.clone(), 2), Event::Saved(id.clone(), 2)]
        );
        let update = fanout.updates.lock().unwrap()[0].clone();
        assert_eq!(update.changed, ["Soc", "Speed"]);
        assert_eq!(update.ingest_received_at, crate::vehicle::fakes::at(3));
        assert_eq!(store.snapshots.lock().unwrap()[&id].version, 2);
        let info = registry.get(ActorKind::VehicleState, "v1").unwrap();
        assert_eq!(info.details["version"], 2);
    }

    #[actix_rt::test]
    async fn a_failed_save_is_reported_and_saved_by_the_retry() {
        let (store, fanout) = ports();
        let (addr, _registry) = start(&store, &fanout, &VehicleConfig::default());
        store.fail_saves.store(1, Ordering::SeqCst);
        let batch = vec![record("v1", 1, &[("Soc", 80)])];
        let err = addr.send(apply(batch.clone())).await.unwrap().unwrap_err();
        assert!(matches!(err, RouteError::NotPersisted { .. }), "{err:?}");
        // The update went out anyway: publishing does not depend on the store.
        assert_eq!(fanout.updates.lock().unwrap().len(), 1);
        assert!(store.snapshots.lock().unwrap().is_empty());

        // The shard consumer re-sends the batch: all duplicates, but the state is still
        // ahead of the store, so it is saved now — and not published a second time.
        let report = addr.send(apply(batch.clone())).await.unwrap().unwrap();
        assert_eq!(
            report,
            ApplyReport {
                applied: 0,
                duplicate: 1,
                stale: 0
            }
        );
        assert_eq!(
            store.snapshots.lock().unwrap()[&VehicleId("v1".into())].version,
            1
        );
        assert_eq!(fanout.updates.lock().unwrap().len(), 1);

        // A third time there is nothing to do: no save, no publish.
        addr.send(apply(batch)).await.unwrap().unwrap();
        assert_eq!(store.log.lock().unwrap().len(), 2);
    }

    #[actix_rt::test]
    async fn a_publish_failure_does_not_fail_the_batch() {
        let (store, fanout) = ports();
        let (addr, _registry) = start(&store, &fanout, &VehicleConfig::default());
        fanout.fail.store(1, Ordering::SeqCst);
        addr.send(apply(vec![record("v1", 1, &[("Soc", 80)])]))
            .await
            .unwrap()
            .unwrap();
        assert_eq!(
            store.snapshots.lock().unwrap()[&VehicleId("v1".into())].version,
            1
        );
    }

    #[actix_rt::test]
    async fn restores_from_the_store_before_applying() {
        let (store, fanout) = ports();
        let earlier = record("v1", 1, &[("Soc", 80)]);
        let mut old = VehicleState::new(TenantId::default(), VehicleId("v1".into()), 8);
        old.apply(&earlier);
        store
            .snapshots
            .lock()
            .unwrap()
            .insert(VehicleId("v1".into()), old.snapshot());
        // Two transient failures are retried.
        store.fail_loads.store(2, Ordering::SeqCst);
        let (addr, _registry) = start(&store, &fanout, &VehicleConfig::default());
        let report = addr
            .send(apply(vec![earlier, record("v1", 2, &[("Speed", 1)])]))
            .await
            .unwrap()
            .unwrap();
        assert_eq!(
            report,
            ApplyReport {
                applied: 1,
                duplicate: 1,
                stale: 0
            }
        );
        let snap = addr.send(GetSnapshot).await.unwrap();
        assert_eq!((snap.version, snap.signals.len()), (2, 2));
        assert_eq!(store.loads.load(Ordering::SeqCst), 3);
    }

    #[actix_rt::test]
    async fn a_persistent_load_failure_stops_the_actor() {
        let (store, fanout) = ports();
        store.fail_loads.store(100, Ordering::SeqCst);
        let (addr, registry) = start(&store, &fanout, &VehicleConfig::default());
        let sent = addr.send(apply(vec![record("v1", 1, &[("Soc", 80)])])).await;
        assert_eq!(sent.unwrap_err(), MailboxError::Closed);
        assert_eq!(store.loads.load(Ordering::SeqCst), LOAD_ATTEMPTS as usize);
        assert!(fanout.updates.lock().unwrap().is_empty());
        assert!(registry.get(ActorKind::VehicleState, "v1").is_none());
    }

    #[actix_rt::test]
    async fn stops_when_idle_and_on_request() {
        let (store, fanout) = ports();
        let config = VehicleConfig {
            passivate_after_secs: 0,
            ..Default::default()
        };
        let (idle, registry) = start(&store, &fanout, &config);
        idle.send(apply(vec![record("v1", 1, &[("Soc", 80)])]))
            .await
            .unwrap()
            .unwrap();
        tokio::time::timeout(Duration::from_secs(5), async {
            while idle.connected() || registry.get(ActorKind::VehicleState, "v1").is_some() {
                actix::clock::sleep(Duration::from_millis(10)).await;
            }
        })
        .await
        .expect("an idle actor passivates");

        let (addr, registry) = start(&store, &fanout, &VehicleConfig::default());
        addr.send(Stop).await.unwrap();
        assert_eq!(addr.send(GetSnapshot).await.unwrap_err(), MailboxError::Closed);
        assert!(registry.get(ActorKind::VehicleState, "v1").is_none());
    }
}
