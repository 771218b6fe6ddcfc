//! What every DynamoDB adapter shares: creating a table (with its index) for local
//! development and tests, waiting for it to become ACTIVE, and mapping SDK errors onto
//! [`StoreError`].

use std::time::{Duration, Instant};

use aws_sdk_dynamodb::Client;
use aws_sdk_dynamodb::error::{DisplayErrorContext, ProvideErrorMetadata, SdkError};
use aws_sdk_dynamodb::types::{
    AttributeDefinition, BillingMode, GlobalSecondaryIndex, KeySchemaElement, KeyType, Projection,
    ProjectionType, ScalarAttributeType, TableStatus,
};

use fleetwire_actors::ports::StoreError;

use super::DynamoDbError;

/// How long table creation waits for ACTIVE; AWS usually takes seconds, DynamoDB Local a
/// fraction of one.
pub(crate) const ACTIVE_TIMEOUT: Duration = Duration::from_secs(300);
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

/// The shape of a table as `create_table_if_missing` creates it (PAY_PER_REQUEST).
#[derive(Debug, Clone, Copy)]
pub(crate) struct TableSpec<'a> {
    /// Physical table name.
    pub name: &'a str,
    /// The table's partition key (S); no sort key.
    pub hash: &'static str,
    /// The one index, if any.
    pub index: Option<KeysOnlyIndex>,
}

fn admin_err(table: &str, op: &str, message: impl std::fmt::Display) -> DynamoDbError {
    DynamoDbError::Admin {
        table: table.to_owned(),
        message: format!("{op}: {message}"),
    }
}

fn s_attr(name: &str) -> AttributeDefinition {
    AttributeDefinition::builder()
        .attribute_name(name)
        .attribute_type(ScalarAttributeType::S)
        .build()
        .expect("name and type are set")
}

fn key(name: &str, key_type: KeyType) -> KeySchemaElement {
    KeySchemaElement::builder()
        .attribute_name(name)
        .key_type(key_type)
        .build()
        .expect("name and type are set")
}

/// Creates the table unless it exists, then waits until it is ACTIVE. Another node
/// creating it at the same time is fine. Production tables come from terraform
/// (`terraform/modules/dynamodb`), which holds the same keys and indexes
/// (`terraform/tests/test_consistency.py` compares them with docs/data-model.md).
pub(crate) async fn create_table_if_missing(
    client: &Client,
    spec: TableSpec<'_>,
) -> Result<(), DynamoDbError> {
    let name = spec.name;
    match client.describe_table().table_name(name).send().await {
        Ok(_) => {}
        Err(e) if e.code() == Some("ResourceNotFoundException") => {
            let mut req = client
                .create_table()
                .table_name(name)
                .attribute_definitions(s_attr(spec.hash))
                .key_schema(key(spec.hash, KeyType::Hash))
                .billing_mode(BillingMode::PayPerRequest);
            if let Some(index) = spec.index {
                for attr in [index.hash, index.range] {
                    if attr != spec.hash {
                        req = req.attribute_definitions(s_attr(attr));
                    }
                }
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
        }
        Err(e) => return Err(admin_err(name, "DescribeTable", DisplayErrorContext(&e))),
    }
    wait_until_active(client, name, ACTIVE_TIMEOUT).await
}

/// Polls DescribeTable until the table is ACTIVE (UPDATING counts too: it serves reads
/// and writes). Fails at once when it is being deleted.
pub(crate) async fn wait_until_active(
    client: &Client,
    table: &str,
    timeout: Duration,
) -> Result<(), DynamoDbError> {
    let started = Instant::now();
    loop {
        let out = client
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

/// Deletes a table with everything in it (tests, local tear-down); does not wait.
pub(crate) async fn delete_table(client: &Client, table: &str) -> Result<(), DynamoDbError> {
    client
        .delete_table()
        .table_name(table)
        .send()
        .await
        .map_err(|e| admin_err(table, "DeleteTable", DisplayErrorContext(&e)))?;
    Ok(())
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
pub(crate) type Item = std::collections::HashMap<String, aws_sdk_dynamodb::types::AttributeValue>;

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
