//! The server's decision for one frame: dispatch a record, or which replies to send.

use bytes::Bytes;
use chrono::{DateTime, Utc};

use super::envelope::{Classified, classify};
use super::error::{FrameRejection, PayloadError};
use super::frames::{ack, error_reply};
use super::payload::rewrite;
use super::Topic;

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
            return reply(vec![ack(head.txid, b"")], FrameRejection::UnexpectedMessageType(head.message_type));
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
            reply(vec![ack(txid, topic_bytes)], FrameRejection::UnknownTopic { topic })
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
            FrameRejection::BadPayload(PayloadError::Malformed { message: topic.message_name(), error }),
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
