//! The one table that maps pipeline signal names to what the fleet machines need.
//!
//! Signal names are Tesla Fleet Telemetry `Field` names (the `V` topic, see
//! `shared/fixtures/tesla/schema/vehicle_data.json`); the demo simulator
//! (`loadtest/src/fleet.rs`) sends the same names over HTTP and Tesla's protocol. Values
//! come as the decoder makes them: numbers, `Location`, and enum members as text — Tesla's
//! own value names (`ShiftStateD`, `DetailedChargeStateCharging`) or the short gear
//! letters the simulator sends over HTTP (`D`).
//!
//! | fleet input | signals, first present wins | unit assumed |
//! |---|---|---|
//! | position | `Location` | WGS84 degrees |
//! | speed | `VehicleSpeed` | km/h (the simulator's unit) |
//! | state of charge | `Soc`, `BatteryLevel` | percent |
//! | gear | `Gear` (`P/R/N/D`, `ShiftState*`) | — |
//! | charging | `DetailedChargeState`, `ChargeState` (`*Charging`, `*Starting`, …) | — |
//! | odometer | `Odometer` | km |
//! | energy left | `EnergyRemaining` | kWh |
//! | charging power | `ACChargingPower` + `DCChargingPower` | kW |
//! | energy charged | `ACChargingEnergyIn` + `DCChargingEnergyIn` | kWh (session counters) |
//!
//! Tesla vehicles configured for imperial units report speed in mph and the odometer in
//! miles; fleetwire does not convert yet (the thresholds are then read in those units).

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};

use crate::model::{Location, SignalValue, TelemetryRecord};

/// Gear / drive state.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Gear {
    /// `P`: parked.
    Park,
    /// `R`.
    Reverse,
    /// `N`.
    Neutral,
    /// `D`.
    Drive,
}

impl Gear {
    /// Whether the vehicle is in a drive state (a trip is going on).
    pub fn is_driving(self) -> bool {
        !matches!(self, Gear::Park)
    }
}

/// Charge port state, reduced to what sessions need.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Charging {
    /// Energy is flowing (or about to: `Starting`).
    Active,
    /// Plugged in, not charging (`Complete`, `Stopped`, `NoPower`).
    Plugged,
    /// Unplugged.
    Disconnected,
}

/// The mapped values of one record; `None` where the record does not carry the signal
/// (records carry only what changed) or its value is unusable.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Sample {
    /// Source time of the record.
    pub at: Option<DateTime<Utc>>,
    /// `Location`.
    pub position: Option<Location>,
    /// `VehicleSpeed`, km/h.
    pub speed_kmh: Option<f64>,
    /// `Soc` / `BatteryLevel`, percent.
    pub soc: Option<f64>,
    /// `Gear`.
    pub gear: Option<Gear>,
    /// `DetailedChargeState` / `ChargeState`.
    pub charging: Option<Charging>,
    /// `Odometer`, km.
    pub odometer_km: Option<f64>,
    /// `EnergyRemaining`, kWh.
    pub energy_kwh: Option<f64>,
    /// AC + DC charging power, kW.
    pub charge_power_kw: Option<f64>,
    /// AC + DC energy charged counters, kWh.
    pub charged_kwh: Option<f64>,
}

impl Sample {
    /// Maps a record through the table above.
    pub fn from_record(record: &TelemetryRecord) -> Self {
        let p = &record.payload;
        let num = |name: &str| {
            p.get(name)
                .and_then(SignalValue::as_f64)
                .filter(|v| v.is_finite())
        };
        let sum = |a: &str, b: &str| match (num(a), num(b)) {
            (None, None) => None,
            (x, y) => Some(x.unwrap_or(0.0) + y.unwrap_or(0.0)),
        };
        Self {
            at: Some(record.timestamp),
            position: match p.get("Location") {
                Some(SignalValue::Location(l)) => Some(*l),
                _ => None,
            },
            speed_kmh: num("VehicleSpeed"),
            soc: num("Soc").or_else(|| num("BatteryLevel")),
            gear: p.get("Gear").and_then(gear),
            charging: p
                .get("DetailedChargeState")
                .and_then(charging)
                .or_else(|| p.get("ChargeState").and_then(charging)),
            odometer_km: num("Odometer"),
            energy_kwh: num("EnergyRemaining"),
            charge_power_kw: sum("ACChargingPower", "DCChargingPower"),
            charged_kwh: sum("ACChargingEnergyIn", "DCChargingEnergyIn"),
        }
    }
}

/// `Gear` text → gear; `SNA`, `Invalid` and unknown values → `None`.
fn gear(value: &SignalValue) -> Option<Gear> {
    let SignalValue::Text(t) = value else { return None };
    match t.strip_prefix("ShiftState").unwrap_or(t) {
        "P" => Some(Gear::Park),
        "R" => Some(Gear::Reverse),
        "N" => Some(Gear::Neutral),
        "D" => Some(Gear::Drive),
        _ => None,
    }
}

/// `DetailedChargeState*` / `ChargeState*` text → charging; `Unknown` → `None`.
fn charging(value: &SignalValue) -> Option<Charging> {
    let SignalValue::Text(t) = value else { return None };
    let state = t
        .strip_prefix("DetailedChargeState")
        .or_else(|| t.strip_prefix("ChargeState"))
        .unwrap_or(t);
    match state {
        "Charging" | "Starting" => Some(Charging::Active),
        "Complete" | "Stopped" | "NoPower" => Some(Charging::Plugged),
        "Disconnected" => Some(Charging::Disconnected),
        _ => None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::vehicle::fakes::at;

    fn record(payload: &str) -> TelemetryRecord {
        TelemetryRecord {
            timestamp: at(0),
            vehicle_id: crate::model::VehicleId("v".into()),
            payload: serde_json::from_str(payload).unwrap(),
            can_id: None,
            ingest_received_at: at(0),
        }
    }

    #[test]
    fn tesla_and_simulator_names_map_alike() {
        let tesla = Sample::from_record(&record(
            r#"{"Gear":"ShiftStateD","DetailedChargeState":"DetailedChargeStateDisconnected",
               "BatteryLevel":55.5,"VehicleSpeed":42,"Location":{"latitude":52.5,"longitude":13.4}}"#,
        ));
        let sim = Sample::from_record(&record(
            r#"{"Gear":"D","DetailedChargeState":"DetailedChargeStateDisconnected","Soc":55.5,
               "VehicleSpeed":42.0,"Location":{"latitude":52.5,"longitude":13.4}}"#,
        ));
        assert_eq!(tesla, sim);
        assert_eq!(sim.gear, Some(Gear::Drive));
        assert_eq!(sim.charging, Some(Charging::Disconnected));
        assert_eq!(sim.speed_kmh, Some(42.0));
    }

    #[test]
    fn soc_wins_over_battery_level_and_bad_values_are_absent() {
        let s = Sample::from_record(&record(
            r#"{"Soc":40,"BatteryLevel":41,"Gear":"ShiftStateSNA","ChargeState":"ChargeStateStarting",
               "VehicleSpeed":null,"ACChargingPower":7.5}"#,
        ));
        assert_eq!(s.soc, Some(40.0));
        assert_eq!(s.gear, None);
        assert_eq!(s.charging, Some(Charging::Active));
        assert_eq!(s.speed_kmh, None);
        assert_eq!(s.charge_power_kw, Some(7.5));
        assert_eq!(s.charged_kwh, None);
    }
}
