//! A development PKI for `demo`, tests and load tests: a CA, a server certificate for the loopback
//! names, and vehicle certificates whose CommonName is the VIN (the identity Tesla's
//! protocol takes from the client certificate).
//!
//! Never for production: keys are written unencrypted to the data directory. Production
//! uses the operator's own server certificate and the vehicle CA bundle(s).

use std::fs;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use anyhow::Context as _;
use rcgen::{
    BasicConstraints, CertificateParams, DistinguishedName, DnType, ExtendedKeyUsagePurpose, IsCa, Issuer,
    KeyPair, KeyUsagePurpose,
};
use rustls::pki_types::pem::PemObject as _;
use rustls::pki_types::{CertificateDer, PrivateKeyDer, PrivatePkcs8KeyDer};

const CA_NAME: &str = "fleetwire development vehicle CA";

/// The files of a development PKI and the CA that signs vehicle certificates.
pub struct DevPki {
    /// Folder holding the files.
    pub dir: PathBuf,
    /// CA certificate (PEM): the server's `tesla.client_ca_files`, and what vehicles trust.
    pub ca_cert_file: PathBuf,
    /// Server certificate (PEM) for `localhost`, `127.0.0.1` and `::1`.
    pub server_cert_file: PathBuf,
    /// The server certificate's private key (PEM, PKCS#8).
    pub server_key_file: PathBuf,
    ca_cert_der: CertificateDer<'static>,
    issuer: Issuer<'static, KeyPair>,
}

/// A vehicle's client certificate and key, ready for a rustls client.
#[derive(Debug)]
pub struct VehicleIdentity {
    /// Certificate chain: the vehicle certificate.
    pub chain: Vec<CertificateDer<'static>>,
    /// Its private key.
    pub key: PrivateKeyDer<'static>,
}

impl DevPki {
    /// Loads the PKI from `dir`, creating it (and `dir`) on first use.
    pub fn load_or_create(dir: &Path) -> anyhow::Result<Self> {
        let ca_cert_file = dir.join("ca.pem");
        let ca_key_file = dir.join("ca-key.pem");
        let server_cert_file = dir.join("server.pem");
        let server_key_file = dir.join("server-key.pem");
        if !ca_cert_file.exists() || !ca_key_file.exists() {
            fs::create_dir_all(dir).with_context(|| format!("creating {}", dir.display()))?;
            let key = KeyPair::generate()?;
            let cert = ca_params().self_signed(&key)?;
            write_private(&ca_key_file, &key.serialize_pem())?;
            fs::write(&ca_cert_file, cert.pem())?;
            // A new CA invalidates any older server certificate.
            let _ = fs::remove_file(&server_cert_file);
        }
        let ca_pem = fs::read_to_string(&ca_cert_file)?;
        let ca_key = KeyPair::from_pem(&fs::read_to_string(&ca_key_file)?)?;
        let issuer = Issuer::from_ca_cert_pem(&ca_pem, ca_key).context("reading the development CA")?;
        let ca_cert_der =
            CertificateDer::from_pem_slice(ca_pem.as_bytes()).context("reading the CA certificate")?;
        let pki = Self {
            dir: dir.to_owned(),
            ca_cert_file,
            server_cert_file,
            server_key_file,
            ca_cert_der,
            issuer,
        };
        if !pki.server_cert_file.exists() || !pki.server_key_file.exists() {
            let mut params =
                CertificateParams::new(vec!["localhost".into(), "127.0.0.1".into(), "::1".into()])?;
            params.distinguished_name = name("fleetwire development server");
            params.extended_key_usages = vec![ExtendedKeyUsagePurpose::ServerAuth];
            let key = KeyPair::generate()?;
            let cert = params.signed_by(&key, &pki.issuer)?;
            write_private(&pki.server_key_file, &key.serialize_pem())?;
            fs::write(&pki.server_cert_file, cert.pem())?;
        }
        Ok(pki)
    }

    /// The CA certificate, for clients that verify the server.
    pub fn ca_cert(&self) -> &CertificateDer<'static> {
        &self.ca_cert_der
    }

    /// A new client certificate whose CommonName is `vin`, signed by the CA.
    pub fn vehicle_identity(&self, vin: &str) -> anyhow::Result<VehicleIdentity> {
        let mut params = CertificateParams::new(Vec::<String>::new())?;
        params.distinguished_name = name(vin);
        params.extended_key_usages = vec![ExtendedKeyUsagePurpose::ClientAuth];
        let key = KeyPair::generate()?;
        let cert = params.signed_by(&key, &self.issuer)?;
        Ok(VehicleIdentity {
            chain: vec![cert.der().clone()],
            key: PrivateKeyDer::Pkcs8(PrivatePkcs8KeyDer::from(key.serialize_der())),
        })
    }

    /// A rustls client config for one vehicle: presents its certificate, trusts the CA.
    pub fn vehicle_client_config(&self, vin: &str) -> anyhow::Result<Arc<rustls::ClientConfig>> {
        let identity = self.vehicle_identity(vin)?;
        let mut roots = rustls::RootCertStore::empty();
        roots.add(self.ca_cert_der.clone())?;
        let config = rustls::ClientConfig::builder_with_provider(Arc::new(
            rustls::crypto::aws_lc_rs::default_provider(),
        ))
        .with_safe_default_protocol_versions()?
        .with_root_certificates(roots)
        .with_client_auth_cert(identity.chain, identity.key)?;
        Ok(Arc::new(config))
    }
}

fn ca_params() -> CertificateParams {
    let mut params = CertificateParams::default();
    params.distinguished_name = name(CA_NAME);
    params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
    params.key_usages = vec![KeyUsagePurpose::KeyCertSign, KeyUsagePurpose::CrlSign];
    params
}

fn name(common_name: &str) -> DistinguishedName {
    let mut dn = DistinguishedName::new();
    dn.push(DnType::CommonName, common_name);
    dn
}

/// Writes a private key readable by the owner only.
fn write_private(path: &Path, pem: &str) -> anyhow::Result<()> {
    use std::io::Write as _;
    #[cfg(unix)]
    use std::os::unix::fs::OpenOptionsExt as _;
    let mut options = fs::OpenOptions::new();
    options.write(true).create(true).truncate(true);
    #[cfg(unix)]
    options.mode(0o600);
    options
        .open(path)
        .and_then(|mut f| f.write_all(pem.as_bytes()))
        .with_context(|| format!("writing {}", path.display()))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_pki_is_created_once_and_reloaded() {
        let dir = tempfile::tempdir().unwrap();
        let first = DevPki::load_or_create(dir.path()).unwrap();
        let ca = fs::read(&first.ca_cert_file).unwrap();
        let server = fs::read(&first.server_cert_file).unwrap();
        let again = DevPki::load_or_create(dir.path()).unwrap();
        assert_eq!(fs::read(&again.ca_cert_file).unwrap(), ca);
        assert_eq!(fs::read(&again.server_cert_file).unwrap(), server);
        let vehicle = again.vehicle_identity("5YJ3E1EA7RF261422").unwrap();
        let (_, parsed) = x509_parser::parse_x509_certificate(&vehicle.chain[0]).unwrap();
        assert_eq!(parsed.subject().to_string(), "CN=5YJ3E1EA7RF261422");
        assert_eq!(parsed.issuer().to_string(), format!("CN={CA_NAME}"));
    }
}
