//! Live updates to browsers: one [`SubscriberHub`] per node fed by the fan-out port, and
//! one [`Subscriber`] actor per SSE connection.
//!
//! ```text
//! FanOut::subscribe ──▶ SubscriberHub ──try_send──▶ Subscriber ──mpsc(bounded)──▶ SSE body
//!                       (serializes once)           (filter, coalescing queue)
//! ```
//!
//! # When a client is slow
//!
//! Every edge is bounded and none of them can slow the pipeline:
//!
//! 1. Hub → subscriber mailbox (`mailbox_capacity`): `try_send`; when full the update is
//!    dropped and counted (`fleetwire_subscriber_hub_dropped_total`). Updates carry the
//!    full vehicle state, so the next update of that vehicle repairs the gap.
//! 2. Subscriber → SSE body channel (`channel_capacity`): when the client does not read,
//!    the channel fills and updates wait in the subscriber's [`OutboundQueue`], coalesced
//!    to the latest update per vehicle (`fleetwire_subscriber_coalesced_total`), so its
//!    size is bounded by the number of vehicles the filter matches.
//! 3. When the client stays blocked longer than `slow_client_timeout_ms`, or the queue
//!    exceeds `max_pending`, the subscriber disconnects it
//!    (`fleetwire_subscriber_disconnects_total{reason="slow_client"}`); the browser
//!    reconnects by itself and reloads the state.

mod actor;
mod filter;
mod hub;
mod queue;

use serde::{Deserialize, Serialize};

pub use actor::{Deliver, Subscriber, SubscriberStream};
pub use filter::SubscriptionFilter;
pub use hub::{CloseAll, HubEvent, Register, SubscriberHub, Unregister};
pub use queue::{OutboundQueue, PushOutcome};

/// Subscriber settings (`[subscribers]` in the config).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct SubscriberConfig {
    /// Capacity of each subscriber's actor mailbox (hub → subscriber). Default 256.
    pub mailbox_capacity: usize,
    /// Events buffered between the subscriber and the HTTP response. Default 64.
    pub channel_capacity: usize,
    /// Most vehicles a slow subscriber may have waiting before it is disconnected. Default 10,000.
    pub max_pending: usize,
    /// How long a client may block the stream before it is disconnected. Default 30,000 ms.
    pub slow_client_timeout_ms: u64,
    /// Interval of `: keep-alive` comments. Default 15,000 ms.
    pub keep_alive_ms: u64,
    /// Reconnect delay suggested to browsers (`retry:`). Default 3,000 ms.
    pub retry_ms: u64,
}

impl Default for SubscriberConfig {
    fn default() -> Self {
        Self {
            mailbox_capacity: 256,
            channel_capacity: 64,
            max_pending: 10_000,
            slow_client_timeout_ms: 30_000,
            keep_alive_ms: 15_000,
            retry_ms: 3_000,
        }
    }
}
