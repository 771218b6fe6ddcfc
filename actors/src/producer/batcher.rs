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
            jitter: Box::new(rand::random::<f64>),
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

#[cfg(test)]
mod tests;
