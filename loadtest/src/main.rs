//! `fleetwire-loadtest`: drives a fleetwire deployment with simulated vehicles.
//!
//! `run <scenario.toml> --target <url>`: a declarative scenario (loadtest/scenarios/)
//! with SSE subscribers, exact loss/duplicate accounting, live progress, JSON and HTML
//! reports; exits 1 when a threshold fails, 2 when the run could not be done.
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
use fleetwire_loadtest::report::Percentiles;
use fleetwire_loadtest::run::{RunOptions, run};
use fleetwire_loadtest::scenario::{Protocol, Scenario};
use fleetwire_loadtest::tesla::{DriverStats, Drivers, ack_summary_ms};
use tokio::sync::watch;

/// Load generator for fleetwire.
#[derive(Debug, Parser)]
#[command(version, about)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

/// `run`: a scenario file plus overrides.
#[derive(Debug, clap::Args)]
struct RunArgs {
    /// Scenario file (loadtest/scenarios/*.toml).
    scenario: PathBuf,
    /// Base URL of a node's public API (`http://127.0.0.1:8080`); repeat for several
    /// nodes. Sets the ingest and SSE URLs.
    #[arg(long)]
    target: Vec<String>,
    /// Base URL of a node's admin API (`http://127.0.0.1:9090`) for CPU and memory from
    /// `/metrics`; repeat for several nodes.
    #[arg(long)]
    admin: Vec<String>,
    /// Vehicle listener (`127.0.0.1:8443`) for `--protocol tesla`.
    #[arg(long)]
    tesla_addr: Option<String>,
    /// Folder with the CA the vehicle listener trusts (e.g. the demo's `<data dir>/pki`).
    #[arg(long)]
    pki: Option<PathBuf>,
    /// Overrides `fleet.protocol`.
    #[arg(long, value_enum)]
    protocol: Option<Protocol>,
    /// Overrides `fleet.vehicles`.
    #[arg(long)]
    vehicles: Option<usize>,
    /// Multiplies every stage's rate.
    #[arg(long)]
    rate_scale: Option<f64>,
    /// Scales the stages to last this long in total.
    #[arg(long)]
    duration_secs: Option<u64>,
    /// Overrides `fleet.batch_size`.
    #[arg(long)]
    batch_size: Option<usize>,
    /// Overrides `fleet.connections`.
    #[arg(long)]
    connections: Option<usize>,
    /// Overrides `subscribers.count`.
    #[arg(long)]
    subscribers: Option<usize>,
    /// Overrides `subscribers.h2c_connections` (HTTP/2 without TLS over this many connections).
    #[arg(long)]
    sse_h2c_connections: Option<usize>,
    /// Overrides `drain_secs`.
    #[arg(long)]
    drain_secs: Option<u64>,
    /// Overrides `warmup_secs` (latencies of the first seconds left out of the thresholds).
    #[arg(long)]
    warmup_secs: Option<u64>,
    /// Overrides `failover.command` (program and arguments, e.g. `--failover-command sh
    /// --failover-command -c --failover-command 'kill -9 1234'`).
    #[arg(long)]
    failover_command: Vec<String>,
    /// `Authorization: Bearer` for SSE (overrides `auth.bearer_token`).
    #[arg(long, env = "FLEETWIRE_LOADTEST_BEARER_TOKEN", hide_env_values = true)]
    bearer_token: Option<String>,
    /// `X-Api-Key` for ingest (overrides `auth.api_key`).
    #[arg(long, env = "FLEETWIRE_LOADTEST_API_KEY", hide_env_values = true)]
    api_key: Option<String>,
    /// Bearer token for the targets' `/metrics` (overrides `auth.admin_token`).
    #[arg(long, env = "FLEETWIRE_LOADTEST_ADMIN_TOKEN", hide_env_values = true)]
    admin_token: Option<String>,
    /// Permit targets that are not loopback addresses.
    #[arg(long)]
    allow_remote: bool,
    /// Where the JSON and HTML reports go.
    #[arg(long, default_value = "loadtest-reports")]
    report_dir: PathBuf,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// Run a scenario file against a deployment.
    Run(Box<RunArgs>),
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
        /// Seconds left out of the final "after the warm-up" ack figures (the connect storm
        /// of a large fleet); whole 5-s windows from this point on count.
        #[arg(long, default_value_t = 0)]
        warmup_secs: u64,
        /// VIN prefix, so runs do not collide with the demo's own vehicles.
        #[arg(long, default_value = "LOADVIN")]
        vin_prefix: String,
    },
}

fn main() -> std::process::ExitCode {
    let cli = Cli::parse();
    // One process-wide rustls provider for the HTTPS client and the Tesla mTLS driver
    // (rustls refuses to guess when the build enables more than one).
    let _ = rustls::crypto::aws_lc_rs::default_provider().install_default();
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .expect("tokio runtime");
    let result = match cli.command {
        Command::Run(args) => runtime.block_on(run_scenario(*args)),
        tesla @ Command::Tesla { .. } => runtime.block_on(run_tesla(tesla)).map(|()| true),
    };
    match result {
        Ok(true) => std::process::ExitCode::SUCCESS,
        Ok(false) => std::process::ExitCode::from(1),
        Err(e) => {
            eprintln!("fleetwire-loadtest: {e:#}");
            std::process::ExitCode::from(2)
        }
    }
}

/// Loads, overrides, validates and runs a scenario; `Ok(passed)`.
async fn run_scenario(args: RunArgs) -> anyhow::Result<bool> {
    let mut s = Scenario::load(&args.scenario)?;
    for base in &args.target {
        let base = base.trim_end_matches('/');
        s.targets.ingest.push(format!("{base}/v1/ingest"));
        s.targets.sse.push(format!("{base}/v1/stream"));
    }
    for base in &args.admin {
        s.targets
            .metrics
            .push(format!("{}/metrics", base.trim_end_matches('/')));
    }
    if args.tesla_addr.is_some() {
        s.targets.tesla = args.tesla_addr;
    }
    if args.pki.is_some() {
        s.targets.pki = args.pki;
    }
    if let Some(p) = args.protocol {
        s.fleet.protocol = p;
    }
    if let Some(v) = args.vehicles {
        s.fleet.vehicles = v;
    }
    if let Some(f) = args.rate_scale {
        ensure!(f.is_finite() && f > 0.0, "--rate-scale must be a positive number");
        s.scale_rate(f);
    }
    if let Some(d) = args.duration_secs {
        s.set_load_secs(d);
    }
    if let Some(b) = args.batch_size {
        s.fleet.batch_size = b;
    }
    if let Some(c) = args.connections {
        s.fleet.connections = c;
    }
    if let Some(n) = args.subscribers {
        s.subscribers.count = n;
    }
    if let Some(n) = args.sse_h2c_connections {
        s.subscribers.h2c_connections = n;
    }
    if let Some(d) = args.drain_secs {
        s.drain_secs = d;
    }
    if let Some(w) = args.warmup_secs {
        s.warmup_secs = w;
    }
    if !args.failover_command.is_empty() {
        if let Some(f) = &mut s.failover {
            f.command = args.failover_command;
        } else {
            anyhow::bail!("--failover-command needs a scenario with a [failover] section");
        }
    }
    if args.bearer_token.is_some() {
        s.auth.bearer_token = args.bearer_token;
    }
    if args.admin_token.is_some() {
        s.auth.admin_token = args.admin_token;
    }
    if args.api_key.is_some() {
        s.auth.api_key = args.api_key;
    }
    s.validate(args.allow_remote)?;
    let report = run(
        s,
        RunOptions {
            report_dir: args.report_dir,
        },
    )
    .await?;
    let d = &report.delivery;
    println!(
        "accepted {} records ({:.0}/s); {}; events {}; lost {}, duplicates {}, double applied {}, superseded {}, resets {}; errors {:?}",
        report.throughput.accepted_records,
        report.throughput.accepted_per_sec,
        latencies(&report.ack_ms, report.e2e_measured.then_some(&report.e2e_ms)),
        report.throughput.events,
        report.lost,
        d.duplicates,
        d.double_applied,
        d.superseded,
        d.resets,
        report.errors,
    );
    if let Some(steady) = &report.steady {
        println!(
            "after the {} s warm-up: {}",
            report.scenario.warmup_secs,
            latencies(&steady.ack_ms, report.e2e_measured.then_some(&steady.e2e_ms)),
        );
    }
    if let Some(k) = &report.knee {
        println!(
            "knee: at {:.0} s, offered {:.0} records/s ({}); last good window accepted {:.0}/s",
            k.at_secs, k.offered_rps, k.reason, k.last_good_accepted_rps
        );
    }
    for c in &report.checks {
        println!(
            "  {} {}: {} (limit {})",
            if c.pass { "pass" } else { "FAIL" },
            c.name,
            c.actual,
            c.limit
        );
    }
    println!("{}", if report.passed { "PASSED" } else { "FAILED" });
    Ok(report.passed)
}

/// The original `tesla` command: vehicles only, ack latency on the console.
async fn run_tesla(command: Command) -> anyhow::Result<()> {
    let Command::Tesla {
        target,
        pki,
        vehicles,
        interval_ms,
        duration_secs,
        warmup_secs,
        vin_prefix,
    } = command
    else {
        unreachable!("called with the tesla command")
    };
    ensure!(
        target.ip().is_loopback(),
        "load tests target loopback addresses only"
    );
    let pki = DevPki::load_or_create(&pki).context("reading the CA")?;
    let mut fleet = Fleet::new(FleetConfig {
        vehicles,
        id_prefix: vin_prefix,
        ..FleetConfig::default()
    });
    let (stop_tx, stop) = watch::channel(false);
    let stats = Arc::new(DriverStats::default());
    let drivers = Drivers::start(fleet.vehicle_ids(), &pki, target, 4, &stats, &stop)?;
    let interval = Duration::from_millis(interval_ms.max(10));
    let started = tokio::time::Instant::now();
    let end = started + Duration::from_secs(duration_secs);
    let (mut dropped, mut last_acked, mut last_report) = (0u64, 0u64, started);
    let warmed_up = started + Duration::from_secs(warmup_secs);
    let mut steady = None::<hdrhistogram::Histogram<u64>>;
    let mut ticker = tokio::time::interval(interval);
    ticker.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Skip);
    while tokio::time::Instant::now() < end {
        let tick = ticker.tick().await;
        dropped += drivers
            .send_tick(fleet.tick(chrono::Utc::now()), tick, interval)
            .await;
        if last_report.elapsed() >= Duration::from_secs(5) {
            let acked = stats.acked.load(Ordering::Relaxed);
            let window = stats.take_ack_latency();
            let (n, p50, p99, max) = ack_summary_ms(&window);
            if last_report >= warmed_up {
                match &mut steady {
                    Some(all) => all.add(&window).context("merging ack latencies")?,
                    None => steady = Some(window),
                }
            }
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
    drivers.finish().await;
    println!(
        "done: {} frames acked, {} connects, {} errors, {dropped} ticks skipped",
        stats.acked.load(Ordering::Relaxed),
        stats.connects.load(Ordering::Relaxed),
        stats.errors.load(Ordering::Relaxed)
    );
    if let Some(steady) = steady.filter(|h| !h.is_empty()) {
        let (n, p50, p99, max) = ack_summary_ms(&steady);
        println!("after the {warmup_secs} s warm-up: ack_ms p50={p50:.1} p99={p99:.1} max={max:.1} (n={n})");
    }
    Ok(())
}

/// `ack p50/p99/max …; e2e p50/p95/p99/max …` for the summary lines (`None`: e2e not
/// measured).
fn latencies(ack: &Percentiles, e2e: Option<&Percentiles>) -> String {
    let e2e = e2e.map_or_else(
        || "not measured".to_owned(),
        |e| {
            format!(
                "p50/p95/p99/max {:.1}/{:.1}/{:.1}/{:.1} ms",
                e.p50, e.p95, e.p99, e.max
            )
        },
    );
    format!(
        "ack p50/p99/max {:.1}/{:.1}/{:.1} ms; e2e {e2e}",
        ack.p50, ack.p99, ack.max
    )
}
