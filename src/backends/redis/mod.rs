//! Redis backends: ports implemented on a shared Redis, so that several fleetwire nodes
//! behave as one deployment.
//!
//! - [`RedisFanOut`] (`fanout.rs`): the [`FanOut`](fleetwire_actors::ports::FanOut) port
//!   over Redis Streams and pub/sub. Every update is appended to its tenant's replay log
//!   (a stream, `<key_prefix>:t:<tenant>:log`) and published on the tenant's channel
//!   (`<key_prefix>:t:<tenant>:updates`) by one Lua script, so the live order is the log
//!   order and the stream entry id is the event id. Appends are batched (`append.rs`):
//!   one script call for whatever is queued. Each node's subscriber hub holds one
//!   pattern subscription to every tenant's channel (`reader.rs`), on a dedicated
//!   connection that reconnects by itself and then recovers what it missed from the logs.
//!
//! Key layout (`keys.rs`), wire format and scripts (`wire.rs`), log reads (`log.rs`):
//!
//! | key / channel | type | holds |
//! |---|---|---|
//! | `<prefix>:t:<tenant>:log` | stream | the tenant's replay log: entries `u` = update JSON, `gap` = lost updates |
//! | `<prefix>:t:<tenant>:updates` | channel | `<id> <field> <value>` per log entry |
//! | `<prefix>:tenants` | set | tenants that ever published (read by a reconnecting subscription) |
//!
//! Needs Redis 6.2 or newer (`XADD … MAXLEN ~`, `XTRIM MINID`, exclusive `XRANGE`), and a
//! single Redis endpoint (not Redis Cluster: the script touches several keys).
//!
//! Appends (publishes, gap markers) go through one multiplexed connection per fan-out
//! (`publish_conn.rs`), so concurrent publishes are pipelined; replays, `PING` and
//! recovery reads go through a [`deadpool_redis`] pool. Both connect lazily: building a
//! backend does no network I/O, so a node starts (and reports not-ready) while Redis is
//! down.

mod append;
mod fanout;
mod gaps;
mod keys;
mod log;
mod publish_conn;
mod reader;
mod wire;

use std::fmt;
use std::time::Duration;

use fleetwire_actors::ports::ReplayRetention;

use serde::{Deserialize, Serialize};

pub use fanout::RedisFanOut;

/// Configuration of the Redis backends.
#[derive(Clone, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct RedisConfig {
    /// Redis URL: `redis://[user:password@]host:port/[db]`, or `rediss://…` for TLS
    /// (server certificate checked against the system roots; ElastiCache in-transit
    /// encryption). Serialized (e.g. by `validate-config`) with the password masked.
    /// Default: `"redis://127.0.0.1:6379/"`.
    #[serde(serialize_with = "serialize_redacted")]
    pub url: String,
    /// Prefix of every key and channel fleetwire uses, so that several deployments (or
    /// tests) can share one Redis (layout in the module docs). Must not be empty.
    /// Default: `"fleetwire"`.
    pub key_prefix: String,
    /// Maximum number of pooled connections used for replays, recovery reads and `PING`.
    /// Publishes share one multiplexed connection and the fan-out subscription has its own,
    /// both outside the pool. At least 1.
    /// Default: 16.
    pub pool_size: usize,
    /// First delay before reconnecting a dropped subscription (or reopening the publish
    /// connection after a failed attempt), in milliseconds; each
    /// further failed attempt doubles it (with random jitter) up to
    /// `reconnect_backoff_max_ms`. At least 1. Default: 100.
    pub reconnect_backoff_initial_ms: u64,
    /// Longest delay between two reconnect attempts, in milliseconds. At least
    /// `reconnect_backoff_initial_ms`. Default: 5000.
    pub reconnect_backoff_max_ms: u64,
    /// Capacity of the bounded buffer between a subscription's Redis reader task and the
    /// subscriber hub's stream. When it is full, messages are dropped and the hub is told
    /// how many (`Lost`) as soon as there is room again. At least 1. Default: 4096.
    pub subscription_buffer: usize,
    /// Entries each tenant's replay log keeps at least (`XADD … MAXLEN ~`). 1 to
    /// 1,000,000. Default: 10,000.
    pub replay_max_events: usize,
    /// Entries older than this many seconds are trimmed and cannot be replayed; 0: no age
    /// limit. At most 86,400. Default: 600.
    pub replay_max_age_secs: u64,
    /// Longest a publish or a replay may take, pool wait or reconnect included, in
    /// milliseconds. A
    /// publish that fails or times out is not retried: it is counted, the tenant's log
    /// gets a gap marker once Redis answers again, and until then publishes fail at once
    /// instead of each waiting this long. 1 to 60,000. Default: 1000.
    pub command_timeout_ms: u64,
}

impl Default for RedisConfig {
    fn default() -> Self {
        Self {
            url: "redis://127.0.0.1:6379/".to_owned(),
            key_prefix: "fleetwire".to_owned(),
            pool_size: 16,
            reconnect_backoff_initial_ms: 100,
            reconnect_backoff_max_ms: 5000,
            subscription_buffer: 4096,
            replay_max_events: 10_000,
            replay_max_age_secs: 600,
            command_timeout_ms: 1000,
        }
    }
}

/// Written by hand rather than derived so that a password in `url` never reaches a log
/// line or an error message through `{:?}`.
impl fmt::Debug for RedisConfig {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("RedisConfig")
            .field("url", &redact_url(&self.url))
            .field("key_prefix", &self.key_prefix)
            .field("pool_size", &self.pool_size)
            .field("reconnect_backoff_initial_ms", &self.reconnect_backoff_initial_ms)
            .field("reconnect_backoff_max_ms", &self.reconnect_backoff_max_ms)
            .field("subscription_buffer", &self.subscription_buffer)
            .field("replay_max_events", &self.replay_max_events)
            .field("replay_max_age_secs", &self.replay_max_age_secs)
            .field("command_timeout_ms", &self.command_timeout_ms)
            .finish()
    }
}

impl RedisConfig {
    /// The replay logs' retention.
    pub fn replay_retention(&self) -> ReplayRetention {
        ReplayRetention::from_config(self.replay_max_events, self.replay_max_age_secs)
    }

    /// `command_timeout_ms` as a duration.
    pub fn command_timeout(&self) -> Duration {
        Duration::from_millis(self.command_timeout_ms)
    }

    /// Checks the values that would otherwise fail later and obscurely (a zero-capacity
    /// channel panics, a zero backoff reconnects in a hot loop).
    pub fn validate(&self) -> Result<(), RedisError> {
        let invalid = |msg: &str| Err(RedisError::InvalidConfig(msg.to_owned()));
        if self.key_prefix.is_empty() {
            return invalid("redis.key_prefix must not be empty");
        }
        if self.pool_size == 0 {
            return invalid("redis.pool_size must be at least 1");
        }
        if self.subscription_buffer == 0 {
            return invalid("redis.subscription_buffer must be at least 1");
        }
        if self.reconnect_backoff_initial_ms == 0 {
            return invalid("redis.reconnect_backoff_initial_ms must be at least 1");
        }
        if self.reconnect_backoff_max_ms < self.reconnect_backoff_initial_ms {
            return invalid(
                "redis.reconnect_backoff_max_ms must be at least redis.reconnect_backoff_initial_ms",
            );
        }
        if !(1..=60_000).contains(&self.command_timeout_ms) {
            return invalid("redis.command_timeout_ms must be 1 to 60000");
        }
        self.replay_retention()
            .validate("redis")
            .map_err(RedisError::InvalidConfig)
    }
}

/// Errors while building the Redis backends (the ports' own error types cover the
/// per-call failures).
#[derive(Debug, thiserror::Error)]
pub enum RedisError {
    /// The configuration cannot work (for example a zero buffer).
    #[error("invalid redis backend config: {0}")]
    InvalidConfig(String),
    /// `url` is not a Redis URL the client understands.
    #[error("invalid redis.url {url}: {source}")]
    InvalidUrl {
        /// The URL with any password replaced by `***`.
        url: String,
        /// What the redis client objected to.
        #[source]
        source: deadpool_redis::redis::RedisError,
    },
    /// The connection pool could not be built from the configuration.
    #[error("cannot build the Redis connection pool: {0}")]
    Pool(#[from] deadpool_redis::CreatePoolError),
}

fn serialize_redacted<S: serde::Serializer>(url: &str, serializer: S) -> Result<S::Ok, S::Error> {
    serializer.serialize_str(&redact_url(url))
}

/// `url` with the password (if any) replaced by `***`, for logs and error messages.
pub(crate) fn redact_url(url: &str) -> String {
    let Some(scheme_end) = url.find("://").map(|i| i + 3) else {
        return url.to_owned();
    };
    let authority_end = url[scheme_end..]
        .find(['/', '?', '#'])
        .map_or(url.len(), |i| scheme_end + i);
    // The last '@' of the authority ends the user info (a password may itself contain '@').
    let Some(at) = url[scheme_end..authority_end].rfind('@').map(|i| scheme_end + i) else {
        return url.to_owned();
    };
    match url[scheme_end..at].find(':') {
        Some(colon) => format!("{}***{}", &url[..scheme_end + colon + 1], &url[at..]),
        // redis-rs reads `redis://name@host` as a user name, but other clients take it as a
        // password; hiding a user name costs nothing.
        None => format!("{}***{}", &url[..scheme_end], &url[at..]),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_serialized_config_never_shows_the_password() {
        let config = RedisConfig {
            url: "rediss://:t0ken@cache.internal:6379/".into(),
            ..RedisConfig::default()
        };
        let json = serde_json::to_string(&config).unwrap();
        assert!(
            json.contains(r#""url":"rediss://:***@cache.internal:6379/""#),
            "{json}"
        );
        assert!(!json.contains("t0ken"));
    }

    #[test]
    fn defaults_match_the_documentation() {
        let c = RedisConfig::default();
        assert_eq!(c.url, "redis://127.0.0.1:6379/");
        assert_eq!(c.key_prefix, "fleetwire");
        assert_eq!(
            (c.replay_max_events, c.replay_max_age_secs, c.command_timeout_ms),
            (10_000, 600, 1000)
        );
        assert_eq!(
            (
                c.pool_size,
                c.reconnect_backoff_initial_ms,
                c.reconnect_backoff_max_ms,
                c.subscription_buffer
            ),
            (16, 100, 5000, 4096)
        );
        c.validate().unwrap();
    }

    #[test]
    fn validation_rejects_values_that_cannot_work() {
        let bad = [
            RedisConfig {
                key_prefix: String::new(),
                ..RedisConfig::default()
            },
            RedisConfig {
                pool_size: 0,
                ..RedisConfig::default()
            },
            RedisConfig {
                subscription_buffer: 0,
                ..RedisConfig::default()
            },
            RedisConfig {
                reconnect_backoff_initial_ms: 0,
                ..RedisConfig::default()
            },
            RedisConfig {
                reconnect_backoff_max_ms: 50,
                ..RedisConfig::default()
            },
            RedisConfig {
                command_timeout_ms: 0,
                ..RedisConfig::default()
            },
            RedisConfig {
                replay_max_events: 0,
                ..RedisConfig::default()
            },
            RedisConfig {
                replay_max_age_secs: 100_000,
                ..RedisConfig::default()
            },
        ];
        for config in bad {
            assert!(
                matches!(config.validate(), Err(RedisError::InvalidConfig(_))),
                "{config:?} must be rejected"
            );
        }
    }

    #[test]
    fn serde_fills_defaults_and_rejects_unknown_fields() {
        let partial: RedisConfig = serde_json::from_str(r#"{"key_prefix":"t1"}"#).unwrap();
        assert_eq!(
            partial,
            RedisConfig {
                key_prefix: "t1".into(),
                ..RedisConfig::default()
            }
        );
        assert!(serde_json::from_str::<RedisConfig>(r#"{"urll":"x"}"#).is_err());
    }

    #[test]
    fn passwords_never_show() {
        assert_eq!(redact_url("redis://127.0.0.1:6379/"), "redis://127.0.0.1:6379/");
        assert_eq!(redact_url("redis://u:p@ss@h:1/0"), "redis://u:***@h:1/0");
        assert_eq!(redact_url("rediss://:secret@h"), "rediss://:***@h");
        assert_eq!(redact_url("redis://secret@h/"), "redis://***@h/");
        assert_eq!(redact_url("redis://h/?x=a@b"), "redis://h/?x=a@b");
        let config = RedisConfig {
            url: "redis://user:hunter2@h:6379/".into(),
            ..RedisConfig::default()
        };
        assert!(!format!("{config:?}").contains("hunter2"));
    }
}
