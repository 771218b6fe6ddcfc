//! The `Producer` actor: a thin shell that runs the calls its [`Batcher`] asks for on a
//! [`RecordStream`], answers each `Produce` once every record of it has an outcome, sends
//! given-up records to the [`DeadLetterSink`] and keeps the metrics.
//!
//! Its handlers never wait on I/O: each `PutRecords` call runs as a future spawned in the
//! actor's context, so `Produce` is answered `Full` (or taken) as soon as it is handled.
//! The mailbox is bounded ([`MAILBOX_CAPACITY`]) and callers use `send`, so a burst of
//! requests beyond it waits for room instead of piling up.

use std::collections::HashMap;
use std::sync::Arc;
use std::time::{Duration, Instant};

use actix::prelude::*;
use chrono::Utc;
use tokio::sync::oneshot;
use tracing::{debug, error, info, warn};

use super::batcher::{BatchReport, Batcher};
use super::dead_letter::{DeadLetter, DeadLetterSink};
use super::{ProduceOutcome, ProducerConfig, ProducerFull};
use crate::model::TenantId;
use crate::ports::{PutEntry, RecordStream, StreamError};
use crate::registry::{ActorKind, ActorRegistry, Registration};
use crate::telemetry;

/// Messages the producer's mailbox holds before senders wait. Handling a `Produce` takes
/// microseconds, so this only absorbs bursts.
pub const MAILBOX_CAPACITY: usize = 256;

/// `(request, index in the request)`: where a record's outcome goes.
type Ticket = (u64, usize);

/// Writes records to the stream in batches; see the [module docs](super).
pub struct Producer {
    batcher: Batcher<Ticket>,
    stream: Arc<dyn RecordStream>,
    dead_letters: Arc<dyn DeadLetterSink>,
    /// `Produce` requests waiting for some of their outcomes.
    requests: HashMap<u64, Waiting>,
    next_request: u64,
    /// The timer that drives the batcher when nothing else happens (linger, retry).
    wakeup: Option<(Instant, SpawnHandle)>,
    /// Dead-letter writes still running; the actor stops only once they are done.
    dead_letter_writes: usize,
    /// Set by `Close`: senders waiting for the producer to stop.
    closing: Option<Vec<oneshot::Sender<()>>>,
    /// Its entry in the node's actor registry (`/admin/actors?kind=producer`), when started
    /// with [`Producer::start_registered`].
    registration: Option<Registration>,
}

struct Waiting {
    /// Whose records these are, when the caller knows: their dead letters are filed there.
    tenant: Option<TenantId>,
    outcomes: Vec<Option<ProduceOutcome>>,
    remaining: usize,
    reply: oneshot::Sender<Vec<ProduceOutcome>>,
}

impl std::fmt::Debug for Producer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Producer")
            .field("batcher", &self.batcher)
            .field("requests", &self.requests.len())
            .field("closing", &self.closing.is_some())
            .finish_non_exhaustive()
    }
}

/// The outcome of every record of a request the producer can no longer take.
fn stopped_outcomes(n: usize) -> Vec<ProduceOutcome> {
    vec![
        ProduceOutcome::Failed {
            error: StreamError::Unavailable("the producer is stopped".into()),
            retryable: true,
        };
        n
    ]
}

impl Producer {
    /// Starts a producer on the current arbiter writing to `stream`.
    pub fn start(
        config: &ProducerConfig,
        stream: Arc<dyn RecordStream>,
        dead_letters: Arc<dyn DeadLetterSink>,
    ) -> ProducerHandle {
        Self::start_with(Batcher::new(config), stream, dead_letters)
    }

    /// [`start`](Self::start), listed in `registry` as the node's `producer` actor with its
    /// batcher's depth (records pending, calls in flight, requests waiting).
    pub fn start_registered(
        config: &ProducerConfig,
        stream: Arc<dyn RecordStream>,
        dead_letters: Arc<dyn DeadLetterSink>,
        registry: &ActorRegistry,
    ) -> ProducerHandle {
        let registration = registry.register(ActorKind::Producer, "producer");
        Self::start_inner(Batcher::new(config), stream, dead_letters, Some(registration))
    }

    /// Starts a producer around a prepared batcher (tests inject the jitter).
    pub fn start_with(
        batcher: Batcher<(u64, usize)>,
        stream: Arc<dyn RecordStream>,
        dead_letters: Arc<dyn DeadLetterSink>,
    ) -> ProducerHandle {
        Self::start_inner(batcher, stream, dead_letters, None)
    }

    fn start_inner(
        batcher: Batcher<(u64, usize)>,
        stream: Arc<dyn RecordStream>,
        dead_letters: Arc<dyn DeadLetterSink>,
        registration: Option<Registration>,
    ) -> ProducerHandle {
        let addr = Producer {
            batcher,
            stream,
            dead_letters,
            requests: HashMap::new(),
            next_request: 0,
            wakeup: None,
            dead_letter_writes: 0,
            closing: None,
            registration,
        }
        .start();
        ProducerHandle { addr }
    }

    /// Starts every due call, hands out finished outcomes, re-arms the timer, and stops
    /// once closing and idle.
    fn drive(&mut self, ctx: &mut Context<Self>) {
        let now = Instant::now();
        while let Some(batch) = self.batcher.next_batch(now) {
            metrics::histogram!(telemetry::PRODUCER_BATCH_ENTRIES).record(batch.entries.len() as f64);
            metrics::histogram!(telemetry::PRODUCER_BATCH_BYTES).record(batch.bytes as f64);
            if let Some(linger) = batch.linger {
                metrics::histogram!(telemetry::PRODUCER_LINGER_SECONDS).record(linger.as_secs_f64());
            }
            let (stream, id) = (self.stream.clone(), batch.id);
            let call = async move { stream.put_records(batch.entries).await };
            ctx.spawn(call.into_actor(self).map(move |result, act, ctx| {
                let report = act.batcher.on_result(id, result, Instant::now());
                record(&report);
                act.drive(ctx);
            }));
        }
        self.deliver(ctx);
        self.arm_wakeup(ctx, now);
        metrics::gauge!(telemetry::PRODUCER_IN_FLIGHT).set(self.batcher.in_flight() as f64);
        metrics::gauge!(telemetry::PRODUCER_PENDING).set(self.batcher.pending() as f64);
        if let Some(reg) = &self.registration {
            reg.set_detail("pending_records", self.batcher.pending());
            reg.set_detail("in_flight_calls", self.batcher.in_flight());
            reg.set_detail("waiting_requests", self.requests.len());
            reg.set_detail("dead_letter_writes", self.dead_letter_writes);
            reg.set_detail("closing", self.closing.is_some());
        }
        if self.closing.is_some() && self.batcher.is_idle() && self.dead_letter_writes == 0 {
            ctx.stop();
        }
    }

    /// Routes finished outcomes to their requests and given-up records to the sink.
    fn deliver(&mut self, ctx: &mut Context<Self>) {
        let completions = self.batcher.take_completions();
        if completions.is_empty() {
            return;
        }
        let now = Instant::now();
        let mut letters = Vec::new();
        for c in completions {
            metrics::histogram!(telemetry::PRODUCER_PRODUCE_SECONDS)
                .record(now.saturating_duration_since(c.offered_at).as_secs_f64());
            let result = match &c.outcome {
                ProduceOutcome::Stored { .. } => "stored",
                ProduceOutcome::Failed { .. } => "failed",
                ProduceOutcome::DeadLettered { reason } => {
                    metrics::counter!(telemetry::PRODUCER_DEAD_LETTERS_TOTAL, "reason" => reason.label())
                        .increment(1);
                    warn!(partition_key = %c.entry.partition_key, bytes = c.entry.data.len(), %reason,
                        "Record dead-lettered.");
                    // The request's tenant, when its caller named one (an ingest key's);
                    // no stream source: the record never reached the stream.
                    let tenant = self.requests.get(&c.ticket.0).and_then(|w| w.tenant.clone());
                    letters.push(DeadLetter {
                        entry: c.entry,
                        reason: reason.clone(),
                        at: Utc::now(),
                        tenant,
                        source: None,
                    });
                    "dead_lettered"
                }
            };
            metrics::counter!(telemetry::PRODUCER_RECORDS_TOTAL, "result" => result).increment(1);
            let (request, index) = c.ticket;
            let Some(waiting) = self.requests.get_mut(&request) else {
                continue;
            };
            waiting.outcomes[index] = Some(c.outcome);
            waiting.remaining -= 1;
            if waiting.remaining == 0 {
                let waiting = self.requests.remove(&request).expect("present");
                let outcomes = waiting
                    .outcomes
                    .into_iter()
                    .map(|o| o.expect("every record has an outcome"))
                    .collect();
                // The caller may have gone away (a dropped HTTP request); the records were
                // still handled.
                let _ = waiting.reply.send(outcomes);
            }
        }
        if !letters.is_empty() {
            self.dead_letter_writes += 1;
            let sink = self.dead_letters.clone();
            let keys: Vec<String> = letters.iter().map(|l| l.entry.partition_key.clone()).collect();
            let write = async move { sink.put(letters).await };
            ctx.spawn(write.into_actor(self).map(move |result, act, ctx| {
                act.dead_letter_writes -= 1;
                if let Err(e) = result {
                    metrics::counter!(telemetry::PRODUCER_DEAD_LETTER_ERRORS_TOTAL).increment(1);
                    error!(error = %e, partition_keys = ?keys, "Dead letters could not be kept.");
                }
                act.drive(ctx);
            }));
        }
    }

    /// Keeps one timer, at the batcher's next linger end or retry.
    fn arm_wakeup(&mut self, ctx: &mut Context<Self>, now: Instant) {
        let next = self.batcher.next_wakeup();
        if self.wakeup.as_ref().map(|(at, _)| *at) == next {
            return;
        }
        if let Some((_, handle)) = self.wakeup.take() {
            ctx.cancel_future(handle);
        }
        if let Some(at) = next {
            let handle = ctx.run_later(at.saturating_duration_since(now), |act, ctx| {
                act.wakeup = None;
                act.drive(ctx);
            });
            self.wakeup = Some((at, handle));
        }
    }
}

/// Counts one call's result.
fn record(report: &BatchReport) {
    metrics::counter!(telemetry::PRODUCER_PUT_CALLS_TOTAL, "result" => report.call.label()).increment(1);
    if report.retried > 0 {
        metrics::counter!(telemetry::PRODUCER_RETRIED_ENTRIES_TOTAL).increment(report.retried as u64);
    }
    if report.throttled > 0 {
        metrics::counter!(telemetry::PRODUCER_THROTTLED_ENTRIES_TOTAL).increment(report.throttled as u64);
    }
}

impl Actor for Producer {
    type Context = Context<Self>;

    fn started(&mut self, ctx: &mut Self::Context) {
        ctx.set_mailbox_capacity(MAILBOX_CAPACITY);
        debug!("Producer started.");
    }

    fn stopped(&mut self, _: &mut Self::Context) {
        for (_, waiting) in self.requests.drain() {
            let n = waiting.outcomes.len();
            let _ = waiting.reply.send(stopped_outcomes(n));
        }
        for waiter in self.closing.take().into_iter().flatten() {
            let _ = waiter.send(());
        }
        info!("Producer stopped.");
    }
}

/// Sent by a [`ProducerHandle`] to the [`Producer`] with records to write; answered once
/// every record has an outcome (one per entry, in order), or at once with
/// [`ProducerFull`] when the producer cannot take them all.
#[derive(Debug, Message)]
#[rtype(result = "Result<Vec<ProduceOutcome>, ProducerFull>")]
pub struct Produce {
    /// The records, each with its partition key.
    pub entries: Vec<PutEntry>,
    /// Whose records they are, if known: records that end as dead letters are filed under
    /// this tenant (so its admins see them), else under the unknown tenant.
    pub tenant: Option<TenantId>,
}

impl Handler<Produce> for Producer {
    type Result = ResponseFuture<Result<Vec<ProduceOutcome>, ProducerFull>>;

    fn handle(&mut self, msg: Produce, ctx: &mut Self::Context) -> Self::Result {
        if let Some(reg) = &self.registration {
            reg.handled(false);
        }
        let n = msg.entries.len();
        if self.closing.is_some() {
            return Box::pin(std::future::ready(Ok(stopped_outcomes(n))));
        }
        if n == 0 {
            return Box::pin(std::future::ready(Ok(Vec::new())));
        }
        let request = self.next_request;
        self.next_request += 1;
        let items = msg
            .entries
            .into_iter()
            .enumerate()
            .map(|(index, entry)| ((request, index), entry))
            .collect();
        if let Err(full) = self.batcher.offer(items, Instant::now()) {
            metrics::counter!(telemetry::PRODUCER_FULL_TOTAL).increment(1);
            debug!(%full, records = n, "Produce refused.");
            return Box::pin(std::future::ready(Err(full)));
        }
        let (reply, rx) = oneshot::channel();
        self.requests.insert(
            request,
            Waiting {
                tenant: msg.tenant,
                outcomes: vec![None; n],
                remaining: n,
                reply,
            },
        );
        self.drive(ctx);
        Box::pin(async move { Ok(rx.await.unwrap_or_else(|_| stopped_outcomes(n))) })
    }
}

/// Sent by a [`ProducerHandle`] when the node shuts down: stop lingering, finish every
/// pending record (stored, failed or, after `limit`, dead-lettered with reason
/// `shutdown`), then stop. Answered once the producer has stopped. Later `Produce`
/// requests get `Failed`/retryable outcomes.
#[derive(Debug, Clone, Copy, Message)]
#[rtype(result = "()")]
pub struct Close {
    /// How long pending records may still take (retries included).
    pub limit: Duration,
}

impl Handler<Close> for Producer {
    type Result = ResponseFuture<()>;

    fn handle(&mut self, msg: Close, ctx: &mut Self::Context) -> Self::Result {
        let (tx, rx) = oneshot::channel();
        match &mut self.closing {
            Some(waiters) => waiters.push(tx),
            None => {
                info!(
                    pending = self.batcher.pending(),
                    "Producer flushing before it stops."
                );
                self.closing = Some(vec![tx]);
                self.batcher.close();
                ctx.run_later(msg.limit, |act, ctx| {
                    let given_up = act.batcher.dead_letter_all();
                    if given_up > 0 {
                        warn!(
                            records = given_up,
                            "Producer shutdown limit reached; pending records dead-lettered."
                        );
                    }
                    act.drive(ctx);
                });
            }
        }
        self.drive(ctx);
        Box::pin(async move {
            let _ = rx.await;
        })
    }
}

/// A cheap, cloneable way to use a [`Producer`].
#[derive(Debug, Clone)]
pub struct ProducerHandle {
    addr: Addr<Producer>,
}

impl ProducerHandle {
    /// Writes `entries` and returns one outcome per entry, in order, once all have one.
    /// `Err(ProducerFull)` (returned as soon as the producer handles the request) means
    /// none was taken: push back and try later. After the producer stopped every entry is
    /// `Failed` and retryable.
    pub async fn produce(&self, entries: Vec<PutEntry>) -> Result<Vec<ProduceOutcome>, ProducerFull> {
        self.produce_for(None, entries).await
    }

    /// [`produce`](Self::produce) for records of `tenant`, where their dead letters go.
    pub async fn produce_for(
        &self,
        tenant: Option<TenantId>,
        entries: Vec<PutEntry>,
    ) -> Result<Vec<ProduceOutcome>, ProducerFull> {
        let n = entries.len();
        match self.addr.send(Produce { entries, tenant }).await {
            Ok(result) => result,
            Err(_) => Ok(stopped_outcomes(n)),
        }
    }

    /// Flushes and stops the producer (see [`Close`]); returns once it has stopped.
    pub async fn close(&self, limit: Duration) {
        // An error means it already stopped.
        let _ = self.addr.send(Close { limit }).await;
    }

    /// Whether the producer is still running.
    pub fn is_running(&self) -> bool {
        self.addr.connected()
    }
}
