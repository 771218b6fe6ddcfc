//! The subscriber's outbound queue: FIFO by first arrival, coalesced per vehicle.

use std::collections::{HashMap, VecDeque};
use std::sync::Arc;

use super::hub::HubEvent;
use crate::model::VehicleId;

/// What [`OutboundQueue::push`] did.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum PushOutcome {
    /// A new entry at the back.
    Queued,
    /// Replaced a waiting update of the same vehicle (which kept its place in line).
    Coalesced,
}

/// Events waiting to be written to a client. Holds at most one event per vehicle: a
/// newer update of a vehicle replaces the waiting one, because updates carry the full
/// latest state.
#[derive(Debug, Default)]
pub struct OutboundQueue {
    order: VecDeque<VehicleId>,
    waiting: HashMap<VehicleId, Arc<HubEvent>>,
}

impl OutboundQueue {
    /// Adds an event.
    pub fn push(&mut self, event: Arc<HubEvent>) -> PushOutcome {
        let id = event.update.vehicle_id.clone();
        match self.waiting.insert(id.clone(), event) {
            Some(_) => PushOutcome::Coalesced,
            None => {
                self.order.push_back(id);
                PushOutcome::Queued
            }
        }
    }

    /// The oldest waiting event.
    pub fn pop(&mut self) -> Option<Arc<HubEvent>> {
        let id = self.order.pop_front()?;
        Some(
            self.waiting
                .remove(&id)
                .expect("order and waiting hold the same ids"),
        )
    }

    /// Puts an event back at the front (it could not be sent after all), unless a newer
    /// update of the same vehicle arrived meanwhile.
    pub fn push_front(&mut self, event: Arc<HubEvent>) {
        let id = event.update.vehicle_id.clone();
        if let std::collections::hash_map::Entry::Vacant(slot) = self.waiting.entry(id.clone()) {
            slot.insert(event);
            self.order.push_front(id);
        }
    }

    /// Number of waiting events.
    pub fn len(&self) -> usize {
        self.order.len()
    }

    /// Whether nothing waits.
    pub fn is_empty(&self) -> bool {
        self.order.is_empty()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::model::VehicleUpdate;

    fn ev(seq: u64, id: &str) -> Arc<HubEvent> {
        let update = VehicleUpdate {
            vehicle_id: VehicleId(id.into()),
            version: seq,
            last_seen: None,
            changed: vec![],
            signals: Default::default(),
            ingest_received_at: chrono::Utc::now(),
        };
        Arc::new(HubEvent::new(seq, Arc::new(update)))
    }

    #[test]
    fn coalesces_per_vehicle_and_keeps_first_arrival_order() {
        let mut q = OutboundQueue::default();
        assert_eq!(q.push(ev(1, "a")), PushOutcome::Queued);
        assert_eq!(q.push(ev(2, "b")), PushOutcome::Queued);
        assert_eq!(q.push(ev(3, "a")), PushOutcome::Coalesced);
        assert_eq!(q.len(), 2);
        let first = q.pop().unwrap();
        assert_eq!((first.update.vehicle_id.as_str(), first.seq), ("a", 3));
        assert_eq!(q.pop().unwrap().seq, 2);
        assert!(q.pop().is_none() && q.is_empty());
    }

    #[test]
    fn push_front_yields_to_newer_updates() {
        let mut q = OutboundQueue::default();
        let old = ev(1, "a");
        q.push(ev(2, "a"));
        q.push_front(old);
        assert_eq!(q.len(), 1);
        assert_eq!(q.pop().unwrap().seq, 2);
        q.push(ev(3, "b"));
        q.push_front(ev(4, "c"));
        assert_eq!(q.pop().unwrap().update.vehicle_id.as_str(), "c");
    }
}
