//! History retention: finished runs with their jobs, and the rows of snapshots
//! deleted long ago, are purged on the injected clock; nothing a live row names goes.

use std::collections::BTreeSet;

use chrono::TimeDelta;
use serde_json::json;
use sqlx::PgPool;
use stacksnap::{
    clock::Clock as _,
    domain::job::JobStatus,
    engine::{Engine, EngineConfig},
    store::snapshots,
};
use stacksnap_sim::{Fault, FaultRule};
use uuid::Uuid;

use crate::helpers::{Harness, engine_config, harness};

/// The harness's engine with a retention of one day, purging one row per statement.
fn purger(h: &Harness) -> Engine {
    Engine::new(
        h.pool.clone(),
        h.cloud.clone(),
        std::sync::Arc::new(h.clock.clone()),
        EngineConfig {
            history_retention: TimeDelta::days(1),
            history_batch: 1,
            ..engine_config()
        },
    )
}

async fn ids(h: &Harness, sql: &'static str) -> BTreeSet<Uuid> {
    sqlx::query_scalar(sql)
        .fetch_all(&h.pool)
        .await
        .unwrap()
        .into_iter()
        .collect()
}

async fn run_of(h: &Harness, job: Uuid) -> Uuid {
    h.job(job).await.run_id
}

/// Deletes a job's snapshot and works until the row is `deleted`.
async fn delete_snapshot_of(h: &Harness, job: Uuid) {
    let id: Uuid = sqlx::query_scalar("select snapshot_id from snapshot where job_id = $1")
        .bind(job)
        .fetch_one(&h.pool)
        .await
        .unwrap();
    snapshots::request_delete(&h.pool, "default", id, h.clock.now())
        .await
        .unwrap();
    for _ in 0..100 {
        h.work().await;
        let state: String = sqlx::query_scalar("select state from snapshot where snapshot_id = $1")
            .bind(id)
            .fetch_one(&h.pool)
            .await
            .unwrap();
        if state == "deleted" {
            return;
        }
        h.clock.advance(TimeDelta::seconds(5));
        tokio::time::sleep(std::time::Duration::from_millis(20)).await;
    }
    panic!("snapshot {id} was not deleted");
}

#[sqlx::test]
async fn history_older_than_the_retention_is_purged_and_what_live_rows_name_is_kept(pool: PgPool) {
    // Arrange
    let h = harness(pool).await;
    let volume = h.sim.create_volume("data", 1, &[]);
    // A snapshot still kept: its run and job stay however old.
    let kept = h.adhoc("volume", &volume, json!({})).await;
    h.finish(kept).await;
    // A snapshot deleted long ago: its row, run and job go.
    let deleted = h.adhoc("volume", &volume, json!({})).await;
    h.finish(deleted).await;
    delete_snapshot_of(&h, deleted).await;
    // A job that failed without making anything: its run and job go.
    let failed = h
        .adhoc("volume", "7d9c4a1e-0000-4000-8000-000000000000", json!({}))
        .await;
    h.finish(failed).await;
    // A run still running (its snapshot stays `creating`, its job has a week): kept.
    h.sim
        .inject(FaultRule::new("cinder.create_snapshot", Fault::SnapshotStuck).times(1));
    let open = h.adhoc("volume", &volume, json!({"timeout": "7d"})).await;
    h.drive(open, |j| j.status == JobStatus::Tracking).await;
    h.clock.advance(TimeDelta::days(2));
    // Ended just now, by the injected clock: within the retention, kept.
    let recent = h
        .adhoc("volume", "7d9c4a1e-0000-4000-8000-000000000001", json!({}))
        .await;
    h.finish(recent).await;
    assert_eq!(h.job(open).await.status, JobStatus::Tracking);
    let (kept_run, deleted_run, failed_run, open_run, recent_run) = (
        run_of(&h, kept).await,
        run_of(&h, deleted).await,
        run_of(&h, failed).await,
        run_of(&h, open).await,
        run_of(&h, recent).await,
    );

    // Act: one row per statement, so the pass takes several batches.
    let purged = purger(&h).purge_history().await.unwrap();

    // Assert
    assert_eq!((purged.runs, purged.snapshots), (2, 1));
    assert_eq!(
        ids(&h, "select run_id from run").await,
        BTreeSet::from([kept_run, open_run, recent_run])
    );
    assert_eq!(
        ids(&h, "select job_id from job").await,
        BTreeSet::from([kept, open, recent]),
        "jobs go with their run"
    );
    assert_eq!(
        ids(&h, "select job_id from snapshot").await,
        BTreeSet::from([kept])
    );
    assert!(
        !ids(&h, "select run_id from run")
            .await
            .contains(&deleted_run)
    );
    assert!(
        !ids(&h, "select run_id from run")
            .await
            .contains(&failed_run)
    );
    let open_status: String = sqlx::query_scalar("select status from run where run_id = $1")
        .bind(open_run)
        .fetch_one(&h.pool)
        .await
        .unwrap();
    assert_eq!(open_status, "running");
    let again = purger(&h).purge_history().await.unwrap();
    assert_eq!((again.runs, again.snapshots), (0, 0), "nothing else is due");
}
