//! [`DynamoDbStateStore`]: vehicle snapshots on the `vehicles` table (docs/data-model.md).
//!
//! | attribute | type | content |
//! |---|---|---|
//! | `pk` | S, hash key | `<tenant>#<vehicle_id>` (`#` occurs in neither) |
//! | `tenant_id`, `vehicle_id` | S | written by the first write only: the keys of the KEYS_ONLY index `by_tenant` |
//! | `version` | N | the conditional-write guard |
//! | `last_seen`, `source_ts` | N | newest source time applied, Unix ms (both the same value; absent before the first record) |
//! | `signals` | M | name → `{v: S, t: N}`: `v` is the value's JSON, `t` its source time in ms |
//! | `recent` | B | recent record ids, u64 little-endian, oldest first |
//!
//! Times are Unix milliseconds; a time with a sub-millisecond part is written with a
//! decimal fraction (`1772359200123.456789`), so nothing is rounded. Values are JSON text
//! because DynamoDB numbers do not keep `2` and `2.0` apart, and the snapshot does.
//!
//! # Writes
//!
//! `save` first tries an UpdateItem conditioned on `attribute_exists(pk) AND version < :v`
//! (one call in the steady state; it never names `tenant_id`/`vehicle_id`, so the index is
//! not written again). A failed condition with an old item means a version ≥ ours is
//! stored: `AlreadyNewer`, which is success (equal = already stored). Without an old item
//! the vehicle is new: PutItem conditioned on `attribute_not_exists(pk)`, which also sets
//! the index keys; if another writer created it in between, the UpdateItem is tried again.
//! Two writers racing with one version: exactly one condition holds.
//!
//! # Reads
//!
//! `load` = consistent GetItem. `list` = Query on `by_tenant` (`tenant_id = :t AND
//! vehicle_id > :after`, following `LastEvaluatedKey` until `limit` keys), then consistent
//! BatchGetItem of that page, retrying `UnprocessedKeys` with backoff. The index is
//! eventually consistent, so a vehicle created a moment ago may be missing from a listing
//! for a moment; its contents, read by BatchGetItem, are current.
//!
//! Throttling (after the SDK's own retries) is [`StoreError::Throttled`]: the vehicle actor
//! fails the batch, the shard consumer backs off and its checkpoint waits.

use std::collections::HashMap;

use async_trait::async_trait;
use aws_sdk_dynamodb::operation::update_item::UpdateItemError;
use aws_sdk_dynamodb::primitives::Blob;
use aws_sdk_dynamodb::types::{AttributeValue, ReturnValuesOnConditionCheckFailure};
use chrono::{DateTime, Utc};

use fleetwire_actors::fleet::FleetState;
use fleetwire_actors::model::{RecordId, SignalReading, Signals, TenantId, VehicleId, VehicleSnapshot};
use fleetwire_actors::ports::{SaveOutcome, StateStore, StoreError};

use super::tables::{
    self, Item, Table, TableSpec, VEHICLES_BY_TENANT, is_condition_failure, query_index_keys, store_error,
};
use super::{DynamoDbConfig, DynamoDbError, VEHICLES_TABLE};

const PK: &str = "pk";
const TENANT_ID: &str = "tenant_id";
const VEHICLE_ID: &str = "vehicle_id";
const VERSION: &str = "version";
const LAST_SEEN: &str = "last_seen";
const SOURCE_TS: &str = "source_ts";
const SIGNALS: &str = "signals";
const RECENT: &str = "recent";
const DERIVED: &str = "derived";

/// How often `save` goes round "update failed: no item" → "put failed: item exists".
/// Twice means the item was created and deleted in between, which nothing does.
const SAVE_ROUNDS: usize = 3;

/// The table: hash `pk`, index `by_tenant`.
const SPEC: TableSpec = TableSpec {
    hash: PK,
    range: None,
    index: Some(VEHICLES_BY_TENANT),
    ttl: None,
};

/// The DynamoDB [`StateStore`]. Cheap to clone.
#[derive(Debug, Clone)]
pub struct DynamoDbStateStore {
    /// The table and the client that reaches it.
    table: Table,
}

impl DynamoDbStateStore {
    /// Builds the client from `config` (table `<table_prefix>vehicles`) and, with
    /// `create_tables_if_missing`, creates the table and its index.
    pub async fn connect(config: &DynamoDbConfig) -> Result<Self, DynamoDbError> {
        let table = Table::connect(config, config.table(VEHICLES_TABLE), &SPEC).await?;
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

    /// The UpdateItem of an existing vehicle: `Some(outcome)`, or `None` when there is no
    /// item yet.
    async fn update(&self, snapshot: &VehicleSnapshot) -> Result<Option<SaveOutcome>, StoreError> {
        let mut set = vec!["#ver = :v", "#sig = :sig", "#rec = :rec", "#der = :der"];
        let mut req = self
            .table
            .client
            .update_item()
            .table_name(&self.table.name)
            .key(PK, pk(&snapshot.tenant, &snapshot.vehicle_id))
            .condition_expression("attribute_exists(#pk) AND #ver < :v")
            .expression_attribute_names("#pk", PK)
            .expression_attribute_names("#ver", VERSION)
            .expression_attribute_names("#sig", SIGNALS)
            .expression_attribute_names("#rec", RECENT)
            .expression_attribute_names("#der", DERIVED)
            .expression_attribute_names("#ls", LAST_SEEN)
            .expression_attribute_names("#ts", SOURCE_TS)
            .expression_attribute_values(":v", n(snapshot.version))
            .expression_attribute_values(":sig", signals(&snapshot.signals))
            .expression_attribute_values(":rec", recent(&snapshot.recent_records))
            .expression_attribute_values(":der", derived(&snapshot.derived))
            .return_values_on_condition_check_failure(ReturnValuesOnConditionCheckFailure::AllOld);
        let update = match snapshot.last_seen {
            Some(t) => {
                set.extend(["#ls = :ls", "#ts = :ls"]);
                req = req.expression_attribute_values(":ls", time(t));
                format!("SET {}", set.join(", "))
            }
            None => format!("SET {} REMOVE #ls, #ts", set.join(", ")),
        };
        match req.update_expression(update).send().await {
            Ok(_) => Ok(Some(SaveOutcome::Written)),
            Err(e) if is_condition_failure(&e) => match e.into_service_error() {
                // An old item came back: its version is ≥ ours.
                UpdateItemError::ConditionalCheckFailedException(failed) => Ok(failed
                    .item
                    .filter(|i| !i.is_empty())
                    .map(|_| SaveOutcome::AlreadyNewer)),
                _ => unreachable!("is_condition_failure matched the error code"),
            },
            Err(e) => Err(store_error("UpdateItem", e)),
        }
    }

    /// The PutItem of a new vehicle: `false` when the item exists after all.
    async fn create(&self, snapshot: &VehicleSnapshot) -> Result<bool, StoreError> {
        let result = self
            .table
            .client
            .put_item()
            .table_name(&self.table.name)
            .set_item(Some(encode(snapshot)))
            .condition_expression("attribute_not_exists(#pk)")
            .expression_attribute_names("#pk", PK)
            .send()
            .await;
        match result {
            Ok(_) => Ok(true),
            Err(e) if is_condition_failure(&e) => Ok(false),
            Err(e) => Err(store_error("PutItem", e)),
        }
    }
}

#[async_trait]
impl StateStore for DynamoDbStateStore {
    async fn load(
        &self,
        tenant: &TenantId,
        vehicle_id: &VehicleId,
    ) -> Result<Option<VehicleSnapshot>, StoreError> {
        let item = self
            .table
            .get_consistent(Item::from([(PK.to_owned(), pk(tenant, vehicle_id))]))
            .await
            .map_err(|e| store_error("GetItem", e))?;
        item.as_ref().map(decode).transpose()
    }

    async fn save(&self, snapshot: &VehicleSnapshot) -> Result<SaveOutcome, StoreError> {
        for _ in 0..SAVE_ROUNDS {
            if let Some(outcome) = self.update(snapshot).await? {
                return Ok(outcome);
            }
            if self.create(snapshot).await? {
                return Ok(SaveOutcome::Written);
            }
        }
        Err(StoreError::Unavailable(format!(
            "{}: the item kept appearing and disappearing during the save",
            snapshot.vehicle_id
        )))
    }

    async fn list(
        &self,
        tenant: &TenantId,
        after: Option<&VehicleId>,
        limit: usize,
    ) -> Result<Vec<VehicleSnapshot>, StoreError> {
        if limit == 0 {
            return Ok(Vec::new());
        }
        let keys = query_index_keys(&self.table.client, &self.table.name, tenant, after, limit, PK).await?;
        let mut found = tables::batch_get(&self.table.client, &self.table.name, keys)
            .await?
            .iter()
            .map(decode)
            .collect::<Result<Vec<_>, _>>()?;
        found.retain(|s| &s.tenant == tenant);
        found.sort_by(|a, b| a.vehicle_id.cmp(&b.vehicle_id));
        Ok(found)
    }

    async fn ping(&self) -> Result<(), StoreError> {
        self.table
            .client
            .describe_table()
            .table_name(&self.table.name)
            .send()
            .await
            .map(drop)
            .map_err(|e| store_error("DescribeTable", e))
    }
}

fn pk(tenant: &TenantId, vehicle_id: &VehicleId) -> AttributeValue {
    AttributeValue::S(format!("{tenant}#{vehicle_id}"))
}

fn n(v: u64) -> AttributeValue {
    AttributeValue::N(v.to_string())
}

/// Unix milliseconds, with a decimal fraction only when the time has a sub-ms part.
fn time(t: DateTime<Utc>) -> AttributeValue {
    let ms = t.timestamp_millis();
    let sub_ms_nanos = t.timestamp_subsec_nanos() % 1_000_000;
    AttributeValue::N(if sub_ms_nanos == 0 {
        ms.to_string()
    } else {
        let fraction = format!("{sub_ms_nanos:06}");
        format!("{ms}.{}", fraction.trim_end_matches('0'))
    })
}

fn parse_time(v: &AttributeValue) -> Option<DateTime<Utc>> {
    let text = v.as_n().ok()?;
    let (ms, fraction) = text.split_once('.').unwrap_or((text, ""));
    let ms: i64 = ms.parse().ok()?;
    if fraction.len() > 6 || !fraction.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    let nanos: i64 = format!("{fraction:0<6}").parse().ok()?;
    DateTime::from_timestamp_millis(ms)?.checked_add_signed(chrono::Duration::nanoseconds(nanos))
}

fn signals(signals: &Signals) -> AttributeValue {
    AttributeValue::M(
        signals
            .iter()
            .map(|(name, reading)| {
                let value = serde_json::to_string(&reading.value).expect("signal values serialize");
                let entry = HashMap::from([
                    ("v".to_owned(), AttributeValue::S(value)),
                    ("t".to_owned(), time(reading.timestamp)),
                ]);
                (name.to_string(), AttributeValue::M(entry))
            })
            .collect(),
    )
}

fn recent(ids: &[RecordId]) -> AttributeValue {
    let bytes: Vec<u8> = ids.iter().flat_map(|id| id.0.to_le_bytes()).collect();
    AttributeValue::B(Blob::new(bytes))
}

/// The fleet machines' state as JSON text: it is read and written whole, never queried.
fn derived(state: &FleetState) -> AttributeValue {
    AttributeValue::S(serde_json::to_string(state).expect("fleet state always serializes"))
}

/// The whole item of a new vehicle.
fn encode(s: &VehicleSnapshot) -> Item {
    let mut item = Item::from([
        (PK.to_owned(), pk(&s.tenant, &s.vehicle_id)),
        (
            TENANT_ID.to_owned(),
            AttributeValue::S(s.tenant.as_str().to_owned()),
        ),
        (VEHICLE_ID.to_owned(), AttributeValue::S(s.vehicle_id.0.clone())),
        (VERSION.to_owned(), n(s.version)),
        (SIGNALS.to_owned(), signals(&s.signals)),
        (RECENT.to_owned(), recent(&s.recent_records)),
        (DERIVED.to_owned(), derived(&s.derived)),
    ]);
    if let Some(t) = s.last_seen {
        item.insert(LAST_SEEN.to_owned(), time(t));
        item.insert(SOURCE_TS.to_owned(), time(t));
    }
    item
}

fn decode(item: &Item) -> Result<VehicleSnapshot, StoreError> {
    let text = |name: &str| -> Result<&String, StoreError> {
        item.get(name)
            .and_then(|v| v.as_s().ok())
            .ok_or_else(|| StoreError::Corrupt(format!("vehicle item without a string {name}")))
    };
    let pk_text = text(PK)?;
    let corrupt = |what: String| StoreError::Corrupt(format!("vehicle item {pk_text}: {what}"));
    let tenant = TenantId::parse(text(TENANT_ID)?).map_err(&corrupt)?;
    let vehicle_id = VehicleId(text(VEHICLE_ID)?.clone());
    if *pk_text != format!("{tenant}#{vehicle_id}") {
        return Err(corrupt("pk does not match tenant_id and vehicle_id".into()));
    }
    let version = item
        .get(VERSION)
        .and_then(|v| v.as_n().ok())
        .and_then(|v| v.parse().ok())
        .ok_or_else(|| corrupt("version is not a non-negative integer".into()))?;
    let last_seen = match item.get(LAST_SEEN) {
        None => None,
        Some(v) => Some(parse_time(v).ok_or_else(|| corrupt("last_seen is not a time".into()))?),
    };
    let mut readings = Signals::new();
    if let Some(map) = item.get(SIGNALS) {
        let map = map.as_m().map_err(|_| corrupt("signals is not a map".into()))?;
        for (name, entry) in map {
            let bad = || corrupt(format!("signal {name} is malformed"));
            let entry = entry.as_m().map_err(|_| bad())?;
            let value = entry.get("v").and_then(|v| v.as_s().ok()).ok_or_else(bad)?;
            let value = serde_json::from_str(value).map_err(|_| bad())?;
            let timestamp = entry.get("t").and_then(parse_time).ok_or_else(bad)?;
            readings.insert(name.as_str().into(), SignalReading { value, timestamp });
        }
    }
    let recent_records = match item.get(RECENT) {
        None => Vec::new(),
        Some(v) => {
            let bytes = v
                .as_b()
                .map_err(|_| corrupt("recent is not binary".into()))?
                .as_ref();
            if bytes.len() % 8 != 0 {
                return Err(corrupt("recent is not a list of u64".into()));
            }
            bytes
                .chunks_exact(8)
                .map(|c| RecordId(u64::from_le_bytes(c.try_into().expect("8 bytes"))))
                .collect()
        }
    };
    let derived = match item.get(DERIVED) {
        None => FleetState::default(),
        Some(v) => {
            let text = v.as_s().map_err(|_| corrupt("derived is not text".into()))?;
            serde_json::from_str(text).map_err(|e| corrupt(format!("derived is malformed: {e}")))?
        }
    };
    Ok(VehicleSnapshot {
        tenant,
        vehicle_id,
        signals: readings,
        last_seen,
        version,
        recent_records,
        derived,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn times_keep_their_precision() {
        for text in [
            "2026-03-01T10:00:00Z",
            "2026-03-01T10:00:00.123Z",
            "2026-03-01T10:00:00.123456Z",
            "2026-03-01T10:00:00.123456789Z",
            "1969-12-31T23:59:59.5Z",
        ] {
            let t: DateTime<Utc> = text.parse().unwrap();
            assert_eq!(parse_time(&time(t)), Some(t), "{text}");
        }
        let t: DateTime<Utc> = "2026-03-01T10:00:00.123Z".parse().unwrap();
        assert_eq!(
            time(t),
            AttributeValue::N("1772359200123".into()),
            "plain ms when exact"
        );
        assert_eq!(parse_time(&AttributeValue::N("1.1234567".into())), None);
        assert_eq!(parse_time(&AttributeValue::S("1".into())), None);
    }

    #[test]
    fn items_round_trip_and_junk_is_corrupt() {
        let mut s = VehicleSnapshot {
            tenant: TenantId::parse("acme").unwrap(),
            vehicle_id: VehicleId("v-1".into()),
            version: 9,
            recent_records: vec![RecordId(1), RecordId(u64::MAX)],
            ..Default::default()
        };
        assert_eq!(decode(&encode(&s)).unwrap(), s);
        s.last_seen = Some(Utc::now());
        let item = encode(&s);
        assert_eq!(item[PK], AttributeValue::S("acme#v-1".into()));
        assert_eq!(decode(&item).unwrap(), s);
        let mut moved = item.clone();
        moved.insert(TENANT_ID.into(), AttributeValue::S("other".into()));
        assert!(
            matches!(decode(&moved), Err(StoreError::Corrupt(_))),
            "pk must match"
        );
        let mut short = item;
        short.insert(RECENT.into(), AttributeValue::B(Blob::new(vec![1, 2, 3])));
        assert!(matches!(decode(&short), Err(StoreError::Corrupt(_))));
    }
}
