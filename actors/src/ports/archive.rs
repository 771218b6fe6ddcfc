//! The archive port: where the archiver writes finished part files (a local directory in
//! embedded mode, S3 in the AWS profile).
//!
//! A part is written whole, once: the archiver buffers its lines in memory until the part
//! rotates (by size or age), then calls [`ArchiveSink::put_part`]. Only when that returns
//! `Ok` is the part durable and the shard checkpoints may pass its records, so every
//! implementation returns only after the object is durably stored (directory: written,
//! fsync'd and renamed to its final name; S3: PutObject answered 200).

use async_trait::async_trait;
use bytes::Bytes;

/// Why a part could not be written. Every error is retried by the archiver (with
/// backoff); nothing is dropped.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ArchiveError {
    /// The backend could not store the part now (I/O error, throttling, network).
    #[error("archive backend unavailable: {0}")]
    Unavailable(String),
}

/// Stores finished archive parts.
#[async_trait]
pub trait ArchiveSink: Send + Sync + 'static {
    /// Stores `body` under `key` (relative, `/`-separated, e.g.
    /// `raw/year=2026/month=12/day=05/hour=02/part-<uuid>.jsonl`) and returns once it is
    /// durable. Writing the same key twice (a retry after an unclear failure) replaces the
    /// part with the same content.
    async fn put_part(&self, key: &str, body: Bytes) -> Result<(), ArchiveError>;

    /// Where parts go, for logs (`directory /var/lib/fleetwire/archive`, `s3://bucket/prefix`).
    fn describe(&self) -> String;
}
