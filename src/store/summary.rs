//! The status summary (`GET /v1/status`): counts over what one scope may see,
//! from the database, so every replica answers the same.

use chrono::{DateTime, TimeDelta, Utc};
use sqlx::PgPool;

use super::{Scope, freshness};

/// Counts of policies, failures and misses in a scope.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Summary {
    /// Enabled policies the scheduler has not set aside.
    pub active: i64,
    /// Disabled policies the scheduler has not set aside.
    pub disabled: i64,
    /// Policies the scheduler set aside (`broken_error`).
    pub broken: i64,
    /// Enabled policies (broken ones included) with at least one stale target.
    pub stale: i64,
    /// Snapshot jobs that failed or timed out in the 24 hours before now.
    pub jobs_failed_24h: i64,
    /// Restore jobs that failed or timed out in the 24 hours before now.
    pub restores_failed_24h: i64,
    /// Snapshots whose deletion failed (`delete_failed`).
    pub deletions_failed: i64,
    /// Snapshots whose deletion Cinder blocks (`delete_blocked`).
    pub deletions_blocked: i64,
    /// Fire times missed in the 24 hours before now.
    pub runs_missed_24h: i64,
    /// Targets of enabled policies with `options.verify` whose newest snapshots
    /// have no passing restore test within the cadence.
    pub unverified_resources: i64,
}

#[derive(sqlx::FromRow)]
struct Counts {
    active: i64,
    disabled: i64,
    broken: i64,
    jobs_failed_24h: i64,
    restores_failed_24h: i64,
    deletions_failed: i64,
    deletions_blocked: i64,
    runs_missed_24h: i64,
}

/// The summary of `scope` at `now`, in two queries (counts, then stale policies).
///
/// # Errors
/// A query fails.
pub async fn fetch_summary(
    pool: &PgPool,
    scope: impl Into<Scope<'_>>,
    now: DateTime<Utc>,
) -> Result<Summary, sqlx::Error> {
    let scope: Scope<'_> = scope.into();
    let day_ago = now - TimeDelta::hours(24);
    let counts: Counts = sqlx::query_as(
        "select \
             (select count(*) from policy where ($1::text is null or project_id = $1) \
                and enabled and broken_error is null) as active, \
             (select count(*) from policy where ($1::text is null or project_id = $1) \
                and not enabled and broken_error is null) as disabled, \
             (select count(*) from policy where ($1::text is null or project_id = $1) \
                and broken_error is not null) as broken, \
             (select count(*) from job where ($1::text is null or project_id = $1) and kind = 'snapshot' \
                and status in ('failed', 'timed_out') and finished_at > $2 and finished_at <= $3) as jobs_failed_24h, \
             (select count(*) from job where ($1::text is null or project_id = $1) and kind = 'restore' \
                and status in ('failed', 'timed_out') and finished_at > $2 and finished_at <= $3) as restores_failed_24h, \
             (select count(*) from snapshot where ($1::text is null or project_id = $1) \
                and state = 'delete_failed') as deletions_failed, \
             (select count(*) from snapshot where ($1::text is null or project_id = $1) \
                and state = 'delete_blocked') as deletions_blocked, \
             (select count(*) from run where ($1::text is null or project_id = $1) \
                and status = 'missed' and scheduled_for > $2 and scheduled_for <= $3) as runs_missed_24h",
    )
    .bind(scope.project())
    .bind(day_ago)
    .bind(now)
    .fetch_one(pool)
    .await?;
    let (stale, unverified_resources) =
        freshness::count_stale_and_unverified(pool, scope, now).await?;
    Ok(Summary {
        active: counts.active,
        disabled: counts.disabled,
        broken: counts.broken,
        stale,
        jobs_failed_24h: counts.jobs_failed_24h,
        restores_failed_24h: counts.restores_failed_24h,
        deletions_failed: counts.deletions_failed,
        deletions_blocked: counts.deletions_blocked,
        runs_missed_24h: counts.runs_missed_24h,
        unverified_resources,
    })
}
