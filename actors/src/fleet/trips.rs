//! Trips: when a vehicle starts and stops driving, and what the drive was.
//!
//! - **Driving** is the gear (`D`, `R`, `N`) when the vehicle reports one, otherwise a
//!   reported speed above [`MOVING_KMH`]; with neither, the speed implied by two
//!   consecutive positions, where positions within `stop_radius_m` of where the vehicle
//!   stands (its stop or parking position) are GPS drift, not motion. Such a trip starts
//!   when the vehicle is first seen beyond the radius.
//! - A trip **starts** at the first driving sample. It is reported (`trip_started`) only
//!   once it covered `min_distance_m`: shorter movements (repositioning in a car park)
//!   are not trips.
//! - A trip **ends** when the vehicle has stood still for `stop_secs` (a stop at a light
//!   or a short errand keeps the trip going) or when charging starts during a stop (a
//!   vehicle on a charger is parked). The trip ends where and when the stop began.
//!
//! The defaults (300 s, 500 m) are the minimal parking duration and trip distance of
//! Traccar's trip reports (`report.trip.minimalParkingDuration`,
//! `minimalTripDistance`). The machine only sees samples in source-time order (the
//! engine drops older ones), so replays cannot extend or split a trip.

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};

use super::events::{Trip, content_id};
use super::geo_util::distance_m;
use crate::model::{Location, VehicleId};

/// Speed above which a vehicle without a gear signal counts as moving, km/h.
pub const MOVING_KMH: f64 = 2.0;

/// Settings of trip detection (config `fleet.trips`).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct TripConfig {
    /// A stop at least this long ends the trip, seconds (default 300).
    pub stop_secs: i64,
    /// A position this far from the stop's position means the vehicle moved on, metres
    /// (default 500; only used when neither gear nor speed are reported).
    pub stop_radius_m: f64,
    /// Shorter movements are not trips, metres (default 500).
    pub min_distance_m: f64,
}

impl Default for TripConfig {
    fn default() -> Self {
        Self {
            stop_secs: 300,
            stop_radius_m: 500.0,
            min_distance_m: 500.0,
        }
    }
}

/// What the trip machine is told about one record: the vehicle's latest known values
/// at the record's source time.
#[derive(Debug, Clone, Copy, Default)]
pub struct MotionInput {
    /// Source time.
    pub at: Option<DateTime<Utc>>,
    /// A position accepted by the filter in this record.
    pub fix: Option<Location>,
    /// Whether the gear says driving (`None`: no gear known).
    pub gear_driving: Option<bool>,
    /// Latest speed, km/h.
    pub speed_kmh: Option<f64>,
    /// Speed implied by the previous accepted position and this record's, km/h.
    pub implied_speed_kmh: Option<f64>,
    /// Latest state of charge.
    pub soc: Option<f64>,
    /// Latest `EnergyRemaining`, kWh.
    pub energy_kwh: Option<f64>,
    /// Whether the vehicle is charging now.
    pub charging: bool,
}

/// What a step reports.
#[derive(Debug, Clone, PartialEq)]
pub enum TripOutput {
    /// A trip became long enough to count; it started at `at` (id, start time, place).
    Started {
        /// The trip's id.
        id: String,
        /// When it started.
        at: DateTime<Utc>,
        /// Where it started.
        location: Option<Location>,
    },
    /// A counted trip ended.
    Ended(Trip),
}

/// Where and when a stop began, and the trip's totals at that moment.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Stop {
    /// Source time the vehicle stopped.
    pub since: DateTime<Utc>,
    /// Where.
    pub location: Option<Location>,
    /// Distance driven up to the stop (later drift does not count).
    pub distance_m: f64,
    /// State of charge then.
    pub soc: Option<f64>,
    /// Energy left then.
    pub energy_kwh: Option<f64>,
}

/// A trip in progress.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct OpenTrip {
    /// Content id.
    pub id: String,
    /// Start time.
    pub started_at: DateTime<Utc>,
    /// First known position.
    pub start_location: Option<Location>,
    /// State of charge at the start.
    pub start_soc: Option<f64>,
    /// Energy left at the start.
    pub start_energy_kwh: Option<f64>,
    /// Distance so far, metres.
    pub distance_m: f64,
    /// Highest speed so far.
    pub max_speed_kmh: f64,
    /// Latest accepted position.
    pub last_location: Option<Location>,
    /// Whether `trip_started` was reported (the trip reached `min_distance_m`).
    pub reported: bool,
    /// The stop in progress, if the vehicle stands.
    pub stop: Option<Stop>,
}

/// The trip machine's persisted state.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(default)]
pub struct TripState {
    /// The trip in progress.
    pub open: Option<OpenTrip>,
    /// Latest accepted position while no trip is open (where the next trip starts).
    pub parked_at: Option<Location>,
}

impl TripState {
    /// Feeds one sample; returns what it completed.
    pub fn step(&mut self, config: &TripConfig, vehicle: &VehicleId, input: MotionInput) -> Vec<TripOutput> {
        let Some(at) = input.at else { return Vec::new() };
        let mut out = Vec::new();
        // Where the vehicle stands: the stop's position, or the parking position.
        let drift = || {
            let anchor = match &self.open {
                Some(trip) => trip.stop.as_ref()?.location?,
                None => self.parked_at?,
            };
            Some(distance_m(anchor, input.fix?) <= config.stop_radius_m)
        };
        let driving = match (input.gear_driving, input.speed_kmh) {
            (Some(gear), _) => gear,
            (None, Some(speed)) => speed > MOVING_KMH,
            (None, None) => input.implied_speed_kmh.is_some_and(|s| s > MOVING_KMH) && drift() != Some(true),
        };
        if self.open.is_none() {
            if !driving {
                // With gear or speed the position follows the vehicle; from positions
                // alone it stays put, so drift cannot creep it along.
                let reported = input.gear_driving.is_some() || input.speed_kmh.is_some();
                if reported || self.parked_at.is_none() {
                    self.parked_at = input.fix.or(self.parked_at);
                }
                return out;
            }
            // The trip starts where the vehicle was parked; the distance to this first
            // moving position counts.
            let start = self.parked_at.or(input.fix);
            self.open = Some(OpenTrip {
                id: content_id(vehicle, "trip", at, ""),
                started_at: at,
                start_location: start,
                start_soc: input.soc,
                start_energy_kwh: input.energy_kwh,
                distance_m: 0.0,
                max_speed_kmh: 0.0,
                last_location: start,
                reported: false,
                stop: None,
            });
        }
        let trip = self.open.as_mut().expect("opened above");
        if let Some(fix) = input.fix {
            if let Some(prev) = trip.last_location {
                trip.distance_m += distance_m(prev, fix);
            }
            trip.last_location = Some(fix);
            trip.start_location.get_or_insert(fix);
        }
        trip.max_speed_kmh = trip.max_speed_kmh.max(input.speed_kmh.unwrap_or(0.0));
        if !trip.reported && trip.distance_m >= config.min_distance_m {
            trip.reported = true;
            out.push(TripOutput::Started {
                id: trip.id.clone(),
                at: trip.started_at,
                location: trip.start_location,
            });
        }

        if driving {
            trip.stop = None;
            return out;
        }
        let stop = trip.stop.get_or_insert(Stop {
            since: at,
            location: trip.last_location,
            distance_m: trip.distance_m,
            soc: input.soc,
            energy_kwh: input.energy_kwh,
        });
        if (at - stop.since).num_seconds() < config.stop_secs && !input.charging {
            return out;
        }
        let stop = stop.clone();
        let trip = self.open.take().expect("matched above");
        self.parked_at = stop.location;
        if trip.reported {
            out.push(TripOutput::Ended(finish(trip, stop)));
        }
        out
    }
}

fn finish(trip: OpenTrip, stop: Stop) -> Trip {
    let duration_secs = (stop.since - trip.started_at).num_seconds().max(0);
    let sub = |a: Option<f64>, b: Option<f64>| Some(a? - b?);
    Trip {
        id: trip.id,
        started_at: trip.started_at,
        ended_at: stop.since,
        start_location: trip.start_location,
        end_location: stop.location,
        distance_m: stop.distance_m,
        duration_secs,
        max_speed_kmh: trip.max_speed_kmh,
        avg_speed_kmh: if duration_secs > 0 {
            stop.distance_m / duration_secs as f64 * 3.6
        } else {
            0.0
        },
        start_soc: trip.start_soc,
        end_soc: stop.soc,
        soc_used: sub(trip.start_soc, stop.soc),
        energy_used_kwh: sub(trip.start_energy_kwh, stop.energy_kwh),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::vehicle::fakes::at;

    fn loc(north_m: f64) -> Location {
        Location {
            latitude: 52.5 + north_m / 111_195.0,
            longitude: 13.4,
        }
    }

    fn input(secs: i64, north_m: f64, gear: Option<bool>, speed: f64, soc: f64) -> MotionInput {
        MotionInput {
            at: Some(at(secs)),
            fix: Some(loc(north_m)),
            gear_driving: gear,
            speed_kmh: Some(speed),
            implied_speed_kmh: None,
            soc: Some(soc),
            energy_kwh: None,
            charging: false,
        }
    }

    /// A recorded-style track: park, drive 2 km north at 36 km/h with a red light, park.
    fn track(gear: Option<bool>) -> Vec<MotionInput> {
        let mut t = vec![input(0, 0.0, gear.map(|_| false), 0.0, 80.0)];
        for s in 1..=100 {
            // 10 m/s, a 30 s red light half way.
            let (pos, speed) = match s {
                ..=50 => (s as f64 * 10.0, 36.0),
                51..=80 => (500.0, 0.0),
                _ => (500.0 + (s - 80) as f64 * 75.0, 36.0),
            };
            t.push(input(
                s * 5,
                pos,
                gear.map(|_| true),
                speed,
                80.0 - s as f64 * 0.05,
            ));
        }
        for s in 101..=170 {
            t.push(input(s * 5, 2000.0, gear.map(|_| false), 0.0, 75.0));
        }
        t
    }

    fn run(state: &mut TripState, inputs: &[MotionInput]) -> Vec<TripOutput> {
        let (c, v) = (TripConfig::default(), VehicleId("v1".into()));
        inputs.iter().flat_map(|i| state.step(&c, &v, *i)).collect()
    }

    #[test]
    fn a_drive_with_a_red_light_is_one_trip_with_gear_or_speed_only() {
        for gear in [Some(true), None] {
            let mut s = TripState::default();
            let out = run(&mut s, &track(gear));
            assert_eq!(out.len(), 2, "{gear:?}: {out:?}");
            let TripOutput::Ended(trip) = &out[1] else {
                panic!()
            };
            assert_eq!(trip.started_at, at(5));
            assert_eq!(trip.ended_at, at(505));
            assert!((trip.distance_m - 2000.0).abs() < 5.0, "{}", trip.distance_m);
            assert_eq!(trip.duration_secs, 500);
            assert!((trip.avg_speed_kmh - 14.4).abs() < 0.1);
            assert_eq!(trip.max_speed_kmh, 36.0);
            assert_eq!(trip.start_soc, Some(79.95));
            assert!((trip.soc_used.unwrap() - 4.95).abs() < 1e-9);
            assert!(s.open.is_none());
        }
    }

    #[test]
    fn a_short_hop_is_not_a_trip_and_charging_ends_a_stop_at_once() {
        let mut s = TripState::default();
        let hop: Vec<_> = (0..10)
            .map(|i| input(i, i as f64 * 10.0, Some(true), 36.0, 50.0))
            .chain((10..80).map(|i| input(i * 5, 90.0, Some(false), 0.0, 50.0)))
            .collect();
        assert!(run(&mut s, &hop).is_empty());
        assert!(s.open.is_none());

        let mut s = TripState::default();
        let mut t = track(Some(true));
        t.truncate(102); // stopped at 505 s
        let mut plug = input(520, 2000.0, Some(false), 0.0, 75.0);
        plug.charging = true;
        t.push(plug);
        let out = run(&mut s, &t);
        assert!(
            matches!(&out[..], [TripOutput::Started { .. }, TripOutput::Ended(t)] if t.ended_at == at(505))
        );
    }

    #[test]
    fn position_only_tracks_use_the_stop_radius() {
        // The track as a plain GPS tracker would send it: positions only.
        let mut t = track(None);
        let mut prev: Option<MotionInput> = None;
        for i in &mut t {
            i.speed_kmh = None;
            i.implied_speed_kmh = prev.map(|p| {
                let secs = (i.at.unwrap() - p.at.unwrap()).num_seconds() as f64;
                distance_m(p.fix.unwrap(), i.fix.unwrap()) / secs * 3.6
            });
            prev = Some(*i);
        }
        let mut s = TripState::default();
        let out = run(&mut s, &t);
        assert_eq!(out.len(), 2, "{out:?}");
        let TripOutput::Ended(trip) = &out[1] else {
            panic!()
        };
        // First seen (just) beyond 500 m of the parking position at 250 s.
        assert_eq!((trip.started_at, trip.ended_at), (at(250), at(505)));

        // Drift within the stop radius while parked does not restart the trip.
        let mut drift: Vec<_> = (171..300)
            .map(|s| input(s * 5, 2000.0 + (s % 3) as f64 * 30.0, None, 0.0, 75.0))
            .collect();
        for i in &mut drift {
            i.speed_kmh = None;
            i.implied_speed_kmh = Some(20.0);
        }
        t.truncate(110);
        let mut s = TripState::default();
        run(&mut s, &t);
        assert!(s.open.as_ref().is_some_and(|t| t.stop.is_some()));
        let out = run(&mut s, &drift);
        assert!(
            matches!(&out[..], [TripOutput::Ended(t)] if t.ended_at == at(505)),
            "{out:?}"
        );
    }
}
