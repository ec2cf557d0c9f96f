//! End-to-end: a real Herald over real gRPC, delivering to a real local
//! HTTP receiver, on SQLite and on PostgreSQL.

mod audit;
mod backlog;
mod batch;
mod client;
mod config_file;
mod dead_letters;
mod delivery;
mod destinations;
mod destinations_api;
mod endpoints;
mod endpoints_cli;
mod enqueue;
mod faults;
mod feed;
mod gate;
mod grpc_web;
mod grpcurl;
mod guessing;
mod isolation;
mod limits;
mod listings;
mod metrics;
mod operate;
mod operator_cli;
mod outage;
mod read_pool;
mod redrive;
mod revocation;
mod scheduling;
mod secrets_at_rest;
mod shutdown;
mod ssrf;
mod store;
mod tenants;
mod tls;
mod trace_context;
mod upgrades;
mod watch;

/// The `herald` binary under test (the same entry point as `herald serve`).
const HERALD: &str = env!("CARGO_BIN_EXE_herald-under-test");
