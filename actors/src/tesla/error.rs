//! Why a frame, a payload or a signal map was refused.

use flatbuffers::InvalidFlatbuffer;

use super::wire::WireError;

/// Why a frame produced no record. Each reason maps to the reply Tesla's server sends
/// (see [`super::process_frame`]) and to a stable metric label ([`FrameRejection::reason`]).
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum FrameRejection {
    /// Longer than [`super::MAX_FRAME_BYTES`]; refused before any decoding.
    #[error("frame of {len} bytes is larger than 1,000,000 bytes")]
    TooLarge {
        /// Frame length in bytes.
        len: usize,
    },
    /// A zero-length binary message.
    #[error("empty frame")]
    Empty,
    /// The bytes are not a well-formed FlatBuffers envelope (random bytes, text,
    /// truncation, offsets out of range or misaligned).
    #[error("not a FlatBuffers envelope: {0}")]
    NotFlatBuffers(InvalidFlatbuffer),
    /// The envelope has no `message` (union value).
    #[error("the envelope carries no message")]
    NoMessage,
    /// The envelope's `message_type` is not 4 (`FlatbuffersStream`), e.g. an ack sent by a
    /// vehicle.
    #[error("message_type {0} is not a vehicle record (expected 4, FlatbuffersStream)")]
    UnexpectedMessageType(u8),
    /// The topic is not one this connection dispatches; the sender id matched, so the
    /// frame is acked (as Tesla's server does) but nothing is stored.
    #[error("topic {topic:?} is not dispatched")]
    UnknownTopic {
        /// The envelope's topic, lossily decoded as UTF-8.
        topic: String,
    },
    /// The topic is not dispatched and the frame's sender id names another device.
    #[error("topic {topic:?} is not dispatched and the sender id is not this vehicle's")]
    SenderMismatch {
        /// The envelope's topic, lossily decoded as UTF-8.
        topic: String,
    },
    /// The payload is not a valid protobuf message of the topic's type (or, in
    /// [`super::describe_frame`] only, has no canonical JSON form).
    #[error("bad payload: {0}")]
    BadPayload(PayloadError),
}

impl FrameRejection {
    /// A stable, low-cardinality label for metrics (`reason`).
    pub fn reason(&self) -> &'static str {
        match self {
            FrameRejection::TooLarge { .. } => "too_large",
            FrameRejection::Empty => "empty",
            FrameRejection::NotFlatBuffers(_) => "not_flatbuffers",
            FrameRejection::NoMessage => "no_message",
            FrameRejection::UnexpectedMessageType(_) => "unexpected_message_type",
            FrameRejection::UnknownTopic { .. } => "unknown_topic",
            FrameRejection::SenderMismatch { .. } => "sender_mismatch",
            FrameRejection::BadPayload(_) => "bad_payload",
        }
    }
}

/// Why a payload could not be decoded or printed.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum PayloadError {
    /// The bytes are not a valid protobuf message of the expected type.
    #[error("not a valid {message}: {error}")]
    Malformed {
        /// Full protobuf name of the expected message.
        message: &'static str,
        /// What is wrong with it.
        error: WireError,
    },
    /// The message decoded but has no canonical JSON form (e.g. a timestamp outside
    /// 0001-01-01..9999-12-31).
    #[error("no canonical JSON form: {0}")]
    Json(String),
}

/// Why a signal map could not be encoded as a `vehicle_data.Payload`.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum EncodeError {
    /// The signal name is not a value name of the `Field` enum.
    #[error("signal {0:?} is not a Tesla Field name")]
    UnknownSignal(String),
    /// The value has no `Value` member that can carry it.
    #[error("signal {signal:?}: {reason}")]
    Unsupported {
        /// The signal.
        signal: String,
        /// Why its value cannot be encoded.
        reason: String,
    },
}
