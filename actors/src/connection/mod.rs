//! Vehicles connected over Tesla's Fleet Telemetry protocol: one [`VehicleConnection`]
//! actor per live WebSocket, the [`ConnectionDirectory`] that keeps one connection per
//! vehicle, and the [`RecordSink`] port the actor hands decoded records to.
//!
//! The listener (TLS, client certificates, WebSocket upgrade) lives in the binary's
//! `src/tesla/`; it starts an actor per accepted connection. The frame rules themselves
//! (envelope, payload, replies) are the pure functions of [`crate::tesla`].
//!
//! Per connection, frames are handled one at a time, in order, like Tesla's reference
//! server: the next frame is not read until the previous one is on the stream (or
//! refused), so a slow stream backend slows the vehicle down instead of piling up
//! memory, and a vehicle's records keep their order.

mod actor;
mod directory;
mod state;

use std::time::Duration;

use async_trait::async_trait;
use bytes::Bytes;
use serde::{Deserialize, Serialize};

pub use actor::{ConnectionParams, Disconnect, VehicleConnection};
pub use directory::ConnectionDirectory;
pub use state::{ConnectionState, FrameAdmission};

use crate::tesla::Topic;

/// `[tesla.connection]`: how each vehicle connection behaves.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct ConnectionConfig {
    /// Topics whose records are put on the stream (Tesla's `records`). Frames of other
    /// topics are answered as Tesla's server does and dropped. Default: all four.
    pub topics: Vec<Topic>,
    /// Topics acknowledged only after the stream stored the record (Tesla's reliable
    /// acks). Other topics are acked once the put was attempted, even if it failed, as
    /// Tesla's server does. `connectivity` cannot be reliable (vehicles never send it
    /// reliably). Default: `V`, `alerts`, `errors`.
    pub reliable_ack_topics: Vec<Topic>,
    /// Longest wait for the stream before a reliable ack is given up (no ack is sent; the
    /// vehicle resends). Bounds how long one slow put can stall a connection. Default 10 s.
    pub reliable_ack_timeout_ms: u64,
    /// Interval of WebSocket pings to the vehicle. Default 30 s.
    pub ping_interval_ms: u64,
    /// A connection with no frame or pong for this long is closed. Default 120 s.
    pub idle_timeout_ms: u64,
    /// Replies (acks, errors, pings) waiting to be written to one vehicle. A vehicle that
    /// does not read them is disconnected when they fill up. Default 256.
    pub outbound_queue: usize,
    /// Per-vehicle rate limit: frames beyond `rate_limit_messages` per
    /// `rate_limit_interval_ms` are dropped without a reply, as Tesla's server does when
    /// its limiter trips. `0` disables the limit. Default 0.
    pub rate_limit_messages: u32,
    /// Window of the rate limit. Default 60 s.
    pub rate_limit_interval_ms: u64,
}

impl Default for ConnectionConfig {
    fn default() -> Self {
        Self {
            topics: Topic::ALL.to_vec(),
            reliable_ack_topics: vec![Topic::V, Topic::Alerts, Topic::Errors],
            reliable_ack_timeout_ms: 10_000,
            ping_interval_ms: 30_000,
            idle_timeout_ms: 120_000,
            outbound_queue: 256,
            rate_limit_messages: 0,
            rate_limit_interval_ms: 60_000,
        }
    }
}

impl ConnectionConfig {
    /// Problems with the values, one line each.
    pub fn problems(&self) -> Vec<String> {
        let mut problems = Vec::new();
        if self.reliable_ack_topics.contains(&Topic::Connectivity) {
            problems.push("tesla.connection.reliable_ack_topics cannot contain connectivity".to_owned());
        }
        if let Some(t) = self.reliable_ack_topics.iter().find(|t| !self.topics.contains(t)) {
            problems.push(format!(
                "tesla.connection.reliable_ack_topics names {}, which is not in tesla.connection.topics",
                t.as_str()
            ));
        }
        if self.outbound_queue == 0 {
            problems.push("tesla.connection.outbound_queue must be at least 1".to_owned());
        }
        if self.ping_interval_ms == 0 || self.idle_timeout_ms <= self.ping_interval_ms {
            problems.push(
                "tesla.connection.idle_timeout_ms must be longer than ping_interval_ms (> 0)".to_owned(),
            );
        }
        if self.rate_limit_messages > 0 && self.rate_limit_interval_ms == 0 {
            problems.push("tesla.connection.rate_limit_interval_ms must be > 0 with a rate limit".to_owned());
        }
        problems
    }

    pub(crate) fn ping_interval(&self) -> Duration {
        Duration::from_millis(self.ping_interval_ms)
    }

    pub(crate) fn reliable_ack_timeout(&self) -> Duration {
        Duration::from_millis(self.reliable_ack_timeout_ms)
    }
}

/// Why the sink did not store a record.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum SinkError {
    /// The stream is throttled, unavailable or failed; the vehicle should resend.
    #[error("the stream did not store the record: {0}")]
    NotStored(String),
    /// No stream is configured for the topic.
    #[error("no stream is configured for topic {0}")]
    NoStream(&'static str),
}

/// Where a connection puts its records: the stream of each topic. The binary implements
/// it over the `RecordStream` port (and records accepted sequence numbers so shutdown can
/// drain them).
#[async_trait]
pub trait RecordSink: Send + Sync + 'static {
    /// Stores one record on the stream of `topic`, partitioned by `partition_key`;
    /// returns once the stream accepted it.
    async fn put(&self, topic: Topic, partition_key: String, data: Bytes) -> Result<(), SinkError>;
}
