//! Fault injection for the stream port: makes any stream backend answer like an
//! overloaded Kinesis stream, so the retry and backpressure paths can be exercised on
//! backends that never throttle (kinesis-local, the embedded stream) — in the test suite,
//! in load tests and in a staging deployment.
//!
//! Kinesis answers an over-limit PutRecords *per entry* (`ProvisionedThroughputExceeded`
//! in the entry's result, the call itself succeeds) and an over-limit GetRecords with the
//! same error for the whole call (AWS, *Kinesis Data Streams API Reference*, PutRecords and
//! GetRecords). [`FaultyStream`] does both, deterministically: every Nth entry, every Nth
//! read. A refused entry is not forwarded, so it is stored only when the caller retries.

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};

use async_trait::async_trait;
use fleetwire_actors::ports::{
    GetRecordsOutput, PutEntry, PutOutcome, RecordStream, ShardDescription, ShardId, ShardIterator,
    StartPosition, StreamError,
};
use serde::{Deserialize, Serialize};

/// `[faults]`: injected stream failures. Off (all zero) by default; for tests, load tests
/// and staging only — a node with any fault on logs a warning at start.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct FaultConfig {
    /// Every Nth PutRecords entry is refused as throttled (0 = never).
    pub put_throttle_every: u64,
    /// Every Nth GetRecords call fails as throttled (0 = never).
    pub get_throttle_every: u64,
}

impl FaultConfig {
    /// Whether any fault is configured.
    pub fn any(&self) -> bool {
        self.put_throttle_every > 0 || self.get_throttle_every > 0
    }
}

/// A stream that refuses some of the work given to it, as [`FaultConfig`] says, and passes
/// the rest to the real stream.
pub struct FaultyStream {
    inner: Arc<dyn RecordStream>,
    config: FaultConfig,
    puts: AtomicU64,
    gets: AtomicU64,
}

impl FaultyStream {
    /// Wraps `inner`.
    pub fn new(inner: Arc<dyn RecordStream>, config: FaultConfig) -> Self {
        Self {
            inner,
            config,
            puts: AtomicU64::new(0),
            gets: AtomicU64::new(0),
        }
    }
}

/// Whether the `count`-th event (1-based) of a fault firing every `every` events fails.
fn fires(counter: &AtomicU64, every: u64) -> bool {
    every > 0 && (counter.fetch_add(1, Ordering::Relaxed) + 1).is_multiple_of(every)
}

fn throttled(what: &str) -> StreamError {
    StreamError::Throttled(format!("injected fault: {what} throttled ([faults])"))
}

#[async_trait]
impl RecordStream for FaultyStream {
    async fn list_shards(&self) -> Result<Vec<ShardDescription>, StreamError> {
        self.inner.list_shards().await
    }

    fn records_added(&self, shard: &ShardId) -> futures_util::future::BoxFuture<'static, ()> {
        self.inner.records_added(shard)
    }

    async fn put_records(&self, entries: Vec<PutEntry>) -> Result<Vec<PutOutcome>, StreamError> {
        let refused: Vec<bool> = entries
            .iter()
            .map(|_| fires(&self.puts, self.config.put_throttle_every))
            .collect();
        let forwarded: Vec<PutEntry> = entries
            .into_iter()
            .zip(&refused)
            .filter(|(_, refused)| !**refused)
            .map(|(entry, _)| entry)
            .collect();
        let mut stored = if forwarded.is_empty() {
            Vec::new()
        } else {
            self.inner.put_records(forwarded).await?
        }
        .into_iter();
        Ok(refused
            .into_iter()
            .map(|refused| {
                if refused {
                    PutOutcome::Failed {
                        error: throttled("PutRecords entry"),
                    }
                } else {
                    stored.next().expect("one outcome per forwarded entry")
                }
            })
            .collect())
    }

    async fn get_shard_iterator(
        &self,
        shard_id: &ShardId,
        position: StartPosition,
    ) -> Result<ShardIterator, StreamError> {
        self.inner.get_shard_iterator(shard_id, position).await
    }

    async fn get_records(
        &self,
        iterator: &ShardIterator,
        limit: usize,
    ) -> Result<GetRecordsOutput, StreamError> {
        if fires(&self.gets, self.config.get_throttle_every) {
            return Err(throttled("GetRecords"));
        }
        self.inner.get_records(iterator, limit).await
    }

    async fn ping(&self) -> Result<(), StreamError> {
        self.inner.ping().await
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::backends::embedded::{EmbeddedStream, EmbeddedStreamConfig};
    use bytes::Bytes;

    fn entry(i: usize) -> PutEntry {
        PutEntry {
            partition_key: format!("v{i}"),
            data: Bytes::from(format!("r{i}")),
        }
    }

    #[tokio::test]
    async fn every_nth_entry_is_refused_and_not_stored_the_rest_keep_their_positions() {
        let inner: Arc<dyn RecordStream> = Arc::new(
            EmbeddedStream::open(
                &EmbeddedStreamConfig {
                    shards: 1,
                    ..Default::default()
                },
                None,
            )
            .unwrap(),
        );
        let faulty = FaultyStream::new(
            inner.clone(),
            FaultConfig {
                put_throttle_every: 3,
                get_throttle_every: 2,
            },
        );
        let outcomes = faulty.put_records((0..7).map(entry).collect()).await.unwrap();
        let refused: Vec<usize> = outcomes
            .iter()
            .enumerate()
            .filter(|(_, o)| {
                matches!(
                    o,
                    PutOutcome::Failed {
                        error: StreamError::Throttled(_)
                    }
                )
            })
            .map(|(i, _)| i)
            .collect();
        assert_eq!(refused, [2, 5], "entries 3 and 6 of the call");
        assert!(
            outcomes
                .iter()
                .filter(|o| matches!(o, PutOutcome::Stored { .. }))
                .count()
                == 5
        );

        let shard = inner.list_shards().await.unwrap().remove(0).shard_id;
        let it = faulty
            .get_shard_iterator(&shard, StartPosition::TrimHorizon)
            .await
            .unwrap();
        assert!(faulty.get_records(&it, 100).await.is_ok(), "1st read passes");
        assert!(matches!(
            faulty.get_records(&it, 100).await,
            Err(StreamError::Throttled(_))
        ));
        let all = inner.get_records(&it, 100).await.unwrap().records;
        let mut stored: Vec<String> = all
            .iter()
            .map(|r| String::from_utf8(r.data.to_vec()).unwrap())
            .collect();
        stored.sort();
        assert_eq!(
            stored,
            ["r0", "r1", "r3", "r4", "r6"],
            "refused entries never reach the stream"
        );
    }

    #[test]
    fn off_by_default() {
        assert!(!FaultConfig::default().any());
        let c = AtomicU64::new(0);
        assert!((0..10).all(|_| !fires(&c, 0)));
    }
}
