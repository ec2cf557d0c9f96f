//! Herald as a real child process, for fault tests: started with settings
//! in `HERALD_*` variables, stopped with SIGTERM or killed with SIGKILL.

use std::{
    net::SocketAddr,
    process::{ExitStatus, Stdio},
};

use herald_proto::v1::delivery_service_client::DeliveryServiceClient;
use tokio::{
    io::{AsyncBufReadExt, BufReader},
    process::{Child, Command},
    sync::oneshot,
};
use tonic::transport::Channel;

use crate::PATIENCE;

/// A running `herald serve` child process. It is killed when dropped.
pub struct HeraldProcess {
    child: Child,
    addr: SocketAddr,
    metrics: SocketAddr,
}

impl HeraldProcess {
    /// Starts `program serve` (the binary under test) on `database_url`
    /// with `settings` as extra environment, and waits until it serves.
    pub async fn spawn(program: &str, database_url: &str, settings: &[(&str, String)]) -> Self {
        let mut child = Command::from(crate::herald_process(program))
            .arg("serve")
            .env("HERALD_LISTEN_ADDR", "127.0.0.1:0")
            .env("HERALD_DATABASE_URL", database_url)
            .env("HERALD_LOG", "info,sqlx=warn")
            .env("NO_COLOR", "1")
            // The tests' receivers listen on loopback.
            .env("HERALD_ALLOW_TARGET_CIDRS", "127.0.0.0/8")
            // What the process did is read from its metrics, not its log.
            .env("HERALD_METRICS_ADDR", "127.0.0.1:0")
            .env("HERALD_SECRET_KEY", crate::TEST_SECRET_KEY)
            .envs(settings.iter().map(|(name, value)| (*name, value.as_str())))
            .stdout(Stdio::piped())
            .stderr(Stdio::inherit())
            .kill_on_drop(true)
            .spawn()
            .expect("spawn the herald binary");
        let stdout = child.stdout.take().expect("piped stdout");
        let (serving, addr) = oneshot::channel();
        // Read to the end, so the process never blocks on a full pipe.
        tokio::spawn(async move {
            let mut serving = Some(serving);
            let mut reader = BufReader::new(stdout).lines();
            while let Ok(Some(line)) = reader.next_line().await {
                if let Some(addrs) = serving_addrs(&line)
                    && let Some(serving) = serving.take()
                {
                    let _ = serving.send(addrs);
                }
            }
        });
        let (addr, metrics) = tokio::time::timeout(PATIENCE, addr)
            .await
            .expect("herald starts serving in time")
            .expect("herald exited before serving");
        Self {
            child,
            addr,
            metrics,
        }
    }

    /// The address the process serves gRPC on.
    pub fn addr(&self) -> SocketAddr {
        self.addr
    }

    /// A gRPC client of this process.
    pub async fn client(&self) -> DeliveryServiceClient<Channel> {
        DeliveryServiceClient::connect(format!("http://{}", self.addr))
            .await
            .expect("connect to the herald process")
    }

    /// The attempts this process has made so far, whatever their result
    /// (its `herald_attempts_total`).
    pub async fn attempts(&self) -> u64 {
        let page = crate::scrape(self.metrics).await;
        // A count, exact in an f64 far beyond any test's.
        crate::total(&page, "herald_attempts_total") as u64
    }

    /// Sends SIGTERM: a graceful shutdown.
    pub fn terminate(&self) {
        let pid = self.child.id().expect("process running").to_string();
        let status = std::process::Command::new("kill")
            .args(["-TERM", &pid])
            .status()
            .expect("run kill");
        assert!(status.success(), "kill -TERM {pid} failed");
    }

    /// Sends SIGKILL: the process dies at once, wherever it is.
    pub async fn kill_9(&mut self) {
        self.child.start_kill().expect("SIGKILL");
        self.child.wait().await.expect("reap the killed process");
    }

    /// Waits for the process to exit.
    pub async fn exited(&mut self) -> ExitStatus {
        tokio::time::timeout(PATIENCE, self.child.wait())
            .await
            .expect("herald exits in time")
            .expect("wait for herald")
    }
}

/// The gRPC and metrics addresses in Herald's "herald is serving
/// local_addr=... metrics_addr=Some(...)" log line.
fn serving_addrs(line: &str) -> Option<(SocketAddr, SocketAddr)> {
    if !line.contains("herald is serving") {
        return None;
    }
    let rest = &line[line.find("local_addr=")? + "local_addr=".len()..];
    let local = rest.split_whitespace().next()?.parse().ok()?;
    let rest = &line[line.find("metrics_addr=Some(")? + "metrics_addr=Some(".len()..];
    let metrics = rest.split(')').next()?.parse().ok()?;
    Some((local, metrics))
}
