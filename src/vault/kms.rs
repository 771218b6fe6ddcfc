//! [`KmsKeyWrapper`]: the AWS profile's [`KeyWrapper`]. The vault's data keys are wrapped
//! with KMS `Encrypt` and unwrapped with `Decrypt` under one customer-managed key
//! (`alias/fleetwire-<env>-vin-vault`, terraform/modules/kms), so the wrapping key never
//! leaves KMS, every unwrap is in CloudTrail, and revoking the task role's grant on that one
//! key cuts access to clear VINs without touching telemetry.
//!
//! Each call carries the encryption context `{"vin_vault_pk": "~key#<version>"}` (the item
//! key the wrapped key is stored under): KMS binds the ciphertext to it, so a wrapped key
//! copied to another version does not decrypt, and the task role's IAM policy allows the
//! key only with that context present. `Decrypt` also names the key, so a blob made under
//! another KMS key is refused rather than decrypted with whatever key it names.
//!
//! Errors: a refused ciphertext (`InvalidCiphertextException`, `IncorrectKeyException`) is
//! [`CryptoError::Open`], as with the local wrapper; everything else is a [`KmsError`]. There
//! is no fallback to a local key: with KMS unreachable, new vehicles' VINs are not vaulted
//! (retried at their next connection) and resolves answer 503.

use std::collections::HashMap;

use async_trait::async_trait;
use aws_sdk_kms::error::{DisplayErrorContext, ProvideErrorMetadata, SdkError};
use aws_sdk_kms::primitives::Blob;
use serde::{Deserialize, Serialize};

use super::VaultError;
use super::crypto::CryptoError;
use super::keys::{KeyWrapper, key_pk};

/// The encryption-context key naming the vault item a wrapped data key is stored under
/// (terraform's task policy conditions on it).
pub const CONTEXT_KEY: &str = "vin_vault_pk";

/// `[vault.kms]`: the KMS key that wraps the vault's data keys (`vault.wrapper = "kms"`).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct KmsConfig {
    /// The key: alias (`alias/fleetwire-prod-vin-vault`), key ARN or key id. Required with
    /// the KMS wrapper; terraform sets `FLEETWIRE_VAULT__KMS__KEY_ID`. Default: `None`.
    pub key_id: Option<String>,
    /// AWS region of the key. Default: `"us-east-1"`.
    pub region: String,
    /// Endpoint override (an emulator such as moto, `http://127.0.0.1:4570`); `None` uses
    /// the region's AWS endpoint. Default: `None`.
    pub endpoint_url: Option<String>,
    /// `true`: fixed dummy credentials, for emulators; `false`: the default AWS credential
    /// chain (the ECS task role). Default: `false`.
    pub static_credentials: bool,
}

impl Default for KmsConfig {
    fn default() -> Self {
        Self {
            key_id: None,
            region: "us-east-1".into(),
            endpoint_url: None,
            static_credentials: false,
        }
    }
}

impl KmsConfig {
    /// What is wrong with the settings for the KMS wrapper.
    pub fn problems(&self) -> Vec<String> {
        let mut problems = Vec::new();
        if self.key_id.as_deref().is_none_or(|k| k.trim().is_empty()) {
            problems.push("vault.kms.key_id must be set with vault.wrapper = \"kms\"".to_owned());
        }
        if let Err(e) =
            crate::backends::aws::check_connection("vault.kms", &self.region, self.endpoint_url.as_deref())
        {
            problems.push(e);
        }
        problems
    }

    /// An SDK client for these settings, with the per-call metrics (no network call).
    pub async fn client(&self) -> aws_sdk_kms::Client {
        let shared = crate::backends::aws::sdk_config(
            &self.region,
            self.endpoint_url.as_deref(),
            self.static_credentials,
        )
        .await;
        let config = aws_sdk_kms::config::Builder::from(&shared)
            .interceptor(crate::backends::aws::call_metrics())
            .build();
        aws_sdk_kms::Client::from_conf(config)
    }
}

/// A KMS call failed for a reason other than a refused ciphertext.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum KmsError {
    /// KMS could not be reached or asked to slow down (network, timeout, throttling, its
    /// own fault): the same call may work later.
    #[error("KMS unavailable: {0}")]
    Unavailable(String),
    /// KMS refused the key: not found, disabled, pending deletion, wrong key usage, or no
    /// permission. An operator must act (terraform/modules/kms, the task role).
    #[error("KMS refused the vault key: {0}")]
    KeyRefused(String),
    /// KMS answered without the expected field.
    #[error("KMS answer without {0}")]
    Malformed(&'static str),
}

/// Wraps data keys with a KMS key (see the module docs).
#[derive(Debug, Clone)]
pub struct KmsKeyWrapper {
    /// The client (region, endpoint, credentials of `[vault.kms]`).
    client: aws_sdk_kms::Client,
    /// The key every `Encrypt` uses and every `Decrypt` insists on.
    key_id: String,
}

impl KmsKeyWrapper {
    /// A wrapper for `config` (no network call: a bad key or missing permission shows at the
    /// first wrap or unwrap).
    pub async fn new(config: &KmsConfig) -> Result<Self, VaultError> {
        let key_id = config
            .key_id
            .clone()
            .filter(|k| !k.trim().is_empty())
            .ok_or_else(|| KmsError::KeyRefused("vault.kms.key_id is not set".into()))?;
        Ok(Self::with_client(config.client().await, key_id))
    }

    /// A wrapper over an existing client (tests that create their own key).
    pub fn with_client(client: aws_sdk_kms::Client, key_id: String) -> Self {
        Self { client, key_id }
    }

    fn context(version: u32) -> HashMap<String, String> {
        HashMap::from([(CONTEXT_KEY.to_owned(), key_pk(version))])
    }
}

#[async_trait]
impl KeyWrapper for KmsKeyWrapper {
    async fn wrap(&self, version: u32, key: &[u8]) -> Result<Vec<u8>, VaultError> {
        let out = self
            .client
            .encrypt()
            .key_id(&self.key_id)
            .plaintext(Blob::new(key))
            .set_encryption_context(Some(Self::context(version)))
            .send()
            .await
            .map_err(|e| classify("Encrypt", e))?;
        let blob = out.ciphertext_blob.ok_or(KmsError::Malformed("CiphertextBlob"))?;
        Ok(blob.into_inner())
    }

    async fn unwrap(&self, version: u32, wrapped: &[u8]) -> Result<Vec<u8>, VaultError> {
        let out = self
            .client
            .decrypt()
            .key_id(&self.key_id)
            .ciphertext_blob(Blob::new(wrapped))
            .set_encryption_context(Some(Self::context(version)))
            .send()
            .await
            .map_err(|e| classify("Decrypt", e))?;
        let plain = out.plaintext.ok_or(KmsError::Malformed("Plaintext"))?;
        Ok(plain.into_inner())
    }
}

/// The vault error for a failed KMS call; `op` names the operation for the message.
fn classify<E>(op: &str, err: SdkError<E>) -> VaultError
where
    E: ProvideErrorMetadata + std::error::Error + Send + Sync + 'static,
{
    let code = match &err {
        SdkError::ServiceError(ctx) => ctx.err().code().map(str::to_owned),
        _ => None,
    };
    let message = format!("{op}: {}", DisplayErrorContext(&err));
    match &err {
        SdkError::ServiceError(_) => from_code(code.as_deref(), message),
        // Not sent, timed out, or no parseable answer: may pass.
        _ => KmsError::Unavailable(message).into(),
    }
}

/// The vault error for a KMS error code (by code, one vocabulary for both operations).
fn from_code(code: Option<&str>, message: String) -> VaultError {
    match code {
        // Not this key's ciphertext for this context: moved, damaged or another key's.
        Some("InvalidCiphertextException" | "IncorrectKeyException") => VaultError::Crypto(CryptoError::Open),
        Some(
            "NotFoundException"
            | "DisabledException"
            | "KMSInvalidStateException"
            | "InvalidKeyUsageException"
            | "AccessDeniedException"
            | "UnrecognizedClientException"
            | "InvalidSignatureException"
            | "ValidationException",
        ) => KmsError::KeyRefused(message).into(),
        // Throttling, KMSInternalException, DependencyTimeoutException, KeyUnavailable,
        // unknown codes: retry later (the caller does: next connection, next request).
        _ => KmsError::Unavailable(message).into(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn codes_map_to_what_the_caller_can_do() {
        let of = |c: &str| from_code(Some(c), "m".into());
        assert_eq!(
            of("InvalidCiphertextException"),
            VaultError::Crypto(CryptoError::Open)
        );
        assert_eq!(of("IncorrectKeyException"), VaultError::Crypto(CryptoError::Open));
        for refused in [
            "NotFoundException",
            "DisabledException",
            "KMSInvalidStateException",
            "AccessDeniedException",
        ] {
            assert!(
                matches!(of(refused), VaultError::Kms(KmsError::KeyRefused(_))),
                "{refused}"
            );
        }
        for passing in [
            "ThrottlingException",
            "KMSInternalException",
            "KeyUnavailableException",
        ] {
            assert!(
                matches!(of(passing), VaultError::Kms(KmsError::Unavailable(_))),
                "{passing}"
            );
        }
        assert!(matches!(
            from_code(None, "m".into()),
            VaultError::Kms(KmsError::Unavailable(_))
        ));
    }

    #[test]
    fn the_key_id_is_required() {
        let config = KmsConfig::default();
        assert!(config.problems().iter().any(|p| p.contains("vault.kms.key_id")));
        let config = KmsConfig {
            key_id: Some("alias/fleetwire-dev-vin-vault".into()),
            endpoint_url: Some("127.0.0.1:4570".into()),
            ..KmsConfig::default()
        };
        assert_eq!(config.problems().len(), 1, "{:?}", config.problems());
        assert!(config.problems()[0].contains("vault.kms.endpoint_url"));
        assert_eq!(KmsKeyWrapper::context(7)[CONTEXT_KEY], "~key#7");
    }
}
