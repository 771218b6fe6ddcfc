//! The bucket encoding (`codec = "cols1+lz4"`): one bucket's records as columns, then
//! LZ4-compressed.
//!
//! Layout before compression (integers are LEB128 varints, signed ones zigzagged):
//! format byte `1`; record count `n`; `n` source times as nanosecond deltas (the first
//! from 0); `n` CAN ids (`0` = none, else id + 1); the column count; then per signal
//! (name order): name length, name, and for each record a tag and the value. Integers
//! are deltas from the column's previous integer, floats and positions are XORed with the
//! previous bits (slowly changing values leave runs of zero bytes that LZ4 removes),
//! text and small records are length-prefixed. Decoding gives back the exact records
//! (same content ids), so a merge can drop the records a bucket already holds.

use std::collections::{BTreeMap, BTreeSet};

use chrono::{DateTime, Utc};

use crate::model::{Location, RecordId, SignalValue, TelemetryRecord, VehicleId};

/// The codec name stored with every bucket.
pub const CODEC: &str = "cols1+lz4";

const FORMAT: u8 = 1;

const ABSENT: u8 = 0;
const INVALID: u8 = 1;
const FALSE: u8 = 2;
const TRUE: u8 = 3;
const INT: u8 = 4;
const FLOAT: u8 = 5;
const TEXT: u8 = 6;
const LOCATION: u8 = 7;
const FIELDS: u8 = 8;

/// One record as history keeps it: the parts that define it (its content id), without
/// the arrival time.
#[derive(Debug, Clone, PartialEq)]
pub struct HistoryRecord {
    /// Source time.
    pub timestamp: DateTime<Utc>,
    /// Signal name → value.
    pub payload: BTreeMap<String, SignalValue>,
    /// CAN id, when the source had one.
    pub can_id: Option<u32>,
}

impl HistoryRecord {
    /// The history part of `record`.
    pub fn of(record: &TelemetryRecord) -> Self {
        Self {
            timestamp: record.timestamp,
            payload: record.payload.clone(),
            can_id: record.can_id,
        }
    }

    /// The same content id the vehicle's dedupe uses.
    pub fn content_id(&self, vehicle: &VehicleId) -> RecordId {
        TelemetryRecord {
            timestamp: self.timestamp,
            vehicle_id: vehicle.clone(),
            payload: self.payload.clone(),
            can_id: self.can_id,
            ingest_received_at: self.timestamp,
        }
        .content_id()
    }
}

/// A bucket that cannot be decoded.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("undecodable history bucket: {0}")]
pub struct CodecError(pub String);

/// Encodes `records` (any order; they are sorted by source time, stably).
pub fn encode(records: &[HistoryRecord]) -> Vec<u8> {
    let mut sorted: Vec<&HistoryRecord> = records.iter().collect();
    sorted.sort_by_key(|r| r.timestamp);
    let mut out = vec![FORMAT];
    put_u(&mut out, sorted.len() as u64);
    let mut prev = 0i64;
    for r in &sorted {
        let t = nanos(r.timestamp);
        put_i(&mut out, t.wrapping_sub(prev));
        prev = t;
    }
    for r in &sorted {
        put_u(&mut out, r.can_id.map_or(0, |c| u64::from(c) + 1));
    }
    let names: BTreeSet<&String> = sorted.iter().flat_map(|r| r.payload.keys()).collect();
    put_u(&mut out, names.len() as u64);
    for name in names {
        put_bytes(&mut out, name.as_bytes());
        let (mut int, mut bits, mut loc) = (0i64, 0u64, (0u64, 0u64));
        for r in &sorted {
            match r.payload.get(name) {
                None => out.push(ABSENT),
                Some(SignalValue::Invalid) => out.push(INVALID),
                Some(SignalValue::Bool(b)) => out.push(if *b { TRUE } else { FALSE }),
                Some(SignalValue::Int(i)) => {
                    out.push(INT);
                    put_i(&mut out, i.wrapping_sub(int));
                    int = *i;
                }
                Some(SignalValue::Float(f)) => {
                    out.push(FLOAT);
                    out.extend_from_slice(&(f.to_bits() ^ bits).to_le_bytes());
                    bits = f.to_bits();
                }
                Some(SignalValue::Text(s)) => {
                    out.push(TEXT);
                    put_bytes(&mut out, s.as_bytes());
                }
                Some(SignalValue::Location(l)) => {
                    out.push(LOCATION);
                    let (a, b) = (l.latitude.to_bits(), l.longitude.to_bits());
                    out.extend_from_slice(&(a ^ loc.0).to_le_bytes());
                    out.extend_from_slice(&(b ^ loc.1).to_le_bytes());
                    loc = (a, b);
                }
                Some(v @ SignalValue::Fields(_)) => {
                    out.push(FIELDS);
                    let json = serde_json::to_vec(v).expect("signal values always serialize");
                    put_bytes(&mut out, &json);
                }
            }
        }
    }
    lz4_flex::compress_prepend_size(&out)
}

/// Decodes a bucket written by [`encode`].
pub fn decode(data: &[u8]) -> Result<Vec<HistoryRecord>, CodecError> {
    let raw = lz4_flex::decompress_size_prepended(data).map_err(|e| CodecError(e.to_string()))?;
    let mut r = Reader { buf: &raw, pos: 0 };
    if r.byte()? != FORMAT {
        return Err(CodecError("unknown format".into()));
    }
    let n = usize::try_from(r.u()?).map_err(|_| CodecError("count".into()))?;
    if n > raw.len() {
        return Err(CodecError("record count beyond the data".into()));
    }
    let mut records = Vec::with_capacity(n);
    let mut t = 0i64;
    for _ in 0..n {
        t = t.wrapping_add(r.i()?);
        records.push(HistoryRecord {
            timestamp: DateTime::from_timestamp_nanos(t),
            payload: BTreeMap::new(),
            can_id: None,
        });
    }
    for rec in &mut records {
        let c = r.u()?;
        rec.can_id = if c == 0 {
            None
        } else {
            Some(u32::try_from(c - 1).map_err(|_| CodecError("can id".into()))?)
        };
    }
    let columns = r.u()?;
    for _ in 0..columns {
        let name = String::from_utf8(r.bytes()?.to_vec()).map_err(|_| CodecError("name".into()))?;
        let (mut int, mut bits, mut loc) = (0i64, 0u64, (0u64, 0u64));
        for rec in &mut records {
            let value = match r.byte()? {
                ABSENT => continue,
                INVALID => SignalValue::Invalid,
                FALSE => SignalValue::Bool(false),
                TRUE => SignalValue::Bool(true),
                INT => {
                    int = int.wrapping_add(r.i()?);
                    SignalValue::Int(int)
                }
                FLOAT => {
                    bits ^= r.u64le()?;
                    SignalValue::Float(f64::from_bits(bits))
                }
                TEXT => SignalValue::Text(
                    String::from_utf8(r.bytes()?.to_vec()).map_err(|_| CodecError("text".into()))?,
                ),
                LOCATION => {
                    loc.0 ^= r.u64le()?;
                    loc.1 ^= r.u64le()?;
                    SignalValue::Location(Location {
                        latitude: f64::from_bits(loc.0),
                        longitude: f64::from_bits(loc.1),
                    })
                }
                FIELDS => serde_json::from_slice(r.bytes()?).map_err(|e| CodecError(e.to_string()))?,
                tag => return Err(CodecError(format!("unknown tag {tag}"))),
            };
            rec.payload.insert(name.clone(), value);
        }
    }
    Ok(records)
}

/// `existing` plus those of `new` it does not hold yet (by content id), and how many
/// were added.
pub fn merge(
    vehicle: &VehicleId,
    existing: Vec<HistoryRecord>,
    new: &[HistoryRecord],
) -> (Vec<HistoryRecord>, usize) {
    let mut ids: std::collections::HashSet<RecordId> =
        existing.iter().map(|r| r.content_id(vehicle)).collect();
    let mut merged = existing;
    let before = merged.len();
    for r in new {
        if ids.insert(r.content_id(vehicle)) {
            merged.push(r.clone());
        }
    }
    let added = merged.len() - before;
    (merged, added)
}

fn nanos(t: DateTime<Utc>) -> i64 {
    // Out of range only after the year 2262.
    t.timestamp_nanos_opt().unwrap_or(i64::MAX)
}

fn put_u(out: &mut Vec<u8>, mut v: u64) {
    loop {
        let byte = (v & 0x7f) as u8;
        v >>= 7;
        if v == 0 {
            out.push(byte);
            return;
        }
        out.push(byte | 0x80);
    }
}

fn put_i(out: &mut Vec<u8>, v: i64) {
    put_u(out, ((v << 1) ^ (v >> 63)) as u64);
}

fn put_bytes(out: &mut Vec<u8>, b: &[u8]) {
    put_u(out, b.len() as u64);
    out.extend_from_slice(b);
}

struct Reader<'a> {
    buf: &'a [u8],
    pos: usize,
}

impl<'a> Reader<'a> {
    fn byte(&mut self) -> Result<u8, CodecError> {
        let b = *self
            .buf
            .get(self.pos)
            .ok_or_else(|| CodecError("truncated".into()))?;
        self.pos += 1;
        Ok(b)
    }

    fn u(&mut self) -> Result<u64, CodecError> {
        let mut v = 0u64;
        for shift in (0..64).step_by(7) {
            let b = self.byte()?;
            v |= u64::from(b & 0x7f) << shift;
            if b & 0x80 == 0 {
                return Ok(v);
            }
        }
        Err(CodecError("varint too long".into()))
    }

    fn i(&mut self) -> Result<i64, CodecError> {
        let u = self.u()?;
        Ok(((u >> 1) as i64) ^ -((u & 1) as i64))
    }

    fn u64le(&mut self) -> Result<u64, CodecError> {
        let end = self.pos + 8;
        let bytes = self
            .buf
            .get(self.pos..end)
            .ok_or_else(|| CodecError("truncated".into()))?;
        self.pos = end;
        Ok(u64::from_le_bytes(bytes.try_into().expect("8 bytes")))
    }

    fn bytes(&mut self) -> Result<&'a [u8], CodecError> {
        let len = usize::try_from(self.u()?).map_err(|_| CodecError("length".into()))?;
        let end = self
            .pos
            .checked_add(len)
            .ok_or_else(|| CodecError("length".into()))?;
        let bytes = self
            .buf
            .get(self.pos..end)
            .ok_or_else(|| CodecError("truncated".into()))?;
        self.pos = end;
        Ok(bytes)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn rec(secs: i64, payload: &[(&str, SignalValue)]) -> HistoryRecord {
        HistoryRecord {
            timestamp: DateTime::from_timestamp(1_767_225_600 + secs, 123_456_789).unwrap(),
            payload: payload.iter().map(|(k, v)| (k.to_string(), v.clone())).collect(),
            can_id: (secs % 2 == 0).then_some(secs as u32),
        }
    }

    #[test]
    fn round_trips_every_value_shape_exactly() {
        let fields: BTreeMap<String, SignalValue> =
            [("DriverFront".to_string(), SignalValue::Bool(true))].into();
        let records = vec![
            rec(
                1,
                &[
                    ("Soc", SignalValue::Int(80)),
                    ("Speed", SignalValue::Float(12.5)),
                    ("Gear", SignalValue::Text("D".into())),
                    ("Doors", SignalValue::Fields(fields)),
                ],
            ),
            rec(
                0,
                &[
                    ("Soc", SignalValue::Int(-3)),
                    ("Speed", SignalValue::Float(2.0)),
                    ("Locked", SignalValue::Bool(false)),
                    ("Odometer", SignalValue::Invalid),
                    (
                        "Location",
                        SignalValue::Location(Location {
                            latitude: 52.5,
                            longitude: 13.4,
                        }),
                    ),
                ],
            ),
            rec(2, &[("Speed", SignalValue::Float(f64::NAN.copysign(-1.0)))]),
        ];
        let decoded = decode(&encode(&records)).unwrap();
        assert_eq!(decoded.len(), 3);
        // Sorted by source time.
        assert_eq!(decoded[0], records[1]);
        assert_eq!(decoded[1], records[0]);
        let v = VehicleId("v".into());
        assert_eq!(decoded[2].content_id(&v), records[2].content_id(&v));
        assert_eq!(decoded[2].can_id, Some(2));
        assert_eq!(decoded[1].can_id, None);
    }

    #[test]
    fn merge_adds_only_new_records() {
        let v = VehicleId("v".into());
        let a = rec(1, &[("Soc", SignalValue::Int(1))]);
        let b = rec(2, &[("Soc", SignalValue::Int(2))]);
        let (merged, added) = merge(&v, vec![a.clone()], &[a, b]);
        assert_eq!((merged.len(), added), (2, 1));
    }

    /// A Tesla `V`-like minute at 1 Hz: 40 signals (drive, battery, climate, position,
    /// doors, text enums), slowly changing as while driving. Prints the bucket size
    /// (`cargo test -p fleetwire-actors bytes_per_bucket -- --nocapture`); the figure is
    /// in docs/data-model.md.
    #[test]
    fn bytes_per_bucket_for_a_tesla_minute() {
        let mut records = Vec::new();
        for s in 0..60i64 {
            let f = s as f64;
            let mut p: Vec<(String, SignalValue)> = vec![
                (
                    "VehicleSpeed".into(),
                    SignalValue::Float(50.0 + (f / 7.0).sin() * 10.0),
                ),
                ("Odometer".into(), SignalValue::Float(12_345.6 + f * 0.014)),
                ("Soc".into(), SignalValue::Float(80.0 - f * 0.002)),
                ("BatteryLevel".into(), SignalValue::Float(79.5 - f * 0.002)),
                ("EstBatteryRange".into(), SignalValue::Float(250.3 - f * 0.01)),
                ("PackVoltage".into(), SignalValue::Float(395.2 + (f / 3.0).cos())),
                (
                    "PackCurrent".into(),
                    SignalValue::Float(-30.0 + (f / 5.0).sin() * 20.0),
                ),
                ("InsideTemp".into(), SignalValue::Float(21.5)),
                ("OutsideTemp".into(), SignalValue::Float(8.0)),
                ("Gear".into(), SignalValue::Text("D".into())),
                ("ChargeState".into(), SignalValue::Text("Idle".into())),
                ("Locked".into(), SignalValue::Bool(true)),
                ("SentryMode".into(), SignalValue::Text("Off".into())),
                ("GpsHeading".into(), SignalValue::Float(90.0 + f * 0.3)),
                ("RatedRange".into(), SignalValue::Float(260.0 - f * 0.01)),
                ("DCChargingPower".into(), SignalValue::Int(0)),
                ("ACChargingPower".into(), SignalValue::Int(0)),
                ("CruiseSetSpeed".into(), SignalValue::Int(55)),
                ("BrakePedal".into(), SignalValue::Bool(s % 17 == 0)),
                (
                    "PedalPosition".into(),
                    SignalValue::Float(12.0 + (f / 4.0).sin() * 5.0),
                ),
                (
                    "Location".into(),
                    SignalValue::Location(Location {
                        latitude: 52.52 + f * 0.00012,
                        longitude: 13.405 + f * 0.00009,
                    }),
                ),
            ];
            for i in 0..19 {
                p.push((
                    format!("TpmsPressure{i}"),
                    SignalValue::Float(2.9 + f64::from(i % 4) * 0.01),
                ));
            }
            records.push(HistoryRecord {
                timestamp: DateTime::from_timestamp(1_767_225_600 + s, 0).unwrap(),
                payload: p.into_iter().collect(),
                can_id: None,
            });
        }
        let raw: usize = records
            .iter()
            .map(|r| serde_json::to_vec(&r.payload).unwrap().len())
            .sum();
        let bytes = encode(&records).len();
        println!("60 records x 40 signals: JSON {raw} B, cols1+lz4 {bytes} B");
        assert!(
            bytes < raw / 3,
            "the encoding must pay off: {bytes} B vs {raw} B of JSON"
        );
    }

    #[test]
    fn garbage_is_an_error_not_a_panic() {
        assert!(decode(b"nope").is_err());
        let mut good = encode(&[rec(1, &[("Soc", SignalValue::Int(1))])]);
        good.truncate(good.len() - 2);
        assert!(decode(&good).is_err());
        assert!(decode(&lz4_flex::compress_prepend_size(&[1, 200, 200, 200, 200, 1])).is_err());
    }
}
