//! Reading envelopes: the classification every frame goes through, and the owned
//! [`Envelope`] that clients (acks) and the decode tool read.

use super::MAX_FRAME_BYTES;
use super::error::FrameRejection;
use super::fb::{self, Head, MESSAGE_TYPE_STREAM, StreamView};

/// The `FlatbuffersStream` table of an envelope: a vehicle's record, or a server's error
/// reply.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StreamMessage {
    /// When the vehicle created the record (Unix seconds; 0 when absent).
    pub created_at: u32,
    /// `vehicle_device.<VIN>` for vehicles.
    pub sender_id: Vec<u8>,
    /// The protobuf payload; its message type follows from the topic.
    pub payload: Vec<u8>,
    /// `vehicle_device` for vehicles.
    pub device_type: Vec<u8>,
    /// The VIN.
    pub device_id: Vec<u8>,
    /// Set by servers that forward frames; 0 when absent (as from vehicles).
    pub delivered_at_epoch_ms: u64,
}

impl From<StreamView<'_>> for StreamMessage {
    fn from(s: StreamView<'_>) -> Self {
        StreamMessage {
            created_at: s.created_at,
            sender_id: s.sender_id.to_vec(),
            payload: s.payload.to_vec(),
            device_type: s.device_type.to_vec(),
            device_id: s.device_id.to_vec(),
            delivered_at_epoch_ms: s.delivered_at_epoch_ms,
        }
    }
}

/// A verified `FlatbuffersEnvelope`, copied out of the frame.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Envelope {
    /// Transaction id (UTF-8 text by convention, not checked).
    pub txid: Vec<u8>,
    /// `V`, `alerts`, `errors`, `connectivity` (empty in error replies and some acks).
    pub topic: Vec<u8>,
    /// Union tag: 4 = `FlatbuffersStream`, 5 = `FlatbuffersStreamAck`.
    pub message_type: u8,
    /// The vehicle's message id (acks leave it empty).
    pub message_id: Vec<u8>,
    /// The stream table when `message_type` is 4.
    pub stream: Option<StreamMessage>,
}

/// Reads and verifies a frame. Acks (type 5) and other types come back with
/// `stream: None`; a frame without a message is [`FrameRejection::NoMessage`].
pub fn read_envelope(frame: &[u8]) -> Result<Envelope, FrameRejection> {
    let (head, stream) = match classify(frame)? {
        Classified::Stream(f) => (f.head, Some(StreamMessage::from(f.stream))),
        Classified::Other(head) => (head, None),
    };
    let message_id = fb::message_id(frame).map_err(FrameRejection::NotFlatBuffers)?;
    Ok(Envelope {
        txid: head.txid.to_vec(),
        topic: head.topic.to_vec(),
        message_type: head.message_type,
        message_id: message_id.to_vec(),
        stream,
    })
}

/// A type-4 frame, borrowed from the input.
#[derive(Debug, Clone, Copy)]
pub(crate) struct StreamFrame<'a> {
    pub head: Head<'a>,
    pub message_id: &'a [u8],
    pub stream: StreamView<'a>,
}

/// What a well-formed envelope turned out to be.
#[derive(Debug, Clone, Copy)]
pub(crate) enum Classified<'a> {
    /// `message_type` 4: a record.
    Stream(StreamFrame<'a>),
    /// Any other `message_type` (its message is not read, as in Go).
    Other(Head<'a>),
}

/// Size check, then the verification stages of [`fb`] in the order Tesla's reader reads.
/// The errors returned are the ones whose reply carries no txid.
pub(crate) fn classify(frame: &[u8]) -> Result<Classified<'_>, FrameRejection> {
    if frame.len() > MAX_FRAME_BYTES {
        return Err(FrameRejection::TooLarge { len: frame.len() });
    }
    if frame.is_empty() {
        return Err(FrameRejection::Empty);
    }
    // The common case in one verifier pass; the staged checks below decide the others.
    if let Some((head, message_id, stream)) = fb::record(frame) {
        return Ok(Classified::Stream(StreamFrame {
            head,
            message_id,
            stream,
        }));
    }
    if !fb::has_message(frame).map_err(FrameRejection::NotFlatBuffers)? {
        return Err(FrameRejection::NoMessage);
    }
    let head = fb::head(frame).map_err(FrameRejection::NotFlatBuffers)?;
    if head.message_type != MESSAGE_TYPE_STREAM {
        return Ok(Classified::Other(head));
    }
    let stream = fb::stream(frame).map_err(FrameRejection::NotFlatBuffers)?;
    let message_id = fb::message_id(frame).map_err(FrameRejection::NotFlatBuffers)?;
    Ok(Classified::Stream(StreamFrame {
        head,
        message_id,
        stream,
    }))
}
