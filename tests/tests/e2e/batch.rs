//! EnqueueBatch: the valid deliveries of a batch are stored together and
//! delivered; each item gets its own answer, in order; the batch limit is
//! enforced.

use herald_proto::v1::{EnqueueBatchRequest, EnqueueRequest};
use herald_tests::{Backend, Receiver, TestHerald, on_both_backends};
use tonic::Code;

on_both_backends!(a_batch_answers_each_item_and_delivers_the_valid_ones);

async fn a_batch_answers_each_item_and_delivers_the_valid_ones(backend: Backend) {
    let Some(herald) = TestHerald::start_with(backend, |c| c.limits.max_batch_size = 6).await
    else {
        return;
    };
    let receiver = Receiver::start().await;
    let item = |path: &str, key: &str| EnqueueRequest {
        url: receiver.url(path),
        body: path.as_bytes().to_vec(),
        idempotency_key: key.to_owned(),
        ..Default::default()
    };
    let deliveries = vec![
        item("/one", "key-1"),
        item("/two", ""),
        EnqueueRequest::default(),
        // The same request under the same key: the same delivery.
        item("/one", "key-1"),
        // Another request under that key: refused.
        item("/three", "key-1"),
        item("/four", ""),
    ];
    let results = herald.enqueue_batch(deliveries).await;
    assert_eq!(results.len(), 6);
    let accepted: Vec<Option<(String, bool)>> = results
        .iter()
        .map(|r| r.accepted.as_ref().map(|a| (a.id.clone(), a.created)))
        .collect();
    let first = accepted[0].clone().expect("accepted");
    assert!(first.1, "created");
    assert_eq!(
        accepted[3],
        Some((first.0.clone(), false)),
        "the same delivery again"
    );
    assert!(accepted[1].as_ref().is_some_and(|a| a.1));
    assert!(accepted[5].as_ref().is_some_and(|a| a.1));
    assert_eq!(results[2].code, Code::InvalidArgument as i32);
    assert!(
        results[2].error.starts_with("url: "),
        "{}",
        results[2].error
    );
    assert_eq!(results[4].code, Code::AlreadyExists as i32);
    assert!(results[4].error.contains("key-1"), "{}", results[4].error);
    for path in ["/one", "/two", "/four"] {
        let seen = receiver.wait_for(path, 1).await;
        assert_eq!(seen[0].body, path.as_bytes());
    }

    for count in [0, 7] {
        let refused = herald
            .client()
            .enqueue_batch(EnqueueBatchRequest {
                deliveries: vec![item("/five", ""); count],
            })
            .await
            .expect_err("refused");
        assert_eq!(refused.code(), Code::InvalidArgument);
        assert!(
            refused.message().contains("HERALD_MAX_BATCH_SIZE"),
            "{}",
            refused.message()
        );
    }
    herald.stop().await;
}
