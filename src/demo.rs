//! `fleetwire demo`: a node on embedded backends, a simulated fleet posting to the
//! node's own ingest endpoint over loopback HTTP, and the live page.

use std::collections::VecDeque;
use std::time::Duration;

use fleetwire_loadtest::fleet::{Fleet, FleetConfig, IngestRecord};
use tokio::sync::watch;
use tracing::{info, warn};

use crate::cli::DemoArgs;
use crate::config::Config;
use crate::node::Node;

/// Records per ingest request.
const BATCH: usize = 500;

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
    let node = Node::start(config).await?;
    let (api, admin) = (node.api_addr(), node.admin_addr());
    println!(
        "\nfleetwire demo: {} simulated vehicles\n  live page    http://{api}/\n  vehicles     http://{api}/v1/vehicles\n  SSE stream   http://{api}/v1/stream\n  actors       http://{admin}/admin/actors\n  readiness    http://{admin}/readyz\n  metrics      http://{admin}/metrics\nPress Ctrl-C to stop.\n",
        args.vehicles
    );

    let (stop_tx, stop_rx) = watch::channel(false);
    let fleet = Fleet::new(FleetConfig {
        vehicles: args.vehicles,
        ..FleetConfig::default()
    });
    let driver = tokio::spawn(drive_fleet(
        fleet,
        format!("http://{api}/v1/ingest"),
        args.interval_ms,
        stop_rx,
    ));

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

/// Posts one record per vehicle every `interval_ms` until `stop` turns true. Records the
/// node could not store right now are resent on the next tick (dedupe makes that safe);
/// the resend buffer is bounded to a few ticks of the fleet.
async fn drive_fleet(
    mut fleet: Fleet,
    url: String,
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
            match post(&client, &url, chunk).await {
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
    chunk: &[IngestRecord],
) -> anyhow::Result<Vec<IngestRecord>> {
    let response = client.post(url).json(chunk).send().await?;
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
