//! The vehicle actor's writes: the coalesced latest-state save, closed history buckets
//! and hour aggregates. The actor decides *when* (a batch, its flush timer, its stop);
//! this file builds the write ([`Flush`]), runs it ([`run_flush`]) and settles its result
//! ([`Deferred::settle`]): durable effects release their [`DurabilityHold`]s, failed ones
//! keep them and are retried by the next batch or the flush timer (the shard checkpoint waits).

use std::sync::Arc;
use std::time::{Duration, Instant};

use chrono::Utc;
use metrics::counter;
use tracing::warn;

use crate::consumer::DurabilityHold;
use crate::history::{ClosedBucket, ClosedHour, HistoryBuilder, HistoryConfig, Summary, codec};
use crate::model::{TenantId, VehicleId, VehicleSnapshot};
use crate::ports::{
    HistoryBucket, HistoryError, HistoryStore, HourAggregate, SaveOutcome, StateStore, StoreError,
};
use crate::telemetry::{HISTORY_AGGREGATE_WRITES_TOTAL, HISTORY_BUCKET_WRITES_TOTAL, PERSIST_WRITES_TOTAL};

/// The history port and its settings, handed to every vehicle actor.
#[derive(Clone)]
pub struct HistoryServices {
    /// `[history]` settings.
    pub config: Arc<HistoryConfig>,
    /// Where buckets and aggregates go.
    pub store: Arc<dyn HistoryStore>,
}

/// What an actor still has to make durable, and the holds waiting for it.
pub(crate) struct Deferred {
    /// Most time between two state saves (0: save with every batch).
    pub persist_interval: Duration,
    /// When the last state save succeeded.
    pub last_save: Option<Instant>,
    /// Holds of batches whose state is not saved yet.
    pub state_holds: Vec<DurabilityHold>,
    /// History, when enabled.
    pub history: Option<(HistoryServices, HistoryBuilder<DurabilityHold>)>,
    /// Buckets whose write failed; retried first.
    pub unwritten: Vec<ClosedBucket<DurabilityHold>>,
    /// Hours whose aggregate write failed; retried with the next hours.
    pub unwritten_hours: Vec<ClosedHour>,
    /// Whether the last round of writes failed: the next one waits [`RETRY_AFTER`].
    pub failed: bool,
}

/// Wait before writes are retried after a failure (a failing store is not hammered).
pub(crate) const RETRY_AFTER: Duration = Duration::from_millis(500);

/// One round of writes.
pub(crate) struct Flush {
    save: Option<VehicleSnapshot>,
    state_holds: Vec<DurabilityHold>,
    buckets: Vec<ClosedBucket<DurabilityHold>>,
}

/// What a round of writes did.
pub(crate) struct Flushed {
    saved: Option<Result<(SaveOutcome, u64), StoreError>>,
    state_holds: Vec<DurabilityHold>,
    buckets: Vec<(ClosedBucket<DurabilityHold>, Result<Summary, HistoryError>)>,
}

impl Deferred {
    /// Nothing deferred yet.
    pub fn new(persist_interval: Duration, history: Option<HistoryServices>, vehicle: &VehicleId) -> Self {
        Self {
            persist_interval,
            last_save: None,
            state_holds: Vec::new(),
            history: history.map(|h| {
                let builder = h.config.builder(vehicle.clone());
                (h, builder)
            }),
            unwritten: Vec::new(),
            unwritten_hours: Vec::new(),
            failed: false,
        }
    }

    /// How long until the next deferred write is due, given whether the state is ahead
    /// of the store (`dirty`); `None` when nothing is deferred. The actor arms one timer
    /// with it, so an idle actor with everything written has no flush timer at all.
    pub fn next_due_in(&self, dirty: bool, now: Instant, now_ms: i64) -> Option<Duration> {
        let save = dirty.then(|| {
            self.last_save.map_or(Duration::ZERO, |t| {
                (t + self.persist_interval).saturating_duration_since(now)
            })
        });
        let retry = self.retry_pending().then_some(RETRY_AFTER);
        let close = self
            .next_close_in(now_ms)
            .map(|ms| Duration::from_millis(ms.max(0) as u64));
        let due = [save, retry, close].into_iter().flatten().min()?;
        Some(if self.failed { due.max(RETRY_AFTER) } else { due })
    }

    /// Whether a flush would write anything besides the state now: a failed write to
    /// retry or a bucket that closes by `now_ms`.
    pub fn writes_due(&self, now_ms: i64) -> bool {
        self.retry_pending() || self.next_close_in(now_ms) == Some(0)
    }

    /// Whether a bucket or hour write failed and waits for a retry.
    fn retry_pending(&self) -> bool {
        !self.unwritten.is_empty() || !self.unwritten_hours.is_empty()
    }

    /// Milliseconds until the history builder closes a bucket (see
    /// [`HistoryBuilder::next_close_in`]); `None` without history or open buckets.
    fn next_close_in(&self, now_ms: i64) -> Option<i64> {
        self.history.as_ref().and_then(|(_, b)| b.next_close_in(now_ms))
    }

    /// Whether a state save is due now (the interval since the last one has passed).
    pub fn save_due(&self) -> bool {
        self.last_save
            .is_none_or(|t| t.elapsed() >= self.persist_interval)
    }

    /// The writes to run now: the state if `snapshot` is given, and the closed buckets
    /// (`all`: every open one, when stopping).
    pub fn take(&mut self, snapshot: Option<VehicleSnapshot>, all: bool) -> Flush {
        let mut buckets = std::mem::take(&mut self.unwritten);
        if let Some((_, builder)) = &mut self.history {
            let now = Utc::now().timestamp_millis();
            buckets.extend(if all { builder.drain() } else { builder.due(now) });
        }
        let state_holds = if snapshot.is_some() {
            std::mem::take(&mut self.state_holds)
        } else {
            Vec::new()
        };
        Flush {
            save: snapshot,
            state_holds,
            buckets,
        }
    }

    /// Settles a round: releases the holds of what is durable, keeps the rest for a
    /// retry. Returns the saved version and the first error.
    pub fn settle(&mut self, flushed: Flushed) -> (Option<u64>, Result<(), String>) {
        let mut first_error = Ok(());
        let mut saved_version = None;
        match flushed.saved {
            None => self.state_holds.extend(flushed.state_holds),
            Some(Ok((outcome, version))) => {
                let label = match outcome {
                    SaveOutcome::Written => "written",
                    // Another owner stored an equal or newer version: our effects are covered.
                    SaveOutcome::AlreadyNewer => "already_newer",
                };
                counter!(PERSIST_WRITES_TOTAL, "result" => label).increment(1);
                self.last_save = Some(Instant::now());
                saved_version = Some(version);
                flushed.state_holds.into_iter().for_each(DurabilityHold::release);
            }
            Some(Err(err)) => {
                counter!(PERSIST_WRITES_TOTAL, "result" => "error").increment(1);
                self.state_holds.extend(flushed.state_holds);
                first_error = Err(err.to_string());
            }
        }
        for (mut bucket, result) in flushed.buckets {
            match result {
                Ok(summary) => {
                    counter!(HISTORY_BUCKET_WRITES_TOTAL, "result" => if bucket.merge { "merged" } else { "written" })
                        .increment(1);
                    if let Some((_, builder)) = &mut self.history {
                        builder.written(bucket.start_ms, summary);
                    }
                    std::mem::take(&mut bucket.holds)
                        .into_iter()
                        .for_each(DurabilityHold::release);
                }
                Err(err) => {
                    counter!(HISTORY_BUCKET_WRITES_TOTAL, "result" => "error").increment(1);
                    if first_error.is_ok() {
                        first_error = Err(err.to_string());
                    }
                    self.unwritten.push(bucket);
                }
            }
        }
        self.failed = first_error.is_err();
        (saved_version, first_error)
    }

    /// Hours ready to write (`all`: every hour, when stopping), with earlier failures.
    pub fn take_hours(&mut self, all: bool) -> Vec<ClosedHour> {
        let mut hours = std::mem::take(&mut self.unwritten_hours);
        if let Some((_, builder)) = &mut self.history {
            hours.extend(if all {
                builder.drain_hours()
            } else {
                builder.due_hours()
            });
        }
        hours
    }

    /// The history port, when enabled.
    pub fn services(&self) -> Option<HistoryServices> {
        self.history.as_ref().map(|(h, _)| h.clone())
    }
}

/// Runs one round of writes: the state save, then the buckets (plain ones in one
/// `put_buckets`, late ones merged one by one).
pub(crate) async fn run_flush(
    store: Arc<dyn StateStore>,
    history: Option<HistoryServices>,
    tenant: TenantId,
    vehicle: VehicleId,
    flush: Flush,
) -> Flushed {
    let saved = match &flush.save {
        None => None,
        Some(snapshot) => Some(store.save(snapshot).await.map(|o| (o, snapshot.version))),
    };
    let mut buckets = Vec::with_capacity(flush.buckets.len());
    if let Some(h) = history.filter(|_| !flush.buckets.is_empty()) {
        let encoded: Vec<HistoryBucket> = flush
            .buckets
            .iter()
            .map(|b| encode_bucket(&h.config, &tenant, &vehicle, b.start_ms, &b.records))
            .collect();
        let plain: Vec<HistoryBucket> = flush
            .buckets
            .iter()
            .zip(&encoded)
            .filter(|(b, _)| !b.merge)
            .map(|(_, e)| e.clone())
            .collect();
        let put = if plain.is_empty() {
            Ok(())
        } else {
            h.store.put_buckets(&plain).await
        };
        for (bucket, enc) in flush.buckets.into_iter().zip(encoded) {
            let result = if bucket.merge {
                match h.store.merge_bucket(&enc).await {
                    Ok(stored) => summary_of(&stored),
                    Err(e) => Err(e),
                }
            } else {
                put.clone().map(|()| Summary::of(&bucket.records))
            };
            buckets.push((bucket, result));
        }
    }
    Flushed {
        saved,
        state_holds: flush.state_holds,
        buckets,
    }
}

/// Writes the aggregates of closed hours; an incomplete hour is first completed from the
/// stored buckets. Returns the hours that failed.
pub(crate) async fn write_hours(
    h: HistoryServices,
    tenant: TenantId,
    vehicle: VehicleId,
    hours: Vec<ClosedHour>,
) -> Vec<ClosedHour> {
    let mut failed = Vec::new();
    for mut hour in hours {
        let result = async {
            if !hour.complete {
                backfill(&h, &tenant, &vehicle, &mut hour).await?;
            }
            let total = hour.total();
            let aggregate = HourAggregate {
                tenant: tenant.clone(),
                vehicle_id: vehicle.clone(),
                hour_ms: hour.hour_ms,
                count: total.count,
                signals: total
                    .signals
                    .into_iter()
                    .map(|(name, st)| (name.into_string(), st))
                    .collect(),
                expires_at: h.config.aggregate_expiry(hour.hour_ms),
            };
            h.store.put_aggregate(&aggregate).await
        }
        .await;
        match result {
            Ok(()) => counter!(HISTORY_AGGREGATE_WRITES_TOTAL, "result" => "written").increment(1),
            Err(err) => {
                counter!(HISTORY_AGGREGATE_WRITES_TOTAL, "result" => "error").increment(1);
                warn!(%vehicle, hour = hour.hour_ms, %err, "Writing an hour aggregate failed; retrying later.");
                failed.push(hour);
            }
        }
    }
    failed
}

/// Adds the summaries of the hour's stored buckets that `hour` does not have.
async fn backfill(
    h: &HistoryServices,
    tenant: &TenantId,
    vehicle: &VehicleId,
    hour: &mut ClosedHour,
) -> Result<(), HistoryError> {
    let end = hour.hour_ms + crate::history::HOUR_MS;
    let mut after = None;
    loop {
        let page = h
            .store
            .query_buckets(tenant, vehicle, hour.hour_ms, end, after, 100)
            .await?;
        for b in &page.buckets {
            if let litemap::Entry::Vacant(slot) = hour.buckets.entry(b.start_ms) {
                slot.insert(summary_of(b)?);
            }
        }
        match page.next_after {
            Some(next) => after = Some(next),
            None => break,
        }
    }
    hour.complete = true;
    Ok(())
}

/// Encodes one bucket for the store.
pub fn encode_bucket(
    config: &HistoryConfig,
    tenant: &TenantId,
    vehicle: &VehicleId,
    start_ms: i64,
    records: &[codec::HistoryRecord],
) -> HistoryBucket {
    HistoryBucket {
        tenant: tenant.clone(),
        vehicle_id: vehicle.clone(),
        start_ms,
        count: records.len() as u32,
        codec: codec::CODEC.to_owned(),
        data: codec::encode(records),
        expires_at: config.bucket_expiry(start_ms),
    }
}

/// The summary of a stored bucket.
pub fn summary_of(bucket: &HistoryBucket) -> Result<Summary, HistoryError> {
    let records = codec::decode(&bucket.data).map_err(|e| HistoryError::Corrupt(e.to_string()))?;
    Ok(Summary::of(&records))
}

#[cfg(test)]
mod tests {
    use std::collections::BTreeMap;
    use std::sync::Mutex;

    use actix::Actor;
    use async_trait::async_trait;

    use super::*;
    use crate::consumer::Durability;
    use crate::ports::BucketPage;
    use crate::registry::{ActorKind, ActorRegistry};
    use crate::vehicle::fakes::{ports, record};
    use crate::vehicle::{ApplyRecords, Stop, VehicleConfig, VehicleStateActor};

    /// Buckets and aggregates in maps (one tenant, one vehicle).
    #[derive(Default)]
    struct FakeHistory {
        buckets: Mutex<BTreeMap<i64, HistoryBucket>>,
        aggregates: Mutex<BTreeMap<i64, HourAggregate>>,
    }

    #[async_trait]
    impl HistoryStore for FakeHistory {
        async fn put_buckets(&self, buckets: &[HistoryBucket]) -> Result<(), HistoryError> {
            let mut map = self.buckets.lock().unwrap();
            for b in buckets {
                map.insert(b.start_ms, b.clone());
            }
            Ok(())
        }

        async fn merge_bucket(&self, bucket: &HistoryBucket) -> Result<HistoryBucket, HistoryError> {
            let mut map = self.buckets.lock().unwrap();
            let merged = match map.get(&bucket.start_ms) {
                None => bucket.clone(),
                Some(old) => {
                    let (records, _) = codec::merge(
                        &bucket.vehicle_id,
                        codec::decode(&old.data).unwrap(),
                        &codec::decode(&bucket.data).unwrap(),
                    );
                    let config = HistoryConfig::default();
                    encode_bucket(
                        &config,
                        &bucket.tenant,
                        &bucket.vehicle_id,
                        bucket.start_ms,
                        &records,
                    )
                }
            };
            map.insert(bucket.start_ms, merged.clone());
            Ok(merged)
        }

        async fn query_buckets(
            &self,
            _: &TenantId,
            _: &VehicleId,
            from_ms: i64,
            to_ms: i64,
            after: Option<i64>,
            _: usize,
        ) -> Result<BucketPage, HistoryError> {
            let map = self.buckets.lock().unwrap();
            let buckets = map
                .range(from_ms..to_ms)
                .filter(|(s, _)| after.is_none_or(|a| **s > a))
                .map(|(_, b)| b.clone())
                .collect();
            Ok(BucketPage {
                buckets,
                next_after: None,
            })
        }

        async fn latest_bucket(&self, _: &TenantId, _: &VehicleId) -> Result<Option<i64>, HistoryError> {
            Ok(self.buckets.lock().unwrap().keys().next_back().copied())
        }

        async fn put_aggregate(&self, aggregate: &HourAggregate) -> Result<(), HistoryError> {
            self.aggregates
                .lock()
                .unwrap()
                .insert(aggregate.hour_ms, aggregate.clone());
            Ok(())
        }

        async fn query_aggregates(
            &self,
            _: &TenantId,
            _: &VehicleId,
            _: i64,
            _: i64,
            _: usize,
        ) -> Result<Vec<HourAggregate>, HistoryError> {
            Ok(self.aggregates.lock().unwrap().values().cloned().collect())
        }
    }

    fn start(
        config: VehicleConfig,
        history: &Arc<FakeHistory>,
        store: &Arc<crate::vehicle::fakes::FakeStore>,
    ) -> actix::Addr<VehicleStateActor> {
        let (_, fanout) = ports();
        let registration = ActorRegistry::new().register(ActorKind::VehicleState, "v1");
        let services = HistoryServices {
            config: Arc::new(HistoryConfig::default()),
            store: history.clone(),
        };
        let store = store.clone();
        VehicleStateActor::create(move |_| {
            VehicleStateActor::new(
                TenantId::default(),
                VehicleId("v1".into()),
                &config,
                store,
                fanout,
                registration,
                None,
            )
            .with_history(Some(services))
        })
    }

    async fn eventually(mut done: impl FnMut() -> bool) {
        for _ in 0..200 {
            if done() {
                return;
            }
            actix::clock::sleep(Duration::from_millis(20)).await;
        }
        panic!("condition not reached");
    }

    #[actix_rt::test]
    async fn a_coalesced_save_holds_the_batch_until_written() {
        let (store, _) = ports();
        let history = Arc::new(FakeHistory::default());
        let config = VehicleConfig {
            persist_interval_ms: 300,
            ..Default::default()
        };
        let addr = start(config, &history, &store);
        let (hold, first) = DurabilityHold::new();
        let batch = vec![record("v1", 0, &[("Soc", 80)])];
        addr.send(ApplyRecords {
            records: batch,
            hold: Some(hold),
        })
        .await
        .unwrap()
        .unwrap();
        // Saved at once (first save), but its history bucket is still open.
        assert_eq!(store.snapshots.lock().unwrap().len(), 1);
        assert_eq!(first.state(), Durability::Pending);

        let (hold, second) = DurabilityHold::new();
        let batch = vec![record("v1", 1, &[("Soc", 79)])];
        addr.send(ApplyRecords {
            records: batch,
            hold: Some(hold),
        })
        .await
        .unwrap()
        .unwrap();
        assert_eq!(
            store.snapshots.lock().unwrap()[&VehicleId("v1".into())].version,
            1,
            "coalesced"
        );
        eventually(|| store.snapshots.lock().unwrap()[&VehicleId("v1".into())].version == 2).await;
        assert_eq!(
            second.state(),
            Durability::Pending,
            "the bucket is not written yet"
        );

        // A record past the bucket's end + the vehicle's lateness closes and writes it.
        let past = 61 + HistoryConfig::default().lateness_ms(&VehicleId("v1".into())) / 1000;
        let batch = vec![record("v1", past, &[("Soc", 70)])];
        addr.send(ApplyRecords {
            records: batch,
            hold: None,
        })
        .await
        .unwrap()
        .unwrap();
        assert_eq!(
            (first.state(), second.state()),
            (Durability::Durable, Durability::Durable)
        );
        let buckets = history.buckets.lock().unwrap().clone();
        assert_eq!(buckets.len(), 1);
        assert_eq!(buckets.values().next().unwrap().count, 2);
    }

    #[actix_rt::test]
    async fn stop_writes_every_bucket_and_hour_and_a_restart_merges_replays() {
        let (store, _) = ports();
        let history = Arc::new(FakeHistory::default());
        let addr = start(VehicleConfig::default(), &history, &store);
        let batch: Vec<_> = (0..90).map(|s| record("v1", s, &[("Soc", s)])).collect();
        addr.send(ApplyRecords {
            records: batch.clone(),
            hold: None,
        })
        .await
        .unwrap()
        .unwrap();
        addr.send(Stop).await.unwrap();
        eventually(|| !addr.connected()).await;
        assert_eq!(history.buckets.lock().unwrap().len(), 2);
        let agg = history
            .aggregates
            .lock()
            .unwrap()
            .values()
            .next()
            .unwrap()
            .clone();
        assert_eq!(agg.count, 90);
        assert_eq!(agg.signals["Soc"].sum, (0..90).sum::<i64>() as f64);

        // A new actor replays the last 40 records (a failover from an older checkpoint)
        // plus 5 new ones: nothing counts twice.
        let addr = start(VehicleConfig::default(), &history, &store);
        let replay: Vec<_> = batch[50..]
            .iter()
            .cloned()
            .chain((90..95).map(|s| record("v1", s, &[("Soc", s)])))
            .collect();
        addr.send(ApplyRecords {
            records: replay,
            hold: None,
        })
        .await
        .unwrap()
        .unwrap();
        addr.send(Stop).await.unwrap();
        eventually(|| !addr.connected()).await;
        let total: u32 = history.buckets.lock().unwrap().values().map(|b| b.count).sum();
        assert_eq!(total, 95);
        let agg = history
            .aggregates
            .lock()
            .unwrap()
            .values()
            .next()
            .unwrap()
            .clone();
        assert_eq!(agg.count, 95, "recomputed from the stored buckets, not added");
    }

    #[test]
    fn the_flush_timer_is_armed_only_while_something_is_deferred() {
        let second = Duration::from_secs(1);
        let now = Instant::now();
        let services = HistoryServices {
            config: Arc::new(HistoryConfig::default()),
            store: Arc::new(FakeHistory::default()),
        };
        let mut d = Deferred::new(second, Some(services), &VehicleId("v1".into()));
        assert_eq!(d.next_due_in(false, now, 0), None, "nothing deferred: no timer");
        assert_eq!(
            d.next_due_in(true, now, 0),
            Some(Duration::ZERO),
            "never saved: save now"
        );
        d.last_save = Some(now);
        assert_eq!(
            d.next_due_in(true, now, 0),
            Some(second),
            "coalesced: one interval after the last save"
        );

        // An open bucket closes idle_close_secs (60 s) after its last record.
        let batch = [record("v1", 0, &[("Soc", 1)])];
        d.history.as_mut().unwrap().1.add_batch(&batch, None, 1_000);
        assert_eq!(d.next_due_in(false, now, 1_000), Some(Duration::from_secs(60)));
        assert_eq!(
            d.next_due_in(true, now, 1_000),
            Some(second),
            "the earliest deadline wins"
        );
        assert!(!d.writes_due(60_999) && d.writes_due(61_000));

        // After a failed round, retries wait RETRY_AFTER even when a save is overdue.
        d.last_save = None;
        d.failed = true;
        assert_eq!(d.next_due_in(true, now, 1_000), Some(RETRY_AFTER));
        d.failed = false;
        d.unwritten_hours.push(ClosedHour {
            hour_ms: 0,
            buckets: Default::default(),
            complete: true,
        });
        assert_eq!(
            d.next_due_in(false, now, 1_000),
            Some(RETRY_AFTER),
            "a failed hour is retried"
        );
        assert!(d.writes_due(1_000));
    }
}
