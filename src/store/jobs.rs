//! The `job` table: one resource within a run, claimed and advanced by workers.

use chrono::{DateTime, TimeDelta, Utc};
use sqlx::{PgConnection, PgPool, Row as _, types::Json};
use uuid::Uuid;

use super::{
    Scope,
    row::{self, Keyed, Named},
};

use crate::domain::{
    job::{
        JobError, JobKind, JobOptions, JobStatus, ObtainedConsistency, TimelineEntry,
        VolumeSnapshotState,
    },
    policy::ResourceType,
    restore::{RestoreSpec, Restored},
};

/// A stored job.
#[derive(Debug, Clone, sqlx::FromRow)]
pub struct Job {
    pub job_id: Uuid,
    pub run_id: Uuid,
    pub project_id: String,
    pub policy_id: Option<Uuid>,
    pub resource_type: ResourceType,
    pub resource_id: String,
    pub resource_name: Option<String>,
    pub status: JobStatus,
    pub attempt: i32,
    pub options: Json<JobOptions>,
    pub image_id: Option<String>,
    pub group_snapshot_id: Option<String>,
    pub volume_snapshots: Json<Vec<VolumeSnapshotState>>,
    pub consistency: Option<ObtainedConsistency>,
    pub error: Option<Json<JobError>>,
    pub timeline: Json<Vec<TimelineEntry>>,
    pub openstack_calls: i32,
    pub not_before: DateTime<Utc>,
    pub start_by: DateTime<Utc>,
    pub deadline: Option<DateTime<Utc>>,
    /// When the last create request whose outcome is unknown was sent; while
    /// set, every further create is preceded by a look-up.
    pub create_unclear_at: Option<DateTime<Utc>>,
    pub created_at: DateTime<Utc>,
    pub started_at: Option<DateTime<Utc>>,
    pub finished_at: Option<DateTime<Utc>>,
    pub kind: JobKind,
    /// A restore job's request, as validated.
    pub restore: Option<Json<RestoreSpec>>,
    /// What a restore job made.
    pub restored: Option<Json<Restored>>,
    /// When the clean-up of what a failed or cancelled restore made is next due.
    pub cleanup_due_at: Option<DateTime<Utc>>,
}

impl Keyed for Job {
    const TABLE: &'static str = "job";
    const KEY: &'static str = "job_id";
}

macro_rules! job_columns {
    () => {
        "job_id, run_id, project_id, policy_id, resource_type, resource_id, resource_name, status, attempt, \
         options, image_id, group_snapshot_id, volume_snapshots, consistency, error, timeline, openstack_calls, not_before, \
         start_by, deadline, create_unclear_at, created_at, started_at, finished_at, kind, restore, restored, \
         cleanup_due_at"
    };
}

pub use crate::domain::job::NewJob;

/// Inserts the jobs of a run.
///
/// # Errors
/// The query fails.
pub async fn insert_jobs(
    conn: &mut PgConnection,
    run_id: Uuid,
    project_id: &str,
    policy_id: Option<Uuid>,
    jobs: &[NewJob],
    now: DateTime<Utc>,
) -> Result<(), sqlx::Error> {
    // One statement for the whole run: a selector may match tens of thousands of resources.
    let ids: Vec<Uuid> = jobs.iter().map(|j| j.job_id).collect();
    let types: Vec<ResourceType> = jobs.iter().map(|j| j.resource_type).collect();
    let resources: Vec<&str> = jobs.iter().map(|j| j.resource_id.as_str()).collect();
    let names: Vec<Option<&str>> = jobs.iter().map(|j| j.resource_name.as_deref()).collect();
    let options: Vec<serde_json::Value> = jobs
        .iter()
        .map(|j| serde_json::to_value(&j.options).expect("options serialise"))
        .collect();
    let start_by: Vec<DateTime<Utc>> = jobs.iter().map(|j| j.start_by).collect();
    let kinds: Vec<JobKind> = jobs.iter().map(|j| j.kind).collect();
    let restores: Vec<Option<serde_json::Value>> = jobs
        .iter()
        .map(|j| {
            j.restore
                .as_ref()
                .map(|r| serde_json::to_value(r).expect("a restore serialises"))
        })
        .collect();
    sqlx::query(
        "insert into job (job_id, run_id, project_id, policy_id, resource_type, resource_id, resource_name, \
             options, start_by, not_before, created_at, kind, restore) \
         select t.job_id, $1, $2, $3, t.resource_type, t.resource_id, t.resource_name, t.options, t.start_by, $4, $4, \
             t.kind, t.restore \
         from unnest($5::uuid[], $6::text[], $7::text[], $8::text[], $9::jsonb[], $10::timestamptz[], \
                     $11::text[], $12::jsonb[]) \
             as t(job_id, resource_type, resource_id, resource_name, options, start_by, kind, restore)",
    )
    .bind(run_id)
    .bind(project_id)
    .bind(policy_id)
    .bind(now)
    .bind(&ids)
    .bind(&types)
    .bind(&resources)
    .bind(&names)
    .bind(&options)
    .bind(&start_by)
    .bind(&kinds)
    .bind(&restores)
    .execute(conn)
    .await?;
    Ok(())
}

/// Reads one job of a project.
///
/// # Errors
/// The query fails.
pub async fn fetch_job(
    pool: &PgPool,
    scope: impl Into<Scope<'_>>,
    job_id: Uuid,
) -> Result<Option<Job>, sqlx::Error> {
    let scope: Scope<'_> = scope.into();
    sqlx::query_as::<_, Named<Job>>(concat!(
        "select ",
        job_columns!(),
        " from job where ($1::text is null or project_id = $1) and job_id = $2"
    ))
    .bind(scope.project())
    .bind(job_id)
    .fetch_optional(pool)
    .await
    .map(|row| row.map(Named::into_inner))
}

/// The succeeded job that took the newest complete, still available snapshot
/// of a resource in a project, taken at or after `since`: a one-off request
/// with `if_older_than` reuses it instead of taking another. With
/// `quiesced_only` (the request requires quiescing) only a quiesced one counts.
///
/// # Errors
/// The query fails.
pub async fn fetch_reusable_job(
    pool: &PgPool,
    project_id: &str,
    resource_type: ResourceType,
    resource_id: &str,
    since: DateTime<Utc>,
    quiesced_only: bool,
) -> Result<Option<Job>, sqlx::Error> {
    sqlx::query_as::<_, Named<Job>>(concat!(
        "select ",
        job_columns!(),
        " from job where status = 'succeeded' and job_id = ( \
             select s.job_id from snapshot s join job j on j.job_id = s.job_id \
             where s.project_id = $1 and s.resource_type = $2 and s.resource_id = $3 \
                 and s.complete and not s.duplicate and s.state = 'available' and s.taken_at >= $4 \
                 and (not $5 or j.consistency = 'quiesced') \
             order by s.taken_at desc, s.snapshot_id desc limit 1)"
    ))
    .bind(project_id)
    .bind(resource_type)
    .bind(resource_id)
    .bind(since)
    .bind(quiesced_only)
    .fetch_optional(pool)
    .await
    .map(|row| row.map(Named::into_inner))
}

/// Filters for [`list_jobs`].
#[derive(Debug, Clone, Default)]
pub struct JobFilter {
    pub policy_id: Option<Uuid>,
    pub run_id: Option<Uuid>,
    pub status: Option<JobStatus>,
    pub resource_id: Option<String>,
    pub kind: Option<JobKind>,
}

/// Lists jobs of a project, newest first, before the cursor id.
///
/// # Errors
/// The query fails.
pub async fn list_jobs(
    pool: &PgPool,
    scope: impl Into<Scope<'_>>,
    filter: &JobFilter,
    before: Option<Uuid>,
    limit: i64,
) -> Result<Vec<Job>, sqlx::Error> {
    let scope: Scope<'_> = scope.into();
    sqlx::query_as::<_, Named<Job>>(concat!(
        "select ",
        job_columns!(),
        " from job where ($1::text is null or project_id = $1) and ($2::uuid is null or policy_id = $2) \
         and ($3::uuid is null or run_id = $3) and ($4::text is null or status = $4) \
         and ($5::text is null or resource_id = $5) and ($6::uuid is null or job_id < $6) \
         and ($8::text is null or kind = $8) \
         order by job_id desc limit $7"
    ))
    .bind(scope.project())
    .bind(filter.policy_id)
    .bind(filter.run_id)
    .bind(filter.status)
    .bind(&filter.resource_id)
    .bind(before)
    .bind(limit)
    .bind(filter.kind)
    .fetch_all(pool)
    .await
    .map(row::values)
}

/// The jobs batched tracking follows, and only it claims (index `job_tracking_batch_idx`).
macro_rules! batch_tracked_kind {
    () => {
        "status = 'tracking' and kind = 'snapshot' and resource_type in ('server', 'volume')"
    };
}

/// The claim of the job in flight most overdue, but for batched tracking's
/// jobs: only `claim_tracking_batch` claims them (taken one by one here, by
/// any worker, they would split the batches).
macro_rules! claim_in_flight {
    () => {
        concat!(
            "update job set lease_owner = $1, lease_expires_at = $2 + $3 \
             where job_id = (select job_id from job where status in ('creating', 'tracking') \
                 and not (",
            batch_tracked_kind!(),
            ") and not_before <= $2 and (lease_expires_at is null or lease_expires_at < $2) \
                 order by not_before limit 1 for update skip locked) \
             returning ",
            job_columns!()
        )
    };
}

/// A claimed job, or a job row this code cannot read (claimed all the same,
/// so that it is failed with a readable error instead of being claimed forever).
#[derive(Debug)]
pub enum Claimed {
    Job(Box<Job>),
    Unreadable {
        job_id: Uuid,
        /// The stored status as text: it may be one this build does not know.
        status: String,
        reason: String,
    },
}

/// Claims the job most overdue for work, leasing it to `owner`. Jobs in flight
/// come first: following them to their end frees capacity. A pending job is
/// claimed only while fewer than `max_in_flight` jobs are in flight, so workers
/// do not spin on jobs that could not start anyway.
///
/// # Errors
/// The query fails.
pub async fn claim_job(
    pool: &PgPool,
    owner: Uuid,
    now: DateTime<Utc>,
    lease: TimeDelta,
    max_in_flight: i64,
) -> Result<Option<Claimed>, sqlx::Error> {
    let in_flight = claim_one(pool, claim_in_flight!(), owner, now, lease).await?;
    if in_flight.is_some() {
        return Ok(in_flight);
    }
    // The count of jobs in flight is part of the claim (one statement, not
    // two): the kept count and the changes not yet folded into it.
    let Some(row) = sqlx::query(concat!(
        "update job set lease_owner = $1, lease_expires_at = $2 + $3 \
         where job_id = (select job_id from job where status = 'pending' \
             and not_before <= $2 and (lease_expires_at is null or lease_expires_at < $2) \
             and coalesce((select n from job_in_flight_count), 0) \
                 + (select coalesce(sum(n), 0) from job_in_flight_change) < $4 \
             order by not_before limit 1 for update skip locked) \
         returning ",
        job_columns!()
    ))
    .bind(owner)
    .bind(now)
    .bind(lease)
    .bind(max_in_flight)
    .fetch_optional(pool)
    .await?
    else {
        return Ok(None);
    };
    claimed_row(&row).map(Some)
}

fn claimed_row(row: &sqlx::postgres::PgRow) -> Result<Claimed, sqlx::Error> {
    Ok(match row::decode_or_set_aside::<Job>(row)? {
        Ok(job) => Claimed::Job(Box::new(job)),
        Err(unreadable) => Claimed::Unreadable {
            job_id: unreadable.id,
            status: row.try_get("status")?,
            reason: unreadable.reason,
        },
    })
}

async fn claim_one(
    pool: &PgPool,
    sql: &'static str,
    owner: Uuid,
    now: DateTime<Utc>,
    lease: TimeDelta,
) -> Result<Option<Claimed>, sqlx::Error> {
    let Some(row) = sqlx::query(sql)
        .bind(owner)
        .bind(now)
        .bind(lease)
        .fetch_optional(pool)
        .await?
    else {
        return Ok(None);
    };
    claimed_row(&row).map(Some)
}

/// Claims up to `limit` tracking jobs of servers and volumes, all of one
/// project (that of the most overdue one), leasing them to `owner`: their
/// artefacts are looked at together. With the due jobs it takes those of the
/// same project due within `ahead` of `now`, oldest first, so that a batch
/// fills instead of holding the one or two jobs due at this instant (each job
/// is due at its own start + poll delay); they are looked at a little early,
/// never later. Nothing is claimed unless one job is due by `due_by` (`now`,
/// or earlier to take only a batch whose jobs have gathered since). Rows this
/// build cannot read are claimed too, to be set aside.
///
/// # Errors
/// The query fails.
pub async fn claim_tracking_batch(
    pool: &PgPool,
    owner: Uuid,
    now: DateTime<Utc>,
    lease: TimeDelta,
    limit: i64,
    ahead: TimeDelta,
    due_by: DateTime<Utc>,
) -> Result<Vec<Claimed>, sqlx::Error> {
    let rows = sqlx::query(concat!(
        "with first as (select project_id from job where ",
        batch_tracked_kind!(),
        " and not_before <= $6 and (lease_expires_at is null or lease_expires_at < $2) \
         order by not_before limit 1 for update skip locked), \
         picked as (select job_id from job where project_id = (select project_id from first) and ",
        // The same rule as `batch_tracked!`, with the horizon `$2 + $5` for
        // `not_before`; the lease is still judged at `$2`.
        batch_tracked_kind!(),
        " and not_before <= $2 + $5 and (lease_expires_at is null or lease_expires_at < $2)",
        " order by not_before limit $4 for update skip locked) \
         update job set lease_owner = $1, lease_expires_at = $2 + $3 \
         where job_id in (select job_id from picked) \
         returning ",
        job_columns!()
    ))
    .bind(owner)
    .bind(now)
    .bind(lease)
    .bind(limit)
    .bind(ahead)
    .bind(due_by.min(now))
    .fetch_all(pool)
    .await?;
    rows.iter().map(claimed_row).collect()
}

/// Extends the leases of a batch still held by `owner`. Returns how many are still held.
///
/// # Errors
/// The query fails.
pub async fn renew_leases(
    pool: &PgPool,
    job_ids: &[Uuid],
    owner: Uuid,
    until: DateTime<Utc>,
) -> Result<u64, sqlx::Error> {
    let result = sqlx::query(
        "update job set lease_expires_at = $3 where job_id = any($1) and lease_owner = $2",
    )
    .bind(job_ids)
    .bind(owner)
    .bind(until)
    .execute(pool)
    .await?;
    Ok(result.rows_affected())
}

/// Records, in one statement, the polls of a batch of tracking jobs that go
/// on tracking (no change of state: statuses, timeline, calls, error, next
/// look) and gives their leases back. Only updates that change nothing else
/// belong here; see [`JobUpdate::is_poll`]. Returns the jobs written: one
/// missing was cancelled or taken over meanwhile.
///
/// # Errors
/// The query fails.
pub async fn record_polls(
    pool: &PgPool,
    owner: Uuid,
    now: DateTime<Utc>,
    polls: &[(Uuid, JobUpdate)],
) -> Result<Vec<Uuid>, sqlx::Error> {
    debug_assert!(polls.iter().all(|(_, u)| u.is_poll()));
    let ids: Vec<Uuid> = polls.iter().map(|(id, _)| *id).collect();
    let snapshots: Vec<Option<serde_json::Value>> = polls
        .iter()
        .map(|(_, u)| {
            u.volume_snapshots
                .as_ref()
                .map(|s| serde_json::to_value(s).expect("snapshots serialise"))
        })
        .collect();
    let set_error: Vec<bool> = polls.iter().map(|(_, u)| u.error.is_some()).collect();
    let errors: Vec<Option<serde_json::Value>> = polls
        .iter()
        .map(|(_, u)| {
            u.error
                .clone()
                .flatten()
                .map(|e| serde_json::to_value(e).expect("an error serialises"))
        })
        .collect();
    let timelines: Vec<serde_json::Value> = polls
        .iter()
        .map(|(_, u)| serde_json::to_value(&u.timeline).expect("a timeline serialises"))
        .collect();
    let calls: Vec<i32> = polls.iter().map(|(_, u)| u.calls).collect();
    let not_before: Vec<Option<DateTime<Utc>>> = polls.iter().map(|(_, u)| u.not_before).collect();
    let sizes: Vec<Option<i64>> = polls
        .iter()
        .map(|(_, u)| u.image_size_bytes.and_then(|b| i64::try_from(b).ok()))
        .collect();
    sqlx::query_scalar(
        "update job set \
           volume_snapshots = coalesce(t.volume_snapshots, job.volume_snapshots), \
           error = case when t.set_error then t.error else job.error end, \
           timeline = job.timeline || t.timeline, \
           openstack_calls = job.openstack_calls + t.calls, \
           not_before = coalesce(t.not_before, $2), \
           image_size_bytes = coalesce(t.image_size_bytes, job.image_size_bytes), \
           lease_owner = null, lease_expires_at = null \
         from unnest($3::uuid[], $4::jsonb[], $5::bool[], $6::jsonb[], $7::jsonb[], $8::int4[], \
                     $9::timestamptz[], $10::int8[]) \
             as t(job_id, volume_snapshots, set_error, error, timeline, calls, not_before, image_size_bytes) \
         where job.job_id = t.job_id and job.lease_owner = $1 and job.status = 'tracking' \
         returning job.job_id",
    )
    .bind(owner)
    .bind(now)
    .bind(&ids)
    .bind(&snapshots)
    .bind(&set_error)
    .bind(&errors)
    .bind(&timelines)
    .bind(&calls)
    .bind(&not_before)
    .bind(&sizes)
    .fetch_all(pool)
    .await
}

/// Gives back the lease of a job in flight that this build cannot read, with
/// the reason, to be looked at again at `not_before` (by a replica that may
/// read it, or after a fix). Returns whether the lease was still held.
///
/// # Errors
/// The query fails.
pub async fn put_off_unreadable(
    pool: &PgPool,
    job_id: Uuid,
    owner: Uuid,
    not_before: DateTime<Utc>,
    error: &JobError,
) -> Result<bool, sqlx::Error> {
    let result = sqlx::query(
        "update job set not_before = $3, error = $4, lease_owner = null, lease_expires_at = null \
         where job_id = $1 and lease_owner = $2",
    )
    .bind(job_id)
    .bind(owner)
    .bind(not_before)
    .bind(Json(error))
    .execute(pool)
    .await?;
    Ok(result.rows_affected() == 1)
}

/// Extends a lease still held by `owner`. Returns whether it is still held.
///
/// # Errors
/// The query fails.
pub async fn renew_lease(
    pool: &PgPool,
    job_id: Uuid,
    owner: Uuid,
    until: DateTime<Utc>,
) -> Result<bool, sqlx::Error> {
    let result =
        sqlx::query("update job set lease_expires_at = $3 where job_id = $1 and lease_owner = $2")
            .bind(job_id)
            .bind(owner)
            .bind(until)
            .execute(pool)
            .await?;
    Ok(result.rows_affected() == 1)
}

/// Why a pending job could not start now.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum StartOutcome {
    Started,
    /// The global or per-policy limit of jobs in flight is reached.
    AtCapacity,
    /// Another job on the same resource is in flight.
    ResourceBusy,
    /// The lease was lost or the job was cancelled meanwhile.
    Lost,
}

/// Moves a leased pending job to `creating` and counts the attempt, within the
/// concurrency limits. The create request is marked unclear by
/// [`mark_sending`] right before it is sent, not here: the reads before it
/// can take long, and the settle time is measured from the send.
///
/// # Errors
/// The query fails.
pub async fn start_job(
    pool: &PgPool,
    job: &Job,
    owner: Uuid,
    now: DateTime<Utc>,
    global_limit: i64,
    policy_limit: Option<i64>,
) -> Result<StartOutcome, sqlx::Error> {
    // One statement (`stacksnap_start_job`, migration 20261204010003): it
    // takes the advisory lock that serialises starts across replicas (so the
    // limits hold; a transaction lock works behind poolers), folds the kept
    // count of jobs in flight, checks the limits and moves the job, and its
    // commit ends the lock with no round trip in between.
    let deadline = now + TimeDelta::seconds(job.options.timeout_secs as i64);
    let started: Result<String, sqlx::Error> =
        sqlx::query_scalar("select stacksnap_start_job($1, $2, $3, $4, $5, $6, $7)")
            .bind(job.job_id)
            .bind(owner)
            .bind(now)
            .bind(deadline)
            .bind(global_limit)
            .bind(job.policy_id)
            .bind(policy_limit)
            .fetch_one(pool)
            .await;
    match started {
        Ok(outcome) => Ok(match outcome.as_str() {
            "started" => StartOutcome::Started,
            "at_capacity" => StartOutcome::AtCapacity,
            _ => StartOutcome::Lost,
        }),
        Err(sqlx::Error::Database(e))
            if e.constraint() == Some("job_one_in_flight_per_resource_idx") =>
        {
            Ok(StartOutcome::ResourceBusy)
        }
        Err(e) => Err(e),
    }
}

/// What one step of work found out about a job.
#[derive(Debug, Clone, Default)]
pub struct JobUpdate {
    pub status: Option<JobStatus>,
    pub image_id: Option<String>,
    pub group_snapshot_id: Option<String>,
    pub image_size_bytes: Option<u64>,
    pub volume_snapshots: Option<Vec<VolumeSnapshotState>>,
    pub consistency: Option<ObtainedConsistency>,
    /// `Some(None)` clears the error.
    pub error: Option<Option<JobError>>,
    pub timeline: Vec<TimelineEntry>,
    pub calls: i32,
    pub resource_name: Option<String>,
    /// When to look at the job again; `None` keeps it due now.
    pub not_before: Option<DateTime<Utc>>,
    /// The step sent no create after all (it failed before): the attempt
    /// counted for it is given back.
    pub create_not_sent: bool,
    /// `Some(t)` sets when the last create with an unknown outcome was sent;
    /// `Some(None)` clears it; `None` leaves it.
    pub create_unclear_at: Option<Option<DateTime<Utc>>>,
    /// What a restore made so far (replaces what was recorded).
    pub restored: Option<Restored>,
    /// A restore's clean-up is due from then (set when it fails).
    pub cleanup_due_at: Option<DateTime<Utc>>,
    /// The flavor of the server a snapshot job snapshots, as Nova showed it.
    pub source_flavor: Option<serde_json::Value>,
    /// The availability zone of what a snapshot job snapshots.
    pub source_az: Option<String>,
}

impl JobUpdate {
    /// Whether this is a poll of a job that goes on tracking: it changes no
    /// state and records nothing but what [`record_polls`] writes.
    pub fn is_poll(&self) -> bool {
        self.status.is_none()
            && self.image_id.is_none()
            && self.group_snapshot_id.is_none()
            && self.consistency.is_none()
            && self.resource_name.is_none()
            && !self.create_not_sent
            && self.create_unclear_at.is_none()
            && self.restored.is_none()
            && self.cleanup_due_at.is_none()
            && self.source_flavor.is_none()
    }
}

/// Counts a new attempt of a job in `creating` that is about to be sent again
/// (marked unclear by [`mark_sending`] when it is sent). Returns `false` when
/// the job was cancelled or taken over meanwhile.
///
/// # Errors
/// The query fails.
pub async fn count_attempt(pool: &PgPool, job_id: Uuid, owner: Uuid) -> Result<bool, sqlx::Error> {
    let result = sqlx::query(
        "update job set attempt = attempt + 1 \
         where job_id = $1 and lease_owner = $2 and status = 'creating'",
    )
    .bind(job_id)
    .bind(owner)
    .execute(pool)
    .await?;
    Ok(result.rows_affected() == 1)
}

/// Records that the job's create request is being sent now: its outcome is
/// unknown until recorded (a worker may die while sending it), and a look-up
/// that finds nothing is believed only some time after `now`. Returns `false`
/// when the job was cancelled or taken over meanwhile (then nothing is sent).
///
/// # Errors
/// The query fails.
pub async fn mark_sending(
    pool: &PgPool,
    job_id: Uuid,
    owner: Uuid,
    now: DateTime<Utc>,
) -> Result<bool, sqlx::Error> {
    let result = sqlx::query(
        "update job set create_unclear_at = $3 \
         where job_id = $1 and lease_owner = $2 and status = 'creating'",
    )
    .bind(job_id)
    .bind(owner)
    .bind(now)
    .execute(pool)
    .await?;
    Ok(result.rows_affected() == 1)
}

/// Claims the restore job whose clean-up is most overdue, leasing it to `owner`.
///
/// # Errors
/// The query fails.
pub async fn claim_cleanup(
    pool: &PgPool,
    owner: Uuid,
    now: DateTime<Utc>,
    lease: TimeDelta,
) -> Result<Option<Claimed>, sqlx::Error> {
    claim_one(
        pool,
        concat!(
            "update job set lease_owner = $1, lease_expires_at = $2 + $3 \
             where job_id = (select job_id from job where cleanup_due_at <= $2 \
                 and status in ('succeeded', 'failed', 'timed_out', 'cancelled') \
                 and (lease_expires_at is null or lease_expires_at < $2) \
                 order by cleanup_due_at limit 1 for update skip locked) \
             returning ",
            job_columns!()
        ),
        owner,
        now,
        lease,
    )
    .await
}

/// Records a step of a restore's clean-up and gives the lease back:
/// `next_due` is when to look again (`None`: the clean-up is over).
///
/// # Errors
/// The query fails.
pub async fn record_cleanup(
    pool: &PgPool,
    job_id: Uuid,
    owner: Uuid,
    restored: &Restored,
    next_due: Option<DateTime<Utc>>,
    timeline: &[TimelineEntry],
    calls: i32,
) -> Result<bool, sqlx::Error> {
    let result = sqlx::query(
        "update job set restored = $3, cleanup_due_at = $4, timeline = timeline || $5, \
             openstack_calls = openstack_calls + $6, lease_owner = null, lease_expires_at = null \
         where job_id = $1 and lease_owner = $2",
    )
    .bind(job_id)
    .bind(owner)
    .bind(Json(restored))
    .bind(next_due)
    .bind(Json(timeline))
    .bind(calls)
    .execute(pool)
    .await?;
    Ok(result.rows_affected() == 1)
}
