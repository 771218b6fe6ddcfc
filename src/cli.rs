//! Command line: `serve`, `demo`, `validate-config`, `tesla decode`.

use std::net::SocketAddr;
use std::path::PathBuf;

use clap::{Parser, Subcommand};

/// fleetwire: the real-time backbone of a connected-vehicle fleet.
#[derive(Debug, Parser)]
#[command(version, about)]
pub struct Cli {
    /// What to run.
    #[command(subcommand)]
    pub command: Command,
    /// Longest wait for in-flight records to be processed at shutdown, in seconds.
    #[arg(long, global = true, default_value_t = 30)]
    pub shutdown_limit_secs: u64,
}

/// Subcommands.
#[derive(Debug, Subcommand)]
pub enum Command {
    /// Run a node with the given configuration.
    Serve {
        /// TOML configuration file (see config/default.toml); repeat to layer files (later
        /// ones win); FLEETWIRE_* variables override them all.
        #[arg(long)]
        config: Vec<PathBuf>,
    },
    /// Run a node on embedded backends with a simulated fleet and the live page.
    Demo(DemoArgs),
    /// Check a configuration file and print the effective configuration.
    ValidateConfig {
        /// The file to check.
        file: PathBuf,
    },
    /// Tools for Tesla Fleet Telemetry traffic.
    #[command(subcommand)]
    Tesla(TeslaCommand),
    /// Development and staging only: write a signing key (JWKS), a config that trusts it
    /// and provisions unknown vehicles to `--tenant`, and tokens, into `--dir`.
    DevIssuer {
        /// Directory for jwks.json, fleetwire.toml and the *.token files.
        #[arg(long)]
        dir: PathBuf,
        /// Tenant of the tokens and of unknown vehicles.
        #[arg(long, default_value = "dev")]
        tenant: String,
        /// Lifetime of the tokens in seconds.
        #[arg(long, default_value_t = 12 * 3600)]
        ttl_secs: u64,
    },
}

/// `fleetwire tesla ...`
#[derive(Debug, Subcommand)]
pub enum TeslaCommand {
    /// Print captured frames (one WebSocket binary message per file) as JSON: envelope
    /// fields and the payload in protobuf's canonical JSON. Exits 1 if any frame is bad.
    Decode {
        /// Frame files.
        #[arg(required = true)]
        files: Vec<PathBuf>,
    },
}

/// Options of `fleetwire demo`.
#[derive(Debug, Clone, clap::Args)]
pub struct DemoArgs {
    /// Configuration file; the built-in defaults otherwise, except that trips end after a
    /// 30 s stop (instead of 300 s) so that the demo shows them end within minutes.
    #[arg(long)]
    pub config: Option<PathBuf>,
    /// Simulated vehicles.
    #[arg(long, default_value_t = 200)]
    pub vehicles: usize,
    /// Each vehicle reports every this many milliseconds.
    #[arg(long, default_value_t = 1000)]
    pub interval_ms: u64,
    /// Where state, leases and the stream are kept, so a restarted demo finds them again.
    #[arg(long, default_value = ".fleetwire-data", conflicts_with = "ephemeral")]
    pub data_dir: PathBuf,
    /// Keep everything in memory instead of `--data-dir`.
    #[arg(long)]
    pub ephemeral: bool,
    /// Public listener (page, API, SSE); overrides the config.
    #[arg(long)]
    pub listen: Option<SocketAddr>,
    /// Admin listener; overrides the config.
    #[arg(long)]
    pub admin_listen: Option<SocketAddr>,
    /// Stop by itself after this many seconds (0 = run until Ctrl-C).
    #[arg(long, default_value_t = 0)]
    pub duration_secs: u64,
    /// How the simulated vehicles send: as Tesla vehicles over mTLS WebSockets, or as
    /// JSON batches to `POST /v1/ingest`.
    #[arg(long, value_enum, default_value_t = DemoProtocol::Tesla)]
    pub protocol: DemoProtocol,
    /// Vehicle listener (Tesla protocol); overrides the config.
    #[arg(long)]
    pub vehicle_listen: Option<SocketAddr>,
}

/// How `demo`'s simulated vehicles send their data.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum DemoProtocol {
    /// Tesla Fleet Telemetry over mTLS WebSockets.
    Tesla,
    /// JSON batches over HTTP.
    Http,
}
