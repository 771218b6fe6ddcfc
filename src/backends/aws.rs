//! The shared AWS SDK configuration of the AWS backends: region, endpoint override,
//! optional static credentials for emulators, and timeouts.

use std::time::Duration;

use aws_config::timeout::TimeoutConfig;
use aws_config::{BehaviorVersion, Region, SdkConfig};
// A re-export of `aws-credential-types`: the same type for every service crate.
use aws_sdk_dynamodb::config::Credentials;

/// Timeouts of every client built here. Without them the SDK has no read timeout, so a
/// half-dead connection could stall a caller forever (e.g. a lease renewal past expiry).
const CONNECT_TIMEOUT: Duration = Duration::from_secs(3);
const ATTEMPT_TIMEOUT: Duration = Duration::from_secs(10);
const OPERATION_TIMEOUT: Duration = Duration::from_secs(30);

/// Loads the SDK configuration for `region`, with `endpoint_url` overriding the AWS
/// endpoint and, with `static_credentials`, fixed dummy credentials (emulators check that
/// requests are signed, not by whom; AWS rejects them). Otherwise the default credential
/// chain applies. Makes no network call: the chain resolves lazily.
pub(crate) async fn sdk_config(
    region: &str,
    endpoint_url: Option<&str>,
    static_credentials: bool,
) -> SdkConfig {
    sdk_config_with_ca(region, endpoint_url, static_credentials, None).await
}

/// [`sdk_config`] whose HTTPS client also trusts the PEM certificates in `extra_ca_pem`
/// (next to the system roots): for emulators and private endpoints with their own CA.
/// Certificates are still verified by rustls' WebPKI rules, names included (a server
/// certificate needs a subjectAltName matching the endpoint's host).
pub(crate) async fn sdk_config_with_ca(
    region: &str,
    endpoint_url: Option<&str>,
    static_credentials: bool,
    extra_ca_pem: Option<Vec<u8>>,
) -> SdkConfig {
    let mut loader = aws_config::defaults(BehaviorVersion::latest())
        .region(Region::new(region.to_owned()))
        .timeout_config(
            TimeoutConfig::builder()
                .connect_timeout(CONNECT_TIMEOUT)
                .operation_attempt_timeout(ATTEMPT_TIMEOUT)
                .operation_timeout(OPERATION_TIMEOUT)
                .build(),
        );
    if let Some(url) = endpoint_url {
        loader = loader.endpoint_url(url);
    }
    if let Some(pem) = extra_ca_pem {
        use aws_smithy_http_client::tls::{self, TlsContext, TrustStore, rustls_provider::CryptoMode};
        let context = TlsContext::builder()
            .with_trust_store(TrustStore::default().with_pem_certificate(pem))
            .build()
            .expect("a TLS context with a trust store always builds");
        // The same client the SDK builds by default (rustls with aws-lc-rs, HTTP/1.1 and
        // HTTP/2 by ALPN), with one more root.
        loader = loader.http_client(
            aws_smithy_http_client::Builder::new()
                .tls_provider(tls::Provider::Rustls(CryptoMode::AwsLc))
                .tls_context(context)
                .build_https(),
        );
    }
    if static_credentials {
        // Letters and digits only: DynamoDB Local rejects any other access key id with
        // `UnrecognizedClientException`.
        loader = loader.credentials_provider(Credentials::new(
            "fleetwirelocal",
            "fleetwirelocal",
            None,
            None,
            "fleetwire-static",
        ));
    }
    loader.load().await
}

/// The interceptors every AWS client of fleetwire carries: per-call metrics
/// ([`super::aws_calls`]). Install with the service's config builder, e.g.
/// `aws_sdk_dynamodb::config::Builder::from(&shared).interceptor(call_metrics())`.
pub(crate) fn call_metrics() -> super::aws_calls::CallMetrics {
    super::aws_calls::CallMetrics
}

/// Checks the connection settings both AWS backends share, so a bad region or endpoint is
/// named at start instead of failing the first call. `section` names the config section.
pub(crate) fn check_connection(
    section: &str,
    region: &str,
    endpoint_url: Option<&str>,
) -> Result<(), String> {
    if region.trim().is_empty() {
        return Err(format!("{section}.region must not be empty"));
    }
    if let Some(url) = endpoint_url
        && !(url.starts_with("http://") || url.starts_with("https://"))
    {
        return Err(format!(
            "{section}.endpoint_url must start with http:// or https://, got {url:?}"
        ));
    }
    Ok(())
}
