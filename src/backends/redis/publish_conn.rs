//! The connection appends go through (publishes and gap markers): one multiplexed
//! connection per fan-out, shared by every caller, so that concurrent publishes are
//! pipelined on one socket instead of each checking a connection out of a pool. A pooled
//! checkout costs a second round trip (deadpool-redis `PING`s a connection when it is
//! recycled), which doubled a publish's latency (docs/performance.md).
//!
//! # Reconnecting
//!
//! The connection is opened on first use (building a fan-out does no I/O). When a command
//! on it fails other than by an error reply from Redis (the connection dropped, Redis
//! restarted, no answer within the command timeout), it is discarded and the next caller
//! opens a new one. Opening is single-flight: callers that arrive meanwhile wait for that
//! attempt instead of opening connections of their own. After a failed attempt the next
//! one waits a backoff delay (the subscription's `reconnect_backoff_*`, doubled per
//! failure, with jitter); a caller whose command timeout ends before that fails at once.
//! Every wait is bounded by the caller's deadline, so a publish never takes longer than
//! the command timeout — failure semantics are the pool's: a failed publish is a gap
//! (`gaps.rs`).

use std::sync::Mutex;

use deadpool_redis::redis::aio::MultiplexedConnection;
use deadpool_redis::redis::{self, AsyncConnectionConfig};
use fleetwire_actors::telemetry::REDIS_FANOUT_CONNECTS_TOTAL;
use tokio::time::Instant;
use tracing::{info, warn};

use super::reader::Backoff;

/// The shared connection, reopened after failures.
#[derive(Debug)]
pub(crate) struct PublishConnection {
    /// Opens the connection.
    client: redis::Client,
    /// Spacing of reconnect attempts after failures.
    backoff: Backoff,
    /// The current connection and the reconnect state; locked only briefly, never across
    /// an `.await`.
    state: Mutex<State>,
    /// Held while a connection is being opened, so only one caller opens it.
    connecting: tokio::sync::Mutex<()>,
}

#[derive(Debug, Default)]
struct State {
    /// The open connection and its generation (so that a caller discards only the
    /// connection it used, not a fresh one another caller opened since).
    conn: Option<(u64, MultiplexedConnection)>,
    /// Generation of the last connection opened.
    generation: u64,
    /// Failed attempts since the last success; sets the backoff.
    failures: u32,
    /// No attempt before this instant (set after a failed attempt).
    retry_at: Option<Instant>,
}

/// A connection handed to a caller, tagged with its generation for [`PublishConnection::discard`].
#[derive(Debug)]
pub(crate) struct Lease {
    /// Generation of `conn`.
    pub(crate) generation: u64,
    /// A clone of the shared connection (clones share the socket).
    pub(crate) conn: MultiplexedConnection,
}

impl PublishConnection {
    pub(crate) fn new(client: redis::Client, backoff: Backoff) -> Self {
        Self {
            client,
            backoff,
            state: Mutex::default(),
            connecting: tokio::sync::Mutex::new(()),
        }
    }

    /// The shared connection, opened (or reopened) if there is none; fails when that does
    /// not succeed before `deadline`, or at once when the backoff delay ends after it.
    pub(crate) async fn get(&self, deadline: Instant) -> Result<Lease, String> {
        if let Some(lease) = self.current() {
            return Ok(lease);
        }
        let no_answer = || "no connection before the command timeout".to_owned();
        let _opening = tokio::time::timeout_at(deadline, self.connecting.lock())
            .await
            .map_err(|_| no_answer())?;
        // Whoever held the lock before may have opened it.
        if let Some(lease) = self.current() {
            return Ok(lease);
        }
        let retry_at = self.lock().retry_at;
        if let Some(at) = retry_at {
            if at >= deadline {
                return Err(format!(
                    "reconnecting in {:?} (after failed attempts)",
                    at.saturating_duration_since(Instant::now())
                ));
            }
            tokio::time::sleep_until(at).await;
        }
        let remaining = deadline.saturating_duration_since(Instant::now());
        if remaining.is_zero() {
            return Err(no_answer());
        }
        let config = AsyncConnectionConfig::new()
            .set_connection_timeout(Some(remaining))
            // Callers bound each command by their own deadline.
            .set_response_timeout(None);
        let opened = self
            .client
            .get_multiplexed_async_connection_with_config(&config)
            .await;
        let mut state = self.lock();
        match opened {
            Ok(conn) => {
                metrics::counter!(REDIS_FANOUT_CONNECTS_TOTAL, "connection" => "publish", "result" => "ok")
                    .increment(1);
                if state.failures > 0 {
                    info!(failures = state.failures, "Publish connection to Redis reopened.");
                }
                state.generation += 1;
                state.failures = 0;
                state.retry_at = None;
                state.conn = Some((state.generation, conn.clone()));
                Ok(Lease {
                    generation: state.generation,
                    conn,
                })
            }
            Err(error) => {
                metrics::counter!(REDIS_FANOUT_CONNECTS_TOTAL, "connection" => "publish", "result" => "error")
                    .increment(1);
                if state.failures == 0 {
                    warn!(%error, "Cannot open the publish connection to Redis; retrying with backoff.");
                }
                state.retry_at = Some(Instant::now() + self.backoff.delay(state.failures));
                state.failures = state.failures.saturating_add(1);
                Err(format!("cannot connect: {error}"))
            }
        }
    }

    /// Drops the connection of `generation` if it is still the current one, after a
    /// command on it failed in a way that may have left it unusable.
    pub(crate) fn discard(&self, generation: u64) {
        let mut state = self.lock();
        if state.conn.as_ref().is_some_and(|(g, _)| *g == generation) {
            state.conn = None;
        }
    }

    /// Whether a command failure leaves the connection in doubt: anything but an error
    /// reply from Redis (which proves the connection works).
    pub(crate) fn breaks_connection(error: &redis::RedisError) -> bool {
        error.code().is_none()
    }

    fn current(&self) -> Option<Lease> {
        self.lock().conn.as_ref().map(|(generation, conn)| Lease {
            generation: *generation,
            conn: conn.clone(),
        })
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, State> {
        self.state.lock().expect("publish connection lock never poisoned")
    }
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use super::*;

    fn unreachable() -> PublishConnection {
        // Nothing listens on port 1 of loopback: every attempt is refused at once.
        PublishConnection::new(
            redis::Client::open("redis://127.0.0.1:1/").unwrap(),
            Backoff {
                initial_ms: 400,
                max_ms: 400,
            },
        )
    }

    #[tokio::test]
    async fn a_failed_attempt_delays_the_next_and_short_deadlines_fail_at_once() {
        let conn = unreachable();
        let deadline = Instant::now() + Duration::from_secs(2);
        assert!(
            conn.get(deadline)
                .await
                .unwrap_err()
                .starts_with("cannot connect")
        );
        // The backoff (200–400 ms) ends after a 50 ms deadline: no attempt, no wait.
        let started = Instant::now();
        let err = conn
            .get(Instant::now() + Duration::from_millis(50))
            .await
            .unwrap_err();
        assert!(err.starts_with("reconnecting in"), "{err}");
        assert!(started.elapsed() < Duration::from_millis(50));
        // A longer deadline waits for the backoff, then tries again.
        let started = Instant::now();
        let err = conn
            .get(Instant::now() + Duration::from_secs(2))
            .await
            .unwrap_err();
        assert!(err.starts_with("cannot connect"), "{err}");
        assert!(
            started.elapsed() >= Duration::from_millis(150),
            "{:?}",
            started.elapsed()
        );
        assert_eq!(conn.lock().failures, 2);
    }

    #[test]
    fn only_error_replies_keep_the_connection() {
        let reply =
            redis::RedisError::from((redis::ErrorKind::Server(redis::ServerErrorKind::NoScript), "no"));
        assert!(!PublishConnection::breaks_connection(&reply));
        let dropped = redis::RedisError::from(std::io::Error::from(std::io::ErrorKind::BrokenPipe));
        assert!(PublishConnection::breaks_connection(&dropped));
    }
}
