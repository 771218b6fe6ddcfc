//! Which finished leases can be deleted, and which shards must never get a lease again.
//!
//! The rules are KCL's (`LeaseCleanupManager.cleanupLeaseForCompletedShard`, Apache-2.0):
//! a lease at `ShardEnd` is deleted once
//! 1. every child shard has a lease whose consumer has begun (checkpoint past the
//!    horizon), so the children no longer need the parent to gate them, and
//! 2. its own parents' leases are already gone (ancestors are deleted oldest first).
//!
//! Deleting a lease must not let the shard sync create it again while the closed shard is
//! still listed (Kinesis lists closed shards until they age out of retention): a shard
//! that is an ancestor of a leased shard is "retired" and the sync skips it. Without that,
//! the parent would be re-read from its start and every record applied again.

use std::collections::{HashMap, HashSet};

use crate::ports::{Checkpoint, Lease, ShardDescription};

/// Shards that are ancestors of a shard with a lease. The shard sync never creates a lease
/// for one of them that has none: its lease was deleted after it was finished.
pub fn retired_ancestors(shards: &[ShardDescription], leases: &[Lease]) -> HashSet<String> {
    let parents_of: HashMap<&str, Vec<&str>> = shards
        .iter()
        .map(|s| {
            (
                s.shard_id.0.as_str(),
                s.parent_shard_ids.iter().map(|p| p.0.as_str()).collect(),
            )
        })
        .collect();
    let mut retired = HashSet::new();
    let mut frontier: Vec<&str> = leases
        .iter()
        .flat_map(|l| {
            let listed = parents_of
                .get(l.lease_key.as_str())
                .into_iter()
                .flatten()
                .copied();
            l.parent_shard_ids.iter().map(String::as_str).chain(listed)
        })
        .collect();
    while let Some(shard) = frontier.pop() {
        if retired.insert(shard.to_owned()) {
            frontier.extend(parents_of.get(shard).into_iter().flatten().copied());
        }
    }
    retired
}

/// Lease keys that can be deleted now (rules in the module docs).
pub fn deletable(shards: &[ShardDescription], leases: &[Lease]) -> Vec<String> {
    let by_key: HashMap<&str, &Lease> = leases.iter().map(|l| (l.lease_key.as_str(), l)).collect();
    leases
        .iter()
        .filter(|lease| lease.checkpoint == Checkpoint::ShardEnd)
        .filter(|lease| {
            lease
                .parent_shard_ids
                .iter()
                .all(|p| !by_key.contains_key(p.as_str()))
        })
        .filter(|lease| {
            let key = lease.lease_key.as_str();
            let mut children: HashSet<&str> = shards
                .iter()
                .filter(|s| s.parent_shard_ids.iter().any(|p| p.0 == key))
                .map(|s| s.shard_id.0.as_str())
                .collect();
            children.extend(
                leases
                    .iter()
                    .filter(|l| l.parent_shard_ids.iter().any(|p| p == key))
                    .map(|l| l.lease_key.as_str()),
            );
            !children.is_empty()
                && children.iter().all(|child| {
                    by_key.get(child).is_some_and(|l| {
                        !matches!(l.checkpoint, Checkpoint::TrimHorizon | Checkpoint::Latest)
                    })
                })
        })
        .map(|lease| lease.lease_key.clone())
        .collect()
}

/// `shards` ordered so that every shard comes after its listed parents, so that a shard
/// sync interrupted by an error never leaves a child leased with its parent unleased
/// (which [`retired_ancestors`] would then take for a deleted, finished parent).
pub fn parents_first(shards: &[ShardDescription]) -> Vec<&ShardDescription> {
    let by_id: HashMap<&str, &ShardDescription> = shards.iter().map(|s| (s.shard_id.0.as_str(), s)).collect();
    let mut placed: HashSet<&str> = HashSet::new();
    let mut ordered = Vec::with_capacity(shards.len());
    fn place<'a>(
        shard: &'a ShardDescription,
        by_id: &HashMap<&str, &'a ShardDescription>,
        placed: &mut HashSet<&'a str>,
        ordered: &mut Vec<&'a ShardDescription>,
    ) {
        if !placed.insert(shard.shard_id.0.as_str()) {
            return;
        }
        for parent in &shard.parent_shard_ids {
            if let Some(p) = by_id.get(parent.0.as_str()) {
                place(p, by_id, placed, ordered);
            }
        }
        ordered.push(shard);
    }
    for shard in shards {
        place(shard, &by_id, &mut placed, &mut ordered);
    }
    ordered
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::ports::{SequenceNumber, ShardId};

    fn shard(id: &str, parents: &[&str]) -> ShardDescription {
        ShardDescription {
            shard_id: ShardId(id.into()),
            parent_shard_ids: parents.iter().map(|p| ShardId((*p).into())).collect(),
            starting_hash_key: 0,
            ending_hash_key: u128::MAX,
            closed: false,
        }
    }

    fn lease(id: &str, parents: &[&str], checkpoint: Checkpoint) -> Lease {
        Lease::new(id, parents.iter().map(|p| (*p).to_owned()).collect(), checkpoint)
    }

    fn seq() -> Checkpoint {
        Checkpoint::Sequence(SequenceNumber(
            "49590338271490256608559692538361571095921575989136588898".into(),
        ))
    }

    /// P was split into A and B.
    fn split() -> Vec<ShardDescription> {
        vec![shard("P", &[]), shard("A", &["P"]), shard("B", &["P"])]
    }

    #[test]
    fn a_finished_parent_is_deleted_once_every_child_has_begun() {
        let shards = split();
        let mut leases = vec![
            lease("P", &[], Checkpoint::ShardEnd),
            lease("A", &["P"], seq()),
            lease("B", &["P"], Checkpoint::TrimHorizon),
        ];
        assert!(deletable(&shards, &leases).is_empty(), "B has not begun");
        leases[2].checkpoint = Checkpoint::ShardEnd;
        assert_eq!(deletable(&shards, &leases), vec!["P".to_owned()]);
    }

    #[test]
    fn an_unfinished_lease_or_one_with_a_missing_child_lease_is_kept() {
        let shards = split();
        let leases = vec![
            lease("P", &[], seq()),
            lease("A", &["P"], seq()),
            lease("B", &["P"], seq()),
        ];
        assert!(deletable(&shards, &leases).is_empty(), "P is not finished");
        let leases = vec![lease("P", &[], Checkpoint::ShardEnd), lease("A", &["P"], seq())];
        assert!(deletable(&shards, &leases).is_empty(), "B has no lease yet");
        let leases = vec![lease("P", &[], Checkpoint::ShardEnd)];
        assert!(
            deletable(&[shard("P", &[])], &leases).is_empty(),
            "no child at all"
        );
    }

    #[test]
    fn ancestors_are_deleted_oldest_first() {
        let shards = vec![shard("G", &[]), shard("P", &["G"]), shard("C", &["P"])];
        let leases = vec![
            lease("G", &[], Checkpoint::ShardEnd),
            lease("P", &["G"], Checkpoint::ShardEnd),
            lease("C", &["P"], seq()),
        ];
        assert_eq!(deletable(&shards, &leases), vec!["G".to_owned()], "P waits for G");
    }

    #[test]
    fn a_merge_child_counts_for_both_parents_even_when_the_parents_are_no_longer_listed() {
        let leases = vec![
            lease("P1", &[], Checkpoint::ShardEnd),
            lease("P2", &[], Checkpoint::ShardEnd),
            lease("M", &["P1", "P2"], seq()),
        ];
        let mut found = deletable(&[shard("M", &[])], &leases);
        found.sort();
        assert_eq!(found, vec!["P1".to_owned(), "P2".to_owned()]);
    }

    #[test]
    fn deleted_ancestors_are_retired_transitively() {
        let shards = vec![
            shard("G", &[]),
            shard("P", &["G"]),
            shard("C", &["P"]),
            shard("X", &[]),
        ];
        let leases = vec![lease("C", &["P"], seq())];
        let retired = retired_ancestors(&shards, &leases);
        assert_eq!(retired, HashSet::from(["P".to_owned(), "G".to_owned()]));
        assert!(
            retired_ancestors(&shards, &[]).is_empty(),
            "a fresh table retires nothing"
        );
    }

    #[test]
    fn parents_come_before_their_children() {
        let shards = vec![
            shard("C", &["P1", "P2"]),
            shard("P2", &["G"]),
            shard("P1", &[]),
            shard("G", &[]),
        ];
        let order: Vec<&str> = parents_first(&shards)
            .iter()
            .map(|s| s.shard_id.0.as_str())
            .collect();
        let pos = |id: &str| order.iter().position(|s| *s == id).unwrap();
        assert_eq!(order.len(), 4);
        assert!(pos("G") < pos("P2") && pos("P1") < pos("C") && pos("P2") < pos("C"));
    }
}
