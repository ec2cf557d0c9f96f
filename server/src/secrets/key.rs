//! [`SecretKey`]: one 256-bit key that seals secrets at rest, given as
//! base64 text (`herald secrets generate-key` makes one), and known by an
//! id derived from it, so a stored secret can say which key sealed it
//! without anyone naming keys by hand.

use std::str::FromStr;

use base64::{Engine, engine::general_purpose::STANDARD};
use chacha20poly1305::{KeyInit, XChaCha20Poly1305};
use rand::Rng;
use sha2::{Digest, Sha256};

/// Bytes in a key.
const KEY_BYTES: usize = 32;
/// Hex characters of a key id.
const ID_CHARS: usize = 8;

/// A key that seals and opens secrets. Neither `Debug` nor `Display`
/// shows the key itself, only its id.
#[derive(Clone)]
pub struct SecretKey {
    id: String,
    text: String,
    cipher: XChaCha20Poly1305,
}

impl std::fmt::Debug for SecretKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "SecretKey(id {})", self.id)
    }
}

impl PartialEq for SecretKey {
    fn eq(&self, other: &Self) -> bool {
        self.id == other.id
    }
}

/// Text that is not a key.
#[derive(Debug, Clone, thiserror::Error)]
#[error(
    "a secret key is the base64 text of {KEY_BYTES} bytes (44 characters); `herald secrets generate-key` prints a new one"
)]
pub struct InvalidKey;

impl SecretKey {
    /// A new random key from the operating system's generator.
    pub fn generate() -> Self {
        let bytes: [u8; KEY_BYTES] = rand::rng().random();
        Self::from_bytes(bytes)
    }

    fn from_bytes(bytes: [u8; KEY_BYTES]) -> Self {
        let digest = Sha256::digest(bytes);
        let id = digest
            .iter()
            .map(|byte| format!("{byte:02x}"))
            .collect::<String>()[..ID_CHARS]
            .to_owned();
        Self {
            id,
            text: STANDARD.encode(bytes),
            cipher: XChaCha20Poly1305::new(&bytes.into()),
        }
    }

    /// The key's id: the first hex digits of its SHA-256, safe to show.
    pub fn id(&self) -> &str {
        &self.id
    }

    /// The key as text, for writing a key file or showing a generated
    /// key once.
    pub fn expose(&self) -> &str {
        &self.text
    }

    /// The cipher this key drives.
    pub(super) fn cipher(&self) -> &XChaCha20Poly1305 {
        &self.cipher
    }
}

impl FromStr for SecretKey {
    type Err = InvalidKey;

    fn from_str(text: &str) -> Result<Self, Self::Err> {
        let bytes = STANDARD.decode(text.trim()).map_err(|_| InvalidKey)?;
        let bytes: [u8; KEY_BYTES] = bytes.try_into().map_err(|_| InvalidKey)?;
        Ok(Self::from_bytes(bytes))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_key_reads_back_with_the_same_id_and_hides_itself() {
        let key = SecretKey::generate();
        let again: SecretKey = format!(" {}\n", key.expose()).parse().unwrap();
        assert_eq!(again.id(), key.id());
        assert_eq!(key.id().len(), ID_CHARS);
        assert!(!format!("{key:?}").contains(key.expose()));
        assert_ne!(SecretKey::generate().id(), key.id());
    }

    #[test]
    fn text_that_is_not_32_bytes_of_base64_is_refused() {
        for bad in ["", "not base64!", &STANDARD.encode([0u8; 16])] {
            assert!(bad.parse::<SecretKey>().is_err(), "{bad:?}");
        }
    }
}
