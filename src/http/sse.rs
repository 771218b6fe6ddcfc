//! `GET /v1/stream`: Server-Sent Events, one `Subscriber` actor per connection.
//!
//! A client resumes with the `Last-Event-ID` header (browsers' `EventSource` sends it
//! when it reconnects) or, for manual testing, a `last_event_id` query parameter; the
//! header wins when both are given. What a resume does is in
//! `fleetwire_actors::subscriber` (outbox) and `docs/api.md`.

use std::time::Duration;

use actix_web::{HttpRequest, Responder, web};
use actix_web_lab::sse;
use fleetwire_actors::ports::EventId;
use fleetwire_actors::subscriber::{FilterQuery, Resume, Subscriber, SubscriberSpec, SubscriptionFilter};
use futures_util::StreamExt;
use serde::{Deserialize, Serialize};
use tokio_stream::wrappers::ReceiverStream;

use super::auth::{require, stream_caller};
use super::limits::LimitError;
use super::{ApiError, ApiState};
use crate::auth::{Role, now_secs};

/// Query of `GET /v1/stream`.
#[derive(Debug, Deserialize, utoipa::IntoParams)]
#[serde(deny_unknown_fields)]
#[into_params(parameter_in = Query)]
pub struct StreamQuery {
    /// Comma-separated vehicle ids; all vehicles when absent.
    vehicles: Option<String>,
    /// Comma-separated signal names: only updates that changed one of them, trimmed to them.
    signals: Option<String>,
    /// Comma-separated event types (`vehicle`, `fleet_event`); all when absent.
    types: Option<String>,
    /// Resume after this event id, `<ms>-<seq>` (like the `Last-Event-ID` header, which
    /// wins when both are sent).
    #[param(example = "1767225600000-3")]
    last_event_id: Option<String>,
    /// A stream ticket from `POST /v1/stream-tickets`, for clients that cannot send an
    /// `Authorization` header (`EventSource`).
    ticket: Option<String>,
}

/// The `data` of an SSE `reset` event: the client missed updates it cannot be given and
/// must reload `GET /v1/vehicles` (documentation only: the subscriber writes it).
#[derive(Serialize, utoipa::ToSchema)]
#[allow(dead_code)]
pub struct StreamReset {
    /// Why (docs/api.md, "Event ids and resume").
    reason: ResetReasonDoc,
}

/// The reasons of a `reset` (`fleetwire_actors::subscriber` `ResetReason::as_str`).
#[derive(Serialize, utoipa::ToSchema)]
#[serde(rename_all = "snake_case")]
#[schema(as = ResetReason)]
#[allow(dead_code)]
enum ResetReasonDoc {
    Lagged,
    Gap,
    TooOld,
    UnknownId,
    InvalidId,
    ReplayFailed,
    ReplayTooLong,
    ResumeOverflow,
    Dropped,
}

/// Opens a stream of the caller's tenant's `vehicle` events (`id:` the event id, `data:`
/// a VehicleUpdate as JSON), `fleet_event` events (`data:` a FleetEvent: trips, charging,
/// geofences, alerts), `reset` events (reload the state), and keep-alive comments.
/// Viewer, by bearer token or stream ticket; the stream ends when the token expires.
#[utoipa::path(
    get,
    path = "/v1/stream",
    tag = "stream",
    params(
        StreamQuery,
        ("Last-Event-ID" = Option<String>, Header, description = "Resume after this event id (sent by `EventSource` when it reconnects)"),
    ),
    responses(
        (status = 200, content_type = "text/event-stream", body = String,
            description = "Server-Sent Events until the credential expires. `event: vehicle`, `id:` \
                the event id, `data:` a `VehicleUpdate` (the vehicle's full latest state and the signals \
                that `changed`); `event: fleet_event`, `data:` a `FleetEvent` (without `id:`; the \
                entry's id comes with its last frame); `event: reset`, `data:` a `StreamReset` (reload \
                `GET /v1/vehicles`); `: keep-alive` comments and a `retry:` hint."),
        (status = 400, response = super::openapi::errors::BadRequest),
        (status = 401, response = super::openapi::errors::Unauthorized),
        (status = 403, response = super::openapi::errors::Forbidden),
        (status = 429, response = super::openapi::errors::TooManyRequests),
        (status = 503, response = super::openapi::errors::Unavailable),
    ),
    security(("bearer_jwt" = []), ("stream_ticket" = []))
)]
pub async fn stream(
    req: HttpRequest,
    state: web::Data<ApiState>,
    query: web::Query<StreamQuery>,
) -> Result<impl Responder, ApiError> {
    let caller = stream_caller(&req, query.ticket.as_deref()).await?;
    require(&caller, Role::Viewer)?;
    let filter = SubscriptionFilter::parse(FilterQuery {
        vehicles: query.vehicles.as_deref(),
        signals: query.signals.as_deref(),
        types: query.types.as_deref(),
    })
    .map_err(|message| ApiError::BadRequest {
        code: "bad_filter",
        message,
    })?;
    let resume = resume_point(&req, query.last_event_id.as_deref())?;
    let tenant = caller.tenant.clone();
    let retry_after_secs = state.subscribers.config.limit_retry_after_secs;
    let permit = state.limits.acquire(&tenant).map_err(|e| match e {
        LimitError::Tenant { .. } => ApiError::TooManyRequests {
            code: "tenant_stream_limit",
            message: e.to_string(),
            retry_after_secs,
        },
        LimitError::Node { .. } => ApiError::AtCapacity {
            code: "node_stream_limit",
            message: e.to_string(),
            retry_after_secs,
        },
    })?;
    let rx = Subscriber::start(
        SubscriberSpec {
            tenant,
            filter,
            resume,
        },
        &state.subscribers,
    );
    // A stream outlives no credential: it ends when the caller's token expires (the
    // client then needs a new token, or ticket, to reconnect).
    let lifetime = Duration::from_secs(caller.expires_at.saturating_sub(now_secs()));
    let events = ReceiverStream::new(rx)
        .take_until(tokio::time::sleep(lifetime))
        .flat_map(move |item| {
            // The permit lives as long as the response body: the connection counts until the
            // client is gone.
            let _counted = &permit;
            // Fleet events first and without an id; the entry's id comes with its last frame.
            let before = item
                .before
                .iter()
                .map(|json| sse::Event::from(sse::Data::new(json.to_string()).event("fleet_event")));
            let mut data = sse::Data::new(item.data.to_string()).event(item.event);
            if let Some(id) = item.id {
                data = data.id(id.to_string());
            }
            let frames: Vec<sse::Event> = before.chain(std::iter::once(sse::Event::from(data))).collect();
            futures_util::stream::iter(frames)
        });
    let config = &state.subscribers.config;
    Ok(sse::Sse::from_infallible_stream(events)
        .with_keep_alive(Duration::from_millis(config.keep_alive_ms))
        .with_retry_duration(Duration::from_millis(config.retry_ms)))
}

/// Where the stream starts. A `Last-Event-ID` header that is not an event id (an older
/// version's number, a proxy's mangling) is not the client's fault: it gets a `reset`.
/// A bad `last_event_id` parameter was typed by someone: it gets a 400.
fn resume_point(req: &HttpRequest, param: Option<&str>) -> Result<Resume, ApiError> {
    if let Some(header) = req.headers().get("Last-Event-ID") {
        let text = header.to_str().map(str::trim).unwrap_or("\u{fffd}");
        if !text.is_empty() {
            return Ok(text.parse::<EventId>().map_or(Resume::Invalid, Resume::After));
        }
    }
    match param.map(str::trim).filter(|p| !p.is_empty()) {
        None => Ok(Resume::Fresh),
        Some(raw) => raw
            .parse::<EventId>()
            .map(Resume::After)
            .map_err(|e| ApiError::BadRequest {
                code: "bad_last_event_id",
                message: format!("last_event_id: {e}"),
            }),
    }
}
