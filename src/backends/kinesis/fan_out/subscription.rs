//! One shard's read state on enhanced fan-out ([`Subscription`]: position, buffered
//! event, live subscription) and the task that pumps a subscription's events ([`pump`]).

use std::collections::VecDeque;
use std::time::{Duration, Instant};

use aws_sdk_kinesis::types::{Record, SubscribeToShardEvent, SubscribeToShardEventStream};
use tokio::sync::mpsc;

use fleetwire_actors::ports::{
    GetRecordsOutput, SequenceNumber, ShardId, ShardIterator, StartPosition, StreamError,
};

use super::super::errors::classify_subscription;
use super::super::stream::stream_record;
use super::token::IteratorToken;

/// A subscription whose next event nobody takes for this long is closed.
pub(super) const IDLE_CLOSE: Duration = Duration::from_secs(30);
/// After this long of finding the shard held elsewhere, reads fail with `Unavailable`
/// instead of returning empty batches: a takeover should have worked long before.
const IN_USE_LIMIT: Duration = Duration::from_secs(60);
/// Positions remembered as equivalent to the held one; a reader only ever comes back with
/// its latest token, so a few cover every real case.
const MAX_EQUIVALENT: usize = 4;

/// Reads one subscription's event stream into `tx`, one event at a time: it waits while
/// the last event is not taken (the backpressure), and ends when the stream ends, fails
/// (after passing the error on), nobody takes an event for [`IDLE_CLOSE`], or the reader
/// dropped the channel.
pub(super) async fn pump(
    mut subscription: aws_sdk_kinesis::operation::subscribe_to_shard::SubscribeToShardOutput,
    tx: mpsc::Sender<Item>,
) {
    loop {
        let received = tokio::select! {
            r = subscription.event_stream.recv() => r,
            () = tx.closed() => return,
        };
        let item = match received {
            Ok(Some(SubscribeToShardEventStream::SubscribeToShardEvent(event))) => Item::Event(event),
            // An event type newer than this SDK: nothing to deliver.
            Ok(Some(_)) => continue,
            // The subscription ran its course (5 minutes on AWS).
            Ok(None) => return,
            Err(e) => {
                let (error, in_use) = classify_subscription(e);
                Item::Failed { error, in_use }
            }
        };
        let failed = matches!(item, Item::Failed { .. });
        match tokio::time::timeout(IDLE_CLOSE, tx.send(item)).await {
            Ok(Ok(())) if !failed => {}
            _ => return,
        }
    }
}

/// What the task reading a subscription passes on.
pub(super) enum Item {
    /// The next event.
    Event(SubscribeToShardEvent),
    /// The subscription failed (and the task ended).
    Failed {
        /// Why.
        error: StreamError,
        /// `ResourceInUseException`: another subscription of this consumer still holds
        /// the shard (a previous lease owner's, or our own just dropped one).
        in_use: bool,
    },
}

/// A running subscription: its events and the task that reads them (stopped on drop).
pub(super) struct Live {
    pub(super) events: mpsc::Receiver<Item>,
    pub(super) task: tokio::task::JoinHandle<()>,
}

impl Drop for Live {
    fn drop(&mut self) {
        // Also closes the HTTP/2 stream, as the task owns the event receiver.
        self.task.abort();
    }
}

/// What follows the records of an event.
pub(super) enum Then {
    /// More records after this sequence number (the event's ContinuationSequenceNumber).
    Continue(SequenceNumber),
    /// The shard ended; these shards continue it.
    End(Vec<ShardId>),
}

/// An event's records not handed out yet.
pub(super) struct Pending {
    pub(super) records: VecDeque<Record>,
    pub(super) then: Then,
}

/// The read state of one shard.
pub(super) struct Subscription {
    /// The position the next record handed out follows: what the next token says.
    pub(super) next: StartPosition,
    /// Earlier positions with no record between them and `next` (see the module docs).
    pub(super) equivalent: VecDeque<StartPosition>,
    pub(super) live: Option<Live>,
    pub(super) pending: Option<Pending>,
    /// MillisBehindLatest of the last event.
    pub(super) millis_behind_latest: u64,
    /// When SubscribeToShard was last called for this shard (kept across resets: the AWS
    /// rate limit does not care why we subscribe again).
    pub(super) last_subscribe: Option<Instant>,
    /// Since when every subscription attempt found the shard held elsewhere.
    pub(super) in_use_since: Option<Instant>,
}

impl Subscription {
    pub(super) fn new(next: StartPosition) -> Self {
        Self {
            next,
            equivalent: VecDeque::new(),
            live: None,
            pending: None,
            millis_behind_latest: 0,
            last_subscribe: None,
            in_use_since: None,
        }
    }

    /// Whether reading from `position` can continue this subscription.
    pub(super) fn continues_from(&self, position: &StartPosition) -> bool {
        self.next == *position || self.equivalent.contains(position)
    }

    /// Starts over at `position`: the held subscription and buffered records go.
    pub(super) fn reset(&mut self, position: StartPosition) {
        let (last_subscribe, in_use_since) = (self.last_subscribe, self.in_use_since);
        *self = Self::new(position);
        self.last_subscribe = last_subscribe;
        self.in_use_since = in_use_since;
    }

    /// Notes a ResourceInUseException; an error once it has lasted [`IN_USE_LIMIT`].
    pub(super) fn held_elsewhere(&mut self, shard: &ShardId) -> Result<(), StreamError> {
        let since = *self.in_use_since.get_or_insert_with(Instant::now);
        tracing::debug!(%shard, "The shard is still held by another subscription; trying again.");
        if since.elapsed() >= IN_USE_LIMIT {
            return Err(StreamError::Unavailable(format!(
                "SubscribeToShard: {shard} has been held by another subscription of this consumer for {:?}",
                since.elapsed()
            )));
        }
        Ok(())
    }

    pub(super) fn take_event(&mut self, event: SubscribeToShardEvent) {
        self.in_use_since = None;
        self.millis_behind_latest = u64::try_from(event.millis_behind_latest).unwrap_or(0);
        let children: Vec<ShardId> = event
            .child_shards
            .unwrap_or_default()
            .into_iter()
            .map(|c| ShardId(c.shard_id))
            .collect();
        // AWS: ChildShards come only with the event that ends the shard, whose
        // ContinuationSequenceNumber is null (the SDK reads a missing one as "").
        let then = if event.continuation_sequence_number.is_empty() || !children.is_empty() {
            Then::End(children)
        } else {
            Then::Continue(SequenceNumber(event.continuation_sequence_number))
        };
        self.pending = Some(Pending {
            records: event.records.into(),
            then,
        });
    }

    pub(super) fn remember_equivalent(&mut self, position: StartPosition) {
        if position != self.next && !self.equivalent.contains(&position) {
            if self.equivalent.len() == MAX_EQUIVALENT {
                self.equivalent.pop_front();
            }
            self.equivalent.push_back(position);
        }
    }

    /// Hands out up to `limit` pending records and moves `next` past them.
    pub(super) fn hand_out(&mut self, shard: &ShardId, limit: usize) -> GetRecordsOutput {
        let Some(pending) = self.pending.as_mut() else {
            return self.empty_batch(shard);
        };
        let n = limit.min(pending.records.len());
        let records: Vec<Record> = pending.records.drain(..n).collect();
        let last_seq = records.last().map(|r| SequenceNumber(r.sequence_number.clone()));
        let before = self.next.clone();
        if !records.is_empty() {
            self.equivalent.clear();
        }
        let mut child_shard_ids = Vec::new();
        let mut ended = false;
        if pending.records.is_empty() {
            match self.pending.take().map(|p| p.then) {
                Some(Then::Continue(seq)) => {
                    self.next = StartPosition::AfterSequenceNumber(seq);
                    // Nothing lies between the last record and the continuation.
                    if let Some(last) = last_seq {
                        self.remember_equivalent(StartPosition::AfterSequenceNumber(last));
                    }
                }
                Some(Then::End(children)) => {
                    child_shard_ids = children;
                    ended = true;
                }
                None => {}
            }
        } else if let Some(last) = last_seq {
            self.next = StartPosition::AfterSequenceNumber(last);
        }
        if n == 0 {
            self.remember_equivalent(before);
        }
        GetRecordsOutput {
            records: records.into_iter().map(stream_record).collect(),
            next_iterator: (!ended).then(|| self.token(shard)),
            millis_behind_latest: self.millis_behind_latest,
            child_shard_ids,
        }
    }

    pub(super) fn empty_batch(&self, shard: &ShardId) -> GetRecordsOutput {
        GetRecordsOutput {
            records: Vec::new(),
            next_iterator: Some(self.token(shard)),
            millis_behind_latest: self.millis_behind_latest,
            child_shard_ids: Vec::new(),
        }
    }

    pub(super) fn token(&self, shard: &ShardId) -> ShardIterator {
        IteratorToken {
            shard_id: shard.clone(),
            position: self.next.clone(),
        }
        .encode()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn record(seq: &str) -> Record {
        Record::builder()
            .sequence_number(seq)
            .partition_key("k")
            .data(aws_sdk_kinesis::primitives::Blob::new(seq.as_bytes()))
            .build()
            .unwrap()
    }

    fn event(seqs: &[&str], continuation: &str, children: &[&str]) -> SubscribeToShardEvent {
        let mut b = SubscribeToShardEvent::builder()
            .set_records(Some(seqs.iter().map(|s| record(s)).collect()))
            .continuation_sequence_number(continuation)
            .millis_behind_latest(5);
        for c in children {
            b = b.child_shards(
                aws_sdk_kinesis::types::ChildShard::builder()
                    .shard_id(*c)
                    .set_parent_shards(Some(vec!["s".into()]))
                    .hash_key_range(
                        aws_sdk_kinesis::types::HashKeyRange::builder()
                            .starting_hash_key("0")
                            .ending_hash_key("1")
                            .build()
                            .unwrap(),
                    )
                    .build()
                    .unwrap(),
            );
        }
        b.build().unwrap()
    }

    fn after(s: &str) -> StartPosition {
        StartPosition::AfterSequenceNumber(SequenceNumber(s.into()))
    }

    #[test]
    fn events_are_split_at_the_limit_and_continue_after_the_continuation() {
        let shard = ShardId("s".into());
        let mut sub = Subscription::new(StartPosition::TrimHorizon);
        sub.take_event(event(&["1", "2", "3"], "5", &[]));
        let first = sub.hand_out(&shard, 2);
        assert_eq!(first.records.len(), 2);
        assert_eq!(first.next_iterator.unwrap().0, "efo:s:after:2");
        assert_eq!(first.millis_behind_latest, 5);
        let second = sub.hand_out(&shard, 2);
        assert_eq!(second.records.len(), 1);
        assert_eq!(second.next_iterator.unwrap().0, "efo:s:after:5");
        // A checkpoint at the last record continues the subscription: nothing lies between.
        assert!(sub.continues_from(&after("3")));
        assert!(sub.continues_from(&after("5")));
        assert!(!sub.continues_from(&after("2")));
        assert!(!sub.continues_from(&StartPosition::TrimHorizon));
    }

    #[test]
    fn empty_events_keep_earlier_tokens_valid_until_records_are_handed_out() {
        let shard = ShardId("s".into());
        let mut sub = Subscription::new(StartPosition::Latest);
        sub.take_event(event(&[], "9", &[]));
        let out = sub.hand_out(&shard, 10);
        assert!(out.records.is_empty());
        assert_eq!(out.next_iterator.unwrap().0, "efo:s:after:9");
        assert!(sub.continues_from(&StartPosition::Latest));
        sub.take_event(event(&["10"], "10", &[]));
        assert_eq!(sub.hand_out(&shard, 10).records.len(), 1);
        assert!(!sub.continues_from(&StartPosition::Latest));
    }

    #[test]
    fn the_end_event_returns_children_after_its_records() {
        let shard = ShardId("s".into());
        let mut sub = Subscription::new(after("1"));
        sub.take_event(event(&["2", "3"], "", &["c1", "c2"]));
        let first = sub.hand_out(&shard, 1);
        assert_eq!(first.next_iterator.unwrap().0, "efo:s:after:2");
        assert!(first.child_shard_ids.is_empty());
        let last = sub.hand_out(&shard, 1);
        assert_eq!(last.records.len(), 1);
        assert_eq!(last.next_iterator, None);
        assert_eq!(last.child_shard_ids, [ShardId("c1".into()), ShardId("c2".into())]);
    }
}
