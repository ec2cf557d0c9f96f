//! Per-method message size limits, enforced on the gRPC frame header as
//! the body arrives: a message declared larger than its method allows is
//! refused (RESOURCE_EXHAUSTED) before any of it is buffered or decoded.
//! Only `EnqueueBatch` may carry the large batch limit; `Enqueue` and
//! `Publish` may carry one delivery's worth at its limits; an event type
//! may carry its JSON Schema; everything else is small.

use std::{
    pin::Pin,
    task::{Context, Poll, ready},
};

use bytes::Bytes;
use http_body::{Body as HttpBody, Frame, SizeHint};
use tonic::{Status, body::Body};

use crate::config::InputLimits;

/// The largest message of any method but the two enqueues: a redrive or
/// a watch naming 1,000 delivery ids (about 38 KiB) fits with room.
const SMALL_MESSAGE_BYTES: usize = 64 * 1024;
/// The largest message that creates or changes an event type: its schema
/// and room for the rest.
const SCHEMA_MESSAGE_BYTES: usize =
    crate::endpoints::schema::MAX_SCHEMA_BYTES + SMALL_MESSAGE_BYTES;
/// Bytes of a gRPC frame header: a compression flag and a length.
const FRAME_HEADER_BYTES: usize = 5;

/// The message limit of each method.
#[derive(Debug, Clone, Copy)]
pub struct MessageLimits {
    enqueue: usize,
    batch: usize,
}

impl MessageLimits {
    /// The limits `input` admits.
    pub fn new(input: &InputLimits) -> Self {
        Self {
            enqueue: input.max_enqueue_bytes(),
            batch: input.max_batch_bytes,
        }
    }

    /// The largest message the method at `path` takes.
    pub fn for_path(&self, path: &str) -> usize {
        match path {
            "/herald.v1.DeliveryService/EnqueueBatch" => self.batch,
            "/herald.v1.DeliveryService/Enqueue" | "/herald.v1.EventService/Publish" => {
                self.enqueue
            }
            "/herald.v1.EventService/CreateEventType"
            | "/herald.v1.EventService/UpdateEventType" => SCHEMA_MESSAGE_BYTES,
            _ => SMALL_MESSAGE_BYTES,
        }
    }
}

/// Reads frame headers out of a stream of body chunks.
#[derive(Debug, Default)]
struct FrameScanner {
    header: [u8; FRAME_HEADER_BYTES],
    have: usize,
    /// Bytes of the current message still to pass.
    remaining: usize,
}

impl FrameScanner {
    /// Follows `chunk`; `Err(length)` at the first message longer than
    /// `limit`.
    fn feed(&mut self, mut chunk: &[u8], limit: usize) -> Result<(), usize> {
        while !chunk.is_empty() {
            if self.remaining > 0 {
                let passed = self.remaining.min(chunk.len());
                self.remaining -= passed;
                chunk = &chunk[passed..];
                continue;
            }
            let take = (FRAME_HEADER_BYTES - self.have).min(chunk.len());
            self.header[self.have..self.have + take].copy_from_slice(&chunk[..take]);
            self.have += take;
            chunk = &chunk[take..];
            if self.have == FRAME_HEADER_BYTES {
                self.have = 0;
                let length = u32::from_be_bytes([
                    self.header[1],
                    self.header[2],
                    self.header[3],
                    self.header[4],
                ]) as usize;
                if length > limit {
                    return Err(length);
                }
                self.remaining = length;
            }
        }
        Ok(())
    }
}

/// A request body whose messages may not exceed a limit.
pub struct Limited {
    inner: Body,
    limit: usize,
    scanner: FrameScanner,
}

impl Limited {
    /// `inner`, held to messages of at most `limit` bytes.
    pub fn new(inner: Body, limit: usize) -> Self {
        Self {
            inner,
            limit,
            scanner: FrameScanner::default(),
        }
    }
}

impl HttpBody for Limited {
    type Data = Bytes;
    type Error = Status;

    fn poll_frame(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, Status>>> {
        let frame = ready!(Pin::new(&mut self.inner).poll_frame(cx));
        if let Some(Ok(frame)) = &frame
            && let Some(data) = frame.data_ref()
        {
            let limit = self.limit;
            if let Err(length) = self.scanner.feed(data, limit) {
                return Poll::Ready(Some(Err(Status::resource_exhausted(format!(
                    "the request message is {length} bytes, over this method's limit of {limit} bytes"
                )))));
            }
        }
        Poll::Ready(frame)
    }

    fn is_end_stream(&self) -> bool {
        self.inner.is_end_stream()
    }

    fn size_hint(&self) -> SizeHint {
        self.inner.size_hint()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn frame(length: u32) -> Vec<u8> {
        let mut bytes = vec![0];
        bytes.extend_from_slice(&length.to_be_bytes());
        bytes.extend(std::iter::repeat_n(7, length as usize));
        bytes
    }

    #[test]
    fn messages_within_the_limit_pass_in_any_chunking() {
        let stream: Vec<u8> = [frame(10), frame(0), frame(64)].concat();
        for size in [1, 3, 5, 7, stream.len()] {
            let mut scanner = FrameScanner::default();
            for chunk in stream.chunks(size) {
                scanner.feed(chunk, 64).unwrap();
            }
        }
    }

    #[test]
    fn a_message_over_the_limit_is_caught_at_its_header() {
        let mut scanner = FrameScanner::default();
        scanner.feed(&frame(3), 64).unwrap();
        let header = &frame(65)[..FRAME_HEADER_BYTES];
        scanner.feed(&header[..2], 64).unwrap();
        assert_eq!(scanner.feed(&header[2..], 64), Err(65));
    }

    #[test]
    fn only_batch_enqueue_takes_the_batch_limit() {
        let limits = MessageLimits::new(&crate::Config::default().limits);
        let batch = limits.for_path("/herald.v1.DeliveryService/EnqueueBatch");
        let one = limits.for_path("/herald.v1.DeliveryService/Enqueue");
        let other = limits.for_path("/herald.v1.DeliveryService/GetDelivery");
        assert_eq!(batch, 16 * 1024 * 1024);
        assert!(one > 1024 * 1024 && one < batch, "{one}");
        assert_eq!(other, SMALL_MESSAGE_BYTES);
    }
}
