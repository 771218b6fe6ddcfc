//! `GET /v1/stream`: Server-Sent Events, one `Subscriber` actor per connection.

use std::time::Duration;

use actix_web::{Responder, web};
use actix_web_lab::sse;
use fleetwire_actors::subscriber::{Subscriber, SubscriptionFilter};
use futures_util::StreamExt;
use serde::Deserialize;
use tokio_stream::wrappers::ReceiverStream;

use super::{ApiError, ApiState};

/// Query of `GET /v1/stream`.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct StreamQuery {
    /// Comma-separated vehicle ids; all vehicles when absent.
    vehicles: Option<String>,
}

/// Opens a stream of `vehicle` events (data: a VehicleUpdate as JSON, `id`: event number),
/// `reset` events (reload the state), and keep-alive comments.
pub async fn stream(
    state: web::Data<ApiState>,
    query: web::Query<StreamQuery>,
) -> Result<impl Responder, ApiError> {
    let filter = SubscriptionFilter::from_query(query.vehicles.as_deref()).map_err(|message| {
        ApiError::BadRequest {
            code: "bad_filter",
            message,
        }
    })?;
    let rx = Subscriber::start(
        filter,
        state.subscribers.clone(),
        state.hub.clone(),
        &state.registry,
    );
    let events = ReceiverStream::new(rx).map(|item| {
        let mut data = sse::Data::new(item.data.to_string()).event(item.event);
        if let Some(id) = item.id {
            data = data.id(id.to_string());
        }
        sse::Event::from(data)
    });
    Ok(sse::Sse::from_infallible_stream(events)
        .with_keep_alive(Duration::from_millis(state.subscribers.keep_alive_ms))
        .with_retry_duration(Duration::from_millis(state.subscribers.retry_ms)))
}
