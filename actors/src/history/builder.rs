//! [`HistoryBuilder`]: one vehicle's open history buckets and hour accumulators. Pure:
//! the vehicle actor feeds it applied batches and writes what it hands back.
//!
//! Rules:
//! - A record goes to the bucket of its source time (`start = t - t mod bucket`). Each
//!   bucket keeps the content ids it holds, so a record is never in a bucket twice:
//!   replays after a failover and client retries rebuild the same bucket.
//! - A bucket closes when the vehicle's newest source time passes its end by
//!   `lateness`, or when nothing was added to it for `idle` (wall time). Closed buckets
//!   are handed out with the holds of every batch that added to them; the actor
//!   releases those holds once the bucket is written, so the shard checkpoint never
//!   passes the first record of a bucket not yet written.
//! - A record for a bucket at or before the newest written one is *late*: its bucket is
//!   flagged `merge`, and the actor merges it into the stored bucket instead of
//!   overwriting it.
//! - The hour accumulator keeps one summary per bucket start, so a rewritten or merged
//!   bucket replaces its summary instead of counting twice. An hour closes once a bucket
//!   of a later hour is written and none of its buckets is open. It is `complete` when
//!   this builder saw records before the hour began; otherwise the actor recomputes it
//!   from the stored buckets before writing it.

use std::collections::HashSet;

use litemap::LiteMap;

use super::codec::HistoryRecord;
use crate::model::{RecordId, SignalName, TelemetryRecord, VehicleId};
use crate::ports::SignalStats;

/// One hour in ms.
pub const HOUR_MS: i64 = 3_600_000;

/// Count and numeric stats of some records.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Summary {
    /// Records.
    pub count: u64,
    /// Numeric signal → stats (a sorted Vec, like [`crate::model::Signals`]: every vehicle
    /// keeps one per bucket of the open hour).
    pub signals: LiteMap<SignalName, SignalStats>,
}

impl Summary {
    /// The summary of `records`.
    pub fn of(records: &[HistoryRecord]) -> Self {
        let mut s = Summary::default();
        for r in records {
            s.count += 1;
            for (name, value) in &r.payload {
                if let Some(v) = value.as_f64().filter(|v| v.is_finite()) {
                    s.add(name, &SignalStats::of(v));
                }
            }
        }
        s
    }

    /// Folds `other` in.
    pub fn merge(&mut self, other: &Summary) {
        self.count += other.count;
        for (name, st) in other.signals.iter() {
            self.add(name, st);
        }
    }

    /// Folds one signal's stats in (a lookup by `&str`: no name is built when it exists).
    fn add(&mut self, name: &str, stats: &SignalStats) {
        match self.signals.get_mut(name) {
            Some(mine) => mine.merge(stats),
            None => {
                self.signals.insert(name.into(), *stats);
            }
        }
    }
}

/// A bucket still filling.
#[derive(Debug)]
struct OpenBucket<H> {
    records: Vec<HistoryRecord>,
    ids: HashSet<RecordId>,
    holds: Vec<H>,
    merge: bool,
    last_added_ms: i64,
}

/// A bucket to write.
#[derive(Debug)]
pub struct ClosedBucket<H> {
    /// Bucket start, Unix ms.
    pub start_ms: i64,
    /// Its records.
    pub records: Vec<HistoryRecord>,
    /// Holds of the batches that added to it; release them once it is written.
    pub holds: Vec<H>,
    /// Merge into the stored bucket instead of overwriting it (late records).
    pub merge: bool,
}

/// An hour to write.
#[derive(Debug, Clone, PartialEq)]
pub struct ClosedHour {
    /// Hour start, Unix ms.
    pub hour_ms: i64,
    /// Summaries per bucket start that this builder knows.
    pub buckets: LiteMap<i64, Summary>,
    /// Whether `buckets` covers the whole hour; if not, add the stored buckets missing here.
    pub complete: bool,
}

impl ClosedHour {
    /// The hour's total.
    pub fn total(&self) -> Summary {
        let mut total = Summary::default();
        for s in self.buckets.values() {
            total.merge(s);
        }
        total
    }
}

#[derive(Debug, Default)]
struct HourAcc {
    buckets: LiteMap<i64, Summary>,
    complete: bool,
}

/// One vehicle's open buckets and hour accumulators.
#[derive(Debug)]
pub struct HistoryBuilder<H> {
    vehicle: VehicleId,
    bucket_ms: i64,
    lateness_ms: i64,
    idle_ms: i64,
    // Sorted Vecs (litemap): usually one open bucket and one open hour per vehicle.
    open: LiteMap<i64, OpenBucket<H>>,
    written_through: Option<i64>,
    hours: LiteMap<i64, HourAcc>,
    first_source_ms: Option<i64>,
    newest_source_ms: Option<i64>,
    /// Newest hour handed out; a bucket written later for it or an older hour starts an
    /// incomplete accumulator (the handed-out summaries are gone).
    taken_hours_through: Option<i64>,
}

impl<H: Clone> HistoryBuilder<H> {
    /// An empty builder: buckets of `bucket_ms`, closed `lateness_ms` after their end
    /// (source time) or `idle_ms` after their last record (wall time).
    pub fn new(vehicle: VehicleId, bucket_ms: i64, lateness_ms: i64, idle_ms: i64) -> Self {
        Self {
            vehicle,
            bucket_ms: bucket_ms.max(1),
            lateness_ms: lateness_ms.max(0),
            idle_ms: idle_ms.max(0),
            open: LiteMap::new(),
            written_through: None,
            hours: LiteMap::new(),
            first_source_ms: None,
            newest_source_ms: None,
            taken_hours_through: None,
        }
    }

    /// The newest bucket already in the store when the actor started: later records for
    /// it or older buckets are merged, and its hour is recomputed from the store when it
    /// closes (its aggregate may not have been written).
    pub fn restore(&mut self, latest_stored: Option<i64>) {
        if let Some(start) = latest_stored {
            self.written_through = self.written_through.max(Some(start));
            self.hours.entry(hour_of(start)).or_default();
        }
    }

    /// Bucket start of a time.
    pub fn bucket_of(&self, ms: i64) -> i64 {
        ms - ms.rem_euclid(self.bucket_ms)
    }

    /// Adds a batch's records; `hold` is cloned into every bucket the batch added to.
    /// Returns how many records were new to their buckets.
    pub fn add_batch<'a>(
        &mut self,
        records: impl IntoIterator<Item = &'a TelemetryRecord>,
        hold: Option<&H>,
        now_ms: i64,
    ) -> usize {
        let mut touched = HashSet::new();
        let mut added = 0;
        for record in records {
            let ms = record.timestamp.timestamp_millis();
            let start = self.bucket_of(ms);
            let late = self.written_through.is_some_and(|w| start <= w);
            let bucket = self.open.entry(start).or_insert_with(|| OpenBucket {
                records: Vec::new(),
                ids: HashSet::new(),
                holds: Vec::new(),
                merge: late,
                last_added_ms: now_ms,
            });
            if !bucket.ids.insert(record.content_id()) {
                continue;
            }
            bucket.records.push(HistoryRecord::of(record));
            bucket.last_added_ms = now_ms;
            added += 1;
            touched.insert(start);
            self.first_source_ms = self.first_source_ms.min(Some(ms)).or(Some(ms));
            self.newest_source_ms = self.newest_source_ms.max(Some(ms));
        }
        if let Some(hold) = hold {
            for start in touched {
                if let Some(b) = self.open.get_mut(&start) {
                    b.holds.push(hold.clone());
                }
            }
        }
        added
    }

    /// Buckets that closed by `now_ms` (wall time).
    pub fn due(&mut self, now_ms: i64) -> Vec<ClosedBucket<H>> {
        let newest = self.newest_source_ms.unwrap_or(i64::MIN);
        let (bucket_ms, lateness, idle) = (self.bucket_ms, self.lateness_ms, self.idle_ms);
        let closing: Vec<i64> = self
            .open
            .iter()
            .filter(|(start, b)| newest >= **start + bucket_ms + lateness || now_ms - b.last_added_ms >= idle)
            .map(|(start, _)| *start)
            .collect();
        closing.into_iter().filter_map(|s| self.close(s)).collect()
    }

    /// Milliseconds (wall time) from `now_ms` until [`due`](Self::due) would close a
    /// bucket: 0 when one is closable now, `None` when no bucket is open. The actor arms
    /// its flush timer with it instead of polling.
    pub fn next_close_in(&self, now_ms: i64) -> Option<i64> {
        let newest = self.newest_source_ms.unwrap_or(i64::MIN);
        self.open
            .iter()
            .map(|(start, b)| {
                if newest >= start + self.bucket_ms + self.lateness_ms {
                    0
                } else {
                    (b.last_added_ms + self.idle_ms - now_ms).max(0)
                }
            })
            .min()
    }

    /// Every open bucket (the actor is stopping).
    pub fn drain(&mut self) -> Vec<ClosedBucket<H>> {
        let all: Vec<i64> = self.open.keys().copied().collect();
        all.into_iter().filter_map(|s| self.close(s)).collect()
    }

    fn close(&mut self, start: i64) -> Option<ClosedBucket<H>> {
        let b = self.open.remove(&start)?;
        if self.open.is_empty() {
            // An emptied map keeps its allocation (a BTreeMap here kept an eleven-slot
            // node, 1.3 KB per idle vehicle, measured by tests/idle_actor_memory.rs). Free it.
            self.open = LiteMap::new();
        }
        Some(ClosedBucket {
            start_ms: start,
            records: b.records,
            holds: b.holds,
            merge: b.merge,
        })
    }

    /// Records buckets still open, oldest first (for reads of the live bucket).
    pub fn open_records(&self) -> impl Iterator<Item = &HistoryRecord> {
        self.open.values().flat_map(|b| b.records.iter())
    }

    /// Start of the oldest open bucket.
    pub fn oldest_open(&self) -> Option<i64> {
        self.open.keys().next().copied()
    }

    /// A bucket was written; `summary` is of the bucket as stored.
    pub fn written(&mut self, start_ms: i64, summary: Summary) {
        self.written_through = self.written_through.max(Some(start_ms));
        let hour = hour_of(start_ms);
        let first = self.first_source_ms;
        let taken = self.taken_hours_through.is_some_and(|t| hour <= t);
        let acc = self.hours.entry(hour).or_insert_with(|| HourAcc {
            buckets: LiteMap::new(),
            complete: !taken && first.is_some_and(|f| f < hour),
        });
        acc.buckets.insert(start_ms, summary);
    }

    /// Hours that closed: a later hour has a written bucket and none of theirs is open.
    pub fn due_hours(&mut self) -> Vec<ClosedHour> {
        let Some(through) = self.written_through else {
            return Vec::new();
        };
        let current = hour_of(through);
        let closing: Vec<i64> = self
            .hours
            .keys()
            .copied()
            .filter(|h| *h < current && !self.open.keys().any(|s| hour_of(*s) == *h))
            .collect();
        closing.into_iter().filter_map(|h| self.take_hour(h)).collect()
    }

    /// Every hour (the actor is stopping; a later actor recomputes a partial one).
    pub fn drain_hours(&mut self) -> Vec<ClosedHour> {
        let all: Vec<i64> = self.hours.keys().copied().collect();
        all.into_iter().filter_map(|h| self.take_hour(h)).collect()
    }

    fn take_hour(&mut self, hour: i64) -> Option<ClosedHour> {
        let acc = self.hours.remove(&hour)?;
        self.taken_hours_through = self.taken_hours_through.max(Some(hour));
        Some(ClosedHour {
            hour_ms: hour,
            buckets: acc.buckets,
            complete: acc.complete,
        })
    }

    /// The vehicle.
    pub fn vehicle(&self) -> &VehicleId {
        &self.vehicle
    }
}

/// Hour start of a time.
pub fn hour_of(ms: i64) -> i64 {
    ms - ms.rem_euclid(HOUR_MS)
}

#[cfg(test)]
mod tests {
    use chrono::DateTime;

    use super::*;
    use crate::model::SignalValue;

    const T0: i64 = 1_767_225_600_000; // 2026-01-01T00:00:00Z, an hour start

    fn rec(ms: i64, soc: i64) -> TelemetryRecord {
        TelemetryRecord {
            timestamp: DateTime::from_timestamp_millis(ms).unwrap(),
            vehicle_id: VehicleId("v".into()),
            payload: [
                ("Soc".to_string(), SignalValue::Int(soc)),
                ("Gear".to_string(), SignalValue::Text("D".into())),
            ]
            .into(),
            can_id: None,
            ingest_received_at: DateTime::from_timestamp_millis(ms).unwrap(),
        }
    }

    fn builder() -> HistoryBuilder<u32> {
        HistoryBuilder::new(VehicleId("v".into()), 60_000, 5_000, 60_000)
    }

    #[test]
    fn a_bucket_closes_after_its_end_plus_lateness_with_its_holds() {
        let mut b = builder();
        let batch: Vec<_> = (0..60).map(|s| rec(T0 + s * 1000, s)).collect();
        assert_eq!(b.add_batch(&batch, Some(&1), 0), 60);
        b.add_batch(&[rec(T0 + 61_000, 1)], Some(&2), 0);
        assert!(b.due(0).is_empty(), "within lateness");
        b.add_batch(&[rec(T0 + 65_000, 1)], Some(&3), 0);
        let closed = b.due(0);
        assert_eq!(closed.len(), 1);
        assert_eq!((closed[0].start_ms, closed[0].records.len()), (T0, 60));
        assert_eq!(closed[0].holds, [1]);
        assert!(!closed[0].merge);
        assert_eq!(b.oldest_open(), Some(T0 + 60_000));
    }

    #[test]
    fn duplicates_and_replays_never_count_twice() {
        let mut b = builder();
        let batch: Vec<_> = (0..3).map(|s| rec(T0 + s * 1000, s)).collect();
        assert_eq!(b.add_batch(&batch, None, 0), 3);
        assert_eq!(b.add_batch(&batch, None, 0), 0);
        let closed = b.drain();
        assert_eq!(closed[0].records.len(), 3);
        b.written(T0, Summary::of(&closed[0].records));
        // The same bucket written again (a replay) replaces its summary.
        b.written(T0, Summary::of(&closed[0].records));
        let hours = b.drain_hours();
        let total = hours[0].total();
        assert_eq!(total.count, 3);
        let soc = *total.signals.get("Soc").unwrap();
        assert_eq!((soc.min, soc.max, soc.sum, soc.n), (0.0, 2.0, 3.0, 3));
        assert!(!total.signals.contains_key("Gear"), "text is not aggregated");
    }

    #[test]
    fn idle_buckets_close_by_wall_time() {
        let mut b = builder();
        b.add_batch(&[rec(T0, 1)], None, 1_000);
        assert!(b.due(60_999).is_empty());
        assert_eq!(b.due(61_000).len(), 1);
    }

    #[test]
    fn next_close_in_says_when_due_will_close_a_bucket() {
        let mut b = builder();
        assert_eq!(b.next_close_in(0), None, "nothing open, no timer");
        b.add_batch(&[rec(T0, 1)], None, 1_000);
        assert_eq!(b.next_close_in(1_000), Some(60_000));
        assert_eq!(b.next_close_in(30_000), Some(31_000));
        assert!(b.due(30_000 + 30_999).is_empty());
        // A newer record moves the source time past the first bucket's end + lateness.
        b.add_batch(&[rec(T0 + 65_000, 1)], None, 40_000);
        assert_eq!(b.next_close_in(40_000), Some(0));
        assert_eq!(b.due(40_000).len(), 1);
        // The second bucket closes idle, 60 s after its record arrived.
        assert_eq!(b.next_close_in(40_000), Some(60_000));
        assert_eq!(b.due(100_000).len(), 1);
        assert_eq!(b.next_close_in(100_000), None);
    }

    #[test]
    fn late_records_are_merged_and_restored_buckets_count_as_written() {
        let mut b = builder();
        b.restore(Some(T0 + 60_000));
        b.add_batch(&[rec(T0 + 61_000, 1)], None, 0);
        b.add_batch(&[rec(T0 + 125_000, 1)], None, 0);
        let closed = b.due(0);
        assert_eq!(closed.len(), 1);
        assert!(
            closed[0].merge,
            "the store may hold records of this bucket already"
        );
        b.written(T0 + 60_000, Summary::of(&closed[0].records));
        let rest = b.drain();
        assert!(!rest[0].merge);
    }

    #[test]
    fn hours_close_when_a_later_hour_is_written_and_know_if_they_are_complete() {
        let mut b = builder();
        // First record mid-hour: this builder did not see the hour begin.
        b.add_batch(&[rec(T0 + 30 * 60_000, 1)], None, 0);
        for c in b.drain() {
            b.written(c.start_ms, Summary::of(&c.records));
        }
        assert!(b.due_hours().is_empty(), "no later hour written yet");
        b.add_batch(&[rec(T0 + HOUR_MS, 5)], None, 0);
        b.add_batch(&[rec(T0 + 2 * HOUR_MS + 1, 5)], None, 0);
        let mut closed = b.due(0);
        assert_eq!(closed.len(), 1);
        let c = closed.remove(0);
        b.written(c.start_ms, Summary::of(&c.records));
        let hours = b.due_hours();
        assert_eq!(hours.len(), 1);
        assert_eq!((hours[0].hour_ms, hours[0].complete), (T0, false));
        for c in b.drain() {
            b.written(c.start_ms, Summary::of(&c.records));
        }
        let hours = b.due_hours();
        assert_eq!(hours.len(), 1);
        assert_eq!((hours[0].hour_ms, hours[0].complete), (T0 + HOUR_MS, true));
    }
}
