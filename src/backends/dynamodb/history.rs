//! [`DynamoDbHistoryStore`]: the `history` and `aggregates` tables (docs/data-model.md).
//!
//! `history`: `pk` (S, `<tenant>#<vehicle>`), `bucket` (N, start ms), `n` (N), `codec`
//! (S), `data` (B), `expires_at` (N, TTL). Closed buckets go in BatchWriteItem calls of 25
//! PutRequests; `UnprocessedItems` are retried with exponential backoff and full jitter,
//! and still unprocessed after [`BATCH_ATTEMPTS`] → `Throttled` (the actor keeps the
//! buckets and their holds, so the shard checkpoint waits). A merge is GetItem + PutItem
//! conditioned on the stored `n` (or `attribute_not_exists(pk)`), retried on a lost race.
//! `aggregates`: `pk`, `hour` (N), `count` (N), `signals` (S: JSON of name → stats),
//! `expires_at`; one PutItem per vehicle and hour.

use std::collections::{BTreeMap, HashMap};
use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;
use aws_sdk_dynamodb::Client;
use aws_sdk_dynamodb::error::{ProvideErrorMetadata, SdkError};
use aws_sdk_dynamodb::operation::query::QueryOutput;
use aws_sdk_dynamodb::primitives::Blob;
use aws_sdk_dynamodb::types::{AttributeValue, PutRequest, ScalarAttributeType, WriteRequest};

use fleetwire_actors::history::{CODEC, HistoryConfig, codec};
use fleetwire_actors::model::{TenantId, VehicleId};
use fleetwire_actors::ports::{
    BucketPage, HistoryBucket, HistoryError, HistoryStore, HourAggregate, SignalStats, StoreError,
};
use fleetwire_actors::vehicle::persist::encode_bucket;

use super::tables::{Item, Table, TableSpec, store_error};
use super::{DynamoDbConfig, DynamoDbError};

/// Logical name of the history table.
pub const HISTORY_TABLE: &str = "history";
/// Logical name of the aggregates table.
pub const AGGREGATES_TABLE: &str = "aggregates";
/// Most items in one BatchWriteItem (DynamoDB's limit).
pub const BATCH_WRITE_MAX: usize = 25;
/// Attempts at a batch's unprocessed items before giving up with `Throttled`.
pub const BATCH_ATTEMPTS: u32 = 8;
/// First backoff ceiling for unprocessed items; doubles per attempt (full jitter).
const BATCH_BACKOFF: Duration = Duration::from_millis(25);
/// Attempts at a conditional merge that keeps losing to a concurrent writer.
const MERGE_ATTEMPTS: u32 = 5;

/// Fault injection for tests: hand back every Nth put of a batch as unprocessed, as
/// DynamoDB does under load (DynamoDB Local never does).
#[derive(Debug, Default, Clone, Copy)]
pub struct BatchFaults {
    /// Every Nth item written is reported unprocessed once (0: never).
    pub unprocessed_every: usize,
}

/// [`HistoryStore`] on DynamoDB.
#[derive(Clone)]
pub struct DynamoDbHistoryStore {
    client: Client,
    history: String,
    aggregates: String,
    config: Arc<HistoryConfig>,
    faults: BatchFaults,
    counter: Arc<std::sync::atomic::AtomicUsize>,
}

impl std::fmt::Debug for DynamoDbHistoryStore {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("DynamoDbHistoryStore")
            .field("history", &self.history)
            .field("aggregates", &self.aggregates)
            .finish_non_exhaustive()
    }
}

fn pk(tenant: &TenantId, vehicle: &VehicleId) -> String {
    format!("{tenant}#{vehicle}")
}

fn to_history(e: StoreError) -> HistoryError {
    match e {
        StoreError::Throttled(m) => HistoryError::Throttled(m),
        StoreError::Unavailable(m) => HistoryError::Unavailable(m),
        StoreError::Corrupt(m) => HistoryError::Corrupt(m),
    }
}

fn err<E>(op: &str, e: SdkError<E>) -> HistoryError
where
    E: ProvideErrorMetadata + std::error::Error + Send + Sync + 'static,
{
    to_history(store_error(op, e))
}

fn n(v: i64) -> AttributeValue {
    AttributeValue::N(v.to_string())
}

fn get_n(item: &Item, name: &str) -> Result<i64, HistoryError> {
    item.get(name)
        .and_then(|v| v.as_n().ok())
        .and_then(|s| s.parse().ok())
        .ok_or_else(|| HistoryError::Corrupt(format!("attribute {name} missing or not a number")))
}

impl DynamoDbHistoryStore {
    /// Connects, creating both tables (and their TTL) if the config says so.
    pub async fn connect(
        config: &DynamoDbConfig,
        history: Arc<HistoryConfig>,
    ) -> Result<Self, DynamoDbError> {
        config.validate()?;
        let store = Self::from_client(
            config.client().await,
            config.table(HISTORY_TABLE),
            config.table(AGGREGATES_TABLE),
            history,
        );
        if config.create_tables_if_missing {
            store.create_tables_if_missing().await?;
        }
        Ok(store)
    }

    /// Wraps an existing client. Makes no call.
    pub fn from_client(
        client: Client,
        history: String,
        aggregates: String,
        config: Arc<HistoryConfig>,
    ) -> Self {
        Self {
            client,
            history,
            aggregates,
            config,
            faults: BatchFaults::default(),
            counter: Arc::default(),
        }
    }

    /// Injects batch faults (tests).
    pub fn with_faults(mut self, faults: BatchFaults) -> Self {
        self.faults = faults;
        self
    }

    /// Creates `history` (pk/bucket) and `aggregates` (pk/hour) with TTL on `expires_at`.
    pub async fn create_tables_if_missing(&self) -> Result<(), DynamoDbError> {
        for (name, range) in [(&self.history, "bucket"), (&self.aggregates, "hour")] {
            let spec = TableSpec {
                hash: "pk",
                range: Some((range, ScalarAttributeType::N)),
                index: None,
                ttl: Some("expires_at"),
            };
            let table = Table {
                client: self.client.clone(),
                name: name.clone(),
            };
            table.create_if_missing(&spec).await?;
        }
        Ok(())
    }

    fn bucket_item(b: &HistoryBucket) -> Item {
        HashMap::from([
            ("pk".to_owned(), AttributeValue::S(pk(&b.tenant, &b.vehicle_id))),
            ("bucket".to_owned(), n(b.start_ms)),
            ("n".to_owned(), n(i64::from(b.count))),
            ("codec".to_owned(), AttributeValue::S(b.codec.clone())),
            ("data".to_owned(), AttributeValue::B(Blob::new(b.data.clone()))),
            ("expires_at".to_owned(), n(b.expires_at)),
        ])
    }

    fn bucket_of(tenant: &TenantId, vehicle: &VehicleId, item: &Item) -> Result<HistoryBucket, HistoryError> {
        let codec_name = item
            .get("codec")
            .and_then(|v| v.as_s().ok())
            .cloned()
            .unwrap_or_default();
        if codec_name != CODEC {
            return Err(HistoryError::Corrupt(format!(
                "unknown bucket codec {codec_name:?}"
            )));
        }
        Ok(HistoryBucket {
            tenant: tenant.clone(),
            vehicle_id: vehicle.clone(),
            start_ms: get_n(item, "bucket")?,
            count: u32::try_from(get_n(item, "n")?).map_err(|_| HistoryError::Corrupt("n".into()))?,
            codec: codec_name,
            data: item
                .get("data")
                .and_then(|v| v.as_b().ok())
                .map(|b| b.as_ref().to_vec())
                .ok_or_else(|| HistoryError::Corrupt("data missing".into()))?,
            expires_at: get_n(item, "expires_at").unwrap_or(i64::MAX),
        })
    }

    /// One Query page of the vehicle's items in `table` whose sort key `key` is in
    /// `[from_ms, to_ms)`, oldest first: at most `limit` items (default: DynamoDB's 1 MB),
    /// from `start_key` (the previous page's `LastEvaluatedKey`) on.
    async fn query_range(
        &self,
        tenant: &TenantId,
        vehicle_id: &VehicleId,
        (table, key, from_ms, to_ms): (&str, &str, i64, i64),
        limit: Option<i32>,
        start_key: Option<Item>,
    ) -> Result<QueryOutput, HistoryError> {
        self.client
            .query()
            .table_name(table)
            .key_condition_expression("pk = :p AND #k BETWEEN :lo AND :hi")
            .expression_attribute_names("#k", key)
            .expression_attribute_values(":p", AttributeValue::S(pk(tenant, vehicle_id)))
            .expression_attribute_values(":lo", n(from_ms))
            .expression_attribute_values(":hi", n(to_ms - 1))
            .set_limit(limit)
            .set_exclusive_start_key(start_key)
            .send()
            .await
            .map_err(|e| err("Query", e))
    }

    /// One BatchWriteItem of ≤ 25 puts, retrying unprocessed items.
    async fn write_batch(&self, mut requests: Vec<WriteRequest>) -> Result<(), HistoryError> {
        let mut attempt = 0;
        loop {
            let mut unprocessed = Vec::new();
            if self.faults.unprocessed_every > 0 && attempt == 0 {
                // Injected: hold some items back as if DynamoDB had not processed them.
                let every = self.faults.unprocessed_every;
                let (keep, back): (Vec<_>, Vec<_>) = requests.into_iter().partition(|_| {
                    !self
                        .counter
                        .fetch_add(1, std::sync::atomic::Ordering::Relaxed)
                        .is_multiple_of(every)
                });
                requests = keep;
                unprocessed = back;
            }
            if !requests.is_empty() {
                let out = self
                    .client
                    .batch_write_item()
                    .request_items(&self.history, requests)
                    .send()
                    .await
                    .map_err(|e| err("BatchWriteItem", e))?;
                if let Some(left) = out.unprocessed_items().and_then(|m| m.get(&self.history)) {
                    unprocessed.extend(left.iter().cloned());
                }
            }
            if unprocessed.is_empty() {
                return Ok(());
            }
            attempt += 1;
            metrics::counter!("fleetwire_history_unprocessed_items_total")
                .increment(unprocessed.len() as u64);
            if attempt >= BATCH_ATTEMPTS {
                return Err(HistoryError::Throttled(format!(
                    "{} history items still unprocessed after {attempt} attempts",
                    unprocessed.len()
                )));
            }
            let cap = BATCH_BACKOFF * 2u32.pow(attempt.min(10));
            tokio::time::sleep(cap.mul_f64(rand::random::<f64>())).await;
            requests = unprocessed;
        }
    }
}

#[async_trait]
impl HistoryStore for DynamoDbHistoryStore {
    async fn put_buckets(&self, buckets: &[HistoryBucket]) -> Result<(), HistoryError> {
        for chunk in buckets.chunks(BATCH_WRITE_MAX) {
            let requests = chunk
                .iter()
                .map(|b| {
                    let put = PutRequest::builder()
                        .set_item(Some(Self::bucket_item(b)))
                        .build()
                        .expect("item set");
                    WriteRequest::builder().put_request(put).build()
                })
                .collect();
            self.write_batch(requests).await?;
        }
        Ok(())
    }

    async fn merge_bucket(&self, bucket: &HistoryBucket) -> Result<HistoryBucket, HistoryError> {
        let key = pk(&bucket.tenant, &bucket.vehicle_id);
        for _ in 0..MERGE_ATTEMPTS {
            let got = self
                .client
                .get_item()
                .table_name(&self.history)
                .key("pk", AttributeValue::S(key.clone()))
                .key("bucket", n(bucket.start_ms))
                .consistent_read(true)
                .send()
                .await
                .map_err(|e| err("GetItem", e))?;
            let (merged, condition) = match got.item() {
                None => (bucket.clone(), None),
                Some(item) => {
                    let old = Self::bucket_of(&bucket.tenant, &bucket.vehicle_id, item)?;
                    let decode =
                        |d: &[u8]| codec::decode(d).map_err(|e| HistoryError::Corrupt(e.to_string()));
                    let (records, added) =
                        codec::merge(&bucket.vehicle_id, decode(&old.data)?, &decode(&bucket.data)?);
                    if added == 0 {
                        return Ok(old);
                    }
                    let merged = encode_bucket(
                        &self.config,
                        &bucket.tenant,
                        &bucket.vehicle_id,
                        bucket.start_ms,
                        &records,
                    );
                    (merged, Some(old.count))
                }
            };
            let put = self
                .client
                .put_item()
                .table_name(&self.history)
                .set_item(Some(Self::bucket_item(&merged)));
            let put = match condition {
                None => put.condition_expression("attribute_not_exists(pk)"),
                Some(count) => put
                    .condition_expression("#n = :n")
                    .expression_attribute_names("#n", "n")
                    .expression_attribute_values(":n", n(i64::from(count))),
            };
            match put.send().await {
                Ok(_) => return Ok(merged),
                Err(e) if super::tables::is_condition_failure(&e) => continue,
                Err(e) => return Err(err("PutItem", e)),
            }
        }
        Err(HistoryError::Conflict(format!(
            "bucket {} of {key} kept changing",
            bucket.start_ms
        )))
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
        let lo = after.map_or(from_ms, |a| a.saturating_add(1).max(from_ms));
        let mut page = BucketPage::default();
        if lo >= to_ms || limit == 0 {
            return Ok(page);
        }
        let now = chrono::Utc::now().timestamp();
        let mut start_key = None;
        loop {
            let want = i32::try_from(limit + 1 - page.buckets.len()).unwrap_or(i32::MAX);
            let range = (self.history.as_str(), "bucket", lo, to_ms);
            let out = self
                .query_range(tenant, vehicle_id, range, Some(want), start_key)
                .await?;
            for item in out.items() {
                let bucket = Self::bucket_of(tenant, vehicle_id, item)?;
                // TTL deletion runs late (up to days): expired items are filtered here.
                if bucket.expires_at <= now {
                    continue;
                }
                if page.buckets.len() == limit {
                    page.next_after = page.buckets.last().map(|b| b.start_ms);
                    return Ok(page);
                }
                page.buckets.push(bucket);
            }
            match out.last_evaluated_key() {
                Some(k) => start_key = Some(k.clone()),
                None => return Ok(page),
            }
        }
    }

    async fn latest_bucket(
        &self,
        tenant: &TenantId,
        vehicle_id: &VehicleId,
    ) -> Result<Option<i64>, HistoryError> {
        let out = self
            .client
            .query()
            .table_name(&self.history)
            .key_condition_expression("pk = :p")
            .expression_attribute_values(":p", AttributeValue::S(pk(tenant, vehicle_id)))
            .scan_index_forward(false)
            .limit(1)
            .projection_expression("#b")
            .expression_attribute_names("#b", "bucket")
            .consistent_read(true)
            .send()
            .await
            .map_err(|e| err("Query", e))?;
        out.items().first().map(|i| get_n(i, "bucket")).transpose()
    }

    async fn put_aggregate(&self, a: &HourAggregate) -> Result<(), HistoryError> {
        let signals = serde_json::to_string(&a.signals).map_err(|e| HistoryError::Corrupt(e.to_string()))?;
        self.client
            .put_item()
            .table_name(&self.aggregates)
            .item("pk", AttributeValue::S(pk(&a.tenant, &a.vehicle_id)))
            .item("hour", n(a.hour_ms))
            .item("count", n(a.count as i64))
            .item("signals", AttributeValue::S(signals))
            .item("expires_at", n(a.expires_at))
            .send()
            .await
            .map_err(|e| err("PutItem", e))?;
        Ok(())
    }

    async fn query_aggregates(
        &self,
        tenant: &TenantId,
        vehicle_id: &VehicleId,
        from_ms: i64,
        to_ms: i64,
        limit: usize,
    ) -> Result<Vec<HourAggregate>, HistoryError> {
        let mut out_rows = Vec::new();
        if from_ms >= to_ms {
            return Ok(out_rows);
        }
        let now = chrono::Utc::now().timestamp();
        let mut start_key = None;
        loop {
            let range = (self.aggregates.as_str(), "hour", from_ms, to_ms);
            let out = self
                .query_range(tenant, vehicle_id, range, None, start_key)
                .await?;
            for item in out.items() {
                let expires_at = get_n(item, "expires_at").unwrap_or(i64::MAX);
                if expires_at <= now {
                    continue;
                }
                let signals: BTreeMap<String, SignalStats> = item
                    .get("signals")
                    .and_then(|v| v.as_s().ok())
                    .map(|s| serde_json::from_str(s))
                    .transpose()
                    .map_err(|e| HistoryError::Corrupt(e.to_string()))?
                    .unwrap_or_default();
                out_rows.push(HourAggregate {
                    tenant: tenant.clone(),
                    vehicle_id: vehicle_id.clone(),
                    hour_ms: get_n(item, "hour")?,
                    count: get_n(item, "count")? as u64,
                    signals,
                    expires_at,
                });
                if out_rows.len() == limit {
                    return Ok(out_rows);
                }
            }
            match out.last_evaluated_key() {
                Some(k) => start_key = Some(k.clone()),
                None => return Ok(out_rows),
            }
        }
    }
}
