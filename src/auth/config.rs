//! `[auth]`: how the public API authenticates callers.

use std::path::PathBuf;

use serde::{Deserialize, Serialize};

use crate::config::Secret;

/// Longest accepted clock skew for `exp` / `nbf` (seconds).
pub const MAX_LEEWAY_SECS: u64 = 300;
/// Longest stream-ticket lifetime (seconds): tickets travel in URLs, so they stay short.
pub const MAX_TICKET_TTL_SECS: u64 = 300;

/// `[auth]`. Production default: every public endpoint needs a credential; a node without
/// a JWKS (`jwks_file` or `jwks_url`), `issuer` and `audiences` refuses to start.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct AuthConfig {
    /// Expected `iss` claim, e.g. `https://cognito-idp.<region>.amazonaws.com/<pool id>`.
    pub issuer: Option<String>,
    /// Accepted `aud` (ID tokens) or `client_id` (Cognito access tokens) values: the app
    /// client ids allowed to call this API.
    pub audiences: Vec<String>,
    /// Accepted `token_use` values (Cognito: `access`, `id`). Non-empty: the claim is
    /// required and must be one of them; empty: not checked (other identity providers).
    pub token_use: Vec<String>,
    /// Claim holding the caller's tenant id. Default `custom:tenant_id`.
    pub tenant_claim: String,
    /// Claim holding the caller's groups (a list of strings); groups named like a role
    /// (`viewer`, `operator`, `tenant-admin`) grant it. Default `cognito:groups`.
    pub groups_claim: String,
    /// JWKS as a local JSON file (re-read when a token names an unknown key).
    pub jwks_file: Option<PathBuf>,
    /// JWKS URL (Cognito: `<issuer>/.well-known/jwks.json`); `https` unless loopback.
    pub jwks_url: Option<String>,
    /// The key set is fetched again after this many seconds. Default 3600.
    pub jwks_refresh_secs: u64,
    /// At most one extra fetch per this many seconds when a token names an unknown `kid`
    /// (key rotation), so junk tokens cannot make the node hammer the IdP. Default 30.
    pub jwks_min_refetch_secs: u64,
    /// Clock skew allowed on `exp` and `nbf` (seconds, at most 300). Default 60.
    pub leeway_secs: u64,
    /// Lifetime of SSE stream tickets (seconds, 10..=300). Default 60.
    pub ticket_ttl_secs: u64,
    /// HMAC key of stream tickets (hex, at least 32 bytes), shared by every node so a
    /// ticket from one node works on another. Unset: a random key per process (tickets
    /// then work only on the node that issued them). `FLEETWIRE_AUTH__TICKET_KEY`.
    pub ticket_key: Option<Secret>,
    /// Ingest requests per second each API key may make (sustained). Default 50.
    pub ingest_requests_per_sec: u32,
    /// Burst of ingest requests an API key may make at once. Default 100.
    pub ingest_burst: u32,
}

impl Default for AuthConfig {
    fn default() -> Self {
        Self {
            issuer: None,
            audiences: Vec::new(),
            token_use: vec!["access".to_owned(), "id".to_owned()],
            tenant_claim: "custom:tenant_id".to_owned(),
            groups_claim: "cognito:groups".to_owned(),
            jwks_file: None,
            jwks_url: None,
            jwks_refresh_secs: 3600,
            jwks_min_refetch_secs: 30,
            leeway_secs: 60,
            ticket_ttl_secs: 60,
            ticket_key: None,
            ingest_requests_per_sec: 50,
            ingest_burst: 100,
        }
    }
}

impl AuthConfig {
    /// Rules types cannot express; the missing-JWKS case is reported at node start
    /// (`Authenticator::start`), so shipped templates can leave it to the environment.
    pub fn problems(&self) -> Vec<String> {
        let mut problems = Vec::new();
        if self.jwks_file.is_some() && self.jwks_url.is_some() {
            problems.push("auth: set jwks_file or jwks_url, not both".to_owned());
        }
        if self.leeway_secs > MAX_LEEWAY_SECS {
            problems.push(format!("auth.leeway_secs must be at most {MAX_LEEWAY_SECS}"));
        }
        if !(10..=MAX_TICKET_TTL_SECS).contains(&self.ticket_ttl_secs) {
            problems.push(format!(
                "auth.ticket_ttl_secs must be 10 to {MAX_TICKET_TTL_SECS}"
            ));
        }
        if self.jwks_min_refetch_secs == 0 || self.jwks_refresh_secs < self.jwks_min_refetch_secs {
            problems.push(
                "auth.jwks_min_refetch_secs must be at least 1 and at most auth.jwks_refresh_secs".to_owned(),
            );
        }
        if let Some(key) = &self.ticket_key
            && let Err(e) = super::tickets::parse_key(key.expose())
        {
            problems.push(format!("auth.ticket_key: {e}"));
        }
        if self.ingest_requests_per_sec == 0 || self.ingest_burst == 0 {
            problems.push("auth.ingest_requests_per_sec and auth.ingest_burst must be at least 1".to_owned());
        }
        if self.tenant_claim.is_empty() || self.groups_claim.is_empty() {
            problems.push("auth.tenant_claim and auth.groups_claim must not be empty".to_owned());
        }
        problems
    }
}
