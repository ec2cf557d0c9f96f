//! The dashboard's files, compiled into the binary from the committed
//! build in `client/dashboard/dist` (so `cargo build` needs no Node), and
//! the routes of the dashboard listener: those files at `/`, and every
//! gRPC route over gRPC-web for the page to call.

use axum::{
    body::Body,
    http::{Method, StatusCode, Uri, header},
    response::{IntoResponse, Response},
};
use tonic::service::Routes;
use tonic_web::GrpcWebLayer;

/// One file of the page.
struct Asset {
    path: &'static str,
    content_type: &'static str,
    bytes: &'static [u8],
}

/// Every file the page is made of; `/` is `index.html`.
const ASSETS: [Asset; 3] = [
    Asset {
        path: "/index.html",
        content_type: "text/html; charset=utf-8",
        bytes: include_bytes!("../../../client/dashboard/dist/index.html"),
    },
    Asset {
        path: "/app.js",
        content_type: "text/javascript; charset=utf-8",
        bytes: include_bytes!("../../../client/dashboard/dist/app.js"),
    },
    Asset {
        path: "/app.css",
        content_type: "text/css; charset=utf-8",
        bytes: include_bytes!("../../../client/dashboard/dist/app.css"),
    },
];

/// The page may load only its own files and call only its own origin,
/// and no other site may frame it.
const CONTENT_SECURITY_POLICY: &str = "default-src 'self'; img-src 'self' data:; \
style-src 'self'; script-src 'self'; connect-src 'self'; frame-ancestors 'none'; \
base-uri 'none'; form-action 'none'";

/// The dashboard listener's routes: `grpc` behind the gRPC-web layer, and
/// the page's files for every other path. The layer wraps the gRPC routes
/// alone: it refuses HTTP/1.1 requests that are not gRPC-web, as a
/// browser's request for the page is.
pub fn dashboard_routes(grpc: Routes) -> Routes {
    Routes::from(
        grpc.into_axum_router()
            .layer(GrpcWebLayer::new())
            .fallback(asset),
    )
}

/// The file at `uri`, for a GET or HEAD; 404 or 405 otherwise.
async fn asset(method: Method, uri: Uri) -> Response {
    if method != Method::GET && method != Method::HEAD {
        return (
            StatusCode::METHOD_NOT_ALLOWED,
            [(header::ALLOW, "GET, HEAD")],
        )
            .into_response();
    }
    let path = match uri.path() {
        "/" => "/index.html",
        path => path,
    };
    let Some(asset) = ASSETS.iter().find(|asset| asset.path == path) else {
        return (
            StatusCode::NOT_FOUND,
            "no such page; the dashboard is at /\n",
        )
            .into_response();
    };
    let body = if method == Method::HEAD {
        Body::empty()
    } else {
        Body::from(asset.bytes)
    };
    (
        [
            (header::CONTENT_TYPE, asset.content_type),
            // The files change with the binary, which a reload picks up.
            (header::CACHE_CONTROL, "no-cache"),
            (header::CONTENT_SECURITY_POLICY, CONTENT_SECURITY_POLICY),
            (header::X_CONTENT_TYPE_OPTIONS, "nosniff"),
            (header::REFERRER_POLICY, "no-referrer"),
        ],
        body,
    )
        .into_response()
}
