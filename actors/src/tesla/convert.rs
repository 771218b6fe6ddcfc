//! Between Tesla's `V` payload and the pipeline's [`TelemetryRecord`], plus the
//! connectivity records the server emits itself.
//!
//! Decoding follows the wire the way Go does (last occurrence wins, repeated message
//! occurrences merge, known fields with a foreign wire type are ignored), so every payload
//! [`super::process_frame`] dispatched converts.

use std::collections::{BTreeMap, HashMap};
use std::sync::LazyLock;

use chrono::{DateTime, Utc};
use prost_reflect::{FieldDescriptor, Kind, MessageDescriptor};

use super::Topic;
use super::datum::datum_view;
use super::error::PayloadError;
use super::schema::{message, schema};
use super::wire::{Reader, TimestampParts, WireValue, validate};
use crate::model::{Location, SignalValue, TelemetryRecord, VehicleId};

pub(crate) const PAYLOAD: &str = "telemetry.vehicle_data.Payload";
pub(crate) const DATUM: &str = "telemetry.vehicle_data.Datum";
pub(crate) const VALUE: &str = "telemetry.vehicle_data.Value";
pub(crate) const FIELD: &str = "telemetry.vehicle_data.Field";
pub(crate) const LOCATION_VALUE: &str = "telemetry.vehicle_data.LocationValue";
pub(crate) const TIMESTAMP: &str = "google.protobuf.Timestamp";

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

pub(crate) struct Descriptors {
    pub value: MessageDescriptor,
    pub field_enum: prost_reflect::EnumDescriptor,
}

pub(crate) static DESCRIPTORS: LazyLock<Descriptors> = LazyLock::new(|| Descriptors {
    value: message(VALUE),
    field_enum: super::schema::descriptor_pool()
        .get_enum_by_name(FIELD)
        .expect("Field is compiled into the descriptor set"),
});

fn signal(datum: &[u8]) -> Option<(String, SignalValue)> {
    let d = &*DESCRIPTORS;
    let (key, member) = datum_view(datum);
    let number = match member? {
        super::datum::Member::Text(_) => 1,
        super::datum::Member::Other(n) => n,
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

#[cfg(test)]
mod tests {
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
}
