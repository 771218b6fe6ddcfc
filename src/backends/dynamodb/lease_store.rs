//! [`DynamoDbLeaseStore`]: the lease port as conditional DynamoDB writes (layout and
//! conditions in the module docs of `dynamodb`).

use std::collections::HashMap;

use async_trait::async_trait;
use aws_sdk_dynamodb::Client;
use aws_sdk_dynamodb::error::{DisplayErrorContext, ProvideErrorMetadata, SdkError};
use aws_sdk_dynamodb::types::{AttributeValue, ReturnValue, ReturnValuesOnConditionCheckFailure};

use fleetwire_actors::ports::{Checkpoint, Lease, LeaseError, LeaseStore, SequenceNumber};

use super::tables::{Table, TableSpec, is_condition_failure};
use super::{DynamoDbConfig, DynamoDbError};

/// Attribute names, as KCL writes them.
const LEASE_KEY: &str = "leaseKey";
const LEASE_OWNER: &str = "leaseOwner";
const LEASE_COUNTER: &str = "leaseCounter";
const CHECKPOINT: &str = "checkpoint";
const PARENT_SHARD_IDS: &str = "parentShardIds";
const OWNER_SWITCHES: &str = "ownerSwitchesSinceCheckpoint";

/// Checkpoint sentinels, as KCL writes them.
const TRIM_HORIZON: &str = "TRIM_HORIZON";
const LATEST: &str = "LATEST";
const SHARD_END: &str = "SHARD_END";

/// The lease table: hash `leaseKey`, as KCL creates it.
const SPEC: TableSpec = TableSpec {
    hash: LEASE_KEY,
    range: None,
    index: None,
    ttl: None,
};

/// The DynamoDB [`LeaseStore`]: one SDK client and one table. Cheap to clone (the client
/// pools its connections); every method is one DynamoDB call, except paged scans and the
/// rare second attempt of a take.
#[derive(Debug, Clone)]
pub struct DynamoDbLeaseStore {
    /// The lease table and the client that reaches it.
    table: Table,
    /// Items per Scan page of `list_leases`; `None`: DynamoDB's 1 MB pages.
    scan_page: Option<i32>,
}

/// The outcome of a conditional write the condition of which failed.
enum Refused {
    /// The item exists (its old image): the condition itself failed.
    Condition(HashMap<String, AttributeValue>),
    /// No item.
    Missing,
}

impl DynamoDbLeaseStore {
    /// Builds the client from `config` and, with `create_tables_if_missing`, makes sure the
    /// lease table exists and is ACTIVE. Without it no call is made: a missing table shows
    /// up at the first call (and in `ping`, hence `/readyz`).
    pub async fn connect(config: &DynamoDbConfig) -> Result<Self, DynamoDbError> {
        let table = Table::connect(config, config.lease_table.clone(), &SPEC).await?;
        Ok(Self {
            table,
            scan_page: None,
        })
    }

    /// Wraps an existing client (with whatever endpoint, credentials, retry and timeout
    /// settings it has). Makes no call.
    pub fn from_client(client: Client, table: impl Into<String>) -> Self {
        Self {
            table: Table {
                client,
                name: table.into(),
            },
            scan_page: None,
        }
    }

    /// Sets the Scan page size of `list_leases` (at least 1); tests use a tiny one to go
    /// through the paging. Default: DynamoDB's 1 MB pages.
    pub fn with_scan_page_size(mut self, items: u16) -> Self {
        self.scan_page = Some(i32::from(items.max(1)));
        self
    }

    /// The table's name.
    pub fn table(&self) -> &str {
        &self.table.name
    }

    /// The SDK client, for calls the port does not cover.
    pub fn client(&self) -> &Client {
        &self.table.client
    }

    /// Deletes the lease table with every lease in it (tests and local tear-down). Does not
    /// wait for the deletion to finish.
    pub async fn delete_table(&self) -> Result<(), DynamoDbError> {
        self.table.delete().await
    }

    /// Runs one conditional UpdateItem on `key` and returns the new image, or why the
    /// condition refused it. `update` and `condition` are expressions over the placeholders
    /// in `values` (and `#o` for `leaseOwner`, `#cp` for `checkpoint`, which are
    /// DynamoDB reserved words or may become ones).
    async fn update(
        &self,
        op: &str,
        key: &str,
        update: &str,
        condition: &str,
        values: Vec<(&str, AttributeValue)>,
    ) -> Result<Result<Lease, Refused>, LeaseError> {
        let mut req = self
            .table
            .client
            .update_item()
            .table_name(&self.table.name)
            .key(LEASE_KEY, AttributeValue::S(key.to_owned()))
            .update_expression(update)
            .condition_expression(format!("attribute_exists(#k) AND ({condition})"))
            .expression_attribute_names("#k", LEASE_KEY)
            .return_values(ReturnValue::AllNew)
            .return_values_on_condition_check_failure(ReturnValuesOnConditionCheckFailure::AllOld);
        // DynamoDB rejects names the expressions do not use, so add only the used ones.
        let text = format!("{update} {condition}");
        for (placeholder, name) in [
            ("#o", LEASE_OWNER),
            ("#c", LEASE_COUNTER),
            ("#cp", CHECKPOINT),
            ("#sw", OWNER_SWITCHES),
        ] {
            if uses(&text, placeholder) {
                req = req.expression_attribute_names(placeholder, name);
            }
        }
        for (placeholder, value) in values {
            req = req.expression_attribute_values(placeholder, value);
        }
        match req.send().await {
            Ok(out) => {
                let item = out.attributes.ok_or_else(|| {
                    LeaseError::Unavailable(format!("{op}: DynamoDB returned no item for {key}"))
                })?;
                decode(&item).map(Ok)
            }
            Err(e) => refused(op, e).map(Err),
        }
    }
}

/// Whether `placeholder` occurs in `expression` as a whole token (`#c` must not match
/// `#cp`).
fn uses(expression: &str, placeholder: &str) -> bool {
    expression.match_indices(placeholder).any(|(i, _)| {
        !expression[i + placeholder.len()..]
            .chars()
            .next()
            .is_some_and(|c| c.is_ascii_alphanumeric() || c == '_')
    })
}

/// The condition for "the stored owner is `owner`" (`None` = free), with `:owner` bound.
fn owner_condition(owner: Option<&str>) -> (&'static str, Vec<(&'static str, AttributeValue)>) {
    match owner {
        Some(o) => ("#o = :owner", vec![(":owner", AttributeValue::S(o.to_owned()))]),
        None => ("attribute_not_exists(#o)", vec![]),
    }
}

fn n(v: u64) -> AttributeValue {
    AttributeValue::N(v.to_string())
}

#[async_trait]
impl LeaseStore for DynamoDbLeaseStore {
    async fn list_leases(&self) -> Result<Vec<Lease>, LeaseError> {
        let mut leases = Vec::new();
        let mut start: Option<HashMap<String, AttributeValue>> = None;
        loop {
            let out = self
                .table
                .client
                .scan()
                .table_name(&self.table.name)
                // A lease taken a moment ago must show as taken, or a worker would try to
                // take it again and lose a round trip (or think it is free).
                .consistent_read(true)
                .set_limit(self.scan_page)
                .set_exclusive_start_key(start.take())
                .send()
                .await
                .map_err(|e| sdk_unavailable("Scan", e))?;
            for item in out.items() {
                leases.push(decode(item)?);
            }
            match out.last_evaluated_key {
                Some(key) if !key.is_empty() => start = Some(key),
                _ => return Ok(leases),
            }
        }
    }

    async fn create_lease_if_absent(&self, lease: Lease) -> Result<bool, LeaseError> {
        let result = self
            .table
            .client
            .put_item()
            .table_name(&self.table.name)
            .set_item(Some(encode(&lease)))
            .condition_expression("attribute_not_exists(#k)")
            .expression_attribute_names("#k", LEASE_KEY)
            .send()
            .await;
        match result {
            Ok(_) => Ok(true),
            Err(e) if is_condition_failure(&e) => Ok(false),
            Err(e) => Err(sdk_unavailable("PutItem", e)),
        }
    }

    async fn renew_lease(&self, lease: &Lease) -> Result<Lease, LeaseError> {
        let (owner_cond, mut values) = owner_condition(lease.lease_owner.as_deref());
        values.extend([(":c", n(lease.lease_counter)), (":one", n(1))]);
        self.update(
            "renew",
            &lease.lease_key,
            "SET #c = #c + :one",
            &format!("#c = :c AND {owner_cond}"),
            values,
        )
        .await?
        .map_err(|r| refusal(&lease.lease_key, r))
    }

    async fn take_lease(&self, lease: &Lease, new_owner: &str) -> Result<Lease, LeaseError> {
        // Guess whether the owner changes from the caller's copy; the guess is checked in
        // the condition, and a wrong guess with a matching counter is retried once.
        let mut same_owner = lease.lease_owner.as_deref() == Some(new_owner);
        for _ in 0..2 {
            let (update, owner_cond) = if same_owner {
                ("SET #o = :new, #c = #c + :one", "#o = :new")
            } else {
                (
                    "SET #o = :new, #c = #c + :one, #sw = if_not_exists(#sw, :zero) + :one",
                    "(attribute_not_exists(#o) OR #o <> :new)",
                )
            };
            let mut values = vec![
                (":new", AttributeValue::S(new_owner.to_owned())),
                (":c", n(lease.lease_counter)),
                (":one", n(1)),
            ];
            // DynamoDB rejects values the expressions do not use.
            if !same_owner {
                values.push((":zero", n(0)));
            }
            match self
                .update(
                    "take",
                    &lease.lease_key,
                    update,
                    &format!("#c = :c AND {owner_cond}"),
                    values,
                )
                .await?
            {
                Ok(taken) => return Ok(taken),
                Err(Refused::Condition(old)) if counter_of(&old) == Some(lease.lease_counter) => {
                    // Only the owner guess was wrong; the counter (the real fence) held.
                    same_owner = !same_owner;
                }
                Err(r) => return Err(refusal(&lease.lease_key, r)),
            }
        }
        // Two guesses cover both cases, so this means the item changed in between.
        Err(LeaseError::ConditionFailed(lease.lease_key.clone()))
    }

    async fn evict_lease(&self, lease: &Lease) -> Result<Lease, LeaseError> {
        let (owner_cond, mut values) = owner_condition(lease.lease_owner.as_deref());
        values.extend([(":c", n(lease.lease_counter)), (":one", n(1))]);
        self.update(
            "evict",
            &lease.lease_key,
            "SET #c = #c + :one REMOVE #o",
            &format!("#c = :c AND {owner_cond}"),
            values,
        )
        .await?
        .map_err(|r| refusal(&lease.lease_key, r))
    }

    async fn update_checkpoint(
        &self,
        lease_key: &str,
        owner: &str,
        checkpoint: Checkpoint,
    ) -> Result<(), LeaseError> {
        self.update(
            "checkpoint",
            lease_key,
            "SET #cp = :cp, #sw = :zero",
            "#o = :owner",
            vec![
                (":cp", AttributeValue::S(checkpoint_str(&checkpoint).to_owned())),
                (":zero", n(0)),
                (":owner", AttributeValue::S(owner.to_owned())),
            ],
        )
        .await?
        .map(drop)
        .map_err(|r| refusal(lease_key, r))
    }

    /// Deletes the lease; `NotFound` when it is already gone (callers that retry a delete
    /// may treat that as success).
    async fn delete_lease(&self, lease_key: &str) -> Result<(), LeaseError> {
        let result = self
            .table
            .client
            .delete_item()
            .table_name(&self.table.name)
            .key(LEASE_KEY, AttributeValue::S(lease_key.to_owned()))
            .condition_expression("attribute_exists(#k)")
            .expression_attribute_names("#k", LEASE_KEY)
            .send()
            .await;
        match result {
            Ok(_) => Ok(()),
            Err(e) if is_condition_failure(&e) => Err(LeaseError::NotFound(lease_key.to_owned())),
            Err(e) => Err(sdk_unavailable("DeleteItem", e)),
        }
    }

    async fn ping(&self) -> Result<(), LeaseError> {
        self.table
            .client
            .describe_table()
            .table_name(&self.table.name)
            .send()
            .await
            .map(drop)
            .map_err(|e| sdk_unavailable("DescribeTable", e))
    }
}

/// A failed UpdateItem: a failed condition with its old item (if any), or `Unavailable`.
fn refused(
    op: &str,
    err: SdkError<aws_sdk_dynamodb::operation::update_item::UpdateItemError>,
) -> Result<Refused, LeaseError> {
    use aws_sdk_dynamodb::operation::update_item::UpdateItemError;
    match err {
        SdkError::ServiceError(ctx) => match ctx.into_err() {
            UpdateItemError::ConditionalCheckFailedException(e) => Ok(match e.item {
                Some(old) if !old.is_empty() => Refused::Condition(old),
                _ => Refused::Missing,
            }),
            other => Err(LeaseError::Unavailable(format!(
                "{op}: {}",
                DisplayErrorContext(&other)
            ))),
        },
        other => Err(sdk_unavailable(op, other)),
    }
}

fn refusal(key: &str, refused: Refused) -> LeaseError {
    match refused {
        Refused::Condition(_) => LeaseError::ConditionFailed(key.to_owned()),
        Refused::Missing => LeaseError::NotFound(key.to_owned()),
    }
}

/// Every failure other than a failed condition: throttling, 5xx, timeouts, connection
/// errors, a missing table, access and validation errors (see the module docs for why all
/// of them are `Unavailable`).
fn sdk_unavailable<E>(op: &str, err: SdkError<E>) -> LeaseError
where
    E: ProvideErrorMetadata + std::error::Error + Send + Sync + 'static,
{
    LeaseError::Unavailable(format!("{op}: {}", DisplayErrorContext(&err)))
}

fn checkpoint_str(checkpoint: &Checkpoint) -> &str {
    match checkpoint {
        Checkpoint::TrimHorizon => TRIM_HORIZON,
        Checkpoint::Latest => LATEST,
        Checkpoint::ShardEnd => SHARD_END,
        Checkpoint::Sequence(seq) => &seq.0,
    }
}

fn parse_checkpoint(s: &str) -> Checkpoint {
    match s {
        TRIM_HORIZON => Checkpoint::TrimHorizon,
        LATEST => Checkpoint::Latest,
        SHARD_END => Checkpoint::ShardEnd,
        // Sequence numbers are decimal digits, so they never collide with a sentinel.
        seq => Checkpoint::Sequence(SequenceNumber(seq.to_owned())),
    }
}

/// The item of a lease (see the layout in the module docs).
fn encode(lease: &Lease) -> HashMap<String, AttributeValue> {
    let mut item = HashMap::from([
        (LEASE_KEY.to_owned(), AttributeValue::S(lease.lease_key.clone())),
        (LEASE_COUNTER.to_owned(), n(lease.lease_counter)),
        (
            CHECKPOINT.to_owned(),
            AttributeValue::S(checkpoint_str(&lease.checkpoint).to_owned()),
        ),
        (
            OWNER_SWITCHES.to_owned(),
            n(lease.owner_switches_since_checkpoint),
        ),
    ]);
    if let Some(owner) = &lease.lease_owner {
        item.insert(LEASE_OWNER.to_owned(), AttributeValue::S(owner.clone()));
    }
    // A string set cannot be empty, so no parents means no attribute (as KCL does).
    if !lease.parent_shard_ids.is_empty() {
        item.insert(
            PARENT_SHARD_IDS.to_owned(),
            AttributeValue::Ss(lease.parent_shard_ids.clone()),
        );
    }
    item
}

fn counter_of(item: &HashMap<String, AttributeValue>) -> Option<u64> {
    item.get(LEASE_COUNTER)?.as_n().ok()?.parse().ok()
}

/// A lease from its item. A malformed item is a broken backend (the port has no "corrupt"
/// variant), hence `Unavailable`.
fn decode(item: &HashMap<String, AttributeValue>) -> Result<Lease, LeaseError> {
    let key = item
        .get(LEASE_KEY)
        .and_then(|v| v.as_s().ok())
        .ok_or_else(|| LeaseError::Unavailable("lease item without a string leaseKey".into()))?;
    let bad = |what: &str| LeaseError::Unavailable(format!("lease item {key}: {what}"));
    let number = |name: &str, required: bool| -> Result<u64, LeaseError> {
        match item.get(name) {
            None if !required => Ok(0),
            None => Err(bad(&format!("missing {name}"))),
            Some(v) => v
                .as_n()
                .ok()
                .and_then(|s| s.parse().ok())
                .ok_or_else(|| bad(&format!("{name} is not a non-negative integer"))),
        }
    };
    let lease_owner = match item.get(LEASE_OWNER) {
        None | Some(AttributeValue::Null(true)) => None,
        Some(AttributeValue::S(o)) => Some(o.clone()),
        Some(_) => return Err(bad("leaseOwner is not a string")),
    };
    let checkpoint = match item.get(CHECKPOINT) {
        Some(AttributeValue::S(s)) => parse_checkpoint(s),
        _ => return Err(bad("missing or non-string checkpoint")),
    };
    let mut parent_shard_ids = match item.get(PARENT_SHARD_IDS) {
        None | Some(AttributeValue::Null(true)) => Vec::new(),
        Some(AttributeValue::Ss(ids)) => ids.clone(),
        Some(AttributeValue::L(ids)) => ids
            .iter()
            .map(|v| {
                v.as_s()
                    .cloned()
                    .map_err(|_| bad("parentShardIds holds a non-string"))
            })
            .collect::<Result<_, _>>()?,
        Some(_) => return Err(bad("parentShardIds is neither SS nor L")),
    };
    // A set comes back in no particular order; sorting keeps reads stable.
    parent_shard_ids.sort();
    Ok(Lease {
        lease_key: key.clone(),
        lease_owner,
        lease_counter: number(LEASE_COUNTER, true)?,
        checkpoint,
        parent_shard_ids,
        // KCL versions before 1.x-something did not write it; absent means none.
        owner_switches_since_checkpoint: number(OWNER_SWITCHES, false)?,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn leases_round_trip_through_items() {
        let mut lease = Lease::new(
            "shardId-1",
            vec!["p1".into(), "p2".into()],
            Checkpoint::TrimHorizon,
        );
        for cp in [
            Checkpoint::TrimHorizon,
            Checkpoint::Latest,
            Checkpoint::ShardEnd,
            Checkpoint::Sequence(SequenceNumber("4959".into())),
        ] {
            lease.checkpoint = cp;
            assert_eq!(decode(&encode(&lease)).unwrap(), lease);
        }
        lease.lease_owner = Some("w".into());
        lease.parent_shard_ids.clear();
        let item = encode(&lease);
        assert!(!item.contains_key(PARENT_SHARD_IDS), "an empty set is not stored");
        assert_eq!(decode(&item).unwrap(), lease);
    }

    #[test]
    fn decode_accepts_a_list_of_parents_and_rejects_junk() {
        let mut item = encode(&Lease::new("k", vec![], Checkpoint::Latest));
        item.insert(
            PARENT_SHARD_IDS.into(),
            AttributeValue::L(vec![AttributeValue::S("b".into()), AttributeValue::S("a".into())]),
        );
        assert_eq!(decode(&item).unwrap().parent_shard_ids, ["a", "b"]);
        item.insert(LEASE_COUNTER.into(), AttributeValue::N("-1".into()));
        assert!(matches!(decode(&item), Err(LeaseError::Unavailable(_))));
    }

    #[test]
    fn placeholders_match_whole_tokens() {
        assert!(uses("SET #cp = :cp", "#cp"));
        assert!(!uses("SET #cp = :cp", "#c"));
        assert!(uses("#c = :c AND #cp", "#c"));
    }
}
