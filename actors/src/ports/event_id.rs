//! Event ids: the position of an entry in its tenant's replay log.
//!
//! The format is the one of Redis Streams entry ids, `<milliseconds>-<sequence>`, because
//! the Redis fan-out uses the stream entry's id as the event id; the in-process fan-out
//! assigns ids the same way, so both backends (and clients) see one format. Ids of one
//! tenant's log only ever grow, and the order of ids is the order of the log.

use std::fmt;
use std::str::FromStr;

/// The id of one entry in a tenant's replay log; SSE `id:` lines carry it as text.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Default)]
pub struct EventId {
    /// Milliseconds since the Unix epoch when the entry was appended (by the log's clock,
    /// never going backwards within one log).
    pub ms: u64,
    /// Number of the entry within that millisecond.
    pub seq: u64,
}

impl EventId {
    /// `0-0`: before every entry of every log.
    pub const ZERO: EventId = EventId { ms: 0, seq: 0 };

    /// An id.
    pub const fn new(ms: u64, seq: u64) -> Self {
        Self { ms, seq }
    }

    /// The id a log appends next after `self`, given the log's clock reads `now_ms`: the
    /// clock's millisecond when it moved on, else the next sequence number in `self`'s
    /// millisecond (so ids keep growing even when the clock steps back).
    pub fn successor(&self, now_ms: u64) -> Self {
        if now_ms > self.ms {
            Self { ms: now_ms, seq: 0 }
        } else {
            Self {
                ms: self.ms,
                seq: self.seq + 1,
            }
        }
    }
}

impl fmt::Display for EventId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}-{}", self.ms, self.seq)
    }
}

/// Why a text is not an [`EventId`].
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{0:?} is not an event id (expected <milliseconds>-<sequence>, e.g. 1767225600000-0)")]
pub struct ParseEventIdError(pub String);

impl FromStr for EventId {
    type Err = ParseEventIdError;

    /// Parses `<ms>-<seq>`, both plain decimal numbers (no sign, no spaces). Redis would
    /// also accept a bare `<ms>`, but an id fleetwire handed out always has both parts;
    /// anything else comes from somewhere else (an older version's counters, a typo).
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        let err = || ParseEventIdError(s.chars().take(64).collect());
        let (ms, seq) = s.split_once('-').ok_or_else(err)?;
        let number = |part: &str| {
            if part.is_empty() || !part.bytes().all(|b| b.is_ascii_digit()) {
                return Err(err());
            }
            part.parse::<u64>().map_err(|_| err())
        };
        Ok(Self {
            ms: number(ms)?,
            seq: number(seq)?,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn round_trips_and_orders_like_redis() {
        let id: EventId = "1767225600000-3".parse().unwrap();
        assert_eq!(id, EventId::new(1_767_225_600_000, 3));
        assert_eq!(id.to_string(), "1767225600000-3");
        assert!(EventId::new(5, 9) < EventId::new(6, 0));
        assert!(EventId::new(6, 0) < EventId::new(6, 1));
        for bad in [
            "",
            "12",
            "-1",
            "1-",
            "a-1",
            "1-2-3",
            " 1-2",
            "+1-2",
            "99999999999999999999-0",
        ] {
            assert!(bad.parse::<EventId>().is_err(), "{bad:?} must not parse");
        }
    }

    #[test]
    fn successor_never_goes_back() {
        let id = EventId::new(100, 4);
        assert_eq!(id.successor(101), EventId::new(101, 0));
        assert_eq!(id.successor(100), EventId::new(100, 5));
        assert_eq!(id.successor(50), EventId::new(100, 5), "a clock stepping back");
    }
}
