//! The audit trail: each operator action appears once in
//! `ListAuditEvents`, with the id of the API key that acted (none for the
//! command line), filtered by kind, paged, and walled off per tenant;
//! `herald audit list` shows the same.

use std::time::{Duration, SystemTime};

use herald_client::{Client, OutcomeKind, WatchOptions};
use herald_proto::v1::{
    AuditEvent, AuditEventKind, ListAuditEventsRequest, audit_service_client::AuditServiceClient,
};
use herald_tests::{
    Backend, PATIENCE, Receiver, Reply, TestHerald, create_tenant, herald_admin, herald_command,
    on_both_backends, printed_value,
};
use tonic::{Request, transport::Channel};

use crate::HERALD;

on_both_backends!(each_operator_action_is_recorded_once_with_its_key);

/// The id of `hk_<id>_<secret>`.
fn key_id(key: &str) -> &str {
    key.strip_prefix("hk_")
        .and_then(|rest| rest.split('_').next())
        .expect("hk_<id>_<secret>")
}

/// Every audit event `key` may see with `request`'s filters, page by page.
async fn listed(
    herald: &TestHerald,
    key: &str,
    mut request: ListAuditEventsRequest,
) -> Vec<AuditEvent> {
    let channel = Channel::from_shared(format!("http://{}", herald.addr()))
        .expect("a URL")
        .connect()
        .await
        .expect("connect");
    let mut client = AuditServiceClient::new(channel);
    let mut events = Vec::new();
    loop {
        let mut call = Request::new(request.clone());
        let value = format!("Bearer {key}").parse().expect("ascii");
        call.metadata_mut().insert("authorization", value);
        let page = client
            .list_audit_events(call)
            .await
            .expect("list audit events")
            .into_inner();
        events.extend(page.events);
        if page.next_page_token.is_empty() {
            return events;
        }
        request.page_token = page.next_page_token;
    }
}

async fn each_operator_action_is_recorded_once_with_its_key(backend: Backend) {
    let Some(herald) = TestHerald::start(backend).await else {
        return;
    };
    let receiver = Receiver::start().await;
    let url = herald.database_url();
    // The command line: tenant, a second key, a secret rotation, a revocation.
    let created = create_tenant(HERALD, url, "alpha");
    let second = printed_value(
        &herald_admin(HERALD, url, &["key", "create", "alpha"]),
        "key id:",
    );
    herald_admin(
        HERALD,
        url,
        &["tenant", "rotate-secret", "alpha", "--grace", "1h"],
    );
    herald_admin(HERALD, url, &["key", "revoke", &second]);
    let beta = create_tenant(HERALD, url, "beta");

    // The API, with alpha's first key.
    let acting = key_id(&created.api_key);
    let alpha = Client::connect(format!("http://{}", herald.addr()))
        .await
        .expect("connect")
        .with_api_key(&created.api_key)
        .expect("a key");
    let pending = alpha
        .enqueue(receiver.url("/later"))
        .not_before(SystemTime::now() + Duration::from_secs(3600))
        .send()
        .await
        .expect("enqueue");
    alpha.cancel_delivery(&pending.id).await.expect("cancel");
    receiver.script("/reject", [Reply::Status(400)]);
    let dead = alpha
        .enqueue(receiver.url("/reject"))
        .send()
        .await
        .expect("enqueue");
    let mut outcomes = alpha
        .watch_outcomes(
            WatchOptions::default()
                .from_oldest()
                .delivery_ids([dead.id.as_str()]),
        )
        .await
        .expect("watch");
    tokio::time::timeout(PATIENCE, async {
        use futures::StreamExt;
        while let Some(outcome) = outcomes.next().await {
            if outcome.expect("outcome").kind == OutcomeKind::DeadLettered {
                return;
            }
        }
    })
    .await
    .expect("dead-lettered");
    let redriven = alpha
        .redrive_dead_letters()
        .ids([dead.id.clone()])
        .send()
        .await
        .expect("redrive");
    assert_eq!(redriven, 1);
    let destination = receiver.url("/");
    alpha
        .set_destination_policy(destination.as_str())
        .max_in_flight(4)
        .send()
        .await
        .expect("set policy");
    alpha
        .pause_destination(&destination, "maintenance")
        .await
        .expect("pause");
    alpha
        .resume_destination(&destination)
        .await
        .expect("resume");

    let events = listed(&herald, &created.api_key, ListAuditEventsRequest::default()).await;
    let expected = [
        (AuditEventKind::DestinationResumed, acting),
        (AuditEventKind::DestinationPaused, acting),
        (AuditEventKind::DestinationPolicySet, acting),
        (AuditEventKind::DeadLettersRedriven, acting),
        (AuditEventKind::DeliveryCancelled, acting),
        (AuditEventKind::KeyRevoked, ""),
        (AuditEventKind::SecretRotated, ""),
        (AuditEventKind::KeyCreated, ""),
        (AuditEventKind::TenantCreated, ""),
    ];
    let seen: Vec<(AuditEventKind, &str)> = events
        .iter()
        .map(|event| (event.kind(), event.key_id.as_str()))
        .collect();
    assert_eq!(seen, expected, "newest first, each once: {events:?}");
    let cancelled = &events[4];
    assert!(
        cancelled.details_json.contains(&pending.id),
        "{cancelled:?}"
    );
    assert!(events[5].details_json.contains(&second), "{:?}", events[5]);

    // Filtered by kind, and paged two at a time, the same events.
    let only = listed(
        &herald,
        &created.api_key,
        ListAuditEventsRequest {
            kinds: vec![AuditEventKind::DeliveryCancelled.into()],
            ..Default::default()
        },
    )
    .await;
    assert_eq!(only.len(), 1, "{only:?}");
    let paged = listed(
        &herald,
        &created.api_key,
        ListAuditEventsRequest {
            page_size: 2,
            ..Default::default()
        },
    )
    .await;
    assert_eq!(paged, events);
    // A time window in the future holds nothing.
    let later = listed(
        &herald,
        &created.api_key,
        ListAuditEventsRequest {
            after_time: Some(prost_types::Timestamp::from(
                SystemTime::now() + Duration::from_secs(3600),
            )),
            ..Default::default()
        },
    )
    .await;
    assert!(later.is_empty(), "{later:?}");

    // Beta sees only its own creation.
    let betas = listed(&herald, &beta.api_key, ListAuditEventsRequest::default()).await;
    assert_eq!(betas.len(), 1, "{betas:?}");
    assert_eq!(betas[0].kind(), AuditEventKind::TenantCreated);

    // The command line shows the same, one JSON object per line.
    let server = format!("http://{}", herald.addr());
    let printed = herald_command(
        HERALD,
        &[
            ("HERALD_SERVER", server.as_str()),
            ("HERALD_API_KEY", created.api_key.as_str()),
        ],
        &["audit", "list", "--json", "--kind", "delivery-cancelled"],
    );
    let lines: Vec<serde_json::Value> = printed
        .lines()
        .map(|line| serde_json::from_str(line).expect("a JSON line"))
        .collect();
    assert_eq!(lines.len(), 1, "{printed}");
    assert_eq!(lines[0]["kind"], "delivery-cancelled");
    assert_eq!(lines[0]["key_id"], acting);
    assert_eq!(lines[0]["details"]["delivery_id"], pending.id.as_str());
    herald.stop().await;
}
