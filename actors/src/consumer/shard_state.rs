//! The decisions of one shard consumer, without actix and without I/O.
//!
//! [`ShardConsumerState::next_step`] says what to do next ([`Step`]); the actor
//! ([`super::ShardConsumer`]) performs exactly that one step and reports the result back
//! through an `on_*` method. One step at a time means one batch in flight per shard,
//! which keeps every vehicle's records in stream order and makes a slow router slow the
//! shard read (the back-pressure).
//!
//! The lifecycle follows KCL's `ConsumerStates` (awslabs/amazon-kinesis-client,
//! `lifecycle/ConsumerStates.java`): initialize (get an iterator from the checkpoint),
//! process (read, route, checkpoint), and shut down for one of the `ShutdownReason`s:
//! at shard end the `ShardEnd` checkpoint must be written, on a requested shutdown the
//! processed prefix is checkpointed, and on lease loss nothing is written.

use std::collections::{HashMap, VecDeque};
use std::sync::Arc;
use std::time::{Duration, Instant};

use chrono::{DateTime, Utc};

use crate::archive::ArchiveRecord;
use crate::codec::{DecodeError, decode_record};
use crate::model::{TelemetryRecord, VehicleId};
use crate::ports::{
    Checkpoint, GetRecordsOutput, LeaseError, SequenceNumber, ShardId, ShardIterator, StartPosition,
    StreamError, StreamRecord,
};

use super::RouteError;
use super::checkpointer::Checkpointer;
use super::durability::{BatchDurability, Durability};

/// Most routed batches that may wait for their deferred writes (coalesced state, open
/// history buckets) at once. Beyond it the consumer stops reading until the oldest batch
/// is durable: the backpressure of deferred writes. Each entry is a sequence number and a
/// tracker, not the records.
pub const MAX_DEFERRED_BATCHES: usize = 10_000;

/// How many times a final checkpoint on a requested shutdown is attempted before the
/// consumer gives up on it (the records after the last written checkpoint are then read
/// again by the next owner; dedupe makes that safe).
pub const FINAL_CHECKPOINT_ATTEMPTS: u32 = 3;

/// Why a shard consumer shuts down (KCL `ShutdownReason`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ShutdownReason {
    /// The node is stopping or giving the lease up: finish the in-flight batch, write the
    /// final checkpoint while the lease is still ours, then stop.
    Requested,
    /// Another worker owns the lease now: stop at once and do not checkpoint.
    LeaseLost,
}

/// Why the consumer stopped.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum StopReason {
    /// The closed shard was read to its end and `ShardEnd` is checkpointed.
    ShardEnd,
    /// A requested shutdown completed.
    Requested,
    /// The lease was lost (told by the coordinator, or a checkpoint write was fenced off).
    LeaseLost,
}

/// Settings the state machine needs.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StateConfig {
    /// Most records per read.
    pub max_records_per_get: usize,
    /// Wait after an empty read.
    pub idle_poll: Duration,
    /// Minimum time between two checkpoint writes.
    pub checkpoint_interval: Duration,
    /// Retry backoff.
    pub backoff: Backoff,
}

/// Exponential backoff with "equal jitter": attempt `n` (1-based) waits between half and
/// all of `min(initial * 2^(n-1), max)`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Backoff {
    /// Delay ceiling of the first retry.
    pub initial: Duration,
    /// Largest delay.
    pub max: Duration,
}

impl Backoff {
    /// The delay before retry `attempt` (1-based); `unit` in `[0, 1)` picks the jitter.
    pub fn delay(&self, attempt: u32, unit: f64) -> Duration {
        let factor = 2u32.saturating_pow(attempt.saturating_sub(1).min(30));
        let ceiling = self.initial.saturating_mul(factor).min(self.max);
        ceiling / 2 + ceiling.mul_f64(unit.clamp(0.0, 1.0) / 2.0)
    }
}

/// The next thing the actor must do.
#[derive(Debug, Clone, PartialEq)]
pub enum Step {
    /// Create an iterator at this position.
    GetIterator(StartPosition),
    /// Read up to `max` records.
    GetRecords {
        /// Where to read.
        iterator: ShardIterator,
        /// Most records.
        max: usize,
    },
    /// Route the batch (every vehicle group concurrently) and report the joint result.
    Route(Arc<Batch>),
    /// Write this checkpoint.
    Checkpoint(Checkpoint),
    /// Do nothing for this long, then ask again (idle poll or retry backoff).
    Wait(Duration),
    /// Ask the vehicles this consumer routed to write their deferred state and history
    /// now, then ask again: the shard has ended, and its children (and the `ShardEnd`
    /// checkpoint) wait for those writes, which would otherwise come only when the
    /// vehicles' buckets close by idleness.
    FlushDeferred,
    /// Stop the actor.
    Stop(StopReason),
}

/// Records read from the shard, decoded and grouped by vehicle.
#[derive(Debug, Clone, PartialEq)]
pub struct Batch {
    /// Records per vehicle in stream order; vehicles in order of first appearance.
    pub groups: Vec<(VehicleId, Vec<TelemetryRecord>)>,
    /// Sequence number of the batch's last record (decodable or not).
    pub last_sequence: SequenceNumber,
    /// Records in the batch, undecodable ones included.
    pub records: usize,
    /// Records that cannot be decoded, with the decode error: dead-lettered as part of the
    /// route, so the checkpoint passes them only once they are kept.
    pub undecodable: Vec<(StreamRecord, DecodeError)>,
    /// Sequence number and arrival time of every record of `groups`, in the same shape
    /// (`origins[g][i]` belongs to `groups[g].1[i]`): the raw archive's source fields.
    pub origins: Vec<Vec<(SequenceNumber, DateTime<Utc>)>>,
}

impl Batch {
    /// Decodes and groups `records`. Returns `None` for an empty read, and the decode
    /// errors (for the log; the records are in [`Batch::undecodable`]).
    pub fn decode(records: &[StreamRecord]) -> (Option<Batch>, Vec<DecodeError>) {
        let Some(last) = records.last() else {
            return (None, Vec::new());
        };
        let mut groups: Vec<(VehicleId, Vec<TelemetryRecord>)> = Vec::new();
        let mut origins: Vec<Vec<(SequenceNumber, DateTime<Utc>)>> = Vec::new();
        let mut index: HashMap<VehicleId, usize> = HashMap::new();
        let mut errors = Vec::new();
        let mut undecodable = Vec::new();
        for record in records {
            match decode_record(record) {
                Ok(decoded) => {
                    let vehicle = decoded.vehicle_id.clone();
                    let slot = *index.entry(vehicle.clone()).or_insert_with(|| {
                        groups.push((vehicle, Vec::new()));
                        origins.push(Vec::new());
                        groups.len() - 1
                    });
                    groups[slot].1.push(decoded);
                    origins[slot].push((record.sequence_number.clone(), record.approximate_arrival));
                }
                Err(e) => {
                    errors.push(e.clone());
                    undecodable.push((record.clone(), e));
                }
            }
        }
        let batch = Batch {
            groups,
            last_sequence: last.sequence_number.clone(),
            records: records.len(),
            undecodable,
            origins,
        };
        (Some(batch), errors)
    }

    /// The decoded records with their source, for the raw archive.
    pub fn archive_records(&self, shard: &ShardId) -> Vec<ArchiveRecord> {
        self.groups
            .iter()
            .zip(&self.origins)
            .flat_map(|((_, records), origins)| records.iter().zip(origins))
            .map(|(record, (sequence, arrival))| ArchiveRecord {
                shard: shard.clone(),
                sequence: sequence.clone(),
                arrival: *arrival,
                record: record.clone(),
            })
            .collect()
    }
}

#[derive(Debug, Clone, PartialEq)]
enum Position {
    /// No iterator (start, or the last one expired or was rejected).
    None,
    /// Read here next.
    At(ShardIterator),
    /// The closed shard has been read to its end.
    Ended,
}

/// The state of one shard consumer.
#[derive(Debug, Clone)]
pub struct ShardConsumerState {
    config: StateConfig,
    checkpointer: Checkpointer,
    position: Position,
    /// Read but not yet (successfully) routed; retried until it is.
    pending: Option<Arc<Batch>>,
    /// Routed batches whose deferred writes are not all durable yet, oldest first: last
    /// sequence number, record count, tracker.
    deferred: VecDeque<(SequenceNumber, usize, BatchDurability)>,
    /// No step but `Stop` before this instant (idle poll or backoff).
    not_before: Option<Instant>,
    /// Whether `not_before` is an idle poll after an empty read (which new records may
    /// end early), not a backoff (which they must not).
    idle: bool,
    /// Consecutive failures, for the backoff.
    failures: u32,
    shutdown: Option<ShutdownReason>,
    final_checkpoint_attempts: u32,
    /// `FlushDeferred` was returned at shard end (it is asked for once).
    flush_requested: bool,
    records_processed: u64,
    millis_behind_latest: u64,
}

impl ShardConsumerState {
    /// A consumer resuming from the lease's stored checkpoint.
    pub fn new(stored: Checkpoint, config: StateConfig) -> Self {
        Self {
            checkpointer: Checkpointer::new(stored, config.checkpoint_interval),
            config,
            position: Position::None,
            pending: None,
            deferred: VecDeque::new(),
            not_before: None,
            idle: false,
            failures: 0,
            shutdown: None,
            final_checkpoint_attempts: 0,
            flush_requested: false,
            records_processed: 0,
            millis_behind_latest: 0,
        }
    }

    /// What to do next. Call again after every step's result was reported.
    pub fn next_step(&mut self, now: Instant) -> Step {
        if self.shutdown == Some(ShutdownReason::LeaseLost) {
            return Step::Stop(StopReason::LeaseLost);
        }
        self.settle_deferred(now);
        let requested = self.shutdown == Some(ShutdownReason::Requested);
        let give_up = requested && self.final_checkpoint_attempts >= FINAL_CHECKPOINT_ATTEMPTS;
        if let Some(wait) = self.waiting(now) {
            return Step::Wait(wait);
        }
        // Shard end: everything read and routed; the child shards wait for this write.
        if self.position == Position::Ended && self.pending.is_none() {
            if !self.deferred.is_empty() && !give_up {
                // ShardEnd would pass records whose writes are still deferred: have them
                // written now (once), then wait for them.
                if !std::mem::replace(&mut self.flush_requested, true) {
                    return Step::FlushDeferred;
                }
                return Step::Wait(self.config.idle_poll);
            }
            return if *self.checkpointer.written() == Checkpoint::ShardEnd {
                Step::Stop(StopReason::ShardEnd)
            } else if give_up {
                Step::Stop(StopReason::Requested)
            } else {
                Step::Checkpoint(Checkpoint::ShardEnd)
            };
        }
        if requested {
            // The in-flight batch (if any) has finished: checkpoint what is processed.
            return match self.checkpointer.pending() {
                Some(checkpoint) if !give_up => Step::Checkpoint(checkpoint),
                _ => Step::Stop(StopReason::Requested),
            };
        }
        if let Some(checkpoint) = self.checkpointer.due(now) {
            return Step::Checkpoint(checkpoint);
        }
        if let Some(batch) = &self.pending {
            return Step::Route(batch.clone());
        }
        if self.deferred.len() >= MAX_DEFERRED_BATCHES {
            return Step::Wait(self.config.idle_poll);
        }
        match &self.position {
            Position::None => Step::GetIterator(self.checkpointer.resume_position()),
            Position::At(iterator) => Step::GetRecords {
                iterator: iterator.clone(),
                max: self.config.max_records_per_get,
            },
            Position::Ended => unreachable!("handled above"),
        }
    }

    fn waiting(&mut self, now: Instant) -> Option<Duration> {
        let until = self.not_before?;
        if until > now {
            Some(until - now)
        } else {
            self.not_before = None;
            None
        }
    }

    /// Backs off before retrying a read or a route; on a requested shutdown there is no
    /// retry to wait for (the consumer checkpoints what it has and stops).
    fn back_off_unless_stopping(&mut self, now: Instant) {
        if self.shutdown.is_none() {
            self.back_off(now);
        }
    }

    fn back_off(&mut self, now: Instant) {
        self.failures = self.failures.saturating_add(1);
        let unit: f64 = rand::random();
        self.not_before = Some(now + self.config.backoff.delay(self.failures, unit));
        self.idle = false;
    }

    /// Result of a [`Step::GetIterator`].
    pub fn on_iterator(&mut self, result: Result<ShardIterator, StreamError>, now: Instant) {
        match result {
            Ok(iterator) => {
                self.failures = 0;
                self.position = Position::At(iterator);
            }
            Err(_) => self.back_off_unless_stopping(now),
        }
    }

    /// Result of a [`Step::GetRecords`]. Returns the decode errors of records that cannot
    /// be decoded (the actor logs them); the route step dead-letters those records.
    pub fn on_records(
        &mut self,
        result: Result<GetRecordsOutput, StreamError>,
        now: Instant,
    ) -> Vec<DecodeError> {
        let output = match result {
            Ok(output) => output,
            Err(StreamError::ExpiredIterator) => {
                // A fresh iterator from the processed prefix; nothing read was lost.
                self.position = Position::None;
                return Vec::new();
            }
            Err(e) => {
                if !e.is_retryable() {
                    self.position = Position::None;
                }
                self.back_off_unless_stopping(now);
                return Vec::new();
            }
        };
        self.failures = 0;
        self.millis_behind_latest = output.millis_behind_latest;
        self.position = match output.next_iterator {
            Some(iterator) => Position::At(iterator),
            None => Position::Ended,
        };
        let (batch, errors) = Batch::decode(&output.records);
        match batch {
            None if self.position != Position::Ended => {
                self.not_before = Some(now + self.config.idle_poll);
                self.idle = true;
            }
            None => {}
            Some(batch) if batch.groups.is_empty() && batch.undecodable.is_empty() => self.processed(&batch),
            Some(batch) => self.pending = Some(Arc::new(batch)),
        }
        errors
    }

    fn processed(&mut self, batch: &Batch) {
        self.mark(batch.last_sequence.clone(), batch.records);
    }

    fn mark(&mut self, last: SequenceNumber, records: usize) {
        self.checkpointer.mark_processed(last);
        self.records_processed += records as u64;
    }

    /// Moves durable batches, oldest first, into the processed prefix. A failed one (a
    /// deferred write was given up) makes the consumer read again from the prefix.
    fn settle_deferred(&mut self, now: Instant) {
        while let Some((_, _, tracker)) = self.deferred.front() {
            match tracker.state() {
                Durability::Pending => return,
                Durability::Durable => {
                    let (last, records, _) = self.deferred.pop_front().expect("front exists");
                    self.mark(last, records);
                }
                Durability::Failed => {
                    self.deferred.clear();
                    self.pending = None;
                    self.position = Position::None;
                    self.back_off_unless_stopping(now);
                    return;
                }
            }
        }
    }

    /// Routed batches still waiting for deferred writes.
    pub fn deferred_batches(&self) -> usize {
        self.deferred.len()
    }

    /// Result of a [`Step::Route`]: all groups succeeded, or the first failure. The
    /// batch's effects are all durable.
    pub fn on_routed(&mut self, result: Result<(), RouteError>, now: Instant) {
        self.on_routed_deferred(result.map(|()| None), now);
    }

    /// Result of a [`Step::Route`] whose batch may still wait for deferred writes: it is
    /// processed once `tracker` says durable and every earlier batch is.
    pub fn on_routed_deferred(&mut self, result: Result<Option<BatchDurability>, RouteError>, now: Instant) {
        match result {
            Ok(tracker) => {
                self.failures = 0;
                let Some(batch) = self.pending.take() else { return };
                match tracker {
                    None if self.deferred.is_empty() => self.processed(&batch),
                    None => {
                        let (hold, done) = super::DurabilityHold::new();
                        hold.release();
                        self.deferred
                            .push_back((batch.last_sequence.clone(), batch.records, done));
                    }
                    Some(t) => self
                        .deferred
                        .push_back((batch.last_sequence.clone(), batch.records, t)),
                }
                self.settle_deferred(now);
            }
            // Keep the batch and retry it whole; never skip.
            Err(_) => self.back_off_unless_stopping(now),
        }
    }

    /// Result of a [`Step::Checkpoint`].
    pub fn on_checkpoint(&mut self, checkpoint: Checkpoint, result: Result<(), LeaseError>, now: Instant) {
        match result {
            Ok(()) => {
                self.failures = 0;
                self.checkpointer.written_at(checkpoint, now);
            }
            Err(LeaseError::ConditionFailed(_) | LeaseError::NotFound(_)) => {
                // Fenced off: someone else owns the lease. Never write again.
                self.shutdown = Some(ShutdownReason::LeaseLost);
            }
            Err(LeaseError::Unavailable(_)) => {
                if self.shutdown == Some(ShutdownReason::Requested) {
                    self.final_checkpoint_attempts += 1;
                }
                self.back_off(now);
            }
        }
    }

    /// Whether the consumer waits after an empty read (an idle poll) right now.
    pub fn is_idle(&self) -> bool {
        self.idle && self.not_before.is_some()
    }

    /// The stream says records were added to the shard: an idle poll ends now, a backoff
    /// does not.
    pub fn on_records_added(&mut self) {
        if std::mem::take(&mut self.idle) {
            self.not_before = None;
        }
    }

    /// Asks the consumer to shut down. `LeaseLost` overrides `Requested`. A pending wait
    /// (idle poll or backoff) is cut short so the shutdown is prompt.
    pub fn request_shutdown(&mut self, reason: ShutdownReason) {
        if self.shutdown != Some(ShutdownReason::LeaseLost) {
            self.shutdown = Some(reason);
        }
        self.not_before = None;
    }

    /// The shutdown asked for, if any.
    pub fn shutdown(&self) -> Option<ShutdownReason> {
        self.shutdown
    }

    /// The checkpoint last written (or stored in the lease at start).
    pub fn written_checkpoint(&self) -> &Checkpoint {
        self.checkpointer.written()
    }

    /// Records processed (routed or undecodable) by this consumer.
    pub fn records_processed(&self) -> u64 {
        self.records_processed
    }

    /// Lag of the last read behind the newest record of the shard.
    pub fn millis_behind_latest(&self) -> u64 {
        self.millis_behind_latest
    }
}

#[cfg(test)]
mod tests {
    use bytes::Bytes;

    use super::*;
    use crate::codec::encode_record;
    use crate::model::SignalValue;

    fn config() -> StateConfig {
        StateConfig {
            max_records_per_get: 10,
            idle_poll: Duration::from_millis(200),
            checkpoint_interval: Duration::from_secs(1),
            backoff: Backoff {
                initial: Duration::from_millis(100),
                max: Duration::from_secs(5),
            },
        }
    }

    fn record(seq: u32, vehicle: &str) -> StreamRecord {
        let rec = TelemetryRecord {
            timestamp: chrono::Utc::now(),
            vehicle_id: VehicleId(vehicle.into()),
            payload: [("Seq".to_string(), SignalValue::Int(seq.into()))].into(),
            can_id: None,
            ingest_received_at: chrono::Utc::now(),
        };
        StreamRecord {
            sequence_number: SequenceNumber(seq.to_string()),
            partition_key: vehicle.into(),
            data: encode_record(&rec),
            approximate_arrival: chrono::Utc::now(),
        }
    }

    fn read(records: Vec<StreamRecord>, next: Option<&str>) -> Result<GetRecordsOutput, StreamError> {
        Ok(GetRecordsOutput {
            records,
            next_iterator: next.map(|n| ShardIterator(n.into())),
            millis_behind_latest: 0,
            child_shard_ids: vec![],
        })
    }

    fn seq_cp(s: &str) -> Checkpoint {
        Checkpoint::Sequence(SequenceNumber(s.into()))
    }

    /// Drives the state from a fresh start to the first Route of `records`.
    fn started(records: Vec<StreamRecord>, now: Instant) -> (ShardConsumerState, Arc<Batch>) {
        let mut s = ShardConsumerState::new(Checkpoint::TrimHorizon, config());
        assert_eq!(s.next_step(now), Step::GetIterator(StartPosition::TrimHorizon));
        s.on_iterator(Ok(ShardIterator("it0".into())), now);
        assert!(matches!(s.next_step(now), Step::GetRecords { max: 10, .. }));
        assert!(s.on_records(read(records, Some("it1")), now).is_empty());
        let Step::Route(batch) = s.next_step(now) else {
            panic!("expected a route")
        };
        (s, batch)
    }

    #[test]
    fn deferred_batches_checkpoint_in_order_once_durable() {
        use super::super::DurabilityHold;
        let now = Instant::now();
        let (mut s, _) = started(vec![record(1, "a")], now);
        let (hold1, t1) = DurabilityHold::new();
        let kept1 = hold1.clone();
        hold1.release();
        s.on_routed_deferred(Ok(Some(t1)), now);
        // Reading goes on, but nothing is processed yet.
        assert!(matches!(s.next_step(now), Step::GetRecords { .. }));
        assert!(
            s.on_records(read(vec![record(2, "b")], Some("it2")), now)
                .is_empty()
        );
        assert!(matches!(s.next_step(now), Step::Route(_)));
        s.on_routed_deferred(Ok(None), now);
        assert_eq!(s.deferred_batches(), 2);
        assert!(
            matches!(s.next_step(now), Step::GetRecords { .. }),
            "no checkpoint yet"
        );
        kept1.release();
        assert_eq!(s.next_step(now), Step::Checkpoint(seq_cp("2")));
        assert_eq!(s.deferred_batches(), 0);
    }

    #[test]
    fn a_failed_hold_reads_again_from_the_processed_prefix() {
        use super::super::DurabilityHold;
        let now = Instant::now();
        let (mut s, _) = started(vec![record(1, "a")], now);
        let (hold, tracker) = DurabilityHold::new();
        let lost = hold.clone();
        hold.release();
        s.on_routed_deferred(Ok(Some(tracker)), now);
        drop(lost);
        let later = now + Duration::from_secs(60);
        assert!(matches!(s.next_step(later), Step::Wait(_)), "backs off first");
        let after = later + Duration::from_secs(60);
        assert_eq!(s.next_step(after), Step::GetIterator(StartPosition::TrimHorizon));
        assert_eq!(s.deferred_batches(), 0);
    }

    #[test]
    fn batches_group_by_vehicle_in_stream_order() {
        let records = vec![record(1, "a"), record(2, "b"), record(3, "a"), record(4, "a")];
        let (batch, errors) = Batch::decode(&records);
        let batch = batch.unwrap();
        assert!(errors.is_empty());
        let seqs = |v: usize| -> Vec<i64> {
            batch.groups[v]
                .1
                .iter()
                .map(|r| match r.payload["Seq"] {
                    SignalValue::Int(i) => i,
                    _ => 0,
                })
                .collect()
        };
        assert_eq!(batch.groups[0].0, VehicleId("a".into()));
        assert_eq!(seqs(0), [1, 3, 4]);
        assert_eq!(seqs(1), [2]);
        assert_eq!((batch.records, batch.last_sequence.0.as_str()), (4, "4"));
    }

    #[test]
    fn routed_batch_is_checkpointed_and_reading_continues() {
        let now = Instant::now();
        let (mut s, _) = started(vec![record(1, "a"), record(2, "b")], now);
        s.on_routed(Ok(()), now);
        assert_eq!(s.next_step(now), Step::Checkpoint(seq_cp("2")));
        s.on_checkpoint(seq_cp("2"), Ok(()), now);
        assert_eq!(
            s.next_step(now),
            Step::GetRecords {
                iterator: ShardIterator("it1".into()),
                max: 10
            }
        );
        assert_eq!(s.records_processed(), 2);
    }

    #[test]
    fn a_failed_route_retries_the_same_batch_without_checkpointing() {
        let now = Instant::now();
        let (mut s, batch) = started(vec![record(1, "a")], now);
        for attempt in 1..=3u32 {
            s.on_routed(Err(RouteError::ShuttingDown), now);
            let Step::Wait(d) = s.next_step(now) else {
                panic!("expected a backoff")
            };
            let ceiling = Duration::from_millis(100 * 2u64.pow(attempt - 1));
            assert!(d >= ceiling / 2 && d <= ceiling, "attempt {attempt}: {d:?}");
            let later = now + d;
            assert_eq!(
                s.next_step(later),
                Step::Route(batch.clone()),
                "same records again"
            );
            assert_eq!(s.checkpointer.pending(), None, "nothing processed");
        }
    }

    #[test]
    fn added_records_end_an_idle_poll_but_not_a_backoff() {
        let now = Instant::now();
        let mut s = ShardConsumerState::new(seq_cp("5"), config());
        s.next_step(now);
        s.on_iterator(Ok(ShardIterator("it".into())), now);
        s.next_step(now);
        s.on_records(read(vec![], Some("it")), now);
        assert!(s.is_idle());
        assert_eq!(s.next_step(now), Step::Wait(Duration::from_millis(200)));
        s.on_records_added();
        assert!(
            matches!(s.next_step(now), Step::GetRecords { .. }),
            "reads at once"
        );
        s.on_records(Err(StreamError::Throttled("slow down".into())), now);
        assert!(!s.is_idle());
        s.on_records_added();
        assert!(matches!(s.next_step(now), Step::Wait(_)), "a backoff is kept");
    }

    #[test]
    fn empty_reads_idle_and_undecodable_records_are_dead_lettered_before_the_checkpoint() {
        let now = Instant::now();
        let mut s = ShardConsumerState::new(seq_cp("5"), config());
        assert_eq!(
            s.next_step(now),
            Step::GetIterator(StartPosition::AfterSequenceNumber(SequenceNumber("5".into())))
        );
        s.on_iterator(Ok(ShardIterator("it".into())), now);
        s.next_step(now);
        s.on_records(read(vec![], Some("it")), now);
        assert_eq!(s.next_step(now), Step::Wait(Duration::from_millis(200)));
        let mut bad = record(6, "a");
        bad.data = Bytes::from_static(b"not json");
        let later = now + Duration::from_millis(200);
        s.next_step(later);
        let errors = s.on_records(read(vec![bad], Some("it")), later);
        assert_eq!(errors.len(), 1);
        assert!(errors[0].to_string().contains("record 6"));
        // Dead-lettering is the route: a failure keeps the batch and holds the checkpoint.
        let Step::Route(batch) = s.next_step(later) else {
            panic!("the undecodable record is routed to the dead letters")
        };
        assert!(batch.groups.is_empty());
        assert_eq!(batch.undecodable.len(), 1);
        assert_eq!(batch.undecodable[0].0.sequence_number, SequenceNumber("6".into()));
        s.on_routed(
            Err(RouteError::DeadLetterFailed {
                reason: "down".into(),
            }),
            later,
        );
        let Step::Wait(_) = s.next_step(later) else {
            panic!("backs off")
        };
        let retry = later + Duration::from_secs(60);
        assert!(
            matches!(s.next_step(retry), Step::Route(_)),
            "the same batch again"
        );
        s.on_routed(Ok(()), retry);
        assert_eq!(s.next_step(retry), Step::Checkpoint(seq_cp("6")));
    }

    #[test]
    fn expired_iterator_resumes_after_the_processed_prefix() {
        let now = Instant::now();
        let (mut s, _) = started(vec![record(7, "a")], now);
        s.on_routed(Ok(()), now);
        s.on_checkpoint(seq_cp("7"), Ok(()), now);
        s.next_step(now);
        s.on_records(Err(StreamError::ExpiredIterator), now);
        assert_eq!(
            s.next_step(now),
            Step::GetIterator(StartPosition::AfterSequenceNumber(SequenceNumber("7".into())))
        );
    }

    #[test]
    fn shard_end_waits_for_the_last_batch_then_checkpoints_shard_end() {
        let now = Instant::now();
        let mut s = ShardConsumerState::new(Checkpoint::TrimHorizon, config());
        s.next_step(now);
        s.on_iterator(Ok(ShardIterator("it".into())), now);
        s.next_step(now);
        s.on_records(read(vec![record(1, "a")], None), now);
        assert!(
            matches!(s.next_step(now), Step::Route(_)),
            "the last records first"
        );
        s.on_routed(Ok(()), now);
        assert_eq!(s.next_step(now), Step::Checkpoint(Checkpoint::ShardEnd));
        s.on_checkpoint(
            Checkpoint::ShardEnd,
            Err(LeaseError::Unavailable("x".into())),
            now,
        );
        let Step::Wait(d) = s.next_step(now) else { panic!() };
        assert_eq!(
            s.next_step(now + d),
            Step::Checkpoint(Checkpoint::ShardEnd),
            "retried, never skipped"
        );
        s.on_checkpoint(Checkpoint::ShardEnd, Ok(()), now + d);
        assert_eq!(s.next_step(now + d), Step::Stop(StopReason::ShardEnd));
    }

    #[test]
    fn shard_end_with_deferred_writes_asks_for_them_once_then_waits() {
        use super::super::DurabilityHold;
        let now = Instant::now();
        let mut s = ShardConsumerState::new(Checkpoint::TrimHorizon, config());
        s.next_step(now);
        s.on_iterator(Ok(ShardIterator("it".into())), now);
        s.next_step(now);
        s.on_records(read(vec![record(1, "a")], None), now);
        assert!(matches!(s.next_step(now), Step::Route(_)));
        let (hold, tracker) = DurabilityHold::new();
        let deferred = hold.clone();
        hold.release();
        s.on_routed_deferred(Ok(Some(tracker)), now);
        assert_eq!(
            s.next_step(now),
            Step::FlushDeferred,
            "the children wait: write now"
        );
        assert!(
            matches!(s.next_step(now), Step::Wait(_)),
            "asked once, then waits"
        );
        deferred.release();
        assert_eq!(s.next_step(now), Step::Checkpoint(Checkpoint::ShardEnd));
    }

    #[test]
    fn requested_shutdown_checkpoints_the_processed_prefix_then_stops() {
        let now = Instant::now();
        let (mut s, _) = started(vec![record(1, "a")], now);
        s.on_routed(Ok(()), now);
        s.on_checkpoint(seq_cp("1"), Ok(()), now);
        s.next_step(now);
        s.on_records(read(vec![record(2, "a")], Some("it2")), now);
        s.next_step(now); // Route(2) in flight when the shutdown arrives
        s.request_shutdown(ShutdownReason::Requested);
        s.on_routed(Ok(()), now);
        assert_eq!(
            s.next_step(now),
            Step::Checkpoint(seq_cp("2")),
            "inside the interval, still written"
        );
        s.on_checkpoint(seq_cp("2"), Ok(()), now);
        assert_eq!(s.next_step(now), Step::Stop(StopReason::Requested));
    }

    #[test]
    fn requested_shutdown_after_a_failed_batch_does_not_checkpoint_it() {
        let now = Instant::now();
        let (mut s, _) = started(vec![record(1, "a")], now);
        s.request_shutdown(ShutdownReason::Requested);
        s.on_routed(Err(RouteError::ShuttingDown), now);
        assert_eq!(s.next_step(now), Step::Stop(StopReason::Requested));
    }

    #[test]
    fn final_checkpoint_gives_up_after_a_few_attempts() {
        let mut now = Instant::now();
        let (mut s, _) = started(vec![record(1, "a")], now);
        s.on_routed(Ok(()), now);
        s.request_shutdown(ShutdownReason::Requested);
        for _ in 0..FINAL_CHECKPOINT_ATTEMPTS {
            assert_eq!(s.next_step(now), Step::Checkpoint(seq_cp("1")));
            s.on_checkpoint(seq_cp("1"), Err(LeaseError::Unavailable("down".into())), now);
            now += Duration::from_secs(10);
        }
        assert_eq!(s.next_step(now), Step::Stop(StopReason::Requested));
    }

    #[test]
    fn lease_loss_stops_without_checkpoint() {
        let now = Instant::now();
        let (mut s, _) = started(vec![record(1, "a")], now);
        s.request_shutdown(ShutdownReason::LeaseLost);
        s.on_routed(Ok(()), now);
        assert_eq!(s.next_step(now), Step::Stop(StopReason::LeaseLost));
        s.request_shutdown(ShutdownReason::Requested);
        assert_eq!(s.shutdown(), Some(ShutdownReason::LeaseLost), "lease loss wins");

        let (mut s, _) = started(vec![record(1, "a")], now);
        s.on_routed(Ok(()), now);
        s.on_checkpoint(seq_cp("1"), Err(LeaseError::ConditionFailed("s".into())), now);
        assert_eq!(
            s.next_step(now),
            Step::Stop(StopReason::LeaseLost),
            "fenced checkpoint = lease lost"
        );
    }

    #[test]
    fn backoff_doubles_up_to_the_max() {
        let b = Backoff {
            initial: Duration::from_millis(100),
            max: Duration::from_secs(5),
        };
        assert_eq!(b.delay(1, 0.0), Duration::from_millis(50));
        assert_eq!(b.delay(1, 1.0), Duration::from_millis(100));
        assert_eq!(b.delay(3, 1.0), Duration::from_millis(400));
        assert_eq!(b.delay(40, 1.0), Duration::from_secs(5));
        assert_eq!(b.delay(40, 0.0), Duration::from_millis(2500));
    }
}
