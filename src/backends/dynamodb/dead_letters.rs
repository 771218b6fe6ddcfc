//! [`DynamoDbDeadLetters`]: the [`DeadLetterSink`] on the `dead_letters` table
//! (docs/data-model.md).
//!
//! | attribute | type | content |
//! |---|---|---|
//! | `pk` | S, hash | `<tenant>#<yyyymmdd>#<s>`, `s` = content hash mod 16 (`_unknown` when no tenant) |
//! | `sk` | S, range | `<ms, 13 digits>#<hash, 16 hex>` |
//! | `reason` | S | reason label (`undecodable`, `unprovisioned`, …) |
//! | `detail` | S | the reason in words |
//! | `source` | M | `stream`, `shard`, `sequence` (absent when unknown); absent for letters not read from a stream |
//! | `partition_key` | S | the record's partition key (vehicle id) |
//! | `payload` | B | the record body when ≤ 64 KiB, or its first 64 KiB when cut; absent when `payload_object` is set |
//! | `payload_object` | S | the S3 key of the whole body when it is over 64 KiB and a bucket is configured: `<archive.prefix>dead-letters/<letter id>/<received_at ms>` |
//! | `payload_bytes` | N | the body's full size (more than `payload` when cut) |
//! | `received_at` | N | ms |
//! | `expires_at` | N | TTL, seconds: `received_at` + 30 days |
//!
//! Large payloads: an item holds at most 400 KB, a payload up to 1 MiB (a Kinesis record,
//! a Tesla frame of 1,000,000 bytes). With `dynamodb.dead_letter_payloads =
//! "archive_bucket"` a payload over [`MAX_INLINE_PAYLOAD`] is one PutObject in the
//! archive's bucket, written before the item, so an item never names a missing object.
//! The key carries the letter's `received_at`, so each version of a letter has its own
//! object: a delete removes the object of the item it deleted, never that of a letter
//! rewritten under the same id meanwhile (a replayed record dead-lettered again). An
//! object without item (the item write failed, a letter rewritten, an object delete
//! failed) is harmless; the bucket's lifecycle rule expires `dead-letters/` after the
//! letters' 30 days. With `truncate` (no bucket) the payload keeps its first 64 KiB, with
//! a warning and [`DEAD_LETTERS_TRUNCATED_TOTAL`], and the letter reads back `truncated`.
//!
//! - `put`: the large payloads' PutObjects (≤ 8 at once; any failure fails the put before
//!   any item is written, and the writer retries its batch), then BatchWriteItem, 25 items
//!   per call, `UnprocessedItems` retried with backoff; still unprocessed after 8 attempts
//!   → error (the writer retries its batch). A rewrite of the same letter is the same key.
//! - `list`: 16 Queries (one per shard of the tenant's day), newest first, each reading
//!   until it has `limit` matching items, merged by `sk`: any letter of the global first
//!   `limit` is among its shard's first `limit`. Expired items that DynamoDB's TTL has not
//!   deleted yet are filtered out. Payloads kept in S3 are not read (listings show sizes
//!   only): such letters come back with an empty `payload`.
//! - `get`: consistent GetItem, then GetObject of `payload_object`; `delete`: DeleteItem
//!   (`ReturnValues=ALL_OLD` tells whether there was one and names its object), then
//!   DeleteObject; `delete_unchanged` (after a replay): the same, conditioned on
//!   `received_at = :read`, so a letter rewritten meanwhile stays.

use std::time::Duration;

use async_trait::async_trait;
use aws_sdk_dynamodb::error::DisplayErrorContext;
use aws_sdk_dynamodb::primitives::Blob;
use aws_sdk_dynamodb::types::{AttributeValue, PutRequest, ReturnValue, ScalarAttributeType, WriteRequest};
use bytes::Bytes;
use chrono::{DateTime, TimeZone, Utc};
use futures_util::future::try_join_all;
use futures_util::{StreamExt, TryStreamExt};
use tracing::warn;

use fleetwire_actors::producer::dead_letter::{DEAD_LETTER_SHARDS, MAX_INLINE_PAYLOAD, dedupe_letters};
use fleetwire_actors::producer::{
    DeadLetter, DeadLetterError, DeadLetterId, DeadLetterPage, DeadLetterQuery, DeadLetterSink,
    DeadLetterSource, StoredDeadLetter,
};
use fleetwire_actors::telemetry::DEAD_LETTERS_TRUNCATED_TOTAL;

use super::tables::{self, Item, Table, TableSpec};
use super::{DynamoDbConfig, DynamoDbError};
use crate::backends::embedded::dead_letters::{count_by_reason, record_stored};
use crate::backends::s3::S3Bucket;

/// Logical name of the table.
pub const DEAD_LETTERS_TABLE: &str = "dead_letters";

/// Where large payloads go under the bucket's prefix (terraform: the IAM grant and the
/// lifecycle rule of the archive bucket name the same prefix).
pub const DEAD_LETTER_OBJECTS: &str = "dead-letters/";
/// PutObjects of one `put` at once (a batch may hold up to 500 letters of 1 MiB).
const OBJECT_PUTS_AT_ONCE: usize = 8;
const PAYLOAD_OBJECT: &str = "payload_object";

const PK: &str = "pk";
const SK: &str = "sk";
const EXPIRES_AT: &str = "expires_at";
/// Most items in one BatchWriteItem (DynamoDB's limit).
const BATCH_WRITE_MAX: usize = 25;
/// Attempts at a batch's unprocessed items before giving up.
const BATCH_WRITE_ATTEMPTS: u32 = 8;
/// First pause before retrying unprocessed items; doubles per attempt, full jitter.
const BATCH_WRITE_BACKOFF: Duration = Duration::from_millis(25);

/// The table: hash `pk`, range `sk`, TTL on `expires_at`.
const SPEC: TableSpec = TableSpec {
    hash: PK,
    range: Some((SK, ScalarAttributeType::S)),
    index: None,
    ttl: Some(EXPIRES_AT),
};

/// The DynamoDB dead-letter store. Cheap to clone.
#[derive(Debug, Clone)]
pub struct DynamoDbDeadLetters {
    /// The table and the client that reaches it.
    table: Table,
    /// Where payloads over [`MAX_INLINE_PAYLOAD`] go; `None`: they are cut.
    overflow: Option<S3Bucket>,
}

fn failed(op: &str, e: impl std::fmt::Display) -> DeadLetterError {
    DeadLetterError(format!("{op}: {e}"))
}

fn s(v: impl Into<String>) -> AttributeValue {
    AttributeValue::S(v.into())
}

fn n(v: impl ToString) -> AttributeValue {
    AttributeValue::N(v.to_string())
}

/// The partition key of a letter: tenant, day and write shard.
pub fn partition_key(id: &DeadLetterId) -> String {
    format!("{}#{}#{}", id.tenant, id.day(), id.shard())
}

impl DynamoDbDeadLetters {
    /// Builds the client from `config` (table `<table_prefix>dead_letters`) and, with
    /// `create_tables_if_missing`, creates the table. Payloads over [`MAX_INLINE_PAYLOAD`]
    /// go to `overflow` (objects under its prefix + [`DEAD_LETTER_OBJECTS`]), or are cut
    /// when it is `None`.
    pub async fn connect(config: &DynamoDbConfig, overflow: Option<S3Bucket>) -> Result<Self, DynamoDbError> {
        let table = Table::connect(config, config.table(DEAD_LETTERS_TABLE), &SPEC).await?;
        Ok(Self { table, overflow })
    }

    /// The table's name.
    pub fn table(&self) -> &str {
        &self.table.name
    }

    /// Deletes the table (tests, local tear-down).
    pub async fn delete_table(&self) -> Result<(), DynamoDbError> {
        self.table.delete().await
    }

    fn key(id: &DeadLetterId) -> Item {
        Item::from([(PK.into(), s(partition_key(id))), (SK.into(), s(id.sort_key()))])
    }

    /// Writes `requests` (≤ 25) with BatchWriteItem, retrying unprocessed items.
    async fn batch_write(&self, requests: Vec<WriteRequest>) -> Result<(), DeadLetterError> {
        let mut pending = requests;
        let mut attempt = 0;
        while !pending.is_empty() {
            if attempt > 0 {
                if attempt >= BATCH_WRITE_ATTEMPTS {
                    return Err(DeadLetterError(format!(
                        "BatchWriteItem on {}: {} items still unprocessed after {attempt} attempts",
                        self.table.name,
                        pending.len()
                    )));
                }
                let cap = BATCH_WRITE_BACKOFF * 2u32.pow(attempt - 1);
                tokio::time::sleep(cap.mul_f64(rand::random::<f64>())).await;
            }
            attempt += 1;
            let out = self
                .table
                .client
                .batch_write_item()
                .request_items(&self.table.name, std::mem::take(&mut pending))
                .send()
                .await
                .map_err(|e| failed("BatchWriteItem", DisplayErrorContext(&e)))?;
            if let Some(mut unprocessed) = out.unprocessed_items
                && let Some(rest) = unprocessed.remove(&self.table.name)
            {
                pending = rest;
            }
        }
        Ok(())
    }

    /// The newest `want` matching letters of one shard of a tenant's day.
    async fn query_shard(
        &self,
        pk: String,
        query: &DeadLetterQuery,
        want: usize,
    ) -> Result<Vec<StoredDeadLetter>, DeadLetterError> {
        let now_s = Utc::now().timestamp();
        let mut found = Vec::new();
        let mut start: Option<Item> = None;
        loop {
            let mut condition = "pk = :pk".to_owned();
            let mut req = self
                .table
                .client
                .query()
                .table_name(&self.table.name)
                .scan_index_forward(false)
                .limit(want as i32)
                .expression_attribute_values(":pk", s(pk.clone()))
                .expression_attribute_values(":now", n(now_s))
                .set_exclusive_start_key(start.take());
            if let Some(after) = query.after {
                condition.push_str(" AND sk < :after");
                req = req.expression_attribute_values(":after", s(after.sort_key()));
            }
            let mut filter = "expires_at > :now".to_owned();
            if let Some(reason) = &query.reason {
                filter.push_str(" AND reason = :reason");
                req = req.expression_attribute_values(":reason", s(reason.clone()));
            }
            let out = req
                .key_condition_expression(condition)
                .filter_expression(filter)
                .send()
                .await
                .map_err(|e| failed("Query", DisplayErrorContext(&e)))?;
            for item in out.items.unwrap_or_default() {
                found.push(decode(&item)?);
                if found.len() == want {
                    return Ok(found);
                }
            }
            match out.last_evaluated_key {
                Some(key) if !key.is_empty() => start = Some(key),
                _ => return Ok(found),
            }
        }
    }
}

/// The object name of a large payload under the bucket's prefix: one per version of the
/// letter (see the module doc).
fn object_name(letter: &StoredDeadLetter) -> String {
    format!(
        "{DEAD_LETTER_OBJECTS}{}/{}",
        letter.id,
        letter.received_at.timestamp_millis()
    )
}

/// The item of `letter`; with `object` (the payload's full S3 key) instead of `payload`.
fn encode(letter: &StoredDeadLetter, object: Option<&str>) -> Item {
    let id = &letter.id;
    let mut item = DynamoDbDeadLetters::key(id);
    item.insert("tenant_id".into(), s(id.tenant.as_str()));
    item.insert("reason".into(), s(letter.reason.clone()));
    item.insert("detail".into(), s(letter.detail.clone()));
    item.insert("partition_key".into(), s(letter.partition_key.clone()));
    match object {
        Some(key) => item.insert(PAYLOAD_OBJECT.into(), s(key)),
        None => item.insert(
            "payload".into(),
            AttributeValue::B(Blob::new(letter.payload.to_vec())),
        ),
    };
    item.insert("payload_bytes".into(), n(letter.payload_bytes));
    item.insert("received_at".into(), n(letter.received_at.timestamp_millis()));
    item.insert(EXPIRES_AT.into(), n(letter.expires_at.timestamp()));
    if let Some(source) = &letter.source {
        let mut m = Item::from([
            ("stream".into(), s(source.stream.clone())),
            ("shard".into(), s(source.shard.clone())),
        ]);
        if let Some(seq) = &source.sequence {
            m.insert("sequence".into(), s(seq.clone()));
        }
        item.insert("source".into(), AttributeValue::M(m));
    }
    item
}

/// The letter of `item`, without its payload when that is in S3 (`payload` empty).
fn decode(item: &Item) -> Result<StoredDeadLetter, DeadLetterError> {
    let corrupt = |what: &str| DeadLetterError(format!("dead_letters item: {what}"));
    let text = |m: &Item, k: &str| -> Result<String, DeadLetterError> {
        match m.get(k) {
            Some(AttributeValue::S(v)) => Ok(v.clone()),
            _ => Err(corrupt(&format!("{k} missing"))),
        }
    };
    let number = |k: &str| -> Result<i64, DeadLetterError> {
        match item.get(k) {
            Some(AttributeValue::N(v)) => v.parse().map_err(|_| corrupt(&format!("{k} not an integer"))),
            _ => Err(corrupt(&format!("{k} missing"))),
        }
    };
    let pk = text(item, PK)?;
    let tenant = pk.split('#').next().unwrap_or_default();
    let sk = text(item, SK)?;
    let id: DeadLetterId = format!("{tenant}.{}", sk.replacen('#', ".", 1))
        .parse()
        .map_err(|e: String| corrupt(&e))?;
    let source = match item.get("source") {
        Some(AttributeValue::M(m)) => Some(DeadLetterSource {
            stream: text(m, "stream")?,
            shard: text(m, "shard")?,
            sequence: text(m, "sequence").ok(),
        }),
        _ => None,
    };
    let (payload, inline) = match (item.get("payload"), payload_object(item)) {
        (Some(AttributeValue::B(b)), None) => (Bytes::copy_from_slice(b.as_ref()), true),
        (None, Some(_)) => (Bytes::new(), false),
        _ => return Err(corrupt("payload or payload_object missing")),
    };
    let payload_bytes = number("payload_bytes")? as u64;
    let ms = |v: i64| -> DateTime<Utc> { Utc.timestamp_millis_opt(v).single().unwrap_or_default() };
    Ok(StoredDeadLetter {
        id,
        reason: text(item, "reason")?,
        detail: text(item, "detail")?,
        source,
        partition_key: text(item, "partition_key")?,
        // An inline payload shorter than its size was cut (the object holds it all).
        truncated: inline && (payload.len() as u64) < payload_bytes,
        payload,
        payload_bytes,
        received_at: ms(number("received_at")?),
        expires_at: ms(number(EXPIRES_AT)? * 1000),
    })
}

/// The S3 key of the item's payload, when it is in S3.
fn payload_object(item: &Item) -> Option<&str> {
    match item.get(PAYLOAD_OBJECT) {
        Some(AttributeValue::S(key)) => Some(key),
        _ => None,
    }
}

impl DynamoDbDeadLetters {
    /// The item of `id`, read consistently.
    async fn get_item(&self, id: &DeadLetterId) -> Result<Option<Item>, DeadLetterError> {
        self.table
            .get_consistent(Self::key(id))
            .await
            .map_err(|e| failed("GetItem", DisplayErrorContext(&e)))
    }

    /// The payload object `key`; `None` when it is gone.
    async fn read_object(&self, key: &str) -> Result<Option<Bytes>, DeadLetterError> {
        let bucket = self.overflow.as_ref().ok_or_else(|| {
            DeadLetterError(format!(
                "the payload is in S3 object {key}, but no bucket is configured \
                 (dynamodb.dead_letter_payloads)"
            ))
        })?;
        bucket
            .get(key)
            .await
            .map_err(|e| failed(&format!("GetObject {key}"), e))
    }

    /// Deletes the payload object of a deleted item, if it had one. A failure leaves an
    /// orphan object, which the lifecycle rule expires: logged, not an error.
    async fn delete_object_of(&self, old: Option<&Item>) {
        let Some(key) = old.and_then(payload_object) else {
            return;
        };
        let result = match &self.overflow {
            Some(bucket) => bucket.delete(key).await,
            None => Err("no bucket is configured (dynamodb.dead_letter_payloads)".to_owned()),
        };
        if let Err(e) = result {
            warn!(object = key, error = %e, "A deleted dead letter's payload object was not deleted; the bucket's lifecycle rule expires it.");
        }
    }
}

#[async_trait]
impl DeadLetterSink for DynamoDbDeadLetters {
    async fn put(&self, letters: Vec<DeadLetter>) -> Result<(), DeadLetterError> {
        let now = Utc::now();
        let mut stored = Vec::new();
        let mut uploads = Vec::new();
        for (_, letter) in dedupe_letters(letters) {
            let mut letter = letter.into_stored(now);
            let mut object = None;
            if letter.payload.len() > MAX_INLINE_PAYLOAD {
                match &self.overflow {
                    Some(bucket) => {
                        let key = object_name(&letter);
                        object = Some(bucket.object_key(&key));
                        uploads.push((key, letter.payload.clone()));
                    }
                    None => {
                        warn!(id = %letter.id, reason = %letter.reason, payload_bytes = letter.payload_bytes,
                            "A dead letter's payload was cut to its first 64 KiB: no bucket for large payloads \
                             (dynamodb.dead_letter_payloads = \"truncate\"); it cannot be replayed.");
                        metrics::counter!(DEAD_LETTERS_TRUNCATED_TOTAL, "reason" => letter.reason.clone())
                            .increment(1);
                        letter.cut_to(MAX_INLINE_PAYLOAD);
                    }
                }
            }
            stored.push((letter, object));
        }
        // Objects first: an item is written only once the object it names is stored.
        if let Some(bucket) = &self.overflow {
            futures_util::stream::iter(uploads)
                .map(|(key, body)| async move {
                    bucket
                        .put(&key, "application/octet-stream", body)
                        .await
                        .map_err(|e| failed(&format!("PutObject {}", bucket.object_key(&key)), e))
                })
                .buffer_unordered(OBJECT_PUTS_AT_ONCE)
                .try_collect::<()>()
                .await?;
        }
        for chunk in stored.chunks(BATCH_WRITE_MAX) {
            let requests = chunk
                .iter()
                .map(|(letter, object)| {
                    let put = PutRequest::builder()
                        .set_item(Some(encode(letter, object.as_deref())))
                        .build()
                        .map_err(|e| failed("PutRequest", e))?;
                    Ok(WriteRequest::builder().put_request(put).build())
                })
                .collect::<Result<Vec<_>, DeadLetterError>>()?;
            self.batch_write(requests).await?;
        }
        let letters: Vec<StoredDeadLetter> = stored.into_iter().map(|(l, _)| l).collect();
        record_stored(count_by_reason(&letters));
        Ok(())
    }

    async fn list(&self, query: &DeadLetterQuery) -> Result<DeadLetterPage, DeadLetterError> {
        let limit = query.limit.max(1);
        let day = query.day.format("%Y%m%d");
        let shards = (0..DEAD_LETTER_SHARDS)
            .map(|shard| self.query_shard(format!("{}#{day}#{shard}", query.tenant), query, limit + 1));
        let mut letters: Vec<StoredDeadLetter> = try_join_all(shards).await?.into_iter().flatten().collect();
        letters.sort_by_key(|l| std::cmp::Reverse(l.id.cursor()));
        let more = letters.len() > limit;
        letters.truncate(limit);
        let next = more.then(|| letters.last().map(|l| l.id.cursor())).flatten();
        Ok(DeadLetterPage { letters, next })
    }

    async fn get(&self, id: &DeadLetterId) -> Result<Option<StoredDeadLetter>, DeadLetterError> {
        // Twice at most: an object found missing means the letter was deleted or rewritten
        // (new object) between the two reads, and the item read again says which.
        let mut missing = None;
        for _ in 0..2 {
            let Some(item) = self.get_item(id).await? else {
                return Ok(None);
            };
            let mut letter = decode(&item)?;
            if letter.expires_at <= Utc::now() {
                return Ok(None);
            }
            let Some(key) = payload_object(&item) else {
                return Ok(Some(letter));
            };
            match self.read_object(key).await? {
                Some(body) => {
                    letter.payload = body;
                    return Ok(Some(letter));
                }
                None => missing = Some(key.to_owned()),
            }
        }
        Err(DeadLetterError(format!(
            "dead letter {id}: its payload object {} is missing",
            missing.unwrap_or_default()
        )))
    }

    async fn delete(&self, id: &DeadLetterId) -> Result<bool, DeadLetterError> {
        let out = self
            .table
            .client
            .delete_item()
            .table_name(&self.table.name)
            .set_key(Some(Self::key(id)))
            .return_values(ReturnValue::AllOld)
            .send()
            .await
            .map_err(|e| failed("DeleteItem", DisplayErrorContext(&e)))?;
        let old = out.attributes.filter(|a| !a.is_empty());
        self.delete_object_of(old.as_ref()).await;
        Ok(old.is_some())
    }

    async fn delete_unchanged(&self, letter: &StoredDeadLetter) -> Result<bool, DeadLetterError> {
        let result = self
            .table
            .client
            .delete_item()
            .table_name(&self.table.name)
            .set_key(Some(Self::key(&letter.id)))
            .condition_expression("received_at = :r")
            .expression_attribute_values(":r", n(letter.received_at.timestamp_millis()))
            .return_values(ReturnValue::AllOld)
            .send()
            .await;
        match result {
            Ok(out) => {
                self.delete_object_of(out.attributes.as_ref()).await;
                Ok(true)
            }
            Err(e) if tables::is_condition_failure(&e) => Ok(false),
            Err(e) => Err(failed("DeleteItem", DisplayErrorContext(&e))),
        }
    }
}
