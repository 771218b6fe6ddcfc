//! Fleet intelligence: what a vehicle's records mean for an operator — trips, charging
//! sessions, geofence crossings and alerts — derived per vehicle as records arrive.
//!
//! Everything here is a pure state machine (no actix, no I/O, the clock passed in), fed
//! by [`VehicleState`](crate::vehicle::VehicleState) for each applied record and by the
//! vehicle actor's offline timer.
//!
//! # Layout
//!
//! - [`signals`]: the one table from signal names (Tesla `V` fields, the simulator's) to
//!   the machines' inputs.
//! - [`position`]: the position filter (invalid, zero, duplicate, future, past, out of
//!   order, implausible jumps), counted per reason.
//! - [`trips`]: trip start and end from gear, speed or positions.
//! - [`charging`]: charging sessions from the charge state.
//! - [`geofence`]: circles and polygons, their R-tree, enter and exit.
//! - [`alerts`]: per-tenant alert rules and their latches.
//! - [`events`]: trips, sessions and events with content-derived ids.
//! - [`derived`]: [`FleetState`], the machines together, persisted with the vehicle.
//! - [`rules`]: [`FleetRules`], the shared per-tenant book of geofences and alert rules.
//! - [`track`]: a generated drive-and-charge track for tests and examples.

pub mod alerts;
pub mod charging;
pub mod derived;
pub mod events;
mod geo_util;
pub mod geofence;
pub mod position;
pub mod rules;
pub mod signals;
pub mod track;
pub mod trips;

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

pub use alerts::{AlertCondition, AlertRule, AlertState, Crossing};
pub use derived::{FleetOutcome, FleetState};
pub use events::{AlertType, ChargingSession, EventKind, FleetEvent, Trip};
pub use geofence::{Geofence, GeofenceIndex, Shape};
pub use position::{FilterConfig, FilterReason};
pub use rules::{FleetRules, RulesError, TenantRules, TenantRulesConfig};
pub use trips::TripConfig;

/// What the machines need besides the record: settings, the vehicle's tenant's rules
/// and the node's clock.
#[derive(Debug, Clone, Copy)]
pub struct FleetContext<'a> {
    /// Settings.
    pub config: &'a FleetConfig,
    /// The tenant's geofences and alert rules.
    pub rules: &'a TenantRules,
    /// The node's clock.
    pub now: chrono::DateTime<chrono::Utc>,
}

/// Settings of fleet intelligence (config section `fleet`).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct FleetConfig {
    /// The position filter.
    pub filter: FilterConfig,
    /// Trip detection.
    pub trips: TripConfig,
    /// How often a vehicle actor checks its `offline` alert rules, seconds (default 15).
    pub offline_check_secs: u64,
    /// Geofences and alert rules per tenant, loaded at start (`[fleet.tenants.<tenant>]`).
    pub tenants: BTreeMap<String, TenantRulesConfig>,
}

impl Default for FleetConfig {
    fn default() -> Self {
        Self {
            filter: FilterConfig::default(),
            trips: TripConfig::default(),
            offline_check_secs: 15,
            tenants: BTreeMap::new(),
        }
    }
}

impl FleetConfig {
    /// Checks the settings (the rules are checked by [`FleetRules::seeded`]).
    pub fn validate(&self) -> Result<(), String> {
        let f = &self.filter;
        if !(f.max_speed_kmh.is_finite() && f.max_speed_kmh > 0.0) {
            return Err("fleet.filter.max_speed_kmh must be > 0".into());
        }
        if f.max_future_secs < 0 || f.max_past_secs <= 0 {
            return Err("fleet.filter.max_future_secs must be >= 0 and max_past_secs > 0".into());
        }
        let t = &self.trips;
        let positive = |x: f64| x.is_finite() && x > 0.0;
        if t.stop_secs <= 0
            || !positive(t.stop_radius_m)
            || !(t.min_distance_m.is_finite() && t.min_distance_m >= 0.0)
        {
            return Err("fleet.trips: stop_secs and stop_radius_m must be > 0, min_distance_m >= 0".into());
        }
        if self.offline_check_secs == 0 {
            return Err("fleet.offline_check_secs must be > 0".into());
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests;
