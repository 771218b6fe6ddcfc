//! The producer's pure core: which records go into the next `PutRecords` call, what happens
//! to each entry of a call's result, and when the actor must wake up next. No I/O, no
//! clock, no randomness of its own: the caller passes `now`, and the jitter source is
//! injectable, so tests drive it step by step.
//!
//! # Life of an entry
//!
//! ```text
//! offer ─► blocked (an older entry of its key is pending)
//!   │          │ the older one completes
//!   ▼          ▼
//! ready (fresh: waits for linger or a full batch; urgent: goes with the next call)
//!   │ next_batch
//!   ▼
//! in flight ─► Stored / Failed (not retryable)          → completion
//!   │          retryable error, attempts and time left  → waiting for retry ─► urgent
//!   └────────► retryable error, nothing left            → DeadLettered completion
//! ```
//!
//! Only the oldest pending entry of a partition key is ever ready, in flight or waiting
//! for a retry (see the ordering notes in the module above).

use std::cmp::Reverse;
use std::collections::{BinaryHeap, HashMap, VecDeque};
use std::time::{Duration, Instant};

use crate::ports::stream::{MAX_PUT_RECORDS_BYTES, MAX_PUT_RECORDS_ENTRIES, check_put_entry};
use crate::ports::{PutEntry, PutOutcome, StreamError};

use super::{DeadLetterReason, ProduceOutcome, ProducerConfig, ProducerFull};

/// Identifies one batch handed out by [`Batcher::next_batch`].
pub type BatchId = u64;

type EntryId = u64;

/// One `PutRecords` call to make.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Batch {
    /// Pass it back to [`Batcher::on_result`] with the call's result.
    pub id: BatchId,
    /// The entries, at most one per partition key.
    pub entries: Vec<PutEntry>,
    /// Partition key + data bytes of `entries`.
    pub bytes: usize,
    /// How long the oldest entry sent for the first time waited since it was offered;
    /// `None` when the batch only holds retries.
    pub linger: Option<Duration>,
    /// Entries of the batch that are retries.
    pub retries: usize,
}

/// How a call went, for the calls-by-result metric.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum CallResult {
    /// Every entry was stored.
    #[default]
    Ok,
    /// Some entries failed.
    Partial,
    /// The call itself failed (nothing stored).
    Error,
    /// The result came for a batch the batcher no longer tracks (abandoned at shutdown).
    Ignored,
}

impl CallResult {
    /// Metric label.
    pub fn label(self) -> &'static str {
        match self {
            CallResult::Ok => "ok",
            CallResult::Partial => "partial",
            CallResult::Error => "error",
            CallResult::Ignored => "ignored",
        }
    }
}

/// What one call's result did, for metrics.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct BatchReport {
    /// How the call went.
    pub call: CallResult,
    /// Entries stored.
    pub stored: usize,
    /// Entries failed for good (not retryable).
    pub failed: usize,
    /// Entries scheduled for another attempt.
    pub retried: usize,
    /// Entries that failed with `Throttled` (retried or not).
    pub throttled: usize,
    /// Entries given up.
    pub dead_lettered: usize,
}

/// The end of one offered entry.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Completion<T> {
    /// The caller's handle for the entry.
    pub ticket: T,
    /// What happened.
    pub outcome: ProduceOutcome,
    /// The entry itself (for the dead-letter sink).
    pub entry: PutEntry,
    /// When it was offered (for the latency histogram).
    pub offered_at: Instant,
    /// Calls it was part of.
    pub attempts: u32,
}

struct Slot<T> {
    ticket: T,
    entry: PutEntry,
    size: usize,
    offered_at: Instant,
    attempts: u32,
    last_error: Option<StreamError>,
}

/// The batching state machine; `T` is the caller's completion handle for each entry.
pub struct Batcher<T> {
    linger: Duration,
    max_batch_entries: usize,
    max_batch_bytes: usize,
    max_in_flight: usize,
    max_pending: usize,
    max_pending_bytes: usize,
    backoff_base: Duration,
    backoff_max: Duration,
    max_attempts: u32,
    max_retry: Duration,
    /// Returns a number in `[0, 1)` that picks each retry delay.
    jitter: Box<dyn FnMut() -> f64 + Send>,

    next_entry: EntryId,
    next_batch: BatchId,
    /// Every pending entry (not yet completed).
    slots: HashMap<EntryId, Slot<T>>,
    pending_bytes: usize,
    /// Pending entries per partition key, oldest first; only the head may be ready, in
    /// flight or waiting for a retry.
    keys: HashMap<String, VecDeque<EntryId>>,
    /// Ready heads that waited already (released from behind an older entry, or due for
    /// a retry): they go with the next call.
    urgent: VecDeque<EntryId>,
    /// Ready heads offered as such, in offer order: they wait for the linger or a full
    /// batch.
    fresh: VecDeque<EntryId>,
    /// Bytes of the entries in `urgent` and `fresh`.
    ready_bytes: usize,
    /// Heads waiting for their retry, earliest first.
    retries: BinaryHeap<Reverse<(Instant, EntryId)>>,
    in_flight: HashMap<BatchId, Vec<EntryId>>,
    completions: Vec<Completion<T>>,
    /// Flush without lingering (shutdown).
    closing: bool,
}

impl<T> std::fmt::Debug for Batcher<T> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Batcher")
            .field("pending", &self.slots.len())
            .field("pending_bytes", &self.pending_bytes)
            .field("ready", &(self.urgent.len() + self.fresh.len()))
            .field("waiting_retry", &self.retries.len())
            .field("in_flight", &self.in_flight.len())
            .field("closing", &self.closing)
            .finish_non_exhaustive()
    }
}

/// Partition key + data bytes, as Kinesis counts them.
fn entry_size(entry: &PutEntry) -> usize {
    entry.partition_key.len() + entry.data.len()
}

/// Exponential backoff with full jitter: before retry `attempt` (1-based, the attempt that
/// just failed) wait `unit · min(max, base · 2^(attempt-1))`, `unit` uniform in `[0, 1)`
/// (AWS Architecture Blog, "Exponential Backoff And Jitter").
pub fn backoff_delay(base: Duration, max: Duration, attempt: u32, unit: f64) -> Duration {
    let factor = 2u32.saturating_pow(attempt.saturating_sub(1).min(30));
    let ceiling = base.saturating_mul(factor).min(max);
    ceiling.mul_f64(unit.clamp(0.0, 1.0))
}

impl<T> Batcher<T> {
    /// A batcher with `config`'s limits (clamped to the Kinesis limits) and random jitter.
    pub fn new(config: &ProducerConfig) -> Self {
        let max_batch_entries = config.max_batch_entries.clamp(1, MAX_PUT_RECORDS_ENTRIES);
        let max_batch_bytes = config.max_batch_bytes.clamp(1, MAX_PUT_RECORDS_BYTES);
        Self {
            linger: Duration::from_millis(config.linger_ms),
            max_batch_entries,
            max_batch_bytes,
            max_in_flight: config.max_in_flight.max(1),
            max_pending: config.max_pending.max(1),
            max_pending_bytes: config.max_pending_bytes.max(1),
            backoff_base: Duration::from_millis(config.backoff_base_ms),
            backoff_max: Duration::from_millis(config.backoff_max_ms.max(config.backoff_base_ms)),
            max_attempts: config.max_attempts.max(1),
            max_retry: Duration::from_millis(config.max_retry_ms),
            jitter: Box::new(random_unit),
            next_entry: 0,
            next_batch: 0,
            slots: HashMap::new(),
            pending_bytes: 0,
            keys: HashMap::new(),
            urgent: VecDeque::new(),
            fresh: VecDeque::new(),
            ready_bytes: 0,
            retries: BinaryHeap::new(),
            in_flight: HashMap::new(),
            completions: Vec::new(),
            closing: false,
        }
    }

    /// Replaces the jitter source (tests pass fixed values).
    pub fn with_jitter(mut self, jitter: impl FnMut() -> f64 + Send + 'static) -> Self {
        self.jitter = Box::new(jitter);
        self
    }

    /// Records offered and not completed yet.
    pub fn pending(&self) -> usize {
        self.slots.len()
    }

    /// Bytes of the pending records.
    pub fn pending_bytes(&self) -> usize {
        self.pending_bytes
    }

    /// Calls handed out and not answered yet.
    pub fn in_flight(&self) -> usize {
        self.in_flight.len()
    }

    /// Nothing pending and no call in flight.
    pub fn is_idle(&self) -> bool {
        self.slots.is_empty() && self.in_flight.is_empty()
    }

    /// Takes all of `items` or none. Each item is `(ticket, entry)`; an entry that breaks
    /// the Kinesis entry limits completes at once as `Failed` (not retryable). Refused
    /// with [`ProducerFull`] when the valid items would exceed `max_pending` or
    /// `max_pending_bytes` (a request larger than `max_pending_bytes` alone is taken when
    /// nothing else is pending, so it cannot be refused forever).
    pub fn offer(&mut self, items: Vec<(T, PutEntry)>, now: Instant) -> Result<(), ProducerFull> {
        let bytes: usize = items.iter().map(|(_, e)| entry_size(e)).sum();
        let over_count = self.slots.len() + items.len() > self.max_pending;
        let over_bytes = !self.slots.is_empty() && self.pending_bytes + bytes > self.max_pending_bytes;
        if over_count || over_bytes {
            return Err(ProducerFull {
                pending: self.slots.len(),
                max_pending: self.max_pending,
            });
        }
        for (ticket, entry) in items {
            if let Err(error) = check_put_entry(&entry) {
                self.completions.push(Completion {
                    ticket,
                    outcome: ProduceOutcome::Failed {
                        error,
                        retryable: false,
                    },
                    entry,
                    offered_at: now,
                    attempts: 0,
                });
                continue;
            }
            let id = self.next_entry;
            self.next_entry += 1;
            let size = entry_size(&entry);
            let queue = self.keys.entry(entry.partition_key.clone()).or_default();
            queue.push_back(id);
            if queue.len() == 1 {
                self.fresh.push_back(id);
                self.ready_bytes += size;
            }
            self.pending_bytes += size;
            self.slots.insert(
                id,
                Slot {
                    ticket,
                    entry,
                    size,
                    offered_at: now,
                    attempts: 0,
                    last_error: None,
                },
            );
        }
        Ok(())
    }

    /// The next call to make, if a call slot is free and a batch is due: a full batch is
    /// ready, the oldest fresh record waited `linger`, some record is urgent (it waited
    /// behind an older one or is due for its retry), or the batcher is closing. Call it
    /// until it returns `None`.
    pub fn next_batch(&mut self, now: Instant) -> Option<Batch> {
        if self.in_flight.len() >= self.max_in_flight {
            return None;
        }
        self.promote_due_retries(now);
        let ready = self.urgent.len() + self.fresh.len();
        if ready == 0 {
            return None;
        }
        let lingered = self
            .fresh
            .front()
            .is_some_and(|id| self.slots[id].offered_at + self.linger <= now);
        let due = self.closing
            || !self.urgent.is_empty()
            || lingered
            || ready >= self.max_batch_entries
            || self.ready_bytes >= self.max_batch_bytes;
        if !due {
            return None;
        }

        let mut ids = Vec::new();
        let mut entries = Vec::new();
        let mut bytes = 0;
        let mut oldest_first_send: Option<Instant> = None;
        let mut retries = 0;
        while ids.len() < self.max_batch_entries {
            let from_urgent = !self.urgent.is_empty();
            let Some(&id) = (if from_urgent {
                self.urgent.front()
            } else {
                self.fresh.front()
            }) else {
                break;
            };
            let slot = self.slots.get_mut(&id).expect("a ready entry is pending");
            // The first entry always goes, so a record larger than the batch limit is sent
            // alone (it is within the 1 MiB record limit, so within the 5 MiB call limit).
            if !ids.is_empty() && bytes + slot.size > self.max_batch_bytes {
                break;
            }
            if from_urgent {
                self.urgent.pop_front();
            } else {
                self.fresh.pop_front();
            }
            self.ready_bytes -= slot.size;
            bytes += slot.size;
            if slot.attempts == 0 {
                oldest_first_send =
                    Some(oldest_first_send.map_or(slot.offered_at, |o| o.min(slot.offered_at)));
            } else {
                retries += 1;
            }
            slot.attempts += 1;
            entries.push(slot.entry.clone());
            ids.push(id);
        }
        let id = self.next_batch;
        self.next_batch += 1;
        self.in_flight.insert(id, ids);
        Some(Batch {
            id,
            entries,
            bytes,
            linger: oldest_first_send.map(|t| now.saturating_duration_since(t)),
            retries,
        })
    }

    /// Applies the result of call `batch`: stored entries complete, retryable failures are
    /// scheduled again (or dead-lettered when out of attempts or time), other failures
    /// complete as `Failed`. A request-level error counts for every entry of the call. A
    /// result for an unknown (abandoned) batch is ignored.
    pub fn on_result(
        &mut self,
        batch: BatchId,
        result: Result<Vec<PutOutcome>, StreamError>,
        now: Instant,
    ) -> BatchReport {
        let Some(ids) = self.in_flight.remove(&batch) else {
            return BatchReport {
                call: CallResult::Ignored,
                ..BatchReport::default()
            };
        };
        let mut report = BatchReport::default();
        let outcomes: Vec<PutOutcome> = match result {
            Ok(outcomes) if outcomes.len() == ids.len() => outcomes,
            Ok(outcomes) => {
                // A backend bug; the entries may or may not be stored: retry (at least once).
                let error = StreamError::Unavailable(format!(
                    "put_records answered {} outcomes for {} entries",
                    outcomes.len(),
                    ids.len()
                ));
                report.call = CallResult::Error;
                vec![PutOutcome::Failed { error }; ids.len()]
            }
            Err(error) => {
                report.call = CallResult::Error;
                vec![PutOutcome::Failed { error }; ids.len()]
            }
        };
        for (id, outcome) in ids.into_iter().zip(outcomes) {
            match outcome {
                PutOutcome::Stored {
                    shard_id,
                    sequence_number,
                } => {
                    report.stored += 1;
                    self.complete(
                        id,
                        ProduceOutcome::Stored {
                            shard_id,
                            sequence_number,
                        },
                    );
                }
                PutOutcome::Failed { error } => {
                    if report.call == CallResult::Ok {
                        report.call = CallResult::Partial;
                    }
                    if matches!(error, StreamError::Throttled(_)) {
                        report.throttled += 1;
                    }
                    if error.is_retryable() {
                        self.retry_or_give_up(id, error, now, &mut report);
                    } else {
                        report.failed += 1;
                        self.complete(
                            id,
                            ProduceOutcome::Failed {
                                error,
                                retryable: false,
                            },
                        );
                    }
                }
            }
        }
        report
    }

    /// When the caller must call [`next_batch`](Self::next_batch) again if nothing else
    /// happens before: the oldest fresh record's linger end or the earliest retry. `None`
    /// while every call slot is busy (the next answer frees one, and the caller drives
    /// then) or when nothing waits.
    pub fn next_wakeup(&self) -> Option<Instant> {
        if self.in_flight.len() >= self.max_in_flight {
            return None;
        }
        let retry = self.retries.peek().map(|Reverse((due, _))| *due);
        let linger = self
            .fresh
            .front()
            .map(|id| self.slots[id].offered_at + self.linger);
        match (retry, linger) {
            (Some(a), Some(b)) => Some(a.min(b)),
            (a, b) => a.or(b),
        }
    }

    /// Completions since the last call, in the order they happened.
    pub fn take_completions(&mut self) -> Vec<Completion<T>> {
        std::mem::take(&mut self.completions)
    }

    /// Stops lingering: every ready record goes out as soon as a call slot is free.
    /// Retries still wait for their backoff.
    pub fn close(&mut self) {
        self.closing = true;
    }

    /// Gives up every pending record, in flight or not, as `DeadLettered` with reason
    /// `Shutdown`; results of calls still in flight are ignored when they come. Returns how
    /// many records were given up.
    pub fn dead_letter_all(&mut self) -> usize {
        let mut ids: Vec<EntryId> = self.slots.keys().copied().collect();
        // Offer order, which is each key's queue order, so every id is its key's head.
        ids.sort_unstable();
        let n = ids.len();
        for id in ids {
            let slot = &self.slots[&id];
            let reason = DeadLetterReason::Shutdown {
                attempts: slot.attempts,
                last_error: slot.last_error.clone(),
            };
            self.complete(id, ProduceOutcome::DeadLettered { reason });
        }
        self.urgent.clear();
        self.fresh.clear();
        self.ready_bytes = 0;
        self.retries.clear();
        self.in_flight.clear();
        n
    }

    fn promote_due_retries(&mut self, now: Instant) {
        while let Some(Reverse((due, id))) = self.retries.peek().copied() {
            if due > now {
                break;
            }
            self.retries.pop();
            if let Some(slot) = self.slots.get(&id) {
                self.ready_bytes += slot.size;
                self.urgent.push_back(id);
            }
        }
    }

    fn retry_or_give_up(&mut self, id: EntryId, error: StreamError, now: Instant, report: &mut BatchReport) {
        let unit = (self.jitter)();
        let slot = self.slots.get_mut(&id).expect("an entry in flight is pending");
        slot.last_error = Some(error.clone());
        let reason = if slot.attempts >= self.max_attempts {
            Some(DeadLetterReason::AttemptsExhausted {
                attempts: slot.attempts,
                last_error: error,
            })
        } else {
            // The budget counts from the offer, not the first attempt: a record held back
            // behind an older record of its key that used up the time gets one attempt,
            // not a budget of its own (which would make a key's backlog wait N × budget).
            let due = now + backoff_delay(self.backoff_base, self.backoff_max, slot.attempts, unit);
            if due.saturating_duration_since(slot.offered_at) > self.max_retry {
                Some(DeadLetterReason::RetryTimeExhausted {
                    attempts: slot.attempts,
                    waited_ms: u64::try_from(now.saturating_duration_since(slot.offered_at).as_millis())
                        .unwrap_or(u64::MAX),
                    last_error: error,
                })
            } else {
                self.retries.push(Reverse((due, id)));
                report.retried += 1;
                None
            }
        };
        if let Some(reason) = reason {
            report.dead_lettered += 1;
            self.complete(id, ProduceOutcome::DeadLettered { reason });
        }
    }

    /// Ends entry `id` (its key's head) and makes the key's next entry urgent.
    fn complete(&mut self, id: EntryId, outcome: ProduceOutcome) {
        let slot = self.slots.remove(&id).expect("a completed entry was pending");
        self.pending_bytes -= slot.size;
        let key = &slot.entry.partition_key;
        let queue = self.keys.get_mut(key).expect("a pending entry's key has a queue");
        let head = queue.pop_front();
        debug_assert_eq!(head, Some(id), "only a key's oldest entry completes");
        match queue.front() {
            Some(&next) => {
                self.ready_bytes += self.slots[&next].size;
                self.urgent.push_back(next);
            }
            None => {
                self.keys.remove(key);
            }
        }
        self.completions.push(Completion {
            ticket: slot.ticket,
            outcome,
            entry: slot.entry,
            offered_at: slot.offered_at,
            attempts: slot.attempts,
        });
    }
}

/// A uniform number in `[0, 1)` from the standard library's random hash keys.
fn random_unit() -> f64 {
    (crate::consumer::random_u64() >> 11) as f64 / (1u64 << 53) as f64
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::ports::{SequenceNumber, ShardId};
    use bytes::Bytes;
    use std::collections::VecDeque;
    use std::sync::{Arc, Mutex};

    fn config() -> ProducerConfig {
        ProducerConfig {
            linger_ms: 5,
            max_in_flight: 2,
            max_pending: 100,
            backoff_base_ms: 100,
            backoff_max_ms: 1000,
            max_attempts: 4,
            max_retry_ms: 10_000,
            ..ProducerConfig::default()
        }
    }

    /// Jitter values handed out in order (then 0.5 forever); the test keeps a handle.
    fn scripted(values: &[f64]) -> (Arc<Mutex<VecDeque<f64>>>, impl FnMut() -> f64 + Send + 'static) {
        let queue = Arc::new(Mutex::new(values.iter().copied().collect::<VecDeque<_>>()));
        let q = queue.clone();
        (queue, move || q.lock().unwrap().pop_front().unwrap_or(0.5))
    }

    fn batcher(config: &ProducerConfig) -> Batcher<u32> {
        Batcher::new(config).with_jitter(|| 0.5)
    }

    fn entry(key: &str, data: &str) -> PutEntry {
        PutEntry {
            partition_key: key.into(),
            data: Bytes::from(data.to_owned()),
        }
    }

    fn sized(key: &str, len: usize) -> PutEntry {
        PutEntry {
            partition_key: key.into(),
            data: Bytes::from(vec![b'x'; len]),
        }
    }

    fn stored(n: u64) -> PutOutcome {
        PutOutcome::Stored {
            shard_id: ShardId("shardId-000000000000".into()),
            sequence_number: SequenceNumber(n.to_string()),
        }
    }

    fn throttled() -> PutOutcome {
        PutOutcome::Failed {
            error: StreamError::Throttled("full".into()),
        }
    }

    fn all_stored(batch: &Batch) -> Vec<PutOutcome> {
        (0..batch.entries.len() as u64).map(stored).collect()
    }

    fn datas(batch: &Batch) -> Vec<String> {
        batch
            .entries
            .iter()
            .map(|e| String::from_utf8(e.data.to_vec()).unwrap())
            .collect()
    }

    fn tickets(b: &mut Batcher<u32>) -> Vec<(u32, ProduceOutcome)> {
        b.take_completions()
            .into_iter()
            .map(|c| (c.ticket, c.outcome))
            .collect()
    }

    const MS: Duration = Duration::from_millis(1);

    #[test]
    fn a_batch_waits_for_the_linger_unless_full() {
        let t0 = Instant::now();
        let mut b = batcher(&config());
        b.offer(vec![(1, entry("a", "1")), (2, entry("b", "2"))], t0)
            .unwrap();
        assert_eq!(b.next_batch(t0), None, "not full, not lingered");
        assert_eq!(b.next_wakeup(), Some(t0 + 5 * MS));
        assert_eq!(b.next_batch(t0 + 4 * MS), None);
        let batch = b.next_batch(t0 + 5 * MS).expect("linger elapsed");
        assert_eq!(datas(&batch), ["1", "2"]);
        assert_eq!(batch.linger, Some(5 * MS));
        assert_eq!(batch.bytes, 4);

        // 500 ready entries make a full batch at once.
        let mut b = batcher(&ProducerConfig {
            max_pending: 1000,
            ..config()
        });
        let items = (0..500).map(|i| (i, entry(&format!("k{i}"), "x"))).collect();
        b.offer(items, t0).unwrap();
        let batch = b.next_batch(t0).expect("a full batch goes at once");
        assert_eq!(batch.entries.len(), 500);
    }

    #[test]
    fn batches_respect_entry_and_byte_limits() {
        let t0 = Instant::now();
        let c = ProducerConfig {
            max_in_flight: 10,
            max_pending: 2000,
            ..config()
        };
        let mut b = batcher(&c);
        let items = (0..1200).map(|i| (i, entry(&format!("k{i}"), "x"))).collect();
        b.offer(items, t0).unwrap();
        let sizes: Vec<usize> = std::iter::from_fn(|| b.next_batch(t0 + 5 * MS))
            .map(|b| b.entries.len())
            .collect();
        assert_eq!(sizes, [500, 500, 200]);

        // 900 kB records: a sixth would pass 5 MiB, so five per call.
        let mut b = batcher(&c);
        let items = (0..13).map(|i| (i, sized(&format!("k{i}"), 900_000))).collect();
        b.offer(items, t0).unwrap();
        let batches: Vec<Batch> = std::iter::from_fn(|| b.next_batch(t0 + 5 * MS)).collect();
        let sizes: Vec<usize> = batches.iter().map(|b| b.entries.len()).collect();
        assert_eq!(sizes, [5, 5, 3]);
        assert!(batches.iter().all(|b| b.bytes <= MAX_PUT_RECORDS_BYTES));
        assert!(batches.iter().all(|b| check_put_request_ok(&b.entries)));

        // A record larger than a small batch limit still goes, alone.
        let small = ProducerConfig {
            max_batch_bytes: 1024,
            ..c
        };
        let mut b = batcher(&small);
        b.offer(vec![(1, sized("a", 4000)), (2, sized("b", 10))], t0)
            .unwrap();
        let first = b.next_batch(t0).expect("over the byte limit: full");
        assert_eq!(first.entries.len(), 1);
        assert_eq!(first.entries[0].partition_key, "a");
    }

    fn check_put_request_ok(entries: &[PutEntry]) -> bool {
        crate::ports::stream::check_put_request(entries).is_ok()
    }

    #[test]
    fn invalid_records_fail_at_once_and_take_no_room() {
        let t0 = Instant::now();
        let mut b = batcher(&config());
        let too_big = sized("a", crate::ports::stream::MAX_RECORD_BYTES);
        b.offer(vec![(1, entry("", "x")), (2, too_big), (3, entry("c", "ok"))], t0)
            .unwrap();
        let done = tickets(&mut b);
        assert_eq!(done.len(), 2);
        for (_, outcome) in &done {
            assert!(matches!(
                outcome,
                ProduceOutcome::Failed {
                    error: StreamError::InvalidArgument(_),
                    retryable: false
                }
            ));
        }
        assert_eq!(b.pending(), 1);
    }

    #[test]
    fn one_entry_per_key_in_flight_and_the_next_goes_at_once() {
        let t0 = Instant::now();
        let mut b = batcher(&config());
        b.offer(
            vec![
                (1, entry("a", "a1")),
                (2, entry("a", "a2")),
                (3, entry("b", "b1")),
            ],
            t0,
        )
        .unwrap();
        let first = b.next_batch(t0 + 5 * MS).unwrap();
        assert_eq!(datas(&first), ["a1", "b1"], "a2 waits behind a1");
        assert_eq!(
            b.next_batch(t0 + 6 * MS),
            None,
            "a2 is held back while a1 is in flight"
        );
        let report = b.on_result(first.id, Ok(all_stored(&first)), t0 + 7 * MS);
        assert_eq!(report.stored, 2);
        assert_eq!(report.call, CallResult::Ok);
        // Released entries already waited: no second linger.
        let second = b.next_batch(t0 + 7 * MS).unwrap();
        assert_eq!(datas(&second), ["a2"]);
        assert_eq!(second.linger, Some(7 * MS));
    }

    #[test]
    fn a_partial_failure_never_reorders_a_key() {
        let t0 = Instant::now();
        let (_, jitter) = scripted(&[0.5, 0.5]);
        let mut b = Batcher::new(&config()).with_jitter(jitter);
        b.offer(
            vec![
                (1, entry("a", "a1")),
                (2, entry("b", "b1")),
                (3, entry("a", "a2")),
                (4, entry("b", "b2")),
            ],
            t0,
        )
        .unwrap();
        let first = b.next_batch(t0 + 5 * MS).unwrap();
        assert_eq!(datas(&first), ["a1", "b1"]);
        // a1 throttled, b1 stored: b2 may go, a2 must wait for a1.
        let report = b.on_result(first.id, Ok(vec![throttled(), stored(1)]), t0 + 6 * MS);
        assert_eq!(
            (report.call, report.stored, report.retried, report.throttled),
            (CallResult::Partial, 1, 1, 1)
        );
        let second = b.next_batch(t0 + 6 * MS).unwrap();
        assert_eq!(datas(&second), ["b2"]);
        b.on_result(second.id, Ok(all_stored(&second)), t0 + 7 * MS);
        // a1's retry: jitter 0.5 of the first ceiling (100 ms) = 50 ms after the failure.
        assert_eq!(b.next_wakeup(), Some(t0 + 56 * MS));
        assert_eq!(b.next_batch(t0 + 55 * MS), None, "a1 not due, a2 still held");
        let retry = b.next_batch(t0 + 56 * MS).unwrap();
        assert_eq!(datas(&retry), ["a1"]);
        assert_eq!((retry.retries, retry.linger), (1, None));
        b.on_result(retry.id, Ok(all_stored(&retry)), t0 + 57 * MS);
        let last = b.next_batch(t0 + 57 * MS).unwrap();
        assert_eq!(datas(&last), ["a2"]);
        b.on_result(last.id, Ok(all_stored(&last)), t0 + 58 * MS);
        let order: Vec<u32> = tickets(&mut b).into_iter().map(|(t, _)| t).collect();
        assert_eq!(order, [2, 4, 1, 3]);
        assert!(b.is_idle());
    }

    #[test]
    fn retry_delays_grow_with_full_jitter_within_their_bounds() {
        let base = Duration::from_millis(50);
        let max = Duration::from_millis(2000);
        for attempt in 1..=10u32 {
            let ceiling = (base * 2u32.pow(attempt - 1)).min(max);
            assert_eq!(backoff_delay(base, max, attempt, 0.0), Duration::ZERO);
            assert_eq!(backoff_delay(base, max, attempt, 0.5), ceiling / 2);
            let top = backoff_delay(base, max, attempt, 0.999_999);
            assert!(
                top < ceiling && top > ceiling.mul_f64(0.99),
                "attempt {attempt}: {top:?}"
            );
        }
        assert_eq!(backoff_delay(base, max, 1000, 1.0), max, "no overflow");

        // The batcher draws one jitter value per retry and schedules accordingly.
        let t0 = Instant::now();
        let (_, jitter) = scripted(&[0.0, 1.0, 0.25]);
        let mut b = Batcher::new(&config()).with_jitter(jitter);
        b.offer(vec![(1, entry("a", "a1"))], t0).unwrap();
        let mut now = t0 + 5 * MS;
        let mut waits = Vec::new();
        for _ in 0..3 {
            let batch = b.next_batch(now).unwrap();
            b.on_result(batch.id, Ok(vec![throttled()]), now);
            let due = b.next_wakeup().unwrap();
            waits.push(due - now);
            now = due;
        }
        // Ceilings 100, 200, 400 ms (base 100, doubling) times 0.0, 1.0, 0.25.
        assert_eq!(waits, [Duration::ZERO, 200 * MS, 100 * MS]);
    }

    #[test]
    fn gives_up_after_max_attempts_and_releases_the_key() {
        let t0 = Instant::now();
        let mut b = batcher(&config());
        b.offer(vec![(1, entry("a", "a1")), (2, entry("a", "a2"))], t0)
            .unwrap();
        let mut now = t0 + 5 * MS;
        for attempt in 1..=4 {
            let batch = b.next_batch(now).expect("attempt due");
            assert_eq!(datas(&batch), ["a1"], "attempt {attempt}");
            let report = b.on_result(batch.id, Ok(vec![throttled()]), now);
            if attempt < 4 {
                assert_eq!(report.retried, 1);
                now = b.next_wakeup().unwrap();
            } else {
                assert_eq!(report.dead_lettered, 1);
            }
        }
        let done = b.take_completions();
        assert_eq!(done.len(), 1);
        assert_eq!(done[0].attempts, 4);
        assert_eq!(done[0].entry, entry("a", "a1"));
        match &done[0].outcome {
            ProduceOutcome::DeadLettered {
                reason:
                    DeadLetterReason::AttemptsExhausted {
                        attempts: 4,
                        last_error: StreamError::Throttled(_),
                    },
            } => {}
            other => panic!("{other:?}"),
        }
        let next = b.next_batch(now).expect("a2 goes once a1 is given up");
        assert_eq!(datas(&next), ["a2"]);
    }

    #[test]
    fn gives_up_when_the_next_retry_would_pass_max_retry() {
        let t0 = Instant::now();
        let c = ProducerConfig {
            max_attempts: 100,
            max_retry_ms: 250,
            ..config()
        };
        let mut b = Batcher::new(&c).with_jitter(|| 0.99);
        b.offer(vec![(1, entry("a", "a1"))], t0).unwrap();
        // Ceilings 100, 200: retries at +5+99 and +104+198 = 302 > 250 → given up at the 2nd failure.
        let first = b.next_batch(t0 + 5 * MS).unwrap();
        assert_eq!(
            b.on_result(
                first.id,
                Err(StreamError::Unavailable("down".into())),
                t0 + 5 * MS
            )
            .call,
            CallResult::Error
        );
        let now = b.next_wakeup().unwrap();
        let second = b.next_batch(now).unwrap();
        let report = b.on_result(second.id, Err(StreamError::Unavailable("down".into())), now);
        assert_eq!(report.dead_lettered, 1);
        match &tickets(&mut b)[0].1 {
            ProduceOutcome::DeadLettered {
                reason:
                    DeadLetterReason::RetryTimeExhausted {
                        attempts: 2,
                        waited_ms,
                        last_error: StreamError::Unavailable(_),
                    },
            } => assert_eq!(*waited_ms, (now - t0).as_millis() as u64),
            other => panic!("{other:?}"),
        }
    }

    #[test]
    fn a_held_back_record_whose_time_is_up_gets_one_attempt() {
        let t0 = Instant::now();
        let c = ProducerConfig {
            max_attempts: 100,
            max_retry_ms: 150,
            ..config()
        };
        let mut b = Batcher::new(&c).with_jitter(|| 0.99);
        b.offer(
            vec![
                (1, entry("a", "a1")),
                (2, entry("a", "a2")),
                (3, entry("a", "a3")),
            ],
            t0,
        )
        .unwrap();
        let mut now = t0 + 5 * MS;
        let mut attempts = Vec::new();
        while let Some(batch) = b.next_batch(now) {
            attempts.push(datas(&batch).concat());
            b.on_result(batch.id, Ok(vec![throttled()]), now);
            match b.next_wakeup() {
                Some(t) => now = t,
                None => now += MS,
            }
        }
        // a1 retried until its budget ran out; a2 and a3, whose budgets ran out while they
        // waited, are tried once each.
        assert_eq!(attempts, ["a1", "a1", "a2", "a3"]);
        let done = b.take_completions();
        assert!(done.iter().all(|c| matches!(
            c.outcome,
            ProduceOutcome::DeadLettered {
                reason: DeadLetterReason::RetryTimeExhausted { .. }
            }
        )));
        assert!(b.is_idle());
    }

    #[test]
    fn not_retryable_errors_fail_at_once() {
        let t0 = Instant::now();
        let mut b = batcher(&config());
        b.offer(vec![(1, entry("a", "a1")), (2, entry("b", "b1"))], t0)
            .unwrap();
        let batch = b.next_batch(t0 + 5 * MS).unwrap();
        let report = b.on_result(batch.id, Err(StreamError::NotFound("stream".into())), t0 + 6 * MS);
        assert_eq!(
            (report.call, report.failed, report.retried),
            (CallResult::Error, 2, 0)
        );
        assert!(tickets(&mut b).iter().all(|(_, o)| matches!(
            o,
            ProduceOutcome::Failed {
                error: StreamError::NotFound(_),
                retryable: false
            }
        )));
        assert!(b.is_idle());
    }

    #[test]
    fn a_short_answer_is_retried_as_unavailable() {
        let t0 = Instant::now();
        let mut b = batcher(&config());
        b.offer(vec![(1, entry("a", "a1")), (2, entry("b", "b1"))], t0)
            .unwrap();
        let batch = b.next_batch(t0 + 5 * MS).unwrap();
        let report = b.on_result(batch.id, Ok(vec![stored(1)]), t0 + 6 * MS);
        assert_eq!((report.call, report.retried), (CallResult::Error, 2));
    }

    #[test]
    fn full_refuses_the_whole_request_at_once() {
        let t0 = Instant::now();
        let c = ProducerConfig {
            max_pending: 3,
            ..config()
        };
        let mut b = batcher(&c);
        b.offer(vec![(1, entry("a", "1")), (2, entry("b", "2"))], t0)
            .unwrap();
        let full = b
            .offer(vec![(3, entry("c", "3")), (4, entry("d", "4"))], t0)
            .unwrap_err();
        assert_eq!(
            full,
            ProducerFull {
                pending: 2,
                max_pending: 3
            }
        );
        assert_eq!(b.pending(), 2, "nothing of the refused request was taken");
        b.offer(vec![(3, entry("c", "3"))], t0).unwrap();
        // Completing frees room.
        let batch = b.next_batch(t0 + 5 * MS).unwrap();
        b.on_result(batch.id, Ok(all_stored(&batch)), t0 + 6 * MS);
        b.offer(vec![(4, entry("d", "4")), (5, entry("e", "5"))], t0)
            .unwrap();

        // Bytes bound too; but one request alone is always taken.
        let c = ProducerConfig {
            max_pending_bytes: 100,
            ..config()
        };
        let mut b = batcher(&c);
        b.offer(vec![(1, sized("a", 500))], t0).unwrap();
        assert!(b.offer(vec![(2, sized("b", 1))], t0).is_err());
        assert_eq!(b.pending_bytes(), 501);
    }

    #[test]
    fn in_flight_calls_are_bounded() {
        let t0 = Instant::now();
        let c = ProducerConfig {
            max_batch_entries: 1,
            max_in_flight: 2,
            ..config()
        };
        let mut b = batcher(&c);
        let items = (0..5).map(|i| (i, entry(&format!("k{i}"), "x"))).collect();
        b.offer(items, t0).unwrap();
        let first = b.next_batch(t0).unwrap();
        let second = b.next_batch(t0).unwrap();
        assert_eq!(b.next_batch(t0), None);
        assert_eq!(b.in_flight(), 2);
        assert_eq!(b.next_wakeup(), None, "nothing to do until a call returns");
        // Even a retry that falls due waits for a free slot (no busy wake-ups).
        b.on_result(second.id, Ok(vec![throttled()]), t0);
        let _third = b.next_batch(t0).unwrap();
        assert!(b.retries.peek().is_some());
        assert_eq!(b.next_wakeup(), None);
        b.on_result(first.id, Ok(all_stored(&first)), t0);
        assert!(b.next_batch(t0).is_some());
    }

    #[test]
    fn closing_flushes_without_linger_and_dead_letter_all_gives_up_the_rest() {
        let t0 = Instant::now();
        let mut b = batcher(&config());
        b.offer(
            vec![
                (1, entry("a", "a1")),
                (2, entry("a", "a2")),
                (3, entry("b", "b1")),
            ],
            t0,
        )
        .unwrap();
        b.close();
        let batch = b.next_batch(t0).expect("closing: no linger");
        assert_eq!(datas(&batch), ["a1", "b1"]);
        b.on_result(batch.id, Ok(vec![throttled(), stored(1)]), t0);
        assert_eq!(tickets(&mut b).len(), 1);
        assert_eq!(b.dead_letter_all(), 2);
        let done = tickets(&mut b);
        assert_eq!(done.iter().map(|(t, _)| *t).collect::<Vec<_>>(), [1, 2]);
        assert!(matches!(
            &done[0].1,
            ProduceOutcome::DeadLettered {
                reason: DeadLetterReason::Shutdown {
                    attempts: 1,
                    last_error: Some(StreamError::Throttled(_))
                }
            }
        ));
        assert!(matches!(
            &done[1].1,
            ProduceOutcome::DeadLettered {
                reason: DeadLetterReason::Shutdown {
                    attempts: 0,
                    last_error: None
                }
            }
        ));
        assert!(b.is_idle());
        assert_eq!(b.next_wakeup(), None);
        // A late answer for an abandoned call is ignored.
        assert_eq!(b.on_result(batch.id, Ok(vec![]), t0).call, CallResult::Ignored);
    }

    /// Many keys, random partial failures: every entry completes exactly once, and per key
    /// the stored entries were stored in offer order.
    #[test]
    fn random_partial_failures_keep_every_key_in_order() {
        let t0 = Instant::now();
        let c = ProducerConfig {
            max_batch_entries: 7,
            max_in_flight: 3,
            max_pending: 10_000,
            max_attempts: 1000,
            max_retry_ms: u64::MAX / 4,
            ..config()
        };
        let mut b = Batcher::new(&c).with_jitter(|| 0.3);
        let mut rng = 0x2545_f491_4f6c_dd1du64;
        let mut next = move || {
            rng ^= rng << 13;
            rng ^= rng >> 7;
            rng ^= rng << 17;
            rng
        };
        let keys = ["a", "b", "c", "d", "e"];
        let items: Vec<(u32, PutEntry)> = (0..200u32)
            .map(|i| (i, entry(keys[i as usize % keys.len()], &i.to_string())))
            .collect();
        b.offer(items, t0).unwrap();
        let mut now = t0;
        let mut seq = 0u64;
        let mut stored_order: HashMap<String, Vec<u32>> = HashMap::new();
        let mut in_flight: Vec<Batch> = Vec::new();
        let mut completed = 0;
        for _ in 0..100_000 {
            while let Some(batch) = b.next_batch(now) {
                let mut seen = std::collections::HashSet::new();
                for e in &batch.entries {
                    assert!(
                        seen.insert(e.partition_key.clone()),
                        "two entries of one key in a call"
                    );
                }
                for other in &in_flight {
                    for e in &other.entries {
                        assert!(!seen.contains(&e.partition_key), "a key in two calls at once");
                    }
                }
                in_flight.push(batch);
            }
            if in_flight.is_empty() {
                match b.next_wakeup() {
                    Some(t) => now = now.max(t),
                    None => break,
                }
                continue;
            }
            // Answer a random in-flight call with random per-entry failures.
            let batch = in_flight.remove((next() % in_flight.len() as u64) as usize);
            let outcomes = batch
                .entries
                .iter()
                .map(|e| {
                    if next() % 3 == 0 {
                        throttled()
                    } else {
                        seq += 1;
                        stored_order
                            .entry(e.partition_key.clone())
                            .or_default()
                            .push(String::from_utf8(e.data.to_vec()).unwrap().parse().unwrap());
                        stored(seq)
                    }
                })
                .collect();
            b.on_result(batch.id, Ok(outcomes), now);
            completed += b.take_completions().len();
            now += MS;
        }
        assert_eq!(completed, 200);
        assert!(b.is_idle());
        for (key, order) in stored_order {
            let mut sorted = order.clone();
            sorted.sort_unstable();
            assert_eq!(order, sorted, "key {key} stored out of order");
            assert_eq!(order.len(), 40, "key {key}: each entry stored once");
        }
    }
}
