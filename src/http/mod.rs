//! The two HTTP listeners.
//!
//! - Public API ([`api_routes`]): `POST /v1/ingest`, `GET /v1/vehicles[/{id}]`,
//!   `GET /v1/stream` (SSE) and the live page at `/`.
//! - Admin ([`admin_routes`]): `/admin/actors`, `/admin/leases`, `/admin/shards`,
//!   `/healthz`, `/readyz`, `/metrics`.
//!   Meant for a private network.
//!
//! Handlers are thin: they parse, call one service, and render. Every error is JSON:
//! `{"error": {"code": "...", "message": "..."}}`.

mod admin;
mod error;
mod ingest;
mod page;
mod sse;
mod vehicles;

use std::sync::Arc;

use actix::Addr;
use actix_web::web;
use fleetwire_actors::ports::StateStore;
use fleetwire_actors::registry::ActorRegistry;
use fleetwire_actors::subscriber::{SubscriberConfig, SubscriberHub};

pub use admin::{AdminState, Readiness};
pub use error::ApiError;

use crate::ingest::Ingestor;

/// Everything the public API handlers need.
#[derive(Clone)]
pub struct ApiState {
    /// Validates and stores ingest batches.
    pub ingestor: Ingestor,
    /// Reads vehicle snapshots for the REST API.
    pub store: Arc<dyn StateStore>,
    /// The node's subscriber hub (SSE subscribers register there).
    pub hub: Addr<SubscriberHub>,
    /// The actor registry (subscribers register there).
    pub registry: ActorRegistry,
    /// Subscriber settings.
    pub subscribers: SubscriberConfig,
    /// Largest ingest body in bytes.
    pub max_body_bytes: usize,
}

/// Mounts the public API.
pub fn api_routes(state: ApiState) -> impl FnOnce(&mut web::ServiceConfig) {
    move |cfg| {
        cfg.app_data(web::Data::new(state))
            .app_data(error::query_config())
            .app_data(error::path_config())
            .route("/", web::get().to(page::index))
            .route("/v1/ingest", web::post().to(ingest::ingest))
            .route("/v1/vehicles", web::get().to(vehicles::list))
            .route("/v1/vehicles/{id}", web::get().to(vehicles::get))
            .route("/v1/stream", web::get().to(sse::stream))
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
