//! Classification of an attempt's result (DESIGN.md, "Classification of
//! an attempt"): whether retrying can help. Pure, table-tested.

use std::time::Duration;

use http::StatusCode;

use super::{HttpResponse, TransportError};

/// What an attempt's result means for the delivery.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Verdict {
    /// 2xx: delivered.
    Success,
    /// Transient: another attempt may succeed, after `retry_after` if the
    /// receiver asked for a delay.
    Retry {
        /// The receiver's `Retry-After`, uncapped.
        retry_after: Option<Duration>,
    },
    /// Retrying cannot help (redirects, other 4xx, an unbuildable request).
    Permanent,
}

/// Classifies the result of one attempt: 2xx succeeds; 408, 425, 429,
/// 5xx and every failure to get a response retry; 1xx, 3xx, other 4xx,
/// codes past 599 and an unbuildable request are permanent.
pub fn classify(result: &Result<HttpResponse, TransportError>) -> Verdict {
    match result {
        Ok(response) => classify_status(response.status, response.retry_after),
        Err(
            TransportError::Connect { .. } | TransportError::Timeout(_) | TransportError::Io { .. },
        ) => Verdict::Retry { retry_after: None },
        Err(TransportError::InvalidRequest(_) | TransportError::Blocked { .. }) => {
            Verdict::Permanent
        }
    }
}

fn classify_status(status: StatusCode, retry_after: Option<Duration>) -> Verdict {
    match status.as_u16() {
        200..=299 => Verdict::Success,
        408 | 425 | 429 | 500..=599 => Verdict::Retry { retry_after },
        _ => Verdict::Permanent,
    }
}

/// What went wrong, for people: `None` for a 2xx, "HTTP 503 Service
/// Unavailable" for a failing status, the error's message otherwise.
pub fn describe(result: &Result<HttpResponse, TransportError>) -> Option<String> {
    match result {
        Ok(response) if response.status.is_success() => None,
        Ok(response) => {
            let status = response.status;
            let mut text = format!("HTTP {}", status.as_u16());
            if let Some(reason) = status.canonical_reason() {
                text.push(' ');
                text.push_str(reason);
            }
            if status.is_redirection() {
                text.push_str(" (redirects are not followed)");
            }
            Some(text)
        }
        Err(error) => Some(error.to_string()),
    }
}

#[cfg(test)]
mod tests {
    use bytes::Bytes;

    use super::*;

    fn response(status: u16) -> Result<HttpResponse, TransportError> {
        Ok(HttpResponse {
            status: StatusCode::from_u16(status).unwrap(),
            retry_after: None,
            excerpt: Bytes::new(),
        })
    }

    #[test]
    fn statuses_follow_the_design_table() {
        let retry = Verdict::Retry { retry_after: None };
        let table = [
            (200, Verdict::Success),
            (204, Verdict::Success),
            (299, Verdict::Success),
            (101, Verdict::Permanent),
            (301, Verdict::Permanent),
            (302, Verdict::Permanent),
            (400, Verdict::Permanent),
            (401, Verdict::Permanent),
            (404, Verdict::Permanent),
            (410, Verdict::Permanent),
            (422, Verdict::Permanent),
            (999, Verdict::Permanent),
            (408, retry),
            (425, retry),
            (429, retry),
            (500, retry),
            (503, retry),
            (599, retry),
        ];
        for (status, verdict) in table {
            assert_eq!(classify(&response(status)), verdict, "HTTP {status}");
        }
    }

    #[test]
    fn transport_errors_retry_but_invalid_requests_do_not() {
        let authority = || "127.0.0.1:9".to_owned();
        let cause = || "refused".to_owned();
        for error in [
            TransportError::Connect {
                authority: authority(),
                cause: cause(),
            },
            TransportError::Io {
                authority: authority(),
                cause: cause(),
            },
            TransportError::Timeout(Duration::from_secs(1)),
        ] {
            assert_eq!(classify(&Err(error)), Verdict::Retry { retry_after: None });
        }
        assert_eq!(
            classify(&Err(TransportError::InvalidRequest("bad".into()))),
            Verdict::Permanent
        );
    }

    #[test]
    fn retry_after_rides_along_and_descriptions_read_well() {
        let asked = Ok(HttpResponse {
            status: StatusCode::TOO_MANY_REQUESTS,
            retry_after: Some(Duration::from_secs(3)),
            excerpt: Bytes::new(),
        });
        assert_eq!(
            classify(&asked),
            Verdict::Retry {
                retry_after: Some(Duration::from_secs(3))
            }
        );
        assert_eq!(describe(&response(204)), None);
        assert_eq!(
            describe(&response(503)).unwrap(),
            "HTTP 503 Service Unavailable"
        );
        assert_eq!(
            describe(&response(302)).unwrap(),
            "HTTP 302 Found (redirects are not followed)"
        );
        assert_eq!(describe(&response(599)).unwrap(), "HTTP 599");
        assert_eq!(
            describe(&Err(TransportError::Timeout(Duration::from_secs(2)))).unwrap(),
            "no response within 2s (the request timeout)"
        );
    }
}
