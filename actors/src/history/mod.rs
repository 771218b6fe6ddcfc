//! History: every applied record kept per vehicle in compressed time buckets, and hourly
//! aggregates (docs/data-model.md, tables `history` and `aggregates`).
//!
//! # Layout
//!
//! - [`codec`]: the bucket encoding (columns, then LZ4) and the merge by content id.
//! - [`builder`]: [`HistoryBuilder`], the pure per-vehicle state (open buckets, hour
//!   accumulators) that the vehicle actor feeds and flushes through the
//!   [`HistoryStore`](crate::ports::HistoryStore) port.

pub mod builder;
pub mod codec;

use serde::{Deserialize, Serialize};

pub use builder::{ClosedBucket, ClosedHour, HOUR_MS, HistoryBuilder, Summary, hour_of};
pub use codec::{CODEC, HistoryRecord};

/// Settings of history and aggregates (config section `history`).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct HistoryConfig {
    /// Keep history and hourly aggregates (default true).
    pub enabled: bool,
    /// Bucket width in seconds of source time (default 60): one stored item per vehicle
    /// per bucket. Must divide an hour.
    pub bucket_secs: u64,
    /// A bucket closes once the vehicle's newest record is this many seconds past its end
    /// (default 5), so slightly late records still land in it.
    pub lateness_secs: u64,
    /// Each vehicle's buckets close a further 0..this many seconds late (default 15), a
    /// fixed offset per vehicle: otherwise a whole fleet at 1 Hz closes its buckets of
    /// the last minute in the same second, and those writes stall the live path. Adds
    /// as much to how far the shard checkpoint trails (docs/data-model.md).
    pub close_spread_secs: u64,
    /// A bucket also closes when nothing was added to it for this many seconds of wall
    /// time (default 60), so a vehicle that goes quiet has its last bucket written.
    pub idle_close_secs: u64,
    /// Days a bucket is kept after its end (TTL `expires_at`; default 7).
    pub retention_days: u64,
    /// Days an hourly aggregate is kept (default 400).
    pub aggregate_retention_days: u64,
}

impl Default for HistoryConfig {
    fn default() -> Self {
        Self {
            enabled: true,
            bucket_secs: 60,
            lateness_secs: 5,
            close_spread_secs: 15,
            idle_close_secs: 60,
            retention_days: 7,
            aggregate_retention_days: 400,
        }
    }
}

impl HistoryConfig {
    /// Checks the settings.
    pub fn validate(&self) -> Result<(), String> {
        if self.bucket_secs == 0 || 3600 % self.bucket_secs != 0 {
            return Err(format!(
                "history.bucket_secs = {} must divide 3600",
                self.bucket_secs
            ));
        }
        Ok(())
    }

    /// Bucket width in ms.
    pub fn bucket_ms(&self) -> i64 {
        (self.bucket_secs * 1000) as i64
    }

    /// TTL of a bucket starting at `start_ms`, Unix seconds.
    pub fn bucket_expiry(&self, start_ms: i64) -> i64 {
        (start_ms + self.bucket_ms()) / 1000 + (self.retention_days * 86_400) as i64
    }

    /// TTL of the hour aggregate starting at `hour_ms`, Unix seconds.
    pub fn aggregate_expiry(&self, hour_ms: i64) -> i64 {
        (hour_ms + HOUR_MS) / 1000 + (self.aggregate_retention_days * 86_400) as i64
    }

    /// A builder for `vehicle` with these settings.
    pub fn builder<H: Clone>(&self, vehicle: crate::model::VehicleId) -> HistoryBuilder<H> {
        let lateness = self.lateness_ms(&vehicle);
        HistoryBuilder::new(
            vehicle,
            self.bucket_ms(),
            lateness,
            (self.idle_close_secs * 1000) as i64,
        )
    }

    /// `vehicle`'s lateness in ms: `lateness_secs` plus its own share of
    /// `close_spread_secs`, the same on every node and after every restart of this build.
    pub fn lateness_ms(&self, vehicle: &crate::model::VehicleId) -> i64 {
        use std::hash::{Hash, Hasher};
        let spread_ms = self.close_spread_secs * 1000;
        let offset = if spread_ms == 0 {
            0
        } else {
            let mut hasher = std::hash::DefaultHasher::new();
            vehicle.as_str().hash(&mut hasher);
            hasher.finish() % spread_ms
        };
        (self.lateness_secs * 1000 + offset) as i64
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::model::VehicleId;

    #[test]
    fn bucket_closes_are_spread_over_the_fleet_within_the_configured_window() {
        let config = HistoryConfig::default();
        let (min, spread) = (5_000, 15_000);
        let lateness: Vec<i64> = (0..1000)
            .map(|i| config.lateness_ms(&VehicleId(format!("car-{i}"))))
            .collect();
        assert!(
            lateness.iter().all(|l| (min..min + spread).contains(l)),
            "{lateness:?}"
        );
        // Every third of the window gets a fair share, so no second sees the whole fleet.
        for third in 0..3 {
            let from = min + third * spread / 3;
            let n = lateness
                .iter()
                .filter(|l| (from..from + spread / 3).contains(*l))
                .count();
            assert!((250..420).contains(&n), "third {third}: {n} of 1000");
        }
        let car = VehicleId("car-7".into());
        assert_eq!(
            config.lateness_ms(&car),
            config.lateness_ms(&car),
            "fixed per vehicle"
        );
        let exact = HistoryConfig {
            close_spread_secs: 0,
            ..HistoryConfig::default()
        };
        assert_eq!(exact.lateness_ms(&car), 5_000);
    }
}
