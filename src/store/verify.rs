//! Restore tests on a schedule (`options.verify`): which policies are due a
//! look, the run that queues a policy's tests, and a test's result recorded on
//! its snapshot. Which snapshots are due is decided in `store::freshness`
//! (`verify_due`), from the same targets the policy's freshness counts.

use chrono::{DateTime, TimeDelta, Utc};
use sqlx::{PgConnection, PgPool, types::Json};
use uuid::Uuid;

use crate::{
    domain::{job::NewJob, policy::Policy, status::RunTrigger},
    store::policy_runs,
};

/// Stores a `verify` run of `policy` with one restore-test job per candidate,
/// in one transaction under the policy's row lock: a candidate is kept only
/// while no test of its resource was queued within `every` (two replicas, or
/// two passes, never test a target twice) and its snapshot is still
/// `available` and complete, read `FOR SHARE` (retention then waits, and the
/// deletion skips it while the test is in flight). Nothing is stored when the
/// policy changed since it was read, was disabled or broken, or nothing is
/// due. Returns the run and its number of jobs.
///
/// The run belongs to the policy (its jobs act with the policy's trust) but
/// is no backup run: freshness, `last_run_at`, `last_success_at`, the
/// run metrics and the policy's `max_concurrent` leave trigger `verify` out.
///
/// # Errors
/// The queries fail.
pub async fn insert_verify_run(
    pool: &PgPool,
    policy: &Policy,
    candidates: Vec<NewJob>,
    every: TimeDelta,
    now: DateTime<Utc>,
) -> Result<Option<(Uuid, usize)>, sqlx::Error> {
    let mut tx = pool.begin().await?;
    if !policy_runs::lock_if_unchanged(&mut tx, policy).await? {
        return Ok(None);
    }
    let mut due = Vec::with_capacity(candidates.len());
    for job in candidates {
        if still_due(&mut tx, policy.id, &job, now - every).await? {
            due.push(job);
        }
    }
    if due.is_empty() {
        return Ok(None);
    }
    let run_id =
        policy_runs::insert_with_jobs(&mut tx, policy, RunTrigger::Verify, &due, now).await?;
    tx.commit().await?;
    Ok(Some((run_id, due.len())))
}

/// Whether `job`'s resource has had no test since `since` and its snapshot
/// can still be restored (share-locked until the transaction ends).
async fn still_due(
    conn: &mut PgConnection,
    policy_id: Uuid,
    job: &NewJob,
    since: DateTime<Utc>,
) -> Result<bool, sqlx::Error> {
    let Some(restore) = &job.restore else {
        return Ok(false);
    };
    let tested: bool = sqlx::query_scalar(
        "select exists (select 1 from job where kind = 'verify' and policy_id = $1 \
             and resource_type = $2 and resource_id = $3 and created_at > $4)",
    )
    .bind(policy_id)
    .bind(job.resource_type)
    .bind(&job.resource_id)
    .bind(since)
    .fetch_one(&mut *conn)
    .await?;
    if tested {
        return Ok(false);
    }
    let restorable: Option<i32> = sqlx::query_scalar(
        "select 1 from snapshot where snapshot_id = $1 and state = 'available' and complete \
         for share",
    )
    .bind(restore.snapshot_id)
    .fetch_optional(&mut *conn)
    .await?;
    Ok(restorable.is_some())
}

/// Records an ended restore test's result on the snapshot it tested: a pass
/// sets `verified_at` and clears `verify_error`; a failure or time-out sets
/// `verify_error` `{code, message, at}` and keeps `verified_at`. A failure is
/// the snapshot's only when the test reached the cloud's verdict on it: it
/// made something, or Nova/Cinder refused the create or no longer had the
/// snapshot (`create_refused`, `resource_not_found`). A test that never ran
/// (its start window passed, a refused trust, quota, creates exhausted) says
/// nothing of the backup: its target just stays unverified. A cancelled test,
/// and any other kind of job, records nothing. The snapshot row is
/// taken last (the lock order: policy, run, job, snapshot); its trigger
/// writes `snapshot.verified` / `snapshot.verify_failed`.
///
/// # Errors
/// The query fails.
pub async fn record_verification(
    conn: &mut PgConnection,
    job_id: Uuid,
    now: DateTime<Utc>,
) -> Result<(), sqlx::Error> {
    sqlx::query(
        "update snapshot s set \
             verified_at = case when j.status = 'succeeded' then $2 else s.verified_at end, \
             verify_error = case when j.status = 'succeeded' then null \
                 else coalesce(j.error, $3) || jsonb_build_object('at', $2) end \
         from job j \
         where j.job_id = $1 and j.kind = 'verify' \
           and (j.status = 'succeeded' \
                or (j.status in ('failed', 'timed_out') \
                    and (coalesce(j.restored ->> 'server_id', j.restored ->> 'volume_id', \
                                  j.restored ->> 'group_id') is not null \
                         or j.error ->> 'code' in ('create_refused', 'resource_not_found')))) \
           and s.snapshot_id = (j.restore ->> 'snapshot_id')::uuid",
    )
    .bind(job_id)
    .bind(now)
    .bind(Json(crate::domain::job::JobError::new(
        "verify_failed",
        "the restore test failed",
    )))
    .execute(conn)
    .await?;
    Ok(())
}
