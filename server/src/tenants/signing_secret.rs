//! Signing secrets in the Standard Webhooks form, `whsec_` + base64 of 32
//! random bytes, whose they are ([`Signer`]: a tenant, or one of its
//! endpoints), and the set of secrets that sign a delivery.

use base64::{Engine, engine::general_purpose::STANDARD};
use herald_client::webhook::Secret;
use rand::Rng;
use uuid::Uuid;

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

    /// The secret sealed for storage as `signer`'s.
    pub fn seal(&self, sealer: &Sealer, signer: &Signer) -> Sealed {
        sealer.seal(&self.0, &signer.context())
    }

    /// A known secret, for tests that check signatures against it.
    #[cfg(test)]
    pub(crate) fn from_text(text: &str) -> Self {
        Self(text.to_owned())
    }

    /// `signer`'s stored secret, opened.
    pub fn open(stored: &Sealed, sealer: &Sealer, signer: &Signer) -> Result<Self, OpenError> {
        sealer.open(stored, &signer.context()).map(Self)
    }

    /// The `whsec_...` text, for storing and for showing once.
    pub fn expose(&self) -> &str {
        &self.0
    }
}

/// Whose secrets sign a delivery: its tenant's, or, for a delivery made
/// by publishing an event, its endpoint's.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub enum Signer {
    /// A tenant's own secret, for deliveries enqueued with a URL.
    Tenant(String),
    /// An endpoint's secret.
    Endpoint {
        /// The endpoint's tenant.
        tenant_id: String,
        /// The endpoint.
        id: Uuid,
    },
}

impl Signer {
    /// The tenant the secret belongs to.
    pub fn tenant_id(&self) -> &str {
        match self {
            Self::Tenant(tenant_id) | Self::Endpoint { tenant_id, .. } => tenant_id,
        }
    }

    /// What its secret is sealed for, so a sealed secret copied to another
    /// tenant's or endpoint's row does not open.
    fn context(&self) -> String {
        match self {
            Self::Tenant(tenant_id) => format!("tenants.signing_secret:{tenant_id}"),
            Self::Endpoint { tenant_id, id } => {
                format!("endpoints.signing_secret:{tenant_id}:{id}")
            }
        }
    }
}

impl std::fmt::Display for Signer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Self::Tenant(tenant_id) => write!(f, "tenant {tenant_id}"),
            Self::Endpoint { tenant_id, id } => write!(f, "endpoint {id} of tenant {tenant_id}"),
        }
    }
}

/// The secrets a tenant's deliveries are signed with right now: the
/// current one and, during a rotation's grace window, the previous one.
#[derive(Debug, Clone, Default)]
pub struct SigningKeys {
    secrets: Vec<Secret>,
}

impl SigningKeys {
    /// Keys from stored secrets, current first; unreadable ones are
    /// skipped with a warning (naming whose, never the value).
    pub fn new(signer: &Signer, stored: impl IntoIterator<Item = SigningSecret>) -> Self {
        let secrets = stored
            .into_iter()
            .filter_map(|secret| match secret.expose().parse::<Secret>() {
                Ok(secret) => Some(secret),
                Err(error) => {
                    tracing::warn!(%signer, %error, "a stored signing secret is unreadable; rotate it (`herald tenant rotate-secret`, `herald endpoints rotate-secret`)");
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
        let keys = SigningKeys::new(&Signer::Tenant("t".into()), [secret]);
        let signature = keys.signature("id", 1, b"{}").unwrap();
        assert!(signature.starts_with("v1,"), "{signature}");
        assert!(!signature.contains(' '), "one secret, one signature");
    }

    #[test]
    fn a_secret_opens_only_as_its_owners() {
        let sealer = Sealer::new(crate::secrets::SecretKey::generate(), vec![]);
        let secret = SigningSecret::generate();
        let acme = Signer::Tenant("acme".into());
        let sealed = secret.seal(&sealer, &acme);
        assert!(!sealed.as_stored().contains(secret.expose()));
        assert_eq!(
            SigningSecret::open(&sealed, &sealer, &acme).unwrap(),
            secret
        );
        assert!(SigningSecret::open(&sealed, &sealer, &Signer::Tenant("other".into())).is_err());
        let endpoint = Signer::Endpoint {
            tenant_id: "acme".into(),
            id: Uuid::now_v7(),
        };
        let sealed = secret.seal(&sealer, &endpoint);
        assert!(SigningSecret::open(&sealed, &sealer, &endpoint).is_ok());
        assert!(SigningSecret::open(&sealed, &sealer, &acme).is_err());
        let other_endpoint = Signer::Endpoint {
            tenant_id: "acme".into(),
            id: Uuid::now_v7(),
        };
        assert!(SigningSecret::open(&sealed, &sealer, &other_endpoint).is_err());
    }

    #[test]
    fn two_secrets_sign_twice() {
        let keys = SigningKeys::new(
            &Signer::Tenant("t".into()),
            [SigningSecret::generate(), SigningSecret::generate()],
        );
        let signature = keys.signature("id", 1, b"{}").unwrap();
        assert_eq!(signature.split(' ').count(), 2, "{signature}");
        assert_eq!(SigningKeys::default().signature("id", 1, b"{}"), None);
    }
}
