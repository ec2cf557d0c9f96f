//! What browsers talk to: gRPC-web on the gRPC listener (tonic-web, with
//! CORS for the origins `HERALD_CORS_ORIGINS` lists), and the dashboard's
//! listener (`HERALD_DASHBOARD_ADDR`), which serves the page's files and
//! the same API over gRPC-web, so the page calls it from its own origin.
//!
//! Both wrap the routes `api::routes` builds, unchanged: a browser's call
//! meets the same API keys and tenant walls as any other.

mod cors;
mod dashboard;

pub use cors::{CorsOrigin, cors_layer};
pub use dashboard::dashboard_routes;
