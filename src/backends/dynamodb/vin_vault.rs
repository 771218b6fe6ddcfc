//! [`DynamoDbVaultStore`]: the VIN vault on the `vin_vault` table (docs/data-model.md):
//! `pk` (S, hash: `<tenant>#<vehicle_id>` or `~key#<version>`), `ct` (B), `key_version`
//! (N), `created_at` (S, RFC 3339). Writes are PutItem conditioned on
//! `attribute_not_exists(pk)` (write-once; a failed condition means "already there");
//! reads are consistent GetItem; erasure is DeleteItem.

use async_trait::async_trait;
use aws_sdk_dynamodb::error::DisplayErrorContext;
use aws_sdk_dynamodb::primitives::Blob;
use aws_sdk_dynamodb::types::{AttributeValue, ReturnValue};
use chrono::{DateTime, SecondsFormat, Utc};

use super::tables::{Item, Table, TableSpec, is_condition_failure};
use super::{DynamoDbConfig, DynamoDbError};
use crate::vault::{VaultError, VaultItem, VaultStore};

/// Logical name of the table.
pub const VIN_VAULT_TABLE: &str = "vin_vault";

/// The table: hash `pk`.
const SPEC: TableSpec = TableSpec {
    hash: "pk",
    range: None,
    index: None,
    ttl: None,
};

/// The DynamoDB vault store. Cheap to clone.
#[derive(Debug, Clone)]
pub struct DynamoDbVaultStore {
    /// The table and the client that reaches it.
    table: Table,
}

fn failed(op: &str, e: impl std::fmt::Display) -> VaultError {
    VaultError::Store(format!("{op}: {e}"))
}

impl DynamoDbVaultStore {
    /// Builds the client from `config` (table `<table_prefix>vin_vault`) and, with
    /// `create_tables_if_missing`, creates the table.
    pub async fn connect(config: &DynamoDbConfig) -> Result<Self, DynamoDbError> {
        let table = Table::connect(config, config.table(VIN_VAULT_TABLE), &SPEC).await?;
        Ok(Self { table })
    }

    /// Deletes the table (tests, local tear-down).
    pub async fn delete_table(&self) -> Result<(), DynamoDbError> {
        self.table.delete().await
    }

    fn key(pk: &str) -> Item {
        Item::from([("pk".to_owned(), AttributeValue::S(pk.to_owned()))])
    }
}

#[async_trait]
impl VaultStore for DynamoDbVaultStore {
    async fn put_if_absent(&self, pk: &str, item: &VaultItem) -> Result<bool, VaultError> {
        let mut row = Self::key(pk);
        row.insert("ct".into(), AttributeValue::B(Blob::new(item.ct.clone())));
        row.insert(
            "key_version".into(),
            AttributeValue::N(item.key_version.to_string()),
        );
        row.insert(
            "created_at".into(),
            AttributeValue::S(item.created_at.to_rfc3339_opts(SecondsFormat::Millis, true)),
        );
        let result = self
            .table
            .client
            .put_item()
            .table_name(&self.table.name)
            .set_item(Some(row))
            .condition_expression("attribute_not_exists(pk)")
            .send()
            .await;
        match result {
            Ok(_) => Ok(true),
            Err(e) if is_condition_failure(&e) => Ok(false),
            Err(e) => Err(failed("PutItem", DisplayErrorContext(&e))),
        }
    }

    async fn get(&self, pk: &str) -> Result<Option<VaultItem>, VaultError> {
        let item = self
            .table
            .get_consistent(Self::key(pk))
            .await
            .map_err(|e| failed("GetItem", DisplayErrorContext(&e)))?;
        let Some(item) = item else { return Ok(None) };
        let corrupt = |what: &str| VaultError::Store(format!("vin_vault item: {what}"));
        let ct = match item.get("ct") {
            Some(AttributeValue::B(b)) => b.as_ref().to_vec(),
            _ => return Err(corrupt("ct missing")),
        };
        let key_version = match item.get("key_version") {
            Some(AttributeValue::N(n)) => n.parse().map_err(|_| corrupt("key_version"))?,
            _ => return Err(corrupt("key_version missing")),
        };
        let created_at = match item.get("created_at") {
            Some(AttributeValue::S(s)) => DateTime::parse_from_rfc3339(s)
                .map_err(|_| corrupt("created_at"))?
                .with_timezone(&Utc),
            _ => return Err(corrupt("created_at missing")),
        };
        Ok(Some(VaultItem {
            ct,
            key_version,
            created_at,
        }))
    }

    async fn delete(&self, pk: &str) -> Result<bool, VaultError> {
        let out = self
            .table
            .client
            .delete_item()
            .table_name(&self.table.name)
            .set_key(Some(Self::key(pk)))
            .return_values(ReturnValue::AllOld)
            .send()
            .await
            .map_err(|e| failed("DeleteItem", DisplayErrorContext(&e)))?;
        Ok(out.attributes.is_some_and(|a| !a.is_empty()))
    }
}
