//! Paged listings from a shell: one page by default, which ends with the
//! token of the next, or every page with `--all`.

use std::future::Future;

use clap::Args;
use serde_json::{Value, json};

/// How much of a listing to fetch.
#[derive(Debug, Args)]
pub struct Paging {
    /// Most items in one page (the server's default, 100, when not given).
    #[arg(long)]
    page_size: Option<u32>,
    /// Go on from where a previous page ended: the token it printed.
    #[arg(long, conflicts_with = "all")]
    page_token: Option<String>,
    /// Fetch every page.
    #[arg(long)]
    all: bool,
}

/// Items of a listing and the token of the page after them (empty on the
/// last).
pub struct Page<T> {
    /// The items, in the listing's order.
    pub items: Vec<T>,
    /// The next page's token, empty on the last.
    pub next_page_token: String,
}

impl Paging {
    /// The page asked for, or with `--all` every page from there on: `fetch`
    /// gets a page size (0 for the server's default) and a page token.
    pub async fn fetch<T, F, Fut>(&self, mut fetch: F) -> Result<Page<T>, tonic::Status>
    where
        F: FnMut(u32, String) -> Fut,
        Fut: Future<Output = Result<Page<T>, tonic::Status>>,
    {
        let mut token = self.page_token.clone().unwrap_or_default();
        let mut items = Vec::new();
        loop {
            let page = fetch(self.page_size.unwrap_or(0), token).await?;
            items.extend(page.items);
            if !self.all || page.next_page_token.is_empty() {
                return Ok(Page {
                    items,
                    next_page_token: page.next_page_token,
                });
            }
            token = page.next_page_token;
        }
    }
}

impl<T> Page<T> {
    /// Prints the page: with `json` one document, `{"<name>": [...],
    /// "next_page_token": "..."}`; otherwise `table` of the items and, when
    /// there is more, how to go on.
    pub fn print(
        &self,
        json: bool,
        name: &str,
        item_json: impl Fn(&T) -> Value,
        table: impl Fn(&[T]) -> String,
    ) {
        if json {
            let items: Vec<Value> = self.items.iter().map(item_json).collect();
            println!(
                "{}",
                json!({ name: items, "next_page_token": self.next_page_token })
            );
            return;
        }
        print!("{}", table(&self.items));
        if !self.next_page_token.is_empty() {
            println!("-- more: --page-token {}", self.next_page_token);
        }
    }
}
