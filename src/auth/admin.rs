//! The platform-admin credential of the admin listener (`/admin/*`, `/metrics`): one bearer
//! secret from `admin.token` (`FLEETWIRE_ADMIN__TOKEN`), separate from tenant identities,
//! because the admin listener shows every tenant's actors and the whole stream.

use sha2::{Digest, Sha256};
use subtle::ConstantTimeEq;

use crate::config::Secret;

/// Shortest admin token accepted.
pub const MIN_ADMIN_TOKEN_LEN: usize = 32;

/// Checks presented admin tokens. Holds only a digest of the secret.
#[derive(Clone)]
pub struct AdminCredential {
    digest: Option<[u8; 32]>,
}

impl std::fmt::Debug for AdminCredential {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("AdminCredential")
            .field("configured", &self.digest.is_some())
            .finish()
    }
}

impl AdminCredential {
    /// From `admin.token`; `None` locks the protected admin endpoints entirely.
    pub fn new(token: Option<&Secret>) -> Self {
        Self {
            digest: token.map(|t| Sha256::digest(t.expose().as_bytes()).into()),
        }
    }

    /// Whether a token is configured at all.
    pub fn is_configured(&self) -> bool {
        self.digest.is_some()
    }

    /// Whether `presented` is the admin token. Compares SHA-256 digests in constant time,
    /// so neither the content nor the length of the secret leaks through timing.
    pub fn accepts(&self, presented: &str) -> bool {
        let Some(expected) = &self.digest else {
            return false;
        };
        let presented: [u8; 32] = Sha256::digest(presented.as_bytes()).into();
        presented.ct_eq(expected).into()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_the_configured_token_is_accepted() {
        let secret: Secret = serde_json::from_str("\"0123456789abcdef0123456789abcdef\"").unwrap();
        let cred = AdminCredential::new(Some(&secret));
        assert!(cred.accepts("0123456789abcdef0123456789abcdef"));
        assert!(!cred.accepts("0123456789abcdef0123456789abcdeX"));
        assert!(!cred.accepts(""));
        assert!(!AdminCredential::new(None).accepts(""));
        assert!(!format!("{cred:?}").contains("0123"));
    }
}
