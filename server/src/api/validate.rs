//! Enqueue validation: turns an `EnqueueRequest` into a [`NewDelivery`] or
//! an INVALID_ARGUMENT that names the field and the rule it broke.

use bytes::Bytes;
use herald_proto::v1::{EnqueueRequest, HttpMethod as ProtoMethod};
use http::{HeaderName, HeaderValue};

use super::{convert::timestamp_ms, error::ApiError};
use crate::{
    domain::{Destination, HttpMethod, HttpRequest},
    store::records::NewDelivery,
};

/// Limits applied to every enqueue.
#[derive(Debug, Clone, Copy)]
pub struct Limits {
    /// Largest body, in bytes.
    pub max_body_bytes: usize,
    /// Attempts when the request does not say.
    pub default_max_attempts: u32,
}

/// Longest accepted URL, in bytes.
const MAX_URL_BYTES: usize = 2048;
/// Most caller headers on one delivery.
const MAX_HEADERS: usize = 64;
/// Most bytes of caller headers (names and values) on one delivery.
const MAX_HEADER_BYTES: usize = 16 * 1024;
/// Longest idempotency key, in bytes.
const MAX_IDEMPOTENCY_KEY_BYTES: usize = 255;
/// Most attempts a delivery may ask for.
const MAX_ATTEMPTS_LIMIT: u32 = 100;

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

/// Checks `request` and builds the delivery to store for `tenant_id`.
pub fn enqueue(
    request: EnqueueRequest,
    tenant_id: &str,
    limits: &Limits,
) -> Result<NewDelivery, ApiError> {
    let (url, destination) = url(&request.url)?;
    let method = method(request.method)?;
    let headers = headers(
        request
            .headers
            .into_iter()
            .map(|h| (h.name, h.value))
            .collect(),
    )?;
    if request.body.len() > limits.max_body_bytes {
        return Err(ApiError::invalid(
            "body",
            format!(
                "is {} bytes; the limit is {} bytes",
                request.body.len(),
                limits.max_body_bytes
            ),
        ));
    }
    let content_type = non_empty(request.content_type)
        .map(|value| {
            HeaderValue::from_str(&value).map(|_| value).map_err(|_| {
                ApiError::invalid(
                    "content_type",
                    "must be visible ASCII, e.g. application/json",
                )
            })
        })
        .transpose()?;
    let idempotency_key = non_empty(request.idempotency_key)
        .map(idempotency_key)
        .transpose()?;
    let max_attempts = match request.max_attempts {
        None => limits.default_max_attempts,
        Some(n) if (1..=MAX_ATTEMPTS_LIMIT).contains(&n) => n,
        Some(n) => {
            return Err(ApiError::invalid(
                "max_attempts",
                format!("is {n}; it must be between 1 and {MAX_ATTEMPTS_LIMIT}"),
            ));
        }
    };
    let not_before_ms = time_ms("not_before_time", request.not_before_time.as_ref())?;
    let deadline_ms = time_ms("deadline_time", request.deadline_time.as_ref())?;
    if let Some(deadline) = deadline_ms
        && deadline <= not_before_ms.unwrap_or_else(now_ms)
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
        not_before_ms,
        deadline_ms,
    })
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

fn now_ms() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |since| {
            i64::try_from(since.as_millis()).unwrap_or(i64::MAX)
        })
}

fn non_empty(value: String) -> Option<String> {
    (!value.is_empty()).then_some(value)
}

fn url(raw: &str) -> Result<(String, Destination), ApiError> {
    let invalid = |message: &str| ApiError::invalid("url", message.to_owned());
    if raw.is_empty() {
        return Err(invalid("is required, e.g. https://example.com/webhooks"));
    }
    if raw.len() > MAX_URL_BYTES {
        return Err(invalid(&format!(
            "is {} bytes; the limit is {MAX_URL_BYTES}",
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
    if parsed.host_str().is_none_or(str::is_empty) {
        return Err(invalid("has no host"));
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

fn headers(headers: Vec<(String, String)>) -> Result<Vec<(String, String)>, ApiError> {
    if headers.len() > MAX_HEADERS {
        return Err(ApiError::invalid(
            "headers",
            format!("has {} headers; the limit is {MAX_HEADERS}", headers.len()),
        ));
    }
    let total: usize = headers
        .iter()
        .map(|(name, value)| name.len() + value.len())
        .sum();
    if total > MAX_HEADER_BYTES {
        return Err(ApiError::invalid(
            "headers",
            format!("hold {total} bytes; the limit is {MAX_HEADER_BYTES}"),
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

fn idempotency_key(key: String) -> Result<String, ApiError> {
    if key.len() > MAX_IDEMPOTENCY_KEY_BYTES {
        return Err(ApiError::invalid(
            "idempotency_key",
            format!(
                "is {} bytes; the limit is {MAX_IDEMPOTENCY_KEY_BYTES}",
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

    use super::*;

    const LIMITS: Limits = Limits {
        max_body_bytes: 8,
        default_max_attempts: 5,
    };

    fn request(url: &str) -> EnqueueRequest {
        EnqueueRequest {
            url: url.to_owned(),
            ..Default::default()
        }
    }

    fn rejected_field(request: EnqueueRequest) -> &'static str {
        match enqueue(request, "default", &LIMITS) {
            Err(ApiError::InvalidArgument { field, .. }) => field,
            other => panic!("expected INVALID_ARGUMENT, got {other:?}"),
        }
    }

    #[test]
    fn accepts_a_plain_post_with_defaults() {
        let delivery = enqueue(request("https://example.com/hook"), "default", &LIMITS).unwrap();
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
    fn rejects_oversized_body_and_bad_headers() {
        let mut big = request("http://example.com/");
        big.body = vec![0; 9];
        assert_eq!(rejected_field(big), "body");
        for (name, value) in [
            ("bad name", "v"),
            ("x-ok", "line\nbreak"),
            ("Host", "evil"),
            ("webhook-id", "x"),
        ] {
            let mut bad = request("http://example.com/");
            bad.headers = vec![Header {
                name: name.into(),
                value: value.into(),
            }];
            assert_eq!(rejected_field(bad), "headers", "{name}: {value}");
        }
    }

    #[test]
    fn deadline_must_follow_not_before() {
        let at = |seconds| Some(prost_types::Timestamp { seconds, nanos: 0 });
        let mut past = request("http://example.com/");
        past.deadline_time = at(1);
        assert_eq!(rejected_field(past), "deadline_time");
        let mut inverted = request("http://example.com/");
        inverted.not_before_time = at(4_000_000_000);
        inverted.deadline_time = at(3_999_999_999);
        assert_eq!(rejected_field(inverted), "deadline_time");
        let mut fine = request("http://example.com/");
        fine.deadline_time = at(4_000_000_000);
        assert_eq!(
            enqueue(fine, "default", &LIMITS).unwrap().deadline_ms,
            Some(4_000_000_000_000)
        );
    }

    #[test]
    fn rejects_out_of_range_attempts_and_unknown_methods() {
        let mut zero = request("http://example.com/");
        zero.max_attempts = Some(0);
        assert_eq!(rejected_field(zero), "max_attempts");
        let mut method = request("http://example.com/");
        method.method = 99;
        assert_eq!(rejected_field(method), "method");
    }
}
