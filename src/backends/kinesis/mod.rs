//! The Amazon Kinesis Data Streams backend of the stream port: [`KinesisStream`]
//! implements [`RecordStream`](fleetwire_actors::ports::RecordStream) with
//! `aws-sdk-kinesis`, so producers and shard consumers run unchanged on a real stream.
//!
//! # Shape
//!
//! - `stream.rs`: [`KinesisStream`], one SDK client plus the stream name; every port call
//!   is one Kinesis API call (ListShards pages with `NextToken`), plus admin helpers
//!   (create, split, merge, delete) for local development and tests.
//! - `errors.rs`: how SDK errors and per-record PutRecords error codes become
//!   [`StreamError`]s, in one table for every
//!   operation.
//! - The PutRecords limits (`fleetwire_actors::ports::stream::check_put_request` and
//!   `check_put_entry`, shared with the embedded stream) are checked before sending,
//!   because emulators do not enforce them and AWS would fail the whole call where the
//!   port fails one entry.
//!
//! # Error mapping
//!
//! | Kinesis says | port error | why |
//! |---|---|---|
//! | `ProvisionedThroughputExceededException`, `LimitExceededException`, `KMSThrottlingException`, `ThrottlingException` | `Throttled` | over a shard or account limit: back off and retry |
//! | `ExpiredIteratorException` | `ExpiredIterator` | get a new iterator from the checkpoint |
//! | `ResourceNotFoundException` | `NotFound` | no such stream or shard |
//! | `InvalidArgumentException`, `ValidationException` | `InvalidArgument` | the request itself is wrong |
//! | `ResourceInUseException` | `Unavailable` | the stream is being created or resharded: it passes |
//! | `InternalFailure`, any 5xx, timeouts, connection errors, unreadable responses | `Unavailable` | transient by nature |
//! | `AccessDeniedException`, `KMS*` other than throttling, unknown codes | `Unavailable` | fixed by an operator (IAM, KMS) without a restart, so callers keep retrying with backoff rather than drop records |
//! | the request could not be built (an SDK-side bug) | `InvalidArgument` | retrying the same input cannot help |
//!
//! Per-entry PutRecords error codes use the same table, so
//! `ProvisionedThroughputExceededException` fails that entry with `Throttled` and
//! `InternalFailure` with `Unavailable`, and callers retry only those entries.
//!
//! A request-level error of `put_records` means Kinesis did not confirm the records; after
//! a timeout they may still have been stored, so a retry can duplicate them (Kinesis is
//! at-least-once; the state store ignores updates older than what it holds).
//!
//! The SDK's own retry layer stays on (standard mode, 3 attempts): it absorbs single 5xx
//! answers and dropped connections within one port call. What still fails after that
//! reaches the caller, whose backoff covers longer outages.
//!
//! # The emulator
//!
//! Tests run against `kinesis-local` (`scripts/emulators start kinesis`;
//! `shared/notes/emulators.md`). It answers a garbage shard iterator with a bare HTTP 500
//! where AWS answers `InvalidArgumentException`; this backend does not second-guess a 500
//! (on AWS it is a real internal failure and must be retried), so against the emulator a
//! garbage iterator is `Unavailable`, against AWS `InvalidArgument`.

mod errors;
mod stream;

use std::time::Duration;

use fleetwire_actors::ports::StreamError;
use serde::{Deserialize, Serialize};

pub use stream::KinesisStream;

/// Configuration of the [`KinesisStream`].
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct KinesisConfig {
    /// Name of the Kinesis data stream (1–128 characters of `a-zA-Z0-9_.-`).
    /// Default: `"fleetwire_V"`.
    pub stream_name: String,
    /// Stream of Tesla `alerts` records (with the Tesla listener on). Default `"fleetwire_alerts"`.
    pub alerts_stream_name: String,
    /// Stream of Tesla `errors` records. Default `"fleetwire_errors"`.
    pub errors_stream_name: String,
    /// Stream of Tesla `connectivity` records. Default `"fleetwire_connectivity"`.
    pub connectivity_stream_name: String,
    /// AWS region of the stream. Default: `"us-east-1"`.
    pub region: String,
    /// Endpoint override: `None` uses the region's AWS endpoint; for kinesis-local use
    /// `Some("http://127.0.0.1:4568")`. Default: `None`.
    pub endpoint_url: Option<String>,
    /// `Some(shards)`: when the stream does not exist, create it (provisioned mode with
    /// that many shards) and wait until it is ACTIVE; for local development and tests.
    /// `None`: never create (production streams are provisioned by infrastructure code)
    /// and make no call at startup. Default: `None`.
    pub create_if_missing: Option<u32>,
    /// `false`: credentials from the default AWS chain (environment, profile, web
    /// identity, ECS/EC2 roles). `true`: fixed dummy credentials, which emulators accept
    /// and AWS rejects. Default: `false`.
    pub static_credentials: bool,
}

impl Default for KinesisConfig {
    fn default() -> Self {
        Self {
            stream_name: "fleetwire_V".into(),
            alerts_stream_name: "fleetwire_alerts".into(),
            errors_stream_name: "fleetwire_errors".into(),
            connectivity_stream_name: "fleetwire_connectivity".into(),
            region: "us-east-1".into(),
            endpoint_url: None,
            create_if_missing: None,
            static_credentials: false,
        }
    }
}

/// Longest stream name Kinesis accepts (CreateStream `StreamName`).
const MAX_STREAM_NAME_CHARS: usize = 128;

impl KinesisConfig {
    /// Checks what Kinesis would reject later with a less helpful message (the stream name
    /// pattern `[a-zA-Z0-9_.-]+`, 1–128 characters) and what cannot work at all.
    pub fn validate(&self) -> Result<(), KinesisError> {
        validate_stream_name(&self.stream_name)?;
        crate::backends::aws::check_connection("kinesis", &self.region, self.endpoint_url.as_deref())
            .map_err(KinesisError::InvalidConfig)?;
        if self.create_if_missing == Some(0) {
            return Err(KinesisError::InvalidConfig(
                "kinesis.create_if_missing must be at least 1 shard".into(),
            ));
        }
        Ok(())
    }
}

/// The CreateStream `StreamName` rules.
pub(crate) fn validate_stream_name(name: &str) -> Result<(), KinesisError> {
    let ok_chars = name
        .chars()
        .all(|c| c.is_ascii_alphanumeric() || matches!(c, '_' | '.' | '-'));
    if name.is_empty() || name.len() > MAX_STREAM_NAME_CHARS || !ok_chars {
        return Err(KinesisError::InvalidConfig(format!(
            "kinesis.stream_name must be 1 to {MAX_STREAM_NAME_CHARS} characters of a-z, A-Z, 0-9, _ . -, got {name:?}"
        )));
    }
    Ok(())
}

/// Errors while connecting to or administering a Kinesis stream (the per-call errors of
/// the port are [`StreamError`]s).
#[derive(Debug, thiserror::Error)]
pub enum KinesisError {
    /// The configuration cannot work (bad stream name, empty region, zero shards).
    #[error("invalid kinesis config: {0}")]
    InvalidConfig(String),
    /// A Kinesis call failed.
    #[error("kinesis stream {stream}: {source}")]
    Stream {
        /// The stream the call was about.
        stream: String,
        /// The classified failure.
        #[source]
        source: StreamError,
    },
    /// The stream did not become usable in time (or is being deleted).
    #[error("kinesis stream {stream} is {status}, not ACTIVE, after {waited:?}")]
    NotActive {
        /// The stream.
        stream: String,
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
        let cfg = KinesisConfig::default();
        assert_eq!(cfg.stream_name, "fleetwire_V");
        assert_eq!(cfg.region, "us-east-1");
        assert_eq!(cfg.endpoint_url, None);
        assert_eq!(cfg.create_if_missing, None);
        assert!(!cfg.static_credentials);
        cfg.validate().unwrap();
    }

    #[test]
    fn config_fills_defaults_and_rejects_unknown_fields() {
        let cfg: KinesisConfig =
            serde_json::from_str(r#"{"endpoint_url": "http://127.0.0.1:4568", "create_if_missing": 2}"#)
                .unwrap();
        assert_eq!(cfg.endpoint_url.as_deref(), Some("http://127.0.0.1:4568"));
        assert_eq!(cfg.create_if_missing, Some(2));
        assert_eq!(cfg.region, "us-east-1");
        assert!(serde_json::from_str::<KinesisConfig>(r#"{"stream": "x"}"#).is_err());
    }

    #[test]
    fn validation_rejects_what_kinesis_would() {
        let bad = |f: fn(&mut KinesisConfig)| {
            let mut cfg = KinesisConfig::default();
            f(&mut cfg);
            assert!(
                matches!(cfg.validate(), Err(KinesisError::InvalidConfig(_))),
                "{cfg:?} should be invalid"
            );
        };
        bad(|c| c.stream_name = String::new());
        bad(|c| c.stream_name = "has space".into());
        bad(|c| c.stream_name = "x".repeat(129));
        bad(|c| c.region = " ".into());
        bad(|c| c.endpoint_url = Some("127.0.0.1:4568".into()));
        bad(|c| c.create_if_missing = Some(0));
        let mut ok = KinesisConfig {
            stream_name: "a.B-9_".repeat(21),
            ..KinesisConfig::default()
        };
        ok.stream_name.truncate(128);
        ok.validate().unwrap();
    }
}
