//! Charging sessions: from the charge state, with energy and state of charge gained.
//!
//! A session starts when the charge state turns to charging (`Charging`, `Starting`) and
//! ends when it turns to anything else the vehicle reports (`Complete`, `Stopped`,
//! `Disconnected`, …). Energy comes from the vehicle's charged-energy counters
//! (`ACChargingEnergyIn` + `DCChargingEnergyIn`) when it sends them; otherwise the
//! charging power is integrated over time, each reading held until the next one (records
//! carry only changed values, so a power is valid until replaced).

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};

use super::events::{ChargingSession, content_id};
use crate::model::{Location, VehicleId};

/// What the charging machine is told about one record (latest known values).
#[derive(Debug, Clone, Copy, Default)]
pub struct ChargeInput {
    /// Source time.
    pub at: Option<DateTime<Utc>>,
    /// Whether the vehicle is charging (`None`: charge state never reported).
    pub charging: Option<bool>,
    /// Latest charging power, kW.
    pub power_kw: Option<f64>,
    /// Charged-energy counter in this record, kWh.
    pub counter_kwh: Option<f64>,
    /// Latest state of charge.
    pub soc: Option<f64>,
    /// Latest accepted position.
    pub location: Option<Location>,
}

/// What a step reports.
#[derive(Debug, Clone, PartialEq)]
pub enum ChargeOutput {
    /// A session started (id, time).
    Started(String, DateTime<Utc>),
    /// A session ended.
    Ended(ChargingSession),
}

/// A session in progress.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct OpenSession {
    /// Content id.
    pub id: String,
    /// Start time.
    pub started_at: DateTime<Utc>,
    /// Where.
    pub location: Option<Location>,
    /// State of charge at the start.
    pub start_soc: Option<f64>,
    /// Integrated energy so far, kWh.
    pub integrated_kwh: f64,
    /// The power in effect and since when.
    pub power: Option<(DateTime<Utc>, f64)>,
    /// First and latest counter readings of the session.
    pub counter: Option<(f64, f64)>,
    /// Highest power seen.
    pub max_power_kw: f64,
}

/// The charging machine's persisted state.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(default)]
pub struct ChargeState {
    /// The session in progress.
    pub open: Option<OpenSession>,
}

impl ChargeState {
    /// Feeds one sample.
    pub fn step(&mut self, vehicle: &VehicleId, input: ChargeInput) -> Option<ChargeOutput> {
        let at = input.at?;
        match (&mut self.open, input.charging) {
            (None, Some(true)) => {
                let id = content_id(vehicle, "charging", at, "");
                self.open = Some(OpenSession {
                    id: id.clone(),
                    started_at: at,
                    location: input.location,
                    start_soc: input.soc,
                    integrated_kwh: 0.0,
                    power: input.power_kw.map(|kw| (at, kw)),
                    counter: input.counter_kwh.map(|c| (c, c)),
                    max_power_kw: input.power_kw.unwrap_or(0.0),
                });
                Some(ChargeOutput::Started(id, at))
            }
            (Some(session), charging) => {
                session.accumulate(at, input.power_kw);
                if let Some(c) = input.counter_kwh {
                    let first = session.counter.map_or(c, |(first, _)| first);
                    session.counter = Some((first, c));
                }
                session.location = session.location.or(input.location);
                if charging != Some(false) {
                    return None;
                }
                let s = self.open.take().expect("matched above");
                let energy = match s.counter {
                    Some((first, last)) if last >= first => last - first,
                    _ => s.integrated_kwh,
                };
                Some(ChargeOutput::Ended(ChargingSession {
                    id: s.id,
                    started_at: s.started_at,
                    ended_at: at,
                    duration_secs: (at - s.started_at).num_seconds(),
                    location: s.location,
                    start_soc: s.start_soc,
                    end_soc: input.soc,
                    soc_added: input.soc.zip(s.start_soc).map(|(end, start)| end - start),
                    energy_added_kwh: energy,
                    max_power_kw: s.max_power_kw,
                }))
            }
            (None, _) => None,
        }
    }
}

impl OpenSession {
    /// Adds the energy of the power in effect up to `at`, then takes the new power.
    fn accumulate(&mut self, at: DateTime<Utc>, power_kw: Option<f64>) {
        if let Some((since, kw)) = self.power
            && at > since
        {
            let hours = (at - since).num_milliseconds() as f64 / 3_600_000.0;
            self.integrated_kwh += kw.max(0.0) * hours;
        }
        let kw = power_kw.or(self.power.map(|(_, kw)| kw));
        self.power = kw.map(|kw| (at, kw));
        self.max_power_kw = self.max_power_kw.max(kw.unwrap_or(0.0));
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::vehicle::fakes::at;

    fn input(secs: i64, charging: bool, kw: f64, soc: f64) -> ChargeInput {
        ChargeInput {
            at: Some(at(secs)),
            charging: Some(charging),
            power_kw: Some(kw),
            counter_kwh: None,
            soc: Some(soc),
            location: None,
        }
    }

    #[test]
    fn a_dc_session_integrates_power() {
        let v = VehicleId("v".into());
        let mut s = ChargeState::default();
        assert_eq!(s.step(&v, input(0, false, 0.0, 20.0)), None);
        assert!(
            matches!(s.step(&v, input(10, true, 100.0, 20.0)), Some(ChargeOutput::Started(_, t)) if t == at(10))
        );
        // 100 kW for 30 min, then 50 kW for 30 min.
        assert_eq!(s.step(&v, input(1810, true, 50.0, 60.0)), None);
        let Some(ChargeOutput::Ended(session)) = s.step(&v, input(3610, false, 0.0, 80.0)) else {
            panic!()
        };
        assert!((session.energy_added_kwh - 75.0).abs() < 1e-9);
        assert_eq!(session.duration_secs, 3600);
        assert_eq!(session.soc_added, Some(60.0));
        assert_eq!(session.max_power_kw, 100.0);
        assert!(s.open.is_none());
    }

    #[test]
    fn counters_win_over_integration() {
        let v = VehicleId("v".into());
        let mut s = ChargeState::default();
        let mut i = input(0, true, 11.0, 50.0);
        i.counter_kwh = Some(100.0);
        s.step(&v, i);
        let mut i = input(3600, false, 0.0, 70.0);
        i.counter_kwh = Some(112.5);
        let Some(ChargeOutput::Ended(session)) = s.step(&v, i) else {
            panic!()
        };
        assert_eq!(session.energy_added_kwh, 12.5);
    }
}
