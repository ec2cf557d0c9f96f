//! API keys: `hk_<id>_<secret>`. The id is public (listings, `herald key
//! revoke`); the whole key is shown once at creation and only its SHA-256
//! is stored. Keys are 256 random bits, so a fast hash is enough: there
//! is nothing to brute-force that a slow hash would protect.

use base64::{Engine, engine::general_purpose::URL_SAFE_NO_PAD};
use rand::{Rng, distr::Alphanumeric};
use sha2::{Digest, Sha256};

/// Every key starts with this, so leaked keys are easy to recognise.
const PREFIX: &str = "hk_";
/// Characters in a key id.
const ID_LEN: usize = 12;

/// A freshly generated key: the id to store and list, and the full key
/// to hand over once.
pub struct NewApiKey {
    /// Public id, e.g. `k3x9a0b1c2d4`.
    pub id: String,
    /// The full key; shown once, never stored.
    pub key: String,
}

impl std::fmt::Debug for NewApiKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("NewApiKey")
            .field("id", &self.id)
            .field("key", &"<redacted>")
            .finish()
    }
}

impl NewApiKey {
    /// A new random key from the operating system's generator.
    pub fn generate() -> Self {
        let mut rng = rand::rng();
        let id: String = (&mut rng)
            .sample_iter(Alphanumeric)
            .take(ID_LEN)
            .map(|c| char::from(c).to_ascii_lowercase())
            .collect();
        let secret: [u8; 32] = rng.random();
        let key = format!("{PREFIX}{id}_{}", URL_SAFE_NO_PAD.encode(secret));
        Self { id, key }
    }

    /// The hash stored in place of the key.
    pub fn hash(&self) -> String {
        hash(&self.key)
    }
}

/// The id a key claims (`hk_<id>_...`), if it has the form of one.
pub fn id_of(key: &str) -> Option<&str> {
    let (id, _) = key.strip_prefix(PREFIX)?.split_once('_')?;
    (id.len() == ID_LEN && id.bytes().all(|b| b.is_ascii_alphanumeric())).then_some(id)
}

/// Hex SHA-256 of `key`, the form keys are stored and looked up in.
pub fn hash(key: &str) -> String {
    let digest = Sha256::digest(key.as_bytes());
    digest.iter().map(|byte| format!("{byte:02x}")).collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn keys_are_unique_and_carry_their_id() {
        let a = NewApiKey::generate();
        let b = NewApiKey::generate();
        assert_ne!(a.key, b.key);
        assert!(a.key.starts_with(&format!("hk_{}_", a.id)), "{}", a.key);
        assert_eq!(a.hash().len(), 64);
        assert_eq!(a.hash(), hash(&a.key));
        assert!(!format!("{a:?}").contains(&a.key), "Debug hides the key");
        assert_eq!(id_of(&a.key), Some(a.id.as_str()));
        for not_a_key in [
            "",
            "hk_",
            "hk_short_x",
            "xx_k3x9a0b1c2d4_x",
            "hk_k3x9a0b1c2d4",
        ] {
            assert_eq!(id_of(not_a_key), None, "{not_a_key:?}");
        }
    }
}
