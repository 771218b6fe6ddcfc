//! A subscriber's outbox (pure): what its client gets next, in id order and at most
//! once, across a `Last-Event-ID` resume.
//!
//! # Resume
//!
//! A resuming subscriber registers with the hub *before* it asks the replay log for
//! what came after the client's id, so every entry reaches it one way or the other: in
//! the replay if it was in the log when asked, live otherwise. While the replay pages
//! come in, live events wait in `held`; once the replay is complete, held events the
//! replay already covered (id ≤ position) are dropped and the rest go out live. Every
//! event ever queued has an id above `position`, so nothing is sent twice.
//!
//! # Resets
//!
//! A reset tells the client to reload the state (`GET /v1/vehicles`) because it cannot
//! get every update it missed. Whatever waits is superseded by that reload and dropped;
//! the reset carries the id delivery continues after, when there is one.

use std::collections::VecDeque;
use std::sync::Arc;

use super::hub::HubEvent;
use super::queue::{OutboundQueue, PushOutcome};
use crate::ports::EventId;

/// Why a client is told to reset; the `data` of the SSE `reset` event and a metric label.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ResetReason {
    /// The node's fan-out subscription lost updates it could not recover.
    Lagged,
    /// The tenant's log records lost updates (a publish failed while Redis was down, or
    /// a reconnect gap the log no longer covered).
    Gap,
    /// The client's `Last-Event-ID` is older than the replay log reaches.
    TooOld,
    /// The client's `Last-Event-ID` is newer than anything in the log (not from it).
    UnknownId,
    /// The client's `Last-Event-ID` is not an event id at all.
    InvalidId,
    /// The replay log could not be read (Redis unreachable).
    ReplayFailed,
    /// More missed events than `subscribers.max_replay_events`: reloading is cheaper.
    ReplayTooLong,
    /// Live events arrived faster than a resume could hold them.
    ResumeOverflow,
    /// The hub had to drop an update for this client (its mailbox was full).
    Dropped,
}

impl ResetReason {
    /// The snake_case name.
    pub fn as_str(self) -> &'static str {
        match self {
            ResetReason::Lagged => "lagged",
            ResetReason::Gap => "gap",
            ResetReason::TooOld => "too_old",
            ResetReason::UnknownId => "unknown_id",
            ResetReason::InvalidId => "invalid_id",
            ResetReason::ReplayFailed => "replay_failed",
            ResetReason::ReplayTooLong => "replay_too_long",
            ResetReason::ResumeOverflow => "resume_overflow",
            ResetReason::Dropped => "dropped",
        }
    }
}

/// Where delivery continues after a reset.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ResetAt {
    /// After this id: entries up to it are covered by the reload.
    At(EventId),
    /// Where it was.
    Unchanged,
    /// Unknown: accept whatever comes next (the log may have restarted with ids below
    /// the old position).
    Unknown,
}

/// The next thing for the client.
#[derive(Debug, Clone, PartialEq)]
pub enum Outgoing {
    /// A vehicle update.
    Vehicle(Arc<HubEvent>),
    /// Reload the state; `id`: where delivery continues (the SSE `id:`), when known.
    Reset {
        /// Where delivery continues.
        id: Option<EventId>,
        /// Why.
        reason: ResetReason,
    },
}

/// What [`Outbox::offer`] did with a live event.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Offer {
    /// Queued for the client.
    Queued,
    /// Queued, replacing a waiting update of the same vehicle.
    Coalesced,
    /// Already given to the client, or covered (id ≤ position): dropped.
    Duplicate,
    /// Waiting for a resume to complete.
    Held,
}

/// One entry of a replay page, as the subscriber saw it through its filter.
#[derive(Debug, Clone)]
pub enum Replayed {
    /// An update the filter lets through.
    Event(Arc<HubEvent>),
    /// An entry the filter does not let through: only the position moves.
    Skipped(EventId),
    /// A gap marker: the client must reload.
    Gap(EventId),
}

enum Phase {
    Live,
    Resuming {
        held: VecDeque<Arc<HubEvent>>,
        /// Set when `held` was full: the newest live id seen since (nothing is held any more).
        overflow: Option<EventId>,
    },
}

/// See the module docs.
pub struct Outbox {
    /// Highest id queued for the client or skipped past; nothing at or below it is queued.
    position: Option<EventId>,
    /// A reset owed to the client; goes out before anything else.
    reset: Option<(Option<EventId>, ResetReason)>,
    /// Replayed events, in order, uncoalesced (bounded by the replay budget); go out before
    /// live ones.
    backlog: VecDeque<Arc<HubEvent>>,
    /// Live events, coalesced per vehicle.
    live: OutboundQueue,
    phase: Phase,
    /// Most live events held during a resume.
    max_held: usize,
    /// Events dropped because a reset superseded them or a resume could not hold them.
    discarded: u64,
}

impl Outbox {
    /// A fresh subscriber's outbox: live at once.
    pub fn live() -> Self {
        Self {
            position: None,
            reset: None,
            backlog: VecDeque::new(),
            live: OutboundQueue::default(),
            phase: Phase::Live,
            max_held: 0,
            discarded: 0,
        }
    }

    /// An outbox resuming after `after`, holding at most `max_held` live events until
    /// the replay is complete.
    pub fn resuming(after: EventId, max_held: usize) -> Self {
        Self {
            position: Some(after),
            phase: Phase::Resuming {
                held: VecDeque::new(),
                overflow: None,
            },
            max_held,
            ..Self::live()
        }
    }

    /// Highest id queued or skipped past.
    pub fn position(&self) -> Option<EventId> {
        self.position
    }

    /// Whether a resume is in progress.
    pub fn is_resuming(&self) -> bool {
        matches!(self.phase, Phase::Resuming { .. })
    }

    /// A live event from the hub (already filtered).
    pub fn offer(&mut self, event: Arc<HubEvent>) -> Offer {
        if self.position.is_some_and(|p| event.id <= p) {
            return Offer::Duplicate;
        }
        match &mut self.phase {
            Phase::Resuming { held, overflow } => {
                if overflow.is_none() && held.len() < self.max_held {
                    held.push_back(event);
                } else {
                    self.discarded += held.len() as u64 + 1;
                    held.clear();
                    *overflow = Some(event.id);
                }
                Offer::Held
            }
            Phase::Live => {
                self.position = Some(event.id);
                match self.live.push(event) {
                    PushOutcome::Queued => Offer::Queued,
                    PushOutcome::Coalesced => Offer::Coalesced,
                }
            }
        }
    }

    /// One replayed entry, in log order; ignored unless resuming (a reset ended it).
    pub fn replayed(&mut self, item: Replayed) {
        if !self.is_resuming() {
            return;
        }
        let id = match &item {
            Replayed::Event(e) => e.id,
            Replayed::Skipped(id) | Replayed::Gap(id) => *id,
        };
        if self.position.is_some_and(|p| id <= p) {
            return;
        }
        self.position = Some(id);
        match item {
            Replayed::Event(event) => self.backlog.push_back(event),
            Replayed::Skipped(_) => {}
            Replayed::Gap(id) => self.supersede(ResetAt::At(id), ResetReason::Gap),
        }
    }

    /// The replay is complete: held live events it did not cover go out from here on.
    pub fn finish_resume(&mut self) {
        let Phase::Resuming { held, overflow } = std::mem::replace(&mut self.phase, Phase::Live) else {
            return;
        };
        if let Some(newest) = overflow {
            let at = self.position.map_or(newest, |p| p.max(newest));
            self.reset(ResetAt::At(at), ResetReason::ResumeOverflow);
            return;
        }
        for event in held {
            self.offer(event);
        }
    }

    /// The client must reload. Drops whatever waits and ends a resume (live events held
    /// by it and newer than the new position go out after the reset).
    pub fn reset(&mut self, at: ResetAt, reason: ResetReason) {
        self.supersede(at, reason);
        self.finish_resume();
    }

    fn supersede(&mut self, at: ResetAt, reason: ResetReason) {
        self.discarded += (self.backlog.len() + self.live.len()) as u64;
        self.backlog.clear();
        self.live = OutboundQueue::default();
        let previous = self.reset.and_then(|(id, _)| id);
        let id = match at {
            ResetAt::At(id) => {
                self.position = Some(id);
                Some(id)
            }
            ResetAt::Unchanged => previous,
            ResetAt::Unknown => {
                self.position = None;
                None
            }
        };
        self.reset = Some((id, reason));
    }

    /// What goes out next, if anything may.
    pub fn front(&self) -> Option<Outgoing> {
        if let Some((id, reason)) = self.reset {
            return Some(Outgoing::Reset { id, reason });
        }
        if let Some(event) = self.backlog.front() {
            return Some(Outgoing::Vehicle(event.clone()));
        }
        match self.phase {
            Phase::Live => self.live.front().map(|e| Outgoing::Vehicle(e.clone())),
            Phase::Resuming { .. } => None,
        }
    }

    /// Removes what [`Outbox::front`] returned (it was handed to the client).
    pub fn pop_front(&mut self) {
        if self.reset.take().is_some() || self.backlog.pop_front().is_some() {
            return;
        }
        if matches!(self.phase, Phase::Live) {
            self.live.pop();
        }
    }

    /// Everything waiting: a reset, replayed, live and held events.
    pub fn len(&self) -> usize {
        let held = match &self.phase {
            Phase::Resuming { held, .. } => held.len(),
            Phase::Live => 0,
        };
        usize::from(self.reset.is_some()) + self.backlog.len() + self.live.len() + held
    }

    /// Whether nothing waits.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// Live events waiting (coalesced per vehicle), the measure of a slow client.
    pub fn live_len(&self) -> usize {
        self.live.len()
    }

    /// Serialized size of the live events waiting (the byte budget's part of the outbox,
    /// `budget.rs`).
    pub fn live_bytes(&self) -> usize {
        self.live.bytes()
    }

    /// Events dropped because a reset superseded them or a resume could not hold them.
    pub fn discarded(&self) -> u64 {
        self.discarded
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::subscriber::queue::tests::ev;

    /// Drains the outbox: `v<ms>` per vehicle event, `R<ms|->:<reason>` per reset.
    fn drain(outbox: &mut Outbox) -> Vec<String> {
        let mut out = Vec::new();
        while let Some(item) = outbox.front() {
            out.push(match item {
                Outgoing::Vehicle(e) => format!("v{}", e.id.ms),
                Outgoing::Reset { id, reason } => format!(
                    "R{}:{}",
                    id.map_or("-".to_owned(), |i| i.ms.to_string()),
                    reason.as_str()
                ),
            });
            outbox.pop_front();
        }
        out
    }

    #[test]
    fn live_events_go_out_once_in_order() {
        let mut o = Outbox::live();
        assert_eq!(o.offer(ev(1, "a")), Offer::Queued);
        assert_eq!(o.offer(ev(2, "b")), Offer::Queued);
        assert_eq!(o.offer(ev(2, "b")), Offer::Duplicate);
        assert_eq!(o.offer(ev(3, "a")), Offer::Coalesced);
        assert_eq!(drain(&mut o), ["v2", "v3"]);
        assert!(o.is_empty());
    }

    #[test]
    fn a_resume_holds_live_events_and_drops_what_the_replay_covered() {
        let mut o = Outbox::resuming(EventId::new(10, 0), 100);
        // Live events race the replay: 12 and 13 arrive live before the replay answers.
        assert_eq!(o.offer(ev(12, "b")), Offer::Held);
        assert_eq!(o.offer(ev(13, "a")), Offer::Held);
        assert_eq!(
            o.offer(ev(9, "a")),
            Offer::Duplicate,
            "older than the client's id"
        );
        assert!(o.front().is_none(), "nothing goes out before the replay");
        o.replayed(Replayed::Event(ev(11, "a")));
        o.replayed(Replayed::Skipped(EventId::new(12, 0)));
        // Replay pages may be streamed out while the resume goes on.
        assert_eq!(drain(&mut o), ["v11"]);
        o.finish_resume();
        assert_eq!(o.offer(ev(14, "c")), Offer::Queued);
        assert_eq!(
            drain(&mut o),
            ["v13", "v14"],
            "12 was in the replay (filtered out), 13 was not"
        );
    }

    #[test]
    fn a_gap_in_the_replay_resets_and_the_replay_goes_on() {
        let mut o = Outbox::resuming(EventId::new(10, 0), 100);
        o.replayed(Replayed::Event(ev(11, "a")));
        o.replayed(Replayed::Gap(EventId::new(12, 0)));
        o.replayed(Replayed::Event(ev(13, "a")));
        o.finish_resume();
        assert_eq!(drain(&mut o), ["R12:gap", "v13"]);
        assert_eq!(o.discarded(), 1);
    }

    #[test]
    fn a_too_old_id_resets_to_the_head_and_keeps_newer_live_events() {
        let mut o = Outbox::resuming(EventId::new(10, 0), 100);
        o.offer(ev(20, "a"));
        o.offer(ev(21, "b"));
        o.reset(ResetAt::At(EventId::new(20, 0)), ResetReason::TooOld);
        assert!(!o.is_resuming());
        assert_eq!(drain(&mut o), ["R20:too_old", "v21"]);
        // A replay answer arriving after the reset is ignored.
        o.replayed(Replayed::Event(ev(22, "c")));
        assert!(o.is_empty());
    }

    #[test]
    fn an_unknown_position_accepts_lower_ids_afterwards() {
        let mut o = Outbox::resuming(EventId::new(50, 0), 100);
        o.reset(ResetAt::Unknown, ResetReason::TooOld);
        assert_eq!(
            o.offer(ev(5, "a")),
            Offer::Queued,
            "a restarted log with ids below the old position"
        );
        assert_eq!(drain(&mut o), ["R-:too_old", "v5"]);
    }

    #[test]
    fn held_overflow_ends_in_a_reset_at_the_newest_live_id() {
        let mut o = Outbox::resuming(EventId::new(10, 0), 2);
        for ms in 11..=15 {
            assert_eq!(o.offer(ev(ms, "a")), Offer::Held);
        }
        o.replayed(Replayed::Event(ev(11, "a")));
        o.finish_resume();
        assert_eq!(drain(&mut o), ["R15:resume_overflow"]);
        assert_eq!(o.offer(ev(15, "a")), Offer::Duplicate);
        assert_eq!(o.offer(ev(16, "a")), Offer::Queued);
        assert!(o.discarded() >= 4);
    }

    #[test]
    fn resets_merge_and_keep_the_known_id() {
        let mut o = Outbox::live();
        o.offer(ev(1, "a"));
        o.reset(ResetAt::At(EventId::new(3, 0)), ResetReason::Dropped);
        o.reset(ResetAt::Unchanged, ResetReason::Lagged);
        assert_eq!(drain(&mut o), ["R3:lagged"]);
        assert_eq!(o.discarded(), 1);
    }

    #[test]
    fn live_bytes_count_the_live_queue_only() {
        let mut o = Outbox::resuming(EventId::new(10, 0), 100);
        o.offer(ev(12, "b"));
        o.replayed(Replayed::Event(ev(11, "a")));
        assert_eq!(o.live_bytes(), 0, "held and replayed events wait for the replay");
        o.finish_resume();
        assert_eq!(o.live_bytes(), ev(12, "b").wire_bytes());
        o.reset(ResetAt::Unchanged, ResetReason::Lagged);
        assert_eq!(o.live_bytes(), 0, "a reset drops what waits");
    }
}
