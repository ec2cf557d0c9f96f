//! A TOML configuration file: `herald serve` honours it, the environment
//! overrides it and flags override both; `herald config print` shows the
//! result with the database password hidden. Half a TLS pair, from any
//! of them, stops the start instead of serving plaintext. The operator
//! commands read the same file: `tenant` acts on its database. A database
//! that is missing or unreachable stops the start with what to do.

use futures::StreamExt;
use herald_proto::v1::watch_outcomes_request::Start;
use herald_proto::v1::{
    DeliveryState, EnqueueRequest, GetDeliveryRequest, OutcomeKind, WatchOutcomesRequest,
};
use herald_tests::{
    Backend, HeraldProcess, PATIENCE, Receiver, Reply, TEST_SECRET_KEY, TestDb, herald_admin,
    herald_command, herald_output, on_both_backends,
};

use crate::{HERALD, faults::settings};

on_both_backends!(
    serve_follows_the_file_and_print_shows_the_layers,
    operator_commands_act_on_the_files_database
);

async fn serve_follows_the_file_and_print_shows_the_layers(backend: Backend) {
    let Some(db) = TestDb::create(backend).await else {
        return;
    };
    let dir = tempfile::tempdir().expect("a directory");
    let file = dir.path().join("herald.toml");
    std::fs::write(
        &file,
        "# Give up after one attempt.\nmax_attempts = 1\nrequest_timeout = \"4s\"\nlease_duration = \"30s\"\n\
         database_url = \"postgres://herald:hunter2@db.internal/herald?sslmode=require&password=s3cret\"\n",
    )
    .expect("write the file");
    let path = file.to_str().expect("a UTF-8 path");

    let printed = herald_command(
        HERALD,
        &[("HERALD_REQUEST_TIMEOUT", "5s")],
        &[
            "config",
            "print",
            "--config",
            path,
            "--lease-duration",
            "40s",
        ],
    );
    for line in [
        "max_attempts = 1\n",
        "request_timeout = \"5s\"\n",
        "lease_duration = \"40s\"\n",
        "database_url = \"postgres://herald:***@db.internal/herald?sslmode=require&password=***\"\n",
    ] {
        assert!(printed.contains(line), "{line:?} missing from:\n{printed}");
    }
    assert!(
        !printed.contains("hunter2") && !printed.contains("s3cret"),
        "{printed}"
    );

    std::fs::write(dir.path().join("bad.toml"), "max_atempts = 1\n").expect("write");
    let refused = herald_output(
        HERALD,
        &[],
        &[
            "config",
            "print",
            "--config",
            dir.path().join("bad.toml").to_str().unwrap(),
        ],
    );
    assert!(!refused.status.success());
    let said = String::from_utf8_lossy(&refused.stderr);
    assert!(said.contains("unknown setting \"max_atempts\""), "{said}");

    // The server reads the file (its database comes from the environment).
    let receiver = Receiver::start().await;
    receiver.script("/down", [Reply::Status(503)]);
    let mut herald =
        HeraldProcess::spawn(HERALD, db.url(), &settings(&[("HERALD_CONFIG", path)])).await;
    let mut client = herald.client().await;
    let id = client
        .enqueue(EnqueueRequest {
            url: receiver.url("/down"),
            ..Default::default()
        })
        .await
        .expect("enqueue")
        .into_inner()
        .id;
    let mut outcomes = client
        .watch_outcomes(WatchOutcomesRequest {
            start: Some(Start::FromOldest(true)),
            delivery_ids: vec![id.clone()],
            kinds: vec![OutcomeKind::DeadLettered.into()],
            ..Default::default()
        })
        .await
        .expect("watch")
        .into_inner();
    tokio::time::timeout(PATIENCE, outcomes.next())
        .await
        .expect("dead-lettered in time")
        .expect("stream open")
        .expect("an outcome");
    let delivery = client
        .get_delivery(GetDeliveryRequest { id })
        .await
        .expect("get")
        .into_inner()
        .delivery
        .expect("a delivery");
    assert_eq!(
        delivery.state,
        i32::from(DeliveryState::DeadLettered),
        "max_attempts = 1 from the file: one 503 is the last attempt"
    );
    assert_eq!(delivery.attempts.len(), 1);
    herald.terminate();
    assert!(herald.exited().await.success());
    db.drop_database().await;
}

#[tokio::test]
async fn half_a_tls_pair_stops_the_start_from_a_file_or_the_environment() {
    let dir = tempfile::tempdir().expect("a directory");
    let file = dir.path().join("herald.toml");
    std::fs::write(&file, "tls_cert = \"herald.crt\"\n").expect("write the file");
    let database = format!("sqlite://{}", dir.path().join("herald.db").display());
    let base = [
        ("HERALD_DATABASE_URL", database.as_str()),
        ("HERALD_LISTEN_ADDR", "127.0.0.1:0"),
    ];
    let from_file = refused_start(
        &base,
        &["serve", "--config", file.to_str().expect("a UTF-8 path")],
    )
    .await;
    let from_env = refused_start(
        &[base[0], base[1], ("HERALD_TLS_KEY", "herald.key")],
        &["serve"],
    )
    .await;
    for said in [from_file, from_env] {
        assert!(
            said.contains("HERALD_TLS_CERT") && said.contains("HERALD_TLS_KEY"),
            "{said}"
        );
    }
}

/// Runs `herald ARGS`, which must exit non-zero within [`PATIENCE`] (a
/// server that starts instead is killed and fails the test); returns
/// what it wrote to stderr.
async fn refused_start(settings: &[(&str, &str)], args: &[&str]) -> String {
    let child = tokio::process::Command::from(herald_tests::herald_process(HERALD))
        .args(args)
        .envs(settings.iter().copied())
        .env("NO_COLOR", "1")
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .kill_on_drop(true)
        .spawn()
        .expect("run the herald binary");
    let output = tokio::time::timeout(PATIENCE, child.wait_with_output())
        .await
        .unwrap_or_else(|_| panic!("herald {args:?} kept running instead of refusing to start"))
        .expect("herald's output");
    assert!(!output.status.success(), "{output:?}");
    String::from_utf8_lossy(&output.stderr).into_owned()
}

async fn operator_commands_act_on_the_files_database(backend: Backend) {
    let Some(db) = TestDb::create(backend).await else {
        return;
    };
    // Run from a directory of their own, where a default `herald.db`
    // would appear.
    let dir = tempfile::tempdir().expect("a directory");
    let file = dir.path().join("herald.toml");
    // The file's secret key seals the new tenant's signing secret.
    std::fs::write(
        &file,
        format!(
            "database_url = {:?}\nsecret_key = {TEST_SECRET_KEY:?}\n",
            db.url()
        ),
    )
    .expect("write the file");
    let path = file.to_str().expect("a UTF-8 path");
    let run = |args: &[&str]| {
        let output = herald_tests::herald_process(HERALD)
            .args(args)
            .args(["--config", path])
            .current_dir(dir.path())
            .env("NO_COLOR", "1")
            .output()
            .expect("run the herald binary");
        assert!(output.status.success(), "herald {args:?}: {output:?}");
    };
    run(&["migrate"]);
    run(&["tenant", "create", "acme"]);
    assert!(
        !dir.path().join("herald.db").exists(),
        "a default database was created beside the file"
    );
    let listed = herald_admin(HERALD, db.url(), &["tenant", "list"]);
    assert!(listed.contains("acme"), "{listed}");
    db.drop_database().await;
}

#[tokio::test]
async fn a_start_without_its_database_says_what_to_do() {
    let dir = tempfile::tempdir().expect("a directory");
    let missing_dir = dir.path().join("no").join("such");
    let sqlite = format!("sqlite://{}", missing_dir.join("herald.db").display());
    let said = refused_start(
        &[
            ("HERALD_DATABASE_URL", sqlite.as_str()),
            ("HERALD_LISTEN_ADDR", "127.0.0.1:0"),
        ],
        &["serve"],
    )
    .await;
    assert!(
        said.contains(&format!("mkdir -p {}", missing_dir.display())),
        "{said}"
    );

    // A port nothing listens on.
    let closed = std::net::TcpListener::bind("127.0.0.1:0")
        .and_then(|listener| listener.local_addr())
        .expect("a free port");
    let postgres = format!("postgres://herald:hunter2@{closed}/herald?password=s3cret");
    let said = refused_start(
        &[
            ("HERALD_DATABASE_URL", postgres.as_str()),
            ("HERALD_LISTEN_ADDR", "127.0.0.1:0"),
        ],
        &["serve"],
    )
    .await;
    assert!(
        said.contains(&format!(
            "cannot reach the database at postgres://herald:***@{closed}/herald?password=***"
        )),
        "{said}"
    );
    assert!(
        !said.contains("hunter2") && !said.contains("s3cret"),
        "{said}"
    );
}

#[tokio::test]
async fn a_missing_postgres_database_is_named_with_how_to_create_it() {
    let Some(db) = TestDb::create(Backend::Postgres).await else {
        return;
    };
    let mut url = url::Url::parse(db.url()).expect("a URL");
    url.set_path("herald_never_created");
    let said = refused_start(
        &[
            ("HERALD_DATABASE_URL", url.as_str()),
            ("HERALD_LISTEN_ADDR", "127.0.0.1:0"),
        ],
        &["serve"],
    )
    .await;
    assert!(
        said.contains("\"herald_never_created\" does not exist")
            && said.contains("CREATE DATABASE herald_never_created"),
        "{said}"
    );
    db.drop_database().await;
}
