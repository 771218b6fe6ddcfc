//! `POST /v1/vehicles/{id}/vin`: a tenant admin resolves one of its vehicles' pseudonym to
//! the VIN from the vault. POST, not GET, so the VIN never sits in a cache or an access
//! log as a response to a plain URL. Only a vehicle registered to the caller's tenant
//! resolves (another tenant's or an unknown vehicle is a 404); every attempt is
//! audit-logged (target `audit`: tenant, vehicle id, subject, outcome — never the VIN).

use std::sync::Arc;

use actix_web::{HttpResponse, web};
use fleetwire_actors::model::VehicleId;
use fleetwire_actors::ports::VehicleRegistry;
use serde_json::json;
use tracing::info;

use super::ApiError;
use super::auth::require;
use crate::auth::{Caller, Role};
use crate::vault::VinVault;

/// What the endpoint needs.
#[derive(Clone)]
pub struct VinService {
    /// The vault.
    pub vault: VinVault,
    /// Vehicle → tenant, for the ownership check.
    pub registry: Arc<dyn VehicleRegistry>,
}

/// Mounts the endpoint (public listener).
pub fn routes(service: VinService) -> impl FnOnce(&mut web::ServiceConfig) {
    move |cfg| {
        cfg.app_data(web::Data::new(service))
            .service(web::resource("/v1/vehicles/{id}/vin").route(web::post().to(resolve)));
    }
}

/// `POST /v1/vehicles/{id}/vin` (tenant admin of the vehicle's tenant).
#[utoipa::path(
    post,
    path = "/v1/vehicles/{id}/vin",
    operation_id = "resolve_vin",
    tag = "vehicles",
    params(("id" = String, Path, pattern = r"^[A-Za-z0-9_.:-]{1,128}$", description = "The vehicle id (its pseudonym)")),
    responses(
        (status = 200, description = "`{vehicle_id, vin}`, never cached; every attempt is audit-logged", body = Object),
        (status = 400, response = super::openapi::errors::BadRequest),
        (status = 401, response = super::openapi::errors::Unauthorized),
        (status = 403, response = super::openapi::errors::Forbidden),
        (status = 404, response = super::openapi::errors::NotFound),
        (status = 503, response = super::openapi::errors::Unavailable),
    ),
    security(("bearer_jwt" = []))
)]
pub async fn resolve(
    caller: Caller,
    service: web::Data<VinService>,
    id: web::Path<String>,
) -> Result<HttpResponse, ApiError> {
    let audit = |outcome: &str| {
        info!(target: "audit", action = "vin_resolve", tenant = %caller.tenant, vehicle = %id,
            subject = %caller.subject, outcome);
    };
    if let Err(e) = require(&caller, Role::TenantAdmin) {
        audit("forbidden");
        return Err(e);
    }
    let vehicle = VehicleId::parse(&id).map_err(|message| ApiError::BadRequest {
        code: "bad_vehicle_id",
        message,
    })?;
    let unavailable = |e: String| ApiError::Unavailable {
        message: e,
        retry_after_secs: 1,
    };
    let owned = service
        .registry
        .lookup(&vehicle)
        .await
        .map_err(|e| unavailable(format!("vehicle registry: {e}")))?
        .is_some_and(|r| r.tenant == caller.tenant);
    if !owned {
        audit("not_found");
        return Err(ApiError::NotFound(format!("no vehicle {vehicle}")));
    }
    match service.vault.resolve(&caller.tenant, &vehicle).await {
        Ok(Some(vin)) => {
            audit("resolved");
            Ok(HttpResponse::Ok()
                .insert_header(("cache-control", "no-store"))
                .json(json!({"vehicle_id": vehicle, "vin": vin})))
        }
        Ok(None) => {
            audit("not_in_vault");
            Err(ApiError::NotFound(format!(
                "the vault holds no VIN for vehicle {vehicle} (it never connected over the vehicle listener)"
            )))
        }
        Err(e) => {
            audit("error");
            Err(unavailable(format!("vault: {e}")))
        }
    }
}
