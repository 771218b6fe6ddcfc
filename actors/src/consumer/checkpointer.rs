//! The checkpointer of one shard lease: pure, no I/O.
//!
//! It keeps two positions apart, as vector's `OrderedFinalizer` and KCL's `Checkpointer`
//! do: the *processed* prefix (every record up to it has its effects persisted) and the
//! *written* checkpoint (what the lease store holds). The shard consumer reports batches
//! as processed only after the router acknowledged all of them, so the checkpoint can
//! never move past a record that might still be lost. Writes are rate-limited to one per
//! interval; on shutdown and at shard end the consumer writes regardless.

use std::time::{Duration, Instant};

use crate::ports::{Checkpoint, SequenceNumber, StartPosition};

/// Processed prefix versus written checkpoint of one shard.
#[derive(Debug, Clone)]
pub struct Checkpointer {
    interval: Duration,
    /// What the lease store holds (as far as this consumer wrote or read it).
    written: Checkpoint,
    /// Newest sequence number whose record (and every earlier one) is processed.
    processed: Option<SequenceNumber>,
    /// When the last write succeeded; `None` before the first.
    last_write: Option<Instant>,
}

impl Checkpointer {
    /// Starts from the checkpoint stored in the lease.
    pub fn new(stored: Checkpoint, interval: Duration) -> Self {
        let processed = match &stored {
            Checkpoint::Sequence(s) => Some(s.clone()),
            _ => None,
        };
        Self {
            interval,
            written: stored,
            processed,
            last_write: None,
        }
    }

    /// Marks every record up to and including `sequence` as processed. Never moves back.
    pub fn mark_processed(&mut self, sequence: SequenceNumber) {
        if self.processed.as_ref().is_none_or(|p| *p < sequence) {
            self.processed = Some(sequence);
        }
    }

    /// The newest processed sequence number.
    pub fn processed(&self) -> Option<&SequenceNumber> {
        self.processed.as_ref()
    }

    /// The checkpoint last written (or read from the lease).
    pub fn written(&self) -> &Checkpoint {
        &self.written
    }

    /// Where a new iterator must start to continue right after the processed prefix.
    pub fn resume_position(&self) -> StartPosition {
        match (&self.processed, &self.written) {
            (Some(s), _) => StartPosition::AfterSequenceNumber(s.clone()),
            (None, Checkpoint::Latest) => StartPosition::Latest,
            // ShardEnd is never resumed from (the coordinator does not start such a
            // consumer); reading from the horizon is the safe answer.
            (None, _) => StartPosition::TrimHorizon,
        }
    }

    /// The checkpoint to write when the processed prefix is ahead of the written one,
    /// whatever the interval says (shutdown, lease handover).
    pub fn pending(&self) -> Option<Checkpoint> {
        let processed = self.processed.as_ref()?;
        let ahead = match &self.written {
            Checkpoint::Sequence(w) => w < processed,
            Checkpoint::ShardEnd => false,
            Checkpoint::TrimHorizon | Checkpoint::Latest => true,
        };
        ahead.then(|| Checkpoint::Sequence(processed.clone()))
    }

    /// The checkpoint to write now: one is pending and the interval since the last write
    /// has passed (the first write is never delayed).
    pub fn due(&self, now: Instant) -> Option<Checkpoint> {
        let interval_passed = self
            .last_write
            .is_none_or(|t| now.saturating_duration_since(t) >= self.interval);
        if interval_passed { self.pending() } else { None }
    }

    /// How long until the pending checkpoint becomes due, if one is pending.
    pub fn due_in(&self, now: Instant) -> Option<Duration> {
        self.pending()?;
        Some(self.last_write.map_or(Duration::ZERO, |t| {
            (t + self.interval).saturating_duration_since(now)
        }))
    }

    /// Records a successful write.
    pub fn written_at(&mut self, checkpoint: Checkpoint, now: Instant) {
        self.written = checkpoint;
        self.last_write = Some(now);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn seq(s: &str) -> SequenceNumber {
        SequenceNumber(s.into())
    }

    const SECOND: Duration = Duration::from_secs(1);

    #[test]
    fn nothing_pending_until_something_is_processed() {
        let c = Checkpointer::new(Checkpoint::TrimHorizon, SECOND);
        assert_eq!(c.pending(), None);
        assert_eq!(c.due(Instant::now()), None);
        assert_eq!(c.resume_position(), StartPosition::TrimHorizon);
        let c = Checkpointer::new(Checkpoint::Latest, SECOND);
        assert_eq!(c.resume_position(), StartPosition::Latest);
    }

    #[test]
    fn first_write_is_immediate_then_one_per_interval() {
        let t0 = Instant::now();
        let mut c = Checkpointer::new(Checkpoint::TrimHorizon, SECOND);
        c.mark_processed(seq("5"));
        assert_eq!(c.due(t0), Some(Checkpoint::Sequence(seq("5"))));
        c.written_at(Checkpoint::Sequence(seq("5")), t0);
        assert_eq!(c.due(t0), None, "nothing new");
        c.mark_processed(seq("9"));
        assert_eq!(c.due(t0 + SECOND / 2), None, "inside the interval");
        assert_eq!(c.due_in(t0 + SECOND / 2), Some(SECOND / 2));
        assert_eq!(
            c.pending(),
            Some(Checkpoint::Sequence(seq("9"))),
            "a shutdown writes regardless"
        );
        assert_eq!(c.due(t0 + SECOND), Some(Checkpoint::Sequence(seq("9"))));
    }

    #[test]
    fn processed_prefix_never_moves_back_and_orders_numerically() {
        let mut c = Checkpointer::new(Checkpoint::Sequence(seq("10")), SECOND);
        assert_eq!(c.pending(), None, "the stored checkpoint is already written");
        assert_eq!(c.resume_position(), StartPosition::AfterSequenceNumber(seq("10")));
        c.mark_processed(seq("9"));
        assert_eq!(c.processed(), Some(&seq("10")));
        c.mark_processed(seq("100"));
        assert_eq!(c.pending(), Some(Checkpoint::Sequence(seq("100"))));
        assert_eq!(
            c.resume_position(),
            StartPosition::AfterSequenceNumber(seq("100"))
        );
    }

    #[test]
    fn shard_end_is_final() {
        let mut c = Checkpointer::new(Checkpoint::TrimHorizon, SECOND);
        c.mark_processed(seq("3"));
        c.written_at(Checkpoint::ShardEnd, Instant::now());
        assert_eq!(c.pending(), None);
        assert_eq!(c.written(), &Checkpoint::ShardEnd);
    }
}
