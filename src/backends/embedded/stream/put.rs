//! The write path of `put_records`: the Kinesis request and entry limits, routing each
//! entry to its shard, and the fsync once every shard lock is released.

use std::fs::File;
use std::sync::Arc;

use fleetwire_actors::ports::stream::{check_put_entry as check_entry, shard_for_key};
use fleetwire_actors::ports::{PutEntry, PutOutcome, StreamError};

use super::shard::Shard;
use super::{Inner, lock};

/// Entries of one put bound for one shard, with their index in the request.
pub(super) type Batch = Vec<(usize, PutEntry)>;

impl Inner {
    /// The put itself, after the request-level checks. Blocking when persisting.
    pub(super) fn put(&self, entries: Vec<PutEntry>) -> Vec<PutOutcome> {
        let mut outcomes: Vec<Option<PutOutcome>> = vec![None; entries.len()];
        let mut to_sync: Vec<(Arc<File>, Vec<usize>)> = Vec::new();
        {
            // Held across the appends so no split or merge closes a shard we route to.
            let topo = self.read_topology();
            let mut groups: Vec<(&Arc<Shard>, Batch)> = Vec::new();
            for (i, entry) in entries.into_iter().enumerate() {
                if let Err(error) = check_entry(&entry) {
                    outcomes[i] = Some(PutOutcome::Failed { error });
                    continue;
                }
                let route = shard_for_key(&entry.partition_key, &topo.routes)
                    .expect("the open shards cover the whole hash-key space");
                let shard = &topo.shards[&route.shard_id];
                match groups.iter_mut().find(|(s, _)| Arc::ptr_eq(s, shard)) {
                    Some((_, group)) => group.push((i, entry)),
                    None => groups.push((shard, vec![(i, entry)])),
                }
            }
            for (shard, group) in groups {
                let mut log = lock(&shard.log);
                if let Some(sync) = log.append(self, &shard.id, group, &mut outcomes) {
                    to_sync.push(sync);
                }
                drop(log);
                // Readable from here on (as before: a reader may see records before their
                // fsync); wakes consumers idling on this shard.
                shard.added.send_modify(|n| *n = n.wrapping_add(1));
            }
        }
        // Outside every lock: concurrent calls' syncs overlap instead of queueing.
        for (file, indexes) in to_sync {
            if let Err(e) = file.sync_data() {
                tracing::error!(error = %e, "Stream file fsync failed.");
                for i in indexes {
                    outcomes[i] = Some(PutOutcome::Failed {
                        error: StreamError::Unavailable(format!("fsync failed: {e}")),
                    });
                }
            }
        }
        outcomes
            .into_iter()
            .map(|o| o.expect("every entry gets an outcome"))
            .collect()
    }
}
