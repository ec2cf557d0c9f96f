//! The gRPC listener over TLS, with a certificate generated for the test:
//! a client that trusts it enqueues and reads, whether given the
//! certificate or finding it among the system's authorities; a plaintext
//! client cannot; an unreadable certificate stops the start with the path
//! in the error.

use herald_client::Client;
use herald_tests::{Backend, Receiver, TestDb, herald_command, on_both_backends, test_config};

use crate::HERALD;

on_both_backends!(a_tls_listener_serves_clients_that_trust_it);

async fn a_tls_listener_serves_clients_that_trust_it(backend: Backend) {
    let Some(db) = TestDb::create(backend).await else {
        return;
    };
    let generated =
        rcgen::generate_simple_self_signed(vec!["localhost".to_owned()]).expect("a certificate");
    let dir = tempfile::tempdir().expect("a temporary directory");
    let cert_path = dir.path().join("herald.crt");
    let key_path = dir.path().join("herald.key");
    let cert_pem = generated.cert.pem();
    std::fs::write(&cert_path, &cert_pem).expect("write the certificate");
    std::fs::write(&key_path, generated.signing_key.serialize_pem()).expect("write the key");

    let mut config = test_config(db.url());
    config.tls_cert = Some(dir.path().join("missing.crt"));
    config.tls_key = Some(key_path.clone());
    let error = herald_server::start(config.clone())
        .await
        .err()
        .expect("a missing certificate stops the start");
    assert!(error.to_string().contains("missing.crt"), "{error}");

    config.tls_cert = Some(cert_path);
    let server = herald_server::start(config)
        .await
        .expect("Herald starts with TLS");
    let port = server.local_addr().port();
    // The SDK's TLS connect, checking the certificate against its host.
    let client = Client::connect_tls(format!("https://localhost:{port}"), cert_pem.as_bytes())
        .await
        .expect("a TLS connection");
    let receiver = Receiver::start().await;
    let enqueued = client
        .enqueue(receiver.url("/over-tls"))
        .body(b"{}".to_vec())
        .send()
        .await
        .expect("enqueue over TLS");
    receiver.wait_for("/over-tls", 1).await;
    client
        .get_delivery(&enqueued.id)
        .await
        .expect("read over TLS");

    let plaintext = match Client::connect(format!("http://127.0.0.1:{port}")).await {
        Ok(client) => client.get_delivery(&enqueued.id).await.err(),
        Err(error) => Some(error),
    };
    assert!(plaintext.is_some(), "a plaintext client was served");

    // An https:// server with no CA given is checked against the system's
    // authorities, which SSL_CERT_FILE stands in for here (in a process of
    // its own: the herald command, which connects through the SDK).
    let server_url = format!("https://localhost:{port}");
    let cert_file = dir.path().join("herald.crt");
    let shown = herald_command(
        HERALD,
        &[
            ("HERALD_SERVER", server_url.as_str()),
            ("SSL_CERT_FILE", cert_file.to_str().expect("a UTF-8 path")),
        ],
        &["deliveries", "get", &enqueued.id, "--json"],
    );
    assert!(shown.contains(&enqueued.id), "{shown}");

    server.shutdown().await.expect("clean shutdown");
    db.drop_database().await;
}
