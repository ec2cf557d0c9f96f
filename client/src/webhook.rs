//! Standard Webhooks signatures (<https://www.standardwebhooks.com>): how
//! Herald signs every delivery and how a receiver written in Rust checks
//! one.
//!
//! Each delivery carries `webhook-id`, `webhook-timestamp` (Unix seconds)
//! and `webhook-signature`: one or more space-separated `v1,<base64>`,
//! each the HMAC-SHA256 of `"{id}.{timestamp}.{body}"` under one of the
//! tenant's secrets. While a rotated secret is in its grace window both
//! secrets sign, so a receiver holding either one accepts the delivery.
//!
//! ```
//! use herald_client::webhook::{Secret, verify};
//!
//! # fn handle(headers: &http::HeaderMap, body: &[u8]) -> Result<(), Box<dyn std::error::Error>> {
//! let secret: Secret = "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw".parse()?;
//! verify(&secret, headers, body)?; // reject the request if this fails
//! # Ok(())
//! # }
//! ```

use std::{
    str::FromStr,
    time::{Duration, SystemTime, UNIX_EPOCH},
};

use base64::{Engine, engine::general_purpose::STANDARD};
use hmac::{Hmac, Mac};
use sha2::Sha256;

/// How far `webhook-timestamp` may be from the receiver's clock, either
/// way, before a delivery is refused as a possible replay.
pub const TOLERANCE: Duration = Duration::from_secs(5 * 60);

/// The prefix of a secret in its text form.
const SECRET_PREFIX: &str = "whsec_";
/// The signature scheme Herald uses.
const VERSION: &str = "v1";

/// A signing secret: the bytes behind `whsec_<base64>`. Its `Debug` does
/// not show them.
#[derive(Clone)]
pub struct Secret {
    key: Vec<u8>,
}

impl std::fmt::Debug for Secret {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Secret(<redacted>)")
    }
}

impl FromStr for Secret {
    type Err = VerifyError;

    /// Reads `whsec_<base64>` (the prefix is optional).
    fn from_str(text: &str) -> Result<Self, Self::Err> {
        let encoded = text.strip_prefix(SECRET_PREFIX).unwrap_or(text);
        let key = STANDARD
            .decode(encoded)
            .map_err(|_| VerifyError::InvalidSecret)?;
        if key.is_empty() {
            return Err(VerifyError::InvalidSecret);
        }
        Ok(Self { key })
    }
}

impl Secret {
    /// The signature of one message: `v1,<base64 HMAC-SHA256 of
    /// "{id}.{timestamp}.{body}">`.
    pub fn sign(&self, id: &str, timestamp: u64, body: &[u8]) -> String {
        let mac = self.mac(id, timestamp, body).finalize().into_bytes();
        format!("{VERSION},{}", STANDARD.encode(mac))
    }

    fn mac(&self, id: &str, timestamp: u64, body: &[u8]) -> Hmac<Sha256> {
        let mut mac =
            Hmac::<Sha256>::new_from_slice(&self.key).expect("HMAC accepts keys of any length");
        mac.update(id.as_bytes());
        mac.update(b".");
        mac.update(timestamp.to_string().as_bytes());
        mac.update(b".");
        mac.update(body);
        mac
    }
}

/// Why a delivery failed verification. Refuse the request on any of them.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum VerifyError {
    /// The secret is not `whsec_` followed by base64.
    #[error("the signing secret is not valid: expected whsec_ followed by base64")]
    InvalidSecret,
    /// A required header is absent.
    #[error("the {0} header is missing")]
    MissingHeader(&'static str),
    /// A header is present but unreadable.
    #[error("the {0} header is not valid")]
    InvalidHeader(&'static str),
    /// The timestamp is further from now than [`TOLERANCE`].
    #[error(
        "webhook-timestamp {timestamp} is more than 5 minutes from now ({now}); refusing a possible replay"
    )]
    TimestampOutOfTolerance {
        /// The timestamp sent.
        timestamp: u64,
        /// The receiver's clock, Unix seconds.
        now: u64,
    },
    /// No `v1` signature matches this secret.
    #[error("no signature matches: the body was changed or it was signed with another secret")]
    NoMatchingSignature,
}

/// Checks a delivery's signature headers against `secret`, with the
/// receiver's clock as now. Comparison is constant-time.
pub fn verify(secret: &Secret, headers: &http::HeaderMap, body: &[u8]) -> Result<(), VerifyError> {
    verify_at(secret, headers, body, SystemTime::now())
}

/// [`verify`] with an explicit "now", for tests and replays.
pub fn verify_at(
    secret: &Secret,
    headers: &http::HeaderMap,
    body: &[u8],
    now: SystemTime,
) -> Result<(), VerifyError> {
    let header = |name: &'static str| {
        headers
            .get(name)
            .ok_or(VerifyError::MissingHeader(name))?
            .to_str()
            .map_err(|_| VerifyError::InvalidHeader(name))
    };
    let id = header("webhook-id")?;
    let timestamp: u64 = header("webhook-timestamp")?
        .trim()
        .parse()
        .map_err(|_| VerifyError::InvalidHeader("webhook-timestamp"))?;
    let signatures = header("webhook-signature")?;
    let now = now
        .duration_since(UNIX_EPOCH)
        .map_or(0, |since| since.as_secs());
    if timestamp.abs_diff(now) > TOLERANCE.as_secs() {
        return Err(VerifyError::TimestampOutOfTolerance { timestamp, now });
    }
    let matches = signatures
        .split(' ')
        .filter_map(|signature| signature.split_once(','))
        .filter(|(version, _)| *version == VERSION)
        .filter_map(|(_, encoded)| STANDARD.decode(encoded).ok())
        // `verify_slice` compares in constant time.
        .any(|signature| {
            secret
                .mac(id, timestamp, body)
                .verify_slice(&signature)
                .is_ok()
        });
    if matches {
        Ok(())
    } else {
        Err(VerifyError::NoMatchingSignature)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The vectors published with the Standard Webhooks specification and
    /// its reference libraries.
    const VECTORS: &[(&str, &str, u64, &str, &str)] = &[
        (
            "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw",
            "msg_p5jXN8AQM9LWM0D4loKWxJek",
            1_614_265_330,
            r#"{"test": 2432232314}"#,
            "v1,g0hM9SsE+OTPJTGt/tmIKtSyZlE3uFJELVlNIOLJ1OE=",
        ),
        (
            "whsec_C2FVsBQIhrscChlQIMV+b5sSYspob7oD",
            "msg_27UH4WbU6Z5A5EzD8u03UvzRbpk",
            1_649_367_553,
            r#"{"email":"test@example.com","username":"test_user"}"#,
            "v1,tZ1I4/hDygAJgO5TYxiSd6Sd0kDW6hPenDe+bTa3Kkw=",
        ),
    ];

    fn headers(id: &str, timestamp: u64, signature: &str) -> http::HeaderMap {
        let mut headers = http::HeaderMap::new();
        headers.insert("webhook-id", id.parse().unwrap());
        headers.insert("webhook-timestamp", timestamp.into());
        headers.insert("webhook-signature", signature.parse().unwrap());
        headers
    }

    fn at(seconds: u64) -> SystemTime {
        UNIX_EPOCH + Duration::from_secs(seconds)
    }

    #[test]
    fn signs_and_verifies_the_specification_vectors() {
        for &(secret, id, timestamp, body, expected) in VECTORS {
            let secret: Secret = secret.parse().unwrap();
            assert_eq!(secret.sign(id, timestamp, body.as_bytes()), expected);
            let headers = headers(id, timestamp, expected);
            verify_at(&secret, &headers, body.as_bytes(), at(timestamp)).unwrap();
        }
    }

    #[test]
    fn any_of_several_signatures_may_match() {
        let (secret, id, timestamp, body, expected) = VECTORS[0];
        let other: Secret = VECTORS[1].0.parse().unwrap();
        let both = format!("{} {expected}", other.sign(id, timestamp, body.as_bytes()));
        let secret: Secret = secret.parse().unwrap();
        verify_at(
            &secret,
            &headers(id, timestamp, &both),
            body.as_bytes(),
            at(timestamp),
        )
        .unwrap();
        verify_at(
            &other,
            &headers(id, timestamp, &both),
            body.as_bytes(),
            at(timestamp),
        )
        .unwrap();
    }

    #[test]
    fn refuses_tampering_other_secrets_and_stale_timestamps() {
        let (secret, id, timestamp, body, expected) = VECTORS[0];
        let secret: Secret = secret.parse().unwrap();
        let good = headers(id, timestamp, expected);
        let now = at(timestamp);
        assert_eq!(
            verify_at(&secret, &good, b"{\"test\": 1}", now),
            Err(VerifyError::NoMatchingSignature)
        );
        let wrong: Secret = VECTORS[1].0.parse().unwrap();
        assert_eq!(
            verify_at(&wrong, &good, body.as_bytes(), now),
            Err(VerifyError::NoMatchingSignature)
        );
        for truncated in [
            "v1,",
            &expected[..8],
            "v2,g0hM9SsE+OTPJTGt/tmIKtSyZlE3uFJELVlNIOLJ1OE=",
        ] {
            assert_eq!(
                verify_at(
                    &secret,
                    &headers(id, timestamp, truncated),
                    body.as_bytes(),
                    now
                ),
                Err(VerifyError::NoMatchingSignature),
                "{truncated}"
            );
        }
        let edge = TOLERANCE.as_secs();
        verify_at(&secret, &good, body.as_bytes(), at(timestamp + edge)).unwrap();
        verify_at(&secret, &good, body.as_bytes(), at(timestamp - edge)).unwrap();
        for skewed in [timestamp + edge + 1, timestamp - edge - 1] {
            assert!(matches!(
                verify_at(&secret, &good, body.as_bytes(), at(skewed)),
                Err(VerifyError::TimestampOutOfTolerance { .. })
            ));
        }
        let mut missing = good.clone();
        missing.remove("webhook-id");
        assert_eq!(
            verify_at(&secret, &missing, body.as_bytes(), now),
            Err(VerifyError::MissingHeader("webhook-id"))
        );
        assert_eq!(
            "whsec_!!".parse::<Secret>().unwrap_err(),
            VerifyError::InvalidSecret
        );
        assert!(!format!("{secret:?}").contains("MfKQ"));
    }
}
