//! [`RedisFanOut`]: publishes through the batched appender (`append.rs`, the script in
//! `wire.rs`), replays from the tenants' logs (`log.rs`), and hands each subscription to a
//! reader task (`reader.rs`). Appends go through one shared multiplexed connection
//! (`publish_conn.rs`); replays, `PING` and recovery reads through a pool. Failed
//! publishes are recorded as gaps (`gaps.rs`).

use std::fmt;
use std::sync::Arc;
use std::time::{Duration, Instant};

use async_trait::async_trait;
use deadpool_redis::redis;
use deadpool_redis::{PoolConfig, Runtime, Timeouts};
use fleetwire_actors::model::{TenantId, VehicleUpdate};
use fleetwire_actors::ports::{EventId, FanOut, FanOutError, FanOutMessage, Replay, ReplayRetention};
use fleetwire_actors::telemetry::REDIS_FANOUT_PUBLISH_SECONDS;
use futures_util::StreamExt;
use futures_util::stream::BoxStream;
use tokio::sync::{mpsc, watch};
use tokio_stream::wrappers::ReceiverStream;

use super::append::Appender;
use super::gaps::{self, Gaps};
use super::keys::Keys;
use super::publish_conn::PublishConnection;
use super::reader::{Backoff, Counts, LiveGuard, Reader, ReaderSetup};
use super::wire::FIELD_UPDATE;
use super::{RedisConfig, RedisError, log, redact_url};

/// How often an idle subscription `PING`s Redis. A quiet channel is otherwise
/// indistinguishable from a half-open TCP connection (a Redis host that vanished without
/// closing it), which would silently stop all updates to this node.
const HEALTH_CHECK_INTERVAL: Duration = Duration::from_secs(10);
/// How long the pool may take to open a new connection (also bounded by the command
/// timeout around every call).
const POOL_CREATE_TIMEOUT: Duration = Duration::from_secs(2);
/// How long the pool's health check of a returning connection (a `PING`) may take.
const POOL_RECYCLE_TIMEOUT: Duration = Duration::from_secs(1);

/// [`FanOut`] over Redis Streams and pub/sub. Cheap to clone; clones share the pool, the
/// publish connection, the gap state and the subscription state.
#[derive(Clone)]
pub struct RedisFanOut {
    appender: Appender,
    /// Opens the dedicated pub/sub connections.
    client: redis::Client,
    prefix: Arc<str>,
    retention: ReplayRetention,
    /// Capacity of each subscription's buffer.
    buffer: usize,
    backoff: Backoff,
    /// How often an idle subscription pings Redis ([`HEALTH_CHECK_INTERVAL`]).
    health_check: Duration,
    /// Live and subscribed reader tasks; a watch channel so readiness can be awaited.
    state: Arc<watch::Sender<Counts>>,
    gaps: Arc<Gaps>,
}

impl fmt::Debug for RedisFanOut {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("RedisFanOut")
            .field("prefix", &self.prefix)
            .field("retention", &self.retention)
            .field("buffer", &self.buffer)
            .field("subscriptions", &*self.state.borrow())
            .field("down", &self.gaps.is_down())
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
        let timeout = config.command_timeout();
        let pool = deadpool_redis::Config {
            url: Some(config.url.clone()),
            connection: None,
            pool: Some(PoolConfig {
                max_size: config.pool_size,
                timeouts: Timeouts {
                    // Without a wait bound a burst of publishes against a stalled Redis
                    // would queue without limit instead of failing.
                    wait: Some(timeout),
                    create: Some(POOL_CREATE_TIMEOUT.min(timeout)),
                    recycle: Some(POOL_RECYCLE_TIMEOUT.min(timeout)),
                },
                queue_mode: Default::default(),
            }),
        }
        .create_pool(Some(Runtime::Tokio1))?;
        let backoff = Backoff {
            initial_ms: config.reconnect_backoff_initial_ms,
            max_ms: config.reconnect_backoff_max_ms,
        };
        let retention = config.replay_retention();
        let max_age_ms = retention.max_age.map_or(0, |age| age.as_millis());
        Ok(Self {
            appender: Appender::new(
                pool,
                PublishConnection::new(client.clone(), backoff),
                Arc::new(Keys::new(&config.key_prefix)),
                retention.max_events,
                max_age_ms,
                timeout,
            ),
            client,
            prefix: config.key_prefix.as_str().into(),
            retention,
            buffer: config.subscription_buffer,
            backoff,
            health_check: HEALTH_CHECK_INTERVAL,
            state: Arc::new(watch::Sender::new(Counts::default())),
            gaps: Arc::default(),
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

    /// The pub/sub channel of `tenant`'s updates.
    pub fn channel(&self, tenant: &TenantId) -> String {
        self.appender.keys().channel(tenant)
    }

    /// The key of `tenant`'s replay log (a stream).
    pub fn log_key(&self, tenant: &TenantId) -> String {
        self.appender.keys().log(tenant)
    }

    /// The pattern every subscription subscribes to.
    pub fn pattern(&self) -> String {
        self.appender.keys().pattern()
    }

    /// `true` when there is at least one subscription and every subscription is currently
    /// subscribed and caught up; for `/readyz` (a node whose hub is reconnecting misses
    /// updates until it has recovered them).
    pub fn is_subscribed(&self) -> bool {
        let counts = *self.state.borrow();
        counts.live > 0 && counts.subscribed == counts.live
    }

    /// Number of subscriptions whose reader task is running (subscribed or reconnecting).
    /// Drops when a subscription's stream is dropped and its task has ended.
    pub fn subscription_count(&self) -> usize {
        self.state.borrow().live
    }

    /// Whether publishes currently fail at once because earlier ones failed and the
    /// owed gap markers are not written yet (`gaps.rs`).
    pub fn is_down(&self) -> bool {
        self.gaps.is_down()
    }

    /// Waits until every subscription opened so far is subscribed and caught up (at once
    /// when there are none). Returns `false` if that did not happen within `timeout`.
    /// Useful before publishing something a fresh subscription must see live.
    pub async fn wait_until_all_subscribed(&self, timeout: Duration) -> bool {
        let mut rx = self.state.subscribe();
        // `wait_for` only fails when the sender is gone, and `self` holds it.
        matches!(
            tokio::time::timeout(timeout, rx.wait_for(|c| c.subscribed == c.live)).await,
            Ok(Ok(_))
        )
    }

    /// Records a lost update of `tenant` (see `gaps.rs`) and starts the retry task if it
    /// is not running.
    fn lost(&self, tenant: &TenantId) {
        if self.gaps.lost(tenant) {
            tokio::spawn(gaps::retry(
                Arc::downgrade(&self.gaps),
                self.appender.clone(),
                self.backoff,
            ));
        }
    }
}

#[async_trait]
impl FanOut for RedisFanOut {
    fn is_subscribed(&self) -> bool {
        RedisFanOut::is_subscribed(self)
    }

    async fn publish(&self, update: Arc<VehicleUpdate>) -> Result<EventId, FanOutError> {
        let tenant = &update.tenant;
        if self.gaps.is_down() {
            self.lost(tenant);
            return Err(FanOutError::Unavailable(
                "redis fan-out is down (earlier publishes failed); the update is recorded as a gap".into(),
            ));
        }
        let payload = serde_json::to_vec(&*update)
            .map_err(|e| FanOutError::Unavailable(format!("cannot serialize the update: {e}")))?;
        let started = Instant::now();
        match self.appender.append(tenant, FIELD_UPDATE, payload).await {
            Ok(id) => {
                metrics::histogram!(REDIS_FANOUT_PUBLISH_SECONDS).record(started.elapsed().as_secs_f64());
                Ok(id)
            }
            Err(error) => {
                self.lost(tenant);
                Err(FanOutError::Unavailable(format!("redis publish: {error}")))
            }
        }
    }

    /// Spawns the reader task; must be called within a Tokio runtime (the hub calls it from
    /// its actor's `started`, on an actix arbiter).
    fn subscribe(&self) -> BoxStream<'static, FanOutMessage> {
        let (tx, rx) = mpsc::channel(self.buffer);
        // Counted here rather than in the task so that `wait_until_all_subscribed` right
        // after `subscribe()` already waits for this subscription.
        let live = LiveGuard::new(self.state.clone());
        let reader = Reader::new(
            ReaderSetup {
                client: self.client.clone(),
                pool: self.appender.pool.clone(),
                keys: self.appender.keys().clone(),
                prefix: self.prefix.clone(),
                retention: self.retention,
                command_timeout: self.appender.timeout,
                backoff: self.backoff,
                health_check: self.health_check,
                state: self.state.clone(),
            },
            tx,
        );
        tokio::spawn(async move {
            // Moved in so the count drops even if the task is cancelled before it runs.
            let _live = live;
            reader.run().await;
        });
        ReceiverStream::new(rx).boxed()
    }

    async fn replay(&self, tenant: &TenantId, after: EventId, limit: usize) -> Result<Replay, FanOutError> {
        let a = &self.appender;
        let call = async {
            let mut conn = a.pool.get().await.map_err(|e| format!("no connection: {e}"))?;
            log::read(&mut conn, a.keys(), &self.retention, tenant, after, limit)
                .await
                .map_err(|e| format!("reading the log failed: {e}"))
        };
        match tokio::time::timeout(a.timeout, call).await {
            Ok(result) => result.map_err(|e| FanOutError::Unavailable(format!("redis replay: {e}"))),
            Err(_) => Err(FanOutError::Unavailable(format!(
                "redis replay: no answer within {:?}",
                a.timeout
            ))),
        }
    }

    async fn ping(&self) -> Result<(), FanOutError> {
        let a = &self.appender;
        let call = async {
            let mut conn = a.pool.get().await.map_err(|e| format!("no connection: {e}"))?;
            redis::cmd("PING")
                .query_async::<String>(&mut conn)
                .await
                .map_err(|e| format!("PING failed: {e}"))
        };
        match tokio::time::timeout(a.timeout, call).await {
            Ok(Ok(_)) => Ok(()),
            Ok(Err(e)) => Err(FanOutError::Unavailable(format!("redis {e}"))),
            Err(_) => Err(FanOutError::Unavailable(format!(
                "redis PING: no answer within {:?}",
                a.timeout
            ))),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn new_does_no_io_and_checks_its_input() {
        // Port 1 on loopback refuses connections; building must still succeed.
        let fanout = RedisFanOut::new(&RedisConfig {
            url: "redis://127.0.0.1:1/".into(),
            key_prefix: "t".into(),
            ..RedisConfig::default()
        })
        .unwrap();
        assert_eq!(fanout.channel(&TenantId::default()), "t:t:default:updates");
        assert_eq!(fanout.log_key(&TenantId::default()), "t:t:default:log");
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
