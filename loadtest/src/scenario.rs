//! Declarative scenarios: the TOML files in `loadtest/scenarios/`, command-line
//! overrides, and the bounds every run keeps (count and time).

use std::net::{IpAddr, SocketAddr, ToSocketAddrs as _};
use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};
use thiserror::Error;

/// Most simulated vehicles in one run.
pub const MAX_VEHICLES: usize = 200_000;
/// Most SSE subscribers in one run.
pub const MAX_SUBSCRIBERS: usize = 50_000;
/// Longest run, all stages together (the soak scenario's bound), seconds.
pub const MAX_RUN_SECS: u64 = 6 * 3600;
/// Highest per-vehicle rate, records per second.
pub const MAX_HZ: f64 = 1000.0;

/// A scenario file.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Scenario {
    /// Short name, used in report file names.
    pub name: String,
    /// What the scenario shows (printed and put in the report).
    #[serde(default)]
    pub description: String,
    /// Where to send load; usually given on the command line (`--target`).
    #[serde(default)]
    pub targets: Targets,
    /// The simulated vehicles.
    pub fleet: FleetLoad,
    /// The load over time, in order.
    pub stages: Vec<Stage>,
    /// SSE clients.
    #[serde(default)]
    pub subscribers: Subscribers,
    /// Everything reconnects within a window (vehicles and subscribers).
    #[serde(default)]
    pub reconnect: Option<Reconnect>,
    /// A command run mid-run, e.g. killing a consumer node.
    #[serde(default)]
    pub failover: Option<Failover>,
    /// What a run must meet; the exit code is non-zero otherwise.
    #[serde(default)]
    pub thresholds: Thresholds,
    /// Where the load saturates the target (for ramps): first one-second window that breaks
    /// these limits.
    #[serde(default)]
    pub knee: Option<Knee>,
    /// Credentials sent with every request.
    #[serde(default)]
    pub auth: Auth,
    /// After the last stage, how long subscribers may take to receive the last records.
    #[serde(default = "default_drain_secs")]
    pub drain_secs: u64,
    /// Seconds at the start of the load whose ack and end-to-end latencies the latency
    /// thresholds leave out: new vehicles are provisioned, connections opened and caches
    /// filled then, which is not the steady state a threshold such as "p99 < 500 ms in
    /// steady" is about. The report keeps the whole-run figures beside the steady ones,
    /// and loss, duplicates, errors and throughput always count the whole run. 0: none.
    #[serde(default)]
    pub warmup_secs: u64,
}

fn default_drain_secs() -> u64 {
    10
}

/// Target URLs. Several ingest or SSE URLs (one per node) are used round-robin.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Targets {
    /// `POST /v1/ingest` URLs.
    #[serde(default)]
    pub ingest: Vec<String>,
    /// `GET /v1/stream` URLs.
    #[serde(default)]
    pub sse: Vec<String>,
    /// Vehicle listener (`host:port`, Tesla protocol).
    #[serde(default)]
    pub tesla: Option<String>,
    /// Folder with the CA the vehicle listener trusts (`ca.pem`, `ca-key.pem`).
    #[serde(default)]
    pub pki: Option<PathBuf>,
    /// Prometheus `/metrics` URLs of the target processes (admin port), sampled for CPU
    /// and memory.
    #[serde(default)]
    pub metrics: Vec<String>,
}

/// How vehicles send.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, clap::ValueEnum)]
#[serde(rename_all = "snake_case")]
pub enum Protocol {
    /// JSON batches to `POST /v1/ingest`.
    Http,
    /// Tesla Fleet Telemetry frames over mTLS WebSockets, one connection per vehicle.
    Tesla,
}

/// What each record carries besides the load-test signals.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum PayloadMix {
    /// The simulated fleet's changed signals plus a full resend every 60 s (as `demo`).
    Fleet,
    /// Only the load-test signals: measures the pipeline, not JSON size.
    Minimal,
}

/// The simulated vehicles.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct FleetLoad {
    /// Number of vehicles.
    pub vehicles: usize,
    /// How they send.
    #[serde(default = "default_protocol")]
    pub protocol: Protocol,
    /// Records per `POST /v1/ingest` (HTTP).
    #[serde(default = "default_batch_size")]
    pub batch_size: usize,
    /// Concurrent HTTP senders; each owns a slice of the fleet and keeps one request in
    /// flight, so every vehicle's records arrive in order.
    #[serde(default = "default_connections")]
    pub connections: usize,
    /// Payload of each record.
    #[serde(default = "default_payload")]
    pub payload: PayloadMix,
    /// Seed of the simulated fleet.
    #[serde(default = "default_seed")]
    pub seed: u64,
}

fn default_protocol() -> Protocol {
    Protocol::Http
}
fn default_batch_size() -> usize {
    100
}
fn default_connections() -> usize {
    8
}
fn default_payload() -> PayloadMix {
    PayloadMix::Fleet
}
fn default_seed() -> u64 {
    42
}

/// A stretch of the run at one rate, or ramping linearly from `from_hz` to `hz`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Stage {
    /// Length, seconds.
    pub secs: u64,
    /// Records per vehicle per second (at the end of a ramp).
    pub hz: f64,
    /// Ramp start; the stage holds `hz` when absent.
    #[serde(default)]
    pub from_hz: Option<f64>,
}

/// SSE clients.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Subscribers {
    /// Number of clients.
    #[serde(default)]
    pub count: usize,
    /// Clients connect spread over this many seconds before the load starts.
    #[serde(default = "default_connect_secs")]
    pub connect_secs: u64,
    /// `signals=` filter; empty = the full stream, as the live page reads it.
    #[serde(default)]
    pub signals: Vec<String>,
    /// Each client follows this many vehicles (`vehicles=` filter, spread round-robin
    /// over the fleet), like an app that tracks one car; 0 = the whole fleet.
    #[serde(default)]
    pub vehicles_each: usize,
    /// 0: HTTP/1.1, a connection per client, as a browser without HTTP/2 opens one. N > 0:
    /// HTTP/2 without TLS (prior knowledge; the target needs `http.h2c = true`), the
    /// clients spread over N connections, so one machine can hold more clients than its
    /// open-file limit allows connections.
    #[serde(default)]
    pub h2c_connections: usize,
}

fn default_connect_secs() -> u64 {
    2
}

impl Default for Subscribers {
    fn default() -> Self {
        Self {
            count: 0,
            connect_secs: default_connect_secs(),
            signals: Vec::new(),
            vehicles_each: 0,
            h2c_connections: 0,
        }
    }
}

/// Every vehicle connection and subscriber reconnects within a window.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Reconnect {
    /// When the storm starts, seconds after the load starts.
    pub at_secs: u64,
    /// Reconnects are spread over this window.
    pub window_secs: u64,
}

/// A command run at a point of the run (e.g. `kill -9 <pid of a consumer node>`).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Failover {
    /// When, seconds after the load starts.
    pub at_secs: u64,
    /// Program and arguments (no shell unless you name one).
    pub command: Vec<String>,
}

/// Pass/fail limits of a run.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Thresholds {
    /// Records lost (never applied, or never delivered to a subscriber).
    #[serde(default)]
    pub max_loss: u64,
    /// Duplicate events and double applications.
    #[serde(default)]
    pub max_duplicates: u64,
    /// `reset` events; no limit when absent.
    #[serde(default)]
    pub max_resets: Option<u64>,
    /// Failed requests / frames over all attempts.
    #[serde(default = "default_error_ratio")]
    pub max_error_ratio: f64,
    /// Record → subscriber latency, 99th percentile, ms.
    #[serde(default)]
    pub e2e_p99_ms: Option<f64>,
    /// Send → ack latency (HTTP response or Tesla ack), 99th percentile, ms.
    #[serde(default)]
    pub ack_p99_ms: Option<f64>,
    /// Accepted records per second over the whole run.
    #[serde(default)]
    pub min_throughput: Option<f64>,
}

fn default_error_ratio() -> f64 {
    0.01
}

impl Default for Thresholds {
    fn default() -> Self {
        Self {
            max_loss: 0,
            max_duplicates: 0,
            max_resets: None,
            max_error_ratio: default_error_ratio(),
            e2e_p99_ms: None,
            ack_p99_ms: None,
            min_throughput: None,
        }
    }
}

/// Limits that define saturation for the knee.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Knee {
    /// Window e2e p99 above this, ms.
    #[serde(default)]
    pub e2e_p99_ms: Option<f64>,
    /// Window ack p99 above this, ms.
    #[serde(default)]
    pub ack_p99_ms: Option<f64>,
    /// Window errors / attempts above this.
    #[serde(default = "default_error_ratio")]
    pub max_error_ratio: f64,
    /// Accepted / offered below this (the senders cannot keep up).
    #[serde(default = "default_min_delivered")]
    pub min_accepted_ratio: f64,
    /// Windows in a row that must break a limit.
    #[serde(default = "default_knee_windows")]
    pub windows: usize,
    /// Stop the run this many seconds after the knee (0: run every stage).
    #[serde(default)]
    pub stop_after_secs: u64,
}

fn default_min_delivered() -> f64 {
    0.9
}
fn default_knee_windows() -> usize {
    3
}

/// Credentials. Serialized as `"<redacted>"` (the scenario is copied into every report),
/// and left out of `Debug`, so a report or a log line never carries a usable secret.
#[derive(Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Auth {
    /// Sent as `Authorization: Bearer <token>` on SSE requests.
    #[serde(default, serialize_with = "redacted")]
    pub bearer_token: Option<String>,
    /// Sent as `X-Api-Key` on ingest requests.
    #[serde(default, serialize_with = "redacted")]
    pub api_key: Option<String>,
    /// Sent as `Authorization: Bearer <token>` to the targets' `/metrics` (fleetwire's
    /// platform-admin token).
    #[serde(default, serialize_with = "redacted")]
    pub admin_token: Option<String>,
}

impl std::fmt::Debug for Auth {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Auth")
            .field("bearer_token", &self.bearer_token.as_ref().map(|_| "<redacted>"))
            .field("api_key", &self.api_key.as_ref().map(|_| "<redacted>"))
            .field("admin_token", &self.admin_token.as_ref().map(|_| "<redacted>"))
            .finish()
    }
}

/// Writes whether a secret is set, never the secret.
fn redacted<S: serde::Serializer>(secret: &Option<String>, s: S) -> Result<S::Ok, S::Error> {
    match secret {
        Some(_) => s.serialize_str("<redacted>"),
        None => s.serialize_none(),
    }
}

/// A scenario that cannot run.
#[derive(Debug, Error)]
pub enum ScenarioError {
    /// The file could not be read.
    #[error("reading {path}: {source}")]
    Read {
        /// The file.
        path: PathBuf,
        /// Why.
        source: std::io::Error,
    },
    /// The file is not a valid scenario.
    #[error("{path}: {source}")]
    Parse {
        /// The file.
        path: PathBuf,
        /// Why.
        source: Box<toml::de::Error>,
    },
    /// Values that cannot work; each names its key.
    #[error("invalid scenario: {}", .0.join("; "))]
    Invalid(Vec<String>),
}

impl Scenario {
    /// Reads and parses a scenario file (not yet validated: apply overrides first).
    pub fn load(path: &Path) -> Result<Self, ScenarioError> {
        let text = std::fs::read_to_string(path).map_err(|source| ScenarioError::Read {
            path: path.to_owned(),
            source,
        })?;
        toml::from_str(&text).map_err(|source| ScenarioError::Parse {
            path: path.to_owned(),
            source: Box::new(source),
        })
    }

    /// Length of the load (all stages), seconds.
    pub fn load_secs(&self) -> u64 {
        self.stages.iter().map(|s| s.secs).sum()
    }

    /// Per-vehicle rate `t` seconds after the load starts; `None` after the last stage.
    pub fn hz_at(&self, t: f64) -> Option<f64> {
        let mut start = 0.0;
        for stage in &self.stages {
            let end = start + stage.secs as f64;
            if t < end {
                let from = stage.from_hz.unwrap_or(stage.hz);
                let f = (t - start) / stage.secs as f64;
                return Some(from + (stage.hz - from) * f);
            }
            start = end;
        }
        None
    }

    /// Scales every stage so the load lasts `secs` in total (for short CI runs).
    pub fn set_load_secs(&mut self, secs: u64) {
        let total = self.load_secs().max(1) as f64;
        for stage in &mut self.stages {
            stage.secs = ((stage.secs as f64 * secs as f64 / total).round() as u64).max(1);
        }
    }

    /// Multiplies every stage's rate.
    pub fn scale_rate(&mut self, factor: f64) {
        for stage in &mut self.stages {
            stage.hz *= factor;
            if let Some(from) = &mut stage.from_hz {
                *from *= factor;
            }
        }
    }

    /// Checks bounds and targets; `allow_remote` permits non-loopback targets.
    pub fn validate(&self, allow_remote: bool) -> Result<(), ScenarioError> {
        let mut problems = Vec::new();
        let f = &self.fleet;
        if f.vehicles == 0 || f.vehicles > MAX_VEHICLES {
            problems.push(format!("fleet.vehicles must be 1..={MAX_VEHICLES}"));
        }
        if !(1..=1000).contains(&f.batch_size) {
            problems
                .push("fleet.batch_size must be 1..=1000 (the server's default max_batch_records)".into());
        }
        if !(1..=1024).contains(&f.connections) {
            problems.push("fleet.connections must be 1..=1024".into());
        }
        if self.stages.is_empty() {
            problems.push("stages: at least one stage".into());
        }
        for (i, s) in self.stages.iter().enumerate() {
            for hz in std::iter::once(s.hz).chain(s.from_hz) {
                if !(hz.is_finite() && hz > 0.0 && hz <= MAX_HZ) {
                    problems.push(format!("stages[{i}]: rates must be in (0, {MAX_HZ}] per vehicle"));
                }
            }
        }
        let total = self.load_secs() + self.drain_secs + self.subscribers.connect_secs;
        if total > MAX_RUN_SECS || self.load_secs() == 0 {
            problems.push(format!(
                "the run (stages + drain + connect) must last 1..={MAX_RUN_SECS} s"
            ));
        }
        if self.subscribers.count > MAX_SUBSCRIBERS {
            problems.push(format!("subscribers.count must be at most {MAX_SUBSCRIBERS}"));
        }
        if self.drain_secs > 600 {
            problems.push("drain_secs must be at most 600".into());
        }
        if self.warmup_secs > 0 && self.warmup_secs >= self.load_secs() {
            problems.push("warmup_secs must end before the load does".into());
        }
        if let Some(r) = &self.reconnect
            && (r.window_secs == 0 || r.at_secs >= self.load_secs())
        {
            problems.push("reconnect: window_secs ≥ 1 and at_secs within the load".into());
        }
        if let Some(fo) = &self.failover
            && (fo.command.is_empty() || fo.at_secs >= self.load_secs())
        {
            problems.push("failover: a command and at_secs within the load".into());
        }
        let t = &self.targets;
        match f.protocol {
            Protocol::Http if t.ingest.is_empty() => {
                problems.push("targets.ingest: no ingest URL (give --target)".into())
            }
            Protocol::Tesla if t.tesla.is_none() || t.pki.is_none() => {
                problems.push("targets.tesla and targets.pki are needed for protocol = \"tesla\"".into())
            }
            _ => {}
        }
        if self.subscribers.count > 0 && t.sse.is_empty() {
            problems.push("targets.sse: no SSE URL (give --target)".into());
        }
        for url in t.ingest.iter().chain(&t.sse).chain(&t.metrics) {
            if let Err(e) = check_url(url, allow_remote) {
                problems.push(e);
            }
        }
        if let Some(addr) = &t.tesla
            && let Err(e) = check_host(addr, allow_remote)
        {
            problems.push(e);
        }
        if problems.is_empty() {
            Ok(())
        } else {
            Err(ScenarioError::Invalid(problems))
        }
    }
}

/// An `http://host:port/...` URL whose host is loopback unless `allow_remote`.
fn check_url(url: &str, allow_remote: bool) -> Result<(), String> {
    let rest = url
        .strip_prefix("http://")
        .ok_or_else(|| format!("{url}: only http:// URLs are supported"))?;
    let authority = rest.split('/').next().unwrap_or_default();
    let with_port = if authority
        .rsplit_once(':')
        .is_some_and(|(_, p)| p.parse::<u16>().is_ok())
    {
        authority.to_owned()
    } else {
        format!("{authority}:80")
    };
    check_host(&with_port, allow_remote).map_err(|e| format!("{url}: {e}"))
}

/// A `host:port` that resolves to loopback addresses only, unless `allow_remote`.
fn check_host(addr: &str, allow_remote: bool) -> Result<(), String> {
    if allow_remote {
        return Ok(());
    }
    let resolved: Vec<SocketAddr> = addr
        .to_socket_addrs()
        .map_err(|e| format!("{addr}: {e}"))?
        .collect();
    if resolved.is_empty()
        || !resolved
            .iter()
            .map(SocketAddr::ip)
            .all(|ip: IpAddr| ip.is_loopback())
    {
        return Err(format!(
            "{addr} is not a loopback address (pass --allow-remote to load another machine)"
        ));
    }
    Ok(())
}

#[cfg(test)]
mod tests;
