//! A human-readable view of a frame, for `fleetwire tesla decode FILE...`.

use serde_json::{Value, json};

use super::Topic;
use super::envelope::read_envelope;
use super::error::FrameRejection;
use super::json::payload_to_json;

/// The envelope's fields and, for records, the payload in canonical JSON. Byte fields are
/// shown as text when they are UTF-8 and as `0x…` hex otherwise. A frame that Tesla's
/// server would not dispatch for any configuration (or whose payload does not decode) is
/// an error; acks and other message types are described without a payload.
pub fn describe_frame(bytes: &[u8]) -> Result<Value, FrameRejection> {
    let env = read_envelope(bytes)?;
    let mut out = json!({
        "bytes": bytes.len(),
        "txid": text(&env.txid),
        "topic": text(&env.topic),
        "message_type": env.message_type,
        "message_id": text(&env.message_id),
    });
    let Some(stream) = env.stream else { return Ok(out) };
    let payload = match Topic::from_wire(&env.topic) {
        Some(topic) => payload_to_json(topic, &stream.payload).map_err(FrameRejection::BadPayload)?,
        // Error replies carry text; anything else on an unknown topic is not decodable.
        None if env.topic.is_empty() => Value::String(text(&stream.payload)),
        None => {
            return Err(FrameRejection::UnknownTopic {
                topic: String::from_utf8_lossy(&env.topic).into_owned(),
            });
        }
    };
    out["created_at"] = json!(stream.created_at);
    out["sender_id"] = json!(text(&stream.sender_id));
    out["device_type"] = json!(text(&stream.device_type));
    out["device_id"] = json!(text(&stream.device_id));
    out["delivered_at_epoch_ms"] = json!(stream.delivered_at_epoch_ms);
    out["payload_bytes"] = json!(stream.payload.len());
    out["payload"] = payload;
    Ok(out)
}

fn text(bytes: &[u8]) -> String {
    match std::str::from_utf8(bytes) {
        Ok(s) => s.to_owned(),
        Err(_) => {
            let hex: String = bytes.iter().map(|b| format!("{b:02x}")).collect();
            format!("0x{hex}")
        }
    }
}

#[cfg(test)]
mod tests {
    use super::super::{DataFrame, ack, data_frame, error_reply};
    use super::*;

    #[test]
    fn describes_records_acks_and_error_replies() {
        let frame = data_frame(&DataFrame {
            txid: b"t1",
            topic: Topic::V,
            message_id: b"m1",
            created_at: 7,
            vin: "VIN1",
            payload: &[0x1a, 0x04, b'V', b'I', b'N', b'1'],
        });
        let d = describe_frame(&frame).unwrap();
        assert_eq!(d["topic"], "V");
        assert_eq!(d["sender_id"], "vehicle_device.VIN1");
        assert_eq!(d["payload"], json!({"vin": "VIN1"}));
        let d = describe_frame(&ack(b"t1", b"V")).unwrap();
        assert_eq!(d["message_type"], 5);
        assert!(d.get("payload").is_none());
        let d = describe_frame(&error_reply(&[0xff])).unwrap();
        assert_eq!(d["txid"], "0xff");
        assert_eq!(d["payload"], "incorrect message format");
        assert!(matches!(
            describe_frame(b"hello"),
            Err(FrameRejection::NotFlatBuffers(_))
        ));
    }
}
