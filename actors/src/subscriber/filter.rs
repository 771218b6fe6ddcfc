//! Which updates a subscriber wants.

use std::collections::HashSet;

use crate::model::{VehicleId, VehicleUpdate};

/// A subscriber's filter; the empty filter matches everything.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct SubscriptionFilter {
    /// Only these vehicles, when set.
    pub vehicles: Option<HashSet<VehicleId>>,
}

impl SubscriptionFilter {
    /// Parses the `vehicles=a,b` query value; an empty or missing value means all vehicles.
    pub fn from_query(vehicles: Option<&str>) -> Result<Self, String> {
        let Some(list) = vehicles.map(str::trim).filter(|v| !v.is_empty()) else {
            return Ok(Self::default());
        };
        let ids = list
            .split(',')
            .map(|raw| VehicleId::parse(raw.trim()))
            .collect::<Result<HashSet<_>, _>>()?;
        Ok(Self { vehicles: Some(ids) })
    }

    /// Whether `update` passes the filter.
    pub fn matches(&self, update: &VehicleUpdate) -> bool {
        self.vehicles
            .as_ref()
            .is_none_or(|set| set.contains(&update.vehicle_id))
    }

    /// A short description for the admin page.
    pub fn describe(&self) -> String {
        match &self.vehicles {
            None => "all".to_owned(),
            Some(set) => {
                let mut ids: Vec<&str> = set.iter().map(VehicleId::as_str).collect();
                ids.sort_unstable();
                format!("vehicles={}", ids.join(","))
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn update(id: &str) -> VehicleUpdate {
        VehicleUpdate {
            vehicle_id: VehicleId(id.into()),
            version: 1,
            last_seen: None,
            changed: vec![],
            signals: Default::default(),
            ingest_received_at: chrono::Utc::now(),
        }
    }

    #[test]
    fn parses_and_matches() {
        let all = SubscriptionFilter::from_query(None).unwrap();
        assert!(all.matches(&update("x")));
        assert_eq!(SubscriptionFilter::from_query(Some(" ")).unwrap(), all);
        let some = SubscriptionFilter::from_query(Some("a, b")).unwrap();
        assert!(some.matches(&update("a")) && some.matches(&update("b")));
        assert!(!some.matches(&update("c")));
        assert_eq!(some.describe(), "vehicles=a,b");
        assert!(SubscriptionFilter::from_query(Some("a,,b")).is_err());
    }
}
