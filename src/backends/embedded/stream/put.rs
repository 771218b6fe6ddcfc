//! The write path of `put_records`: the Kinesis request and entry limits, routing each
//! entry to its shard, and the fsync once every shard lock is released.

use std::fs::File;
use std::sync::Arc;

use fleetwire_actors::ports::stream::{MAX_PUT_RECORDS_ENTRIES, MAX_RECORD_BYTES, shard_for_key};
use fleetwire_actors::ports::{PutEntry, PutOutcome, StreamError};

use super::shard::Shard;
use super::{Inner, lock};

/// Largest total payload of one `put_records` call (Kinesis PutRecords limit: 5 MiB).
const MAX_PUT_RECORDS_BYTES: usize = 5 * 1024 * 1024;
/// Longest partition key, in Unicode characters (Kinesis limit).
const MAX_PARTITION_KEY_CHARS: usize = 256;

/// Entries of one put bound for one shard, with their index in the request.
pub(super) type Batch = Vec<(usize, PutEntry)>;

/// Request-level checks of `put_records` (Kinesis fails the whole call for these).
pub(super) fn check_request(entries: &[PutEntry]) -> Result<(), StreamError> {
    if entries.len() > MAX_PUT_RECORDS_ENTRIES {
        return Err(StreamError::InvalidArgument(format!(
            "{} entries in one put_records call, at most {MAX_PUT_RECORDS_ENTRIES}",
            entries.len()
        )));
    }
    let total: usize = entries.iter().map(|e| e.partition_key.len() + e.data.len()).sum();
    if total > MAX_PUT_RECORDS_BYTES {
        return Err(StreamError::InvalidArgument(format!(
            "{total} bytes in one put_records call, at most {MAX_PUT_RECORDS_BYTES}"
        )));
    }
    Ok(())
}

/// Entry-level checks (Kinesis fails just that entry).
fn check_entry(entry: &PutEntry) -> Result<(), StreamError> {
    let chars = entry.partition_key.chars().count();
    if chars == 0 || chars > MAX_PARTITION_KEY_CHARS {
        return Err(StreamError::InvalidArgument(format!(
            "partition key must be 1 to {MAX_PARTITION_KEY_CHARS} characters, got {chars}"
        )));
    }
    let size = entry.partition_key.len() + entry.data.len();
    if size > MAX_RECORD_BYTES {
        return Err(StreamError::InvalidArgument(format!(
            "record of {size} bytes exceeds the maximum record size of {MAX_RECORD_BYTES}"
        )));
    }
    Ok(())
}

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
