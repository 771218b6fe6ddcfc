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
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ListQuery {
    /// Page size, 1..=1000 (default 100).
    limit: Option<usize>,
    /// Continue after this vehicle id (the previous page's `next_after`).
    after: Option<String>,
}

/// A page of vehicles.
#[derive(Debug, Serialize)]
struct VehiclePage {
    vehicles: Vec<VehicleView>,
    /// Pass as `after` to get the next page; `null` on the last page.
    next_after: Option<String>,
}

/// What the API shows of a vehicle (the dedupe window is internal).
#[derive(Debug, Serialize)]
struct VehicleView {
    vehicle_id: VehicleId,
    signals: std::collections::BTreeMap<String, fleetwire_actors::model::SignalReading>,
    last_seen: Option<chrono::DateTime<chrono::Utc>>,
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
    ApiError::Unavailable {
        message: format!("vehicle store: {e}"),
        retry_after_secs: 1,
    }
}

/// Lists the caller's tenant's vehicles with their latest state, ordered by id (viewer).
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
