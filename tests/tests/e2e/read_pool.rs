//! The read-only calls (listings, lookups, the backlog) have a pool of
//! connections of their own (`read_pool_size`), so however many of them
//! wait, enqueues still find a connection.

use std::time::Duration;

use herald_proto::v1::{
    EnqueueRequest, ListAuditEventsRequest, audit_service_client::AuditServiceClient,
};
use herald_tests::{Backend, PATIENCE, TestHerald};
use sea_orm::{ConnectionTrait, Database, DbBackend, Statement, TransactionTrait};
use tonic::transport::Channel;

/// More audit listings than the whole write pool has connections, all
/// stuck behind a lock on `audit_events`: two hold the read pool's two
/// connections, the others wait for one, and an enqueue goes through at
/// once. (With one pool for everything, the listings took every
/// connection and the enqueue waited for the lock to go.)
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn readers_stuck_behind_a_lock_leave_enqueues_their_connections() {
    let Some(herald) =
        TestHerald::start_with(Backend::Postgres, |config| config.read_pool_size = 2).await
    else {
        return;
    };
    let other = Database::connect(herald.database_url())
        .await
        .expect("connect");
    let holder = other.begin().await.expect("begin");
    holder
        .execute_unprepared("LOCK TABLE audit_events IN ACCESS EXCLUSIVE MODE")
        .await
        .expect("lock");
    let channel = Channel::from_shared(format!("http://{}", herald.addr()))
        .expect("a URL")
        .connect()
        .await
        .expect("connect");
    let readers: Vec<_> = (0..24)
        .map(|_| {
            let mut client = AuditServiceClient::new(channel.clone());
            tokio::spawn(async move {
                client
                    .list_audit_events(ListAuditEventsRequest::default())
                    .await
            })
        })
        .collect();
    let waiting = "SELECT COUNT(*) FROM pg_stat_activity \
                   WHERE wait_event_type = 'Lock' AND query LIKE '%audit_events%'";
    let started = std::time::Instant::now();
    loop {
        let count: i64 = other
            .query_one_raw(Statement::from_string(DbBackend::Postgres, waiting))
            .await
            .expect("look")
            .expect("a row")
            .try_get_by_index(0)
            .expect("a count");
        if count >= 2 {
            break;
        }
        assert!(
            started.elapsed() < PATIENCE,
            "the listings never reached the lock"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    // Let the other listings queue for connections too.
    tokio::time::sleep(Duration::from_millis(300)).await;
    let enqueued = tokio::time::timeout(
        Duration::from_secs(3),
        herald.client().enqueue(EnqueueRequest {
            url: "http://127.0.0.1:9/while-reading".into(),
            body: b"{}".to_vec(),
            ..Default::default()
        }),
    )
    .await
    .expect("the enqueue found a connection while every reader waited");
    enqueued.expect("enqueued");
    holder.rollback().await.expect("unlock");
    for reader in readers {
        reader
            .await
            .expect("the listing task")
            .expect("each listing answers once the lock is gone");
    }
    other.close().await.expect("close");
    herald.stop().await;
}
