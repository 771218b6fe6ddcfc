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
//! | `payload` | B | the record body, ≤ 64 KB |
//! | `payload_bytes` | N | the body's full size (more than `payload` when cut) |
//! | `received_at` | N | ms |
//! | `expires_at` | N | TTL, seconds: `received_at` + 30 days |
//!
//! - `put`: BatchWriteItem, 25 items per call, `UnprocessedItems` retried with backoff;
//!   still unprocessed after 8 attempts → error (the writer retries its batch). A rewrite
//!   of the same letter is the same key.
//! - `list`: 16 Queries (one per shard of the tenant's day), newest first, each reading
//!   until it has `limit` matching items, merged by `sk`: any letter of the global first
//!   `limit` is among its shard's first `limit`. Expired items that DynamoDB's TTL has not
//!   deleted yet are filtered out.
//! - `get`: consistent GetItem; `delete`: DeleteItem (`ReturnValues=ALL_OLD` tells whether
//!   there was one); `delete_unchanged` (after a replay): DeleteItem conditioned on
//!   `received_at = :read`, so a letter rewritten meanwhile stays.

use std::time::Duration;

use async_trait::async_trait;
use aws_sdk_dynamodb::error::DisplayErrorContext;
use aws_sdk_dynamodb::primitives::Blob;
use aws_sdk_dynamodb::types::{AttributeValue, PutRequest, ReturnValue, ScalarAttributeType, WriteRequest};
use bytes::Bytes;
use chrono::{DateTime, TimeZone, Utc};
use futures_util::future::try_join_all;

use fleetwire_actors::producer::dead_letter::{DEAD_LETTER_SHARDS, dedupe_letters};
use fleetwire_actors::producer::{
    DeadLetter, DeadLetterError, DeadLetterId, DeadLetterPage, DeadLetterQuery, DeadLetterSink,
    DeadLetterSource, StoredDeadLetter,
};

use super::tables::{self, Item, Table, TableSpec};
use super::{DynamoDbConfig, DynamoDbError};
use crate::backends::embedded::dead_letters::{count_by_reason, record_stored};

/// Logical name of the table.
pub const DEAD_LETTERS_TABLE: &str = "dead_letters";

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
    /// `create_tables_if_missing`, creates the table.
    pub async fn connect(config: &DynamoDbConfig) -> Result<Self, DynamoDbError> {
        let table = Table::connect(config, config.table(DEAD_LETTERS_TABLE), &SPEC).await?;
        Ok(Self { table })
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

fn encode(letter: &StoredDeadLetter) -> Item {
    let id = &letter.id;
    let mut item = DynamoDbDeadLetters::key(id);
    item.insert("tenant_id".into(), s(id.tenant.as_str()));
    item.insert("reason".into(), s(letter.reason.clone()));
    item.insert("detail".into(), s(letter.detail.clone()));
    item.insert("partition_key".into(), s(letter.partition_key.clone()));
    item.insert(
        "payload".into(),
        AttributeValue::B(Blob::new(letter.payload.to_vec())),
    );
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
    let payload = match item.get("payload") {
        Some(AttributeValue::B(b)) => Bytes::copy_from_slice(b.as_ref()),
        _ => return Err(corrupt("payload missing")),
    };
    let ms = |v: i64| -> DateTime<Utc> { Utc.timestamp_millis_opt(v).single().unwrap_or_default() };
    Ok(StoredDeadLetter {
        id,
        reason: text(item, "reason")?,
        detail: text(item, "detail")?,
        source,
        partition_key: text(item, "partition_key")?,
        payload,
        payload_bytes: number("payload_bytes")? as u64,
        received_at: ms(number("received_at")?),
        expires_at: ms(number(EXPIRES_AT)? * 1000),
    })
}

#[async_trait]
impl DeadLetterSink for DynamoDbDeadLetters {
    async fn put(&self, letters: Vec<DeadLetter>) -> Result<(), DeadLetterError> {
        let now = Utc::now();
        let stored: Vec<StoredDeadLetter> = dedupe_letters(letters)
            .into_iter()
            .map(|(_, l)| l.into_stored(now))
            .collect();
        for chunk in stored.chunks(BATCH_WRITE_MAX) {
            let requests = chunk
                .iter()
                .map(|letter| {
                    let put = PutRequest::builder()
                        .set_item(Some(encode(letter)))
                        .build()
                        .map_err(|e| failed("PutRequest", e))?;
                    Ok(WriteRequest::builder().put_request(put).build())
                })
                .collect::<Result<Vec<_>, DeadLetterError>>()?;
            self.batch_write(requests).await?;
        }
        record_stored(count_by_reason(&stored));
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
        let out = self
            .table
            .client
            .get_item()
            .table_name(&self.table.name)
            .set_key(Some(Self::key(id)))
            .consistent_read(true)
            .send()
            .await
            .map_err(|e| failed("GetItem", DisplayErrorContext(&e)))?;
        let Some(item) = out.item else { return Ok(None) };
        let letter = decode(&item)?;
        Ok((letter.expires_at > Utc::now()).then_some(letter))
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
        Ok(out.attributes.is_some_and(|a| !a.is_empty()))
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
            .send()
            .await;
        match result {
            Ok(_) => Ok(true),
            Err(e) if tables::is_condition_failure(&e) => Ok(false),
            Err(e) => Err(failed("DeleteItem", DisplayErrorContext(&e))),
        }
    }
}
