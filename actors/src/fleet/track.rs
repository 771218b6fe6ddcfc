//! A generated track for tests and examples: a day in the life of one vehicle, compressed
//! into 35 minutes, that exercises every fleet machine.
//!
//! Parked in gear P inside a circle around `origin` with 30 % charge; drives 3 km north at
//! 36 km/h (one record every 5 s, Tesla signal names), losing charge to 18 %; parks, and
//! after a minute plugs into a 100 kW DC charger for 20 minutes (to about 60 %), then the
//! charge completes. With a 1 km geofence at `origin` and a low-SOC rule at 20 % this
//! gives: geofence enter, trip start, geofence exit, low-SOC alert, trip end, charging
//! start, low-SOC clear, charging end.

use chrono::{DateTime, Duration, Utc};
use serde_json::{Value, json};

use crate::model::{Location, TelemetryRecord, VehicleId};

/// Metres per degree of latitude.
const M_PER_DEG: f64 = 111_195.0;

/// The records of the track, oldest first, starting at `start`.
pub fn drive_and_charge(vehicle: &VehicleId, origin: Location, start: DateTime<Utc>) -> Vec<TelemetryRecord> {
    let at_north =
        |m: f64| json!({"latitude": origin.latitude + m / M_PER_DEG, "longitude": origin.longitude});
    let mut out = Vec::new();
    let mut push = |secs: i64, payload: Value| {
        out.push(TelemetryRecord {
            timestamp: start + Duration::seconds(secs),
            vehicle_id: vehicle.clone(),
            payload: serde_json::from_value(payload).expect("track payloads are signal maps"),
            can_id: None,
            ingest_received_at: start + Duration::seconds(secs),
        });
    };
    push(
        0,
        json!({"Location": at_north(0.0), "Gear": "ShiftStateP", "VehicleSpeed": 0.0, "Soc": 30.0,
               "DetailedChargeState": "DetailedChargeStateDisconnected", "Odometer": 1000.0}),
    );
    // 60 records × 5 s × 10 m/s = 3 km.
    for i in 1..=60 {
        let soc = 30.0 - f64::from(i) * 0.2;
        push(
            i64::from(i) * 5,
            json!({"Location": at_north(f64::from(i) * 50.0), "Gear": "ShiftStateD",
                   "VehicleSpeed": 36.0, "Soc": soc, "BatteryLevel": soc}),
        );
    }
    push(305, json!({"Gear": "ShiftStateP", "VehicleSpeed": 0.0}));
    push(
        365,
        json!({"DetailedChargeState": "DetailedChargeStateCharging", "DCChargingPower": 100.0}),
    );
    // 20 minutes of charging, a SOC reading each minute (100 kW ≈ 2.1 %/min on 80 kWh).
    for m in 1..=20 {
        let soc = 18.0 + f64::from(m) * 2.1;
        push(365 + i64::from(m) * 60, json!({"Soc": soc, "BatteryLevel": soc}));
    }
    push(
        365 + 20 * 60 + 5,
        json!({"DetailedChargeState": "DetailedChargeStateComplete", "DCChargingPower": 0.0}),
    );
    out
}
