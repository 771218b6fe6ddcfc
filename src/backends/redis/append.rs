//! Appending to the tenants' logs, batched.
//!
//! Every append (a published update, a gap marker) goes into one bounded queue per
//! fan-out. One task takes whatever is queued (up to [`MAX_BATCH`] entries) and appends
//! it with a single call of the append script (`wire.rs`) on the shared publish
//! connection; entries that arrive meanwhile wait for the next call. A burst of updates (a
//! consumer batch routes up to `max_records_per_get` at once) then costs Redis one script
//! call instead of one per update — a script call's own cost (~6 µs on Redis 7.0, `INFO
//! commandstats`) was about half of a single append's — and the client one command
//! instead of hundreds (docs/performance.md, "Record → browser through Redis").
//!
//! # Bounds and failures
//!
//! - **Queue full** ([`QUEUE_CAPACITY`]): callers wait for room, each at most its command
//!   timeout, then fail — the fan-out records the update as a gap (`gaps.rs`).
//! - **Deadline**: each entry carries its caller's deadline; the task skips entries whose
//!   caller has given up and bounds each call by the latest deadline of its batch.
//! - **Call fails or does not answer**: every entry of the call fails (each becomes a gap)
//!   and a connection that may be broken is discarded (`publish_conn.rs`).
//! - At most [`MAX_IN_FLIGHT`] calls at a time (pipelined on the connection): batches form
//!   by themselves under load, and a lone publish does not wait for another's round trip.
//!   Calls in flight may land in any order: that is safe because every caller (a vehicle
//!   actor, the gap retry task) has one append outstanding at a time, so no caller's
//!   entries are ever in two calls; within a call they keep queue order per tenant.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use deadpool_redis::Pool;
use fleetwire_actors::model::TenantId;
use fleetwire_actors::ports::EventId;
use fleetwire_actors::telemetry::{
    REDIS_FANOUT_APPEND_BATCH_ENTRIES, REDIS_FANOUT_APPEND_CALL_SECONDS, REDIS_FANOUT_APPEND_QUEUE_SECONDS,
};
use futures_util::StreamExt;
use futures_util::stream::FuturesUnordered;
use tokio::sync::{mpsc, oneshot};
use tokio::time::Instant;

use super::keys::Keys;
use super::publish_conn::PublishConnection;
use super::wire::{APPEND_SCRIPT, Script};

/// Most entries one script call appends. Bounds the call's size (updates are a few KB)
/// and how long Redis is busy with one call (~11 µs per entry, `PUBLISH` included).
pub(crate) const MAX_BATCH: usize = 256;
/// Appends that may wait for the task. Four full batches: enough to absorb a consumer
/// batch's burst, small enough that a stalled Redis fails publishes within one timeout.
pub(crate) const QUEUE_CAPACITY: usize = 4 * MAX_BATCH;
/// Script calls on their way at once. A few keep a sequential caller's round trip from
/// waiting for another call's (Redis runs them one after the other anyway).
pub(crate) const MAX_IN_FLIGHT: usize = 4;

static APPEND: Script = Script::new(APPEND_SCRIPT);

/// One queued append and where its answer goes.
struct Pending {
    tenant: TenantId,
    field: &'static str,
    value: Vec<u8>,
    /// When the caller stops waiting.
    deadline: Instant,
    /// When the caller queued it (for the queue-wait metric).
    queued: Instant,
    reply: oneshot::Sender<Result<EventId, String>>,
}

/// What the append task needs; cloned into it when it starts.
#[derive(Clone)]
struct Batcher {
    conn: Arc<PublishConnection>,
    keys: Arc<Keys>,
    /// `max entries` and `max age ms` as script arguments.
    max_events: Arc<str>,
    max_age_ms: Arc<str>,
}

/// Appends entries to tenants' logs; shared by publishes and the gap retry task. Cheap to
/// clone; clones share the queue.
#[derive(Clone)]
pub(crate) struct Appender {
    /// Replays, `PING` and the subscriptions' recovery reads (not appends).
    pub(crate) pool: Pool,
    /// Bounds every append, waiting for room in the queue included.
    pub(crate) timeout: Duration,
    batcher: Batcher,
    /// The queue into the append task, which the first append starts (building a fan-out
    /// needs no runtime) and the next one restarts if it has ended: the task lives on the
    /// runtime of the append that started it, and ends with it. It also ends when the last
    /// clone is dropped.
    queue: Arc<Mutex<Option<mpsc::Sender<Pending>>>>,
}

impl Appender {
    pub(crate) fn new(
        pool: Pool,
        conn: PublishConnection,
        keys: Arc<Keys>,
        max_events: usize,
        max_age_ms: u128,
        timeout: Duration,
    ) -> Self {
        Self {
            pool,
            timeout,
            batcher: Batcher {
                conn: Arc::new(conn),
                keys,
                max_events: max_events.to_string().into(),
                max_age_ms: max_age_ms.to_string().into(),
            },
            queue: Arc::default(),
        }
    }

    /// The key layout appends use (and the fan-out's reads with them).
    pub(crate) fn keys(&self) -> &Arc<Keys> {
        &self.batcher.keys
    }

    /// Appends `field = value` to `tenant`'s log and publishes it; returns the entry's id.
    /// Bounded by the command timeout, waiting for room and (re)connecting included.
    pub(crate) async fn append(
        &self,
        tenant: &TenantId,
        field: &'static str,
        value: Vec<u8>,
    ) -> Result<EventId, String> {
        let deadline = Instant::now() + self.timeout;
        let (reply, answer) = oneshot::channel();
        let pending = Pending {
            tenant: tenant.clone(),
            field,
            value,
            deadline,
            queued: Instant::now(),
            reply,
        };
        let queue = self.queue();
        match tokio::time::timeout_at(deadline, queue.send(pending)).await {
            Ok(Ok(())) => {}
            Ok(Err(_)) => return Err("the append task has ended".into()),
            Err(_) => return Err(format!("the append queue stayed full for {:?}", self.timeout)),
        }
        match tokio::time::timeout_at(deadline, answer).await {
            Ok(Ok(result)) => result,
            Ok(Err(_)) => Err("the append task dropped the entry".into()),
            Err(_) => Err(format!("no answer within {:?}", self.timeout)),
        }
    }

    /// The queue into a running append task, started here if there is none.
    fn queue(&self) -> mpsc::Sender<Pending> {
        let mut queue = self.queue.lock().expect("append queue lock never poisoned");
        match &*queue {
            Some(tx) if !tx.is_closed() => tx.clone(),
            _ => {
                let (tx, rx) = mpsc::channel(QUEUE_CAPACITY);
                tokio::spawn(self.batcher.clone().run(rx));
                *queue = Some(tx.clone());
                tx
            }
        }
    }
}

impl Batcher {
    /// The append task: one script call per batch of whatever is queued, at most
    /// [`MAX_IN_FLIGHT`] calls at a time, until every sender is gone.
    async fn run(self, mut rx: mpsc::Receiver<Pending>) {
        let mut in_flight = FuturesUnordered::new();
        let mut batch = Vec::with_capacity(MAX_BATCH);
        loop {
            tokio::select! {
                taken = rx.recv_many(&mut batch, MAX_BATCH), if in_flight.len() < MAX_IN_FLIGHT => {
                    if taken == 0 {
                        break;
                    }
                    let now = Instant::now();
                    // Their callers have stopped waiting and counted them as lost.
                    batch.retain(|p| p.deadline > now);
                    let waited = metrics::histogram!(REDIS_FANOUT_APPEND_QUEUE_SECONDS);
                    for p in &batch {
                        waited.record(now.duration_since(p.queued).as_secs_f64());
                    }
                    if !batch.is_empty() {
                        metrics::histogram!(REDIS_FANOUT_APPEND_BATCH_ENTRIES).record(batch.len() as f64);
                        in_flight.push(self.append(std::mem::replace(&mut batch, Vec::with_capacity(MAX_BATCH))));
                    }
                    batch.clear();
                }
                Some(()) = in_flight.next(), if !in_flight.is_empty() => {}
            }
        }
        while in_flight.next().await.is_some() {}
    }

    /// Appends `batch` in one call and answers every entry.
    async fn append(&self, batch: Vec<Pending>) {
        let deadline = batch
            .iter()
            .map(|p| p.deadline)
            .max()
            .expect("a batch is not empty");
        let groups = Groups::of(&batch);
        let sent = Instant::now();
        let called = self.call(&batch, &groups, deadline).await;
        metrics::histogram!(REDIS_FANOUT_APPEND_CALL_SECONDS).record(sent.elapsed().as_secs_f64());
        let results: Vec<Result<EventId, String>> = match called {
            Ok(ids) if ids.len() == batch.len() => {
                let mut by_index = vec![None; batch.len()];
                for (&i, id) in groups.order.iter().zip(ids) {
                    by_index[i] = Some(
                        id.parse::<EventId>()
                            .map_err(|e| format!("append script returned {e}")),
                    );
                }
                by_index
                    .into_iter()
                    .map(|r| r.expect("the order holds every index once"))
                    .collect()
            }
            Ok(ids) => {
                let error = format!(
                    "append script returned {} ids for {} entries",
                    ids.len(),
                    batch.len()
                );
                vec![Err(error); batch.len()]
            }
            Err(error) => vec![Err(error); batch.len()],
        };
        for (pending, result) in batch.into_iter().zip(results) {
            // The caller may have stopped waiting.
            let _ = pending.reply.send(result);
        }
    }

    /// Runs the script for `batch`, grouped by tenant; the ids come in `groups.order`.
    async fn call(
        &self,
        batch: &[Pending],
        groups: &Groups,
        deadline: Instant,
    ) -> Result<Vec<String>, String> {
        let mut lease = self
            .conn
            .get(deadline)
            .await
            .map_err(|e| format!("no connection: {e}"))?;
        let tenants_key = self.keys.tenants();
        let logs: Vec<String> = groups.tenants.iter().map(|(t, _)| self.keys.log(t)).collect();
        let channels: Vec<String> = groups.tenants.iter().map(|(t, _)| self.keys.channel(t)).collect();
        let counts: Vec<String> = groups.tenants.iter().map(|(_, n)| n.to_string()).collect();
        let keys: Vec<&str> = std::iter::once(tenants_key.as_str())
            .chain(logs.iter().map(String::as_str))
            .collect();
        let mut args: Vec<&[u8]> = Vec::with_capacity(2 + 3 * groups.tenants.len() + 2 * batch.len());
        args.extend([self.max_events.as_bytes(), self.max_age_ms.as_bytes()]);
        let mut entries = groups.order.iter().map(|&i| &batch[i]);
        for (g, (tenant, n)) in groups.tenants.iter().enumerate() {
            args.extend([
                channels[g].as_bytes(),
                tenant.as_str().as_bytes(),
                counts[g].as_bytes(),
            ]);
            for p in entries.by_ref().take(*n) {
                args.extend([p.field.as_bytes(), p.value.as_slice()]);
            }
        }
        let call = APPEND.invoke::<_, Vec<String>>(&mut lease.conn, &keys, &args);
        match tokio::time::timeout_at(deadline, call).await {
            Ok(Ok(ids)) => Ok(ids),
            Ok(Err(e)) => {
                if PublishConnection::breaks_connection(&e) {
                    self.conn.discard(lease.generation);
                }
                Err(format!("append script failed: {e}"))
            }
            Err(_) => {
                // A connection that does not answer may be half-open; open a new one.
                self.conn.discard(lease.generation);
                Err("no answer from Redis before the command timeout".to_owned())
            }
        }
    }
}

/// A batch's entries grouped by tenant, tenants in order of first appearance and each
/// tenant's entries in queue order (so the log keeps the order callers appended in).
#[derive(Debug, PartialEq)]
struct Groups {
    /// Each tenant and how many entries it has.
    tenants: Vec<(TenantId, usize)>,
    /// Indices into the batch, tenant by tenant: the order the script appends in.
    order: Vec<usize>,
}

impl Groups {
    fn of(batch: &[Pending]) -> Self {
        Self::of_tenants(batch.iter().map(|p| &p.tenant))
    }

    fn of_tenants<'a>(tenants: impl Iterator<Item = &'a TenantId>) -> Self {
        let mut index: HashMap<&TenantId, usize> = HashMap::new();
        let mut members: Vec<(TenantId, Vec<usize>)> = Vec::new();
        for (i, tenant) in tenants.enumerate() {
            let g = *index.entry(tenant).or_insert_with(|| {
                members.push((tenant.clone(), Vec::new()));
                members.len() - 1
            });
            members[g].1.push(i);
        }
        let order = members.iter().flat_map(|(_, m)| m.iter().copied()).collect();
        let tenants = members.into_iter().map(|(t, m)| (t, m.len())).collect();
        Self { tenants, order }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn groups_keep_each_tenants_order_and_first_appearance() {
        let [a, b, c] = ["a", "b", "c"].map(|t| TenantId::parse(t).unwrap());
        let tenants = [&a, &b, &a, &c, &b, &a];
        let groups = Groups::of_tenants(tenants.into_iter());
        assert_eq!(
            groups,
            Groups {
                tenants: vec![(a, 3), (b, 2), (c, 1)],
                order: vec![0, 2, 5, 1, 4, 3],
            }
        );
        assert_eq!(
            Groups::of_tenants(std::iter::empty()),
            Groups {
                tenants: vec![],
                order: vec![]
            }
        );
    }
}
