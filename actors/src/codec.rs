//! Record bodies on the stream: the seed JSON contract (see [`crate::model`]).
//! Tesla's protobuf records get their own decoder here when that source lands.

use bytes::Bytes;

use crate::model::TelemetryRecord;
use crate::ports::StreamRecord;

/// Why a stream record could not be turned into a telemetry record.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum DecodeError {
    /// The body is not a valid record.
    #[error("record {sequence} is not a valid telemetry record: {reason}")]
    Malformed {
        /// Sequence number of the bad record.
        sequence: String,
        /// What is wrong with it.
        reason: String,
    },
    /// The record's vehicle is not the partition key it was put with.
    #[error("record {sequence} names vehicle {in_body} but was partitioned by {partition_key}")]
    KeyMismatch {
        /// Sequence number of the bad record.
        sequence: String,
        /// Vehicle in the body.
        in_body: String,
        /// Partition key.
        partition_key: String,
    },
}

/// Serializes a record for the stream.
pub fn encode_record(record: &TelemetryRecord) -> Bytes {
    Bytes::from(serde_json::to_vec(record).expect("telemetry records always serialize"))
}

/// Parses a record read from the stream and checks it against its partition key.
pub fn decode_record(record: &StreamRecord) -> Result<TelemetryRecord, DecodeError> {
    let parsed: TelemetryRecord =
        serde_json::from_slice(&record.data).map_err(|e| DecodeError::Malformed {
            sequence: record.sequence_number.to_string(),
            reason: e.to_string(),
        })?;
    if parsed.vehicle_id.as_str() != record.partition_key {
        return Err(DecodeError::KeyMismatch {
            sequence: record.sequence_number.to_string(),
            in_body: parsed.vehicle_id.to_string(),
            partition_key: record.partition_key.clone(),
        });
    }
    Ok(parsed)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::model::{SignalValue, VehicleId};
    use crate::ports::SequenceNumber;

    fn stream_record(pk: &str, data: Bytes) -> StreamRecord {
        StreamRecord {
            sequence_number: SequenceNumber("1".into()),
            partition_key: pk.into(),
            data,
            approximate_arrival: chrono::Utc::now(),
        }
    }

    #[test]
    fn round_trip_and_errors() {
        let rec = TelemetryRecord {
            timestamp: "2026-01-01T00:00:00Z".parse().unwrap(),
            vehicle_id: VehicleId("v1".into()),
            payload: [("Soc".to_string(), SignalValue::Float(80.5))].into(),
            can_id: Some(0x101),
            ingest_received_at: "2026-01-01T00:00:01Z".parse().unwrap(),
        };
        let bytes = encode_record(&rec);
        assert_eq!(decode_record(&stream_record("v1", bytes.clone())).unwrap(), rec);
        assert!(matches!(
            decode_record(&stream_record("v2", bytes)),
            Err(DecodeError::KeyMismatch { .. })
        ));
        let err = decode_record(&stream_record("v1", Bytes::from_static(b"{"))).unwrap_err();
        assert!(err.to_string().contains("not a valid telemetry record"));
    }
}
