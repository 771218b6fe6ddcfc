//! [`DynamoDbApiKeyStore`]: ingest API keys on the `api_keys` table (docs/data-model.md).
//!
//! | attribute | type | content |
//! |---|---|---|
//! | `key_hash` | S, hash key | hex SHA-256 of the key (never the key) |
//! | `key_id` | S | public id; range key of the index `by_tenant` |
//! | `tenant_id` | S | owner; hash key of `by_tenant` |
//! | `name`, `created_by` | S | label, creator (token subject) |
//! | `created_at`, `revoked_at` | S | RFC 3339; `revoked_at` absent while valid |
//!
//! - `create`: PutItem conditioned on `attribute_not_exists(key_hash)`.
//! - `by_hash`: consistent GetItem (nodes cache it for ≤ 60 s).
//! - `list`: Query `by_tenant`, then BatchGetItem (works with a KEYS_ONLY index, as
//!   `create_tables_if_missing` makes it, and with terraform's ALL projection).
//! - `revoke`: Query `by_tenant` for the key id, then UpdateItem
//!   `SET revoked_at = if_not_exists(revoked_at, :at)` conditioned on the tenant.

use async_trait::async_trait;
use aws_sdk_dynamodb::types::{AttributeValue, ReturnValue};
use chrono::{DateTime, SecondsFormat, Utc};

use fleetwire_actors::model::TenantId;
use fleetwire_actors::ports::StoreError;

use super::tables::{self, Item, KeysOnlyIndex, Table, TableSpec, is_condition_failure, store_error};
use super::{DynamoDbConfig, DynamoDbError};
use crate::auth::api_keys::{ApiKeyRecord, ApiKeyStore};

/// Logical name of the API key table.
pub const API_KEYS_TABLE: &str = "api_keys";
const KEY_HASH: &str = "key_hash";
const KEY_ID: &str = "key_id";
const TENANT_ID: &str = "tenant_id";
const BY_TENANT: &str = "by_tenant";

/// The table: hash `key_hash`, index `by_tenant` (`tenant_id`, `key_id`).
const SPEC: TableSpec = TableSpec {
    hash: KEY_HASH,
    range: None,
    index: Some(KeysOnlyIndex {
        name: BY_TENANT,
        hash: TENANT_ID,
        range: KEY_ID,
    }),
    ttl: None,
};

/// The DynamoDB [`ApiKeyStore`]. Cheap to clone.
#[derive(Debug, Clone)]
pub struct DynamoDbApiKeyStore {
    /// The table and the client that reaches it.
    table: Table,
}

fn s(v: &str) -> AttributeValue {
    AttributeValue::S(v.to_owned())
}

fn time(t: &DateTime<Utc>) -> AttributeValue {
    s(&t.to_rfc3339_opts(SecondsFormat::Millis, true))
}

fn corrupt(m: impl std::fmt::Display) -> StoreError {
    StoreError::Corrupt(format!("api key item: {m}"))
}

fn get_s<'a>(item: &'a Item, name: &str) -> Result<&'a str, StoreError> {
    item.get(name)
        .and_then(|v| v.as_s().ok())
        .map(String::as_str)
        .ok_or_else(|| corrupt(format!("missing {name}")))
}

fn parse_time(text: &str) -> Result<DateTime<Utc>, StoreError> {
    DateTime::parse_from_rfc3339(text)
        .map(|t| t.with_timezone(&Utc))
        .map_err(corrupt)
}

fn from_item(item: &Item) -> Result<ApiKeyRecord, StoreError> {
    Ok(ApiKeyRecord {
        key_id: get_s(item, KEY_ID)?.to_owned(),
        key_hash: get_s(item, KEY_HASH)?.to_owned(),
        tenant: TenantId::parse(get_s(item, TENANT_ID)?).map_err(corrupt)?,
        name: get_s(item, "name")?.to_owned(),
        created_at: parse_time(get_s(item, "created_at")?)?,
        created_by: get_s(item, "created_by")?.to_owned(),
        revoked_at: item
            .get("revoked_at")
            .and_then(|v| v.as_s().ok())
            .map(|t| parse_time(t))
            .transpose()?,
    })
}

impl DynamoDbApiKeyStore {
    /// Builds the client from `config` (table `<table_prefix>api_keys`) and, with
    /// `create_tables_if_missing`, creates the table and its index.
    pub async fn connect(config: &DynamoDbConfig) -> Result<Self, DynamoDbError> {
        let table = Table::connect(config, config.table(API_KEYS_TABLE), &SPEC).await?;
        Ok(Self { table })
    }

    /// Deletes the table (tests, local tear-down).
    pub async fn delete_table(&self) -> Result<(), DynamoDbError> {
        self.table.delete().await
    }

    /// Key hashes of `tenant` from the index, optionally only `key_id`'s.
    async fn hashes(&self, tenant: &TenantId, key_id: Option<&str>) -> Result<Vec<String>, StoreError> {
        let mut hashes = Vec::new();
        let mut start: Option<Item> = None;
        loop {
            let mut query = self
                .table
                .client
                .query()
                .table_name(&self.table.name)
                .index_name(BY_TENANT)
                .expression_attribute_names("#t", TENANT_ID)
                .expression_attribute_values(":t", s(tenant.as_str()))
                .set_exclusive_start_key(start.take());
            query = match key_id {
                Some(id) => query
                    .key_condition_expression("#t = :t AND #k = :k")
                    .expression_attribute_names("#k", KEY_ID)
                    .expression_attribute_values(":k", s(id)),
                None => query.key_condition_expression("#t = :t"),
            };
            let out = query.send().await.map_err(|e| store_error("Query", e))?;
            for item in out.items.unwrap_or_default() {
                hashes.push(get_s(&item, KEY_HASH)?.to_owned());
            }
            match out.last_evaluated_key {
                Some(key) if !key.is_empty() => start = Some(key),
                _ => return Ok(hashes),
            }
        }
    }
}

#[async_trait]
impl ApiKeyStore for DynamoDbApiKeyStore {
    async fn create(&self, record: &ApiKeyRecord) -> Result<(), StoreError> {
        let mut item = Item::from([
            (KEY_HASH.to_owned(), s(&record.key_hash)),
            (KEY_ID.to_owned(), s(&record.key_id)),
            (TENANT_ID.to_owned(), s(record.tenant.as_str())),
            ("name".to_owned(), s(&record.name)),
            ("created_at".to_owned(), time(&record.created_at)),
            ("created_by".to_owned(), s(&record.created_by)),
        ]);
        if let Some(at) = &record.revoked_at {
            item.insert("revoked_at".to_owned(), time(at));
        }
        self.table
            .client
            .put_item()
            .table_name(&self.table.name)
            .set_item(Some(item))
            .condition_expression("attribute_not_exists(key_hash)")
            .send()
            .await
            .map_err(|e| {
                if is_condition_failure(&e) {
                    StoreError::Corrupt("an API key with this hash already exists".to_owned())
                } else {
                    store_error("PutItem", e)
                }
            })?;
        Ok(())
    }

    async fn by_hash(&self, key_hash: &str) -> Result<Option<ApiKeyRecord>, StoreError> {
        let item = self
            .table
            .get_consistent(Item::from([(KEY_HASH.to_owned(), s(key_hash))]))
            .await
            .map_err(|e| store_error("GetItem", e))?;
        item.as_ref().map(from_item).transpose()
    }

    async fn list(&self, tenant: &TenantId) -> Result<Vec<ApiKeyRecord>, StoreError> {
        let keys = self
            .hashes(tenant, None)
            .await?
            .into_iter()
            .map(|h| Item::from([(KEY_HASH.to_owned(), s(&h))]))
            .collect();
        let mut records = tables::batch_get(&self.table.client, &self.table.name, keys)
            .await?
            .iter()
            .map(from_item)
            .collect::<Result<Vec<_>, _>>()?;
        // The index is eventually consistent; the items themselves decide the tenant.
        records.retain(|r| &r.tenant == tenant);
        records.sort_by(|a, b| a.key_id.cmp(&b.key_id));
        Ok(records)
    }

    async fn revoke(
        &self,
        tenant: &TenantId,
        key_id: &str,
        at: DateTime<Utc>,
    ) -> Result<Option<ApiKeyRecord>, StoreError> {
        let Some(hash) = self.hashes(tenant, Some(key_id)).await?.into_iter().next() else {
            return Ok(None);
        };
        let out = self
            .table
            .client
            .update_item()
            .table_name(&self.table.name)
            .key(KEY_HASH, s(&hash))
            .update_expression("SET revoked_at = if_not_exists(revoked_at, :at)")
            .condition_expression("tenant_id = :t")
            .expression_attribute_values(":at", time(&at))
            .expression_attribute_values(":t", s(tenant.as_str()))
            .return_values(ReturnValue::AllNew)
            .send()
            .await;
        match out {
            Ok(out) => out.attributes.as_ref().map(from_item).transpose(),
            Err(e) if is_condition_failure(&e) => Ok(None),
            Err(e) => Err(store_error("UpdateItem", e)),
        }
    }
}
