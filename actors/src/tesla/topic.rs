//! Tesla's record types ("topics") and the payload message each one carries.

use std::fmt;
use std::str::FromStr;

use serde::{Deserialize, Serialize};

/// A record type of Tesla Fleet Telemetry: the envelope's `topic` bytes, a key of the
/// reference server's `records` config, and the stream a record is put on.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
pub enum Topic {
    /// `V`: vehicle data, `telemetry.vehicle_data.Payload`.
    #[serde(rename = "V")]
    V,
    /// `alerts`: `telemetry.vehicle_alerts.VehicleAlerts`.
    #[serde(rename = "alerts")]
    Alerts,
    /// `errors`: `telemetry.vehicle_error.VehicleErrors`.
    #[serde(rename = "errors")]
    Errors,
    /// `connectivity`: `telemetry.vehicle_connectivity.VehicleConnectivity`.
    #[serde(rename = "connectivity")]
    Connectivity,
}

impl Topic {
    /// Every topic, in the order Tesla's documentation lists them.
    pub const ALL: [Topic; 4] = [Topic::V, Topic::Alerts, Topic::Errors, Topic::Connectivity];

    /// The topic exactly as it appears on the wire (case-sensitive).
    pub fn as_str(self) -> &'static str {
        match self {
            Topic::V => "V",
            Topic::Alerts => "alerts",
            Topic::Errors => "errors",
            Topic::Connectivity => "connectivity",
        }
    }

    /// The topic named by an envelope's `topic` bytes; `None` for anything else (the
    /// reference server compares bytes exactly, so `v` or `Alerts` are unknown topics).
    pub fn from_wire(b: &[u8]) -> Option<Topic> {
        Topic::ALL.into_iter().find(|t| t.as_str().as_bytes() == b)
    }

    /// Full protobuf name of the payload message this topic carries.
    pub fn message_name(self) -> &'static str {
        match self {
            Topic::V => "telemetry.vehicle_data.Payload",
            Topic::Alerts => "telemetry.vehicle_alerts.VehicleAlerts",
            Topic::Errors => "telemetry.vehicle_error.VehicleErrors",
            Topic::Connectivity => "telemetry.vehicle_connectivity.VehicleConnectivity",
        }
    }

    /// Field number of the payload's `vin` (the server overwrites it).
    pub(crate) fn vin_field(self) -> u32 {
        match self {
            Topic::Connectivity => 1,
            _ => 3,
        }
    }

    /// Field number of the payload's top-level `created_at`.
    pub(crate) fn created_at_field(self) -> u32 {
        match self {
            Topic::Connectivity => 4,
            _ => 2,
        }
    }
}

impl fmt::Display for Topic {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl FromStr for Topic {
    type Err = String;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        Topic::from_wire(s.as_bytes())
            .ok_or_else(|| format!("unknown topic {s:?}; expected one of V, alerts, errors, connectivity"))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn wire_names_round_trip_and_are_case_sensitive() {
        for t in Topic::ALL {
            assert_eq!(Topic::from_wire(t.as_str().as_bytes()), Some(t));
            assert_eq!(t.as_str().parse::<Topic>(), Ok(t));
            assert_eq!(serde_json::to_string(&t).unwrap(), format!("\"{}\"", t.as_str()));
        }
        assert_eq!(Topic::from_wire(b"v"), None);
        assert_eq!(Topic::from_wire(b"Alerts"), None);
        assert_eq!(Topic::from_wire(b""), None);
        assert_eq!(
            serde_json::from_str::<Topic>("\"alerts\"").unwrap(),
            Topic::Alerts
        );
    }
}
