//! Group commit: one writer thread per store applies every write waiting for it in one
//! durable redb transaction, commits once and then answers every caller.
//!
//! Every durable redb commit costs an fsync (milliseconds), and redb runs one write
//! transaction at a time across the whole database. One commit per write would cap a
//! store at a few hundred writes per second and make every other store's writes queue
//! behind it: a fleet closing its history buckets in the same second stalled the state
//! saves, and with them the live path, for seconds (docs/performance.md). Batched, a
//! store takes thousands of writes per second for one fsync each batch.
//!
//! The queue is bounded ([`QUEUE_CAPACITY`]), so when the disk falls behind, writers wait
//! (back-pressure up to the vehicle actors) instead of queueing without limit.

use std::sync::{Arc, Weak};

use redb::{Database, WriteTransaction};
use tokio::sync::{mpsc, oneshot};

use super::EmbeddedError;

/// Writes waiting for a writer thread before callers have to wait.
pub const QUEUE_CAPACITY: usize = 1024;

/// Most writes applied in one transaction; bounds how long the first caller of a batch
/// waits behind the others.
pub const MAX_PER_COMMIT: usize = 512;

/// Applies a batch of requests inside one write transaction. The outer error means the
/// transaction must not be committed; the per-request results count only once it is.
pub(crate) type ApplyFn<R, O, E> = fn(&WriteTransaction, &[R]) -> Result<Vec<Result<O, E>>, E>;

/// One write on its way to the writer thread.
struct Job<R, O, E> {
    request: R,
    reply: oneshot::Sender<Result<O, E>>,
}

/// The sending side of one store's writer thread. Cheap to clone; the thread ends once
/// every clone is dropped.
pub(crate) struct GroupCommit<R, O, E> {
    jobs: mpsc::Sender<Job<R, O, E>>,
    /// Builds the store's "unavailable" error.
    error: fn(String) -> E,
}

impl<R, O, E> Clone for GroupCommit<R, O, E> {
    fn clone(&self) -> Self {
        Self {
            jobs: self.jobs.clone(),
            error: self.error,
        }
    }
}

impl<R, O, E> GroupCommit<R, O, E>
where
    R: Send + 'static,
    O: Send + 'static,
    E: Clone + std::fmt::Display + Send + 'static,
{
    /// Starts the writer thread `fleetwire-<name>-writer` on `db`.
    pub fn start(
        db: &Arc<Database>,
        name: &'static str,
        apply: ApplyFn<R, O, E>,
        error: fn(String) -> E,
    ) -> Result<Self, EmbeddedError> {
        let (jobs, rx) = mpsc::channel(QUEUE_CAPACITY);
        // Weak: the database closes when the last store is dropped, not whenever the
        // writer thread gets around to noticing.
        let writer_db = Arc::downgrade(db);
        std::thread::Builder::new()
            .name(format!("fleetwire-{name}-writer"))
            .spawn(move || run_writer(&writer_db, rx, apply, error))
            .map_err(|e| EmbeddedError::io("<writer thread>", e))?;
        Ok(Self { jobs, error })
    }

    /// Queues one write and waits until its batch is committed.
    pub async fn write(&self, request: R) -> Result<O, E> {
        let (reply, answer) = oneshot::channel();
        // Waits while the queue is full: that is the back-pressure.
        self.jobs
            .send(Job { request, reply })
            .await
            .map_err(|_| (self.error)("the writer thread has stopped".into()))?;
        answer
            .await
            .map_err(|_| (self.error)("the writer thread dropped the write".into()))?
    }

    /// Whether the writer thread is gone (for `ping`).
    pub fn is_closed(&self) -> bool {
        self.jobs.is_closed()
    }
}

/// The writer thread: batch, commit once, answer everyone. Ends when every sender is gone.
///
/// It holds the database only while committing, and lets go of it before answering, so
/// once every write has returned and the stores are dropped the file is closed and can be
/// reopened at once (restarts, tests).
fn run_writer<R, O, E: Clone + std::fmt::Display>(
    db: &Weak<Database>,
    mut rx: mpsc::Receiver<Job<R, O, E>>,
    apply: ApplyFn<R, O, E>,
    error: fn(String) -> E,
) {
    let mut batch: Vec<Job<R, O, E>> = Vec::with_capacity(MAX_PER_COMMIT);
    while let Some(first) = rx.blocking_recv() {
        batch.push(first);
        while batch.len() < MAX_PER_COMMIT {
            match rx.try_recv() {
                Ok(job) => batch.push(job),
                Err(_) => break,
            }
        }
        let (requests, replies): (Vec<R>, Vec<_>) = batch.drain(..).map(|j| (j.request, j.reply)).unzip();
        let result = match db.upgrade() {
            Some(db) => commit(&db, &requests, apply, error),
            None => Err(error("the database was closed".into())),
        };
        match result {
            Ok(outcomes) => {
                for (reply, outcome) in replies.into_iter().zip(outcomes) {
                    // A caller that gave up waiting is fine: its write is committed anyway.
                    let _ = reply.send(outcome);
                }
            }
            Err(e) => {
                tracing::error!(error = %e, writes = replies.len(), "Group commit failed.");
                for reply in replies {
                    let _ = reply.send(Err(e.clone()));
                }
            }
        }
    }
}

/// Applies a batch in one durable write transaction.
fn commit<R, O, E>(
    db: &Database,
    requests: &[R],
    apply: ApplyFn<R, O, E>,
    error: fn(String) -> E,
) -> Result<Vec<Result<O, E>>, E> {
    let txn = db.begin_write().map_err(|e| error(e.to_string()))?;
    let outcomes = apply(&txn, requests)?;
    debug_assert_eq!(outcomes.len(), requests.len(), "one outcome per request");
    // Default durability is Immediate: the commit returns after the fsync.
    txn.commit().map_err(|e| error(e.to_string()))?;
    Ok(outcomes)
}
