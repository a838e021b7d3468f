//! Transactions that span the run, job and snapshot tables: a job's step and
//! end (with its snapshot record and its run's completion), a cancel, the work
//! a deleted or disabled policy leaves, and a one-off run inserted with its job.
//! They live here so that `jobs` and `runs` need not call each other.

use chrono::{DateTime, Utc};
use sqlx::{PgConnection, PgPool, types::Json};
use uuid::Uuid;

use super::{
    Scope,
    jobs::{self, Job, JobUpdate, NewJob},
    runs, snapshots,
};
use crate::domain::{
    job::{JobError, JobStatus},
    status::RunTrigger,
};

/// Records a step's findings and gives the lease back. When the job ends, its run
/// is completed if this was its last open job. Returns `false` when the lease was
/// lost or the job ended meanwhile (e.g. cancelled): nothing is written then.
///
/// # Errors
/// The query fails.
pub async fn record_step(
    pool: &PgPool,
    job_id: Uuid,
    owner: Uuid,
    now: DateTime<Utc>,
    update: &JobUpdate,
) -> Result<bool, sqlx::Error> {
    let mut tx = pool.begin().await?;
    let terminal = update.status.is_some_and(JobStatus::is_terminal);
    if terminal {
        // An end records a snapshot and may end the run: take the policy and the
        // run before the job (the lock order of `delete_policy`, DESIGN.md).
        lock_job_owners(&mut tx, job_id).await?;
    }
    let result = sqlx::query(
        "update job set \
           status = coalesce($3, status), \
           image_id = coalesce($4, image_id), \
           volume_snapshots = coalesce($5, volume_snapshots), \
           consistency = coalesce($6, consistency), \
           error = case when $7 then $8 else error end, \
           timeline = timeline || $9, \
           openstack_calls = openstack_calls + $10, \
           resource_name = coalesce($11, resource_name), \
           not_before = coalesce($12, $13), \
           finished_at = case when $14 then $13 else finished_at end, \
           group_snapshot_id = coalesce($15, group_snapshot_id), \
           image_size_bytes = coalesce($16, image_size_bytes), \
           attempt = attempt - case when $17 then 1 else 0 end, \
           create_unclear_at = case when $18 then $19 else create_unclear_at end, \
           restored = coalesce($20, restored), \
           cleanup_due_at = coalesce($21, cleanup_due_at), \
           source_flavor = coalesce($22, source_flavor), \
           source_az = coalesce($23, source_az), \
           lease_owner = null, lease_expires_at = null \
         where job_id = $1 and lease_owner = $2 and status in ('pending', 'creating', 'tracking')",
    )
    .bind(job_id)
    .bind(owner)
    .bind(update.status)
    .bind(&update.image_id)
    .bind(update.volume_snapshots.as_ref().map(Json))
    .bind(update.consistency)
    .bind(update.error.is_some())
    .bind(update.error.clone().flatten().map(Json))
    .bind(Json(&update.timeline))
    .bind(update.calls)
    .bind(&update.resource_name)
    .bind(update.not_before)
    .bind(now)
    .bind(terminal)
    .bind(&update.group_snapshot_id)
    .bind(update.image_size_bytes.and_then(|b| i64::try_from(b).ok()))
    .bind(update.create_not_sent)
    .bind(update.create_unclear_at.is_some())
    .bind(update.create_unclear_at.flatten())
    .bind(update.restored.as_ref().map(Json))
    .bind(update.cleanup_due_at)
    .bind(update.source_flavor.as_ref().map(Json))
    .bind(&update.source_az)
    .execute(&mut *tx)
    .await?;
    if result.rows_affected() != 1 {
        // Cancelled while this step ran: keep what the step made, so it is cleaned up, not lost.
        // A move's deletion of its source was not recorded in time: it never begins.
        // The failed update locked nothing: take the policy and run before the job here too.
        if !terminal {
            lock_job_owners(&mut tx, job_id).await?;
        }
        let kept = sqlx::query(
            "update job set image_id = coalesce(image_id, $3), volume_snapshots = coalesce($4, volume_snapshots), \
                 group_snapshot_id = coalesce(group_snapshot_id, $5), \
                 restored = coalesce($6 - 'source_deletion', restored), \
                 cleanup_due_at = case when kind <> 'snapshot' and $6::jsonb is not null \
                     then coalesce(cleanup_due_at, $7) else cleanup_due_at end, \
                 lease_owner = null, lease_expires_at = null \
             where job_id = $1 and lease_owner = $2 and status = 'cancelled'",
        )
        .bind(job_id)
        .bind(owner)
        .bind(&update.image_id)
        .bind(update.volume_snapshots.as_ref().map(Json))
        .bind(&update.group_snapshot_id)
        .bind(update.restored.as_ref().map(Json))
        .bind(now)
        .execute(&mut *tx)
        .await?;
        if kept.rows_affected() == 1 {
            snapshots::record_from_job(&mut tx, job_id).await?;
            tx.commit().await?;
        }
        return Ok(false);
    }
    if terminal {
        let run_id: Uuid = sqlx::query_scalar("select run_id from job where job_id = $1")
            .bind(job_id)
            .fetch_one(&mut *tx)
            .await?;
        snapshots::record_from_job(&mut tx, job_id).await?;
        super::verify::record_verification(&mut tx, job_id, now).await?;
        runs::complete_run_if_done(&mut tx, run_id, now).await?;
    }
    tx.commit().await?;
    Ok(true)
}

/// Takes, in the service's lock order (policy, run, job: see DESIGN.md), the
/// locks a job's end needs before it touches the job row: the policy `FOR KEY
/// SHARE` (what the snapshot row's foreign key takes; a policy being deleted
/// makes this wait, and the snapshot is then recorded without a policy) and the
/// run `FOR UPDATE` (what `complete_run_if_done` takes). The ids are read
/// without a lock: a job never changes run, and its policy only goes away.
///
/// # Errors
/// The query fails.
async fn lock_job_owners(conn: &mut PgConnection, job_id: Uuid) -> Result<(), sqlx::Error> {
    lock_scoped_job_owners(conn, Scope::AllProjects, job_id)
        .await
        .map(|_| ())
}

/// [`lock_job_owners`] for a job of `scope` only: returns `false`, having
/// locked nothing, when there is no such job in it.
///
/// # Errors
/// The query fails.
async fn lock_scoped_job_owners(
    conn: &mut PgConnection,
    scope: Scope<'_>,
    job_id: Uuid,
) -> Result<bool, sqlx::Error> {
    let owners: Option<(Uuid, Option<Uuid>)> = sqlx::query_as(
        "select run_id, policy_id from job where job_id = $1 and ($2::text is null or project_id = $2)",
    )
    .bind(job_id)
    .bind(scope.project())
    .fetch_optional(&mut *conn)
    .await?;
    let Some((run_id, policy_id)) = owners else {
        return Ok(false);
    };
    if let Some(policy_id) = policy_id {
        sqlx::query("select 1 from policy where policy_id = $1 for key share")
            .bind(policy_id)
            .execute(&mut *conn)
            .await?;
    }
    sqlx::query("select 1 from run where run_id = $1 for update")
        .bind(run_id)
        .execute(&mut *conn)
        .await?;
    Ok(true)
}

/// What a cancel request found.
#[derive(Debug)]
pub enum CancelOutcome {
    Cancelled(Job),
    AlreadyEnded(Job),
    /// A move whose new server is usable and whose source is being deleted:
    /// it can no longer be cancelled (nothing it made is deleted any more).
    SourceBeingDeleted(Job),
    NotFound,
}

/// Cancels a job that has not ended; workers see it and stop. `actor` (who
/// cancels it) is recorded in the events.
///
/// # Errors
/// The query fails.
pub async fn cancel_job(
    pool: &PgPool,
    scope: impl Into<Scope<'_>>,
    job_id: Uuid,
    now: DateTime<Utc>,
    actor: &str,
) -> Result<CancelOutcome, sqlx::Error> {
    let scope: Scope<'_> = scope.into();
    let mut tx = pool.begin().await?;
    super::events::act_as(&mut tx, actor).await?;
    // Scoped before any lock: a caller of another project must not queue behind,
    // nor hold, the locks of a job it may not even see.
    if !lock_scoped_job_owners(&mut tx, scope, job_id).await? {
        return Ok(CancelOutcome::NotFound);
    }
    let cancelled: Option<Uuid> = sqlx::query_scalar(
        "update job set status = 'cancelled', finished_at = $3, cancel_requested = true, \
         error = case when kind = 'snapshot' then $4 else $5 end, \
         cleanup_due_at = case when kind <> 'snapshot' and status in ('creating', 'tracking') then $3 \
             else cleanup_due_at end \
         where ($1::text is null or project_id = $1) and job_id = $2 and status in ('pending', 'creating', 'tracking') \
           and not coalesce(restored ? 'source_deletion', false) returning run_id",
    )
    .bind(scope.project())
    .bind(job_id)
    .bind(now)
    .bind(Json(JobError::new("cancelled", "cancelled on request; artefacts made so far are kept")))
    .bind(Json(JobError::new("cancelled", "cancelled on request; what the restore made is deleted")))
    .fetch_optional(&mut *tx)
    .await?;
    if let Some(run_id) = cancelled {
        snapshots::record_from_job(&mut tx, job_id).await?;
        runs::complete_run_if_done(&mut tx, run_id, now).await?;
    }
    tx.commit().await?;
    Ok(
        match (cancelled, jobs::fetch_job(pool, scope, job_id).await?) {
            (Some(_), Some(job)) => CancelOutcome::Cancelled(job),
            (None, Some(job)) if !job.status.is_terminal() => {
                CancelOutcome::SourceBeingDeleted(job)
            }
            (None, Some(job)) => CancelOutcome::AlreadyEnded(job),
            (_, None) => CancelOutcome::NotFound,
        },
    )
}

/// Why a policy's work not yet started stops.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum PolicyStop {
    /// The policy is being deleted; `delete_snapshots` is the `snapshots=delete` choice.
    Deleted { delete_snapshots: bool },
    /// The policy is being disabled.
    Disabled,
}

impl PolicyStop {
    fn error(self, what: &str) -> JobError {
        match self {
            Self::Deleted { .. } => JobError::new(
                "policy_deleted",
                format!("the policy was deleted before {what}"),
            ),
            Self::Disabled => JobError::new(
                "policy_disabled",
                format!("the policy was disabled before {what}"),
            ),
        }
    }
}

/// Stops the work of a policy that has not started, inside the transaction that
/// deletes or disables it: runs not yet resolved into jobs are failed, pending
/// jobs are cancelled, and runs left without open jobs end. Jobs already creating
/// or tracking finish (the cloud may be making their artefacts); when the policy
/// is deleted with its snapshots, what they make is deleted as soon as it is
/// recorded.
///
/// The caller holds the policy's row lock. Locks are then taken in the service's
/// order (policy, run, job: see DESIGN.md): the policy's open runs first, then
/// their jobs. A worker resolving one of these runs holds the run until it has
/// inserted the run's jobs, so the run lock waits for it, and the job statements,
/// which read after it committed, cancel the jobs it made.
///
/// # Errors
/// The query fails.
pub async fn stop_policy_work(
    conn: &mut PgConnection,
    policy_id: Uuid,
    stop: PolicyStop,
    now: DateTime<Utc>,
) -> Result<(), sqlx::Error> {
    let open_runs: Vec<Uuid> = sqlx::query_scalar(
        "select run_id from run where policy_id = $1 and status = 'running' order by run_id for update",
    )
    .bind(policy_id)
    .fetch_all(&mut *conn)
    .await?;
    // A worker resolving one of these runs later finds its lease gone and inserts no jobs.
    sqlx::query(
        "update run set status = 'failed', error = $3, finished_at = $2, \
             resolved_at = coalesce(resolved_at, $2), lease_owner = null, lease_expires_at = null \
         where run_id = any($1) and status = 'running' and resolved_at is null",
    )
    .bind(&open_runs)
    .bind(now)
    .bind(Json(stop.error("this run's targets were resolved")))
    .execute(&mut *conn)
    .await?;
    // Pending jobs before those in flight: a job that starts meanwhile is then
    // in flight by the second statement, and is not missed by both.
    let cancelled: Vec<(Uuid, Uuid, bool)> = sqlx::query_as(
        "update job set status = 'cancelled', finished_at = $2, cancel_requested = true, error = $3 \
         where policy_id = $1 and status = 'pending' \
         returning job_id, run_id, \
             (image_id is not null or group_snapshot_id is not null or volume_snapshots <> '[]')",
    )
    .bind(policy_id)
    .bind(now)
    .bind(Json(stop.error("this job started")))
    .fetch_all(&mut *conn)
    .await?;
    if stop
        == (PolicyStop::Deleted {
            delete_snapshots: true,
        })
    {
        sqlx::query(
            "update job set delete_on_record = true \
             where policy_id = $1 and status in ('creating', 'tracking')",
        )
        .bind(policy_id)
        .execute(&mut *conn)
        .await?;
    }
    // A pending job that went back to wait after an attempt may hold artefacts: keep them, to be cleaned up.
    for (job_id, _, made) in &cancelled {
        if *made {
            snapshots::record_from_job(conn, *job_id).await?;
        }
    }
    let mut run_ids: Vec<Uuid> = cancelled.iter().map(|(_, run_id, _)| *run_id).collect();
    run_ids.sort_unstable();
    run_ids.dedup();
    for run_id in run_ids {
        runs::complete_run_if_done(conn, run_id, now).await?;
    }
    Ok(())
}

/// Inserts a resolved one-off run asked for by `created_by` with its single job, in one transaction.
///
/// # Errors
/// The query fails.
pub async fn insert_adhoc_run(
    pool: &PgPool,
    project_id: &str,
    created_by: Option<&str>,
    job: &NewJob,
    authority: runs::RunAuthority<'_>,
    now: DateTime<Utc>,
) -> Result<Uuid, sqlx::Error> {
    insert_single_job_run(
        pool,
        project_id,
        created_by,
        job,
        authority,
        now,
        RunTrigger::Adhoc,
    )
    .await
    .and_then(|run| {
        run.ok_or_else(|| sqlx::Error::Protocol("a one-off snapshot job carried a restore".into()))
    })
}

/// Inserts a resolved run of `trigger` (a one-off snapshot, a restore) asked
/// for by `created_by`, belonging to no policy, with its single job, in one transaction.
/// A restore is queued only while its snapshot is `available` and complete,
/// read under a share lock: retention, a `DELETE` or a policy's deletion that
/// marks it `deleting` waits for this transaction, and the deletion itself
/// then waits for the restore (`store::snapshots::deletion`). `None`: the
/// snapshot stopped being restorable since it was read.
///
/// # Errors
/// The query fails.
pub async fn insert_single_job_run(
    pool: &PgPool,
    project_id: &str,
    created_by: Option<&str>,
    job: &NewJob,
    authority: runs::RunAuthority<'_>,
    now: DateTime<Utc>,
    trigger: RunTrigger,
) -> Result<Option<Uuid>, sqlx::Error> {
    let run_id = Uuid::now_v7();
    let spec = serde_json::to_value(&job.options).expect("options serialise");
    let mut tx = pool.begin().await?;
    if let Some(restore) = &job.restore {
        let restorable: Option<i32> = sqlx::query_scalar(
            "select 1 from snapshot where snapshot_id = $1 and state = 'available' and complete \
             for share",
        )
        .bind(restore.snapshot_id)
        .fetch_optional(&mut *tx)
        .await?;
        if restorable.is_none() {
            return Ok(None);
        }
    }
    let run = runs::NewRun {
        authority,
        created_by,
        ..runs::NewRun::resolved(run_id, project_id, trigger, &spec, now)
    };
    runs::insert_run(&mut tx, &run).await?;
    jobs::insert_jobs(
        &mut tx,
        run_id,
        project_id,
        None,
        std::slice::from_ref(job),
        now,
    )
    .await?;
    tx.commit().await?;
    Ok(Some(run_id))
}
