//! fleetwire: the real-time backbone of a connected-vehicle fleet.
//!
//! # Layout
//!
//! - [`auth`]: JWT (JWKS) verification, roles, stream tickets, the admin credential.
//! - [`cli`]: the command line (`serve`, `demo`, `validate-config`, `tesla decode`).
//! - [`config`]: typed configuration (TOML + `FLEETWIRE_*` environment overrides).
//! - [`node`]: builds the ports, starts actors and listeners, shuts down in order.
//! - [`http`]: the public API (ingest, REST, SSE, page) and the admin API.
//! - [`ingest`]: batch validation and puts onto the stream.
//! - [`backends`]: implementations of the ports (embedded now; AWS and Redis later).
//! - [`tesla`]: the vehicle listener (Tesla Fleet Telemetry over mTLS WebSocket), its
//!   development PKI and the `tesla decode` tool.
//! - [`demo`]: the simulated fleet driving a node.
//! - [`observability`]: logs and metrics.
//!
//! The actors, their state machines and the port traits live in the `fleetwire-actors`
//! crate (`actors/`); `docs/ARCHITECTURE.md` walks a record through all of it.

pub mod auth;
pub mod backends;
pub mod cli;
pub mod config;
pub mod demo;
pub mod http;
pub mod ingest;
pub mod node;
pub mod observability;
pub mod tesla;
pub mod vault;

/// Installs aws-lc-rs as the process's rustls crypto provider (idempotent). rustls is built
/// with that provider only, but HTTP clients built without a provider of their own
/// (reqwest's `*-no-provider` features) look up the process default and panic without one.
pub fn install_crypto_provider() {
    let _ = rustls::crypto::aws_lc_rs::default_provider().install_default();
}
