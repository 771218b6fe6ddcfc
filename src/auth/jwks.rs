//! The signing keys tokens are checked against: a JWKS from a file or a URL, cached,
//! refreshed after `jwks_refresh_secs`, and fetched again (at most once per
//! `jwks_min_refetch_secs`) when a token names a key id the cache does not know — which is
//! how a rotation at the identity provider reaches the node.
//!
//! Only RSA keys (RS256) and P-256 keys (ES256) are kept; symmetric (`oct`) keys are
//! dropped at load, so a token can never be checked with a shared secret (no HMAC
//! confusion, whatever its header says).

use std::collections::HashMap;
use std::path::PathBuf;
use std::sync::{Arc, RwLock};
use std::time::{Duration, Instant};

use jsonwebtoken::jwk::{AlgorithmParameters, EllipticCurve, Jwk, JwkSet, KeyAlgorithm, PublicKeyUse};
use jsonwebtoken::{Algorithm, DecodingKey};
use tracing::{info, warn};

/// Largest JWKS document accepted (Cognito's is about 1 KiB).
const MAX_JWKS_BYTES: usize = 256 * 1024;

/// Where the key set comes from.
#[derive(Debug, Clone)]
pub enum JwksSource {
    /// A local JSON file.
    File(PathBuf),
    /// An `https` URL (or `http` on loopback, for tests and the demo).
    Url(String),
}

/// A key a token may be signed with.
pub struct VerifyKey {
    /// The one algorithm this key verifies.
    pub alg: Algorithm,
    /// The public key.
    pub key: DecodingKey,
}

/// Why the key set could not be loaded.
#[derive(Debug, thiserror::Error)]
pub enum JwksError {
    /// Reading or fetching failed.
    #[error("cannot load the JWKS from {source_name}: {message}")]
    Load {
        /// The file or URL.
        source_name: String,
        /// What went wrong.
        message: String,
    },
}

struct Cached {
    keys: HashMap<String, Arc<VerifyKey>>,
    loaded_at: Instant,
}

/// The cached key set. Cheap lookups under a read lock; fetches are serialized.
pub struct KeySet {
    source: JwksSource,
    client: Option<reqwest::Client>,
    cached: RwLock<Cached>,
    /// When the last fetch was attempted (successful or not); guards the refetch rate.
    fetch: tokio::sync::Mutex<Instant>,
    refresh_after: Duration,
    min_refetch: Duration,
}

impl KeySet {
    /// Loads the key set once; a node without usable keys does not start.
    pub async fn load(
        source: JwksSource,
        refresh_after: Duration,
        min_refetch: Duration,
    ) -> Result<Self, JwksError> {
        let client = match &source {
            JwksSource::Url(url) => Some(http_client(url)?),
            JwksSource::File(_) => None,
        };
        let keys = fetch(&source, client.as_ref()).await?;
        if keys.is_empty() {
            return Err(JwksError::Load {
                source_name: source_name(&source),
                message: "no RS256 or ES256 signing key with a kid in it".to_owned(),
            });
        }
        info!(source = %source_name(&source), keys = keys.len(), "JWKS loaded.");
        let now = Instant::now();
        Ok(Self {
            source,
            client,
            cached: RwLock::new(Cached { keys, loaded_at: now }),
            fetch: tokio::sync::Mutex::new(now),
            refresh_after,
            min_refetch,
        })
    }

    /// The key with id `kid`. A miss, or a stale cache, triggers a fetch unless one was
    /// attempted within `min_refetch`; a failed fetch keeps the keys already known.
    pub async fn get(&self, kid: &str) -> Option<Arc<VerifyKey>> {
        let (hit, stale) = {
            let cached = self.cached.read().unwrap_or_else(|e| e.into_inner());
            (
                cached.keys.get(kid).cloned(),
                cached.loaded_at.elapsed() >= self.refresh_after,
            )
        };
        if hit.is_some() && !stale {
            return hit;
        }
        self.refetch().await;
        let cached = self.cached.read().unwrap_or_else(|e| e.into_inner());
        cached.keys.get(kid).cloned()
    }

    async fn refetch(&self) {
        let mut last = self.fetch.lock().await;
        if last.elapsed() < self.min_refetch {
            return;
        }
        *last = Instant::now();
        match fetch(&self.source, self.client.as_ref()).await {
            Ok(keys) if !keys.is_empty() => {
                info!(keys = keys.len(), "JWKS refreshed.");
                let mut cached = self.cached.write().unwrap_or_else(|e| e.into_inner());
                *cached = Cached {
                    keys,
                    loaded_at: Instant::now(),
                };
            }
            Ok(_) => warn!("JWKS refresh returned no usable key; keeping the previous keys."),
            Err(e) => warn!(error = %e, "JWKS refresh failed; keeping the previous keys."),
        }
    }
}

fn source_name(source: &JwksSource) -> String {
    match source {
        JwksSource::File(path) => path.display().to_string(),
        JwksSource::Url(url) => url.clone(),
    }
}

fn http_client(url: &str) -> Result<reqwest::Client, JwksError> {
    let error = |message: String| JwksError::Load {
        source_name: url.to_owned(),
        message,
    };
    let parsed = reqwest::Url::parse(url).map_err(|e| error(e.to_string()))?;
    let host = parsed
        .host_str()
        .unwrap_or("")
        .trim_start_matches('[')
        .trim_end_matches(']');
    let loopback = host == "localhost" || host.parse::<std::net::IpAddr>().is_ok_and(|ip| ip.is_loopback());
    if parsed.scheme() != "https" && !(parsed.scheme() == "http" && loopback) {
        return Err(error("must be https (plain http only on loopback)".to_owned()));
    }
    crate::install_crypto_provider();
    reqwest::Client::builder()
        .timeout(Duration::from_secs(5))
        .redirect(reqwest::redirect::Policy::none())
        .build()
        .map_err(|e| error(e.to_string()))
}

async fn fetch(
    source: &JwksSource,
    client: Option<&reqwest::Client>,
) -> Result<HashMap<String, Arc<VerifyKey>>, JwksError> {
    let error = |message: String| JwksError::Load {
        source_name: source_name(source),
        message,
    };
    let bytes = match (source, client) {
        (JwksSource::File(path), _) => tokio::fs::read(path).await.map_err(|e| error(e.to_string()))?,
        (JwksSource::Url(url), Some(client)) => {
            let response = client.get(url).send().await.map_err(|e| error(e.to_string()))?;
            if !response.status().is_success() {
                return Err(error(format!("answered {}", response.status())));
            }
            let bytes = response.bytes().await.map_err(|e| error(e.to_string()))?;
            bytes.to_vec()
        }
        (JwksSource::Url(_), None) => return Err(error("no HTTP client".to_owned())),
    };
    if bytes.len() > MAX_JWKS_BYTES {
        return Err(error(format!("larger than {MAX_JWKS_BYTES} bytes")));
    }
    let set: JwkSet = serde_json::from_slice(&bytes).map_err(|e| error(format!("not a JWKS: {e}")))?;
    Ok(usable_keys(&set))
}

/// The signing keys of `set` that fleetwire accepts, by kid.
pub fn usable_keys(set: &JwkSet) -> HashMap<String, Arc<VerifyKey>> {
    set.keys
        .iter()
        .filter_map(|jwk| {
            let kid = jwk.common.key_id.clone()?;
            let key = verify_key(jwk)?;
            Some((kid, Arc::new(key)))
        })
        .collect()
}

fn verify_key(jwk: &Jwk) -> Option<VerifyKey> {
    if matches!(jwk.common.public_key_use, Some(ref u) if *u != PublicKeyUse::Signature) {
        return None;
    }
    let alg = match &jwk.algorithm {
        AlgorithmParameters::RSA(_) => Algorithm::RS256,
        AlgorithmParameters::EllipticCurve(ec) if ec.curve == EllipticCurve::P256 => Algorithm::ES256,
        // Symmetric and other key types are never used to verify.
        _ => return None,
    };
    // A JWK that pins an algorithm must pin the one its key type implies.
    match jwk.common.key_algorithm {
        None | Some(KeyAlgorithm::RS256) if alg == Algorithm::RS256 => {}
        None | Some(KeyAlgorithm::ES256) if alg == Algorithm::ES256 => {}
        _ => return None,
    }
    let key = DecodingKey::from_jwk(jwk).ok()?;
    Some(VerifyKey { alg, key })
}
