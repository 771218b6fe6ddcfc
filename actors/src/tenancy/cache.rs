//! [`RegistrationCache`]: the node's bounded, expiring memory of registry lookups. Pure
//! (the caller passes the time), so it is unit-tested without a clock.

use std::collections::HashMap;
use std::time::{Duration, Instant};

use crate::model::VehicleId;
use crate::ports::Registration;

/// Registry answers of the last `ttl`, at most `capacity` vehicles. Absent vehicles are
/// cached too (`None`), so a stream of an unknown vehicle's records costs one lookup per
/// `ttl`, not one per batch.
#[derive(Debug)]
pub struct RegistrationCache {
    /// How long an answer is trusted: a provisioning, suspension or transfer reaches this
    /// node within `ttl`.
    ttl: Duration,
    /// Most vehicles remembered.
    capacity: usize,
    /// Vehicle → (when it was looked up, the answer).
    entries: HashMap<VehicleId, (Instant, Option<Registration>)>,
}

impl RegistrationCache {
    /// An empty cache; `capacity` 0 disables caching.
    pub fn new(ttl: Duration, capacity: usize) -> Self {
        Self {
            ttl,
            capacity,
            entries: HashMap::new(),
        }
    }

    /// The cached answer for `id`, if it is younger than the TTL. The outer `None` means
    /// "ask the registry".
    pub fn get(&self, id: &VehicleId, now: Instant) -> Option<Option<&Registration>> {
        let (at, answer) = self.entries.get(id)?;
        (now.saturating_duration_since(*at) < self.ttl).then_some(answer.as_ref())
    }

    /// Remembers the registry's answer for `id`. When full, expired entries go first, then
    /// the oldest tenth (so a full cache does not rescan on every insert).
    pub fn insert(&mut self, id: VehicleId, answer: Option<Registration>, now: Instant) {
        if self.capacity == 0 {
            return;
        }
        if self.entries.len() >= self.capacity && !self.entries.contains_key(&id) {
            let ttl = self.ttl;
            self.entries
                .retain(|_, (at, _)| now.saturating_duration_since(*at) < ttl);
            if self.entries.len() >= self.capacity {
                self.evict_oldest((self.capacity / 10).max(1));
            }
        }
        self.entries.insert(id, (now, answer));
    }

    /// Forgets `id` (e.g. after this node provisioned it).
    pub fn remove(&mut self, id: &VehicleId) {
        self.entries.remove(id);
    }

    /// Vehicles remembered (expired ones included until they are evicted).
    pub fn len(&self) -> usize {
        self.entries.len()
    }

    /// Whether nothing is remembered.
    pub fn is_empty(&self) -> bool {
        self.entries.is_empty()
    }

    fn evict_oldest(&mut self, n: usize) {
        let mut ages: Vec<Instant> = self.entries.values().map(|(at, _)| *at).collect();
        let n = n.min(ages.len());
        if n == 0 {
            return;
        }
        let (_, cutoff, _) = ages.select_nth_unstable(n - 1);
        let cutoff = *cutoff;
        let mut removed = 0;
        self.entries.retain(|_, (at, _)| {
            if *at <= cutoff && removed < n {
                removed += 1;
                false
            } else {
                true
            }
        });
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::model::TenantId;
    use crate::ports::VehicleStatus;

    fn reg(v: &str) -> Registration {
        Registration {
            vehicle_id: VehicleId(v.into()),
            tenant: TenantId::default(),
            display_name: None,
            status: VehicleStatus::Active,
            provisioned_at: chrono::Utc::now(),
        }
    }

    fn vid(v: &str) -> VehicleId {
        VehicleId(v.into())
    }

    #[test]
    fn answers_expire_after_the_ttl() {
        let t0 = Instant::now();
        let mut cache = RegistrationCache::new(Duration::from_secs(10), 10);
        assert_eq!(cache.get(&vid("a"), t0), None);
        let a = reg("a");
        cache.insert(vid("a"), Some(a.clone()), t0);
        cache.insert(vid("b"), None, t0);
        assert_eq!(cache.get(&vid("a"), t0 + Duration::from_secs(9)), Some(Some(&a)));
        assert_eq!(cache.get(&vid("b"), t0), Some(None), "absence is cached too");
        assert_eq!(
            cache.get(&vid("a"), t0 + Duration::from_secs(10)),
            None,
            "expired"
        );
        cache.remove(&vid("b"));
        assert_eq!(cache.get(&vid("b"), t0), None);
    }

    #[test]
    fn a_full_cache_drops_expired_then_oldest_entries() {
        let t0 = Instant::now();
        let mut cache = RegistrationCache::new(Duration::from_secs(100), 20);
        for i in 0..20 {
            cache.insert(vid(&format!("v{i}")), None, t0 + Duration::from_secs(i));
        }
        assert_eq!(cache.len(), 20);
        // Nothing expired: the oldest tenth (2 entries) makes room.
        cache.insert(vid("new"), None, t0 + Duration::from_secs(30));
        assert_eq!(cache.len(), 19);
        assert_eq!(cache.get(&vid("v0"), t0 + Duration::from_secs(30)), None);
        assert_eq!(cache.get(&vid("v1"), t0 + Duration::from_secs(30)), None);
        assert!(cache.get(&vid("v2"), t0 + Duration::from_secs(30)).is_some());
        // Much later every old entry has expired: they all go at once.
        cache.insert(vid("x"), None, t0 + Duration::from_secs(125));
        cache.insert(vid("y"), None, t0 + Duration::from_secs(125));
        assert_eq!(cache.len(), 3, "only new, x and y are young enough");
        // Re-inserting a present key never evicts.
        let before = cache.len();
        cache.insert(vid("x"), None, t0 + Duration::from_secs(126));
        assert_eq!(cache.len(), before);
    }

    #[test]
    fn capacity_zero_caches_nothing() {
        let t0 = Instant::now();
        let mut cache = RegistrationCache::new(Duration::from_secs(10), 0);
        cache.insert(vid("a"), None, t0);
        assert!(cache.is_empty());
        assert_eq!(cache.get(&vid("a"), t0), None);
    }
}
