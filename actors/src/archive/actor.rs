//! The [`Archiver`] actor: a thin shell over [`Parts`]. It takes encoded batches from a
//! bounded mailbox, writes the parts [`Parts`] seals through the [`ArchiveSink`] and
//! releases their durability holds once a write succeeded.
//!
//! Writes run inside `ctx.wait`: while a part is being written (or retried after a
//! failure) the actor takes no new batch, its mailbox (`archive.queue_capacity`) fills and
//! the shard consumers' `send` waits — a failing backend pushes back to the consumers,
//! whose checkpoints stop moving; nothing is dropped. A failed write is retried with
//! exponential backoff until it succeeds, or until shutdown gives up on it (then its holds
//! are dropped unreleased: those batches are read again by the next owner of the shard).
//!
//! Registry kind `Archiver`, id `archive`; details: `sink` (where parts go),
//! `buffered_bytes`, `parts_written`, `failures`.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use actix::prelude::*;
use tracing::{debug, info, warn};

use super::ArchiveConfig;
use super::parts::{HourPartition, Parts, SealedPart};
use crate::consumer::{DurabilityHold, RouteError};
use crate::ports::ArchiveSink;
use crate::registry::{ActorKind, ActorRegistry, Registration};
use crate::telemetry;

/// Writes archive parts (see the module docs).
pub struct Archiver {
    /// Open parts and the rotation rule.
    parts: Parts<DurabilityHold>,
    /// Where sealed parts go.
    sink: Arc<dyn ArchiveSink>,
    /// First and longest delay between attempts to write one part.
    backoff: (Duration, Duration),
    /// How often open parts are checked for age.
    tick: Duration,
    /// Set when shutdown stops waiting: a failing write then gives up instead of retrying.
    abandon: Arc<AtomicBool>,
    registry: ActorRegistry,
    registration: Option<Registration>,
    /// Parts written so far (admin details).
    written: Arc<std::sync::atomic::AtomicU64>,
    /// Failed write attempts so far (admin details).
    failures: Arc<std::sync::atomic::AtomicU64>,
}

impl Archiver {
    /// Starts the archiver with a mailbox of `config.queue_capacity` batches.
    pub fn start(
        config: &ArchiveConfig,
        sink: Arc<dyn ArchiveSink>,
        registry: ActorRegistry,
    ) -> ArchiveHandle {
        let abandon = Arc::new(AtomicBool::new(false));
        let capacity = config.queue_capacity.max(1);
        let initial = Duration::from_millis(config.retry_backoff_initial_ms.max(1));
        let archiver = Archiver {
            parts: Parts::new(config.rotation()),
            sink,
            backoff: (
                initial,
                Duration::from_millis(config.retry_backoff_max_ms).max(initial),
            ),
            // A quarter of the age limit, so a part is written at most 25 % late; at most
            // a second, so short test limits work.
            tick: (config.rotation().max_age / 4).clamp(Duration::from_millis(20), Duration::from_secs(1)),
            abandon: abandon.clone(),
            registry,
            registration: None,
            written: Default::default(),
            failures: Default::default(),
        };
        let addr = Archiver::create(move |ctx| {
            ctx.set_mailbox_capacity(capacity);
            archiver
        });
        ArchiveHandle { addr, abandon }
    }

    /// Writes `sealed` one part after another, blocking the mailbox until done.
    fn write(&mut self, sealed: Vec<SealedPart<DurabilityHold>>, ctx: &mut Context<Self>) {
        self.publish();
        if sealed.is_empty() {
            return;
        }
        ctx.wait(
            self.write_future(sealed)
                .into_actor(self)
                .map(|(), act, _| act.publish()),
        );
    }

    fn write_future(&self, sealed: Vec<SealedPart<DurabilityHold>>) -> impl Future<Output = ()> + 'static {
        let (sink, backoff, abandon) = (self.sink.clone(), self.backoff, self.abandon.clone());
        let (written, failures) = (self.written.clone(), self.failures.clone());
        async move {
            for part in sealed {
                if write_part(&*sink, part, backoff, &abandon, &failures).await {
                    written.fetch_add(1, Ordering::Relaxed);
                }
            }
        }
    }

    fn publish(&self) {
        let buffered = self.parts.buffered_bytes();
        metrics::gauge!(telemetry::ARCHIVE_BUFFERED_BYTES).set(buffered as f64);
        if let Some(reg) = &self.registration {
            reg.set_detail("buffered_bytes", buffered);
            reg.set_detail("parts_written", self.written.load(Ordering::Relaxed));
            reg.set_detail("failures", self.failures.load(Ordering::Relaxed));
        }
    }
}

/// Writes one part, retrying with backoff; releases its holds once it is durable. Returns
/// false only when shutdown gave up on it (its holds are dropped unreleased).
async fn write_part(
    sink: &dyn ArchiveSink,
    part: SealedPart<DurabilityHold>,
    (initial, max): (Duration, Duration),
    abandon: &AtomicBool,
    failures: &std::sync::atomic::AtomicU64,
) -> bool {
    let mut delay = initial;
    loop {
        match sink.put_part(&part.key, part.body.clone()).await {
            Ok(()) => {
                metrics::counter!(telemetry::ARCHIVE_PARTS_TOTAL, "result" => "ok").increment(1);
                metrics::counter!(telemetry::ARCHIVE_RECORDS_TOTAL).increment(part.records as u64);
                debug!(key = %part.key, records = part.records, bytes = part.body.len(), "Archive part written.");
                part.holds.into_iter().for_each(DurabilityHold::release);
                return true;
            }
            Err(error) => {
                metrics::counter!(telemetry::ARCHIVE_PARTS_TOTAL, "result" => "error").increment(1);
                failures.fetch_add(1, Ordering::Relaxed);
                if abandon.load(Ordering::SeqCst) {
                    warn!(key = %part.key, %error, records = part.records,
                        "Shutdown gave up on an archive part; its records stay unacknowledged on the stream.");
                    return false;
                }
                warn!(key = %part.key, %error, retry_in = ?delay, "Archive part write failed; retrying.");
                tokio::time::sleep(delay).await;
                delay = (delay * 2).min(max);
            }
        }
    }
}

impl Actor for Archiver {
    type Context = Context<Self>;

    fn started(&mut self, ctx: &mut Self::Context) {
        let registration = self.registry.register(ActorKind::Archiver, "archive");
        registration.set_detail("sink", self.sink.describe());
        self.registration = Some(registration);
        self.publish();
        info!(sink = %self.sink.describe(), "Archiver started.");
        ctx.run_interval(self.tick, |act, ctx| {
            let due = act.parts.due(Instant::now());
            act.write(due, ctx);
        });
    }
}

/// One consumer batch's lines, with its hold (sent by [`ArchiveHandle::archive`]).
#[derive(Message)]
#[rtype(result = "()")]
struct ArchiveBatch {
    /// Encoded lines and their hour partitions.
    lines: Vec<(HourPartition, Vec<u8>)>,
    /// Cloned into every part with a line of the batch; this one is released here.
    hold: DurabilityHold,
}

impl Handler<ArchiveBatch> for Archiver {
    type Result = ();

    fn handle(&mut self, msg: ArchiveBatch, ctx: &mut Self::Context) {
        if let Some(reg) = &self.registration {
            reg.handled(false);
        }
        let sealed = self.parts.add_batch(msg.lines, &msg.hold, Instant::now());
        msg.hold.release();
        self.write(sealed, ctx);
    }
}

/// Seal and write every open part now (a node draining for shutdown).
#[derive(Message)]
#[rtype(result = "()")]
struct Flush;

impl Handler<Flush> for Archiver {
    type Result = ();

    fn handle(&mut self, _: Flush, ctx: &mut Self::Context) {
        let sealed = self.parts.seal_all();
        self.write(sealed, ctx);
    }
}

/// Write every open part, then stop; answered once written (or given up).
#[derive(Message)]
#[rtype(result = "()")]
struct Close;

impl Handler<Close> for Archiver {
    type Result = AtomicResponse<Self, ()>;

    fn handle(&mut self, _: Close, _: &mut Self::Context) -> Self::Result {
        let sealed = self.parts.seal_all();
        let write = self.write_future(sealed);
        AtomicResponse::new(Box::pin(write.into_actor(self).map(|(), act, ctx| {
            act.publish();
            ctx.stop();
        })))
    }
}

/// How the rest of the node reaches the [`Archiver`].
#[derive(Clone)]
pub struct ArchiveHandle {
    addr: Addr<Archiver>,
    /// Shared with the actor: set when [`close`](Self::close) stops waiting.
    abandon: Arc<AtomicBool>,
}

impl std::fmt::Debug for ArchiveHandle {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ArchiveHandle").finish_non_exhaustive()
    }
}

impl ArchiveHandle {
    /// Queues one batch's lines; waits while the archiver's mailbox is full. The batch is
    /// durable (for the checkpoint) once every part with one of its lines is written.
    pub async fn archive(
        &self,
        lines: Vec<(HourPartition, Vec<u8>)>,
        hold: DurabilityHold,
    ) -> Result<(), RouteError> {
        self.addr
            .send(ArchiveBatch { lines, hold })
            .await
            .map_err(|_| RouteError::ShuttingDown)
    }

    /// Asks the archiver to write its open parts now (does not wait).
    pub fn flush(&self) {
        self.addr.do_send(Flush);
    }

    /// After `delay`, writes that fail are given up instead of retried (their holds drop,
    /// so their records are not checkpointed). Shutdown arms this so that shard consumers
    /// waiting for a dead backend's full queue can finish and stop.
    pub fn give_up_after(&self, delay: Duration) {
        let abandon = self.abandon.clone();
        actix::spawn(async move {
            tokio::time::sleep(delay).await;
            abandon.store(true, Ordering::SeqCst);
        });
    }

    /// Writes the open parts and stops the archiver. Returns false if that took longer
    /// than `limit`: the writes still failing are then given up (their records were not
    /// checkpointed and will be read again).
    pub async fn close(&self, limit: Duration) -> bool {
        match tokio::time::timeout(limit, self.addr.send(Close)).await {
            Ok(_) => true,
            Err(_) => {
                self.abandon.store(true, Ordering::SeqCst);
                false
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use std::sync::Mutex;

    use async_trait::async_trait;
    use bytes::Bytes;
    use chrono::Utc;

    use super::*;
    use crate::consumer::Durability;
    use crate::ports::ArchiveError;

    /// A sink that fails its first `fail` writes, then keeps parts in memory.
    #[derive(Default)]
    struct MemorySink {
        fail: Mutex<usize>,
        parts: Mutex<Vec<(String, Bytes)>>,
    }

    #[async_trait]
    impl ArchiveSink for MemorySink {
        async fn put_part(&self, key: &str, body: Bytes) -> Result<(), ArchiveError> {
            {
                let mut fail = self.fail.lock().unwrap();
                if *fail > 0 {
                    *fail -= 1;
                    return Err(ArchiveError::Unavailable("injected".into()));
                }
            }
            self.parts.lock().unwrap().push((key.to_owned(), body));
            Ok(())
        }

        fn describe(&self) -> String {
            "memory".into()
        }
    }

    fn config(max_age_secs: u64) -> ArchiveConfig {
        ArchiveConfig {
            enabled: true,
            max_age_secs,
            retry_backoff_initial_ms: 5,
            retry_backoff_max_ms: 20,
            ..ArchiveConfig::default()
        }
    }

    async fn wait_for(tracker: &crate::consumer::BatchDurability, want: Durability) {
        let deadline = Instant::now() + Duration::from_secs(5);
        while tracker.state() != want {
            assert!(Instant::now() < deadline, "batch stayed {:?}", tracker.state());
            tokio::time::sleep(Duration::from_millis(5)).await;
        }
    }

    #[actix_rt::test]
    async fn a_failing_sink_is_retried_and_the_hold_released_only_after_the_write() {
        let sink = Arc::new(MemorySink {
            fail: Mutex::new(3),
            ..Default::default()
        });
        let handle = Archiver::start(&config(3600), sink.clone(), ActorRegistry::new());
        let (hold, tracker) = DurabilityHold::new();
        let lines = vec![(HourPartition::of(Utc::now()), b"{}\n".to_vec())];
        handle.archive(lines, hold).await.unwrap();
        tokio::time::sleep(Duration::from_millis(50)).await;
        assert_eq!(
            tracker.state(),
            Durability::Pending,
            "not written before rotation"
        );
        handle.flush();
        wait_for(&tracker, Durability::Durable).await;
        let parts = sink.parts.lock().unwrap();
        assert_eq!(parts.len(), 1, "three failures, then one write");
        assert_eq!(&parts[0].1[..], b"{}\n");
    }

    #[actix_rt::test]
    async fn parts_are_written_when_they_age() {
        let sink = Arc::new(MemorySink::default());
        let handle = Archiver::start(&config(1), sink.clone(), ActorRegistry::new());
        let (hold, tracker) = DurabilityHold::new();
        handle
            .archive(vec![(HourPartition::of(Utc::now()), b"{}\n".to_vec())], hold)
            .await
            .unwrap();
        wait_for(&tracker, Durability::Durable).await;
        assert_eq!(sink.parts.lock().unwrap().len(), 1);
        assert!(handle.close(Duration::from_secs(1)).await);
    }

    #[actix_rt::test]
    async fn close_gives_up_on_a_dead_sink_and_fails_the_batch() {
        let sink = Arc::new(MemorySink {
            fail: Mutex::new(usize::MAX),
            ..Default::default()
        });
        let handle = Archiver::start(&config(3600), sink, ActorRegistry::new());
        let (hold, tracker) = DurabilityHold::new();
        handle
            .archive(vec![(HourPartition::of(Utc::now()), b"{}\n".to_vec())], hold)
            .await
            .unwrap();
        assert!(!handle.close(Duration::from_millis(100)).await);
        wait_for(&tracker, Durability::Failed).await;
    }
}
