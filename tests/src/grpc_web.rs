//! A gRPC-web caller, as a browser's client library speaks it over
//! HTTP/1.1: one length-prefixed message up, messages and a trailer frame
//! down. Also the CORS preflight a browser sends first from another origin,
//! and a browser's plain GET of a page.

use std::net::SocketAddr;

use bytes::{Buf, BufMut, Bytes, BytesMut};
use http::{HeaderMap, Method, Request, header};
use http_body_util::{BodyExt, Full};
use hyper_util::{client::legacy::Client, rt::TokioExecutor};

/// The flag of a gRPC-web frame that carries the trailers.
const TRAILER_FRAME: u8 = 0x80;

/// How a gRPC-web call ended when it did not succeed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct GrpcWebStatus {
    /// The gRPC status code (`grpc-status`).
    pub code: u32,
    /// `grpc-message`, percent-encoded as sent.
    pub message: String,
}

/// Calls `method` (`/package.Service/Method`) at `addr` over gRPC-web with
/// `api_key` as bearer token, if any; the reply, or the status it ended with.
pub async fn grpc_web_call<Reply: prost::Message + Default>(
    addr: SocketAddr,
    method: &str,
    api_key: Option<&str>,
    request: &impl prost::Message,
) -> Result<Reply, GrpcWebStatus> {
    let message = request.encode_to_vec();
    let mut body = BytesMut::with_capacity(5 + message.len());
    body.put_u8(0);
    body.put_u32(u32::try_from(message.len()).expect("a small message"));
    body.put_slice(&message);
    let mut builder = Request::post(format!("http://{addr}{method}"))
        .header(header::CONTENT_TYPE, "application/grpc-web+proto")
        .header("x-grpc-web", "1");
    if let Some(key) = api_key {
        builder = builder.header(header::AUTHORIZATION, format!("Bearer {key}"));
    }
    let response = client()
        .request(builder.body(Full::new(body.freeze())).expect("a request"))
        .await
        .expect("the gRPC-web call is answered");
    assert_eq!(response.status(), 200, "gRPC-web answers 200 and a status");
    let headers = response.headers().clone();
    let mut body = response
        .into_body()
        .collect()
        .await
        .expect("the response body")
        .to_bytes();
    let mut reply = None;
    let mut trailers = headers;
    while body.has_remaining() {
        let flag = body.get_u8();
        let length = body.get_u32() as usize;
        let frame = body.split_to(length);
        if flag & TRAILER_FRAME != 0 {
            trailers.extend(parse_trailers(&frame));
        } else {
            reply = Some(Reply::decode(frame).expect("a well-formed reply"));
        }
    }
    let code = trailers
        .get("grpc-status")
        .and_then(|value| value.to_str().ok()?.parse::<u32>().ok())
        .expect("a grpc-status in the headers or the trailers");
    match (code, reply) {
        (0, Some(reply)) => Ok(reply),
        (0, None) => panic!("status OK without a reply"),
        (code, _) => Err(GrpcWebStatus {
            code,
            message: trailers
                .get("grpc-message")
                .and_then(|value| value.to_str().ok())
                .unwrap_or_default()
                .to_owned(),
        }),
    }
}

/// The headers of the answer to a browser's CORS preflight from `origin`
/// for a gRPC-web call of `method` at `addr`.
pub async fn cors_preflight(addr: SocketAddr, method: &str, origin: &str) -> HeaderMap {
    let request = Request::builder()
        .method(Method::OPTIONS)
        .uri(format!("http://{addr}{method}"))
        .header(header::ORIGIN, origin)
        .header(header::ACCESS_CONTROL_REQUEST_METHOD, "POST")
        .header(
            header::ACCESS_CONTROL_REQUEST_HEADERS,
            "authorization,content-type,x-grpc-web,x-user-agent",
        )
        .body(Full::new(Bytes::new()))
        .expect("a request");
    client()
        .request(request)
        .await
        .expect("the preflight is answered")
        .headers()
        .clone()
}

/// What a browser gets for `GET path` at `addr`: status, headers, body.
pub async fn browser_get(addr: SocketAddr, path: &str) -> (http::StatusCode, HeaderMap, Bytes) {
    let request = Request::get(format!("http://{addr}{path}"))
        .body(Full::new(Bytes::new()))
        .expect("a request");
    let response = client()
        .request(request)
        .await
        .expect("the GET is answered");
    let (parts, body) = response.into_parts();
    let body = body.collect().await.expect("the body").to_bytes();
    (parts.status, parts.headers, body)
}

/// An HTTP/1.1 client, as a browser without TLS uses.
fn client() -> Client<hyper_util::client::legacy::connect::HttpConnector, Full<Bytes>> {
    Client::builder(TokioExecutor::new()).build_http()
}

/// The `name: value` lines of a trailer frame.
fn parse_trailers(frame: &[u8]) -> HeaderMap {
    let text = String::from_utf8_lossy(frame);
    let mut trailers = HeaderMap::new();
    for line in text.split("\r\n") {
        if let Some((name, value)) = line.split_once(':')
            && let (Ok(name), Ok(value)) = (
                http::HeaderName::from_bytes(name.trim().as_bytes()),
                http::HeaderValue::from_str(value.trim()),
            )
        {
            trailers.append(name, value);
        }
    }
    trailers
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_every_trailer_line() {
        let trailers = parse_trailers(b"grpc-status:5\r\ngrpc-message: not found\r\n");
        assert_eq!(trailers["grpc-status"], "5");
        assert_eq!(trailers["grpc-message"], "not found");
    }
}
