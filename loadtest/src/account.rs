//! Exact end-to-end accounting of what one SSE subscriber received.
//!
//! Every record the load test sends carries two integer signals: `lt_seq` (1, 2, 3, …
//! per vehicle) and `lt_sent_us` (wall clock at send, µs since the Unix epoch). Updates
//! carry a vehicle's full latest state plus `version`, which counts the records applied
//! to the vehicle (docs/api.md). Run vehicles have fresh ids (a per-run prefix), so after
//! the vehicle's `n`-th record is applied, `version == n == lt_seq` — unless the pipeline
//! lost or re-applied a record. Per event, with `Δseq`/`Δversion` since the previous
//! event of the same vehicle on this stream:
//!
//! - `Δseq ≤ 0`: a **duplicate** (a record this client already saw).
//! - `Δseq > 1`: `Δseq − 1` records were skipped on this stream. The server marks how many
//!   it applied meanwhile through `version`: records applied but delivered only through a
//!   newer full state (several records merged into one update by the vehicle actor, or a
//!   slow client's queue coalescing per vehicle — the wire does not tell which) are
//!   **superseded**; records never applied show up as `lt_seq − version` and are
//!   **lost** (`lost_before_apply`). After a `reset` event the server has announced a gap:
//!   the next skip of each vehicle is counted as **skipped after reset** instead.
//! - `version > lt_seq`: the server applied a record twice (**double applied**).
//!
//! Records accepted by ingest but never seen at all by the end of the drain are counted by
//! [`StreamAccount::finish`] (`lost_tail`).

use serde::Serialize;

/// One vehicle's position on one stream.
#[derive(Debug, Clone, Copy, Default)]
struct Track {
    seq: u64,
    version: u64,
    /// Reset generation this track was last updated in.
    epoch: u64,
}

/// Counters of one stream (or of many, summed with [`Counts::add`]).
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
pub struct Counts {
    /// `vehicle` events carrying the load-test signals.
    pub events: u64,
    /// Events whose `lt_seq` this client had already seen.
    pub duplicates: u64,
    /// Skipped records the server applied (version advanced) but delivered only as part of a
    /// newer state.
    pub superseded: u64,
    /// Records never applied before a newer one was (`lt_seq − version`).
    pub lost_before_apply: u64,
    /// Records accepted by ingest that this client never saw by the end of the drain.
    pub lost_tail: u64,
    /// Records skipped right after a `reset` (the server announced the gap).
    pub skipped_after_reset: u64,
    /// Records applied more than once (`version − lt_seq`).
    pub double_applied: u64,
    /// `reset` events.
    pub resets: u64,
    /// `vehicle` events of vehicles that are not this run's (no `lt_seq`), ignored.
    pub foreign: u64,
}

impl Counts {
    /// Records lost: never applied, or applied but never delivered at all.
    pub fn lost(&self) -> u64 {
        self.lost_before_apply + self.lost_tail
    }

    /// Adds another stream's counters.
    pub fn add(&mut self, o: &Counts) {
        self.events += o.events;
        self.duplicates += o.duplicates;
        self.superseded += o.superseded;
        self.lost_before_apply += o.lost_before_apply;
        self.lost_tail += o.lost_tail;
        self.skipped_after_reset += o.skipped_after_reset;
        self.double_applied += o.double_applied;
        self.resets += o.resets;
        self.foreign += o.foreign;
    }
}

/// The accounting of one subscriber's stream (pure: no I/O, no clock). Vehicles are
/// indices into the run's fleet (`0..vehicles`).
#[derive(Debug)]
pub struct StreamAccount {
    tracks: Vec<Track>,
    /// The vehicles this stream is filtered to (`None`: all of them); only they can be lost.
    followed: Option<Vec<bool>>,
    epoch: u64,
    /// Counters so far.
    pub counts: Counts,
}

impl StreamAccount {
    /// An account for a fleet of `vehicles`, subscribed before the first record (every
    /// vehicle's stream starts at seq 1, version 0).
    pub fn new(vehicles: usize) -> Self {
        Self {
            tracks: vec![Track::default(); vehicles],
            followed: None,
            epoch: 0,
            counts: Counts::default(),
        }
    }

    /// Restricts the account to `vehicles` (a stream opened with a `vehicles=` filter):
    /// records of other vehicles are not expected, so never counted as lost.
    pub fn follow_only(&mut self, vehicles: &[usize]) {
        let mut mask = vec![false; self.tracks.len()];
        for &v in vehicles {
            if let Some(m) = mask.get_mut(v) {
                *m = true;
            }
        }
        self.followed = Some(mask);
    }

    /// Counts one `vehicle` event of run vehicle `vehicle`, `seq`/`version` as received.
    /// Returns by how much the vehicle's highest seen seq grew. An index outside the
    /// fleet counts as foreign.
    pub fn vehicle_event(&mut self, vehicle: usize, seq: u64, version: u64) -> u64 {
        let epoch = self.epoch;
        let Some(prev) = self.tracks.get_mut(vehicle) else {
            self.counts.foreign += 1;
            return 0;
        };
        self.counts.events += 1;
        if seq <= prev.seq {
            self.counts.duplicates += 1;
            return 0;
        }
        let advance = seq - prev.seq;
        let skipped = seq - prev.seq - 1;
        // Records lost before apply, counted once: only the growth of (seq − version).
        let missing_now = seq.saturating_sub(version);
        let missing_before = prev.seq.saturating_sub(prev.version);
        let newly_lost = missing_now.saturating_sub(missing_before).min(skipped + 1);
        self.counts.lost_before_apply += newly_lost;
        let double_now = version.saturating_sub(seq);
        let double_before = prev.version.saturating_sub(prev.seq);
        self.counts.double_applied += double_now.saturating_sub(double_before);
        let rest = skipped.saturating_sub(newly_lost);
        if prev.epoch < epoch {
            self.counts.skipped_after_reset += rest;
        } else {
            self.counts.superseded += rest;
        }
        *prev = Track { seq, version, epoch };
        advance
    }

    /// Counts a `reset` event: the next skip of every vehicle is the announced gap.
    pub fn reset(&mut self) {
        self.counts.resets += 1;
        self.epoch += 1;
    }

    /// Counts an event of a vehicle that is not this run's.
    pub fn foreign_event(&mut self) {
        self.counts.foreign += 1;
    }

    /// The highest sequence seen of `vehicle`.
    pub fn last_seq(&self, vehicle: usize) -> u64 {
        self.tracks.get(vehicle).map_or(0, |t| t.seq)
    }

    /// Ends the stream: `accepted[v]` is vehicle `v`'s highest accepted seq (accepted seqs
    /// form a contiguous prefix); every accepted record never seen is lost, unless a
    /// `reset` came after the vehicle's last event (then the server announced the gap).
    pub fn finish(&mut self, accepted: &[u64]) -> Counts {
        for (vehicle, &last) in accepted.iter().enumerate() {
            if self
                .followed
                .as_ref()
                .is_some_and(|f| !f.get(vehicle).copied().unwrap_or(false))
            {
                continue;
            }
            let track = self.tracks.get(vehicle).copied().unwrap_or_default();
            let missing = last.saturating_sub(track.seq);
            if track.epoch < self.epoch {
                self.counts.skipped_after_reset += missing;
            } else {
                self.counts.lost_tail += missing;
            }
        }
        self.counts.clone()
    }
}

#[cfg(test)]
mod tests;
