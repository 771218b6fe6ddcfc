//! The Amazon DynamoDB backend of the lease port: [`DynamoDbLeaseStore`] implements
//! [`LeaseStore`](fleetwire_actors::ports::LeaseStore) with `aws-sdk-dynamodb`, on a
//! table laid out like the Kinesis Client Library's lease table.
//!
//! # Item layout
//!
//! One item per lease, with KCL's attribute names:
//!
//! | attribute | type | content |
//! |---|---|---|
//! | `leaseKey` | S, hash key | the shard id |
//! | `leaseOwner` | S | the worker holding the lease; **absent** when free |
//! | `leaseCounter` | N | the fencing token, bumped by renew, take and evict |
//! | `checkpoint` | S | `TRIM_HORIZON`, `LATEST`, `SHARD_END` or the sequence number |
//! | `parentShardIds` | SS | the parent shards; **absent** when there are none (a DynamoDB set cannot be empty). An L of S is accepted on read. A set has no order, so parents read back sorted |
//! | `ownerSwitchesSinceCheckpoint` | N | owner changes since the last checkpoint |
//!
//! The table needs only the hash key `leaseKey` (S); `create_tables_if_missing` creates it
//! on demand (PAY_PER_REQUEST), as KCL does.
//!
//! # Fencing
//!
//! Every write is one conditional DynamoDB call, so check and write are atomic:
//!
//! | call | DynamoDB | condition |
//! |---|---|---|
//! | `create_lease_if_absent` | PutItem | `attribute_not_exists(leaseKey)` |
//! | `renew_lease` | UpdateItem `leaseCounter + 1` | counter and owner as read |
//! | `take_lease` | UpdateItem owner, `leaseCounter + 1`, switches + 1 if the owner changes | counter as read (see below) |
//! | `evict_lease` | UpdateItem `REMOVE leaseOwner`, `leaseCounter + 1` | counter and owner as read |
//! | `update_checkpoint` | UpdateItem checkpoint, switches = 0 | owner |
//! | `delete_lease` | DeleteItem | the item exists |
//!
//! Every update also requires `attribute_exists(leaseKey)` (an UpdateItem would otherwise
//! create the item) and asks for `ReturnValuesOnConditionCheckFailure=ALL_OLD`: a failed
//! condition that returns the old item is `ConditionFailed`, one without an item is
//! `NotFound`. Whether a take changes the owner decides whether the switch count grows,
//! which one update expression cannot branch on; the take therefore also conditions on the
//! owner it assumes, and when only that guess was wrong (the counter still matches) it
//! retries once with the other assumption. The port's condition stays "counter unchanged".
//!
//! # Error mapping
//!
//! `ConditionalCheckFailedException` becomes `ConditionFailed` or `NotFound` as above.
//! Everything else becomes `Unavailable`: throttling, 5xx, timeouts and connection errors
//! pass; a missing table (`ResourceNotFoundException`), access or validation errors need an
//! operator, and the port has no better variant, so callers keep retrying with backoff
//! while `/readyz` (`ping` = DescribeTable) reports the store down. The SDK's own retry
//! layer stays on (standard mode, 3 attempts).
//!
//! `list_leases` is a Scan with consistent reads, following `LastEvaluatedKey`.
//!
//! # The emulator
//!
//! Tests run against DynamoDB Local (`scripts/emulators start dynamodb`;
//! `shared/notes/emulators.md`), which returns the old item on a failed condition as AWS
//! does. dynalite does not, so there every failed condition would look like `NotFound`.

mod api_keys;
mod dead_letters;
mod history;
mod lease_store;
mod registry;
mod state_store;
mod tables;
mod vin_vault;

use std::time::Duration;

use serde::{Deserialize, Serialize};

pub use api_keys::{API_KEYS_TABLE, DynamoDbApiKeyStore};
pub use dead_letters::{DEAD_LETTER_OBJECTS, DEAD_LETTERS_TABLE, DynamoDbDeadLetters};
pub use history::{AGGREGATES_TABLE, BatchFaults, DynamoDbHistoryStore, HISTORY_TABLE};
pub use lease_store::DynamoDbLeaseStore;
pub use registry::DynamoDbVehicleRegistry;
pub use state_store::DynamoDbStateStore;
pub use vin_vault::{DynamoDbVaultStore, VIN_VAULT_TABLE};

/// Configuration of the DynamoDB backend.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct DynamoDbConfig {
    /// AWS region of the tables. Default: `"us-east-1"`.
    pub region: String,
    /// Endpoint override: `None` uses the region's AWS endpoint; for DynamoDB Local use
    /// `Some("http://127.0.0.1:8000")`. Default: `None`.
    pub endpoint_url: Option<String>,
    /// `false`: credentials from the default AWS chain (environment, profile, web
    /// identity, ECS/EC2 roles). `true`: fixed dummy credentials, which emulators accept
    /// and AWS rejects. Default: `false`.
    pub static_credentials: bool,
    /// Name of the lease table. Default: `"fleetwire_leases"`. Its own key (not derived
    /// from `table_prefix`) because it predates the prefix and KCL tools address it by name;
    /// terraform sets it to `<table_prefix>leases`.
    pub lease_table: String,
    /// Prefix of every other table's physical name: `<table_prefix>vehicles`,
    /// `<table_prefix>registry` (docs/data-model.md; terraform: `fleetwire-<env>-`).
    /// Default: `"fleetwire_"`.
    pub table_prefix: String,
    /// `true`: at connect, create missing tables (PAY_PER_REQUEST) and wait until they are
    /// ACTIVE; for local development and tests. `false`: never create (production tables
    /// are provisioned by infrastructure code) and make no call at connect.
    /// Default: `false`.
    pub create_tables_if_missing: bool,
    /// Where the dead-letter store (`backends.state = "dynamodb"`) keeps payloads over
    /// 64 KiB, which do not fit its items (DynamoDB items are at most 400 KB). Default
    /// `truncate`; config/aws.toml sets `archive_bucket`.
    pub dead_letter_payloads: DeadLetterPayloads,
}

/// `dynamodb.dead_letter_payloads`: what happens to a dead letter's payload over 64 KiB.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum DeadLetterPayloads {
    /// Keep only its first 64 KiB and its size, with a warning and a count in
    /// `fleetwire_dead_letters_truncated_total`: the letter can be inspected, not replayed.
    #[default]
    Truncate,
    /// Store it whole as an S3 object under `<archive.prefix>dead-letters/` in the
    /// archive's bucket, with the archive's S3 settings (`archive.backend = "s3"` and
    /// `archive.bucket` required; `archive.enabled` need not be set).
    ArchiveBucket,
}

impl Default for DynamoDbConfig {
    fn default() -> Self {
        Self {
            region: "us-east-1".into(),
            endpoint_url: None,
            static_credentials: false,
            lease_table: "fleetwire_leases".into(),
            table_prefix: "fleetwire_".into(),
            create_tables_if_missing: false,
            dead_letter_payloads: DeadLetterPayloads::Truncate,
        }
    }
}

/// Logical name of the latest-state table (`vehicles` in docs/data-model.md).
pub const VEHICLES_TABLE: &str = "vehicles";
/// Logical name of the vehicle registry table.
pub const REGISTRY_TABLE: &str = "registry";

/// Table name length limits of DynamoDB (CreateTable `TableName`).
const TABLE_NAME_CHARS: std::ops::RangeInclusive<usize> = 3..=255;

impl DynamoDbConfig {
    /// The physical name of the table `logical` (e.g. [`VEHICLES_TABLE`]).
    pub fn table(&self, logical: &str) -> String {
        format!("{}{logical}", self.table_prefix)
    }

    /// An SDK client for these settings (no network call).
    pub async fn client(&self) -> aws_sdk_dynamodb::Client {
        let shared = crate::backends::aws::sdk_config(
            &self.region,
            self.endpoint_url.as_deref(),
            self.static_credentials,
        )
        .await;
        let config = aws_sdk_dynamodb::config::Builder::from(&shared)
            .interceptor(crate::backends::aws::call_metrics())
            .build();
        aws_sdk_dynamodb::Client::from_conf(config)
    }

    /// Checks what DynamoDB would reject later with a less helpful message: the table name
    /// (3–255 characters of `a-zA-Z0-9_.-`), an empty region, an endpoint without scheme.
    pub fn validate(&self) -> Result<(), DynamoDbError> {
        validate_table_name(&self.lease_table)?;
        for table in [VEHICLES_TABLE, REGISTRY_TABLE] {
            validate_table_name(&self.table(table))?;
        }
        crate::backends::aws::check_connection("dynamodb", &self.region, self.endpoint_url.as_deref())
            .map_err(DynamoDbError::InvalidConfig)?;
        Ok(())
    }
}

fn validate_table_name(name: &str) -> Result<(), DynamoDbError> {
    let ok_chars = name
        .chars()
        .all(|c| c.is_ascii_alphanumeric() || matches!(c, '_' | '.' | '-'));
    if !TABLE_NAME_CHARS.contains(&name.len()) || !ok_chars {
        return Err(DynamoDbError::InvalidConfig(format!(
            "dynamodb table names must be 3 to 255 characters of a-z, A-Z, 0-9, _ . -, got {name:?}"
        )));
    }
    Ok(())
}

/// Errors while connecting to or administering DynamoDB tables (the per-call errors of the
/// ports are `LeaseError`s and `StoreError`s).
#[derive(Debug, thiserror::Error)]
pub enum DynamoDbError {
    /// The configuration cannot work (bad table name, empty region, bad endpoint).
    #[error("invalid dynamodb config: {0}")]
    InvalidConfig(String),
    /// Creating, describing or deleting a table failed.
    #[error("dynamodb table {table}: {message}")]
    Admin {
        /// The table the call was about.
        table: String,
        /// The call and its classified failure.
        message: String,
    },
    /// The table did not become ACTIVE in time (or is being deleted).
    #[error("dynamodb table {table} is {status}, not ACTIVE, after {waited:?}")]
    NotActive {
        /// The table.
        table: String,
        /// Its last status (CREATING, DELETING, ...).
        status: String,
        /// How long we waited.
        waited: Duration,
    },
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn config_defaults_match_the_documentation() {
        let cfg = DynamoDbConfig::default();
        assert_eq!(cfg.region, "us-east-1");
        assert_eq!(cfg.endpoint_url, None);
        assert!(!cfg.static_credentials);
        assert_eq!(cfg.lease_table, "fleetwire_leases");
        assert_eq!(cfg.table(VEHICLES_TABLE), "fleetwire_vehicles");
        assert!(!cfg.create_tables_if_missing);
        cfg.validate().unwrap();
    }

    #[test]
    fn config_fills_defaults_and_rejects_unknown_fields() {
        let cfg: DynamoDbConfig = serde_json::from_str(
            r#"{"endpoint_url": "http://127.0.0.1:8000", "create_tables_if_missing": true}"#,
        )
        .unwrap();
        assert_eq!(cfg.endpoint_url.as_deref(), Some("http://127.0.0.1:8000"));
        assert!(cfg.create_tables_if_missing);
        assert_eq!(cfg.lease_table, "fleetwire_leases");
        assert!(serde_json::from_str::<DynamoDbConfig>(r#"{"table": "x"}"#).is_err());
    }

    #[test]
    fn validation_rejects_what_dynamodb_would() {
        let bad = |f: fn(&mut DynamoDbConfig)| {
            let mut cfg = DynamoDbConfig::default();
            f(&mut cfg);
            assert!(
                matches!(cfg.validate(), Err(DynamoDbError::InvalidConfig(_))),
                "{cfg:?} should be invalid"
            );
        };
        bad(|c| c.lease_table = "ab".into());
        bad(|c| c.lease_table = "has space".into());
        bad(|c| c.lease_table = "x".repeat(256));
        bad(|c| c.region = " ".into());
        bad(|c| c.table_prefix = "has space".into());
        bad(|c| c.endpoint_url = Some("127.0.0.1:8000".into()));
    }
}
