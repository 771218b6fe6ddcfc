//! The JSON ingest path: validate a batch, put the valid records on the stream, and say
//! what happened to each record.
//!
//! A record is acknowledged (`accepted`) only once the stream has stored it; from there
//! the shard consumer is responsible for it. Invalid records are `rejected` with a reason
//! and never affect the others. Records the stream could not store right now (throttled
//! or unavailable) are `failed` and `retryable`: resending them is safe, because vehicle
//! actors drop duplicates.
//!
//! With a producer (every node starts one), the valid records go through
//! [`ProducerHandle::produce`] (batching, retries, per-vehicle order): a full producer
//! makes them `failed`/`retryable` (503 + `Retry-After`), and so does a record the producer
//! dead-lettered after its retries (it was not stored; the client may resend it).

use std::collections::{BTreeMap, HashMap};
use std::sync::{Arc, Mutex};

use chrono::{DateTime, Duration, Utc};
use fleetwire_actors::codec::encode_record;
use fleetwire_actors::model::{SignalValue, TelemetryRecord, TenantId, VehicleId};
use fleetwire_actors::ports::stream::MAX_PUT_RECORDS_ENTRIES;
use fleetwire_actors::ports::{PutEntry, RecordStream, SequenceNumber, ShardId, StreamError};
use fleetwire_actors::producer::{ProduceOutcome, ProducerHandle};
use fleetwire_actors::telemetry;
use serde::{Deserialize, Serialize};

/// Most signals in one record.
pub const MAX_SIGNALS_PER_RECORD: usize = 512;
/// Longest signal name.
pub const MAX_SIGNAL_NAME_LEN: usize = 128;
/// How far in the future a source timestamp may be (vehicle clocks drift a little).
pub const MAX_FUTURE_SKEW: Duration = Duration::minutes(5);

/// One record as a client sends it (the seed data contract). A record that breaks a rule
/// below is `rejected` on its own; the rest of the batch is still stored.
#[derive(Debug, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
#[schema(as = IngestRecord)]
pub(crate) struct IncomingRecord {
    /// When the vehicle measured the values (RFC 3339); at most 5 minutes in the future.
    timestamp: DateTime<Utc>,
    /// 1–128 characters of `A-Z a-z 0-9 _ - . :`.
    #[schema(example = "car-42")]
    vehicle_id: String,
    /// 1–512 signals (names of 1–128 characters); a value is a boolean, a finite number, a
    /// string or a location (latitude −90..90, longitude −180..180).
    #[schema(
        value_type = IngestPayload,
        example = json!({"Soc": 81.5, "Gear": "D", "Location": {"latitude": 52.52, "longitude": 13.4}})
    )]
    payload: BTreeMap<String, SignalValue>,
    /// CAN id of the source frame.
    #[serde(default)]
    can_id: Option<u32>,
}

/// Why a whole batch was refused (HTTP 400).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum BatchError {
    /// The body is not a JSON array.
    #[error("the body must be a JSON array of records: {0}")]
    NotAnArray(String),
    /// The array is empty.
    #[error("the batch is empty")]
    Empty,
    /// More records than allowed.
    #[error("the batch has {got} records; at most {max} are allowed per request")]
    TooManyRecords {
        /// Records sent.
        got: usize,
        /// Limit.
        max: usize,
    },
}

/// What happened to one record of a batch.
#[derive(Debug, Clone, PartialEq, Serialize, utoipa::ToSchema)]
#[serde(tag = "status", rename_all = "snake_case")]
pub enum RecordResult {
    /// Stored on the stream.
    Accepted {
        /// Shard it went to.
        shard_id: String,
        /// Its sequence number there.
        sequence_number: String,
    },
    /// Invalid; do not resend as is.
    Rejected {
        /// Why.
        error: String,
    },
    /// Not stored right now; resend later.
    Failed {
        /// Why.
        error: String,
        /// Always true: resending is safe.
        retryable: bool,
    },
}

/// The reply to an ingest request.
#[derive(Debug, Clone, PartialEq, Serialize, utoipa::ToSchema)]
pub struct IngestReply {
    /// Records stored.
    pub accepted: usize,
    /// Records refused as invalid.
    pub rejected: usize,
    /// Records not stored for now.
    pub failed: usize,
    /// One result per input record, in input order.
    pub results: Vec<RecordResult>,
}

/// The body of `POST /v1/ingest`: 1 to `http.max_batch_records` (default 1000) records
/// (documentation only: the handler reads the bytes itself).
pub(crate) struct IngestBatch;

impl utoipa::PartialSchema for IngestBatch {
    fn schema() -> utoipa::openapi::RefOr<utoipa::openapi::schema::Schema> {
        utoipa::openapi::schema::ArrayBuilder::new()
            .items(utoipa::openapi::Ref::from_schema_name("IngestRecord"))
            .min_items(Some(1))
            .into()
    }
}

impl utoipa::ToSchema for IngestBatch {
    fn schemas(schemas: &mut Vec<(String, utoipa::openapi::RefOr<utoipa::openapi::schema::Schema>)>) {
        use utoipa::PartialSchema;
        schemas.push(("IngestRecord".into(), IncomingRecord::schema()));
        <IncomingRecord as utoipa::ToSchema>::schemas(schemas);
    }
}

/// The signals of an ingest record: what the seed contract admits of a [`SignalValue`]
/// (no null, no nested records; those come from Tesla frames only). Documentation only.
pub(crate) struct IngestPayload;

impl utoipa::PartialSchema for IngestPayload {
    fn schema() -> utoipa::openapi::RefOr<utoipa::openapi::schema::Schema> {
        use utoipa::openapi::schema::{AnyOfBuilder, ObjectBuilder, SchemaType, Type};
        let of = |t: Type| ObjectBuilder::new().schema_type(SchemaType::Type(t)).build();
        let value = AnyOfBuilder::new()
            .item(of(Type::Boolean))
            .item(of(Type::Number))
            .item(of(Type::String))
            .item(utoipa::openapi::Ref::from_schema_name("GeoPoint"))
            .build();
        ObjectBuilder::new()
            .schema_type(SchemaType::Type(Type::Object))
            .description(Some("Signal name (1–128 characters) → value; 1 to 512 signals"))
            .additional_properties(Some(utoipa::openapi::schema::AdditionalProperties::RefOr(
                utoipa::openapi::schema::Schema::AnyOf(value).into(),
            )))
            .property_names(Some(
                ObjectBuilder::new()
                    .schema_type(SchemaType::Type(Type::String))
                    .min_length(Some(1))
                    .max_length(Some(MAX_SIGNAL_NAME_LEN)),
            ))
            .min_properties(Some(1))
            .max_properties(Some(MAX_SIGNALS_PER_RECORD))
            .into()
    }
}

impl utoipa::ToSchema for IngestPayload {}

/// The body of an ingest 503: a reply with `failed` records, or an error when the key
/// store is unavailable (documentation only: the handler sends one or the other).
#[derive(Serialize, utoipa::ToSchema)]
#[serde(untagged)]
#[allow(dead_code)]
pub(crate) enum IngestUnavailable {
    /// Some valid records were not stored; resend them.
    Partial(IngestReply),
    /// Nothing was looked at.
    Error(crate::http::ErrorBody),
}

/// Parses and validates a batch. Each element is either a record ready for the stream
/// or the reason it was rejected.
pub fn validate_batch(
    body: &[u8],
    now: DateTime<Utc>,
    max_records: usize,
) -> Result<Vec<Result<TelemetryRecord, String>>, BatchError> {
    let items: Vec<serde_json::Value> =
        serde_json::from_slice(body).map_err(|e| BatchError::NotAnArray(e.to_string()))?;
    if items.is_empty() {
        return Err(BatchError::Empty);
    }
    if items.len() > max_records {
        return Err(BatchError::TooManyRecords {
            got: items.len(),
            max: max_records,
        });
    }
    Ok(items.into_iter().map(|item| validate_record(item, now)).collect())
}

fn validate_record(item: serde_json::Value, now: DateTime<Utc>) -> Result<TelemetryRecord, String> {
    // serde would read a two-number array as a location; only objects are locations.
    if let Some((name, _)) = item
        .get("payload")
        .and_then(|p| p.as_object())
        .and_then(|p| p.iter().find(|(_, v)| v.is_array()))
    {
        return Err(format!(
            "signal {name} is an array; values are booleans, numbers, strings or locations"
        ));
    }
    let raw: IncomingRecord = serde_json::from_value(item).map_err(|e| e.to_string())?;
    let vehicle_id = VehicleId::parse(&raw.vehicle_id)?;
    if raw.payload.is_empty() {
        return Err("payload has no signals".to_owned());
    }
    if raw.payload.len() > MAX_SIGNALS_PER_RECORD {
        return Err(format!(
            "payload has {} signals; at most {MAX_SIGNALS_PER_RECORD} are allowed",
            raw.payload.len()
        ));
    }
    if let Some(name) = raw
        .payload
        .keys()
        .find(|k| k.is_empty() || k.len() > MAX_SIGNAL_NAME_LEN)
    {
        return Err(format!(
            "signal name {name:?} must be 1 to {MAX_SIGNAL_NAME_LEN} characters"
        ));
    }
    for (name, value) in &raw.payload {
        match value {
            SignalValue::Float(f) if !f.is_finite() => {
                return Err(format!("signal {name} is not a finite number"));
            }
            SignalValue::Location(l)
                if !(-90.0..=90.0).contains(&l.latitude) || !(-180.0..=180.0).contains(&l.longitude) =>
            {
                return Err(format!("signal {name} has an out-of-range position"));
            }
            // The seed contract has no null or nested values (those come from Tesla frames).
            SignalValue::Invalid => return Err(format!("signal {name} is null")),
            SignalValue::Fields(_) => {
                return Err(format!("signal {name} is an object that is not a location"));
            }
            _ => {}
        }
    }
    if raw.timestamp > now + MAX_FUTURE_SKEW {
        return Err(format!(
            "timestamp {} is in the future",
            raw.timestamp.to_rfc3339()
        ));
    }
    Ok(TelemetryRecord {
        timestamp: raw.timestamp,
        vehicle_id,
        payload: raw.payload,
        can_id: raw.can_id,
        ingest_received_at: now,
    })
}

/// What a [`RecordGate`] says of a record.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum GateVerdict {
    /// Store it.
    Admit,
    /// Refuse it for good, with the reason.
    Reject(String),
    /// Cannot judge now (a backend is down): the record fails, retryable.
    Retry(String),
}

/// A check every valid record of a gated ingest must pass (e.g. that the caller's
/// tenant owns the vehicle).
#[async_trait::async_trait]
pub trait RecordGate: Send + Sync {
    /// The verdict on a record of `vehicle`.
    async fn admit(&self, vehicle: &VehicleId) -> GateVerdict;

    /// The tenant whose records this gate admits, when it is one tenant's (an ingest key's):
    /// records the producer gives up on are dead-lettered under it.
    fn tenant(&self) -> Option<TenantId> {
        None
    }
}

/// The highest sequence number this node has acknowledged per shard. Shutdown waits
/// until the shard checkpoints reach these, so nothing acknowledged is left unprocessed.
#[derive(Debug, Clone, Default)]
pub struct AcceptedWatermarks(Arc<Mutex<HashMap<ShardId, SequenceNumber>>>);

impl AcceptedWatermarks {
    fn record(&self, shard: &ShardId, sequence: &SequenceNumber) {
        let mut map = self.0.lock().expect("watermark lock never poisoned");
        match map.get_mut(shard) {
            Some(current) if *current >= *sequence => {}
            Some(current) => *current = sequence.clone(),
            None => {
                map.insert(shard.clone(), sequence.clone());
            }
        }
    }

    /// A copy of the current watermarks.
    pub fn snapshot(&self) -> HashMap<ShardId, SequenceNumber> {
        self.0.lock().expect("watermark lock never poisoned").clone()
    }
}

/// Puts validated batches on the stream.
#[derive(Clone)]
pub struct Ingestor {
    stream: Arc<dyn RecordStream>,
    max_records: usize,
    watermarks: AcceptedWatermarks,
    /// When set, records go through the batching producer instead of direct puts.
    producer: Option<ProducerHandle>,
}

impl Ingestor {
    /// An ingestor writing to `stream`, accepting at most `max_records` per batch.
    pub fn new(stream: Arc<dyn RecordStream>, max_records: usize) -> Self {
        Self {
            stream,
            max_records,
            watermarks: AcceptedWatermarks::default(),
            producer: None,
        }
    }

    /// Sends the records through `producer` rather than straight to the stream.
    pub fn with_producer(mut self, producer: ProducerHandle) -> Self {
        self.producer = Some(producer);
        self
    }

    /// What this ingestor has acknowledged so far.
    pub fn watermarks(&self) -> &AcceptedWatermarks {
        &self.watermarks
    }

    /// Puts one already-encoded record (a vehicle's frame from the Tesla listener) and
    /// remembers its sequence number, so shutdown drains it like an HTTP-ingested record.
    pub async fn put_one(&self, entry: PutEntry) -> Result<(ShardId, SequenceNumber), StreamError> {
        let outcome = match &self.producer {
            // Through the producer, so records of many connections share PutRecords calls.
            Some(producer) => match producer.produce(vec![entry]).await {
                Ok(outcomes) => outcomes.into_iter().next(),
                Err(full) => return Err(StreamError::Throttled(full.to_string())),
            },
            None => self
                .stream
                .put_records(vec![entry])
                .await?
                .into_iter()
                .next()
                .map(ProduceOutcome::from),
        };
        match outcome {
            Some(ProduceOutcome::Stored {
                shard_id,
                sequence_number,
            }) => {
                self.watermarks.record(&shard_id, &sequence_number);
                Ok((shard_id, sequence_number))
            }
            Some(ProduceOutcome::Failed { error, .. }) => Err(error),
            Some(ProduceOutcome::DeadLettered { reason }) => Err(StreamError::Unavailable(format!(
                "dead-lettered: {}",
                reason.label()
            ))),
            None => Err(StreamError::Unavailable("the stream returned no outcome".into())),
        }
    }

    /// Validates `body` and stores its valid records.
    pub async fn ingest(&self, body: &[u8]) -> Result<IngestReply, BatchError> {
        self.ingest_gated(body, None).await
    }

    /// Like [`Ingestor::ingest`], and each valid record must also pass `gate` (whose
    /// vehicle it is): a refused record is `rejected`, one the gate cannot judge now is
    /// `failed`/retryable.
    pub async fn ingest_gated(
        &self,
        body: &[u8],
        gate: Option<&dyn RecordGate>,
    ) -> Result<IngestReply, BatchError> {
        let now = Utc::now();
        let validated = validate_batch(body, now, self.max_records)?;
        let mut results: Vec<Option<RecordResult>> = vec![None; validated.len()];
        let mut pending: Vec<(usize, PutEntry)> = Vec::new();
        for (index, item) in validated.into_iter().enumerate() {
            let verdict = match (&item, gate) {
                (Ok(record), Some(gate)) => gate.admit(&record.vehicle_id).await,
                _ => GateVerdict::Admit,
            };
            let item = match verdict {
                GateVerdict::Admit => item,
                GateVerdict::Reject(reason) => Err(reason),
                GateVerdict::Retry(error) => {
                    results[index] = Some(RecordResult::Failed {
                        error: format!("record {index}: {error}"),
                        retryable: true,
                    });
                    continue;
                }
            };
            match item {
                Ok(record) => pending.push((
                    index,
                    PutEntry {
                        partition_key: record.vehicle_id.0.clone(),
                        data: encode_record(&record),
                    },
                )),
                Err(error) => {
                    results[index] = Some(RecordResult::Rejected {
                        error: format!("record {index}: {error}"),
                    })
                }
            }
        }
        if let Some(producer) = &self.producer {
            let entries = std::mem::take(&mut pending);
            let tenant = gate.and_then(|g| g.tenant());
            self.produce(producer, tenant, entries, &mut results).await;
        }
        for chunk in pending.chunks(MAX_PUT_RECORDS_ENTRIES) {
            let entries = chunk.iter().map(|(_, e)| e.clone()).collect();
            match self.stream.put_records(entries).await {
                Ok(outcomes) => {
                    for ((index, _), outcome) in chunk.iter().zip(outcomes) {
                        results[*index] = Some(self.record_result(*index, outcome.into()));
                    }
                }
                Err(error) => {
                    for (index, _) in chunk {
                        results[*index] = Some(RecordResult::Failed {
                            error: error.to_string(),
                            retryable: true,
                        });
                    }
                }
            }
        }
        let results: Vec<RecordResult> = results
            .into_iter()
            .map(|r| r.expect("every record has a result"))
            .collect();
        let count = |f: fn(&RecordResult) -> bool| results.iter().filter(|r| f(r)).count();
        let reply = IngestReply {
            accepted: count(|r| matches!(r, RecordResult::Accepted { .. })),
            rejected: count(|r| matches!(r, RecordResult::Rejected { .. })),
            failed: count(|r| matches!(r, RecordResult::Failed { .. })),
            results,
        };
        for (result, n) in [
            ("accepted", reply.accepted),
            ("rejected", reply.rejected),
            ("failed", reply.failed),
        ] {
            metrics::counter!(telemetry::INGEST_RECORDS_TOTAL, "result" => result).increment(n as u64);
        }
        Ok(reply)
    }

    /// Writes `pending` through the producer and fills in their results.
    async fn produce(
        &self,
        producer: &ProducerHandle,
        tenant: Option<TenantId>,
        pending: Vec<(usize, PutEntry)>,
        results: &mut [Option<RecordResult>],
    ) {
        if pending.is_empty() {
            return;
        }
        let (indexes, entries): (Vec<usize>, Vec<PutEntry>) = pending.into_iter().unzip();
        let outcomes = match producer.produce_for(tenant, entries).await {
            Ok(outcomes) => outcomes,
            Err(full) => {
                for index in indexes {
                    results[index] = Some(RecordResult::Failed {
                        error: format!("not stored, try again later: {full}"),
                        retryable: true,
                    });
                }
                return;
            }
        };
        for (index, outcome) in indexes.into_iter().zip(outcomes) {
            results[index] = Some(self.record_result(index, outcome));
        }
    }

    /// What the client is told about record `index`; stored records move the watermark.
    fn record_result(&self, index: usize, outcome: ProduceOutcome) -> RecordResult {
        match outcome {
            ProduceOutcome::Stored {
                shard_id,
                sequence_number,
            } => {
                self.watermarks.record(&shard_id, &sequence_number);
                RecordResult::Accepted {
                    shard_id: shard_id.0,
                    sequence_number: sequence_number.0,
                }
            }
            ProduceOutcome::Failed {
                error,
                retryable: true,
            } => RecordResult::Failed {
                error: error.to_string(),
                retryable: true,
            },
            ProduceOutcome::Failed {
                error,
                retryable: false,
            } => RecordResult::Rejected {
                error: format!("record {index}: {error}"),
            },
            // Not stored: the client may resend it (dedupe makes a resend harmless).
            ProduceOutcome::DeadLettered { reason } => RecordResult::Failed {
                error: format!("not stored: {reason}"),
                retryable: true,
            },
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn now() -> DateTime<Utc> {
        "2026-06-01T12:00:00Z".parse().unwrap()
    }

    #[test]
    fn batch_level_errors() {
        assert!(matches!(
            validate_batch(b"{}", now(), 10),
            Err(BatchError::NotAnArray(_))
        ));
        assert!(matches!(
            validate_batch(b"[", now(), 10),
            Err(BatchError::NotAnArray(_))
        ));
        assert_eq!(validate_batch(b"[]", now(), 10), Err(BatchError::Empty));
        let three = br#"[{},{},{}]"#;
        assert_eq!(
            validate_batch(three, now(), 2),
            Err(BatchError::TooManyRecords { got: 3, max: 2 })
        );
    }

    #[test]
    fn each_record_is_judged_on_its_own() {
        let body = br#"[
            {"timestamp":"2026-06-01T11:59:59Z","vehicle_id":"v1","payload":{"Soc":80,"Location":{"latitude":52.5,"longitude":13.4}}},
            {"timestamp":"2026-06-01T11:59:59Z","vehicle_id":"v 2","payload":{"Soc":80}},
            {"timestamp":"2026-06-01T11:59:59Z","vehicle_id":"v3","payload":{}},
            {"timestamp":"2026-06-01T13:00:00Z","vehicle_id":"v4","payload":{"Soc":1}},
            {"timestamp":"yesterday","vehicle_id":"v5","payload":{"Soc":1}},
            {"timestamp":"2026-06-01T11:59:59Z","vehicle_id":"v6","payload":{"Soc":1},"extra":1},
            {"timestamp":"2026-06-01T11:59:59Z","vehicle_id":"v7","payload":{"Location":{"latitude":91,"longitude":0}}},
            {"timestamp":"2026-06-01T11:59:59Z","vehicle_id":"v8","payload":{"Nested":[1,2]}},
            {"timestamp":"2026-06-01T11:59:59Z","vehicle_id":"v9","payload":{"Soc":1},"can_id":513},
            {"timestamp":"2026-06-01T11:59:59Z","vehicle_id":"v10","payload":{"Soc":null}},
            {"timestamp":"2026-06-01T11:59:59Z","vehicle_id":"v11","payload":{"Doors":{"DriverFront":true}}}
        ]"#;
        let out = validate_batch(body, now(), 100).unwrap();
        let ok = out[0].as_ref().unwrap();
        assert_eq!(ok.vehicle_id.as_str(), "v1");
        assert_eq!(ok.ingest_received_at, now());
        assert!(out[1].as_ref().unwrap_err().contains("vehicle_id"));
        assert!(out[2].as_ref().unwrap_err().contains("no signals"));
        assert!(out[3].as_ref().unwrap_err().contains("future"));
        assert!(out[4].is_err());
        assert!(out[5].as_ref().unwrap_err().contains("extra"));
        assert!(out[6].as_ref().unwrap_err().contains("out-of-range"));
        assert!(out[7].is_err());
        assert_eq!(out[8].as_ref().unwrap().can_id, Some(513));
        assert!(out[9].as_ref().unwrap_err().contains("null"));
        assert!(out[10].as_ref().unwrap_err().contains("not a location"));
    }
}
