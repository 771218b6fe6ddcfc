//! Redis backends: ports implemented on a shared Redis, so that several fleetwire nodes
//! behave as one deployment.
//!
//! - [`RedisFanOut`] (`fanout.rs`): the [`FanOut`](fleetwire_actors::ports::FanOut) port
//!   over Redis pub/sub. Every node publishes its vehicles' updates to one channel
//!   (`<key_prefix>:updates`) and each node's subscriber hub holds one subscription to it,
//!   on a dedicated connection that reconnects by itself.
//!
//! Redis pub/sub is fire-and-forget: a node that is disconnected, or too slow, misses
//! messages. The fan-out never hides that: it reports the gap as
//! [`FanOutMessage::Lagged`](fleetwire_actors::ports::FanOutMessage::Lagged) and the hub
//! tells its subscribers to reload. Recovering the missed messages themselves (a replay
//! log) is a later step.
//!
//! Commands go through a [`deadpool_redis`] pool, which connects lazily: building a
//! backend does no network I/O, so a node starts (and reports not-ready) while Redis is
//! down.

mod fanout;

use std::fmt;

use serde::{Deserialize, Serialize};

pub use fanout::RedisFanOut;

/// Configuration of the Redis backends.
#[derive(Clone, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct RedisConfig {
    /// Redis URL (`redis://[user:password@]host:port/[db]`, or `rediss://` when the redis
    /// crate's TLS feature is enabled). Default: `"redis://127.0.0.1:6379/"`.
    pub url: String,
    /// Prefix of every key and channel fleetwire uses, so that several deployments (or
    /// tests) can share one Redis. The fan-out channel is `<key_prefix>:updates`.
    /// Must not be empty. Default: `"fleetwire"`.
    pub key_prefix: String,
    /// Maximum number of pooled connections used for commands (`PUBLISH`, `PING`). The
    /// fan-out subscription has its own connection outside the pool. At least 1.
    /// Default: 16.
    pub pool_size: usize,
    /// First delay before reconnecting a dropped subscription, in milliseconds; each
    /// further failed attempt doubles it (with random jitter) up to
    /// `reconnect_backoff_max_ms`. At least 1. Default: 100.
    pub reconnect_backoff_initial_ms: u64,
    /// Longest delay between two reconnect attempts, in milliseconds. At least
    /// `reconnect_backoff_initial_ms`. Default: 5000.
    pub reconnect_backoff_max_ms: u64,
    /// Capacity of the bounded buffer between a subscription's Redis reader task and the
    /// subscriber hub's stream. When it is full, messages are dropped and the hub is told
    /// how many (`Lagged`) as soon as there is room again. At least 1. Default: 4096.
    pub subscription_buffer: usize,
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
            .finish()
    }
}

impl RedisConfig {
    /// The pub/sub channel that carries vehicle updates: `<key_prefix>:updates`.
    pub fn updates_channel(&self) -> String {
        format!("{}:updates", self.key_prefix)
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
        Ok(())
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
    fn defaults_match_the_documentation() {
        let c = RedisConfig::default();
        assert_eq!(c.url, "redis://127.0.0.1:6379/");
        assert_eq!(c.key_prefix, "fleetwire");
        assert_eq!(c.updates_channel(), "fleetwire:updates");
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
