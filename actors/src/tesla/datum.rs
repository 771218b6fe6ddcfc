//! A datum of a `V` payload as Go sees it: its key, and the effective member of its value
//! after protobuf merging (the last `Value` field with its own wire type wins). The
//! checked variants also validate the datum with Go's rules in the same walk, which is
//! most of the work per frame.

use super::Topic;
use super::payload::is_known;
use super::schema::{MsgInfo, schema};
use super::wire::{Reader, WireError, WireValue, check_field};

/// `Value.string_value`.
pub(crate) const VALUE_STRING: u32 = 1;

/// The effective oneof member of a datum's value, as Go sees it after merging every
/// occurrence: the last `Value` field with its own wire type wins.
#[derive(Debug, Clone, Copy, PartialEq)]
pub(crate) enum Member<'a> {
    Text(&'a str),
    Other(u32),
}

/// A datum's key (last occurrence, as int32) and effective value member.
pub(crate) fn datum_view(datum: &[u8]) -> (i32, Option<Member<'_>>) {
    let value_msg = value_info();
    let mut key = 0;
    let mut member = None;
    for field in Reader::new(datum).map_while(Result::ok) {
        match (field.number, field.value) {
            (1, WireValue::Varint(v)) => key = v as i32,
            (2, WireValue::Len(value)) => {
                for f in Reader::new(value).map_while(Result::ok) {
                    if !is_known(value_msg, &f) {
                        continue;
                    }
                    member = Some(match (f.number, f.value) {
                        // Validated as UTF-8 already.
                        (VALUE_STRING, WireValue::Len(s)) => {
                            Member::Text(std::str::from_utf8(s).unwrap_or_default())
                        }
                        (n, _) => Member::Other(n),
                    });
                }
            }
            _ => {}
        }
    }
    (key, member)
}

pub(crate) fn value_info() -> &'static MsgInfo {
    let datum = schema()
        .submessage(schema().topic(Topic::V), 1)
        .expect("Payload.data is a message");
    schema().submessage(datum, 2).expect("Datum.value is a message")
}

/// [`datum_view`] of a datum not checked yet, checking it (Go's rules) in the same walk.
#[inline(always)]
pub(crate) fn checked_datum_view<'a>(
    datum_msg: &'static MsgInfo,
    value_msg: &'static MsgInfo,
    datum: &'a [u8],
) -> Result<(i32, Option<Member<'a>>), WireError> {
    match usual_datum(value_msg, datum) {
        Some(view) => view,
        None => any_datum(datum_msg, value_msg, datum),
    }
}

/// The shape vehicles send, `08 <key> 12 <len> <one Value member>`, without the generic
/// walk (it is most of the work per frame); `None` for any other shape.
#[inline(always)]
fn usual_datum<'a>(
    value_msg: &'static MsgInfo,
    datum: &'a [u8],
) -> Option<Result<(i32, Option<Member<'a>>), WireError>> {
    let mut r = Reader::new(datum);
    if !r.eat(0x08) {
        return None;
    }
    let key = r.read_varint()? as i32;
    if !r.eat(0x12) || r.read_varint()? != r.rest().len() as u64 {
        return None;
    }
    let mut value = Reader::new(r.rest());
    let field = value.next_field()?.ok()?;
    if !value.rest().is_empty() {
        return None;
    }
    let info = value_msg
        .field(field.number)
        .filter(|info| info.accepts(&field.value))?;
    if let Err(e) = check_field(info, &field.value, 2) {
        return Some(Err(e));
    }
    let member = match (field.number, field.value) {
        // Checked as UTF-8 just above.
        (VALUE_STRING, WireValue::Len(s)) => Member::Text(std::str::from_utf8(s).unwrap_or_default()),
        (n, _) => Member::Other(n),
    };
    Some(Ok((key, Some(member))))
}

/// Any datum: the generic walk.
fn any_datum<'a>(
    datum_msg: &'static MsgInfo,
    value_msg: &'static MsgInfo,
    datum: &'a [u8],
) -> Result<(i32, Option<Member<'a>>), WireError> {
    let mut key = 0;
    let mut member = None;
    for field in Reader::new(datum) {
        let field = field?;
        let Some(info) = datum_msg.field(field.number) else {
            continue;
        };
        match (field.number, field.value) {
            (1, WireValue::Varint(v)) => key = v as i32,
            (2, WireValue::Len(value)) => {
                for f in Reader::new(value) {
                    let f = f?;
                    let Some(vinfo) = value_msg.field(f.number) else {
                        continue;
                    };
                    check_field(vinfo, &f.value, 2)?;
                    if vinfo.accepts(&f.value) {
                        member = Some(match (f.number, f.value) {
                            // Checked as UTF-8 just above.
                            (VALUE_STRING, WireValue::Len(s)) => {
                                Member::Text(std::str::from_utf8(s).unwrap_or_default())
                            }
                            (n, _) => Member::Other(n),
                        });
                    }
                }
            }
            _ => check_field(info, &field.value, 1)?,
        }
    }
    Ok((key, member))
}
