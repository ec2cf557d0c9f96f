//! Herald's Prometheus page, read as a scraper reads it.

use std::net::SocketAddr;

use tokio::io::{AsyncReadExt, AsyncWriteExt};

/// The metrics page at `addr`, fetched with a plain HTTP/1.1 request
/// (status line and headers included).
pub async fn scrape(addr: SocketAddr) -> String {
    let mut stream = tokio::net::TcpStream::connect(addr).await.expect("connect");
    stream
        .write_all(b"GET /metrics HTTP/1.1\r\nhost: herald\r\nconnection: close\r\n\r\n")
        .await
        .expect("request");
    let mut response = String::new();
    stream
        .read_to_string(&mut response)
        .await
        .expect("response");
    assert!(response.starts_with("HTTP/1.1 200"), "{response}");
    response
}

/// The sum of every sample of `name` on `page`, across its label sets.
pub fn total(page: &str, name: &str) -> f64 {
    page.lines()
        .filter(|line| {
            line.strip_prefix(name)
                .is_some_and(|rest| rest.starts_with(['{', ' ']))
        })
        .filter_map(|line| line.rsplit(' ').next()?.parse::<f64>().ok())
        .sum()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sums_a_metric_across_its_labels_only() {
        let page = "# TYPE herald_attempts counter\n\
            herald_attempts_total{result=\"success\"} 3\n\
            herald_attempts_total{result=\"timeout\"} 2\n\
            herald_attempts_in_flight 7\n";
        assert_eq!(total(page, "herald_attempts_total"), 5.0);
        assert_eq!(total(page, "herald_attempts_in_flight"), 7.0);
    }
}
