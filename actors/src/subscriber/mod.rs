//! Live updates to browsers: one [`SubscriberHub`] per node fed by the fan-out port, and
//! one [`Subscriber`] actor per SSE connection.
//!
//! ```text
//! FanOut::subscribe ──▶ SubscriberHub ──try_send──▶ Subscriber ──mpsc(bounded)──▶ SSE body
//!                       (by tenant + filter,        (Outbox: replay backlog,
//!                        serializes once)            coalescing live queue)
//! FanOut::replay ◀──────────────────────────────── (on Last-Event-ID)
//! ```
//!
//! # Event ids and resume
//!
//! Every event carries its id in its tenant's replay log (`id:`), and a subscriber sends
//! ids in strictly increasing order. A client reconnecting with `Last-Event-ID` gets a
//! subscriber that registers with the hub first, then replays the log after that id,
//! then goes live, skipping what the replay covered (see [`Outbox`]). When the
//! log cannot cover the id, the client gets `event: reset` and reloads; never a silent gap.
//!
//! # When a client is slow
//!
//! Every edge is bounded and none of them can slow the pipeline:
//!
//! 1. Hub → subscriber mailbox (`mailbox_capacity` messages): the hub routes the entries
//!    that are ready together (up to [`HUB_CHUNK`]) and `try_send`s each subscriber its
//!    share as one message, so a burst is not dropped merely for arriving at once. When
//!    the mailbox is full, that message's updates are dropped and counted
//!    (`fleetwire_subscriber_hub_dropped_total`), and the subscriber is sent one `reset`
//!    (past the bound, once per episode): its client can no longer resume exactly, so it
//!    reloads.
//! 2. Subscriber → SSE body channel (`channel_capacity`): when the client does not read,
//!    the channel fills and updates wait in the subscriber's [`OutboundQueue`], coalesced
//!    to the latest update per vehicle (`fleetwire_subscriber_coalesced_total`), so its
//!    size is bounded by the number of vehicles the filter matches. A coalesced update
//!    moves to its own (newer) id's place, so ids on the wire keep increasing. Replayed
//!    events wait uncoalesced, bounded by `max_replay_events`.
//! 3. When the client stays blocked longer than `slow_client_timeout_ms`, or the live
//!    queue exceeds `max_pending`, the subscriber disconnects it
//!    (`fleetwire_subscriber_disconnects_total{reason="slow_client"}`); likewise when the
//!    serialized bytes waiting for it — live queue plus its channel to the HTTP body —
//!    exceed `max_buffered_bytes` (`{reason="bytes"}`; what is counted: [`budget`]).
//!    The browser reconnects by itself with `Last-Event-ID` and catches up from the
//!    replay log.

mod actor;
pub mod budget;
mod filter;
mod hub;
mod outbox;
mod queue;
mod routes;

use serde::{Deserialize, Serialize};

pub use actor::{Deliver, Resume, Subscriber, SubscriberServices, SubscriberSpec, SubscriberStream};
pub use filter::{EventType, FilterQuery, MAX_FILTER_SIGNALS, MAX_FILTER_VEHICLES, SubscriptionFilter};
pub use hub::{CloseAll, HUB_CHUNK, HubEvent, Register, SubscriberHub, Unregister};
pub use outbox::{Offer, Outbox, Outgoing, Replayed, ResetAt, ResetReason};
pub use queue::{OutboundQueue, PushOutcome};

/// Subscriber settings (`[subscribers]` in the config).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct SubscriberConfig {
    /// Capacity of each subscriber's actor mailbox (hub → subscriber), in messages of up
    /// to [`HUB_CHUNK`] updates. Default 256.
    pub mailbox_capacity: usize,
    /// Events buffered between the subscriber and the HTTP response. Default 64.
    pub channel_capacity: usize,
    /// Most vehicles a slow subscriber may have waiting before it is disconnected. Default 10,000.
    pub max_pending: usize,
    /// Most serialized bytes that may wait for a slow client (its live queue and its
    /// channel to the HTTP response) before it is disconnected; bounds how much a client
    /// may lag (and the updates it keeps alive) where `max_pending` alone would allow
    /// 10,000 large updates. The updates themselves are shared by every subscriber they go
    /// to, so a burst that all clients lag behind together costs its size once. At least 1.
    /// Default 4 MiB (4,194,304): about half a second of a whole 5,000-vehicle fleet at
    /// 1 Hz (~8 MB/s of ~1.6 KB events); 1 MiB (~130 ms of it) cut every such client off
    /// at ordinary delivery hiccups (docs/performance.md).
    pub max_buffered_bytes: usize,
    /// How long a client may block the stream before it is disconnected. Default 30,000 ms.
    pub slow_client_timeout_ms: u64,
    /// Interval of `: keep-alive` comments. Default 15,000 ms.
    pub keep_alive_ms: u64,
    /// Reconnect delay suggested to browsers (`retry:`). Default 3,000 ms.
    pub retry_ms: u64,
    /// Most log entries one `Last-Event-ID` resume replays; a client that missed more
    /// gets `reset` (reloading is cheaper). At least 1. Default 10,000.
    pub max_replay_events: usize,
    /// Open SSE connections this node accepts; more get 503 + `Retry-After`. At least 1.
    /// Default 25,000.
    pub max_connections_per_node: usize,
    /// Open SSE connections one tenant may have on this node; more get 429 +
    /// `Retry-After`. At least 1. Default 10,000.
    pub max_connections_per_tenant: usize,
    /// `Retry-After` (seconds) of those 429 and 503 answers. Default 5.
    pub limit_retry_after_secs: u64,
}

impl SubscriberConfig {
    /// Checks the values that cannot work; each problem names its key.
    pub fn validate(&self) -> Vec<String> {
        let mut problems = Vec::new();
        for (key, value) in [
            ("max_replay_events", self.max_replay_events),
            ("max_buffered_bytes", self.max_buffered_bytes),
            ("max_connections_per_node", self.max_connections_per_node),
            ("max_connections_per_tenant", self.max_connections_per_tenant),
        ] {
            if value == 0 {
                problems.push(format!("subscribers.{key} must be at least 1"));
            }
        }
        problems
    }
}

impl Default for SubscriberConfig {
    fn default() -> Self {
        Self {
            mailbox_capacity: 256,
            channel_capacity: 64,
            max_pending: 10_000,
            max_buffered_bytes: 4 * 1024 * 1024,
            slow_client_timeout_ms: 30_000,
            keep_alive_ms: 15_000,
            retry_ms: 3_000,
            max_replay_events: 10_000,
            max_connections_per_node: 25_000,
            max_connections_per_tenant: 10_000,
            limit_retry_after_secs: 5,
        }
    }
}
