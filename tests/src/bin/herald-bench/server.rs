//! The Herald under measurement: the release `herald` binary as a child
//! process on a fresh database, and what the operating system and
//! PostgreSQL say it cost.

use std::{net::SocketAddr, path::PathBuf, process::Stdio, time::Duration};

use herald_server::store::Store;
use herald_tests::{Backend, TEST_SECRET_KEY, TestDb, create_tenant};
use sea_orm::{ConnectOptions, ConnectionTrait, Database, Statement};
use tokio::{
    io::{AsyncBufReadExt, BufReader},
    process::{Child, Command},
};

/// A fresh database for one scenario.
pub struct BenchDb {
    /// The database; dropped afterwards.
    pub db: TestDb,
    /// Its backend.
    pub backend: Backend,
}

impl BenchDb {
    /// Creates and migrates an empty database.
    pub async fn create(backend: Backend) -> Self {
        let db = TestDb::create(backend)
            .await
            .expect("the database is reachable (HERALD_TEST_POSTGRES_URL)");
        let store = Store::connect(db.url()).await.expect("connect");
        store.migrate().await.expect("migrate");
        store.close().await.expect("close");
        Self { db, backend }
    }

    /// A store on it (the bench's own connections).
    pub async fn store(&self) -> Store {
        Store::connect(self.db.url()).await.expect("connect")
    }

    /// Marks every delivery succeeded on its first attempt, writing the
    /// attempt and outcome rows a real run would have (on PostgreSQL, then
    /// vacuums and analyzes, as autovacuum would have by then). Returns the
    /// last outcome sequence, for watching what comes after.
    pub async fn finish_everything(&self) -> u64 {
        let conn = Database::connect(self.db.url()).await.expect("connect");
        let steps = [
            "INSERT INTO attempts (delivery_id, number, started_at_ms, duration_us, status_code) \
             SELECT id, 1, created_at_ms, 500, 204 FROM deliveries",
            "INSERT INTO outcomes (tenant_id, delivery_id, host, kind, attempt_number, status_code, \
             created_at_ms) \
             SELECT tenant_id, id, host, 'succeeded', 1, 204, created_at_ms FROM deliveries",
            "UPDATE deliveries SET state = 'succeeded', attempt_count = 1, \
             next_attempt_at_ms = NULL, finished_at_ms = created_at_ms, last_status_code = 204",
        ];
        for step in steps {
            conn.execute_unprepared(step)
                .await
                .expect("finish the rows");
        }
        if self.backend == Backend::Postgres {
            conn.execute_unprepared("VACUUM ANALYZE")
                .await
                .expect("vacuum");
        }
        let row = conn
            .query_one_raw(Statement::from_string(
                conn.get_database_backend(),
                "SELECT COALESCE(MAX(sequence), 0) FROM outcomes",
            ))
            .await
            .expect("read the feed")
            .expect("a row");
        let last: i64 = row.try_get_by_index(0).expect("a sequence");
        let _ = conn.close().await;
        u64::try_from(last).unwrap_or(0)
    }

    /// Transactions committed in this database so far (PostgreSQL), read
    /// after every backend reported its counts, open connections included.
    pub async fn commits(&self) -> Option<i64> {
        Some(self.stats(Settle::Open).await?.commits)
    }

    /// What PostgreSQL counted in this database so far: commits and row
    /// writes over all its tables, read once every backend reported its
    /// counts (how long that takes, `settle` says). `None` on SQLite.
    pub async fn stats(&self, settle: Settle) -> Option<DbStats> {
        if self.backend != Backend::Postgres {
            return None;
        }
        // One connection, so clearing the snapshot and reading share it.
        let mut options = ConnectOptions::new(self.db.url().to_owned());
        options.max_connections(1).sqlx_logging(false);
        let conn = Database::connect(options).await.ok()?;
        tokio::time::sleep(settle.wait()).await;
        conn.execute_unprepared("SELECT pg_stat_clear_snapshot()")
            .await
            .ok()?;
        let row = conn
            .query_one_raw(Statement::from_string(
                conn.get_database_backend(),
                "SELECT \
                     (SELECT xact_commit FROM pg_stat_database \
                      WHERE datname = current_database()), \
                     CAST(COALESCE(SUM(n_tup_ins), 0) AS BIGINT), \
                     CAST(COALESCE(SUM(n_tup_upd), 0) AS BIGINT), \
                     CAST(COALESCE(SUM(n_tup_del), 0) AS BIGINT) \
                 FROM pg_stat_user_tables",
            ))
            .await
            .ok()??;
        let count = |index| row.try_get_by_index::<i64>(index).ok();
        let stats = DbStats {
            commits: count(0)?,
            inserts: count(1)?,
            updates: count(2)?,
            deletes: count(3)?,
        };
        let _ = conn.close().await;
        Some(stats)
    }

    /// Creates tenant `name` with `herald tenant create`; returns its API
    /// key. Once a tenant exists, every call needs a key.
    pub fn create_tenant(&self, name: &str) -> String {
        let program = herald_binary();
        let program = program.to_str().expect("a UTF-8 path to herald");
        create_tenant(program, self.db.url(), name).api_key
    }
}

/// Which connections to the database may still hold counts PostgreSQL has
/// not published. A backend publishes its counts as it exits, at the end
/// of a transaction a second or more after it last published, or else
/// after 10 s idle (PostgreSQL's `PGSTAT_IDLE_INTERVAL`).
#[derive(Debug, Clone, Copy)]
pub enum Settle {
    /// Every other connection has closed (or is about to).
    Closed,
    /// Other connections stay open, and may sit idle.
    Open,
}

impl Settle {
    /// How long to wait before reading the counts.
    fn wait(self) -> Duration {
        match self {
            Self::Closed => Duration::from_millis(1100),
            Self::Open => Duration::from_millis(10_100),
        }
    }
}

/// PostgreSQL's counts for one database at one moment.
#[derive(Debug, Clone, Copy)]
pub struct DbStats {
    /// Transactions committed.
    pub commits: i64,
    /// Rows inserted, over all tables.
    pub inserts: i64,
    /// Rows updated (HOT or not), over all tables.
    pub updates: i64,
    /// Rows deleted, over all tables.
    pub deletes: i64,
}

/// `herald serve` as a child process.
pub struct BenchServer {
    child: Child,
    /// Where it serves gRPC.
    pub addr: SocketAddr,
}

/// The `herald` binary beside this one (build both with `--release`).
fn herald_binary() -> PathBuf {
    let me = std::env::current_exe().expect("the bench's own path");
    me.with_file_name("herald")
}

/// The server's log filter: `HERALD_BENCH_SERVER_LOG`, or warnings and
/// the line that says where it listens.
fn server_log() -> String {
    let base = "herald_server::server=info";
    match std::env::var("HERALD_BENCH_SERVER_LOG") {
        Ok(extra) if !extra.is_empty() => format!("{extra},{base}"),
        _ => format!("warn,{base}"),
    }
}

impl BenchServer {
    /// Starts Herald on `db` with `settings` and waits until it serves.
    pub async fn start(db: &BenchDb, settings: &[(&str, String)]) -> Self {
        let mut child = Command::new(herald_binary())
            .arg("serve")
            .env("HERALD_LISTEN_ADDR", "127.0.0.1:0")
            .env("HERALD_DATABASE_URL", db.db.url())
            .env("HERALD_ALLOW_TARGET_CIDRS", "127.0.0.0/8")
            .env("HERALD_LOG", server_log())
            .env("NO_COLOR", "1")
            // The key the tenant commands seal with too.
            .env("HERALD_SECRET_KEY", TEST_SECRET_KEY)
            .envs(settings.iter().map(|(k, v)| (*k, v.as_str())))
            .stdout(Stdio::piped())
            .kill_on_drop(true)
            .spawn()
            .expect("run target/release/herald (cargo build --release -p herald-server)");
        let mut lines = BufReader::new(child.stdout.take().expect("stdout")).lines();
        let addr = loop {
            let line = lines
                .next_line()
                .await
                .expect("read the log")
                .expect("herald exited before serving");
            if let Some(rest) = line.split("local_addr=").nth(1) {
                break rest
                    .split_whitespace()
                    .next()
                    .and_then(|addr| addr.parse().ok())
                    .expect("an address");
            }
        };
        // Its warnings and errors, or all that HERALD_BENCH_SERVER_LOG asks
        // for, go to stderr, apart from the report on stdout.
        let everything = std::env::var_os("HERALD_BENCH_SERVER_LOG").is_some();
        tokio::spawn(async move {
            while let Ok(Some(line)) = lines.next_line().await {
                if everything || line.contains(" WARN ") || line.contains(" ERROR ") {
                    eprintln!("{line}");
                }
            }
        });
        Self { child, addr }
    }

    /// A client of this server.
    pub async fn client(&self) -> herald_client::Client {
        herald_client::Client::connect(format!("http://{}", self.addr))
            .await
            .expect("connect to the server")
    }

    /// A client of this server calling as the tenant whose key is `api_key`.
    pub async fn client_as(&self, api_key: &str) -> herald_client::Client {
        self.client()
            .await
            .with_api_key(api_key)
            .expect("a usable API key")
    }

    /// CPU seconds the process used so far (user + system).
    pub fn cpu_seconds(&self) -> f64 {
        let pid = self.child.id().expect("running");
        let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).unwrap_or_default();
        // Fields after the parenthesised command name; utime and stime are
        // the 14th and 15th fields, in clock ticks (100 per second on Linux).
        let after = stat.rsplit_once(')').map_or("", |(_, rest)| rest);
        let fields: Vec<&str> = after.split_whitespace().collect();
        let ticks = |i: usize| {
            fields
                .get(i)
                .and_then(|f| f.parse::<f64>().ok())
                .unwrap_or(0.0)
        };
        (ticks(11) + ticks(12)) / 100.0
    }

    /// Peak resident memory of the process, MiB.
    pub fn peak_rss_mib(&self) -> f64 {
        let pid = self.child.id().expect("running");
        let status = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap_or_default();
        status
            .lines()
            .find_map(|line| line.strip_prefix("VmHWM:"))
            .and_then(|rest| rest.split_whitespace().next()?.parse::<f64>().ok())
            .map_or(0.0, |kib| kib / 1024.0)
    }

    /// Stops the server gracefully.
    pub async fn stop(mut self) {
        if let Some(pid) = self.child.id() {
            let _ = std::process::Command::new("kill")
                .args(["-TERM", &pid.to_string()])
                .status();
        }
        let _ = tokio::time::timeout(Duration::from_secs(30), self.child.wait()).await;
    }
}
