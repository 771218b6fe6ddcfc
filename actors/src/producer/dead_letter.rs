//! The dead-letter port: where a record goes that fleetwire gave up on, with its reason, so
//! an operator can list, inspect, replay or delete it. Three writers share it: the
//! producer (a record that ran out of retries), the tenancy router (records of
//! unprovisioned or suspended vehicles) and the shard consumer (records it cannot decode).
//!
//! Letters are keyed so that writing the same letter twice stores it once: the
//! [`DeadLetterId`] is the tenant, the letter's time and a content hash, and every writer
//! gives a retried letter the same time (the router: the record's ingest time; the
//! consumer: the stream's arrival time). A retried batch rewrites the same key.
//!
//! Implementations: `src/backends/embedded/dead_letters.rs` (`RedbDeadLetters`, in the
//! node's redb database) and `src/backends/dynamodb/dead_letters.rs` (`dead_letters`
//! table, docs/data-model.md). Both pass `src/backends/conformance/dead_letters.rs`.

use std::fmt;
use std::str::FromStr;

use async_trait::async_trait;
use bytes::Bytes;
use chrono::{DateTime, NaiveDate, TimeZone, Utc};
use serde::{Deserialize, Serialize};

use super::DeadLetterReason;
use crate::model::TenantId;
use crate::ports::PutEntry;

/// Tenant of letters whose record names none (unprovisioned vehicles, the producer's
/// letters, undecodable records). `_` never starts a provisioned tenant's id in practice,
/// and the id is a valid [`TenantId`].
pub const UNKNOWN_TENANT: &str = "_unknown";
/// How long a letter is kept (the `expires_at` TTL).
pub const DEAD_LETTER_RETENTION: chrono::Duration = chrono::Duration::days(30);
/// Largest payload a sink with an item size limit keeps inside the letter's item (the
/// DynamoDB store: items are at most 400 KB). Larger payloads go to an object store next
/// to it, or, when there is none, keep their first bytes only (and their full size); such
/// a cut letter can be inspected but not replayed (docs/operations.md). `into_stored`
/// never cuts: only a sink that must calls [`StoredDeadLetter::cut_to`].
pub const MAX_INLINE_PAYLOAD: usize = 64 * 1024;
/// Write shards per tenant and day (`s` in the DynamoDB partition key).
pub const DEAD_LETTER_SHARDS: u64 = 16;

/// Where on the stream a letter's record was read, when it was read from one.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct DeadLetterSource {
    /// The stream's name (`embedded` for the embedded stream).
    pub stream: String,
    /// The shard id.
    pub shard: String,
    /// The record's sequence number, when known.
    pub sequence: Option<String>,
}

/// One record given up on, as a writer hands it to the sink.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DeadLetter {
    /// The record as it was offered or read (partition key and body).
    pub entry: PutEntry,
    /// Why it was given up.
    pub reason: DeadLetterReason,
    /// The letter's time, part of its key: a writer that may write the same letter again
    /// (a retried batch) must give it the same time.
    pub at: DateTime<Utc>,
    /// The tenant it belongs to, when known ([`UNKNOWN_TENANT`] otherwise).
    pub tenant: Option<TenantId>,
    /// Where it was read, for records read from the stream.
    pub source: Option<DeadLetterSource>,
}

impl DeadLetter {
    /// The letter's key: tenant, time, and a hash of partition key, body and reason.
    pub fn id(&self) -> DeadLetterId {
        let mut content = Vec::with_capacity(self.entry.partition_key.len() + self.entry.data.len() + 32);
        // Length-prefixed parts, so ("ab", "c") and ("a", "bc") differ.
        for part in [
            self.entry.partition_key.as_bytes(),
            &self.entry.data,
            self.reason.label().as_bytes(),
        ] {
            content.extend_from_slice(&(part.len() as u64).to_le_bytes());
            content.extend_from_slice(part);
        }
        DeadLetterId {
            tenant: self
                .tenant
                .clone()
                .unwrap_or_else(|| TenantId::parse(UNKNOWN_TENANT).expect("a valid tenant id")),
            at_ms: self.at.timestamp_millis().max(0) as u64,
            hash: xxhash_rust::xxh3::xxh3_64(&content),
        }
    }

    /// What a sink keeps of it, received at `now`: the whole payload.
    pub fn into_stored(self, now: DateTime<Utc>) -> StoredDeadLetter {
        let id = self.id();
        let payload_bytes = self.entry.data.len() as u64;
        let payload = self.entry.data;
        StoredDeadLetter {
            id,
            reason: self.reason.label().to_owned(),
            detail: self.reason.to_string(),
            source: self.source,
            partition_key: self.entry.partition_key,
            payload,
            payload_bytes,
            truncated: false,
            received_at: now,
            expires_at: now + DEAD_LETTER_RETENTION,
        }
    }
}

/// A letter's key, shown as `<tenant>.<ms, 13 digits>.<hash, 16 hex>` (`.` never occurs in
/// a tenant id). Everything the stores need to address the item is in it.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct DeadLetterId {
    /// The letter's tenant ([`UNKNOWN_TENANT`] when none).
    pub tenant: TenantId,
    /// The letter's time, Unix ms.
    pub at_ms: u64,
    /// Content hash (xxh3-64 of partition key, body and reason).
    pub hash: u64,
}

impl DeadLetterId {
    /// The UTC day of the letter, `yyyymmdd`.
    pub fn day(&self) -> String {
        self.at().format("%Y%m%d").to_string()
    }

    /// The letter's time.
    pub fn at(&self) -> DateTime<Utc> {
        Utc.timestamp_millis_opt(self.at_ms as i64)
            .single()
            .unwrap_or_default()
    }

    /// Its write shard, `0..DEAD_LETTER_SHARDS`.
    pub fn shard(&self) -> u64 {
        self.hash % DEAD_LETTER_SHARDS
    }

    /// The position in a tenant-day listing: `<ms, 13 digits>#<hash, 16 hex>`, so string
    /// order is time order (the DynamoDB sort key).
    pub fn sort_key(&self) -> String {
        format!("{:013}#{:016x}", self.at_ms, self.hash)
    }

    /// The cursor that continues a listing after this letter.
    pub fn cursor(&self) -> DeadLetterCursor {
        DeadLetterCursor {
            at_ms: self.at_ms,
            hash: self.hash,
        }
    }
}

impl fmt::Display for DeadLetterId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}.{:013}.{:016x}", self.tenant, self.at_ms, self.hash)
    }
}

impl FromStr for DeadLetterId {
    type Err = String;

    fn from_str(s: &str) -> Result<Self, String> {
        let bad = || format!("dead-letter id {s:?} is not <tenant>.<13 digits>.<16 hex digits>");
        let mut parts = s.split('.');
        let (Some(tenant), Some(at), Some(hash), None) =
            (parts.next(), parts.next(), parts.next(), parts.next())
        else {
            return Err(bad());
        };
        let tenant = TenantId::parse(tenant).map_err(|e| format!("{}: {e}", bad()))?;
        let cursor: DeadLetterCursor = format!("{at}.{hash}").parse().map_err(|_| bad())?;
        Ok(Self {
            tenant,
            at_ms: cursor.at_ms,
            hash: cursor.hash,
        })
    }
}

/// Where a listing continues: strictly older than this (time, hash). Shown as
/// `<ms, 13 digits>.<hash, 16 hex>`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub struct DeadLetterCursor {
    /// Time of the last letter returned, Unix ms.
    pub at_ms: u64,
    /// Its hash.
    pub hash: u64,
}

impl DeadLetterCursor {
    /// The sort key this cursor stands for (see [`DeadLetterId::sort_key`]).
    pub fn sort_key(&self) -> String {
        format!("{:013}#{:016x}", self.at_ms, self.hash)
    }
}

impl fmt::Display for DeadLetterCursor {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{:013}.{:016x}", self.at_ms, self.hash)
    }
}

impl FromStr for DeadLetterCursor {
    type Err = String;

    fn from_str(s: &str) -> Result<Self, String> {
        let bad = || format!("cursor {s:?} is not <13 digits>.<16 hex digits>");
        let (at, hash) = s.split_once('.').ok_or_else(bad)?;
        if at.len() != 13 || !at.bytes().all(|b| b.is_ascii_digit()) || hash.len() != 16 {
            return Err(bad());
        }
        Ok(Self {
            at_ms: at.parse().map_err(|_| bad())?,
            hash: u64::from_str_radix(hash, 16).map_err(|_| bad())?,
        })
    }
}

/// A letter as a sink keeps it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StoredDeadLetter {
    /// Its key.
    pub id: DeadLetterId,
    /// [`DeadLetterReason::label`] (`undecodable`, `unprovisioned`, `attempts_exhausted`, …).
    pub reason: String,
    /// The reason in words (attempts, last error, tenant).
    pub detail: String,
    /// Where it was read, for records read from the stream.
    pub source: Option<DeadLetterSource>,
    /// The record's partition key (the vehicle id).
    pub partition_key: String,
    /// The record body: whole, unless `truncated` (then its first bytes), or empty in a
    /// listing of a sink that keeps large payloads elsewhere (see [`DeadLetterSink::list`]).
    pub payload: Bytes,
    /// The body's full size.
    pub payload_bytes: u64,
    /// The sink kept only the first bytes of the body ([`StoredDeadLetter::cut_to`]): the
    /// letter can be inspected but not replayed.
    pub truncated: bool,
    /// When the sink stored it.
    pub received_at: DateTime<Utc>,
    /// When it expires (`received_at` + [`DEAD_LETTER_RETENTION`]).
    pub expires_at: DateTime<Utc>,
}

impl StoredDeadLetter {
    /// Keeps only the first `max` bytes of the payload; marks the letter `truncated` when
    /// that cut anything. For sinks that cannot store more and have nowhere else to put it.
    pub fn cut_to(&mut self, max: usize) {
        if self.payload.len() > max {
            self.payload.truncate(max);
            self.truncated = true;
        }
    }

    /// The record to put back on the stream, unless its payload was cut (or is not
    /// loaded, as in a listing): only the whole body is replayed.
    pub fn replay_entry(&self) -> Option<PutEntry> {
        (!self.truncated && self.payload.len() as u64 == self.payload_bytes).then(|| PutEntry {
            partition_key: self.partition_key.clone(),
            data: self.payload.clone(),
        })
    }
}

/// One page of a listing: a tenant's letters of one UTC day, newest first.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DeadLetterQuery {
    /// Whose letters.
    pub tenant: TenantId,
    /// Which UTC day.
    pub day: NaiveDate,
    /// Only letters with this reason label.
    pub reason: Option<String>,
    /// At most this many (≥ 1).
    pub limit: usize,
    /// Continue after this letter (from [`DeadLetterPage::next`]).
    pub after: Option<DeadLetterCursor>,
}

/// A page of letters, newest first.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct DeadLetterPage {
    /// The letters.
    pub letters: Vec<StoredDeadLetter>,
    /// Set when more may follow: pass it as [`DeadLetterQuery::after`].
    pub next: Option<DeadLetterCursor>,
}

/// A dead-letter sink could not keep or read letters.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("dead-letter sink failed: {0}")]
pub struct DeadLetterError(pub String);

/// Keeps dead letters durably and serves the admin endpoints.
///
/// `put` is idempotent per [`DeadLetterId`]: storing a letter again overwrites it. What a
/// writer does when `put` fails: the producer logs and counts it (the record's sender was
/// already told it failed, so the sender still has it); the router and the shard consumer
/// fail the batch, which is retried and holds back the checkpoint.
#[async_trait]
pub trait DeadLetterSink: Send + Sync + 'static {
    /// Stores `letters` (one call per batch of records given up together).
    async fn put(&self, letters: Vec<DeadLetter>) -> Result<(), DeadLetterError>;

    /// A page of one tenant's letters of one day, newest first. Expired letters are
    /// never returned. A sink that keeps large payloads outside the letter's row may leave
    /// them out here (`payload` empty, `payload_bytes` and `truncated` exact); [`get`]
    /// always returns them.
    ///
    /// [`get`]: DeadLetterSink::get
    async fn list(&self, query: &DeadLetterQuery) -> Result<DeadLetterPage, DeadLetterError>;

    /// One letter, unless it does not exist or expired.
    async fn get(&self, id: &DeadLetterId) -> Result<Option<StoredDeadLetter>, DeadLetterError>;

    /// Deletes one letter; `false` when there was none.
    async fn delete(&self, id: &DeadLetterId) -> Result<bool, DeadLetterError>;

    /// Deletes `letter` only if it is still the version that was read (same
    /// `received_at`); `false` otherwise. A replay deletes this way: the replayed record
    /// may already have been dead-lettered again under the same id, and that new letter
    /// must stay.
    async fn delete_unchanged(&self, letter: &StoredDeadLetter) -> Result<bool, DeadLetterError>;
}

/// Letters of one `put` with duplicates (same id) removed, keeping the last: a batch
/// holding one record twice is one letter, and DynamoDB refuses a BatchWriteItem that
/// names one key twice.
pub fn dedupe_letters(letters: Vec<DeadLetter>) -> Vec<(DeadLetterId, DeadLetter)> {
    let mut by_id = std::collections::BTreeMap::new();
    for letter in letters {
        by_id.insert(letter.id(), letter);
    }
    by_id.into_iter().collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn letter(key: &str, data: &'static [u8], at_ms: i64) -> DeadLetter {
        DeadLetter {
            entry: PutEntry {
                partition_key: key.into(),
                data: Bytes::from_static(data),
            },
            reason: DeadLetterReason::Unprovisioned,
            at: Utc.timestamp_millis_opt(at_ms).unwrap(),
            tenant: None,
            source: None,
        }
    }

    #[test]
    fn the_id_is_stable_and_round_trips() {
        let a = letter("v1", b"{}", 1_764_000_000_123);
        let id = a.id();
        assert_eq!(id, a.clone().id(), "same content, same id");
        assert_eq!(id.tenant.as_str(), UNKNOWN_TENANT);
        assert_eq!(id.day(), "20251124");
        let shown = id.to_string();
        assert!(shown.starts_with("_unknown.1764000000123."), "{shown}");
        assert_eq!(shown.parse::<DeadLetterId>().unwrap(), id);
        assert_eq!(
            id.cursor().to_string().parse::<DeadLetterCursor>().unwrap(),
            id.cursor()
        );
        assert!(id.shard() < DEAD_LETTER_SHARDS);
        assert_eq!(id.sort_key(), id.cursor().sort_key());
    }

    #[test]
    fn content_time_and_reason_change_the_id() {
        let a = letter("v1", b"{}", 1_000);
        assert_ne!(a.id(), letter("v2", b"{}", 1_000).id());
        assert_ne!(a.id(), letter("v1", b"{ }", 1_000).id());
        assert_ne!(a.id(), letter("v1", b"{}", 1_001).id());
        let mut b = a.clone();
        b.reason = DeadLetterReason::Undecodable { error: "x".into() };
        assert_ne!(a.id(), b.id());
        // Length prefixes: moving a byte between key and body is another letter.
        assert_ne!(letter("v", b"1{}", 1).id().hash, letter("v1", b"{}", 1).id().hash);
    }

    #[test]
    fn bad_ids_and_cursors_are_refused() {
        for bad in [
            "",
            "t.1.2",
            "t.0000000000001",
            "t.000000000000x.0000000000000000",
            "a b.0000000000001.0000000000000000",
            "t.0000000000001.000000000000000g",
            "t.0000000000001.0000000000000000.x",
        ] {
            assert!(bad.parse::<DeadLetterId>().is_err(), "{bad}");
        }
        assert!(
            "0000000000001-0000000000000000"
                .parse::<DeadLetterCursor>()
                .is_err()
        );
    }

    #[test]
    fn large_payloads_are_kept_whole_unless_a_sink_cuts_them() {
        let mut big = letter("v", b"", 5);
        big.entry.data = Bytes::from(vec![b'x'; MAX_INLINE_PAYLOAD + 10]);
        let mut stored = big.into_stored(Utc::now());
        assert_eq!(
            stored.payload.len(),
            MAX_INLINE_PAYLOAD + 10,
            "into_stored keeps it all"
        );
        assert!(!stored.truncated);
        assert_eq!(stored.replay_entry().unwrap().data.len(), MAX_INLINE_PAYLOAD + 10);
        stored.cut_to(MAX_INLINE_PAYLOAD);
        assert_eq!(stored.payload.len(), MAX_INLINE_PAYLOAD);
        assert_eq!(stored.payload_bytes, (MAX_INLINE_PAYLOAD + 10) as u64);
        assert!(stored.truncated);
        assert_eq!(stored.replay_entry(), None);
        // A listing that left the payload out is not replayable either.
        let mut listed = letter("v", b"{}", 5).into_stored(Utc::now());
        listed.payload = Bytes::new();
        assert_eq!(listed.replay_entry(), None);
        let mut exact = letter("v", b"{}", 5).into_stored(Utc::now());
        exact.cut_to(2);
        assert!(!exact.truncated, "nothing cut");
        let small = letter("v", b"{}", 5).into_stored(Utc::now());
        assert_eq!(small.replay_entry().unwrap().data, Bytes::from_static(b"{}"));
        assert_eq!(small.expires_at - small.received_at, DEAD_LETTER_RETENTION);
    }

    #[test]
    fn dedupe_keeps_one_letter_per_id() {
        let a = letter("v1", b"{}", 1);
        let out = dedupe_letters(vec![a.clone(), letter("v2", b"{}", 1), a]);
        assert_eq!(out.len(), 2);
    }
}
