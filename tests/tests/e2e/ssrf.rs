//! The SSRF guard: without an allowlist, literal private addresses are
//! refused at enqueue and a name that resolves to one is dead-lettered
//! unsent; with the allowlist, the same destinations are delivered.

use herald_proto::v1::{AttemptError, DeliveryState, EnqueueRequest};
use herald_tests::{Backend, Receiver, TestHerald, on_both_backends};
use tonic::Code;

on_both_backends!(
    private_destinations_are_refused_without_the_allowlist,
    allowed_ranges_are_delivered
);

fn port(receiver: &Receiver) -> u16 {
    url::Url::parse(&receiver.url("/"))
        .expect("a URL")
        .port()
        .expect("a port")
}

async fn private_destinations_are_refused_without_the_allowlist(backend: Backend) {
    let Some(herald) = TestHerald::start_with(backend, |c| c.allow_target_cidrs.clear()).await
    else {
        return;
    };
    let receiver = Receiver::start().await;
    let port = port(&receiver);
    for url in [
        format!("http://127.0.0.1:{port}/refused"),
        format!("http://[::ffff:127.0.0.1]:{port}/refused"),
        format!("http://[::1]:{port}/refused"),
        "http://169.254.169.254/latest/meta-data/".to_owned(),
        "http://10.0.0.1/".to_owned(),
        "http://192.168.1.1/".to_owned(),
        "http://[fd00::1]/".to_owned(),
    ] {
        let refused = herald
            .client()
            .enqueue(EnqueueRequest {
                url: url.clone(),
                ..Default::default()
            })
            .await
            .expect_err("refused at enqueue");
        assert_eq!(refused.code(), Code::InvalidArgument, "{url}");
        assert!(
            refused.message().starts_with("url: ")
                && refused.message().contains("HERALD_ALLOW_TARGET_CIDRS"),
            "{url}: {}",
            refused.message()
        );
    }

    // A name is judged on what it resolves to, when the attempt connects.
    let id = herald
        .post(format!("http://localhost:{port}/refused"), b"{}")
        .await;
    let delivery = herald.wait_terminal(&id).await;
    assert_eq!(delivery.state, i32::from(DeliveryState::DeadLettered));
    let attempt = &delivery.attempts[0];
    assert_eq!(attempt.error, Some(i32::from(AttemptError::Blocked)));
    assert!(
        attempt.error_message.contains("loopback")
            && attempt.error_message.contains("HERALD_ALLOW_TARGET_CIDRS"),
        "{}",
        attempt.error_message
    );
    assert_eq!(
        delivery.attempts.len(),
        1,
        "a blocked destination is not retried"
    );
    assert!(
        receiver.requests("/refused").is_empty(),
        "nothing reached the receiver"
    );
    herald.stop().await;
}

async fn allowed_ranges_are_delivered(backend: Backend) {
    let Some(herald) = TestHerald::start_with(backend, |c| {
        c.allow_target_cidrs = vec![
            "127.0.0.0/8".parse().expect("a CIDR"),
            "169.254.169.254/32".parse().expect("a CIDR"),
        ];
    })
    .await
    else {
        return;
    };
    let receiver = Receiver::start().await;
    let port = port(&receiver);
    for (path, host) in [
        ("/literal", "127.0.0.1"),
        ("/mapped", "[::ffff:127.0.0.1]"),
        ("/name", "localhost"),
    ] {
        herald
            .post(format!("http://{host}:{port}{path}"), b"{}")
            .await;
        receiver.wait_for(path, 1).await;
    }
    // Allowed on purpose, so accepted (it is never attempted here).
    herald
        .enqueue(EnqueueRequest {
            url: "http://169.254.169.254/latest/meta-data/".to_owned(),
            not_before_time: Some(prost_types::Timestamp {
                seconds: 4_000_000_000,
                nanos: 0,
            }),
            ..Default::default()
        })
        .await;
    herald.stop().await;
}
