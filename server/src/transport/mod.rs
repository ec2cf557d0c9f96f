//! TEMPORARY interface stub; replaced by the real transport.
#![allow(missing_docs, dead_code, unused)]
pub mod classify;
use std::time::{Duration, SystemTime};
use crate::domain::{AttemptErrorKind, HttpMethod};
pub struct TransportConfig { pub request_timeout: Duration, pub response_excerpt_bytes: usize }
#[derive(Clone)]
pub struct HttpSender;
impl HttpSender { pub fn new(_c: TransportConfig) -> Self { Self } pub async fn send(&self, _r: &OutboundRequest) -> AttemptReport { unimplemented!() } }
pub struct OutboundRequest { pub delivery_id: uuid::Uuid, pub attempt_number: u32, pub method: HttpMethod, pub url: String, pub headers: Vec<(String, String)>, pub content_type: Option<String>, pub body: bytes::Bytes }
pub struct AttemptReport { pub started_at: SystemTime, pub duration: Duration, pub result: Result<HttpResponse, TransportError> }
pub struct HttpResponse { pub status: http::StatusCode, pub retry_after: Option<Duration>, pub excerpt: bytes::Bytes }
#[derive(Debug, thiserror::Error)]
pub enum TransportError { #[error("x")] Timeout(Duration) }
impl TransportError { pub fn kind(&self) -> AttemptErrorKind { AttemptErrorKind::Timeout } }
