//! The values that cross the store's boundary: what goes in (a new
//! delivery, a completion) and what comes out (deliveries, attempts,
//! outcomes, claimed work).

use std::time::Duration;

use bytes::Bytes;
use uuid::Uuid;

use crate::{
    destinations::{
        breaker::Circuit,
        policy::{Policy, PolicyOverrides},
    },
    domain::{
        AttemptErrorKind, Decision, DeliveryState, Destination, DestinationStatus, HttpRequest,
        OutcomeKind, TraceContext,
    },
};

/// A validated delivery to insert.
#[derive(Debug, Clone)]
pub struct NewDelivery {
    /// Owning tenant.
    pub tenant_id: String,
    /// The validated request to send.
    pub request: HttpRequest,
    /// Where it goes (scheme, host, port).
    pub destination: Destination,
    /// Caller's idempotency key, if any.
    pub idempotency_key: Option<String>,
    /// Most attempts to make (per round: a redrive grants as many again).
    pub max_attempts: u32,
    /// The caller chose `max_attempts`; otherwise it is the server's
    /// default, which the idempotency hash leaves out, so replicas
    /// configured with different defaults agree on what a request is.
    pub max_attempts_chosen: bool,
    /// Earliest first attempt, Unix ms; now when `None`.
    pub not_before_ms: Option<i64>,
    /// No attempt starts after this, Unix ms.
    pub deadline_ms: Option<i64>,
    /// The caller's trace context, forwarded on every attempt. Not part of
    /// the idempotency hash: a retried enqueue comes with a new span.
    pub trace: Option<TraceContext>,
    /// For a delivery made by publishing an event: the event, its type and
    /// the endpoint.
    pub event: Option<EventOrigin>,
}

impl NewDelivery {
    /// The destination it goes to, within its tenant.
    pub fn destination_ref(&self) -> DestinationRef {
        DestinationRef {
            tenant_id: self.tenant_id.clone(),
            destination: self.destination.key.clone(),
        }
    }
}

/// One destination: a receiver (`scheme://host:port`) within a tenant.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct DestinationRef {
    /// Owning tenant.
    pub tenant_id: String,
    /// `scheme://host:port`.
    pub destination: String,
}

/// A destination as an operator sees it: its row, what is in flight
/// there, and its recent attempts.
#[derive(Debug, Clone, PartialEq)]
pub struct DestinationRecord {
    /// `scheme://host:port`.
    pub destination: String,
    /// Its URL host.
    pub host: String,
    /// Active, paused or disabled.
    pub status: DestinationStatus,
    /// Why it is paused or disabled.
    pub state_reason: Option<String>,
    /// When its state last changed, Unix ms.
    pub state_changed_at_ms: Option<i64>,
    /// The policy in force: its overrides over the defaults.
    pub policy: Policy,
    /// What it sets for itself.
    pub overrides: PolicyOverrides,
    /// Its circuit as stored (its phase depends on `now_ms`).
    pub circuit: Circuit,
    /// Failures in a row, as last written by a replica.
    pub consecutive_failures: u32,
    /// A receiver's request to hold off, Unix ms (perhaps past).
    pub hold_until_ms: Option<i64>,
    /// The latest success, Unix ms.
    pub last_success_at_ms: Option<i64>,
    /// The latest failure, Unix ms.
    pub last_failure_at_ms: Option<i64>,
    /// Failing without a success since, Unix ms.
    pub failing_since_ms: Option<i64>,
    /// Attempts in flight there (unexpired leases), across every replica.
    pub in_flight: u32,
    /// Its attempts over the recent window.
    pub recent: RecentAttempts,
    /// When its row was made, Unix ms.
    pub created_at_ms: i64,
    /// When its row last changed, Unix ms.
    pub updated_at_ms: i64,
    /// The database's now when it was read, Unix ms.
    pub now_ms: i64,
}

/// A destination's attempts over the recent window, as the replicas wrote
/// them.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct RecentAttempts {
    /// How far back they reach.
    pub window: Duration,
    /// Attempts sent.
    pub attempts: u64,
    /// Of those, 2xx.
    pub successes: u64,
    /// Their durations added up, µs.
    pub duration_us: u64,
}

/// Result of an enqueue.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Enqueued {
    /// The delivery's id.
    pub id: Uuid,
    /// False when an earlier enqueue with the same idempotency key made it.
    pub created: bool,
}

/// A delivery as stored.
#[derive(Debug, Clone)]
pub struct DeliveryRecord {
    /// Delivery id.
    pub id: Uuid,
    /// The request sent on every attempt.
    pub request: HttpRequest,
    /// Idempotency key, if any.
    pub idempotency_key: Option<String>,
    /// Current state.
    pub state: DeliveryState,
    /// Attempts claimed so far.
    pub attempt_count: u32,
    /// Most attempts to make.
    pub max_attempts: u32,
    /// When the next attempt (or lease expiry) is due; `None` once terminal.
    pub next_attempt_at_ms: Option<i64>,
    /// Status of the last recorded attempt, if it got a response.
    pub last_status_code: Option<u16>,
    /// What went wrong on the last recorded attempt.
    pub last_error: Option<String>,
    /// When it was accepted.
    pub created_at_ms: i64,
    /// When it last changed.
    pub updated_at_ms: i64,
    /// When it became terminal.
    pub finished_at_ms: Option<i64>,
    /// No attempt starts after this, Unix ms.
    pub deadline_at_ms: Option<i64>,
    /// For a delivery made by publishing an event: the event, its type and
    /// the endpoint.
    pub event: Option<EventOrigin>,
    /// Recorded attempts, oldest first (empty in listings).
    pub attempts: Vec<AttemptRecord>,
}

/// Where a delivery made by publishing an event came from.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct EventOrigin {
    /// The event.
    pub event_id: Uuid,
    /// Its type.
    pub event_type: String,
    /// The endpoint it was delivered to.
    pub endpoint_id: Uuid,
}

/// One recorded send.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AttemptRecord {
    /// 1-based attempt number.
    pub number: u32,
    /// When the request started, Unix ms.
    pub started_at_ms: i64,
    /// How long it took, in microseconds.
    pub duration_us: i64,
    /// Response status, if there was a response.
    pub status_code: Option<u16>,
    /// Why there was no response, if there was none.
    pub error_kind: Option<AttemptErrorKind>,
    /// What went wrong, for people.
    pub error_message: Option<String>,
    /// First bytes of the response body.
    pub response_excerpt: Bytes,
}

/// One recorded outcome in the feed: an attempt's result, a
/// cancellation, or a destination's event (circuit opened or closed,
/// paused, resumed, disabled, enabled).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct OutcomeRecord {
    /// Position in the feed.
    pub sequence: i64,
    /// Owning tenant.
    pub tenant_id: String,
    /// The delivery; `None` for a destination's event.
    pub delivery_id: Option<Uuid>,
    /// The destination's URL host.
    pub host: String,
    /// The destination (`scheme://host:port`); `None` for outcomes
    /// recorded before destinations were stored.
    pub destination: Option<String>,
    /// What the attempt led to.
    pub kind: OutcomeKind,
    /// Which attempt.
    pub attempt_number: u32,
    /// Response status, if any.
    pub status_code: Option<u16>,
    /// Why there was no response, if none.
    pub error_kind: Option<AttemptErrorKind>,
    /// What went wrong, for people.
    pub error_message: Option<String>,
    /// For retries: when the next attempt is due, Unix ms.
    pub next_attempt_at_ms: Option<i64>,
    /// When it was recorded, Unix ms.
    pub created_at_ms: i64,
    /// The endpoint of a delivery made by publishing an event; filled in
    /// from the delivery's row when the outcome is recorded.
    pub endpoint_id: Option<Uuid>,
    /// The event type of such a delivery, likewise.
    pub event_type: Option<String>,
}

/// A delivery leased to this replica for one attempt. Every write about it
/// is fenced by `lease_token`: if the lease expired and another claimer
/// took the row, the write changes nothing.
#[derive(Debug, Clone)]
pub struct ClaimedDelivery {
    /// Delivery id.
    pub id: Uuid,
    /// Owning tenant.
    pub tenant_id: String,
    /// The request to send.
    pub request: HttpRequest,
    /// `scheme://host:port`, for the per-destination in-flight limit.
    pub destination: String,
    /// Claimed while the destination's circuit was half-open: its result
    /// closes or reopens the circuit.
    pub probe: bool,
    /// The destination's consecutive failures that open its circuit.
    pub failure_threshold: u32,
    /// The destination has no rate limit, so once this attempt succeeds its
    /// slot may pass straight to the destination's next due delivery
    /// ([`Store::hand_over`](crate::store::Store::hand_over)).
    pub may_hand_over: bool,
    /// This attempt's number (the claim counted it, unless it is a
    /// resend).
    pub attempt_number: u32,
    /// The previous claim's attempt was made but its result never
    /// recorded (its lease ran out first): this one makes it again under
    /// the same number, whatever the deadline (invariant I4).
    pub resend: bool,
    /// Most attempts to make.
    pub max_attempts: u32,
    /// No attempt starts after this, Unix ms.
    pub deadline_at_ms: Option<i64>,
    /// The lease this attempt holds.
    pub lease_token: Uuid,
    /// The lease holds at least until then, by this replica's clock: the
    /// claim began before the database stamped the lease's end.
    pub lease_ends: tokio::time::Instant,
    /// The caller's trace context, sent along.
    pub trace: Option<TraceContext>,
    /// When the delivery was enqueued, Unix ms.
    pub created_at_ms: i64,
    /// The endpoint it was published to, whose secrets sign it; `None`
    /// for a delivery enqueued with a URL (its tenant's secrets sign it).
    pub endpoint_id: Option<Uuid>,
    /// The type of the event it carries, sent as `herald-event-type`.
    pub event_type: Option<String>,
}

impl ClaimedDelivery {
    /// A claim of `tenant_id`'s first attempt at a URL nobody listens on
    /// (if it were sent, the attempt would be a connection error), for
    /// tests of what happens around an attempt.
    #[cfg(test)]
    pub fn unsendable(tenant_id: &str) -> Self {
        Self {
            id: Uuid::now_v7(),
            tenant_id: tenant_id.into(),
            request: HttpRequest {
                method: crate::domain::HttpMethod::Post,
                url: "http://127.0.0.1:9/unused".into(),
                headers: Vec::new(),
                content_type: None,
                body: Bytes::new(),
            },
            destination: "http://127.0.0.1:9".into(),
            probe: false,
            failure_threshold: 10,
            may_hand_over: false,
            attempt_number: 1,
            resend: false,
            max_attempts: 3,
            deadline_at_ms: None,
            lease_token: Uuid::new_v4(),
            lease_ends: tokio::time::Instant::now(),
            trace: None,
            created_at_ms: 0,
            endpoint_id: None,
            event_type: None,
        }
    }

    /// The lease this claim holds, to release or fence by.
    pub fn lease(&self) -> Lease {
        Lease {
            delivery_id: self.id,
            token: self.lease_token,
        }
    }

    /// The destination it goes to, within its tenant.
    pub fn destination_ref(&self) -> DestinationRef {
        DestinationRef {
            tenant_id: self.tenant_id.clone(),
            destination: self.destination.clone(),
        }
    }
}

/// One delivery's lease: the row and the token that fences it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct Lease {
    /// Delivery id.
    pub delivery_id: Uuid,
    /// The claim's token.
    pub token: Uuid,
}

/// The result of one attempt, ready to persist.
#[derive(Debug, Clone)]
pub struct Completion {
    /// Delivery id.
    pub delivery_id: Uuid,
    /// Owning tenant (for the outcome row).
    pub tenant_id: String,
    /// The lease the attempt was made under.
    pub lease_token: Uuid,
    /// The claimed attempt's number.
    pub attempt_number: u32,
    /// Where it was sent (`scheme://host:port`).
    pub destination: String,
    /// The attempt was the probe of a half-open circuit.
    pub probe: bool,
    /// The destination's consecutive failures that open its circuit.
    pub failure_threshold: u32,
    /// The attempt as it happened; `None` when Herald decided without
    /// sending (deadline passed, attempt budget used up), in which case the
    /// claim's count is given back.
    pub attempt: Option<AttemptRecord>,
    /// Why Herald decided without sending; `None` when it sent.
    pub reason: Option<String>,
    /// What happens to the delivery next.
    pub decision: Decision,
    /// The receiver asked to slow down (a 429, or a `Retry-After`): its
    /// whole destination holds off this long.
    pub slow_down: Option<Duration>,
}

impl Completion {
    /// What went wrong, for people: the attempt's error or the reason.
    pub fn error_message(&self) -> Option<&str> {
        self.attempt
            .as_ref()
            .and_then(|attempt| attempt.error_message.as_deref())
            .or(self.reason.as_deref())
    }
}

/// What a cancel did.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum CancelResult {
    /// Cancelled; this outcome was recorded.
    Cancelled(OutcomeRecord),
    /// No such delivery for the tenant.
    NotFound,
    /// The delivery had already finished in this state.
    Finished(DeliveryState),
}

/// Which dead letters a redrive selects.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum RedriveSelection {
    /// Exactly these.
    Ids(Vec<Uuid>),
    /// Those matching every filter given.
    Filter {
        /// Dead-lettered at or after this, Unix ms.
        after_ms: Option<i64>,
        /// Dead-lettered before this, Unix ms.
        before_ms: Option<i64>,
        /// URL host.
        host: Option<String>,
    },
}

/// What a redrive did.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct RedriveReport {
    /// How many dead letters were redriven (with a dry run: would be).
    pub count: u64,
    /// The named ids that were not redriven, in the order they were named.
    pub not_redriven: Vec<(Uuid, NotRedriven)>,
}

/// Why a delivery named in a redrive was not redriven.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum NotRedriven {
    /// The tenant has no delivery with this id.
    NotFound,
    /// It is in this state, not dead-lettered.
    NotDeadLettered(DeliveryState),
}

/// How much of each delivery a listing reads.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub enum DeliveryView {
    /// Every column but the request's body and headers, which are left
    /// empty (and not read from the database).
    #[default]
    Basic,
    /// Every column.
    Full,
}

/// Filters of a delivery listing.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct DeliveryFilter {
    /// Only this state.
    pub state: Option<DeliveryState>,
    /// Only this URL host.
    pub host: Option<String>,
    /// Created at or after this, Unix ms.
    pub created_after_ms: Option<i64>,
    /// Created before this, Unix ms.
    pub created_before_ms: Option<i64>,
    /// Only the delivery enqueued with this idempotency key.
    pub idempotency_key: Option<String>,
}

/// What persisting one completion did.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum CompletionResult {
    /// Written; this outcome was recorded.
    Recorded(OutcomeRecord),
    /// The lease was no longer ours (expired and re-claimed, or the row
    /// changed): nothing was written.
    LeaseLost,
}

/// Which outcomes a watcher wants (every field given must match).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct OutcomeFilter {
    /// Only these deliveries (any when empty).
    pub delivery_ids: Vec<Uuid>,
    /// Only these kinds (any when empty).
    pub kinds: Vec<OutcomeKind>,
    /// Only deliveries to this URL host.
    pub host: Option<String>,
    /// Only deliveries to this endpoint.
    pub endpoint_id: Option<Uuid>,
    /// Only deliveries of events of this type.
    pub event_type: Option<String>,
}

impl OutcomeFilter {
    /// Whether `outcome` passes the filter. A destination's event passes
    /// no filter by delivery.
    pub fn matches(&self, outcome: &OutcomeRecord) -> bool {
        (self.delivery_ids.is_empty()
            || outcome
                .delivery_id
                .is_some_and(|id| self.delivery_ids.contains(&id)))
            && (self.kinds.is_empty() || self.kinds.contains(&outcome.kind))
            && self.host.as_ref().is_none_or(|host| *host == outcome.host)
            && self
                .endpoint_id
                .is_none_or(|id| outcome.endpoint_id == Some(id))
            && self
                .event_type
                .as_ref()
                .is_none_or(|name| outcome.event_type.as_ref() == Some(name))
    }
}
