//! Frames fleetwire writes: acks and error replies (server side) and vehicle data frames
//! (simulator and tests).

use super::Topic;
use super::fb::{self, StreamFields};

/// Payload text of every error reply (Tesla's server sends this whatever went wrong).
pub const ERROR_REPLY_TEXT: &str = "incorrect message format";

/// The ack Tesla's server sends: an envelope with `message_type` 5, the frame's `txid` and
/// `topic`, an empty `messageId` (Tesla never copies it), and the union value pointing at
/// an empty byte vector.
pub fn ack(txid: &[u8], topic: &[u8]) -> Vec<u8> {
    fb::build_ack_envelope(txid, topic)
}

/// The error reply Tesla's server sends: a `message_type` 4 envelope with `txid`, an empty
/// topic, empty sender/device vectors and the payload text [`ERROR_REPLY_TEXT`].
pub fn error_reply(txid: &[u8]) -> Vec<u8> {
    let fields = StreamFields {
        created_at: 0,
        sender_id: &[],
        payload: ERROR_REPLY_TEXT.as_bytes(),
        device_type: &[],
        device_id: &[],
    };
    fb::build_stream_envelope(txid, &[], &[], &fields)
}

/// What a vehicle sends in one binary WebSocket message.
#[derive(Debug, Clone, Copy)]
pub struct DataFrame<'a> {
    /// Transaction id the server's ack echoes (vehicles use a UUID).
    pub txid: &'a [u8],
    /// The record type.
    pub topic: Topic,
    /// The vehicle's message id.
    pub message_id: &'a [u8],
    /// Unix seconds.
    pub created_at: u32,
    /// The vehicle's VIN: `deviceId`, and `senderId` = `vehicle_device.<VIN>`.
    pub vin: &'a str,
    /// The protobuf payload of the topic's message.
    pub payload: &'a [u8],
}

/// Encodes a vehicle's frame the way a vehicle's Go-style builder does.
pub fn data_frame(frame: &DataFrame<'_>) -> Vec<u8> {
    let sender = format!("vehicle_device.{}", frame.vin);
    let fields = StreamFields {
        created_at: frame.created_at,
        sender_id: sender.as_bytes(),
        payload: frame.payload,
        device_type: b"vehicle_device",
        device_id: frame.vin.as_bytes(),
    };
    fb::build_stream_envelope(
        frame.txid,
        frame.topic.as_str().as_bytes(),
        frame.message_id,
        &fields,
    )
}

#[cfg(test)]
mod tests {
    use super::super::{FrameRejection, read_envelope};
    use super::*;

    #[test]
    fn ack_reads_back_with_the_layout_tesla_uses() {
        let bytes = ack(b"tx-1", b"V");
        assert_eq!(bytes.len() % 4, 0);
        let env = read_envelope(&bytes).unwrap();
        assert_eq!(
            (env.txid.as_slice(), env.topic.as_slice()),
            (&b"tx-1"[..], &b"V"[..])
        );
        assert_eq!(env.message_type, 5);
        assert!(env.message_id.is_empty());
        assert!(env.stream.is_none());
    }

    #[test]
    fn the_reused_builder_gives_the_same_bytes_every_time() {
        let small = ack(b"tx-1", b"V");
        let big_txid = vec![b'x'; 100_000];
        let big = ack(&big_txid, b"alerts");
        assert_eq!(read_envelope(&big).unwrap().txid, big_txid);
        assert_eq!(ack(b"tx-1", b"V"), small);
        assert_eq!(read_envelope(&error_reply(b"e")).unwrap().txid, b"e");
        assert_eq!(ack(b"tx-1", b"V"), small);
    }

    #[test]
    fn error_reply_reads_back() {
        let env = read_envelope(&error_reply(b"tx-2")).unwrap();
        assert_eq!(env.txid, b"tx-2");
        assert_eq!(env.message_type, 4);
        assert!(env.topic.is_empty());
        let stream = env.stream.unwrap();
        assert_eq!(stream.payload, ERROR_REPLY_TEXT.as_bytes());
        assert!(stream.sender_id.is_empty() && stream.device_id.is_empty());
    }

    #[test]
    fn data_frame_reads_back() {
        let frame = data_frame(&DataFrame {
            txid: b"t",
            topic: Topic::Alerts,
            message_id: b"m",
            created_at: 1_700_000_000,
            vin: "5YJ3E1EA7RF261422",
            payload: &[0x1a, 0x01, b'x'],
        });
        let env = read_envelope(&frame).unwrap();
        assert_eq!(env.topic, b"alerts");
        assert_eq!(env.message_id, b"m");
        let s = env.stream.unwrap();
        assert_eq!(s.created_at, 1_700_000_000);
        assert_eq!(s.sender_id, b"vehicle_device.5YJ3E1EA7RF261422");
        assert_eq!(s.device_type, b"vehicle_device");
        assert_eq!(s.device_id, b"5YJ3E1EA7RF261422");
        assert_eq!(s.payload, [0x1a, 0x01, b'x']);
        assert_eq!(s.delivered_at_epoch_ms, 0);
    }

    #[test]
    fn truncations_of_a_frame_are_refused_without_panicking() {
        let frame = data_frame(&DataFrame {
            txid: b"t",
            topic: Topic::V,
            message_id: b"m",
            created_at: 1,
            vin: "VIN",
            payload: b"",
        });
        let whole = read_envelope(&frame).unwrap();
        for len in 0..frame.len() {
            // Cutting only trailing padding leaves a valid frame; anything else is an error.
            if let Ok(env) = read_envelope(&frame[..len]) {
                assert_eq!(env, whole, "prefix of {len} bytes");
            }
        }
        assert!(matches!(read_envelope(&[]), Err(FrameRejection::Empty)));
    }
}
