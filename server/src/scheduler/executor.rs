//! Executor: make one attempt and decide what follows. Consumes a
//! [`ClaimedDelivery`], produces a [`Completion`]; never touches the
//! database (the completer persists), so a slow database cannot stall
//! sending and a slow receiver cannot hold a database connection.

use std::time::UNIX_EPOCH;

use super::retry::RetryPolicy;
use crate::{
    store::records::{AttemptRecord, ClaimedDelivery, Completion},
    transport::{
        AttemptReport, HttpSender, OutboundRequest,
        classify::{classify, describe},
    },
};

/// Sends `delivery` once and returns the attempt with its decision.
pub async fn execute(
    sender: &HttpSender,
    policy: &RetryPolicy,
    delivery: ClaimedDelivery,
) -> Completion {
    let request = OutboundRequest {
        delivery_id: delivery.id,
        attempt_number: delivery.attempt_number,
        http: delivery.request,
    };
    let report = sender.send(&request).await;
    let verdict = classify(&report.result);
    let decision = policy.decide(&verdict, delivery.attempt_number, delivery.max_attempts);
    tracing::debug!(
        delivery_id = %delivery.id,
        attempt = delivery.attempt_number,
        ?decision,
        "attempt finished"
    );
    Completion {
        delivery_id: delivery.id,
        tenant_id: delivery.tenant_id,
        lease_token: delivery.lease_token,
        attempt: attempt_record(delivery.attempt_number, report),
        decision,
    }
}

fn attempt_record(number: u32, report: AttemptReport) -> AttemptRecord {
    let started_at_ms = report
        .started_at
        .duration_since(UNIX_EPOCH)
        .map_or(0, |since| {
            i64::try_from(since.as_millis()).unwrap_or(i64::MAX)
        });
    let duration_us = i64::try_from(report.duration.as_micros()).unwrap_or(i64::MAX);
    let error_message = describe(&report.result);
    match report.result {
        Ok(response) => AttemptRecord {
            number,
            started_at_ms,
            duration_us,
            status_code: Some(response.status.as_u16()),
            error_kind: None,
            error_message,
            response_excerpt: response.excerpt,
        },
        Err(error) => AttemptRecord {
            number,
            started_at_ms,
            duration_us,
            status_code: None,
            error_kind: Some(error.kind()),
            error_message,
            response_excerpt: bytes::Bytes::new(),
        },
    }
}
