//! Admin listener: actor registry, health, readiness, Prometheus metrics.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use actix_web::{HttpResponse, web};
use fleetwire_actors::consumer::ConsumerStatus;
use fleetwire_actors::registry::{ActorKind, ActorRegistry};
use metrics_exporter_prometheus::PrometheusHandle;
use serde::{Deserialize, Serialize};

use super::ApiError;
use super::auth::PlatformAdmin;
use crate::node::Ports;

/// Longest a readiness probe waits for one backend.
const PROBE_TIMEOUT: Duration = Duration::from_secs(2);

/// What `/readyz` checks.
#[derive(Clone)]
pub struct Readiness {
    /// The backends to probe.
    pub ports: Ports,
    /// The lease coordinator's status.
    pub consumer: ConsumerStatus,
    /// Set once shutdown begins: the node stops being ready so the load balancer drains it.
    pub shutting_down: Arc<AtomicBool>,
}

/// One readiness check.
#[derive(Debug, Serialize)]
struct Check {
    name: &'static str,
    ok: bool,
    #[serde(skip_serializing_if = "Option::is_none")]
    error: Option<String>,
}

impl Readiness {
    async fn checks(&self) -> Vec<Check> {
        async fn probe<E: std::fmt::Display>(
            name: &'static str,
            fut: impl Future<Output = Result<(), E>>,
        ) -> Check {
            match tokio::time::timeout(PROBE_TIMEOUT, fut).await {
                Ok(Ok(())) => Check {
                    name,
                    ok: true,
                    error: None,
                },
                Ok(Err(e)) => Check {
                    name,
                    ok: false,
                    error: Some(e.to_string()),
                },
                Err(_) => Check {
                    name,
                    ok: false,
                    error: Some("timed out".to_owned()),
                },
            }
        }
        let (stream, leases, state, fanout) = futures_util::join!(
            probe("stream", self.ports.stream.ping()),
            probe("leases", self.ports.leases.ping()),
            probe("state", self.ports.state.ping()),
            probe("fanout", self.ports.fanout.ping()),
        );
        let consumer_ready = self.consumer.is_ready();
        let subscribed = self.ports.fanout.is_subscribed();
        let shutting_down = self.shutting_down.load(Ordering::Relaxed);
        vec![
            stream,
            leases,
            state,
            fanout,
            Check {
                name: "fanout_subscription",
                ok: subscribed,
                error: (!subscribed).then(|| "the fan-out subscription is (re)connecting".to_owned()),
            },
            Check {
                name: "shard_leases",
                ok: consumer_ready,
                error: (!consumer_ready)
                    .then(|| "not every shard lease is held by a live worker yet".to_owned()),
            },
            Check {
                name: "accepting",
                ok: !shutting_down,
                error: shutting_down.then(|| "shutting down".to_owned()),
            },
        ]
    }
}

/// Everything the admin handlers need.
#[derive(Clone)]
pub struct AdminState {
    /// The actor registry.
    pub registry: ActorRegistry,
    /// Readiness checks.
    pub readiness: Readiness,
    /// Renders Prometheus metrics.
    pub metrics: PrometheusHandle,
    /// The platform-admin token that `/admin/*` and `/metrics` require.
    pub credential: crate::auth::AdminCredential,
}

/// Query of `GET /admin/actors`.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ActorsQuery {
    /// Only actors of this kind.
    kind: Option<String>,
    /// At most this many actors in the list (default 100, at most 10,000).
    limit: Option<usize>,
}

fn parse_kind(kind: &str) -> Result<ActorKind, ApiError> {
    ActorKind::parse(kind).ok_or_else(|| ApiError::BadRequest {
        code: "bad_kind",
        message: format!(
            "unknown actor kind {kind:?}; known: {}",
            ActorKind::ALL.map(ActorKind::as_str).join(", ")
        ),
    })
}

/// `GET /admin/actors`: counts per kind and a list.
pub async fn actors(
    _admin: PlatformAdmin,
    state: web::Data<AdminState>,
    query: web::Query<ActorsQuery>,
) -> Result<HttpResponse, ApiError> {
    let kind = query.kind.as_deref().map(parse_kind).transpose()?;
    let limit = query.limit.unwrap_or(100).min(10_000);
    let counts = state.registry.counts();
    let total: usize = counts.values().sum();
    let actors = state.registry.list(kind, limit);
    Ok(HttpResponse::Ok().json(serde_json::json!({"total": total, "counts": counts, "actors": actors})))
}

/// `GET /admin/actors/{kind}/{id}`
pub async fn actor(
    _admin: PlatformAdmin,
    state: web::Data<AdminState>,
    path: web::Path<(String, String)>,
) -> Result<HttpResponse, ApiError> {
    let (kind, id) = path.into_inner();
    let kind = parse_kind(&kind)?;
    state
        .registry
        .get(kind, &id)
        .map(|info| HttpResponse::Ok().json(info))
        .ok_or_else(|| ApiError::NotFound(format!("no live {kind} actor {id}")))
}

/// `GET /admin/leases`: every shard lease (owner, counter, checkpoint, parents) and, for
/// the shards this node consumes, its lag from the shard consumer actor.
pub async fn leases(_admin: PlatformAdmin, state: web::Data<AdminState>) -> Result<HttpResponse, ApiError> {
    let leases = state
        .readiness
        .ports
        .leases
        .list_leases()
        .await
        .map_err(|e| ApiError::store_unavailable("lease store", e))?;
    let rows: Vec<serde_json::Value> = leases
        .into_iter()
        .map(|lease| {
            let local = state.registry.get(ActorKind::ShardConsumer, &lease.lease_key);
            serde_json::json!({
                "lease_key": lease.lease_key,
                "lease_owner": lease.lease_owner,
                "lease_counter": lease.lease_counter,
                "checkpoint": lease.checkpoint,
                "parent_shard_ids": lease.parent_shard_ids,
                "owner_switches_since_checkpoint": lease.owner_switches_since_checkpoint,
                "consumed_here": local.is_some(),
                "millis_behind_latest": local.as_ref().and_then(|a| a.details.get("millis_behind_latest").cloned()),
            })
        })
        .collect();
    Ok(HttpResponse::Ok().json(serde_json::json!({
        "worker_id": state.readiness.consumer.worker_id(),
        "leases": rows,
    })))
}

/// `GET /admin/shards`: the stream's shards with their hash-key ranges (as decimal text:
/// 128-bit numbers do not fit JSON numbers) and parents.
pub async fn shards(_admin: PlatformAdmin, state: web::Data<AdminState>) -> Result<HttpResponse, ApiError> {
    let shards = state
        .readiness
        .ports
        .stream
        .list_shards()
        .await
        .map_err(|e| ApiError::store_unavailable("stream", e))?;
    let rows: Vec<serde_json::Value> = shards
        .into_iter()
        .map(|s| {
            serde_json::json!({
                "shard_id": s.shard_id,
                "parent_shard_ids": s.parent_shard_ids,
                "starting_hash_key": s.starting_hash_key.to_string(),
                "ending_hash_key": s.ending_hash_key.to_string(),
                "closed": s.closed,
            })
        })
        .collect();
    Ok(HttpResponse::Ok().json(serde_json::json!({"shards": rows})))
}

/// `GET /healthz`: the process is alive and serving.
pub async fn healthz() -> HttpResponse {
    HttpResponse::Ok().json(serde_json::json!({"status": "ok"}))
}

/// `GET /readyz`: 200 when every backend answers and every shard lease has a live owner.
pub async fn readyz(state: web::Data<AdminState>) -> HttpResponse {
    let checks = state.readiness.checks().await;
    let ready = checks.iter().all(|c| c.ok);
    let body = serde_json::json!({"ready": ready, "checks": checks});
    if ready {
        HttpResponse::Ok().json(body)
    } else {
        HttpResponse::ServiceUnavailable().json(body)
    }
}

/// `GET /metrics`: Prometheus text format.
pub async fn metrics(_admin: PlatformAdmin, state: web::Data<AdminState>) -> HttpResponse {
    crate::observability::record_process_metrics();
    HttpResponse::Ok()
        .content_type("text/plain; version=0.0.4")
        .body(state.metrics.render())
}
