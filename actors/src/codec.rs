//! Record bodies on the stream. One stream carries two formats:
//!
//! - the seed JSON contract (see [`crate::model`]), written by [`encode_record`] for
//!   `POST /v1/ingest`;
//! - Tesla's dispatcher format: a `telemetry.vehicle_data.Payload` protobuf, the partition
//!   key being the vehicle id, written by the vehicle WebSocket server
//!   ([`crate::tesla::process_frame`]).
//!
//! # Telling them apart
//!
//! A body whose first byte is `{` (0x7B) is JSON; anything else (the empty body too) is a
//! `Payload`. As a protobuf tag, 0x7B is field 15 with wire type 3 (start group): `Payload`
//! has no field 15, and proto3 has no groups, so only an unknown field could start with it.
//! Every writer of `Payload` records puts known fields first — Go's marshaller (Tesla's own
//! dispatcher) and [`crate::tesla`]'s rewrite both write known fields, then unknown ones —
//! and a record always has its `vin`, so a protobuf record never starts with 0x7B, while
//! [`encode_record`] always starts with `{` (serde_json writes no leading whitespace).

use bytes::Bytes;

use crate::model::{TelemetryRecord, VehicleId};
use crate::ports::StreamRecord;
use crate::tesla::decode_vehicle_data;

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
    /// The record's vehicle is not the partition key it was put with. Neither value is
    /// kept: on a stream keyed by VIN (Tesla's own server) both may be clear VINs, and
    /// this error ends up in logs.
    #[error("record {sequence} names a different vehicle than its partition key")]
    KeyMismatch {
        /// Sequence number of the bad record.
        sequence: String,
    },
}

/// Serializes a record for the stream.
pub fn encode_record(record: &TelemetryRecord) -> Bytes {
    Bytes::from(serde_json::to_vec(record).expect("telemetry records always serialize"))
}

/// Parses a record read from the stream (either format, see the module doc) and checks it
/// against its partition key.
pub fn decode_record(record: &StreamRecord) -> Result<TelemetryRecord, DecodeError> {
    let malformed = |reason: String| DecodeError::Malformed {
        sequence: record.sequence_number.to_string(),
        reason,
    };
    let mismatch = || DecodeError::KeyMismatch {
        sequence: record.sequence_number.to_string(),
    };
    if record.data.first() == Some(&b'{') {
        let parsed: TelemetryRecord =
            serde_json::from_slice(&record.data).map_err(|e| malformed(e.to_string()))?;
        if parsed.vehicle_id.as_str() != record.partition_key {
            return Err(mismatch());
        }
        return Ok(parsed);
    }
    // Tesla's format: the vehicle is the partition key; the payload's vin, when set, must
    // name the same vehicle.
    let vehicle_id = VehicleId::parse(&record.partition_key).map_err(malformed)?;
    let data = decode_vehicle_data(&record.data).map_err(|e| malformed(e.to_string()))?;
    if !data.vin.is_empty() && data.vin != record.partition_key {
        return Err(mismatch());
    }
    Ok(TelemetryRecord {
        timestamp: data.created_at.unwrap_or(record.approximate_arrival),
        vehicle_id,
        payload: data.signals,
        can_id: None,
        ingest_received_at: record.approximate_arrival,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::model::SignalValue;
    use crate::ports::SequenceNumber;
    use crate::tesla::{FrameContext, Topic, Verdict, encode_vehicle_data, process_frame};

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

    /// A `V` payload as the WebSocket server puts it on the stream.
    fn tesla_record(vin_in_payload: &str, partition_key: &str) -> Bytes {
        let signals = [
            ("Soc".to_string(), SignalValue::Float(80.5)),
            ("Gear".to_string(), SignalValue::Text("ShiftStateD".into())),
        ]
        .into();
        let payload =
            encode_vehicle_data(vin_in_payload, "2026-01-01T00:00:00Z".parse().unwrap(), &signals).unwrap();
        let frame = crate::tesla::data_frame(&crate::tesla::DataFrame {
            txid: b"t",
            topic: Topic::V,
            message_id: b"m",
            created_at: 0,
            vin: vin_in_payload,
            payload: &payload,
        });
        let ctx = FrameContext {
            vin: vin_in_payload,
            vehicle_id: partition_key,
            topics: &Topic::ALL,
        };
        let Verdict::Dispatch(record) = process_frame(&frame, &ctx) else {
            panic!("dispatched")
        };
        assert_ne!(
            record.payload.first(),
            Some(&b'{'),
            "a Payload never starts with 0x7B"
        );
        record.payload
    }

    #[test]
    fn tesla_payloads_decode_on_the_same_stream() {
        let mut rec = stream_record("veh-1", tesla_record("5YJ3E1EA7RF261422", "veh-1"));
        let decoded = decode_record(&rec).unwrap();
        assert_eq!(decoded.vehicle_id.as_str(), "veh-1");
        assert_eq!(
            decoded.timestamp,
            "2026-01-01T00:00:00Z"
                .parse::<chrono::DateTime<chrono::Utc>>()
                .unwrap()
        );
        assert_eq!(decoded.ingest_received_at, rec.approximate_arrival);
        assert_eq!(decoded.payload["Soc"], SignalValue::Float(80.5));
        assert_eq!(decoded.payload["Gear"], SignalValue::Text("ShiftStateD".into()));
        rec.partition_key = "veh-2".into();
        let err = decode_record(&rec).unwrap_err();
        assert!(matches!(err, DecodeError::KeyMismatch { .. }));
        let logged = format!("{err} {err:?}");
        assert!(!logged.contains("veh-1") && !logged.contains("veh-2"), "{logged}");
        // Garbage that is not JSON is judged as protobuf and refused as such.
        let err = decode_record(&stream_record("veh-1", Bytes::from_static(&[0x0a, 0x05]))).unwrap_err();
        assert!(err.to_string().contains("vehicle_data.Payload"), "{err}");
        // An empty body is an empty Payload: a record without signals at arrival time.
        let empty = decode_record(&stream_record("veh-1", Bytes::new())).unwrap();
        assert!(empty.payload.is_empty());
    }
}
