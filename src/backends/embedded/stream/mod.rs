//! The embedded record stream: an in-process sharded log that behaves like a Kinesis data
//! stream (AWS Kinesis Data Streams API reference: PutRecords, GetShardIterator,
//! GetRecords, ListShards, SplitShard, MergeShards).
//!
//! # Shape
//!
//! - Each shard is a `VecDeque` of records behind its own `Mutex`; the topology (which
//!   shards exist, which are open) sits behind an `RwLock` that the hot path only reads.
//!   Producers and consumers of different shards never contend; resharding takes the
//!   write lock, so it waits for in-flight puts and no put lands in a closed shard.
//! - Sequence numbers come from one `AtomicU64`, allocated under the shard's lock, so they
//!   increase strictly within a shard and are unique across shards. The counter starts at
//!   `now_ms * 1_000_000` (or after the highest persisted number), so numbers keep growing
//!   across restarts even when retention dropped every record, and checkpoints stay valid.
//!   They render as plain decimal strings (19–20 digits), which `SequenceNumber`'s numeric
//!   `Ord` sorts correctly.
//! - An iterator is a read position (the lowest sequence number still to read), so
//!   TRIM_HORIZON is 0, AFTER_SEQUENCE_NUMBER is `n + 1`, and a position that retention
//!   already trimmed simply starts at the oldest retained record.
//! - Retention trims the front of a shard on every put and read (a cheap check of the
//!   oldest record); `max_bytes_per_shard` bounds the rest: a put to a full shard fails that
//!   entry with `Throttled`.
//!
//! # Files (when `persist` and a data dir are set)
//!
//! `data_dir/stream/topology.json` holds the shards (ids, hash ranges, parents, children,
//! when they were closed); it is rewritten atomically (temp file + rename) on open and on
//! every split or merge. `data_dir/stream/shardId-NNNNNNNNNNNN.log` holds the shard's
//! records as length-prefixed frames, all integers little-endian:
//!
//! ```text
//! u32 body_len | u64 sequence | i64 arrival_ms | u16 key_len | key (UTF-8) | data
//! ```
//!
//! A frame cut short at the end of a file (a crash mid-write) is dropped on open; any other
//! damage is an error. On open every file is compacted (records past retention dropped);
//! while running, a shard file is rewritten (under its lock, so that shard pauses for the
//! length of one sequential write of its live records) once it is more than twice its live
//! size plus 8 MiB, so disk use stays bounded by retention too.
//!
//! **Fsync policy:** each `put_records` call writes each shard's share of the batch with one
//! `write` under the shard lock, then releases the lock and calls `fdatasync` on every file
//! it touched before returning. So a call is acknowledged only after its records are on
//! disk, one fsync covers a whole batch (and, done outside the lock, concurrent calls' syncs
//! overlap). The trade-off: a record becomes readable right after its `write`, a moment
//! before it is durable; a crash in that window can lose a record a consumer already saw,
//! but never one whose producer was acknowledged (the producer retries, and the pipeline
//! is at-least-once with dedupe anyway).
//!
//! # Layout
//!
//! - `mod.rs`: [`EmbeddedStream`], opening, and the [`RecordStream`] reads.
//! - `put.rs`: the write path: request and entry limits, routing a batch to its shards,
//!   the fsync after the locks are released.
//! - `shard.rs`: one shard's log: appends, retention trimming, the memory bound.
//! - `topology.rs`: the set of shards, hash-key routing, split and merge.
//! - `iterator.rs`: start positions and the iterator encoding and expiry.
//! - `files.rs`: persistence: the frame format, the topology file, loading and compaction.

mod files;
mod iterator;
mod put;
mod shard;
mod topology;

use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard, RwLock, RwLockReadGuard, RwLockWriteGuard};

use async_trait::async_trait;
use chrono::{DateTime, Utc};
use futures_util::future::BoxFuture;

use fleetwire_actors::ports::{
    GetRecordsOutput, PutEntry, PutOutcome, RecordStream, ShardDescription, ShardId, ShardIterator,
    StartPosition, StreamError, StreamRecord,
};

use super::{EmbeddedError, EmbeddedStreamConfig};

use fleetwire_actors::ports::stream::MAX_GET_RECORDS_LIMIT;

use self::files::{STREAM_DIR, load, write_topology};
use self::iterator::{decode_iterator, encode_iterator, expired, parse_sequence};
use self::shard::{Shard, ShardLog, Stored};
use self::topology::{Topology, initial_shards};
use fleetwire_actors::ports::stream::check_put_request as check_request;

pub use self::iterator::ITERATOR_TTL;

/// The embedded [`RecordStream`]. See the module docs for the design.
pub struct EmbeddedStream {
    /// Shared with the blocking tasks that run persistent puts.
    inner: Arc<Inner>,
}

impl std::fmt::Debug for EmbeddedStream {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("EmbeddedStream")
            .field("dir", &self.inner.dir)
            .field("retention_ms", &self.inner.retention_ms)
            .finish_non_exhaustive()
    }
}

struct Inner {
    /// Milliseconds since the epoch; the wall clock unless a test moves time.
    clock: Box<dyn Fn() -> i64 + Send + Sync>,
    /// Records at least this old are trimmed.
    retention_ms: i64,
    /// Memory bound per shard (key + data bytes).
    max_bytes_per_shard: u64,
    /// All shards, and the open ones for routing.
    topology: RwLock<Topology>,
    /// The next sequence number to hand out.
    next_seq: AtomicU64,
    /// `data_dir/stream` when persisting.
    dir: Option<PathBuf>,
}

impl EmbeddedStream {
    /// Opens the stream: empty with `cfg.shards` shards, or, when `cfg.persist` is set and
    /// `data_dir` is given, reloaded from `data_dir/stream/` (records past retention are
    /// dropped and the files compacted). Blocking: call at startup.
    pub fn open(cfg: &EmbeddedStreamConfig, data_dir: Option<&Path>) -> Result<Self, EmbeddedError> {
        if cfg.shards == 0 {
            return Err(EmbeddedError::InvalidConfig(
                "stream.shards must be at least 1".into(),
            ));
        }
        let retention_ms = i64::try_from(cfg.retention_secs.saturating_mul(1000)).unwrap_or(i64::MAX);
        let dir = match data_dir {
            Some(d) if cfg.persist => Some(d.join(STREAM_DIR)),
            _ => None,
        };
        let now = now_ms();
        let mut next_seq = u64::try_from(now).unwrap_or(0).saturating_mul(1_000_000).max(1);
        let topology = match &dir {
            None => Topology::new(initial_shards(cfg.shards, |_| Ok(ShardLog::default()))?),
            Some(dir) => {
                let (topology, last_seq) = load(dir, cfg.shards, now.saturating_sub(retention_ms))?;
                next_seq = next_seq.max(last_seq.saturating_add(1));
                topology
            }
        };
        let stream = Self {
            inner: Arc::new(Inner {
                clock: Box::new(now_ms),
                retention_ms,
                max_bytes_per_shard: cfg.max_bytes_per_shard,
                topology: RwLock::new(topology),
                next_seq: AtomicU64::new(next_seq),
                dir,
            }),
        };
        if let Some(dir) = &stream.inner.dir {
            write_topology(dir, &stream.inner.read_topology())?;
        }
        Ok(stream)
    }

    /// Replaces the wall clock, so tests can move time past retention or iterator expiry.
    /// Applies to everything after `open` (which trims with the real clock).
    ///
    /// # Panics
    ///
    /// When called after the stream was shared (a put is running on the blocking pool).
    #[doc(hidden)]
    pub fn with_clock(mut self, clock: impl Fn() -> DateTime<Utc> + Send + Sync + 'static) -> Self {
        let inner = Arc::get_mut(&mut self.inner).expect("with_clock is called right after open");
        inner.clock = Box::new(move || clock().timestamp_millis());
        self
    }

    /// Number of key + data bytes a shard currently holds (for tests and metrics).
    pub fn shard_bytes(&self, shard: &ShardId) -> Option<u64> {
        let topo = self.inner.read_topology();
        topo.shards.get(shard).map(|s| lock(&s.log).bytes)
    }
}

#[async_trait]
impl RecordStream for EmbeddedStream {
    async fn list_shards(&self) -> Result<Vec<ShardDescription>, StreamError> {
        let horizon = self.inner.horizon(self.inner.now());
        let topo = self.inner.read_topology();
        let mut out = Vec::with_capacity(topo.shards.len());
        for shard in topo.shards.values() {
            let mut log = lock(&shard.log);
            log.trim(horizon);
            // Kinesis keeps a closed shard listed for the retention period after it closed.
            let visible = match &log.closed {
                None => true,
                Some(closed) => !log.records.is_empty() || closed.at_ms > horizon,
            };
            if visible {
                out.push(shard.describe(&log));
            }
        }
        Ok(out)
    }

    async fn put_records(&self, entries: Vec<PutEntry>) -> Result<Vec<PutOutcome>, StreamError> {
        check_request(&entries)?;
        if self.inner.dir.is_none() {
            // Memory only: a few microseconds under the locks, no need to leave the task.
            return Ok(self.inner.put(entries));
        }
        let inner = Arc::clone(&self.inner);
        tokio::task::spawn_blocking(move || inner.put(entries))
            .await
            .map_err(|e| StreamError::Unavailable(format!("stream write task failed: {e}")))
    }

    async fn get_shard_iterator(
        &self,
        shard_id: &ShardId,
        position: StartPosition,
    ) -> Result<ShardIterator, StreamError> {
        // Resolve the shard first so an unknown shard is NotFound whatever the position.
        self.inner.shard(shard_id)?;
        let from = match position {
            StartPosition::TrimHorizon => 0,
            // Every record put after this point gets a higher number.
            StartPosition::Latest => self.inner.next_seq.load(Ordering::SeqCst),
            StartPosition::AtSequenceNumber(seq) => parse_sequence(&seq)?,
            StartPosition::AfterSequenceNumber(seq) => parse_sequence(&seq)?.saturating_add(1),
        };
        Ok(encode_iterator(shard_id, from, self.inner.now()))
    }

    fn records_added(&self, shard_id: &ShardId) -> BoxFuture<'static, ()> {
        let Ok(shard) = self.inner.shard(shard_id) else {
            return Box::pin(std::future::pending());
        };
        // Subscribed now, so an append between this call and the await still counts.
        let mut added = shard.added.subscribe();
        Box::pin(async move {
            if added.changed().await.is_err() {
                // The shard was dropped (the stream is gone): nothing will be added.
                std::future::pending::<()>().await;
            }
        })
    }

    async fn get_records(
        &self,
        iterator: &ShardIterator,
        limit: usize,
    ) -> Result<GetRecordsOutput, StreamError> {
        if limit == 0 || limit > MAX_GET_RECORDS_LIMIT {
            return Err(StreamError::InvalidArgument(format!(
                "limit must be 1 to {MAX_GET_RECORDS_LIMIT}, got {limit}"
            )));
        }
        let (shard_id, from, created_ms) = decode_iterator(iterator)?;
        let now = self.inner.now();
        if expired(created_ms, now) {
            return Err(StreamError::ExpiredIterator);
        }
        let shard = self.inner.shard(&shard_id)?;
        let mut log = lock(&shard.log);
        log.trim(self.inner.horizon(now));

        let start = log.records.partition_point(|r| r.seq < from);
        let end = start.saturating_add(limit).min(log.records.len());
        let records: Vec<StreamRecord> = log.records.range(start..end).map(Stored::to_record).collect();
        let next_from = if end > start {
            log.records[end - 1].seq + 1
        } else {
            from
        };
        let millis_behind_latest = log
            .records
            .get(end)
            .map_or(0, |next| u64::try_from(now - next.arrival_ms).unwrap_or(0));

        // Like Kinesis, the response that reaches the end of a closed shard (possibly with
        // its last records) carries no next iterator but the child shards.
        let (next_iterator, child_shard_ids) = match &log.closed {
            Some(closed) if end == log.records.len() => (None, closed.children.clone()),
            _ => (Some(encode_iterator(&shard_id, next_from, now)), Vec::new()),
        };
        Ok(GetRecordsOutput {
            records,
            next_iterator,
            millis_behind_latest,
            child_shard_ids,
        })
    }

    async fn ping(&self) -> Result<(), StreamError> {
        Ok(())
    }
}

impl Inner {
    fn read_topology(&self) -> RwLockReadGuard<'_, Topology> {
        // A panic while holding the lock cannot leave the topology half-changed (it is
        // replaced in one assignment), so a poisoned lock is still usable.
        self.topology.read().unwrap_or_else(|e| e.into_inner())
    }

    fn write_topology(&self) -> RwLockWriteGuard<'_, Topology> {
        self.topology.write().unwrap_or_else(|e| e.into_inner())
    }

    fn now(&self) -> i64 {
        (self.clock)()
    }

    /// Records that arrived at or before this time are past retention.
    fn horizon(&self, now: i64) -> i64 {
        now.saturating_sub(self.retention_ms)
    }

    fn shard(&self, id: &ShardId) -> Result<Arc<Shard>, StreamError> {
        self.read_topology()
            .shards
            .get(id)
            .cloned()
            .ok_or_else(|| StreamError::NotFound(format!("shard {id}")))
    }
}

fn now_ms() -> i64 {
    Utc::now().timestamp_millis()
}

fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    // Every change to a ShardLog completes before any code that could panic runs, so the
    // data behind a poisoned lock is consistent.
    m.lock().unwrap_or_else(|e| e.into_inner())
}
