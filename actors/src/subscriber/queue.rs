//! The subscriber's live queue: in event-id order, coalesced per vehicle.

use std::collections::{BTreeMap, HashMap};
use std::sync::Arc;

use super::hub::HubEvent;
use crate::model::VehicleId;
use crate::ports::EventId;

/// What [`OutboundQueue::push`] did.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum PushOutcome {
    /// A new entry.
    Queued,
    /// Replaced a waiting update of the same vehicle.
    Coalesced,
}

/// Events waiting to be written to a client. Holds at most one event per vehicle: a
/// newer update of a vehicle replaces the waiting one, because updates carry the full
/// latest state.
///
/// Events leave in id order. A replacing update takes the place its own id gives it (the
/// back), not the place of the update it replaces: otherwise a client could get vehicle
/// A's id 12 before vehicle B's id 11, and a client that reconnects with `Last-Event-ID:
/// 12` would never get B's update. With ids strictly increasing on the wire, everything
/// up to a client's last id has been delivered or superseded.
#[derive(Debug, Default)]
pub struct OutboundQueue {
    /// Waiting events by id; one per vehicle.
    order: BTreeMap<EventId, Arc<HubEvent>>,
    /// The id of each vehicle's waiting event.
    waiting: HashMap<VehicleId, EventId>,
    /// Sum of the waiting events' [`HubEvent::wire_bytes`], for the byte budget.
    bytes: usize,
}

impl OutboundQueue {
    /// Adds an event, which must be newer than any event of its vehicle pushed before.
    /// A replaced event's fleet events move into the new one.
    pub fn push(&mut self, mut event: Arc<HubEvent>) -> PushOutcome {
        let outcome = match self.waiting.get(&event.update.vehicle_id) {
            Some(old_id) => {
                if let Some(old) = self.order.remove(old_id) {
                    self.bytes -= old.wire_bytes();
                    event = HubEvent::absorb(&old, event);
                }
                PushOutcome::Coalesced
            }
            None => PushOutcome::Queued,
        };
        self.waiting.insert(event.update.vehicle_id.clone(), event.id);
        self.bytes += event.wire_bytes();
        self.order.insert(event.id, event);
        outcome
    }

    /// The oldest waiting event, without removing it.
    pub fn front(&self) -> Option<&Arc<HubEvent>> {
        self.order.values().next()
    }

    /// Removes and returns the oldest waiting event.
    pub fn pop(&mut self) -> Option<Arc<HubEvent>> {
        let (_, event) = self.order.pop_first()?;
        self.waiting.remove(&event.update.vehicle_id);
        self.bytes -= event.wire_bytes();
        Some(event)
    }

    /// Serialized size of the waiting events.
    pub fn bytes(&self) -> usize {
        self.bytes
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
pub(crate) mod tests {
    use super::*;
    use crate::model::{TenantId, VehicleUpdate};

    pub(crate) fn ev(ms: u64, id: &str) -> Arc<HubEvent> {
        let update = VehicleUpdate {
            tenant: TenantId::default(),
            vehicle_id: VehicleId(id.into()),
            version: ms,
            last_seen: None,
            changed: vec![],
            signals: Default::default(),
            ingest_received_at: chrono::Utc::now(),
            fleet_events: vec![],
        };
        Arc::new(HubEvent::new(EventId::new(ms, 0), Arc::new(update)))
    }

    #[test]
    fn coalesces_per_vehicle_and_keeps_ids_increasing() {
        let mut q = OutboundQueue::default();
        assert_eq!(q.push(ev(1, "a")), PushOutcome::Queued);
        assert_eq!(q.push(ev(2, "b")), PushOutcome::Queued);
        assert_eq!(q.push(ev(3, "a")), PushOutcome::Coalesced);
        assert_eq!(q.len(), 2);
        assert_eq!(q.front().unwrap().id.ms, 2);
        let first = q.pop().unwrap();
        assert_eq!((first.update.vehicle_id.as_str(), first.id.ms), ("b", 2));
        assert_eq!(q.pop().unwrap().id.ms, 3);
        assert!(q.pop().is_none() && q.is_empty());
    }

    #[test]
    fn bytes_follow_what_waits() {
        let mut q = OutboundQueue::default();
        let (a1, b2, a3) = (ev(1, "a"), ev(2, "b"), ev(3, "a"));
        let each = a1.wire_bytes();
        assert!(
            each > FRAME_OVERHEAD_FOR_TESTS,
            "the JSON counts, not just the frame"
        );
        q.push(a1);
        q.push(b2.clone());
        assert_eq!(q.bytes(), each + b2.wire_bytes());
        q.push(a3.clone());
        assert_eq!(
            q.bytes(),
            b2.wire_bytes() + a3.wire_bytes(),
            "a coalesced update replaces the old one's bytes"
        );
        q.pop();
        q.pop();
        assert_eq!(q.bytes(), 0);
    }

    const FRAME_OVERHEAD_FOR_TESTS: usize = crate::subscriber::budget::FRAME_OVERHEAD;

    #[test]
    fn coalescing_keeps_the_fleet_events_of_the_replaced_update() {
        use crate::fleet::{EventKind, FleetEvent};
        let with_event = |ms: u64, rule: &str| {
            let mut update = (*ev(ms, "a").update).clone();
            update.fleet_events.push(FleetEvent::new(
                &update.vehicle_id,
                chrono::Utc::now(),
                None,
                EventKind::AlertCleared {
                    rule_id: rule.into(),
                    alert: crate::fleet::AlertType::LowSoc,
                },
            ));
            Arc::new(HubEvent::new(EventId::new(ms, 0), Arc::new(update)))
        };
        let mut q = OutboundQueue::default();
        q.push(with_event(1, "r1"));
        q.push(ev(2, "a"));
        q.push(with_event(3, "r3"));
        let e = q.pop().unwrap();
        assert_eq!(e.id.ms, 3);
        assert_eq!(e.fleet.len(), 2);
        assert!(e.fleet[0].contains("r1") && e.fleet[1].contains("r3"));
        assert!(
            !e.json.contains("fleet_events"),
            "the vehicle event carries no events"
        );
    }
}
