//! [`EnhancedFanOutStream`]: the stream port read through Kinesis enhanced fan-out
//! (RegisterStreamConsumer + SubscribeToShard), behind the same `get_shard_iterator` /
//! `get_records` calls the shard consumers make on the polling [`KinesisStream`], so the
//! consumers do not know which one they read.
//!
//! # Iterator tokens
//!
//! Enhanced fan-out has no shard iterators: a subscription starts at a position and then
//! pushes events. `get_shard_iterator` therefore returns a synthetic token naming the shard
//! and the position the next record follows ([`IteratorToken`]):
//!
//! | token | position |
//! |---|---|
//! | `efo:<shard>:trim_horizon` | `TRIM_HORIZON` |
//! | `efo:<shard>:latest` | `LATEST` (`get_shard_iterator` subscribes at once, so it means "after this call", as a polling iterator does) |
//! | `efo:<shard>:at:<seq>` | `AT_SEQUENCE_NUMBER` |
//! | `efo:<shard>:after:<seq>` | `AFTER_SEQUENCE_NUMBER` |
//!
//! A token that does not parse is `InvalidArgument`. Tokens never expire (unlike Kinesis
//! iterators), so `ExpiredIterator` does not occur here.
//!
//! # Subscriptions
//!
//! One live subscription per shard. `get_records(token)` uses the held subscription when
//! the token is at the position it will deliver next (or at a position it has passed
//! without delivering a record, e.g. the `LATEST` token again after an empty batch, or
//! `after:<last record>` when the event's ContinuationSequenceNumber is further on);
//! any other position (the consumer restarted from a checkpoint, another reader) drops the
//! held subscription and subscribes again at the token's position, so nothing before it is
//! delivered and nothing after it is skipped. The next token comes from the event's
//! ContinuationSequenceNumber (`after:`), or, when an event has more records than `limit`,
//! from the last record handed out, the rest staying buffered for the next call. An event
//! without a ContinuationSequenceNumber, or with ChildShards, ends the shard: once its
//! records are handed out, `next_iterator` is `None` and the child shard ids are returned.
//!
//! A subscription lasts up to 5 minutes on AWS (SubscribeToShard API reference); when its
//! event stream ends, the next `get_records` subscribes again from the position it holds.
//! When it fails, the classified error goes to the caller (whose backoff applies) and the
//! next call subscribes again. SubscribeToShard is allowed once per second per consumer
//! and shard (same reference): calls for one shard are spaced at least
//! [`SUBSCRIBE_INTERVAL`] apart by sleeping. A second call within 5 s of a successful one
//! is `ResourceInUseException` on AWS; after 5 s it takes the subscription over, which is
//! how a shard's new lease owner (or this reader, after dropping its own subscription)
//! gets it. So a read that meets ResourceInUse keeps trying for up to 6 s and then returns
//! an empty batch; only after a minute of it do reads fail (`Unavailable`). kinesis-local
//! behaves alike: it frees a dropped subscription within a couple of seconds.
//!
//! The SDK's operation timeout (30 s) covers the SubscribeToShard call, not the event
//! stream after it (tested: one subscription delivers for over 35 s).
//!
//! # Backpressure and bounds
//!
//! Events are pulled from the HTTP/2 stream only as `get_records` asks for them: a task
//! per subscription reads the event stream into a channel of one event and waits while
//! that event is not taken, so HTTP/2 flow control holds Kinesis back. Per shard at most
//! three events are held (one being handed out, one in the channel, one waiting to enter
//! it), plus the HTTP/2 receive window. A subscription whose next event nobody takes for
//! 30 s (`subscription::IDLE_CLOSE`; its shard's lease went elsewhere) is closed,
//! dropping the waiting event, which loses nothing: the position has not moved past it.
//! Shards that ended are forgotten.
//!
//! `get_records` waits `event_wait_ms` for an event, then returns an empty batch with a
//! token at the same position (the consumer backs off on empty batches). A subscription it
//! opened gets a fresh `event_wait_ms` for its first event, and ResourceInUse extends the
//! wait to 6 s, but a read never waits more than `event_wait_ms` + 8 s (plus a
//! SubscribeToShard call in flight at that moment, itself bounded by the SDK's timeouts).
//!
//! Files: this one holds the stream and its `get_records` loop; `token.rs` the iterator
//! tokens; `subscription.rs` one shard's read state and the task that pumps its events.

mod subscription;
mod token;

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use async_trait::async_trait;
use aws_sdk_kinesis::error::ProvideErrorMetadata;
use aws_sdk_kinesis::types::ConsumerStatus;
use tokio::sync::mpsc;

use fleetwire_actors::ports::stream::MAX_GET_RECORDS_LIMIT;
use fleetwire_actors::ports::{
    GetRecordsOutput, PutEntry, PutOutcome, RecordStream, ShardDescription, ShardId, ShardIterator,
    StartPosition, StreamError,
};

use super::errors::classify;
use super::{EnhancedFanOutConfig, KinesisError, KinesisStream};
use subscription::{Item, Live, Subscription, pump};
pub use token::IteratorToken;
use token::starting_position;

/// Least time between two SubscribeToShard calls for one shard (AWS: one call per second
/// per consumer per shard).
const SUBSCRIBE_INTERVAL: Duration = Duration::from_millis(1_100);
/// Pause between DescribeStreamConsumer polls while the consumer is CREATING (AWS allows
/// 20 of these calls per second per account).
const CONSUMER_POLL: Duration = Duration::from_millis(250);
/// Most SubscribeToShard calls one `get_records` makes (a subscription that ends or is
/// held elsewhere at once must not keep the caller).
const MAX_SUBSCRIBES_PER_CALL: u32 = 8;
/// How long one `get_records` keeps trying while the shard is held by another
/// subscription of this consumer: AWS lets a call 5 s after the holder's take over
/// (SubscribeToShard API reference); kinesis-local frees a dropped subscription at its
/// next 1 s tick.
const IN_USE_WAIT: Duration = Duration::from_secs(6);
/// Most a `get_records` call waits beyond `event_wait_ms` (for a new subscription's first
/// event, or for a shard held elsewhere), not counting a SubscribeToShard call in flight.
const MAX_EXTRA_WAIT: Duration = Duration::from_secs(8);

/// The [`RecordStream`] on enhanced fan-out: reads by SubscribeToShard with a registered
/// consumer; lists, puts and pings through the wrapped polling [`KinesisStream`].
pub struct EnhancedFanOutStream {
    polling: KinesisStream,
    consumer_arn: String,
    event_wait: Duration,
    /// One entry per shard read so far (removed when the shard ended); the async mutex
    /// serialises readers of one shard, which keeps one subscription per shard.
    shards: Mutex<HashMap<ShardId, Arc<tokio::sync::Mutex<Subscription>>>>,
}

impl std::fmt::Debug for EnhancedFanOutStream {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("EnhancedFanOutStream")
            .field("stream", &self.polling.stream_name())
            .field("consumer_arn", &self.consumer_arn)
            .finish_non_exhaustive()
    }
}

impl EnhancedFanOutStream {
    /// Registers the consumer `config.consumer_name` on `polling`'s stream (or reuses the
    /// one of that name) and waits until it is ACTIVE.
    pub async fn connect(
        polling: KinesisStream,
        config: &EnhancedFanOutConfig,
    ) -> Result<Self, KinesisError> {
        let stream_arn = polling.stream_arn().await?;
        let consumer_arn = register_consumer(
            &polling,
            &stream_arn,
            &config.consumer_name,
            Duration::from_secs(config.register_timeout_secs),
        )
        .await?;
        tracing::info!(stream = %polling.stream_name(), %consumer_arn, "Reading Kinesis through enhanced fan-out.");
        Ok(Self::new(
            polling,
            consumer_arn,
            Duration::from_millis(config.event_wait_ms),
        ))
    }

    /// Wraps a stream and an ACTIVE consumer's ARN. Makes no call.
    pub fn new(polling: KinesisStream, consumer_arn: String, event_wait: Duration) -> Self {
        Self {
            polling,
            consumer_arn,
            event_wait,
            shards: Mutex::new(HashMap::new()),
        }
    }

    /// The registered consumer's ARN.
    pub fn consumer_arn(&self) -> &str {
        &self.consumer_arn
    }

    /// The polling stream (for admin calls: create, split, delete).
    pub fn polling(&self) -> &KinesisStream {
        &self.polling
    }

    fn entry(&self, shard: &ShardId) -> Arc<tokio::sync::Mutex<Subscription>> {
        let mut shards = self.shards.lock().unwrap_or_else(|p| p.into_inner());
        Arc::clone(
            shards.entry(shard.clone()).or_insert_with(|| {
                Arc::new(tokio::sync::Mutex::new(Subscription::new(StartPosition::Latest)))
            }),
        )
    }

    /// Opens a subscription at `sub.next`, no sooner than [`SUBSCRIBE_INTERVAL`] after the
    /// previous one for this shard. `Ok(false)`: the shard is still held by another
    /// subscription of this consumer (ResourceInUseException).
    async fn subscribe(&self, shard: &ShardId, sub: &mut Subscription) -> Result<bool, StreamError> {
        if let Some(at) = sub.last_subscribe {
            let since = at.elapsed();
            if since < SUBSCRIBE_INTERVAL {
                tokio::time::sleep(SUBSCRIBE_INTERVAL - since).await;
            }
        }
        sub.last_subscribe = Some(Instant::now());
        let out = self
            .polling
            .client()
            .subscribe_to_shard()
            .consumer_arn(&self.consumer_arn)
            .shard_id(&shard.0)
            .starting_position(starting_position(&sub.next)?)
            .send()
            .await;
        let out = match out {
            Ok(out) => out,
            Err(e) if e.code() == Some("ResourceInUseException") => return Ok(false),
            Err(e) => return Err(classify("SubscribeToShard", e)),
        };
        let (tx, rx) = mpsc::channel(1);
        let task = tokio::spawn(pump(out, tx));
        tracing::debug!(%shard, position = ?sub.next, "Subscribed to the shard.");
        sub.live = Some(Live { events: rx, task });
        Ok(true)
    }
}

/// Registers `name` on the stream, or finds the consumer of that name, and waits for it to
/// be ACTIVE; returns its ARN.
async fn register_consumer(
    polling: &KinesisStream,
    stream_arn: &str,
    name: &str,
    timeout: Duration,
) -> Result<String, KinesisError> {
    let client = polling.client();
    match client
        .register_stream_consumer()
        .stream_arn(stream_arn)
        .consumer_name(name)
        .send()
        .await
    {
        Ok(_) => tracing::info!(consumer = name, "Registered the Kinesis stream consumer."),
        // It exists already (another node, an earlier run): use it.
        Err(e) if e.code() == Some("ResourceInUseException") => {}
        Err(e) => return Err(polling.err(classify("RegisterStreamConsumer", e))),
    }
    let started = Instant::now();
    loop {
        let out = client
            .describe_stream_consumer()
            .stream_arn(stream_arn)
            .consumer_name(name)
            .send()
            .await
            .map_err(|e| polling.err(classify("DescribeStreamConsumer", e)))?;
        let description = out.consumer_description.ok_or_else(|| {
            polling.err(StreamError::Unavailable(
                "DescribeStreamConsumer returned no description".into(),
            ))
        })?;
        let status = description.consumer_status;
        if status == ConsumerStatus::Active {
            return Ok(description.consumer_arn);
        }
        if status == ConsumerStatus::Deleting || started.elapsed() >= timeout {
            return Err(KinesisError::ConsumerNotActive {
                consumer: name.to_owned(),
                status: status.as_str().to_owned(),
                waited: started.elapsed(),
            });
        }
        tokio::time::sleep(CONSUMER_POLL).await;
    }
}

/// The first time a call finds the shard held elsewhere, it waits up to [`IN_USE_WAIT`]
/// for it (an empty batch before that would tell nothing about the position).
fn extend_for_in_use(deadline: &mut Instant, done: &mut bool, hard_stop: Instant) {
    if !*done {
        *done = true;
        *deadline = (*deadline).max(Instant::now() + IN_USE_WAIT).min(hard_stop);
    }
}

#[async_trait]
impl RecordStream for EnhancedFanOutStream {
    async fn list_shards(&self) -> Result<Vec<ShardDescription>, StreamError> {
        self.polling.list_shards().await
    }

    async fn put_records(&self, entries: Vec<PutEntry>) -> Result<Vec<PutOutcome>, StreamError> {
        self.polling.put_records(entries).await
    }

    async fn get_shard_iterator(
        &self,
        shard_id: &ShardId,
        position: StartPosition,
    ) -> Result<ShardIterator, StreamError> {
        // One GetShardIterator call checks the shard and the sequence number the way the
        // polling backend does (NotFound, InvalidArgument); its iterator is not used.
        self.polling
            .get_shard_iterator(shard_id, position.clone())
            .await?;
        if position == StartPosition::Latest {
            // A polling LATEST iterator starts at the moment it is made; a subscription's
            // LATEST at the moment it is opened. Opening it now keeps the meaning: records
            // put after this call are delivered by the first reads. (Should the shard be
            // held elsewhere, the first read subscribes instead, a little later.)
            let entry = self.entry(shard_id);
            let mut sub = entry.lock().await;
            sub.reset(StartPosition::Latest);
            self.subscribe(shard_id, &mut sub).await?;
        }
        Ok(IteratorToken {
            shard_id: shard_id.clone(),
            position,
        }
        .encode())
    }

    async fn get_records(
        &self,
        iterator: &ShardIterator,
        limit: usize,
    ) -> Result<GetRecordsOutput, StreamError> {
        if !(1..=MAX_GET_RECORDS_LIMIT).contains(&limit) {
            return Err(StreamError::InvalidArgument(format!(
                "limit must be 1 to {MAX_GET_RECORDS_LIMIT}, got {limit}"
            )));
        }
        let token = IteratorToken::parse(iterator)?;
        let shard = &token.shard_id;
        let entry = self.entry(shard);
        let mut sub = entry.lock().await;
        if !sub.continues_from(&token.position) {
            sub.reset(token.position.clone());
        }
        let started = Instant::now();
        // No extension below goes past this.
        let hard_stop = started + self.event_wait + MAX_EXTRA_WAIT;
        let mut deadline = started + self.event_wait;
        let mut subscribes = 0;
        let mut waited_for_in_use = false;
        while sub.pending.is_none() {
            if sub.live.is_none() {
                // Subscribing waits out SUBSCRIBE_INTERVAL first: not if that passes the
                // deadline, nor more than MAX_SUBSCRIBES_PER_CALL times.
                let ready_at = sub
                    .last_subscribe
                    .map_or_else(Instant::now, |at| at + SUBSCRIBE_INTERVAL);
                if ready_at > deadline || subscribes == MAX_SUBSCRIBES_PER_CALL {
                    return Ok(sub.empty_batch(shard));
                }
                subscribes += 1;
                if !self.subscribe(shard, &mut sub).await? {
                    sub.held_elsewhere(shard)?;
                    extend_for_in_use(&mut deadline, &mut waited_for_in_use, hard_stop);
                    continue;
                }
                // A new subscription gets the full wait for its first event: until then
                // nothing is known about the position (an empty batch would claim 0 ms
                // behind), and the call itself may have taken a while.
                deadline = deadline.max(Instant::now() + self.event_wait).min(hard_stop);
            }
            let remaining = deadline.saturating_duration_since(Instant::now());
            let Some(live) = sub.live.as_mut() else { continue };
            match tokio::time::timeout(remaining, live.events.recv()).await {
                Err(_elapsed) => return Ok(sub.empty_batch(shard)),
                // The subscription ended (or idled out): subscribe again from `next`.
                Ok(None) => sub.live = None,
                // Held elsewhere: it passes (AWS: a call 5 s after the holder's takes
                // over), so try again until the deadline, then an empty batch; an error
                // only once it has lasted IN_USE_LIMIT.
                Ok(Some(Item::Failed { in_use: true, .. })) => {
                    sub.live = None;
                    sub.held_elsewhere(shard)?;
                    extend_for_in_use(&mut deadline, &mut waited_for_in_use, hard_stop);
                }
                Ok(Some(Item::Failed { error, .. })) => {
                    sub.live = None;
                    return Err(error);
                }
                Ok(Some(Item::Event(event))) => {
                    tracing::trace!(%shard, records = event.records.len(), continuation = %event.continuation_sequence_number, "Event.");
                    sub.take_event(event)
                }
            }
        }
        let out = sub.hand_out(shard, limit);
        if out.next_iterator.is_none() {
            // The shard is done; nobody reads it again.
            drop(sub);
            self.shards
                .lock()
                .unwrap_or_else(|p| p.into_inner())
                .remove(shard);
        }
        Ok(out)
    }

    async fn ping(&self) -> Result<(), StreamError> {
        self.polling.ping().await
    }
}
