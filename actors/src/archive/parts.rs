//! [`Parts`]: the archiver's pure state machine. It collects encoded lines into one open
//! part per hour partition, decides when a part rotates (by size or by age) and hands the
//! sealed part, with the durability holds of every batch that has a line in it, to the
//! shell, which writes it and releases those holds only after the write succeeded.

use std::collections::BTreeMap;
use std::time::{Duration, Instant};

use bytes::Bytes;
use chrono::{DateTime, Datelike, Timelike, Utc};

/// When a part rotates.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Rotation {
    /// A part is sealed before a line would take it past this many bytes (a single line
    /// larger than this gets a part of its own).
    pub max_bytes: usize,
    /// A part is sealed this long after its first line, however small: this bounds how
    /// long a record's checkpoint waits for the archive.
    pub max_age: Duration,
}

/// The hour a line belongs to (the record's arrival on the stream, UTC): the partition
/// `raw/year=YYYY/month=MM/day=DD/hour=HH`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct HourPartition {
    /// Calendar year.
    pub year: i32,
    /// Month, 1–12.
    pub month: u32,
    /// Day of the month, 1–31.
    pub day: u32,
    /// Hour, 0–23.
    pub hour: u32,
}

impl HourPartition {
    /// The partition of a UTC instant.
    pub fn of(at: DateTime<Utc>) -> Self {
        Self {
            year: at.year(),
            month: at.month(),
            day: at.day(),
            hour: at.hour(),
        }
    }

    /// The partition's directory, `raw/year=YYYY/month=MM/day=DD/hour=HH` (Hive-style, so
    /// Athena, Spark and DuckDB read the keys as columns).
    pub fn path(&self) -> String {
        format!(
            "raw/year={:04}/month={:02}/day={:02}/hour={:02}",
            self.year, self.month, self.day, self.hour
        )
    }
}

/// A part ready to be written: its key, its bytes and the holds of its batches.
#[derive(Debug)]
pub struct SealedPart<H> {
    /// `raw/year=…/hour=HH/part-<uuid>.jsonl`.
    pub key: String,
    /// The JSON lines, each ending in `\n`.
    pub body: Bytes,
    /// Lines in the part.
    pub records: usize,
    /// One clone of the hold of every batch with a line in this part: released once the
    /// part is durable, so the checkpoint passes those batches only then.
    pub holds: Vec<H>,
}

/// A part still taking lines.
#[derive(Debug)]
struct OpenPart<H> {
    /// The part's key (its uuid is drawn when it opens).
    key: String,
    /// When its first line came: the age rotation counts from here.
    opened: Instant,
    /// The lines so far.
    body: Vec<u8>,
    /// Lines so far.
    records: usize,
    /// Holds of the batches with a line here.
    holds: Vec<H>,
    /// The batch whose hold was attached last, so a batch attaches one clone per part.
    last_batch: u64,
}

/// Open parts per hour partition, and the rotation rule (see the module docs).
#[derive(Debug)]
pub struct Parts<H> {
    /// When parts rotate.
    rotation: Rotation,
    /// At most one open part per hour partition.
    open: BTreeMap<HourPartition, OpenPart<H>>,
    /// Numbers the batches (from 1), for [`OpenPart::last_batch`].
    batches: u64,
}

impl<H: Clone> Parts<H> {
    /// No open parts.
    pub fn new(rotation: Rotation) -> Self {
        Self {
            rotation,
            open: BTreeMap::new(),
            batches: 0,
        }
    }

    /// Adds one batch's lines (each a complete JSON line ending in `\n`). Every part that
    /// receives a line of the batch keeps a clone of `hold`; the caller then releases its
    /// own `hold` (a batch without lines is thereby durable at once). Returns the parts
    /// that filled up.
    pub fn add_batch(
        &mut self,
        lines: impl IntoIterator<Item = (HourPartition, Vec<u8>)>,
        hold: &H,
        now: Instant,
    ) -> Vec<SealedPart<H>> {
        self.batches += 1;
        let batch = self.batches;
        let max_bytes = self.rotation.max_bytes.max(1);
        let mut sealed = Vec::new();
        for (hour, line) in lines {
            let full = self
                .open
                .get(&hour)
                .is_some_and(|p| !p.body.is_empty() && p.body.len() + line.len() > max_bytes);
            if full && let Some(part) = self.open.remove(&hour) {
                sealed.push(seal(part));
            }
            let part = self.open.entry(hour).or_insert_with(|| OpenPart {
                key: format!("{}/part-{}.jsonl", hour.path(), uuid::Uuid::new_v4()),
                opened: now,
                body: Vec::new(),
                records: 0,
                holds: Vec::new(),
                last_batch: 0,
            });
            part.body.extend_from_slice(&line);
            part.records += 1;
            if part.last_batch != batch {
                part.holds.push(hold.clone());
                part.last_batch = batch;
            }
            if part.body.len() >= max_bytes
                && let Some(part) = self.open.remove(&hour)
            {
                sealed.push(seal(part));
            }
        }
        sealed
    }

    /// Seals the parts that are `max_age` old.
    pub fn due(&mut self, now: Instant) -> Vec<SealedPart<H>> {
        let max_age = self.rotation.max_age;
        let old: Vec<HourPartition> = self
            .open
            .iter()
            .filter(|(_, p)| now.saturating_duration_since(p.opened) >= max_age)
            .map(|(hour, _)| *hour)
            .collect();
        old.into_iter()
            .filter_map(|hour| self.open.remove(&hour))
            .map(seal)
            .collect()
    }

    /// Seals every open part (a flush: shutdown, or a drain that waits for checkpoints).
    pub fn seal_all(&mut self) -> Vec<SealedPart<H>> {
        std::mem::take(&mut self.open).into_values().map(seal).collect()
    }

    /// When the oldest open part becomes due, if any is open.
    pub fn next_due(&self) -> Option<Instant> {
        self.open.values().map(|p| p.opened + self.rotation.max_age).min()
    }

    /// Bytes buffered in open parts.
    pub fn buffered_bytes(&self) -> usize {
        self.open.values().map(|p| p.body.len()).sum()
    }
}

fn seal<H>(part: OpenPart<H>) -> SealedPart<H> {
    SealedPart {
        key: part.key,
        body: Bytes::from(part.body),
        records: part.records,
        holds: part.holds,
    }
}

#[cfg(test)]
mod tests {
    use chrono::TimeZone;

    use super::*;
    use crate::consumer::{Durability, DurabilityHold};

    fn rotation(max_bytes: usize, max_age_secs: u64) -> Rotation {
        Rotation {
            max_bytes,
            max_age: Duration::from_secs(max_age_secs),
        }
    }

    fn hour(h: u32) -> HourPartition {
        HourPartition::of(Utc.with_ymd_and_hms(2026, 12, 5, h, 59, 59).unwrap())
    }

    fn line(text: &str) -> Vec<u8> {
        format!("{text}\n").into_bytes()
    }

    /// Adds a batch the way the shell does: parts keep clones, the original is released.
    fn add(
        parts: &mut Parts<DurabilityHold>,
        lines: Vec<(HourPartition, Vec<u8>)>,
        now: Instant,
    ) -> (Vec<SealedPart<DurabilityHold>>, crate::consumer::BatchDurability) {
        let (hold, tracker) = DurabilityHold::new();
        let sealed = parts.add_batch(lines, &hold, now);
        hold.release();
        (sealed, tracker)
    }

    fn release(part: SealedPart<DurabilityHold>) {
        part.holds.into_iter().for_each(DurabilityHold::release);
    }

    #[test]
    fn partition_path_is_hive_style_and_zero_padded() {
        let at = Utc.with_ymd_and_hms(2026, 3, 7, 4, 5, 6).unwrap();
        assert_eq!(
            HourPartition::of(at).path(),
            "raw/year=2026/month=03/day=07/hour=04"
        );
    }

    #[test]
    fn rotates_by_size_without_exceeding_max_bytes() {
        let now = Instant::now();
        let mut parts = Parts::new(rotation(10, 60));
        // 4 bytes each: two fit in 10, the third would make 12.
        let (sealed, _) = add(
            &mut parts,
            vec![(hour(1), line("aaa")), (hour(1), line("bbb"))],
            now,
        );
        assert!(sealed.is_empty());
        let (sealed, _) = add(&mut parts, vec![(hour(1), line("ccc"))], now);
        assert_eq!(sealed.len(), 1);
        assert_eq!(&sealed[0].body[..], b"aaa\nbbb\n");
        assert_eq!(sealed[0].records, 2);
        assert_eq!(parts.buffered_bytes(), 4);
        // A line as large as the limit fills a part alone and is sealed at once.
        let (sealed, _) = add(&mut parts, vec![(hour(1), line("123456789"))], now);
        assert_eq!(sealed.iter().map(|p| p.body.len()).collect::<Vec<_>>(), [4, 10]);
        assert_eq!(parts.buffered_bytes(), 0);
    }

    #[test]
    fn rotates_by_age_from_the_first_line() {
        let t0 = Instant::now();
        let mut parts = Parts::new(rotation(1 << 20, 60));
        add(&mut parts, vec![(hour(1), line("a"))], t0);
        add(
            &mut parts,
            vec![(hour(1), line("b"))],
            t0 + Duration::from_secs(30),
        );
        assert_eq!(parts.next_due(), Some(t0 + Duration::from_secs(60)));
        assert!(parts.due(t0 + Duration::from_secs(59)).is_empty());
        let sealed = parts.due(t0 + Duration::from_secs(60));
        assert_eq!(sealed.len(), 1);
        assert_eq!(&sealed[0].body[..], b"a\nb\n");
        assert_eq!(parts.next_due(), None);
    }

    #[test]
    fn one_part_per_hour_of_arrival() {
        let now = Instant::now();
        let mut parts = Parts::new(rotation(1 << 20, 60));
        add(
            &mut parts,
            vec![(hour(1), line("a")), (hour(2), line("b")), (hour(1), line("c"))],
            now,
        );
        let mut sealed = parts.seal_all();
        sealed.sort_by(|a, b| a.key.cmp(&b.key));
        assert_eq!(sealed.len(), 2);
        assert!(
            sealed[0]
                .key
                .starts_with("raw/year=2026/month=12/day=05/hour=01/part-")
        );
        assert!(sealed[0].key.ends_with(".jsonl"));
        assert_eq!(&sealed[0].body[..], b"a\nc\n");
        assert!(
            sealed[1]
                .key
                .starts_with("raw/year=2026/month=12/day=05/hour=02/part-")
        );
        assert_ne!(sealed[0].key, sealed[1].key);
    }

    #[test]
    fn a_batch_is_durable_only_once_every_part_with_its_lines_is_written() {
        let now = Instant::now();
        let mut parts = Parts::new(rotation(1 << 20, 60));
        let (_, first) = add(&mut parts, vec![(hour(1), line("a")), (hour(2), line("b"))], now);
        let (_, second) = add(&mut parts, vec![(hour(1), line("c")), (hour(1), line("d"))], now);
        assert_eq!(first.state(), Durability::Pending);
        let mut sealed = parts.seal_all();
        sealed.sort_by(|a, b| a.key.cmp(&b.key));
        // One clone per batch and part, however many lines the batch has there.
        assert_eq!(sealed[0].holds.len(), 2);
        assert_eq!(sealed[1].holds.len(), 1);
        let hour2 = sealed.pop().unwrap();
        release(sealed.pop().unwrap());
        assert_eq!(second.state(), Durability::Durable);
        assert_eq!(
            first.state(),
            Durability::Pending,
            "its hour-2 line is not written yet"
        );
        release(hour2);
        assert_eq!(first.state(), Durability::Durable);
    }

    #[test]
    fn a_part_dropped_unwritten_fails_its_batches() {
        let now = Instant::now();
        let mut parts = Parts::new(rotation(1 << 20, 60));
        let (_, batch) = add(&mut parts, vec![(hour(1), line("a"))], now);
        drop(parts.seal_all());
        assert_eq!(batch.state(), Durability::Failed);
    }

    #[test]
    fn an_empty_batch_is_durable_at_once() {
        let mut parts = Parts::<DurabilityHold>::new(rotation(10, 60));
        let (sealed, batch) = add(&mut parts, Vec::new(), Instant::now());
        assert!(sealed.is_empty());
        assert_eq!(batch.state(), Durability::Durable);
    }
}
