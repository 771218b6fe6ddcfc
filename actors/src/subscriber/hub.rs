//! The node's subscriber hub: one fan-out subscription, routed to the local subscribers
//! by tenant and filter.

use std::collections::HashMap;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};

use actix::prelude::*;
use futures_util::StreamExt;
use tracing::warn;

use super::actor::{Deliver, Subscriber};
use super::budget::FRAME_OVERHEAD;
use super::filter::SubscriptionFilter;
use super::outbox::{ResetAt, ResetReason};
use super::routes::TenantRoutes;
use crate::model::{TenantId, VehicleUpdate};
use crate::ports::{EventId, FanOut, FanOutMessage, LogEntry};
use crate::registry::{ActorKind, ActorRegistry, Registration};
use crate::telemetry;

/// Most fan-out entries the hub routes as one chunk, and so the most updates in one
/// [`Deliver::Updates`].
pub const HUB_CHUNK: usize = 64;

/// One update as the hub hands it to subscribers: with its log id, and serialized once
/// for all of them.
#[derive(Debug, PartialEq)]
pub struct HubEvent {
    /// Position in the tenant's log; the SSE `id:`.
    pub id: EventId,
    /// The update.
    pub update: Arc<VehicleUpdate>,
    /// `update` as JSON without its fleet events, shared by every subscriber whose filter
    /// does not trim it (the SSE `vehicle` event).
    pub json: Arc<str>,
    /// Each fleet event as JSON (the SSE `fleet_event`s), oldest first. May hold the
    /// events of earlier updates this one replaced in a subscriber's queue.
    pub fleet: Vec<Arc<str>>,
}

impl HubEvent {
    /// Serializes an update.
    pub fn new(id: EventId, update: Arc<VehicleUpdate>) -> Self {
        let encode = |u: &VehicleUpdate| -> Arc<str> {
            serde_json::to_string(u).expect("updates always serialize").into()
        };
        let (json, fleet) = if update.fleet_events.is_empty() {
            (encode(&update), Vec::new())
        } else {
            let mut bare = (*update).clone();
            let events = std::mem::take(&mut bare.fleet_events);
            let fleet = events
                .iter()
                .map(|e| Arc::from(serde_json::to_string(e).expect("events always serialize")))
                .collect();
            (encode(&bare), fleet)
        };
        Self {
            id,
            update,
            json,
            fleet,
        }
    }

    /// Serialized size on the wire: the JSON of the update and of its fleet events, plus
    /// each SSE frame's overhead (`budget.rs`).
    pub fn wire_bytes(&self) -> usize {
        let frames = 1 + self.fleet.len();
        self.json.len() + self.fleet.iter().map(|f| f.len()).sum::<usize>() + frames * FRAME_OVERHEAD
    }

    /// `newer` carrying the fleet events of `older` too: coalescing keeps the latest
    /// state, but events are not state and must not be lost with the replaced update.
    pub fn absorb(older: &HubEvent, newer: Arc<HubEvent>) -> Arc<HubEvent> {
        if older.fleet.is_empty() {
            return newer;
        }
        Arc::new(HubEvent {
            id: newer.id,
            update: newer.update.clone(),
            json: newer.json.clone(),
            fleet: older.fleet.iter().chain(&newer.fleet).cloned().collect(),
        })
    }
}

/// A registered subscriber as the hub routes to it.
struct Route {
    filter: SubscriptionFilter,
    addr: Addr<Subscriber>,
    /// Updates the hub dropped for it (shared with the subscriber for its admin entry).
    dropped: Arc<AtomicU64>,
    /// A `Dropped` reset is on its way to it; further drops are covered by that reset.
    reset_owed: bool,
    /// Updates of the chunk being routed, sent as one [`Deliver::Updates`] at its end.
    staged: Vec<Arc<HubEvent>>,
}

/// Routes fan-out entries to the subscribers of this node.
pub struct SubscriberHub {
    fanout: Arc<dyn FanOut>,
    /// Live subscribers by tenant, then connection id (indexed by the vehicles their
    /// filters name).
    tenants: HashMap<TenantId, TenantRoutes<Route>>,
    /// Tenant of each connection id.
    tenant_of: HashMap<u64, TenantId>,
    /// Tenants with updates staged in the chunk being routed (so delivering touches only
    /// their subscribers, not every subscriber of the node).
    staged_tenants: Vec<TenantId>,
    /// Entries routed so far.
    routed: u64,
    /// Id of the last entry routed (of any tenant).
    last_event_id: Option<EventId>,
    registration: Registration,
}

impl SubscriberHub {
    /// Starts the hub on an arbiter (thread) of its own, which it stops when it stops; it
    /// subscribes to `fanout` at once. On the node's main arbiter it took turns with the
    /// shard consumers and the producer, and under load fell so far behind its fan-out
    /// subscription that entries were lost to it (`fleetwire_fanout_lagged_total`).
    pub fn start(fanout: Arc<dyn FanOut>, registry: &ActorRegistry) -> Addr<Self> {
        let registration = registry.register(ActorKind::SubscriberHub, "hub");
        let arbiter = Arbiter::new();
        Self::start_in_arbiter(&arbiter.handle(), move |_| Self {
            fanout,
            tenants: HashMap::new(),
            tenant_of: HashMap::new(),
            staged_tenants: Vec::new(),
            routed: 0,
            last_event_id: None,
            registration,
        })
    }

    fn publish_details(&self) {
        self.registration.set_detail("subscribers", self.tenant_of.len());
        self.registration.set_detail("tenants", self.tenants.len());
        self.registration.set_detail("entries_routed", self.routed);
        self.registration
            .set_detail("last_event_id", self.last_event_id.map(|id| id.to_string()));
    }

    /// Stages an update for every local subscriber whose filter matches, serialized once
    /// when the first one does; [`Self::deliver_staged`] sends what is staged.
    fn stage(&mut self, id: EventId, update: Arc<VehicleUpdate>) {
        let Some(routes) = self.tenants.get_mut(&update.tenant) else {
            return;
        };
        telemetry::record_since_ingest(telemetry::INGEST_TO_HUB_SECONDS, update.ingest_received_at);
        let mut event: Option<Arc<HubEvent>> = None;
        routes.stage_for(&update.vehicle_id, |route| {
            if !route.filter.matches(&update) {
                return false;
            }
            let event = event.get_or_insert_with(|| Arc::new(HubEvent::new(id, update.clone())));
            route.staged.push(event.clone());
            route.staged.len() == 1
        });
        if event.is_some() && !self.staged_tenants.contains(&update.tenant) {
            self.staged_tenants.push(update.tenant.clone());
        }
    }

    /// Sends each subscriber its staged updates as one message. A full mailbox drops the
    /// whole batch, counted per update.
    fn deliver_staged(&mut self) {
        for tenant in std::mem::take(&mut self.staged_tenants) {
            let Some(routes) = self.tenants.get_mut(&tenant) else {
                continue;
            };
            for id in routes.take_staged() {
                let Some(route) = routes.get_mut(id) else {
                    continue; // Unregistered since.
                };
                let Some(first) = route.staged.first().map(|e| e.id) else {
                    continue;
                };
                let batch = std::mem::take(&mut route.staged);
                let n = batch.len() as u64;
                match route.addr.try_send(Deliver::Updates(batch)) {
                    Ok(()) => route.reset_owed = false,
                    Err(SendError::Full(_)) => {
                        metrics::counter!(telemetry::SUBSCRIBER_HUB_DROPPED_TOTAL).increment(n);
                        route.dropped.fetch_add(n, Ordering::Relaxed);
                        // The client can no longer get every update after its last id, so
                        // it is told to reload. One reset covers every drop until a
                        // delivery succeeds again, which keeps this `do_send` (past the
                        // mailbox bound) to one message per overload episode.
                        if !route.reset_owed {
                            route.reset_owed = true;
                            route.addr.do_send(Deliver::Reset {
                                at: ResetAt::At(first),
                                reason: ResetReason::Dropped,
                            });
                        }
                    }
                    // The subscriber stopped; its `Unregister` is on the way.
                    Err(SendError::Closed(_)) => {
                        routes.remove(id);
                    }
                }
            }
        }
    }

    /// Tells the subscribers of `tenant` (all when `None`) to reload. Resets are rare and
    /// must not be lost, so they may exceed the mailbox bound.
    /// What is staged goes first, so a subscriber sees updates and resets in log order.
    fn reset(&mut self, tenant: Option<&TenantId>, at: ResetAt, reason: ResetReason) {
        self.deliver_staged();
        let routes = self
            .tenants
            .iter()
            .filter(|(t, _)| tenant.is_none_or(|want| want == *t))
            .flat_map(|(_, routes)| routes.values());
        for route in routes {
            route.addr.do_send(Deliver::Reset { at, reason });
        }
    }
}

impl Actor for SubscriberHub {
    type Context = Context<Self>;

    fn started(&mut self, ctx: &mut Context<Self>) {
        // Entries that are ready together (a consumer batch arrives as a burst) are routed
        // together: one mailbox message per subscriber per chunk instead of one per update,
        // so a burst longer than the mailbox is not dropped merely for arriving at once.
        ctx.add_stream(self.fanout.subscribe().ready_chunks(HUB_CHUNK));
    }

    fn stopped(&mut self, _ctx: &mut Context<Self>) {
        Arbiter::current().stop();
    }
}

impl StreamHandler<Vec<FanOutMessage>> for SubscriberHub {
    fn handle(&mut self, chunk: Vec<FanOutMessage>, _ctx: &mut Context<Self>) {
        self.registration.handled(false);
        for msg in chunk {
            match msg {
                FanOutMessage::Entry(entry) => {
                    self.routed += 1;
                    self.last_event_id = Some(entry.id());
                    match entry {
                        LogEntry::Update { id, update } => self.stage(id, update),
                        LogEntry::Gap { tenant, id } => {
                            warn!(%tenant, %id, "The tenant's log records lost updates; its subscribers reload.");
                            self.reset(Some(&tenant), ResetAt::At(id), ResetReason::Gap);
                        }
                    }
                }
                FanOutMessage::Lost { tenant, skipped } => {
                    warn!(
                        tenant = tenant.as_ref().map(TenantId::as_str),
                        skipped, "Fan-out subscription lost updates; telling subscribers to reload."
                    );
                    metrics::counter!(telemetry::FANOUT_LAGGED_TOTAL).increment(skipped);
                    self.reset(tenant.as_ref(), ResetAt::Unchanged, ResetReason::Lagged);
                }
            }
        }
        self.deliver_staged();
        self.publish_details();
    }

    fn finished(&mut self, _ctx: &mut Context<Self>) {
        warn!("Fan-out subscription ended; no more live updates on this node.");
    }
}

/// Sent by a [`Subscriber`] to the hub when it starts. The subscriber waits for the
/// answer before it reads the replay log, so that no entry can slip between the replay
/// and live delivery.
#[derive(Message)]
#[rtype(result = "()")]
pub struct Register {
    /// Connection id.
    pub id: u64,
    /// Whose updates it may see.
    pub tenant: TenantId,
    /// What it wants.
    pub filter: SubscriptionFilter,
    /// Where to deliver.
    pub addr: Addr<Subscriber>,
    /// Counts the updates the hub drops for it.
    pub dropped: Arc<AtomicU64>,
}

impl Handler<Register> for SubscriberHub {
    type Result = ();
    fn handle(&mut self, msg: Register, _ctx: &mut Context<Self>) {
        self.registration.handled(false);
        let route = Route {
            filter: msg.filter,
            addr: msg.addr,
            dropped: msg.dropped,
            reset_owed: false,
            staged: Vec::new(),
        };
        let vehicles = route
            .filter
            .vehicles
            .as_ref()
            .map(|set| set.iter().cloned().collect());
        self.tenants
            .entry(msg.tenant.clone())
            .or_default()
            .insert(msg.id, vehicles, route);
        self.tenant_of.insert(msg.id, msg.tenant);
        self.publish_details();
    }
}

/// Sent by a [`Subscriber`] to the hub when it stops.
#[derive(Message)]
#[rtype(result = "()")]
pub struct Unregister {
    /// Connection id.
    pub id: u64,
}

impl Handler<Unregister> for SubscriberHub {
    type Result = ();
    fn handle(&mut self, msg: Unregister, _ctx: &mut Context<Self>) {
        self.registration.handled(false);
        if let Some(tenant) = self.tenant_of.remove(&msg.id)
            && let Some(routes) = self.tenants.get_mut(&tenant)
        {
            routes.remove(msg.id);
            if routes.is_empty() {
                self.tenants.remove(&tenant);
            }
        }
        self.publish_details();
    }
}

/// Sent by the node to the hub on shutdown: every subscriber ends its stream and the hub
/// stops (dropping its fan-out subscription). Returns how many streams were closed.
#[derive(Message)]
#[rtype(result = "usize")]
pub struct CloseAll;

impl Handler<CloseAll> for SubscriberHub {
    type Result = usize;
    fn handle(&mut self, _msg: CloseAll, ctx: &mut Context<Self>) -> usize {
        self.registration.handled(false);
        let n = self.tenant_of.len();
        for (_, routes) in self.tenants.drain() {
            for route in routes.into_values() {
                route.addr.do_send(Deliver::Close);
            }
        }
        self.tenant_of.clear();
        ctx.stop();
        n
    }
}
