//! A deterministic simulated fleet of electric vehicles that produces telemetry in the
//! seed data contract (`{"timestamp", "vehicle_id", "payload"}`) with signal names from
//! Tesla's Fleet Telemetry schema.
//!
//! Each vehicle parks, drives along a street grid around the configured centre (stopping
//! at red lights, slowing for turns, using faster streets when worth it), drains its
//! battery by distance and speed, and charges on AC or DC when low. Everything derives
//! from the seed, so two fleets with the same seed and the same tick times emit the same
//! records, which makes load tests and demos reproducible.
//!
//! Like a Fleet Telemetry client, a vehicle sends the signals that changed plus a
//! periodic full resend, so a consumer that keeps the latest value per signal (as
//! fleetwire's snapshots do) always has the complete picture.

mod road;
mod vehicle;

use chrono::{DateTime, Datelike, Timelike, Utc};
use serde::{Deserialize, Serialize};
use serde_json::{Map, Value};

use road::Grid;
use vehicle::{Charger, Mode, Vehicle, Weather};

/// How to build a [`Fleet`]. Every field has a default, so `{}` is a valid config.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct FleetConfig {
    /// Number of vehicles.
    pub vehicles: usize,
    /// Seed of every random choice; the same seed gives the same fleet.
    pub seed: u64,
    /// Latitude of the centre of the operating area, degrees.
    pub center_latitude: f64,
    /// Longitude of the centre of the operating area, degrees.
    pub center_longitude: f64,
    /// Radius of the operating area, km; vehicles never leave it.
    pub radius_km: f64,
    /// Prefix of the vehicle ids (`sim-0001`, …).
    pub id_prefix: String,
}

impl Default for FleetConfig {
    fn default() -> Self {
        Self {
            vehicles: 200,
            seed: 42,
            center_latitude: 52.52,
            center_longitude: 13.405,
            radius_km: 12.0,
            id_prefix: "sim-".to_owned(),
        }
    }
}

/// One telemetry record in the seed data contract, ready to be posted to `/v1/ingest`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct IngestRecord {
    /// When the vehicle measured the values.
    pub timestamp: DateTime<Utc>,
    /// Which vehicle sent it.
    pub vehicle_id: String,
    /// Signal name → value.
    pub payload: Map<String, Value>,
}

/// A simulated fleet; call [`Fleet::tick`] with the current time to move it forward.
#[derive(Debug, Clone)]
pub struct Fleet {
    config: FleetConfig,
    grid: Grid,
    vehicles: Vec<Vehicle>,
    ids: Vec<String>,
    /// What each vehicle last reported (same order as `vehicles`).
    reported: Vec<Reported>,
    /// Time of the previous tick; `None` until the first one.
    clock: Option<DateTime<Utc>>,
    /// Simulated seconds since the first tick (drives the resend schedule).
    elapsed_s: f64,
    projection: Projection,
}

/// Maps km offsets from the centre to degrees; equirectangular is plenty at city scale.
#[derive(Debug, Clone, Copy)]
struct Projection {
    center_latitude: f64,
    center_longitude: f64,
    deg_per_km_lat: f64,
    deg_per_km_lon: f64,
}

/// Length of one degree of latitude, km.
const KM_PER_DEG_LAT: f64 = 111.32;

impl Fleet {
    /// Builds the fleet in its initial state (about half on the road, the rest parked or
    /// charging). Out-of-range settings are clamped rather than rejected: a radius below
    /// 100 m (or not finite) and latitudes beyond ±85° would make the geometry degenerate.
    pub fn new(mut config: FleetConfig) -> Self {
        let defaults = FleetConfig::default();
        if !config.radius_km.is_finite() {
            config.radius_km = defaults.radius_km;
        }
        config.radius_km = config.radius_km.max(0.1);
        if !config.center_latitude.is_finite() || !config.center_longitude.is_finite() {
            config.center_latitude = defaults.center_latitude;
            config.center_longitude = defaults.center_longitude;
        }
        config.center_latitude = config.center_latitude.clamp(-85.0, 85.0);

        let grid = Grid::new(config.radius_km);
        let width = config.vehicles.to_string().len().max(4);
        let ids = (1..=config.vehicles)
            .map(|n| format!("{}{n:0width$}", config.id_prefix))
            .collect();
        let vehicles = (0..config.vehicles as u64)
            .map(|n| Vehicle::new(mix(config.seed ^ mix(n.wrapping_add(1))), &grid))
            .collect();
        // Stagger full resends over the interval so they do not all land on one tick.
        let reported = (0..config.vehicles)
            .map(|n| Reported {
                last: None,
                next_full_s: (n as f64 * 7.0) % RESEND_S,
            })
            .collect();
        let projection = Projection {
            center_latitude: config.center_latitude,
            center_longitude: config.center_longitude,
            deg_per_km_lat: 1.0 / KM_PER_DEG_LAT,
            deg_per_km_lon: 1.0 / (KM_PER_DEG_LAT * config.center_latitude.to_radians().cos()),
        };
        Self {
            config,
            grid,
            vehicles,
            ids,
            reported,
            clock: None,
            elapsed_s: 0.0,
            projection,
        }
    }

    /// The configuration in effect (after clamping).
    pub fn config(&self) -> &FleetConfig {
        &self.config
    }

    /// Advances every vehicle to `now` (any step, typically 1 s) and returns one record
    /// per vehicle, in [`Fleet::vehicle_ids`] order.
    ///
    /// A record carries the signals whose reported value changed since the vehicle's
    /// previous record; the first record of each vehicle, and one every 60 s after that
    /// (staggered across the fleet), carries all of them. A payload is never empty.
    /// The first call only sets the clock; a `now` earlier than the previous tick
    /// reports the current state without moving anything.
    pub fn tick(&mut self, now: DateTime<Utc>) -> Vec<IngestRecord> {
        let weather = Weather {
            outside_c: outside_temperature(now, self.config.center_longitude),
        };
        match self.clock {
            None => self.vehicles.iter_mut().for_each(|v| v.settle_cabin(weather)),
            Some(previous) => {
                let dt_s = (now - previous).num_milliseconds().max(0) as f64 / 1000.0;
                for v in &mut self.vehicles {
                    v.advance(dt_s, &self.grid, weather);
                }
                self.elapsed_s += dt_s;
            }
        }
        self.clock = Some(self.clock.map_or(now, |previous| previous.max(now)));
        let mut records = Vec::with_capacity(self.vehicles.len());
        for ((v, id), reported) in self.vehicles.iter().zip(&self.ids).zip(&mut self.reported) {
            let reading = reading(v, &self.grid, self.projection, weather);
            let full = reported.last.is_none() || self.elapsed_s >= reported.next_full_s;
            if full {
                // Next slot of this vehicle's staggered schedule after now.
                let phase = reported.next_full_s.rem_euclid(RESEND_S);
                let periods = ((self.elapsed_s - phase) / RESEND_S).floor() + 1.0;
                reported.next_full_s = phase + periods * RESEND_S;
            }
            let payload = payload(&reading, if full { None } else { reported.last.as_ref() });
            reported.last = Some(reading);
            records.push(IngestRecord {
                timestamp: now,
                vehicle_id: id.clone(),
                payload,
            });
        }
        records
    }

    /// The ids of all vehicles (`<prefix>0001`, … zero-padded to the fleet size, at least 4 digits).
    pub fn vehicle_ids(&self) -> Vec<String> {
        self.ids.clone()
    }
}

/// The values a vehicle's sensors report right now, rounded as reported.
fn reading(v: &Vehicle, grid: &Grid, at: Projection, weather: Weather) -> Reading {
    let (x_km, y_km) = v.position_km(grid);
    let (charge_state, ac_kw, dc_kw) = match v.mode {
        Mode::Charging {
            charger: Charger::Ac, ..
        } => (CHARGING, v.charge_kw, 0.0),
        Mode::Charging {
            charger: Charger::Dc, ..
        } => (CHARGING, 0.0, v.charge_kw),
        Mode::Complete { .. } => ("DetailedChargeStateComplete", 0.0, 0.0),
        Mode::Parked { .. } | Mode::Driving(_) => ("DetailedChargeStateDisconnected", 0.0, 0.0),
    };
    Reading {
        latitude: round(at.center_latitude + y_km * at.deg_per_km_lat, 6),
        longitude: round(at.center_longitude + x_km * at.deg_per_km_lon, 6),
        speed_kmh: round(v.speed_ms * 3.6, 1),
        heading_deg: round(v.heading_deg, 1),
        gear: v.gear(),
        odometer_km: round(v.odometer_km, 3),
        soc: round(v.soc(), 2),
        range_km: round(v.est_range_km(), 1),
        charge_state,
        ac_kw: round(ac_kw, 1),
        dc_kw: round(dc_kw, 1),
        inside_c: round(v.inside_c, 1),
        outside_c: round(v.outside_c(weather), 1),
    }
}

/// Every signal is sent at least this often, seconds, even when unchanged.
const RESEND_S: f64 = 60.0;
const CHARGING: &str = "DetailedChargeStateCharging";

/// A vehicle's reporting state: like a Fleet Telemetry client, it sends a signal when
/// its reported value changes and resends everything periodically, so a consumer that
/// missed a record converges and idle vehicles do not repeat themselves every second.
/// (Sending only changes also keeps a 10,000-vehicle tick cheap: building JSON maps
/// is allocation-bound.)
#[derive(Debug, Clone)]
struct Reported {
    last: Option<Reading>,
    next_full_s: f64,
}

/// Reported values of every signal, already rounded to what goes on the wire so that
/// "changed" means "the consumer would see a different value".
#[derive(Debug, Clone, Copy, PartialEq)]
struct Reading {
    latitude: f64,
    longitude: f64,
    speed_kmh: f64,
    heading_deg: f64,
    gear: &'static str,
    odometer_km: f64,
    soc: f64,
    range_km: f64,
    charge_state: &'static str,
    ac_kw: f64,
    dc_kw: f64,
    inside_c: f64,
    outside_c: f64,
}

/// The payload for `now`: every signal when `before` is `None`, otherwise those that
/// differ from `before`. Never empty, since ingest rejects records without signals:
/// an idle vehicle still reports its state of charge as a heartbeat.
fn payload(now: &Reading, before: Option<&Reading>) -> Map<String, Value> {
    let changed = |get: fn(&Reading) -> f64| before.is_none_or(|b| get(b) != get(now));
    let mut p = Map::new();
    let mut put = |send: bool, name: &str, value: Value| {
        if send {
            p.insert(name.to_owned(), value);
        }
    };
    if changed(|r| r.latitude) || changed(|r| r.longitude) {
        let location = Map::from_iter([
            ("latitude".to_owned(), now.latitude.into()),
            ("longitude".to_owned(), now.longitude.into()),
        ]);
        put(true, "Location", Value::Object(location));
    }
    put(changed(|r| r.speed_kmh), "VehicleSpeed", now.speed_kmh.into());
    put(changed(|r| r.heading_deg), "GpsHeading", now.heading_deg.into());
    put(before.is_none_or(|b| b.gear != now.gear), "Gear", now.gear.into());
    put(changed(|r| r.odometer_km), "Odometer", now.odometer_km.into());
    put(changed(|r| r.soc), "Soc", now.soc.into());
    put(changed(|r| r.soc), "BatteryLevel", now.soc.into());
    put(changed(|r| r.range_km), "EstBatteryRange", now.range_km.into());
    let state_changed = before.is_none_or(|b| b.charge_state != now.charge_state);
    put(state_changed, "DetailedChargeState", now.charge_state.into());
    put(changed(|r| r.ac_kw), "ACChargingPower", now.ac_kw.into());
    put(changed(|r| r.dc_kw), "DCChargingPower", now.dc_kw.into());
    put(changed(|r| r.inside_c), "InsideTemp", now.inside_c.into());
    put(changed(|r| r.outside_c), "OutsideTemp", now.outside_c.into());
    if p.is_empty() {
        p.insert("Soc".to_owned(), now.soc.into());
    }
    p
}

/// Rounds to `decimals` places, as a vehicle would report a sensor value.
fn round(x: f64, decimals: i32) -> f64 {
    let scale = 10f64.powi(decimals);
    (x * scale).round() / scale
}

/// SplitMix64's finalizer: turns (seed, index) into well-spread per-vehicle seeds so
/// neighbouring indices do not get correlated random streams.
fn mix(mut z: u64) -> u64 {
    z = z.wrapping_add(0x9E37_79B9_7F4A_7C15);
    z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
    z ^ (z >> 31)
}

/// A mid-latitude climate good enough for cabin and consumption: a seasonal mean (cold
/// in January, warm in July) plus a daily swing peaking mid-afternoon local solar time.
fn outside_temperature(now: DateTime<Utc>, longitude: f64) -> f64 {
    use std::f64::consts::TAU;
    let day = f64::from(now.ordinal());
    let local_hour =
        (f64::from(now.num_seconds_from_midnight()) / 3600.0 + longitude / 15.0).rem_euclid(24.0);
    let seasonal = 10.0 - 9.0 * (TAU * (day - 15.0) / 365.25).cos();
    let daily = 4.5 * (TAU * (local_hour - 9.0) / 24.0).sin();
    seasonal + daily
}

#[cfg(test)]
mod tests;
