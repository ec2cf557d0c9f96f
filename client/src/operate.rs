//! Builders for the operator calls: [`Redrive`] of dead letters and the
//! [`DeliveryQuery`] filters of [`crate::Client::deliveries`].

use std::time::SystemTime;

use herald_proto::v1::{
    DeadLetterFilter, DeliveryIds, DeliveryView, ListDeliveriesRequest, RedriveDeadLettersRequest,
    redrive_dead_letters_request::Selection,
};

use crate::{Client, DeliveryState, Error, RedriveReport};

/// A redrive being described; finish with [`Redrive::send`]. Select by ids,
/// or by any of the filters (not both: sending both is
/// [`Error::InvalidRequest`], and nothing is sent).
#[derive(Debug)]
#[must_use = "a redrive does nothing until `send` is awaited"]
pub struct Redrive {
    client: Client,
    ids: Vec<String>,
    filter: Option<DeadLetterFilter>,
    dry_run: bool,
}

impl Redrive {
    pub(crate) fn new(client: Client) -> Self {
        Self {
            client,
            ids: Vec::new(),
            filter: None,
            dry_run: false,
        }
    }

    /// Redrives exactly these dead letters.
    pub fn ids(mut self, ids: impl IntoIterator<Item = impl Into<String>>) -> Self {
        self.ids = ids.into_iter().map(Into::into).collect();
        self
    }

    /// Only those dead-lettered at or after `time`.
    pub fn dead_lettered_after(mut self, time: SystemTime) -> Self {
        self.filter().dead_lettered_after_time = Some(time.into());
        self
    }

    /// Only those dead-lettered before `time`.
    pub fn dead_lettered_before(mut self, time: SystemTime) -> Self {
        self.filter().dead_lettered_before_time = Some(time.into());
        self
    }

    /// Only those whose URL has this host.
    pub fn destination_host(mut self, host: impl Into<String>) -> Self {
        self.filter().destination_host = host.into();
        self
    }

    /// Only count what would be redriven.
    pub fn dry_run(mut self) -> Self {
        self.dry_run = true;
        self
    }

    /// The filter being described, begun empty.
    fn filter(&mut self) -> &mut DeadLetterFilter {
        self.filter.get_or_insert_with(DeadLetterFilter::default)
    }

    /// The request: the named ids or the filter, whichever was given
    /// (neither leaves the selection unset, which the server refuses).
    fn request(&mut self) -> Result<RedriveDeadLettersRequest, Error> {
        let ids = std::mem::take(&mut self.ids);
        let selection = match (ids.is_empty(), self.filter.take()) {
            (false, Some(_)) => {
                return Err(Error::InvalidRequest(
                    "a redrive selects dead letters by ids or by filters, not both",
                ));
            }
            (false, None) => Some(Selection::Deliveries(DeliveryIds { ids })),
            (true, filter) => filter.map(Selection::Filter),
        };
        Ok(RedriveDeadLettersRequest {
            selection,
            dry_run: self.dry_run,
        })
    }

    /// Sends the redrive; returns how many dead letters were (or, with
    /// [`Redrive::dry_run`], would be) redriven.
    pub async fn send(self) -> Result<u64, Error> {
        Ok(self.report().await?.count)
    }

    /// Sends the redrive; returns the whole answer: how many dead letters
    /// were (or would be) redriven, and which of the named ids were not,
    /// each with why (not found, or not dead-lettered and in which state).
    pub async fn report(mut self) -> Result<RedriveReport, Error> {
        let request = self.request()?;
        let request = self.client.request(request);
        let response = self.client.grpc().redrive_dead_letters(request).await?;
        Ok(response.into_inner().into())
    }
}

/// Filters for [`crate::Client::deliveries`]; the default lists everything.
#[derive(Debug, Clone, Default)]
pub struct DeliveryQuery {
    state: Option<DeliveryState>,
    destination_host: String,
    created_after: Option<SystemTime>,
    created_before: Option<SystemTime>,
    page_size: u32,
    full: bool,
    idempotency_key: String,
}

impl DeliveryQuery {
    /// Only deliveries in `state`.
    pub fn state(mut self, state: DeliveryState) -> Self {
        self.state = Some(state);
        self
    }

    /// Only deliveries whose URL has this host.
    pub fn destination_host(mut self, host: impl Into<String>) -> Self {
        self.destination_host = host.into();
        self
    }

    /// Only the delivery enqueued with idempotency key `key`.
    pub fn idempotency_key(mut self, key: impl Into<String>) -> Self {
        self.idempotency_key = key.into();
        self
    }

    /// Only deliveries created at or after `time`.
    pub fn created_after(mut self, time: SystemTime) -> Self {
        self.created_after = Some(time);
        self
    }

    /// Only deliveries created before `time`.
    pub fn created_before(mut self, time: SystemTime) -> Self {
        self.created_before = Some(time);
        self
    }

    /// Each delivery with its body and headers (the full view); without
    /// this, listings leave them out (the basic view), which keeps pages
    /// small.
    pub fn full(mut self) -> Self {
        self.full = true;
        self
    }

    /// Deliveries fetched per request (the server's default when unset).
    pub fn page_size(mut self, page_size: u32) -> Self {
        self.page_size = page_size;
        self
    }

    pub(crate) fn request(&self, page_token: String) -> ListDeliveriesRequest {
        ListDeliveriesRequest {
            state: self.state.map_or(0, DeliveryState::number),
            destination_host: self.destination_host.clone(),
            created_after_time: self.created_after.map(Into::into),
            created_before_time: self.created_before.map(Into::into),
            page_size: self.page_size,
            page_token,
            idempotency_key: self.idempotency_key.clone(),
            view: if self.full {
                DeliveryView::Full
            } else {
                DeliveryView::Basic
            }
            .into(),
        }
    }
}
