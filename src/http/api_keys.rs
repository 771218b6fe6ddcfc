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
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct CreateKey {
    /// Label, 1..=100 characters (e.g. the gateway that will use it).
    name: String,
}

/// What a listing shows of a key.
#[derive(Debug, Serialize)]
struct KeyView {
    key_id: String,
    name: String,
    created_at: chrono::DateTime<Utc>,
    created_by: String,
    revoked_at: Option<chrono::DateTime<Utc>>,
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
    ApiError::Unavailable {
        message: format!("API key store: {e}"),
        retry_after_secs: 1,
    }
}

/// Creates a key for the caller's tenant (tenant-admin); answers 201 with the key, once.
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
    let mut view = serde_json::to_value(KeyView::from(record)).expect("views serialize");
    view["key"] = serde_json::Value::String(key);
    Ok(HttpResponse::Created()
        .insert_header(("Cache-Control", "no-store"))
        .json(view))
}

/// Lists the caller's tenant's keys, revoked ones included (tenant-admin).
pub async fn list(caller: Caller, state: web::Data<ApiState>) -> Result<HttpResponse, ApiError> {
    require(&caller, Role::TenantAdmin)?;
    let keys = state
        .api_keys
        .store()
        .list(&caller.tenant)
        .await
        .map_err(unavailable)?;
    let keys: Vec<KeyView> = keys.into_iter().map(KeyView::from).collect();
    Ok(HttpResponse::Ok().json(serde_json::json!({ "keys": keys })))
}

/// Revokes a key of the caller's tenant (tenant-admin): 204, or 404 when the tenant has no
/// such key (another tenant's key is indistinguishable from none).
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
