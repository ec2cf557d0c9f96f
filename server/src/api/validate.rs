//! Enqueue validation: turns an `EnqueueRequest` into a [`NewDelivery`] or
//! an INVALID_ARGUMENT that names the field and the rule it broke.

use std::net::IpAddr;

use bytes::Bytes;
use herald_proto::v1::{EnqueueRequest, HttpMethod as ProtoMethod};
use http::{HeaderName, HeaderValue};

use super::{convert::timestamp_ms, error::ApiError};
use crate::{
    config::InputLimits,
    domain::{Destination, HttpMethod, HttpRequest, TraceContext, unix_ms},
    store::records::NewDelivery,
    transport::TargetPolicy,
};

/// What every request is checked against.
#[derive(Debug, Clone)]
pub struct Limits {
    /// Sizes, counts and ranges.
    pub input: InputLimits,
    /// Attempts when the request does not say.
    pub default_max_attempts: u32,
    /// Which literal IP destinations are allowed (host names are checked
    /// when they resolve, at send time).
    pub targets: TargetPolicy,
}

/// Headers Herald sets itself or that belong to the connection, which a
/// caller may not set.
const RESERVED_HEADERS: &[&str] = &[
    "host",
    "content-length",
    "content-type",
    "transfer-encoding",
    "connection",
    "keep-alive",
    "upgrade",
    "te",
    "trailer",
    "user-agent",
];
/// Header prefixes Herald owns.
const RESERVED_PREFIXES: &[&str] = &["webhook-", "herald-", "proxy-"];
/// Headers that carry credentials by name.
const SECRET_HEADERS: &[&str] = &["authorization", "cookie", "set-cookie"];
/// Words that mark a header name as carrying a credential. Names such as
/// `x-idempotency-key` or `x-request-id` contain none of them.
const SECRET_WORDS: &[&str] = &[
    "token",
    "secret",
    "password",
    "passwd",
    "api-key",
    "api_key",
    "apikey",
    "auth",
    "credential",
];

/// Checks `request` and builds the delivery to store for `tenant_id`,
/// carrying the caller's `trace` context (from the call's metadata).
pub fn enqueue(
    request: EnqueueRequest,
    tenant_id: &str,
    trace: Option<TraceContext>,
    limits: &Limits,
) -> Result<NewDelivery, ApiError> {
    let input = &limits.input;
    let (url, destination) = url(&request.url, limits)?;
    let method = method(request.method)?;
    let headers = headers(
        request
            .headers
            .into_iter()
            .map(|h| (h.name, h.value))
            .collect(),
        input,
    )?;
    body_size("body", request.body.len(), input)?;
    let content_type = content_type(request.content_type)?;
    let idempotency_key = non_empty(request.idempotency_key)
        .map(|key| idempotency_key(key, input.max_idempotency_key_bytes))
        .transpose()?;
    let max_attempts = max_attempts(request.max_attempts, limits)?;
    let not_before_ms = time_ms("not_before_time", request.not_before_time.as_ref())?;
    let deadline_ms = time_ms("deadline_time", request.deadline_time.as_ref())?;
    let now_ms = unix_ms(std::time::SystemTime::now());
    if let Some(deadline) = deadline_ms
        && deadline <= not_before_ms.map_or(now_ms, |not_before| not_before.max(now_ms))
    {
        return Err(ApiError::invalid(
            "deadline_time",
            "must be in the future and after not_before_time",
        ));
    }
    Ok(NewDelivery {
        tenant_id: tenant_id.to_owned(),
        request: HttpRequest {
            method,
            url,
            headers,
            content_type,
            body: Bytes::from(request.body),
        },
        destination,
        idempotency_key,
        max_attempts,
        max_attempts_chosen: request.max_attempts.is_some(),
        not_before_ms,
        deadline_ms,
        trace,
        event: None,
    })
}

/// The caller's W3C trace context from the request metadata, if valid (an
/// invalid one is ignored, as the W3C specification asks).
pub fn trace_context(metadata: &tonic::metadata::MetadataMap) -> Option<TraceContext> {
    let header = |name| metadata.get(name).and_then(|value| value.to_str().ok());
    TraceContext::parse(header("traceparent")?, header("tracestate"))
}

/// An optional proto timestamp as Unix ms, or INVALID_ARGUMENT for `field`.
pub fn time_ms(
    field: &'static str,
    time: Option<&prost_types::Timestamp>,
) -> Result<Option<i64>, ApiError> {
    time.map(|time| {
        timestamp_ms(time).ok_or_else(|| ApiError::invalid(field, "is not a valid timestamp"))
    })
    .transpose()
}

/// The attempts a request asks for, or the server's default.
pub(super) fn max_attempts(requested: Option<u32>, limits: &Limits) -> Result<u32, ApiError> {
    let most = limits.input.max_attempts_limit;
    match requested {
        None => Ok(limits.default_max_attempts),
        Some(n) if (1..=most).contains(&n) => Ok(n),
        Some(n) => Err(ApiError::invalid(
            "max_attempts",
            format!("is {n}; it must be between 1 and {most} (HERALD_MAX_ATTEMPTS_LIMIT)"),
        )),
    }
}

/// `raw` as a content type (visible ASCII), `None` when empty.
pub(super) fn content_type(raw: String) -> Result<Option<String>, ApiError> {
    non_empty(raw)
        .map(|value| {
            HeaderValue::from_str(&value).map(|_| value).map_err(|_| {
                ApiError::invalid(
                    "content_type",
                    "must be visible ASCII, e.g. application/json",
                )
            })
        })
        .transpose()
}

/// A body (or payload) of at most the configured size, or why not.
pub(super) fn body_size(
    field: &'static str,
    len: usize,
    input: &InputLimits,
) -> Result<(), ApiError> {
    if len > input.max_body_bytes {
        return Err(ApiError::invalid(
            field,
            format!(
                "is {len} bytes; the limit is {} bytes (HERALD_MAX_BODY_BYTES)",
                input.max_body_bytes
            ),
        ));
    }
    Ok(())
}

/// `value`, unless it is empty.
pub(super) fn non_empty(value: String) -> Option<String> {
    (!value.is_empty()).then_some(value)
}

/// `raw` as a destination URL (normalised) and its destination, or why
/// not (for the field `url`).
pub(super) fn url(raw: &str, limits: &Limits) -> Result<(String, Destination), ApiError> {
    let invalid = |message: &str| ApiError::invalid("url", message.to_owned());
    if raw.is_empty() {
        return Err(invalid("is required, e.g. https://example.com/webhooks"));
    }
    let max_url_bytes = limits.input.max_url_bytes;
    if raw.len() > max_url_bytes {
        return Err(invalid(&format!(
            "is {} bytes; the limit is {max_url_bytes} (HERALD_MAX_URL_BYTES)",
            raw.len()
        )));
    }
    let parsed = url::Url::parse(raw).map_err(|error| {
        invalid(&format!(
            "is not an absolute URL ({error}), e.g. https://example.com/webhooks"
        ))
    })?;
    if !matches!(parsed.scheme(), "http" | "https") {
        return Err(invalid(&format!(
            "has scheme {:?}; only http and https are allowed",
            parsed.scheme()
        )));
    }
    if limits.input.require_https && parsed.scheme() != "https" {
        return Err(invalid(
            "must be https: this server refuses plain http destinations (HERALD_REQUIRE_HTTPS)",
        ));
    }
    let literal = match parsed.host() {
        None => return Err(invalid("has no host")),
        Some(url::Host::Domain("")) => return Err(invalid("has no host")),
        Some(url::Host::Domain(_)) => None,
        Some(url::Host::Ipv4(ip)) => Some(IpAddr::V4(ip)),
        Some(url::Host::Ipv6(ip)) => Some(IpAddr::V6(ip)),
    };
    if let Some(ip) = literal {
        limits
            .targets
            .check(ip)
            .map_err(|blocked| invalid(&blocked.to_string()))?;
    }
    if !parsed.username().is_empty() || parsed.password().is_some() {
        return Err(invalid(
            "must not carry credentials; send them in a header instead",
        ));
    }
    if parsed.fragment().is_some() {
        return Err(invalid(
            "must not have a #fragment; fragments are never sent",
        ));
    }
    let destination = Destination::of(&parsed).ok_or_else(|| invalid("has no host"))?;
    // The normalised form is what every attempt will request.
    Ok((parsed.into(), destination))
}

fn method(raw: i32) -> Result<HttpMethod, ApiError> {
    match ProtoMethod::try_from(raw) {
        Ok(ProtoMethod::Unspecified | ProtoMethod::Post) => Ok(HttpMethod::Post),
        Ok(ProtoMethod::Put) => Ok(HttpMethod::Put),
        Ok(ProtoMethod::Patch) => Ok(HttpMethod::Patch),
        Ok(ProtoMethod::Delete) => Ok(HttpMethod::Delete),
        Ok(ProtoMethod::Get) => Ok(HttpMethod::Get),
        Err(_) => Err(ApiError::invalid(
            "method",
            format!("{raw} is not a known method; use POST, PUT, PATCH, DELETE or GET"),
        )),
    }
}

/// `headers` checked: no names Herald sets, no credentials, within the
/// limits; names lower-cased.
pub(super) fn headers(
    headers: Vec<(String, String)>,
    limits: &InputLimits,
) -> Result<Vec<(String, String)>, ApiError> {
    if headers.len() > limits.max_headers {
        return Err(ApiError::invalid(
            "headers",
            format!(
                "has {} headers; the limit is {} (HERALD_MAX_HEADERS)",
                headers.len(),
                limits.max_headers
            ),
        ));
    }
    let total: usize = headers
        .iter()
        .map(|(name, value)| name.len() + value.len())
        .sum();
    if total > limits.max_header_bytes {
        return Err(ApiError::invalid(
            "headers",
            format!(
                "hold {total} bytes; the limit is {} (HERALD_MAX_HEADER_BYTES)",
                limits.max_header_bytes
            ),
        ));
    }
    headers
        .into_iter()
        .map(|(name, value)| {
            let parsed = HeaderName::from_bytes(name.as_bytes()).map_err(|_| {
                ApiError::invalid("headers", format!("name {name:?} is not a valid HTTP header name"))
            })?;
            let lower = parsed.as_str();
            if RESERVED_HEADERS.contains(&lower) || RESERVED_PREFIXES.iter().any(|p| lower.starts_with(p)) {
                return Err(ApiError::invalid(
                    "headers",
                    format!("{lower:?} is set by Herald and cannot be given (use content_type for Content-Type)"),
                ));
            }
            if looks_secret(lower) {
                return Err(ApiError::invalid(
                    "headers",
                    format!("{lower:?} looks like it carries a credential, and Herald refuses to store secrets with a delivery (anyone who can read the delivery would see it); receivers can authenticate Herald by the webhook-signature header instead"),
                ));
            }
            HeaderValue::from_str(&value).map_err(|_| {
                ApiError::invalid(
                    "headers",
                    format!("value of {lower:?} must be visible ASCII without control characters"),
                )
            })?;
            Ok((lower.to_owned(), value))
        })
        .collect()
}

/// Whether a (lower-case) header name looks like it carries a credential.
fn looks_secret(name: &str) -> bool {
    SECRET_HEADERS.contains(&name) || SECRET_WORDS.iter().any(|word| name.contains(word))
}

/// `key` as an idempotency key of at most `max_bytes`, or why not.
pub(super) fn idempotency_key(key: String, max_bytes: usize) -> Result<String, ApiError> {
    if key.len() > max_bytes {
        return Err(ApiError::invalid(
            "idempotency_key",
            format!(
                "is {} bytes; the limit is {max_bytes} (HERALD_MAX_IDEMPOTENCY_KEY_BYTES)",
                key.len()
            ),
        ));
    }
    if key.chars().any(char::is_control) {
        return Err(ApiError::invalid(
            "idempotency_key",
            "must not contain control characters",
        ));
    }
    Ok(key)
}

#[cfg(test)]
mod tests {
    use herald_proto::v1::Header;
    use proptest::prelude::*;

    use super::*;

    fn limits() -> Limits {
        Limits {
            input: InputLimits {
                max_body_bytes: 8,
                max_headers: 3,
                max_header_bytes: 40,
                max_url_bytes: 40,
                max_idempotency_key_bytes: 10,
                max_attempts_limit: 7,
                max_batch_size: 10,
                max_batch_bytes: 1024,
                max_page_size: 50,
                require_https: false,
            },
            default_max_attempts: 5,
            targets: TargetPolicy::default(),
        }
    }

    fn request(url: &str) -> EnqueueRequest {
        EnqueueRequest {
            url: url.to_owned(),
            ..Default::default()
        }
    }

    fn header(name: &str, value: &str) -> Header {
        Header {
            name: name.into(),
            value: value.into(),
        }
    }

    /// The field and message of the INVALID_ARGUMENT `request` gets.
    fn refusal_with(request: EnqueueRequest, limits: &Limits) -> (&'static str, String) {
        match enqueue(request, "default", None, limits) {
            Err(ApiError::InvalidArgument { field, message }) => (field, message),
            other => panic!("expected INVALID_ARGUMENT, got {other:?}"),
        }
    }

    fn rejected_field(request: EnqueueRequest) -> &'static str {
        refusal_with(request, &limits()).0
    }

    fn accepted(request: EnqueueRequest) -> NewDelivery {
        enqueue(request, "default", None, &limits()).expect("accepted")
    }

    #[test]
    fn accepts_a_plain_post_with_defaults() {
        let delivery = accepted(request("https://example.com/hook"));
        assert_eq!(delivery.request.method, HttpMethod::Post);
        assert_eq!(delivery.max_attempts, 5);
        assert_eq!(delivery.idempotency_key, None);
    }

    #[test]
    fn rejects_bad_urls() {
        for url in [
            "",
            "example.com/hook",
            "ftp://example.com/x",
            "http://user:pw@example.com/",
            "http://x/#frag",
        ] {
            assert_eq!(rejected_field(request(url)), "url", "{url}");
        }
    }

    #[test]
    fn every_limit_admits_its_value_and_refuses_one_more() {
        // Body: 8 bytes.
        let body = |n| EnqueueRequest {
            body: vec![0; n],
            ..request("http://example.com/")
        };
        accepted(body(8));
        let (field, message) = refusal_with(body(9), &limits());
        assert_eq!(field, "body");
        assert!(message.contains("limit is 8 bytes"), "{message}");

        // URL: 40 bytes.
        let url = |n: usize| format!("http://example.com/{}", "a".repeat(n - 19));
        accepted(request(&url(40)));
        let (field, message) = refusal_with(request(&url(41)), &limits());
        assert_eq!(field, "url");
        assert!(message.contains("limit is 40"), "{message}");

        // Header count: 3.
        let headers = |n: usize| EnqueueRequest {
            headers: (0..n).map(|i| header(&format!("x-{i}"), "v")).collect(),
            ..request("http://example.com/")
        };
        accepted(headers(3));
        let (field, message) = refusal_with(headers(4), &limits());
        assert_eq!(field, "headers");
        assert!(message.contains("limit is 3"), "{message}");

        // Header bytes: 40 (names plus values).
        let sized = |n: usize| EnqueueRequest {
            headers: vec![header("x-a", &"v".repeat(n - 3))],
            ..request("http://example.com/")
        };
        accepted(sized(40));
        let (field, message) = refusal_with(sized(41), &limits());
        assert_eq!(field, "headers");
        assert!(message.contains("limit is 40"), "{message}");

        // Idempotency key: 10 bytes.
        let keyed = |n: usize| EnqueueRequest {
            idempotency_key: "k".repeat(n),
            ..request("http://example.com/")
        };
        accepted(keyed(10));
        let (field, message) = refusal_with(keyed(11), &limits());
        assert_eq!(field, "idempotency_key");
        assert!(message.contains("limit is 10"), "{message}");

        // Attempts: 1 to 7.
        let attempts = |n| EnqueueRequest {
            max_attempts: Some(n),
            ..request("http://example.com/")
        };
        assert_eq!(accepted(attempts(7)).max_attempts, 7);
        assert_eq!(accepted(attempts(1)).max_attempts, 1);
        for n in [0, 8] {
            let (field, message) = refusal_with(attempts(n), &limits());
            assert_eq!(field, "max_attempts");
            assert!(message.contains("between 1 and 7"), "{message}");
        }
    }

    #[test]
    fn https_can_be_required() {
        let strict = Limits {
            input: InputLimits {
                require_https: true,
                ..limits().input
            },
            ..limits()
        };
        enqueue(request("https://example.com/"), "t", None, &strict).unwrap();
        let (field, message) = refusal_with(request("http://example.com/"), &strict);
        assert_eq!(field, "url");
        assert!(message.contains("https"), "{message}");
    }

    #[test]
    fn literal_private_addresses_are_refused_unless_allowed() {
        let urls = [
            "http://127.0.0.1:8080/",
            "http://10.0.0.1/",
            "http://192.168.0.10/",
            "http://169.254.169.254/latest/meta-data/",
            "http://[::1]/",
            "http://[::ffff:127.0.0.1]/",
            "http://[fd00::1]/",
            "http://0.0.0.0/",
        ];
        for url in urls {
            let (field, message) = refusal_with(request(url), &limits());
            assert_eq!(field, "url", "{url}");
            assert!(message.contains("HERALD_ALLOW_TARGET_CIDRS"), "{message}");
        }
        let open = Limits {
            targets: TargetPolicy::new(vec!["0.0.0.0/0".parse().unwrap(), "::/0".parse().unwrap()]),
            ..limits()
        };
        for url in urls {
            enqueue(request(url), "t", None, &open).unwrap();
        }
        // Names are judged when they resolve, at send time.
        accepted(request("http://localhost:8080/"));
    }

    #[test]
    fn rejects_bad_and_reserved_headers() {
        for (name, value) in [
            ("bad name", "v"),
            ("x-ok", "line\nbreak"),
            ("Host", "evil"),
            ("webhook-id", "x"),
        ] {
            let mut bad = request("http://example.com/");
            bad.headers = vec![header(name, value)];
            assert_eq!(rejected_field(bad), "headers", "{name}: {value}");
        }
    }

    #[test]
    fn secret_looking_headers_are_refused_and_benign_ones_kept() {
        for name in [
            "Authorization",
            "Proxy-Authorization",
            "Cookie",
            "x-api-key",
            "X-Api_Key",
            "x-apikey",
            "x-auth-token",
            "x-access-token",
            "x-client-secret",
            "x-password",
            "x-credentials",
        ] {
            let mut secret = request("http://example.com/");
            secret.headers = vec![header(name, "v")];
            let (field, message) = refusal_with(secret, &limits());
            assert_eq!(field, "headers", "{name}");
            assert!(
                message.contains(&name.to_ascii_lowercase()),
                "the message names the header: {message}"
            );
        }
        let mut benign = request("http://example.com/");
        benign.headers = vec![
            header("x-idempotency-key", "k"),
            header("x-request-id", "r"),
        ];
        assert_eq!(accepted(benign).request.headers.len(), 2);
    }

    #[test]
    fn deadline_must_follow_not_before() {
        let at = |seconds| Some(prost_types::Timestamp { seconds, nanos: 0 });
        let mut past = request("http://example.com/");
        past.deadline_time = at(1);
        assert_eq!(rejected_field(past), "deadline_time");
        let mut both_past = request("http://example.com/");
        both_past.not_before_time = at(1);
        both_past.deadline_time = at(2);
        assert_eq!(rejected_field(both_past), "deadline_time");
        let mut inverted = request("http://example.com/");
        inverted.not_before_time = at(4_000_000_000);
        inverted.deadline_time = at(3_999_999_999);
        assert_eq!(rejected_field(inverted), "deadline_time");
        let mut fine = request("http://example.com/");
        fine.deadline_time = at(4_000_000_000);
        assert_eq!(accepted(fine).deadline_ms, Some(4_000_000_000_000));
    }

    #[test]
    fn rejects_unknown_methods() {
        let mut method = request("http://example.com/");
        method.method = 99;
        assert_eq!(rejected_field(method), "method");
    }

    fn any_timestamp() -> impl Strategy<Value = Option<prost_types::Timestamp>> {
        proptest::option::of(
            (any::<i64>(), any::<i32>())
                .prop_map(|(seconds, nanos)| prost_types::Timestamp { seconds, nanos }),
        )
    }

    fn any_request() -> impl Strategy<Value = EnqueueRequest> {
        let url = prop_oneof![
            any::<String>(),
            "(http|https|ftp)://[a-z0-9.:\\[\\]@%-]{0,30}(/[ -~]{0,20})?",
        ];
        let headers = proptest::collection::vec(
            (any::<String>(), any::<String>()).prop_map(|(name, value)| Header { name, value }),
            0..5,
        );
        (
            url,
            any::<i32>(),
            headers,
            proptest::collection::vec(any::<u8>(), 0..16),
            any::<String>(),
            any::<String>(),
            any::<Option<u32>>(),
            any_timestamp(),
            any_timestamp(),
        )
            .prop_map(
                |(
                    url,
                    method,
                    headers,
                    body,
                    content_type,
                    key,
                    attempts,
                    not_before,
                    deadline,
                )| {
                    EnqueueRequest {
                        url,
                        method,
                        headers,
                        body,
                        content_type,
                        idempotency_key: key,
                        max_attempts: attempts,
                        not_before_time: not_before,
                        deadline_time: deadline,
                    }
                },
            )
    }

    proptest! {
        /// Whatever arrives, validation answers with a delivery or a
        /// refusal naming a field; it never panics.
        #[test]
        fn validation_never_panics(request in any_request()) {
            match enqueue(request, "t", None, &limits()) {
                Ok(delivery) => prop_assert!(delivery.max_attempts >= 1),
                Err(ApiError::InvalidArgument { field, message }) => {
                    prop_assert!(!field.is_empty() && !message.is_empty());
                }
                Err(other) => prop_assert!(false, "unexpected error {other:?}"),
            }
        }
    }
}
