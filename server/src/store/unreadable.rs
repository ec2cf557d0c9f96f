//! Leased rows that cannot be read: dead-lettered, not left to expire.
//!
//! A claim or hand-over leases its rows and reads them in the statement
//! that leases them, so a row this build cannot read (a value written by
//! hand, or by a newer build) is already leased with an attempt counted
//! when its decoding fails. Failing the whole claim for it would leave
//! every row of the claim waiting out its lease, and the bad row would be
//! claimed again at every expiry, forever. Instead each row is read on
//! its own: those that read go on to be sent, and one that does not is
//! dead-lettered at once, unsent (its attempt given back), with an
//! outcome on the feed and an error that says why, like any dead letter.

use sea_orm::QueryResult;
use uuid::Uuid;

use super::{
    Store,
    claim::claimed,
    complete::{CircuitChange, DestinationChange},
    records::{ClaimedDelivery, Completion, DestinationRef},
};
use crate::{destinations::policy::Policy, domain::Decision};

/// A leased row that could not be read, with what is needed to end it.
#[derive(Debug)]
pub(super) struct Unreadable {
    /// The delivery.
    pub id: Uuid,
    /// The lease its claim holds.
    pub lease_token: Uuid,
    /// Its tenant and destination.
    pub destination: DestinationRef,
    /// The attempt its lease counted.
    pub attempt_number: u32,
    /// It was leased as its destination's probe.
    pub probe: bool,
    /// Why it could not be read.
    pub error: String,
}

/// Reads leased `rows` one by one: the deliveries that read, and the
/// rows that did not (their identity read on its own).
pub(super) fn read_leased(
    rows: &[QueryResult],
    lease_token: Uuid,
    lease_ends: tokio::time::Instant,
) -> (Vec<ClaimedDelivery>, Vec<Unreadable>) {
    let mut deliveries = Vec::with_capacity(rows.len());
    let mut unreadable = Vec::new();
    for row in rows {
        match claimed(row, lease_token, lease_ends) {
            Ok(delivery) => deliveries.push(delivery),
            Err(error) => match identity(row) {
                Ok((id, destination, attempt)) => unreadable.push(Unreadable {
                    id,
                    lease_token,
                    destination,
                    attempt_number: u32::try_from(attempt).unwrap_or(0),
                    probe: false,
                    error: error.to_string(),
                }),
                // Not even its key reads: nothing can be written to it,
                // and its lease expires like that of a lost replica.
                Err(identity_error) => tracing::error!(
                    %error,
                    %identity_error,
                    "a leased delivery's row cannot be read, not even its id"
                ),
            },
        }
    }
    (deliveries, unreadable)
}

/// The id, tenant, destination and attempt count of a leased row (in the
/// order of `LEASED_COLUMNS`).
fn identity(row: &QueryResult) -> Result<(Uuid, DestinationRef, i32), sea_orm::DbErr> {
    let destination = DestinationRef {
        tenant_id: row.try_get_by_index(1)?,
        destination: row.try_get_by_index(9)?,
    };
    Ok((
        row.try_get_by_index(0)?,
        destination,
        row.try_get_by_index(7)?,
    ))
}

impl Store {
    /// Dead-letters `rows`, unsent, each with an error that says its row
    /// could not be read. Failing that, they keep their leases and are
    /// claimed again when those expire.
    pub(super) async fn dead_letter_unreadable(&self, rows: &[Unreadable], defaults: &Policy) {
        if rows.is_empty() {
            return;
        }
        let batch: Vec<Completion> = rows
            .iter()
            .map(|row| {
                tracing::error!(
                    delivery_id = %row.id,
                    error = %row.error,
                    "a leased delivery's stored row cannot be read; dead-lettering it"
                );
                Completion {
                    delivery_id: row.id,
                    tenant_id: row.destination.tenant_id.clone(),
                    lease_token: row.lease_token,
                    attempt_number: row.attempt_number,
                    destination: row.destination.destination.clone(),
                    probe: row.probe,
                    failure_threshold: u32::MAX,
                    attempt: None,
                    reason: Some(format!(
                        "the stored delivery could not be read ({}); it was not sent",
                        row.error
                    )),
                    decision: Decision::DeadLetter,
                    slow_down: None,
                }
            })
            .collect();
        // A probe that is never sent leaves its circuit half-open with
        // nothing in flight: another may go at once.
        let changes: Vec<DestinationChange> = rows
            .iter()
            .filter(|row| row.probe)
            .map(|row| DestinationChange {
                destination: row.destination.clone(),
                circuit: Some(CircuitChange::ProbeUnsent),
                hold: None,
            })
            .collect();
        if let Err(error) = self.complete(&batch, &changes, defaults).await {
            tracing::warn!(
                %error,
                count = rows.len(),
                "could not dead-letter unreadable rows; they will be claimed again when their leases expire"
            );
        }
    }
}
