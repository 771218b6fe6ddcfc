//! The node's subscriber hub: one fan-out subscription, routed to local subscribers.

use std::collections::HashMap;
use std::sync::Arc;

use actix::prelude::*;
use tracing::warn;

use super::actor::{Deliver, Subscriber};
use super::filter::SubscriptionFilter;
use crate::model::VehicleUpdate;
use crate::ports::{FanOut, FanOutMessage};
use crate::registry::{ActorKind, ActorRegistry, Registration};
use crate::telemetry;

/// One update as the hub hands it to subscribers: numbered, and serialized once for all
/// of them.
#[derive(Debug)]
pub struct HubEvent {
    /// Event id on this node's streams (increasing).
    pub seq: u64,
    /// The update.
    pub update: Arc<VehicleUpdate>,
    /// `update` as JSON, shared by every subscriber's SSE event.
    pub json: Arc<str>,
}

impl HubEvent {
    /// Numbers and serializes an update.
    pub fn new(seq: u64, update: Arc<VehicleUpdate>) -> Self {
        let json: Arc<str> = serde_json::to_string(&*update)
            .expect("updates always serialize")
            .into();
        Self { seq, update, json }
    }
}

/// Routes fan-out updates to the subscribers of this node.
pub struct SubscriberHub {
    fanout: Arc<dyn FanOut>,
    /// Live subscribers by connection id.
    subscribers: HashMap<u64, (SubscriptionFilter, Addr<Subscriber>)>,
    /// Last event id handed out.
    seq: u64,
    registration: Registration,
}

impl SubscriberHub {
    /// Starts the hub on the current arbiter; it subscribes to `fanout` at once.
    pub fn start(fanout: Arc<dyn FanOut>, registry: &ActorRegistry) -> Addr<Self> {
        let registration = registry.register(ActorKind::SubscriberHub, "hub");
        Actor::start(Self {
            fanout,
            subscribers: HashMap::new(),
            seq: 0,
            registration,
        })
    }

    fn publish_details(&self) {
        self.registration
            .set_detail("subscribers", self.subscribers.len());
        self.registration.set_detail("last_event_id", self.seq);
    }
}

impl Actor for SubscriberHub {
    type Context = Context<Self>;

    fn started(&mut self, ctx: &mut Context<Self>) {
        ctx.add_stream(self.fanout.subscribe());
    }
}

impl StreamHandler<FanOutMessage> for SubscriberHub {
    fn handle(&mut self, msg: FanOutMessage, _ctx: &mut Context<Self>) {
        self.registration.handled(false);
        match msg {
            FanOutMessage::Update(update) => {
                self.seq += 1;
                let event = Arc::new(HubEvent::new(self.seq, update));
                self.subscribers.retain(|_, (filter, addr)| {
                    if !filter.matches(&event.update) {
                        return true;
                    }
                    match addr.try_send(Deliver::Update(event.clone())) {
                        Ok(()) => true,
                        Err(SendError::Full(_)) => {
                            metrics::counter!(telemetry::SUBSCRIBER_HUB_DROPPED_TOTAL).increment(1);
                            true
                        }
                        Err(SendError::Closed(_)) => false,
                    }
                });
            }
            FanOutMessage::Lagged(skipped) => {
                warn!(
                    skipped,
                    "Fan-out subscription lagged; telling subscribers to reload."
                );
                metrics::counter!(telemetry::FANOUT_LAGGED_TOTAL).increment(skipped);
                for (_, addr) in self.subscribers.values() {
                    // A reset is rare and must not be lost, so it may exceed the mailbox bound.
                    addr.do_send(Deliver::Reset);
                }
            }
        }
        self.publish_details();
    }

    fn finished(&mut self, _ctx: &mut Context<Self>) {
        warn!("Fan-out subscription ended; no more live updates on this node.");
    }
}

/// Sent by a [`Subscriber`] to the hub when it starts.
#[derive(Message)]
#[rtype(result = "()")]
pub struct Register {
    /// Connection id.
    pub id: u64,
    /// What it wants.
    pub filter: SubscriptionFilter,
    /// Where to deliver.
    pub addr: Addr<Subscriber>,
}

impl Handler<Register> for SubscriberHub {
    type Result = ();
    fn handle(&mut self, msg: Register, _ctx: &mut Context<Self>) {
        self.registration.handled(false);
        self.subscribers.insert(msg.id, (msg.filter, msg.addr));
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
        self.subscribers.remove(&msg.id);
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
        let n = self.subscribers.len();
        for (_, (_, addr)) in self.subscribers.drain() {
            addr.do_send(Deliver::Close);
        }
        ctx.stop();
        n
    }
}
