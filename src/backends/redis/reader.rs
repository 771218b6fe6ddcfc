//! A node's subscription: one task per [`FanOut::subscribe`] call (the hub calls it once
//! per node) that owns a dedicated pub/sub connection, pattern-subscribed to every
//! tenant's channel, and forwards decoded entries into a bounded channel whose receiver
//! is the stream handed to the hub. A connection in subscribed mode cannot serve other
//! commands, so it never goes back into the pool; log reads use pooled connections.
//!
//! # Gapless across reconnects
//!
//! The task remembers the newest id it forwarded per tenant (starting from each log's
//! newest id, read before the first subscribe). Whenever it (re)subscribes, it reads
//! every tenant's log after that id before it goes live again — messages published
//! meanwhile wait in the connection — and then skips live messages it already recovered.
//! Where a log no longer covers the gap (trimmed, or emptied by a Redis restart without
//! persistence), it forwards a [`LogEntry::Gap`] (or [`FanOutMessage::Lost`] when the log
//! is empty) so that tenant's subscribers reload: never a silent gap. (A tenant whose log
//! began while this node was disconnected has no position to resume from; it is read from
//! the start, which the conservative coverage rule cannot prove complete, so it is reset
//! too: rare, and a reload too many is harmless.)
//!
//! # Bounds
//!
//! - **Buffer full** while live: the message is dropped and counted, and `Lost { skipped }`
//!   goes out as soon as there is room, before any later entry. A slow hub never makes
//!   Redis buffer for us (Redis disconnects pub/sub clients whose output buffer grows too
//!   large). Recovery waits for room instead: it is bounded by the logs' size.
//! - **Connection lost** (Redis restarted, connection killed, no `PING` answer): reconnect
//!   with exponential backoff and jitter, forever; `is_subscribed` is false until the
//!   recovery is done.
//! - **Undecodable message**: logged (throttled) and counted, then skipped.
//! - **Stream dropped**: the task notices at once (even while it sleeps or connects),
//!   closes its connection and ends, so Redis forgets the subscription.
//!
//! [`FanOut::subscribe`]: fleetwire_actors::ports::FanOut::subscribe

use std::collections::{BTreeSet, HashMap};
use std::sync::Arc;
use std::time::Duration;

use deadpool_redis::Pool;
use deadpool_redis::redis::aio::PubSub;
use deadpool_redis::redis::{self, Msg};
use fleetwire_actors::model::TenantId;
use fleetwire_actors::ports::{EventId, FanOutMessage, LogEntry, Replay, ReplayRetention};
use fleetwire_actors::telemetry::{
    REDIS_FANOUT_CONNECTS_TOTAL, REDIS_FANOUT_DROPPED_TOTAL, REDIS_FANOUT_GAP_RECOVERIES_TOTAL,
    REDIS_FANOUT_MALFORMED_TOTAL, REDIS_FANOUT_RECOVERED_TOTAL, REDIS_FANOUT_SUBSCRIPTIONS,
};
use futures_util::StreamExt;
use rand::Rng;
use tokio::sync::mpsc::error::TrySendError;
use tokio::sync::{mpsc, watch};
use tokio::time::Instant;
use tracing::{debug, info, warn};

use super::keys::Keys;
use super::{log, wire};

/// Bound on opening a pub/sub connection and having its `PSUBSCRIBE` confirmed: a
/// blackholed address would otherwise stall the reconnect loop indefinitely.
const CONNECT_TIMEOUT: Duration = Duration::from_secs(5);
/// How long the answer to an idle subscription's `PING` may take before it reconnects.
const HEALTH_CHECK_TIMEOUT: Duration = Duration::from_secs(5);
/// Entries read per recovery page.
const RECOVERY_PAGE: usize = 1000;

/// Reader tasks of one fan-out: running, and of those, subscribed (and recovered) now.
#[derive(Debug, Default, Clone, Copy)]
pub(crate) struct Counts {
    pub(crate) live: usize,
    pub(crate) subscribed: usize,
}

/// Counts a reader task as live for as long as it exists.
pub(crate) struct LiveGuard(Arc<watch::Sender<Counts>>);

impl LiveGuard {
    pub(crate) fn new(state: Arc<watch::Sender<Counts>>) -> Self {
        state.send_modify(|c| c.live += 1);
        Self(state)
    }
}

impl Drop for LiveGuard {
    fn drop(&mut self) {
        self.0.send_modify(|c| c.live -= 1);
    }
}

/// Counts a reader task as subscribed while its connection is up and recovered.
struct SubscribedGuard(Arc<watch::Sender<Counts>>);

impl SubscribedGuard {
    fn new(state: Arc<watch::Sender<Counts>>) -> Self {
        state.send_modify(|c| c.subscribed += 1);
        metrics::gauge!(REDIS_FANOUT_SUBSCRIPTIONS).increment(1.0);
        Self(state)
    }
}

impl Drop for SubscribedGuard {
    fn drop(&mut self) {
        self.0.send_modify(|c| c.subscribed -= 1);
        metrics::gauge!(REDIS_FANOUT_SUBSCRIPTIONS).decrement(1.0);
    }
}

/// Reconnect delays: `initial_ms · 2^failures`, capped at `max_ms`, with jitter.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Backoff {
    pub(crate) initial_ms: u64,
    pub(crate) max_ms: u64,
}

impl Backoff {
    /// The delay after `failures` consecutive failures (0 for the first retry): a random
    /// point in the upper half of the capped exponential ("equal jitter"). The jitter keeps
    /// the nodes that lost Redis together from reconnecting in lockstep; the lower bound
    /// keeps the delay from collapsing to zero.
    pub(crate) fn delay(&self, failures: u32) -> Duration {
        let base = self
            .initial_ms
            .checked_shl(failures)
            .filter(|ms| ms >> failures == self.initial_ms)
            .map_or(self.max_ms, |ms| ms.min(self.max_ms));
        let floor = base / 2;
        Duration::from_millis(floor + rand::rng().random_range(0..=base - floor))
    }

    /// The longest delay; a connection that stayed up at least this long counts as healthy.
    fn max(&self) -> Duration {
        Duration::from_millis(self.max_ms)
    }
}

/// Why a connected subscription stopped.
enum Exit {
    /// The hub dropped the stream: end the task.
    ReceiverGone,
    /// The connection (or a log read) failed: reconnect.
    Disconnected(String),
}

/// Marker: the stream's receiver is gone.
struct Closed;

/// What a reader needs from its fan-out.
pub(crate) struct ReaderSetup {
    pub(crate) client: redis::Client,
    pub(crate) pool: Pool,
    pub(crate) keys: Arc<Keys>,
    pub(crate) prefix: Arc<str>,
    pub(crate) retention: ReplayRetention,
    pub(crate) command_timeout: Duration,
    pub(crate) backoff: Backoff,
    pub(crate) health_check: Duration,
    pub(crate) state: Arc<watch::Sender<Counts>>,
}

/// One subscription's task state.
pub(crate) struct Reader {
    setup: ReaderSetup,
    tx: mpsc::Sender<FanOutMessage>,
    /// Entries dropped for lack of room that the hub has not been told about yet; sent
    /// as `Lost` before any later entry, so the hub sees the gap where it happened.
    pending_lost: Option<u64>,
    /// Undecodable messages so far (for log throttling).
    malformed: u64,
    /// Per tenant, the newest id forwarded (or the log's head when the task began).
    last: HashMap<TenantId, EventId>,
    /// Whether `last` was seeded with the logs' heads.
    seeded: bool,
}

impl Reader {
    pub(crate) fn new(setup: ReaderSetup, tx: mpsc::Sender<FanOutMessage>) -> Self {
        Self {
            setup,
            tx,
            pending_lost: None,
            malformed: 0,
            last: HashMap::new(),
            seeded: false,
        }
    }

    /// Connects, recovers, pumps, reconnects; returns only when the stream's receiver is
    /// dropped.
    pub(crate) async fn run(mut self) {
        let pattern = self.setup.keys.pattern();
        let mut failures: u32 = 0;
        // A clone to watch for the receiver going away while `connect` borrows `self`.
        let watch_closed = self.tx.clone();
        loop {
            let attempt = tokio::select! {
                biased;
                () = watch_closed.closed() => break,
                result = tokio::time::timeout(CONNECT_TIMEOUT, self.connect(&pattern)) => {
                    result.unwrap_or_else(|_| Err(format!("no answer within {CONNECT_TIMEOUT:?}")))
                }
            };
            match attempt {
                Ok(pubsub) => {
                    metrics::counter!(REDIS_FANOUT_CONNECTS_TOTAL, "connection" => "subscription", "result" => "ok").increment(1);
                    let since = Instant::now();
                    let exit = match self.recover().await {
                        Ok(()) => {
                            debug!(%pattern, failures, "Redis fan-out subscribed and caught up.");
                            let _subscribed = SubscribedGuard::new(self.setup.state.clone());
                            self.pump(pubsub).await
                        }
                        Err(exit) => exit,
                    };
                    match exit {
                        Exit::ReceiverGone => break,
                        Exit::Disconnected(why) => {
                            warn!(%pattern, reason = %why, "Redis fan-out subscription lost; reconnecting.");
                        }
                    }
                    // A connection that held for a while was healthy, so the next attempt
                    // starts the backoff afresh; one that dropped at once (a flapping
                    // server) keeps backing off.
                    if since.elapsed() >= self.setup.backoff.max() {
                        failures = 0;
                    }
                }
                Err(error) => {
                    metrics::counter!(REDIS_FANOUT_CONNECTS_TOTAL, "connection" => "subscription", "result" => "error").increment(1);
                    warn!(%pattern, %error, failures, "Redis fan-out cannot subscribe; retrying.");
                }
            }
            let delay = self.setup.backoff.delay(failures);
            failures = failures.saturating_add(1);
            tokio::select! {
                biased;
                () = self.tx.closed() => break,
                () = tokio::time::sleep(delay) => {}
            }
        }
        debug!(%pattern, "Redis fan-out subscription dropped; reader task ends.");
    }

    /// Seeds `last` with the logs' heads (first time only), then opens a dedicated pub/sub
    /// connection and subscribes it; returns once Redis confirmed the subscription.
    async fn connect(&mut self, pattern: &str) -> Result<PubSub, String> {
        if !self.seeded {
            let mut conn = self.pooled().await?;
            let heads = log::heads(&mut conn, &self.setup.keys, &self.setup.prefix)
                .await
                .map_err(|e| format!("reading the logs' heads failed: {e}"))?;
            for (tenant, id) in heads {
                self.last.entry(tenant).or_insert(id);
            }
            self.seeded = true;
        }
        let mut pubsub = self
            .setup
            .client
            .get_async_pubsub()
            .await
            .map_err(|e| format!("connect failed: {e}"))?;
        pubsub
            .psubscribe(pattern)
            .await
            .map_err(|e| format!("PSUBSCRIBE failed: {e}"))?;
        Ok(pubsub)
    }

    async fn pooled(&self) -> Result<deadpool_redis::Connection, String> {
        self.setup
            .pool
            .get()
            .await
            .map_err(|e| format!("no pooled connection: {e}"))
    }

    /// Forwards every tenant's entries after `last` (see the module docs).
    async fn recover(&mut self) -> Result<(), Exit> {
        let disconnected = |e: String| Exit::Disconnected(format!("recovery: {e}"));
        let mut conn = self.pooled().await.map_err(disconnected)?;
        let listed = with_timeout(
            self.setup.command_timeout,
            log::tenants(&mut conn, &self.setup.keys),
        )
        .await
        .map_err(disconnected)?;
        let mut tenants: BTreeSet<TenantId> = listed.into_iter().collect();
        tenants.extend(self.last.keys().cloned());
        for tenant in tenants {
            let mut after = self.last.get(&tenant).copied().unwrap_or(EventId::ZERO);
            let mut recovered = 0u64;
            loop {
                let read = log::read(
                    &mut conn,
                    &self.setup.keys,
                    &self.setup.retention,
                    &tenant,
                    after,
                    RECOVERY_PAGE,
                );
                let entries = match with_timeout(self.setup.command_timeout, read)
                    .await
                    .map_err(disconnected)?
                {
                    Replay::Events(entries) => entries,
                    Replay::TooOld { head } => {
                        self.give_up(&tenant, head).await?;
                        break;
                    }
                    Replay::Ahead { head } => {
                        self.give_up(&tenant, Some(head)).await?;
                        break;
                    }
                };
                let full = entries.len() >= RECOVERY_PAGE;
                for entry in entries {
                    after = entry.id();
                    self.last.insert(tenant.clone(), after);
                    recovered += 1;
                    self.send(FanOutMessage::Entry(entry)).await?;
                }
                if !full {
                    break;
                }
            }
            if recovered > 0 {
                info!(%tenant, recovered, "Recovered fan-out entries from the replay log after a reconnect.");
                metrics::counter!(REDIS_FANOUT_GAP_RECOVERIES_TOTAL, "result" => "recovered").increment(1);
                metrics::counter!(REDIS_FANOUT_RECOVERED_TOTAL).increment(recovered);
            }
        }
        Ok(())
    }

    /// The log cannot cover `tenant`'s gap: its subscribers reload, and delivery goes on
    /// after the log's head (or from whatever comes, when the log is empty).
    async fn give_up(&mut self, tenant: &TenantId, head: Option<EventId>) -> Result<(), Exit> {
        warn!(%tenant, head = head.map(|h| h.to_string()), "The replay log no longer covers this node's gap; the tenant's subscribers reload.");
        metrics::counter!(REDIS_FANOUT_GAP_RECOVERIES_TOTAL, "result" => "reset").increment(1);
        let msg = match head {
            Some(id) => {
                self.last.insert(tenant.clone(), id);
                FanOutMessage::Entry(LogEntry::Gap {
                    tenant: tenant.clone(),
                    id,
                })
            }
            None => {
                self.last.remove(tenant);
                FanOutMessage::Lost {
                    tenant: Some(tenant.clone()),
                    skipped: 0,
                }
            }
        };
        self.send(msg).await
    }

    /// Hands a message to the hub, waiting for room (used by recovery only).
    async fn send(&mut self, msg: FanOutMessage) -> Result<(), Exit> {
        if let Some(skipped) = self.pending_lost.take() {
            self.send_one(FanOutMessage::Lost {
                tenant: None,
                skipped,
            })
            .await?;
        }
        self.send_one(msg).await
    }

    async fn send_one(&self, msg: FanOutMessage) -> Result<(), Exit> {
        tokio::select! {
            biased;
            () = self.tx.closed() => Err(Exit::ReceiverGone),
            permit = self.tx.reserve() => match permit {
                Ok(permit) => {
                    permit.send(msg);
                    Ok(())
                }
                Err(_) => Err(Exit::ReceiverGone),
            },
        }
    }

    /// Forwards messages from a subscribed connection until it fails or the receiver goes.
    async fn pump(&mut self, pubsub: PubSub) -> Exit {
        // Split so the health check can `PING` while messages are being read.
        let (mut sink, mut messages) = pubsub.split();
        let interval = self.setup.health_check;
        let mut health = tokio::time::interval_at(Instant::now() + interval, interval);
        health.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        loop {
            let msg = tokio::select! {
                biased;
                () = self.tx.closed() => return Exit::ReceiverGone,
                // Report a gap as soon as there is room, even if no further message comes.
                permit = self.tx.reserve(), if self.pending_lost.is_some() => {
                    let Ok(permit) = permit else { return Exit::ReceiverGone };
                    let skipped = self.pending_lost.take().unwrap_or(0);
                    permit.send(FanOutMessage::Lost { tenant: None, skipped });
                    continue;
                }
                msg = messages.next() => msg,
                // Only reached when no message is waiting: a busy channel proves itself alive.
                _ = health.tick() => {
                    match tokio::time::timeout(HEALTH_CHECK_TIMEOUT, sink.ping::<redis::Value>()).await {
                        Ok(Ok(_)) => continue,
                        Ok(Err(e)) => return Exit::Disconnected(format!("PING failed: {e}")),
                        Err(_) => {
                            return Exit::Disconnected(format!("no PING answer within {HEALTH_CHECK_TIMEOUT:?}"));
                        }
                    }
                }
            };
            // Handled after the `select!` so its futures (which borrow `self.tx`) are gone.
            let Some(msg) = msg else {
                return Exit::Disconnected("connection closed".into());
            };
            if self.forward(&msg).is_err() {
                return Exit::ReceiverGone;
            }
        }
    }

    /// Decodes one message and hands it to the hub without waiting: a full buffer drops it
    /// and records the gap instead, so Redis is always read at full speed.
    fn forward(&mut self, msg: &Msg) -> Result<(), Closed> {
        let payload = msg.get_payload_bytes();
        let decoded = self
            .setup
            .keys
            .tenant_of_channel(msg.get_channel_name())
            .ok_or_else(|| format!("unexpected channel {}", msg.get_channel_name()))
            .and_then(|tenant| wire::decode_message(&tenant, payload));
        let entry = match decoded {
            Ok(entry) => entry,
            Err(error) => {
                self.malformed += 1;
                metrics::counter!(REDIS_FANOUT_MALFORMED_TOTAL).increment(1);
                // Something else publishes on our channels, or a newer node uses a format
                // this one cannot read: worth a log line, not a dead subscription. The
                // first and every 1000th are logged so a flood cannot drown the log.
                if self.malformed == 1 || self.malformed.is_multiple_of(1000) {
                    warn!(
                        channel = msg.get_channel_name(),
                        %error,
                        bytes = payload.len(),
                        total = self.malformed,
                        "Skipping an undecodable fan-out message."
                    );
                }
                return Ok(());
            }
        };
        let tenant = entry.tenant();
        if self.last.get(tenant).is_some_and(|last| entry.id() <= *last) {
            return Ok(()); // Already forwarded by the recovery.
        }
        self.last.insert(tenant.clone(), entry.id());
        if let Some(skipped) = self.pending_lost {
            match self.tx.try_send(FanOutMessage::Lost {
                tenant: None,
                skipped,
            }) {
                Ok(()) => self.pending_lost = None,
                Err(TrySendError::Full(_)) => {
                    self.record_drop();
                    return Ok(());
                }
                Err(TrySendError::Closed(_)) => return Err(Closed),
            }
        }
        match self.tx.try_send(FanOutMessage::Entry(entry)) {
            Ok(()) => Ok(()),
            Err(TrySendError::Full(_)) => {
                self.record_drop();
                Ok(())
            }
            Err(TrySendError::Closed(_)) => Err(Closed),
        }
    }

    fn record_drop(&mut self) {
        *self.pending_lost.get_or_insert(0) += 1;
        metrics::counter!(REDIS_FANOUT_DROPPED_TOTAL).increment(1);
    }
}

/// `fut`, failing after `limit`.
async fn with_timeout<T>(
    limit: Duration,
    fut: impl Future<Output = redis::RedisResult<T>>,
) -> Result<T, String> {
    match tokio::time::timeout(limit, fut).await {
        Ok(Ok(value)) => Ok(value),
        Ok(Err(e)) => Err(e.to_string()),
        Err(_) => Err(format!("no answer within {limit:?}")),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn backoff_doubles_with_jitter_up_to_the_cap() {
        let backoff = Backoff {
            initial_ms: 100,
            max_ms: 5000,
        };
        for _ in 0..100 {
            for (failures, base) in [
                (0, 100),
                (1, 200),
                (2, 400),
                (5, 3200),
                (6, 5000),
                (63, 5000),
                (u32::MAX, 5000),
            ] {
                let ms = backoff.delay(failures).as_millis() as u64;
                assert!(
                    (base / 2..=base).contains(&ms),
                    "delay {ms} ms after {failures} failures is outside {}..={base}",
                    base / 2
                );
            }
        }
        let tiny = Backoff {
            initial_ms: 1,
            max_ms: 1,
        };
        assert!(tiny.delay(0) <= Duration::from_millis(1));
    }
}
