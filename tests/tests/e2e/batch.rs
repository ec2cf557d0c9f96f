//! EnqueueBatch: the valid deliveries of a batch are stored together and
//! delivered; each item gets its own answer, in order (accepted, or the
//! status Enqueue would have answered, details included); the batch limit
//! is enforced.

use herald_proto::v1::{
    EnqueueBatchRequest, EnqueueBatchResult, EnqueueRequest,
    enqueue_batch_result::Result as BatchResult,
};
use herald_tests::{Backend, Receiver, TestHerald, accepted, on_both_backends};
use prost::Message as _;
use tonic::{Code, Status};
use tonic_types::StatusExt as _;

/// A refused item's status, as a call's status would be; panics if the
/// item was accepted.
fn refusal(result: &EnqueueBatchResult) -> Status {
    match &result.result {
        Some(BatchResult::Error(status)) => Status::with_details(
            Code::from(status.code),
            status.message.clone(),
            status.encode_to_vec().into(),
        ),
        other => panic!("expected a refusal, got {other:?}"),
    }
}

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
        .map(|r| accepted(r).map(|a| (a.id.clone(), a.created)))
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
    let invalid = refusal(&results[2]);
    assert_eq!(invalid.code(), Code::InvalidArgument);
    assert!(invalid.message().starts_with("url: "), "{invalid:?}");
    let details = invalid.get_error_details();
    let violations = &details
        .bad_request()
        .expect("a BadRequest")
        .field_violations;
    assert_eq!(violations[0].field, "url", "{violations:?}");
    assert_eq!(
        details.error_info().expect("an ErrorInfo").reason,
        "INVALID_FIELD"
    );
    let reused = refusal(&results[4]);
    assert_eq!(reused.code(), Code::AlreadyExists);
    assert!(reused.message().contains("key-1"), "{reused:?}");
    assert!(reused.get_error_details().error_info().is_some());
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
