//! The compiled Tesla schema: the descriptor pool `build.rs` wrote (for canonical JSON and
//! names), the prost types, and compact per-message field tables that the wire reader
//! uses to check payloads without allocating.

use std::sync::LazyLock;

use prost_reflect::{DescriptorPool, Kind, MessageDescriptor};

use super::Topic;

/// Generated prost types for Tesla's payloads, one module per protobuf package.
#[allow(missing_docs, clippy::all, clippy::pedantic)]
pub mod pb {
    /// `telemetry.vehicle_data`: the `V` topic.
    pub mod vehicle_data {
        include!(concat!(env!("OUT_DIR"), "/telemetry.vehicle_data.rs"));
    }
    /// `telemetry.vehicle_alerts`: the `alerts` topic.
    pub mod vehicle_alerts {
        include!(concat!(env!("OUT_DIR"), "/telemetry.vehicle_alerts.rs"));
    }
    /// `telemetry.vehicle_error`: the `errors` topic.
    pub mod vehicle_error {
        include!(concat!(env!("OUT_DIR"), "/telemetry.vehicle_error.rs"));
    }
    /// `telemetry.vehicle_connectivity`: the `connectivity` topic.
    pub mod vehicle_connectivity {
        include!(concat!(env!("OUT_DIR"), "/telemetry.vehicle_connectivity.rs"));
    }
    /// `telemetry.vehicle_metrics`: defined by Tesla, carried by no topic yet.
    pub mod vehicle_metrics {
        include!(concat!(env!("OUT_DIR"), "/telemetry.vehicle_metrics.rs"));
    }
}

/// The encoded `FileDescriptorSet` of `proto/tesla/*.proto` (imports included).
pub const DESCRIPTOR_SET: &[u8] = include_bytes!(concat!(env!("OUT_DIR"), "/tesla_descriptor_set.bin"));

static POOL: LazyLock<DescriptorPool> =
    LazyLock::new(|| DescriptorPool::decode(DESCRIPTOR_SET).expect("build.rs writes a valid descriptor set"));

/// Descriptors of every Tesla payload message, for reflection and canonical JSON.
pub fn descriptor_pool() -> &'static DescriptorPool {
    &POOL
}

/// The descriptor of a message of the Tesla schema.
pub(crate) fn message(full_name: &str) -> MessageDescriptor {
    POOL.get_message_by_name(full_name)
        .unwrap_or_else(|| panic!("{full_name} is compiled into the descriptor set"))
}

/// How a field is encoded on the wire.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum WireKind {
    /// int32, int64, uint32, uint64, sint32, sint64, bool, enum.
    Varint,
    /// float, fixed32, sfixed32.
    I32,
    /// double, fixed64, sfixed64.
    I64,
    /// `string`: UTF-8 is checked.
    Str,
    /// `bytes`.
    Bytes,
    /// A message (maps too: their entries are messages), by index into [`Schema::messages`].
    Msg(usize),
}

impl WireKind {
    pub(crate) fn is_scalar_number(self) -> bool {
        matches!(self, WireKind::Varint | WireKind::I32 | WireKind::I64)
    }
}

/// One field of a message.
#[derive(Debug, Clone)]
pub(crate) struct FieldInfo {
    pub kind: WireKind,
    pub repeated: bool,
    /// Full name, for error messages.
    pub name: String,
}

/// The fields of one message, indexed by field number.
#[derive(Debug, Clone, Default)]
pub(crate) struct MsgInfo {
    fields: Vec<Option<FieldInfo>>,
}

impl MsgInfo {
    #[inline]
    pub(crate) fn field(&self, number: u32) -> Option<&FieldInfo> {
        self.fields.get(number as usize).and_then(Option::as_ref)
    }
}

/// Every message reachable from the four topics' payload messages.
#[derive(Debug)]
pub(crate) struct Schema {
    pub messages: Vec<MsgInfo>,
    topics: [usize; 4],
}

impl Schema {
    /// The payload message of `topic`.
    pub(crate) fn topic(&'static self, topic: Topic) -> &'static MsgInfo {
        let i = Topic::ALL.iter().position(|t| *t == topic).unwrap_or(0);
        &self.messages[self.topics[i]]
    }

    /// The message type of field `number` of `msg`, when it is a message field.
    pub(crate) fn submessage(&'static self, msg: &MsgInfo, number: u32) -> Option<&'static MsgInfo> {
        match msg.field(number)?.kind {
            WireKind::Msg(index) => Some(&self.messages[index]),
            _ => None,
        }
    }
}

static SCHEMA: LazyLock<Schema> = LazyLock::new(build_schema);

/// The field tables (built once from the descriptor set).
pub(crate) fn schema() -> &'static Schema {
    &SCHEMA
}

fn build_schema() -> Schema {
    let mut names: Vec<String> = Vec::new();
    let mut messages: Vec<MsgInfo> = Vec::new();
    let topics = Topic::ALL.map(|t| intern(&message(t.message_name()), &mut names, &mut messages));
    Schema { messages, topics }
}

/// Index of `desc` in `messages`, adding it (and what it references) when new.
fn intern(desc: &MessageDescriptor, names: &mut Vec<String>, messages: &mut Vec<MsgInfo>) -> usize {
    if let Some(i) = names.iter().position(|n| n == desc.full_name()) {
        return i;
    }
    let index = names.len();
    names.push(desc.full_name().to_owned());
    messages.push(MsgInfo::default());
    let mut fields: Vec<Option<FieldInfo>> = Vec::new();
    for field in desc.fields() {
        let kind = match field.kind() {
            Kind::Double | Kind::Fixed64 | Kind::Sfixed64 => WireKind::I64,
            Kind::Float | Kind::Fixed32 | Kind::Sfixed32 => WireKind::I32,
            Kind::String => WireKind::Str,
            Kind::Bytes => WireKind::Bytes,
            Kind::Message(m) => WireKind::Msg(intern(&m, names, messages)),
            _ => WireKind::Varint,
        };
        let number = field.number() as usize;
        if fields.len() <= number {
            fields.resize(number + 1, None);
        }
        fields[number] = Some(FieldInfo {
            kind,
            repeated: field.is_list() || field.is_map(),
            name: field.full_name().to_owned(),
        });
    }
    messages[index] = MsgInfo { fields };
    index
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tables_follow_the_descriptors() {
        let payload = schema().topic(Topic::V);
        let data = payload.field(1).unwrap();
        assert!(data.repeated);
        assert_eq!(data.name, "telemetry.vehicle_data.Payload.data");
        assert_eq!(payload.field(3).unwrap().kind, WireKind::Str);
        assert_eq!(payload.field(4).unwrap().kind, WireKind::Varint);
        assert!(payload.field(5).is_none());
        let audiences = schema().topic(Topic::Alerts).field(1).unwrap();
        let WireKind::Msg(alert) = audiences.kind else {
            panic!("alerts are messages")
        };
        let audiences = schema().messages[alert].field(2).unwrap();
        assert_eq!((audiences.kind, audiences.repeated), (WireKind::Varint, true));
    }
}
