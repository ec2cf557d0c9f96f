//! Listing pages, capped by rows and by bytes: a page stops at its
//! `page_size` or once the next delivery would take its encoded size past
//! [`MAX_PAGE_BYTES`], whichever comes first, and then says where the next
//! page starts. A page always holds at least one delivery, so a delivery
//! larger than the cap is still listed, alone on its page.

use herald_proto::v1::Delivery;
use prost::{Message, encoding::encoded_len_varint};

use super::{
    convert,
    page_token::{self, Listing},
};
use crate::store::{PageCursor, records::DeliveryRecord};

/// Most encoded bytes of one page's deliveries: far below the 4 MiB a
/// gRPC client takes by default, and what a server buffers per listing.
pub const MAX_PAGE_BYTES: usize = 2 * 1024 * 1024;

/// A page being filled from a listing's rows.
pub struct Page {
    deliveries: Vec<Delivery>,
    bytes: usize,
    page_size: usize,
    /// The time a listing orders by, of a delivery.
    at: fn(&DeliveryRecord) -> i64,
    last: Option<PageCursor>,
    /// Whether a delivery was left out for want of bytes.
    cut: bool,
}

impl Page {
    /// An empty page of at most `page_size` deliveries, of a listing
    /// ordered by `at` and then id.
    pub fn new(page_size: u32, at: fn(&DeliveryRecord) -> i64) -> Self {
        Self {
            deliveries: Vec::new(),
            bytes: 0,
            page_size: page_size as usize,
            at,
            last: None,
            cut: false,
        }
    }

    /// Adds `record` if the page has room for its bytes; answers whether
    /// the page takes more.
    pub fn take(&mut self, record: DeliveryRecord) -> bool {
        let cursor = PageCursor {
            at_ms: (self.at)(&record),
            id: record.id,
        };
        let delivery = convert::delivery(record);
        let length = delivery.encoded_len();
        // The field's tag and length prefix in the response.
        let framed = 1 + encoded_len_varint(length as u64) + length;
        if !self.deliveries.is_empty() && self.bytes + framed > MAX_PAGE_BYTES {
            self.cut = true;
            return false;
        }
        self.bytes += framed;
        self.deliveries.push(delivery);
        self.last = Some(cursor);
        self.deliveries.len() < self.page_size
    }

    /// The page's deliveries, and the token of the next page (of
    /// `listing` with `filters`): empty unless the page was cut short by
    /// bytes or filled to its size.
    pub fn finish(self, listing: Listing, filters: &str) -> (Vec<Delivery>, String) {
        let more = self.cut || self.deliveries.len() == self.page_size;
        let after = self.last.filter(|_| more);
        let token = page_token::next(listing, filters, after.as_ref());
        (self.deliveries, token)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::domain::{DeliveryState, HttpMethod, HttpRequest};

    fn record(body_bytes: usize) -> DeliveryRecord {
        DeliveryRecord {
            id: uuid::Uuid::now_v7(),
            request: HttpRequest {
                method: HttpMethod::Post,
                url: "https://example.com/hook".into(),
                headers: Vec::new(),
                content_type: None,
                body: vec![7; body_bytes].into(),
            },
            idempotency_key: None,
            state: DeliveryState::Pending,
            attempt_count: 0,
            max_attempts: 5,
            next_attempt_at_ms: None,
            last_status_code: None,
            last_error: None,
            created_at_ms: 1_795_000_000_000,
            updated_at_ms: 1_795_000_000_000,
            finished_at_ms: None,
            deadline_at_ms: None,
            event: None,
            attempts: Vec::new(),
        }
    }

    #[test]
    fn a_page_stops_before_its_bytes_would_pass_the_cap() {
        let mut page = Page::new(100, |record| record.created_at_ms);
        let body = MAX_PAGE_BYTES / 3;
        assert!(page.take(record(body)));
        assert!(page.take(record(body)));
        assert!(!page.take(record(body)), "a third would pass the cap");
        let (deliveries, token) = page.finish(Listing::Deliveries, "");
        assert_eq!(deliveries.len(), 2);
        assert!(!token.is_empty(), "the rest is on the next page");
    }

    #[test]
    fn a_delivery_larger_than_the_cap_has_a_page_of_its_own() {
        let mut page = Page::new(100, |record| record.created_at_ms);
        assert!(page.take(record(MAX_PAGE_BYTES + 1)));
        assert!(!page.take(record(1)));
        assert_eq!(page.finish(Listing::Deliveries, "").0.len(), 1);
    }

    #[test]
    fn a_short_page_is_the_last() {
        let mut page = Page::new(3, |record| record.created_at_ms);
        assert!(page.take(record(10)));
        let (deliveries, token) = page.finish(Listing::Deliveries, "");
        assert_eq!((deliveries.len(), token.as_str()), (1, ""));
        let mut full = Page::new(1, |record| record.created_at_ms);
        assert!(!full.take(record(10)), "full by rows");
        assert!(!full.finish(Listing::Deliveries, "").1.is_empty());
    }
}
