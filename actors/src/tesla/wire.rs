//! The protobuf wire format, read the way Go's `proto.Unmarshal` (which Tesla's server runs)
//! reads it, so a payload is accepted here exactly when the reference server accepts it:
//!
//! - varints of at most 10 bytes (the 10th at most `1`), field numbers 1..=2^29-1,
//!   wire types 0, 1, 2, 3 (groups, skipped as unknown fields) and 5;
//! - a known field sent with another wire type is *not* an error: Go keeps it as an
//!   unknown field (and so do we, byte for byte);
//! - proto3 `string` fields (map keys and values included) must be valid UTF-8;
//! - repeated scalars may come packed or unpacked.
//!
//! Nothing here allocates, except a stack of open group numbers (bounded by
//! [`MAX_GROUP_DEPTH`]) when unknown groups nest.

use super::schema::{FieldInfo, MsgInfo, WireKind, schema};

/// Wire type of varints.
pub(crate) const WT_VARINT: u8 = 0;
/// Wire type of 8-byte values.
pub(crate) const WT_I64: u8 = 1;
/// Wire type of length-delimited values.
pub(crate) const WT_LEN: u8 = 2;

/// Deepest nesting of unknown groups Go's decoder accepts (its default recursion limit).
pub const MAX_GROUP_DEPTH: usize = 10_000;
/// Deepest nesting of known messages (Tesla's schema nests 4 deep; this only guards
/// against a recursive schema).
const MAX_MESSAGE_DEPTH: usize = 64;
const MAX_FIELD_NUMBER: u64 = (1 << 29) - 1;

/// Why bytes are not a valid protobuf message.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum WireError {
    /// A varint runs past the end or is longer than 10 bytes.
    #[error("truncated or overlong varint")]
    BadVarint,
    /// A tag names field number 0 or one above 2^29-1.
    #[error("invalid field number")]
    BadFieldNumber,
    /// Wire type 6 or 7.
    #[error("reserved wire type {0}")]
    BadWireType(u8),
    /// A length-delimited or fixed-size value runs past the end.
    #[error("truncated field")]
    Truncated,
    /// An end-group tag without the matching start-group tag.
    #[error("unexpected end-group tag")]
    UnexpectedEndGroup,
    /// Unknown groups nested deeper than [`MAX_GROUP_DEPTH`].
    #[error("groups nested too deeply")]
    TooDeep,
    /// A packed repeated field whose length is not a whole number of elements.
    #[error("malformed packed field {field}")]
    BadPacked {
        /// Full name of the field.
        field: &'static str,
    },
    /// A `string` field that is not valid UTF-8.
    #[error("string field {field} is not valid UTF-8")]
    InvalidUtf8 {
        /// Full name of the field.
        field: &'static str,
    },
}

/// The value of one field as it sits on the wire.
#[derive(Debug, Clone, Copy, PartialEq)]
pub(crate) enum WireValue<'a> {
    Varint(u64),
    I64(u64),
    Len(&'a [u8]),
    /// An (unknown) group; its content is only checked for well-formedness.
    Group,
    I32(u32),
}

/// One field: number, value, and the field's whole encoding (tag included), so callers can
/// copy it unchanged.
#[derive(Debug, Clone, Copy)]
pub(crate) struct RawField<'a> {
    pub number: u32,
    pub value: WireValue<'a>,
    pub raw: &'a [u8],
}

/// Reads the fields of one message, front to back.
#[derive(Debug, Clone)]
pub(crate) struct Reader<'a> {
    rest: &'a [u8],
}

impl<'a> Reader<'a> {
    pub fn new(bytes: &'a [u8]) -> Self {
        Reader { rest: bytes }
    }

    #[inline(always)]
    fn varint(&mut self) -> Result<u64, WireError> {
        // Tags, lengths and small numbers are one byte: skip the loop for them.
        match self.rest.first() {
            Some(&b) if b < 0x80 => {
                self.rest = &self.rest[1..];
                Ok(u64::from(b))
            }
            _ => self.varint_slow(),
        }
    }

    #[cold]
    #[inline(never)]
    fn varint_slow(&mut self) -> Result<u64, WireError> {
        let mut value = 0u64;
        for (i, &b) in self.rest.iter().take(10).enumerate() {
            if i == 9 && b > 1 {
                return Err(WireError::BadVarint);
            }
            value |= u64::from(b & 0x7f) << (7 * i);
            if b < 0x80 {
                self.rest = &self.rest[i + 1..];
                return Ok(value);
            }
        }
        Err(WireError::BadVarint)
    }

    #[inline(always)]
    fn take(&mut self, n: usize) -> Result<&'a [u8], WireError> {
        if n > self.rest.len() {
            return Err(WireError::Truncated);
        }
        let (head, tail) = self.rest.split_at(n);
        self.rest = tail;
        Ok(head)
    }

    #[inline(always)]
    fn tag(&mut self) -> Result<(u32, u8), WireError> {
        let tag = self.varint()?;
        let number = tag >> 3;
        if number == 0 || number > MAX_FIELD_NUMBER {
            return Err(WireError::BadFieldNumber);
        }
        Ok((number as u32, (tag & 7) as u8))
    }

    /// The value after a tag of wire type `wire_type` (groups are skipped whole).
    #[inline(always)]
    fn value(&mut self, number: u32, wire_type: u8) -> Result<WireValue<'a>, WireError> {
        Ok(match wire_type {
            0 => WireValue::Varint(self.varint()?),
            1 => WireValue::I64(u64::from_le_bytes(self.fixed()?)),
            2 => {
                let len = self.varint()?;
                let len = usize::try_from(len).map_err(|_| WireError::Truncated)?;
                WireValue::Len(self.take(len)?)
            }
            3 => {
                self.skip_group(number)?;
                WireValue::Group
            }
            4 => return Err(WireError::UnexpectedEndGroup),
            5 => WireValue::I32(u32::from_le_bytes(self.fixed()?)),
            other => return Err(WireError::BadWireType(other)),
        })
    }

    fn fixed<const N: usize>(&mut self) -> Result<[u8; N], WireError> {
        let bytes = self.take(N)?;
        let mut out = [0u8; N];
        out.copy_from_slice(bytes);
        Ok(out)
    }

    /// Skips a group's content up to its end tag. Iterative, so hostile nesting costs
    /// heap (bounded by [`MAX_GROUP_DEPTH`]), never stack.
    #[cold]
    #[inline(never)]
    fn skip_group(&mut self, number: u32) -> Result<(), WireError> {
        let mut open = vec![number];
        while let Some(&innermost) = open.last() {
            let (n, wire_type) = self.tag()?;
            match wire_type {
                3 => {
                    if open.len() >= MAX_GROUP_DEPTH {
                        return Err(WireError::TooDeep);
                    }
                    open.push(n);
                }
                4 if n == innermost => {
                    open.pop();
                }
                _ => {
                    self.value(n, wire_type)?;
                }
            }
        }
        Ok(())
    }

    /// Consumes `byte` when the input starts with it.
    #[inline(always)]
    pub fn eat(&mut self, byte: u8) -> bool {
        match self.rest.split_first() {
            Some((&b, rest)) if b == byte => {
                self.rest = rest;
                true
            }
            _ => false,
        }
    }

    /// Reads a varint (`None` when malformed).
    #[inline(always)]
    pub fn read_varint(&mut self) -> Option<u64> {
        self.varint().ok()
    }

    /// What is left to read.
    #[inline(always)]
    pub fn rest(&self) -> &'a [u8] {
        self.rest
    }

    /// The next field, or `None` at the end of the message.
    #[inline(always)]
    pub fn next_field(&mut self) -> Option<Result<RawField<'a>, WireError>> {
        if self.rest.is_empty() {
            return None;
        }
        let start = self.rest;
        let field = self.read_field(start);
        if field.is_err() {
            // Stop here: after an error the position is meaningless.
            self.rest = &[];
        }
        Some(field)
    }

    #[inline(always)]
    fn read_field(&mut self, start: &'a [u8]) -> Result<RawField<'a>, WireError> {
        let (number, wire_type) = self.tag()?;
        let value = self.value(number, wire_type)?;
        let used = start.len() - self.rest.len();
        Ok(RawField {
            number,
            value,
            raw: &start[..used],
        })
    }
}

impl<'a> Iterator for Reader<'a> {
    type Item = Result<RawField<'a>, WireError>;

    #[inline(always)]
    fn next(&mut self) -> Option<Self::Item> {
        self.next_field()
    }
}

impl FieldInfo {
    /// Whether `value` has this field's wire type (packed forms included); a field with
    /// another wire type is an unknown field to Go's decoder.
    #[inline(always)]
    pub(crate) fn accepts(&self, value: &WireValue<'_>) -> bool {
        matches!(
            (self.kind, value),
            (WireKind::Varint, WireValue::Varint(_))
                | (WireKind::I32, WireValue::I32(_))
                | (WireKind::I64, WireValue::I64(_))
                | (
                    WireKind::Str | WireKind::Bytes | WireKind::Msg(_),
                    WireValue::Len(_)
                )
        ) || (self.repeated && self.kind.is_scalar_number() && matches!(value, WireValue::Len(_)))
    }
}

/// Checks `bytes` as a message of type `msg` with Go's rules (see the module doc).
pub(crate) fn validate(msg: &'static MsgInfo, bytes: &[u8]) -> Result<(), WireError> {
    validate_at(msg, bytes, 0)
}

fn validate_at(msg: &'static MsgInfo, bytes: &[u8], depth: usize) -> Result<(), WireError> {
    if depth > MAX_MESSAGE_DEPTH {
        return Err(WireError::TooDeep);
    }
    for field in Reader::new(bytes) {
        let field = field?;
        if let Some(info) = msg.field(field.number) {
            check_field(info, &field.value, depth)?;
        }
    }
    Ok(())
}

/// Checks the value of a known field of a message at nesting `depth` (the field's
/// framing was checked when it was read).
#[inline(always)]
pub(crate) fn check_field(
    info: &'static FieldInfo,
    value: &WireValue<'_>,
    depth: usize,
) -> Result<(), WireError> {
    match (info.kind, *value) {
        (WireKind::Str, WireValue::Len(b)) if std::str::from_utf8(b).is_err() => {
            return Err(WireError::InvalidUtf8 { field: &info.name });
        }
        (WireKind::Msg(index), WireValue::Len(b)) => {
            validate_at(&schema().messages[index], b, depth + 1)?;
        }
        (kind, WireValue::Len(b)) if info.repeated && kind.is_scalar_number() => {
            check_packed(info, kind, b)?;
        }
        // Right wire type, or a wrong one (kept as an unknown field): both fine.
        _ => {}
    }
    Ok(())
}

fn check_packed(info: &'static FieldInfo, kind: WireKind, b: &[u8]) -> Result<(), WireError> {
    let ok = match kind {
        WireKind::I32 => b.len().is_multiple_of(4),
        WireKind::I64 => b.len().is_multiple_of(8),
        _ => {
            let mut r = Reader::new(b);
            while !r.rest.is_empty() {
                r.varint()?;
            }
            true
        }
    };
    if ok {
        Ok(())
    } else {
        Err(WireError::BadPacked { field: &info.name })
    }
}

/// Appends a varint.
pub(crate) fn put_varint(out: &mut Vec<u8>, mut v: u64) {
    while v >= 0x80 {
        out.push((v as u8) | 0x80);
        v >>= 7;
    }
    out.push(v as u8);
}

/// Appends a tag.
pub(crate) fn put_tag(out: &mut Vec<u8>, number: u32, wire_type: u8) {
    put_varint(out, (u64::from(number) << 3) | u64::from(wire_type));
}

/// Appends a length-delimited field.
pub(crate) fn put_len(out: &mut Vec<u8>, number: u32, bytes: &[u8]) {
    put_tag(out, number, WT_LEN);
    put_varint(out, bytes.len() as u64);
    out.extend_from_slice(bytes);
}

/// Seconds and nanos of a `google.protobuf.Timestamp`, merged over every occurrence of
/// the field the way protobuf merges repeated occurrences of a message field.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub(crate) struct TimestampParts {
    pub seconds: i64,
    pub nanos: i32,
    pub present: bool,
}

impl TimestampParts {
    /// Merges one occurrence (already validated).
    pub fn merge(&mut self, bytes: &[u8]) {
        self.present = true;
        for field in Reader::new(bytes).map_while(Result::ok) {
            match (field.number, field.value) {
                (1, WireValue::Varint(v)) => self.seconds = v as i64,
                (2, WireValue::Varint(v)) => self.nanos = v as i32,
                _ => {}
            }
        }
    }

    /// The instant, when present and representable.
    pub fn to_datetime(self) -> Option<chrono::DateTime<chrono::Utc>> {
        if !self.present {
            return None;
        }
        let nanos = u32::try_from(self.nanos).ok().filter(|n| *n < 1_000_000_000)?;
        chrono::DateTime::from_timestamp(self.seconds, nanos)
    }

    /// The encoding of a Timestamp message with these parts (proto3: zeros omitted).
    pub fn encode(seconds: i64, nanos: i32) -> Vec<u8> {
        let mut out = Vec::with_capacity(16);
        if seconds != 0 {
            put_tag(&mut out, 1, WT_VARINT);
            put_varint(&mut out, seconds as u64);
        }
        if nanos != 0 {
            put_tag(&mut out, 2, WT_VARINT);
            put_varint(&mut out, nanos as i64 as u64);
        }
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn fields(bytes: &[u8]) -> Result<Vec<(u32, WireValue<'_>)>, WireError> {
        Reader::new(bytes)
            .map(|f| f.map(|f| (f.number, f.value)))
            .collect()
    }

    #[test]
    fn reads_every_wire_type() {
        let bytes = [
            0x08, 0x96, 0x01, // 1: varint 150
            0x11, 1, 0, 0, 0, 0, 0, 0, 0, // 2: fixed64 1
            0x1a, 0x02, b'h', b'i', // 3: "hi"
            0x23, 0x08, 0x01, 0x24, // 4: group { 1: 1 }
            0x2d, 2, 0, 0, 0, // 5: fixed32 2
        ];
        assert_eq!(
            fields(&bytes).unwrap(),
            vec![
                (1, WireValue::Varint(150)),
                (2, WireValue::I64(1)),
                (3, WireValue::Len(b"hi")),
                (4, WireValue::Group),
                (5, WireValue::I32(2)),
            ]
        );
    }

    #[test]
    fn refuses_what_go_refuses() {
        assert_eq!(fields(&[0x08]), Err(WireError::BadVarint));
        assert_eq!(
            fields(&[0x08, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0x02]),
            Err(WireError::BadVarint)
        );
        assert!(fields(&[0x08, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0x01]).is_ok());
        assert_eq!(fields(&[0x00, 0x01]), Err(WireError::BadFieldNumber));
        assert_eq!(fields(&[0x0e]), Err(WireError::BadWireType(6)));
        assert_eq!(fields(&[0x0a, 0x05, 1]), Err(WireError::Truncated));
        assert_eq!(fields(&[0x0c]), Err(WireError::UnexpectedEndGroup));
        assert_eq!(
            fields(&[0x0b, 0x14]),
            Err(WireError::UnexpectedEndGroup),
            "end of another group"
        );
        assert_eq!(fields(&[0x0b]), Err(WireError::BadVarint), "unterminated group");
    }

    #[test]
    fn deep_groups_are_bounded_not_recursive() {
        let mut bytes = vec![0x0b; MAX_GROUP_DEPTH + 1];
        bytes.extend(vec![0x0c; MAX_GROUP_DEPTH + 1]);
        assert_eq!(fields(&bytes), Err(WireError::TooDeep));
        let mut ok = vec![0x0b; 100];
        ok.extend(vec![0x0c; 100]);
        assert!(fields(&ok).is_ok());
    }

    #[test]
    fn varints_round_trip() {
        for v in [0, 1, 127, 128, 300, u32::MAX as u64, u64::MAX] {
            let mut out = vec![0x08];
            put_varint(&mut out, v);
            assert_eq!(fields(&out).unwrap(), vec![(1, WireValue::Varint(v))]);
        }
    }
}
