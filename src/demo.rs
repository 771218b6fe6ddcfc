//! `fleetwire demo`: a node on embedded backends, a simulated fleet and the live page.
//!
//! The fleet connects like Tesla vehicles: each simulated vehicle opens a TLS WebSocket
//! to the node's vehicle listener with its own client certificate (CommonName = its VIN)
//! from a development PKI kept in the data directory, and sends Fleet Telemetry frames.
//! `--protocol http` posts the same records to `POST /v1/ingest` instead.
//!
//! Authentication stays on: unless the config names a JWKS, the demo generates its own
//! ES256 signing key (`crate::auth::dev`), points `[auth]` at its JWKS file, and prints
//! tokens for a viewer and a tenant admin, the live page's URL with the viewer token in
//! its fragment, and a random platform-admin token.

use std::collections::VecDeque;
use std::time::Duration;

use std::sync::Arc;
use std::sync::atomic::Ordering;

use fleetwire_actors::fleet::{AlertCondition, AlertRule, Crossing, Geofence, Shape, TenantRulesConfig};
use fleetwire_actors::model::{Location, TenantId};
use fleetwire_actors::tenancy::{TenancyConfig, UnknownVehiclePolicy};
use fleetwire_loadtest::fleet::{Fleet, FleetConfig, IngestRecord};
use fleetwire_loadtest::pki::DevPki;
use fleetwire_loadtest::tesla::{DriverStats, Drivers, ack_summary_ms};
use tokio::sync::watch;
use tracing::{info, warn};

use crate::auth::Role;
use crate::auth::dev::DevIssuer;
use crate::cli::{DemoArgs, DemoProtocol};
use crate::config::{Config, Secret};
use crate::node::Node;

/// Records per ingest request.
const BATCH: usize = 500;
/// Lifetime of the printed demo tokens.
const DEMO_TOKEN_SECS: u64 = 12 * 3600;

/// The demo's identities: what it prints and what its fleet driver uses.
struct DemoCredentials {
    viewer: String,
    tenant_admin: String,
    admin_token: String,
}

/// Sets up the demo's own issuer and admin token, unless `config` brings its own JWKS
/// (then the demo prints no tokens and its HTTP fleet cannot ingest).
fn demo_credentials(config: &mut Config, dir: &std::path::Path) -> anyhow::Result<Option<DemoCredentials>> {
    if config.auth.jwks_file.is_some() || config.auth.jwks_url.is_some() {
        return Ok(None);
    }
    std::fs::create_dir_all(dir)?;
    // Kept in the data directory, so the printed tokens (and an open page) survive a restart.
    let issuer = DevIssuer::load_or_generate(dir, "https://fleetwire-demo.invalid", "fleetwire-demo")?;
    let jwks = dir.join("jwks.json");
    issuer.write_jwks(&jwks)?;
    let ticket_key = std::mem::take(&mut config.auth.ticket_key);
    config.auth = crate::auth::AuthConfig {
        ticket_key,
        ..issuer.auth_config(&jwks)
    };
    let admin_token = match &config.admin.token {
        Some(token) => token.expose().to_owned(),
        None => {
            let token = format!("{:032x}{:032x}", rand::random::<u128>(), rand::random::<u128>());
            config.admin.token = Some(Secret::new(token.clone()));
            token
        }
    };
    let tenant = TenantId::parse(DEMO_TENANT).expect("a valid tenant id");
    Ok(Some(DemoCredentials {
        viewer: issuer.token(&tenant, Role::Viewer, "demo-viewer", DEMO_TOKEN_SECS),
        tenant_admin: issuer.token(&tenant, Role::TenantAdmin, "demo-admin", DEMO_TOKEN_SECS),
        admin_token,
    }))
}

/// The tenant the demo's simulated vehicles are provisioned to, and whose users the
/// printed tokens are.
pub const DEMO_TENANT: &str = "demo";

/// Demo only, when no `--config` is given: a trip ends after a 30 s stop instead of 300 s
/// (`fleet.trips.stop_secs`), so that a visitor sees trips end within two minutes. The
/// simulated vehicles report gear `D` while waiting at lights and `P` once parked, so only
/// parking counts as a stop and the short time splits no trip.
pub const DEMO_TRIP_STOP_SECS: i64 = 30;

/// Runs the demo until Ctrl-C / SIGTERM (or `--duration-secs`), then shuts down in order.
pub async fn run(mut config: Config, args: DemoArgs, shutdown_limit: Duration) -> anyhow::Result<()> {
    if !args.ephemeral && config.embedded.data_dir.is_none() {
        config.embedded.data_dir = Some(args.data_dir.clone());
    }
    if let Some(listen) = args.listen {
        config.http.listen = listen;
    }
    if let Some(listen) = args.admin_listen {
        config.admin.listen = listen;
    }
    if let Some(listen) = args.vehicle_listen {
        config.tesla.listen = listen;
    }
    let pki = if args.protocol == DemoProtocol::Tesla {
        let dir = match &config.embedded.data_dir {
            Some(dir) => dir.join("pki"),
            None => std::env::temp_dir().join(format!("fleetwire-demo-pki-{}", std::process::id())),
        };
        let pki = DevPki::load_or_create(&dir)?;
        config.tesla.enabled = true;
        config.tesla.server_cert_file = Some(pki.server_cert_file.clone());
        config.tesla.server_key_file = Some(pki.server_key_file.clone());
        config.tesla.client_ca_files = vec![pki.ca_cert_file.clone()];
        Some(pki)
    } else {
        None
    };
    if args.config.is_none() {
        config.fleet.trips.stop_secs = DEMO_TRIP_STOP_SECS;
        // The raw archive under the data directory (`<data_dir>/archive/raw/…`).
        config.archive.enabled = config.embedded.data_dir.is_some();
    }
    if config.fleet.tenants.is_empty() {
        let fleet = FleetConfig::default();
        config.fleet.tenants.insert(
            DEMO_TENANT.to_owned(),
            demo_rules(fleet.center_latitude, fleet.center_longitude),
        );
    }
    if config.tenancy.policy().ok() == Some(UnknownVehiclePolicy::DeadLetter) {
        // The simulated fleet is nobody's until it shows up: register it on first sight.
        config.tenancy = TenancyConfig::provisioning_to(DEMO_TENANT);
    }
    let auth_dir = match &config.embedded.data_dir {
        Some(dir) => dir.join("auth"),
        None => std::env::temp_dir().join(format!("fleetwire-demo-auth-{}", std::process::id())),
    };
    let credentials = demo_credentials(&mut config, &auth_dir)?;
    let node = Node::start(config).await?;
    let (api, admin) = (node.api_addr(), node.admin_addr());
    let vehicles_line = match (&pki, node.tesla_addr()) {
        (Some(pki), Some(addr)) => format!(
            "  vehicles in  wss://{addr}/ (Tesla Fleet Telemetry, mTLS; CA and server certificate in {})\n",
            pki.dir.display()
        ),
        _ => format!("  vehicles in  POST http://{api}/v1/ingest\n"),
    };
    let ingest_key = match (&credentials, args.protocol) {
        (Some(c), DemoProtocol::Http) => {
            Some(create_ingest_key(&format!("http://{api}"), &c.tenant_admin).await?)
        }
        _ => None,
    };
    let page_fragment = credentials
        .as_ref()
        .map(|c| format!("#token={}", c.viewer))
        .unwrap_or_default();
    let tokens = match &credentials {
        Some(c) => {
            format!(
                "  viewer token        {}\n  tenant-admin token  {}\n  admin token         {}\n  (send as Authorization: Bearer <token>; the admin token on the admin listener)\n",
                c.viewer, c.tenant_admin, c.admin_token
            ) + &ingest_key
                .as_ref()
                .map(|k| format!("  ingest API key      {k}  (X-Api-Key for POST /v1/ingest)\n"))
                .unwrap_or_default()
        }
        None => "  tokens: from the identity provider the config names\n".to_owned(),
    };
    println!(
        "\nfleetwire demo: {} simulated vehicles\n{vehicles_line}  live page    http://{api}/{page_fragment}\n  vehicles     http://{api}/v1/vehicles\n  SSE stream   http://{api}/v1/stream\n  actors       http://{admin}/admin/actors\n  readiness    http://{admin}/readyz\n  metrics      http://{admin}/metrics\n{tokens}Press Ctrl-C to stop.\n",
        args.vehicles
    );

    let (stop_tx, stop_rx) = watch::channel(false);
    let fleet = Fleet::new(FleetConfig {
        vehicles: args.vehicles,
        id_prefix: "SIMVIN".to_owned(),
        ..FleetConfig::default()
    });
    let driver = match (pki, node.tesla_addr()) {
        (Some(pki), Some(addr)) => {
            tokio::spawn(drive_tesla_fleet(fleet, pki, addr, args.interval_ms, stop_rx))
        }
        _ => tokio::spawn(drive_fleet(
            fleet,
            format!("http://{api}/v1/ingest"),
            ingest_key,
            args.interval_ms,
            stop_rx,
        )),
    };

    wait_for_stop(args.duration_secs).await;
    info!("Stop requested: stopping the simulated fleet.");
    let _ = stop_tx.send(true);
    if let Ok(Err(e)) = driver.await {
        warn!(error = %e, "Fleet driver ended with an error.");
    }
    let report = node.shutdown(shutdown_limit).await;
    println!(
        "fleetwire demo stopped (all acknowledged records processed: {}).",
        report.drained
    );
    Ok(())
}

/// Geofences and alert rules for the simulated fleet (used when the config seeds none):
/// a circle over the centre of its area that vehicles cross all the time, a depot polygon
/// north-east of it, and low-SOC (20 %), overspeed (130 km/h: the simulated expressways reach about 128),
/// offline (10 min) and depot-exit rules.
pub fn demo_rules(lat: f64, lon: f64) -> TenantRulesConfig {
    let at = |dlat: f64, dlon: f64| Location {
        latitude: lat + dlat,
        longitude: lon + dlon,
    };
    let rule = |id: &str, condition| AlertRule {
        id: id.to_owned(),
        condition,
    };
    TenantRulesConfig {
        geofences: vec![
            Geofence {
                id: "centre".to_owned(),
                name: "City centre".to_owned(),
                shape: Shape::Circle {
                    center: at(0.0, 0.0),
                    radius_m: 2000.0,
                },
            },
            Geofence {
                id: "depot".to_owned(),
                name: "North-east depot".to_owned(),
                shape: Shape::Polygon {
                    points: vec![at(0.02, 0.02), at(0.02, 0.06), at(0.05, 0.06), at(0.05, 0.02)],
                },
            },
        ],
        alert_rules: vec![
            rule("low-soc", AlertCondition::LowSoc { below_percent: 20.0 }),
            rule("overspeed", AlertCondition::Overspeed { above_kmh: 130.0 }),
            rule("offline", AlertCondition::Offline { after_minutes: 10 }),
            rule(
                "depot-exit",
                AlertCondition::Geofence {
                    geofence_id: "depot".to_owned(),
                    on: Crossing::Exit,
                },
            ),
        ],
    }
}

/// Creates an ingest API key through the node's own API, as a tenant admin would.
async fn create_ingest_key(api: &str, tenant_admin: &str) -> anyhow::Result<String> {
    let response = reqwest::Client::new()
        .post(format!("{api}/v1/api-keys"))
        .bearer_auth(tenant_admin)
        .json(&serde_json::json!({"name": "demo fleet"}))
        .send()
        .await?;
    let status = response.status();
    let body: serde_json::Value = response.json().await?;
    match body["key"].as_str() {
        Some(key) if status == reqwest::StatusCode::CREATED => Ok(key.to_owned()),
        _ => anyhow::bail!("creating the demo's ingest key answered {status}: {body}"),
    }
}

/// Waits for Ctrl-C, SIGTERM, or the optional duration.
pub async fn wait_for_stop(duration_secs: u64) {
    let timer = async {
        if duration_secs == 0 {
            std::future::pending::<()>().await
        } else {
            tokio::time::sleep(Duration::from_secs(duration_secs)).await
        }
    };
    #[cfg(unix)]
    let term = async {
        match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
            Ok(mut s) => {
                s.recv().await;
            }
            Err(_) => std::future::pending::<()>().await,
        }
    };
    #[cfg(not(unix))]
    let term = std::future::pending::<()>();
    tokio::select! {
        _ = tokio::signal::ctrl_c() => {}
        _ = term => {}
        _ = timer => {}
    }
}

/// Records queued per simulated vehicle; when a vehicle cannot keep up (its frames wait
/// for acks), older records are dropped and counted, as a real vehicle's buffer would.
const VEHICLE_QUEUE: usize = 8;

/// Connects every simulated vehicle over mTLS and feeds it one record per tick.
async fn drive_tesla_fleet(
    mut fleet: Fleet,
    pki: DevPki,
    addr: std::net::SocketAddr,
    interval_ms: u64,
    mut stop: watch::Receiver<bool>,
) -> anyhow::Result<()> {
    let stats = Arc::new(DriverStats::default());
    let drivers = Drivers::start(fleet.vehicle_ids(), &pki, addr, VEHICLE_QUEUE, &stats, &stop)?;
    let mut ticker = tokio::time::interval(Duration::from_millis(interval_ms.max(10)));
    ticker.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Skip);
    let mut last_report = (tokio::time::Instant::now(), 0u64);
    loop {
        tokio::select! {
            _ = ticker.tick() => {}
            _ = stop.changed() => break,
        }
        for (queue, record) in drivers.queues.iter().zip(fleet.tick(chrono::Utc::now())) {
            if queue.try_send(record).is_err() {
                metrics::counter!("fleetwire_demo_records_dropped_total").increment(1);
            }
        }
        if last_report.0.elapsed() >= Duration::from_secs(10) {
            let acked = stats.acked.load(Ordering::Relaxed);
            let (_, p50, p99, max) = ack_summary_ms(&stats.take_ack_latency());
            info!(
                frames_acked_per_sec = (acked - last_report.1) as f64 / last_report.0.elapsed().as_secs_f64(),
                ack_ms_p50 = p50,
                ack_ms_p99 = p99,
                ack_ms_max = max,
                connects = stats.connects.load(Ordering::Relaxed),
                errors = stats.errors.load(Ordering::Relaxed),
                "Simulated fleet (Tesla protocol)."
            );
            last_report = (tokio::time::Instant::now(), acked);
        }
    }
    drivers.finish().await;
    Ok(())
}

/// Posts one record per vehicle every `interval_ms` until `stop` turns true. Records the
/// node could not store right now are resent on the next tick (dedupe makes that safe);
/// the resend buffer is bounded to a few ticks of the fleet.
async fn drive_fleet(
    mut fleet: Fleet,
    url: String,
    credential: Option<String>,
    interval_ms: u64,
    mut stop: watch::Receiver<bool>,
) -> anyhow::Result<()> {
    let client = reqwest::Client::builder()
        .timeout(Duration::from_secs(10))
        .build()?;
    let max_backlog = fleet.vehicle_ids().len() * 5;
    let mut backlog: VecDeque<IngestRecord> = VecDeque::new();
    let mut ticker = tokio::time::interval(Duration::from_millis(interval_ms.max(10)));
    ticker.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Skip);
    let (mut accepted, mut last_report) = (0u64, tokio::time::Instant::now());
    loop {
        tokio::select! {
            _ = ticker.tick() => {}
            _ = stop.changed() => return Ok(()),
        }
        backlog.extend(fleet.tick(chrono::Utc::now()));
        while backlog.len() > max_backlog {
            backlog.pop_front();
            metrics::counter!("fleetwire_demo_records_dropped_total").increment(1);
        }
        let batch: Vec<IngestRecord> = backlog.drain(..).collect();
        for chunk in batch.chunks(BATCH) {
            match post(&client, &url, credential.as_deref(), chunk).await {
                Ok(retry) => {
                    accepted += (chunk.len() - retry.len()) as u64;
                    backlog.extend(retry);
                }
                Err(e) => {
                    warn!(error = %e, "Ingest request failed; will resend.");
                    backlog.extend(chunk.iter().cloned());
                }
            }
        }
        if last_report.elapsed() >= Duration::from_secs(10) {
            info!(
                records_per_sec = accepted as f64 / last_report.elapsed().as_secs_f64(),
                "Simulated fleet."
            );
            (accepted, last_report) = (0, tokio::time::Instant::now());
        }
    }
}

/// Posts a chunk; returns the records to resend (those reported `failed`).
async fn post(
    client: &reqwest::Client,
    url: &str,
    credential: Option<&str>,
    chunk: &[IngestRecord],
) -> anyhow::Result<Vec<IngestRecord>> {
    let mut request = client.post(url).json(chunk);
    if let Some(key) = credential {
        request = request.header("x-api-key", key);
    }
    let response = request.send().await?;
    let status = response.status();
    let body: serde_json::Value = response.json().await?;
    if !(status.is_success() || status == reqwest::StatusCode::SERVICE_UNAVAILABLE) {
        anyhow::bail!("ingest answered {status}: {body}");
    }
    let results = body["results"].as_array().cloned().unwrap_or_default();
    Ok(chunk
        .iter()
        .zip(results)
        .filter(|(_, r)| r["status"] == "failed")
        .map(|(rec, _)| rec.clone())
        .collect())
}

#[cfg(test)]
mod tests {
    use std::collections::BTreeMap;

    use fleetwire_actors::fleet::{FleetConfig as Settings, FleetRules, FleetState};
    use fleetwire_actors::model::{TelemetryRecord, VehicleId};

    use super::*;

    /// The demo's fleet, run through the fleet machines with the demo rules and the demo's
    /// trip stop time: within two simulated minutes trips start and end, charging sessions
    /// start, geofences are crossed and low-SOC alerts fire.
    #[test]
    fn the_demo_fleet_makes_fleet_events_within_two_minutes() {
        let config = FleetConfig {
            vehicles: 200,
            id_prefix: "SIMVIN".to_owned(),
            ..FleetConfig::default()
        };
        let rules = FleetRules::seeded(&BTreeMap::from([(
            TenantId::DEFAULT.to_owned(),
            demo_rules(config.center_latitude, config.center_longitude),
        )]))
        .unwrap()
        .tenant(&TenantId::default());
        let mut settings = Settings::default();
        settings.trips.stop_secs = DEMO_TRIP_STOP_SECS;
        let mut fleet = Fleet::new(config);
        let mut states: BTreeMap<String, FleetState> = BTreeMap::new();
        let mut seen: BTreeMap<&'static str, usize> = BTreeMap::new();
        let start = chrono::DateTime::parse_from_rfc3339("2026-05-01T09:00:00Z")
            .unwrap()
            .to_utc();
        for s in 0..=121 {
            if s == 121 {
                for kind in [
                    "trip_started",
                    "trip_ended",
                    "charging_started",
                    "charging_ended",
                    "geofence_enter",
                    "geofence_exit",
                    "low_soc",
                ] {
                    assert!(
                        seen.get(kind).copied().unwrap_or(0) > 0,
                        "no {kind} in 2 min: {seen:?}"
                    );
                }
            }
            let now = start + chrono::Duration::seconds(s);
            for r in fleet.tick(now) {
                let record = TelemetryRecord {
                    timestamp: r.timestamp,
                    vehicle_id: VehicleId(r.vehicle_id.clone()),
                    payload: serde_json::from_value(serde_json::Value::Object(r.payload)).unwrap(),
                    can_id: None,
                    ingest_received_at: now,
                };
                let state = states.entry(r.vehicle_id).or_default();
                for e in state
                    .apply(&settings, &rules, &record.vehicle_id, &record, now)
                    .events
                {
                    let name = match &e.kind {
                        fleetwire_actors::fleet::EventKind::AlertRaised { rule_id, .. }
                            if rule_id == "low-soc" =>
                        {
                            "low_soc"
                        }
                        kind => kind.name(),
                    };
                    *seen.entry(name).or_default() += 1;
                }
            }
        }
    }
}
