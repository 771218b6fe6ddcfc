//! The batching producer: every record fleetwire writes to its stream goes through one
//! [`Producer`] actor, which packs records into `PutRecords` calls, retries what the stream
//! could not take, keeps each partition key's records in order and pushes back when full.
//!
//! - [`batcher`] (pure, unit-tested): the [`Batcher`] state machine. It forms batches within
//!   the Kinesis limits (≤ 500 entries, ≤ 5 MiB, ≤ 1 MiB per record including its partition
//!   key: the checks of [`crate::ports::stream`]), flushes when a batch is full or the
//!   oldest record waited `linger_ms`, retries only the failed entries with exponential
//!   backoff and full jitter, and gives up after `max_attempts` or `max_retry_ms` (counted
//!   from the offer).
//! - [`actor`]: the [`Producer`] actor, a thin shell that runs the batcher's calls on a
//!   [`RecordStream`](crate::ports::RecordStream), and the [`ProducerHandle`] callers use.
//! - [`dead_letter`]: the [`DeadLetterSink`] port: where a record goes when it exhausted
//!   its retries (in-process implementation in the binary's `backends/embedded/`).
//!
//! # Ordering
//!
//! `PutRecords` does not keep the order of its entries when some of them fail: a throttled
//! entry retried later lands after the entries that followed it. So the batcher never has
//! two entries of one partition key in flight at once: while a key's oldest entry is in a
//! call or waiting for its retry, the key's later entries wait behind it. Records of one
//! key therefore reach the stream in the order they were offered (a record that ends
//! failed or dead-lettered is skipped; the ones after it go on). The price: one key moves
//! at most one record per `PutRecords` round trip; throughput comes from many keys
//! (vehicles) sharing each call.
//!
//! # Capacity and acknowledgements
//!
//! At most `max_pending` records (and `max_pending_bytes`) are buffered, and at most
//! `max_in_flight` calls run at once. A `Produce` that does not fit is refused at once with
//! [`ProducerFull`]; the caller pushes back (HTTP ingest answers 503 + `Retry-After`).
//! Every accepted record ends with exactly one [`ProduceOutcome`]; nothing is dropped
//! silently.

pub mod actor;
pub mod batcher;
pub mod dead_letter;

use serde::{Deserialize, Serialize};

use crate::model::TenantId;
use crate::ports::stream::{MAX_PUT_RECORDS_BYTES, MAX_PUT_RECORDS_ENTRIES};
use crate::ports::{PutOutcome, SequenceNumber, ShardId, StreamError};

pub use actor::{Close, Produce, Producer, ProducerHandle};
pub use batcher::{Batch, BatchId, BatchReport, Batcher, CallResult, Completion};
pub use dead_letter::{
    DeadLetter, DeadLetterCursor, DeadLetterError, DeadLetterId, DeadLetterPage, DeadLetterQuery,
    DeadLetterSink, DeadLetterSource, StoredDeadLetter, UNKNOWN_TENANT,
};

/// What happened to one record given to the producer.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ProduceOutcome {
    /// The stream stored it.
    Stored {
        /// The shard it went to.
        shard_id: ShardId,
        /// Its position in that shard.
        sequence_number: SequenceNumber,
    },
    /// Not stored, and retrying it as is cannot help (`retryable == false`: an invalid
    /// record, an unknown stream), or the producer stopped before taking it
    /// (`retryable == true`: send it again later).
    Failed {
        /// Why.
        error: StreamError,
        /// Whether sending the same record again later can succeed.
        retryable: bool,
    },
    /// Not stored: it ran out of retries (or the producer stopped while it was pending).
    /// A copy went to the [`DeadLetterSink`] with this reason.
    DeadLettered {
        /// Why it was given up.
        reason: DeadLetterReason,
    },
}

impl From<PutOutcome> for ProduceOutcome {
    /// The outcome of a direct put (no producer in between), in the producer's terms.
    fn from(outcome: PutOutcome) -> Self {
        match outcome {
            PutOutcome::Stored {
                shard_id,
                sequence_number,
            } => ProduceOutcome::Stored {
                shard_id,
                sequence_number,
            },
            PutOutcome::Failed { error } => ProduceOutcome::Failed {
                retryable: error.is_retryable(),
                error,
            },
        }
    }
}

/// Why the producer gave up on a record.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum DeadLetterReason {
    /// Every one of `max_attempts` attempts failed with a retryable error.
    AttemptsExhausted {
        /// Attempts made.
        attempts: u32,
        /// The error of the last attempt.
        last_error: StreamError,
    },
    /// The record failed, and its next retry would have come more than `max_retry_ms`
    /// after it was offered.
    RetryTimeExhausted {
        /// Attempts made.
        attempts: u32,
        /// Milliseconds from the offer to giving up.
        waited_ms: u64,
        /// The error of the last attempt.
        last_error: StreamError,
    },
    /// The producer was stopped (shutdown limit reached) with the record still pending. If
    /// a call with it was in flight, the stream may have stored it after all.
    Shutdown {
        /// Attempts made (0: never sent).
        attempts: u32,
        /// The error of the last attempt, if any failed.
        last_error: Option<StreamError>,
    },
    /// The consumer read a record of a vehicle that is not in the vehicle registry (and
    /// the node does not provision unknown vehicles): it belongs to no tenant.
    Unprovisioned,
    /// The consumer read a record of a vehicle its tenant suspended.
    Suspended {
        /// The owning tenant.
        tenant: TenantId,
    },
    /// The consumer read a record it cannot decode (neither a valid JSON record nor a
    /// Tesla payload, or its vehicle differs from its partition key).
    Undecodable {
        /// The decode error (never the record's content).
        error: String,
    },
}

impl DeadLetterReason {
    /// Low-cardinality label for metrics: `attempts_exhausted` | `retry_time_exhausted` |
    /// `shutdown` | `unprovisioned` | `suspended` | `undecodable`.
    pub fn label(&self) -> &'static str {
        match self {
            DeadLetterReason::AttemptsExhausted { .. } => "attempts_exhausted",
            DeadLetterReason::RetryTimeExhausted { .. } => "retry_time_exhausted",
            DeadLetterReason::Shutdown { .. } => "shutdown",
            DeadLetterReason::Unprovisioned => "unprovisioned",
            DeadLetterReason::Suspended { .. } => "suspended",
            DeadLetterReason::Undecodable { .. } => "undecodable",
        }
    }

    /// Attempts made before giving up (0 for records refused by the tenancy check).
    pub fn attempts(&self) -> u32 {
        match self {
            DeadLetterReason::AttemptsExhausted { attempts, .. }
            | DeadLetterReason::RetryTimeExhausted { attempts, .. }
            | DeadLetterReason::Shutdown { attempts, .. } => *attempts,
            DeadLetterReason::Unprovisioned
            | DeadLetterReason::Suspended { .. }
            | DeadLetterReason::Undecodable { .. } => 0,
        }
    }
}

impl std::fmt::Display for DeadLetterReason {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            DeadLetterReason::AttemptsExhausted { attempts, last_error } => {
                write!(f, "gave up after {attempts} attempts; last error: {last_error}")
            }
            DeadLetterReason::RetryTimeExhausted {
                attempts,
                waited_ms,
                last_error,
            } => write!(
                f,
                "gave up after {waited_ms} ms and {attempts} attempts; last error: {last_error}"
            ),
            DeadLetterReason::Unprovisioned => f.write_str("the vehicle is not provisioned to any tenant"),
            DeadLetterReason::Suspended { tenant } => {
                write!(f, "the vehicle is suspended by tenant {tenant}")
            }
            DeadLetterReason::Undecodable { error } => write!(f, "undecodable: {error}"),
            DeadLetterReason::Shutdown { attempts, last_error } => {
                write!(
                    f,
                    "producer stopped with the record pending after {attempts} attempts"
                )?;
                match last_error {
                    Some(e) => write!(f, "; last error: {e}"),
                    None => Ok(()),
                }
            }
        }
    }
}

/// A `Produce` was refused because the producer holds as many records as it may: the
/// caller must push back (and try again later). Nothing of the request was taken.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
#[error("producer full: {pending} records pending, limit {max_pending}")]
pub struct ProducerFull {
    /// Records pending when the request came.
    pub pending: usize,
    /// `max_pending` of the producer.
    pub max_pending: usize,
}

/// Settings of the producer (`[producer]`). The defaults favour latency at low load and
/// full batches under load: when every call slot is busy, records pile up and the next
/// call takes up to a full batch anyway, so the linger only matters when traffic is light.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct ProducerConfig {
    /// Longest time, in milliseconds, a new record waits for others to share its
    /// `PutRecords` call when no batch is full. Default 1: every ingest answer and
    /// reliable Tesla ack waits for its record to be stored, so the linger is on each of
    /// them, while under load records share calls anyway (they pile up while every call
    /// slot is busy). Kinesis limits records and bytes per shard, not calls. With 5, the
    /// ack p50 of 10,000 Tesla vehicles was 3–4 ms higher (docs/performance.md). The
    /// KPL's default of 100 ms favours aggregation, which fleetwire does not do.
    pub linger_ms: u64,
    /// Most entries per `PutRecords` call, 1 to 500 (the Kinesis limit). Default 500.
    pub max_batch_entries: usize,
    /// Most bytes (partition keys + data) per call, 1024 to 5 MiB (the Kinesis limit).
    /// A record larger than this still goes, alone. Default 5 MiB.
    pub max_batch_bytes: usize,
    /// Most `PutRecords` calls in flight at once. Default 4.
    pub max_in_flight: usize,
    /// Most records buffered (waiting, in flight or waiting for a retry); a request that
    /// would exceed it is refused at once (ingest answers 503). Must be at least
    /// `http.max_batch_records`. Default 20 000 (about two seconds of a busy node).
    pub max_pending: usize,
    /// Most bytes buffered, like `max_pending`; a single request larger than this is
    /// taken only when nothing else is pending. Default 64 MiB.
    pub max_pending_bytes: usize,
    /// Backoff ceiling of the first retry, in milliseconds; it doubles per attempt up to
    /// `backoff_max_ms`, and each delay is drawn uniformly below it ("full jitter").
    /// Default 50.
    pub backoff_base_ms: u64,
    /// Largest backoff ceiling, in milliseconds. Default 2000.
    pub backoff_max_ms: u64,
    /// Attempts per record (the first one included) before it is dead-lettered. Default 8.
    pub max_attempts: u32,
    /// A record that fails when its next retry would come later than this many
    /// milliseconds after it was offered is dead-lettered. Counted from the offer, so a
    /// record held back behind an older record of its key that used up the time gets one
    /// attempt, not a budget of its own. It never expires a record that was not tried: on
    /// a healthy stream nothing is dead-lettered however long a key's backlog. Default
    /// 10 000.
    pub max_retry_ms: u64,
}

impl Default for ProducerConfig {
    fn default() -> Self {
        Self {
            linger_ms: 1,
            max_batch_entries: MAX_PUT_RECORDS_ENTRIES,
            max_batch_bytes: MAX_PUT_RECORDS_BYTES,
            max_in_flight: 4,
            max_pending: 20_000,
            max_pending_bytes: 64 * 1024 * 1024,
            backoff_base_ms: 50,
            backoff_max_ms: 2000,
            max_attempts: 8,
            max_retry_ms: 10_000,
        }
    }
}

impl ProducerConfig {
    /// Rules the types cannot express; each problem names its key (without the
    /// `producer.` prefix). Empty when the config is usable.
    pub fn problems(&self) -> Vec<String> {
        let mut problems = Vec::new();
        if self.linger_ms > 1000 {
            problems.push("linger_ms must be at most 1000".to_owned());
        }
        if !(1..=MAX_PUT_RECORDS_ENTRIES).contains(&self.max_batch_entries) {
            problems.push(format!(
                "max_batch_entries must be 1 to {MAX_PUT_RECORDS_ENTRIES}"
            ));
        }
        if !(1024..=MAX_PUT_RECORDS_BYTES).contains(&self.max_batch_bytes) {
            problems.push(format!("max_batch_bytes must be 1024 to {MAX_PUT_RECORDS_BYTES}"));
        }
        if self.max_in_flight == 0 {
            problems.push("max_in_flight must be at least 1".to_owned());
        }
        if self.max_pending < self.max_batch_entries {
            problems.push("max_pending must be at least max_batch_entries".to_owned());
        }
        if self.max_pending_bytes < self.max_batch_bytes {
            problems.push("max_pending_bytes must be at least max_batch_bytes".to_owned());
        }
        if self.backoff_base_ms == 0 {
            problems.push("backoff_base_ms must be at least 1".to_owned());
        }
        if self.backoff_max_ms < self.backoff_base_ms {
            problems.push("backoff_max_ms must be at least backoff_base_ms".to_owned());
        }
        if self.max_attempts == 0 {
            problems.push("max_attempts must be at least 1".to_owned());
        }
        if self.max_retry_ms == 0 {
            problems.push("max_retry_ms must be at least 1".to_owned());
        }
        problems
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn defaults_are_valid_and_documented() {
        let c = ProducerConfig::default();
        assert!(c.problems().is_empty(), "{:?}", c.problems());
        assert_eq!(c.linger_ms, 1);
        assert_eq!(c.max_batch_entries, 500);
        assert_eq!(c.max_batch_bytes, 5 * 1024 * 1024);
        assert_eq!(c.max_in_flight, 4);
        assert_eq!(c.max_pending, 20_000);
        assert_eq!((c.backoff_base_ms, c.backoff_max_ms), (50, 2000));
        assert_eq!((c.max_attempts, c.max_retry_ms), (8, 10_000));
    }

    #[test]
    fn problems_name_their_keys() {
        let c = ProducerConfig {
            linger_ms: 5000,
            max_batch_entries: 501,
            max_batch_bytes: 6 * 1024 * 1024,
            max_in_flight: 0,
            max_pending: 10,
            max_pending_bytes: 1,
            backoff_base_ms: 0,
            backoff_max_ms: 0,
            max_attempts: 0,
            max_retry_ms: 0,
        };
        let all = c.problems().join("; ");
        for key in [
            "linger_ms",
            "max_batch_entries",
            "max_batch_bytes",
            "max_in_flight",
            "max_pending ",
            "max_pending_bytes",
            "backoff_base_ms",
            "max_attempts",
            "max_retry_ms",
        ] {
            assert!(all.contains(key), "{key} missing from: {all}");
        }
        let parsed: Result<ProducerConfig, _> = serde_json::from_str(r#"{"linger": 3}"#);
        assert!(parsed.is_err(), "unknown keys are refused");
        let parsed: ProducerConfig = serde_json::from_str(r#"{"linger_ms": 3}"#).unwrap();
        assert_eq!(parsed.max_in_flight, 4);
    }

    #[test]
    fn dead_letter_reasons_read_well() {
        let r = DeadLetterReason::AttemptsExhausted {
            attempts: 8,
            last_error: StreamError::Throttled("shard full".into()),
        };
        assert_eq!(r.label(), "attempts_exhausted");
        assert_eq!(
            r.to_string(),
            "gave up after 8 attempts; last error: stream throttled: shard full"
        );
        let r = DeadLetterReason::Shutdown {
            attempts: 0,
            last_error: None,
        };
        assert_eq!(
            r.to_string(),
            "producer stopped with the record pending after 0 attempts"
        );
        assert_eq!(r.attempts(), 0);
    }
}
