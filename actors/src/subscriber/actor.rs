//! One actor per SSE connection.

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use actix::prelude::*;
use tokio::sync::mpsc;
use tracing::info;

use super::SubscriberConfig;
use super::filter::SubscriptionFilter;
use super::hub::{HubEvent, Register, SubscriberHub, Unregister};
use super::queue::{OutboundQueue, PushOutcome};
use crate::registry::{ActorKind, ActorRegistry, Registration};
use crate::telemetry;

/// How often a subscriber retries a blocked client and notices a closed one.
const FLUSH_INTERVAL: Duration = Duration::from_millis(100);

/// Connection ids, unique per process.
static NEXT_ID: AtomicU64 = AtomicU64::new(1);

/// One event for the HTTP layer to write as SSE.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SubscriberStream {
    /// `id:` line, when the event has one.
    pub id: Option<u64>,
    /// `event:` name: `vehicle` or `reset`.
    pub event: &'static str,
    /// `data:` payload (JSON).
    pub data: Arc<str>,
}

/// Streams updates to one client.
pub struct Subscriber {
    id: u64,
    filter: SubscriptionFilter,
    config: SubscriberConfig,
    queue: OutboundQueue,
    tx: mpsc::Sender<SubscriberStream>,
    hub: Addr<SubscriberHub>,
    /// Since when the client has not taken everything we had for it.
    blocked_since: Option<Instant>,
    /// A reset is owed to the client (it could not be queued yet).
    reset_pending: bool,
    sent: u64,
    coalesced: u64,
    registration: Registration,
}

impl Subscriber {
    /// Starts a subscriber on the current arbiter and returns the receiving end of its
    /// SSE channel. The subscriber stops when the receiver is dropped (the client left).
    pub fn start(
        filter: SubscriptionFilter,
        config: SubscriberConfig,
        hub: Addr<SubscriberHub>,
        registry: &ActorRegistry,
    ) -> mpsc::Receiver<SubscriberStream> {
        let id = NEXT_ID.fetch_add(1, Ordering::Relaxed);
        let (tx, rx) = mpsc::channel(config.channel_capacity.max(1));
        let registration = registry.register(ActorKind::Subscriber, id.to_string());
        registration.set_detail("filter", filter.describe());
        metrics::counter!(telemetry::SSE_CONNECTIONS_TOTAL).increment(1);
        Subscriber::create(move |ctx| {
            ctx.set_mailbox_capacity(config.mailbox_capacity.max(1));
            Subscriber {
                id,
                filter,
                config,
                queue: OutboundQueue::default(),
                tx,
                hub,
                blocked_since: None,
                reset_pending: false,
                sent: 0,
                coalesced: 0,
                registration,
            }
        });
        rx
    }

    /// Moves waiting events into the client's channel until it is full.
    fn flush(&mut self, ctx: &mut Context<Self>) {
        if self.reset_pending {
            let reset = SubscriberStream {
                id: None,
                event: "reset",
                data: Arc::from("{}"),
            };
            match self.tx.try_send(reset) {
                Ok(()) => self.reset_pending = false,
                Err(mpsc::error::TrySendError::Full(_)) => return self.mark_blocked(ctx),
                Err(mpsc::error::TrySendError::Closed(_)) => return ctx.stop(),
            }
        }
        while let Some(event) = self.queue.pop() {
            let item = SubscriberStream {
                id: Some(event.seq),
                event: "vehicle",
                data: event.json.clone(),
            };
            match self.tx.try_send(item) {
                Ok(()) => {
                    self.sent += 1;
                    metrics::counter!(telemetry::SSE_EVENTS_SENT_TOTAL).increment(1);
                }
                Err(mpsc::error::TrySendError::Full(_)) => {
                    self.queue.push_front(event);
                    return self.mark_blocked(ctx);
                }
                Err(mpsc::error::TrySendError::Closed(_)) => return ctx.stop(),
            }
        }
        self.blocked_since = None;
    }

    fn mark_blocked(&mut self, ctx: &mut Context<Self>) {
        let since = *self.blocked_since.get_or_insert_with(Instant::now);
        let too_long = since.elapsed() >= Duration::from_millis(self.config.slow_client_timeout_ms);
        if too_long || self.queue.len() > self.config.max_pending {
            info!(
                subscriber = self.id,
                waiting = self.queue.len(),
                "Disconnecting slow SSE client."
            );
            metrics::counter!(telemetry::SUBSCRIBER_DISCONNECTS_TOTAL, "reason" => "slow_client")
                .increment(1);
            ctx.stop();
        }
    }

    fn publish_details(&self) {
        self.registration.set_detail("events_sent", self.sent);
        self.registration.set_detail("queue_depth", self.queue.len());
        self.registration.set_detail("coalesced", self.coalesced);
    }
}

impl Actor for Subscriber {
    type Context = Context<Self>;

    fn started(&mut self, ctx: &mut Context<Self>) {
        self.hub.do_send(Register {
            id: self.id,
            filter: self.filter.clone(),
            addr: ctx.address(),
        });
        ctx.run_interval(FLUSH_INTERVAL, |this, ctx| {
            if this.tx.is_closed() {
                ctx.stop();
                return;
            }
            this.flush(ctx);
            this.publish_details();
        });
    }

    fn stopped(&mut self, _ctx: &mut Context<Self>) {
        self.hub.do_send(Unregister { id: self.id });
    }
}

/// Sent by the [`SubscriberHub`] to a subscriber.
#[derive(Message)]
#[rtype(result = "()")]
pub enum Deliver {
    /// A vehicle update that matches the filter.
    Update(Arc<HubEvent>),
    /// Updates were lost upstream: the client must reload the state.
    Reset,
    /// The node is shutting down: end the stream.
    Close,
}

impl Handler<Deliver> for Subscriber {
    type Result = ();

    fn handle(&mut self, msg: Deliver, ctx: &mut Context<Self>) {
        self.registration.handled(false);
        match msg {
            Deliver::Update(event) => {
                if self.queue.push(event) == PushOutcome::Coalesced {
                    self.coalesced += 1;
                    metrics::counter!(telemetry::SUBSCRIBER_COALESCED_TOTAL).increment(1);
                }
                self.flush(ctx);
            }
            Deliver::Reset => {
                // Waiting updates are superseded by the reload the reset asks for.
                self.queue = OutboundQueue::default();
                self.reset_pending = true;
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
