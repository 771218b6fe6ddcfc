//! The record stream port, modelled on Amazon Kinesis Data Streams so the embedded log
//! and Kinesis behave the same to the producer and the shard consumers.
//!
//! Kinesis facts carried over (AWS Kinesis Data Streams API reference): a partition key
//! is hashed with MD5 into a 128-bit integer and the record goes to the open shard whose
//! hash-key range contains it; sequence numbers are decimal strings that increase within
//! a shard; PutRecords takes at most 500 entries and 5 MiB; a record is at most 1 MiB;
//! reading a closed shard to its end yields no next iterator and its child shards.

use std::cmp::Ordering;
use std::fmt;

use async_trait::async_trait;
use bytes::Bytes;
use chrono::{DateTime, Utc};
use futures_util::future::BoxFuture;
use md5::{Digest, Md5};
use serde::{Deserialize, Serialize};

/// Most entries in one `put_records` call (Kinesis PutRecords limit).
pub const MAX_PUT_RECORDS_ENTRIES: usize = 500;
/// Most records one `get_records` call may ask for (Kinesis GetRecords `Limit`: 10,000).
pub const MAX_GET_RECORDS_LIMIT: usize = 10_000;
/// Largest record data plus partition key, in bytes (Kinesis limit: 1 MiB).
pub const MAX_RECORD_BYTES: usize = 1024 * 1024;

/// A shard id such as `shardId-000000000000`.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(transparent)]
pub struct ShardId(pub String);

impl fmt::Display for ShardId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

/// A Kinesis sequence number: a decimal string of up to 128 digits. Ordered numerically
/// (shorter is smaller, equal lengths compare as text), which is how Kinesis orders them.
#[derive(Debug, Clone, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(transparent)]
pub struct SequenceNumber(pub String);

impl Ord for SequenceNumber {
    fn cmp(&self, other: &Self) -> Ordering {
        self.0
            .len()
            .cmp(&other.0.len())
            .then_with(|| self.0.cmp(&other.0))
    }
}

impl PartialOrd for SequenceNumber {
    fn partial_cmp(&self, other: &Self) -> Option<Ordering> {
        Some(self.cmp(other))
    }
}

impl fmt::Display for SequenceNumber {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

/// What `list_shards` says about one shard.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ShardDescription {
    /// The shard.
    pub shard_id: ShardId,
    /// Parent (and adjacent parent, after a merge) shards; they must be read to their
    /// end before this shard is read (parents first).
    pub parent_shard_ids: Vec<ShardId>,
    /// Inclusive start of the hash-key range.
    pub starting_hash_key: u128,
    /// Inclusive end of the hash-key range.
    pub ending_hash_key: u128,
    /// `true` once the shard was split or merged: it takes no new records.
    pub closed: bool,
}

/// One record to put.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PutEntry {
    /// Routes the record to a shard (the vehicle id, so one vehicle stays in order).
    pub partition_key: String,
    /// The record body.
    pub data: Bytes,
}

/// Result of one entry of a `put_records` call; entries fail independently.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum PutOutcome {
    /// Stored.
    Stored {
        /// The shard it went to.
        shard_id: ShardId,
        /// Its position in that shard.
        sequence_number: SequenceNumber,
    },
    /// Not stored; safe to retry this entry alone.
    Failed {
        /// Why.
        error: StreamError,
    },
}

/// Where a new iterator starts.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub enum StartPosition {
    /// The oldest record still retained.
    TrimHorizon,
    /// Only records put after the iterator is created.
    Latest,
    /// The record with this sequence number, inclusive.
    AtSequenceNumber(SequenceNumber),
    /// The first record after this sequence number (resuming from a checkpoint).
    AfterSequenceNumber(SequenceNumber),
}

/// An opaque read position returned by the stream.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct ShardIterator(pub String);

/// One record read back.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StreamRecord {
    /// Position within the shard.
    pub sequence_number: SequenceNumber,
    /// The partition key it was put with.
    pub partition_key: String,
    /// The body.
    pub data: Bytes,
    /// When the stream accepted it.
    pub approximate_arrival: DateTime<Utc>,
}

/// Result of `get_records`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct GetRecordsOutput {
    /// Records in sequence order (may be empty even when more will come).
    pub records: Vec<StreamRecord>,
    /// Where to read next; `None` once a closed shard has been read to its end.
    pub next_iterator: Option<ShardIterator>,
    /// How far the iterator is behind the newest record of the shard.
    pub millis_behind_latest: u64,
    /// Set with `next_iterator == None`: the shards that continue this one.
    pub child_shard_ids: Vec<ShardId>,
}

/// Errors of the stream port, classified so callers know what to retry.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum StreamError {
    /// The shard (or the embedded log) is over its throughput or memory limit; retry
    /// later with backoff. Kinesis: ProvisionedThroughputExceededException.
    #[error("stream throttled: {0}")]
    Throttled(String),
    /// The iterator is too old (Kinesis: 5 minutes); get a new one from the checkpoint.
    #[error("shard iterator expired")]
    ExpiredIterator,
    /// No such stream or shard.
    #[error("not found: {0}")]
    NotFound(String),
    /// The request itself is wrong (too large, bad iterator, too many entries); do not retry.
    #[error("invalid request: {0}")]
    InvalidArgument(String),
    /// The backend failed or cannot be reached; retry with backoff.
    #[error("stream backend unavailable: {0}")]
    Unavailable(String),
}

impl StreamError {
    /// Whether retrying the same request later can succeed.
    pub fn is_retryable(&self) -> bool {
        matches!(self, StreamError::Throttled(_) | StreamError::Unavailable(_))
    }
}

/// The stream port. Implementations: `src/backends/embedded/stream.rs` (in-process
/// sharded log) and, later, Kinesis.
#[async_trait]
pub trait RecordStream: Send + Sync + 'static {
    /// All shards, open and closed, that still hold records or are open.
    async fn list_shards(&self) -> Result<Vec<ShardDescription>, StreamError>;

    /// Puts up to [`MAX_PUT_RECORDS_ENTRIES`] records. The outcome list matches the input
    /// order; a request-level error means nothing was stored.
    async fn put_records(&self, entries: Vec<PutEntry>) -> Result<Vec<PutOutcome>, StreamError>;

    /// Creates an iterator into one shard.
    async fn get_shard_iterator(
        &self,
        shard_id: &ShardId,
        position: StartPosition,
    ) -> Result<ShardIterator, StreamError>;

    /// Reads up to `limit` records from an iterator.
    async fn get_records(
        &self,
        iterator: &ShardIterator,
        limit: usize,
    ) -> Result<GetRecordsOutput, StreamError>;

    /// Cheap reachability check for `/readyz`.
    async fn ping(&self) -> Result<(), StreamError>;

    /// A future that resolves once records are added to `shard` after this call, for
    /// streams that can tell (the in-process one); the default never resolves. A shard
    /// consumer takes it before each read and, after an empty read, ends its idle wait
    /// when it resolves instead of after `consumer.idle_poll_ms` — on Kinesis it polls.
    fn records_added(&self, _shard: &ShardId) -> BoxFuture<'static, ()> {
        Box::pin(std::future::pending())
    }
}

/// The 128-bit hash key of a partition key: MD5 of its UTF-8 bytes read as a big-endian
/// unsigned integer (Kinesis' mapping from partition key to hash key).
pub fn hash_key(partition_key: &str) -> u128 {
    let digest = Md5::digest(partition_key.as_bytes());
    u128::from_be_bytes(digest.into())
}

/// The open shard whose hash-key range contains `partition_key`'s hash key.
pub fn shard_for_key<'a>(
    partition_key: &str,
    shards: &'a [ShardDescription],
) -> Option<&'a ShardDescription> {
    let h = hash_key(partition_key);
    shards
        .iter()
        .find(|s| !s.closed && s.starting_hash_key <= h && h <= s.ending_hash_key)
}

/// Splits the 128-bit hash-key space into `n` equal contiguous ranges, as Kinesis does
/// for a new stream with `n` shards. Returns inclusive `(start, end)` pairs.
pub fn even_hash_ranges(n: u32) -> Vec<(u128, u128)> {
    assert!(n > 0, "a stream has at least one shard");
    let width = u128::MAX / u128::from(n);
    (0..u128::from(n))
        .map(|i| {
            let start = if i == 0 { 0 } else { i * width + 1 };
            let end = if i + 1 == u128::from(n) {
                u128::MAX
            } else {
                (i + 1) * width
            };
            (start, end)
        })
        .collect()
}

/// Largest total of partition keys and data in one PutRecords call (5 MiB).
pub const MAX_PUT_RECORDS_BYTES: usize = 5 * 1024 * 1024;
/// Longest partition key, in Unicode characters (PutRecordsRequestEntry `PartitionKey`).
pub const MAX_PARTITION_KEY_CHARS: usize = 256;

/// Request-level checks of PutRecords (Kinesis fails the whole call for these). Both
/// backends apply them, so the emulator (which is lax) and AWS behave alike.
pub fn check_put_request(entries: &[PutEntry]) -> Result<(), StreamError> {
    if entries.len() > MAX_PUT_RECORDS_ENTRIES {
        return Err(StreamError::InvalidArgument(format!(
            "{} entries in one put_records call, at most {MAX_PUT_RECORDS_ENTRIES}",
            entries.len()
        )));
    }
    let total: usize = entries.iter().map(|e| e.partition_key.len() + e.data.len()).sum();
    if total > MAX_PUT_RECORDS_BYTES {
        return Err(StreamError::InvalidArgument(format!(
            "{total} bytes in one put_records call, at most {MAX_PUT_RECORDS_BYTES}"
        )));
    }
    Ok(())
}

/// Entry-level checks (the port fails just that entry; AWS would reject the whole request,
/// so the Kinesis backend never sends such an entry). The 1 MiB record limit counts the
/// partition key's UTF-8 bytes plus the data, as Kinesis does.
pub fn check_put_entry(entry: &PutEntry) -> Result<(), StreamError> {
    let chars = entry.partition_key.chars().count();
    if chars == 0 || chars > MAX_PARTITION_KEY_CHARS {
        return Err(StreamError::InvalidArgument(format!(
            "partition key must be 1 to {MAX_PARTITION_KEY_CHARS} characters, got {chars}"
        )));
    }
    let size = entry.partition_key.len() + entry.data.len();
    if size > MAX_RECORD_BYTES {
        return Err(StreamError::InvalidArgument(format!(
            "record of {size} bytes exceeds the maximum record size of {MAX_RECORD_BYTES}"
        )));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sequence_numbers_order_numerically() {
        let a = SequenceNumber("9".into());
        let b = SequenceNumber("10".into());
        assert!(a < b);
        assert!(SequenceNumber("49590338271490256608559692538361571095921575989136588898".into()) > b);
    }

    #[test]
    fn md5_hash_key_matches_known_digest() {
        // MD5("") = d41d8cd98f00b204e9800998ecf8427e (RFC 1321 test suite).
        assert_eq!(hash_key(""), 0xd41d8cd98f00b204e9800998ecf8427e);
    }

    #[test]
    fn even_ranges_cover_the_key_space_without_gaps() {
        for n in [1u32, 2, 3, 4, 7] {
            let r = even_hash_ranges(n);
            assert_eq!(r.len(), n as usize);
            assert_eq!(r[0].0, 0);
            assert_eq!(r.last().unwrap().1, u128::MAX);
            for w in r.windows(2) {
                assert_eq!(w[0].1 + 1, w[1].0);
            }
        }
    }

    fn entry(key: &str, len: usize) -> PutEntry {
        PutEntry {
            partition_key: key.into(),
            data: Bytes::from(vec![0u8; len]),
        }
    }

    #[test]
    fn request_limits() {
        let ok: Vec<_> = (0..500).map(|_| entry("k", 1)).collect();
        check_put_request(&ok).unwrap();
        let many: Vec<_> = (0..501).map(|_| entry("k", 1)).collect();
        assert!(matches!(
            check_put_request(&many),
            Err(StreamError::InvalidArgument(_))
        ));
        let big: Vec<_> = (0..6).map(|_| entry("k", MAX_RECORD_BYTES - 1)).collect();
        assert!(matches!(
            check_put_request(&big),
            Err(StreamError::InvalidArgument(_))
        ));
    }

    #[test]
    fn entry_limits() {
        check_put_entry(&entry("k", MAX_RECORD_BYTES - 1)).unwrap();
        assert!(check_put_entry(&entry("k", MAX_RECORD_BYTES)).is_err());
        assert!(check_put_entry(&entry("", 1)).is_err());
        check_put_entry(&entry(&"é".repeat(256), 1)).unwrap();
        assert!(check_put_entry(&entry(&"é".repeat(257), 1)).is_err());
    }
}
