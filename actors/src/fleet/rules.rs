//! [`FleetRules`]: the book of geofences and alert rules per tenant, shared by every
//! vehicle actor of the node.
//!
//! Reads are the hot path (one per applied batch): a reader clones an `Arc` of the
//! tenant's current [`TenantRules`] (geofences, their R-tree, alert rules) under a read
//! lock held for nanoseconds. A change builds a new `TenantRules` (and index) off to the
//! side and swaps the `Arc`; readers holding the old one finish with it.
//!
//! The book is node-local and in memory: it is seeded from `[fleet.tenants.*]` at start,
//! and REST changes last until the node restarts (see docs/api.md).

use std::collections::BTreeMap;
use std::sync::{Arc, RwLock};

use serde::{Deserialize, Serialize};
use thiserror::Error;

use super::alerts::{AlertCondition, AlertRule};
use super::geofence::{Geofence, GeofenceIndex};
use crate::model::TenantId;

/// Most geofences per tenant.
pub const MAX_GEOFENCES: usize = 1000;
/// Most alert rules per tenant.
pub const MAX_ALERT_RULES: usize = 100;

/// One tenant's rules as configured (`[fleet.tenants.<tenant>]`) and as the REST API lists them.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct TenantRulesConfig {
    /// Geofences.
    pub geofences: Vec<Geofence>,
    /// Alert rules.
    pub alert_rules: Vec<AlertRule>,
}

/// One tenant's rules, ready for the machines.
#[derive(Debug, Default)]
pub struct TenantRules {
    /// Geofences, in id order.
    pub geofences: Vec<Geofence>,
    /// The R-tree over `geofences`.
    pub index: GeofenceIndex,
    /// Alert rules, in id order.
    pub alert_rules: Vec<AlertRule>,
}

impl TenantRules {
    fn build(mut geofences: Vec<Geofence>, mut alert_rules: Vec<AlertRule>) -> Self {
        geofences.sort_by(|a, b| a.id.cmp(&b.id));
        alert_rules.sort_by(|a, b| a.id.cmp(&b.id));
        Self {
            index: GeofenceIndex::new(&geofences),
            geofences,
            alert_rules,
        }
    }
}

/// Why a change was refused.
#[derive(Debug, Clone, PartialEq, Eq, Error)]
pub enum RulesError {
    /// The item is malformed.
    #[error("{0}")]
    Invalid(String),
    /// The tenant has as many items as allowed.
    #[error("a tenant may have at most {0} of these")]
    TooMany(usize),
}

/// The shared book. Cheap to clone; clones share the rules.
#[derive(Debug, Clone, Default)]
pub struct FleetRules {
    tenants: Arc<RwLock<BTreeMap<TenantId, Arc<TenantRules>>>>,
}

impl FleetRules {
    /// A book seeded from config; the error names the tenant and the bad item.
    pub fn seeded(seed: &BTreeMap<String, TenantRulesConfig>) -> Result<Self, String> {
        let book = Self::default();
        for (tenant, rules) in seed {
            let tenant = TenantId::parse(tenant).map_err(|e| format!("fleet.tenants: {e}"))?;
            for g in &rules.geofences {
                book.put_geofence(&tenant, g.clone())
                    .map_err(|e| format!("fleet.tenants.{tenant}.geofences: {e}"))?;
            }
            for r in &rules.alert_rules {
                book.put_alert_rule(&tenant, r.clone())
                    .map_err(|e| format!("fleet.tenants.{tenant}.alert_rules: {e}"))?;
            }
        }
        Ok(book)
    }

    /// The tenant's current rules (empty when it has none).
    pub fn tenant(&self, tenant: &TenantId) -> Arc<TenantRules> {
        self.read().get(tenant).cloned().unwrap_or_default()
    }

    /// Adds or replaces a geofence (by id). Returns whether it was new.
    pub fn put_geofence(&self, tenant: &TenantId, fence: Geofence) -> Result<bool, RulesError> {
        fence.validate().map_err(RulesError::Invalid)?;
        self.change(tenant, |fences, _| {
            upsert(fences, fence, |g| &g.id, MAX_GEOFENCES)
        })
    }

    /// Removes a geofence. Returns whether it existed.
    pub fn delete_geofence(&self, tenant: &TenantId, id: &str) -> bool {
        self.change(tenant, |fences, _| {
            Ok::<_, RulesError>(remove(fences, |g| g.id == id))
        })
        .unwrap_or(false)
    }

    /// Adds or replaces an alert rule (by id). A geofence rule must name an existing
    /// geofence. Returns whether it was new.
    pub fn put_alert_rule(&self, tenant: &TenantId, rule: AlertRule) -> Result<bool, RulesError> {
        rule.validate().map_err(RulesError::Invalid)?;
        self.change(tenant, |fences, rules| {
            if let AlertCondition::Geofence { geofence_id, .. } = &rule.condition
                && !fences.iter().any(|g| &g.id == geofence_id)
            {
                return Err(RulesError::Invalid(format!("no geofence {geofence_id:?}")));
            }
            upsert(rules, rule, |r| &r.id, MAX_ALERT_RULES)
        })
    }

    /// Removes an alert rule. Returns whether it existed.
    pub fn delete_alert_rule(&self, tenant: &TenantId, id: &str) -> bool {
        self.change(tenant, |_, rules| {
            Ok::<_, RulesError>(remove(rules, |r| r.id == id))
        })
        .unwrap_or(false)
    }

    fn read(&self) -> std::sync::RwLockReadGuard<'_, BTreeMap<TenantId, Arc<TenantRules>>> {
        self.tenants.read().expect("fleet rules lock never poisoned")
    }

    /// Applies `edit` to copies of the tenant's lists and swaps in the rebuilt rules.
    fn change<T>(
        &self,
        tenant: &TenantId,
        edit: impl FnOnce(&mut Vec<Geofence>, &mut Vec<AlertRule>) -> Result<T, RulesError>,
    ) -> Result<T, RulesError> {
        let mut map = self.tenants.write().expect("fleet rules lock never poisoned");
        let current = map.get(tenant).cloned().unwrap_or_default();
        let (mut fences, mut rules) = (current.geofences.clone(), current.alert_rules.clone());
        let result = edit(&mut fences, &mut rules)?;
        map.insert(tenant.clone(), Arc::new(TenantRules::build(fences, rules)));
        Ok(result)
    }
}

fn upsert<T>(
    items: &mut Vec<T>,
    item: T,
    id: impl Fn(&T) -> &String,
    max: usize,
) -> Result<bool, RulesError> {
    if let Some(existing) = items.iter_mut().find(|i| id(i) == id(&item)) {
        *existing = item;
        return Ok(false);
    }
    if items.len() >= max {
        return Err(RulesError::TooMany(max));
    }
    items.push(item);
    Ok(true)
}

fn remove<T>(items: &mut Vec<T>, hit: impl Fn(&T) -> bool) -> bool {
    let before = items.len();
    items.retain(|i| !hit(i));
    items.len() != before
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::fleet::alerts::Crossing;
    use crate::fleet::geofence::Shape;
    use crate::model::Location;

    fn fence(id: &str) -> Geofence {
        Geofence {
            id: id.into(),
            name: id.to_uppercase(),
            shape: Shape::Circle {
                center: Location {
                    latitude: 52.5,
                    longitude: 13.4,
                },
                radius_m: 100.0,
            },
        }
    }

    #[test]
    fn changes_swap_a_new_snapshot_per_tenant() {
        let book = FleetRules::default();
        let (a, b) = (TenantId::default(), TenantId::parse("b").unwrap());
        let before = book.tenant(&a);
        assert!(book.put_geofence(&a, fence("x")).unwrap());
        assert!(!book.put_geofence(&a, fence("x")).unwrap(), "replaced");
        assert!(
            before.geofences.is_empty(),
            "a reader's snapshot does not change under it"
        );
        assert_eq!(book.tenant(&a).index.len(), 1);
        assert!(book.tenant(&b).geofences.is_empty(), "tenants are separate");

        let rule = |g: &str| AlertRule {
            id: "r".into(),
            condition: AlertCondition::Geofence {
                geofence_id: g.into(),
                on: Crossing::Enter,
            },
        };
        assert!(
            matches!(book.put_alert_rule(&a, rule("nope")), Err(RulesError::Invalid(m)) if m.contains("nope"))
        );
        assert!(book.put_alert_rule(&a, rule("x")).unwrap());
        assert!(book.delete_alert_rule(&a, "r"));
        assert!(!book.delete_alert_rule(&a, "r"));
        assert!(book.delete_geofence(&a, "x"));
        assert!(book.tenant(&a).index.is_empty());
    }

    #[test]
    fn seeding_checks_everything() {
        let mut seed = BTreeMap::new();
        seed.insert(
            "default".to_string(),
            TenantRulesConfig {
                geofences: vec![fence("ok"), fence("bad id")],
                alert_rules: vec![],
            },
        );
        let err = FleetRules::seeded(&seed).unwrap_err();
        assert!(
            err.contains("fleet.tenants.default.geofences") && err.contains("' '"),
            "{err}"
        );
        seed.get_mut("default").unwrap().geofences.pop();
        assert_eq!(
            FleetRules::seeded(&seed)
                .unwrap()
                .tenant(&TenantId::default())
                .geofences
                .len(),
            1
        );
    }
}
