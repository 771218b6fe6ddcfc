//! Protobuf canonical JSON of a payload: the mapping Tesla's fixtures use
//! (`MessageToDict`): JSON names, enum value names (unknown numbers as numbers), int64 as
//! strings, `"NaN"`/`"Infinity"`, RFC 3339 timestamps, default values left out except a
//! set oneof member.

use prost_reflect::{DynamicMessage, SerializeOptions};

use super::Topic;
use super::error::PayloadError;
use super::schema::{MsgInfo, WireKind, message, schema};
use super::wire::{Reader, WireValue, put_len, validate};

/// The payload of a `topic` frame in protobuf canonical JSON, exactly as the fixtures'
/// `expect` (checked with Go's rules first; unknown fields are left out, as canonical JSON
/// has no place for them).
pub fn payload_to_json(topic: Topic, payload: &[u8]) -> Result<serde_json::Value, PayloadError> {
    let name = topic.message_name();
    let msg = schema().topic(topic);
    validate(msg, payload).map_err(|error| PayloadError::Malformed { message: name, error })?;
    // prost-reflect refuses a known field sent with another wire type, which Go keeps as an
    // unknown field; dropping unknown fields first makes both agree.
    let mut known = Vec::with_capacity(payload.len());
    strip_unknown(msg, payload, &mut known);
    let dynamic = DynamicMessage::decode(message(name), known.as_slice())
        .map_err(|e| PayloadError::Json(e.to_string()))?;
    dynamic
        .serialize_with_options(serde_json::value::Serializer, &SerializeOptions::new())
        .map_err(|e| PayloadError::Json(e.to_string()))
}

/// Copies the known fields of a validated message, recursively.
fn strip_unknown(msg: &MsgInfo, bytes: &[u8], out: &mut Vec<u8>) {
    for field in Reader::new(bytes).map_while(Result::ok) {
        let Some(info) = msg.field(field.number).filter(|info| info.accepts(&field.value)) else {
            continue;
        };
        match (info.kind, field.value) {
            (WireKind::Msg(index), WireValue::Len(inner)) => {
                let mut nested = Vec::with_capacity(inner.len());
                strip_unknown(&schema().messages[index], inner, &mut nested);
                put_len(out, field.number, &nested);
            }
            _ => out.extend_from_slice(field.raw),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn known_fields_with_a_foreign_wire_type_are_ignored_like_go() {
        // vin (3) sent as a varint, then is_resend = true, then an unknown group 15.
        let payload = [0x18, 0x01, 0x20, 0x01, 0x7b, 0x7c];
        let json = payload_to_json(Topic::V, &payload).unwrap();
        assert_eq!(json, serde_json::json!({"isResend": true}));
    }

    #[test]
    fn invalid_utf8_is_refused() {
        let err = payload_to_json(Topic::V, &[0x1a, 0x01, 0xff]).unwrap_err();
        assert!(err.to_string().contains("UTF-8"), "{err}");
    }
}
