//! Signing secrets at rest: the database never holds one in plain text
//! (searched byte for byte), a secret stored in plain text before sealing
//! existed is sealed at start, and `herald secrets rotate-key` moves the
//! secrets to a new key while replicas holding only the old key or only
//! the new one keep signing, across restarts. Without a configured key,
//! only an open server on a SQLite file makes one (beside the file).

use base64::{Engine, engine::general_purpose::STANDARD};
use herald_client::{
    Client,
    webhook::{self, Secret},
};
use herald_server::{
    RunningServer,
    secrets::{SecretKey, SecretKeySettings, local_key_file},
};
use herald_tests::{
    Backend, Receiver, Recorded, TEST_SECRET_KEY, TestDb, TestHerald, create_tenant,
    herald_command, on_both_backends, test_config,
};
use sea_orm::{ConnectionTrait, Database, Statement};

use crate::HERALD;

on_both_backends!(
    no_secret_is_stored_in_plain_text,
    a_plain_text_secret_is_sealed_at_start,
    rotate_key_keeps_every_replica_signing,
    without_a_key_only_an_open_sqlite_server_makes_one
);

/// Enqueues `body` to `path` as the holder of `api_key` on the server at
/// `addr`; returns what the receiver saw.
async fn delivered(
    addr: std::net::SocketAddr,
    api_key: &str,
    receiver: &Receiver,
    path: &str,
) -> Recorded {
    let client = Client::connect(format!("http://{addr}"))
        .await
        .expect("connect")
        .with_api_key(api_key)
        .expect("a valid key");
    client
        .enqueue(receiver.url(path))
        .body(br#"{"type":"order.created"}"#.to_vec())
        .send()
        .await
        .expect("enqueue");
    receiver.wait_for(path, 1).await.remove(0)
}

/// Starts Herald in-process on `database_url`, sealing with `key` and
/// opening with `previous` too.
async fn start(database_url: &str, key: &str, previous: &[&str]) -> RunningServer {
    let mut config = test_config(database_url);
    config.secret_keys.secret_key = Some(key.parse().expect("a key"));
    config.secret_keys.previous_secret_keys = previous
        .iter()
        .map(|key| key.parse().expect("a key"))
        .collect();
    herald_server::start(config).await.expect("Herald starts")
}

/// Every text form in which `secret` (`whsec_<base64>`) could sit in
/// storage: as given, its base64 part, and its raw bytes.
fn forms(secret: &str) -> Vec<Vec<u8>> {
    let encoded = secret.strip_prefix("whsec_").expect("a whsec_ secret");
    let raw = STANDARD.decode(encoded).expect("base64");
    vec![secret.as_bytes().to_vec(), encoded.as_bytes().to_vec(), raw]
}

/// Panics if any of `secrets` is found in plain text in the database:
/// SQLite's file and write-ahead log byte for byte, PostgreSQL's
/// `tenants` table as text; and if any stored secret is not sealed.
async fn assert_nothing_in_plain_text(backend: Backend, database_url: &str, secrets: &[&str]) {
    let db = Database::connect(database_url).await.expect("connect");
    let mut haystacks: Vec<Vec<u8>> = Vec::new();
    match backend {
        Backend::Sqlite => {
            let path = database_url
                .strip_prefix("sqlite://")
                .and_then(|rest| rest.split('?').next())
                .expect("a SQLite file URL");
            for file in [path.to_owned(), format!("{path}-wal")] {
                if let Ok(bytes) = std::fs::read(&file) {
                    haystacks.push(bytes);
                }
            }
        }
        Backend::Postgres => {
            let rows = db
                .query_all_raw(Statement::from_string(
                    db.get_database_backend(),
                    "SELECT t::text FROM tenants t",
                ))
                .await
                .expect("read tenants");
            for row in rows {
                let text: String = row.try_get_by_index(0).expect("a row as text");
                haystacks.push(text.into_bytes());
            }
        }
    }
    assert!(!haystacks.is_empty(), "nothing was read to search");
    for secret in secrets {
        for form in forms(secret) {
            let found = haystacks
                .iter()
                .any(|haystack| haystack.windows(form.len()).any(|window| window == form));
            assert!(!found, "a signing secret is stored in plain text");
        }
    }
    let unsealed = db
        .query_all_raw(Statement::from_string(
            db.get_database_backend(),
            "SELECT id FROM tenants WHERE signing_secret NOT LIKE 'sealed:1:%' \
             OR previous_signing_secret NOT LIKE 'sealed:1:%'",
        ))
        .await
        .expect("read tenants");
    assert!(unsealed.is_empty(), "{} secrets unsealed", unsealed.len());
    db.close().await.expect("close");
}

async fn no_secret_is_stored_in_plain_text(backend: Backend) {
    let Some(herald) = TestHerald::start(backend).await else {
        return;
    };
    let receiver = Receiver::start().await;
    // Open mode first: the default tenant's secret is made and sealed.
    let open = Client::connect(format!("http://{}", herald.addr()))
        .await
        .expect("connect");
    open.enqueue(receiver.url("/open"))
        .send()
        .await
        .expect("enqueue");
    receiver.wait_for("/open", 1).await;

    let created = create_tenant(HERALD, herald.database_url(), "alpha");
    let seen = delivered(herald.addr(), &created.api_key, &receiver, "/signed").await;
    let first: Secret = created.signing_secret.parse().expect("whsec_");
    webhook::verify(&first, &seen.headers, &seen.body).expect("signed with alpha's secret");
    let rotated = herald_command(
        HERALD,
        &[("HERALD_DATABASE_URL", herald.database_url())],
        &["tenant", "rotate-secret", "alpha", "--grace", "1h"],
    );
    let second = herald_tests::printed_value(&rotated, "signing secret:");
    let seen = delivered(herald.addr(), &created.api_key, &receiver, "/rotated").await;
    for secret in [&created.signing_secret, &second] {
        let secret: Secret = secret.parse().expect("whsec_");
        webhook::verify(&secret, &seen.headers, &seen.body).expect("both sign");
    }
    assert_nothing_in_plain_text(
        backend,
        herald.database_url(),
        &[&created.signing_secret, &second],
    )
    .await;
    herald.stop().await;
}

async fn a_plain_text_secret_is_sealed_at_start(backend: Backend) {
    let Some(db) = TestDb::create(backend).await else {
        return;
    };
    let server = start(db.url(), TEST_SECRET_KEY, &[]).await;
    let created = create_tenant(HERALD, db.url(), "alpha");
    server.shutdown().await.expect("clean shutdown");
    // As a release before sealing stored it.
    let plain = "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw";
    let raw = Database::connect(db.url()).await.expect("connect");
    raw.execute_raw(Statement::from_string(
        raw.get_database_backend(),
        format!("UPDATE tenants SET signing_secret = '{plain}' WHERE id = 'alpha'"),
    ))
    .await
    .expect("store a plain secret");
    raw.close().await.expect("close");

    let server = start(db.url(), TEST_SECRET_KEY, &[]).await;
    let receiver = Receiver::start().await;
    let seen = delivered(server.local_addr(), &created.api_key, &receiver, "/x").await;
    let secret: Secret = plain.parse().expect("whsec_");
    webhook::verify(&secret, &seen.headers, &seen.body).expect("the plain secret still signs");
    server.shutdown().await.expect("clean shutdown");
    assert_nothing_in_plain_text(backend, db.url(), &[plain]).await;
    db.drop_database().await;
}

async fn rotate_key_keeps_every_replica_signing(backend: Backend) {
    let Some(db) = TestDb::create(backend).await else {
        return;
    };
    let old = TEST_SECRET_KEY;
    let new = SecretKey::generate();
    let new = new.expose();
    let receiver = Receiver::start().await;
    let server = start(db.url(), old, &[]).await;
    let created = create_tenant(HERALD, db.url(), "alpha");
    let secret: Secret = created.signing_secret.parse().expect("whsec_");
    let verified = |seen: &Recorded| {
        webhook::verify(&secret, &seen.headers, &seen.body).expect("the tenant's secret verifies")
    };
    verified(&delivered(server.local_addr(), &created.api_key, &receiver, "/before").await);
    server.shutdown().await.expect("clean shutdown");

    let rotate = |current: &str, previous: Option<&str>| {
        let mut settings = vec![
            ("HERALD_DATABASE_URL", db.url()),
            ("HERALD_SECRET_KEY", current),
        ];
        settings.extend(previous.map(|keys| ("HERALD_PREVIOUS_SECRET_KEYS", keys)));
        herald_command(HERALD, &settings, &["secrets", "rotate-key"])
    };
    // The window: sealed under both keys.
    let printed = rotate(new, Some(old));
    assert!(printed.contains("re-sealed 1 signing secrets"), "{printed}");
    // A replica with only the old key, then one with only the new key:
    // each opens the secret and signs with it.
    for (key, path) in [(old, "/old-key"), (new, "/new-key")] {
        let server = start(db.url(), key, &[]).await;
        verified(&delivered(server.local_addr(), &created.api_key, &receiver, path).await);
        server.shutdown().await.expect("clean shutdown");
    }

    // The old key retired: only the new one opens the secrets now.
    let printed = rotate(new, None);
    assert!(printed.contains("re-sealed 1 signing secrets"), "{printed}");
    assert!(rotate(new, None).contains("re-sealed 0 signing secrets"));
    let server = start(db.url(), new, &[]).await;
    verified(&delivered(server.local_addr(), &created.api_key, &receiver, "/after").await);
    server.shutdown().await.expect("clean shutdown");
    db.drop_database().await;
}

/// The reason Herald gives for not starting on `database_url` without a
/// configured key.
async fn refusal_without_a_key(database_url: &str) -> String {
    match herald_server::start(test_config_without_key(database_url)).await {
        Ok(_) => panic!("Herald started without a key to seal secrets with"),
        Err(error) => error.to_string(),
    }
}

fn test_config_without_key(database_url: &str) -> herald_server::Config {
    let mut config = test_config(database_url);
    config.secret_keys = SecretKeySettings::default();
    config
}

async fn without_a_key_only_an_open_sqlite_server_makes_one(backend: Backend) {
    let Some(db) = TestDb::create(backend).await else {
        return;
    };
    if backend == Backend::Postgres {
        // No file to keep a key in: the key must be configured.
        let refused = refusal_without_a_key(db.url()).await;
        assert!(refused.contains("HERALD_SECRET_KEY"), "{refused}");
        db.drop_database().await;
        return;
    }
    let key_file = local_key_file(db.url()).expect("a SQLite file has a local key file");
    let server = herald_server::start(test_config_without_key(db.url()))
        .await
        .expect("an open server on loopback starts without a key");
    assert!(key_file.exists(), "no local key beside the database");
    server.shutdown().await.expect("clean shutdown");

    // The tenant command finds the same key beside the database.
    let output = herald_tests::herald_process(HERALD)
        .args(["tenant", "create", "alpha"])
        .env("HERALD_DATABASE_URL", db.url())
        .output()
        .expect("run herald");
    assert!(output.status.success(), "{output:?}");
    let printed = String::from_utf8_lossy(&output.stdout);
    let created = herald_tests::printed_value(&printed, "api key:");
    let secret: Secret = herald_tests::printed_value(&printed, "signing secret:")
        .parse()
        .expect("whsec_");
    let server = herald_server::start(test_config_without_key(db.url()))
        .await
        .expect("the local key opens the tenant's secret");
    let receiver = Receiver::start().await;
    let seen = delivered(server.local_addr(), &created, &receiver, "/local").await;
    webhook::verify(&secret, &seen.headers, &seen.body).expect("signed");
    server.shutdown().await.expect("clean shutdown");

    // With tenants and the key gone, serve says what to set.
    std::fs::remove_file(&key_file).expect("remove the key");
    let refused = refusal_without_a_key(db.url()).await;
    assert!(refused.contains("HERALD_SECRET_KEY"), "{refused}");
    assert!(!key_file.exists(), "a key was made although tenants exist");
    db.drop_database().await;
}
