//! `POST /v1/api-keys`, `GET /v1/api-keys`, `DELETE /v1/api-keys/{id}`: a tenant admin
//! manages its tenant's ingest keys. The key itself is in the creation answer only.
//! Every change is written to the audit log (target `audit`), without the key.

use actix_web::{HttpResponse, web};
use chrono::Utc;
use serde::{Deserialize, Serialize};
use tracing::info;

use super::auth::require;
use super::{ApiError, ApiState};
use crate::auth::api_keys::{self, ApiKeyRecord};
use crate::auth::{Caller, Role};

/// Longest key name.
const MAX_NAME: usize = 100;

/// Body of `POST /v1/api-keys`.
#[derive(Debug, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
struct CreateKey {
    /// Label, 1..=100 characters (e.g. the gateway that will use it).
    #[schema(example = "gateway 1", min_length = 1, max_length = 100, pattern = r"\S")]
    name: String,
}

/// What a listing shows of a key.
#[derive(Debug, Serialize, utoipa::ToSchema)]
#[schema(as = ApiKey)]
struct KeyView {
    /// Public id (the `<key_id>` in `fwk_<key_id>_<secret>`).
    key_id: String,
    /// Label.
    name: String,
    /// When it was created.
    created_at: chrono::DateTime<Utc>,
    /// Subject of the token that created it.
    created_by: String,
    /// When it was revoked; `null` while valid.
    revoked_at: Option<chrono::DateTime<Utc>>,
}

/// The answer to `POST /v1/api-keys`: the key's view and, this once, the key.
#[derive(Debug, Serialize, utoipa::ToSchema)]
struct CreatedKey {
    #[serde(flatten)]
    view: KeyView,
    /// The key, `fwk_<key_id>_<secret>`: shown only here (fleetwire keeps its SHA-256).
    key: String,
}

/// `GET /v1/api-keys`.
#[derive(Debug, Serialize, utoipa::ToSchema)]
struct KeyList {
    /// The tenant's keys, revoked ones too (never the key itself).
    keys: Vec<KeyView>,
}

impl From<ApiKeyRecord> for KeyView {
    fn from(r: ApiKeyRecord) -> Self {
        Self {
            key_id: r.key_id,
            name: r.name,
            created_at: r.created_at,
            created_by: r.created_by,
            revoked_at: r.revoked_at,
        }
    }
}

fn unavailable(e: impl std::fmt::Display) -> ApiError {
    ApiError::store_unavailable("API key store", e)
}

/// Creates a key for the caller's tenant (tenant-admin); answers 201 with the key, once.
#[utoipa::path(
    post,
    path = "/v1/api-keys",
    operation_id = "create_api_key",
    tag = "api-keys",
    request_body(content = CreateKey, content_type = "application/json"),
    responses(
        (status = 201, description = "The new key, shown only in this answer", body = CreatedKey),
        (status = 400, response = super::openapi::errors::BadRequest),
        (status = 401, response = super::openapi::errors::Unauthorized),
        (status = 403, response = super::openapi::errors::Forbidden),
        (status = 503, response = super::openapi::errors::Unavailable),
    ),
    security(("bearer_jwt" = []))
)]
pub async fn create(
    caller: Caller,
    state: web::Data<ApiState>,
    body: web::Bytes,
) -> Result<HttpResponse, ApiError> {
    require(&caller, Role::TenantAdmin)?;
    let request: CreateKey = serde_json::from_slice(&body).map_err(|e| ApiError::BadRequest {
        code: "bad_body",
        message: format!("expected {{\"name\": \"...\"}}: {e}"),
    })?;
    let name = request.name.trim();
    if name.is_empty() || name.chars().count() > MAX_NAME {
        return Err(ApiError::BadRequest {
            code: "bad_body",
            message: format!("name must be 1 to {MAX_NAME} characters"),
        });
    }
    let (key, record) = api_keys::generate(&caller.tenant, name, &caller.subject, Utc::now());
    state
        .api_keys
        .store()
        .create(&record)
        .await
        .map_err(unavailable)?;
    info!(target: "audit", action = "api_key_created", tenant = %caller.tenant, key_id = %record.key_id,
          name = %record.name, by = %caller.subject);
    Ok(HttpResponse::Created()
        .insert_header(("Cache-Control", "no-store"))
        .json(CreatedKey {
            view: KeyView::from(record),
            key,
        }))
}

/// Lists the caller's tenant's keys, revoked ones included (tenant-admin).
#[utoipa::path(
    get,
    path = "/v1/api-keys",
    operation_id = "list_api_keys",
    tag = "api-keys",
    responses(
        (status = 200, description = "The tenant's keys", body = KeyList),
        (status = 401, response = super::openapi::errors::Unauthorized),
        (status = 403, response = super::openapi::errors::Forbidden),
        (status = 503, response = super::openapi::errors::Unavailable),
    ),
    security(("bearer_jwt" = []))
)]
pub async fn list(caller: Caller, state: web::Data<ApiState>) -> Result<HttpResponse, ApiError> {
    require(&caller, Role::TenantAdmin)?;
    let keys = state
        .api_keys
        .store()
        .list(&caller.tenant)
        .await
        .map_err(unavailable)?;
    let keys = keys.into_iter().map(KeyView::from).collect();
    Ok(HttpResponse::Ok().json(KeyList { keys }))
}

/// Revokes a key of the caller's tenant (tenant-admin): 204, or 404 when the tenant has no
/// such key (another tenant's key is indistinguishable from none).
#[utoipa::path(
    delete,
    path = "/v1/api-keys/{id}",
    operation_id = "revoke_api_key",
    tag = "api-keys",
    params(("id" = String, Path, pattern = r"^[0-9a-f]{12}$", description = "The key id: 12 hex digits")),
    responses(
        (status = 204, description = "Revoked"),
        (status = 401, response = super::openapi::errors::Unauthorized),
        (status = 403, response = super::openapi::errors::Forbidden),
        (status = 404, response = super::openapi::errors::NotFound),
        (status = 503, response = super::openapi::errors::Unavailable),
    ),
    security(("bearer_jwt" = []))
)]
pub async fn revoke(
    caller: Caller,
    state: web::Data<ApiState>,
    id: web::Path<String>,
) -> Result<HttpResponse, ApiError> {
    require(&caller, Role::TenantAdmin)?;
    let revoked = state
        .api_keys
        .store()
        .revoke(&caller.tenant, &id, Utc::now())
        .await
        .map_err(unavailable)?;
    match revoked {
        Some(record) => {
            state.api_keys.forget(&record.key_hash);
            info!(target: "audit", action = "api_key_revoked", tenant = %caller.tenant, key_id = %record.key_id,
                  by = %caller.subject);
            Ok(HttpResponse::NoContent().finish())
        }
        None => Err(ApiError::NotFound(format!("no API key {id}"))),
    }
}
