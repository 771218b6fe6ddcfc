//! Which leases a worker should take or steal: pure, no I/O, no actix.
//!
//! Follows KCL's `DynamoDBLeaseTaker` (awslabs/amazon-kinesis-client,
//! `leases/dynamodb/DynamoDBLeaseTaker.java`):
//!
//! - Expiry is judged from *local observation*, never from clocks in the table: each
//!   worker remembers, per lease, the counter it last saw and when it first saw that
//!   counter (`updateAllLeases` / `lastCounterIncrementNanos`). A lease whose counter has
//!   not moved for the failover time is expired. A lease seen for the first time counts
//!   as just renewed when it has an owner and as never renewed when it has none.
//! - Target = ceil(leases / workers), where workers are the distinct owners of live
//!   leases plus this worker, capped by `max_leases_per_worker` (`computeLeasesToTake`).
//!   Leases at `ShardEnd` carry no work and are left out of the count.
//! - Steal from the most loaded worker only when it holds more than the target, or when
//!   it holds exactly the target and this worker needs more than one (`chooseLeasesToSteal`);
//!   never more than `max_leases_to_steal_at_once` per round.
//!
//! Where KCL shuffles candidates at random so that workers do not all contend for the
//! same lease, this orders them by a hash of (worker id, lease key): just as spread out
//! between workers, but reproducible in tests.

use std::collections::{BTreeMap, HashMap, HashSet};
use std::time::{Duration, Instant};

use crate::ports::{Checkpoint, Lease};

/// What this worker saw of every lease: the counter and since when it has been unchanged.
#[derive(Debug, Clone, Default)]
pub struct LeaseObservations {
    seen: HashMap<String, Observed>,
}

#[derive(Debug, Clone, Copy)]
struct Observed {
    counter: u64,
    /// When the counter was first seen at this value; `None`: never seen renewed (treat
    /// as expired long ago).
    since: Option<Instant>,
}

impl LeaseObservations {
    /// An empty memory.
    pub fn new() -> Self {
        Self::default()
    }

    /// Records a fresh lease list read at `now`. Leases missing from the list are forgotten.
    pub fn observe(&mut self, leases: &[Lease], now: Instant) {
        let mut next = HashMap::with_capacity(leases.len());
        for lease in leases {
            let observed = match self.seen.get(&lease.lease_key) {
                Some(old) if old.counter == lease.lease_counter => *old,
                Some(_) => Observed {
                    counter: lease.lease_counter,
                    since: Some(now),
                },
                None if lease.lease_owner.is_none() => Observed {
                    counter: lease.lease_counter,
                    since: None,
                },
                None => Observed {
                    counter: lease.lease_counter,
                    since: Some(now),
                },
            };
            next.insert(lease.lease_key.clone(), observed);
        }
        self.seen = next;
    }

    /// Whether `lease` has no live owner as of `now`: it has no owner, or its counter has
    /// not moved for `failover` (as this worker observed it).
    pub fn is_expired(&self, lease: &Lease, now: Instant, failover: Duration) -> bool {
        if lease.lease_owner.is_none() {
            return true;
        }
        match self.seen.get(&lease.lease_key) {
            Some(o) if o.counter == lease.lease_counter => o
                .since
                .is_none_or(|since| now.saturating_duration_since(since) >= failover),
            // Not observed (or observed at another counter): it just changed, so it is live.
            _ => false,
        }
    }
}

/// The knobs of the taker.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TakerConfig {
    /// This worker.
    pub worker_id: String,
    /// How long a counter must stand still before the lease counts as expired.
    pub failover: Duration,
    /// Most leases this worker holds; 0 = unlimited.
    pub max_leases_per_worker: usize,
    /// Most leases stolen per round.
    pub max_leases_to_steal_at_once: usize,
}

/// What the taker decided for one round.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct TakePlan {
    /// Free or expired leases to take, as read (the take is conditional on their counter).
    pub take: Vec<Lease>,
    /// Live leases of an overloaded worker to steal, as read.
    pub steal: Vec<Lease>,
    /// How many leases this worker should hold.
    pub target: usize,
    /// Leases this worker counts as held (live and owned by it).
    pub held: usize,
}

/// Decides which leases to take and steal.
///
/// `leases` is a fresh list, `observations` must already include it, and `held` are the
/// lease keys this process holds (and renews). A lease owned by this worker id but not
/// held by this process (a restart under a fixed `worker_id`) is free to take at once.
pub fn plan_takes(
    leases: &[Lease],
    observations: &LeaseObservations,
    held: &HashSet<String>,
    now: Instant,
    config: &TakerConfig,
) -> TakePlan {
    let me = config.worker_id.as_str();
    let active: Vec<&Lease> = leases
        .iter()
        .filter(|l| l.checkpoint != Checkpoint::ShardEnd)
        .collect();
    if active.is_empty() {
        return TakePlan::default();
    }

    let is_available = |l: &Lease| {
        !held.contains(&l.lease_key)
            && (observations.is_expired(l, now, config.failover) || l.lease_owner.as_deref() == Some(me))
    };

    // Live leases per owner; this worker is always counted, even with none.
    let mut counts: BTreeMap<&str, usize> = BTreeMap::new();
    counts.insert(me, 0);
    let mut available = Vec::new();
    for lease in &active {
        if is_available(lease) {
            available.push(*lease);
        } else if let Some(owner) = lease.lease_owner.as_deref() {
            *counts.entry(owner).or_default() += 1;
        }
    }

    let mut target = active.len().div_ceil(counts.len());
    if config.max_leases_per_worker > 0 {
        target = target.min(config.max_leases_per_worker);
    }
    let mine = counts[me];
    let mut needed = target.saturating_sub(mine);
    let mut plan = TakePlan {
        target,
        held: mine,
        ..TakePlan::default()
    };
    if needed == 0 {
        return plan;
    }

    available.sort_by_key(|l| spread(me, &l.lease_key));
    plan.take = available.into_iter().take(needed).cloned().collect();
    needed -= plan.take.len();
    if needed == 0 || config.max_leases_to_steal_at_once == 0 {
        return plan;
    }

    // The most loaded other worker (ties: the smallest id, so the choice is stable).
    let Some((victim, &victim_count)) = counts
        .iter()
        .filter(|(owner, _)| **owner != me)
        .max_by(|a, b| a.1.cmp(b.1).then_with(|| b.0.cmp(a.0)))
    else {
        return plan;
    };
    let mut to_steal = if victim_count > target {
        needed.min(victim_count - target)
    } else if victim_count == target && needed > 1 {
        1
    } else {
        0
    };
    to_steal = to_steal.min(config.max_leases_to_steal_at_once);
    let mut candidates: Vec<&Lease> = active
        .iter()
        .copied()
        .filter(|l| l.lease_owner.as_deref() == Some(*victim) && !is_available(l))
        .collect();
    candidates.sort_by_key(|l| spread(me, &l.lease_key));
    plan.steal = candidates.into_iter().take(to_steal).cloned().collect();
    plan
}

/// Whether a lease may be processed now: every parent shard is finished (`ShardEnd`) or
/// has no lease any more (KCL `WAITING_ON_PARENT_SHARDS`, parents first).
pub fn parents_done(lease: &Lease, leases: &[Lease]) -> bool {
    lease.parent_shard_ids.iter().all(|parent| {
        leases
            .iter()
            .find(|l| &l.lease_key == parent)
            .is_none_or(|l| l.checkpoint == Checkpoint::ShardEnd)
    })
}

/// Whether every lease not at `ShardEnd` has a live owner (the readiness condition).
pub fn all_owned(
    leases: &[Lease],
    observations: &LeaseObservations,
    now: Instant,
    failover: Duration,
) -> bool {
    leases
        .iter()
        .filter(|l| l.checkpoint != Checkpoint::ShardEnd)
        .all(|l| !observations.is_expired(l, now, failover))
}

fn spread(worker: &str, key: &str) -> u64 {
    xxhash_rust::xxh3::xxh3_64(format!("{worker}\u{0}{key}").as_bytes())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::ports::SequenceNumber;

    const FAILOVER: Duration = Duration::from_secs(10);

    fn lease(key: &str, owner: Option<&str>, counter: u64) -> Lease {
        Lease {
            lease_owner: owner.map(str::to_owned),
            lease_counter: counter,
            ..Lease::new(key, vec![], Checkpoint::TrimHorizon)
        }
    }

    fn config(me: &str) -> TakerConfig {
        TakerConfig {
            worker_id: me.into(),
            failover: FAILOVER,
            max_leases_per_worker: 0,
            max_leases_to_steal_at_once: 1,
        }
    }

    fn plan(leases: &[Lease], obs: &LeaseObservations, me: &str, now: Instant) -> TakePlan {
        let held = leases
            .iter()
            .filter(|l| l.lease_owner.as_deref() == Some(me))
            .map(|l| l.lease_key.clone())
            .collect();
        plan_takes(leases, obs, &held, now, &config(me))
    }

    fn keys(leases: &[Lease]) -> Vec<&str> {
        let mut k: Vec<&str> = leases.iter().map(|l| l.lease_key.as_str()).collect();
        k.sort();
        k
    }

    #[test]
    fn takes_unowned_leases() {
        let now = Instant::now();
        let leases = vec![lease("s0", None, 0), lease("s1", None, 3)];
        let mut obs = LeaseObservations::new();
        obs.observe(&leases, now);
        let p = plan(&leases, &obs, "me", now);
        assert_eq!(keys(&p.take), ["s0", "s1"]);
        assert!(p.steal.is_empty());
        assert_eq!(p.target, 2);
    }

    #[test]
    fn leaves_freshly_renewed_leases_alone() {
        let t0 = Instant::now();
        let mut obs = LeaseObservations::new();
        obs.observe(&[lease("s0", Some("other"), 1)], t0);
        // The owner renews every round: the counter keeps moving.
        for (i, dt) in [4u64, 8, 12, 16, 30].into_iter().enumerate() {
            let now = t0 + Duration::from_secs(dt);
            let leases = [lease("s0", Some("other"), 2 + i as u64)];
            obs.observe(&leases, now);
            let p = plan(&leases, &obs, "me", now);
            assert!(p.take.is_empty() && p.steal.is_empty(), "at +{dt}s: {p:?}");
        }
    }

    #[test]
    fn takes_a_lease_whose_counter_did_not_move_for_failover_time() {
        let t0 = Instant::now();
        let leases = [lease("s0", Some("dead"), 7)];
        let mut obs = LeaseObservations::new();
        obs.observe(&leases, t0);
        let now = t0 + FAILOVER - Duration::from_millis(1);
        obs.observe(&leases, now);
        assert!(plan(&leases, &obs, "me", now).take.is_empty(), "not yet expired");
        let now = t0 + FAILOVER;
        obs.observe(&leases, now);
        assert_eq!(keys(&plan(&leases, &obs, "me", now).take), ["s0"]);
    }

    #[test]
    fn a_counter_change_restarts_the_expiry_clock() {
        let t0 = Instant::now();
        let mut obs = LeaseObservations::new();
        obs.observe(&[lease("s0", Some("o"), 1)], t0);
        obs.observe(&[lease("s0", Some("o"), 2)], t0 + Duration::from_secs(9));
        let l = lease("s0", Some("o"), 2);
        assert!(!obs.is_expired(&l, t0 + Duration::from_secs(18), FAILOVER));
        assert!(obs.is_expired(&l, t0 + Duration::from_secs(19), FAILOVER));
    }

    #[test]
    fn steals_exactly_one_from_the_most_loaded_owner() {
        let now = Instant::now();
        let mut leases: Vec<Lease> = (0..5).map(|i| lease(&format!("a{i}"), Some("a"), 1)).collect();
        leases.push(lease("b0", Some("b"), 1));
        let mut obs = LeaseObservations::new();
        obs.observe(&leases, now);
        // 6 leases, 3 workers (a, b, me): target 2; a holds 5 and I need 2, but one per round.
        let p = plan(&leases, &obs, "me", now);
        assert_eq!(p.target, 2);
        assert!(p.take.is_empty());
        assert_eq!(p.steal.len(), 1);
        assert_eq!(p.steal[0].lease_owner.as_deref(), Some("a"));
    }

    #[test]
    fn never_steals_when_balanced() {
        let now = Instant::now();
        let leases = vec![
            lease("s0", Some("a"), 1),
            lease("s1", Some("a"), 1),
            lease("s2", Some("me"), 1),
            lease("s3", Some("me"), 1),
        ];
        let mut obs = LeaseObservations::new();
        obs.observe(&leases, now);
        assert_eq!(
            plan(&leases, &obs, "me", now),
            TakePlan {
                target: 2,
                held: 2,
                ..Default::default()
            }
        );
        // Odd count, I hold the extra lease: nothing to do.
        let p = plan(&leases[1..], &obs, "me", now);
        assert_eq!(
            p,
            TakePlan {
                target: 2,
                held: 2,
                ..Default::default()
            }
        );
        // Odd count, a holds the extra lease: a has 2 = target, I have 1 and need 1: no
        // steal, or the two would trade the odd lease back and forth.
        let leases = [
            lease("s0", Some("a"), 1),
            lease("s1", Some("a"), 1),
            lease("s2", Some("me"), 1),
        ];
        let p = plan(&leases, &obs, "me", now);
        assert!(p.steal.is_empty() && p.take.is_empty(), "{p:?}");
    }

    #[test]
    fn steals_one_when_the_busiest_is_at_target_and_i_have_nothing() {
        // 4 leases, 3 workers: target 2; a=2, b=2, me=0 → steal 1 (KCL rule b).
        let now = Instant::now();
        let leases = vec![
            lease("s0", Some("a"), 1),
            lease("s1", Some("a"), 1),
            lease("s2", Some("b"), 1),
            lease("s3", Some("b"), 1),
        ];
        let mut obs = LeaseObservations::new();
        obs.observe(&leases, now);
        let p = plan(&leases, &obs, "me", now);
        assert_eq!(p.steal.len(), 1);
        assert_eq!(
            p.steal[0].lease_owner.as_deref(),
            Some("a"),
            "ties go to the smallest id"
        );
    }

    #[test]
    fn respects_max_leases_per_worker() {
        let now = Instant::now();
        let leases: Vec<Lease> = (0..6).map(|i| lease(&format!("s{i}"), None, 0)).collect();
        let mut obs = LeaseObservations::new();
        obs.observe(&leases, now);
        let cfg = TakerConfig {
            max_leases_per_worker: 2,
            ..config("me")
        };
        let p = plan_takes(&leases, &obs, &HashSet::new(), now, &cfg);
        assert_eq!((p.target, p.take.len()), (2, 2));
        // Already at the cap: nothing more, not even by stealing.
        let mut leases = leases;
        leases[0].lease_owner = Some("me".into());
        leases[1].lease_owner = Some("me".into());
        let held: HashSet<String> = ["s0".into(), "s1".into()].into();
        let p = plan_takes(&leases, &obs, &held, now, &cfg);
        assert!(p.take.is_empty() && p.steal.is_empty());
    }

    #[test]
    fn finished_leases_are_not_counted_or_taken() {
        let now = Instant::now();
        let mut done = lease("s0", None, 3);
        done.checkpoint = Checkpoint::ShardEnd;
        let leases = vec![done, lease("s1", None, 0)];
        let mut obs = LeaseObservations::new();
        obs.observe(&leases, now);
        let p = plan(&leases, &obs, "me", now);
        assert_eq!(keys(&p.take), ["s1"]);
        assert_eq!(p.target, 1);
    }

    #[test]
    fn my_own_unheld_lease_is_taken_at_once() {
        let now = Instant::now();
        let leases = [lease("s0", Some("me"), 5)];
        let mut obs = LeaseObservations::new();
        obs.observe(&leases, now);
        let p = plan_takes(&leases, &obs, &HashSet::new(), now, &config("me"));
        assert_eq!(keys(&p.take), ["s0"]);
    }

    #[test]
    fn workers_try_free_leases_in_different_orders() {
        let now = Instant::now();
        let leases: Vec<Lease> = (0..8).map(|i| lease(&format!("s{i}"), None, 0)).collect();
        let mut obs = LeaseObservations::new();
        obs.observe(&leases, now);
        let cfg = |me: &str| TakerConfig {
            max_leases_per_worker: 1,
            ..config(me)
        };
        let firsts: HashSet<String> = (0..6)
            .map(|w| {
                plan_takes(&leases, &obs, &HashSet::new(), now, &cfg(&format!("w{w}"))).take[0]
                    .lease_key
                    .clone()
            })
            .collect();
        assert!(firsts.len() > 1, "every worker would contend for the same lease");
    }

    #[test]
    fn parents_first_gating() {
        let mut parent = lease("p", Some("x"), 1);
        let child = Lease::new("c", vec!["p".into()], Checkpoint::TrimHorizon);
        parent.checkpoint = Checkpoint::Sequence(SequenceNumber("5".into()));
        let all = vec![parent.clone(), child.clone()];
        assert!(!parents_done(&child, &all), "parent still has records to read");
        parent.checkpoint = Checkpoint::ShardEnd;
        assert!(parents_done(&child, &[parent, child.clone()]));
        assert!(
            parents_done(&child, std::slice::from_ref(&child)),
            "a deleted parent lease is done"
        );
        let merged = Lease::new("m", vec!["p".into(), "q".into()], Checkpoint::TrimHorizon);
        let mut p = lease("p", None, 1);
        p.checkpoint = Checkpoint::ShardEnd;
        let q = lease("q", None, 1);
        assert!(
            !parents_done(&merged, &[p, q]),
            "both parents of a merge must be finished"
        );
    }

    #[test]
    fn readiness_needs_every_unfinished_lease_owned() {
        let now = Instant::now();
        let mut obs = LeaseObservations::new();
        let leases = vec![lease("s0", Some("a"), 1)];
        obs.observe(&leases, now);
        assert!(all_owned(&leases, &obs, now, FAILOVER));
        assert!(!all_owned(&leases, &obs, now + FAILOVER, FAILOVER));
        let mut free = lease("s1", None, 1);
        assert!(!all_owned(std::slice::from_ref(&free), &obs, now, FAILOVER));
        free.checkpoint = Checkpoint::ShardEnd;
        assert!(all_owned(&[free], &obs, now, FAILOVER));
    }
}
