//! The raw archive: every record a shard consumer decodes is also written as one JSON line
//! into hour-partitioned part files (`raw/year=YYYY/month=MM/day=DD/hour=HH/part-<uuid>.jsonl`,
//! hour of the record's arrival on the stream, UTC) through the [`ArchiveSink`] port.
//!
//! - [`parts`]: the pure state machine: open part per hour, rotation by size or age.
//! - [`actor`]: the [`Archiver`] actor (thin shell: writes sealed parts, retries with
//!   backoff) and the [`ArchiveHandle`] the tenant router feeds.
//!
//! Acknowledgement rule: a batch's [`DurabilityHold`](crate::consumer::DurabilityHold) is
//! kept by every part holding one of its lines until that part is durable, so the shard
//! checkpoint never passes a record whose line could still be lost. The archive is
//! at-least-once: after a consumer restart the records since the last checkpoint are
//! archived again; readers dedupe on `(stream, shard, sequence)`.
//!
//! [`ArchiveSink`]: crate::ports::ArchiveSink

use std::path::PathBuf;
use std::time::Duration;

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};

use crate::model::{TelemetryRecord, TenantId, VehicleId};
use crate::ports::{SequenceNumber, ShardId};

pub mod actor;
pub mod parts;

pub use actor::{ArchiveHandle, Archiver};
pub use parts::{HourPartition, Parts, Rotation, SealedPart};

/// Where archive parts go.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum ArchiveBackend {
    /// A local directory (embedded mode).
    #[default]
    Directory,
    /// An S3 bucket (AWS profile).
    S3,
}

/// `[archive]`: the raw archive of every consumed record.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct ArchiveConfig {
    /// Archive every record the shard consumers decode. Default `false`.
    pub enabled: bool,
    /// `directory` or `s3`. Default `directory`.
    pub backend: ArchiveBackend,
    /// A part is sealed and written before it would exceed this many bytes. Default
    /// 8 MiB (a few minutes of a 1,000-vehicle fleet at 1 Hz; large enough for cheap S3
    /// PUTs and fast scans, small enough to buffer in memory).
    pub max_bytes: usize,
    /// A part is sealed this many seconds after its first line however small it is. It
    /// bounds how long a shard checkpoint waits for the archive. Default 60.
    pub max_age_secs: u64,
    /// Batches queued for the archiver; when full, shard consumers wait (push back).
    /// Default 16.
    pub queue_capacity: usize,
    /// First delay after a failed part write, in milliseconds; doubles per failure up to
    /// `retry_backoff_max_ms`. Default 200.
    pub retry_backoff_initial_ms: u64,
    /// Longest delay between part write attempts, in milliseconds. Default 10 000.
    pub retry_backoff_max_ms: u64,
    /// `directory` backend: where parts go. Default: `archive` under
    /// `embedded.data_dir` (required when there is no data dir).
    pub directory: Option<PathBuf>,
    /// `s3` backend: the bucket. Default empty (required with `s3`).
    pub bucket: String,
    /// `s3` backend: key prefix before `raw/…` (e.g. `fleetwire/`). Default empty.
    pub prefix: String,
    /// `s3` backend: region. Default `us-east-1`.
    pub region: String,
    /// `s3` backend: endpoint override (an emulator such as moto), with path-style
    /// addressing. Default none (AWS).
    pub endpoint_url: Option<String>,
    /// `s3` backend: fixed dummy credentials for emulators. Default `false`.
    pub static_credentials: bool,
}

impl Default for ArchiveConfig {
    fn default() -> Self {
        Self {
            enabled: false,
            backend: ArchiveBackend::Directory,
            max_bytes: 8 * 1024 * 1024,
            max_age_secs: 60,
            queue_capacity: 16,
            retry_backoff_initial_ms: 200,
            retry_backoff_max_ms: 10_000,
            directory: None,
            bucket: String::new(),
            prefix: String::new(),
            region: "us-east-1".into(),
            endpoint_url: None,
            static_credentials: false,
        }
    }
}

impl ArchiveConfig {
    /// The rotation rule.
    pub fn rotation(&self) -> Rotation {
        Rotation {
            max_bytes: self.max_bytes,
            max_age: Duration::from_secs(self.max_age_secs),
        }
    }

    /// What is wrong with these settings (only checked when enabled).
    pub fn problems(&self) -> Vec<String> {
        let mut problems = Vec::new();
        if !self.enabled {
            return problems;
        }
        if self.max_bytes < 1024 {
            problems.push("archive.max_bytes must be at least 1024".to_owned());
        }
        if self.max_age_secs == 0 {
            problems.push("archive.max_age_secs must be at least 1".to_owned());
        }
        if self.queue_capacity == 0 {
            problems.push("archive.queue_capacity must be at least 1".to_owned());
        }
        if self.backend == ArchiveBackend::S3 && self.bucket.trim().is_empty() {
            problems.push("archive.bucket must be set with backend = \"s3\"".to_owned());
        }
        problems
    }
}

/// One decoded record with where it came from: what the shard consumer hands the router
/// for the archive.
#[derive(Debug, Clone, PartialEq)]
pub struct ArchiveRecord {
    /// The shard it was read from.
    pub shard: ShardId,
    /// Its sequence number in that shard (readers dedupe on it).
    pub sequence: SequenceNumber,
    /// When the stream accepted it: picks the hour partition.
    pub arrival: DateTime<Utc>,
    /// The decoded record (its vehicle id already a pseudonym).
    pub record: TelemetryRecord,
}

/// One line of a part (docs/data-model.md, "Archive").
#[derive(Debug, Serialize, Deserialize, PartialEq)]
pub struct ArchiveLine {
    /// The pseudonymous vehicle id (never a VIN).
    pub vehicle_id: VehicleId,
    /// The vehicle's tenant when the router knew it (cached registration), else `null`.
    pub tenant: Option<TenantId>,
    /// The stream (Kinesis stream name, or `embedded`).
    pub stream: String,
    /// The shard id.
    pub shard: String,
    /// The record's sequence number in its shard (a decimal string, as Kinesis gives it).
    pub sequence: String,
    /// When the stream accepted the record (RFC 3339, UTC).
    pub arrival: DateTime<Utc>,
    /// The record's source timestamp.
    pub timestamp: DateTime<Utc>,
    /// The decoded record, as on the stream in seed JSON.
    pub record: TelemetryRecord,
}

/// Encodes `record` as a JSON line (ending in `\n`) and picks its hour partition.
pub fn encode_line(
    stream: &str,
    tenant: Option<TenantId>,
    record: ArchiveRecord,
) -> (HourPartition, Vec<u8>) {
    let line = ArchiveLine {
        vehicle_id: record.record.vehicle_id.clone(),
        tenant,
        stream: stream.to_owned(),
        shard: record.shard.0,
        sequence: record.sequence.0,
        arrival: record.arrival,
        timestamp: record.record.timestamp,
        record: record.record,
    };
    let mut bytes = serde_json::to_vec(&line).expect("archive lines always serialize");
    bytes.push(b'\n');
    (HourPartition::of(line.arrival), bytes)
}
