//! Tenants and API keys (invariant I7): each tenant sees, watches and
//! changes only its own deliveries; a wrong or revoked key is refused; an
//! open server (no tenant yet) stays on loopback; every delivery is
//! signed with its tenant's secret, and with both during a rotation. The
//! tenant and key commands name the database they use and refuse one
//! that `herald migrate` has not prepared.

use std::time::{Duration, SystemTime};

use futures::{StreamExt, TryStreamExt};
use herald_client::Code;
use herald_client::{
    Client, DeliveryQuery, DeliveryState, Outcome, OutcomeKind, WatchOptions,
    webhook::{self, Secret},
};
use herald_tests::{
    Backend, HeraldProcess, PATIENCE, Receiver, Recorded, Reply, TestDb, TestHerald, create_tenant,
    herald_admin, herald_command, herald_output, herald_process, on_both_backends, printed_value,
};

use crate::HERALD;

on_both_backends!(
    tenants_are_walled_off_from_each_other,
    wrong_and_revoked_keys_are_refused,
    revoking_every_key_does_not_reopen_the_server,
    health_and_reflection_need_no_key_once_tenants_exist,
    deliveries_are_signed_and_rotation_signs_with_both,
    refuses_to_listen_publicly_without_tenants,
    tenant_commands_name_their_database_and_neither_create_nor_migrate_it
);

async fn client(herald: &TestHerald, api_key: Option<&str>) -> Client {
    let client = Client::connect(format!("http://{}", herald.addr()))
        .await
        .expect("connect");
    match api_key {
        Some(key) => client.with_api_key(key).expect("a valid key"),
        None => client,
    }
}

/// The first outcome of `kind` for delivery `id`, as `client` sees it.
async fn outcome(client: &Client, id: &str, kind: OutcomeKind) -> Outcome {
    let mut outcomes = client
        .watch_outcomes(WatchOptions::default().from_oldest().delivery_ids([id]))
        .await
        .expect("watch");
    tokio::time::timeout(PATIENCE, async {
        loop {
            let outcome = outcomes
                .next()
                .await
                .expect("stream open")
                .expect("outcome");
            if outcome.kind == kind {
                return outcome;
            }
        }
    })
    .await
    .unwrap_or_else(|_| panic!("no {kind:?} outcome for {id}"))
}

fn code<T: std::fmt::Debug>(result: Result<T, herald_client::Error>) -> Option<Code> {
    result.expect_err("the call is refused").code()
}

async fn tenants_are_walled_off_from_each_other(backend: Backend) {
    let Some(herald) = TestHerald::start(backend).await else {
        return;
    };
    let receiver = Receiver::start().await;
    let alpha_key = create_tenant(HERALD, herald.database_url(), "alpha").api_key;
    let beta_key = create_tenant(HERALD, herald.database_url(), "beta").api_key;
    let alpha = client(&herald, Some(&alpha_key)).await;
    let beta = client(&herald, Some(&beta_key)).await;

    // Alpha: one dead letter (a 400 is permanent) and one pending delivery.
    receiver.script("/alpha", [Reply::Status(400)]);
    let dead = alpha
        .enqueue(receiver.url("/alpha"))
        .idempotency_key("shared-key")
        .send()
        .await
        .expect("alpha enqueues");
    outcome(&alpha, &dead.id, OutcomeKind::DeadLettered).await;
    let pending = alpha
        .enqueue(receiver.url("/later"))
        .not_before(SystemTime::now() + Duration::from_secs(3600))
        .send()
        .await
        .expect("alpha enqueues");

    // Beta cannot see, change or redrive any of it.
    for id in [&dead.id, &pending.id] {
        assert_eq!(code(beta.get_delivery(id).await), Some(Code::NotFound));
    }
    assert_eq!(
        code(beta.cancel_delivery(&pending.id).await),
        Some(Code::NotFound)
    );
    let listed: Vec<_> = beta
        .deliveries(DeliveryQuery::default())
        .try_collect()
        .await
        .expect("list");
    assert!(
        listed.is_empty(),
        "beta lists alpha's deliveries: {listed:?}"
    );
    let dead_letters: Vec<_> = beta.dead_letters().try_collect().await.expect("list");
    assert!(dead_letters.is_empty(), "{dead_letters:?}");
    let redriven = beta
        .redrive_dead_letters()
        .ids([dead.id.clone()])
        .send()
        .await
        .expect("redrive");
    assert_eq!(redriven, 0, "beta redrove alpha's dead letter");
    let by_host = beta
        .redrive_dead_letters()
        .destination_host("127.0.0.1")
        .send()
        .await
        .expect("redrive by host");
    assert_eq!(by_host, 0, "beta's filter reached alpha's dead letter");

    // Idempotency keys are per tenant: the same key creates beta's own.
    receiver.script("/beta", [Reply::Status(400)]);
    let own = beta
        .enqueue(receiver.url("/beta"))
        .idempotency_key("shared-key")
        .send()
        .await
        .expect("beta enqueues");
    assert!(own.created, "alpha's key does not collide with beta's");
    assert_ne!(own.id, dead.id);

    // Beta's feed holds only beta's outcomes, although alpha's came first.
    let mut feed = beta
        .watch_outcomes(WatchOptions::default().from_oldest())
        .await
        .expect("watch");
    let first = tokio::time::timeout(PATIENCE, feed.next())
        .await
        .expect("an outcome")
        .expect("stream open")
        .expect("outcome");
    assert_eq!(first.delivery_id, own.id, "beta watched {first:?}");

    // Alpha's own view is intact.
    assert_eq!(
        alpha.get_delivery(&dead.id).await.expect("get").state,
        DeliveryState::DeadLettered
    );
    assert_eq!(
        alpha
            .cancel_delivery(&pending.id)
            .await
            .expect("alpha cancels its own")
            .state,
        DeliveryState::Cancelled
    );
    let alphas: Vec<String> = alpha
        .deliveries(DeliveryQuery::default())
        .map_ok(|delivery| delivery.id)
        .try_collect()
        .await
        .expect("list");
    assert_eq!(alphas.len(), 2, "{alphas:?}");
    assert!(!alphas.contains(&own.id));
    herald.stop().await;
}

async fn wrong_and_revoked_keys_are_refused(backend: Backend) {
    let Some(herald) = TestHerald::start(backend).await else {
        return;
    };
    // Open while no tenant exists: no key needed.
    let anonymous = client(&herald, None).await;
    let missing = uuid::Uuid::now_v7().to_string();
    assert_eq!(
        code(anonymous.get_delivery(&missing).await),
        Some(Code::NotFound)
    );
    // A key the open server does not know is refused, and the advice warns
    // that creating a tenant closes the server.
    let unknown = client(&herald, Some("hk_nope_nope")).await;
    let refused = unknown.get_delivery(&missing).await.unwrap_err();
    assert_eq!(refused.code(), Some(Code::Unauthenticated));
    assert!(
        refused.to_string().contains("closes it for good"),
        "{refused}"
    );

    let created = create_tenant(HERALD, herald.database_url(), "alpha");
    // The first tenant closes the server for good.
    let refused = anonymous.get_delivery(&missing).await.unwrap_err();
    assert_eq!(refused.code(), Some(Code::Unauthenticated));
    for wrong in ["hk_nope_nope", "not even a key", ""] {
        let caller = client(&herald, Some(wrong)).await;
        let refused = caller.get_delivery(&missing).await.unwrap_err();
        assert_eq!(refused.code(), Some(Code::Unauthenticated), "{wrong:?}");
        let message = refused.to_string();
        assert!(
            !message.contains("alpha") && !message.contains("default"),
            "the refusal hints at tenants: {message}"
        );
    }
    let alpha = client(&herald, Some(&created.api_key)).await;
    assert_eq!(
        code(alpha.get_delivery(&missing).await),
        Some(Code::NotFound)
    );

    // A second key works alongside; revoking the first leaves the second.
    let printed = herald_admin(HERALD, herald.database_url(), &["key", "create", "alpha"]);
    let second = client(&herald, Some(&printed_value(&printed, "api key:"))).await;
    let listed = herald_admin(HERALD, herald.database_url(), &["key", "list", "alpha"]);
    let first_id = key_id(&created.api_key);
    assert!(listed.contains(first_id), "{listed}");
    herald_admin(HERALD, herald.database_url(), &["key", "revoke", first_id]);
    assert_eq!(
        code(alpha.get_delivery(&missing).await),
        Some(Code::Unauthenticated)
    );
    assert_eq!(
        code(second.get_delivery(&missing).await),
        Some(Code::NotFound)
    );
    herald.stop().await;
}

/// The key id of `api_key` (`hk_<id>_<secret>`), which `herald key revoke` takes.
fn key_id(api_key: &str) -> &str {
    api_key
        .strip_prefix("hk_")
        .and_then(|rest| rest.split('_').next())
        .expect("hk_<id>_<secret>")
}

/// Every key revoked, before the server ever saw one: it stays closed, so
/// a caller without a key is still refused.
async fn revoking_every_key_does_not_reopen_the_server(backend: Backend) {
    let Some(herald) = TestHerald::start(backend).await else {
        return;
    };
    let created = create_tenant(HERALD, herald.database_url(), "alpha");
    assert_eq!(created.key_id, key_id(&created.api_key), "the id printed");
    let listed = herald_admin(HERALD, herald.database_url(), &["tenant", "list"]);
    let default = listed
        .lines()
        .find(|line| line.starts_with("default "))
        .unwrap_or_else(|| panic!("no default tenant in: {listed}"));
    assert!(default.ends_with("built in"), "{listed}");
    herald_admin(
        HERALD,
        herald.database_url(),
        &["key", "revoke", &created.key_id],
    );
    let missing = uuid::Uuid::now_v7().to_string();
    let anonymous = client(&herald, None).await;
    assert_eq!(
        code(anonymous.get_delivery(&missing).await),
        Some(Code::Unauthenticated)
    );
    let revoked = client(&herald, Some(&created.api_key)).await;
    assert_eq!(
        code(revoked.get_delivery(&missing).await),
        Some(Code::Unauthenticated)
    );
    herald.stop().await;
}

/// Health and reflection answer a caller without a key on a server with
/// tenants and keys, while its own services refuse that caller.
async fn health_and_reflection_need_no_key_once_tenants_exist(backend: Backend) {
    use tonic_health::pb::{
        HealthCheckRequest, health_check_response::ServingStatus, health_client::HealthClient,
    };
    use tonic_reflection::pb::v1::{
        ServerReflectionRequest, server_reflection_client::ServerReflectionClient,
        server_reflection_request::MessageRequest, server_reflection_response::MessageResponse,
    };

    let Some(herald) = TestHerald::start(backend).await else {
        return;
    };
    create_tenant(HERALD, herald.database_url(), "alpha");
    let channel = tonic::transport::Endpoint::from_shared(format!("http://{}", herald.addr()))
        .expect("a URL")
        .connect()
        .await
        .expect("connect");

    let health = HealthClient::new(channel.clone())
        .check(HealthCheckRequest {
            service: "herald.v1.DeliveryService".into(),
        })
        .await
        .expect("health answers without a key")
        .into_inner();
    assert_eq!(health.status, i32::from(ServingStatus::Serving));

    let list = ServerReflectionRequest {
        host: String::new(),
        message_request: Some(MessageRequest::ListServices(String::new())),
    };
    let answer = ServerReflectionClient::new(channel)
        .server_reflection_info(futures::stream::iter([list]))
        .await
        .expect("reflection answers without a key")
        .into_inner()
        .message()
        .await
        .expect("a reflection answer")
        .and_then(|response| response.message_response);
    let Some(MessageResponse::ListServicesResponse(services)) = answer else {
        panic!("not a list of services: {answer:?}");
    };
    assert!(
        services
            .service
            .iter()
            .any(|service| service.name == "herald.v1.DeliveryService"),
        "{services:?}"
    );

    let anonymous = client(&herald, None).await;
    let missing = uuid::Uuid::now_v7().to_string();
    assert_eq!(
        code(anonymous.get_delivery(&missing).await),
        Some(Code::Unauthenticated)
    );
    herald.stop().await;
}

/// Rotates alpha's secret with `grace`; returns the new secret.
fn rotate(herald: &TestHerald, grace: &str) -> Secret {
    let rotated = herald_admin(
        HERALD,
        herald.database_url(),
        &["tenant", "rotate-secret", "alpha", "--grace", grace],
    );
    printed_value(&rotated, "signing secret:")
        .parse()
        .expect("whsec_ secret")
}

/// Enqueues `body` to `path` as `client`; returns what the receiver saw.
async fn delivered(client: &Client, receiver: &Receiver, path: &str, body: &[u8]) -> Recorded {
    client
        .enqueue(receiver.url(path))
        .body(body.to_vec())
        .send()
        .await
        .expect("enqueue");
    receiver.wait_for(path, 1).await.remove(0)
}

async fn deliveries_are_signed_and_rotation_signs_with_both(backend: Backend) {
    let Some(herald) = TestHerald::start(backend).await else {
        return;
    };
    let receiver = Receiver::start().await;
    // Open mode signs too, with the default tenant's secret.
    let open = delivered(&client(&herald, None).await, &receiver, "/open", b"{}").await;
    assert!(open.header("webhook-signature").starts_with("v1,"));

    let created = create_tenant(HERALD, herald.database_url(), "alpha");
    let alpha = client(&herald, Some(&created.api_key)).await;
    let first: Secret = created.signing_secret.parse().expect("whsec_ secret");
    let body = br#"{"type":"order.created"}"#;
    let seen = delivered(&alpha, &receiver, "/signed", body).await;
    webhook::verify(&first, &seen.headers, &seen.body).expect("signed with the tenant's secret");
    assert!(
        webhook::verify(&first, &open.headers, &open.body).is_err(),
        "tenants have their own secrets"
    );

    let second = rotate(&herald, "1h");
    let seen = delivered(&alpha, &receiver, "/rotated", body).await;
    let signatures = seen.header("webhook-signature");
    assert_eq!(signatures.split(' ').count(), 2, "{signatures}");
    for secret in [&first, &second] {
        webhook::verify(secret, &seen.headers, &seen.body).expect("both secrets verify");
    }

    // Without a grace period the old secret stops signing at once.
    let third = rotate(&herald, "0s");
    let seen = delivered(&alpha, &receiver, "/only-new", body).await;
    webhook::verify(&third, &seen.headers, &seen.body).expect("the new secret verifies");
    assert_eq!(
        webhook::verify(&second, &seen.headers, &seen.body),
        Err(webhook::VerifyError::NoMatchingSignature)
    );
    herald.stop().await;
}

async fn refuses_to_listen_publicly_without_tenants(backend: Backend) {
    let Some(db) = TestDb::create(backend).await else {
        return;
    };
    let refused = tokio::time::timeout(
        PATIENCE,
        tokio::process::Command::from(herald_process(HERALD))
            .arg("serve")
            .env("HERALD_LISTEN_ADDR", "0.0.0.0:0")
            .env("HERALD_DATABASE_URL", db.url())
            .env("NO_COLOR", "1")
            .output(),
    )
    .await
    .expect("herald exits at once")
    .expect("run herald");
    let printed = String::from_utf8_lossy(&refused.stderr);
    assert!(!refused.status.success(), "it served: {printed}");
    assert!(
        printed.contains("refusing to listen on 0.0.0.0:0 with no tenants")
            && printed.contains("herald tenant create"),
        "{printed}"
    );

    // With a tenant it listens publicly, and callers need its key.
    let created = create_tenant(HERALD, db.url(), "alpha");
    let mut public = HeraldProcess::spawn(
        HERALD,
        db.url(),
        &[("HERALD_LISTEN_ADDR", "0.0.0.0:0".to_owned())],
    )
    .await;
    let url = format!("http://127.0.0.1:{}", public.addr().port());
    let anonymous = Client::connect(url.clone()).await.expect("connect");
    let missing = uuid::Uuid::now_v7().to_string();
    assert_eq!(
        code(anonymous.get_delivery(&missing).await),
        Some(Code::Unauthenticated)
    );
    let alpha = anonymous
        .with_api_key(&created.api_key)
        .expect("a valid key");
    assert_eq!(
        code(alpha.get_delivery(&missing).await),
        Some(Code::NotFound)
    );
    public.terminate();
    assert!(public.exited().await.success(), "a clean shutdown");
    db.drop_database().await;
}

async fn tenant_commands_name_their_database_and_neither_create_nor_migrate_it(backend: Backend) {
    let Some(db) = TestDb::create(backend).await else {
        return;
    };
    // With a password on PostgreSQL (trust authentication ignores it), to
    // see it hidden.
    let url = match backend {
        Backend::Sqlite => db.url().to_owned(),
        Backend::Postgres => db.url().replacen("postgres@", "postgres:hunter2@", 1),
    };
    let shown = herald_server::config::redact_url(&url);
    let settings = [("HERALD_DATABASE_URL", url.as_str())];
    for args in [&["tenant", "create", "acme"][..], &["key", "list", "acme"]] {
        let refused = herald_output(HERALD, &settings, args);
        assert!(!refused.status.success(), "{args:?} ran on a new database");
        let said = String::from_utf8_lossy(&refused.stderr);
        assert!(
            said.contains(&format!("database: {shown}")) && said.contains("herald migrate"),
            "{said}"
        );
        assert!(!said.contains("hunter2"), "{said}");
    }
    if backend == Backend::Sqlite {
        let file = db.url().trim_start_matches("sqlite://");
        let file = file.split('?').next().expect("a path");
        assert!(!std::path::Path::new(file).exists(), "{file} was created");
    }

    herald_command(HERALD, &settings, &["migrate"]);
    let created = herald_output(HERALD, &settings, &["tenant", "create", "acme"]);
    assert!(created.status.success(), "{created:?}");
    let said = String::from_utf8_lossy(&created.stderr);
    assert!(said.contains(&format!("database: {shown}")), "{said}");
    assert!(!said.contains("hunter2"), "{said}");
    db.drop_database().await;
}
