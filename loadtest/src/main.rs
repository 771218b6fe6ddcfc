//! `fleetwire-loadtest`: drives a fleetwire deployment with simulated vehicles.
//!
//! `tesla`: N vehicles connect over mTLS WebSockets (certificates minted from a CA the
//! target trusts, e.g. the `pki/` folder `fleetwire demo` creates) and send one `V` frame
//! each per interval — the demo's realistic fleet, spread evenly over the interval as
//! unsynchronized vehicles are — and the run reports acked frames/s and send → ack
//! latency. Loopback targets only; the run stops by itself after `--duration-secs`.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::Duration;

use anyhow::{Context as _, ensure};
use clap::{Parser, Subcommand};
use fleetwire_loadtest::fleet::{Fleet, FleetConfig};
use fleetwire_loadtest::pki::DevPki;
use fleetwire_loadtest::tesla::{DriverStats, Target, drive_vehicle};
use tokio::sync::{mpsc, watch};

/// Load generator for fleetwire.
#[derive(Debug, Parser)]
#[command(version, about)]
struct Cli {
    #[command(subcommand)]
    scenario: Scenario,
}

#[derive(Debug, Subcommand)]
enum Scenario {
    /// Tesla vehicles over mTLS WebSockets.
    Tesla {
        /// The vehicle listener (loopback only).
        #[arg(long, default_value = "127.0.0.1:8443")]
        target: SocketAddr,
        /// Folder with `ca.pem` and `ca-key.pem` of a CA the target trusts (e.g. the demo's
        /// `<data dir>/pki`).
        #[arg(long)]
        pki: PathBuf,
        /// Simulated vehicles (each its own connection and certificate).
        #[arg(long, default_value_t = 1000)]
        vehicles: usize,
        /// Each vehicle sends one frame per interval.
        #[arg(long, default_value_t = 1000)]
        interval_ms: u64,
        /// Length of the run.
        #[arg(long, default_value_t = 60)]
        duration_secs: u64,
        /// VIN prefix, so runs do not collide with the demo's own vehicles.
        #[arg(long, default_value = "LOADVIN")]
        vin_prefix: String,
    },
}

/// Waves per interval: the fleet's records go out in this many evenly spaced groups.
const WAVES: usize = 20;

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let Scenario::Tesla {
        target,
        pki,
        vehicles,
        interval_ms,
        duration_secs,
        vin_prefix,
    } = Cli::parse().scenario;
    ensure!(
        target.ip().is_loopback(),
        "load tests target loopback addresses only"
    );
    let pki = DevPki::load_or_create(&pki).context("reading the CA")?;
    let target = Target {
        addr: target,
        server_name: target.ip().to_string(),
    };
    let mut fleet = Fleet::new(FleetConfig {
        vehicles,
        id_prefix: vin_prefix,
        ..FleetConfig::default()
    });
    let (stop_tx, stop) = watch::channel(false);
    let stats = Arc::new(DriverStats::default());
    let mut queues = Vec::with_capacity(vehicles);
    let mut tasks = Vec::with_capacity(vehicles);
    for vin in fleet.vehicle_ids() {
        let (tx, rx) = mpsc::channel(4);
        queues.push(tx);
        let tls = pki.vehicle_client_config(&vin)?;
        tasks.push(tokio::spawn(drive_vehicle(
            target.clone(),
            tls,
            vin,
            rx,
            stats.clone(),
            stop.clone(),
        )));
    }
    let interval = Duration::from_millis(interval_ms.max(10));
    let wave_gap = interval / WAVES as u32;
    let started = tokio::time::Instant::now();
    let end = started + Duration::from_secs(duration_secs);
    let (mut dropped, mut last_acked, mut last_report) = (0u64, 0u64, started);
    let mut ticker = tokio::time::interval(interval);
    ticker.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Skip);
    while tokio::time::Instant::now() < end {
        ticker.tick().await;
        let records = fleet.tick(chrono::Utc::now());
        let per_wave = records.len().div_ceil(WAVES).max(1);
        let mut records = records.into_iter().zip(queues.iter());
        for _ in 0..WAVES {
            for (record, queue) in records.by_ref().take(per_wave) {
                // A vehicle still waiting for an ack skips a tick, like a real buffer.
                if queue.try_send(record).is_err() {
                    dropped += 1;
                }
            }
            tokio::time::sleep(wave_gap).await;
        }
        if last_report.elapsed() >= Duration::from_secs(5) {
            let acked = stats.acked.load(Ordering::Relaxed);
            let (n, p50, p99, max) = stats.take_ack_latency_ms();
            println!(
                "t={:>4}s acked/s={:>8.1} ack_ms p50={p50:.1} p99={p99:.1} max={max:.1} (n={n}) connects={} errors={} skipped={dropped}",
                started.elapsed().as_secs(),
                (acked - last_acked) as f64 / last_report.elapsed().as_secs_f64(),
                stats.connects.load(Ordering::Relaxed),
                stats.errors.load(Ordering::Relaxed),
            );
            (last_acked, last_report) = (acked, tokio::time::Instant::now());
        }
    }
    let _ = stop_tx.send(true);
    drop(queues);
    for task in tasks {
        let _ = task.await;
    }
    println!(
        "done: {} frames acked, {} connects, {} errors, {dropped} ticks skipped",
        stats.acked.load(Ordering::Relaxed),
        stats.connects.load(Ordering::Relaxed),
        stats.errors.load(Ordering::Relaxed)
    );
    Ok(())
}
