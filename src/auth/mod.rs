//! Authentication and authorization of the public API and the admin listener.
//!
//! - [`jwt`]: bearer JWTs (Cognito-shaped) checked against a JWKS ([`jwks`]) → [`Caller`]
//!   with a tenant and a [`Role`].
//! - [`tickets`]: short-lived SSE stream tickets for `EventSource`.
//! - [`admin`]: the platform-admin bearer secret of the admin listener.
//! - [`config`]: the `auth` config section.
//!
//! The actix-web side (extractors, 401/403 answers) is `src/http/auth.rs`.

pub mod admin;
pub mod api_keys;
pub mod config;
pub mod dev;
pub mod dev_setup;
pub mod jwks;
pub mod jwt;
pub mod roles;
pub mod tickets;

use std::time::Duration;

pub use admin::AdminCredential;
pub use config::AuthConfig;
pub use roles::{Caller, Role};

use jwks::{JwksSource, KeySet};
use jwt::JwtVerifier;
use tickets::TicketIssuer;
use tracing::info;

/// Why a request is not allowed.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum AuthError {
    /// No credential was presented (401).
    #[error("{0}")]
    Missing(String),
    /// The credential is not valid: bad signature, expired, wrong issuer or audience (401).
    #[error("{0}")]
    InvalidToken(String),
    /// A valid token that names no usable tenant (403).
    #[error("{0}")]
    NoTenant(String),
    /// Authenticated, but the role does not allow this (403).
    #[error("{0}")]
    Forbidden(String),
}

/// Everything the public API needs to authenticate callers.
pub struct Authenticator {
    /// Bearer JWTs.
    pub jwt: JwtVerifier,
    /// SSE stream tickets.
    pub tickets: TicketIssuer,
}

impl Authenticator {
    /// Loads the key set and builds the verifiers; fails (and the node does not start)
    /// when `[auth]` lacks a JWKS, an issuer or audiences, or the JWKS cannot be loaded.
    pub async fn start(config: &AuthConfig) -> anyhow::Result<Self> {
        let source = match (&config.jwks_file, &config.jwks_url) {
            (Some(file), None) => JwksSource::File(file.clone()),
            (None, Some(url)) => JwksSource::Url(url.clone()),
            _ => anyhow::bail!(
                "authentication is required: set auth.jwks_file or auth.jwks_url, auth.issuer and \
                 auth.audiences (docs/operations.md, Authentication)"
            ),
        };
        let keys = KeySet::load(
            source,
            Duration::from_secs(config.jwks_refresh_secs),
            Duration::from_secs(config.jwks_min_refetch_secs),
        )
        .await?;
        let jwt = JwtVerifier::new(config, keys).map_err(anyhow::Error::msg)?;
        let tickets = match &config.ticket_key {
            Some(key) => TicketIssuer::new(
                tickets::parse_key(key.expose()).map_err(anyhow::Error::msg)?,
                config.ticket_ttl_secs,
            ),
            None => {
                info!("auth.ticket_key is not set: stream tickets work only on the node that issued them.");
                TicketIssuer::random(config.ticket_ttl_secs)
            }
        };
        Ok(Self { jwt, tickets })
    }
}

/// Seconds since the Unix epoch.
pub fn now_secs() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_secs())
        .unwrap_or(0)
}
