//! Extractors that authenticate requests, and the role check every handler makes.
//!
//! - [`Caller`] (public API): `Authorization: Bearer <JWT>`. Handlers then call
//!   [`require`] with the lowest role the endpoint allows and use `caller.tenant` for every
//!   read and write.
//! - [`stream_caller`] (`GET /v1/stream` only): the bearer header, or a stream ticket in
//!   `?ticket=` for `EventSource`.
//! - [`PlatformAdmin`] (admin listener): the `admin.token` bearer secret.
//!
//! Denials are 401 (`WWW-Authenticate: Bearer …`) when the credential is missing or
//! invalid, 403 when it is valid but not enough; bodies are the usual JSON errors.

use std::future::{Ready, ready};

use actix_web::dev::Payload;
use actix_web::http::header;
use actix_web::{FromRequest, HttpRequest, web};
use futures_util::future::LocalBoxFuture;
use tracing::info;

use super::{AdminState, ApiError, ApiState};
use crate::auth::{AuthError, Caller, Role, now_secs};

/// The bearer token of a request: `Ok(None)` when there is no `Authorization` header.
pub fn bearer(req: &HttpRequest) -> Result<Option<String>, AuthError> {
    let Some(value) = req.headers().get(header::AUTHORIZATION) else {
        return Ok(None);
    };
    let value = value
        .to_str()
        .map_err(|_| AuthError::InvalidToken("the Authorization header is not text".to_owned()))?;
    match value.split_once(' ') {
        Some((scheme, token)) if scheme.eq_ignore_ascii_case("bearer") && !token.trim().is_empty() => {
            Ok(Some(token.trim().to_owned()))
        }
        _ => Err(AuthError::InvalidToken(
            "the Authorization header must be `Bearer <token>`".to_owned(),
        )),
    }
}

fn missing() -> AuthError {
    AuthError::Missing("this endpoint needs a bearer token (Authorization: Bearer <JWT>)".to_owned())
}

fn api_state(req: &HttpRequest) -> web::Data<ApiState> {
    req.app_data::<web::Data<ApiState>>()
        .cloned()
        .expect("ApiState is registered by api_routes")
}

impl FromRequest for Caller {
    type Error = ApiError;
    type Future = LocalBoxFuture<'static, Result<Self, ApiError>>;

    fn from_request(req: &HttpRequest, _: &mut Payload) -> Self::Future {
        let state = api_state(req);
        let token = bearer(req);
        Box::pin(async move {
            let token = token?.ok_or_else(missing)?;
            Ok(state.auth.jwt.verify(&token).await?)
        })
    }
}

/// The caller of `GET /v1/stream`: the bearer header if present, else `ticket`.
pub async fn stream_caller(req: &HttpRequest, ticket: Option<&str>) -> Result<Caller, ApiError> {
    let state = api_state(req);
    match (bearer(req)?, ticket) {
        (Some(token), _) => Ok(state.auth.jwt.verify(&token).await?),
        (None, Some(ticket)) => Ok(state.auth.tickets.redeem(ticket, now_secs())?),
        (None, None) => Err(AuthError::Missing(
            "the stream needs a bearer token or a ticket from POST /v1/stream-tickets (?ticket=)".to_owned(),
        )
        .into()),
    }
}

/// Refuses (403) a caller below `role`.
pub fn require(caller: &Caller, role: Role) -> Result<(), ApiError> {
    if caller.has(role) {
        Ok(())
    } else {
        Err(AuthError::Forbidden(format!(
            "this needs the {role} role; the token grants {}",
            caller.role.map_or("no role".to_owned(), |r| r.to_string())
        ))
        .into())
    }
}

/// Proof that a request to the admin listener carries the platform-admin token.
#[derive(Debug)]
pub struct PlatformAdmin;

impl FromRequest for PlatformAdmin {
    type Error = ApiError;
    type Future = Ready<Result<Self, ApiError>>;

    fn from_request(req: &HttpRequest, _: &mut Payload) -> Self::Future {
        let state = req
            .app_data::<web::Data<AdminState>>()
            .expect("AdminState is registered by admin_routes");
        let outcome = match bearer(req) {
            Ok(Some(token)) if state.credential.accepts(&token) => Ok(PlatformAdmin),
            Ok(Some(_)) => Err(AuthError::InvalidToken("not the admin token".to_owned())),
            Ok(None) if !state.credential.is_configured() => Err(AuthError::Missing(
                "the admin endpoints are locked: no admin.token is configured".to_owned(),
            )),
            Ok(None) => Err(AuthError::Missing(
                "the admin endpoints need the admin token (Authorization: Bearer <admin.token>)".to_owned(),
            )),
            Err(e) => Err(e),
        };
        // /metrics is scraped every few seconds: only refusals and /admin/* are audited.
        match &outcome {
            Ok(_) if req.path() != "/metrics" => {
                info!(target: "audit", action = "admin_access", path = %req.path(), outcome = "allowed");
            }
            Err(e) => {
                info!(target: "audit", action = "admin_access", path = %req.path(), outcome = "denied", reason = %e);
            }
            _ => {}
        }
        ready(outcome.map_err(ApiError::from))
    }
}
