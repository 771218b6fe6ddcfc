//! The server's decision for one frame: dispatch a record, or which replies to send.

use bytes::Bytes;
use chrono::{DateTime, Utc};

use super::Topic;
use super::envelope::{Classified, classify};
use super::error::{FrameRejection, PayloadError};
use super::frames::{ack, error_reply};
use super::payload::rewrite;

/// Who sent a frame and what this connection dispatches.
#[derive(Debug, Clone, Copy)]
pub struct FrameContext<'a> {
    /// The VIN from the client certificate's CommonName, as Tesla's `deviceId` (CN with `.`
    /// replaced by `-`). Only used to check the sender id of frames whose topic is not
    /// dispatched.
    pub vin: &'a str,
    /// The vehicle's pseudonym: the record's partition key and the payload's `vin` (the clear
    /// VIN never reaches the stream).
    pub vehicle_id: &'a str,
    /// Topics put on the stream (Tesla's `records` config).
    pub topics: &'a [Topic],
}

/// A record for the stream, with what the caller needs to ack and account for it.
#[derive(Debug, Clone, PartialEq)]
pub struct TeslaRecord {
    /// The record's topic (selects the stream).
    pub topic: Topic,
    /// The frame's txid, for the ack.
    pub txid: Vec<u8>,
    /// The frame's message id (logs; Tesla does not echo it).
    pub message_id: Vec<u8>,
    /// The stream partition key: the vehicle id.
    pub partition_key: String,
    /// The protobuf payload after Tesla's rewrites, `vin` = the vehicle id.
    pub payload: Bytes,
    /// The payload's `created_at`, when present and representable.
    pub created_at: Option<DateTime<Utc>>,
    /// Datums (`V`) or entries (`alerts`, `errors`) in the payload; 0 for `connectivity`.
    pub datums: usize,
}

impl TeslaRecord {
    /// The ack for this record: `ack(&self.txid, self.topic.as_str().as_bytes())`.
    pub fn ack(&self) -> Vec<u8> {
        ack(&self.txid, self.topic.as_str().as_bytes())
    }
}

/// What to do with a frame.
#[derive(Debug, Clone, PartialEq)]
pub enum Verdict {
    /// Put this on the stream; the caller acks with
    /// `ack(&record.txid, record.topic.as_str().as_bytes())` (now or, for reliable topics,
    /// after the put succeeded).
    Dispatch(TeslaRecord),
    /// Nothing is dispatched; send `replies` in order (Tesla's exact replies; where Tesla
    /// sends the same ack twice, it is sent once).
    Reply {
        /// Frames to send back, in order.
        replies: Vec<Vec<u8>>,
        /// Why nothing was dispatched.
        rejection: FrameRejection,
    },
}

/// Decides what happens to one binary frame, as Tesla's reference server does (FACTS.md
/// "Replies" and "What the server does to a record"):
///
/// | frame | reply | dispatched |
/// |---|---|---|
/// | longer than [`super::MAX_FRAME_BYTES`] | error reply, txid `""` | no |
/// | empty | ack `("", "")` | no |
/// | not a verifiable FlatBuffers envelope | error reply, txid `""` | no |
/// | no union value | ack `("", "")` | no |
/// | `message_type` ≠ 4 | ack `(txid, "")` | no |
/// | topic dispatched, payload not a valid message | error reply, txid | no |
/// | topic dispatched, payload valid (empty included) | ack `(txid, topic)` by the caller | yes |
/// | topic not dispatched, sender `vehicle_device.<vin>` or `<vin>` | ack `(txid, topic)` | no |
/// | topic not dispatched, other sender | error reply, txid | no |
///
/// Tesla sends the "empty", "no union value" and "type ≠ 4" acks twice (a missing
/// `return`); one is enough for a vehicle, so one is sent. The frame's own sender and
/// device ids are not checked for dispatched topics (Tesla does not either: identity
/// comes from the certificate). Pure: no I/O, no metrics, never panics.
pub fn process_frame(frame: &[u8], ctx: &FrameContext<'_>) -> Verdict {
    let reply = |replies: Vec<Vec<u8>>, rejection| Verdict::Reply { replies, rejection };
    let record = match classify(frame) {
        Ok(Classified::Stream(record)) => record,
        Ok(Classified::Other(head)) => {
            return reply(
                vec![ack(head.txid, b"")],
                FrameRejection::UnexpectedMessageType(head.message_type),
            );
        }
        Err(rejection @ (FrameRejection::Empty | FrameRejection::NoMessage)) => {
            return reply(vec![ack(b"", b"")], rejection);
        }
        Err(rejection) => return reply(vec![error_reply(b"")], rejection),
    };
    let txid = record.head.txid;
    let topic_bytes = record.head.topic;
    let Some(topic) = Topic::from_wire(topic_bytes).filter(|t| ctx.topics.contains(t)) else {
        let topic = String::from_utf8_lossy(topic_bytes).into_owned();
        return if sender_is(record.stream.sender_id, ctx.vin) {
            reply(
                vec![ack(txid, topic_bytes)],
                FrameRejection::UnknownTopic { topic },
            )
        } else {
            reply(vec![error_reply(txid)], FrameRejection::SenderMismatch { topic })
        };
    };
    match rewrite(topic, record.stream.payload, ctx.vehicle_id) {
        Ok(rewritten) => Verdict::Dispatch(TeslaRecord {
            topic,
            txid: txid.to_vec(),
            message_id: record.message_id.to_vec(),
            partition_key: ctx.vehicle_id.to_owned(),
            payload: Bytes::from(rewritten.payload),
            created_at: rewritten.created_at,
            datums: rewritten.datums,
        }),
        Err(error) => reply(
            vec![error_reply(txid)],
            FrameRejection::BadPayload(PayloadError::Malformed {
                message: topic.message_name(),
                error,
            }),
        ),
    }
}

/// Tesla accepts `vehicle_device.<deviceId>` or the bare `<deviceId>`.
fn sender_is(sender_id: &[u8], vin: &str) -> bool {
    sender_id == vin.as_bytes()
        || sender_id
            .strip_prefix(b"vehicle_device.")
            .is_some_and(|rest| rest == vin.as_bytes())
}

#[cfg(test)]
mod tests {
    use std::collections::BTreeMap;

    use super::super::wire::{WT_VARINT, put_len, put_tag, put_varint};
    use super::super::{
        DataFrame, data_frame, encode_vehicle_data, payload_to_json, read_envelope, vehicle_data_to_record,
    };
    use super::*;
    use crate::model::{Location, SignalValue, VehicleId};

    const VIN: &str = "5YJ3E1EA7RF261422";

    fn ctx() -> FrameContext<'static> {
        FrameContext {
            vin: VIN,
            vehicle_id: "veh-1",
            topics: &Topic::ALL,
        }
    }

    fn frame(topic: Topic, payload: &[u8]) -> Vec<u8> {
        data_frame(&DataFrame {
            txid: b"tx",
            topic,
            message_id: b"m",
            created_at: 1,
            vin: VIN,
            payload,
        })
    }

    fn dispatched(frame: &[u8]) -> TeslaRecord {
        match process_frame(frame, &ctx()) {
            Verdict::Dispatch(r) => r,
            other => panic!("expected a record, got {other:?}"),
        }
    }

    fn text_datum(key: u64, text: &str) -> Vec<u8> {
        let mut value = Vec::new();
        put_len(&mut value, 1, text.as_bytes());
        let mut datum = Vec::new();
        put_tag(&mut datum, 1, WT_VARINT);
        put_varint(&mut datum, key);
        put_len(&mut datum, 2, &value);
        datum
    }

    #[test]
    fn signals_survive_encode_frame_process_and_convert() {
        let signals: BTreeMap<String, SignalValue> = [
            ("VehicleSpeed", SignalValue::Float(64.5)),
            ("Odometer", SignalValue::Int(5_000_000_000)),
            ("ChargeAmps", SignalValue::Int(32)),
            ("Locked", SignalValue::Bool(false)),
            ("VehicleName", SignalValue::Text("Zephyr".into())),
            ("Gear", SignalValue::Text("ShiftStateD".into())),
            (
                "DetailedChargeState",
                SignalValue::Text("DetailedChargeStateCharging".into()),
            ),
            (
                "Location",
                SignalValue::Location(Location {
                    latitude: 37.5,
                    longitude: -122.25,
                }),
            ),
            ("EstBatteryRange", SignalValue::Invalid),
            (
                "DoorState",
                SignalValue::Fields(
                    [
                        ("DriverFront", true),
                        ("DriverRear", false),
                        ("PassengerFront", false),
                        ("PassengerRear", false),
                        ("TrunkFront", false),
                        ("TrunkRear", true),
                    ]
                    .map(|(k, v)| (k.to_string(), SignalValue::Bool(v)))
                    .into(),
                ),
            ),
        ]
        .map(|(k, v)| (k.to_string(), v))
        .into();
        let at = "2026-03-01T10:00:00.250Z".parse().unwrap();
        let payload = encode_vehicle_data(VIN, at, &signals).unwrap();
        let record = dispatched(&frame(Topic::V, &payload));
        assert_eq!(record.datums, signals.len());
        assert_eq!(record.created_at, Some(at));
        let json = payload_to_json(Topic::V, &record.payload).unwrap();
        assert_eq!(json["vin"], "veh-1");
        assert!(
            json.to_string().contains("\"shiftStateValue\":\"ShiftStateD\""),
            "{json}"
        );
        let converted =
            vehicle_data_to_record(&record.payload, VehicleId("veh-1".into()), chrono::Utc::now()).unwrap();
        assert_eq!(converted.timestamp, at);
        assert_eq!(converted.payload, signals);
    }

    #[test]
    fn unknown_signals_and_values_are_refused_by_the_encoder() {
        let at = chrono::Utc::now();
        let one = |k: &str, v: SignalValue| BTreeMap::from([(k.to_string(), v)]);
        assert!(encode_vehicle_data(VIN, at, &one("NoSuchField", SignalValue::Int(1))).is_err());
        let odd = SignalValue::Fields([("wheels".to_string(), SignalValue::Int(4))].into());
        assert!(encode_vehicle_data(VIN, at, &one("DoorState", odd)).is_err());
    }

    #[test]
    fn rewrites_first_text_location_and_scientific_text() {
        let mut payload = Vec::new();
        put_len(&mut payload, 1, &text_datum(21, "(37.5 N, 122.25 W)"));
        put_len(&mut payload, 1, &text_datum(21, "(1 N, 1 E)"));
        put_len(&mut payload, 1, &text_datum(7, "2.5e-2"));
        put_len(&mut payload, 3, VIN.as_bytes());
        let record = dispatched(&frame(Topic::V, &payload));
        let json = payload_to_json(Topic::V, &record.payload).unwrap();
        assert_eq!(
            json,
            serde_json::json!({
                "data": [
                    {"key": "Location", "value": {"locationValue": {"latitude": 37.5, "longitude": -122.25}}},
                    {"key": "Location", "value": {"stringValue": "(1 N, 1 E)"}},
                    {"key": "PackCurrent", "value": {"stringValue": "0.02500"}},
                ],
                "vin": "veh-1",
            })
        );
    }

    #[test]
    fn known_fields_come_first_and_unknown_ones_are_kept() {
        let mut payload = Vec::new();
        put_tag(&mut payload, 15, WT_VARINT); // unknown field 15
        put_varint(&mut payload, 9);
        put_tag(&mut payload, 4, WT_VARINT); // is_resend
        put_varint(&mut payload, 1);
        put_len(&mut payload, 3, b"SPOOFED");
        put_len(&mut payload, 1, &text_datum(64, "car"));
        let record = dispatched(&frame(Topic::V, &payload));
        let mut want = Vec::new();
        put_len(&mut want, 1, &text_datum(64, "car"));
        put_len(&mut want, 3, b"veh-1");
        want.extend_from_slice(&[0x20, 0x01, 0x78, 0x09]);
        assert_eq!(record.payload.as_ref(), want.as_slice());
    }

    #[test]
    fn alert_timestamps_in_milliseconds_are_fixed() {
        let mut ts = Vec::new();
        put_tag(&mut ts, 1, WT_VARINT);
        put_varint(&mut ts, 1_748_779_200_123); // milliseconds
        let mut alert = Vec::new();
        put_len(&mut alert, 1, b"A");
        put_len(&mut alert, 3, &ts);
        let mut payload = Vec::new();
        put_len(&mut payload, 1, &alert);
        let record = dispatched(&frame(Topic::Alerts, &payload));
        let json = payload_to_json(Topic::Alerts, &record.payload).unwrap();
        assert_eq!(json["alerts"][0]["startedAt"], "2025-06-01T12:00:00.123Z");
        assert_eq!(json["vin"], "veh-1");
    }

    #[test]
    fn replies_for_frames_that_are_not_records() {
        let reply_of = |frame: &[u8]| match process_frame(frame, &ctx()) {
            Verdict::Reply { replies, rejection } => (read_envelope(&replies[0]).unwrap(), rejection),
            other => panic!("{other:?}"),
        };
        // An ack sent by a vehicle: acked with its txid and no topic.
        let (env, why) = reply_of(&ack(b"tx9", b"V"));
        assert_eq!(
            (env.message_type, env.txid.as_slice(), env.topic.as_slice()),
            (5, &b"tx9"[..], &b""[..])
        );
        assert_eq!(why, FrameRejection::UnexpectedMessageType(5));
        // A payload that is not a Payload: error reply carrying the txid.
        let (env, why) = reply_of(&frame(Topic::V, &[0x1a, 0x01, 0xff]));
        assert_eq!((env.message_type, env.txid.as_slice()), (4, &b"tx"[..]));
        assert_eq!(why.reason(), "bad_payload");
        // Text.
        let (env, why) = reply_of(b"VIN,speed\n1,2");
        assert_eq!((env.message_type, env.txid.len()), (4, 0));
        assert_eq!(why.reason(), "not_flatbuffers");
    }

    #[test]
    fn sender_may_be_the_bare_vin_for_topics_not_dispatched() {
        assert!(sender_is(b"vehicle_device.5YJ3E1EA7RF261422", VIN));
        assert!(sender_is(VIN.as_bytes(), VIN));
        assert!(!sender_is(b"vehicle_device.5YJ3E1EA7RF261423", VIN));
        assert!(!sender_is(b"other.5YJ3E1EA7RF261422", VIN));
    }

    #[test]
    fn an_empty_payload_is_a_valid_record() {
        let record = dispatched(&frame(Topic::Errors, &[]));
        assert_eq!(
            payload_to_json(Topic::Errors, &record.payload).unwrap(),
            serde_json::json!({"vin": "veh-1"})
        );
        assert_eq!((record.datums, record.created_at), (0, None));
    }
}
