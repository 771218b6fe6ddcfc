//! The vehicle side of Tesla's Fleet Telemetry protocol: the mTLS WebSocket listener
//! (`listener.rs`), its TLS setup (`tls.rs`), the stream sink the connections put
//! records through (`sink.rs`) and the `fleetwire tesla decode` tool (`decode.rs`). The
//! development PKI of `demo` and the tests, and the simulated vehicles' client, live in
//! the loadtest crate (`fleetwire_loadtest::pki`, `fleetwire_loadtest::tesla`).
//!
//! Frame rules live in `fleetwire_actors::tesla` (pure) and the per-connection actor in
//! `fleetwire_actors::connection`. The wire format, ack rules and limits are described in
//! `docs/protocol.md`.

pub mod decode;
mod listener;
mod sink;
pub mod tls;

use std::net::SocketAddr;
use std::path::PathBuf;

use fleetwire_actors::connection::ConnectionConfig;
use serde::{Deserialize, Serialize};

pub use listener::TeslaListener;
pub use sink::StreamSink;

/// Largest WebSocket message read from a vehicle. Frames over Tesla's limit of
/// 1,000,000 bytes up to this size get Tesla's error reply and the connection stays
/// open; anything larger closes the connection before it is buffered whole.
pub const MAX_WEBSOCKET_MESSAGE_BYTES: usize = 4 << 20;

/// `[tesla]`: the listener vehicles connect to.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct TeslaConfig {
    /// Whether the listener runs. Default `false` (`demo` turns it on).
    pub enabled: bool,
    /// Address of the TLS WebSocket listener. Default `127.0.0.1:8443`.
    pub listen: SocketAddr,
    /// Server certificate chain (PEM). Required when enabled.
    pub server_cert_file: Option<PathBuf>,
    /// The server certificate's private key (PEM). Required when enabled.
    pub server_key_file: Option<PathBuf>,
    /// CA bundles (PEM) that vehicle certificates may chain to (your own CA, or a Tesla
    /// bundle you manage yourself). With `trust_tesla_vehicle_ca` off, at least one when
    /// enabled.
    pub client_ca_files: Vec<PathBuf>,
    /// Also trust Tesla's published vehicle CA bundle, compiled into fleetwire
    /// (`config/tesla/vehicle-ca.pem`): what real Tesla vehicles chain to. Default `false`.
    pub trust_tesla_vehicle_ca: bool,
    /// Most vehicles connected to this node; further connections are closed right after
    /// the TCP accept (the load balancer retries another node). Default 20,000.
    pub max_connections: usize,
    /// Longest TLS + WebSocket handshake. Default 10 s.
    pub handshake_timeout_ms: u64,
    /// Threads (actix arbiters) running connections; 0 = one per CPU. Default 0.
    pub workers: usize,
    /// How each connection behaves.
    pub connection: ConnectionConfig,
}

impl Default for TeslaConfig {
    fn default() -> Self {
        Self {
            enabled: false,
            listen: "127.0.0.1:8443".parse().expect("valid address"),
            server_cert_file: None,
            server_key_file: None,
            client_ca_files: Vec::new(),
            trust_tesla_vehicle_ca: false,
            max_connections: 20_000,
            handshake_timeout_ms: 10_000,
            workers: 0,
            connection: ConnectionConfig::default(),
        }
    }
}

impl TeslaConfig {
    /// Problems with the values, one line each.
    pub fn problems(&self) -> Vec<String> {
        let mut problems = self.connection.problems();
        if self.enabled {
            if self.server_cert_file.is_none() || self.server_key_file.is_none() {
                problems.push("tesla.server_cert_file and tesla.server_key_file are required".to_owned());
            }
            if self.client_ca_files.is_empty() && !self.trust_tesla_vehicle_ca {
                problems.push(
                    "tesla.client_ca_files must name a CA bundle, or tesla.trust_tesla_vehicle_ca be true"
                        .to_owned(),
                );
            }
        }
        if self.max_connections == 0 {
            problems.push("tesla.max_connections must be at least 1".to_owned());
        }
        problems
    }
}
