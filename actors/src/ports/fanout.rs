//! The fan-out port: carries vehicle updates from the node that processes a vehicle to
//! the subscribers on every node.

use std::sync::Arc;

use async_trait::async_trait;
use futures_util::stream::BoxStream;

use crate::model::VehicleUpdate;

/// What a node's subscription yields.
#[derive(Debug, Clone, PartialEq)]
pub enum FanOutMessage {
    /// An update, shared by every local subscriber.
    Update(Arc<VehicleUpdate>),
    /// The subscription fell behind and this many updates were skipped. Subscribers
    /// catch up from the next update of each vehicle (updates carry full state).
    Lagged(u64),
}

/// Errors of the fan-out.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum FanOutError {
    /// The backend failed or cannot be reached.
    #[error("fan-out unavailable: {0}")]
    Unavailable(String),
}

/// The fan-out port. Implementations: `src/backends/embedded/fanout.rs` (in-process
/// broadcast), later Redis.
#[async_trait]
pub trait FanOut: Send + Sync + 'static {
    /// Publishes an update to every node.
    async fn publish(&self, update: Arc<VehicleUpdate>) -> Result<(), FanOutError>;

    /// This node's subscription. Called once per node by the subscriber hub.
    fn subscribe(&self) -> BoxStream<'static, FanOutMessage>;

    /// Cheap reachability check for `/readyz`.
    async fn ping(&self) -> Result<(), FanOutError>;

    /// Whether this node's subscription currently receives updates (a reconnecting
    /// subscription misses them). In-process fan-outs are always subscribed.
    fn is_subscribed(&self) -> bool {
        true
    }
}
