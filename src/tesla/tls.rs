//! TLS for the vehicle listener: a rustls server that requires a client certificate
//! chaining to one of the configured CA bundles, and the vehicle identity read from it.
//!
//! Tesla's server takes the vehicle's identity from the verified client certificate: the
//! subject CommonName is the VIN (with `.` replaced by `-`; facts:
//! `shared/fixtures/tesla/FACTS.md`, "Connection"). Certificate validity (expiry, chain,
//! key usage) is checked by rustls' WebPKI verifier during the handshake, so a bad
//! certificate never reaches the WebSocket upgrade.

use std::fs;
use std::io;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use anyhow::Context as _;
use rustls::pki_types::pem::PemObject as _;
use rustls::pki_types::{CertificateDer, PrivateKeyDer};
use rustls::server::WebPkiClientVerifier;
use x509_parser::certificate::X509Certificate;

/// Builds the server's TLS config: `cert_file` (PEM chain), `key_file` (PEM key), and
/// client certificates required and verified against every certificate in `ca_files`.
pub fn server_config(
    cert_file: &Path,
    key_file: &Path,
    ca_files: &[PathBuf],
) -> anyhow::Result<Arc<rustls::ServerConfig>> {
    let provider = Arc::new(rustls::crypto::aws_lc_rs::default_provider());
    let chain = CertificateDer::pem_file_iter(cert_file)
        .and_then(|certs| certs.collect::<Result<Vec<_>, _>>())
        .with_context(|| format!("reading the server certificate {}", cert_file.display()))?;
    let key = PrivateKeyDer::from_pem_file(key_file)
        .with_context(|| format!("reading the server key {}", key_file.display()))?;
    let mut roots = rustls::RootCertStore::empty();
    for file in ca_files {
        let pem =
            fs::read(file).with_context(|| format!("reading the client CA bundle {}", file.display()))?;
        let certs = CertificateDer::pem_slice_iter(&pem)
            .collect::<Result<Vec<_>, _>>()
            .with_context(|| format!("parsing the client CA bundle {}", file.display()))?;
        let (added, ignored) = roots.add_parsable_certificates(certs);
        anyhow::ensure!(
            added > 0 && ignored == 0,
            "client CA bundle {} has {added} usable and {ignored} unusable certificates",
            file.display()
        );
    }
    anyhow::ensure!(!roots.is_empty(), "tesla.client_ca_files names no CA certificate");
    let verifier = WebPkiClientVerifier::builder_with_provider(Arc::new(roots), provider.clone())
        .build()
        .context("building the client certificate verifier")?;
    let config = rustls::ServerConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .context("TLS 1.2 and 1.3")?
        .with_client_cert_verifier(verifier)
        .with_single_cert(chain, key)
        .context("the server certificate and key do not match")?;
    Ok(Arc::new(config))
}

/// The CommonName of a certificate's subject.
pub fn common_name(cert: &X509Certificate<'_>) -> Option<String> {
    cert.subject()
        .iter_common_name()
        .next()
        .and_then(|cn| cn.as_str().ok())
        .map(str::to_owned)
}

/// Why a vehicle's identity could not be read from its (verified) certificate.
#[derive(Debug, thiserror::Error)]
pub enum IdentityError {
    /// No certificate (cannot happen after a verified handshake; kept for safety).
    #[error("no client certificate")]
    Missing,
    /// The certificate does not parse.
    #[error("the client certificate does not parse: {0}")]
    Unparsable(String),
    /// Its subject has no usable CommonName.
    #[error("the client certificate has no CommonName usable as a VIN")]
    NoCommonName,
}

/// The VIN of a connected vehicle: its leaf certificate's CommonName, `.` replaced by
/// `-` as Tesla's server does.
pub fn vehicle_vin(peer_certificates: Option<&[CertificateDer<'_>]>) -> Result<String, IdentityError> {
    let leaf = peer_certificates
        .and_then(|c| c.first())
        .ok_or(IdentityError::Missing)?;
    let (_, cert) =
        x509_parser::parse_x509_certificate(leaf).map_err(|e| IdentityError::Unparsable(e.to_string()))?;
    let cn = common_name(&cert).ok_or(IdentityError::NoCommonName)?;
    let vin = cn.replace('.', "-");
    if vin.is_empty() || vin.len() > 64 || !vin.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'-') {
        return Err(IdentityError::NoCommonName);
    }
    Ok(vin)
}

/// A stable metric label for a failed TLS handshake.
pub fn handshake_failure_reason(error: &io::Error) -> &'static str {
    if error.kind() == io::ErrorKind::TimedOut {
        return "timeout";
    }
    match error.get_ref().and_then(|e| e.downcast_ref::<rustls::Error>()) {
        Some(rustls::Error::NoCertificatesPresented) => "no_client_certificate",
        Some(rustls::Error::InvalidCertificate(_)) => "bad_certificate",
        _ => "tls_error",
    }
}
