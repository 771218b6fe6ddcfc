//! Enhanced fan-out iterator tokens (format in the parent module's docs) and the
//! SubscribeToShard starting position of a port position.

use aws_sdk_kinesis::types::{ShardIteratorType, StartingPosition};
use fleetwire_actors::ports::{SequenceNumber, ShardId, ShardIterator, StartPosition, StreamError};

/// The parsed form of an enhanced fan-out iterator token (format in the module docs).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct IteratorToken {
    /// The shard.
    pub shard_id: ShardId,
    /// Where the next record comes from.
    pub position: StartPosition,
}

impl IteratorToken {
    const PREFIX: &'static str = "efo:";

    /// The token as the port's opaque iterator.
    pub fn encode(&self) -> ShardIterator {
        let shard = &self.shard_id.0;
        ShardIterator(match &self.position {
            StartPosition::TrimHorizon => format!("{}{shard}:trim_horizon", Self::PREFIX),
            StartPosition::Latest => format!("{}{shard}:latest", Self::PREFIX),
            StartPosition::AtSequenceNumber(s) => format!("{}{shard}:at:{s}", Self::PREFIX),
            StartPosition::AfterSequenceNumber(s) => format!("{}{shard}:after:{s}", Self::PREFIX),
        })
    }

    /// Parses a token made by [`encode`](Self::encode); anything else is `InvalidArgument`.
    pub fn parse(iterator: &ShardIterator) -> Result<Self, StreamError> {
        let invalid =
            || StreamError::InvalidArgument(format!("not an enhanced fan-out iterator: {:?}", iterator.0));
        let rest = iterator.0.strip_prefix(Self::PREFIX).ok_or_else(invalid)?;
        let mut parts = rest.split(':');
        let shard = parts.next().filter(|s| !s.is_empty()).ok_or_else(invalid)?;
        let kind = parts.next().ok_or_else(invalid)?;
        let raw_seq = parts.next();
        if parts.next().is_some() {
            return Err(invalid());
        }
        // Kinesis sequence numbers are decimal strings of up to 128 digits.
        let seq = || {
            raw_seq
                .filter(|s| !s.is_empty() && s.len() <= 128 && s.bytes().all(|b| b.is_ascii_digit()))
                .map(|s| SequenceNumber(s.to_owned()))
                .ok_or_else(invalid)
        };
        let position = match kind {
            "trim_horizon" if raw_seq.is_none() => StartPosition::TrimHorizon,
            "latest" if raw_seq.is_none() => StartPosition::Latest,
            "at" => StartPosition::AtSequenceNumber(seq()?),
            "after" => StartPosition::AfterSequenceNumber(seq()?),
            _ => return Err(invalid()),
        };
        Ok(Self {
            shard_id: ShardId(shard.to_owned()),
            position,
        })
    }
}

/// SubscribeToShard's StartingPosition for a port position.
pub(super) fn starting_position(position: &StartPosition) -> Result<StartingPosition, StreamError> {
    let (kind, seq) = match position {
        StartPosition::TrimHorizon => (ShardIteratorType::TrimHorizon, None),
        StartPosition::Latest => (ShardIteratorType::Latest, None),
        StartPosition::AtSequenceNumber(s) => (ShardIteratorType::AtSequenceNumber, Some(s.0.clone())),
        StartPosition::AfterSequenceNumber(s) => (ShardIteratorType::AfterSequenceNumber, Some(s.0.clone())),
    };
    StartingPosition::builder()
        .r#type(kind)
        .set_sequence_number(seq)
        .build()
        .map_err(|e| StreamError::InvalidArgument(format!("SubscribeToShard starting position: {e}")))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn token(s: &str) -> Result<IteratorToken, StreamError> {
        IteratorToken::parse(&ShardIterator(s.into()))
    }

    #[test]
    fn tokens_round_trip() {
        let shard = ShardId("shardId-000000000001".into());
        for position in [
            StartPosition::TrimHorizon,
            StartPosition::Latest,
            StartPosition::AtSequenceNumber(SequenceNumber(
                "49590338271490256608559692538361571095921575989136588898".into(),
            )),
            StartPosition::AfterSequenceNumber(SequenceNumber("7".into())),
        ] {
            let t = IteratorToken {
                shard_id: shard.clone(),
                position,
            };
            assert_eq!(IteratorToken::parse(&t.encode()).unwrap(), t);
        }
        assert_eq!(
            IteratorToken {
                shard_id: shard,
                position: StartPosition::AfterSequenceNumber(SequenceNumber("42".into())),
            }
            .encode()
            .0,
            "efo:shardId-000000000001:after:42"
        );
    }

    #[test]
    fn malformed_tokens_are_invalid_arguments() {
        for bad in [
            "",
            "not-an-iterator",
            "efo:",
            "efo::latest",
            "efo:s:latest:1",
            "efo:s:at",
            "efo:s:at:",
            "efo:s:after:12x",
            "efo:s:sometime",
            "efo:s:after:1:2",
        ] {
            assert!(
                matches!(token(bad), Err(StreamError::InvalidArgument(_))),
                "{bad:?}"
            );
        }
    }
}
