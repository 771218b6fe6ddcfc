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
use std::time::SystemTime;

use anyhow::Context as _;
use rustls::pki_types::pem::PemObject as _;
use rustls::pki_types::{CertificateDer, PrivateKeyDer};
use rustls::server::WebPkiClientVerifier;
use tracing::warn;
use x509_parser::certificate::X509Certificate;

/// Tesla's published vehicle CA bundle (`config/tesla/vehicle-ca.pem`, source and
/// licence in its header), compiled in so a node needs no extra file to trust it.
pub const TESLA_VEHICLE_CA_PEM: &[u8] = include_bytes!("../../config/tesla/vehicle-ca.pem");

/// Where vehicle client certificates may chain to.
#[derive(Debug, Clone, Copy)]
pub struct ClientTrust<'a> {
    /// CA bundles (PEM files) from `tesla.client_ca_files`.
    pub ca_files: &'a [PathBuf],
    /// Add [`TESLA_VEHICLE_CA_PEM`] (`tesla.trust_tesla_vehicle_ca`).
    pub tesla_vehicle_ca: bool,
}

/// Builds the server's TLS config: `cert_file` (PEM chain), `key_file` (PEM key), and
/// client certificates required and verified against the trust anchors of `trust`.
pub fn server_config(
    cert_file: &Path,
    key_file: &Path,
    trust: ClientTrust<'_>,
) -> anyhow::Result<Arc<rustls::ServerConfig>> {
    let provider = Arc::new(rustls::crypto::aws_lc_rs::default_provider());
    let chain = CertificateDer::pem_file_iter(cert_file)
        .and_then(|certs| certs.collect::<Result<Vec<_>, _>>())
        .with_context(|| format!("reading the server certificate {}", cert_file.display()))?;
    let key = PrivateKeyDer::from_pem_file(key_file)
        .with_context(|| format!("reading the server key {}", key_file.display()))?;
    let roots = client_roots(trust, SystemTime::now())?;
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

/// The trust anchors for vehicle certificates, as of `now`.
///
/// A CA certificate already expired at `now` is skipped with a warning: rustls uses only
/// an anchor's name and key, so it would keep trusting an expired CA, while Go's
/// crypto/x509 (which Tesla's server uses) refuses any chain through one. Every bundle
/// must parse, and at least one anchor must remain.
pub fn client_roots(trust: ClientTrust<'_>, now: SystemTime) -> anyhow::Result<rustls::RootCertStore> {
    let mut bundles = Vec::new();
    for file in trust.ca_files {
        let pem =
            fs::read(file).with_context(|| format!("reading the client CA bundle {}", file.display()))?;
        bundles.push((file.display().to_string(), pem));
    }
    if trust.tesla_vehicle_ca {
        bundles.push((
            "Tesla's vehicle CA bundle".to_owned(),
            TESLA_VEHICLE_CA_PEM.to_vec(),
        ));
    }
    let now = now
        .duration_since(SystemTime::UNIX_EPOCH)
        .map_or(0, |d| i64::try_from(d.as_secs()).unwrap_or(i64::MAX));
    let mut roots = rustls::RootCertStore::empty();
    for (name, pem) in bundles {
        let certs = CertificateDer::pem_slice_iter(&pem)
            .collect::<Result<Vec<_>, _>>()
            .with_context(|| format!("parsing the client CA bundle {name}"))?;
        let mut current = Vec::with_capacity(certs.len());
        for cert in certs {
            let (_, parsed) = x509_parser::parse_x509_certificate(&cert).map_err(|e| {
                anyhow::anyhow!("a certificate in the client CA bundle {name} does not parse: {e}")
            })?;
            if parsed.validity().not_after.timestamp() < now {
                warn!(bundle = %name, ca = %parsed.subject(), not_after = %parsed.validity().not_after,
                    "Skipping an expired client CA certificate.");
                continue;
            }
            current.push(cert);
        }
        let (added, ignored) = roots.add_parsable_certificates(current);
        anyhow::ensure!(
            added > 0 && ignored == 0,
            "client CA bundle {name} has {added} usable and {ignored} unusable certificates"
        );
    }
    anyhow::ensure!(
        !roots.is_empty(),
        "no client CA: set tesla.client_ca_files and/or tesla.trust_tesla_vehicle_ca"
    );
    Ok(roots)
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

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use super::*;

    /// `YYYY-01-01T00:00:00Z` as a `SystemTime`.
    fn new_year(year: i32) -> SystemTime {
        let secs = rcgen::date_time_ymd(year, 1, 1).unix_timestamp();
        SystemTime::UNIX_EPOCH + Duration::from_secs(u64::try_from(secs).unwrap())
    }

    fn tesla_only() -> ClientTrust<'static> {
        ClientTrust {
            ca_files: &[],
            tesla_vehicle_ca: true,
        }
    }

    #[test]
    fn teslas_bundle_is_compiled_in_and_its_expired_ca_is_skipped() {
        let all = CertificateDer::pem_slice_iter(TESLA_VEHICLE_CA_PEM)
            .collect::<Result<Vec<_>, _>>()
            .unwrap();
        assert_eq!(all.len(), 14, "the certificates of upstream prod_ca.crt");
        assert_eq!(client_roots(tesla_only(), new_year(2025)).unwrap().len(), 14);
        // "Tesla Issuing CA" ended on 2025-05-06.
        assert_eq!(client_roots(tesla_only(), new_year(2026)).unwrap().len(), 13);
    }

    #[test]
    fn bundles_add_up_and_a_bundle_of_expired_cas_is_refused() {
        let dir = tempfile::tempdir().unwrap();
        let ca = |not_after_year: i32, file: &str| {
            let mut params = rcgen::CertificateParams::new(Vec::<String>::new()).unwrap();
            params.is_ca = rcgen::IsCa::Ca(rcgen::BasicConstraints::Unconstrained);
            params.not_before = rcgen::date_time_ymd(2020, 1, 1);
            params.not_after = rcgen::date_time_ymd(not_after_year, 1, 1);
            let key = rcgen::KeyPair::generate().unwrap();
            let path = dir.path().join(file);
            fs::write(&path, params.self_signed(&key).unwrap().pem()).unwrap();
            path
        };
        let (live, dead) = (ca(2040, "live.pem"), ca(2021, "dead.pem"));
        let now = new_year(2026);
        let files = [live.clone()];
        let both = ClientTrust {
            ca_files: &files,
            tesla_vehicle_ca: true,
        };
        assert_eq!(client_roots(both, now).unwrap().len(), 14);

        let files = [live, dead];
        let error = client_roots(
            ClientTrust {
                ca_files: &files,
                tesla_vehicle_ca: false,
            },
            now,
        )
        .unwrap_err();
        assert!(error.to_string().contains("dead.pem has 0 usable"), "{error}");

        let none = ClientTrust {
            ca_files: &[],
            tesla_vehicle_ca: false,
        };
        let error = client_roots(none, now).unwrap_err();
        assert!(error.to_string().contains("trust_tesla_vehicle_ca"), "{error}");
    }
}
