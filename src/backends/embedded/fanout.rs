//! In-process fan-out: a bounded replay ring per tenant, and one
//! `tokio::sync::broadcast` channel shared by every subscription of this process (a
//! single-node deployment has nothing else to fan out to).
//!
//! Ids are assigned like Redis Streams assigns them (`<ms>-<seq>`, never going back),
//! and an entry is appended to its ring and broadcast under one lock, so live order is
//! log order: the same contract as the Redis fan-out, checked by the same conformance
//! suite. The rings live in memory: a restarted node starts with empty logs, and clients
//! that resume with an id from before get `reset`.

use std::collections::{HashMap, VecDeque};
use std::sync::{Arc, Mutex};

use async_trait::async_trait;
use futures_util::StreamExt;
use futures_util::stream::{self, BoxStream};
use tokio::sync::broadcast;
use tokio::sync::broadcast::error::RecvError;

use fleetwire_actors::model::{TenantId, VehicleUpdate};
use fleetwire_actors::ports::{
    Coverage, EventId, FanOut, FanOutError, FanOutMessage, LogEntry, Replay, ReplayRetention,
};

/// One tenant's log.
#[derive(Debug, Default)]
struct Ring {
    /// Retained entries, oldest first (ids increasing).
    entries: VecDeque<LogEntry>,
    /// The newest id ever assigned (kept when trimming empties the ring, so ids never
    /// repeat).
    last: EventId,
}

/// [`FanOut`] over per-tenant rings and a broadcast channel. Every update is an `Arc`, so
/// publishing costs one pointer per subscriber and ring slot, never a copy of the snapshot.
#[derive(Debug, Clone)]
pub struct InProcessFanOut {
    logs: Arc<Mutex<HashMap<TenantId, Ring>>>,
    /// Kept so the channel stays open with zero subscribers and `subscribe` can be called
    /// at any time.
    tx: broadcast::Sender<LogEntry>,
    retention: ReplayRetention,
}

impl InProcessFanOut {
    /// A fan-out whose subscribers may each fall `capacity` entries behind before they
    /// receive [`FanOutMessage::Lost`] (0 is raised to 1: the broadcast channel needs room
    /// for one), keeping `retention` per tenant for replays.
    pub fn new(capacity: usize, retention: ReplayRetention) -> Self {
        let (tx, _) = broadcast::channel(capacity.max(1));
        Self {
            logs: Arc::default(),
            tx,
            retention,
        }
    }

    /// Number of live subscriptions (for tests and the admin page).
    pub fn subscriber_count(&self) -> usize {
        self.tx.receiver_count()
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, HashMap<TenantId, Ring>> {
        self.logs.lock().expect("fan-out lock never poisoned")
    }

    /// The oldest id an age-limited log may still replay from, by the wall clock.
    fn min_id(&self, now_ms: u64) -> Option<EventId> {
        let age = self.retention.max_age?.as_millis() as u64;
        Some(EventId::new(now_ms.saturating_sub(age), 0))
    }

    fn trim(&self, ring: &mut Ring, now_ms: u64) {
        while ring.entries.len() > self.retention.max_events {
            ring.entries.pop_front();
        }
        if let Some(min) = self.min_id(now_ms) {
            while ring.entries.front().is_some_and(|e| e.id() < min) {
                ring.entries.pop_front();
            }
        }
    }
}

fn now_ms() -> u64 {
    chrono::Utc::now().timestamp_millis().max(0) as u64
}

#[async_trait]
impl FanOut for InProcessFanOut {
    async fn publish(&self, update: Arc<VehicleUpdate>) -> Result<EventId, FanOutError> {
        let now = now_ms();
        let mut logs = self.lock();
        let ring = logs.entry(update.tenant.clone()).or_default();
        let id = ring.last.successor(now);
        ring.last = id;
        let entry = LogEntry::Update { id, update };
        ring.entries.push_back(entry.clone());
        self.trim(ring, now);
        // Sent under the lock, so no other publish can overtake: live order is log order.
        // `send` only fails when nobody subscribes; an update nobody watches is not an error.
        let _ = self.tx.send(entry);
        Ok(id)
    }

    fn subscribe(&self) -> BoxStream<'static, FanOutMessage> {
        stream::unfold(self.tx.subscribe(), |mut rx| async move {
            let msg = match rx.recv().await {
                Ok(entry) => FanOutMessage::Entry(entry),
                // The receiver skips ahead by itself; tell the hub so its subscribers reload.
                Err(RecvError::Lagged(skipped)) => FanOutMessage::Lost {
                    tenant: None,
                    skipped,
                },
                // Only after every sender is gone, i.e. this fan-out was dropped.
                Err(RecvError::Closed) => return None,
            };
            Some((msg, rx))
        })
        .boxed()
    }

    async fn replay(&self, tenant: &TenantId, after: EventId, limit: usize) -> Result<Replay, FanOutError> {
        let now = now_ms();
        let logs = self.lock();
        let Some(ring) = logs.get(tenant) else {
            return Ok(Replay::TooOld { head: None });
        };
        // Like a Redis log, a ring is trimmed only when appended to; the age limit for
        // replays is applied by `Coverage::decide` through `min_id`.
        let first = ring.entries.front().map(LogEntry::id);
        let last = ring.entries.back().map(LogEntry::id);
        Ok(match Coverage::decide(first, last, after, self.min_id(now)) {
            Coverage::TooOld => Replay::TooOld { head: last },
            Coverage::Ahead => Replay::Ahead {
                head: last.expect("a log with entries has a newest one"),
            },
            Coverage::Covered => {
                let start = ring.entries.partition_point(|e| e.id() <= after);
                Replay::Events(ring.entries.range(start..).take(limit).cloned().collect())
            }
        })
    }

    async fn ping(&self) -> Result<(), FanOutError> {
        Ok(())
    }
}
