//! `POST /v1/ingest`

use actix_web::http::header;
use actix_web::{HttpRequest, HttpResponse, web};
use fleetwire_actors::telemetry;
use futures_util::StreamExt;

use super::auth::require;
use super::{ApiError, ApiState};
use crate::auth::{Caller, Role};
use fleetwire_actors::model::TenantId;

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
pub async fn ingest(
    caller: Caller,
    state: web::Data<ApiState>,
    req: HttpRequest,
    payload: web::Payload,
) -> Result<HttpResponse, ApiError> {
    require(&caller, Role::TenantAdmin)?;
    // Records are not yet attributed to tenants downstream: they all land in the default
    // tenant, so only that tenant may write them.
    if caller.tenant != TenantId::default() {
        return Err(ApiError::Forbidden {
            code: "forbidden",
            message: format!("tenant {} cannot ingest on this node yet", caller.tenant),
        });
    }
    let outcome = async {
        let body = read_body(&req, payload, state.max_body_bytes).await?;
        state
            .ingestor
            .ingest(&body)
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
