//! Read positions: start positions, the opaque iterator encoding, and iterator expiry.

use std::time::Duration;

use fleetwire_actors::ports::{SequenceNumber, ShardId, ShardIterator, StreamError};

/// How long a shard iterator stays valid (Kinesis: 5 minutes).
pub const ITERATOR_TTL: Duration = Duration::from_secs(300);

/// Whether an iterator created at `created_ms` has outlived [`ITERATOR_TTL`] at `now`.
pub(super) fn expired(created_ms: i64, now: i64) -> bool {
    now.saturating_sub(created_ms) >= ITERATOR_TTL.as_millis() as i64
}

pub(super) fn parse_sequence(seq: &SequenceNumber) -> Result<u64, StreamError> {
    seq.0
        .parse()
        .map_err(|_| StreamError::InvalidArgument(format!("{seq} is not a sequence number of this stream")))
}

/// Iterators are `shard/position/created_ms` in hex: opaque to callers, cheap to check.
pub(super) fn encode_iterator(shard: &ShardId, from: u64, created_ms: i64) -> ShardIterator {
    let plain = format!("{shard}/{from}/{created_ms}");
    ShardIterator(plain.bytes().map(|b| format!("{b:02x}")).collect())
}

pub(super) fn decode_iterator(it: &ShardIterator) -> Result<(ShardId, u64, i64), StreamError> {
    let invalid = || StreamError::InvalidArgument("invalid shard iterator".into());
    let hex = it.0.as_bytes();
    if !hex.len().is_multiple_of(2) {
        return Err(invalid());
    }
    let bytes = hex
        .chunks(2)
        .map(|pair| {
            std::str::from_utf8(pair)
                .ok()
                .and_then(|s| u8::from_str_radix(s, 16).ok())
        })
        .collect::<Option<Vec<u8>>>()
        .ok_or_else(invalid)?;
    let plain = String::from_utf8(bytes).map_err(|_| invalid())?;
    let mut parts = plain.split('/');
    let (Some(shard), Some(from), Some(created), None) =
        (parts.next(), parts.next(), parts.next(), parts.next())
    else {
        return Err(invalid());
    };
    if !shard.starts_with("shardId-") {
        return Err(invalid());
    }
    let from = from.parse().map_err(|_| invalid())?;
    let created = created.parse().map_err(|_| invalid())?;
    Ok((ShardId(shard.to_owned()), from, created))
}

#[cfg(test)]
mod tests {
    use super::super::topology::shard_id;
    use super::*;

    #[test]
    fn iterators_round_trip_and_reject_garbage() {
        let it = encode_iterator(&shard_id(3), 1_234, 99);
        assert_eq!(decode_iterator(&it).unwrap(), (shard_id(3), 1_234, 99));
        let hex = |plain: &str| plain.bytes().map(|b| format!("{b:02x}")).collect::<String>();
        let bad_position = hex("shardId-000000000003/x/1");
        let extra_part = hex("shardId-000000000003/1/2/3");
        for bad in ["", "zz", "abc", &hex("shard"), &bad_position, &extra_part] {
            assert!(
                matches!(
                    decode_iterator(&ShardIterator(bad.into())),
                    Err(StreamError::InvalidArgument(_))
                ),
                "{bad:?} should be rejected"
            );
        }
    }
}
