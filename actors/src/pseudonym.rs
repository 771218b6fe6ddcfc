//! VIN pseudonymization: the one place a clear VIN becomes the [`VehicleId`] that every
//! later stage (stream partition keys, state, fan-out, SSE, logs, metrics) sees.
//!
//! The pseudonym is a keyed HMAC-SHA256 of the VIN, so nobody without the key can
//! recompute it from a list of VINs (VINs have little entropy: a plain hash would be
//! reversible by enumeration). It is rendered as `v<key version>-<20 hex digits>`: 80 bits
//! of the MAC keep collisions out of reach for any fleet size (birthday bound ~2^40
//! vehicles), and the version prefix says which key made it, so a rotated key yields
//! ids that cannot be confused with the old ones.

use hmac::{Hmac, KeyInit, Mac};
use sha2::Sha256;

use crate::model::VehicleId;

/// Shortest accepted key: 256 bits, the HMAC-SHA256 block-size recommendation.
pub const MIN_KEY_BYTES: usize = 32;

/// Bytes of the MAC kept in the id.
const ID_BYTES: usize = 10;

/// Why a pseudonymization key was refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum KeyError {
    /// The key is not hexadecimal text.
    #[error("the pseudonym key must be hexadecimal: {0}")]
    NotHex(String),
    /// The key is too short.
    #[error("the pseudonym key has {got} bytes; at least {MIN_KEY_BYTES} are required")]
    TooShort {
        /// Bytes given.
        got: usize,
    },
}

/// Turns VINs into pseudonymous vehicle ids with one versioned secret key.
#[derive(Clone)]
pub struct Pseudonymizer {
    /// Version of the key, part of every id it makes.
    version: u32,
    /// The keyed MAC, cloned per use (cheaper than re-keying).
    mac: Hmac<Sha256>,
}

impl std::fmt::Debug for Pseudonymizer {
    // Never print the key.
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Pseudonymizer")
            .field("version", &self.version)
            .finish_non_exhaustive()
    }
}

impl Pseudonymizer {
    /// A pseudonymizer with key `key_hex` (at least 32 bytes as hex) of version `version`.
    pub fn from_hex(version: u32, key_hex: &str) -> Result<Self, KeyError> {
        let key = hex::decode(key_hex.trim()).map_err(|e| KeyError::NotHex(e.to_string()))?;
        if key.len() < MIN_KEY_BYTES {
            return Err(KeyError::TooShort { got: key.len() });
        }
        let mac = Hmac::<Sha256>::new_from_slice(&key).expect("HMAC accepts keys of any length");
        Ok(Self { version, mac })
    }

    /// The well-known key `demo` and tests use when none is configured. Ids made with it
    /// are not secret; a production deployment sets its own key.
    pub fn development() -> Self {
        Self::from_hex(0, &"0f".repeat(MIN_KEY_BYTES)).expect("the development key is valid")
    }

    /// The version of the key.
    pub fn version(&self) -> u32 {
        self.version
    }

    /// The pseudonymous id of `vin`. VINs are compared case-insensitively (they are
    /// upper case by definition; a lower-case copy is the same vehicle).
    pub fn vehicle_id(&self, vin: &str) -> VehicleId {
        let mut mac = self.mac.clone();
        mac.update(vin.trim().to_ascii_uppercase().as_bytes());
        let digest = mac.finalize().into_bytes();
        VehicleId(format!("v{}-{}", self.version, hex::encode(&digest[..ID_BYTES])))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ids_are_stable_keyed_and_versioned() {
        let a = Pseudonymizer::from_hex(1, &"ab".repeat(32)).unwrap();
        let b = Pseudonymizer::from_hex(1, &"cd".repeat(32)).unwrap();
        let id = a.vehicle_id("5YJ3E1EA7RF261422");
        assert_eq!(id, a.vehicle_id("5yj3e1ea7rf261422 "));
        assert_ne!(id, b.vehicle_id("5YJ3E1EA7RF261422"));
        assert_ne!(id, a.vehicle_id("5YJ3E1EA7RF261423"));
        assert!(id.as_str().starts_with("v1-") && id.as_str().len() == 3 + 2 * ID_BYTES);
        assert!(!id.as_str().contains("5YJ3"));
        VehicleId::parse(id.as_str()).expect("a pseudonym is a valid vehicle id");
    }

    #[test]
    fn bad_keys_are_refused_and_never_printed() {
        assert!(matches!(
            Pseudonymizer::from_hex(1, "abc"),
            Err(KeyError::NotHex(_))
        ));
        assert!(matches!(
            Pseudonymizer::from_hex(1, "zz".repeat(32).as_str()),
            Err(KeyError::NotHex(_))
        ));
        assert_eq!(
            Pseudonymizer::from_hex(1, &"ab".repeat(16)).unwrap_err(),
            KeyError::TooShort { got: 16 }
        );
        let p = Pseudonymizer::from_hex(3, &"ab".repeat(32)).unwrap();
        assert_eq!(format!("{p:?}"), "Pseudonymizer { version: 3, .. }");
    }
}
