//! Payloads fleetwire writes itself: `V` payloads for the simulator and the connectivity
//! records the server emits on connect and disconnect.

use std::collections::{BTreeMap, HashMap};
use std::sync::LazyLock;

use chrono::{DateTime, Utc};
use prost::Message as _;
use prost_reflect::{DynamicMessage, FieldDescriptor, Kind, Value};

use super::convert::{DATUM, DESCRIPTORS, LOCATION_VALUE, PAYLOAD, TIMESTAMP};
use super::error::EncodeError;
use super::schema::{message, pb};
use crate::model::SignalValue;

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
    use super::super::{Topic, payload_to_json};
    use super::*;

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
