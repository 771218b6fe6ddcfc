//! What every DynamoDB adapter shares: its [`Table`] (client and name, created with its
//! keys, index and TTL for local development and tests, waited for, deleted), and mapping
//! SDK errors onto [`StoreError`].

use std::time::{Duration, Instant};

use aws_sdk_dynamodb::Client;
use aws_sdk_dynamodb::error::{DisplayErrorContext, ProvideErrorMetadata, SdkError};
use aws_sdk_dynamodb::types::{
    AttributeDefinition, BillingMode, GlobalSecondaryIndex, KeySchemaElement, KeyType, Projection,
    ProjectionType, ScalarAttributeType, TableStatus, TimeToLiveSpecification,
};

use aws_sdk_dynamodb::types::AttributeValue;
use fleetwire_actors::model::{TenantId, VehicleId};
use fleetwire_actors::ports::StoreError;

use super::{DynamoDbConfig, DynamoDbError};

/// How long table creation waits for ACTIVE; AWS usually takes seconds, DynamoDB Local a
/// fraction of one.
const ACTIVE_TIMEOUT: Duration = Duration::from_secs(300);
/// Pause between DescribeTable polls while waiting for ACTIVE.
const ACTIVE_POLL: Duration = Duration::from_millis(100);

/// A KEYS_ONLY global secondary index with a string hash and range key.
#[derive(Debug, Clone, Copy)]
pub(crate) struct KeysOnlyIndex {
    /// Index name.
    pub name: &'static str,
    /// Its partition key (S).
    pub hash: &'static str,
    /// Its sort key (S).
    pub range: &'static str,
}

/// The shape of a table as [`Table::create_if_missing`] creates it (PAY_PER_REQUEST).
#[derive(Debug, Clone)]
pub(crate) struct TableSpec {
    /// The table's partition key (S).
    pub hash: &'static str,
    /// The table's sort key and its type, if it has one.
    pub range: Option<(&'static str, ScalarAttributeType)>,
    /// The one index, if any.
    pub index: Option<KeysOnlyIndex>,
    /// The attribute (epoch seconds) DynamoDB expires items by, if any.
    pub ttl: Option<&'static str>,
}

impl TableSpec {
    /// The attribute definitions of every key of the table and its index, each once.
    fn key_attributes(&self) -> Vec<AttributeDefinition> {
        let mut keys = vec![(self.hash, ScalarAttributeType::S)];
        keys.extend(self.range.clone());
        if let Some(index) = self.index {
            keys.extend([index.hash, index.range].map(|k| (k, ScalarAttributeType::S)));
        }
        let mut defined = Vec::new();
        let mut attributes = Vec::new();
        for (name, kind) in keys {
            if !defined.contains(&name) {
                defined.push(name);
                attributes.push(
                    AttributeDefinition::builder()
                        .attribute_name(name)
                        .attribute_type(kind)
                        .build()
                        .expect("name and type are set"),
                );
            }
        }
        attributes
    }
}

fn admin_err(table: &str, op: &str, message: impl std::fmt::Display) -> DynamoDbError {
    DynamoDbError::Admin {
        table: table.to_owned(),
        message: format!("{op}: {message}"),
    }
}

fn key(name: &str, key_type: KeyType) -> KeySchemaElement {
    KeySchemaElement::builder()
        .attribute_name(name)
        .key_type(key_type)
        .build()
        .expect("name and type are set")
}

/// One DynamoDB table and the client that reaches it: what every adapter wraps, with the
/// administration (create for local development, wait, delete) they all share.
#[derive(Debug, Clone)]
pub(crate) struct Table {
    /// The SDK client; cheap to clone (it pools its connections).
    pub client: Client,
    /// The physical table name.
    pub name: String,
}

impl Table {
    /// The item under `key`, read consistently (a write acknowledged a moment ago is seen),
    /// or `None`. The SDK's error is returned as is, for each store to classify.
    pub async fn get_consistent(
        &self,
        key: Item,
    ) -> Result<Option<Item>, SdkError<aws_sdk_dynamodb::operation::get_item::GetItemError>> {
        let out = self
            .client
            .get_item()
            .table_name(&self.name)
            .set_key(Some(key))
            .consistent_read(true)
            .send()
            .await?;
        Ok(out.item)
    }

    /// Validates `config`, builds its client for the table `name` and, with
    /// `create_tables_if_missing`, creates the table as `spec` says. Without it no call is
    /// made: a missing table shows up at the first call (and in `/readyz`).
    pub async fn connect(
        config: &DynamoDbConfig,
        name: String,
        spec: &TableSpec,
    ) -> Result<Self, DynamoDbError> {
        config.validate()?;
        let table = Self {
            client: config.client().await,
            name,
        };
        if config.create_tables_if_missing {
            table.create_if_missing(spec).await?;
        }
        Ok(table)
    }

    /// Creates the table unless it exists, waits until it is ACTIVE and, when it was just
    /// created here or by a racing node, enables its TTL. Another node creating it at the
    /// same time is fine. Production tables come from terraform
    /// (`terraform/modules/dynamodb`), which holds the same keys and indexes
    /// (`terraform/tests/test_consistency.py` compares them with docs/data-model.md).
    pub async fn create_if_missing(&self, spec: &TableSpec) -> Result<(), DynamoDbError> {
        let name = &self.name;
        match self.client.describe_table().table_name(name).send().await {
            Ok(_) => return self.wait_until_active(ACTIVE_TIMEOUT).await,
            Err(e) if e.code() == Some("ResourceNotFoundException") => {}
            Err(e) => return Err(admin_err(name, "DescribeTable", DisplayErrorContext(&e))),
        }
        let mut req = self
            .client
            .create_table()
            .table_name(name)
            .set_attribute_definitions(Some(spec.key_attributes()))
            .key_schema(key(spec.hash, KeyType::Hash))
            .billing_mode(BillingMode::PayPerRequest);
        if let Some((range, _)) = spec.range {
            req = req.key_schema(key(range, KeyType::Range));
        }
        if let Some(index) = spec.index {
            let gsi = GlobalSecondaryIndex::builder()
                .index_name(index.name)
                .key_schema(key(index.hash, KeyType::Hash))
                .key_schema(key(index.range, KeyType::Range))
                .projection(
                    Projection::builder()
                        .projection_type(ProjectionType::KeysOnly)
                        .build(),
                )
                .build()
                .map_err(|e| admin_err(name, "CreateTable", e))?;
            req = req.global_secondary_indexes(gsi);
        }
        match req.send().await {
            Ok(_) => tracing::info!(table = %name, "Created a DynamoDB table."),
            // Someone else created it between our describe and create.
            Err(e) if e.code() == Some("ResourceInUseException") => {}
            Err(e) => return Err(admin_err(name, "CreateTable", DisplayErrorContext(&e))),
        }
        self.wait_until_active(ACTIVE_TIMEOUT).await?;
        match spec.ttl {
            Some(attribute) => self.enable_ttl(attribute).await,
            None => Ok(()),
        }
    }

    /// Turns on TTL expiry by `attribute`; already on (another node won the race) is fine.
    async fn enable_ttl(&self, attribute: &str) -> Result<(), DynamoDbError> {
        let ttl = TimeToLiveSpecification::builder()
            .attribute_name(attribute)
            .enabled(true)
            .build()
            .expect("name and flag are set");
        let result = self
            .client
            .update_time_to_live()
            .table_name(&self.name)
            .time_to_live_specification(ttl)
            .send()
            .await;
        match result {
            Err(e) if !DisplayErrorContext(&e).to_string().contains("already enabled") => {
                Err(admin_err(&self.name, "UpdateTimeToLive", DisplayErrorContext(&e)))
            }
            _ => Ok(()),
        }
    }

    /// Polls DescribeTable until the table is ACTIVE (UPDATING counts too: it serves reads
    /// and writes). Fails at once when it is being deleted.
    pub async fn wait_until_active(&self, timeout: Duration) -> Result<(), DynamoDbError> {
        let table = self.name.as_str();
        let started = Instant::now();
        loop {
            let out = self
                .client
                .describe_table()
                .table_name(table)
                .send()
                .await
                .map_err(|e| admin_err(table, "DescribeTable", DisplayErrorContext(&e)))?;
            let status = out.table().and_then(|t| t.table_status()).cloned();
            let not_active = |status: Option<TableStatus>| DynamoDbError::NotActive {
                table: table.to_owned(),
                status: status.map_or_else(|| "unknown".into(), |s| s.as_str().to_owned()),
                waited: started.elapsed(),
            };
            match status {
                Some(TableStatus::Active | TableStatus::Updating) => return Ok(()),
                Some(TableStatus::Deleting) => return Err(not_active(status)),
                _ if started.elapsed() >= timeout => return Err(not_active(status)),
                _ => tokio::time::sleep(ACTIVE_POLL).await,
            }
        }
    }

    /// Deletes the table with everything in it (tests, local tear-down); does not wait.
    pub async fn delete(&self) -> Result<(), DynamoDbError> {
        self.client
            .delete_table()
            .table_name(&self.name)
            .send()
            .await
            .map_err(|e| admin_err(&self.name, "DeleteTable", DisplayErrorContext(&e)))?;
        Ok(())
    }
}

/// Error codes DynamoDB uses when a table or the account is over its capacity; the SDK
/// already retried them (standard mode, 3 attempts) before we see them.
const THROTTLING_CODES: [&str; 4] = [
    "ProvisionedThroughputExceededException",
    "ThrottlingException",
    "RequestLimitExceeded",
    "TransactionConflictException",
];

/// Whether a failed call was a failed condition (the expected "no" of a conditional write).
pub(crate) fn is_condition_failure<E: ProvideErrorMetadata>(err: &SdkError<E>) -> bool {
    err.as_service_error()
        .is_some_and(|e| e.code() == Some("ConditionalCheckFailedException"))
}

/// Maps any other failure: throttling → [`StoreError::Throttled`] (the caller backs off and
/// the shard checkpoint waits), everything else → [`StoreError::Unavailable`] (5xx,
/// timeouts, connection errors, and also a missing table or access errors, which need an
/// operator: callers keep retrying while `/readyz` reports the store down).
pub(crate) fn store_error<E>(op: &str, err: SdkError<E>) -> StoreError
where
    E: ProvideErrorMetadata + std::error::Error + Send + Sync + 'static,
{
    let throttled = err
        .as_service_error()
        .and_then(|e| e.code())
        .is_some_and(|code| THROTTLING_CODES.contains(&code));
    let message = format!("{op}: {}", DisplayErrorContext(&err));
    if throttled {
        StoreError::Throttled(message)
    } else {
        StoreError::Unavailable(message)
    }
}

/// Most keys in one BatchGetItem (DynamoDB's limit).
const BATCH_GET_MAX_KEYS: usize = 100;
/// Attempts at a BatchGetItem's unprocessed keys before giving up with `Throttled`.
const BATCH_GET_ATTEMPTS: u32 = 8;
/// First pause before retrying unprocessed keys; doubles per attempt, with full jitter
/// (AWS recommends exponential backoff for `UnprocessedKeys`, *BatchGetItem* API reference).
const BATCH_GET_BACKOFF: Duration = Duration::from_millis(25);

/// One item attribute map.
pub(crate) type Item = std::collections::HashMap<String, AttributeValue>;

/// Reads `keys` of `table` with consistent BatchGetItem calls (100 keys each), retrying the
/// `UnprocessedKeys` DynamoDB hands back under load. Returns the items found, in no
/// particular order; missing keys are simply absent.
pub(crate) async fn batch_get(
    client: &Client,
    table: &str,
    keys: Vec<Item>,
) -> Result<Vec<Item>, StoreError> {
    use aws_sdk_dynamodb::types::KeysAndAttributes;
    let mut found = Vec::with_capacity(keys.len());
    for chunk in keys.chunks(BATCH_GET_MAX_KEYS) {
        let mut pending = chunk.to_vec();
        let mut attempt = 0;
        while !pending.is_empty() {
            if attempt > 0 {
                if attempt >= BATCH_GET_ATTEMPTS {
                    return Err(StoreError::Throttled(format!(
                        "BatchGetItem on {table}: {} keys still unprocessed after {attempt} attempts",
                        pending.len()
                    )));
                }
                let cap = BATCH_GET_BACKOFF * 2u32.pow(attempt - 1);
                tokio::time::sleep(cap.mul_f64(rand::random::<f64>())).await;
            }
            attempt += 1;
            let request = KeysAndAttributes::builder()
                .set_keys(Some(std::mem::take(&mut pending)))
                .consistent_read(true)
                .build()
                .map_err(|e| StoreError::Unavailable(format!("BatchGetItem request: {e}")))?;
            let out = client
                .batch_get_item()
                .request_items(table, request)
                .send()
                .await
                .map_err(|e| store_error("BatchGetItem", e))?;
            if let Some(mut responses) = out.responses
                && let Some(items) = responses.remove(table)
            {
                found.extend(items);
            }
            if let Some(mut unprocessed) = out.unprocessed_keys
                && let Some(rest) = unprocessed.remove(table)
            {
                pending = rest.keys;
            }
        }
    }
    Ok(found)
}

/// The tenant listing index of `vehicles` and `registry` (`tenant_id` / `vehicle_id`,
/// KEYS_ONLY).
pub(crate) const BY_TENANT: &str = "by_tenant";

/// The [`BY_TENANT`] index of both vehicle tables: a tenant's vehicles in id order.
pub(crate) const VEHICLES_BY_TENANT: KeysOnlyIndex = KeysOnlyIndex {
    name: BY_TENANT,
    hash: "tenant_id",
    range: "vehicle_id",
};

/// The table keys of at most `limit` items of `tenant` in the `by_tenant` index, with
/// `vehicle_id` after `after`, in vehicle-id order. `table_key` names the base table's
/// key attribute (projected into every KEYS_ONLY index entry).
pub(crate) async fn query_index_keys(
    client: &Client,
    table: &str,
    tenant: &TenantId,
    after: Option<&VehicleId>,
    limit: usize,
    table_key: &str,
) -> Result<Vec<Item>, StoreError> {
    let mut keys = Vec::new();
    let mut start: Option<Item> = None;
    while keys.len() < limit {
        let remaining = i32::try_from(limit - keys.len()).unwrap_or(i32::MAX);
        let mut req = client
            .query()
            .table_name(table)
            .index_name(BY_TENANT)
            .expression_attribute_names("#t", "tenant_id")
            .expression_attribute_values(":t", AttributeValue::S(tenant.as_str().to_owned()))
            .limit(remaining)
            .set_exclusive_start_key(start.take());
        req = match after {
            Some(after) => req
                .key_condition_expression("#t = :t AND #v > :after")
                .expression_attribute_names("#v", "vehicle_id")
                .expression_attribute_values(":after", AttributeValue::S(after.as_str().to_owned())),
            None => req.key_condition_expression("#t = :t"),
        };
        let out = req.send().await.map_err(|e| store_error("Query", e))?;
        for item in out.items() {
            let key = item
                .get(table_key)
                .cloned()
                .ok_or_else(|| StoreError::Corrupt(format!("{BY_TENANT} entry without {table_key}")))?;
            keys.push(Item::from([(table_key.to_owned(), key)]));
        }
        match out.last_evaluated_key {
            Some(key) if !key.is_empty() => start = Some(key),
            _ => break,
        }
    }
    keys.truncate(limit);
    Ok(keys)
}
