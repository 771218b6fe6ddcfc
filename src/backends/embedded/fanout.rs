//! In-process fan-out: one `tokio::sync::broadcast` channel shared by every subscriber
//! of this process (a single-node deployment has nothing else to fan out to).

use std::sync::Arc;

use async_trait::async_trait;
use futures_util::StreamExt;
use futures_util::stream::{self, BoxStream};
use tokio::sync::broadcast;
use tokio::sync::broadcast::error::RecvError;

use fleetwire_actors::model::VehicleUpdate;
use fleetwire_actors::ports::{FanOut, FanOutError, FanOutMessage};

/// [`FanOut`] over a broadcast channel. Every update is an `Arc`, so publishing costs one
/// pointer per subscriber, never a copy of the snapshot.
#[derive(Debug, Clone)]
pub struct InProcessFanOut {
    /// Kept so the channel stays open with zero subscribers and `subscribe` can be called
    /// at any time.
    tx: broadcast::Sender<Arc<VehicleUpdate>>,
}

impl InProcessFanOut {
    /// A fan-out whose subscribers may each fall `capacity` updates behind before they
    /// receive [`FanOutMessage::Lagged`]. A capacity of 0 is raised to 1 (the broadcast
    /// channel needs room for at least one message).
    pub fn new(capacity: usize) -> Self {
        let (tx, _) = broadcast::channel(capacity.max(1));
        Self { tx }
    }

    /// Number of live subscriptions (for tests and the admin page).
    pub fn subscriber_count(&self) -> usize {
        self.tx.receiver_count()
    }
}

#[async_trait]
impl FanOut for InProcessFanOut {
    async fn publish(&self, update: Arc<VehicleUpdate>) -> Result<(), FanOutError> {
        // `send` only fails when nobody subscribes; an update nobody watches is not an error.
        let _ = self.tx.send(update);
        Ok(())
    }

    fn subscribe(&self) -> BoxStream<'static, FanOutMessage> {
        stream::unfold(self.tx.subscribe(), |mut rx| async move {
            let msg = match rx.recv().await {
                Ok(update) => FanOutMessage::Update(update),
                // The receiver skips ahead by itself; tell the hub so it can count it.
                Err(RecvError::Lagged(skipped)) => FanOutMessage::Lagged(skipped),
                // Only after every sender is gone, i.e. this fan-out was dropped.
                Err(RecvError::Closed) => return None,
            };
            Some((msg, rx))
        })
        .boxed()
    }

    async fn ping(&self) -> Result<(), FanOutError> {
        Ok(())
    }
}
