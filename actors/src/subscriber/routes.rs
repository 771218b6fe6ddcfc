//! One tenant's subscribers as the hub routes to them, indexed by the vehicles their
//! filters name.
//!
//! Without the index every update cost one filter check per subscriber of its tenant:
//! 10,000 subscribers following one vehicle each made 10 million checks a second at
//! 1,000 updates/s (node CPU 60–71 % instead of 41–46 % with the index, record → browser
//! p50 32 instead of 11 ms: docs/performance.md). With it an update costs the subscribers
//! that take every vehicle plus those that name its vehicle; the hub still applies the
//! whole filter (signals, event types) to each of them.

use std::collections::{HashMap, HashSet};

use crate::model::VehicleId;

/// A tenant's routes (`R`: what the hub keeps per connection) by connection id.
#[derive(Debug)]
pub(super) struct TenantRoutes<R> {
    routes: HashMap<u64, Entry<R>>,
    /// Connections whose filter takes every vehicle.
    every_vehicle: HashSet<u64>,
    /// Connections by the vehicles their filter names.
    by_vehicle: HashMap<VehicleId, HashSet<u64>>,
    /// Connections with updates staged in the chunk being routed, each once.
    staged: Vec<u64>,
}

#[derive(Debug)]
struct Entry<R> {
    route: R,
    /// The vehicles the filter names (`None`: every vehicle), to clean the index on removal.
    vehicles: Option<Vec<VehicleId>>,
}

impl<R> Default for TenantRoutes<R> {
    fn default() -> Self {
        Self {
            routes: HashMap::new(),
            every_vehicle: HashSet::new(),
            by_vehicle: HashMap::new(),
            staged: Vec::new(),
        }
    }
}

impl<R> TenantRoutes<R> {
    /// Adds connection `id`, replacing one with the same id; `vehicles` is its filter's
    /// vehicle set (`None`: every vehicle).
    pub fn insert(&mut self, id: u64, vehicles: Option<Vec<VehicleId>>, route: R) {
        self.remove(id);
        match &vehicles {
            None => {
                self.every_vehicle.insert(id);
            }
            Some(vehicles) => {
                for vehicle in vehicles {
                    self.by_vehicle.entry(vehicle.clone()).or_default().insert(id);
                }
            }
        }
        self.routes.insert(id, Entry { route, vehicles });
    }

    /// Removes connection `id` and its index entries.
    pub fn remove(&mut self, id: u64) -> Option<R> {
        let entry = self.routes.remove(&id)?;
        match &entry.vehicles {
            None => {
                self.every_vehicle.remove(&id);
            }
            Some(vehicles) => {
                for vehicle in vehicles {
                    if let Some(ids) = self.by_vehicle.get_mut(vehicle) {
                        ids.remove(&id);
                        if ids.is_empty() {
                            self.by_vehicle.remove(vehicle);
                        }
                    }
                }
            }
        }
        Some(entry.route)
    }

    /// Whether no connection is left.
    pub fn is_empty(&self) -> bool {
        self.routes.is_empty()
    }

    /// Calls `stage` with every route that may want an update of `vehicle` (the filter's
    /// vehicle set allows it; the rest of the filter is for `stage` to check). `stage`
    /// returns whether it staged something on a route that had nothing staged before,
    /// which lists that connection for [`take_staged`](Self::take_staged).
    pub fn stage_for(&mut self, vehicle: &VehicleId, mut stage: impl FnMut(&mut R) -> bool) {
        let named = self.by_vehicle.get(vehicle).into_iter().flatten();
        for &id in self.every_vehicle.iter().chain(named) {
            if let Some(entry) = self.routes.get_mut(&id)
                && stage(&mut entry.route)
            {
                self.staged.push(id);
            }
        }
    }

    /// The connections listed by [`stage_for`](Self::stage_for) since the last call.
    pub fn take_staged(&mut self) -> Vec<u64> {
        std::mem::take(&mut self.staged)
    }

    /// The route of connection `id`.
    pub fn get_mut(&mut self, id: u64) -> Option<&mut R> {
        self.routes.get_mut(&id).map(|e| &mut e.route)
    }

    /// Every route.
    pub fn values(&self) -> impl Iterator<Item = &R> {
        self.routes.values().map(|e| &e.route)
    }

    /// Every route, leaving the tenant empty.
    pub fn into_values(self) -> impl Iterator<Item = R> {
        self.routes.into_values().map(|e| e.route)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn v(id: &str) -> VehicleId {
        VehicleId(id.into())
    }

    /// Routes are the connection ids themselves; staging records who was asked.
    fn asked(routes: &mut TenantRoutes<u64>, vehicle: &str) -> Vec<u64> {
        let mut seen = Vec::new();
        routes.stage_for(&v(vehicle), |id| {
            seen.push(*id);
            false
        });
        seen.sort_unstable();
        seen
    }

    #[test]
    fn an_update_asks_the_unfiltered_and_the_ones_naming_its_vehicle() {
        let mut routes = TenantRoutes::default();
        routes.insert(1, None, 1);
        routes.insert(2, Some(vec![v("a")]), 2);
        routes.insert(3, Some(vec![v("a"), v("b")]), 3);
        routes.insert(4, Some(vec![v("c")]), 4);
        assert_eq!(asked(&mut routes, "a"), [1, 2, 3]);
        assert_eq!(asked(&mut routes, "b"), [1, 3]);
        assert_eq!(asked(&mut routes, "z"), [1]);
    }

    #[test]
    fn removal_and_replacement_clean_the_index() {
        let mut routes = TenantRoutes::default();
        routes.insert(1, Some(vec![v("a"), v("b")]), 1);
        routes.insert(2, None, 2);
        // Same id again with another filter: the old vehicles no longer lead to it.
        routes.insert(1, Some(vec![v("c")]), 10);
        assert_eq!(asked(&mut routes, "a"), [2]);
        assert_eq!(asked(&mut routes, "c"), [2, 10]);
        assert_eq!(routes.remove(1), Some(10));
        assert_eq!(routes.remove(1), None);
        assert!(routes.by_vehicle.is_empty());
        assert_eq!(routes.remove(2), Some(2));
        assert!(routes.is_empty() && routes.every_vehicle.is_empty());
        assert_eq!(asked(&mut routes, "c"), Vec::<u64>::new());
    }

    #[test]
    fn staged_connections_are_listed_once_until_taken() {
        let mut routes: TenantRoutes<Vec<&str>> = TenantRoutes::default();
        routes.insert(7, None, Vec::new());
        routes.insert(8, Some(vec![v("a")]), Vec::new());
        for update in ["a", "b", "a"] {
            routes.stage_for(&v(update), |staged| {
                staged.push(update);
                staged.len() == 1
            });
        }
        let mut staged = routes.take_staged();
        staged.sort_unstable();
        assert_eq!(staged, [7, 8]);
        assert!(routes.take_staged().is_empty());
        assert_eq!(
            routes.get_mut(7).map(|s| s.as_slice()),
            Some(&["a", "b", "a"][..])
        );
        assert_eq!(routes.get_mut(8).map(|s| s.as_slice()), Some(&["a", "a"][..]));
    }
}
