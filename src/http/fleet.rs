//! Fleet endpoints: a vehicle's recent trips, charging sessions and events (from its
//! persisted snapshot), and the tenant's geofences and alert rules (the node's
//! [`FleetRules`](fleetwire_actors::fleet::FleetRules) book).
//!
//! `POST` adds or replaces an item by its `id` (201 when new, 200 when replaced). Rule
//! changes take effect on each vehicle's next record and are node-local (see docs/api.md).
//! Reads need the viewer role, rule changes the operator role; everything is the caller's
//! tenant's (another tenant's vehicle is a 404, like one that does not exist).

use actix_web::{HttpResponse, web};
use fleetwire_actors::fleet::{AlertRule, FleetState, Geofence, RulesError};
use fleetwire_actors::model::VehicleId;
use serde::Serialize;
use serde::de::DeserializeOwned;

use super::auth::require;
use super::{ApiError, ApiState};
use crate::auth::{Caller, Role};

/// Loads the vehicle's derived fleet state; 404 for a vehicle never seen.
async fn derived(caller: &Caller, state: &ApiState, id: &str) -> Result<(VehicleId, FleetState), ApiError> {
    require(caller, Role::Viewer)?;
    let id = VehicleId::parse(id).map_err(|message| ApiError::BadRequest {
        code: "bad_vehicle_id",
        message,
    })?;
    match state.store.load(&caller.tenant, &id).await {
        Ok(Some(snapshot)) => Ok((id, snapshot.derived)),
        Ok(None) => Err(ApiError::NotFound(format!("no vehicle {id}"))),
        Err(e) => Err(ApiError::Unavailable {
            message: format!("vehicle store: {e}"),
            retry_after_secs: 1,
        }),
    }
}

/// `GET /v1/vehicles/{id}/trips`: the last finished trips, newest first, plus the open one.
pub async fn trips(
    caller: Caller,
    state: web::Data<ApiState>,
    id: web::Path<String>,
) -> Result<HttpResponse, ApiError> {
    let (id, derived) = derived(&caller, &state, &id).await?;
    let open = derived.trip.open.as_ref().map(|t| {
        serde_json::json!({"id": t.id, "started_at": t.started_at, "start_location": t.start_location,
            "distance_m": t.distance_m, "max_speed_kmh": t.max_speed_kmh, "start_soc": t.start_soc})
    });
    let trips: Vec<_> = derived.trips.iter().rev().collect();
    Ok(HttpResponse::Ok().json(serde_json::json!({ "vehicle_id": id, "open": open, "trips": trips })))
}

/// `GET /v1/vehicles/{id}/charging-sessions`: the last finished sessions, newest first,
/// plus the open one.
pub async fn charging_sessions(
    caller: Caller,
    state: web::Data<ApiState>,
    id: web::Path<String>,
) -> Result<HttpResponse, ApiError> {
    let (id, derived) = derived(&caller, &state, &id).await?;
    let open = derived.charge.open.as_ref().map(|s| {
        serde_json::json!({"id": s.id, "started_at": s.started_at, "location": s.location,
            "start_soc": s.start_soc, "max_power_kw": s.max_power_kw})
    });
    let sessions: Vec<_> = derived.charging_sessions.iter().rev().collect();
    Ok(HttpResponse::Ok()
        .json(serde_json::json!({ "vehicle_id": id, "open": open, "charging_sessions": sessions })))
}

/// `GET /v1/vehicles/{id}/events`: the last events, newest first, with the vehicle's
/// geofence membership, active alerts and filtered-position counts.
pub async fn events(
    caller: Caller,
    state: web::Data<ApiState>,
    id: web::Path<String>,
) -> Result<HttpResponse, ApiError> {
    let (id, derived) = derived(&caller, &state, &id).await?;
    let events: Vec<_> = derived.events.iter().rev().collect();
    Ok(HttpResponse::Ok().json(serde_json::json!({
        "vehicle_id": id,
        "events": events,
        "geofences": derived.geofences,
        "active_alerts": derived.alerts.active,
        "filtered_positions": derived.filtered,
    })))
}

/// Parses a JSON body into `T`; a bad body is a 400 that says what is wrong.
fn body<T: DeserializeOwned>(bytes: &[u8]) -> Result<T, ApiError> {
    serde_json::from_slice(bytes).map_err(|e| ApiError::BadRequest {
        code: "bad_body",
        message: e.to_string(),
    })
}

fn rules_error(e: RulesError) -> ApiError {
    ApiError::BadRequest {
        code: match e {
            RulesError::Invalid(_) => "invalid",
            RulesError::TooMany(_) => "too_many",
        },
        message: e.to_string(),
    }
}

fn saved<T: Serialize>(created: bool, item: &T) -> HttpResponse {
    if created {
        HttpResponse::Created().json(item)
    } else {
        HttpResponse::Ok().json(item)
    }
}

/// `GET /v1/geofences`
pub async fn list_geofences(caller: Caller, state: web::Data<ApiState>) -> Result<HttpResponse, ApiError> {
    require(&caller, Role::Viewer)?;
    let rules = state.fleet_rules.tenant(&caller.tenant);
    Ok(HttpResponse::Ok().json(serde_json::json!({ "geofences": rules.geofences })))
}

/// `GET /v1/geofences/{id}`
pub async fn get_geofence(
    caller: Caller,
    state: web::Data<ApiState>,
    id: web::Path<String>,
) -> Result<HttpResponse, ApiError> {
    require(&caller, Role::Viewer)?;
    let rules = state.fleet_rules.tenant(&caller.tenant);
    match rules.geofences.iter().find(|g| g.id == *id) {
        Some(g) => Ok(HttpResponse::Ok().json(g)),
        None => Err(ApiError::NotFound(format!("no geofence {id}"))),
    }
}

/// `POST /v1/geofences`
pub async fn put_geofence(
    caller: Caller,
    state: web::Data<ApiState>,
    bytes: web::Bytes,
) -> Result<HttpResponse, ApiError> {
    require(&caller, Role::Operator)?;
    let fence: Geofence = body(&bytes)?;
    let created = state
        .fleet_rules
        .put_geofence(&caller.tenant, fence.clone())
        .map_err(rules_error)?;
    Ok(saved(created, &fence))
}

/// `DELETE /v1/geofences/{id}`
pub async fn delete_geofence(
    caller: Caller,
    state: web::Data<ApiState>,
    id: web::Path<String>,
) -> Result<HttpResponse, ApiError> {
    require(&caller, Role::Operator)?;
    if state.fleet_rules.delete_geofence(&caller.tenant, &id) {
        Ok(HttpResponse::NoContent().finish())
    } else {
        Err(ApiError::NotFound(format!("no geofence {id}")))
    }
}

/// `GET /v1/alert-rules`
pub async fn list_alert_rules(caller: Caller, state: web::Data<ApiState>) -> Result<HttpResponse, ApiError> {
    require(&caller, Role::Viewer)?;
    let rules = state.fleet_rules.tenant(&caller.tenant);
    Ok(HttpResponse::Ok().json(serde_json::json!({ "alert_rules": rules.alert_rules })))
}

/// `POST /v1/alert-rules`
pub async fn put_alert_rule(
    caller: Caller,
    state: web::Data<ApiState>,
    bytes: web::Bytes,
) -> Result<HttpResponse, ApiError> {
    require(&caller, Role::Operator)?;
    let rule: AlertRule = body(&bytes)?;
    let created = state
        .fleet_rules
        .put_alert_rule(&caller.tenant, rule.clone())
        .map_err(rules_error)?;
    Ok(saved(created, &rule))
}

/// `DELETE /v1/alert-rules/{id}`
pub async fn delete_alert_rule(
    caller: Caller,
    state: web::Data<ApiState>,
    id: web::Path<String>,
) -> Result<HttpResponse, ApiError> {
    require(&caller, Role::Operator)?;
    if state.fleet_rules.delete_alert_rule(&caller.tenant, &id) {
        Ok(HttpResponse::NoContent().finish())
    } else {
        Err(ApiError::NotFound(format!("no alert rule {id}")))
    }
}
