//! `POST /v1/ingest`

use actix_web::http::header;
use actix_web::{HttpRequest, HttpResponse, web};
use fleetwire_actors::telemetry;
use futures_util::StreamExt;

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::Instant;

use fleetwire_actors::model::{TenantId, VehicleId};
use fleetwire_actors::ports::{Registration, StoreError, VehicleRegistry};
use fleetwire_actors::tenancy::RegistrationCache;

use super::{ApiError, ApiState};
use crate::auth::AuthError;
use crate::auth::api_keys::{ApiKeyRecord, KEY_PREFIX, KeyRejection};
use crate::ingest::{GateVerdict, RecordGate};

/// Admits records of vehicles registered to `tenant`. An unregistered vehicle is admitted
/// only when the node provisions unknown vehicles (`[tenancy]`) to this very tenant — the
/// consumer will register it there; otherwise it must be provisioned first, so a key can
/// never write into a tenant it does not belong to. Lookups are remembered for the batch,
/// and registrations found for the node's registry cache TTL: like the consumer's cache, a
/// transfer or removal reaches this edge within `tenancy.cache_ttl_secs`. Absent vehicles
/// are not cached here, so a vehicle provisioned a moment later is admitted at once.
struct TenantGate {
    tenant: TenantId,
    /// Where the consumer provisions unregistered vehicles, if anywhere.
    unknown_to: Option<TenantId>,
    registry: Arc<dyn VehicleRegistry>,
    /// The node's recent registrations (shared by all requests).
    cache: Arc<Mutex<RegistrationCache>>,
    seen: Mutex<HashMap<VehicleId, GateVerdict>>,
}

impl TenantGate {
    /// The vehicle's registration: from the node's cache when fresh, else the registry.
    async fn lookup(&self, vehicle: &VehicleId) -> Result<Option<Registration>, StoreError> {
        let now = Instant::now();
        let lock = || self.cache.lock().unwrap_or_else(|e| e.into_inner());
        if let Some(Some(found)) = lock().get(vehicle, now) {
            return Ok(Some(found.clone()));
        }
        let found = self.registry.lookup(vehicle).await?;
        if let Some(registration) = &found {
            lock().insert(vehicle.clone(), Some(registration.clone()), now);
        }
        Ok(found)
    }
}

#[async_trait::async_trait]
impl RecordGate for TenantGate {
    fn tenant(&self) -> Option<TenantId> {
        Some(self.tenant.clone())
    }

    async fn admit(&self, vehicle: &VehicleId) -> GateVerdict {
        if let Some(v) = self.seen.lock().unwrap_or_else(|e| e.into_inner()).get(vehicle) {
            return v.clone();
        }
        let verdict = match self.lookup(vehicle).await {
            Ok(Some(r)) if r.tenant == self.tenant => GateVerdict::Admit,
            // Same words as "not provisioned": which tenant owns it is not this caller's business.
            Ok(Some(_)) => {
                GateVerdict::Reject(format!("vehicle {vehicle} is not provisioned to this tenant"))
            }
            Ok(None) if self.unknown_to.as_ref() == Some(&self.tenant) => GateVerdict::Admit,
            Ok(None) => GateVerdict::Reject(format!("vehicle {vehicle} is not provisioned to this tenant")),
            Err(e) => return GateVerdict::Retry(format!("vehicle registry: {e}")),
        };
        self.seen
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .insert(vehicle.clone(), verdict.clone());
        verdict
    }
}

/// The ingest API key of a request: `X-Api-Key`, or `Authorization: Bearer fwk_…`.
async fn api_key(req: &HttpRequest, state: &ApiState) -> Result<ApiKeyRecord, ApiError> {
    let presented = match req.headers().get("x-api-key") {
        Some(v) => Some(
            v.to_str()
                .map_err(|_| AuthError::InvalidToken("X-Api-Key is not text".to_owned()))?
                .trim()
                .to_owned(),
        ),
        None => super::auth::bearer(req)?,
    };
    let presented = presented.ok_or_else(|| {
        AuthError::Missing(
            "ingest needs an API key (X-Api-Key: <key> or Authorization: Bearer <key>)".to_owned(),
        )
    })?;
    if !presented.starts_with(KEY_PREFIX) {
        return Err(AuthError::InvalidToken(format!(
            "ingest takes an API key ({KEY_PREFIX}…), not a user token"
        ))
        .into());
    }
    state.api_keys.check(&presented).await.map_err(|e| match e {
        KeyRejection::Invalid => AuthError::InvalidToken(e.to_string()).into(),
        KeyRejection::RateLimited { retry_after_secs } => ApiError::TooManyRequests {
            code: "rate_limited",
            message: e.to_string(),
            retry_after_secs,
        },
        KeyRejection::Unavailable(message) => ApiError::Unavailable {
            message,
            retry_after_secs: 1,
        },
    })
}

/// Reads the body up to `limit` bytes; a larger body (by header or by content) is a 413
/// without reading the rest.
async fn read_body(
    req: &HttpRequest,
    mut payload: web::Payload,
    limit: usize,
) -> Result<web::BytesMut, ApiError> {
    let declared = req
        .headers()
        .get(header::CONTENT_LENGTH)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.parse::<usize>().ok());
    if declared.is_some_and(|len| len > limit) {
        return Err(ApiError::PayloadTooLarge { limit });
    }
    let mut body = web::BytesMut::with_capacity(declared.unwrap_or(0));
    while let Some(chunk) = payload.next().await {
        let chunk = chunk.map_err(|e| ApiError::BadRequest {
            code: "bad_body",
            message: e.to_string(),
        })?;
        if body.len() + chunk.len() > limit {
            return Err(ApiError::PayloadTooLarge { limit });
        }
        body.extend_from_slice(&chunk);
    }
    Ok(body)
}

/// Validates a batch, stores the valid records, answers with a result per record.
/// 200 when every valid record is stored; 503 + `Retry-After` when some could not be
/// stored right now (the body says which).
/// Needs an ingest API key; records of vehicles of another tenant are `rejected`.
#[utoipa::path(
    post,
    path = "/v1/ingest",
    tag = "ingest",
    request_body(
        content = crate::ingest::IngestBatch,
        description = "1 to `http.max_batch_records` (1000) records",
        content_type = "application/json"
    ),
    responses(
        (status = 200, description = "Every valid record is stored (`accepted`); invalid ones are `rejected`", body = crate::ingest::IngestReply),
        (status = 400, response = super::openapi::errors::BadRequest),
        (status = 401, response = super::openapi::errors::Unauthorized),
        (status = 413, response = super::openapi::errors::PayloadTooLarge),
        (status = 429, response = super::openapi::errors::TooManyRequests),
        (status = 503, description = "Some valid records could not be stored now (a reply with `failed` records), or the key store is unavailable (an error body); resend after `Retry-After`",
            body = crate::ingest::IngestUnavailable,
            headers(("Retry-After" = u64, description = "Seconds to wait before resending"))),
    ),
    security(("api_key" = []), ("api_key_bearer" = []))
)]
pub async fn ingest(
    state: web::Data<ApiState>,
    req: HttpRequest,
    payload: web::Payload,
) -> Result<HttpResponse, ApiError> {
    let outcome = async {
        let key = api_key(&req, &state).await?;
        let gate = TenantGate {
            tenant: key.tenant,
            unknown_to: state.unknown_vehicles_to.clone(),
            registry: state.registry.clone(),
            cache: state.registrations.clone(),
            seen: Mutex::default(),
        };
        let body = read_body(&req, payload, state.max_body_bytes).await?;
        state
            .ingestor
            .ingest_gated(&body, Some(&gate))
            .await
            .map_err(|e| ApiError::BadRequest {
                code: "malformed_batch",
                message: e.to_string(),
            })
    }
    .await;
    let response = match outcome {
        Ok(reply) if reply.failed > 0 => HttpResponse::ServiceUnavailable()
            .insert_header((header::RETRY_AFTER, "1"))
            .json(reply),
        Ok(reply) => HttpResponse::Ok().json(reply),
        Err(e) => actix_web::ResponseError::error_response(&e),
    };
    metrics::counter!(telemetry::INGEST_REQUESTS_TOTAL, "status" => response.status().as_str().to_owned())
        .increment(1);
    Ok(response)
}
