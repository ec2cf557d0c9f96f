//! Tenants and their credentials: the API keys callers present (only a
//! hash is stored) and the signing secrets every delivery is signed with
//! (Standard Webhooks): the tenant's, or its endpoint's for a delivery
//! made by publishing an event. `api/` authenticates with [`api_key`]; the
//! scheduler signs with the secrets the [`Keyring`] holds; `cli/` creates
//! and rotates both. Signing secrets are stored sealed (see
//! [`crate::secrets`]), and [`reseal`] rewrites them under new keys.

pub mod api_key;
mod keyring;
mod reseal;
mod signing_secret;

pub use keyring::{Keyring, KeysStamp};
pub use reseal::{Scope, reseal};
pub use signing_secret::{Signer, SigningKeys, SigningSecret};

/// The tenant of every caller while Herald runs open (no API key exists
/// yet); `herald key create default` gives it a key.
pub const DEFAULT_TENANT: &str = "default";

/// Longest tenant name, in bytes (the column's width).
const MAX_NAME_BYTES: usize = 64;

/// A tenant name that breaks the naming rule.
#[derive(Debug, thiserror::Error)]
#[error(
    "tenant name {0:?} is not valid: use 1 to 64 lower-case letters, digits, '-' or '_', starting with a letter or digit"
)]
pub struct InvalidTenantName(pub String);

/// Checks a tenant name: lower-case ASCII letters, digits, `-` and `_`,
/// starting with a letter or digit, at most 64 bytes. Names appear in
/// logs and the CLI's tables, so they are kept plain.
pub fn tenant_name(name: &str) -> Result<&str, InvalidTenantName> {
    let plain = |c: char| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '-' || c == '_';
    let valid = !name.is_empty()
        && name.len() <= MAX_NAME_BYTES
        && name.chars().all(plain)
        && name.starts_with(|c: char| c.is_ascii_alphanumeric());
    if valid {
        Ok(name)
    } else {
        Err(InvalidTenantName(name.to_owned()))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tenant_names_are_plain() {
        for good in ["acme", "acme-eu_1", "0x", &"a".repeat(64)] {
            assert!(tenant_name(good).is_ok(), "{good}");
        }
        for bad in ["", "Acme", "-acme", "ac me", "acmé", &"a".repeat(65)] {
            assert!(tenant_name(bad).is_err(), "{bad}");
        }
    }
}
