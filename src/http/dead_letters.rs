//! Dead-letter endpoints: on the admin listener for the platform admin (any tenant), and
//! on the public API for a tenant admin (own tenant only; the issue's RBAC lets tenant
//! admins replay their dead letters).
//!
//! - `GET  /admin/dead-letters?tenant&day&reason&limit&cursor`, `GET /v1/dead-letters?day&reason&limit&cursor`:
//!   one tenant's letters of one UTC day (default today), newest first, without payloads.
//! - `GET  …/dead-letters/{id}`: one letter, the payload as base64 and, when it decodes as
//!   a telemetry record, that record as JSON.
//! - `POST …/dead-letters/{id}/replay`: puts the record back on the stream through the
//!   producer; the letter is deleted only once the stream stored it.
//! - `DELETE /admin/dead-letters/{id}`.
//!
//! Every replay and delete is audit-logged (tracing target `audit`).

use std::sync::Arc;

use actix_web::{HttpResponse, web};
use base64::Engine as _;
use chrono::{NaiveDate, Utc};
use fleetwire_actors::codec::decode_record;
use fleetwire_actors::model::TenantId;
use fleetwire_actors::ports::{SequenceNumber, StreamRecord};
use fleetwire_actors::producer::{
    DeadLetterCursor, DeadLetterId, DeadLetterQuery, DeadLetterSink, ProduceOutcome, ProducerHandle,
    StoredDeadLetter, UNKNOWN_TENANT,
};
use fleetwire_actors::telemetry::DEAD_LETTERS_REPLAYED_TOTAL;
use serde::Deserialize;
use serde_json::{Value, json};
use tracing::{info, warn};

use super::ApiError;
use super::auth::{PlatformAdmin, require};
use crate::auth::{Caller, Role};

/// Default page size of a listing.
const DEFAULT_LIMIT: usize = 50;
/// Largest page size of a listing.
const MAX_LIMIT: usize = 500;

/// What the dead-letter endpoints need; registered on both listeners.
#[derive(Clone)]
pub struct DeadLetterService {
    /// The node's dead-letter store.
    pub store: Arc<dyn DeadLetterSink>,
    /// The node's producer, for replays.
    pub producer: ProducerHandle,
}

/// Mounts the platform-admin endpoints (admin listener).
pub fn admin_routes(service: DeadLetterService) -> impl FnOnce(&mut web::ServiceConfig) {
    move |cfg| {
        cfg.app_data(web::Data::new(service))
            .route("/admin/dead-letters", web::get().to(admin_list))
            .route("/admin/dead-letters/{id}", web::get().to(admin_get))
            .route("/admin/dead-letters/{id}", web::delete().to(admin_delete))
            .route("/admin/dead-letters/{id}/replay", web::post().to(admin_replay));
    }
}

/// Mounts the tenant-admin endpoints (public listener).
pub fn api_routes(service: DeadLetterService) -> impl FnOnce(&mut web::ServiceConfig) {
    move |cfg| {
        cfg.app_data(web::Data::new(service))
            .service(web::resource("/v1/dead-letters").route(web::get().to(tenant_list)))
            .service(web::resource("/v1/dead-letters/{id}").route(web::get().to(tenant_get)))
            .service(web::resource("/v1/dead-letters/{id}/replay").route(web::post().to(tenant_replay)));
    }
}

/// Query of the listings (`tenant` only on the admin listener).
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ListQuery {
    /// Whose letters (admin listing only; `_unknown` holds letters of no tenant).
    tenant: Option<String>,
    /// UTC day, `YYYY-MM-DD`; default today.
    day: Option<String>,
    /// Only this reason (`undecodable`, `unprovisioned`, `suspended`, `attempts_exhausted`, …).
    reason: Option<String>,
    /// Page size, 1..=500, default 50.
    limit: Option<usize>,
    /// `next_cursor` of the previous page.
    cursor: Option<String>,
}

fn unavailable(e: impl std::fmt::Display) -> ApiError {
    ApiError::store_unavailable("dead-letter store", e)
}

fn parse_query(tenant: TenantId, q: &ListQuery) -> Result<DeadLetterQuery, ApiError> {
    let day = match &q.day {
        None => Utc::now().date_naive(),
        Some(d) => NaiveDate::parse_from_str(d, "%Y-%m-%d")
            .map_err(|_| ApiError::bad_request("bad_day", format!("day {d:?} is not YYYY-MM-DD")))?,
    };
    let limit = q.limit.unwrap_or(DEFAULT_LIMIT);
    if !(1..=MAX_LIMIT).contains(&limit) {
        return Err(ApiError::bad_request(
            "bad_limit",
            format!("limit must be 1 to {MAX_LIMIT}"),
        ));
    }
    let after = q
        .cursor
        .as_deref()
        .map(str::parse::<DeadLetterCursor>)
        .transpose()
        .map_err(|e| ApiError::bad_request("bad_cursor", e))?;
    Ok(DeadLetterQuery {
        tenant,
        day,
        reason: q.reason.clone(),
        limit,
        after,
    })
}

fn parse_id(raw: &str) -> Result<DeadLetterId, ApiError> {
    raw.parse().map_err(|e| ApiError::bad_request("bad_id", e))
}

/// A letter without its payload (listings).
fn summary(l: &StoredDeadLetter) -> Value {
    json!({
        "id": l.id.to_string(),
        "tenant": l.id.tenant,
        "at": l.id.at(),
        "reason": l.reason,
        "detail": l.detail,
        "source": l.source.as_ref().map(|s| json!({"stream": s.stream, "shard": s.shard, "sequence": s.sequence})),
        "partition_key": l.partition_key,
        "payload_bytes": l.payload_bytes,
        "truncated": l.truncated,
        "received_at": l.received_at,
        "expires_at": l.expires_at,
    })
}

/// A letter with its payload, and the payload decoded when it is a telemetry record.
fn detail(l: &StoredDeadLetter) -> Value {
    let mut body = summary(l);
    body["payload_base64"] = json!(base64::engine::general_purpose::STANDARD.encode(&l.payload));
    let as_record = StreamRecord {
        sequence_number: SequenceNumber(
            l.source
                .as_ref()
                .and_then(|s| s.sequence.clone())
                .unwrap_or_default(),
        ),
        partition_key: l.partition_key.clone(),
        data: l.payload.clone(),
        approximate_arrival: l.id.at(),
    };
    body["record"] = match decode_record(&as_record) {
        Ok(record) => serde_json::to_value(record).unwrap_or(Value::Null),
        Err(_) => Value::Null,
    };
    body
}

async fn list(service: &DeadLetterService, query: DeadLetterQuery) -> Result<HttpResponse, ApiError> {
    let page = service.store.list(&query).await.map_err(unavailable)?;
    Ok(HttpResponse::Ok().json(json!({
        "tenant": query.tenant,
        "day": query.day.to_string(),
        "dead_letters": page.letters.iter().map(summary).collect::<Vec<_>>(),
        "next_cursor": page.next.map(|c| c.to_string()),
    })))
}

async fn find(service: &DeadLetterService, id: &DeadLetterId) -> Result<StoredDeadLetter, ApiError> {
    service
        .store
        .get(id)
        .await
        .map_err(unavailable)?
        .ok_or_else(|| ApiError::NotFound(format!("no dead letter {id}")))
}

/// Puts the letter's record back on the stream; deletes the letter once it is stored.
async fn replay(service: &DeadLetterService, id: &DeadLetterId, by: &str) -> Result<HttpResponse, ApiError> {
    let letter = find(service, id).await?;
    let entry = letter.replay_entry().ok_or_else(|| {
        ApiError::bad_request(
            "not_replayable",
            format!(
                "dead letter {id} kept only the first {} of {} bytes; it can be inspected and deleted, not replayed",
                letter.payload.len(),
                letter.payload_bytes
            ),
        )
    })?;
    // A replay that fails again is filed under the same tenant as before.
    let tenant = (id.tenant.as_str() != UNKNOWN_TENANT).then(|| id.tenant.clone());
    let outcome = service
        .producer
        .produce_for(tenant, vec![entry])
        .await
        .map_err(|e| ApiError::Unavailable {
            message: e.to_string(),
            retry_after_secs: 1,
        })?
        .pop()
        .expect("one outcome per entry");
    let ProduceOutcome::Stored {
        shard_id,
        sequence_number,
    } = outcome
    else {
        metrics::counter!(DEAD_LETTERS_REPLAYED_TOTAL, "result" => "failed").increment(1);
        info!(target: "audit", action = "dead_letter_replay", id = %id, by, outcome = "failed");
        // The letter stays; a replay that was dead-lettered again is a new letter.
        return Err(ApiError::Unavailable {
            message: format!("the stream did not store dead letter {id}: {outcome:?}"),
            retry_after_secs: 1,
        });
    };
    metrics::counter!(DEAD_LETTERS_REPLAYED_TOTAL, "result" => "stored").increment(1);
    info!(target: "audit", action = "dead_letter_replay", id = %id, by, outcome = "stored",
        shard = %shard_id, sequence = %sequence_number);
    // The record is on the stream. Delete the letter as it was read: if the consumer
    // already dead-lettered the replayed record again (same id, newer `received_at`), that
    // letter stays. If the delete fails, a second replay puts the record on the stream
    // twice, which the vehicle's dedupe window absorbs.
    let deleted = match service.store.delete_unchanged(&letter).await {
        Ok(deleted) => deleted,
        Err(e) => {
            warn!(id = %id, error = %e, "A replayed dead letter could not be deleted.");
            false
        }
    };
    Ok(HttpResponse::Ok().json(json!({
        "id": id.to_string(),
        "shard_id": shard_id,
        "sequence_number": sequence_number,
        "deleted": deleted,
    })))
}

/// `GET /admin/dead-letters`
pub async fn admin_list(
    _admin: PlatformAdmin,
    service: web::Data<DeadLetterService>,
    query: web::Query<ListQuery>,
) -> Result<HttpResponse, ApiError> {
    let tenant = query.tenant.as_deref().ok_or_else(|| {
        ApiError::bad_request(
            "missing_tenant",
            "tenant is required (letters of no tenant are under `_unknown`)",
        )
    })?;
    let tenant = TenantId::parse(tenant).map_err(|e| ApiError::bad_request("bad_tenant", e))?;
    let query = parse_query(tenant, &query)?;
    list(&service, query).await
}

/// `GET /admin/dead-letters/{id}`
pub async fn admin_get(
    _admin: PlatformAdmin,
    service: web::Data<DeadLetterService>,
    id: web::Path<String>,
) -> Result<HttpResponse, ApiError> {
    let letter = find(&service, &parse_id(&id)?).await?;
    Ok(HttpResponse::Ok().json(detail(&letter)))
}

/// `POST /admin/dead-letters/{id}/replay`
pub async fn admin_replay(
    _admin: PlatformAdmin,
    service: web::Data<DeadLetterService>,
    id: web::Path<String>,
) -> Result<HttpResponse, ApiError> {
    replay(&service, &parse_id(&id)?, "platform-admin").await
}

/// `DELETE /admin/dead-letters/{id}`
pub async fn admin_delete(
    _admin: PlatformAdmin,
    service: web::Data<DeadLetterService>,
    id: web::Path<String>,
) -> Result<HttpResponse, ApiError> {
    let id = parse_id(&id)?;
    let deleted = service.store.delete(&id).await.map_err(unavailable)?;
    info!(target: "audit", action = "dead_letter_delete", id = %id, by = "platform-admin", deleted);
    if deleted {
        Ok(HttpResponse::NoContent().finish())
    } else {
        Err(ApiError::NotFound(format!("no dead letter {id}")))
    }
}

/// A letter id of the caller's tenant; another tenant's id is a 404, as if it did not
/// exist.
fn own_id(caller: &Caller, raw: &str) -> Result<DeadLetterId, ApiError> {
    let id = parse_id(raw)?;
    if id.tenant != caller.tenant {
        return Err(ApiError::NotFound(format!("no dead letter {raw}")));
    }
    Ok(id)
}

/// `GET /v1/dead-letters` (tenant admin, own tenant).
#[utoipa::path(
    get,
    path = "/v1/dead-letters",
    operation_id = "list_dead_letters",
    tag = "dead-letters",
    params(("day" = Option<chrono::NaiveDate>, Query, description = "UTC day `YYYY-MM-DD`, default today"), ("reason" = Option<String>, Query, description = "Only this reason"), ("limit" = Option<usize>, Query, minimum = 1, maximum = 500, description = "1..=500, default 50"), ("cursor" = Option<String>, Query, pattern = r"^[0-9]{13}\.[0-9a-f]{16}$", description = "`next_cursor` of the previous page")),
    responses(
        (status = 200, description = "A page of the tenant's dead letters of one day, newest first; continue with `cursor=next_cursor`", body = Object),
        (status = 400, response = super::openapi::errors::BadRequest),
        (status = 401, response = super::openapi::errors::Unauthorized),
        (status = 403, response = super::openapi::errors::Forbidden),
        (status = 503, response = super::openapi::errors::Unavailable),
    ),
    security(("bearer_jwt" = []))
)]
pub async fn tenant_list(
    caller: Caller,
    service: web::Data<DeadLetterService>,
    query: web::Query<ListQuery>,
) -> Result<HttpResponse, ApiError> {
    require(&caller, Role::TenantAdmin)?;
    if query.tenant.is_some() {
        return Err(ApiError::bad_request(
            "bad_query",
            "tenant is the caller's own; it cannot be chosen here",
        ));
    }
    let query = parse_query(caller.tenant.clone(), &query)?;
    list(&service, query).await
}

/// `GET /v1/dead-letters/{id}` (tenant admin, own tenant).
#[utoipa::path(
    get,
    path = "/v1/dead-letters/{id}",
    operation_id = "get_dead_letter",
    tag = "dead-letters",
    params(("id" = String, Path, pattern = r"^[A-Za-z0-9_-]{1,64}\.[0-9]{13}\.[0-9a-f]{16}$", description = "A dead-letter id: `<tenant>.<ms>.<hash>`")),
    responses(
        (status = 200, description = "The letter with its payload (base64) and the decoded record, when it is one", body = Object),
        (status = 400, response = super::openapi::errors::BadRequest),
        (status = 401, response = super::openapi::errors::Unauthorized),
        (status = 403, response = super::openapi::errors::Forbidden),
        (status = 404, response = super::openapi::errors::NotFound),
        (status = 503, response = super::openapi::errors::Unavailable),
    ),
    security(("bearer_jwt" = []))
)]
pub async fn tenant_get(
    caller: Caller,
    service: web::Data<DeadLetterService>,
    id: web::Path<String>,
) -> Result<HttpResponse, ApiError> {
    require(&caller, Role::TenantAdmin)?;
    let letter = find(&service, &own_id(&caller, &id)?).await?;
    Ok(HttpResponse::Ok().json(detail(&letter)))
}

/// `POST /v1/dead-letters/{id}/replay` (tenant admin, own tenant).
#[utoipa::path(
    post,
    path = "/v1/dead-letters/{id}/replay",
    operation_id = "replay_dead_letter",
    tag = "dead-letters",
    params(("id" = String, Path, pattern = r"^[A-Za-z0-9_-]{1,64}\.[0-9]{13}\.[0-9a-f]{16}$", description = "A dead-letter id: `<tenant>.<ms>.<hash>`")),
    responses(
        (status = 200, description = "The record is back on the stream (shard, sequence number) and whether the letter was deleted", body = Object),
        (status = 400, response = super::openapi::errors::BadRequest),
        (status = 401, response = super::openapi::errors::Unauthorized),
        (status = 403, response = super::openapi::errors::Forbidden),
        (status = 404, response = super::openapi::errors::NotFound),
        (status = 503, response = super::openapi::errors::Unavailable),
    ),
    security(("bearer_jwt" = []))
)]
pub async fn tenant_replay(
    caller: Caller,
    service: web::Data<DeadLetterService>,
    id: web::Path<String>,
) -> Result<HttpResponse, ApiError> {
    require(&caller, Role::TenantAdmin)?;
    let id = own_id(&caller, &id)?;
    replay(&service, &id, &caller.subject).await
}
