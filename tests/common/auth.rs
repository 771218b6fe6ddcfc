//! Test identities: one development issuer per test binary (its JWKS in a temp file) and
//! tokens for any tenant and role, plus the platform-admin token. Production defaults stay
//! as they are: `test_config` only points `[auth]` at this issuer.

use std::path::PathBuf;
use std::sync::OnceLock;

use fleetwire::auth::dev::DevIssuer;
use fleetwire::auth::{AuthConfig, Role};
use fleetwire::config::{Config, Secret};
use fleetwire_actors::model::TenantId;
use serde_json::Value;

/// Issuer (`iss`) of test tokens.
pub const ISSUER: &str = "https://idp.fleetwire.test";
/// App client id (`client_id` / `aud`) of test tokens.
pub const AUDIENCE: &str = "fleetwire-tests";
/// The platform-admin token of every test node.
pub const ADMIN_TOKEN: &str = "test-admin-token-0123456789abcdef0123456789";

struct TestIssuer {
    issuer: DevIssuer,
    jwks_file: PathBuf,
}

fn test_issuer() -> &'static TestIssuer {
    static ISSUER_CELL: OnceLock<TestIssuer> = OnceLock::new();
    ISSUER_CELL.get_or_init(|| {
        let issuer = DevIssuer::generate(ISSUER, AUDIENCE).expect("test signing key");
        let dir = std::env::temp_dir().join(format!("fleetwire-test-jwks-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let jwks_file = dir.join("jwks.json");
        issuer.write_jwks(&jwks_file).unwrap();
        TestIssuer { issuer, jwks_file }
    })
}

/// The development issuer behind every test token.
pub fn issuer() -> &'static DevIssuer {
    &test_issuer().issuer
}

/// `[auth]` accepting the test issuer's tokens.
pub fn auth_config() -> AuthConfig {
    let t = test_issuer();
    t.issuer.auth_config(&t.jwks_file)
}

/// Points `config` at the test issuer and sets the admin token.
pub fn configure(config: &mut Config) {
    config.auth = auth_config();
    config.admin.token = Some(secret(ADMIN_TOKEN));
}

/// The `FLEETWIRE_*` variables `configure` amounts to, for nodes run as processes.
pub fn env_vars() -> Vec<(String, String)> {
    let t = test_issuer();
    vec![
        ("FLEETWIRE_AUTH__ISSUER".into(), ISSUER.into()),
        ("FLEETWIRE_AUTH__AUDIENCES".into(), format!("[\"{AUDIENCE}\"]")),
        (
            "FLEETWIRE_AUTH__JWKS_FILE".into(),
            t.jwks_file.display().to_string(),
        ),
        ("FLEETWIRE_ADMIN__TOKEN".into(), ADMIN_TOKEN.into()),
    ]
}

/// A `Secret` from text.
pub fn secret(text: &str) -> Secret {
    serde_json::from_value(Value::String(text.to_owned())).unwrap()
}

/// A tenant id from text.
pub fn tenant(name: &str) -> TenantId {
    TenantId::parse(name).unwrap()
}

/// A valid token (one hour) for `tenant` with `role`.
pub fn token(tenant_name: &str, role: Role) -> String {
    issuer().token(&tenant(tenant_name), role, &format!("{role}@{tenant_name}"), 3600)
}

/// A token for the default tenant with every permission: what the tests written before
/// authentication act as, so their intent stays the same.
pub fn default_admin_token() -> String {
    token(TenantId::DEFAULT, Role::TenantAdmin)
}

/// Claims of a valid token, to tamper with.
pub fn claims(tenant_name: &str, role: Role) -> Value {
    issuer().claims(&tenant(tenant_name), role, "tester", 3600)
}
