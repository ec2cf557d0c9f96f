//! A fault-injecting TCP proxy between Herald and its database. It
//! forwards every connection to the database until told to [`cut`]: then
//! it closes every open connection and closes each new one as soon as it
//! is accepted, as a database that went away would, until [`restore`].
//!
//! Closing at once, rather than not listening, makes every connection
//! attempt fail fast; a closed port would instead be retried by the pool
//! until its acquire timeout.
//!
//! [`cut`]: FaultProxy::cut
//! [`restore`]: FaultProxy::restore

use std::sync::{
    Arc,
    atomic::{AtomicUsize, Ordering},
};

use tokio::{
    net::{TcpListener, TcpStream},
    sync::watch,
};
use tokio_util::sync::CancellationToken;

use crate::PATIENCE;

/// The proxy; it stops, closing every connection, when dropped.
pub struct FaultProxy {
    url: String,
    /// Whether the database is cut off.
    down: watch::Sender<bool>,
    /// Connections closed at once because the database was cut off.
    refused: Arc<AtomicUsize>,
    /// Raised at each refused connection.
    refusals: watch::Receiver<usize>,
    stop: CancellationToken,
}

impl FaultProxy {
    /// Starts a proxy on 127.0.0.1 in front of the database of
    /// `database_url` (a `postgres://` URL) and returns it; its
    /// [`FaultProxy::url`] is the same URL through the proxy. Must be
    /// called within a Tokio runtime.
    pub fn in_front_of(database_url: &str) -> Self {
        let mut url = url::Url::parse(database_url).expect("the database URL parses");
        let upstream = format!(
            "{}:{}",
            url.host_str().expect("the database URL names a host"),
            url.port().unwrap_or(5432)
        );
        let listener = std::net::TcpListener::bind("127.0.0.1:0").expect("bind the proxy");
        listener
            .set_nonblocking(true)
            .expect("a non-blocking listener");
        let addr = listener.local_addr().expect("the proxy's address");
        let listener = TcpListener::from_std(listener).expect("a Tokio listener");
        url.set_host(Some("127.0.0.1")).expect("an IP host");
        url.set_port(Some(addr.port())).expect("a port");
        let down = watch::channel(false).0;
        let refused = Arc::new(AtomicUsize::new(0));
        let (refusal, refusals) = watch::channel(0);
        let stop = CancellationToken::new();
        tokio::spawn(accept(
            listener,
            upstream,
            down.clone(),
            Arc::clone(&refused),
            refusal,
            stop.clone(),
        ));
        Self {
            url: url.into(),
            down,
            refused,
            refusals,
            stop,
        }
    }

    /// The database URL through the proxy.
    pub fn url(&self) -> &str {
        &self.url
    }

    /// Cuts the database off: closes every open connection, and every new
    /// one as soon as it is accepted.
    pub fn cut(&self) {
        self.down.send_replace(true);
    }

    /// Forwards new connections again.
    pub fn restore(&self) {
        self.down.send_replace(false);
    }

    /// Connections refused since the proxy started.
    pub fn refused(&self) -> usize {
        self.refused.load(Ordering::SeqCst)
    }

    /// Waits until `count` connections in all have been refused: proof
    /// that the other side tried to reach the database while it was cut.
    pub async fn wait_refused(&self, count: usize) {
        let mut refusals = self.refusals.clone();
        tokio::time::timeout(PATIENCE, refusals.wait_for(|refused| *refused >= count))
            .await
            .unwrap_or_else(|_| {
                panic!(
                    "waited {PATIENCE:?} for {count} refused connections; got {}",
                    self.refused()
                )
            })
            .expect("the proxy is running");
    }
}

impl Drop for FaultProxy {
    fn drop(&mut self) {
        self.stop.cancel();
    }
}

async fn accept(
    listener: TcpListener,
    upstream: String,
    down: watch::Sender<bool>,
    refused: Arc<AtomicUsize>,
    refusal: watch::Sender<usize>,
    stop: CancellationToken,
) {
    loop {
        let client = tokio::select! {
            () = stop.cancelled() => return,
            accepted = listener.accept() => match accepted {
                Ok((client, _)) => client,
                Err(_) => continue,
            },
        };
        if *down.borrow() {
            drop(client);
            let count = refused.fetch_add(1, Ordering::SeqCst) + 1;
            refusal.send_replace(count);
            continue;
        }
        tokio::spawn(forward(
            client,
            upstream.clone(),
            down.subscribe(),
            stop.clone(),
        ));
    }
}

/// Copies bytes both ways until either side closes, the database is cut
/// off or the proxy stops; then both sockets are dropped, closing them.
async fn forward(
    mut client: TcpStream,
    upstream: String,
    mut down: watch::Receiver<bool>,
    stop: CancellationToken,
) {
    let Ok(mut server) = TcpStream::connect(&upstream).await else {
        return;
    };
    tokio::select! {
        _ = tokio::io::copy_bidirectional(&mut client, &mut server) => {}
        _ = down.wait_for(|down| *down) => {}
        () = stop.cancelled() => {}
    }
}
