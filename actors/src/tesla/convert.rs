//! Between Tesla's `V` payload and the pipeline's [`TelemetryRecord`], plus the
//! connectivity records the server emits itself.
//!
//! Decoding follows the wire the way Go does (last occurrence wins, repeated message
//! occurrences merge, known fields with a foreign wire type are ignored), so every payload
//! [`super::process_frame`] dispatched converts.

use std::collections::{BTreeMap, HashMap};
use std::sync::LazyLock;

use chrono::{DateTime, Utc};
use prost::Message as _;
use prost_reflect::{DynamicMessage, FieldDescriptor, Kind, MessageDescriptor, Value};

use super::Topic;
use super::error::{EncodeError, PayloadError};
use super::payload::datum_view;
use super::schema::{message, pb, schema};
use super::wire::{Reader, TimestampParts, WireValue, validate};
use crate::model::{Location, SignalValue, TelemetryRecord, VehicleId};

const PAYLOAD: &str = "telemetry.vehicle_data.Payload";
const DATUM: &str = "telemetry.vehicle_data.Datum";
const VALUE: &str = "telemetry.vehicle_data.Value";
const FIELD: &str = "telemetry.vehicle_data.Field";
const LOCATION_VALUE: &str = "telemetry.vehicle_data.LocationValue";
const TIMESTAMP: &str = "google.protobuf.Timestamp";

/// A decoded `V` payload.
#[derive(Debug, Clone, PartialEq)]
pub(crate) struct VehicleData {
    pub signals: BTreeMap<String, SignalValue>,
    pub created_at: Option<DateTime<Utc>>,
    pub vin: String,
}

/// Converts a `V` payload (`telemetry.vehicle_data.Payload`) into the pipeline's record.
///
/// Signal names are `Field` value names (an unknown key number becomes its decimal text).
/// Values: string → `Text`, int/long → `Int`, float/double → `Float` (NaN and infinities →
/// `Invalid`), bool → `Bool`, location → `Location`, enum members → `Text` of the value
/// name (an unknown number → `Int`), `invalid: true` → `Invalid`, Doors/TireLocation/Time →
/// `Fields` keyed by JSON name with every field present. A datum without a value (or with
/// `invalid: false`) carries nothing and is skipped; a later datum of the same signal wins.
/// The record's time is the payload's `created_at`, or `received_at` when it has none.
pub fn vehicle_data_to_record(
    payload: &[u8],
    vehicle_id: VehicleId,
    received_at: DateTime<Utc>,
) -> Result<TelemetryRecord, PayloadError> {
    let data = decode_vehicle_data(payload)?;
    Ok(TelemetryRecord {
        timestamp: data.created_at.unwrap_or(received_at),
        vehicle_id,
        payload: data.signals,
        can_id: None,
        ingest_received_at: received_at,
    })
}

/// Decodes a `V` payload (module doc).
pub(crate) fn decode_vehicle_data(payload: &[u8]) -> Result<VehicleData, PayloadError> {
    validate(schema().topic(Topic::V), payload).map_err(|error| PayloadError::Malformed {
        message: PAYLOAD,
        error,
    })?;
    let mut data = VehicleData {
        signals: BTreeMap::new(),
        created_at: None,
        vin: String::new(),
    };
    let mut created = TimestampParts::default();
    for field in Reader::new(payload).map_while(Result::ok) {
        match (field.number, field.value) {
            (1, WireValue::Len(datum)) => {
                if let Some((name, value)) = signal(datum) {
                    data.signals.insert(name, value);
                }
            }
            (2, WireValue::Len(ts)) => created.merge(ts),
            (3, WireValue::Len(vin)) => data.vin = String::from_utf8_lossy(vin).into_owned(),
            _ => {}
        }
    }
    data.created_at = created.to_datetime();
    Ok(data)
}

struct Descriptors {
    value: MessageDescriptor,
    field_enum: prost_reflect::EnumDescriptor,
}

static DESCRIPTORS: LazyLock<Descriptors> = LazyLock::new(|| Descriptors {
    value: message(VALUE),
    field_enum: super::schema::descriptor_pool()
        .get_enum_by_name(FIELD)
        .expect("Field is compiled into the descriptor set"),
});

fn signal(datum: &[u8]) -> Option<(String, SignalValue)> {
    let d = &*DESCRIPTORS;
    let (key, member) = datum_view(datum);
    let number = match member? {
        super::payload::Member::Text(_) => 1,
        super::payload::Member::Other(n) => n,
    };
    let member = d.value.get_field(number)?;
    // Every occurrence of the member since another member was last set (they merge).
    let mut occurrences: Vec<WireValue<'_>> = Vec::new();
    for field in Reader::new(datum).map_while(Result::ok) {
        if let (2, WireValue::Len(value)) = (field.number, field.value) {
            for f in Reader::new(value).map_while(Result::ok) {
                let Some(info) = d.value.get_field(f.number) else {
                    continue;
                };
                if !accepts(&info, &f.value) {
                    continue;
                }
                if f.number != number {
                    occurrences.clear();
                } else {
                    occurrences.push(f.value);
                }
            }
        }
    }
    let value = match member.kind() {
        Kind::Message(m) => message_value(&m, &occurrences)?,
        Kind::Bool if member.name() == "invalid" => {
            let set = occurrences
                .last()
                .is_some_and(|v| matches!(v, WireValue::Varint(x) if *x != 0));
            set.then_some(SignalValue::Invalid)?
        }
        kind => scalar(&kind, occurrences.last()?)?,
    };
    let name = d
        .field_enum
        .get_value(key)
        .map_or_else(|| key.to_string(), |v| v.name().to_owned());
    Some((name, value))
}

fn accepts(field: &FieldDescriptor, value: &WireValue<'_>) -> bool {
    matches!(
        (field.kind(), value),
        (Kind::String | Kind::Bytes | Kind::Message(_), WireValue::Len(_))
            | (Kind::Double | Kind::Fixed64 | Kind::Sfixed64, WireValue::I64(_))
            | (Kind::Float | Kind::Fixed32 | Kind::Sfixed32, WireValue::I32(_))
            | (
                Kind::Int32
                    | Kind::Int64
                    | Kind::Uint32
                    | Kind::Uint64
                    | Kind::Sint32
                    | Kind::Sint64
                    | Kind::Bool
                    | Kind::Enum(_),
                WireValue::Varint(_)
            )
    )
}

/// A scalar or enum field's value.
fn scalar(kind: &Kind, value: &WireValue<'_>) -> Option<SignalValue> {
    Some(match (kind, *value) {
        (Kind::String, WireValue::Len(s)) => SignalValue::Text(String::from_utf8_lossy(s).into_owned()),
        (Kind::Bool, WireValue::Varint(v)) => SignalValue::Bool(v != 0),
        (Kind::Int32 | Kind::Sint32 | Kind::Uint32, WireValue::Varint(v)) => {
            SignalValue::Int(i64::from(v as i32))
        }
        (Kind::Int64 | Kind::Sint64 | Kind::Uint64, WireValue::Varint(v)) => SignalValue::Int(v as i64),
        (Kind::Float, WireValue::I32(bits)) => {
            let v = f32::from_bits(bits);
            // Through its shortest decimal form, so 38.8f32 stays 38.8 rather than
            // 38.79999923706055.
            float(v.to_string().parse().unwrap_or(f64::from(v)))
        }
        (Kind::Double, WireValue::I64(bits)) => float(f64::from_bits(bits)),
        (Kind::Enum(e), WireValue::Varint(v)) => {
            let n = v as i32;
            e.get_value(n).map_or(SignalValue::Int(i64::from(n)), |ev| {
                SignalValue::Text(ev.name().to_owned())
            })
        }
        _ => return None,
    })
}

fn float(v: f64) -> SignalValue {
    if v.is_finite() {
        SignalValue::Float(v)
    } else {
        SignalValue::Invalid
    }
}

/// A message member (merged over `occurrences`): a location or a map of its fields.
fn message_value(desc: &MessageDescriptor, occurrences: &[WireValue<'_>]) -> Option<SignalValue> {
    let mut last: HashMap<u32, WireValue<'_>> = HashMap::new();
    for occurrence in occurrences {
        let WireValue::Len(bytes) = occurrence else {
            continue;
        };
        for f in Reader::new(bytes).map_while(Result::ok) {
            if desc.get_field(f.number).is_some_and(|fd| accepts(&fd, &f.value)) {
                last.insert(f.number, f.value);
            }
        }
    }
    let value_of = |field: &FieldDescriptor| {
        last.get(&field.number())
            .and_then(|v| scalar(&field.kind(), v))
            .unwrap_or_else(|| default_of(&field.kind()))
    };
    if desc.full_name() == LOCATION_VALUE {
        let coordinate = |name: &str| match desc.get_field_by_name(name).map(|f| value_of(&f)) {
            Some(SignalValue::Float(v)) => v,
            _ => f64::NAN,
        };
        let (latitude, longitude) = (coordinate("latitude"), coordinate("longitude"));
        if !(latitude.is_finite() && longitude.is_finite()) {
            return Some(SignalValue::Invalid);
        }
        return Some(SignalValue::Location(Location { latitude, longitude }));
    }
    Some(SignalValue::Fields(
        desc.fields()
            .map(|f| (f.json_name().to_owned(), value_of(&f)))
            .collect(),
    ))
}

fn default_of(kind: &Kind) -> SignalValue {
    match kind {
        Kind::Bool => SignalValue::Bool(false),
        Kind::Float | Kind::Double => SignalValue::Float(0.0),
        Kind::String => SignalValue::Text(String::new()),
        _ => SignalValue::Int(0),
    }
}

/// Enum value name → (`Value` member, number), over every enum a `Value` member uses.
/// Tesla prefixes value names (`ShiftStateD`, `DetailedChargeStateCharging`), so names are
/// unique across the package, as protobuf requires.
static ENUM_MEMBERS: LazyLock<HashMap<String, (FieldDescriptor, i32)>> = LazyLock::new(|| {
    let mut map = HashMap::new();
    for member in DESCRIPTORS.value.fields() {
        if let Kind::Enum(e) = member.kind() {
            for v in e.values() {
                map.insert(v.name().to_owned(), (member.clone(), v.number()));
            }
        }
    }
    map
});

/// Encodes signals as a `V` payload, for the simulator. Names must be `Field` value names.
/// `Bool` → `boolean_value`, `Int` → `int_value` (`long_value` beyond i32), `Float` →
/// `double_value`, `Location` → `location_value`, `Invalid` → `invalid: true`, `Text` that
/// is a value name of an enum some `Value` member uses → that member (e.g.
/// `"DetailedChargeStateCharging"` → `detailed_charge_state_value`), other `Text` →
/// `string_value`, `Fields` → the message member whose JSON field names cover its keys
/// (Doors, TireLocation, Time).
pub fn encode_vehicle_data(
    vin: &str,
    created_at: DateTime<Utc>,
    signals: &BTreeMap<String, SignalValue>,
) -> Result<Vec<u8>, EncodeError> {
    let d = &*DESCRIPTORS;
    let datum_desc = message(DATUM);
    let mut data = Vec::with_capacity(signals.len());
    for (name, value) in signals {
        let key = d
            .field_enum
            .get_value_by_name(name)
            .ok_or_else(|| EncodeError::UnknownSignal(name.clone()))?;
        let mut v = DynamicMessage::new(d.value.clone());
        let (member, member_value) = member_for(name, value)?;
        v.set_field(&member, member_value);
        let mut datum = DynamicMessage::new(datum_desc.clone());
        datum.set_field_by_number(1, Value::EnumNumber(key.number()));
        datum.set_field_by_number(2, Value::Message(v));
        data.push(Value::Message(datum));
    }
    let mut ts = DynamicMessage::new(message(TIMESTAMP));
    ts.set_field_by_number(1, Value::I64(created_at.timestamp()));
    ts.set_field_by_number(2, Value::I32(created_at.timestamp_subsec_nanos() as i32));
    let mut payload = DynamicMessage::new(message(PAYLOAD));
    payload.set_field_by_number(1, Value::List(data));
    payload.set_field_by_number(2, Value::Message(ts));
    payload.set_field_by_number(3, Value::String(vin.to_owned()));
    Ok(payload.encode_to_vec())
}

fn member_for(name: &str, value: &SignalValue) -> Result<(FieldDescriptor, Value), EncodeError> {
    let d = &*DESCRIPTORS;
    let named = |member: &str| {
        d.value
            .get_field_by_name(member)
            .expect("Value members are in the schema")
    };
    let unsupported = |reason: &str| EncodeError::Unsupported {
        signal: name.to_owned(),
        reason: reason.to_owned(),
    };
    Ok(match value {
        SignalValue::Bool(b) => (named("boolean_value"), Value::Bool(*b)),
        SignalValue::Int(i) => match i32::try_from(*i) {
            Ok(small) => (named("int_value"), Value::I32(small)),
            Err(_) => (named("long_value"), Value::I64(*i)),
        },
        SignalValue::Float(f) => (named("double_value"), Value::F64(*f)),
        SignalValue::Invalid => (named("invalid"), Value::Bool(true)),
        SignalValue::Text(t) => match ENUM_MEMBERS.get(t.as_str()) {
            Some((member, number)) => (member.clone(), Value::EnumNumber(*number)),
            None => (named("string_value"), Value::String(t.clone())),
        },
        SignalValue::Location(l) => {
            let mut loc = DynamicMessage::new(message(LOCATION_VALUE));
            loc.set_field_by_number(1, Value::F64(l.latitude));
            loc.set_field_by_number(2, Value::F64(l.longitude));
            (named("location_value"), Value::Message(loc))
        }
        SignalValue::Fields(fields) => {
            let member = d
                .value
                .fields()
                .filter(|m| matches!(m.kind(), Kind::Message(ref md) if md.full_name() != LOCATION_VALUE))
                .find(|m| {
                    let Kind::Message(md) = m.kind() else { return false };
                    fields.keys().all(|k| md.fields().any(|f| f.json_name() == k))
                })
                .ok_or_else(|| unsupported("no Value member has exactly these fields"))?;
            let Kind::Message(md) = member.kind() else {
                unreachable!("filtered to messages")
            };
            let mut msg = DynamicMessage::new(md.clone());
            for (key, v) in fields {
                let f = md.fields().find(|f| f.json_name() == key).expect("checked above");
                let field_value = match (f.kind(), v) {
                    (Kind::Bool, SignalValue::Bool(b)) => Value::Bool(*b),
                    (Kind::Int32, SignalValue::Int(i)) => {
                        Value::I32(i32::try_from(*i).map_err(|_| unsupported("integer out of int32 range"))?)
                    }
                    _ => return Err(unsupported(&format!("field {key} has the wrong type"))),
                };
                msg.set_field(&f, field_value);
            }
            (member, Value::Message(msg))
        }
    })
}

/// The `VehicleConnectivity` record the server puts on the `connectivity` stream when a
/// vehicle connects (`CONNECTED`) or disconnects (`DISCONNECTED`), as Tesla's server does.
pub fn connectivity_payload(
    vehicle_id: &str,
    connection_id: &str,
    connected: bool,
    network_interface: &str,
    at: DateTime<Utc>,
) -> Vec<u8> {
    use pb::vehicle_connectivity::{ConnectivityEvent, VehicleConnectivity};
    let status = if connected {
        ConnectivityEvent::Connected
    } else {
        ConnectivityEvent::Disconnected
    };
    VehicleConnectivity {
        vin: vehicle_id.to_owned(),
        connection_id: connection_id.to_owned(),
        status: status as i32,
        created_at: Some(prost_types::Timestamp {
            seconds: at.timestamp(),
            nanos: at.timestamp_subsec_nanos() as i32,
        }),
        network_interface: network_interface.to_owned(),
    }
    .encode_to_vec()
}

#[cfg(test)]
mod tests {
    use super::super::payload_to_json;
    use super::super::wire::{WT_I64, WT_VARINT, put_len, put_tag, put_varint};
    use super::*;

    fn datum(key: u64, value: &[u8]) -> Vec<u8> {
        let mut d = Vec::new();
        put_tag(&mut d, 1, WT_VARINT);
        put_varint(&mut d, key);
        put_len(&mut d, 2, value);
        let mut p = Vec::new();
        put_len(&mut p, 1, &d);
        p
    }

    fn one_signal(payload: &[u8]) -> (String, SignalValue) {
        decode_vehicle_data(payload)
            .unwrap()
            .signals
            .into_iter()
            .next()
            .unwrap()
    }

    #[test]
    fn values_map_to_signal_values() {
        // float_value 38.8 keeps its short form.
        let mut v = vec![0x25];
        v.extend_from_slice(&38.8f32.to_le_bytes());
        assert_eq!(
            one_signal(&datum(85, &v)),
            ("InsideTemp".into(), SignalValue::Float(38.8))
        );
        // double NaN: the vehicle has no number.
        let mut v = Vec::new();
        put_tag(&mut v, 5, WT_I64);
        v.extend_from_slice(&f64::NAN.to_le_bytes());
        assert_eq!(one_signal(&datum(8, &v)).1, SignalValue::Invalid);
        // An enum number the schema does not know, and a Field number it does not know.
        let mut v = Vec::new();
        put_tag(&mut v, 9, WT_VARINT);
        put_varint(&mut v, 99);
        assert_eq!(one_signal(&datum(10, &v)), ("Gear".into(), SignalValue::Int(99)));
        assert_eq!(one_signal(&datum(9999, &v)).0, "9999");
        // Time with only hour and minute: every field present.
        let mut t = Vec::new();
        put_tag(&mut t, 1, WT_VARINT);
        put_varint(&mut t, 7);
        let mut v = Vec::new();
        put_len(&mut v, 31, &t);
        let expected: BTreeMap<String, SignalValue> = [("hour", 7), ("minute", 0), ("second", 0)]
            .map(|(k, n)| (k.to_string(), SignalValue::Int(n)))
            .into();
        assert_eq!(one_signal(&datum(1, &v)).1, SignalValue::Fields(expected));
        // invalid: false carries nothing.
        assert!(
            decode_vehicle_data(&datum(8, &[0x50, 0x00]))
                .unwrap()
                .signals
                .is_empty()
        );
    }

    #[test]
    fn the_last_member_wins_and_message_members_merge() {
        // location latitude, then a string, then a location with longitude only.
        let mut lat = Vec::new();
        put_tag(&mut lat, 1, WT_I64);
        lat.extend_from_slice(&1.5f64.to_le_bytes());
        let mut lon = Vec::new();
        put_tag(&mut lon, 2, WT_I64);
        lon.extend_from_slice(&2.5f64.to_le_bytes());
        let mut v = Vec::new();
        put_len(&mut v, 7, &lat);
        put_len(&mut v, 1, b"text");
        put_len(&mut v, 7, &lon);
        put_len(&mut v, 7, &lat);
        let (_, value) = one_signal(&datum(21, &v));
        assert_eq!(
            value,
            SignalValue::Location(Location {
                latitude: 1.5,
                longitude: 2.5
            })
        );
    }

    #[test]
    fn connectivity_records_match_teslas_shape() {
        let at = "2025-06-01T12:00:04Z".parse().unwrap();
        let bytes = connectivity_payload("veh-1", "d5a82725-00d5-402e-a593-65844a9b831f", true, "wifi", at);
        assert_eq!(
            payload_to_json(Topic::Connectivity, &bytes).unwrap(),
            serde_json::json!({
                "vin": "veh-1",
                "connectionId": "d5a82725-00d5-402e-a593-65844a9b831f",
                "status": "CONNECTED",
                "createdAt": "2025-06-01T12:00:04Z",
                "networkInterface": "wifi",
            })
        );
        let bytes = connectivity_payload("veh-1", "c", false, "cellular", at);
        assert_eq!(
            payload_to_json(Topic::Connectivity, &bytes).unwrap()["status"],
            "DISCONNECTED"
        );
    }
}
