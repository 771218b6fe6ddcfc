//! `GET /v1/vehicles`, `GET /v1/vehicles/{id}`

use actix_web::{HttpResponse, web};
use fleetwire_actors::model::{VehicleId, VehicleSnapshot};
use serde::{Deserialize, Serialize};

use super::auth::require;
use super::{ApiError, ApiState};
use crate::auth::{Caller, Role};

/// Largest page of `GET /v1/vehicles`.
const MAX_PAGE: usize = 1000;

/// Query of `GET /v1/vehicles`.
#[derive(Debug, Deserialize, utoipa::IntoParams)]
#[serde(deny_unknown_fields)]
#[into_params(parameter_in = Query)]
pub struct ListQuery {
    /// Page size, 1..=1000 (default 100).
    #[param(minimum = 1, maximum = 1000)]
    limit: Option<usize>,
    /// Continue after this vehicle id (the previous page's `next_after`).
    after: Option<String>,
}

/// A page of vehicles.
#[derive(Debug, Serialize, utoipa::ToSchema)]
struct VehiclePage {
    vehicles: Vec<VehicleView>,
    /// Pass as `after` to get the next page; `null` on the last page.
    next_after: Option<String>,
}

/// What the API shows of a vehicle (the dedupe window is internal).
#[derive(Debug, Serialize, utoipa::ToSchema)]
#[schema(as = Vehicle)]
struct VehicleView {
    /// The vehicle.
    vehicle_id: VehicleId,
    /// Latest reading per signal name: the value with the newest source timestamp.
    #[schema(value_type = std::collections::BTreeMap<String, fleetwire_actors::model::SignalReading>)]
    #[serde(serialize_with = "fleetwire_actors::model::serialize_signals")]
    signals: fleetwire_actors::model::Signals,
    /// Newest source timestamp seen; `null` before the first record.
    last_seen: Option<chrono::DateTime<chrono::Utc>>,
    /// Records applied to the vehicle so far.
    version: u64,
}

impl From<VehicleSnapshot> for VehicleView {
    fn from(s: VehicleSnapshot) -> Self {
        Self {
            vehicle_id: s.vehicle_id,
            signals: s.signals,
            last_seen: s.last_seen,
            version: s.version,
        }
    }
}

fn store_unavailable(e: impl std::fmt::Display) -> ApiError {
    ApiError::store_unavailable("vehicle store", e)
}

/// Lists the caller's tenant's vehicles with their latest state, ordered by id (viewer).
#[utoipa::path(
    get,
    path = "/v1/vehicles",
    operation_id = "list_vehicles",
    tag = "vehicles",
    params(ListQuery),
    responses(
        (status = 200, description = "A page of vehicles; continue with `after=next_after`", body = VehiclePage),
        (status = 400, response = super::openapi::errors::BadRequest),
        (status = 401, response = super::openapi::errors::Unauthorized),
        (status = 403, response = super::openapi::errors::Forbidden),
        (status = 503, response = super::openapi::errors::Unavailable),
    ),
    security(("bearer_jwt" = []))
)]
pub async fn list(
    caller: Caller,
    state: web::Data<ApiState>,
    query: web::Query<ListQuery>,
) -> Result<HttpResponse, ApiError> {
    require(&caller, Role::Viewer)?;
    let limit = query.limit.unwrap_or(100);
    if !(1..=MAX_PAGE).contains(&limit) {
        return Err(ApiError::BadRequest {
            code: "bad_query",
            message: format!("limit must be 1 to {MAX_PAGE}"),
        });
    }
    let after = query.after.as_deref().map(|a| VehicleId(a.to_owned()));
    let snapshots = state
        .store
        .list(&caller.tenant, after.as_ref(), limit)
        .await
        .map_err(store_unavailable)?;
    let next_after = (snapshots.len() == limit)
        .then(|| snapshots.last().map(|s| s.vehicle_id.0.clone()))
        .flatten();
    let vehicles = snapshots.into_iter().map(VehicleView::from).collect();
    Ok(HttpResponse::Ok().json(VehiclePage { vehicles, next_after }))
}

/// One vehicle's latest state (viewer). Another tenant's vehicle is a 404, exactly like
/// a vehicle that does not exist (the store is keyed by tenant), so ids of other tenants
/// cannot be probed.
#[utoipa::path(
    get,
    path = "/v1/vehicles/{id}",
    operation_id = "get_vehicle",
    tag = "vehicles",
    params(("id" = VehicleId, Path, description = "The vehicle id (1–128 characters of `A-Z a-z 0-9 _ - . :`)")),
    responses(
        (status = 200, description = "The vehicle", body = VehicleView),
        (status = 400, response = super::openapi::errors::BadRequest),
        (status = 401, response = super::openapi::errors::Unauthorized),
        (status = 403, response = super::openapi::errors::Forbidden),
        (status = 404, response = super::openapi::errors::NotFound),
        (status = 503, response = super::openapi::errors::Unavailable),
    ),
    security(("bearer_jwt" = []))
)]
pub async fn get(
    caller: Caller,
    state: web::Data<ApiState>,
    id: web::Path<String>,
) -> Result<HttpResponse, ApiError> {
    require(&caller, Role::Viewer)?;
    let id = VehicleId::parse(&id).map_err(|message| ApiError::BadRequest {
        code: "bad_vehicle_id",
        message,
    })?;
    match state
        .store
        .load(&caller.tenant, &id)
        .await
        .map_err(store_unavailable)?
    {
        Some(snapshot) => Ok(HttpResponse::Ok().json(VehicleView::from(snapshot))),
        None => Err(ApiError::NotFound(format!("no vehicle {id}"))),
    }
}
