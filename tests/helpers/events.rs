//! Waiting for events to become readable (see `store::events`: an event is read
//! once every transaction older than it has ended, on the whole server).

use sqlx::PgPool;

/// Waits until every committed event is readable: a transaction of another
/// database on the same server (another test's) holds the horizon back a moment.
pub async fn settled_events(pool: &PgPool) {
    for _ in 0..500 {
        let (committed, readable): (i64, i64) = sqlx::query_as(
            "select count(*), count(*) filter (where xact_id < \
                 (select pg_snapshot_xmin(pg_current_snapshot())::text::bigint)) from event",
        )
        .fetch_one(pool)
        .await
        .unwrap();
        if committed == readable {
            return;
        }
        tokio::time::sleep(std::time::Duration::from_millis(20)).await;
    }
    panic!("committed events stayed unreadable for 10 s");
}
