//! One actor per SSE connection: registers with the hub, replays what a resuming client
//! missed, and feeds the client's bounded channel from its [`Outbox`].

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use actix::prelude::*;
use tokio::sync::mpsc;
use tracing::{info, warn};

use super::SubscriberConfig;
use super::budget::{Budget, FRAME_OVERHEAD, InFlight};
use super::filter::{EventType, SubscriptionFilter};
use super::hub::{HubEvent, Register, SubscriberHub, Unregister};
use super::outbox::{Offer, Outbox, Outgoing, Replayed, ResetAt, ResetReason};
use crate::model::TenantId;
use crate::ports::{EventId, FanOut, FanOutError, LogEntry, Replay};
use crate::registry::{ActorKind, ActorRegistry, Registration};
use crate::telemetry;

/// How often a subscriber retries a blocked client and notices a closed one.
const FLUSH_INTERVAL: Duration = Duration::from_millis(100);
/// Entries asked for per replay page.
const REPLAY_PAGE: usize = 500;

/// Connection ids, unique per process.
static NEXT_ID: AtomicU64 = AtomicU64::new(1);

/// One log entry (or reset) for the HTTP layer to write as SSE.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SubscriberStream {
    /// `fleet_event` frames to write first, without an `id:` line: the entry's id comes
    /// with the last frame, so a client cut off in between resumes before the entry and
    /// gets its events again (at least once; each event carries its own stable id).
    pub before: Vec<Arc<str>>,
    /// `id:` line, when the event has one.
    pub id: Option<EventId>,
    /// `event:` name: `vehicle`, `fleet_event` or `reset`.
    pub event: &'static str,
    /// `data:` payload (JSON).
    pub data: Arc<str>,
}

impl SubscriberStream {
    /// Serialized size on the wire, SSE framing included (approximately: `budget.rs`).
    pub fn wire_bytes(&self) -> usize {
        let payload = self.data.len() + self.before.iter().map(|b| b.len()).sum::<usize>();
        payload + (1 + self.before.len()) * FRAME_OVERHEAD
    }
}

/// Where a new stream starts.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Resume {
    /// With the next live update.
    Fresh,
    /// After this id: first what the client missed since (from the replay log), then live.
    After(EventId),
    /// The client sent a `Last-Event-ID` that is not an event id: it gets a `reset`
    /// first (it cannot be told what it missed), then live updates.
    Invalid,
}

/// What one connection streams.
#[derive(Debug, Clone)]
pub struct SubscriberSpec {
    /// Whose updates.
    pub tenant: TenantId,
    /// Which of them.
    pub filter: SubscriptionFilter,
    /// From where.
    pub resume: Resume,
}

/// What every subscriber of a node shares.
#[derive(Clone)]
pub struct SubscriberServices {
    /// The node's hub.
    pub hub: Addr<SubscriberHub>,
    /// The fan-out, for replays.
    pub fanout: Arc<dyn FanOut>,
    /// Where subscribers register for `/admin/actors`.
    pub registry: ActorRegistry,
    /// Settings.
    pub config: SubscriberConfig,
}

/// Streams updates to one client.
pub struct Subscriber {
    id: u64,
    tenant: TenantId,
    filter: SubscriptionFilter,
    services: SubscriberServices,
    outbox: Outbox,
    tx: mpsc::Sender<SubscriberStream>,
    /// Sizes of what sits in `tx` unread, for the byte budget.
    in_flight: InFlight,
    /// When a blocked client is disconnected.
    budget: Budget,
    /// Since when the client has not taken everything we had for it.
    blocked_since: Option<Instant>,
    /// Whether a task waits for room in the client's channel to flush again (at most one).
    waking: bool,
    sent: u64,
    resets: u64,
    coalesced: u64,
    /// Entries read from the replay log so far.
    replayed: u64,
    /// Updates the hub dropped for this client.
    dropped: Arc<AtomicU64>,
    registration: Registration,
}

impl Subscriber {
    /// Starts a subscriber on the current arbiter and returns the receiving end of its
    /// SSE channel. The subscriber stops when the receiver is dropped (the client left).
    pub fn start(spec: SubscriberSpec, services: &SubscriberServices) -> mpsc::Receiver<SubscriberStream> {
        let id = NEXT_ID.fetch_add(1, Ordering::Relaxed);
        let config = &services.config;
        let (tx, rx) = mpsc::channel(config.channel_capacity.max(1));
        let registration = services.registry.register(ActorKind::Subscriber, id.to_string());
        registration.set_detail("tenant", spec.tenant.as_str());
        registration.set_detail("filter", spec.filter.describe());
        registration.set_detail("connected_at", chrono::Utc::now().to_rfc3339());
        let mut outbox = match spec.resume {
            Resume::After(after) => {
                registration.set_detail("resumed_after", after.to_string());
                Outbox::resuming(after, config.max_pending)
            }
            Resume::Fresh | Resume::Invalid => Outbox::live(),
        };
        if spec.resume == Resume::Invalid {
            resume_metric("invalid_id");
            outbox.reset(ResetAt::Unknown, ResetReason::InvalidId);
        }
        metrics::counter!(telemetry::SSE_CONNECTIONS_TOTAL).increment(1);
        let mailbox = config.mailbox_capacity.max(1);
        let budget = Budget {
            timeout: Duration::from_millis(config.slow_client_timeout_ms),
            max_events: config.max_pending,
            max_bytes: config.max_buffered_bytes,
        };
        let services = services.clone();
        Subscriber::create(move |ctx| {
            ctx.set_mailbox_capacity(mailbox);
            Subscriber {
                id,
                tenant: spec.tenant,
                filter: spec.filter,
                services,
                outbox,
                tx,
                in_flight: InFlight::default(),
                budget,
                blocked_since: None,
                waking: false,
                sent: 0,
                resets: 0,
                coalesced: 0,
                replayed: 0,
                dropped: Arc::new(AtomicU64::new(0)),
                registration,
            }
        });
        rx
    }

    /// Asks the replay log for the next page after the outbox's position.
    fn fetch_replay(&mut self, ctx: &mut Context<Self>) {
        let Some(after) = self.outbox.position() else {
            self.outbox.finish_resume();
            return;
        };
        let fanout = self.services.fanout.clone();
        let tenant = self.tenant.clone();
        let replay = async move { fanout.replay(&tenant, after, REPLAY_PAGE).await };
        ctx.spawn(replay.into_actor(self).map(|result, act, ctx| {
            act.on_replay(result, ctx);
            act.flush(ctx);
        }));
    }

    fn on_replay(&mut self, result: Result<Replay, FanOutError>, ctx: &mut Context<Self>) {
        if !self.outbox.is_resuming() {
            return; // A reset ended the resume meanwhile.
        }
        let entries = match result {
            Ok(Replay::Events(entries)) => entries,
            Ok(Replay::TooOld { head }) => {
                resume_metric("too_old");
                let at = head.map_or(ResetAt::Unknown, ResetAt::At);
                return self.outbox.reset(at, ResetReason::TooOld);
            }
            Ok(Replay::Ahead { head }) => {
                resume_metric("unknown_id");
                return self.outbox.reset(ResetAt::At(head), ResetReason::UnknownId);
            }
            Err(error) => {
                warn!(subscriber = self.id, %error, "Cannot read the replay log; the client reloads instead.");
                resume_metric("failed");
                return self.outbox.reset(ResetAt::Unknown, ResetReason::ReplayFailed);
            }
        };
        let complete = entries.len() < REPLAY_PAGE;
        self.replayed += entries.len() as u64;
        for entry in entries {
            self.outbox.replayed(match entry {
                LogEntry::Update { id, update } if self.filter.matches(&update) => {
                    Replayed::Event(Arc::new(HubEvent::new(id, update)))
                }
                LogEntry::Update { id, .. } => Replayed::Skipped(id),
                LogEntry::Gap { id, .. } => Replayed::Gap(id),
            });
        }
        if complete {
            resume_metric("replayed");
            self.outbox.finish_resume();
        } else if self.replayed >= self.services.config.max_replay_events as u64 {
            // Reloading the state is cheaper than streaming this much history.
            resume_metric("too_long");
            let at = self.outbox.position().map_or(ResetAt::Unknown, ResetAt::At);
            self.outbox.reset(at, ResetReason::ReplayTooLong);
        } else {
            self.fetch_replay(ctx);
        }
    }

    /// Moves waiting events into the client's channel until it is full.
    fn flush(&mut self, ctx: &mut Context<Self>) {
        self.channel_bytes();
        while let Some(item) = self.outbox.front() {
            // Reserve first, so a full channel costs no rendering.
            let tx = self.tx.clone();
            let permit = match tx.try_reserve() {
                Ok(permit) => permit,
                Err(mpsc::error::TrySendError::Full(())) => return self.mark_blocked(ctx),
                Err(mpsc::error::TrySendError::Closed(())) => return ctx.stop(),
            };
            let stream = match item {
                Outgoing::Vehicle(event) => {
                    self.sent += 1;
                    metrics::counter!(telemetry::SSE_EVENTS_SENT_TOTAL).increment(1);
                    telemetry::record_since_ingest(
                        telemetry::INGEST_TO_SSE_SECONDS,
                        event.update.ingest_received_at,
                    );
                    let mut fleet = if self.filter.wants(EventType::FleetEvent) {
                        event.fleet.clone()
                    } else {
                        Vec::new()
                    };
                    match fleet.pop() {
                        Some(last) if !self.filter.wants_vehicle_event(&event.update) => SubscriberStream {
                            before: fleet,
                            id: Some(event.id),
                            event: "fleet_event",
                            data: last,
                        },
                        last => SubscriberStream {
                            before: fleet.into_iter().chain(last).collect(),
                            id: Some(event.id),
                            event: "vehicle",
                            data: self.filter.render(&event.update, &event.json),
                        },
                    }
                }
                Outgoing::Reset { id, reason } => {
                    self.resets += 1;
                    metrics::counter!(telemetry::SSE_RESETS_SENT_TOTAL, "reason" => reason.as_str())
                        .increment(1);
                    SubscriberStream {
                        before: Vec::new(),
                        id,
                        event: "reset",
                        data: Arc::from(format!(r#"{{"reason":"{}"}}"#, reason.as_str())),
                    }
                }
            };
            self.in_flight.sent(stream.wire_bytes());
            permit.send(stream);
            self.outbox.pop_front();
        }
        self.blocked_since = None;
    }

    /// Bytes in the client's channel that its HTTP body has not taken yet.
    fn channel_bytes(&mut self) -> usize {
        let in_channel = self.tx.max_capacity() - self.tx.capacity();
        self.in_flight.settle(in_channel)
    }

    fn mark_blocked(&mut self, ctx: &mut Context<Self>) {
        let since = *self.blocked_since.get_or_insert_with(Instant::now);
        let bytes = self.outbox.live_bytes() + self.channel_bytes();
        if let Some(reason) = self.budget.check(since.elapsed(), self.outbox.live_len(), bytes) {
            info!(
                subscriber = self.id,
                waiting = self.outbox.len(),
                bytes,
                reason = reason.as_str(),
                "Disconnecting slow SSE client."
            );
            metrics::counter!(telemetry::SUBSCRIBER_DISCONNECTS_TOTAL, "reason" => reason.as_str())
                .increment(1);
            return ctx.stop();
        }
        self.wake_on_room(ctx);
    }

    /// Flushes again as soon as the client has taken something, rather than at the next
    /// tick: without this a client catching up (a resume's backlog) got at most
    /// `channel_capacity` events per [`FLUSH_INTERVAL`].
    fn wake_on_room(&mut self, ctx: &mut Context<Self>) {
        if std::mem::replace(&mut self.waking, true) {
            return;
        }
        let room = self.tx.clone().reserve_owned();
        ctx.spawn(room.into_actor(self).map(|permit, act, ctx| {
            act.waking = false;
            match permit {
                // Released at once: `flush` reserves again, and only this actor sends.
                Ok(permit) => {
                    drop(permit);
                    act.flush(ctx);
                }
                Err(_closed) => ctx.stop(),
            }
        }));
    }

    fn publish_details(&self) {
        let r = &self.registration;
        r.set_detail("events_sent", self.sent);
        r.set_detail("resets_sent", self.resets);
        r.set_detail("replayed", self.replayed);
        r.set_detail("queue_depth", self.outbox.len());
        r.set_detail("queue_bytes", self.outbox.live_bytes() + self.in_flight.bytes());
        r.set_detail("coalesced", self.coalesced);
        r.set_detail(
            "dropped",
            self.dropped.load(Ordering::Relaxed) + self.outbox.discarded(),
        );
        r.set_detail("resuming", self.outbox.is_resuming());
        r.set_detail("last_event_id", self.outbox.position().map(|id| id.to_string()));
    }
}

fn resume_metric(result: &'static str) {
    metrics::counter!(telemetry::SSE_RESUMES_TOTAL, "result" => result).increment(1);
}

impl Actor for Subscriber {
    type Context = Context<Self>;

    fn started(&mut self, ctx: &mut Context<Self>) {
        let register = Register {
            id: self.id,
            tenant: self.tenant.clone(),
            filter: self.filter.clone(),
            addr: ctx.address(),
            dropped: self.dropped.clone(),
        };
        // Registered first, replayed second: see `outbox.rs`. Live updates that arrive
        // meanwhile are held by the outbox, not lost.
        let registered = self.services.hub.send(register);
        ctx.spawn(registered.into_actor(self).map(|result, act, ctx| {
            if result.is_err() {
                return ctx.stop(); // The hub is gone: the node is shutting down.
            }
            if act.outbox.is_resuming() {
                act.fetch_replay(ctx);
            }
        }));
        ctx.run_interval(FLUSH_INTERVAL, |this, ctx| {
            if this.tx.is_closed() {
                ctx.stop();
                return;
            }
            this.flush(ctx);
            this.publish_details();
        });
        self.flush(ctx);
        self.publish_details();
    }

    fn stopped(&mut self, _ctx: &mut Context<Self>) {
        self.services.hub.do_send(Unregister { id: self.id });
    }
}

/// Sent by the [`SubscriberHub`] to a subscriber.
#[derive(Message)]
#[rtype(result = "()")]
pub enum Deliver {
    /// Live updates that match the filter, in log order (those the hub found ready
    /// together: at most [`super::hub::HUB_CHUNK`]).
    Updates(Vec<Arc<HubEvent>>),
    /// The client must reload the state.
    Reset {
        /// Where delivery continues.
        at: ResetAt,
        /// Why.
        reason: ResetReason,
    },
    /// The node is shutting down: end the stream.
    Close,
}

impl Handler<Deliver> for Subscriber {
    type Result = ();

    fn handle(&mut self, msg: Deliver, ctx: &mut Context<Self>) {
        self.registration.handled(false);
        match msg {
            Deliver::Updates(events) => {
                // Flushed one by one, so a client that keeps up gets every update and only
                // one that falls behind sees them coalesced.
                for event in events {
                    if ctx.state() != ActorState::Running {
                        return; // Disconnected by a flush below; the rest has nowhere to go.
                    }
                    if self.outbox.offer(event) == Offer::Coalesced {
                        self.coalesced += 1;
                        metrics::counter!(telemetry::SUBSCRIBER_COALESCED_TOTAL).increment(1);
                    }
                    self.flush(ctx);
                }
            }
            Deliver::Reset { at, reason } => {
                self.outbox.reset(at, reason);
                self.flush(ctx);
            }
            Deliver::Close => {
                metrics::counter!(telemetry::SUBSCRIBER_DISCONNECTS_TOTAL, "reason" => "shutdown")
                    .increment(1);
                ctx.stop();
            }
        }
    }
}
