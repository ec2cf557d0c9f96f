//! Guessing keys is slow: a flood of wrong keys from one address goes no
//! faster than the configured failure rate allows after its burst (a lower
//! bound on the flood's duration, which a loaded machine only lengthens),
//! each answered with the same UNAUTHENTICATED message, while a right key
//! from another address is served without the guesses' wait; the failures
//! are counted in the metrics.

use std::{
    net::{IpAddr, Ipv4Addr},
    time::{Duration, Instant},
};

use herald_proto::v1::{GetDeliveryRequest, delivery_service_client::DeliveryServiceClient};
use herald_tests::{Backend, TestHerald, create_tenant, on_both_backends, scrape, total};
use tonic::{Code, Request, transport::Channel};

use crate::HERALD;

on_both_backends!(a_flood_of_wrong_keys_is_slowed_and_a_right_key_is_not);

/// Wrong keys guessed.
const GUESSES: u32 = 200;
/// Failures allowed per second once the burst is spent.
const RATE: u32 = 20;
/// Failures allowed at once.
const BURST: u32 = 10;

/// A client of `herald` whose connection comes from `local`.
async fn client_from(herald: &TestHerald, local: Ipv4Addr) -> DeliveryServiceClient<Channel> {
    let channel = Channel::from_shared(format!("http://{}", herald.addr()))
        .expect("a URL")
        .local_address(Some(IpAddr::V4(local)))
        .connect()
        .await
        .expect("connect");
    DeliveryServiceClient::new(channel)
}

/// Looks up a delivery with `key`; returns the answer's code and message
/// and how long it took.
async fn get_with(
    client: &mut DeliveryServiceClient<Channel>,
    key: &str,
) -> (Code, String, Duration) {
    let mut request = Request::new(GetDeliveryRequest {
        id: uuid::Uuid::now_v7().to_string(),
    });
    let value = format!("Bearer {key}").parse().expect("ascii");
    request.metadata_mut().insert("authorization", value);
    let started = Instant::now();
    let status = client
        .get_delivery(request)
        .await
        .expect_err("no such delivery");
    (
        status.code(),
        status.message().to_owned(),
        started.elapsed(),
    )
}

fn median(durations: &[Duration]) -> Duration {
    let mut sorted = durations.to_vec();
    sorted.sort();
    sorted[sorted.len() / 2]
}

async fn a_flood_of_wrong_keys_is_slowed_and_a_right_key_is_not(backend: Backend) {
    let Some(herald) = TestHerald::start_with(backend, |config| {
        config.metrics_addr = Some("127.0.0.1:0".parse().expect("an address"));
        config.auth_failure_rate = format!("{RATE}/s").parse().expect("a rate");
        config.auth_failure_burst = BURST;
    })
    .await
    else {
        return;
    };
    let created = create_tenant(HERALD, herald.database_url(), "alpha");
    let mut attacker = client_from(&herald, Ipv4Addr::new(127, 0, 0, 2)).await;
    let mut owner = client_from(&herald, Ipv4Addr::LOCALHOST).await;

    let mut messages = std::collections::HashSet::new();
    let mut served = Vec::new();
    let flood = Instant::now();
    for guess in 0..GUESSES {
        let (code, message, _) = get_with(&mut attacker, &format!("hk_{guess:012x}_nope")).await;
        assert_eq!(code, Code::Unauthenticated, "guess {guess}: {message}");
        messages.insert(message);
        if guess % 20 == 15 {
            // The owner, from another address, in the middle of the flood.
            let (code, message, duration) = get_with(&mut owner, &created.api_key).await;
            assert_eq!(code, Code::NotFound, "the right key was refused: {message}");
            served.push(duration);
        }
    }
    let took = flood.elapsed();
    assert_eq!(messages.len(), 1, "refusals differ: {messages:?}");
    // Past its burst, each guess waits its turn: the flood cannot be
    // faster than the rate (a little slack for the clock's grain).
    let interval = Duration::from_secs(1) / RATE;
    let least = interval * (GUESSES - BURST) * 9 / 10;
    assert!(
        took >= least,
        "{GUESSES} wrong keys took {took:?}; at {RATE}/s after {BURST} they take at least {least:?}"
    );
    // Served, not refused, while its neighbour was being slowed; and not
    // held like the guesses, each of which waited about an interval.
    assert!(
        median(&served) < interval,
        "the right key waited like the guesses: {served:?}, against {interval:?} a guess"
    );
    let metrics = scrape(herald.metrics_addr().expect("metrics on")).await;
    assert!(
        total(&metrics, "herald_authentication_failures_total") >= f64::from(GUESSES),
        "{metrics}"
    );
    herald.stop().await;
}
