//! [`VehicleState`]: the pure state machine behind a vehicle actor. It knows nothing
//! about actix, the store or the fan-out, so every rule here is unit-tested directly.
//!
//! Rules:
//! - A record whose [`content_id`](TelemetryRecord::content_id) is in the recent window is a
//!   duplicate and changes nothing (client retries, stream replays after a failover).
//! - Otherwise its id enters the window (bounded FIFO; the oldest id is evicted) and each
//!   signal overwrites the stored reading only if the record is strictly newer than that
//!   reading. Out-of-order older values never win; for equal timestamps the first arrival
//!   wins, so replaying the same stream gives the same state.
//! - The version counts records that changed at least one signal (and offline-timer
//!   ticks that derived an event); it orders writes to the store.
//! - Each applied record is also fed to the fleet machines ([`crate::fleet`]), whose
//!   state is part of the snapshot (`derived`).

use std::collections::{BTreeSet, HashSet, VecDeque};

use chrono::{DateTime, Utc};

use crate::fleet::{FilterReason, FleetContext, FleetEvent};
use crate::model::{
    RecordId, SignalName, SignalReading, TelemetryRecord, TenantId, VehicleId, VehicleSnapshot, VehicleUpdate,
};

/// What applying one record did.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ApplyOutcome {
    /// At least one signal took the record's value; the version grew by one.
    Applied {
        /// Names of the signals that changed, in name order.
        changed: Vec<SignalName>,
    },
    /// The record was seen recently; nothing changed.
    Duplicate,
    /// New record, but every signal already held a newer (or equally new) reading.
    Stale,
}

/// How many records of a batch ended up in each outcome.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct ApplyReport {
    /// Records that changed at least one signal.
    pub applied: usize,
    /// Records already in the dedupe window.
    pub duplicate: usize,
    /// New records that changed nothing.
    pub stale: usize,
}

/// The result of [`VehicleState::apply_batch`]: counts plus what a published update needs.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct BatchOutcome {
    /// Counts per outcome.
    pub report: ApplyReport,
    /// Union of the signal names changed by the batch.
    pub changed: BTreeSet<SignalName>,
    /// Latest `ingest_received_at` among the applied records; `None` if nothing applied.
    pub newest_ingest: Option<DateTime<Utc>>,
    /// Fleet events the batch derived, oldest first.
    pub fleet_events: Vec<FleetEvent>,
    /// Positions the fleet filter rejected.
    pub filtered: Vec<FilterReason>,
}

impl BatchOutcome {
    /// Whether any record of the batch changed the state (so it must be published).
    pub fn changed_anything(&self) -> bool {
        self.report.applied > 0
    }
}

/// The latest known state of one vehicle plus its dedupe window.
#[derive(Debug, Clone)]
pub struct VehicleState {
    /// Signals, version and last_seen. `recent_records` is left empty here and filled
    /// from `window` by [`VehicleState::snapshot`], so applying a record stays O(1).
    snapshot: VehicleSnapshot,
    /// Recent record ids, oldest first.
    window: VecDeque<RecordId>,
    /// The same ids as `window`, for O(1) duplicate checks.
    seen: HashSet<RecordId>,
    /// Most ids kept.
    capacity: usize,
}

impl VehicleState {
    /// A vehicle of `tenant` never seen before, remembering up to `window` record ids.
    pub fn new(tenant: TenantId, id: VehicleId, window: usize) -> Self {
        Self::restore(
            VehicleSnapshot {
                tenant,
                vehicle_id: id,
                ..Default::default()
            },
            window,
        )
    }

    /// Rebuilds the state from a persisted snapshot. If the configured window shrank
    /// since the snapshot was written, only the newest `window` ids are kept.
    pub fn restore(mut snapshot: VehicleSnapshot, window: usize) -> Self {
        let ids = std::mem::take(&mut snapshot.recent_records);
        let mut state = Self {
            snapshot,
            window: VecDeque::with_capacity(window.min(ids.len())),
            seen: HashSet::with_capacity(window.min(ids.len())),
            capacity: window,
        };
        let skip = ids.len().saturating_sub(window);
        for id in ids.into_iter().skip(skip) {
            state.remember(id);
        }
        state
    }

    /// The tenant the vehicle belongs to.
    pub fn tenant(&self) -> &TenantId {
        &self.snapshot.tenant
    }

    /// The vehicle.
    pub fn vehicle_id(&self) -> &VehicleId {
        &self.snapshot.vehicle_id
    }

    /// Records applied so far.
    pub fn version(&self) -> u64 {
        self.snapshot.version
    }

    /// Newest source time of any non-duplicate record.
    pub fn last_seen(&self) -> Option<DateTime<Utc>> {
        self.snapshot.last_seen
    }

    /// Applies one record (see the module docs for the rules).
    pub fn apply(&mut self, record: &TelemetryRecord) -> ApplyOutcome {
        let id = record.content_id();
        if self.seen.contains(&id) {
            return ApplyOutcome::Duplicate;
        }
        self.remember(id);

        let mut changed = Vec::new();
        for (name, value) in &record.payload {
            // Strictly newer only: an equal timestamp keeps the first arrival, so the
            // result does not depend on how often a stream segment is replayed.
            let newer = match self.snapshot.signals.get_mut(name.as_str()) {
                Some(current) if record.timestamp > current.timestamp => {
                    current.value = value.clone();
                    current.timestamp = record.timestamp;
                    true
                }
                Some(_) => false,
                None => {
                    let reading = SignalReading {
                        value: value.clone(),
                        timestamp: record.timestamp,
                    };
                    self.snapshot
                        .signals
                        .insert(SignalName::from(name.as_str()), reading);
                    true
                }
            };
            if newer {
                changed.push(SignalName::from(name.as_str()));
            }
        }
        self.snapshot.last_seen = self.snapshot.last_seen.max(Some(record.timestamp));

        if changed.is_empty() {
            ApplyOutcome::Stale
        } else {
            self.snapshot.version += 1;
            ApplyOutcome::Applied { changed }
        }
    }

    /// Applies a batch in order and sums up what happened.
    pub fn apply_batch(&mut self, records: &[TelemetryRecord]) -> BatchOutcome {
        self.apply_batch_with(records, None)
    }

    /// Applies a batch and feeds every applied record to the fleet machines (duplicates
    /// and stale records never reach them).
    pub fn apply_batch_with(
        &mut self,
        records: &[TelemetryRecord],
        fleet: Option<FleetContext<'_>>,
    ) -> BatchOutcome {
        let mut out = BatchOutcome::default();
        for record in records {
            match self.apply(record) {
                ApplyOutcome::Applied { changed } => {
                    out.report.applied += 1;
                    out.changed.extend(changed);
                    out.newest_ingest = out.newest_ingest.max(Some(record.ingest_received_at));
                    if let Some(f) = fleet {
                        let id = &self.snapshot.vehicle_id;
                        let derived = self.snapshot.derived.apply(f.config, f.rules, id, record, f.now);
                        out.fleet_events.extend(derived.events);
                        out.filtered.extend(derived.filtered);
                    }
                }
                ApplyOutcome::Duplicate => out.report.duplicate += 1,
                ApplyOutcome::Stale => out.report.stale += 1,
            }
        }
        out
    }

    /// The state as persisted: a copy with the dedupe window, oldest id first.
    pub fn snapshot(&self) -> VehicleSnapshot {
        let mut snapshot = self.snapshot.clone();
        snapshot.recent_records = self.window.iter().copied().collect();
        snapshot
    }

    /// The offline timer: raises the tenant's `offline` alerts that are due at `now`.
    /// An event bumps the version, so the snapshot that records it is saved.
    pub fn fleet_tick(&mut self, fleet: FleetContext<'_>) -> Vec<FleetEvent> {
        let Some(last_seen) = self.snapshot.last_seen else {
            return Vec::new();
        };
        let id = self.snapshot.vehicle_id.clone();
        let events = self.snapshot.derived.tick(fleet.rules, &id, last_seen, fleet.now);
        if !events.is_empty() {
            self.snapshot.version += 1;
        }
        events
    }

    /// When the next `offline` alert of the tenant's rules would be due.
    pub fn offline_deadline(&self, fleet: FleetContext<'_>) -> Option<DateTime<Utc>> {
        let last_seen = self.snapshot.last_seen?;
        self.snapshot.derived.offline_deadline(fleet.rules, last_seen)
    }

    /// The update to publish after a batch: the full latest state plus what changed and
    /// the fleet events it derived.
    pub fn update(
        &self,
        changed: Vec<SignalName>,
        ingest_received_at: DateTime<Utc>,
        fleet_events: Vec<FleetEvent>,
    ) -> VehicleUpdate {
        VehicleUpdate {
            // The tenant the registry gave the vehicle actor (docs/ARCHITECTURE.md, step 5).
            tenant: self.snapshot.tenant.clone(),
            vehicle_id: self.snapshot.vehicle_id.clone(),
            version: self.snapshot.version,
            last_seen: self.snapshot.last_seen,
            changed,
            signals: self.snapshot.signals.clone(),
            ingest_received_at,
            fleet_events,
        }
    }

    /// Puts an id into the window, evicting the oldest when full. A repeated id (only
    /// possible in a hand-edited snapshot) is ignored so `window` and `seen` stay in step.
    fn remember(&mut self, id: RecordId) {
        if self.capacity == 0 || !self.seen.insert(id) {
            return;
        }
        if self.window.len() == self.capacity
            && let Some(oldest) = self.window.pop_front()
        {
            self.seen.remove(&oldest);
        }
        self.window.push_back(id);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::model::SignalValue;
    use crate::vehicle::fakes::{at, record};

    fn state(window: usize) -> VehicleState {
        VehicleState::new(TenantId::default(), VehicleId("v1".into()), window)
    }

    fn applied(names: &[&str]) -> ApplyOutcome {
        ApplyOutcome::Applied {
            changed: names.iter().map(|s| SignalName::from(*s)).collect(),
        }
    }

    #[test]
    fn a_repeated_record_is_a_duplicate_and_changes_nothing() {
        let mut s = state(8);
        let r = record("v1", 10, &[("Soc", 80)]);
        assert_eq!(s.apply(&r), applied(&["Soc"]));
        let before = s.snapshot();
        // A retried delivery differs only in arrival time, which is not part of its identity.
        let mut retry = r.clone();
        retry.ingest_received_at = at(99);
        assert_eq!(s.apply(&retry), ApplyOutcome::Duplicate);
        assert_eq!(s.snapshot(), before);
    }

    #[test]
    fn an_older_value_never_overwrites_a_newer_one() {
        let mut s = state(8);
        s.apply(&record("v1", 20, &[("Soc", 70), ("Speed", 50)]));
        // Older for Soc, but Odometer is new: only Odometer changes.
        assert_eq!(
            s.apply(&record("v1", 10, &[("Soc", 90), ("Odometer", 1)])),
            applied(&["Odometer"])
        );
        let snap = s.snapshot();
        assert_eq!(snap.signals.get("Soc").unwrap().value, SignalValue::Int(70));
        assert_eq!(snap.signals.get("Soc").unwrap().timestamp, at(20));
        assert_eq!(snap.signals.get("Odometer").unwrap().timestamp, at(10));
        assert_eq!(s.apply(&record("v1", 5, &[("Soc", 1)])), ApplyOutcome::Stale);
        assert_eq!(
            s.snapshot().signals.get("Soc").unwrap().value,
            SignalValue::Int(70)
        );
    }

    #[test]
    fn equal_timestamp_keeps_the_first_arrival() {
        let mut s = state(8);
        s.apply(&record("v1", 10, &[("Gear", 1)]));
        assert_eq!(s.apply(&record("v1", 10, &[("Gear", 2)])), ApplyOutcome::Stale);
        assert_eq!(
            s.snapshot().signals.get("Gear").unwrap().value,
            SignalValue::Int(1)
        );
    }

    #[test]
    fn version_counts_applied_records_only() {
        let mut s = state(8);
        let r1 = record("v1", 10, &[("Soc", 80), ("Speed", 3)]);
        s.apply(&r1); // applied: 1
        s.apply(&r1); // duplicate
        s.apply(&record("v1", 5, &[("Soc", 1)])); // stale
        s.apply(&record("v1", 11, &[("Soc", 79)])); // applied: 2
        s.apply(&record("v1", 12, &[])); // nothing to change: stale
        assert_eq!(s.version(), 2);
        let out = s.apply_batch(&[
            record("v1", 13, &[("Soc", 78)]),
            record("v1", 13, &[("Soc", 78)]),
            record("v1", 1, &[("Speed", 0)]),
            record("v1", 14, &[("Speed", 9)]),
        ]);
        assert_eq!(
            out.report,
            ApplyReport {
                applied: 2,
                duplicate: 1,
                stale: 1
            }
        );
        assert_eq!(out.changed, BTreeSet::from(["Soc".into(), "Speed".into()]));
        assert_eq!(out.newest_ingest, Some(at(15)));
        assert_eq!(s.version(), 4);
    }

    #[test]
    fn a_batch_without_changes_has_no_ingest_time() {
        let mut s = state(8);
        let r = record("v1", 1, &[("Soc", 1)]);
        s.apply(&r);
        let out = s.apply_batch(&[r]);
        assert!(!out.changed_anything());
        assert_eq!(out.newest_ingest, None);
    }

    #[test]
    fn the_window_is_bounded_and_evicts_the_oldest() {
        let mut s = state(3);
        let records: Vec<_> = (0..4).map(|i| record("v1", i, &[("Soc", i)])).collect();
        for r in &records {
            s.apply(r);
        }
        let ids: Vec<_> = records.iter().map(|r| r.content_id()).collect();
        assert_eq!(
            s.snapshot().recent_records,
            ids[1..].to_vec(),
            "oldest first, oldest evicted"
        );
        // The evicted record is no longer recognised (but is stale: its value is older).
        assert_eq!(s.apply(&records[0]), ApplyOutcome::Stale);
        assert_eq!(s.apply(&records[3]), ApplyOutcome::Duplicate);
        assert_eq!(s.snapshot().recent_records.len(), 3);
    }

    #[test]
    fn a_zero_window_disables_dedupe() {
        let mut s = state(0);
        let r = record("v1", 1, &[("Soc", 1)]);
        s.apply(&r);
        assert_eq!(s.apply(&r), ApplyOutcome::Stale);
        assert!(s.snapshot().recent_records.is_empty());
    }

    #[test]
    fn restore_keeps_duplicates_detected() {
        let mut s = state(8);
        let records: Vec<_> = (0..5).map(|i| record("v1", i, &[("Soc", i)])).collect();
        for r in &records {
            s.apply(r);
        }
        let mut restored = VehicleState::restore(s.snapshot(), 8);
        assert_eq!(restored.snapshot(), s.snapshot());
        assert_eq!(restored.apply(&records[0]), ApplyOutcome::Duplicate);
        assert_eq!(restored.version(), 5);

        // A smaller window keeps the newest ids.
        let mut shrunk = VehicleState::restore(s.snapshot(), 2);
        let ids: Vec<_> = records[3..].iter().map(|r| r.content_id()).collect();
        assert_eq!(shrunk.snapshot().recent_records, ids);
        assert_eq!(shrunk.apply(&records[4]), ApplyOutcome::Duplicate);
        assert_eq!(shrunk.apply(&records[2]), ApplyOutcome::Stale);
    }

    #[test]
    fn last_seen_is_the_newest_source_time_of_non_duplicates() {
        let mut s = state(8);
        assert_eq!(s.last_seen(), None);
        s.apply(&record("v1", 20, &[("Soc", 1)]));
        s.apply(&record("v1", 10, &[("Soc", 2)])); // stale, older
        assert_eq!(s.last_seen(), Some(at(20)));
        s.apply(&record("v1", 30, &[])); // stale, but newer: the vehicle was seen
        assert_eq!(s.last_seen(), Some(at(30)));
        assert_eq!(s.version(), 1);
    }

    #[test]
    fn fleet_machines_see_applied_records_only_and_survive_restore() {
        use crate::fleet::{FleetConfig, FleetRules, track::drive_and_charge};
        let config = FleetConfig::default();
        let rules = FleetRules::default().tenant(&TenantId::default());
        let ctx = FleetContext {
            config: &config,
            rules: &rules,
            now: at(100_000),
        };
        let origin = crate::model::Location {
            latitude: 52.52,
            longitude: 13.405,
        };
        let track = drive_and_charge(&VehicleId("v1".into()), origin, at(0));
        let mut s = state(256);
        let first = s.apply_batch_with(&track[..50], Some(ctx));
        // Passivation: the snapshot goes through JSON and back.
        let json = serde_json::to_string(&s.snapshot()).unwrap();
        let mut s = VehicleState::restore(serde_json::from_str(&json).unwrap(), 256);
        // The batch is re-delivered (a retry after a failed save), then the rest arrives.
        let again = s.apply_batch_with(&track[..50], Some(ctx));
        assert_eq!(again.report.duplicate, 50);
        assert!(again.fleet_events.is_empty());
        let rest = s.apply_batch_with(&track[50..], Some(ctx));
        let types: Vec<_> = first
            .fleet_events
            .iter()
            .chain(&rest.fleet_events)
            .map(|e| e.kind.name())
            .collect();
        assert_eq!(
            types,
            ["trip_started", "trip_ended", "charging_started", "charging_ended"]
        );
        let snap = s.snapshot();
        assert_eq!(
            (snap.derived.trips.len(), snap.derived.charging_sessions.len()),
            (1, 1)
        );
        // A snapshot from before fleet intelligence has no `derived` and still loads.
        let mut old = serde_json::to_value(&snap).unwrap();
        old.as_object_mut().unwrap().remove("derived");
        let old: VehicleSnapshot = serde_json::from_value(old).unwrap();
        assert!(old.derived.is_empty());
    }

    #[test]
    fn update_carries_the_full_state() {
        let mut s = state(8);
        s.apply(&record("v1", 1, &[("Soc", 1), ("Speed", 2)]));
        s.apply(&record("v1", 2, &[("Soc", 3)]));
        let u = s.update(vec!["Soc".into()], at(3), vec![]);
        assert_eq!((u.version, u.last_seen, u.signals.len()), (2, Some(at(2)), 2));
        assert_eq!(u.changed, ["Soc"]);
    }
}
