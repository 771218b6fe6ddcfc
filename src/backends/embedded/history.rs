//! [`RedbHistoryStore`]: history buckets and hour aggregates in the shared redb database.
//!
//! Two tables keyed like DynamoDB's (tenant first, then vehicle, then time):
//! - `history`: (tenant, vehicle, bucket start ms) → count (u32 LE) ‖ expires_at (i64 LE) ‖ data;
//! - `aggregates`: (tenant, vehicle, hour start ms) → JSON of the aggregate.
//!
//! TTL: expired rows are skipped by reads (redb has no TTL); they are overwritten or
//! stay until the file is compacted. A merge is read-modify-write inside one write
//! transaction, which redb serializes, so it needs no condition. Bucket and aggregate
//! puts go through a group-commit writer (`group_commit.rs`): a fleet closes its buckets
//! around the same time, and one fsync'd transaction each held redb's single writer for
//! seconds.

use std::collections::BTreeMap;
use std::sync::Arc;

use async_trait::async_trait;
use redb::{Database, ReadableDatabase, ReadableTable, TableDefinition, WriteTransaction};
use serde::{Deserialize, Serialize};

use fleetwire_actors::history::{CODEC, HistoryConfig, codec};
use fleetwire_actors::model::{TenantId, VehicleId};
use fleetwire_actors::ports::{
    BucketPage, HistoryBucket, HistoryError, HistoryStore, HourAggregate, SignalStats,
};
use fleetwire_actors::vehicle::persist::encode_bucket;

use super::EmbeddedError;
use super::db::{self, StoreDb};
use super::group_commit::GroupCommit;

type Key<'a> = (&'a str, &'a str, i64);
const HISTORY: TableDefinition<Key, &[u8]> = TableDefinition::new("history");
const AGGREGATES: TableDefinition<Key, &[u8]> = TableDefinition::new("aggregates");

/// An aggregate as stored.
#[derive(Serialize, Deserialize)]
struct StoredAggregate {
    count: u64,
    signals: BTreeMap<String, SignalStats>,
    expires_at: i64,
}

/// A put, as the writer thread applies it.
enum Put {
    /// Rows of closed buckets (overwritten).
    Buckets(Vec<HistoryBucket>),
    /// One hour aggregate, already serialized (overwritten).
    Aggregate {
        tenant: String,
        vehicle_id: String,
        hour_ms: i64,
        json: Vec<u8>,
    },
}

/// [`HistoryStore`] on redb. Cheap to clone.
#[derive(Clone)]
pub struct RedbHistoryStore {
    /// The shared database, run on the blocking pool (reads and merges).
    db: StoreDb<HistoryError>,
    /// The writer thread for puts.
    puts: GroupCommit<Put, (), HistoryError>,
    config: Arc<HistoryConfig>,
}

/// Applies puts in the writer thread's transaction.
fn apply_puts(txn: &WriteTransaction, puts: &[Put]) -> Result<Vec<Result<(), HistoryError>>, HistoryError> {
    let mut history = txn.open_table(HISTORY).map_err(unavailable)?;
    let mut aggregates = txn.open_table(AGGREGATES).map_err(unavailable)?;
    for put in puts {
        match put {
            Put::Buckets(buckets) => {
                for b in buckets {
                    let key = (b.tenant.as_str(), b.vehicle_id.as_str(), b.start_ms);
                    history
                        .insert(key, encode_row(b).as_slice())
                        .map_err(unavailable)?;
                }
            }
            Put::Aggregate {
                tenant,
                vehicle_id,
                hour_ms,
                json,
            } => {
                let key = (tenant.as_str(), vehicle_id.as_str(), *hour_ms);
                aggregates.insert(key, json.as_slice()).map_err(unavailable)?;
            }
        }
    }
    Ok(puts.iter().map(|_| Ok(())).collect())
}

impl std::fmt::Debug for RedbHistoryStore {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("RedbHistoryStore").finish_non_exhaustive()
    }
}

fn unavailable(e: impl std::fmt::Display) -> HistoryError {
    HistoryError::Unavailable(e.to_string())
}

fn now_secs() -> i64 {
    chrono::Utc::now().timestamp()
}

fn encode_row(b: &HistoryBucket) -> Vec<u8> {
    let mut row = Vec::with_capacity(12 + b.data.len());
    row.extend_from_slice(&b.count.to_le_bytes());
    row.extend_from_slice(&b.expires_at.to_le_bytes());
    row.extend_from_slice(&b.data);
    row
}

fn decode_row(
    tenant: &TenantId,
    vehicle: &VehicleId,
    start_ms: i64,
    row: &[u8],
) -> Result<HistoryBucket, HistoryError> {
    if row.len() < 12 {
        return Err(HistoryError::Corrupt("short history row".into()));
    }
    Ok(HistoryBucket {
        tenant: tenant.clone(),
        vehicle_id: vehicle.clone(),
        start_ms,
        count: u32::from_le_bytes(row[..4].try_into().expect("4 bytes")),
        codec: CODEC.to_owned(),
        data: row[12..].to_vec(),
        expires_at: i64::from_le_bytes(row[4..12].try_into().expect("8 bytes")),
    })
}

impl RedbHistoryStore {
    /// Creates the tables if needed. Blocking: call at startup.
    pub fn new(db: Arc<Database>, config: Arc<HistoryConfig>) -> Result<Self, EmbeddedError> {
        db::init(&db, |txn| {
            db::create(txn, HISTORY)?;
            db::create(txn, AGGREGATES)
        })?;
        let puts = GroupCommit::start(&db, "history", apply_puts, HistoryError::Unavailable)?;
        Ok(Self {
            db: StoreDb::new(db, "history", HistoryError::Unavailable),
            puts,
            config,
        })
    }
}

#[async_trait]
impl HistoryStore for RedbHistoryStore {
    async fn put_buckets(&self, buckets: &[HistoryBucket]) -> Result<(), HistoryError> {
        self.puts.write(Put::Buckets(buckets.to_vec())).await
    }

    async fn merge_bucket(&self, bucket: &HistoryBucket) -> Result<HistoryBucket, HistoryError> {
        let (bucket, config) = (bucket.clone(), self.config.clone());
        StoreDb::run(&self.db, move |db| {
            let txn = db.begin_write().map_err(unavailable)?;
            let stored = {
                let mut table = txn.open_table(HISTORY).map_err(unavailable)?;
                let key = (
                    bucket.tenant.as_str(),
                    bucket.vehicle_id.as_str(),
                    bucket.start_ms,
                );
                let existing = table
                    .get(key)
                    .map_err(unavailable)?
                    .map(|row| decode_row(&bucket.tenant, &bucket.vehicle_id, bucket.start_ms, row.value()))
                    .transpose()?
                    .filter(|b| b.expires_at > now_secs());
                let merged = match existing {
                    None => bucket.clone(),
                    Some(old) => {
                        let old_records =
                            codec::decode(&old.data).map_err(|e| HistoryError::Corrupt(e.to_string()))?;
                        let new_records =
                            codec::decode(&bucket.data).map_err(|e| HistoryError::Corrupt(e.to_string()))?;
                        let (records, added) = codec::merge(&bucket.vehicle_id, old_records, &new_records);
                        if added == 0 {
                            return Ok(old);
                        }
                        encode_bucket(
                            &config,
                            &bucket.tenant,
                            &bucket.vehicle_id,
                            bucket.start_ms,
                            &records,
                        )
                    }
                };
                table
                    .insert(key, encode_row(&merged).as_slice())
                    .map_err(unavailable)?;
                merged
            };
            txn.commit().map_err(unavailable)?;
            Ok(stored)
        })
        .await
    }

    async fn query_buckets(
        &self,
        tenant: &TenantId,
        vehicle_id: &VehicleId,
        from_ms: i64,
        to_ms: i64,
        after: Option<i64>,
        limit: usize,
    ) -> Result<BucketPage, HistoryError> {
        let (tenant, vehicle) = (tenant.clone(), vehicle_id.clone());
        StoreDb::run(&self.db, move |db| {
            let txn = db.begin_read().map_err(unavailable)?;
            let table = txn.open_table(HISTORY).map_err(unavailable)?;
            let lo = after.map_or(from_ms, |a| a.saturating_add(1).max(from_ms));
            let (t, v) = (tenant.as_str(), vehicle.as_str());
            let now = now_secs();
            let mut page = BucketPage::default();
            if lo >= to_ms || limit == 0 {
                return Ok(page);
            }
            for row in table.range((t, v, lo)..(t, v, to_ms)).map_err(unavailable)? {
                let (key, value) = row.map_err(unavailable)?;
                let bucket = decode_row(&tenant, &vehicle, key.value().2, value.value())?;
                if bucket.expires_at <= now {
                    continue;
                }
                if page.buckets.len() == limit {
                    page.next_after = page.buckets.last().map(|b| b.start_ms);
                    break;
                }
                page.buckets.push(bucket);
            }
            Ok(page)
        })
        .await
    }

    async fn latest_bucket(
        &self,
        tenant: &TenantId,
        vehicle_id: &VehicleId,
    ) -> Result<Option<i64>, HistoryError> {
        let (tenant, vehicle) = (tenant.clone(), vehicle_id.clone());
        StoreDb::run(&self.db, move |db| {
            let txn = db.begin_read().map_err(unavailable)?;
            let table = txn.open_table(HISTORY).map_err(unavailable)?;
            let (t, v) = (tenant.as_str(), vehicle.as_str());
            let last = table
                .range((t, v, i64::MIN)..=(t, v, i64::MAX))
                .map_err(unavailable)?
                .next_back()
                .transpose()
                .map_err(unavailable)?;
            Ok(last.map(|(k, _)| k.value().2))
        })
        .await
    }

    async fn put_aggregate(&self, a: &HourAggregate) -> Result<(), HistoryError> {
        let json = serde_json::to_vec(&StoredAggregate {
            count: a.count,
            signals: a.signals.clone(),
            expires_at: a.expires_at,
        })
        .map_err(unavailable)?;
        self.puts
            .write(Put::Aggregate {
                tenant: a.tenant.as_str().to_owned(),
                vehicle_id: a.vehicle_id.as_str().to_owned(),
                hour_ms: a.hour_ms,
                json,
            })
            .await
    }

    async fn query_aggregates(
        &self,
        tenant: &TenantId,
        vehicle_id: &VehicleId,
        from_ms: i64,
        to_ms: i64,
        limit: usize,
    ) -> Result<Vec<HourAggregate>, HistoryError> {
        let (tenant, vehicle) = (tenant.clone(), vehicle_id.clone());
        StoreDb::run(&self.db, move |db| {
            let txn = db.begin_read().map_err(unavailable)?;
            let table = txn.open_table(AGGREGATES).map_err(unavailable)?;
            let (t, v) = (tenant.as_str(), vehicle.as_str());
            let now = now_secs();
            let mut out = Vec::new();
            if from_ms >= to_ms {
                return Ok(out);
            }
            for row in table.range((t, v, from_ms)..(t, v, to_ms)).map_err(unavailable)? {
                let (key, value) = row.map_err(unavailable)?;
                let stored: StoredAggregate = serde_json::from_slice(value.value())
                    .map_err(|e| HistoryError::Corrupt(e.to_string()))?;
                if stored.expires_at <= now {
                    continue;
                }
                out.push(HourAggregate {
                    tenant: tenant.clone(),
                    vehicle_id: vehicle.clone(),
                    hour_ms: key.value().2,
                    count: stored.count,
                    signals: stored.signals,
                    expires_at: stored.expires_at,
                });
                if out.len() == limit {
                    break;
                }
            }
            Ok(out)
        })
        .await
    }
}
