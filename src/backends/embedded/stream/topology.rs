//! The set of shards: which exist, which are open and route puts by hash key, and how
//! a split or merge replaces open shards with their children.

use std::collections::BTreeMap;
use std::fs;
use std::sync::{Arc, Mutex, MutexGuard};

use tokio::sync::watch;

use fleetwire_actors::ports::stream::even_hash_ranges;
use fleetwire_actors::ports::{ShardDescription, ShardId, StreamError};

use super::files::{ShardFile, TopologyFile, TopologyShard, shard_path, write_topology_file};
use super::shard::{Closed, Shard, ShardLog};
use super::{EmbeddedError, EmbeddedStream, lock};

pub(super) struct Topology {
    /// Every shard, open and closed (closed shards stay so old iterators and leases still
    /// resolve; `list_shards` hides them once they are empty and past retention).
    pub(super) shards: BTreeMap<ShardId, Arc<Shard>>,
    /// Descriptions of the open shards only, for `shard_for_key`.
    pub(super) routes: Vec<ShardDescription>,
    /// Number of the next shard a split or merge creates.
    pub(super) next_shard_number: u32,
}

impl EmbeddedStream {
    /// Splits an open shard in two, like Kinesis SplitShard: the parent is closed, the
    /// first child covers `[parent start, new_starting_hash_key - 1]`, the second
    /// `[new_starting_hash_key, parent end]`; both list the parent as their parent and take
    /// the new writes. Returns `(first, second)`. Blocking when persisting (rewrites the
    /// topology file).
    pub fn split_shard(
        &self,
        shard: &ShardId,
        new_starting_hash_key: u128,
    ) -> Result<(ShardId, ShardId), StreamError> {
        let mut topo = self.inner.write_topology();
        let parent = topo.open_shard(shard)?;
        if !(parent.starting_hash_key < new_starting_hash_key
            && new_starting_hash_key <= parent.ending_hash_key)
        {
            return Err(StreamError::InvalidArgument(format!(
                "new starting hash key {new_starting_hash_key} is not inside {shard}'s range ({}..={}) above its start",
                parent.starting_hash_key, parent.ending_hash_key
            )));
        }
        let first = topo.next_id(0);
        let second = topo.next_id(1);
        let children = vec![
            (first.clone(), parent.starting_hash_key, new_starting_hash_key - 1),
            (second.clone(), new_starting_hash_key, parent.ending_hash_key),
        ];
        self.reshard(&mut topo, &[parent], children)?;
        Ok((first, second))
    }

    /// Merges two adjacent open shards into one, like Kinesis MergeShards: both are closed
    /// and the child, covering both ranges, lists `[shard, adjacent]` as parents. Blocking
    /// when persisting (rewrites the topology file).
    pub fn merge_shards(&self, shard: &ShardId, adjacent: &ShardId) -> Result<ShardId, StreamError> {
        let mut topo = self.inner.write_topology();
        let a = topo.open_shard(shard)?;
        let b = topo.open_shard(adjacent)?;
        let adjacent_ranges = a.ending_hash_key.checked_add(1) == Some(b.starting_hash_key)
            || b.ending_hash_key.checked_add(1) == Some(a.starting_hash_key);
        if !adjacent_ranges {
            return Err(StreamError::InvalidArgument(format!(
                "{shard} and {adjacent} do not have adjacent hash-key ranges"
            )));
        }
        let child = topo.next_id(0);
        let range = (
            child.clone(),
            a.starting_hash_key.min(b.starting_hash_key),
            a.ending_hash_key.max(b.ending_hash_key),
        );
        self.reshard(&mut topo, &[a, b], vec![range])?;
        Ok(child)
    }

    /// Closes `parents` and opens `children` (id, start, end) in one step: child files
    /// first, then the topology file, then memory, so a failure leaves the old topology.
    fn reshard(
        &self,
        topo: &mut Topology,
        parents: &[Arc<Shard>],
        children: Vec<(ShardId, u128, u128)>,
    ) -> Result<(), StreamError> {
        let parent_ids: Vec<ShardId> = parents.iter().map(|p| p.id.clone()).collect();
        let child_ids: Vec<ShardId> = children.iter().map(|c| c.0.clone()).collect();
        let mut new_shards = Vec::with_capacity(children.len());
        for (id, start, end) in children {
            let file = match &self.inner.dir {
                Some(dir) => Some(
                    ShardFile::open(shard_path(dir, &id))
                        .map_err(|e| StreamError::Unavailable(e.to_string()))?,
                ),
                None => None,
            };
            new_shards.push(Arc::new(Shard {
                id,
                parents: parent_ids.clone(),
                starting_hash_key: start,
                ending_hash_key: end,
                log: Mutex::new(ShardLog {
                    file,
                    ..ShardLog::default()
                }),
                added: watch::Sender::new(0),
            }));
        }

        let mut next = Topology {
            shards: topo.shards.clone(),
            routes: Vec::new(),
            next_shard_number: topo.next_shard_number + new_shards.len() as u32,
        };
        let closed = Closed {
            at_ms: self.inner.now(),
            children: child_ids,
        };
        // Built before the parents are locked below (it locks every shard briefly).
        let mut file = self.inner.dir.as_ref().map(|_| TopologyFile::from_topology(topo));
        // The parents' logs stay locked until memory is updated, so readers see the close
        // and the children together.
        let mut parent_logs: Vec<MutexGuard<'_, ShardLog>> = parents.iter().map(|p| lock(&p.log)).collect();
        if let (Some(dir), Some(file)) = (&self.inner.dir, &mut file) {
            for entry in &mut file.shards {
                if parent_ids.contains(&entry.shard_id) {
                    entry.closed_at_ms = Some(closed.at_ms);
                    entry.child_shard_ids = closed.children.clone();
                }
            }
            file.next_shard_number = next.next_shard_number;
            file.shards.extend(
                new_shards
                    .iter()
                    .map(|s| TopologyShard::new(s, &ShardLog::default())),
            );
            if let Err(e) = write_topology_file(dir, file) {
                for shard in &new_shards {
                    let _ = fs::remove_file(shard_path(dir, &shard.id));
                }
                return Err(StreamError::Unavailable(e.to_string()));
            }
        }
        for log in &mut parent_logs {
            log.closed = Some(closed.clone());
            // A closed shard never appends again.
            log.file = None;
        }
        drop(parent_logs);
        for shard in new_shards {
            next.shards.insert(shard.id.clone(), shard);
        }
        next.rebuild_routes();
        *topo = next;
        Ok(())
    }
}

impl Topology {
    pub(super) fn new(shards: Vec<Shard>) -> Self {
        let next_shard_number = shards.len() as u32;
        let mut topo = Self {
            shards: shards.into_iter().map(|s| (s.id.clone(), Arc::new(s))).collect(),
            routes: Vec::new(),
            next_shard_number,
        };
        topo.rebuild_routes();
        topo
    }

    pub(super) fn rebuild_routes(&mut self) {
        self.routes = self
            .shards
            .values()
            .filter_map(|s| {
                let log = lock(&s.log);
                log.closed.is_none().then(|| s.describe(&log))
            })
            .collect();
    }

    pub(super) fn next_id(&self, offset: u32) -> ShardId {
        shard_id(self.next_shard_number + offset)
    }

    pub(super) fn open_shard(&self, id: &ShardId) -> Result<Arc<Shard>, StreamError> {
        let shard = self
            .shards
            .get(id)
            .ok_or_else(|| StreamError::NotFound(format!("shard {id}")))?;
        if lock(&shard.log).closed.is_some() {
            return Err(StreamError::InvalidArgument(format!(
                "shard {id} is already closed"
            )));
        }
        Ok(Arc::clone(shard))
    }
}

/// `shardId-000000000007`, the Kinesis shape.
pub(super) fn shard_id(number: u32) -> ShardId {
    ShardId(format!("shardId-{number:012}"))
}

/// The shards of a new stream, with even hash ranges.
pub(super) fn initial_shards(
    count: u32,
    mut log: impl FnMut(&ShardId) -> Result<ShardLog, EmbeddedError>,
) -> Result<Vec<Shard>, EmbeddedError> {
    even_hash_ranges(count)
        .into_iter()
        .enumerate()
        .map(|(n, (start, end))| {
            let id = shard_id(n as u32);
            Ok(Shard {
                log: Mutex::new(log(&id)?),
                id,
                parents: Vec::new(),
                starting_hash_key: start,
                ending_hash_key: end,
                added: watch::Sender::new(0),
            })
        })
        .collect()
}
