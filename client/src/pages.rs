//! One page of a listing ([`Page`]), and a paged list RPC turned into one
//! stream of items.
//!
//! Pages are fetched lazily, one request at a time as the caller reads, so a
//! caller that stops early costs no further requests. The first failed page
//! ends the stream after yielding its error.

use futures::{Stream, TryStreamExt, stream};

use crate::Error;

/// One page of a listing, for a caller that pages by itself (a UI that
/// keeps the token between requests, say): ask for the next page with
/// `next_page_token`, which works only with the same filters.
#[derive(Debug, Clone, PartialEq)]
#[non_exhaustive]
pub struct Page<T> {
    /// This page's items.
    pub items: Vec<T>,
    /// The token of the next page; empty after the last page.
    pub next_page_token: String,
}

impl<T> Page<T> {
    pub(crate) fn new(items: Vec<T>, next_page_token: String) -> Self {
        Self {
            items,
            next_page_token,
        }
    }
}

/// Follows page tokens: `fetch` gets the page for a token (empty for the
/// first page), whose next token is empty after the last page.
pub(crate) fn pages<T, F, Fut>(fetch: F) -> impl Stream<Item = Result<T, Error>> + Send + 'static
where
    T: Send + 'static,
    F: Fn(String) -> Fut + Send + 'static,
    Fut: Future<Output = Result<Page<T>, Error>> + Send + 'static,
{
    // State: the token of the next page, or None once the last one is read.
    stream::try_unfold(Some(String::new()), move |token| {
        let page = token.map(&fetch);
        async move {
            let Some(page) = page else {
                return Ok(None);
            };
            let page = page.await?;
            let next = (!page.next_page_token.is_empty()).then_some(page.next_page_token);
            Ok::<_, Error>(Some((stream::iter(page.items.into_iter().map(Ok)), next)))
        }
    })
    .try_flatten()
}
