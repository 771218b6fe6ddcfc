//! What Tesla's server does to a payload before it reaches the stream, done on the wire
//! bytes so the common case costs one copy and no decoding into structs:
//!
//! - the payload is checked as the topic's message with Go's rules ([`super::wire`]);
//! - `vin` is replaced (here: by the pseudonymous vehicle id), for all four topics;
//! - `V`: the first `Location` datum whose value is text `"(lat N|S, lon E|W)"` becomes a
//!   `location_value`, and every text value in scientific notation becomes `%.5f` text of
//!   its float32 value (`"1.5e-3"` → `"0.00150"`);
//! - `alerts`: `started_at`/`ended_at` whose seconds are ≥ 315,576,000,000 are read as
//!   milliseconds.
//!
//! Output order: known fields before `vin`, `vin`, known fields after it, then unknown
//! fields — the order Go's marshaller writes. So a record never starts with an unknown
//! field, which [`crate::codec`] relies on to tell protobuf records from JSON ones.

use chrono::{DateTime, Utc};

use super::Topic;
use super::datum::{Member, VALUE_STRING, checked_datum_view, value_info};
use super::schema::{MsgInfo, schema};
use super::text::{fixed_point, parse_location};
use super::wire::{
    RawField, Reader, TimestampParts, WT_I64, WireError, WireValue, check_field, put_len, put_tag,
};

/// `Field.Location`.
const FIELD_LOCATION: i32 = 21;
/// `Value.location_value`.
const VALUE_LOCATION: u32 = 7;
/// Go's `maxSecondsInDuration`: alert timestamps at or past it are milliseconds.
const MAX_SECONDS: i64 = 315_576_000_000;

/// A payload ready for the stream.
#[derive(Debug, Clone)]
pub(crate) struct Rewritten {
    pub payload: Vec<u8>,
    pub created_at: Option<DateTime<Utc>>,
    /// Datums (`V`) or entries (alerts, errors); 0 for connectivity.
    pub datums: usize,
}

/// Checks `payload` as `topic`'s message and applies Tesla's rewrites (module doc).
pub(crate) fn rewrite(topic: Topic, payload: &[u8], vehicle_id: &str) -> Result<Rewritten, WireError> {
    let msg = schema().topic(topic);
    let datum_msg = schema().submessage(msg, 1);
    let value_msg = value_info();
    let vin_no = topic.vin_field();
    // Byte range of the vin fields, while the payload is in Go's order (they are then
    // adjacent): the common case is spliced as before + vin + after.
    let (mut vin_start, mut vin_end) = (None, None);
    let created_no = topic.created_at_field();
    let mut created = TimestampParts::default();
    let mut datums = 0;
    // (ordinal of the top-level field, its new encoding); empty in the common case.
    let mut replacements: Vec<(usize, Vec<u8>)> = Vec::new();
    let mut location_seen = false;
    let mut in_go_order = true;
    let mut last_number = 0;
    // One pass checks every field (Go's rules) and finds what must change.
    for (ordinal, field) in Reader::new(payload).enumerate() {
        let field = field?;
        let info = msg.field(field.number);
        let known = info.is_some_and(|info| info.accepts(&field.value));
        in_go_order &= known && field.number >= last_number;
        last_number = field.number;
        if in_go_order && vin_end.is_none() && field.number >= vin_no {
            let at = offset_in(payload, field.raw);
            vin_start.get_or_insert(at);
            if field.number > vin_no {
                vin_end = Some(at);
            }
        }
        match (info, topic, field.number, field.value) {
            // V datums are checked while they are examined, in one walk.
            (Some(_), Topic::V, 1, WireValue::Len(_)) => {}
            (Some(info), ..) => check_field(info, &field.value, 0)?,
            (None, ..) => {}
        }
        match (field.number, field.value) {
            (n, WireValue::Len(b)) if n == created_no => created.merge(b),
            (1, WireValue::Len(b)) if topic != Topic::Connectivity => {
                datums += 1;
                let new = match (topic, datum_msg) {
                    (Topic::V, Some(datum_msg)) => {
                        let view = checked_datum_view(datum_msg, value_msg, b)?;
                        rewrite_datum(b, view, &mut location_seen)
                    }
                    (Topic::Alerts, _) => rewrite_alert(b),
                    _ => None,
                };
                if let Some(new) = new {
                    replacements.push((ordinal, new));
                }
            }
            _ => {}
        }
    }
    if in_go_order && replacements.is_empty() {
        // Nothing but the vin changes: three copies into a buffer of the exact size (so
        // turning it into `Bytes` does not allocate again).
        let start = vin_start.unwrap_or(payload.len());
        let end = vin_end.unwrap_or(payload.len());
        let vin_len = if vehicle_id.is_empty() {
            0
        } else {
            len_field_size(vin_no, vehicle_id.len())
        };
        let mut out = Vec::with_capacity(start + vin_len + (payload.len() - end));
        out.extend_from_slice(&payload[..start]);
        put_vin(&mut out, vin_no, vehicle_id);
        out.extend_from_slice(&payload[end..]);
        return Ok(Rewritten {
            payload: out,
            created_at: created.to_datetime(),
            datums,
        });
    }
    let extra: usize = replacements.iter().map(|(_, r)| r.len() + 10).sum();
    let mut out = Vec::with_capacity(payload.len() + vehicle_id.len() + 8 + extra);
    let is_vin = |f: &RawField<'_>| f.number == vin_no && matches!(f.value, WireValue::Len(_));
    if in_go_order {
        // Already in Go's order (the usual case): one pass, vin spliced in its place.
        let mut vin_written = false;
        let select = |f: &RawField<'_>| {
            if is_vin(f) {
                return None;
            }
            let first_after_vin = !vin_written && f.number > vin_no;
            vin_written |= first_after_vin;
            Some(first_after_vin)
        };
        copy_fields(payload, &replacements, &mut out, select, vehicle_id, vin_no);
        if !vin_written {
            put_vin(&mut out, vin_no, vehicle_id);
        }
    } else {
        let known_before = |f: &RawField<'_>| (is_known(msg, f) && f.number < vin_no).then_some(false);
        let known_after = |f: &RawField<'_>| (is_known(msg, f) && f.number > vin_no).then_some(false);
        let unknown = |f: &RawField<'_>| (!is_known(msg, f)).then_some(false);
        copy_fields(payload, &replacements, &mut out, known_before, vehicle_id, vin_no);
        put_vin(&mut out, vin_no, vehicle_id);
        copy_fields(payload, &replacements, &mut out, known_after, vehicle_id, vin_no);
        copy_fields(payload, &replacements, &mut out, unknown, vehicle_id, vin_no);
    }
    Ok(Rewritten {
        payload: out,
        created_at: created.to_datetime(),
        datums,
    })
}

/// Encoded size of a length-delimited field `number` holding `len` bytes.
fn len_field_size(number: u32, len: usize) -> usize {
    let varint_size = |v: u64| (64 - (v | 1).leading_zeros() as usize).div_ceil(7);
    varint_size(u64::from(number) << 3) + varint_size(len as u64) + len
}

/// Where `part` (a sub-slice of `whole`) starts in `whole`.
fn offset_in(whole: &[u8], part: &[u8]) -> usize {
    part.as_ptr() as usize - whole.as_ptr() as usize
}

pub(crate) fn is_known(msg: &MsgInfo, f: &RawField<'_>) -> bool {
    msg.field(f.number).is_some_and(|info| info.accepts(&f.value))
}

fn put_vin(out: &mut Vec<u8>, vin_no: u32, vehicle_id: &str) {
    // proto3 leaves an empty string out.
    if !vehicle_id.is_empty() {
        put_len(out, vin_no, vehicle_id.as_bytes());
    }
}

/// Copies the fields `select` picks (`Some(write_vin_first)`), substituting replacements.
fn copy_fields(
    payload: &[u8],
    replacements: &[(usize, Vec<u8>)],
    out: &mut Vec<u8>,
    mut select: impl FnMut(&RawField<'_>) -> Option<bool>,
    vehicle_id: &str,
    vin_no: u32,
) {
    let mut next = 0;
    // The payload was validated, so no field errors here.
    for (ordinal, field) in Reader::new(payload).map_while(Result::ok).enumerate() {
        while next < replacements.len() && replacements[next].0 < ordinal {
            next += 1;
        }
        let Some(vin_first) = select(&field) else { continue };
        if vin_first {
            put_vin(out, vin_no, vehicle_id);
        }
        match replacements.get(next) {
            Some((o, new)) if *o == ordinal => put_len(out, field.number, new),
            _ => out.extend_from_slice(field.raw),
        }
    }
}

/// Tesla's two text rewrites for one datum; `None` when the datum stays as it is.
fn rewrite_datum(
    datum: &[u8],
    (key, member): (i32, Option<Member<'_>>),
    location_seen: &mut bool,
) -> Option<Vec<u8>> {
    let mut new_value = None;
    if key == FIELD_LOCATION && !*location_seen {
        // Only the first Location datum is examined (Tesla: "there can be only one").
        *location_seen = true;
        if let Some(Member::Text(s)) = member
            && let Some((lat, lon)) = parse_location(s)
        {
            new_value = Some(location_value(lat, lon));
        }
    }
    if new_value.is_none()
        && let Some(Member::Text(s)) = member
        && let Some(fixed) = fixed_point(s)
    {
        let mut v = Vec::with_capacity(fixed.len() + 2);
        put_len(&mut v, VALUE_STRING, fixed.as_bytes());
        new_value = Some(v);
    }
    new_value.map(|value| {
        // Go replaces the whole Value and keeps the rest of the datum: drop every
        // `value` occurrence, then add the new one.
        let mut out = Vec::with_capacity(datum.len() + value.len());
        for f in Reader::new(datum).map_while(Result::ok) {
            if !(f.number == 2 && matches!(f.value, WireValue::Len(_))) {
                out.extend_from_slice(f.raw);
            }
        }
        put_len(&mut out, 2, &value);
        out
    })
}

fn location_value(lat: f64, lon: f64) -> Vec<u8> {
    let mut loc = Vec::with_capacity(18);
    for (number, v) in [(1, lat), (2, lon)] {
        // proto3 leaves +0.0 out (but writes -0.0).
        if v.to_bits() != 0 {
            put_tag(&mut loc, number, WT_I64);
            loc.extend_from_slice(&v.to_le_bytes());
        }
    }
    let mut value = Vec::with_capacity(loc.len() + 2);
    put_len(&mut value, VALUE_LOCATION, &loc);
    value
}

/// Tesla's millisecond fix for one alert; `None` when the alert stays as it is.
fn rewrite_alert(alert: &[u8]) -> Option<Vec<u8>> {
    const STARTED_AT: u32 = 3;
    const ENDED_AT: u32 = 4;
    let mut parts = [TimestampParts::default(); 2];
    for f in Reader::new(alert).map_while(Result::ok) {
        if let (STARTED_AT | ENDED_AT, WireValue::Len(b)) = (f.number, f.value) {
            parts[(f.number - STARTED_AT) as usize].merge(b);
        }
    }
    let fix = parts.map(|p| p.present && p.seconds >= MAX_SECONDS);
    if !fix.contains(&true) {
        return None;
    }
    let mut out = Vec::with_capacity(alert.len() + 16);
    for f in Reader::new(alert).map_while(Result::ok) {
        let fixed = matches!(f.value, WireValue::Len(_))
            && matches!(f.number, STARTED_AT | ENDED_AT)
            && fix[(f.number - STARTED_AT) as usize];
        if !fixed {
            out.extend_from_slice(f.raw);
        }
    }
    for (i, number) in [STARTED_AT, ENDED_AT].into_iter().enumerate() {
        if fix[i] {
            let ms = parts[i].seconds;
            let ts = TimestampParts::encode(ms / 1000, ((ms % 1000) * 1_000_000) as i32);
            put_len(&mut out, number, &ts);
        }
    }
    Some(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn field_sizes_match_the_encoder() {
        for (number, len) in [(1, 0), (3, 5), (15, 127), (16, 128), (3, 20_000), (1 << 20, 3)] {
            let mut out = Vec::new();
            put_len(&mut out, number, &vec![0; len]);
            assert_eq!(len_field_size(number, len), out.len(), "{number} {len}");
        }
    }
}
