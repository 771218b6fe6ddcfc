//! The Amazon Kinesis Data Streams backend of the stream port: [`KinesisStream`]
//! implements [`RecordStream`] with
//! `aws-sdk-kinesis`, so producers and shard consumers run unchanged on a real stream.
//!
//! # Shape
//!
//! - `stream.rs`: [`KinesisStream`], one SDK client plus the stream name; every port call
//!   is one Kinesis API call (ListShards pages with `NextToken`), plus admin helpers
//!   (create, split, merge, delete) for local development and tests.
//! - `fan_out.rs`: [`EnhancedFanOutStream`], the same port read through enhanced fan-out
//!   (RegisterStreamConsumer + SubscribeToShard) when `read_mode = "enhanced_fan_out"`:
//!   synthetic iterator tokens, one subscription per shard pulled on demand, resubscribing
//!   when a subscription expires or the reader jumps to another position (its module docs
//!   have the details). Lists, puts and pings go through the wrapped [`KinesisStream`].
//!   [`connect_record_stream`] picks the reader by [`ReadMode`].
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
//! | SubscribeToShard event-stream exceptions (by variant: the SDK leaves their code empty): `ResourceNotFoundException` / `KMSThrottlingException` / others | `NotFound` / `Throttled` / as by code above (`InternalFailureException`, `KMS*`: `Unavailable`) | same reasons; the next read subscribes again |
//! | SubscribeToShard `ResourceInUseException` (call or event) | none at first: the read waits up to 6 s, then returns an empty batch; `Unavailable` once it lasted 60 s | another subscription of the consumer still holds the shard (a previous owner's, or ours just dropped; AWS lets a call 5 s after it take over); for a minute it is something else (another deployment with the same consumer name), which the consumer's read errors should show |
//! | SubscribeToShard `LimitExceededException` | `Throttled` | over one call per second per consumer and shard (the reader spaces its calls 1.1 s apart) or too many consumers |
//! | RegisterStreamConsumer `ResourceInUseException` | none | the consumer exists: reuse it (DescribeStreamConsumer) |
//! | the consumer not ACTIVE within `register_timeout_secs`, or DELETING | `KinesisError::ConsumerNotActive` at start | an operator must look |
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
//! kinesis-local serves HTTP/1 on 4568 and TLS with HTTP/2 on 4567; enhanced fan-out needs
//! the TLS port. Its bundled certificate (`server.json` in the package) has no
//! subjectAltName, which rustls rejects for any host ("certificate is not valid for any
//! names"), so `scripts/emulators` generates a CA and a certificate for IP 127.0.0.1 and
//! localhost and starts it with `KINESIS_MOCK_CERT_PATH`; tests trust the CA through
//! `extra_ca_file`. kinesis-local's SubscribeToShard never ends a closed shard's stream
//! (no null ContinuationSequenceNumber, no ChildShards), so the end of a split shard is
//! tested against AWS's documented event only in unit tests, and on the emulator a closed
//! parent read by fan-out stays empty instead of ending.
//!
//! Tests run against `kinesis-local` (`scripts/emulators start kinesis`;
//! `shared/notes/emulators.md`). It answers a garbage shard iterator with a bare HTTP 500
//! where AWS answers `InvalidArgumentException`; this backend does not second-guess a 500
//! (on AWS it is a real internal failure and must be retried), so against the emulator a
//! garbage iterator is `Unavailable`, against AWS `InvalidArgument`.

mod errors;
mod fan_out;
mod stream;

use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use fleetwire_actors::ports::RecordStream;

use fleetwire_actors::ports::StreamError;
use serde::{Deserialize, Serialize};

pub use fan_out::{EnhancedFanOutStream, IteratorToken};
pub use stream::KinesisStream;

/// How the shard consumers read the stream.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum ReadMode {
    /// GetRecords polling: the shard's 2 MB/s and 5 calls/s of read throughput are shared
    /// by every application reading it. No registration, works on every emulator.
    #[default]
    Polling,
    /// Enhanced fan-out (SubscribeToShard over HTTP/2): a registered consumer gets its own
    /// 2 MB/s per shard and records are pushed as they arrive ([`EnhancedFanOutStream`]).
    EnhancedFanOut,
}

/// `[kinesis.enhanced_fan_out]`: settings of [`ReadMode::EnhancedFanOut`].
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct EnhancedFanOutConfig {
    /// Name of the registered stream consumer (1–128 characters of `a-zA-Z0-9_.-`). Every
    /// node of one deployment uses the same name, so they share one consumer (and its
    /// throughput), each subscribing to the shards it holds leases for. An existing
    /// consumer of that name is reused. Default `"fleetwire"`.
    pub consumer_name: String,
    /// Longest time one `get_records` call waits for the next event of a subscription
    /// before returning an empty batch (the consumer then backs off and asks again), in
    /// milliseconds, 1 to 60,000. Default 2,000.
    pub event_wait_ms: u64,
    /// How long `connect` waits for the consumer to become ACTIVE after registering it,
    /// in seconds (AWS takes a few seconds), at least 1. Default 120.
    pub register_timeout_secs: u64,
}

impl Default for EnhancedFanOutConfig {
    fn default() -> Self {
        Self {
            consumer_name: "fleetwire".into(),
            event_wait_ms: 2_000,
            register_timeout_secs: 120,
        }
    }
}

/// Most `event_wait_ms` allows: a minute without an answer is a hang to the consumer.
const MAX_EVENT_WAIT_MS: u64 = 60_000;

/// Connects the stream the shard consumers read, in the configured [`ReadMode`]: a
/// [`KinesisStream`] for polling, an [`EnhancedFanOutStream`] (registering its consumer)
/// for enhanced fan-out.
pub async fn connect_record_stream(config: &KinesisConfig) -> Result<Arc<dyn RecordStream>, KinesisError> {
    let polling = KinesisStream::connect(config).await?;
    Ok(match config.read_mode {
        ReadMode::Polling => Arc::new(polling),
        ReadMode::EnhancedFanOut => {
            Arc::new(EnhancedFanOutStream::connect(polling, &config.enhanced_fan_out).await?)
        }
    })
}

/// Reads and checks `kinesis.extra_ca_file`: PEM certificates that rustls accepts as
/// trust anchors (checked here because the SDK's HTTP client panics on one it cannot use).
pub(crate) fn load_extra_ca(path: &std::path::Path) -> Result<Vec<u8>, KinesisError> {
    use rustls::pki_types::CertificateDer;
    use rustls::pki_types::pem::PemObject;
    let bad =
        |why: String| KinesisError::InvalidConfig(format!("kinesis.extra_ca_file {}: {why}", path.display()));
    let pem = std::fs::read(path).map_err(|e| bad(e.to_string()))?;
    let certs = CertificateDer::pem_slice_iter(&pem)
        .collect::<Result<Vec<_>, _>>()
        .map_err(|e| bad(format!("not PEM certificates: {e}")))?;
    if certs.is_empty() {
        return Err(bad("holds no certificate".into()));
    }
    let mut roots = rustls::RootCertStore::empty();
    for cert in certs {
        roots
            .add(cert)
            .map_err(|e| bad(format!("not usable as a trusted root: {e}")))?;
    }
    Ok(pem)
}

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
    /// A PEM file of CA certificates to trust in addition to the system roots, for an
    /// `https://` endpoint with its own CA (kinesis-local's TLS port, a private endpoint).
    /// Certificates are verified as usual, names included. Default: `None`.
    pub extra_ca_file: Option<PathBuf>,
    /// How the shard consumers read: `"polling"` (GetRecords) or `"enhanced_fan_out"`
    /// (SubscribeToShard; needs an `https://` endpoint, as it runs over HTTP/2). Only the
    /// vehicle-data stream is read this way; the Tesla topic streams are only written.
    /// Default: `"polling"`.
    pub read_mode: ReadMode,
    /// `[kinesis.enhanced_fan_out]`: the consumer for `read_mode = "enhanced_fan_out"`.
    pub enhanced_fan_out: EnhancedFanOutConfig,
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
            extra_ca_file: None,
            read_mode: ReadMode::Polling,
            enhanced_fan_out: EnhancedFanOutConfig::default(),
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
        if self.read_mode == ReadMode::EnhancedFanOut {
            let efo = &self.enhanced_fan_out;
            validate_name("kinesis.enhanced_fan_out.consumer_name", &efo.consumer_name)?;
            if !(1..=MAX_EVENT_WAIT_MS).contains(&efo.event_wait_ms) {
                return Err(KinesisError::InvalidConfig(format!(
                    "kinesis.enhanced_fan_out.event_wait_ms must be 1 to {MAX_EVENT_WAIT_MS}, got {}",
                    efo.event_wait_ms
                )));
            }
            if efo.register_timeout_secs == 0 {
                return Err(KinesisError::InvalidConfig(
                    "kinesis.enhanced_fan_out.register_timeout_secs must be at least 1".into(),
                ));
            }
            // SubscribeToShard is an HTTP/2 event stream; the SDK's client speaks HTTP/2
            // only after TLS ALPN, so a plain endpoint cannot work.
            if let Some(url) = &self.endpoint_url
                && !url.starts_with("https://")
            {
                return Err(KinesisError::InvalidConfig(format!(
                    "kinesis.read_mode = \"enhanced_fan_out\" needs an https:// endpoint (HTTP/2), got {url:?}"
                )));
            }
        }
        Ok(())
    }
}

/// The CreateStream `StreamName` rules.
pub(crate) fn validate_stream_name(name: &str) -> Result<(), KinesisError> {
    validate_name("kinesis.stream_name", name)
}

/// The rules Kinesis has for stream and consumer names: 1–128 of `[a-zA-Z0-9_.-]`.
fn validate_name(field: &str, name: &str) -> Result<(), KinesisError> {
    let ok_chars = name
        .chars()
        .all(|c| c.is_ascii_alphanumeric() || matches!(c, '_' | '.' | '-'));
    if name.is_empty() || name.len() > MAX_STREAM_NAME_CHARS || !ok_chars {
        return Err(KinesisError::InvalidConfig(format!(
            "{field} must be 1 to {MAX_STREAM_NAME_CHARS} characters of a-z, A-Z, 0-9, _ . -, got {name:?}"
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
    /// The enhanced fan-out consumer did not become ACTIVE in time (or is being deleted).
    #[error("kinesis stream consumer {consumer} is {status}, not ACTIVE, after {waited:?}")]
    ConsumerNotActive {
        /// The consumer's name.
        consumer: String,
        /// Its last status (CREATING, DELETING).
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
    fn fan_out_config_defaults_and_validation() {
        let cfg: KinesisConfig = serde_json::from_str(
            r#"{"endpoint_url": "https://127.0.0.1:4567", "read_mode": "enhanced_fan_out",
                "enhanced_fan_out": {"consumer_name": "c-1"}}"#,
        )
        .unwrap();
        assert_eq!(cfg.read_mode, ReadMode::EnhancedFanOut);
        assert_eq!(cfg.enhanced_fan_out.consumer_name, "c-1");
        assert_eq!(cfg.enhanced_fan_out.event_wait_ms, 2_000);
        assert_eq!(cfg.enhanced_fan_out.register_timeout_secs, 120);
        cfg.validate().unwrap();
        assert_eq!(KinesisConfig::default().read_mode, ReadMode::Polling);
        assert!(serde_json::from_str::<KinesisConfig>(r#"{"enhanced_fan_out": {"consumer": "x"}}"#).is_err());
        assert!(serde_json::from_str::<KinesisConfig>(r#"{"read_mode": "fan_out"}"#).is_err());
        let bad = |f: fn(&mut KinesisConfig)| {
            let mut c = cfg.clone();
            f(&mut c);
            assert!(
                matches!(c.validate(), Err(KinesisError::InvalidConfig(_))),
                "{c:?}"
            );
        };
        bad(|c| c.enhanced_fan_out.consumer_name = "with space".into());
        bad(|c| c.enhanced_fan_out.event_wait_ms = 0);
        bad(|c| c.enhanced_fan_out.event_wait_ms = 60_001);
        bad(|c| c.enhanced_fan_out.register_timeout_secs = 0);
        bad(|c| c.endpoint_url = Some("http://127.0.0.1:4568".into()));
        // The fan-out settings do not matter while polling.
        let mut polling = cfg.clone();
        polling.read_mode = ReadMode::Polling;
        polling.endpoint_url = Some("http://127.0.0.1:4568".into());
        polling.enhanced_fan_out.event_wait_ms = 0;
        polling.validate().unwrap();
    }

    #[test]
    fn extra_ca_file_must_hold_usable_certificates() {
        let dir = std::env::temp_dir().join(format!("fw-ca-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let empty = dir.join("empty.pem");
        std::fs::write(&empty, "").unwrap();
        let garbage = dir.join("garbage.pem");
        std::fs::write(
            &garbage,
            "-----BEGIN CERTIFICATE-----\nAAAA\n-----END CERTIFICATE-----\n",
        )
        .unwrap();
        for path in [empty, garbage, dir.join("missing.pem")] {
            assert!(
                matches!(load_extra_ca(&path), Err(KinesisError::InvalidConfig(_))),
                "{path:?}"
            );
        }
        std::fs::remove_dir_all(&dir).ok();
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
