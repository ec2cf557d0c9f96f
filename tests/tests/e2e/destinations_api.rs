//! `DestinationService` end to end, over the SDK and the `herald
//! destinations` commands: policies checked, set and reset; pause holds
//! deliveries and resume sends them, each with its event in the feed;
//! listing pages; tenants walled off; a disabled destination refuses
//! enqueues until it is enabled.

use std::{
    collections::{HashMap, HashSet},
    time::Duration,
};

use futures::{StreamExt, TryStreamExt};
use herald_client::{
    Client, Code, Destination, DestinationQuery, DestinationState, Outcome, OutcomeKind,
    RatePeriod, WatchOptions,
};
use herald_proto::v1::{
    ListDestinationsRequest, destination_service_client::DestinationServiceClient,
};
use herald_server::destinations::state::StateChange;
use herald_server::store::Actor;
use herald_server::{
    destinations::{
        health::Snapshot,
        policy::{CircuitPolicy, Policy},
    },
    domain::{Destination as Receiving, HttpMethod, HttpRequest},
    store::{
        ClaimRequest, Store,
        records::{DestinationRef, NewDelivery},
    },
};
use herald_tests::{
    Backend, PATIENCE, Receiver, TestDb, TestHerald, create_tenant, herald_command, herald_output,
    on_both_backends,
};
use sea_orm::{ConnectionTrait, Database, Statement};
use serde_json::Value;

use crate::HERALD;

on_both_backends!(
    policies_are_checked_shown_and_reset,
    pause_holds_deliveries_until_resumed,
    listing_pages_through_destinations,
    another_tenants_destination_is_not_found,
    a_disabled_destination_refuses_work_until_enabled,
    the_cli_lists_sets_and_pauses_destinations,
    a_destination_shows_what_is_in_flight_and_its_recent_attempts,
    an_enabled_destination_is_not_disabled_again_by_failures_from_before,
);

/// The SDK on `herald`, with `api_key` if given.
async fn sdk(herald: &TestHerald, api_key: Option<&str>) -> Client {
    let client = Client::connect(format!("http://{}", herald.addr()))
        .await
        .expect("connect");
    match api_key {
        Some(key) => client.with_api_key(key).expect("a valid key"),
        None => client,
    }
}

/// The refusal's code and message.
fn refusal<T: std::fmt::Debug>(result: Result<T, herald_client::Error>) -> (Code, String) {
    let error = result.expect_err("the call is refused");
    let status = error.status().expect("an answer from Herald");
    (status.code, status.message.clone())
}

/// The destination's `scheme://host:port` for one of `receiver`'s URLs.
fn key_of(receiver: &Receiver) -> String {
    let url = url::Url::parse(&receiver.url("/")).expect("a URL");
    format!(
        "http://{}:{}",
        url.host_str().expect("a host"),
        url.port().expect("a port")
    )
}

/// Waits, on an open outcome stream, for a success of `id`.
async fn wait_success(client: &Client, id: &str) {
    let mut outcomes = client
        .watch_outcomes(
            WatchOptions::default()
                .from_oldest()
                .delivery_ids([id])
                .kinds([OutcomeKind::Succeeded]),
        )
        .await
        .expect("watch");
    tokio::time::timeout(PATIENCE, outcomes.next())
        .await
        .unwrap_or_else(|_| panic!("{id} did not succeed within {PATIENCE:?}"))
        .expect("stream open")
        .expect("an outcome");
}

/// The next outcome of `stream`, within [`PATIENCE`].
async fn next_event(
    stream: &mut (impl futures::Stream<Item = Result<Outcome, herald_client::Error>> + Unpin),
) -> Outcome {
    tokio::time::timeout(PATIENCE, stream.next())
        .await
        .expect("an event in time")
        .expect("stream open")
        .expect("an outcome")
}

fn policy_of(destination: &Destination) -> &herald_client::DestinationPolicy {
    destination.policy.as_ref().expect("a policy")
}

async fn policies_are_checked_shown_and_reset(backend: Backend) {
    let Some(herald) = TestHerald::start(backend).await else {
        return;
    };
    let client = sdk(&herald, None).await;
    let name = "https://policy.example.test";

    let (code, message) = refusal(
        client
            .set_destination_policy(name)
            .max_in_flight(0)
            .send()
            .await,
    );
    assert_eq!(code, Code::InvalidArgument);
    assert_eq!(
        message,
        "max_in_flight: 0 is out of range: must be between 1 and 10000"
    );
    let (code, message) = refusal(
        client
            .set_destination_policy(name)
            .cooldown(Duration::from_secs(120))
            .send()
            .await,
    );
    assert_eq!(code, Code::InvalidArgument);
    assert!(message.starts_with("circuit.cooldown_max: "), "{message}");
    let (code, message) = refusal(client.get_destination(name).await);
    assert_eq!(
        code,
        Code::NotFound,
        "a refused policy keeps nothing: {message}"
    );
    let (code, message) = refusal(client.get_destination("policy.example.test").await);
    assert_eq!(code, Code::InvalidArgument);
    assert!(message.starts_with("destination: "), "{message}");

    let set = client
        .set_destination_policy(name)
        .max_in_flight(3)
        .rate_limit(50, RatePeriod::Second)
        .burst(5)
        .send()
        .await
        .expect("a policy in range");
    assert_eq!(set.destination, "https://policy.example.test:443");
    assert_eq!(set.host, "policy.example.test");
    assert_eq!(set.state, DestinationState::Active);
    assert_eq!(set.policy_overrides, ["max_in_flight", "rate_limit"]);
    let shown = client
        .get_destination("https://policy.example.test:443/any/path")
        .await
        .expect("get");
    assert_eq!(policy_of(&shown).max_in_flight, 3);
    let rate = policy_of(&shown).rate_limit.as_ref().expect("a rate limit");
    assert_eq!(
        (rate.requests, rate.period, rate.burst),
        (50, RatePeriod::Second, 5)
    );
    assert_eq!(shown.in_flight, 0);
    assert_eq!(shown.recent.expect("recent figures").attempts, 0);

    // Back to the default (8 in the tests' configuration); "no rate limit"
    // is a value of its own.
    let reset = client
        .set_destination_policy(name)
        .reset("max_in_flight")
        .no_rate_limit()
        .send()
        .await
        .expect("reset");
    assert_eq!(policy_of(&reset).max_in_flight, 8);
    assert_eq!(policy_of(&reset).rate_limit, None);
    assert_eq!(reset.policy_overrides, ["rate_limit"]);
    let (code, message) = refusal(
        client
            .set_destination_policy(name)
            .reset("cooldown")
            .send()
            .await,
    );
    assert_eq!(code, Code::InvalidArgument);
    assert!(message.starts_with("reset: "), "{message}");
    herald.stop().await;
}

async fn pause_holds_deliveries_until_resumed(backend: Backend) {
    let Some(herald) = TestHerald::start(backend).await else {
        return;
    };
    let client = sdk(&herald, None).await;
    let receiver = Receiver::start().await;
    let other = Receiver::start().await;
    let key = key_of(&receiver);
    let first = client.enqueue(receiver.url("/first")).send().await.unwrap();
    wait_success(&client, &first.id).await;
    let mut events = client
        .watch_outcomes(WatchOptions::default().kinds([
            OutcomeKind::DestinationPaused,
            OutcomeKind::DestinationResumed,
        ]))
        .await
        .expect("watch");

    // Named by a delivery's URL.
    let paused = client
        .pause_destination(&receiver.url("/first"), "deploy")
        .await
        .expect("pause");
    assert_eq!(paused.destination, key);
    assert_eq!(paused.state, DestinationState::Paused);
    assert_eq!(paused.state_reason, "deploy");
    let event = next_event(&mut events).await;
    assert_eq!(event.kind, OutcomeKind::DestinationPaused);
    assert_eq!(
        (event.destination.as_str(), event.delivery_id.as_str()),
        (key.as_str(), "")
    );
    assert_eq!(event.error_message, "deploy");
    let (code, message) = refusal(client.pause_destination(&key, "").await);
    assert_eq!(code, Code::FailedPrecondition);
    assert!(message.contains("already paused"), "{message}");

    // Held: a delivery to another destination, enqueued after it, goes
    // through while the held one is not tried.
    let held = client.enqueue(receiver.url("/held")).send().await.unwrap();
    let beside = client.enqueue(other.url("/beside")).send().await.unwrap();
    wait_success(&client, &beside.id).await;
    assert!(
        receiver.requests("/held").is_empty(),
        "a paused destination is not sent to"
    );
    let waiting = client.get_delivery(&held.id).await.unwrap();
    assert_eq!(waiting.attempt_count, 0, "held deliveries use no attempts");

    let resumed = client.resume_destination(&key).await.expect("resume");
    assert_eq!(resumed.state, DestinationState::Active);
    assert_eq!(resumed.state_reason, "");
    receiver.wait_for("/held", 1).await;
    wait_success(&client, &held.id).await;
    let event = next_event(&mut events).await;
    assert_eq!(event.kind, OutcomeKind::DestinationResumed);
    assert_eq!(event.destination, key);
    let (code, message) = refusal(client.resume_destination(&key).await);
    assert_eq!(code, Code::FailedPrecondition);
    assert!(message.contains("already active"), "{message}");
    herald.stop().await;
}

async fn listing_pages_through_destinations(backend: Backend) {
    let Some(herald) = TestHerald::start(backend).await else {
        return;
    };
    let client = sdk(&herald, None).await;
    let mut names = HashSet::new();
    for n in 0..5 {
        let set = client
            .set_destination_policy(format!("https://d{n}.example.test"))
            .max_in_flight(n + 1)
            .send()
            .await
            .expect("set");
        names.insert(set.destination);
    }
    client
        .pause_destination("https://d3.example.test", "")
        .await
        .expect("pause");

    // Pages of two: 2, 2, then 1 without a next token.
    let mut grpc = DestinationServiceClient::connect(format!("http://{}", herald.addr()))
        .await
        .expect("connect");
    let mut page_token = String::new();
    let mut sizes = Vec::new();
    let mut listed = Vec::new();
    loop {
        let page = grpc
            .list_destinations(ListDestinationsRequest {
                page_size: 2,
                page_token,
                ..Default::default()
            })
            .await
            .expect("a page")
            .into_inner();
        sizes.push(page.destinations.len());
        listed.extend(page.destinations.into_iter().map(|d| d.destination));
        if page.next_page_token.is_empty() {
            break;
        }
        page_token = page.next_page_token;
    }
    assert_eq!(sizes, [2, 2, 1]);
    assert_eq!(listed.len(), 5, "each once: {listed:?}");
    assert_eq!(listed.iter().cloned().collect::<HashSet<_>>(), names);

    // The SDK follows the pages; a state filter narrows them.
    let all: Vec<Destination> = client
        .destinations(DestinationQuery::default().page_size(2))
        .try_collect()
        .await
        .expect("list");
    assert_eq!(all.len(), 5);
    // A page at a time, resumed from a token kept in between.
    let query = DestinationQuery::default().page_size(3);
    let first = client.destinations_page(&query, "").await.expect("a page");
    assert_eq!(first.items.len(), 3);
    let rest = client
        .destinations_page(&query, &first.next_page_token)
        .await
        .expect("the next page");
    assert_eq!(rest.items.len(), 2);
    assert!(rest.next_page_token.is_empty(), "the last page");
    let paged: HashSet<String> = first
        .items
        .into_iter()
        .chain(rest.items)
        .map(|destination| destination.destination)
        .collect();
    assert_eq!(paged, names);
    let paused: Vec<Destination> = client
        .destinations(DestinationQuery::default().state(DestinationState::Paused))
        .try_collect()
        .await
        .expect("list");
    assert_eq!(paused.len(), 1);
    assert_eq!(paused[0].destination, "https://d3.example.test:443");
    herald.stop().await;
}

async fn another_tenants_destination_is_not_found(backend: Backend) {
    let Some(herald) = TestHerald::start(backend).await else {
        return;
    };
    let alpha_key = create_tenant(HERALD, herald.database_url(), "alpha").api_key;
    let beta_key = create_tenant(HERALD, herald.database_url(), "beta").api_key;
    let alpha = sdk(&herald, Some(&alpha_key)).await;
    let beta = sdk(&herald, Some(&beta_key)).await;
    let name = "https://shared.example.test:443";
    alpha
        .set_destination_policy(name)
        .max_in_flight(2)
        .send()
        .await
        .expect("alpha sets its policy");

    assert_eq!(refusal(beta.get_destination(name).await).0, Code::NotFound);
    assert_eq!(
        refusal(beta.pause_destination(name, "").await).0,
        Code::NotFound
    );
    assert_eq!(
        refusal(beta.enable_destination(name).await).0,
        Code::NotFound
    );
    let listed: Vec<Destination> = beta
        .destinations(DestinationQuery::default())
        .try_collect()
        .await
        .expect("list");
    assert!(listed.is_empty(), "{listed:?}");
    // Beta's policy for the same receiver is its own.
    let own = beta
        .set_destination_policy(name)
        .max_in_flight(5)
        .send()
        .await
        .expect("beta sets its own");
    assert_eq!(policy_of(&own).max_in_flight, 5);
    let kept = alpha.get_destination(name).await.expect("alpha's");
    assert_eq!(policy_of(&kept).max_in_flight, 2);
    herald.stop().await;
}

async fn a_disabled_destination_refuses_work_until_enabled(backend: Backend) {
    let Some(herald) = TestHerald::start(backend).await else {
        return;
    };
    let client = sdk(&herald, None).await;
    let receiver = Receiver::start().await;
    let key = key_of(&receiver);
    let first = client.enqueue(receiver.url("/first")).send().await.unwrap();
    wait_success(&client, &first.id).await;
    let (code, message) = refusal(client.enable_destination(&key).await);
    assert_eq!(code, Code::FailedPrecondition);
    assert!(message.contains("already active"), "{message}");

    // Disabled as Upkeep disables one that failed for too long.
    let raw = Database::connect(herald.database_url())
        .await
        .expect("connect");
    raw.execute_raw(Statement::from_string(
        raw.get_database_backend(),
        format!(
            "UPDATE destinations SET state = 'disabled', state_reason = 'it kept failing', \
             next_due_at_ms = NULL, failing_since_ms = 1 WHERE destination = '{key}'"
        ),
    ))
    .await
    .expect("disable");
    raw.close().await.expect("close");

    let (code, message) = refusal(client.enqueue(receiver.url("/refused")).send().await);
    assert_eq!(code, Code::FailedPrecondition);
    assert!(
        message.contains(&key) && message.contains(&format!("herald destinations enable {key}")),
        "{message}"
    );
    let disabled = client.get_destination(&key).await.expect("get");
    assert_eq!(disabled.state, DestinationState::Disabled);
    assert_eq!(disabled.state_reason, "it kept failing");
    let (code, message) = refusal(client.resume_destination(&key).await);
    assert_eq!(code, Code::FailedPrecondition);
    assert!(message.contains("EnableDestination"), "{message}");

    let mut events = client
        .watch_outcomes(WatchOptions::default().kinds([OutcomeKind::DestinationEnabled]))
        .await
        .expect("watch");
    let enabled = client.enable_destination(&key).await.expect("enable");
    assert_eq!(enabled.state, DestinationState::Active);
    assert_eq!(enabled.failing_since_time, None);
    let event = next_event(&mut events).await;
    assert_eq!(event.destination, key);
    let again = client
        .enqueue(receiver.url("/again"))
        .send()
        .await
        .expect("enqueue works again");
    wait_success(&client, &again.id).await;
    herald.stop().await;
}

async fn the_cli_lists_sets_and_pauses_destinations(backend: Backend) {
    let Some(herald) = TestHerald::start(backend).await else {
        return;
    };
    let key = create_tenant(HERALD, herald.database_url(), "ops").api_key;
    let server = format!("http://{}", herald.addr());
    let settings = [
        ("HERALD_SERVER", server.as_str()),
        ("HERALD_API_KEY", key.as_str()),
    ];
    let cli = |args: &[&str]| herald_command(HERALD, &settings, args);
    let json = |args: &[&str]| -> Value {
        let printed = cli(args);
        serde_json::from_str(&printed).unwrap_or_else(|error| panic!("{error}: {printed}"))
    };
    let name = "https://cli.example.test:443";

    let set = json(&[
        "destinations",
        "set",
        "https://cli.example.test/hooks",
        "--max-in-flight",
        "3",
        "--rate-limit",
        "3000/min",
        "--burst",
        "4",
        "--cooldown",
        "2s",
        "--json",
    ]);
    assert_eq!(set["destination"], name);
    assert_eq!(set["policy"]["max_in_flight"], 3);
    assert_eq!(
        set["policy"]["rate_limit"],
        serde_json::json!({"requests": 3000, "period": "minute", "burst": 4})
    );
    assert_eq!(set["policy"]["circuit"]["cooldown_ms"], 2000);
    assert_eq!(
        set["policy_overrides"],
        serde_json::json!(["max_in_flight", "rate_limit", "circuit.cooldown"])
    );

    let listed = json(&["destinations", "list", "--json"]);
    let names: Vec<&str> = listed
        .as_array()
        .expect("an array")
        .iter()
        .map(|d| d["destination"].as_str().expect("a name"))
        .collect();
    assert_eq!(names, [name]);
    let table = cli(&["destinations", "list"]);
    assert!(table.starts_with("DESTINATION "), "{table}");
    assert!(
        table.contains(name) && table.contains("3000/min"),
        "{table}"
    );

    let reset = json(&[
        "destinations",
        "set",
        name,
        "--reset",
        "max_in_flight",
        "--reset",
        "circuit.cooldown",
        "--json",
    ]);
    assert_eq!(reset["policy_overrides"], serde_json::json!(["rate_limit"]));
    let refused = herald_output(
        HERALD,
        &settings,
        &["destinations", "set", name, "--max-in-flight", "0"],
    );
    assert!(!refused.status.success());
    let said = String::from_utf8_lossy(&refused.stderr);
    assert!(
        said.contains("max_in_flight: 0 is out of range: must be between 1 and 10000"),
        "{said}"
    );

    let paused = cli(&["destinations", "pause", name, "--reason", "maintenance"]);
    assert!(paused.contains("paused (maintenance)"), "{paused}");
    let only_paused = json(&["destinations", "list", "--state", "paused", "--json"]);
    assert_eq!(only_paused.as_array().map(Vec::len), Some(1));
    let detail = cli(&["destinations", "get", name]);
    assert!(detail.contains("own policy    rate_limit"), "{detail}");
    let resumed = json(&["destinations", "resume", name, "--json"]);
    assert_eq!(resumed["state"], "active");
    let refused = herald_output(HERALD, &settings, &["destinations", "enable", name]);
    assert!(!refused.status.success());
    let said = String::from_utf8_lossy(&refused.stderr);
    assert!(said.contains("already active"), "{said}");
    herald.stop().await;
}

/// The configured policy of the store-level tests.
fn defaults() -> Policy {
    Policy {
        max_in_flight: 7,
        rate_limit: None,
        circuit: CircuitPolicy {
            failure_threshold: 5,
            cooldown: Duration::from_secs(1),
            cooldown_max: Duration::from_secs(60),
        },
    }
}

/// A migrated store (no scheduler) holding two deliveries to one
/// destination, which it returns.
async fn store_with_deliveries(backend: Backend) -> Option<(TestDb, Store, DestinationRef)> {
    let db = TestDb::create(backend).await?;
    let store = Store::connect(db.url()).await.expect("connect");
    store.migrate().await.expect("migrate");
    let url = "https://stats.example.test/hook";
    let receiving = Receiving::of(&url.parse().expect("a URL")).expect("a destination");
    let delivery = |n: usize| NewDelivery {
        tenant_id: "default".into(),
        request: HttpRequest {
            method: HttpMethod::Post,
            url: url.into(),
            headers: Vec::new(),
            content_type: None,
            body: n.to_string().into(),
        },
        destination: receiving.clone(),
        idempotency_key: None,
        max_attempts: 3,
        max_attempts_chosen: true,
        not_before_ms: None,
        deadline_ms: None,
        trace: None,
        event: None,
    };
    store
        .enqueue_batch(&[delivery(1), delivery(2)])
        .await
        .expect("stored");
    let reference = DestinationRef {
        tenant_id: "default".into(),
        destination: receiving.key,
    };
    Some((db, store, reference))
}

/// A replica's health: `streak` failures in a row since `failing_since_ms`.
fn failing(failing_since_ms: i64, streak: u32) -> Snapshot {
    Snapshot {
        attempts: u64::from(streak),
        successes: 0,
        duration_us: 1_000,
        last_success_ms: None,
        last_failure_ms: Some(failing_since_ms),
        succeeded: false,
        failing_since_ms: Some(failing_since_ms),
        streak,
    }
}

/// The store alone: a claimed delivery is in flight, and the health a
/// replica writes shows as the recent window's figures.
async fn a_destination_shows_what_is_in_flight_and_its_recent_attempts(backend: Backend) {
    let Some((db, store, reference)) = store_with_deliveries(backend).await else {
        return;
    };
    let claimed = store
        .claim(&ClaimRequest {
            limit: 1,
            lease: Duration::from_secs(60),
            defaults: &defaults(),
            skip: &[],
            unrecorded: &HashMap::new(),
        })
        .await
        .expect("claim")
        .deliveries;
    assert_eq!(claimed.len(), 1);
    let snapshot = Snapshot {
        attempts: 4,
        successes: 3,
        duration_us: 2_000,
        last_success_ms: Some(1_000),
        succeeded: true,
        ..failing(2_000, 1)
    };
    store
        .flush_health(&[(reference.clone(), snapshot)], None)
        .await
        .expect("health written");

    let shown = store
        .get_destination(&reference, &defaults())
        .await
        .expect("read")
        .expect("the destination");
    assert_eq!(shown.in_flight, 1);
    assert_eq!(shown.policy.max_in_flight, 7);
    assert_eq!(
        (
            shown.recent.attempts,
            shown.recent.successes,
            shown.recent.duration_us
        ),
        (4, 3, 2_000)
    );
    assert_eq!(shown.recent.window, Duration::from_secs(300));
    assert_eq!(
        (shown.last_success_at_ms, shown.failing_since_ms),
        (Some(1_000), Some(2_000))
    );
    assert_eq!(shown.consecutive_failures, 1);
    store.close().await.expect("close");
    db.drop_database().await;
}

/// A replica keeps counting a failing streak across a disable; once the
/// destination is enabled, that streak's start is no reason to disable it
/// again.
async fn an_enabled_destination_is_not_disabled_again_by_failures_from_before(backend: Backend) {
    let Some((db, store, reference)) = store_with_deliveries(backend).await else {
        return;
    };
    let an_hour = Some(Duration::from_secs(3600));
    let disabled = store
        .flush_health(&[(reference.clone(), failing(1_000, 3))], an_hour)
        .await
        .expect("health written");
    assert_eq!(disabled.len(), 1, "failing since 1970 disables it");
    let (enabled, event) = store
        .change_destination_state(
            &Actor::command_line(&reference.tenant_id),
            &reference,
            StateChange::Enable,
            None,
            &defaults(),
        )
        .await
        .expect("enable");
    assert_eq!(
        event.destination.as_deref(),
        Some(reference.destination.as_str())
    );
    assert_eq!(enabled.failing_since_ms, None);

    let disabled = store
        .flush_health(&[(reference.clone(), failing(1_000, 4))], an_hour)
        .await
        .expect("health written");
    assert!(disabled.is_empty(), "{disabled:?}");
    let shown = store
        .get_destination(&reference, &defaults())
        .await
        .expect("read")
        .expect("the destination");
    assert_eq!(shown.failing_since_ms, shown.state_changed_at_ms);
    store.close().await.expect("close");
    db.drop_database().await;
}
