//! Which other origins' pages may call the gRPC listener from a browser.
//!
//! Same-origin by default: with no origin listed, a preflight is answered
//! without `Access-Control-Allow-Origin`, so browsers refuse the call.

use std::{fmt, str::FromStr, time::Duration};

use http::{HeaderName, HeaderValue, Method, header};
use tower_http::cors::{AllowOrigin, CorsLayer};

/// How long a browser may reuse a preflight's answer.
const PREFLIGHT_MAX_AGE: Duration = Duration::from_secs(600);

/// Request headers a gRPC-web call sends besides the CORS-safelisted ones.
const REQUEST_HEADERS: [&str; 6] = [
    "authorization",
    "content-type",
    "x-grpc-web",
    "x-user-agent",
    "grpc-timeout",
    "traceparent",
];

/// Response headers a gRPC-web client reads: the status (when it comes in
/// the headers rather than the trailer frame) and the watch's start.
const RESPONSE_HEADERS: [&str; 4] = [
    "grpc-status",
    "grpc-message",
    "grpc-status-details-bin",
    "herald-after-sequence",
];

/// An origin a browser sends in `Origin`: `scheme://host[:port]`, http or
/// https, nothing after the authority. Kept in its serialized form, with
/// the scheme's default port left out, as browsers send it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CorsOrigin(String);

impl FromStr for CorsOrigin {
    type Err = String;

    fn from_str(text: &str) -> Result<Self, Self::Err> {
        let text = text.trim();
        let url = url::Url::parse(text).map_err(|error| {
            format!("{text:?} is not an origin such as https://ops.example.com: {error}")
        })?;
        if !matches!(url.scheme(), "http" | "https") {
            return Err(format!("{text:?}: an origin's scheme is http or https"));
        }
        if url.path() != "/"
            || url.query().is_some()
            || url.fragment().is_some()
            || !url.username().is_empty()
        {
            return Err(format!(
                "{text:?}: an origin is scheme://host[:port] alone, with no path, query or user"
            ));
        }
        Ok(Self(url.origin().ascii_serialization()))
    }
}

impl fmt::Display for CorsOrigin {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

/// The CORS layer of the gRPC listener: `origins` may call it; no other.
pub fn cors_layer(origins: &[CorsOrigin]) -> CorsLayer {
    let origins = origins
        .iter()
        .filter_map(|origin| HeaderValue::from_str(&origin.0).ok());
    CorsLayer::new()
        .allow_origin(AllowOrigin::list(origins))
        .allow_methods([Method::POST])
        .allow_headers(REQUEST_HEADERS.map(HeaderName::from_static))
        .expose_headers(RESPONSE_HEADERS.map(HeaderName::from_static))
        .max_age(PREFLIGHT_MAX_AGE)
        .vary([header::ORIGIN])
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_origin_is_kept_as_a_browser_sends_it() {
        let origin: CorsOrigin = "HTTPS://Ops.Example.com:443/".parse().expect("an origin");
        assert_eq!(origin.to_string(), "https://ops.example.com");
        let origin: CorsOrigin = "http://127.0.0.1:8080".parse().expect("an origin");
        assert_eq!(origin.to_string(), "http://127.0.0.1:8080");
    }

    #[test]
    fn what_is_not_an_origin_is_refused_with_why() {
        for (text, why) in [
            ("ops.example.com", "not an origin"),
            ("ftp://ops.example.com", "http or https"),
            ("https://ops.example.com/app", "no path"),
            ("https://ops.example.com/?x=1", "no path"),
            ("https://me@ops.example.com", "no path"),
        ] {
            let error = text.parse::<CorsOrigin>().expect_err(text);
            assert!(error.contains(why), "{text}: {error}");
        }
    }
}
