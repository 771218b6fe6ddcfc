//! A development token issuer: generates its own signing keys, publishes them as a JWKS
//! file, and signs Cognito-shaped tokens. `demo` uses it so authentication stays on
//! without an identity provider; the black-box tests use it to act as any caller.
//! Never part of a production node: nothing in `serve` constructs it.

use std::path::Path;

use jsonwebtoken::jwk::{Jwk, JwkSet};
use jsonwebtoken::{Algorithm, EncodingKey, Header};
use serde_json::{Value, json};

use super::config::AuthConfig;
use super::{Role, now_secs};
use fleetwire_actors::model::TenantId;

/// Writes a private key readable by the owner only.
fn write_private(path: &Path, bytes: &[u8]) -> anyhow::Result<()> {
    use std::io::Write as _;
    use std::os::unix::fs::OpenOptionsExt as _;
    let mut file = std::fs::OpenOptions::new()
        .write(true)
        .create(true)
        .truncate(true)
        .mode(0o600)
        .open(path)?;
    file.write_all(bytes)?;
    Ok(())
}

struct SigningKey {
    kid: String,
    alg: Algorithm,
    key: EncodingKey,
    jwk: Jwk,
}

/// Signs tokens with keys it generated.
pub struct DevIssuer {
    /// The `iss` of its tokens.
    pub issuer: String,
    /// The `client_id` / `aud` of its tokens.
    pub audience: String,
    keys: Vec<SigningKey>,
}

impl DevIssuer {
    /// An issuer with one fresh ES256 key.
    pub fn generate(issuer: &str, audience: &str) -> anyhow::Result<Self> {
        let mut this = Self {
            issuer: issuer.to_owned(),
            audience: audience.to_owned(),
            keys: Vec::new(),
        };
        this.add_key(Algorithm::ES256)?;
        Ok(this)
    }

    /// The issuer whose ES256 key is kept in `dir` (`signing-key.der`, PKCS#8, owner-only),
    /// generating and saving it on first use: tokens it issued stay valid across restarts
    /// of the demo on the same data directory.
    pub fn load_or_generate(dir: &Path, issuer: &str, audience: &str) -> anyhow::Result<Self> {
        let (key_file, kid_file) = (dir.join("signing-key.der"), dir.join("signing-key.kid"));
        let mut this = Self {
            issuer: issuer.to_owned(),
            audience: audience.to_owned(),
            keys: Vec::new(),
        };
        if let (Ok(der), Ok(kid)) = (std::fs::read(&key_file), std::fs::read_to_string(&kid_file)) {
            this.push_key(
                Algorithm::ES256,
                EncodingKey::from_ec_der(&der),
                kid.trim().to_owned(),
            )?;
            return Ok(this);
        }
        std::fs::create_dir_all(dir)?;
        let pair = rcgen::KeyPair::generate_for(&rcgen::PKCS_ECDSA_P256_SHA256)?;
        let der = pair.serialize_der();
        let kid = format!("dev-1-{}", uuid::Uuid::new_v4().simple());
        write_private(&key_file, &der)?;
        std::fs::write(&kid_file, &kid)?;
        this.push_key(Algorithm::ES256, EncodingKey::from_ec_der(&der), kid)?;
        Ok(this)
    }

    /// Generates another key (RS256 or ES256) and returns its kid; it becomes the key
    /// new tokens are signed with.
    pub fn add_key(&mut self, alg: Algorithm) -> anyhow::Result<String> {
        let key = match alg {
            Algorithm::ES256 => {
                let pair = rcgen::KeyPair::generate_for(&rcgen::PKCS_ECDSA_P256_SHA256)?;
                EncodingKey::from_ec_der(&pair.serialize_der())
            }
            Algorithm::RS256 => {
                let pair = rcgen::KeyPair::generate_for(&rcgen::PKCS_RSA_SHA256)?;
                EncodingKey::from_rsa_der(&pkcs1_of_rsa_pkcs8(&pair.serialize_der())?)
            }
            other => anyhow::bail!("{other:?} is not a signing algorithm fleetwire accepts"),
        };
        let kid = format!("dev-{}-{}", self.keys.len() + 1, uuid::Uuid::new_v4().simple());
        self.push_key(alg, key, kid.clone())?;
        Ok(kid)
    }

    fn push_key(&mut self, alg: Algorithm, key: EncodingKey, kid: String) -> anyhow::Result<()> {
        let mut jwk = Jwk::from_encoding_key(&key, alg)?;
        jwk.common.key_id = Some(kid.clone());
        jwk.common.public_key_use = Some(jsonwebtoken::jwk::PublicKeyUse::Signature);
        self.keys.push(SigningKey { kid, alg, key, jwk });
        Ok(())
    }

    /// Drops a key from the published set (its tokens stop verifying once nodes refetch).
    pub fn remove_key(&mut self, kid: &str) {
        self.keys.retain(|k| k.kid != kid);
    }

    /// The public keys as a JWKS.
    pub fn jwks(&self) -> JwkSet {
        JwkSet {
            keys: self.keys.iter().map(|k| k.jwk.clone()).collect(),
        }
    }

    /// Writes the JWKS to `path` (atomically: a reader never sees half a file).
    pub fn write_jwks(&self, path: &Path) -> anyhow::Result<()> {
        let tmp = path.with_extension("tmp");
        std::fs::write(&tmp, serde_json::to_vec_pretty(&self.jwks())?)?;
        std::fs::rename(&tmp, path)?;
        Ok(())
    }

    /// `[auth]` accepting this issuer's tokens, with the JWKS at `jwks_file`.
    pub fn auth_config(&self, jwks_file: &Path) -> AuthConfig {
        AuthConfig {
            issuer: Some(self.issuer.clone()),
            audiences: vec![self.audience.clone()],
            jwks_file: Some(jwks_file.to_owned()),
            ..AuthConfig::default()
        }
    }

    /// Cognito-shaped access-token claims for a user of `tenant` in `role`'s group,
    /// valid for `ttl_secs` from now.
    pub fn claims(&self, tenant: &TenantId, role: Role, subject: &str, ttl_secs: u64) -> Value {
        let now = now_secs();
        json!({
            "iss": self.issuer,
            "sub": subject,
            "client_id": self.audience,
            "token_use": "access",
            "iat": now,
            "nbf": now,
            "exp": now + ttl_secs,
            "custom:tenant_id": tenant.as_str(),
            "cognito:groups": [role.as_str()],
        })
    }

    /// A token for `tenant` / `role` valid for `ttl_secs`, signed with the newest key.
    pub fn token(&self, tenant: &TenantId, role: Role, subject: &str, ttl_secs: u64) -> String {
        self.sign(&self.claims(tenant, role, subject, ttl_secs))
    }

    /// Signs arbitrary claims with the newest key.
    pub fn sign(&self, claims: &Value) -> String {
        let key = self.keys.last().expect("an issuer has a key");
        self.sign_with(&key.kid, claims)
    }

    /// Signs arbitrary claims with the key `kid`.
    pub fn sign_with(&self, kid: &str, claims: &Value) -> String {
        let key = self.keys.iter().find(|k| k.kid == kid).expect("known kid");
        let mut header = Header::new(key.alg);
        header.kid = Some(key.kid.clone());
        jsonwebtoken::encode(&header, claims, &key.key).expect("signing with a generated key")
    }
}

/// The PKCS#1 `RSAPrivateKey` inside an RSA PKCS#8 `PrivateKeyInfo` (what `rcgen`
/// generates vs. what `jsonwebtoken` reads): the content of its one OCTET STRING.
fn pkcs1_of_rsa_pkcs8(der: &[u8]) -> anyhow::Result<Vec<u8>> {
    // SEQUENCE { INTEGER version, SEQUENCE algorithm, OCTET STRING privateKey }
    let (_, body) = der_item(der, 0x30)?;
    let (rest, _) = der_item(body, 0x02)?;
    let (rest, _) = der_item(rest, 0x30)?;
    let (_, key) = der_item(rest, 0x04)?;
    Ok(key.to_vec())
}

/// One DER item of tag `tag` at the start of `input`: (what follows it, its content).
fn der_item(input: &[u8], tag: u8) -> anyhow::Result<(&[u8], &[u8])> {
    anyhow::ensure!(input.len() >= 2 && input[0] == tag, "unexpected DER");
    let (len, header) = match input[1] {
        n if n < 0x80 => (n as usize, 2),
        n => {
            let count = (n & 0x7f) as usize;
            anyhow::ensure!(
                (1..=4).contains(&count) && input.len() >= 2 + count,
                "bad DER length"
            );
            let len = input[2..2 + count]
                .iter()
                .fold(0usize, |acc, b| (acc << 8) | *b as usize);
            (len, 2 + count)
        }
    };
    anyhow::ensure!(input.len() >= header + len, "truncated DER");
    Ok((&input[header + len..], &input[header..header + len]))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::auth::jwks::{JwksSource, KeySet};
    use crate::auth::jwt::JwtVerifier;
    use std::time::Duration;

    async fn verifier(issuer: &DevIssuer, dir: &Path) -> JwtVerifier {
        let file = dir.join("jwks.json");
        issuer.write_jwks(&file).unwrap();
        let keys = KeySet::load(
            JwksSource::File(file.clone()),
            Duration::from_secs(3600),
            Duration::from_secs(1),
        )
        .await
        .unwrap();
        JwtVerifier::new(&issuer.auth_config(&file), keys).unwrap()
    }

    #[tokio::test]
    async fn es256_and_rs256_tokens_verify() {
        let dir = tempfile::tempdir().unwrap();
        let mut issuer = DevIssuer::generate("https://idp.test", "app").unwrap();
        issuer.add_key(Algorithm::RS256).unwrap();
        let v = verifier(&issuer, dir.path()).await;
        let tenant = TenantId::parse("acme").unwrap();
        for kid in issuer.keys.iter().map(|k| k.kid.clone()).collect::<Vec<_>>() {
            let token = issuer.sign_with(&kid, &issuer.claims(&tenant, Role::Operator, "u", 60));
            let caller = v.verify(&token).await.unwrap();
            assert_eq!(caller.tenant, tenant);
            assert_eq!(caller.role, Some(Role::Operator));
        }
    }
}
