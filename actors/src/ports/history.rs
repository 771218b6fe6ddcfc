//! The history port: closed history buckets and hourly aggregates per vehicle
//! (docs/data-model.md, tables `history` and `aggregates`).

use std::collections::BTreeMap;

use async_trait::async_trait;
use serde::{Deserialize, Serialize};

use crate::model::{TenantId, VehicleId};

/// One vehicle's records of one time bucket, encoded by [`crate::history::codec`].
#[derive(Debug, Clone, PartialEq)]
pub struct HistoryBucket {
    /// Owner tenant (first part of the key).
    pub tenant: TenantId,
    /// The vehicle.
    pub vehicle_id: VehicleId,
    /// Bucket start, Unix ms (the sort key).
    pub start_ms: i64,
    /// Records in `data`.
    pub count: u32,
    /// Codec name ([`crate::history::codec::CODEC`]).
    pub codec: String,
    /// The encoded records.
    pub data: Vec<u8>,
    /// TTL: bucket end + retention, Unix seconds.
    pub expires_at: i64,
}

/// min / max / sum / count of one numeric signal; `avg = sum / n`. Kept as sums so
/// partial results merge.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
pub struct SignalStats {
    /// Smallest value.
    pub min: f64,
    /// Largest value.
    pub max: f64,
    /// Sum of the values.
    pub sum: f64,
    /// How many values.
    pub n: u64,
}

impl SignalStats {
    /// Stats of one value.
    pub fn of(v: f64) -> Self {
        Self {
            min: v,
            max: v,
            sum: v,
            n: 1,
        }
    }

    /// Folds `other` in.
    pub fn merge(&mut self, other: &SignalStats) {
        self.min = self.min.min(other.min);
        self.max = self.max.max(other.max);
        self.sum += other.sum;
        self.n += other.n;
    }
}

/// One vehicle's aggregate of one hour.
#[derive(Debug, Clone, PartialEq)]
pub struct HourAggregate {
    /// Owner tenant.
    pub tenant: TenantId,
    /// The vehicle.
    pub vehicle_id: VehicleId,
    /// Hour start, Unix ms (the sort key).
    pub hour_ms: i64,
    /// Records in the hour.
    pub count: u64,
    /// Numeric signal → stats.
    pub signals: BTreeMap<String, SignalStats>,
    /// TTL, Unix seconds.
    pub expires_at: i64,
}

/// A page of buckets, oldest first.
#[derive(Debug, Clone, PartialEq, Default)]
pub struct BucketPage {
    /// The buckets.
    pub buckets: Vec<HistoryBucket>,
    /// Start of the last bucket returned when more may follow (the next page starts after it).
    pub next_after: Option<i64>,
}

/// Errors of the history store.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum HistoryError {
    /// Too many writes right now (DynamoDB throttling, unprocessed items after the
    /// retries); the caller retries later and the checkpoint waits.
    #[error("history store throttled: {0}")]
    Throttled(String),
    /// The backend failed or cannot be reached.
    #[error("history store unavailable: {0}")]
    Unavailable(String),
    /// Stored data could not be read back.
    #[error("stored history is unreadable: {0}")]
    Corrupt(String),
    /// A conditional merge lost the race too many times.
    #[error("history merge conflict: {0}")]
    Conflict(String),
}

/// The history port. Implementations: `src/backends/embedded/history.rs` (redb) and
/// `src/backends/dynamodb/history.rs` (tables `history` and `aggregates`). Every key
/// starts with the tenant.
#[async_trait]
pub trait HistoryStore: Send + Sync + 'static {
    /// Writes closed buckets, overwriting any stored bucket with the same key (a replay
    /// rebuilds the same bucket). Returns once all are durable.
    async fn put_buckets(&self, buckets: &[HistoryBucket]) -> Result<(), HistoryError>;

    /// Adds `bucket`'s records to the stored bucket of the same key (by content id;
    /// read-modify-write conditional on the stored count), or stores it if there is none.
    /// Returns the bucket as stored.
    async fn merge_bucket(&self, bucket: &HistoryBucket) -> Result<HistoryBucket, HistoryError>;

    /// `tenant`'s vehicle's buckets with `from_ms <= start < to_ms` and start after
    /// `after`, oldest first, at most `limit`.
    async fn query_buckets(
        &self,
        tenant: &TenantId,
        vehicle_id: &VehicleId,
        from_ms: i64,
        to_ms: i64,
        after: Option<i64>,
        limit: usize,
    ) -> Result<BucketPage, HistoryError>;

    /// Start of the vehicle's newest stored bucket.
    async fn latest_bucket(
        &self,
        tenant: &TenantId,
        vehicle_id: &VehicleId,
    ) -> Result<Option<i64>, HistoryError>;

    /// Writes (overwrites) one hour's aggregate.
    async fn put_aggregate(&self, aggregate: &HourAggregate) -> Result<(), HistoryError>;

    /// The vehicle's hour aggregates with `from_ms <= hour < to_ms`, oldest first, at
    /// most `limit`.
    async fn query_aggregates(
        &self,
        tenant: &TenantId,
        vehicle_id: &VehicleId,
        from_ms: i64,
        to_ms: i64,
        limit: usize,
    ) -> Result<Vec<HourAggregate>, HistoryError>;
}
