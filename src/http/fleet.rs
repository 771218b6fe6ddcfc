//! Fleet endpoints: a vehicle's recent trips, charging sessions and events (from its
//! persisted snapshot), and the tenant's geofences and alert rules (the node's
//! [`FleetRules`](fleetwire_actors::fleet::FleetRules) book).
//!
//! `POST` adds or replaces an item by its `id` (201 when new, 200 when replaced). Rule
//! changes take effect on each vehicle's next record and are node-local (see docs/api.md).
//! Reads need the viewer role, rule changes the operator role; everything is the caller's
//! tenant's (another tenant's vehicle is a 404, like one that does not exist).

use std::collections::{BTreeMap, BTreeSet};

use actix_web::{HttpResponse, web};
use chrono::{DateTime, Utc};
use fleetwire_actors::fleet::{
    AlertRule, ChargingSession, FilterReason, FleetEvent, FleetRules, FleetState, Geofence, RulesError, Trip,
};
use fleetwire_actors::model::{Location, TenantId, VehicleId};
use serde::Serialize;
use serde::de::DeserializeOwned;

use super::auth::require;
use super::{ApiError, ApiState};
use crate::auth::{Caller, Role};

/// The trip a vehicle is on (not finished yet).
#[derive(Serialize, utoipa::ToSchema)]
struct OpenTrip {
    /// Content id (the finished trip keeps it).
    id: String,
    /// Source time the vehicle started to drive.
    started_at: DateTime<Utc>,
    /// First known position.
    start_location: Option<Location>,
    /// Distance so far, metres.
    distance_m: f64,
    /// Highest speed so far, km/h.
    max_speed_kmh: f64,
    /// State of charge at the start, percent.
    start_soc: Option<f64>,
}

/// `GET /v1/vehicles/{id}/trips`.
#[derive(Serialize, utoipa::ToSchema)]
struct TripsPage {
    /// The vehicle.
    vehicle_id: VehicleId,
    /// The trip in progress, if any.
    open: Option<OpenTrip>,
    /// The last finished trips (up to 20), newest first.
    trips: Vec<Trip>,
}

/// The charging session in progress.
#[derive(Serialize, utoipa::ToSchema)]
struct OpenChargingSession {
    /// Content id (the finished session keeps it).
    id: String,
    /// Source time charging started.
    started_at: DateTime<Utc>,
    /// Where, when known.
    location: Option<Location>,
    /// State of charge at the start, percent.
    start_soc: Option<f64>,
    /// Highest charging power so far, kW.
    max_power_kw: f64,
}

/// `GET /v1/vehicles/{id}/charging-sessions`.
#[derive(Serialize, utoipa::ToSchema)]
struct ChargingSessionsPage {
    /// The vehicle.
    vehicle_id: VehicleId,
    /// The session in progress, if any.
    open: Option<OpenChargingSession>,
    /// The last finished sessions (up to 20), newest first.
    charging_sessions: Vec<ChargingSession>,
}

/// `GET /v1/vehicles/{id}/events`.
#[derive(Serialize, utoipa::ToSchema)]
struct EventsPage {
    /// The vehicle.
    vehicle_id: VehicleId,
    /// The last events (up to 50), newest first.
    events: Vec<FleetEvent>,
    /// Ids of the geofences the vehicle is in.
    geofences: BTreeSet<String>,
    /// Ids of the alert rules currently raised for the vehicle.
    active_alerts: BTreeSet<String>,
    /// Positions not used, counted per reason (`invalid`, `zero`, `duplicate`, `future`,
    /// `past`, `out_of_order`, `jump`).
    #[schema(value_type = BTreeMap<String, u64>)]
    filtered_positions: BTreeMap<FilterReason, u64>,
}

/// `GET /v1/geofences`.
#[derive(Serialize, utoipa::ToSchema)]
struct GeofenceList {
    /// The tenant's geofences.
    geofences: Vec<Geofence>,
}

/// `GET /v1/alert-rules`.
#[derive(Serialize, utoipa::ToSchema)]
struct AlertRuleList {
    /// The tenant's alert rules.
    alert_rules: Vec<AlertRule>,
}

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
        Err(e) => Err(ApiError::store_unavailable("vehicle store", e)),
    }
}

/// A vehicle's last finished trips, newest first, and the open one (viewer).
#[utoipa::path(
    get,
    path = "/v1/vehicles/{id}/trips",
    tag = "fleet",
    params(("id" = VehicleId, Path, description = "The vehicle id (1–128 characters of `A-Z a-z 0-9 _ - . :`)")),
    responses(
        (status = 200, description = "The open trip and the last finished ones", body = TripsPage),
        (status = 400, response = super::openapi::errors::BadRequest),
        (status = 401, response = super::openapi::errors::Unauthorized),
        (status = 403, response = super::openapi::errors::Forbidden),
        (status = 404, response = super::openapi::errors::NotFound),
        (status = 503, response = super::openapi::errors::Unavailable),
    ),
    security(("bearer_jwt" = []))
)]
pub async fn trips(
    caller: Caller,
    state: web::Data<ApiState>,
    id: web::Path<String>,
) -> Result<HttpResponse, ApiError> {
    let (vehicle_id, derived) = derived(&caller, &state, &id).await?;
    let open = derived.trip.open.as_ref().map(|t| OpenTrip {
        id: t.id.clone(),
        started_at: t.started_at,
        start_location: t.start_location,
        distance_m: t.distance_m,
        max_speed_kmh: t.max_speed_kmh,
        start_soc: t.start_soc,
    });
    let trips = derived.trips.into_iter().rev().collect();
    Ok(HttpResponse::Ok().json(TripsPage {
        vehicle_id,
        open,
        trips,
    }))
}

/// A vehicle's last finished charging sessions, newest first, and the open one (viewer).
#[utoipa::path(
    get,
    path = "/v1/vehicles/{id}/charging-sessions",
    tag = "fleet",
    params(("id" = VehicleId, Path, description = "The vehicle id (1–128 characters of `A-Z a-z 0-9 _ - . :`)")),
    responses(
        (status = 200, description = "The open session and the last finished ones", body = ChargingSessionsPage),
        (status = 400, response = super::openapi::errors::BadRequest),
        (status = 401, response = super::openapi::errors::Unauthorized),
        (status = 403, response = super::openapi::errors::Forbidden),
        (status = 404, response = super::openapi::errors::NotFound),
        (status = 503, response = super::openapi::errors::Unavailable),
    ),
    security(("bearer_jwt" = []))
)]
pub async fn charging_sessions(
    caller: Caller,
    state: web::Data<ApiState>,
    id: web::Path<String>,
) -> Result<HttpResponse, ApiError> {
    let (vehicle_id, derived) = derived(&caller, &state, &id).await?;
    let open = derived.charge.open.as_ref().map(|s| OpenChargingSession {
        id: s.id.clone(),
        started_at: s.started_at,
        location: s.location,
        start_soc: s.start_soc,
        max_power_kw: s.max_power_kw,
    });
    let charging_sessions = derived.charging_sessions.into_iter().rev().collect();
    Ok(HttpResponse::Ok().json(ChargingSessionsPage {
        vehicle_id,
        open,
        charging_sessions,
    }))
}

/// A vehicle's last events, newest first, with its geofence membership, active alerts
/// and filtered-position counts (viewer).
#[utoipa::path(
    get,
    path = "/v1/vehicles/{id}/events",
    tag = "fleet",
    params(("id" = VehicleId, Path, description = "The vehicle id (1–128 characters of `A-Z a-z 0-9 _ - . :`)")),
    responses(
        (status = 200, description = "The last events and the vehicle's geofences and alerts", body = EventsPage),
        (status = 400, response = super::openapi::errors::BadRequest),
        (status = 401, response = super::openapi::errors::Unauthorized),
        (status = 403, response = super::openapi::errors::Forbidden),
        (status = 404, response = super::openapi::errors::NotFound),
        (status = 503, response = super::openapi::errors::Unavailable),
    ),
    security(("bearer_jwt" = []))
)]
pub async fn events(
    caller: Caller,
    state: web::Data<ApiState>,
    id: web::Path<String>,
) -> Result<HttpResponse, ApiError> {
    let (vehicle_id, derived) = derived(&caller, &state, &id).await?;
    Ok(HttpResponse::Ok().json(EventsPage {
        vehicle_id,
        events: derived.events.into_iter().rev().collect(),
        geofences: derived.geofences,
        active_alerts: derived.alerts.active,
        filtered_positions: derived.filtered,
    }))
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

/// One of the tenant's two rule collections in the [`FleetRules`] book: the geofence and
/// alert-rule endpoints differ only in which collection they change.
trait RuleKind: Serialize + DeserializeOwned + Clone {
    /// What a 404 calls a missing item.
    const NOUN: &'static str;
    /// Adds or replaces `item` by its id; whether it was new.
    fn put(book: &FleetRules, tenant: &TenantId, item: Self) -> Result<bool, RulesError>;
    /// Removes the item `id`; whether it existed.
    fn delete(book: &FleetRules, tenant: &TenantId, id: &str) -> bool;
}

impl RuleKind for Geofence {
    const NOUN: &'static str = "geofence";
    fn put(book: &FleetRules, tenant: &TenantId, item: Self) -> Result<bool, RulesError> {
        book.put_geofence(tenant, item)
    }
    fn delete(book: &FleetRules, tenant: &TenantId, id: &str) -> bool {
        book.delete_geofence(tenant, id)
    }
}

impl RuleKind for AlertRule {
    const NOUN: &'static str = "alert rule";
    fn put(book: &FleetRules, tenant: &TenantId, item: Self) -> Result<bool, RulesError> {
        book.put_alert_rule(tenant, item)
    }
    fn delete(book: &FleetRules, tenant: &TenantId, id: &str) -> bool {
        book.delete_alert_rule(tenant, id)
    }
}

/// `POST` of a rule (operator): 201 with the item when new, 200 when it replaced one.
fn put_rule<K: RuleKind>(caller: &Caller, state: &ApiState, bytes: &[u8]) -> Result<HttpResponse, ApiError> {
    require(caller, Role::Operator)?;
    let item: K = body(bytes)?;
    let mut response = if K::put(&state.fleet_rules, &caller.tenant, item.clone()).map_err(rules_error)? {
        HttpResponse::Created()
    } else {
        HttpResponse::Ok()
    };
    Ok(response.json(item))
}

/// `DELETE` of a rule (operator): 204, or 404 when there is no such item.
fn delete_rule<K: RuleKind>(caller: &Caller, state: &ApiState, id: &str) -> Result<HttpResponse, ApiError> {
    require(caller, Role::Operator)?;
    if K::delete(&state.fleet_rules, &caller.tenant, id) {
        Ok(HttpResponse::NoContent().finish())
    } else {
        Err(ApiError::NotFound(format!("no {} {id}", K::NOUN)))
    }
}

/// The tenant's geofences (viewer).
#[utoipa::path(
    get,
    path = "/v1/geofences",
    tag = "fleet",
    responses(
        (status = 200, description = "The tenant's geofences", body = GeofenceList),
        (status = 401, response = super::openapi::errors::Unauthorized),
        (status = 403, response = super::openapi::errors::Forbidden),
    ),
    security(("bearer_jwt" = []))
)]
pub async fn list_geofences(caller: Caller, state: web::Data<ApiState>) -> Result<HttpResponse, ApiError> {
    require(&caller, Role::Viewer)?;
    let rules = state.fleet_rules.tenant(&caller.tenant);
    Ok(HttpResponse::Ok().json(GeofenceList {
        geofences: rules.geofences.clone(),
    }))
}

/// One geofence of the tenant (viewer).
#[utoipa::path(
    get,
    path = "/v1/geofences/{id}",
    tag = "fleet",
    params(("id" = String, Path, pattern = r"^[A-Za-z0-9_.-]{1,128}$", description = "The geofence id: 1–128 characters of `A-Z a-z 0-9 _ - .`")),
    responses(
        (status = 200, description = "The geofence", body = Geofence),
        (status = 401, response = super::openapi::errors::Unauthorized),
        (status = 403, response = super::openapi::errors::Forbidden),
        (status = 404, response = super::openapi::errors::NotFound),
    ),
    security(("bearer_jwt" = []))
)]
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

/// Adds a geofence, or replaces the one with the same id (operator). Node-local: applies
/// from each vehicle's next record on this node (docs/api.md).
#[utoipa::path(
    post,
    path = "/v1/geofences",
    tag = "fleet",
    request_body(content = Geofence, content_type = "application/json"),
    responses(
        (status = 201, description = "Added", body = Geofence),
        (status = 200, description = "Replaced the geofence with this id", body = Geofence),
        (status = 400, response = super::openapi::errors::BadRequest),
        (status = 401, response = super::openapi::errors::Unauthorized),
        (status = 403, response = super::openapi::errors::Forbidden),
    ),
    security(("bearer_jwt" = []))
)]
pub async fn put_geofence(
    caller: Caller,
    state: web::Data<ApiState>,
    bytes: web::Bytes,
) -> Result<HttpResponse, ApiError> {
    put_rule::<Geofence>(&caller, &state, &bytes)
}

/// Deletes a geofence (operator).
#[utoipa::path(
    delete,
    path = "/v1/geofences/{id}",
    tag = "fleet",
    params(("id" = String, Path, pattern = r"^[A-Za-z0-9_.-]{1,128}$", description = "The geofence id: 1–128 characters of `A-Z a-z 0-9 _ - .`")),
    responses(
        (status = 204, description = "Deleted"),
        (status = 401, response = super::openapi::errors::Unauthorized),
        (status = 403, response = super::openapi::errors::Forbidden),
        (status = 404, response = super::openapi::errors::NotFound),
    ),
    security(("bearer_jwt" = []))
)]
pub async fn delete_geofence(
    caller: Caller,
    state: web::Data<ApiState>,
    id: web::Path<String>,
) -> Result<HttpResponse, ApiError> {
    delete_rule::<Geofence>(&caller, &state, &id)
}

/// The tenant's alert rules (viewer).
#[utoipa::path(
    get,
    path = "/v1/alert-rules",
    tag = "fleet",
    responses(
        (status = 200, description = "The tenant's alert rules", body = AlertRuleList),
        (status = 401, response = super::openapi::errors::Unauthorized),
        (status = 403, response = super::openapi::errors::Forbidden),
    ),
    security(("bearer_jwt" = []))
)]
pub async fn list_alert_rules(caller: Caller, state: web::Data<ApiState>) -> Result<HttpResponse, ApiError> {
    require(&caller, Role::Viewer)?;
    let rules = state.fleet_rules.tenant(&caller.tenant);
    Ok(HttpResponse::Ok().json(AlertRuleList {
        alert_rules: rules.alert_rules.clone(),
    }))
}

/// Adds an alert rule, or replaces the one with the same id (operator); a geofence rule
/// needs an existing geofence. Node-local like geofences.
#[utoipa::path(
    post,
    path = "/v1/alert-rules",
    tag = "fleet",
    request_body(content = AlertRule, content_type = "application/json"),
    responses(
        (status = 201, description = "Added", body = AlertRule),
        (status = 200, description = "Replaced the rule with this id", body = AlertRule),
        (status = 400, response = super::openapi::errors::BadRequest),
        (status = 401, response = super::openapi::errors::Unauthorized),
        (status = 403, response = super::openapi::errors::Forbidden),
    ),
    security(("bearer_jwt" = []))
)]
pub async fn put_alert_rule(
    caller: Caller,
    state: web::Data<ApiState>,
    bytes: web::Bytes,
) -> Result<HttpResponse, ApiError> {
    put_rule::<AlertRule>(&caller, &state, &bytes)
}

/// Deletes an alert rule (operator).
#[utoipa::path(
    delete,
    path = "/v1/alert-rules/{id}",
    tag = "fleet",
    params(("id" = String, Path, pattern = r"^[A-Za-z0-9_.-]{1,128}$", description = "The alert rule id: 1–128 characters of `A-Z a-z 0-9 _ - .`")),
    responses(
        (status = 204, description = "Deleted"),
        (status = 401, response = super::openapi::errors::Unauthorized),
        (status = 403, response = super::openapi::errors::Forbidden),
        (status = 404, response = super::openapi::errors::NotFound),
    ),
    security(("bearer_jwt" = []))
)]
pub async fn delete_alert_rule(
    caller: Caller,
    state: web::Data<ApiState>,
    id: web::Path<String>,
) -> Result<HttpResponse, ApiError> {
    delete_rule::<AlertRule>(&caller, &state, &id)
}
