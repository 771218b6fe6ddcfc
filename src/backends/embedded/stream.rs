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

use std::collections::{BTreeMap, VecDeque};
use std::fs::{self, File, OpenOptions};
use std::io::Write;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard, RwLock, RwLockReadGuard, RwLockWriteGuard};
use std::time::Duration;

use async_trait::async_trait;
use bytes::Bytes;
use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};

use fleetwire_actors::ports::stream::{
    MAX_PUT_RECORDS_ENTRIES, MAX_RECORD_BYTES, even_hash_ranges, shard_for_key,
};
use fleetwire_actors::ports::{
    GetRecordsOutput, PutEntry, PutOutcome, RecordStream, SequenceNumber, ShardDescription, ShardId,
    ShardIterator, StartPosition, StreamError, StreamRecord,
};

use super::{EmbeddedError, EmbeddedStreamConfig};

/// How long a shard iterator stays valid (Kinesis: 5 minutes).
pub const ITERATOR_TTL: Duration = Duration::from_secs(300);

/// Largest `limit` of one `get_records` call (Kinesis GetRecords limit).
const MAX_GET_RECORDS_LIMIT: usize = 10_000;
/// Largest total payload of one `put_records` call (Kinesis PutRecords limit: 5 MiB).
const MAX_PUT_RECORDS_BYTES: usize = 5 * 1024 * 1024;
/// Longest partition key, in Unicode characters (Kinesis limit).
const MAX_PARTITION_KEY_CHARS: usize = 256;

/// Sub-directory of `data_dir` that holds the stream's files.
const STREAM_DIR: &str = "stream";
/// The shard topology inside [`STREAM_DIR`].
const TOPOLOGY_FILE: &str = "topology.json";
/// Version of [`TopologyFile`]; bumped on incompatible changes.
const TOPOLOGY_VERSION: u32 = 1;
/// Bytes of a frame besides key and data: length prefix, sequence, arrival, key length.
const FRAME_OVERHEAD: u64 = 4 + 8 + 8 + 2;
/// A shard file is compacted once it exceeds twice its live size plus this much, so small
/// shards are not rewritten over and over.
const COMPACTION_SLACK: u64 = 8 * 1024 * 1024;

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

struct Topology {
    /// Every shard, open and closed (closed shards stay so old iterators and leases still
    /// resolve; `list_shards` hides them once they are empty and past retention).
    shards: BTreeMap<ShardId, Arc<Shard>>,
    /// Descriptions of the open shards only, for `shard_for_key`.
    routes: Vec<ShardDescription>,
    /// Number of the next shard a split or merge creates.
    next_shard_number: u32,
}

struct Shard {
    id: ShardId,
    parents: Vec<ShardId>,
    starting_hash_key: u128,
    ending_hash_key: u128,
    log: Mutex<ShardLog>,
}

#[derive(Default)]
struct ShardLog {
    /// Retained records, oldest first, strictly increasing sequence numbers.
    records: VecDeque<Stored>,
    /// Key + data bytes of `records`, checked against the memory bound.
    bytes: u64,
    /// Set once the shard was split or merged.
    closed: Option<Closed>,
    /// The append file of an open shard when persisting.
    file: Option<ShardFile>,
}

#[derive(Clone)]
struct Closed {
    at_ms: i64,
    children: Vec<ShardId>,
}

struct Stored {
    seq: u64,
    key: String,
    data: Bytes,
    arrival_ms: i64,
}

impl Stored {
    fn size(&self) -> u64 {
        (self.key.len() + self.data.len()) as u64
    }
}

struct ShardFile {
    path: PathBuf,
    /// Shared so the fsync can run after the shard lock is released.
    file: Arc<File>,
    /// Bytes in the file, to truncate a failed write and to decide on compaction.
    len: u64,
}

/// `topology.json`.
#[derive(Serialize, Deserialize)]
struct TopologyFile {
    version: u32,
    next_shard_number: u32,
    shards: Vec<TopologyShard>,
}

#[derive(Serialize, Deserialize)]
struct TopologyShard {
    shard_id: ShardId,
    parent_shard_ids: Vec<ShardId>,
    starting_hash_key: u128,
    ending_hash_key: u128,
    closed_at_ms: Option<i64>,
    child_shard_ids: Vec<ShardId>,
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

    /// Splits an open shard in two, like Kinesis SplitShard: the parent is closed, the
    /// first child covers `[parent start, new_starting_hash_key - 1]`, the second
    /// `[new_starting_hash_key, parent end]`; both list the parent as their parent and take
    /// the new writes. Returns `(first, second)`. Blocking when persisting (rewrites the
    /// topology file).
    pub fn split_shard(
        &self,
        shard: &ShardId,
        new_starting_hash_key: u128,
    ) -> Result<(ShardId, ShardId), StreamError> {
        let mut topo = self.inner.write_topology();
        let parent = topo.open_shard(shard)?;
        if !(parent.starting_hash_key < new_starting_hash_key
            && new_starting_hash_key <= parent.ending_hash_key)
        {
            return Err(StreamError::InvalidArgument(format!(
                "new starting hash key {new_starting_hash_key} is not inside {shard}'s range ({}..={}) above its start",
                parent.starting_hash_key, parent.ending_hash_key
            )));
        }
        let first = topo.next_id(0);
        let second = topo.next_id(1);
        let children = vec![
            (first.clone(), parent.starting_hash_key, new_starting_hash_key - 1),
            (second.clone(), new_starting_hash_key, parent.ending_hash_key),
        ];
        self.reshard(&mut topo, &[parent], children)?;
        Ok((first, second))
    }

    /// Merges two adjacent open shards into one, like Kinesis MergeShards: both are closed
    /// and the child, covering both ranges, lists `[shard, adjacent]` as parents. Blocking
    /// when persisting (rewrites the topology file).
    pub fn merge_shards(&self, shard: &ShardId, adjacent: &ShardId) -> Result<ShardId, StreamError> {
        let mut topo = self.inner.write_topology();
        let a = topo.open_shard(shard)?;
        let b = topo.open_shard(adjacent)?;
        let adjacent_ranges = a.ending_hash_key.checked_add(1) == Some(b.starting_hash_key)
            || b.ending_hash_key.checked_add(1) == Some(a.starting_hash_key);
        if !adjacent_ranges {
            return Err(StreamError::InvalidArgument(format!(
                "{shard} and {adjacent} do not have adjacent hash-key ranges"
            )));
        }
        let child = topo.next_id(0);
        let range = (
            child.clone(),
            a.starting_hash_key.min(b.starting_hash_key),
            a.ending_hash_key.max(b.ending_hash_key),
        );
        self.reshard(&mut topo, &[a, b], vec![range])?;
        Ok(child)
    }

    /// Closes `parents` and opens `children` (id, start, end) in one step: child files
    /// first, then the topology file, then memory, so a failure leaves the old topology.
    fn reshard(
        &self,
        topo: &mut Topology,
        parents: &[Arc<Shard>],
        children: Vec<(ShardId, u128, u128)>,
    ) -> Result<(), StreamError> {
        let parent_ids: Vec<ShardId> = parents.iter().map(|p| p.id.clone()).collect();
        let child_ids: Vec<ShardId> = children.iter().map(|c| c.0.clone()).collect();
        let mut new_shards = Vec::with_capacity(children.len());
        for (id, start, end) in children {
            let file = match &self.inner.dir {
                Some(dir) => Some(
                    ShardFile::open(shard_path(dir, &id))
                        .map_err(|e| StreamError::Unavailable(e.to_string()))?,
                ),
                None => None,
            };
            new_shards.push(Arc::new(Shard {
                id,
                parents: parent_ids.clone(),
                starting_hash_key: start,
                ending_hash_key: end,
                log: Mutex::new(ShardLog {
                    file,
                    ..ShardLog::default()
                }),
            }));
        }

        let mut next = Topology {
            shards: topo.shards.clone(),
            routes: Vec::new(),
            next_shard_number: topo.next_shard_number + new_shards.len() as u32,
        };
        let closed = Closed {
            at_ms: self.inner.now(),
            children: child_ids,
        };
        // Built before the parents are locked below (it locks every shard briefly).
        let mut file = self.inner.dir.as_ref().map(|_| TopologyFile::from_topology(topo));
        // The parents' logs stay locked until memory is updated, so readers see the close
        // and the children together.
        let mut parent_logs: Vec<MutexGuard<'_, ShardLog>> = parents.iter().map(|p| lock(&p.log)).collect();
        if let (Some(dir), Some(file)) = (&self.inner.dir, &mut file) {
            for entry in &mut file.shards {
                if parent_ids.contains(&entry.shard_id) {
                    entry.closed_at_ms = Some(closed.at_ms);
                    entry.child_shard_ids = closed.children.clone();
                }
            }
            file.next_shard_number = next.next_shard_number;
            file.shards.extend(
                new_shards
                    .iter()
                    .map(|s| TopologyShard::new(s, &ShardLog::default())),
            );
            if let Err(e) = write_topology_file(dir, file) {
                for shard in &new_shards {
                    let _ = fs::remove_file(shard_path(dir, &shard.id));
                }
                return Err(StreamError::Unavailable(e.to_string()));
            }
        }
        for log in &mut parent_logs {
            log.closed = Some(closed.clone());
            // A closed shard never appends again.
            log.file = None;
        }
        drop(parent_logs);
        for shard in new_shards {
            next.shards.insert(shard.id.clone(), shard);
        }
        next.rebuild_routes();
        *topo = next;
        Ok(())
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
        if now.saturating_sub(created_ms) >= ITERATOR_TTL.as_millis() as i64 {
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

    /// The put itself, after the request-level checks. Blocking when persisting.
    fn put(&self, entries: Vec<PutEntry>) -> Vec<PutOutcome> {
        let mut outcomes: Vec<Option<PutOutcome>> = vec![None; entries.len()];
        let mut to_sync: Vec<(Arc<File>, Vec<usize>)> = Vec::new();
        {
            // Held across the appends so no split or merge closes a shard we route to.
            let topo = self.read_topology();
            let mut groups: Vec<(&Arc<Shard>, Batch)> = Vec::new();
            for (i, entry) in entries.into_iter().enumerate() {
                if let Err(error) = check_entry(&entry) {
                    outcomes[i] = Some(PutOutcome::Failed { error });
                    continue;
                }
                let route = shard_for_key(&entry.partition_key, &topo.routes)
                    .expect("the open shards cover the whole hash-key space");
                let shard = &topo.shards[&route.shard_id];
                match groups.iter_mut().find(|(s, _)| Arc::ptr_eq(s, shard)) {
                    Some((_, group)) => group.push((i, entry)),
                    None => groups.push((shard, vec![(i, entry)])),
                }
            }
            for (shard, group) in groups {
                let mut log = lock(&shard.log);
                if let Some(sync) = log.append(self, &shard.id, group, &mut outcomes) {
                    to_sync.push(sync);
                }
            }
        }
        // Outside every lock: concurrent calls' syncs overlap instead of queueing.
        for (file, indexes) in to_sync {
            if let Err(e) = file.sync_data() {
                tracing::error!(error = %e, "Stream file fsync failed.");
                for i in indexes {
                    outcomes[i] = Some(PutOutcome::Failed {
                        error: StreamError::Unavailable(format!("fsync failed: {e}")),
                    });
                }
            }
        }
        outcomes
            .into_iter()
            .map(|o| o.expect("every entry gets an outcome"))
            .collect()
    }
}

impl Topology {
    fn new(shards: Vec<Shard>) -> Self {
        let next_shard_number = shards.len() as u32;
        let mut topo = Self {
            shards: shards.into_iter().map(|s| (s.id.clone(), Arc::new(s))).collect(),
            routes: Vec::new(),
            next_shard_number,
        };
        topo.rebuild_routes();
        topo
    }

    fn rebuild_routes(&mut self) {
        self.routes = self
            .shards
            .values()
            .filter_map(|s| {
                let log = lock(&s.log);
                log.closed.is_none().then(|| s.describe(&log))
            })
            .collect();
    }

    fn next_id(&self, offset: u32) -> ShardId {
        shard_id(self.next_shard_number + offset)
    }

    fn open_shard(&self, id: &ShardId) -> Result<Arc<Shard>, StreamError> {
        let shard = self
            .shards
            .get(id)
            .ok_or_else(|| StreamError::NotFound(format!("shard {id}")))?;
        if lock(&shard.log).closed.is_some() {
            return Err(StreamError::InvalidArgument(format!(
                "shard {id} is already closed"
            )));
        }
        Ok(Arc::clone(shard))
    }
}

impl Shard {
    fn describe(&self, log: &ShardLog) -> ShardDescription {
        ShardDescription {
            shard_id: self.id.clone(),
            parent_shard_ids: self.parents.clone(),
            starting_hash_key: self.starting_hash_key,
            ending_hash_key: self.ending_hash_key,
            closed: log.closed.is_some(),
        }
    }
}

impl ShardLog {
    /// Drops records that arrived at or before `horizon`; only looks at the front, so it
    /// costs nothing when there is nothing to trim.
    fn trim(&mut self, horizon: i64) {
        while let Some(front) = self.records.front() {
            if front.arrival_ms > horizon {
                break;
            }
            self.bytes -= front.size();
            self.records.pop_front();
        }
    }

    /// Appends one shard's share of a put. Returns the file to fsync and the entries it
    /// covers. Outcomes of every entry in `group` are filled in.
    fn append(
        &mut self,
        stream: &Inner,
        shard_id: &ShardId,
        group: Batch,
        outcomes: &mut [Option<PutOutcome>],
    ) -> Option<(Arc<File>, Vec<usize>)> {
        debug_assert!(self.closed.is_none(), "puts are routed to open shards only");
        // Arrival times never go backwards within a shard, so trimming the front is enough.
        let now = self
            .records
            .back()
            .map_or(i64::MIN, |r| r.arrival_ms)
            .max(stream.now());
        self.trim(stream.horizon(now));

        let mut accepted = Vec::with_capacity(group.len());
        let mut bytes = self.bytes;
        for (i, entry) in group {
            let size = (entry.partition_key.len() + entry.data.len()) as u64;
            if bytes + size > stream.max_bytes_per_shard {
                outcomes[i] = Some(PutOutcome::Failed {
                    error: StreamError::Throttled(format!(
                        "{shard_id} holds {bytes} bytes, limit {}",
                        stream.max_bytes_per_shard
                    )),
                });
            } else {
                bytes += size;
                accepted.push((i, entry));
            }
        }
        if accepted.is_empty() {
            return None;
        }
        // Allocated under the shard lock: numbers increase in append order.
        let first = stream.next_seq.fetch_add(accepted.len() as u64, Ordering::SeqCst);
        let records: Vec<(usize, Stored)> = accepted
            .into_iter()
            .enumerate()
            .map(|(k, (i, entry))| {
                let stored = Stored {
                    seq: first + k as u64,
                    key: entry.partition_key,
                    data: entry.data,
                    arrival_ms: now,
                };
                (i, stored)
            })
            .collect();

        if let Some(file) = &mut self.file {
            let mut buf = Vec::new();
            for (_, record) in &records {
                encode_frame(&mut buf, record);
            }
            if let Err(e) = file.append(&buf) {
                tracing::error!(error = %e, shard = %shard_id, "Stream file write failed.");
                for (i, _) in records {
                    outcomes[i] = Some(PutOutcome::Failed {
                        error: StreamError::Unavailable(format!("write to {shard_id} failed: {e}")),
                    });
                }
                return None;
            }
        }
        let indexes: Vec<usize> = records.iter().map(|(i, _)| *i).collect();
        for (i, record) in records {
            outcomes[i] = Some(PutOutcome::Stored {
                shard_id: shard_id.clone(),
                sequence_number: SequenceNumber(record.seq.to_string()),
            });
            self.bytes += record.size();
            self.records.push_back(record);
        }
        self.compact_if_bloated();
        self.file.as_ref().map(|f| (Arc::clone(&f.file), indexes))
    }

    /// Rewrites the shard file from memory once trimmed records make up most of it.
    fn compact_if_bloated(&mut self) {
        let live = self.bytes + FRAME_OVERHEAD * self.records.len() as u64;
        let Some(file) = &self.file else { return };
        if file.len <= 2 * live + COMPACTION_SLACK {
            return;
        }
        let path = file.path.clone();
        match rewrite_shard_file(&path, self.records.iter()).and_then(|()| ShardFile::open(path.clone())) {
            Ok(compacted) => self.file = Some(compacted),
            // The old file still holds everything; compaction is retried on a later put.
            Err(e) => tracing::warn!(error = %e, path = %path.display(), "Stream file compaction failed."),
        }
    }
}

impl Stored {
    fn to_record(&self) -> StreamRecord {
        StreamRecord {
            sequence_number: SequenceNumber(self.seq.to_string()),
            partition_key: self.key.clone(),
            data: self.data.clone(),
            approximate_arrival: DateTime::<Utc>::from_timestamp_millis(self.arrival_ms)
                .unwrap_or(DateTime::UNIX_EPOCH),
        }
    }
}

impl ShardFile {
    fn open(path: PathBuf) -> Result<Self, EmbeddedError> {
        let file = OpenOptions::new()
            .create(true)
            .append(true)
            .open(&path)
            .map_err(|e| EmbeddedError::io(&path, e))?;
        let len = file.metadata().map_err(|e| EmbeddedError::io(&path, e))?.len();
        Ok(Self {
            path,
            file: Arc::new(file),
            len,
        })
    }

    /// Appends `buf` in one write; on failure cuts the file back so no torn frame stays in
    /// front of later appends.
    fn append(&mut self, buf: &[u8]) -> std::io::Result<()> {
        match (&*self.file).write_all(buf) {
            Ok(()) => {
                self.len += buf.len() as u64;
                Ok(())
            }
            Err(e) => {
                if let Err(trunc) = self.file.set_len(self.len) {
                    tracing::error!(error = %trunc, path = %self.path.display(), "Could not cut a failed stream write.");
                }
                Err(e)
            }
        }
    }
}

impl TopologyFile {
    fn from_topology(topo: &Topology) -> Self {
        Self {
            version: TOPOLOGY_VERSION,
            next_shard_number: topo.next_shard_number,
            shards: topo
                .shards
                .values()
                .map(|s| TopologyShard::new(s, &lock(&s.log)))
                .collect(),
        }
    }
}

impl TopologyShard {
    fn new(shard: &Shard, log: &ShardLog) -> Self {
        Self {
            shard_id: shard.id.clone(),
            parent_shard_ids: shard.parents.clone(),
            starting_hash_key: shard.starting_hash_key,
            ending_hash_key: shard.ending_hash_key,
            closed_at_ms: log.closed.as_ref().map(|c| c.at_ms),
            child_shard_ids: log
                .closed
                .as_ref()
                .map(|c| c.children.clone())
                .unwrap_or_default(),
        }
    }
}

/// `shardId-000000000007`, the Kinesis shape.
fn shard_id(number: u32) -> ShardId {
    ShardId(format!("shardId-{number:012}"))
}

fn shard_path(dir: &Path, id: &ShardId) -> PathBuf {
    dir.join(format!("{id}.log"))
}

fn now_ms() -> i64 {
    Utc::now().timestamp_millis()
}

fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    // Every change to a ShardLog completes before any code that could panic runs, so the
    // data behind a poisoned lock is consistent.
    m.lock().unwrap_or_else(|e| e.into_inner())
}

/// The shards of a new stream, with even hash ranges.
fn initial_shards(
    count: u32,
    mut log: impl FnMut(&ShardId) -> Result<ShardLog, EmbeddedError>,
) -> Result<Vec<Shard>, EmbeddedError> {
    even_hash_ranges(count)
        .into_iter()
        .enumerate()
        .map(|(n, (start, end))| {
            let id = shard_id(n as u32);
            Ok(Shard {
                log: Mutex::new(log(&id)?),
                id,
                parents: Vec::new(),
                starting_hash_key: start,
                ending_hash_key: end,
            })
        })
        .collect()
}

/// Entries of one put bound for one shard, with their index in the request.
type Batch = Vec<(usize, PutEntry)>;

/// Request-level checks of `put_records` (Kinesis fails the whole call for these).
fn check_request(entries: &[PutEntry]) -> Result<(), StreamError> {
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

/// Entry-level checks (Kinesis fails just that entry).
fn check_entry(entry: &PutEntry) -> Result<(), StreamError> {
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

fn parse_sequence(seq: &SequenceNumber) -> Result<u64, StreamError> {
    seq.0
        .parse()
        .map_err(|_| StreamError::InvalidArgument(format!("{seq} is not a sequence number of this stream")))
}

/// Iterators are `shard/position/created_ms` in hex: opaque to callers, cheap to check.
fn encode_iterator(shard: &ShardId, from: u64, created_ms: i64) -> ShardIterator {
    let plain = format!("{shard}/{from}/{created_ms}");
    ShardIterator(plain.bytes().map(|b| format!("{b:02x}")).collect())
}

fn decode_iterator(it: &ShardIterator) -> Result<(ShardId, u64, i64), StreamError> {
    let invalid = || StreamError::InvalidArgument("invalid shard iterator".into());
    let hex = it.0.as_bytes();
    if !hex.len().is_multiple_of(2) {
        return Err(invalid());
    }
    let bytes = hex
        .chunks(2)
        .map(|pair| {
            std::str::from_utf8(pair)
                .ok()
                .and_then(|s| u8::from_str_radix(s, 16).ok())
        })
        .collect::<Option<Vec<u8>>>()
        .ok_or_else(invalid)?;
    let plain = String::from_utf8(bytes).map_err(|_| invalid())?;
    let mut parts = plain.split('/');
    let (Some(shard), Some(from), Some(created), None) =
        (parts.next(), parts.next(), parts.next(), parts.next())
    else {
        return Err(invalid());
    };
    if !shard.starts_with("shardId-") {
        return Err(invalid());
    }
    let from = from.parse().map_err(|_| invalid())?;
    let created = created.parse().map_err(|_| invalid())?;
    Ok((ShardId(shard.to_owned()), from, created))
}

fn encode_frame(buf: &mut Vec<u8>, r: &Stored) {
    let key_len = u16::try_from(r.key.len()).expect("partition keys are at most 256 chars (1 KiB)");
    let body_len = 8 + 8 + 2 + r.key.len() + r.data.len();
    let body_len = u32::try_from(body_len).expect("records are at most 1 MiB");
    buf.extend_from_slice(&body_len.to_le_bytes());
    buf.extend_from_slice(&r.seq.to_le_bytes());
    buf.extend_from_slice(&r.arrival_ms.to_le_bytes());
    buf.extend_from_slice(&key_len.to_le_bytes());
    buf.extend_from_slice(r.key.as_bytes());
    buf.extend_from_slice(&r.data);
}

/// Reads a shard file. A missing file is an empty shard; a frame cut short at the end is
/// dropped (a crash during a write); anything else malformed is an error.
fn read_shard_file(path: &Path) -> Result<Vec<Stored>, EmbeddedError> {
    let bytes = match fs::read(path) {
        Ok(bytes) => bytes,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(Vec::new()),
        Err(e) => return Err(EmbeddedError::io(path, e)),
    };
    let corrupt = |reason: String| EmbeddedError::Corrupt {
        path: path.to_owned(),
        reason,
    };
    let mut records: Vec<Stored> = Vec::new();
    let mut pos = 0usize;
    while pos < bytes.len() {
        let Some(len) = bytes.get(pos..pos + 4) else { break };
        let len = u32::from_le_bytes(len.try_into().expect("4 bytes")) as usize;
        let Some(body) = bytes.get(pos + 4..pos + 4 + len) else {
            break;
        };
        if len < 18 {
            return Err(corrupt(format!("frame at byte {pos} is too short ({len} bytes)")));
        }
        let seq = u64::from_le_bytes(body[0..8].try_into().expect("8 bytes"));
        let arrival_ms = i64::from_le_bytes(body[8..16].try_into().expect("8 bytes"));
        let key_len = u16::from_le_bytes(body[16..18].try_into().expect("2 bytes")) as usize;
        let Some(key) = body.get(18..18 + key_len) else {
            return Err(corrupt(format!("frame at byte {pos}: key runs past the frame")));
        };
        let key = String::from_utf8(key.to_vec())
            .map_err(|_| corrupt(format!("frame at byte {pos}: partition key is not UTF-8")))?;
        if records.last().is_some_and(|last| seq <= last.seq) {
            return Err(corrupt(format!(
                "frame at byte {pos}: sequence number {seq} goes backwards"
            )));
        }
        records.push(Stored {
            seq,
            key,
            data: Bytes::copy_from_slice(&body[18 + key_len..]),
            arrival_ms,
        });
        pos += 4 + len;
    }
    if pos < bytes.len() {
        tracing::warn!(path = %path.display(), dropped_bytes = bytes.len() - pos, "Dropped a partly written record at the end of a stream file.");
    }
    Ok(records)
}

/// Replaces a shard file with exactly `records`, atomically (temp file, fsync, rename).
fn rewrite_shard_file<'a>(
    path: &Path,
    records: impl Iterator<Item = &'a Stored>,
) -> Result<(), EmbeddedError> {
    let mut buf = Vec::new();
    for record in records {
        encode_frame(&mut buf, record);
    }
    write_atomically(path, &buf)
}

fn write_atomically(path: &Path, contents: &[u8]) -> Result<(), EmbeddedError> {
    let tmp = path.with_extension("tmp");
    let io = |e| EmbeddedError::io(&tmp, e);
    let mut file = File::create(&tmp).map_err(io)?;
    file.write_all(contents).map_err(io)?;
    file.sync_all().map_err(io)?;
    fs::rename(&tmp, path).map_err(|e| EmbeddedError::io(path, e))?;
    // The rename itself is durable only once the directory is synced.
    if let Some(dir) = path.parent() {
        File::open(dir)
            .and_then(|d| d.sync_all())
            .map_err(|e| EmbeddedError::io(dir, e))?;
    }
    Ok(())
}

fn write_topology(dir: &Path, topo: &Topology) -> Result<(), EmbeddedError> {
    write_topology_file(dir, &TopologyFile::from_topology(topo))
}

fn write_topology_file(dir: &Path, file: &TopologyFile) -> Result<(), EmbeddedError> {
    let json = serde_json::to_vec_pretty(file).expect("the topology always serializes");
    write_atomically(&dir.join(TOPOLOGY_FILE), &json)
}

/// Loads (or creates) the persisted stream: topology, records newer than `horizon`, each
/// file compacted. Returns the topology and the highest sequence number seen.
fn load(dir: &Path, shards: u32, horizon: i64) -> Result<(Topology, u64), EmbeddedError> {
    fs::create_dir_all(dir).map_err(|e| EmbeddedError::io(dir, e))?;
    let topology_path = dir.join(TOPOLOGY_FILE);
    let saved: Option<TopologyFile> = match fs::read(&topology_path) {
        Ok(json) => Some(serde_json::from_slice(&json).map_err(|e| EmbeddedError::Corrupt {
            path: topology_path.clone(),
            reason: e.to_string(),
        })?),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => None,
        Err(e) => return Err(EmbeddedError::io(&topology_path, e)),
    };
    let mut last_seq = 0u64;
    let mut load_log = |id: &ShardId, closed: Option<Closed>| -> Result<ShardLog, EmbeddedError> {
        let path = shard_path(dir, id);
        let records: VecDeque<Stored> = read_shard_file(&path)?.into();
        last_seq = last_seq.max(records.back().map_or(0, |r| r.seq));
        let mut log = ShardLog {
            bytes: records.iter().map(Stored::size).sum(),
            records,
            closed,
            file: None,
        };
        log.trim(horizon);
        if log.closed.is_some() && log.records.is_empty() {
            // Nothing left to read and it takes no writes: the file has no purpose.
            match fs::remove_file(&path) {
                Err(e) if e.kind() != std::io::ErrorKind::NotFound => {
                    return Err(EmbeddedError::io(&path, e));
                }
                _ => {}
            }
        } else {
            rewrite_shard_file(&path, log.records.iter())?;
        }
        if log.closed.is_none() {
            log.file = Some(ShardFile::open(path)?);
        }
        Ok(log)
    };

    let topology = match saved {
        None => Topology::new(initial_shards(shards, |id| load_log(id, None))?),
        Some(file) => {
            if file.version != TOPOLOGY_VERSION {
                return Err(EmbeddedError::Corrupt {
                    path: topology_path,
                    reason: format!("unsupported topology version {}", file.version),
                });
            }
            let mut list = Vec::with_capacity(file.shards.len());
            for s in file.shards {
                let closed = s.closed_at_ms.map(|at_ms| Closed {
                    at_ms,
                    children: s.child_shard_ids,
                });
                list.push(Shard {
                    log: Mutex::new(load_log(&s.shard_id, closed)?),
                    id: s.shard_id,
                    parents: s.parent_shard_ids,
                    starting_hash_key: s.starting_hash_key,
                    ending_hash_key: s.ending_hash_key,
                });
            }
            let mut topo = Topology::new(list);
            topo.next_shard_number = file.next_shard_number;
            topo
        }
    };
    if topology.routes.is_empty() {
        return Err(EmbeddedError::Corrupt {
            path: topology_path,
            reason: "no open shard".into(),
        });
    }
    Ok((topology, last_seq))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn iterators_round_trip_and_reject_garbage() {
        let it = encode_iterator(&shard_id(3), 1_234, 99);
        assert_eq!(decode_iterator(&it).unwrap(), (shard_id(3), 1_234, 99));
        let hex = |plain: &str| plain.bytes().map(|b| format!("{b:02x}")).collect::<String>();
        let bad_position = hex("shardId-000000000003/x/1");
        let extra_part = hex("shardId-000000000003/1/2/3");
        for bad in ["", "zz", "abc", &hex("shard"), &bad_position, &extra_part] {
            assert!(
                matches!(
                    decode_iterator(&ShardIterator(bad.into())),
                    Err(StreamError::InvalidArgument(_))
                ),
                "{bad:?} should be rejected"
            );
        }
    }

    #[test]
    fn shard_files_round_trip_and_drop_a_torn_tail() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("s.log");
        let records = [
            Stored {
                seq: 5,
                key: "k".into(),
                data: Bytes::from_static(b"one"),
                arrival_ms: 10,
            },
            Stored {
                seq: 9,
                key: "ké".into(),
                data: Bytes::new(),
                arrival_ms: 11,
            },
        ];
        rewrite_shard_file(&path, records.iter()).unwrap();
        // Half of a third frame, as a crash mid-write leaves it.
        let mut torn = Vec::new();
        encode_frame(
            &mut torn,
            &Stored {
                seq: 10,
                key: "x".into(),
                data: Bytes::from_static(b"abc"),
                arrival_ms: 12,
            },
        );
        let mut file = OpenOptions::new().append(true).open(&path).unwrap();
        file.write_all(&torn[..torn.len() / 2]).unwrap();

        let back = read_shard_file(&path).unwrap();
        assert_eq!(back.len(), 2);
        assert_eq!(
            (
                back[0].seq,
                back[0].key.as_str(),
                &back[0].data[..],
                back[0].arrival_ms
            ),
            (5, "k", &b"one"[..], 10)
        );
        assert_eq!(
            (back[1].seq, back[1].key.as_str(), back[1].data.len()),
            (9, "ké", 0)
        );
    }

    #[test]
    fn shard_files_with_backwards_sequences_are_corrupt() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("s.log");
        let records = [
            Stored {
                seq: 9,
                key: "k".into(),
                data: Bytes::new(),
                arrival_ms: 1,
            },
            Stored {
                seq: 5,
                key: "k".into(),
                data: Bytes::new(),
                arrival_ms: 1,
            },
        ];
        rewrite_shard_file(&path, records.iter()).unwrap();
        assert!(matches!(
            read_shard_file(&path),
            Err(EmbeddedError::Corrupt { .. })
        ));
    }
}
