//! AES-256-GCM sealing for the vault: `nonce (12) ‖ ciphertext ‖ tag (16)`, with the
//! item's key as associated data, so a ciphertext copied to another item does not open.
//! Nonces are random (96 bits): NIST SP 800-38D §8.3 allows random nonces with one key for
//! up to 2^32 messages, far above one write per vehicle ever; rotation (a new key
//! version) resets the count anyway.

use std::sync::Arc;

use aws_lc_rs::aead::{AES_256_GCM, Aad, LessSafeKey, NONCE_LEN, Nonce, UnboundKey};
use aws_lc_rs::rand::{SecureRandom, SystemRandom};

/// Bytes of an AES-256 key.
pub const KEY_BYTES: usize = 32;
/// Bytes of the GCM tag.
const TAG_BYTES: usize = 16;

/// One AES-256 data key. Never printed.
#[derive(Clone)]
pub struct DataKey(Arc<LessSafeKey>);

impl std::fmt::Debug for DataKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("DataKey(<redacted>)")
    }
}

/// Sealing or opening failed.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum CryptoError {
    /// A key is not 32 bytes (as hex: 64 hex digits).
    #[error("a vault key must be {KEY_BYTES} bytes (64 hex digits): {0}")]
    BadKey(String),
    /// The ciphertext does not open with this key and associated data: wrong key, another
    /// item's ciphertext, or damaged data.
    #[error("the ciphertext does not open (wrong key, moved or damaged)")]
    Open,
    /// The system random source failed.
    #[error("random source failed")]
    Random,
}

impl DataKey {
    /// A key from its 32 bytes.
    pub fn from_bytes(bytes: &[u8]) -> Result<Self, CryptoError> {
        if bytes.len() != KEY_BYTES {
            return Err(CryptoError::BadKey(format!("got {} bytes", bytes.len())));
        }
        let key = UnboundKey::new(&AES_256_GCM, bytes).map_err(|_| CryptoError::BadKey("refused".into()))?;
        Ok(Self(Arc::new(LessSafeKey::new(key))))
    }

    /// A key from 64 hex digits.
    pub fn from_hex(text: &str) -> Result<Self, CryptoError> {
        let bytes = hex::decode(text.trim()).map_err(|e| CryptoError::BadKey(e.to_string()))?;
        Self::from_bytes(&bytes)
    }

    /// A new random key, with its bytes (to be wrapped and stored).
    pub fn generate() -> Result<(Self, [u8; KEY_BYTES]), CryptoError> {
        let mut bytes = [0u8; KEY_BYTES];
        SystemRandom::new()
            .fill(&mut bytes)
            .map_err(|_| CryptoError::Random)?;
        Ok((Self::from_bytes(&bytes)?, bytes))
    }

    /// Seals `plain` bound to `aad`: `nonce ‖ ciphertext ‖ tag`.
    pub fn seal(&self, aad: &[u8], plain: &[u8]) -> Result<Vec<u8>, CryptoError> {
        let mut nonce = [0u8; NONCE_LEN];
        SystemRandom::new()
            .fill(&mut nonce)
            .map_err(|_| CryptoError::Random)?;
        let mut sealed = Vec::with_capacity(NONCE_LEN + plain.len() + TAG_BYTES);
        sealed.extend_from_slice(&nonce);
        let mut body = plain.to_vec();
        self.0
            .seal_in_place_append_tag(Nonce::assume_unique_for_key(nonce), Aad::from(aad), &mut body)
            .map_err(|_| CryptoError::Random)?;
        sealed.extend_from_slice(&body);
        Ok(sealed)
    }

    /// Opens what [`DataKey::seal`] made with the same `aad`.
    pub fn open(&self, aad: &[u8], sealed: &[u8]) -> Result<Vec<u8>, CryptoError> {
        if sealed.len() < NONCE_LEN + TAG_BYTES {
            return Err(CryptoError::Open);
        }
        let (nonce, body) = sealed.split_at(NONCE_LEN);
        let nonce = Nonce::try_assume_unique_for_key(nonce).map_err(|_| CryptoError::Open)?;
        let mut body = body.to_vec();
        let plain = self
            .0
            .open_in_place(nonce, Aad::from(aad), &mut body)
            .map_err(|_| CryptoError::Open)?;
        Ok(plain.to_vec())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn seals_and_opens_only_with_the_same_key_and_aad() {
        let (key, _) = DataKey::generate().unwrap();
        let sealed = key.seal(b"acme#v1-aa", b"5YJ3E1EA7RF261422").unwrap();
        assert_eq!(
            sealed.len(),
            12 + 17 + 16,
            "45 bytes for a VIN (docs/data-model.md)"
        );
        assert!(!sealed.windows(17).any(|w| w == b"5YJ3E1EA7RF261422"));
        assert_eq!(key.open(b"acme#v1-aa", &sealed).unwrap(), b"5YJ3E1EA7RF261422");
        assert_eq!(
            key.open(b"acme#v1-bb", &sealed),
            Err(CryptoError::Open),
            "moved item"
        );
        let (other, _) = DataKey::generate().unwrap();
        assert_eq!(
            other.open(b"acme#v1-aa", &sealed),
            Err(CryptoError::Open),
            "other key"
        );
        let mut damaged = sealed.clone();
        damaged[20] ^= 1;
        assert_eq!(key.open(b"acme#v1-aa", &damaged), Err(CryptoError::Open));
        assert_eq!(key.open(b"acme#v1-aa", &sealed[..10]), Err(CryptoError::Open));
        assert_ne!(
            key.seal(b"a", b"x").unwrap(),
            key.seal(b"a", b"x").unwrap(),
            "fresh nonces"
        );
    }

    #[test]
    fn keys_must_be_32_bytes() {
        assert!(DataKey::from_hex(&"ab".repeat(32)).is_ok());
        assert!(matches!(
            DataKey::from_hex(&"ab".repeat(16)),
            Err(CryptoError::BadKey(_))
        ));
        assert!(matches!(DataKey::from_hex("zz"), Err(CryptoError::BadKey(_))));
        let shown = format!("{:?}", DataKey::from_hex(&"ab".repeat(32)).unwrap());
        assert!(!shown.contains("ab"), "{shown}");
    }
}
