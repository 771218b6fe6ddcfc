//! When a slow client is cut off (pure): the budgets of time, events and bytes, and the
//! byte count of what sits in the client's channel.
//!
//! # What the byte budget counts
//!
//! The serialized size of what waits for the client because it does not read:
//! - the live queue (coalesced per vehicle; each event as the hub serialized it, so an
//!   upper bound for a signal filter's trimmed copy), and
//! - the events handed to the HTTP body's channel and not yet taken by it ([`InFlight`]).
//!
//! Not counted: a resume's replay backlog and the live events held during a resume (they
//! wait for the replay, not for the client; bounded by `max_replay_events` and
//! `max_pending`), and what the HTTP server has taken from the channel but not yet sent:
//! actix-web's write buffer (it stops polling the body past 32 KiB) and the kernel's
//! socket buffer, neither of which the subscriber can see.

use std::collections::VecDeque;
use std::time::Duration;

/// Bytes an SSE frame adds to its payload (`id:`, `event:`, `data:` and line ends), so
/// that many tiny events still count.
pub const FRAME_OVERHEAD: usize = 48;

/// Why a slow client is disconnected; the `reason` label of
/// `fleetwire_subscriber_disconnects_total`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Disconnect {
    /// Blocked longer than `slow_client_timeout_ms`, or more than `max_pending` vehicles
    /// waiting.
    SlowClient,
    /// More than `max_buffered_bytes` waiting.
    Bytes,
}

impl Disconnect {
    /// The metric label.
    pub fn as_str(self) -> &'static str {
        match self {
            Disconnect::SlowClient => "slow_client",
            Disconnect::Bytes => "bytes",
        }
    }
}

/// The limits a blocked client is held to.
#[derive(Debug, Clone, Copy)]
pub struct Budget {
    /// Longest a client may block its stream.
    pub timeout: Duration,
    /// Most live events (vehicles) waiting.
    pub max_events: usize,
    /// Most serialized bytes waiting (module docs).
    pub max_bytes: usize,
}

impl Budget {
    /// Whether a client blocked for `blocked_for`, with `events` live events and `bytes`
    /// bytes waiting, must be disconnected, and why.
    pub fn check(&self, blocked_for: Duration, events: usize, bytes: usize) -> Option<Disconnect> {
        if blocked_for >= self.timeout || events > self.max_events {
            Some(Disconnect::SlowClient)
        } else if bytes > self.max_bytes {
            Some(Disconnect::Bytes)
        } else {
            None
        }
    }
}

/// Sizes of the items in the client's channel, oldest first. The channel is FIFO, so
/// when it holds `n` items they are the last `n` sent: the sender can count the bytes in
/// it from its own length alone, without the receiver's help.
#[derive(Debug, Default)]
pub struct InFlight {
    /// Size of each item sent and maybe not yet received, oldest first.
    sizes: VecDeque<usize>,
    /// Sum of `sizes`.
    bytes: usize,
}

impl InFlight {
    /// An item of `size` bytes went into the channel.
    pub fn sent(&mut self, size: usize) {
        self.sizes.push_back(size);
        self.bytes += size;
    }

    /// Bytes sent and not known to be taken (as of the last [`InFlight::settle`]).
    pub fn bytes(&self) -> usize {
        self.bytes
    }

    /// The channel holds `in_channel` items now: forgets those the receiver took, and
    /// returns the bytes still in it.
    pub fn settle(&mut self, in_channel: usize) -> usize {
        while self.sizes.len() > in_channel {
            let taken = self.sizes.pop_front().expect("longer than in_channel");
            self.bytes -= taken;
        }
        self.bytes
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const BUDGET: Budget = Budget {
        timeout: Duration::from_secs(30),
        max_events: 100,
        max_bytes: 1000,
    };

    #[test]
    fn each_budget_disconnects_with_its_reason() {
        let short = Duration::from_millis(100);
        assert_eq!(BUDGET.check(short, 100, 1000), None, "at the limits is fine");
        assert_eq!(BUDGET.check(short, 100, 1001), Some(Disconnect::Bytes));
        assert_eq!(BUDGET.check(short, 101, 0), Some(Disconnect::SlowClient));
        assert_eq!(
            BUDGET.check(Duration::from_secs(30), 0, 0),
            Some(Disconnect::SlowClient)
        );
        assert_eq!(
            BUDGET.check(Duration::from_secs(31), 0, 5000),
            Some(Disconnect::SlowClient),
            "time or events first: the older reason keeps its label"
        );
        assert_eq!(Disconnect::Bytes.as_str(), "bytes");
    }

    #[test]
    fn in_flight_counts_what_the_receiver_has_not_taken() {
        let mut f = InFlight::default();
        assert_eq!(f.settle(0), 0);
        f.sent(10);
        f.sent(20);
        f.sent(30);
        assert_eq!(f.settle(3), 60, "nothing taken");
        assert_eq!(f.settle(2), 50, "the oldest was taken first");
        f.sent(5);
        assert_eq!(f.settle(3), 55);
        assert_eq!(f.settle(0), 0, "all taken");
        assert!(f.sizes.is_empty());
    }
}
