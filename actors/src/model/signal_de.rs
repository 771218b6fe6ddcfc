//! `Deserialize` for [`SignalValue`], by the JSON token it meets.
//!
//! `#[serde(untagged)]` would do the same job by buffering each value and trying every
//! variant in turn, and every failed try builds an error message: a profile of the ingest
//! path at saturation showed ~6 % of the node's CPU in those discarded errors. This
//! visitor decides from the token (bool, integer, float, string, null, object) and gives
//! exactly the values the untagged derive gave, which the tests below pin down.

use std::collections::BTreeMap;
use std::fmt;

use serde::Deserialize;
use serde::de::{self, Deserializer, MapAccess, SeqAccess, Visitor};

use super::{Location, SignalValue};

impl<'de> Deserialize<'de> for SignalValue {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        deserializer.deserialize_any(SignalVisitor)
    }
}

struct SignalVisitor;

impl<'de> Visitor<'de> for SignalVisitor {
    type Value = SignalValue;

    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("a boolean, number, string, location, object of signal values, or null")
    }

    fn visit_bool<E: de::Error>(self, v: bool) -> Result<SignalValue, E> {
        Ok(SignalValue::Bool(v))
    }

    fn visit_i64<E: de::Error>(self, v: i64) -> Result<SignalValue, E> {
        Ok(SignalValue::Int(v))
    }

    fn visit_u64<E: de::Error>(self, v: u64) -> Result<SignalValue, E> {
        // Integers beyond i64 are numbers all the same, as with the untagged derive.
        Ok(i64::try_from(v).map_or(SignalValue::Float(v as f64), SignalValue::Int))
    }

    fn visit_f64<E: de::Error>(self, v: f64) -> Result<SignalValue, E> {
        Ok(SignalValue::Float(v))
    }

    fn visit_str<E: de::Error>(self, v: &str) -> Result<SignalValue, E> {
        Ok(SignalValue::Text(v.to_owned()))
    }

    fn visit_string<E: de::Error>(self, v: String) -> Result<SignalValue, E> {
        Ok(SignalValue::Text(v))
    }

    fn visit_unit<E: de::Error>(self) -> Result<SignalValue, E> {
        Ok(SignalValue::Invalid)
    }

    fn visit_none<E: de::Error>(self) -> Result<SignalValue, E> {
        Ok(SignalValue::Invalid)
    }

    fn visit_some<D: Deserializer<'de>>(self, deserializer: D) -> Result<SignalValue, D::Error> {
        SignalValue::deserialize(deserializer)
    }

    fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<SignalValue, A::Error> {
        let mut fields = BTreeMap::new();
        while let Some((name, value)) = map.next_entry::<String, SignalValue>()? {
            fields.insert(name, value);
        }
        // Exactly `latitude` and `longitude`, both numbers: a location (`Location` denies
        // other fields); any other object is a record of named values.
        Ok(as_location(&fields).map_or(SignalValue::Fields(fields), SignalValue::Location))
    }

    fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<SignalValue, A::Error> {
        // A derived struct also reads `[latitude, longitude]`, so the untagged derive
        // took a two-number list for a location; nothing else may be a list.
        let not_a_location = || de::Error::custom("a signal value list must be [latitude, longitude]");
        let latitude: f64 = seq.next_element()?.ok_or_else(not_a_location)?;
        let longitude: f64 = seq.next_element()?.ok_or_else(not_a_location)?;
        if seq.next_element::<de::IgnoredAny>()?.is_some() {
            return Err(not_a_location());
        }
        Ok(SignalValue::Location(Location { latitude, longitude }))
    }
}

/// The location an object of exactly two numeric fields `latitude` and `longitude` is.
fn as_location(fields: &BTreeMap<String, SignalValue>) -> Option<Location> {
    if fields.len() != 2 {
        return None;
    }
    Some(Location {
        latitude: fields.get("latitude")?.as_f64()?,
        longitude: fields.get("longitude")?.as_f64()?,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(json: &str) -> Result<SignalValue, serde_json::Error> {
        serde_json::from_str(json)
    }

    #[test]
    fn scalars_keep_their_shape() {
        assert_eq!(parse("true").unwrap(), SignalValue::Bool(true));
        assert_eq!(parse("-3").unwrap(), SignalValue::Int(-3));
        assert_eq!(parse("3.0").unwrap(), SignalValue::Float(3.0));
        assert_eq!(
            parse("18446744073709551615").unwrap(),
            SignalValue::Float(u64::MAX as f64)
        );
        assert_eq!(parse(r#""D""#).unwrap(), SignalValue::Text("D".into()));
        assert_eq!(parse("null").unwrap(), SignalValue::Invalid);
    }

    #[test]
    fn objects_are_locations_only_with_exactly_two_numeric_coordinates() {
        let at = Location {
            latitude: 52.5,
            longitude: 13.0,
        };
        assert_eq!(
            parse(r#"{"latitude":52.5,"longitude":13}"#).unwrap(),
            SignalValue::Location(at)
        );
        assert_eq!(parse("[52.5, 13]").unwrap(), SignalValue::Location(at));
        assert!(matches!(
            parse(r#"{"latitude":"x","longitude":1}"#).unwrap(),
            SignalValue::Fields(_)
        ));
        assert!(matches!(
            parse(r#"{"latitude":1}"#).unwrap(),
            SignalValue::Fields(_)
        ));
        assert!(matches!(parse("{}").unwrap(), SignalValue::Fields(f) if f.is_empty()));
    }

    #[test]
    fn nested_values_and_bad_lists() {
        let doors = parse(r#"{"DriverFront":true,"Time":{"hour":7},"Gone":null}"#).unwrap();
        let SignalValue::Fields(f) = doors else {
            panic!("not fields: {doors:?}")
        };
        assert_eq!(f["DriverFront"], SignalValue::Bool(true));
        assert_eq!(
            f["Time"],
            SignalValue::Fields([("hour".to_owned(), SignalValue::Int(7))].into())
        );
        assert_eq!(f["Gone"], SignalValue::Invalid);
        for bad in ["[]", "[1]", "[1, 2, 3]", r#"["a", 1]"#] {
            assert!(parse(bad).is_err(), "{bad} was accepted");
        }
    }

    #[test]
    fn round_trips_through_json() {
        for json in [
            "true",
            "7",
            "7.5",
            r#""P""#,
            "null",
            r#"{"latitude":1.5,"longitude":2.5}"#,
            r#"{"a":{"b":[1.0,2.0]}}"#,
        ] {
            let value = parse(json).unwrap();
            let again = parse(&serde_json::to_string(&value).unwrap()).unwrap();
            assert_eq!(value, again, "{json}");
        }
    }
}
