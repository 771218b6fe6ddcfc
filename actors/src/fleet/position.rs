//! Position filtering: which reported positions the fleet machines may use.
//!
//! The rules follow the filters mature trackers apply (Traccar's `FilterHandler` and its
//! `filter.invalid`, `filter.zero`, `filter.duplicate`, `filter.future`, `filter.past` and
//! `filter.maxSpeed` settings); this is fleetwire's own code. A rejected position is
//! never silently lost: it is counted per [`FilterReason`] in the vehicle's derived state
//! and in the `fleetwire_fleet_positions_filtered_total{reason}` metric, and the raw
//! value still sits in the vehicle's latest signals.

use chrono::{DateTime, Duration, Utc};
use serde::{Deserialize, Serialize};

use super::geo_util::distance_m;
use crate::model::Location;

/// Settings of the filter (config `fleet.filter`).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct FilterConfig {
    /// Highest plausible speed, km/h, implied by two consecutive positions (default 300).
    /// A jump faster than this is an outlier.
    pub max_speed_kmh: f64,
    /// How far a source time may lie ahead of the node's clock, seconds (default 300).
    pub max_future_secs: i64,
    /// How far a source time may lie behind the node's clock, seconds (default 7 days:
    /// a replay after a long outage is still real history).
    pub max_past_secs: i64,
    /// After this many consecutive jump rejections the new area is accepted (default 3):
    /// the earlier fix was the outlier, and a filter must not lock a vehicle out forever.
    pub max_consecutive_jumps: u32,
}

impl Default for FilterConfig {
    fn default() -> Self {
        Self {
            max_speed_kmh: 300.0,
            max_future_secs: 300,
            max_past_secs: 7 * 24 * 3600,
            max_consecutive_jumps: 3,
        }
    }
}

/// Why a position was not used.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum FilterReason {
    /// Not a number, or outside ±90° / ±180°.
    Invalid,
    /// Exactly (0, 0): a receiver without a fix.
    Zero,
    /// Same source time as the last accepted fix.
    Duplicate,
    /// Source time too far ahead of the node's clock.
    Future,
    /// Source time too far behind the node's clock.
    Past,
    /// Older than the last accepted fix (history arriving late; the trip already moved on).
    OutOfOrder,
    /// Implied speed from the last fix above `max_speed_kmh`.
    Jump,
}

impl FilterReason {
    /// The metric label and the key in the derived state's counters.
    pub fn as_str(self) -> &'static str {
        match self {
            FilterReason::Invalid => "invalid",
            FilterReason::Zero => "zero",
            FilterReason::Duplicate => "duplicate",
            FilterReason::Future => "future",
            FilterReason::Past => "past",
            FilterReason::OutOfOrder => "out_of_order",
            FilterReason::Jump => "jump",
        }
    }
}

/// An accepted position and its source time.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
pub struct Fix {
    /// Where.
    pub location: Location,
    /// When (source time).
    pub at: DateTime<Utc>,
}

/// The filter's memory, persisted with the vehicle.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(default)]
pub struct FilterState {
    /// The last accepted fix.
    pub last: Option<Fix>,
    /// Jump rejections since the last accepted fix.
    pub jumps: u32,
}

impl FilterState {
    /// Judges `candidate`; on acceptance it becomes the last fix. `now` is the node's clock.
    pub fn check(
        &mut self,
        config: &FilterConfig,
        candidate: Fix,
        now: DateTime<Utc>,
    ) -> Result<(), FilterReason> {
        let Location { latitude, longitude } = candidate.location;
        if !latitude.is_finite() || !longitude.is_finite() || latitude.abs() > 90.0 || longitude.abs() > 180.0
        {
            return Err(FilterReason::Invalid);
        }
        if latitude == 0.0 && longitude == 0.0 {
            return Err(FilterReason::Zero);
        }
        if candidate.at > now + Duration::seconds(config.max_future_secs) {
            return Err(FilterReason::Future);
        }
        if candidate.at < now - Duration::seconds(config.max_past_secs) {
            return Err(FilterReason::Past);
        }
        if let Some(last) = self.last {
            if candidate.at == last.at {
                return Err(FilterReason::Duplicate);
            }
            if candidate.at < last.at {
                return Err(FilterReason::OutOfOrder);
            }
            let secs = (candidate.at - last.at).num_milliseconds() as f64 / 1000.0;
            let kmh = distance_m(last.location, candidate.location) / secs * 3.6;
            if kmh > config.max_speed_kmh && self.jumps < config.max_consecutive_jumps {
                self.jumps += 1;
                return Err(FilterReason::Jump);
            }
        }
        self.last = Some(candidate);
        self.jumps = 0;
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use proptest::prelude::*;

    use super::*;
    use crate::vehicle::fakes::at;

    fn fix(lat: f64, lon: f64, secs: i64) -> Fix {
        Fix {
            location: Location {
                latitude: lat,
                longitude: lon,
            },
            at: at(secs),
        }
    }

    #[test]
    fn each_rule_rejects_with_its_reason() {
        let c = FilterConfig::default();
        let now = at(1000);
        let mut s = FilterState::default();
        assert_eq!(
            s.check(&c, fix(f64::NAN, 1.0, 1), now),
            Err(FilterReason::Invalid)
        );
        assert_eq!(s.check(&c, fix(91.0, 1.0, 1), now), Err(FilterReason::Invalid));
        assert_eq!(s.check(&c, fix(0.0, 0.0, 1), now), Err(FilterReason::Zero));
        assert_eq!(
            s.check(&c, fix(52.5, 13.4, 1000 + 301), now),
            Err(FilterReason::Future)
        );
        assert_eq!(
            s.check(&c, fix(52.5, 13.4, 1000 - 7 * 24 * 3600 - 1), now),
            Err(FilterReason::Past)
        );
        assert_eq!(s.check(&c, fix(52.5, 13.4, 100), now), Ok(()));
        assert_eq!(
            s.check(&c, fix(52.5, 13.4, 100), now),
            Err(FilterReason::Duplicate)
        );
        assert_eq!(
            s.check(&c, fix(52.5, 13.4, 99), now),
            Err(FilterReason::OutOfOrder)
        );
        // 0.01° latitude ≈ 1.1 km in 10 s ≈ 400 km/h.
        assert_eq!(s.check(&c, fix(52.51, 13.4, 110), now), Err(FilterReason::Jump));
        // 1.1 km in 60 s ≈ 67 km/h: fine.
        assert_eq!(s.check(&c, fix(52.51, 13.4, 160), now), Ok(()));
    }

    #[test]
    fn a_bad_anchor_does_not_lock_the_vehicle_out() {
        let c = FilterConfig::default();
        let mut s = FilterState::default();
        s.check(&c, fix(10.0, 10.0, 0), at(0)).unwrap(); // wrong: the car is in Berlin
        for i in 1..=3 {
            assert_eq!(s.check(&c, fix(52.5, 13.4, i), at(i)), Err(FilterReason::Jump));
        }
        assert_eq!(s.check(&c, fix(52.5, 13.4, 4), at(4)), Ok(()));
        assert_eq!(s.check(&c, fix(52.5001, 13.4, 5), at(5)), Ok(()));
    }

    proptest! {
        /// Whatever arrives, accepted fixes are in source-time order and never imply an
        /// impossible speed unless the jump budget was spent first.
        #[test]
        fn accepted_fixes_are_ordered(points in prop::collection::vec((-1.0f64..1.0, -1.0f64..1.0, 0i64..500), 1..60)) {
            let c = FilterConfig::default();
            let mut s = FilterState::default();
            let mut accepted: Vec<Fix> = Vec::new();
            for (dlat, dlon, secs) in points {
                let f = fix(52.0 + dlat, 13.0 + dlon, secs);
                if s.check(&c, f, at(1000)).is_ok() {
                    accepted.push(f);
                }
            }
            for pair in accepted.windows(2) {
                prop_assert!(pair[0].at < pair[1].at);
            }
        }
    }
}
