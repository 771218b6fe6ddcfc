//! Tesla's FlatBuffers tables, written by hand (there is no `flatc` on our machines):
//! slot offsets, verifiers and accessors in the shape `flatc` generates, over the
//! `flatbuffers` runtime.
//!
//! Reading is staged to follow what Tesla's Go reader touches, in its order, because the
//! reply depends on where it fails (see [`super::process_frame`]):
//! 1. [`has_message`]: the root table and its union slot. Absent slot = "no message".
//! 2. [`head`]: `txid`, `topic`, `message_type`. A type other than 4 is acked.
//! 3. [`stream`]: everything a type-4 frame carries, the stream table included.
//!
//! Every stage runs the `flatbuffers` verifier (bounded by [`verifier_options`]) before any
//! accessor reads, so out-of-range offsets are errors, never panics.

use std::cell::RefCell;

use flatbuffers::{
    FlatBufferBuilder, Follow, ForwardsUOffset, InvalidFlatbuffer, Table, VOffsetT, Vector, Verifiable,
    Verifier, VerifierOptions, WIPOffset,
};

use super::MAX_FRAME_BYTES;

/// `FlatbuffersEnvelope` vtable offsets (slot n sits at 4 + 2n).
mod env {
    use super::VOffsetT;
    pub const TXID: VOffsetT = 4;
    pub const TOPIC: VOffsetT = 6;
    pub const MESSAGE_TYPE: VOffsetT = 8;
    pub const MESSAGE: VOffsetT = 10;
    pub const MESSAGE_ID: VOffsetT = 12;
}

/// `FlatbuffersStream` vtable offsets.
mod stream {
    use super::VOffsetT;
    pub const CREATED_AT: VOffsetT = 4;
    pub const SENDER_ID: VOffsetT = 6;
    pub const PAYLOAD: VOffsetT = 8;
    pub const DEVICE_TYPE: VOffsetT = 10;
    pub const DEVICE_ID: VOffsetT = 12;
    pub const DELIVERED_AT_EPOCH_MS: VOffsetT = 14;
}

/// Union tag of `FlatbuffersStream` (a record, or the server's error reply).
pub const MESSAGE_TYPE_STREAM: u8 = 4;
/// Union tag of `FlatbuffersStreamAck`.
pub const MESSAGE_TYPE_ACK: u8 = 5;

/// Verifier bounds: our tables hold at most 12 fields and nest 2 deep, so these only stop
/// pathological inputs early; every read stays inside the frame anyway.
pub(crate) fn verifier_options() -> VerifierOptions {
    VerifierOptions {
        max_depth: 4,
        max_tables: 8,
        // Vectors may alias each other; 16 frames' worth is far beyond any honest frame.
        max_apparent_size: 16 * MAX_FRAME_BYTES,
        ignore_missing_null_terminator: true,
    }
}

/// A union value whose target is not read: Go only follows the offset.
struct Opaque;

impl Verifiable for Opaque {
    fn run_verifier(_: &mut Verifier, _: usize) -> Result<(), InvalidFlatbuffer> {
        Ok(())
    }
}

type Bytes<'a> = ForwardsUOffset<Vector<'a, u8>>;

/// Stage 1: root table plus the union offset.
struct UnionSlotCheck;

impl Verifiable for UnionSlotCheck {
    fn run_verifier(v: &mut Verifier, pos: usize) -> Result<(), InvalidFlatbuffer> {
        v.visit_table(pos)?
            .visit_field::<ForwardsUOffset<Opaque>>("message", env::MESSAGE, false)?
            .finish();
        Ok(())
    }
}

/// Stage 2: what Go reads of any envelope that has a message.
struct HeadCheck;

impl Verifiable for HeadCheck {
    fn run_verifier(v: &mut Verifier, pos: usize) -> Result<(), InvalidFlatbuffer> {
        v.visit_table(pos)?
            .visit_field::<Bytes>("txid", env::TXID, false)?
            .visit_field::<Bytes>("topic", env::TOPIC, false)?
            .visit_field::<u8>("message_type", env::MESSAGE_TYPE, false)?
            .visit_field::<ForwardsUOffset<Opaque>>("message", env::MESSAGE, false)?
            .finish();
        Ok(())
    }
}

/// The envelope's `messageId` (read for records and by [`super::read_envelope`]).
struct MessageIdCheck;

impl Verifiable for MessageIdCheck {
    fn run_verifier(v: &mut Verifier, pos: usize) -> Result<(), InvalidFlatbuffer> {
        v.visit_table(pos)?
            .visit_field::<Bytes>("messageId", env::MESSAGE_ID, false)?
            .finish();
        Ok(())
    }
}

/// Stage 3: the `FlatbuffersStream` table a type-4 envelope points at.
struct StreamCheck;

impl Verifiable for StreamCheck {
    fn run_verifier(v: &mut Verifier, pos: usize) -> Result<(), InvalidFlatbuffer> {
        v.visit_table(pos)?
            .visit_field::<u32>("createdAt", stream::CREATED_AT, false)?
            .visit_field::<Bytes>("senderId", stream::SENDER_ID, false)?
            .visit_field::<Bytes>("payload", stream::PAYLOAD, false)?
            .visit_field::<Bytes>("deviceType", stream::DEVICE_TYPE, false)?
            .visit_field::<Bytes>("deviceId", stream::DEVICE_ID, false)?
            .visit_field::<u64>("deliveredAtEpochMs", stream::DELIVERED_AT_EPOCH_MS, false)?
            .finish();
        Ok(())
    }
}

/// Everything at once, for the common case (a well-formed record): stages 2 and 3 plus
/// `messageId`. When it fails, the stages run one by one to find the right reply.
struct RecordCheck;

impl Verifiable for RecordCheck {
    fn run_verifier(v: &mut Verifier, pos: usize) -> Result<(), InvalidFlatbuffer> {
        v.visit_table(pos)?
            .visit_field::<Bytes>("txid", env::TXID, false)?
            .visit_field::<Bytes>("topic", env::TOPIC, false)?
            .visit_field::<u8>("message_type", env::MESSAGE_TYPE, false)?
            .visit_field::<ForwardsUOffset<StreamCheck>>("message", env::MESSAGE, false)?
            .visit_field::<Bytes>("messageId", env::MESSAGE_ID, false)?
            .finish();
        Ok(())
    }
}

struct StreamUnionCheck;

impl Verifiable for StreamUnionCheck {
    fn run_verifier(v: &mut Verifier, pos: usize) -> Result<(), InvalidFlatbuffer> {
        v.visit_table(pos)?
            .visit_field::<ForwardsUOffset<StreamCheck>>("message", env::MESSAGE, false)?
            .finish();
        Ok(())
    }
}

fn verify<T: Verifiable>(buf: &[u8]) -> Result<(), InvalidFlatbuffer> {
    let opts = verifier_options();
    let mut v = Verifier::new(&opts, buf);
    <ForwardsUOffset<T>>::run_verifier(&mut v, 0)
}

/// The root table. Only call after a stage verified the fields that will be read.
fn root_table(buf: &[u8]) -> Table<'_> {
    // SAFETY: every caller ran a verifier over the root offset and the root table first.
    unsafe { <ForwardsUOffset<Table>>::follow(buf, 0) }
}

/// A verified byte vector in slot `slot` of `table` (empty when absent).
///
/// # Safety
/// The slot must have been verified as `[ubyte]`.
unsafe fn bytes_at<'a>(table: &Table<'a>, slot: VOffsetT) -> &'a [u8] {
    // SAFETY: guaranteed by the caller.
    unsafe { table.get::<Bytes<'a>>(slot, None) }.map_or(&[], |v| v.bytes())
}

/// Stage 1: whether the envelope has a union value.
pub(crate) fn has_message(buf: &[u8]) -> Result<bool, InvalidFlatbuffer> {
    verify::<UnionSlotCheck>(buf)?;
    Ok(root_table(buf).vtable().get(env::MESSAGE) != 0)
}

/// What every envelope with a message has.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Head<'a> {
    pub txid: &'a [u8],
    pub topic: &'a [u8],
    pub message_type: u8,
}

/// Stage 2: `txid`, `topic` and `message_type`.
pub(crate) fn head(buf: &[u8]) -> Result<Head<'_>, InvalidFlatbuffer> {
    verify::<HeadCheck>(buf)?;
    let table = root_table(buf);
    // SAFETY: HeadCheck verified these three slots with these types.
    unsafe {
        Ok(Head {
            txid: bytes_at(&table, env::TXID),
            topic: bytes_at(&table, env::TOPIC),
            message_type: table.get::<u8>(env::MESSAGE_TYPE, Some(0)).unwrap_or(0),
        })
    }
}

/// The envelope's `messageId`.
pub(crate) fn message_id(buf: &[u8]) -> Result<&[u8], InvalidFlatbuffer> {
    verify::<MessageIdCheck>(buf)?;
    // SAFETY: MessageIdCheck verified the slot as [ubyte].
    Ok(unsafe { bytes_at(&root_table(buf), env::MESSAGE_ID) })
}

/// The `FlatbuffersStream` table of a type-4 envelope.
#[derive(Debug, Clone, Copy)]
pub(crate) struct StreamView<'a> {
    pub created_at: u32,
    pub sender_id: &'a [u8],
    pub payload: &'a [u8],
    pub device_type: &'a [u8],
    pub device_id: &'a [u8],
    pub delivered_at_epoch_ms: u64,
}

/// Stage 3: the stream table. Only for envelopes whose `message_type` is 4.
pub(crate) fn stream(buf: &[u8]) -> Result<StreamView<'_>, InvalidFlatbuffer> {
    verify::<StreamUnionCheck>(buf)?;
    // SAFETY: StreamUnionCheck verified the union offset and the table it points at, with
    // every slot read below.
    unsafe { stream_unchecked(buf) }
}

/// A type-4 envelope verified in one pass, or `None` when [`RecordCheck`] fails or the frame
/// is not a type-4 record (the caller then runs the stages).
pub(crate) fn record(buf: &[u8]) -> Option<(Head<'_>, &[u8], StreamView<'_>)> {
    verify::<RecordCheck>(buf).ok()?;
    let table = root_table(buf);
    // SAFETY: RecordCheck verified every slot read here, the union as a stream table.
    unsafe {
        let message_type = table.get::<u8>(env::MESSAGE_TYPE, Some(0)).unwrap_or(0);
        if message_type != MESSAGE_TYPE_STREAM || table.vtable().get(env::MESSAGE) == 0 {
            return None;
        }
        let head = Head {
            txid: bytes_at(&table, env::TXID),
            topic: bytes_at(&table, env::TOPIC),
            message_type,
        };
        Some((
            head,
            bytes_at(&table, env::MESSAGE_ID),
            stream_unchecked(buf).ok()?,
        ))
    }
}

/// # Safety
/// The union slot must have been verified as a `FlatbuffersStream` table.
unsafe fn stream_unchecked(buf: &[u8]) -> Result<StreamView<'_>, InvalidFlatbuffer> {
    // SAFETY: guaranteed by the caller.
    unsafe {
        let table = root_table(buf)
            .get::<ForwardsUOffset<Table>>(env::MESSAGE, None)
            .ok_or(InvalidFlatbuffer::MissingRequiredField {
                required: "message".into(),
                error_trace: Default::default(),
            })?;
        Ok(StreamView {
            created_at: table.get::<u32>(stream::CREATED_AT, Some(0)).unwrap_or(0),
            sender_id: bytes_at(&table, stream::SENDER_ID),
            payload: bytes_at(&table, stream::PAYLOAD),
            device_type: bytes_at(&table, stream::DEVICE_TYPE),
            device_id: bytes_at(&table, stream::DEVICE_ID),
            delivered_at_epoch_ms: table
                .get::<u64>(stream::DELIVERED_AT_EPOCH_MS, Some(0))
                .unwrap_or(0),
        })
    }
}

/// Fields of a `FlatbuffersStream` to build.
pub(crate) struct StreamFields<'a> {
    pub created_at: u32,
    pub sender_id: &'a [u8],
    pub payload: &'a [u8],
    pub device_type: &'a [u8],
    pub device_id: &'a [u8],
}

thread_local! {
    /// One builder per thread, reused: an ack then costs one allocation (the returned
    /// bytes) instead of the builder's own buffers every time.
    static BUILDER: RefCell<FlatBufferBuilder<'static>> = RefCell::new(FlatBufferBuilder::with_capacity(256));
}

/// A kept builder never holds more than this (a huge txid must not pin memory per thread).
const MAX_KEPT_BUILDER_BYTES: usize = 64 * 1024;

fn with_builder(build: impl FnOnce(&mut FlatBufferBuilder<'static>) -> Vec<u8>) -> Vec<u8> {
    BUILDER.with(|cell| match cell.try_borrow_mut() {
        Ok(mut b) => {
            b.reset();
            let out = build(&mut b);
            if out.len() > MAX_KEPT_BUILDER_BYTES {
                *b = FlatBufferBuilder::with_capacity(256);
            }
            out
        }
        // Only reachable if a build re-entered itself, which none does.
        Err(_) => build(&mut FlatBufferBuilder::new()),
    })
}

/// Builds an envelope the way Tesla's Go builders do: vectors as NUL-terminated byte
/// strings, the stream's vectors and table first, then txid, topic, messageId and the
/// envelope; default scalars (0) are left out.
pub(crate) fn build_stream_envelope(
    txid: &[u8],
    topic: &[u8],
    message_id: &[u8],
    s: &StreamFields<'_>,
) -> Vec<u8> {
    with_builder(|b| {
        let sender = b.create_byte_string(s.sender_id);
        let payload = b.create_byte_string(s.payload);
        let device_type = b.create_byte_string(s.device_type);
        let device_id = b.create_byte_string(s.device_id);
        let table = b.start_table();
        b.push_slot_always(stream::SENDER_ID, sender);
        b.push_slot::<u32>(stream::CREATED_AT, s.created_at, 0);
        b.push_slot_always(stream::PAYLOAD, payload);
        b.push_slot_always(stream::DEVICE_TYPE, device_type);
        b.push_slot_always(stream::DEVICE_ID, device_id);
        let message = b.end_table(table);
        finish_envelope(
            b,
            txid,
            topic,
            message.as_union_value(),
            message_id,
            MESSAGE_TYPE_STREAM,
        )
    })
}

/// Builds an ack: the union value is an empty byte vector, not a table, exactly as
/// Tesla's `FlatbuffersStreamAckToBytes` writes it.
pub(crate) fn build_ack_envelope(txid: &[u8], topic: &[u8]) -> Vec<u8> {
    with_builder(|b| {
        let empty = b.create_byte_string(&[]);
        finish_envelope(b, txid, topic, empty.as_union_value(), &[], MESSAGE_TYPE_ACK)
    })
}

fn finish_envelope(
    b: &mut FlatBufferBuilder<'_>,
    txid: &[u8],
    topic: &[u8],
    message: WIPOffset<flatbuffers::UnionWIPOffset>,
    message_id: &[u8],
    message_type: u8,
) -> Vec<u8> {
    let txid = b.create_byte_string(txid);
    let topic = b.create_byte_string(topic);
    let message_id = b.create_byte_string(message_id);
    let table = b.start_table();
    b.push_slot_always(env::TXID, txid);
    b.push_slot_always(env::TOPIC, topic);
    b.push_slot::<u8>(env::MESSAGE_TYPE, message_type, 0);
    b.push_slot_always(env::MESSAGE, message);
    b.push_slot_always(env::MESSAGE_ID, message_id);
    let root = b.end_table(table);
    b.finish_minimal(root);
    b.finished_data().to_vec()
}
