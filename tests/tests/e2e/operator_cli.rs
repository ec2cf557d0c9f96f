//! The operator commands against a live server, as a person (tables) and
//! as a script (`--json`) would use them, with a tenant's API key; a
//! failure says why on stderr only, with an exit code for its kind.

use std::{
    process::Output,
    time::{Duration, SystemTime},
};

use herald_client::{Client, DeliveryState};
use herald_tests::{
    Backend, Receiver, Reply, TestHerald, create_tenant, herald_command, herald_output,
    on_both_backends,
};
use serde_json::Value;

use crate::HERALD;

on_both_backends!(operators_inspect_cancel_and_redrive_from_the_shell);

async fn operators_inspect_cancel_and_redrive_from_the_shell(backend: Backend) {
    let Some(herald) = TestHerald::start(backend).await else {
        return;
    };
    let receiver = Receiver::start().await;
    let key = create_tenant(HERALD, herald.database_url(), "ops").api_key;
    let server = format!("http://{}", herald.addr());
    let client = Client::connect(server.clone())
        .await
        .expect("connect")
        .with_api_key(&key)
        .expect("a key");
    let settings = [
        ("HERALD_SERVER", server.as_str()),
        ("HERALD_API_KEY", key.as_str()),
    ];
    let herald_cli = |args: &[&str]| herald_command(HERALD, &settings, args);
    let json = |args: &[&str]| -> Value {
        let printed = herald_cli(args);
        serde_json::from_str(&printed).unwrap_or_else(|error| panic!("{error}: {printed}"))
    };

    // Enqueues to `path`, due now or (`later`) in an hour; returns the id.
    let enqueue = |path: &str, later: bool| {
        let mut builder = client.enqueue(receiver.url(path));
        if later {
            builder = builder.not_before(SystemTime::now() + Duration::from_secs(3600));
        }
        async move { builder.send().await.expect("enqueue").id }
    };
    receiver.script("/rejects", [Reply::Status(400)]);
    let dead = enqueue("/rejects", false).await;
    let delivered = enqueue("/accepts", false).await;
    let pending = enqueue("/later", true).await;
    wait_finished(&client, &dead).await;
    wait_finished(&client, &delivered).await;
    let dead_lettered = json(&["deliveries", "get", &dead, "--json"]);
    assert_eq!(dead_lettered["id"], dead.as_str());
    assert_eq!(dead_lettered["state"], "dead-lettered");
    assert_eq!(dead_lettered["attempts"][0]["status_code"], 400);

    // deliveries list: a table, and JSON filtered by state.
    let table = herald_cli(&["deliveries", "list"]);
    assert!(table.starts_with("ID "), "{table}");
    for id in [&dead, &delivered, &pending] {
        assert!(table.contains(id.as_str()), "{id} missing from:\n{table}");
    }
    let listed = json(&["deliveries", "list", "--state", "succeeded", "--json"]);
    let ids: Vec<&str> = listed
        .as_array()
        .expect("an array")
        .iter()
        .map(|d| d["id"].as_str().expect("an id"))
        .collect();
    assert_eq!(ids, [delivered.as_str()]);

    // deliveries get: the detail, with the attempt.
    let detail = herald_cli(&["deliveries", "get", &dead]);
    assert!(
        detail.contains("dead-lettered") && detail.contains("400"),
        "{detail}"
    );

    // dead-letters list and redrive.
    let table = herald_cli(&["dead-letters", "list"]);
    assert!(
        table.contains(dead.as_str()) && !table.contains(delivered.as_str()),
        "{table}"
    );
    let listed = json(&["dead-letters", "list", "--json"]);
    assert_eq!(listed.as_array().map(Vec::len), Some(1));
    let counted = json(&[
        "dead-letters",
        "redrive",
        "--dry-run",
        "--id",
        &dead,
        "--json",
    ]);
    assert_eq!(
        counted,
        serde_json::json!({"count": 1, "dry_run": true, "not_redriven": []})
    );
    let redriven = herald_cli(&["dead-letters", "redrive", "--id", &dead]);
    assert_eq!(redriven.trim(), "redrove 1 dead letters");
    receiver.wait_for("/rejects", 2).await;

    // deliveries cancel: the table, JSON, then a refusal for a finished one.
    let cancelled = herald_cli(&["deliveries", "cancel", &pending]);
    assert!(cancelled.contains("cancelled"), "{cancelled}");
    let another = enqueue("/later", true).await;
    let cancelled = json(&["deliveries", "cancel", &another, "--json"]);
    assert_eq!(
        (cancelled["id"].as_str(), cancelled["state"].as_str()),
        (Some(another.as_str()), Some("cancelled"))
    );
    let again = herald_output(
        HERALD,
        &settings,
        &["deliveries", "cancel", &pending, "--json"],
    );
    assert_eq!(failure(&again, "already cancelled"), REFUSED);

    // Without the key, the server refuses, and says so even with logging
    // off.
    let anonymous = herald_output(
        HERALD,
        &[("HERALD_SERVER", server.as_str()), ("HERALD_LOG", "off")],
        &["deliveries", "list", "--json"],
    );
    assert_eq!(failure(&anonymous, "Unauthenticated"), REFUSED);
    herald.stop().await;
}

/// The exit code of a command the server refused (a gRPC status).
pub(crate) const REFUSED: i32 = 4;

/// The exit code of a failing command that wrote nothing on stdout and
/// `message` on stderr.
pub(crate) fn failure(output: &Output, message: &str) -> i32 {
    assert!(
        output.stdout.is_empty(),
        "stdout: {}",
        String::from_utf8_lossy(&output.stdout)
    );
    let said = String::from_utf8_lossy(&output.stderr);
    assert!(said.contains(message), "{message:?} missing from: {said}");
    output.status.code().expect("an exit code")
}

#[test]
fn failures_go_to_stderr_with_an_exit_code_for_each_kind() {
    // A port nothing listens on.
    let closed = std::net::TcpListener::bind("127.0.0.1:0")
        .and_then(|listener| listener.local_addr())
        .expect("a free port");
    let unreachable = herald_output(
        HERALD,
        &[
            ("HERALD_SERVER", &format!("http://{closed}")),
            ("HERALD_LOG", "off"),
        ],
        &["deliveries", "list", "--json"],
    );
    assert_eq!(failure(&unreachable, "cannot connect to Herald"), 3);
    let bad_url = herald_output(
        HERALD,
        &[("HERALD_SERVER", "not a url")],
        &["deliveries", "list", "--json"],
    );
    assert_eq!(failure(&bad_url, "invalid Herald URL"), 2);
    let bad_flag = herald_output(HERALD, &[], &["deliveries", "list", "--state", "lost"]);
    assert_eq!(failure(&bad_flag, "lost"), 2);
}

/// What a script that pipes the commands' stderr reads: plain text, no
/// colour or log framing, whatever the log filter; a server given as
/// `host:port` (as gRPC tools take it) is the same as `http://host:port`;
/// a redrive without a selection names the flags that make one.
#[test]
fn piped_failures_are_plain_and_name_the_flags() {
    let closed = std::net::TcpListener::bind("127.0.0.1:0")
        .and_then(|listener| listener.local_addr())
        .expect("a free port");
    // NO_COLOR unset: stderr being a pipe must be enough.
    let unreachable = herald_tests::herald_process(HERALD)
        .args(["deliveries", "list"])
        .env("HERALD_SERVER", closed.to_string())
        .env("HERALD_LOG", "debug")
        .env_remove("NO_COLOR")
        .output()
        .expect("run herald");
    let said = String::from_utf8_lossy(&unreachable.stderr);
    assert!(!said.contains('\x1b'), "colour in: {said:?}");
    assert_eq!(
        failure(
            &unreachable,
            &format!("error: cannot connect to Herald at http://{closed}")
        ),
        3
    );
    let error = said
        .lines()
        .find(|line| line.starts_with("error: "))
        .expect("an error line");
    assert_eq!(
        error.matches("refused").count(),
        1,
        "the cause is said once: {error}"
    );

    let unselected = herald_output(HERALD, &[], &["dead-letters", "redrive"]);
    assert_eq!(failure(&unselected, "--id"), 2);
    let said = String::from_utf8_lossy(&unselected.stderr);
    assert!(
        said.contains("--host") && !said.contains("destination_host"),
        "{said}"
    );
}

/// Waits until `id` is no longer pending, by its outcome stream.
async fn wait_finished(client: &Client, id: &str) {
    use futures::StreamExt;
    let mut outcomes = client
        .watch_outcomes(
            herald_client::WatchOptions::default()
                .from_oldest()
                .delivery_ids([id]),
        )
        .await
        .expect("watch");
    tokio::time::timeout(herald_tests::PATIENCE, async {
        loop {
            let delivery = client.get_delivery(id).await.expect("get");
            if delivery.state != DeliveryState::Pending {
                return;
            }
            outcomes
                .next()
                .await
                .expect("stream open")
                .expect("outcome");
        }
    })
    .await
    .expect("the delivery finishes");
}
