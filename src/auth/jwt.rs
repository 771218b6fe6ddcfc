//! Bearer JWT verification, Cognito-shaped: signature by a JWKS key (RS256 or ES256
//! only), `iss`, `aud` or `client_id`, `token_use`, `exp`/`nbf` within the leeway, then the
//! tenant and groups claims become a [`Caller`].

use std::collections::HashSet;

use fleetwire_actors::model::TenantId;
use jsonwebtoken::{Algorithm, Validation, errors::ErrorKind};
use serde_json::{Map, Value};

use super::config::AuthConfig;
use super::jwks::KeySet;
use super::{AuthError, Caller, Role};

/// Checks bearer tokens against a key set and the configured claims.
pub struct JwtVerifier {
    keys: KeySet,
    issuer: String,
    audiences: HashSet<String>,
    token_use: Vec<String>,
    tenant_claim: String,
    groups_claim: String,
    leeway_secs: u64,
}

impl JwtVerifier {
    /// A verifier for `config` (whose `issuer` and `audiences` must be set) over `keys`.
    pub fn new(config: &AuthConfig, keys: KeySet) -> Result<Self, String> {
        let issuer = config
            .issuer
            .clone()
            .filter(|i| !i.is_empty())
            .ok_or("auth.issuer must be set")?;
        if config.audiences.is_empty() {
            return Err("auth.audiences must name at least one app client id".to_owned());
        }
        Ok(Self {
            keys,
            issuer,
            audiences: config.audiences.iter().cloned().collect(),
            token_use: config.token_use.clone(),
            tenant_claim: config.tenant_claim.clone(),
            groups_claim: config.groups_claim.clone(),
            leeway_secs: config.leeway_secs,
        })
    }

    /// The caller a token proves, or why it proves nothing.
    pub async fn verify(&self, token: &str) -> Result<Caller, AuthError> {
        let header = jsonwebtoken::decode_header(token)
            .map_err(|e| AuthError::InvalidToken(format!("malformed token: {e}")))?;
        // Checked before any key is touched: `none`, HS*, PS*, EdDSA never get further.
        if !matches!(header.alg, Algorithm::RS256 | Algorithm::ES256) {
            return Err(AuthError::InvalidToken(format!(
                "algorithm {:?} is not accepted (RS256 or ES256 only)",
                header.alg
            )));
        }
        let kid = header
            .kid
            .ok_or_else(|| AuthError::InvalidToken("token has no kid".to_owned()))?;
        let key = self
            .keys
            .get(&kid)
            .await
            .ok_or_else(|| AuthError::InvalidToken(format!("unknown signing key {kid:?}")))?;
        if key.alg != header.alg {
            return Err(AuthError::InvalidToken(format!(
                "key {kid:?} is for {:?}, not {:?}",
                key.alg, header.alg
            )));
        }
        let mut validation = Validation::new(key.alg);
        validation.leeway = self.leeway_secs;
        validation.validate_nbf = true;
        validation.set_issuer(&[&self.issuer]);
        validation.set_required_spec_claims(&["exp", "iss", "sub"]);
        // Cognito access tokens carry `client_id` instead of `aud`: checked below.
        validation.validate_aud = false;
        let data = jsonwebtoken::decode::<Map<String, Value>>(token, &key.key, &validation).map_err(|e| {
            AuthError::InvalidToken(match e.kind() {
                ErrorKind::ExpiredSignature => "token expired".to_owned(),
                ErrorKind::ImmatureSignature => "token not valid yet (nbf)".to_owned(),
                ErrorKind::InvalidIssuer => "wrong issuer".to_owned(),
                ErrorKind::InvalidSignature => "bad signature".to_owned(),
                ErrorKind::MissingRequiredClaim(c) => format!("token lacks the {c} claim"),
                _ => format!("invalid token: {e}"),
            })
        })?;
        self.caller(&data.claims)
    }

    fn caller(&self, claims: &Map<String, Value>) -> Result<Caller, AuthError> {
        let audience_ok = match claims.get("aud") {
            Some(Value::String(a)) => self.audiences.contains(a),
            Some(Value::Array(list)) => list
                .iter()
                .any(|a| a.as_str().is_some_and(|a| self.audiences.contains(a))),
            _ => claims
                .get("client_id")
                .and_then(Value::as_str)
                .is_some_and(|c| self.audiences.contains(c)),
        };
        if !audience_ok {
            return Err(AuthError::InvalidToken("wrong audience".to_owned()));
        }
        if !self.token_use.is_empty() {
            let token_use = claims.get("token_use").and_then(Value::as_str);
            if !token_use.is_some_and(|u| self.token_use.iter().any(|a| a == u)) {
                return Err(AuthError::InvalidToken(format!(
                    "token_use must be one of {:?}",
                    self.token_use
                )));
            }
        }
        let subject = claims
            .get("sub")
            .and_then(Value::as_str)
            .unwrap_or_default()
            .to_owned();
        let expires_at = claims.get("exp").and_then(Value::as_u64).unwrap_or(0);
        let tenant = claims
            .get(&self.tenant_claim)
            .and_then(Value::as_str)
            .ok_or_else(|| AuthError::NoTenant(format!("the token has no {} claim", self.tenant_claim)))
            .and_then(|raw| {
                TenantId::parse(raw).map_err(|e| AuthError::NoTenant(format!("{}: {e}", self.tenant_claim)))
            })?;
        let role = match claims.get(&self.groups_claim) {
            Some(Value::Array(groups)) => groups
                .iter()
                .filter_map(Value::as_str)
                .filter_map(Role::from_group)
                .max(),
            _ => None,
        };
        Ok(Caller {
            tenant,
            subject,
            role,
            expires_at,
        })
    }
}
