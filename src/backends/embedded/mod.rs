//! Embedded backends: everything fleetwire needs in one process, no external services.
//!
//! - [`EmbeddedStream`] (`stream.rs`): an in-process sharded log with Kinesis semantics
//!   (hash-key routing, per-shard sequence numbers, iterators, retention, split/merge),
//!   optionally appended to per-shard files so records survive a restart.
//! - [`RedbLeaseStore`] (`lease_store.rs`): the KCL-style lease table in redb.
//! - [`RedbStateStore`] (`state_store.rs`): vehicle snapshots in redb, written by one
//!   group-commit thread.
//! - [`RedbVehicleRegistry`] (`registry.rs`): vehicle → tenant registrations in redb.
//! - [`InProcessFanOut`] (`fanout.rs`): a `tokio::sync::broadcast` channel plus a bounded
//!   replay ring per tenant.
//!   with their reasons and counts per reason.
//! - [`open_database`] (`db.rs`): the one redb database both stores share.
//!
//! Used by single-node deployments, local development and the end-to-end tests; the AWS
//! and Redis backends implement the same ports and pass the same conformance suite
//! (`src/backends/conformance.rs`).

mod api_keys;
mod archive;
mod db;
pub(crate) mod dead_letters;
mod fanout;
mod group_commit;
mod history;
mod lease_store;
mod registry;
mod state_store;
mod stream;
mod vin_vault;

use std::path::PathBuf;

use fleetwire_actors::ports::ReplayRetention;
use serde::{Deserialize, Serialize};

pub use api_keys::RedbApiKeyStore;
pub use archive::DirectoryArchive;
pub use db::{DATABASE_FILE_NAME, open_database, open_database_with_cache};
pub use dead_letters::{
    DEFAULT_DEAD_LETTER_CAPACITY, DeadLetterSummary, InMemoryDeadLetters, RedbDeadLetters,
};
pub use fanout::InProcessFanOut;
pub use history::RedbHistoryStore;
pub use lease_store::RedbLeaseStore;
pub use registry::RedbVehicleRegistry;
pub use state_store::RedbStateStore;
pub use stream::{EmbeddedStream, ITERATOR_TTL};
pub use vin_vault::RedbVaultStore;

/// Configuration of the embedded backends.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct EmbeddedConfig {
    /// Directory for the redb database and the stream's files; `None` keeps everything in
    /// memory (lost on exit). Default: `None`.
    pub data_dir: Option<PathBuf>,
    /// The in-process stream.
    pub stream: EmbeddedStreamConfig,
    /// Capacity of the in-process fan-out broadcast channel: how many updates a
    /// subscriber may fall behind before it is told it lagged. Default: 4096.
    pub fanout_capacity: usize,
    /// Updates the in-process replay log keeps per tenant, for `Last-Event-ID` resumes.
    /// 1 to 1,000,000. Default: 10,000.
    pub replay_max_events: usize,
    /// Updates older than this many seconds cannot be replayed; 0: no age limit. At most
    /// 86,400. Default: 600.
    pub replay_max_age_secs: u64,
    /// Ceiling of redb's page cache for the shared database, in MiB (at least 1). redb's
    /// own default is 1 GiB, which a node with many vehicles fills with pages it rarely
    /// reads again (snapshots are read once, when a vehicle's actor starts), so the process
    /// would grow towards 1 GiB beside the actors. Default: 64.
    pub cache_mib: u64,
}

impl EmbeddedConfig {
    /// The replay log's retention.
    pub fn replay_retention(&self) -> ReplayRetention {
        ReplayRetention::from_config(self.replay_max_events, self.replay_max_age_secs)
    }
}

impl Default for EmbeddedConfig {
    fn default() -> Self {
        Self {
            data_dir: None,
            stream: EmbeddedStreamConfig::default(),
            fanout_capacity: 4096,
            replay_max_events: 10_000,
            replay_max_age_secs: 600,
            cache_mib: 64,
        }
    }
}

/// Configuration of the [`EmbeddedStream`].
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct EmbeddedStreamConfig {
    /// Number of shards of a new stream. Ignored when a persisted topology is reloaded
    /// (that one wins, including any splits and merges). Default: 4.
    pub shards: u32,
    /// Records older than this many seconds are trimmed, like Kinesis' retention period.
    /// Default: 3600.
    pub retention_secs: u64,
    /// Memory bound per shard (partition key + data bytes of the retained records). A put
    /// to a full shard fails that entry with `StreamError::Throttled`, so producers back
    /// off instead of the process running out of memory. Default: 64 MiB.
    pub max_bytes_per_shard: u64,
    /// When `data_dir` is set, append records to per-shard files and reload them on
    /// open. Without it a restart starts with an empty stream. Default: `true`.
    pub persist: bool,
}

impl Default for EmbeddedStreamConfig {
    fn default() -> Self {
        Self {
            shards: 4,
            retention_secs: 3600,
            max_bytes_per_shard: 64 * 1024 * 1024,
            persist: true,
        }
    }
}

/// Errors while opening or running the embedded backends (the ports' own error types
/// cover the per-call failures).
#[derive(Debug, thiserror::Error)]
pub enum EmbeddedError {
    /// The configuration cannot work (for example zero shards).
    #[error("invalid embedded backend config: {0}")]
    InvalidConfig(String),
    /// A file or directory could not be created, read or written.
    #[error("I/O error on {path}: {source}")]
    Io {
        /// The file or directory.
        path: PathBuf,
        /// The cause.
        #[source]
        source: std::io::Error,
    },
    /// redb failed (open, transaction, table or commit).
    #[error("redb: {0}")]
    Database(#[from] redb::Error),
    /// Persisted stream data is damaged beyond a torn final write.
    #[error("corrupt stream data in {path}: {reason}")]
    Corrupt {
        /// The damaged file.
        path: PathBuf,
        /// What is wrong with it.
        reason: String,
    },
}

impl EmbeddedError {
    /// Wraps an I/O error with the path it happened on (the bare `io::Error` rarely says).
    pub(crate) fn io(path: impl Into<PathBuf>, source: std::io::Error) -> Self {
        Self::Io {
            path: path.into(),
            source,
        }
    }
}

/// Converts any redb error type into [`EmbeddedError::Database`]; redb has one error type
/// per operation, all convertible into `redb::Error`.
pub(crate) fn redb_err(e: impl Into<redb::Error>) -> EmbeddedError {
    EmbeddedError::Database(e.into())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn config_defaults_match_the_documentation() {
        let cfg = EmbeddedConfig::default();
        assert_eq!(cfg.data_dir, None);
        assert_eq!(cfg.fanout_capacity, 4096);
        assert_eq!((cfg.replay_max_events, cfg.replay_max_age_secs), (10_000, 600));
        assert_eq!(cfg.cache_mib, 64);
        cfg.replay_retention().validate("embedded").unwrap();
        assert_eq!(cfg.stream.shards, 4);
        assert_eq!(cfg.stream.retention_secs, 3600);
        assert_eq!(cfg.stream.max_bytes_per_shard, 64 * 1024 * 1024);
        assert!(cfg.stream.persist);
    }

    #[test]
    fn config_fills_defaults_and_rejects_unknown_fields() {
        let cfg: EmbeddedConfig = serde_json::from_str(r#"{"stream": {"shards": 2}}"#).unwrap();
        assert_eq!(cfg.stream.shards, 2);
        assert_eq!(cfg.stream.retention_secs, 3600);
        assert!(serde_json::from_str::<EmbeddedConfig>(r#"{"shard": 2}"#).is_err());
        assert!(serde_json::from_str::<EmbeddedStreamConfig>(r#"{"shard": 2}"#).is_err());
    }
}
