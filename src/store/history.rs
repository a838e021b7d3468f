//! Purging old history: finished runs with their jobs, and the rows of snapshots
//! deleted long ago. Each call deletes at most one batch, oldest first, and skips
//! rows another replica is purging, so no statement runs long or waits.

use chrono::{DateTime, Utc};
use sqlx::PgPool;

/// Deletes up to `batch` rows of snapshots deleted before `cutoff`. Returns how many.
///
/// # Errors
/// The query fails.
pub async fn purge_deleted_snapshots(
    pool: &PgPool,
    cutoff: DateTime<Utc>,
    batch: i64,
) -> Result<u64, sqlx::Error> {
    let result = sqlx::query(
        "delete from snapshot where snapshot_id in ( \
           select snapshot_id from snapshot \
            where state = 'deleted' and deleted_at < $1 \
            order by deleted_at limit $2 for update skip locked)",
    )
    .bind(cutoff)
    .bind(batch)
    .execute(pool)
    .await?;
    Ok(result.rows_affected())
}

/// Deletes up to `batch` runs that finished before `cutoff`, with their jobs.
/// A run is kept while any of its jobs is open or any snapshot row (live, or
/// deleted but not yet purged) names the run or one of its jobs: the snapshot
/// API links to both. Returns how many runs went.
///
/// # Errors
/// The query fails.
pub async fn purge_finished_runs(
    pool: &PgPool,
    cutoff: DateTime<Utc>,
    batch: i64,
) -> Result<u64, sqlx::Error> {
    // Jobs go with their run (`on delete cascade`).
    let result = sqlx::query(
        "delete from run where run_id in ( \
           select r.run_id from run r \
            where r.status <> 'running' and r.finished_at < $1 \
              and not exists (select 1 from job j where j.run_id = r.run_id \
                              and (j.status in ('pending', 'creating', 'tracking') \
                                   or j.cleanup_due_at is not null)) \
              and not exists (select 1 from snapshot s where s.run_id = r.run_id) \
              and not exists (select 1 from job j join snapshot s on s.job_id = j.job_id \
                              where j.run_id = r.run_id) \
            order by r.finished_at limit $2 for update skip locked)",
    )
    .bind(cutoff)
    .bind(batch)
    .execute(pool)
    .await?;
    Ok(result.rows_affected())
}

/// Deletes up to `batch` events written before `cutoff`. Returns how many.
///
/// # Errors
/// The query fails.
pub async fn purge_old_events(
    pool: &PgPool,
    cutoff: DateTime<Utc>,
    batch: i64,
) -> Result<u64, sqlx::Error> {
    let result = sqlx::query(
        "delete from event where event_id in ( \
           select event_id from event where at < $1 \
            order by at limit $2 for update skip locked)",
    )
    .bind(cutoff)
    .bind(batch)
    .execute(pool)
    .await?;
    Ok(result.rows_affected())
}
