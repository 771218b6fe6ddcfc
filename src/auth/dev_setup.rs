//! `fleetwire dev-issuer`: everything a local or staging node needs to run with
//! authentication on but without an identity provider — a signing key published as a
//! JWKS file, a config file that trusts it, and ready-made tokens. Used by
//! `scripts/loadtest-smoke` and by operators trying a node out; production uses Cognito
//! (docs/operations.md).

use std::fmt::Write as _;
use std::path::{Path, PathBuf};

use fleetwire_actors::model::TenantId;

use super::Role;
use super::dev::DevIssuer;

/// What [`write`] produced.
#[derive(Debug)]
pub struct DevSetup {
    /// `serve --config` this file (alone, or after a profile such as config/local.toml):
    /// `[auth]` trusting the JWKS, the admin token, and unknown vehicles provisioned to
    /// the tenant.
    pub config_file: PathBuf,
    /// Tenant-admin token (can create ingest API keys, read, stream).
    pub tenant_admin_token: String,
    /// Viewer token (read and stream).
    pub viewer_token: String,
    /// Platform-admin token for the admin listener.
    pub admin_token: String,
}

/// Writes `jwks.json`, `fleetwire.toml` and one file per token into `dir`.
pub fn write(dir: &Path, tenant: &TenantId, ttl_secs: u64) -> anyhow::Result<DevSetup> {
    std::fs::create_dir_all(dir)?;
    let issuer = DevIssuer::generate("https://fleetwire-dev.invalid", "fleetwire-dev")?;
    let jwks = dir.join("jwks.json");
    issuer.write_jwks(&jwks)?;
    let admin_token = format!("{:032x}{:032x}", rand::random::<u128>(), rand::random::<u128>());
    let mut toml = String::new();
    writeln!(
        toml,
        "# Written by `fleetwire dev-issuer`: development and staging only."
    )?;
    writeln!(toml, "[auth]")?;
    writeln!(toml, "issuer = {:?}", issuer.issuer)?;
    writeln!(toml, "audiences = [{:?}]", issuer.audience)?;
    writeln!(toml, "jwks_file = {:?}", jwks.display().to_string())?;
    writeln!(toml, "\n[admin]\ntoken = {admin_token:?}")?;
    writeln!(
        toml,
        "\n[tenancy]\nunknown_vehicles = \"provision\"\nprovision_tenant = {:?}",
        tenant.as_str()
    )?;
    let config_file = dir.join("fleetwire.toml");
    std::fs::write(&config_file, toml)?;
    let setup = DevSetup {
        config_file,
        tenant_admin_token: issuer.token(tenant, Role::TenantAdmin, "dev-admin", ttl_secs),
        viewer_token: issuer.token(tenant, Role::Viewer, "dev-viewer", ttl_secs),
        admin_token,
    };
    for (name, token) in [
        ("tenant-admin.token", &setup.tenant_admin_token),
        ("viewer.token", &setup.viewer_token),
        ("admin.token", &setup.admin_token),
    ] {
        std::fs::write(dir.join(name), token)?;
    }
    Ok(setup)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::Config;

    #[test]
    fn the_written_config_loads_and_trusts_the_tokens() {
        let dir = tempfile::tempdir().unwrap();
        let tenant = TenantId::parse("lt").unwrap();
        let setup = write(dir.path(), &tenant, 600).unwrap();
        let config = Config::load(Some(&setup.config_file)).expect("a valid config");
        assert_eq!(
            config.auth.jwks_file.as_deref(),
            Some(dir.path().join("jwks.json").as_path())
        );
        assert_eq!(config.admin.token.as_ref().unwrap().expose(), setup.admin_token);
        let read = std::fs::read_to_string(dir.path().join("viewer.token")).unwrap();
        assert_eq!(read, setup.viewer_token);
        assert_eq!(read.split('.').count(), 3, "a JWT");
    }
}
