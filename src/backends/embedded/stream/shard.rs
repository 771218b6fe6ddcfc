//! One shard's log: the retained records, appends, retention trimming and the memory
//! bound (`max_bytes_per_shard`).

use std::collections::VecDeque;
use std::fs::File;
use std::sync::atomic::Ordering;
use std::sync::{Arc, Mutex};

use bytes::Bytes;
use chrono::{DateTime, Utc};
use tokio::sync::watch;

use fleetwire_actors::ports::{
    PutOutcome, SequenceNumber, ShardDescription, ShardId, StreamError, StreamRecord,
};

use super::Inner;
use super::files::{ShardFile, encode_frame};
use super::put::Batch;

pub(super) struct Shard {
    pub(super) id: ShardId,
    pub(super) parents: Vec<ShardId>,
    pub(super) starting_hash_key: u128,
    pub(super) ending_hash_key: u128,
    pub(super) log: Mutex<ShardLog>,
    /// Counts appends, so a consumer waiting for records wakes on one
    /// (`RecordStream::records_added`).
    pub(super) added: watch::Sender<u64>,
}

#[derive(Default)]
pub(super) struct ShardLog {
    /// Retained records, oldest first, strictly increasing sequence numbers.
    pub(super) records: VecDeque<Stored>,
    /// Key + data bytes of `records`, checked against the memory bound.
    pub(super) bytes: u64,
    /// Set once the shard was split or merged.
    pub(super) closed: Option<Closed>,
    /// The append file of an open shard when persisting.
    pub(super) file: Option<ShardFile>,
}

#[derive(Clone)]
pub(super) struct Closed {
    pub(super) at_ms: i64,
    pub(super) children: Vec<ShardId>,
}

pub(super) struct Stored {
    pub(super) seq: u64,
    pub(super) key: String,
    pub(super) data: Bytes,
    pub(super) arrival_ms: i64,
}

impl Stored {
    pub(super) fn size(&self) -> u64 {
        (self.key.len() + self.data.len()) as u64
    }

    pub(super) fn to_record(&self) -> StreamRecord {
        StreamRecord {
            sequence_number: SequenceNumber(self.seq.to_string()),
            partition_key: self.key.clone(),
            data: self.data.clone(),
            approximate_arrival: DateTime::<Utc>::from_timestamp_millis(self.arrival_ms)
                .unwrap_or(DateTime::UNIX_EPOCH),
        }
    }
}

impl Shard {
    pub(super) fn describe(&self, log: &ShardLog) -> ShardDescription {
        ShardDescription {
            shard_id: self.id.clone(),
            parent_shard_ids: self.parents.clone(),
            starting_hash_key: self.starting_hash_key,
            ending_hash_key: self.ending_hash_key,
            closed: log.closed.is_some(),
        }
    }
}

impl ShardLog {
    /// Drops records that arrived at or before `horizon`; only looks at the front, so it
    /// costs nothing when there is nothing to trim.
    pub(super) fn trim(&mut self, horizon: i64) {
        while let Some(front) = self.records.front() {
            if front.arrival_ms > horizon {
                break;
            }
            self.bytes -= front.size();
            self.records.pop_front();
        }
    }

    /// Appends one shard's share of a put. Returns the file to fsync and the entries it
    /// covers. Outcomes of every entry in `group` are filled in.
    pub(super) fn append(
        &mut self,
        stream: &Inner,
        shard_id: &ShardId,
        group: Batch,
        outcomes: &mut [Option<PutOutcome>],
    ) -> Option<(Arc<File>, Vec<usize>)> {
        debug_assert!(self.closed.is_none(), "puts are routed to open shards only");
        // Arrival times never go backwards within a shard, so trimming the front is enough.
        let now = self
            .records
            .back()
            .map_or(i64::MIN, |r| r.arrival_ms)
            .max(stream.now());
        self.trim(stream.horizon(now));

        let mut accepted = Vec::with_capacity(group.len());
        let mut bytes = self.bytes;
        for (i, entry) in group {
            let size = (entry.partition_key.len() + entry.data.len()) as u64;
            if bytes + size > stream.max_bytes_per_shard {
                outcomes[i] = Some(PutOutcome::Failed {
                    error: StreamError::Throttled(format!(
                        "{shard_id} holds {bytes} bytes, limit {}",
                        stream.max_bytes_per_shard
                    )),
                });
            } else {
                bytes += size;
                accepted.push((i, entry));
            }
        }
        if accepted.is_empty() {
            return None;
        }
        // Allocated under the shard lock: numbers increase in append order.
        let first = stream.next_seq.fetch_add(accepted.len() as u64, Ordering::SeqCst);
        let records: Vec<(usize, Stored)> = accepted
            .into_iter()
            .enumerate()
            .map(|(k, (i, entry))| {
                let stored = Stored {
                    seq: first + k as u64,
                    key: entry.partition_key,
                    data: entry.data,
                    arrival_ms: now,
                };
                (i, stored)
            })
            .collect();

        if let Some(file) = &mut self.file {
            let mut buf = Vec::new();
            for (_, record) in &records {
                encode_frame(&mut buf, record);
            }
            if let Err(e) = file.append(&buf) {
                tracing::error!(error = %e, shard = %shard_id, "Stream file write failed.");
                for (i, _) in records {
                    outcomes[i] = Some(PutOutcome::Failed {
                        error: StreamError::Unavailable(format!("write to {shard_id} failed: {e}")),
                    });
                }
                return None;
            }
        }
        let indexes: Vec<usize> = records.iter().map(|(i, _)| *i).collect();
        for (i, record) in records {
            outcomes[i] = Some(PutOutcome::Stored {
                shard_id: shard_id.clone(),
                sequence_number: SequenceNumber(record.seq.to_string()),
            });
            self.bytes += record.size();
            self.records.push_back(record);
        }
        self.compact_if_bloated();
        self.file.as_ref().map(|f| (Arc::clone(&f.file), indexes))
    }
}
