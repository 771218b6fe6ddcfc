//! `POST /v1/stream-tickets`: a short-lived ticket for `GET /v1/stream?ticket=…`
//! (see `crate::auth::tickets` for why and how).

use actix_web::{HttpResponse, web};
use serde::Serialize;

use super::auth::require;
use super::{ApiError, ApiState};
use crate::auth::{Caller, Role, now_secs};

/// A new stream ticket.
#[derive(Debug, Serialize, utoipa::ToSchema)]
pub struct StreamTicket {
    /// Pass as `?ticket=` to `GET /v1/stream`.
    pub ticket: String,
    /// When it stops being accepted (Unix seconds); streams opened with it end when the
    /// token it was issued for expires.
    pub expires_at: u64,
}

/// Issues a ticket bound to the caller's tenant and role (viewer).
#[utoipa::path(
    post,
    path = "/v1/stream-tickets",
    operation_id = "create_stream_ticket",
    tag = "stream",
    responses(
        (status = 201, description = "A ticket for `GET /v1/stream?ticket=`", body = StreamTicket),
        (status = 401, response = super::openapi::errors::Unauthorized),
        (status = 403, response = super::openapi::errors::Forbidden),
    ),
    security(("bearer_jwt" = []))
)]
pub async fn create(caller: Caller, state: web::Data<ApiState>) -> Result<HttpResponse, ApiError> {
    require(&caller, Role::Viewer)?;
    let (ticket, expires_at) = state.auth.tickets.issue(&caller, now_secs())?;
    Ok(HttpResponse::Created()
        .insert_header(("Cache-Control", "no-store"))
        .json(StreamTicket { ticket, expires_at }))
}
