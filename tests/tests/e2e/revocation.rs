//! Revocation is prompt everywhere: with the credential cache at its
//! default (10 s), an open server closes at the first tenant, a revoked
//! key is refused, and a rotated secret signs, within 2 s on every replica: told by `NOTIFY` on PostgreSQL (here a
//! second replica, which never saw the change), found by looking on
//! SQLite.

use std::time::{Duration, Instant};

use herald_client::{
    Client, Code,
    webhook::{self, Secret},
};
use herald_server::RunningServer;
use herald_tests::{
    Backend, PATIENCE, Receiver, TestDb, create_tenant, herald_admin, on_both_backends,
    printed_value, test_config,
};

use crate::HERALD;

on_both_backends!(revocations_and_rotations_reach_every_replica_within_two_seconds);

/// How long a change may take to reach a replica.
const PROMPT: Duration = Duration::from_secs(2);

/// A replica on `database_url` with the default credential cache.
async fn replica(database_url: &str) -> RunningServer {
    let mut config = test_config(database_url);
    config.credential_cache = herald_server::Config::default().credential_cache;
    assert_eq!(config.credential_cache, Duration::from_secs(10));
    herald_server::start(config).await.expect("Herald starts")
}

async fn client(server: &RunningServer, key: &str) -> Client {
    Client::connect(format!("http://{}", server.local_addr()))
        .await
        .expect("connect")
        .with_api_key(key)
        .expect("a valid key")
}

/// Calls `check` until it holds, at most [`PATIENCE`]; returns how long
/// that took.
async fn until<F: Future<Output = bool>>(mut check: impl FnMut() -> F) -> Duration {
    let started = Instant::now();
    while !check().await {
        assert!(started.elapsed() < PATIENCE, "never happened");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    started.elapsed()
}

async fn revocations_and_rotations_reach_every_replica_within_two_seconds(backend: Backend) {
    let Some(db) = TestDb::create(backend).await else {
        return;
    };
    let first = replica(db.url()).await;
    // PostgreSQL: a second replica, which hears of changes only from the
    // database. SQLite has one server.
    let second = match backend {
        Backend::Postgres => Some(replica(db.url()).await),
        Backend::Sqlite => None,
    };
    let watched = second.as_ref().unwrap_or(&first);
    let anonymous = Client::connect(format!("http://{}", watched.local_addr()))
        .await
        .expect("connect");
    let missing = uuid::Uuid::now_v7().to_string();
    let known = |result: Result<_, herald_client::Error>| {
        result.expect_err("no such delivery").code() == Some(Code::NotFound)
    };
    // Open, and known to be for ten seconds; the first tenant closes it.
    assert!(known(anonymous.get_delivery(&missing).await));
    let created = create_tenant(HERALD, db.url(), "alpha");
    let took = until(|| async {
        let refused = anonymous.get_delivery(&missing).await.expect_err("refused");
        refused.code() == Some(Code::Unauthenticated)
    })
    .await;
    assert!(
        took < PROMPT,
        "the first tenant took {took:?} to close the server"
    );

    let alpha = client(watched, &created.api_key).await;
    // The key is looked up, and cached for ten seconds.
    assert!(known(alpha.get_delivery(&missing).await));

    // A rotated secret signs from the next claim on.
    let receiver = Receiver::start().await;
    let rotated = herald_admin(
        HERALD,
        db.url(),
        &["tenant", "rotate-secret", "alpha", "--grace", "0s"],
    );
    let new: Secret = printed_value(&rotated, "signing secret:")
        .parse()
        .expect("whsec_");
    let mut sent = 0;
    let took = until(|| {
        sent += 1;
        let path = format!("/rotated/{sent}");
        let alpha = &alpha;
        let receiver = &receiver;
        let new = &new;
        async move {
            alpha
                .enqueue(receiver.url(&path))
                .send()
                .await
                .expect("enqueue");
            let seen = receiver.wait_for(&path, 1).await.remove(0);
            webhook::verify(new, &seen.headers, &seen.body).is_ok()
        }
    })
    .await;
    assert!(
        took < PROMPT,
        "the rotation took {took:?} to be signed with"
    );

    let key_id = created
        .api_key
        .strip_prefix("hk_")
        .and_then(|rest| rest.split('_').next())
        .expect("hk_<id>_<secret>");
    herald_admin(HERALD, db.url(), &["key", "revoke", key_id]);
    let took = until(|| async {
        let refused = alpha.get_delivery(&missing).await.expect_err("refused");
        refused.code() == Some(Code::Unauthenticated)
    })
    .await;
    assert!(took < PROMPT, "the revocation took {took:?} to be honoured");

    for server in [Some(first), second].into_iter().flatten() {
        server.shutdown().await.expect("clean shutdown");
    }
    db.drop_database().await;
}
