//! Tesla Fleet Telemetry frames: the pure codec under the vehicle WebSocket server.
//!
//! A vehicle sends one binary WebSocket message per record: a FlatBuffers
//! `FlatbuffersEnvelope` (txid, topic, message type, message, message id) whose
//! `FlatbuffersStream` message carries a protobuf payload chosen by the topic. The server
//! answers with acks or error replies. Everything here follows Tesla's reference server
//! (github.com/teslamotors/fleet-telemetry, Apache-2.0) as recorded in
//! `shared/fixtures/tesla/FACTS.md`, and passes every case in `shared/fixtures/tesla/`.
//!
//! # Layout
//!
//! - [`process_frame`] (`process.rs`): the server's whole decision for a frame — a record
//!   to dispatch, or Tesla's exact replies — and [`FrameRejection`] with a metric label.
//! - `envelope.rs`: [`read_envelope`] and the staged classification of frames;
//!   `fb.rs`: the hand-written FlatBuffers tables and verifiers (no `flatc` needed).
//! - `frames.rs`: [`ack`], [`error_reply`], [`data_frame`] (what a vehicle sends).
//! - `wire.rs`: the protobuf wire format read with Go's `proto.Unmarshal` rules;
//!   `schema.rs`: the compiled `proto/tesla/*.proto` (prost types in [`pb`], descriptors).
//! - `payload.rs`: Tesla's rewrites of a record (vin, legacy text locations, scientific
//!   notation, millisecond alert timestamps), spliced on the wire bytes; `datum.rs`: a
//!   datum's key and effective value (checked in the same walk); `text.rs`: Tesla's text
//!   parsing (location text, scientific notation).
//! - `json.rs`: [`payload_to_json`], protobuf canonical JSON.
//! - `convert.rs`: [`vehicle_data_to_record`] into the pipeline's
//!   [`crate::model::TelemetryRecord`]; `encode.rs`: [`encode_vehicle_data`] for the
//!   simulator, [`connectivity_payload`] for the connect/disconnect records the server emits.
//! - `inspect.rs`: [`describe_frame`], behind `fleetwire tesla decode`.
//!
//! # Limits
//!
//! Frames longer than [`MAX_FRAME_BYTES`] are refused before any decoding. Every read of
//! a frame is verified first; nothing allocates more than a small multiple of the frame.

mod convert;
mod datum;
mod encode;
mod envelope;
mod error;
mod fb;
mod frames;
mod inspect;
mod json;
mod payload;
mod process;
mod schema;
mod text;
mod topic;
mod wire;

pub(crate) use convert::decode_vehicle_data;
pub use convert::vehicle_data_to_record;
pub use encode::{connectivity_payload, encode_vehicle_data};
pub use envelope::{Envelope, StreamMessage, read_envelope};
pub use error::{EncodeError, FrameRejection, PayloadError};
pub use fb::{MESSAGE_TYPE_ACK, MESSAGE_TYPE_STREAM};
pub use frames::{DataFrame, ERROR_REPLY_TEXT, ack, data_frame, error_reply};
pub use inspect::describe_frame;
pub use json::payload_to_json;
pub use process::{FrameContext, TeslaRecord, Verdict, process_frame};
pub use schema::{DESCRIPTOR_SET, descriptor_pool, pb};
pub use topic::Topic;
pub use wire::{MAX_GROUP_DEPTH, WireError};

/// Largest frame accepted, in bytes (Tesla's `SizeLimit`: a frame with `len > 1_000_000` is
/// refused).
pub const MAX_FRAME_BYTES: usize = 1_000_000;
