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
use aws_sdk_dynamodb::types::{AttributeValue, ReturnValue};
use chrono::{DateTime, SecondsFormat, Utc};

use fleetwire_actors::model::{TenantId, VehicleId};
use fleetwire_actors::ports::{ProvisionOutcome, Registration, StoreError, VehicleRegistry, VehicleStatus};

use super::tables::{
    self, Item, Table, TableSpec, VEHICLES_BY_TENANT, is_condition_failure, query_index_keys, store_error,
};
use super::{DynamoDbConfig, DynamoDbError, REGISTRY_TABLE};

const VEHICLE_ID: &str = "vehicle_id";
const TENANT_ID: &str = "tenant_id";
const STATUS: &str = "status";
const DISPLAY_NAME: &str = "display_name";
const PROVISIONED_AT: &str = "provisioned_at";

/// The table: hash `vehicle_id`, index `by_tenant`.
const SPEC: TableSpec = TableSpec {
    hash: VEHICLE_ID,
    range: None,
    index: Some(VEHICLES_BY_TENANT),
    ttl: None,
};

/// The DynamoDB [`VehicleRegistry`]. Cheap to clone.
#[derive(Debug, Clone)]
pub struct DynamoDbVehicleRegistry {
    /// The table and the client that reaches it.
    table: Table,
}

impl DynamoDbVehicleRegistry {
    /// Builds the client from `config` (table `<table_prefix>registry`) and, with
    /// `create_tables_if_missing`, creates the table and its index.
    pub async fn connect(config: &DynamoDbConfig) -> Result<Self, DynamoDbError> {
        let table = Table::connect(config, config.table(REGISTRY_TABLE), &SPEC).await?;
        Ok(Self { table })
    }

    /// Deletes the table (tests, local tear-down).
    pub async fn delete_table(&self) -> Result<(), DynamoDbError> {
        self.table.delete().await
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
        let item = self
            .table
            .get_consistent(Self::key(vehicle_id))
            .await
            .map_err(|e| store_error("GetItem", e))?;
        item.as_ref().map(decode).transpose()
    }

    async fn provision(&self, r: &Registration) -> Result<ProvisionOutcome, StoreError> {
        let mut update = String::from("SET #t = :t, #st = :st, #p = if_not_exists(#p, :p)");
        let mut req = self
            .table
            .client
            .update_item()
            .table_name(&self.table.name)
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
            .table
            .client
            .delete_item()
            .table_name(&self.table.name)
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
        let keys = query_index_keys(
            &self.table.client,
            &self.table.name,
            tenant,
            after,
            limit,
            VEHICLE_ID,
        )
        .await?;
        let mut found = tables::batch_get(&self.table.client, &self.table.name, keys)
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
