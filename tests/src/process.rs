//! Herald as a real child process, for fault tests: started with settings
//! in `HERALD_*` variables, stopped with SIGTERM or killed with SIGKILL.

use std::{
    net::SocketAddr,
    process::{ExitStatus, Stdio},
    sync::{Arc, Mutex},
};

use herald_proto::v1::delivery_service_client::DeliveryServiceClient;
use tokio::{
    io::{AsyncBufReadExt, BufReader},
    process::{Child, Command},
    sync::{oneshot, watch},
};
use tonic::transport::Channel;

use crate::PATIENCE;

/// A running `herald serve` child process. It is killed when dropped.
pub struct HeraldProcess {
    child: Child,
    addr: SocketAddr,
    log: Arc<Mutex<Vec<String>>>,
    logged: watch::Receiver<usize>,
}

impl HeraldProcess {
    /// Starts `program serve` (the binary under test) on `database_url`
    /// with `settings` as extra environment, and waits until it serves.
    pub async fn spawn(program: &str, database_url: &str, settings: &[(&str, String)]) -> Self {
        let mut child = Command::new(program)
            .arg("serve")
            .env("HERALD_LISTEN_ADDR", "127.0.0.1:0")
            .env("HERALD_DATABASE_URL", database_url)
            .env(
                "HERALD_LOG",
                "info,herald_server::scheduler=debug,sqlx=warn",
            )
            .env("NO_COLOR", "1")
            // The tests' receivers listen on loopback.
            .env("HERALD_ALLOW_TARGET_CIDRS", "127.0.0.0/8")
            .envs(settings.iter().map(|(name, value)| (*name, value.as_str())))
            .stdout(Stdio::piped())
            .stderr(Stdio::inherit())
            .kill_on_drop(true)
            .spawn()
            .expect("spawn the herald binary");
        let stdout = child.stdout.take().expect("piped stdout");
        let log = Arc::new(Mutex::new(Vec::new()));
        let (logged_tx, logged) = watch::channel(0);
        let (serving, addr) = oneshot::channel();
        let lines = Arc::clone(&log);
        tokio::spawn(async move {
            let mut serving = Some(serving);
            let mut reader = BufReader::new(stdout).lines();
            while let Ok(Some(line)) = reader.next_line().await {
                if let Some(addr) = serving_addr(&line)
                    && let Some(serving) = serving.take()
                {
                    let _ = serving.send(addr);
                }
                lines.lock().unwrap().push(line);
                logged_tx.send_modify(|count| *count += 1);
            }
        });
        let addr = tokio::time::timeout(PATIENCE, addr)
            .await
            .expect("herald starts serving in time")
            .expect("herald exited before serving");
        Self {
            child,
            addr,
            log,
            logged,
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

    /// How many log lines so far contain `needle`.
    pub fn log_count(&self, needle: &str) -> usize {
        self.log
            .lock()
            .unwrap()
            .iter()
            .filter(|line| line.contains(needle))
            .count()
    }

    /// Waits until `count` log lines contain `needle`.
    pub async fn wait_for_log(&self, needle: &str, count: usize) {
        let mut logged = self.logged.clone();
        let waited = tokio::time::timeout(PATIENCE, async {
            while self.log_count(needle) < count {
                logged.changed().await.expect("log reader alive");
            }
        })
        .await;
        assert!(
            waited.is_ok(),
            "waited {PATIENCE:?} for {count} log lines with {needle:?}; got {}",
            self.log_count(needle)
        );
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

/// The address in Herald's "herald is serving local_addr=..." log line.
fn serving_addr(line: &str) -> Option<SocketAddr> {
    if !line.contains("herald is serving") {
        return None;
    }
    let rest = &line[line.find("local_addr=")? + "local_addr=".len()..];
    rest.split_whitespace().next()?.parse().ok()
}
