//! Turns a paged list RPC into one stream of items.
//!
//! Pages are fetched lazily, one request at a time as the caller reads, so a
//! caller that stops early costs no further requests. The first failed page
//! ends the stream after yielding its error.

use futures::{Stream, TryStreamExt, stream};

use crate::Error;

/// Follows page tokens: `fetch` gets the page for a token (empty for the
/// first page) and returns its items and the next token (empty after the
/// last page).
pub(crate) fn pages<T, F, Fut>(fetch: F) -> impl Stream<Item = Result<T, Error>> + Send + 'static
where
    T: Send + 'static,
    F: Fn(String) -> Fut + Send + 'static,
    Fut: Future<Output = Result<(Vec<T>, String), Error>> + Send + 'static,
{
    // State: the token of the next page, or None once the last one is read.
    stream::try_unfold(Some(String::new()), move |token| {
        let page = token.map(&fetch);
        async move {
            let Some(page) = page else {
                return Ok(None);
            };
            let (items, next) = page.await?;
            let next = (!next.is_empty()).then_some(next);
            Ok::<_, Error>(Some((stream::iter(items.into_iter().map(Ok)), next)))
        }
    })
    .try_flatten()
}
