#![allow(missing_docs, dead_code, unused)]
use std::time::Duration;
use super::*;
pub enum Verdict { Success, Retry { retry_after: Option<Duration> }, Permanent }
pub fn classify(_r: &Result<HttpResponse, TransportError>) -> Verdict { unimplemented!() }
pub fn describe(_r: &Result<HttpResponse, TransportError>) -> Option<String> { unimplemented!() }
