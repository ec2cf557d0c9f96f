//! `herald endpoints`, `herald events` and `herald watch --endpoint
//! --event-type` against a live server, as a person (tables) and as a
//! script (`--json`) would use them: two endpoints, each receiving what it
//! subscribes to under its own secret; update, rotate, recover, replay,
//! delete; the catalogue's schema refusing a payload, on stderr with exit
//! code 4.

use std::{
    io::{BufRead, BufReader, Write},
    process::Stdio,
};

use herald_client::webhook::{self, Secret};
use herald_tests::{
    Backend, PATIENCE, Receiver, Reply, TestHerald, create_tenant, herald_command, herald_output,
    herald_process, on_both_backends,
};
use serde_json::Value;

use crate::{
    HERALD,
    operator_cli::{REFUSED, failure},
};

on_both_backends!(endpoints_and_events_from_the_shell);

async fn endpoints_and_events_from_the_shell(backend: Backend) {
    let Some(herald) = TestHerald::start(backend).await else {
        return;
    };
    let receiver = Receiver::start().await;
    let key = create_tenant(HERALD, herald.database_url(), "shop").api_key;
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
    let text = |value: &Value| value.as_str().expect("a string").to_owned();

    // Two endpoints: one for orders (a table for people, the secret shown
    // once), one for everything (JSON).
    let orders_url = receiver.url("/orders");
    let created = cli(&[
        "endpoints",
        "create",
        "--url",
        &orders_url,
        "--description",
        "order service",
        "--event-type",
        "order.*",
        "--header",
        "x-team=orders",
        "--max-in-flight",
        "4",
    ]);
    assert!(created.contains("event types   order.*"), "{created}");
    assert!(created.contains("in flight     0 of 4"), "{created}");
    let orders_secret = herald_tests::printed_value(&created, "signing secret:");
    assert!(created.contains("shown once"), "{created}");
    let everything = json(&[
        "endpoints",
        "create",
        "--url",
        &receiver.url("/all"),
        "--json",
    ]);
    let all_id = text(&everything["endpoint"]["id"]);
    let all_secret = text(&everything["signing_secret"]);
    let listed = json(&[
        "endpoints",
        "list",
        "--event-type",
        "order.created",
        "--json",
    ]);
    let endpoints = listed["endpoints"].as_array().expect("an array");
    assert_eq!(endpoints.len(), 2, "{listed}");
    let orders_id = endpoints
        .iter()
        .find(|endpoint| endpoint["url"] == orders_url.as_str())
        .map(|endpoint| text(&endpoint["id"]))
        .expect("the orders endpoint");
    let only_all = json(&[
        "endpoints",
        "list",
        "--event-type",
        "invoice.paid",
        "--json",
    ]);
    assert_eq!(only_all["endpoints"][0]["id"], all_id.as_str());
    assert_eq!(only_all["endpoints"].as_array().map(Vec::len), Some(1));
    let table = cli(&["endpoints", "list", "--page-size", "1"]);
    assert!(table.starts_with("ID "), "{table}");
    assert!(table.contains("-- more: --page-token "), "{table}");
    let got = cli(&["endpoints", "get", &orders_id]);
    assert!(got.contains("headers       x-team: orders"), "{got}");

    // Publish: each endpoint gets its own delivery, signed with its own
    // secret, with the event type in a header.
    let published = json(&[
        "events",
        "publish",
        "order.created",
        "--payload",
        r#"{"id": 42}"#,
        "--idempotency-key",
        "order-42",
        "--json",
    ]);
    let event_id = text(&published["event_id"]);
    assert_eq!(published["created"], true);
    assert_eq!(published["deliveries"].as_array().map(Vec::len), Some(2));
    for (path, secret) in [("/orders", &orders_secret), ("/all", &all_secret)] {
        let seen = &receiver.wait_for(path, 1).await[0];
        let secret: Secret = secret.parse().expect("a secret");
        webhook::verify(&secret, &seen.headers, &seen.body).expect("signed with its own secret");
        assert_eq!(seen.header("herald-event-type"), "order.created");
        assert_eq!(&seen.body[..], br#"{"id": 42}"#);
    }
    assert_eq!(receiver.requests("/orders")[0].header("x-team"), "orders");
    let again = json(&[
        "events",
        "publish",
        "order.created",
        "--payload",
        r#"{"id": 42}"#,
        "--idempotency-key",
        "order-42",
        "--json",
    ]);
    assert_eq!(
        (again["event_id"].clone(), again["created"].clone()),
        (published["event_id"].clone(), Value::Bool(false))
    );

    // A payload from stdin, of a type only the second endpoint wants.
    let mut publish = herald_process(HERALD)
        .args(["events", "publish", "invoice.paid", "--payload-file", "-"])
        .envs(settings)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .spawn()
        .expect("run herald");
    publish
        .stdin
        .take()
        .expect("stdin")
        .write_all(br#"{"invoice": 7}"#)
        .expect("write the payload");
    let output = publish.wait_with_output().expect("herald ends");
    let said = String::from_utf8_lossy(&output.stdout);
    assert!(output.status.success(), "{said}");
    assert!(said.contains("deliveries    1"), "{said}");
    let invoice = &receiver.wait_for("/all", 2).await[1];
    assert_eq!(&invoice.body[..], br#"{"invoice": 7}"#);
    assert_eq!(receiver.requests("/orders").len(), 1);

    // events get (a table of its deliveries), list, replay.
    let detail = cli(&["events", "get", &event_id]);
    assert!(detail.contains(r#"payload       {"id": 42}"#), "{detail}");
    assert!(
        detail.contains(&orders_id) && detail.contains(&all_id),
        "{detail}"
    );
    let listed = json(&[
        "events",
        "list",
        "--event-type",
        "order.created",
        "--since",
        "1h",
        "--all",
        "--json",
    ]);
    assert_eq!(listed["events"].as_array().map(Vec::len), Some(1));
    assert_eq!(listed["events"][0]["id"], event_id.as_str());
    let table = cli(&["events", "list"]);
    assert!(
        table.contains("invoice.paid") && table.contains("order.created"),
        "{table}"
    );
    let replayed = json(&[
        "events",
        "replay",
        &event_id,
        "--endpoint",
        &orders_id,
        "--json",
    ]);
    let replay_id = text(&replayed["deliveries"][0]["delivery_id"]);
    let resent = &receiver.wait_for("/orders", 2).await[1];
    assert_eq!(resent.header("webhook-id"), replay_id);

    // watch --endpoint --event-type: only the orders endpoint's deliveries
    // of order.created, not the other endpoint's nor another type's.
    let updated = json(&["events", "publish", "order.updated", "--json"]);
    receiver.wait_for("/orders", 3).await;
    let last = json(&[
        "events",
        "publish",
        "order.created",
        "--payload",
        "{}",
        "--json",
    ]);
    let delivery_to = |published: &Value, endpoint: &str| {
        published["deliveries"]
            .as_array()
            .expect("deliveries")
            .iter()
            .find(|made| made["endpoint_id"] == endpoint)
            .map(|made| text(&made["delivery_id"]))
            .expect("a delivery to the endpoint")
    };
    let watched = watch_until(
        &settings,
        &["--endpoint", &orders_id, "--event-type", "order.created"],
        &delivery_to(&last, &orders_id),
    );
    assert!(
        watched.contains(&delivery_to(&published, &orders_id)),
        "{watched}"
    );
    assert!(
        !watched.contains(&delivery_to(&published, &all_id)),
        "{watched}"
    );
    assert!(
        !watched.contains(&delivery_to(&updated, &orders_id)),
        "{watched}"
    );

    // update: a field mask from the flags given.
    let changed = json(&[
        "endpoints",
        "update",
        &orders_id,
        "--event-type",
        "invoice.*",
        "--disable",
        "--no-headers",
        "--json",
    ]);
    assert_eq!(
        changed["endpoint"]["event_types"],
        serde_json::json!(["invoice.*"])
    );
    assert_eq!(changed["endpoint"]["enabled"], false);
    assert_eq!(changed["endpoint"]["headers"], serde_json::json!([]));
    assert_eq!(changed["endpoint"]["description"], "order service");
    let enabled = json(&["endpoints", "list", "--enabled", "--json"]);
    assert_eq!(enabled["endpoints"].as_array().map(Vec::len), Some(1));
    cli(&[
        "endpoints",
        "update",
        &orders_id,
        "--enable",
        "--all-event-types",
    ]);

    // rotate-secret: both secrets sign during the grace window.
    let rotated = cli(&["endpoints", "rotate-secret", &all_id, "--grace", "1h"]);
    let new_secret = herald_tests::printed_value(&rotated, "signing secret:");
    assert!(
        rotated.contains("keeps signing alongside it until"),
        "{rotated}"
    );
    let signed_event = json(&[
        "events",
        "publish",
        "invoice.paid",
        "--payload",
        "{}",
        "--json",
    ]);
    let signed_id = delivery_to(&signed_event, &all_id);
    let signed = receiver
        .wait_for("/all", 5)
        .await
        .into_iter()
        .find(|seen| seen.header("webhook-id") == signed_id)
        .expect("the delivery after the rotation");
    for secret in [&all_secret, &new_secret] {
        let secret: Secret = secret.parse().expect("a secret");
        webhook::verify(&secret, &signed.headers, &signed.body).expect("both sign");
    }

    // recover: what failed since a time, once the receiver is fixed.
    receiver.script("/broken", [Reply::Status(400)]);
    let broken = json(&[
        "endpoints",
        "create",
        "--url",
        &receiver.url("/broken"),
        "--event-type",
        "refund.issued",
        "--json",
    ]);
    let broken_id = text(&broken["endpoint"]["id"]);
    let refund = json(&[
        "events",
        "publish",
        "refund.issued",
        "--payload",
        "{}",
        "--json",
    ]);
    receiver.wait_for("/broken", 1).await;
    let refund_id = text(&refund["event_id"]);
    wait_for_state(&json, &refund_id, &broken_id, "dead-lettered").await;
    cli(&[
        "endpoints",
        "update",
        &broken_id,
        "--url",
        &receiver.url("/fixed"),
    ]);
    let counted = json(&[
        "endpoints",
        "recover",
        &broken_id,
        "--since",
        "1h",
        "--dry-run",
        "--json",
    ]);
    assert_eq!(
        counted,
        serde_json::json!({"recovered_count": 1, "dry_run": true})
    );
    let recovered = cli(&["endpoints", "recover", &broken_id, "--since", "1h"]);
    assert_eq!(
        recovered.trim(),
        format!("sent 1 events to endpoint {broken_id} again")
    );
    receiver.wait_for("/fixed", 1).await;

    // delete: pending deliveries (one held in flight) are cancelled.
    receiver.hold("/held");
    let held = json(&[
        "endpoints",
        "create",
        "--url",
        &receiver.url("/held"),
        "--event-type",
        "held.*",
        "--json",
    ]);
    let held_id = text(&held["endpoint"]["id"]);
    cli(&["events", "publish", "held.now", "--payload", "{}"]);
    receiver.wait_for("/held", 1).await;
    let deleted = cli(&["endpoints", "delete", &held_id]);
    assert_eq!(
        deleted.trim(),
        format!("deleted endpoint {held_id}; cancelled 1 pending deliveries")
    );
    let gone = herald_output(HERALD, &settings, &["endpoints", "get", &held_id]);
    assert_eq!(failure(&gone, "not found"), REFUSED);
    receiver.open_gate();

    // The catalogue: a schema refuses a payload, naming the failing path.
    let schema = tempfile::NamedTempFile::new().expect("a temporary file");
    std::fs::write(
        schema.path(),
        r#"{"type": "object", "required": ["id"], "properties": {"lines": {"type": "array", "items": {"type": "object", "properties": {"sku": {"type": "string"}}}}}}"#,
    )
    .expect("write the schema");
    let schema_path = schema.path().to_str().expect("a UTF-8 path");
    let described = cli(&[
        "events",
        "types",
        "create",
        "order.created",
        "--description",
        "an order was placed",
        "--schema-file",
        schema_path,
    ]);
    assert!(described.contains("schema        yes"), "{described}");
    let got = json(&["events", "types", "get", "order.created", "--json"]);
    assert_eq!(got["json_schema"]["required"], serde_json::json!(["id"]));
    let types = cli(&["events", "types", "list"]);
    assert!(
        types.contains("order.created  yes     an order was placed"),
        "{types}"
    );
    let refused = herald_output(
        HERALD,
        &settings,
        &[
            "events",
            "publish",
            "order.created",
            "--payload",
            r#"{"id": 1, "lines": [{"sku": "a"}, {"sku": 7}]}"#,
        ],
    );
    assert_eq!(failure(&refused, "\"/lines/1/sku\""), REFUSED);
    cli(&["events", "types", "update", "order.created", "--no-schema"]);
    cli(&[
        "events",
        "publish",
        "order.created",
        "--payload",
        r#"{"lines": 7}"#,
    ]);
    cli(&["events", "types", "delete", "order.created"]);
    let empty = json(&["events", "types", "list", "--json"]);
    assert_eq!(empty["event_types"], serde_json::json!([]));
    let unreadable = herald_output(
        HERALD,
        &settings,
        &[
            "events",
            "types",
            "create",
            "x.y",
            "--schema-file",
            "/no/such/schema.json",
        ],
    );
    assert_eq!(failure(&unreadable, "/no/such/schema.json"), 2);
    herald.stop().await;
}

/// Waits until event `id`'s delivery to `endpoint` is in `state`.
async fn wait_for_state(json: &impl Fn(&[&str]) -> Value, id: &str, endpoint: &str, state: &str) {
    tokio::time::timeout(PATIENCE, async {
        loop {
            let got = json(&["events", "get", id, "--json"]);
            let reached = got["deliveries"]
                .as_array()
                .expect("deliveries")
                .iter()
                .any(|delivery| delivery["endpoint_id"] == endpoint && delivery["state"] == state);
            if reached {
                return;
            }
            tokio::time::sleep(std::time::Duration::from_millis(50)).await;
        }
    })
    .await
    .unwrap_or_else(|_| panic!("event {id}'s delivery never became {state}"));
}

/// What `herald watch --from-oldest FILTERS` printed up to and including
/// the line naming `delivery`.
fn watch_until(settings: &[(&str, &str)], filters: &[&str], delivery: &str) -> String {
    let mut watch = herald_process(HERALD)
        .args(["watch", "--from-oldest"])
        .args(filters)
        .envs(settings.iter().copied())
        .stdout(Stdio::piped())
        .spawn()
        .expect("run herald watch");
    let stdout = watch.stdout.take().expect("stdout");
    let (lines, seen) = std::sync::mpsc::channel();
    let wanted = delivery.to_owned();
    std::thread::spawn(move || {
        let mut printed = String::new();
        for line in BufReader::new(stdout).lines() {
            let Ok(line) = line else { break };
            printed.push_str(&line);
            printed.push('\n');
            if line.contains(&wanted) && line.contains("succeeded") {
                let _ = lines.send(printed);
                return;
            }
        }
    });
    let printed = seen.recv_timeout(PATIENCE);
    let _ = watch.kill();
    let _ = watch.wait();
    printed.unwrap_or_else(|_| panic!("herald watch never printed {delivery} succeeding"))
}
