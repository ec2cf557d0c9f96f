//! [`Sealer`]: seals a secret for storage and opens it again, with
//! XChaCha20-Poly1305 (authenticated encryption, random 192-bit nonces).
//!
//! A stored value is an envelope, `sealed:1:` then one sealing per key,
//! comma-separated, each `<key id>.<base64url of nonce and ciphertext>`.
//! A value is sealed under every key the sealer holds (the current one
//! and any previous ones), so during a key rotation a replica that holds
//! only the old key and one that holds only the new key both open it.
//! Each sealing authenticates a *context* (which column and row it
//! belongs to), so a sealed value copied to another row does not open.
//! A value without the prefix is a secret stored before sealing existed:
//! it opens as itself until the sealing pass rewrites it.

use base64::{Engine, engine::general_purpose::URL_SAFE_NO_PAD};
use chacha20poly1305::{
    XNonce,
    aead::{Aead, Payload},
};
use rand::Rng;

use super::SecretKey;

/// The prefix of a sealed envelope.
const PREFIX: &str = "sealed:1:";
/// Bytes in a nonce.
const NONCE_BYTES: usize = 24;

/// A secret as stored: an envelope of sealings, or (before the sealing
/// pass) plain text. `Debug` shows only the ids of the keys that sealed it.
#[derive(Clone, PartialEq, Eq)]
pub struct Sealed(String);

impl std::fmt::Debug for Sealed {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self.key_ids() {
            Some(ids) => write!(f, "Sealed(keys {})", ids.join(",")),
            None => f.write_str("Sealed(<plain>)"),
        }
    }
}

impl Sealed {
    /// A value read from the database.
    pub fn from_stored(value: String) -> Self {
        Self(value)
    }

    /// The text to store.
    pub fn as_stored(&self) -> &str {
        &self.0
    }

    /// The ids of the keys this value is sealed under; `None` for a
    /// plain-text value.
    pub fn key_ids(&self) -> Option<Vec<&str>> {
        let sealings = self.0.strip_prefix(PREFIX)?;
        Some(
            sealings
                .split(',')
                .map(|sealing| sealing.split_once('.').map_or(sealing, |(id, _)| id))
                .collect(),
        )
    }
}

/// A stored secret that cannot be opened.
#[derive(Debug, thiserror::Error)]
pub enum OpenError {
    /// None of the keys that sealed it is configured here.
    #[error(
        "a stored secret is sealed under key id(s) {sealed_under}, and this process holds {held}: give it one of those keys (HERALD_SECRET_KEY, or HERALD_PREVIOUS_SECRET_KEYS during a rotation)"
    )]
    UnknownKey {
        /// The ids in the envelope.
        sealed_under: String,
        /// The ids this sealer holds.
        held: String,
    },
    /// A sealing under a key held here does not authenticate: the value
    /// was changed, or copied from another row.
    #[error(
        "a stored secret sealed under key id {0} does not authenticate: it was altered or moved from another row"
    )]
    Tampered(String),
}

/// Seals under every key it holds and opens with any of them; the first
/// is the current key. Cheap to clone.
#[derive(Debug, Clone)]
pub struct Sealer {
    keys: Vec<SecretKey>,
}

impl Sealer {
    /// A sealer with `current` and the `previous` keys still in use
    /// (duplicates of the current one are dropped).
    pub fn new(current: SecretKey, previous: Vec<SecretKey>) -> Self {
        let mut keys = vec![current];
        for key in previous {
            if !keys.contains(&key) {
                keys.push(key);
            }
        }
        Self { keys }
    }

    /// The id of the current key.
    pub fn current_id(&self) -> &str {
        self.keys[0].id()
    }

    /// The ids of every key held, current first, comma-separated.
    pub fn held_ids(&self) -> String {
        self.keys
            .iter()
            .map(SecretKey::id)
            .collect::<Vec<_>>()
            .join(",")
    }

    /// `secret` sealed under every key held, bound to `context`.
    pub fn seal(&self, secret: &str, context: &str) -> Sealed {
        let sealings: Vec<String> = self
            .keys
            .iter()
            .map(|key| {
                let nonce: [u8; NONCE_BYTES] = rand::rng().random();
                let payload = Payload {
                    msg: secret.as_bytes(),
                    aad: context.as_bytes(),
                };
                let ciphertext = key
                    .cipher()
                    .encrypt(&XNonce::from(nonce), payload)
                    .expect("encrypting to a Vec cannot fail");
                let mut sealed = nonce.to_vec();
                sealed.extend_from_slice(&ciphertext);
                format!("{}.{}", key.id(), URL_SAFE_NO_PAD.encode(sealed))
            })
            .collect();
        Sealed(format!("{PREFIX}{}", sealings.join(",")))
    }

    /// The secret in `stored`, opened with whichever held key sealed it
    /// for `context`; a plain-text value is returned as it is.
    pub fn open(&self, stored: &Sealed, context: &str) -> Result<String, OpenError> {
        let Some(sealings) = stored.0.strip_prefix(PREFIX) else {
            return Ok(stored.0.clone());
        };
        for sealing in sealings.split(',') {
            let Some((id, data)) = sealing.split_once('.') else {
                continue;
            };
            let Some(key) = self.keys.iter().find(|key| key.id() == id) else {
                continue;
            };
            let tampered = || OpenError::Tampered(id.to_owned());
            let data = URL_SAFE_NO_PAD.decode(data).map_err(|_| tampered())?;
            if data.len() < NONCE_BYTES {
                return Err(tampered());
            }
            let (nonce, ciphertext) = data.split_at(NONCE_BYTES);
            let nonce = XNonce::try_from(nonce).map_err(|_| tampered())?;
            let payload = Payload {
                msg: ciphertext,
                aad: context.as_bytes(),
            };
            let plain = key
                .cipher()
                .decrypt(&nonce, payload)
                .map_err(|_| tampered())?;
            return String::from_utf8(plain).map_err(|_| tampered());
        }
        Err(OpenError::UnknownKey {
            sealed_under: stored.key_ids().unwrap_or_default().join(","),
            held: self.held_ids(),
        })
    }

    /// Whether `stored` is sealed under exactly the keys held, so
    /// `herald secrets rotate-key` has nothing to do for it.
    pub fn is_up_to_date(&self, stored: &Sealed) -> bool {
        let Some(mut ids) = stored.key_ids() else {
            return false;
        };
        let mut held: Vec<&str> = self.keys.iter().map(SecretKey::id).collect();
        ids.sort_unstable();
        held.sort_unstable();
        ids == held
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const CONTEXT: &str = "tenant acme";

    #[test]
    fn a_sealed_secret_opens_under_its_context_only() {
        let sealer = Sealer::new(SecretKey::generate(), vec![]);
        let sealed = sealer.seal("whsec_abc", CONTEXT);
        assert!(!sealed.as_stored().contains("whsec_abc"), "{sealed:?}");
        assert_eq!(sealer.open(&sealed, CONTEXT).unwrap(), "whsec_abc");
        assert!(matches!(
            sealer.open(&sealed, "tenant other"),
            Err(OpenError::Tampered(_))
        ));
        assert_ne!(sealer.seal("whsec_abc", CONTEXT), sealed, "fresh nonces");
        assert!(sealer.is_up_to_date(&sealed));
    }

    #[test]
    fn during_a_rotation_either_key_alone_opens_it() {
        let (old, new) = (SecretKey::generate(), SecretKey::generate());
        let rotating = Sealer::new(new.clone(), vec![old.clone()]);
        let sealed = rotating.seal("whsec_abc", CONTEXT);
        for alone in [Sealer::new(old.clone(), vec![]), Sealer::new(new, vec![])] {
            assert_eq!(alone.open(&sealed, CONTEXT).unwrap(), "whsec_abc");
            assert!(!alone.is_up_to_date(&sealed), "two keys sealed it");
        }
        let other = Sealer::new(SecretKey::generate(), vec![]);
        let error = other.open(&sealed, CONTEXT).unwrap_err().to_string();
        assert!(error.contains(old.id()), "{error}");
        assert!(!error.contains("whsec"), "{error}");
    }

    #[test]
    fn an_altered_value_is_refused_and_a_plain_one_passes_through() {
        let sealer = Sealer::new(SecretKey::generate(), vec![]);
        let mut stored = sealer.seal("whsec_abc", CONTEXT).as_stored().to_owned();
        let last = stored.pop().unwrap();
        stored.push(if last == 'A' { 'B' } else { 'A' });
        let altered = Sealed::from_stored(stored);
        assert!(sealer.open(&altered, CONTEXT).is_err());
        let plain = Sealed::from_stored("whsec_old".to_owned());
        assert_eq!(sealer.open(&plain, CONTEXT).unwrap(), "whsec_old");
        assert!(!sealer.is_up_to_date(&plain));
        assert_eq!(format!("{plain:?}"), "Sealed(<plain>)");
    }
}
