//! The harness of Herald's end-to-end tests: a real HTTP [`Receiver`], a
//! fresh database per test on either [`Backend`] ([`TestDb`]), and a real
//! Herald serving gRPC on an ephemeral port ([`TestHerald`]), or as a child
//! process for fault tests ([`HeraldProcess`]), and a [`FaultProxy`] that
//! cuts a database off on command. [`on_both_backends!`] turns
//! one `async fn(Backend)` into a SQLite test and a PostgreSQL test.
//!
//! PostgreSQL tests connect to `HERALD_TEST_POSTGRES_URL` (default
//! `postgres://postgres@127.0.0.1:5432/postgres`). When it is unreachable
//! they are skipped with a loud message, unless `HERALD_REQUIRE_POSTGRES=1`.

#![warn(missing_docs)]

mod admin;
mod db;
mod grpc_web;
mod herald;
mod metrics;
mod process;
mod proxy;
mod receiver;

pub use admin::{
    CreatedTenant, create_tenant, herald_admin, herald_command, herald_output, herald_process,
    printed_value,
};
pub use db::{Backend, TestDb};
pub use grpc_web::{GrpcWebStatus, browser_get, cors_preflight, grpc_web_call};
pub use herald::{
    TestHerald, accepted, next_outcomes, redrive_filtered, redrive_ids, test_config, wait_succeeded,
};
pub use metrics::{scrape, total};
pub use process::HeraldProcess;
pub use proxy::FaultProxy;
pub use receiver::{Receiver, Recorded, Reply};

/// The key that seals signing secrets in every test's database, given
/// to the server ([`test_config`]), its processes ([`HeraldProcess`]) and
/// the admin commands ([`herald_output`]) alike.
pub const TEST_SECRET_KEY: &str = "dGVzdC1zZWNyZXQta2V5LW9mLTMyLWJ5dGVzLWxvbmc=";

/// How long any wait in a test may take before it fails: a guard against
/// hangs, never a pacing device.
pub const PATIENCE: std::time::Duration = std::time::Duration::from_secs(20);

/// Says loudly, on the real stderr, that the running test is skipped and
/// why. `eprintln!` would not do: the test harness captures it and shows it
/// only for failing tests, so a skipped test would pass in silence.
pub fn skip(reason: &str) {
    use std::io::Write;
    let thread = std::thread::current();
    let test = thread.name().unwrap_or("a test");
    let _ = writeln!(std::io::stderr(), "\n!!!!!!!! SKIPPED {test}: {reason}\n");
}

/// Runs each named `async fn(Backend)` as two tests, `sqlite::NAME` and
/// `postgres::NAME`.
#[macro_export]
macro_rules! on_both_backends {
    ($($name:ident),+ $(,)?) => {
        mod sqlite {
            $(
                #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
                async fn $name() {
                    super::$name($crate::Backend::Sqlite).await;
                }
            )+
        }
        mod postgres {
            $(
                #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
                async fn $name() {
                    super::$name($crate::Backend::Postgres).await;
                }
            )+
        }
    };
}
