//! The fan-out port: carries vehicle updates from the node that processes a vehicle to
//! the subscribers on every node, and keeps a bounded replay log per tenant so that a
//! client that reconnects (to any node) can catch up on what it missed.
//!
//! # Ids, order and the replay log
//!
//! Every published update is appended to its tenant's log and gets an [`EventId`] there.
//! Live delivery and the log agree: a subscription yields each tenant's entries in log
//! order, with the log's ids, so "everything after id X" means the same live and in a
//! [`FanOut::replay`]. Logs are bounded by size and age ([`ReplayRetention`]); a replay
//! from an id the log no longer covers answers [`Replay::TooOld`] instead of a silent gap.

use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;
use futures_util::stream::BoxStream;

pub use super::event_id::{EventId, ParseEventIdError};
use crate::model::{TenantId, VehicleUpdate};

/// One entry of a tenant's log, as a subscription delivers it and as a replay returns it.
#[derive(Debug, Clone, PartialEq)]
pub enum LogEntry {
    /// A vehicle update; its tenant is `update.tenant`.
    Update {
        /// Position in the tenant's log.
        id: EventId,
        /// The update (full latest state of the vehicle).
        update: Arc<VehicleUpdate>,
    },
    /// Updates of `tenant` were lost before this point: a node could not publish them
    /// (Redis was unreachable), or a subscription's gap was no longer covered by the log.
    /// Subscribers of the tenant must reload the state; delivery goes on after `id`.
    Gap {
        /// Whose updates were lost.
        tenant: TenantId,
        /// Where delivery goes on (the entries up to here are covered by a reload).
        id: EventId,
    },
}

impl LogEntry {
    /// Position in the tenant's log.
    pub fn id(&self) -> EventId {
        match self {
            LogEntry::Update { id, .. } | LogEntry::Gap { id, .. } => *id,
        }
    }

    /// The tenant whose log holds the entry.
    pub fn tenant(&self) -> &TenantId {
        match self {
            LogEntry::Update { update, .. } => &update.tenant,
            LogEntry::Gap { tenant, .. } => tenant,
        }
    }
}

/// What a node's subscription yields.
#[derive(Debug, Clone, PartialEq)]
pub enum FanOutMessage {
    /// The next entry of a tenant's log. Per tenant, entries come in log order and each
    /// at most once.
    Entry(LogEntry),
    /// The subscription lost entries it could not recover (its buffer overflowed, or the
    /// in-process channel lagged). `tenant`: whose, or `None` for any tenant; `skipped`:
    /// how many, 0 when unknown. Subscribers concerned must reload the state.
    Lost {
        /// Whose entries were lost; `None` when it could be any tenant's.
        tenant: Option<TenantId>,
        /// How many entries, when known (else 0).
        skipped: u64,
    },
}

/// The answer of [`FanOut::replay`].
#[derive(Debug, Clone, PartialEq)]
pub enum Replay {
    /// The entries after the given id, oldest first: at most `limit`, and fewer only when
    /// the log holds no more right now. Empty when nothing came after it.
    Events(Vec<LogEntry>),
    /// The log does not cover the given id: entries after it may have been trimmed (by
    /// size or age) or lost (a Redis restart without persistence empties the logs).
    /// `head`: the newest id in the log now (`None` when the log is empty).
    TooOld {
        /// The newest id in the log.
        head: Option<EventId>,
    },
    /// The given id is newer than anything in the log: it does not come from this log (an
    /// id from before a Redis restart whose clock went back, another deployment, a made-up
    /// one). Treated like [`Replay::TooOld`] by callers.
    Ahead {
        /// The newest id in the log.
        head: EventId,
    },
}

/// How much a replay log keeps, per tenant.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ReplayRetention {
    /// Entries kept (at least; Redis trims in whole nodes of ~100 entries).
    pub max_events: usize,
    /// Entries older than this are dropped and cannot be replayed; `None`: no age limit.
    pub max_age: Option<Duration>,
}

impl ReplayRetention {
    /// Largest accepted `max_events`: beyond it a replay log stops being a reconnect
    /// buffer and becomes a (memory-hungry) history store.
    pub const MAX_EVENTS_LIMIT: usize = 1_000_000;
    /// Largest accepted `max_age`, for the same reason.
    pub const MAX_AGE_LIMIT: Duration = Duration::from_secs(24 * 3600);

    /// Checks the bounds; `what` names the config section in the message.
    pub fn validate(&self, what: &str) -> Result<(), String> {
        if !(1..=Self::MAX_EVENTS_LIMIT).contains(&self.max_events) {
            return Err(format!(
                "{what}.replay_max_events must be 1 to {}",
                Self::MAX_EVENTS_LIMIT
            ));
        }
        if self.max_age.is_some_and(|age| age > Self::MAX_AGE_LIMIT) {
            return Err(format!(
                "{what}.replay_max_age_secs must be at most {}",
                Self::MAX_AGE_LIMIT.as_secs()
            ));
        }
        Ok(())
    }

    /// The retention from the config's two numbers (`max_age_secs` 0: no age limit).
    pub fn from_config(max_events: usize, max_age_secs: u64) -> Self {
        Self {
            max_events,
            max_age: (max_age_secs > 0).then(|| Duration::from_secs(max_age_secs)),
        }
    }
}

/// Whether a log can replay what came after an id: the rule both backends share.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Coverage {
    /// Every entry after the id is still in the log.
    Covered,
    /// See [`Replay::TooOld`].
    TooOld,
    /// See [`Replay::Ahead`].
    Ahead,
}

impl Coverage {
    /// Decides for a log whose oldest and newest entries are `first` and `last` (`None`
    /// when empty), and whose age limit puts the oldest replayable id at `min_id`.
    ///
    /// Conservative on purpose: `after` is covered only while it is itself still in the
    /// log's range, because once the entry at `after` is gone nothing tells whether
    /// entries between it and `first` existed (and were trimmed, or lost with a Redis
    /// restart). A false "too old" costs the client a reload; a false "covered" would be
    /// a silent gap. The one exception to the age limit: `after` equal to the newest
    /// entry has missed nothing, however old it is (an idle tenant's log is trimmed by
    /// age only when it is appended to).
    pub fn decide(
        first: Option<EventId>,
        last: Option<EventId>,
        after: EventId,
        min_id: Option<EventId>,
    ) -> Self {
        let (Some(first), Some(last)) = (first, last) else {
            return Coverage::TooOld;
        };
        if after > last {
            Coverage::Ahead
        } else if after == last {
            Coverage::Covered
        } else if after < first || min_id.is_some_and(|min| after < min) {
            Coverage::TooOld
        } else {
            Coverage::Covered
        }
    }
}

/// Errors of the fan-out.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum FanOutError {
    /// The backend failed or cannot be reached (or did not answer in time).
    #[error("fan-out unavailable: {0}")]
    Unavailable(String),
}

/// The fan-out port. Implementations: `src/backends/embedded/fanout.rs` (in-process
/// broadcast and ring buffers), `src/backends/redis/` (Redis Streams + pub/sub).
#[async_trait]
pub trait FanOut: Send + Sync + 'static {
    /// Appends an update to its tenant's log and delivers it to every node; returns its
    /// id. Fails within a bounded time when the backend is unreachable (the update is
    /// then lost for live subscribers; the backend records a [`LogEntry::Gap`] for the
    /// tenant as soon as it can, so subscribers learn to reload).
    async fn publish(&self, update: Arc<VehicleUpdate>) -> Result<EventId, FanOutError>;

    /// This node's subscription to every tenant's log. Called once per node by the
    /// subscriber hub.
    fn subscribe(&self) -> BoxStream<'static, FanOutMessage>;

    /// Up to `limit` entries of `tenant`'s log after `after`, oldest first, or why they
    /// cannot be replayed. Callers page by asking again after the last id returned.
    async fn replay(&self, tenant: &TenantId, after: EventId, limit: usize) -> Result<Replay, FanOutError>;

    /// Cheap reachability check for `/readyz`.
    async fn ping(&self) -> Result<(), FanOutError>;

    /// Whether this node's subscription currently receives updates (a reconnecting
    /// subscription misses them). In-process fan-outs are always subscribed.
    fn is_subscribed(&self) -> bool {
        true
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn coverage_is_conservative() {
        let id = |ms| EventId::new(ms, 0);
        let (first, last) = (Some(id(10)), Some(id(20)));
        assert_eq!(Coverage::decide(first, last, id(10), None), Coverage::Covered);
        assert_eq!(Coverage::decide(first, last, id(20), None), Coverage::Covered);
        assert_eq!(Coverage::decide(first, last, id(9), None), Coverage::TooOld);
        assert_eq!(Coverage::decide(first, last, id(21), None), Coverage::Ahead);
        assert_eq!(Coverage::decide(None, None, id(10), None), Coverage::TooOld);
        assert_eq!(
            Coverage::decide(first, last, id(12), Some(id(15))),
            Coverage::TooOld
        );
        assert_eq!(
            Coverage::decide(first, last, id(15), Some(id(15))),
            Coverage::Covered
        );
    }

    #[test]
    fn retention_bounds() {
        assert!(ReplayRetention::from_config(10, 0).validate("x").is_ok());
        assert_eq!(ReplayRetention::from_config(10, 0).max_age, None);
        assert!(ReplayRetention::from_config(0, 0).validate("x").is_err());
        assert!(ReplayRetention::from_config(2_000_000, 0).validate("x").is_err());
        assert!(
            ReplayRetention::from_config(10, 90_000)
                .validate("x")
                .unwrap_err()
                .contains("x.replay_max_age_secs")
        );
    }
}
