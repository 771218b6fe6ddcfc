//! One simulated vehicle: where it is, what it is doing and how its battery responds.
//!
//! The vehicle is a small state machine, parked → driving → parked | charging → complete
//! → parked → …, advanced in time slices: parked spans are consumed in one step (nothing
//! moves), charging in ≤ 10 s steps (power depends on SOC) and driving in ≤ 1 s steps
//! (speed and position need the resolution). That keeps a tick for a mostly parked fleet
//! cheap and lets callers advance by any interval.

use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};

use super::road::{Grid, Node, Route};

/// What the vehicle is doing.
#[derive(Debug, Clone, Copy)]
pub(crate) enum Mode {
    /// Gear P, unplugged, until the dwell ends.
    Parked { remaining_s: f64 },
    /// On a trip.
    Driving(Trip),
    /// Plugged in and taking energy until `target_soc`.
    Charging {
        charger: Charger,
        target_soc: f64,
        elapsed_s: f64,
    },
    /// Plugged in and full (to the target); the driver comes back after a while.
    Complete { remaining_s: f64 },
}

/// Kind of charger a charging session uses.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Charger {
    Ac,
    Dc,
}

/// Progress along a planned route.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Trip {
    route: Route,
    /// Index of the waypoint the current leg heads for.
    leg: u8,
    /// The crossing the vehicle last passed and the next one on its way.
    from: Node,
    to: Node,
    /// Metres driven on the block from `from` to `to`.
    progress_m: f64,
    /// Cruising speed on this block, m/s.
    cruise_ms: f64,
    /// Speed to have when reaching `to`: 0 for a stop, slow for a turn, ∞ to go straight.
    end_speed_ms: f64,
    /// Whether `to` is a red light that holds the vehicle once it stops there.
    red_at_next: bool,
    /// Seconds left waiting at a red light.
    hold_s: f64,
    /// Seconds left backing out of the parking spot (gear R) before setting off.
    reverse_s: f64,
}

/// Comfortable braking, m/s²; drivers plan stops with it.
const BRAKE: f64 = 2.5;
/// Firmer braking used when above the planned curve (e.g. entering a slower street).
const BRAKE_FIRM: f64 = 4.0;
/// Speed through a turn, m/s (~18 km/h).
const TURN_SPEED: f64 = 5.0;
/// The hard ceiling for any simulated speed, km/h.
pub(crate) const MAX_SPEED_KMH: f64 = 130.0;
/// Speed while backing out, m/s.
const REVERSE_SPEED: f64 = 1.2;

/// Conditions shared by the whole fleet during one tick.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Weather {
    pub outside_c: f64,
}

/// A simulated vehicle.
#[derive(Debug, Clone)]
pub(crate) struct Vehicle {
    rng: StdRng,
    // Fixed per vehicle: a mix of models and drivers.
    capacity_kwh: f64,
    /// Consumption the range estimate assumes, kWh/km.
    rated_kwh_per_km: f64,
    /// Multiplier on rolling/aero consumption (model and tyres).
    efficiency: f64,
    mass_kg: f64,
    ac_kw: f64,
    dc_kw: f64,
    /// How fast this driver goes relative to the limit.
    pace: f64,
    /// SOC below which the driver looks for a fast charger at the end of a trip.
    low_soc: f64,
    /// Local offset to the fleet's outside temperature (micro-climate, sensor).
    temp_offset_c: f64,
    cabin_setpoint_c: f64,
    // Dynamic state.
    pub mode: Mode,
    /// Where the vehicle is parked, or the crossing it last passed.
    node: Node,
    pub speed_ms: f64,
    pub heading_deg: f64,
    pub odometer_km: f64,
    energy_kwh: f64,
    pub inside_c: f64,
    /// Charging power in the last step, kW.
    pub charge_kw: f64,
}

impl Vehicle {
    /// A vehicle in a random but plausible initial state; `seed` is unique per vehicle so
    /// each one's story does not depend on fleet size or tick order.
    pub fn new(seed: u64, grid: &Grid) -> Self {
        let mut rng = StdRng::seed_from_u64(seed);
        let capacity_kwh = [60.0, 75.0, 75.0, 82.0][rng.random_range(0..4)];
        let soc = rng.random_range(25.0..95.0);
        let mut v = Self {
            capacity_kwh,
            rated_kwh_per_km: 0.16,
            efficiency: rng.random_range(0.9..1.15),
            mass_kg: rng.random_range(1850.0..2250.0),
            ac_kw: if rng.random_bool(0.8) { 11.0 } else { 7.4 },
            dc_kw: rng.random_range(110.0..150.0),
            pace: rng.random_range(0.9..1.06),
            low_soc: rng.random_range(18.0..35.0),
            temp_offset_c: rng.random_range(-0.8..0.8),
            cabin_setpoint_c: rng.random_range(19.5..22.5),
            mode: Mode::Parked { remaining_s: 0.0 },
            node: grid.random_node(&mut rng),
            speed_ms: 0.0,
            heading_deg: f64::from(rng.random_range(0..4) * 90),
            odometer_km: rng.random_range(3_000.0..120_000.0),
            energy_kwh: capacity_kwh * soc / 100.0,
            inside_c: 15.0,
            charge_kw: 0.0,
            rng,
        };
        // Mostly on the road so a fresh demo shows movement at once; the rest parked with
        // staggered departures or charging.
        let roll: f64 = v.rng.random();
        v.mode = if roll < 0.55 {
            v.start_trip(grid, false)
        } else if roll < 0.85 {
            Mode::Parked {
                remaining_s: v.rng.random_range(0.0..900.0),
            }
        } else {
            let charger = if v.rng.random_bool(0.5) {
                Charger::Dc
            } else {
                Charger::Ac
            };
            let mode = v.start_charging(charger);
            // Fast chargers are met near the end of their session (so a fresh demo sees
            // sessions finish within a minute or two), slow ones anywhere early on.
            let soc = match (charger, &mode) {
                (Charger::Dc, Mode::Charging { target_soc, .. }) => target_soc - v.rng.random_range(1.0..5.0),
                _ => v.rng.random_range(15.0..50.0),
            };
            v.energy_kwh = v.capacity_kwh * soc / 100.0;
            mode
        };
        v
    }

    /// State of charge, percent.
    pub fn soc(&self) -> f64 {
        (self.energy_kwh / self.capacity_kwh * 100.0).clamp(0.0, 100.0)
    }

    /// Range the car would display, km.
    pub fn est_range_km(&self) -> f64 {
        self.energy_kwh.max(0.0) / self.rated_kwh_per_km
    }

    /// Offset from the fleet centre, km (east, north).
    pub fn position_km(&self, grid: &Grid) -> (f64, f64) {
        let (x, y) = grid.position_km(self.node);
        match &self.mode {
            Mode::Driving(t) if t.reverse_s <= 0.0 => {
                let along = t.progress_m / 1000.0;
                let (dx, dy) = (t.to.i - t.from.i, t.to.j - t.from.j);
                (x + f64::from(dx) * along, y + f64::from(dy) * along)
            }
            _ => (x, y),
        }
    }

    /// Gear letter as the vehicle reports it.
    pub fn gear(&self) -> &'static str {
        match &self.mode {
            Mode::Driving(t) if t.reverse_s > 0.0 => "R",
            Mode::Driving(_) => "D",
            _ => "P",
        }
    }

    /// Ambient temperature at this vehicle, °C.
    pub fn outside_c(&self, weather: Weather) -> f64 {
        weather.outside_c + self.temp_offset_c
    }

    /// Puts the cabin temperature where it would plausibly be at the start of a
    /// simulation: conditioned when the car is on, ambient otherwise.
    pub fn settle_cabin(&mut self, weather: Weather) {
        self.inside_c = match self.mode {
            Mode::Driving(_) | Mode::Charging { .. } => self.cabin_setpoint_c,
            _ => self.outside_c(weather),
        };
    }

    /// Advances the vehicle by `dt_s` seconds.
    pub fn advance(&mut self, mut dt_s: f64, grid: &Grid, weather: Weather) {
        let outside = self.outside_c(weather);
        while dt_s > 1e-9 {
            let used = match self.mode {
                Mode::Parked { remaining_s } => {
                    let step = dt_s.min(remaining_s);
                    self.speed_ms = 0.0;
                    self.charge_kw = 0.0;
                    // Standby electronics; a parked EV loses roughly 1 kWh a day.
                    self.draw(0.04 * step / 3600.0);
                    if remaining_s - step <= 0.0 {
                        self.mode = self.depart(grid);
                    } else {
                        self.mode = Mode::Parked {
                            remaining_s: remaining_s - step,
                        };
                    }
                    step
                }
                Mode::Complete { remaining_s } => {
                    let step = dt_s.min(remaining_s);
                    self.charge_kw = 0.0;
                    if remaining_s - step <= 0.0 {
                        // Unplugged; a short walk back before the next trip.
                        let dwell = self.rng.random_range(30.0..600.0);
                        self.mode = Mode::Parked { remaining_s: dwell };
                    } else {
                        self.mode = Mode::Complete {
                            remaining_s: remaining_s - step,
                        };
                    }
                    step
                }
                Mode::Charging {
                    charger,
                    target_soc,
                    elapsed_s,
                } => {
                    let step = dt_s.min(10.0);
                    self.charge(charger, target_soc, elapsed_s, step);
                    step
                }
                Mode::Driving(mut trip) => {
                    let step = dt_s.min(1.0);
                    let finished = self.drive(&mut trip, step, grid, outside);
                    self.mode = if finished {
                        self.arrive()
                    } else {
                        Mode::Driving(trip)
                    };
                    step
                }
            };
            self.update_cabin(used, outside);
            dt_s -= used;
        }
    }

    fn draw(&mut self, kwh: f64) {
        self.energy_kwh = (self.energy_kwh - kwh).max(0.0);
    }

    /// The cabin heads for the setpoint while the car is on (driving or conditioning on
    /// the charger) and drifts to ambient otherwise.
    fn update_cabin(&mut self, dt_s: f64, outside: f64) {
        let (target, tau_s) = match self.mode {
            Mode::Driving(_) | Mode::Charging { .. } => (self.cabin_setpoint_c, 600.0),
            _ => (outside, 3600.0),
        };
        self.inside_c += (target - self.inside_c) * (1.0 - (-dt_s / tau_s).exp());
    }

    /// Charger power at the current SOC, kW. DC ramps up over the first half minute and
    /// tapers above 80 %; AC is flat until the very top.
    fn charge_power(&self, charger: Charger, elapsed_s: f64) -> f64 {
        let soc = self.soc();
        match charger {
            Charger::Dc => {
                let ramp = (elapsed_s / 30.0).clamp(0.1, 1.0);
                let taper = if soc <= 80.0 {
                    1.0
                } else {
                    1.0 - (soc - 80.0) / 20.0 * 0.85
                };
                self.dc_kw * ramp * taper
            }
            Charger::Ac => {
                let taper = if soc <= 97.0 {
                    1.0
                } else {
                    1.0 - (soc - 97.0) / 3.0 * 0.7
                };
                self.ac_kw * taper
            }
        }
    }

    fn charge(&mut self, charger: Charger, target_soc: f64, elapsed_s: f64, step: f64) {
        self.speed_ms = 0.0;
        let kw = self.charge_power(charger, elapsed_s);
        let efficiency = if charger == Charger::Dc { 0.95 } else { 0.9 };
        self.charge_kw = kw;
        self.energy_kwh = (self.energy_kwh + kw * efficiency * step / 3600.0).min(self.capacity_kwh);
        self.mode = if self.soc() >= target_soc {
            self.charge_kw = 0.0;
            Mode::Complete {
                remaining_s: self.rng.random_range(120.0..1800.0),
            }
        } else {
            Mode::Charging {
                charger,
                target_soc,
                elapsed_s: elapsed_s + step,
            }
        };
    }

    fn start_charging(&mut self, charger: Charger) -> Mode {
        let target_soc = match charger {
            Charger::Dc => self.rng.random_range(80.0..90.0),
            Charger::Ac => self.rng.random_range(85.0..100.0),
        };
        Mode::Charging {
            charger,
            target_soc,
            elapsed_s: 0.0,
        }
    }

    /// End of a parked spell: set off, unless the battery is too low to go anywhere.
    fn depart(&mut self, grid: &Grid) -> Mode {
        if self.soc() < 10.0 {
            return self.start_charging(Charger::Dc);
        }
        let backing_out = self.rng.random_bool(0.5);
        self.start_trip(grid, backing_out)
    }

    /// End of a trip: charge when low (fast) or opportunistically (destination AC),
    /// otherwise park for an errand-like or longer spell.
    fn arrive(&mut self) -> Mode {
        self.speed_ms = 0.0;
        let soc = self.soc();
        if soc < self.low_soc {
            let charger = if soc < 20.0 || self.rng.random_bool(0.6) {
                Charger::Dc
            } else {
                Charger::Ac
            };
            return self.start_charging(charger);
        }
        if soc < 70.0 && self.rng.random_bool(0.12) {
            return self.start_charging(Charger::Ac);
        }
        let roll: f64 = self.rng.random();
        let dwell_s = if roll < 0.6 {
            self.rng.random_range(60.0..600.0)
        } else if roll < 0.9 {
            self.rng.random_range(600.0..2700.0)
        } else {
            self.rng.random_range(2700.0..10_800.0)
        };
        Mode::Parked { remaining_s: dwell_s }
    }

    /// Picks a destination within a comfortable share of the remaining range and plans
    /// the way there.
    fn start_trip(&mut self, grid: &Grid, backing_out: bool) -> Mode {
        let max_blocks = ((self.est_range_km() * 0.5).min(25.0) / grid.block_km) as i32;
        let min_blocks = ((1.0 / grid.block_km) as i32).clamp(2, max_blocks.max(2));
        let mut dest = grid.random_node(&mut self.rng);
        for _ in 0..16 {
            let blocks = dest.manhattan(self.node);
            if blocks >= min_blocks && blocks <= max_blocks.max(min_blocks) {
                break;
            }
            dest = grid.random_node(&mut self.rng);
        }
        if dest == self.node {
            // Tiny areas or bad luck: any other crossing will do; the centre always exists.
            dest = if self.node == (Node { i: 0, j: 0 }) {
                Node { i: 1, j: 0 }
            } else {
                Node { i: 0, j: 0 }
            };
            if !grid.contains(dest) {
                return Mode::Parked { remaining_s: 600.0 };
            }
        }
        let route = grid.plan(self.node, dest, &mut self.rng);
        let mut trip = Trip {
            route,
            leg: 0,
            from: self.node,
            to: self.node,
            progress_m: 0.0,
            cruise_ms: 0.0,
            end_speed_ms: 0.0,
            red_at_next: false,
            hold_s: 0.0,
            reverse_s: if backing_out {
                self.rng.random_range(3.0..7.0)
            } else {
                0.0
            },
        };
        self.enter_block(&mut trip);
        Mode::Driving(trip)
    }

    /// Sets the trip up for the block after `trip.to` (the crossing just reached), turning
    /// if that crossing is a waypoint. Returns false when the trip is complete.
    fn enter_block(&mut self, trip: &mut Trip) -> bool {
        let here = trip.to;
        let last = usize::from(trip.route.len);
        while usize::from(trip.leg) < last && trip.route.waypoints[usize::from(trip.leg)] == here {
            trip.leg += 1;
        }
        if usize::from(trip.leg) == last {
            return false;
        }
        let goal = trip.route.waypoints[usize::from(trip.leg)];
        let (di, dj) = ((goal.i - here.i).signum(), (goal.j - here.j).signum());
        let next = Node {
            i: here.i + di,
            j: here.j + dj,
        };
        trip.from = here;
        trip.to = next;
        self.node = here;
        self.heading_deg = match (di, dj) {
            (0, 1) => 0.0,
            (1, 0) => 90.0,
            (0, -1) => 180.0,
            _ => 270.0,
        };
        let line = if dj == 0 { here.j } else { here.i };
        let limit = Grid::limit_kmh(line);
        trip.cruise_ms = (limit * self.pace * self.rng.random_range(0.97..1.03)).min(MAX_SPEED_KMH) / 3.6;
        trip.red_at_next = false;
        trip.end_speed_ms = if next == trip.route.destination() {
            0.0
        } else if next == goal {
            TURN_SPEED
        } else {
            let p_red = if Grid::has_lights(next) { 0.4 } else { 0.06 };
            trip.red_at_next = self.rng.random_bool(p_red);
            if trip.red_at_next { 0.0 } else { f64::INFINITY }
        };
        true
    }

    /// Drives `dt` seconds; returns true when the destination is reached.
    fn drive(&mut self, trip: &mut Trip, dt: f64, grid: &Grid, outside: f64) -> bool {
        let aux_kw = 0.35 + 0.08 * (self.cabin_setpoint_c - outside).abs();
        let v0 = self.speed_ms;
        if trip.reverse_s > 0.0 {
            let s = dt.min(trip.reverse_s);
            trip.reverse_s -= s;
            self.speed_ms = if trip.reverse_s > 0.0 { REVERSE_SPEED } else { 0.0 };
            self.odometer_km += REVERSE_SPEED * s / 1000.0;
            self.draw(aux_kw * dt / 3600.0);
            return false;
        }
        if trip.hold_s > 0.0 {
            trip.hold_s -= dt;
            self.speed_ms = 0.0;
            self.draw(aux_kw * dt / 3600.0);
            return false;
        }
        let block_m = grid.block_km * 1000.0;
        let remaining = block_m - trip.progress_m;
        // Highest speed to end this step with that still allows reaching `to` at the
        // planned end speed with comfortable braking: solve v²/2B + v·dt/2 ≤ distance left
        // after this step. Using the end of the step (not its start) keeps the discrete
        // deceleration within BRAKE, so stops never end in a jump to zero.
        let after_step = (remaining - 0.5 * v0 * dt).max(0.0);
        let half = 0.5 * BRAKE * dt;
        let end = trip.end_speed_ms;
        let brake_limit = -half + (half * half + 2.0 * BRAKE * after_step + end * end).sqrt();
        let desired = trip.cruise_ms.min(brake_limit);
        let mut v1 = if v0 < desired {
            // Electric cars pull hard from a stop and less so at speed.
            let accel = if v0 < 14.0 { 2.2 } else { 1.1 };
            (v0 + accel * dt).min(desired)
        } else {
            (v0 - BRAKE_FIRM * dt).max(desired)
        };
        if v1 >= trip.cruise_ms * 0.98 {
            // Nobody holds a speed exactly; a little wobble around the cruise speed.
            v1 = (v1 + self.rng.random_range(-0.25..0.25))
                .clamp(0.0, (trip.cruise_ms * 1.03).min(MAX_SPEED_KMH / 3.6));
        }
        let mut dist = 0.5 * (v0 + v1) * dt;
        let mut finished = false;
        if dist >= remaining || (trip.end_speed_ms == 0.0 && remaining < 0.5) {
            dist = remaining;
            let stop_here = trip.end_speed_ms == 0.0;
            if stop_here {
                v1 = 0.0;
            }
            let overshoot = (0.5 * (v0 + v1) * dt - remaining).max(0.0);
            let red = trip.red_at_next;
            if self.enter_block(trip) {
                trip.progress_m = if stop_here {
                    0.0
                } else {
                    overshoot.min(block_m * 0.5)
                };
                self.odometer_km += trip.progress_m / 1000.0;
                if red {
                    trip.hold_s = self.rng.random_range(5.0..40.0);
                }
            } else {
                self.node = trip.to;
                finished = true;
            }
        } else {
            trip.progress_m += dist;
        }
        self.speed_ms = v1;
        self.odometer_km += dist / 1000.0;
        self.draw(self.drive_energy_kwh(v0, v1, dist, dt, aux_kw));
        finished
    }

    /// Energy for one driving step: rolling + aero over the distance (≈ 14–20 kWh/100 km
    /// depending on speed), acceleration with partial regeneration, and auxiliaries.
    fn drive_energy_kwh(&self, v0: f64, v1: f64, dist_m: f64, dt: f64, aux_kw: f64) -> f64 {
        let kmh = 0.5 * (v0 + v1) * 3.6;
        let per_km = (0.125 + 5.5e-6 * kmh * kmh) * self.efficiency;
        let kinetic_j = 0.5 * self.mass_kg * (v1 * v1 - v0 * v0);
        let kinetic_kwh = if kinetic_j > 0.0 {
            kinetic_j / 0.9
        } else {
            kinetic_j * 0.65
        } / 3.6e6;
        per_km * dist_m / 1000.0 + kinetic_kwh + aux_kw * dt / 3600.0
    }
}
