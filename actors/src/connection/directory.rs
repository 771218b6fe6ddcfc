//! One live connection per vehicle on this node. A vehicle that reconnects while its old
//! socket still looks open (a NAT dropped it silently, the modem switched networks)
//! replaces the old connection: the newest connection is the one the vehicle uses.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};

use actix::Recipient;

use super::Disconnect;
use crate::model::VehicleId;

#[derive(Debug)]
struct Entry {
    connection_id: String,
    recipient: Recipient<Disconnect>,
}

/// The node's connected vehicles. Cheap to clone (shared).
#[derive(Debug, Clone, Default)]
pub struct ConnectionDirectory(Arc<Mutex<HashMap<VehicleId, Entry>>>);

impl ConnectionDirectory {
    /// An empty directory.
    pub fn new() -> Self {
        Self::default()
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, HashMap<VehicleId, Entry>> {
        self.0.lock().expect("connection directory lock never poisoned")
    }

    /// Makes `connection_id` the vehicle's connection; an older one is told to close.
    /// Returns whether an older connection was replaced.
    pub fn register(
        &self,
        vehicle: VehicleId,
        connection_id: String,
        recipient: Recipient<Disconnect>,
    ) -> bool {
        let old = self.lock().insert(
            vehicle,
            Entry {
                connection_id,
                recipient,
            },
        );
        match old {
            Some(old) => {
                // try_send: the old actor's mailbox is bounded; if it is full it is busy
                // and its idle timeout or the closed socket stops it anyway.
                let _ = old.recipient.try_send(Disconnect::Replaced);
                true
            }
            None => false,
        }
    }

    /// Forgets the vehicle's connection if it is still `connection_id` (a replaced
    /// connection stopping late must not remove its successor).
    pub fn unregister(&self, vehicle: &VehicleId, connection_id: &str) {
        let mut map = self.lock();
        if map.get(vehicle).is_some_and(|e| e.connection_id == connection_id) {
            map.remove(vehicle);
        }
    }

    /// Connected vehicles.
    pub fn len(&self) -> usize {
        self.lock().len()
    }

    /// Whether no vehicle is connected.
    pub fn is_empty(&self) -> bool {
        self.lock().is_empty()
    }

    /// Asks every connection to close (node shutdown). Returns how many were asked.
    pub fn close_all(&self) -> usize {
        let map = self.lock();
        for entry in map.values() {
            let _ = entry.recipient.try_send(Disconnect::Shutdown);
        }
        map.len()
    }
}
