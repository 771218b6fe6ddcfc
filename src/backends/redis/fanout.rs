//! Fan-out over Redis pub/sub: every node `PUBLISH`es its vehicles' updates (as JSON) to
//! `<key_prefix>:updates`, and each subscription reads that channel on a connection of its
//! own.
//!
//! # The subscription
//!
//! [`FanOut::subscribe`] spawns one reader task per call (the hub calls it once per node).
//! The task owns a dedicated pub/sub connection, because a connection in subscribed mode
//! cannot serve other commands and must not go back into the pool. It decodes each message
//! and forwards it into a bounded `tokio::sync::mpsc` channel whose receiver is the stream
//! handed to the hub:
//!
//! - **Buffer full**: the message is dropped and counted, and `Lagged(n)` goes out as
//!   soon as there is room, before any later update. The hub then tells its subscribers
//!   to reload, so a slow hub never means a silent gap, and a slow hub never makes Redis
//!   buffer for us (Redis disconnects pub/sub clients whose output buffer grows too
//!   large).
//! - **Connection lost** (Redis restarted, connection killed, no `PING` answer): the task
//!   reconnects with exponential backoff and jitter, forever, and after the `SUBSCRIBE` is
//!   confirmed again it emits `Lagged(0)`: whatever was published meanwhile is lost and
//!   the count is unknown. (The replay log that recovers those messages comes later.)
//! - **Undecodable message**: logged and counted, then skipped.
//! - **Stream dropped**: the task notices at once (even while it sleeps or connects),
//!   closes its connection and ends, so Redis forgets the subscription.
//!
//! Messages published before the `SUBSCRIBE` is confirmed are not delivered: that is what
//! pub/sub means. [`RedisFanOut::is_subscribed`] and
//! [`RedisFanOut::wait_until_all_subscribed`] tell when the subscription is live.

use fleetwire_actors::telemetry::{
    REDIS_FANOUT_CONNECTS_TOTAL, REDIS_FANOUT_DROPPED_TOTAL, REDIS_FANOUT_MALFORMED_TOTAL,
    REDIS_FANOUT_SUBSCRIPTIONS,
};
use std::fmt;
use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;
use deadpool_redis::redis::aio::PubSub;
use deadpool_redis::redis::{self, Msg};
use deadpool_redis::{Pool, PoolConfig, Runtime, Timeouts};
use futures_util::StreamExt;
use futures_util::stream::BoxStream;
use rand::Rng;
use tokio::sync::mpsc::error::TrySendError;
use tokio::sync::{mpsc, watch};
use tokio::time::Instant;
use tokio_stream::wrappers::ReceiverStream;
use tracing::{debug, info, warn};

use fleetwire_actors::model::VehicleUpdate;
use fleetwire_actors::ports::{FanOut, FanOutError, FanOutMessage};

use super::{RedisConfig, RedisError, redact_url};

/// Bound on opening a pub/sub connection and having its `SUBSCRIBE` confirmed: a
/// blackholed address would otherwise stall the reconnect loop indefinitely.
const CONNECT_TIMEOUT: Duration = Duration::from_secs(5);
/// How often an idle subscription `PING`s Redis. A quiet channel is otherwise
/// indistinguishable from a half-open TCP connection (a Redis host that vanished without
/// closing it), which would silently stop all updates to this node.
const HEALTH_CHECK_INTERVAL: Duration = Duration::from_secs(10);
/// How long a subscription waits for the answer to its `PING` before reconnecting.
const HEALTH_CHECK_TIMEOUT: Duration = Duration::from_secs(5);
/// How long `publish`/`ping` wait for a free pooled connection. Without it a burst of
/// publishes against a stalled Redis would queue without bound instead of failing.
const POOL_WAIT_TIMEOUT: Duration = Duration::from_secs(2);
/// How long the pool may take to open a new connection.
const POOL_CREATE_TIMEOUT: Duration = Duration::from_secs(2);
/// How long the pool's health check of a returning connection (a `PING`) may take.
const POOL_RECYCLE_TIMEOUT: Duration = Duration::from_secs(1);

/// [`FanOut`] over Redis pub/sub. Cheap to clone; clones share the pool and the
/// subscription state.
#[derive(Clone)]
pub struct RedisFanOut {
    /// Connections for `PUBLISH` and `PING`.
    pool: Pool,
    /// Opens the dedicated pub/sub connections.
    client: redis::Client,
    /// `<key_prefix>:updates`.
    channel: Arc<str>,
    /// Capacity of each subscription's buffer.
    buffer: usize,
    backoff: Backoff,
    /// How often an idle subscription pings Redis ([`HEALTH_CHECK_INTERVAL`]).
    health_check: Duration,
    /// Live and subscribed reader tasks; a watch channel so readiness can be awaited.
    state: Arc<watch::Sender<Counts>>,
}

impl fmt::Debug for RedisFanOut {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("RedisFanOut")
            .field("channel", &self.channel)
            .field("buffer", &self.buffer)
            .field("subscriptions", &*self.state.borrow())
            .finish_non_exhaustive()
    }
}

impl RedisFanOut {
    /// Builds the fan-out. Does no network I/O: the pool connects on first use and each
    /// subscription connects in its own task, so this succeeds while Redis is down.
    ///
    /// # Errors
    ///
    /// [`RedisError::InvalidConfig`] for values that cannot work, [`RedisError::InvalidUrl`]
    /// when `url` does not parse, [`RedisError::Pool`] when the pool cannot be built.
    pub fn new(config: &RedisConfig) -> Result<Self, RedisError> {
        config.validate()?;
        let client = redis::Client::open(config.url.as_str()).map_err(|source| RedisError::InvalidUrl {
            url: redact_url(&config.url),
            source,
        })?;
        let pool = deadpool_redis::Config {
            url: Some(config.url.clone()),
            connection: None,
            pool: Some(PoolConfig {
                max_size: config.pool_size,
                timeouts: Timeouts {
                    wait: Some(POOL_WAIT_TIMEOUT),
                    create: Some(POOL_CREATE_TIMEOUT),
                    recycle: Some(POOL_RECYCLE_TIMEOUT),
                },
                queue_mode: Default::default(),
            }),
        }
        .create_pool(Some(Runtime::Tokio1))?;
        Ok(Self {
            pool,
            client,
            channel: config.updates_channel().into(),
            buffer: config.subscription_buffer,
            backoff: Backoff {
                initial_ms: config.reconnect_backoff_initial_ms,
                max_ms: config.reconnect_backoff_max_ms,
            },
            health_check: HEALTH_CHECK_INTERVAL,
            state: Arc::new(watch::Sender::new(Counts::default())),
        })
    }

    /// Changes how often an idle subscription `PING`s Redis (default 10 s) for
    /// subscriptions opened afterwards. Only for tests, which cannot wait that long to see
    /// the health check at work.
    #[doc(hidden)]
    #[must_use]
    pub fn with_health_check_interval(mut self, interval: Duration) -> Self {
        self.health_check = interval;
        self
    }

    /// The pub/sub channel this fan-out publishes to and subscribes on.
    pub fn channel(&self) -> &str {
        &self.channel
    }

    /// `true` when there is at least one subscription and every subscription is currently
    /// subscribed; for `/readyz` (a node whose hub is reconnecting misses updates).
    pub fn is_subscribed(&self) -> bool {
        let counts = *self.state.borrow();
        counts.live > 0 && counts.subscribed == counts.live
    }

    /// Number of subscriptions whose reader task is running (subscribed or reconnecting).
    /// Drops when a subscription's stream is dropped and its task has ended.
    pub fn subscription_count(&self) -> usize {
        self.state.borrow().live
    }

    /// Waits until every subscription opened so far is subscribed (at once when there are
    /// none). Returns `false` if that did not happen within `timeout`. Useful before
    /// publishing something a fresh subscription must see, since pub/sub does not deliver
    /// what was published before the `SUBSCRIBE` took effect.
    pub async fn wait_until_all_subscribed(&self, timeout: Duration) -> bool {
        let mut rx = self.state.subscribe();
        // `wait_for` only fails when the sender is gone, and `self` holds it.
        matches!(
            tokio::time::timeout(timeout, rx.wait_for(|c| c.subscribed == c.live)).await,
            Ok(Ok(_))
        )
    }

    /// A pooled connection, or `Unavailable` saying what failed.
    async fn connection(&self, what: &str) -> Result<deadpool_redis::Connection, FanOutError> {
        self.pool
            .get()
            .await
            .map_err(|e| FanOutError::Unavailable(format!("redis {what}: no connection: {e}")))
    }
}

#[async_trait]
impl FanOut for RedisFanOut {
    fn is_subscribed(&self) -> bool {
        RedisFanOut::is_subscribed(self)
    }

    async fn publish(&self, update: Arc<VehicleUpdate>) -> Result<(), FanOutError> {
        let payload = serde_json::to_vec(&*update)
            .map_err(|e| FanOutError::Unavailable(format!("cannot serialize the update: {e}")))?;
        let mut conn = self.connection("PUBLISH").await?;
        // The reply is the number of nodes that received it; zero is fine (no node has a
        // subscription right now), so it is not checked.
        redis::cmd("PUBLISH")
            .arg(&*self.channel)
            .arg(payload)
            .query_async::<i64>(&mut conn)
            .await
            .map_err(|e| FanOutError::Unavailable(format!("redis PUBLISH failed: {e}")))?;
        Ok(())
    }

    /// Spawns the reader task; must be called within a Tokio runtime (the hub calls it from
    /// its actor's `started`, on an actix arbiter).
    fn subscribe(&self) -> BoxStream<'static, FanOutMessage> {
        let (tx, rx) = mpsc::channel(self.buffer);
        // Counted here rather than in the task so that `wait_until_all_subscribed` right
        // after `subscribe()` already waits for this subscription.
        let live = LiveGuard::new(self.state.clone());
        let reader = Reader {
            client: self.client.clone(),
            channel: self.channel.clone(),
            backoff: self.backoff,
            health_check: self.health_check,
            state: self.state.clone(),
            tx,
            pending_lag: None,
            malformed: 0,
        };
        tokio::spawn(async move {
            // Moved in so the count drops even if the task is cancelled before it runs.
            let _live = live;
            reader.run().await;
        });
        ReceiverStream::new(rx).boxed()
    }

    async fn ping(&self) -> Result<(), FanOutError> {
        let mut conn = self.connection("PING").await?;
        redis::cmd("PING")
            .query_async::<String>(&mut conn)
            .await
            .map_err(|e| FanOutError::Unavailable(format!("redis PING failed: {e}")))?;
        Ok(())
    }
}

/// Reader tasks of one [`RedisFanOut`]: running, and of those, subscribed right now.
#[derive(Debug, Default, Clone, Copy)]
struct Counts {
    live: usize,
    subscribed: usize,
}

/// Counts a reader task as live for as long as it exists.
struct LiveGuard(Arc<watch::Sender<Counts>>);

impl LiveGuard {
    fn new(state: Arc<watch::Sender<Counts>>) -> Self {
        state.send_modify(|c| c.live += 1);
        Self(state)
    }
}

impl Drop for LiveGuard {
    fn drop(&mut self) {
        self.0.send_modify(|c| c.live -= 1);
    }
}

/// Counts a reader task as subscribed while its connection is up.
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
struct Backoff {
    initial_ms: u64,
    max_ms: u64,
}

impl Backoff {
    /// The delay after `failures` consecutive failures (0 for the first retry): a random
    /// point in the upper half of the capped exponential ("equal jitter"). The jitter keeps
    /// the nodes that lost Redis together from reconnecting in lockstep; the lower bound
    /// keeps the delay from collapsing to zero.
    fn delay(&self, failures: u32) -> Duration {
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
    /// The connection failed: reconnect.
    Disconnected(String),
}

/// Marker: the stream's receiver is gone.
struct Closed;

/// One subscription's task state.
struct Reader {
    client: redis::Client,
    channel: Arc<str>,
    backoff: Backoff,
    health_check: Duration,
    state: Arc<watch::Sender<Counts>>,
    tx: mpsc::Sender<FanOutMessage>,
    /// A gap the hub has not been told about yet: `Some(n)` after dropping `n` messages
    /// for lack of room, `Some(0)` after a reconnect (whose loss count is unknown; the
    /// two merge). Sent as `Lagged(n)` before any later update, so the hub sees the gap
    /// where it happened.
    pending_lag: Option<u64>,
    /// Undecodable messages so far (for log throttling).
    malformed: u64,
}

impl Reader {
    /// Connects, pumps, reconnects; returns only when the stream's receiver is dropped.
    async fn run(mut self) {
        let channel = self.channel.clone();
        let mut failures: u32 = 0;
        let mut was_subscribed = false;
        loop {
            let attempt = tokio::select! {
                biased;
                () = self.tx.closed() => break,
                result = tokio::time::timeout(CONNECT_TIMEOUT, connect(&self.client, &channel)) => {
                    result.unwrap_or_else(|_| Err(format!("no answer within {CONNECT_TIMEOUT:?}")))
                }
            };
            match attempt {
                Ok(pubsub) => {
                    metrics::counter!(REDIS_FANOUT_CONNECTS_TOTAL, "result" => "ok").increment(1);
                    if was_subscribed || failures > 0 {
                        // Whatever was published while this node was not subscribed is gone.
                        self.pending_lag.get_or_insert(0);
                        info!(
                            %channel,
                            failures, "Redis fan-out subscription re-established; subscribers will reload."
                        );
                    } else {
                        debug!(%channel, "Redis fan-out subscribed.");
                    }
                    was_subscribed = true;
                    let since = Instant::now();
                    let exit = {
                        let _subscribed = SubscribedGuard::new(self.state.clone());
                        self.pump(pubsub).await
                    };
                    match exit {
                        Exit::ReceiverGone => break,
                        Exit::Disconnected(why) => {
                            warn!(%channel, reason = %why, "Redis fan-out subscription lost; reconnecting.");
                        }
                    }
                    // A connection that held for a while was healthy, so the next attempt
                    // starts the backoff afresh. One that dropped at once (a flapping
                    // server) keeps backing off, so subscribers are not told to reload
                    // many times a second.
                    if since.elapsed() >= self.backoff.max() {
                        failures = 0;
                    }
                }
                Err(error) => {
                    metrics::counter!(REDIS_FANOUT_CONNECTS_TOTAL, "result" => "error").increment(1);
                    warn!(%channel, %error, failures, "Redis fan-out cannot subscribe; retrying.");
                }
            }
            let delay = self.backoff.delay(failures);
            failures = failures.saturating_add(1);
            tokio::select! {
                biased;
                () = self.tx.closed() => break,
                () = tokio::time::sleep(delay) => {}
            }
        }
        debug!(%channel, "Redis fan-out subscription dropped; reader task ends.");
    }

    /// Forwards messages from a subscribed connection until it fails or the receiver goes.
    async fn pump(&mut self, pubsub: PubSub) -> Exit {
        // Split so the health check can `PING` while messages are being read.
        let (mut sink, mut messages) = pubsub.split();
        let mut health = tokio::time::interval_at(Instant::now() + self.health_check, self.health_check);
        health.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        loop {
            let msg = tokio::select! {
                biased;
                () = self.tx.closed() => return Exit::ReceiverGone,
                // Report a gap as soon as there is room, even if no further message comes.
                permit = self.tx.reserve(), if self.pending_lag.is_some() => {
                    let Ok(permit) = permit else { return Exit::ReceiverGone };
                    permit.send(FanOutMessage::Lagged(self.pending_lag.take().unwrap_or(0)));
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
        let update = match serde_json::from_slice::<VehicleUpdate>(msg.get_payload_bytes()) {
            Ok(update) => update,
            Err(error) => {
                self.malformed += 1;
                metrics::counter!(REDIS_FANOUT_MALFORMED_TOTAL).increment(1);
                // Something else publishes on our channel, or a newer node uses a format
                // this one cannot read: worth a log line, not a dead subscription. The
                // first and every 1000th are logged so a flood cannot drown the log.
                if self.malformed == 1 || self.malformed.is_multiple_of(1000) {
                    warn!(
                        channel = %self.channel,
                        %error,
                        bytes = msg.get_payload_bytes().len(),
                        total = self.malformed,
                        "Skipping an undecodable fan-out message."
                    );
                }
                return Ok(());
            }
        };
        if let Some(skipped) = self.pending_lag {
            match self.tx.try_send(FanOutMessage::Lagged(skipped)) {
                Ok(()) => self.pending_lag = None,
                Err(TrySendError::Full(_)) => {
                    self.record_drop();
                    return Ok(());
                }
                Err(TrySendError::Closed(_)) => return Err(Closed),
            }
        }
        match self.tx.try_send(FanOutMessage::Update(Arc::new(update))) {
            Ok(()) => Ok(()),
            Err(TrySendError::Full(_)) => {
                self.record_drop();
                Ok(())
            }
            Err(TrySendError::Closed(_)) => Err(Closed),
        }
    }

    fn record_drop(&mut self) {
        *self.pending_lag.get_or_insert(0) += 1;
        metrics::counter!(REDIS_FANOUT_DROPPED_TOTAL).increment(1);
    }
}

/// Opens a dedicated pub/sub connection and subscribes it to `channel`; returns once
/// Redis has confirmed the subscription.
async fn connect(client: &redis::Client, channel: &str) -> Result<PubSub, String> {
    let mut pubsub = client
        .get_async_pubsub()
        .await
        .map_err(|e| format!("connect failed: {e}"))?;
    pubsub
        .subscribe(channel)
        .await
        .map_err(|e| format!("SUBSCRIBE failed: {e}"))?;
    Ok(pubsub)
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

    #[test]
    fn new_does_no_io_and_checks_its_input() {
        // Port 1 on loopback refuses connections; building must still succeed.
        let fanout = RedisFanOut::new(&RedisConfig {
            url: "redis://127.0.0.1:1/".into(),
            key_prefix: "t".into(),
            ..RedisConfig::default()
        })
        .unwrap();
        assert_eq!(fanout.channel(), "t:updates");
        assert!(!fanout.is_subscribed());
        assert_eq!(fanout.subscription_count(), 0);

        let err = RedisFanOut::new(&RedisConfig {
            url: "http://user:hunter2@host/".into(),
            ..RedisConfig::default()
        })
        .unwrap_err();
        assert!(matches!(err, RedisError::InvalidUrl { .. }), "{err:?}");
        assert!(!err.to_string().contains("hunter2"), "{err}");
        assert!(matches!(
            RedisFanOut::new(&RedisConfig {
                subscription_buffer: 0,
                ..RedisConfig::default()
            }),
            Err(RedisError::InvalidConfig(_))
        ));
    }
}
