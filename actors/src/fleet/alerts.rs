//! Alert rules and the latches that make each alert fire once per episode.
//!
//! - `low_soc` and `overspeed` latch: raised when the value crosses the threshold, cleared
//!   (`alert_cleared`) once it is back beyond the threshold by a hysteresis margin, so a
//!   value hovering around the threshold does not flap.
//! - `offline` is decided by [`AlertState::offline`], which the vehicle actor calls from a
//!   timer with the node's clock; it clears with the next record.
//! - `geofence` rules fire on the matching enter or exit; they do not latch.

use std::collections::BTreeSet;

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};

use super::events::{AlertType, EventKind};
use super::geofence::check_id;

/// SOC points above the threshold before a low-SOC alert clears.
pub const SOC_HYSTERESIS: f64 = 2.0;
/// km/h below the limit before an overspeed alert clears.
pub const SPEED_HYSTERESIS_KMH: f64 = 5.0;
/// Longest offline period a rule may name, minutes (a vehicle actor stays active that
/// long after the vehicle's last record to watch for it).
pub const MAX_OFFLINE_MINUTES: u64 = 24 * 60;

/// Which crossing of a geofence rule alerts.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Crossing {
    /// Entering a forbidden area.
    Enter,
    /// Leaving an area the vehicle must stay in.
    Exit,
}

/// What a rule watches.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "type", rename_all = "snake_case", deny_unknown_fields)]
pub enum AlertCondition {
    /// State of charge below `below_percent`.
    LowSoc {
        /// Threshold, percent (0–100).
        below_percent: f64,
    },
    /// Speed above `above_kmh`.
    Overspeed {
        /// Limit, km/h (> 0).
        above_kmh: f64,
    },
    /// No record for more than `after_minutes` (1 to 1440).
    Offline {
        /// Minutes.
        after_minutes: u64,
    },
    /// A crossing of geofence `geofence_id`.
    Geofence {
        /// The geofence (of the same tenant).
        geofence_id: String,
        /// Which crossing alerts.
        on: Crossing,
    },
}

/// A tenant's alert rule.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct AlertRule {
    /// Unique within the tenant: 1–128 chars of `A-Z a-z 0-9 _ - .`.
    pub id: String,
    /// What it watches.
    pub condition: AlertCondition,
}

impl AlertRule {
    /// Checks id and bounds; the error says what is wrong.
    pub fn validate(&self) -> Result<(), String> {
        check_id(&self.id, "alert rule id")?;
        match &self.condition {
            AlertCondition::LowSoc { below_percent } if !(0.0..=100.0).contains(below_percent) => {
                Err("low_soc below_percent must be 0 to 100".into())
            }
            AlertCondition::Overspeed { above_kmh } if !(above_kmh.is_finite() && *above_kmh > 0.0) => {
                Err("overspeed above_kmh must be > 0".into())
            }
            AlertCondition::Offline { after_minutes }
                if !(1..=MAX_OFFLINE_MINUTES).contains(after_minutes) =>
            {
                Err(format!(
                    "offline after_minutes must be 1 to {MAX_OFFLINE_MINUTES}"
                ))
            }
            AlertCondition::Geofence { geofence_id, .. } => check_id(geofence_id, "geofence_id"),
            _ => Ok(()),
        }
    }

    fn alert_type(&self) -> AlertType {
        match self.condition {
            AlertCondition::LowSoc { .. } => AlertType::LowSoc,
            AlertCondition::Overspeed { .. } => AlertType::Overspeed,
            AlertCondition::Offline { .. } => AlertType::Offline,
            AlertCondition::Geofence { .. } => AlertType::Geofence,
        }
    }
}

/// Latched alerts (rule ids), persisted with the vehicle.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(default)]
pub struct AlertState {
    /// Rules whose alert is raised and not cleared.
    pub active: BTreeSet<String>,
}

impl AlertState {
    /// Evaluates the value rules against the latest SOC and speed after a record arrived
    /// (which also clears `offline`). Returns the events, in rule order.
    pub fn on_values(
        &mut self,
        rules: &[AlertRule],
        soc: Option<f64>,
        speed_kmh: Option<f64>,
    ) -> Vec<EventKind> {
        let mut out = Vec::new();
        for rule in rules {
            let (raise, clear, value, message) = match &rule.condition {
                AlertCondition::LowSoc { below_percent } => {
                    let Some(soc) = soc else { continue };
                    (
                        soc < *below_percent,
                        soc >= below_percent + SOC_HYSTERESIS,
                        soc,
                        format!("State of charge {soc:.1} % is below {below_percent} %."),
                    )
                }
                AlertCondition::Overspeed { above_kmh } => {
                    let Some(speed) = speed_kmh else { continue };
                    (
                        speed > *above_kmh,
                        speed <= above_kmh - SPEED_HYSTERESIS_KMH,
                        speed,
                        format!("Speed {speed:.0} km/h is above {above_kmh} km/h."),
                    )
                }
                // A record arrived: the vehicle is online again.
                AlertCondition::Offline { .. } => (false, true, 0.0, String::new()),
                AlertCondition::Geofence { .. } => continue,
            };
            self.latch(rule, raise, clear, Some(value), message, &mut out);
        }
        out
    }

    /// Raises `offline` rules whose period has passed since `last_seen` at `now`. Each
    /// event is dated when the vehicle became offline by the rule (`last_seen` plus the
    /// period), not when the timer noticed, so every node derives the same event id.
    pub fn offline(
        &mut self,
        rules: &[AlertRule],
        last_seen: DateTime<Utc>,
        now: DateTime<Utc>,
    ) -> Vec<(DateTime<Utc>, EventKind)> {
        let mut out = Vec::new();
        for rule in rules {
            if let AlertCondition::Offline { after_minutes } = rule.condition {
                let due = last_seen + chrono::Duration::minutes(after_minutes as i64);
                let message = format!("No data for more than {after_minutes} minutes.");
                let mut raised = Vec::new();
                self.latch(
                    rule,
                    now > due,
                    false,
                    Some(after_minutes as f64),
                    message,
                    &mut raised,
                );
                out.extend(raised.into_iter().map(|e| (due, e)));
            }
        }
        out
    }

    /// The geofence rules matching a crossing.
    pub fn on_crossing(
        rules: &[AlertRule],
        geofence: &str,
        name: &str,
        crossing: Crossing,
    ) -> Vec<EventKind> {
        rules
            .iter()
            .filter(|r| matches!(&r.condition, AlertCondition::Geofence { geofence_id, on } if geofence_id == geofence && *on == crossing))
            .map(|r| {
                let verb = if crossing == Crossing::Enter { "entered" } else { "left" };
                EventKind::AlertRaised {
                    rule_id: r.id.clone(),
                    alert: AlertType::Geofence,
                    value: None,
                    message: format!("Vehicle {verb} geofence {name}."),
                }
            })
            .collect()
    }

    /// When the earliest `offline` rule not yet raised would fire, given `last_seen`.
    pub fn next_offline_deadline(
        &self,
        rules: &[AlertRule],
        last_seen: DateTime<Utc>,
    ) -> Option<DateTime<Utc>> {
        rules
            .iter()
            .filter(|r| !self.active.contains(&r.id))
            .filter_map(|r| match r.condition {
                AlertCondition::Offline { after_minutes } => {
                    Some(last_seen + chrono::Duration::minutes(after_minutes as i64))
                }
                _ => None,
            })
            .min()
    }

    /// Drops latches of rules that no longer exist (no event: the rule went away).
    pub fn forget_missing(&mut self, rules: &[AlertRule]) {
        self.active.retain(|id| rules.iter().any(|r| &r.id == id));
    }

    fn latch(
        &mut self,
        rule: &AlertRule,
        raise: bool,
        clear: bool,
        value: Option<f64>,
        message: String,
        out: &mut Vec<EventKind>,
    ) {
        let active = self.active.contains(&rule.id);
        if raise && !active {
            self.active.insert(rule.id.clone());
            out.push(EventKind::AlertRaised {
                rule_id: rule.id.clone(),
                alert: rule.alert_type(),
                value,
                message,
            });
        } else if clear && active {
            self.active.remove(&rule.id);
            out.push(EventKind::AlertCleared {
                rule_id: rule.id.clone(),
                alert: rule.alert_type(),
            });
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::vehicle::fakes::at;

    fn rules() -> Vec<AlertRule> {
        let rule = |id: &str, condition| AlertRule {
            id: id.into(),
            condition,
        };
        vec![
            rule("soc", AlertCondition::LowSoc { below_percent: 20.0 }),
            rule("fast", AlertCondition::Overspeed { above_kmh: 100.0 }),
            rule("quiet", AlertCondition::Offline { after_minutes: 10 }),
            rule(
                "zone",
                AlertCondition::Geofence {
                    geofence_id: "depot".into(),
                    on: Crossing::Exit,
                },
            ),
        ]
    }

    fn names<'a>(events: impl IntoIterator<Item = &'a EventKind>) -> Vec<String> {
        events
            .into_iter()
            .map(|e| match e {
                EventKind::AlertRaised { rule_id, .. } => format!("+{rule_id}"),
                EventKind::AlertCleared { rule_id, .. } => format!("-{rule_id}"),
                other => other.name().into(),
            })
            .collect()
    }

    #[test]
    fn low_soc_fires_once_and_clears_with_hysteresis() {
        let (r, mut s) = (rules(), AlertState::default());
        assert!(s.on_values(&r, Some(25.0), None).is_empty());
        assert_eq!(names(&s.on_values(&r, Some(19.9), None)), ["+soc"]);
        assert!(s.on_values(&r, Some(18.0), None).is_empty(), "latched");
        assert!(s.on_values(&r, Some(21.0), None).is_empty(), "within hysteresis");
        assert_eq!(names(&s.on_values(&r, Some(22.0), None)), ["-soc"]);
        assert_eq!(
            names(&s.on_values(&r, Some(10.0), Some(120.0))),
            ["+soc", "+fast"]
        );
        assert_eq!(names(&s.on_values(&r, None, Some(95.0))), ["-fast"]);
    }

    #[test]
    fn offline_is_raised_by_the_timer_and_cleared_by_a_record() {
        let (r, mut s) = (rules(), AlertState::default());
        assert_eq!(s.next_offline_deadline(&r, at(0)), Some(at(600)));
        assert!(s.offline(&r, at(0), at(600)).is_empty());
        let raised = s.offline(&r, at(0), at(601));
        assert_eq!(names(raised.iter().map(|(_, e)| e)), ["+quiet"]);
        assert_eq!(raised[0].0, at(600), "dated when the vehicle became offline");
        assert!(s.offline(&r, at(0), at(900)).is_empty());
        assert_eq!(s.next_offline_deadline(&r, at(0)), None, "already raised");
        assert_eq!(names(&s.on_values(&r, Some(50.0), None)), ["-quiet"]);
    }

    #[test]
    fn geofence_rules_match_their_crossing_and_bad_rules_are_refused() {
        let r = rules();
        assert_eq!(
            names(&AlertState::on_crossing(&r, "depot", "Depot", Crossing::Exit)),
            ["+zone"]
        );
        assert!(AlertState::on_crossing(&r, "depot", "Depot", Crossing::Enter).is_empty());
        let bad = AlertRule {
            id: "x".into(),
            condition: AlertCondition::Offline { after_minutes: 0 },
        };
        assert!(bad.validate().unwrap_err().contains("after_minutes"));
        let json = r#"{"id":"s","condition":{"type":"low_soc","below_percent":20,"extra":1}}"#;
        assert!(serde_json::from_str::<AlertRule>(json).is_err());
        let mut s = AlertState::default();
        s.on_values(&r, Some(1.0), None);
        s.forget_missing(&r[1..]);
        assert!(s.active.is_empty());
    }
}
