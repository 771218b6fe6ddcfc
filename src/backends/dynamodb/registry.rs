//! [`DynamoDbVehicleRegistry`]: the vehicle registry on the `registry` table
//! (docs/data-model.md).
//!
//! | attribute | type | content |
//! |---|---|---|
//! | `vehicle_id` | S, hash key | the VIN pseudonym |
//! | `tenant_id` | S | owner; hash key of the KEYS_ONLY index `by_tenant` (range: `vehicle_id`) |
//! | `status` | S | `active` / `suspended` |
//! | `display_name` | S | absent when none |
//! | `provisioned_at` | S | RFC 3339, set by the first provisioning only |
//!
//! - `provision` is one UpdateItem conditioned on `attribute_not_exists(vehicle_id) OR
//!   tenant_id = :t` (the brief's "conditional PutItem", as an update so that a re-provision
//!   keeps `provisioned_at` via `if_not_exists`); `ReturnValues=ALL_OLD` tells `Created`
//!   from `Updated`, a failed condition is `OwnedByOther`. Two tenants racing for one
//!   vehicle: DynamoDB serializes the two conditional writes, exactly one wins.
//! - `remove` is a DeleteItem conditioned on `tenant_id = :t`.
//! - `lookup` is a consistent GetItem (nodes cache it).
//! - `list` queries `by_tenant` (`tenant_id = :t AND vehicle_id > :after`), then reads the
//!   page with BatchGetItem. The index is eventually consistent: a vehicle provisioned a
//!   moment ago can be missing from a listing for a moment (never from `lookup`).

use async_trait::async_trait;
use aws_sdk_dynamodb::Client;
use aws_sdk_dynamodb::types::{AttributeValue, ReturnValue};
use chrono::{DateTime, SecondsFormat, Utc};

use fleetwire_actors::model::{TenantId, VehicleId};
use fleetwire_actors::ports::{ProvisionOutcome, Registration, StoreError, VehicleRegistry, VehicleStatus};

use super::tables::{self, Item, KeysOnlyIndex, TableSpec, is_condition_failure, store_error};
use super::{DynamoDbConfig, DynamoDbError, REGISTRY_TABLE};

const VEHICLE_ID: &str = "vehicle_id";
const TENANT_ID: &str = "tenant_id";
const STATUS: &str = "status";
const DISPLAY_NAME: &str = "display_name";
const PROVISIONED_AT: &str = "provisioned_at";
/// The tenant listing index.
pub(crate) const BY_TENANT: &str = "by_tenant";

/// The DynamoDB [`VehicleRegistry`]. Cheap to clone.
#[derive(Debug, Clone)]
pub struct DynamoDbVehicleRegistry {
    client: Client,
    table: String,
}

impl DynamoDbVehicleRegistry {
    /// Builds the client from `config` (table `<table_prefix>registry`) and, with
    /// `create_tables_if_missing`, creates the table and its index.
    pub async fn connect(config: &DynamoDbConfig) -> Result<Self, DynamoDbError> {
        config.validate()?;
        let registry = Self::from_client(config.client().await, config.table(REGISTRY_TABLE));
        if config.create_tables_if_missing {
            registry.create_table_if_missing().await?;
        }
        Ok(registry)
    }

    /// Wraps an existing client. Makes no call.
    pub fn from_client(client: Client, table: impl Into<String>) -> Self {
        Self {
            client,
            table: table.into(),
        }
    }

    /// The table's name.
    pub fn table(&self) -> &str {
        &self.table
    }

    /// Creates the table (hash `vehicle_id`, index `by_tenant`) unless it exists.
    pub async fn create_table_if_missing(&self) -> Result<(), DynamoDbError> {
        let spec = TableSpec {
            name: &self.table,
            hash: VEHICLE_ID,
            index: Some(KeysOnlyIndex {
                name: BY_TENANT,
                hash: TENANT_ID,
                range: VEHICLE_ID,
            }),
        };
        tables::create_table_if_missing(&self.client, spec).await
    }

    /// Deletes the table (tests, local tear-down).
    pub async fn delete_table(&self) -> Result<(), DynamoDbError> {
        tables::delete_table(&self.client, &self.table).await
    }

    fn key(vehicle_id: &VehicleId) -> Item {
        Item::from([(VEHICLE_ID.to_owned(), s(vehicle_id.as_str()))])
    }
}

fn s(v: &str) -> AttributeValue {
    AttributeValue::S(v.to_owned())
}

fn status_str(status: VehicleStatus) -> &'static str {
    match status {
        VehicleStatus::Active => "active",
        VehicleStatus::Suspended => "suspended",
    }
}

#[async_trait]
impl VehicleRegistry for DynamoDbVehicleRegistry {
    async fn lookup(&self, vehicle_id: &VehicleId) -> Result<Option<Registration>, StoreError> {
        let out = self
            .client
            .get_item()
            .table_name(&self.table)
            .set_key(Some(Self::key(vehicle_id)))
            .consistent_read(true)
            .send()
            .await
            .map_err(|e| store_error("GetItem", e))?;
        out.item.as_ref().map(decode).transpose()
    }

    async fn provision(&self, r: &Registration) -> Result<ProvisionOutcome, StoreError> {
        let mut update = String::from("SET #t = :t, #st = :st, #p = if_not_exists(#p, :p)");
        let mut req = self
            .client
            .update_item()
            .table_name(&self.table)
            .set_key(Some(Self::key(&r.vehicle_id)))
            .condition_expression("attribute_not_exists(#v) OR #t = :t")
            .expression_attribute_names("#v", VEHICLE_ID)
            .expression_attribute_names("#t", TENANT_ID)
            .expression_attribute_names("#st", STATUS)
            .expression_attribute_names("#p", PROVISIONED_AT)
            .expression_attribute_names("#dn", DISPLAY_NAME)
            .expression_attribute_values(":t", s(r.tenant.as_str()))
            .expression_attribute_values(":st", s(status_str(r.status)))
            .expression_attribute_values(
                ":p",
                s(&r.provisioned_at.to_rfc3339_opts(SecondsFormat::AutoSi, true)),
            )
            .return_values(ReturnValue::AllOld);
        match &r.display_name {
            Some(name) => {
                update.push_str(", #dn = :dn");
                req = req.expression_attribute_values(":dn", s(name));
            }
            None => update.push_str(" REMOVE #dn"),
        }
        match req.update_expression(update).send().await {
            Ok(out) if out.attributes.as_ref().is_some_and(|a| !a.is_empty()) => {
                Ok(ProvisionOutcome::Updated)
            }
            Ok(_) => Ok(ProvisionOutcome::Created),
            Err(e) if is_condition_failure(&e) => Ok(ProvisionOutcome::OwnedByOther),
            Err(e) => Err(store_error("UpdateItem", e)),
        }
    }

    async fn remove(&self, tenant: &TenantId, vehicle_id: &VehicleId) -> Result<bool, StoreError> {
        let result = self
            .client
            .delete_item()
            .table_name(&self.table)
            .set_key(Some(Self::key(vehicle_id)))
            .condition_expression("#t = :t")
            .expression_attribute_names("#t", TENANT_ID)
            .expression_attribute_values(":t", s(tenant.as_str()))
            .send()
            .await;
        match result {
            Ok(_) => Ok(true),
            Err(e) if is_condition_failure(&e) => Ok(false),
            Err(e) => Err(store_error("DeleteItem", e)),
        }
    }

    async fn list(
        &self,
        tenant: &TenantId,
        after: Option<&VehicleId>,
        limit: usize,
    ) -> Result<Vec<Registration>, StoreError> {
        let keys = query_index_keys(&self.client, &self.table, tenant, after, limit, VEHICLE_ID).await?;
        let mut found = tables::batch_get(&self.client, &self.table, keys)
            .await?
            .iter()
            .map(decode)
            .collect::<Result<Vec<_>, _>>()?;
        // The index entry can outlive a transfer for a moment (eventual consistency).
        found.retain(|r| &r.tenant == tenant);
        found.sort_by(|a, b| a.vehicle_id.cmp(&b.vehicle_id));
        Ok(found)
    }
}

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
            .expression_attribute_names("#t", TENANT_ID)
            .expression_attribute_values(":t", s(tenant.as_str()))
            .limit(remaining)
            .set_exclusive_start_key(start.take());
        req = match after {
            Some(after) => req
                .key_condition_expression("#t = :t AND #v > :after")
                .expression_attribute_names("#v", VEHICLE_ID)
                .expression_attribute_values(":after", s(after.as_str())),
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

fn decode(item: &Item) -> Result<Registration, StoreError> {
    let text = |name: &str| -> Result<&String, StoreError> {
        item.get(name)
            .and_then(|v| v.as_s().ok())
            .ok_or_else(|| StoreError::Corrupt(format!("registry item without a string {name}")))
    };
    let vehicle_id = VehicleId(text(VEHICLE_ID)?.clone());
    let corrupt = |what: String| StoreError::Corrupt(format!("registry item {vehicle_id}: {what}"));
    let tenant = TenantId::parse(text(TENANT_ID)?).map_err(&corrupt)?;
    let status = match text(STATUS)?.as_str() {
        "active" => VehicleStatus::Active,
        "suspended" => VehicleStatus::Suspended,
        other => return Err(corrupt(format!("unknown status {other:?}"))),
    };
    let provisioned_at = DateTime::parse_from_rfc3339(text(PROVISIONED_AT)?)
        .map_err(|e| corrupt(format!("provisioned_at: {e}")))?
        .with_timezone(&Utc);
    let display_name = match item.get(DISPLAY_NAME) {
        None => None,
        Some(AttributeValue::S(name)) => Some(name.clone()),
        Some(_) => return Err(corrupt("display_name is not a string".into())),
    };
    Ok(Registration {
        vehicle_id,
        tenant,
        display_name,
        status,
        provisioned_at,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn decode_rejects_unknown_status_and_bad_tenants() {
        let mut item = Item::from([
            (VEHICLE_ID.to_owned(), s("v1")),
            (TENANT_ID.to_owned(), s("acme")),
            (STATUS.to_owned(), s("active")),
            (PROVISIONED_AT.to_owned(), s("2026-01-01T00:00:00.123456789Z")),
        ]);
        let r = decode(&item).unwrap();
        assert_eq!(
            (r.tenant.as_str(), r.status, r.display_name),
            ("acme", VehicleStatus::Active, None)
        );
        assert_eq!(r.provisioned_at.timestamp_subsec_nanos(), 123_456_789);
        item.insert(STATUS.to_owned(), s("gone"));
        assert!(matches!(decode(&item), Err(StoreError::Corrupt(_))));
        item.insert(STATUS.to_owned(), s("suspended"));
        item.insert(TENANT_ID.to_owned(), s("a:b"));
        assert!(matches!(decode(&item), Err(StoreError::Corrupt(_))));
    }
}
