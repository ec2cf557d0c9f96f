//! Signing secrets in the Standard Webhooks form, `whsec_` + base64 of 32
//! random bytes, and the set of secrets that sign a tenant's deliveries.

use base64::{Engine, engine::general_purpose::STANDARD};
use herald_client::webhook::Secret;
use rand::Rng;

use crate::secrets::{OpenError, Sealed, Sealer};

/// A signing secret as stored and shown: `whsec_...`. Its `Debug` never
/// shows the value, so it cannot reach a log by accident.
#[derive(Clone, PartialEq, Eq)]
pub struct SigningSecret(String);

impl std::fmt::Debug for SigningSecret {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("SigningSecret(<redacted>)")
    }
}

impl SigningSecret {
    /// A new random secret of 32 bytes (the specification asks for 24 to
    /// 64).
    pub fn generate() -> Self {
        let bytes: [u8; 32] = rand::rng().random();
        Self(format!("whsec_{}", STANDARD.encode(bytes)))
    }

    /// The secret sealed for storage as `tenant_id`'s.
    pub fn seal(&self, sealer: &Sealer, tenant_id: &str) -> Sealed {
        sealer.seal(&self.0, &context(tenant_id))
    }

    /// A known secret, for tests that check signatures against it.
    #[cfg(test)]
    pub(crate) fn from_text(text: &str) -> Self {
        Self(text.to_owned())
    }

    /// `tenant_id`'s stored secret, opened.
    pub fn open(stored: &Sealed, sealer: &Sealer, tenant_id: &str) -> Result<Self, OpenError> {
        sealer.open(stored, &context(tenant_id)).map(Self)
    }

    /// The `whsec_...` text, for storing and for showing once.
    pub fn expose(&self) -> &str {
        &self.0
    }
}

/// What a tenant's signing secret is sealed for: the tenant, so a sealed
/// secret copied to another tenant's row does not open.
fn context(tenant_id: &str) -> String {
    format!("tenants.signing_secret:{tenant_id}")
}

/// The secrets a tenant's deliveries are signed with right now: the
/// current one and, during a rotation's grace window, the previous one.
#[derive(Debug, Clone, Default)]
pub struct SigningKeys {
    secrets: Vec<Secret>,
}

impl SigningKeys {
    /// Keys from stored secrets, current first; unreadable ones are
    /// skipped with a warning (naming the tenant, never the value).
    pub fn new(tenant_id: &str, stored: impl IntoIterator<Item = SigningSecret>) -> Self {
        let secrets = stored
            .into_iter()
            .filter_map(|secret| match secret.expose().parse::<Secret>() {
                Ok(secret) => Some(secret),
                Err(error) => {
                    tracing::warn!(tenant = tenant_id, %error, "a stored signing secret is unreadable; rotate it with `herald tenant rotate-secret`");
                    None
                }
            })
            .collect();
        Self { secrets }
    }

    /// The `webhook-signature` value for one attempt: one `v1,<base64>`
    /// per secret, space-separated; `None` without secrets.
    pub fn signature(&self, id: &str, timestamp: u64, body: &[u8]) -> Option<String> {
        let signatures: Vec<String> = self
            .secrets
            .iter()
            .map(|secret| secret.sign(id, timestamp, body))
            .collect();
        (!signatures.is_empty()).then(|| signatures.join(" "))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn generated_secrets_parse_and_stay_out_of_debug() {
        let secret = SigningSecret::generate();
        assert!(secret.expose().starts_with("whsec_"));
        assert!(!format!("{secret:?}").contains(secret.expose()));
        let keys = SigningKeys::new("t", [secret]);
        let signature = keys.signature("id", 1, b"{}").unwrap();
        assert!(signature.starts_with("v1,"), "{signature}");
        assert!(!signature.contains(' '), "one secret, one signature");
    }

    #[test]
    fn a_secret_opens_only_as_its_own_tenants() {
        let sealer = Sealer::new(crate::secrets::SecretKey::generate(), vec![]);
        let secret = SigningSecret::generate();
        let sealed = secret.seal(&sealer, "acme");
        assert!(!sealed.as_stored().contains(secret.expose()));
        assert_eq!(
            SigningSecret::open(&sealed, &sealer, "acme").unwrap(),
            secret
        );
        assert!(SigningSecret::open(&sealed, &sealer, "other").is_err());
    }

    #[test]
    fn two_secrets_sign_twice() {
        let keys = SigningKeys::new("t", [SigningSecret::generate(), SigningSecret::generate()]);
        let signature = keys.signature("id", 1, b"{}").unwrap();
        assert_eq!(signature.split(' ').count(), 2, "{signature}");
        assert_eq!(SigningKeys::default().signature("id", 1, b"{}"), None);
    }
}
