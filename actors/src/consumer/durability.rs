//! Deferred acknowledgements: a routed batch whose effects are not all durable yet.
//!
//! A vehicle actor may answer a batch before every effect is written: the latest-state
//! write is coalesced (at most one per `vehicle.persist_interval_ms`) and history buckets
//! are written when they close. The shard checkpoint must still never pass a record whose
//! effects could be lost, so each routed batch carries a [`DurabilityHold`]. An actor that
//! defers a write keeps a clone of the hold until the write succeeded, then
//! [`release`](DurabilityHold::release)s it. The consumer keeps a [`BatchDurability`] per
//! batch and counts the batch processed only when every clone is released and every
//! earlier batch is too (vector's `OrderedFinalizer` idea: the acknowledged prefix).
//!
//! A clone dropped without `release` (an actor stopped before it could write) marks the
//! batch failed: the consumer then reads again from its processed prefix, and the
//! vehicle actors rebuild what was lost (duplicates are dropped by their dedupe).

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Weak};

/// Shared by every clone of one batch's hold; alive while any clone is.
#[derive(Debug)]
struct Live {
    failed: Arc<AtomicBool>,
}

/// One batch's promise to become durable. Clone it for every deferred write; call
/// [`release`](Self::release) once that write succeeded. Dropping it unreleased marks
/// the batch failed.
#[derive(Debug)]
pub struct DurabilityHold {
    live: Arc<Live>,
    released: bool,
}

impl Clone for DurabilityHold {
    fn clone(&self) -> Self {
        Self {
            live: self.live.clone(),
            released: false,
        }
    }
}

impl DurabilityHold {
    /// A hold and the tracker the consumer keeps for it.
    pub fn new() -> (Self, BatchDurability) {
        let failed = Arc::new(AtomicBool::new(false));
        let live = Arc::new(Live {
            failed: failed.clone(),
        });
        let tracker = BatchDurability {
            live: Arc::downgrade(&live),
            failed,
        };
        (
            Self {
                live,
                released: false,
            },
            tracker,
        )
    }

    /// A hold nobody tracks (callers outside a shard consumer, plain `route`).
    pub fn detached_released() -> Self {
        let (mut hold, _) = Self::new();
        // Nobody watches it: dropping an unreleased clone must not matter either.
        hold.released = true;
        hold
    }

    /// This clone's write is durable.
    pub fn release(mut self) {
        self.released = true;
    }
}

impl Drop for DurabilityHold {
    fn drop(&mut self) {
        if !self.released {
            self.live.failed.store(true, Ordering::SeqCst);
        }
    }
}

/// The consumer's view of one batch's hold.
#[derive(Debug, Clone)]
pub struct BatchDurability {
    live: Weak<Live>,
    failed: Arc<AtomicBool>,
}

/// Where a batch stands.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Durability {
    /// Some clone is still held.
    Pending,
    /// Every clone was released.
    Durable,
    /// A clone was dropped unreleased: an effect may be lost.
    Failed,
}

impl BatchDurability {
    /// The batch's state now.
    pub fn state(&self) -> Durability {
        if self.failed.load(Ordering::SeqCst) {
            Durability::Failed
        } else if self.live.strong_count() > 0 {
            Durability::Pending
        } else {
            Durability::Durable
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn durable_once_every_clone_is_released() {
        let (hold, tracker) = DurabilityHold::new();
        let deferred = hold.clone();
        hold.release();
        assert_eq!(tracker.state(), Durability::Pending);
        deferred.release();
        assert_eq!(tracker.state(), Durability::Durable);
    }

    #[test]
    fn an_unreleased_drop_fails_the_batch() {
        let (hold, tracker) = DurabilityHold::new();
        let deferred = hold.clone();
        hold.release();
        drop(deferred);
        assert_eq!(tracker.state(), Durability::Failed);
    }
}
