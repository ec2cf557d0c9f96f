//! Executor: make one attempt and decide what follows. Consumes a
//! [`ClaimedDelivery`], produces a [`Completion`]; the completer persists
//! it, so a slow database cannot stall sending and a slow receiver cannot
//! hold a database connection. The one statement an executor runs is the
//! hand-over below, between attempts, never during one.
//!
//! [`Executors`] runs each attempt as a task of its own, started by the
//! claimer, and keeps track of them for shutdown. When an attempt succeeds
//! at a destination without a rate limit, and permits are not scarce, its
//! task takes the destination's next due delivery at once
//! ([`HandOvers`]) instead of handing its slot back for a claim.
//!
//! Two checks come before sending: a delivery past its deadline is
//! dead-lettered unsent, and so is one whose attempts ran past its budget.
//! A resend is exempt from both: it makes again an attempt that was
//! already allowed, whose result was lost (invariant I4).
//!
//! Each attempt is signed with its own signer's keys (its tenant's, or its
//! endpoint's: one destination may serve several endpoints), read before
//! it starts (see [`super::keys`]). A delivery whose endpoint was deleted meanwhile is
//! dead-lettered unsent; one whose secrets cannot be read now is tried
//! again a moment later, its attempt uncounted.

use std::{
    collections::HashMap,
    sync::{Arc, Mutex, MutexGuard, PoisonError},
    time::{Duration, SystemTime},
};

use tokio::{
    sync::{OwnedSemaphorePermit, mpsc},
    task::JoinSet,
};
use tracing::Instrument;

use super::{
    completer::Work,
    hand_over::{Ahead, HandOvers},
    in_flight::Slot,
    keys::HeldKeys,
    retry::RetryPolicy,
};
use crate::{
    domain::{Decision, unix_ms},
    metrics::{AttemptResult, Metrics},
    store::records::{AttemptRecord, ClaimedDelivery, Completion, DestinationRef, Lease},
    tenants::{Keyring, SigningKeys},
    transport::{
        AttemptReport, HttpSender, OutboundRequest, TransportError,
        classify::{classify, describe},
    },
};

/// How long a destination holds off after a 429 that did not say how long.
const DEFAULT_SLOW_DOWN: Duration = Duration::from_secs(1);

/// How soon a delivery whose signing secrets could not be read is tried
/// again (uncounted).
const UNSIGNED_RETRY: Duration = Duration::from_secs(1);

/// The attempts in flight on this replica, each a task that holds its
/// global permit and destination slot until its completion is handed to
/// the completer; cheap to clone.
#[derive(Clone)]
pub(super) struct Executors {
    shared: Arc<Shared>,
}

struct Shared {
    sender: HttpSender,
    keyring: Keyring,
    policy: RetryPolicy,
    metrics: Metrics,
    completions: mpsc::Sender<Work>,
    hand_overs: Arc<HandOvers>,
    running: Mutex<Running>,
}

/// The attempt tasks, and the leases they hold so that shutdown can give
/// back what it aborts.
#[derive(Default)]
struct Running {
    tasks: JoinSet<()>,
    leases: HashMap<Lease, DestinationRef>,
    /// Shutdown has begun: no more attempts start.
    draining: bool,
}

/// Shutdown has begun; the attempt was not started.
#[derive(Debug)]
pub(super) struct Draining;

impl Executors {
    /// Attempts through `sender`, signed with `keyring`'s keys, decided by
    /// `policy`, their completions sent to `completions`.
    pub(super) fn new(
        sender: HttpSender,
        keyring: Keyring,
        policy: RetryPolicy,
        metrics: Metrics,
        completions: mpsc::Sender<Work>,
        hand_overs: Arc<HandOvers>,
    ) -> Self {
        let shared = Shared {
            sender,
            keyring,
            policy,
            metrics,
            completions,
            hand_overs,
            running: Mutex::default(),
        };
        Self {
            shared: Arc::new(shared),
        }
    }

    /// Starts the attempt on `delivery`, which holds `permit` and `slot`
    /// until its completion is handed to the completer (or passes them to
    /// the destination's next delivery); refused once [`Executors::drain`]
    /// has begun.
    pub(super) fn start(
        &self,
        delivery: ClaimedDelivery,
        keys: HeldKeys,
        permit: OwnedSemaphorePermit,
        slot: Slot,
    ) -> Result<(), Draining> {
        let lease = delivery.lease();
        let destination = delivery.destination_ref();
        let shared = Arc::clone(&self.shared);
        let attempts = async move {
            let mut delivery = delivery;
            // The first attempt's keys were read with its claim; those of a
            // delivery the slot passes to, as it was leased.
            let mut keys = keys;
            let mut slot = slot;
            // Whether the slot came to this delivery from a success at its
            // destination: only then is the next one leased ahead.
            let mut chained = false;
            loop {
                let span = attempt_span(&delivery);
                let lease = delivery.lease();
                let may_hand_over = delivery.may_hand_over;
                let lease_ends = delivery.lease_ends;
                let threshold = delivery.failure_threshold;
                let attempt = shared.attempt(delivery, &keys).instrument(span);
                let (completion, ahead) = if may_hand_over && chained {
                    tokio::join!(attempt, shared.lease_ahead(&slot, threshold, &keys))
                } else {
                    (attempt.await, None)
                };
                let succeeded = completion.decision == Decision::Succeeded;
                // The slot passes on before its attempt counts as finished
                // and before the result goes to be written: until the next
                // delivery's lease is committed, this one counts as in
                // flight, for this replica's claims and in the database for
                // other replicas', so no claim sees the destination's count
                // dip below what is in flight and takes the difference.
                // A chain goes on through an attempt that failed (the next
                // is another delivery, which claims would send all the same
                // while the destination's circuit is closed, and ending the
                // chain would leave its slot empty while what the others
                // leased ahead keeps the destination looking full), but not
                // past a receiver that asked to slow down.
                let slowed = completion.slow_down.is_some();
                let (next, void) = match ahead {
                    Some((ahead, keys)) if !slowed && shared.hand_overs.may_start(&ahead) => {
                        (Some((ahead.delivery, keys)), None)
                    }
                    Some((ahead, _)) => (None, Some(ahead.delivery)),
                    None if succeeded && may_hand_over && !chained => {
                        (shared.next_for(&slot, threshold, &keys).await, None)
                    }
                    None => (None, None),
                };
                slot.recording();
                // The completer outlives every executor, so this only fails if
                // it panicked; the lease then expires and the attempt is
                // retried.
                let handed = shared
                    .completions
                    .send(Work::Attempt {
                        completion: Box::new(completion),
                        lease_ends,
                    })
                    .await
                    .is_ok();
                // Whether the next delivery goes ahead: not once shutdown has
                // begun, nor without a completer (it is given back at once,
                // its attempt uncounted, as is one leased ahead that may not
                // start).
                let (next, unstarted) = {
                    let mut running = lock(&shared.running);
                    running.leases.remove(&lease);
                    let mut unstarted = Vec::new();
                    if let Some(void) = void {
                        running.leases.remove(&void.lease());
                        unstarted.push((void.lease(), void.destination_ref()));
                    }
                    let next = match next {
                        Some(next) if handed && !running.draining => {
                            running
                                .leases
                                .insert(next.0.lease(), next.0.destination_ref());
                            Some(next)
                        }
                        Some((next, _)) => {
                            running.leases.remove(&next.lease());
                            unstarted.push((next.lease(), next.destination_ref()));
                            None
                        }
                        None => None,
                    };
                    (next, unstarted)
                };
                if !unstarted.is_empty()
                    && let Err(error) = shared.hand_overs.store.release(&unstarted, true).await
                {
                    tracing::warn!(%error, "could not give back deliveries; their leases will expire");
                }
                if let Some((next, next_keys)) = next {
                    slot.pass_to(next.lease());
                    delivery = next;
                    keys = next_keys;
                    chained = true;
                    continue;
                }
                slot.finished();
                break;
            }
            drop(permit);
        };
        let mut running = lock(&self.shared.running);
        if running.draining {
            return Err(Draining);
        }
        running.leases.insert(lease, destination);
        // Finished tasks are collected as new ones come, so the set holds
        // about what is in flight.
        while let Some(result) = running.tasks.try_join_next() {
            if let Err(error) = result {
                tracing::error!(%error, "an attempt task failed");
            }
        }
        running.tasks.spawn(attempts);
        Ok(())
    }

    /// Stops starting attempts and gives those in flight `grace` to
    /// finish; aborts the rest and returns their leases.
    pub(super) async fn drain(&self, grace: Duration) -> Vec<(Lease, DestinationRef)> {
        let mut tasks = {
            let mut running = lock(&self.shared.running);
            running.draining = true;
            std::mem::take(&mut running.tasks)
        };
        let count = tasks.len();
        if count > 0 {
            tracing::info!(count, "waiting for in-flight attempts to finish");
        }
        let finished =
            tokio::time::timeout(grace, async { while tasks.join_next().await.is_some() {} }).await;
        if finished.is_ok() {
            return Vec::new();
        }
        tasks.abort_all();
        while tasks.join_next().await.is_some() {}
        lock(&self.shared.running).leases.drain().collect()
    }
}

impl Shared {
    /// One attempt on `delivery`, signed with its signer's `keys`,
    /// counted in flight while it runs.
    async fn attempt(&self, delivery: ClaimedDelivery, keys: &HeldKeys) -> Completion {
        let _in_flight = self.metrics.in_flight();
        let signing = match &keys.read {
            Ok(Some(keys)) => Arc::clone(keys),
            Ok(None) => {
                return unsent(
                    delivery,
                    Decision::DeadLetter,
                    "its endpoint was deleted".into(),
                );
            }
            Err(error) => {
                tracing::error!(delivery_id = %delivery.id, %error, "reading signing secrets failed; the attempt waits");
                return unsent(
                    delivery,
                    Decision::Retry {
                        delay: UNSIGNED_RETRY,
                    },
                    format!("its signing secrets could not be read ({error}); trying again"),
                );
            }
        };
        execute(&self.sender, &self.policy, &self.metrics, delivery, signing).await
    }

    /// The destination's next due delivery for `slot`, whose attempt just
    /// succeeded, with its signer's keys (`held`, while current), unless
    /// shutdown has begun (see [`HandOvers`]).
    async fn next_for(
        &self,
        slot: &Slot,
        failure_threshold: u32,
        held: &HeldKeys,
    ) -> Option<(ClaimedDelivery, HeldKeys)> {
        if lock(&self.running).draining {
            return None;
        }
        let next = self
            .hand_overs
            .next_for(slot.destination(), failure_threshold)
            .await?;
        let keys = held.for_next(&self.keyring, &next).await;
        Some((next, keys))
    }

    /// The destination's next due delivery, leased for `slot` while its
    /// attempt is in flight, with its signer's keys (`held`, while
    /// current), unless shutdown has begun; kept among the leases shutdown
    /// gives back.
    async fn lease_ahead(
        &self,
        slot: &Slot,
        failure_threshold: u32,
        held: &HeldKeys,
    ) -> Option<(Ahead, HeldKeys)> {
        if lock(&self.running).draining {
            return None;
        }
        let ahead = self
            .hand_overs
            .lease_ahead(slot.destination(), failure_threshold)
            .await?;
        lock(&self.running)
            .leases
            .insert(ahead.delivery.lease(), ahead.delivery.destination_ref());
        let keys = held.for_next(&self.keyring, &ahead.delivery).await;
        Some((ahead, keys))
    }
}

/// The span of one attempt.
fn attempt_span(delivery: &ClaimedDelivery) -> tracing::Span {
    tracing::info_span!(
        "attempt",
        delivery_id = %delivery.id,
        tenant = %delivery.tenant_id,
        attempt = delivery.attempt_number,
    )
}

fn lock(running: &Mutex<Running>) -> MutexGuard<'_, Running> {
    // A panic while holding this lock leaves a set of tasks and leases that
    // is still consistent enough to shut down with.
    running.lock().unwrap_or_else(PoisonError::into_inner)
}

/// Sends `delivery` once (unless it may not be sent) and returns the
/// result with its decision.
pub async fn execute(
    sender: &HttpSender,
    policy: &RetryPolicy,
    metrics: &Metrics,
    delivery: ClaimedDelivery,
    signing: Arc<SigningKeys>,
) -> Completion {
    let now_ms = unix_ms(SystemTime::now());
    let attempt_number = delivery.attempt_number;
    if !delivery.resend {
        if delivery
            .deadline_at_ms
            .is_some_and(|deadline| now_ms >= deadline)
        {
            return unsent(
                delivery,
                Decision::DeadLetter,
                format!("the deadline passed before attempt {attempt_number}"),
            );
        }
        if attempt_number > delivery.max_attempts {
            let reason = format!("all {} attempts were used", delivery.max_attempts);
            return unsent(delivery, Decision::DeadLetter, reason);
        }
    }
    let until_deadline = delivery
        .deadline_at_ms
        .map(|deadline| Duration::from_millis(u64::try_from(deadline - now_ms).unwrap_or(0)));
    let request = OutboundRequest {
        delivery_id: delivery.id,
        attempt_number,
        http: delivery.request,
        trace: delivery.trace,
        signing,
        event_type: delivery.event_type,
    };
    let report = sender.send(&request).await;
    let verdict = classify(&report.result);
    let slow_down = slow_down(&report, policy.retry_after_cap);
    let error = report.result.as_ref().err().map(TransportError::kind);
    metrics.attempted(
        AttemptResult::of(&verdict, error),
        report.duration,
        (attempt_number == 1 && !delivery.resend).then_some(delivery.created_at_ms),
    );
    let decision = policy.decide(
        &verdict,
        attempt_number,
        delivery.max_attempts,
        until_deadline,
    );
    tracing::debug!(delivery_id = %delivery.id, attempt = attempt_number, ?decision, "attempt finished");
    Completion {
        delivery_id: delivery.id,
        tenant_id: delivery.tenant_id,
        lease_token: delivery.lease_token,
        attempt_number,
        destination: delivery.destination,
        probe: delivery.probe,
        failure_threshold: delivery.failure_threshold,
        attempt: Some(attempt_record(attempt_number, report)),
        reason: None,
        decision,
        slow_down,
    }
}

/// What Herald decided about `delivery` without sending it, and why; the
/// claim's count is given back.
fn unsent(delivery: ClaimedDelivery, decision: Decision, reason: String) -> Completion {
    Completion {
        delivery_id: delivery.id,
        tenant_id: delivery.tenant_id,
        lease_token: delivery.lease_token,
        attempt_number: delivery.attempt_number,
        destination: delivery.destination,
        probe: delivery.probe,
        failure_threshold: delivery.failure_threshold,
        attempt: None,
        reason: Some(reason),
        decision,
        slow_down: None,
    }
}

/// How long the whole destination should hold off, if the receiver asked:
/// a 429 (for its `Retry-After`, or a moment without one), or any
/// retryable status with a `Retry-After`; at most `cap`.
fn slow_down(report: &AttemptReport, cap: Duration) -> Option<Duration> {
    let response = report.result.as_ref().ok()?;
    let asked = match (response.status.as_u16(), response.retry_after) {
        (429, asked) => asked.unwrap_or(DEFAULT_SLOW_DOWN),
        (408 | 425 | 500..=599, Some(asked)) => asked,
        _ => return None,
    };
    Some(asked.min(cap))
}

fn attempt_record(number: u32, report: AttemptReport) -> AttemptRecord {
    let started_at_ms = unix_ms(report.started_at);
    let duration_us = i64::try_from(report.duration.as_micros()).unwrap_or(i64::MAX);
    let error_message = describe(&report.result);
    let (status_code, error_kind, response_excerpt) = match report.result {
        Ok(response) => (Some(response.status.as_u16()), None, response.excerpt),
        Err(error) => (None, Some(error.kind()), bytes::Bytes::new()),
    };
    AttemptRecord {
        number,
        started_at_ms,
        duration_us,
        status_code,
        error_kind,
        error_message,
        response_excerpt,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::transport::{TargetPolicy, TransportConfig};

    const POLICY: RetryPolicy = RetryPolicy {
        min_backoff: Duration::from_millis(1),
        max_backoff: Duration::from_millis(2),
        retry_after_cap: Duration::from_secs(1),
    };

    /// A claim whose URL nobody listens on: if it were sent, the attempt
    /// would be a connection error, not the unsent dead letter expected.
    fn claimed(attempt_number: u32, deadline_at_ms: Option<i64>) -> ClaimedDelivery {
        ClaimedDelivery {
            attempt_number,
            deadline_at_ms,
            ..ClaimedDelivery::unsendable("default")
        }
    }

    fn sender() -> HttpSender {
        HttpSender::new(
            TransportConfig {
                request_timeout: Duration::from_secs(1),
                response_excerpt_bytes: 16,
            },
            TargetPolicy::new(vec!["127.0.0.0/8".parse().unwrap()]),
        )
        .unwrap()
    }

    #[tokio::test]
    async fn nothing_is_sent_beyond_the_budget() {
        let refused = execute(
            &sender(),
            &POLICY,
            &Metrics::default(),
            claimed(4, None),
            Arc::default(),
        )
        .await;
        assert!(refused.attempt.is_none(), "nothing sent beyond the budget");
        assert_eq!(refused.decision, Decision::DeadLetter);
        assert!(refused.reason.unwrap().contains("all 3 attempts were used"));
    }

    #[tokio::test]
    async fn a_resend_is_sent_past_its_deadline() {
        // Attempt 1's result was lost and the deadline passed meanwhile:
        // the attempt is made again, not dead-lettered unsent.
        let resend = ClaimedDelivery {
            resend: true,
            ..claimed(1, Some(1))
        };
        let completion = execute(
            &sender(),
            &POLICY,
            &Metrics::default(),
            resend,
            Arc::default(),
        )
        .await;
        assert!(
            completion.attempt.is_some(),
            "the lost attempt is made again"
        );
        assert!(completion.reason.is_none(), "{:?}", completion.reason);
    }

    #[tokio::test]
    async fn a_passed_deadline_dead_letters_unsent() {
        let completion = execute(
            &sender(),
            &POLICY,
            &Metrics::default(),
            claimed(1, Some(1)),
            Arc::default(),
        )
        .await;
        assert!(completion.attempt.is_none());
        assert_eq!(completion.decision, Decision::DeadLetter);
        assert!(completion.error_message().unwrap().contains("deadline"));
    }
}
