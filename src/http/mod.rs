//! The two HTTP listeners.
//!
//! - Public API ([`api_routes`]): `POST /v1/ingest`, `GET /v1/vehicles[/{id}]`,
//!   the vehicle's `trips`, `charging-sessions` and `events`, geofence and alert-rule
//!   CRUD (`/v1/geofences`, `/v1/alert-rules`), `GET /v1/stream` (SSE),
//!   `POST /v1/stream-tickets`, the live page at `/` (its assets under `/page/`) and the
//!   OpenAPI document at `/openapi.json` ([`openapi`]). Every endpoint but the page and the
//!   document authenticates its caller ([`auth`]) and works inside the caller's tenant. A
//!   route added here must be added to [`openapi::ApiDoc`] too (tests/openapi.rs checks).
//! - Admin ([`admin_routes`]): `/admin/actors`, `/admin/leases`, `/admin/shards`,
//!   `/metrics` (platform-admin token), `/healthz`, `/readyz` (open).
//!   Meant for a private network.
//!
//! Handlers are thin: they parse, call one service, and render. Every error is JSON:
//! `{"error": {"code": "...", "message": "..."}}`.

mod admin;
mod api_keys;
pub mod auth;
pub mod dead_letters;
mod error;
mod fleet;
pub mod hardening;
mod history;
mod ingest;
mod limits;
pub mod openapi;
mod page;
mod sse;
mod tickets;
mod vehicles;
pub mod vin;

use std::sync::Arc;

use actix_web::web;
use fleetwire_actors::fleet::FleetRules;
use fleetwire_actors::ports::StateStore;
use fleetwire_actors::subscriber::SubscriberServices;

pub use admin::{AdminState, Readiness};
pub use error::{ApiError, ErrorBody, json_method_not_allowed};
pub use limits::{ConnectionLimits, ConnectionPermit, LimitError};

use crate::auth::Authenticator;
use crate::ingest::Ingestor;

/// Everything the public API handlers need.
#[derive(Clone)]
pub struct ApiState {
    /// Validates and stores ingest batches.
    pub ingestor: Ingestor,
    /// Reads vehicle snapshots for the REST API.
    pub store: Arc<dyn StateStore>,
    /// What SSE subscribers need: the hub, the fan-out (replays), the registry, settings.
    pub subscribers: SubscriberServices,
    /// Open SSE connections against their per-node and per-tenant limits.
    pub limits: ConnectionLimits,
    /// Largest ingest body in bytes.
    pub max_body_bytes: usize,
    /// Geofences and alert rules per tenant (shared with the vehicle actors).
    pub fleet_rules: FleetRules,
    /// Checks bearer tokens and stream tickets.
    pub auth: Arc<Authenticator>,
    /// Checks ingest API keys (cached, rate-limited) and reaches their store.
    pub api_keys: Arc<crate::auth::api_keys::ApiKeys>,
    /// Which tenant each vehicle belongs to (ingest refuses other tenants' vehicles).
    pub registry: Arc<dyn fleetwire_actors::ports::VehicleRegistry>,
    /// The tenant unregistered vehicles are provisioned to (`[tenancy]`), if any: ingest
    /// admits unregistered vehicles only from that tenant's keys.
    pub unknown_vehicles_to: Option<fleetwire_actors::model::TenantId>,
    /// Registrations ingest looked up recently (`tenancy.cache_ttl_secs`), shared by all
    /// requests: without it every batch costs one registry read per vehicle (a DynamoDB
    /// GetItem per record at 1 Hz). A std mutex: never held across an await.
    pub registrations: Arc<std::sync::Mutex<fleetwire_actors::tenancy::RegistrationCache>>,
    /// History buckets and hour aggregates (`src/http/history.rs`).
    pub history: Arc<dyn fleetwire_actors::ports::HistoryStore>,
    /// `history.bucket_secs` in ms (a history range starts at its first bucket).
    pub history_bucket_ms: i64,
}

/// Mounts the public API.
pub fn api_routes(state: ApiState) -> impl FnOnce(&mut web::ServiceConfig) {
    move |cfg| {
        cfg.app_data(web::Data::new(state))
            .app_data(error::query_config())
            .app_data(error::path_config())
            // One resource per path, so another method on a known path is a 405 with `Allow`
            // (made JSON by `error::json_method_not_allowed`), not a 404.
            .service(web::resource("/").route(web::get().to(page::index)))
            .service(web::resource("/page/{file}").route(web::get().to(page::asset)))
            .service(web::resource("/openapi.json").route(web::get().to(openapi::openapi_json)))
            .service(web::resource("/v1/ingest").route(web::post().to(ingest::ingest)))
            .service(web::resource("/v1/vehicles").route(web::get().to(vehicles::list)))
            .service(web::resource("/v1/vehicles/{id}").route(web::get().to(vehicles::get)))
            .service(web::resource("/v1/vehicles/{id}/trips").route(web::get().to(fleet::trips)))
            .service(web::resource("/v1/vehicles/{id}/history").route(web::get().to(history::history)))
            .service(web::resource("/v1/vehicles/{id}/aggregates").route(web::get().to(history::aggregates)))
            .service(
                web::resource("/v1/vehicles/{id}/charging-sessions")
                    .route(web::get().to(fleet::charging_sessions)),
            )
            .service(web::resource("/v1/vehicles/{id}/events").route(web::get().to(fleet::events)))
            .service(
                web::resource("/v1/geofences")
                    .route(web::get().to(fleet::list_geofences))
                    .route(web::post().to(fleet::put_geofence)),
            )
            .service(
                web::resource("/v1/geofences/{id}")
                    .route(web::get().to(fleet::get_geofence))
                    .route(web::delete().to(fleet::delete_geofence)),
            )
            .service(
                web::resource("/v1/alert-rules")
                    .route(web::get().to(fleet::list_alert_rules))
                    .route(web::post().to(fleet::put_alert_rule)),
            )
            .service(web::resource("/v1/alert-rules/{id}").route(web::delete().to(fleet::delete_alert_rule)))
            .service(web::resource("/v1/stream").route(web::get().to(sse::stream)))
            .service(web::resource("/v1/stream-tickets").route(web::post().to(tickets::create)))
            .service(
                web::resource("/v1/api-keys")
                    .route(web::post().to(api_keys::create))
                    .route(web::get().to(api_keys::list)),
            )
            .service(web::resource("/v1/api-keys/{id}").route(web::delete().to(api_keys::revoke)))
            .default_service(web::to(error::not_found));
    }
}

/// Mounts the admin API.
pub fn admin_routes(state: AdminState) -> impl FnOnce(&mut web::ServiceConfig) {
    move |cfg| {
        cfg.app_data(web::Data::new(state))
            .app_data(error::query_config())
            .route("/admin/actors", web::get().to(admin::actors))
            .route("/admin/actors/{kind}/{id}", web::get().to(admin::actor))
            .route("/admin/leases", web::get().to(admin::leases))
            .route("/admin/shards", web::get().to(admin::shards))
            .route("/healthz", web::get().to(admin::healthz))
            .route("/readyz", web::get().to(admin::readyz))
            .route("/metrics", web::get().to(admin::metrics))
            .default_service(web::to(error::not_found));
    }
}
