//! The `snapshot` table: managed artefacts, from the job that made them to their deletion.
//!
//! Over 400 lines: every query of one table, sharing its column list and row
//! type; the deletion queue's claims read the same columns as the API's reads.

use chrono::{DateTime, TimeDelta, Utc};
use sqlx::{PgConnection, PgPool, types::Json};
use uuid::Uuid;

use super::row::{self, Keyed, Named};

use crate::domain::{
    job::{JobError, VolumeSnapshotState},
    policy::ResourceType,
    retention::Retained,
    status::SnapshotState,
};

/// A managed snapshot.
#[derive(Debug, Clone, sqlx::FromRow)]
pub struct ManagedSnapshot {
    pub snapshot_id: Uuid,
    pub project_id: String,
    pub policy_id: Option<Uuid>,
    pub run_id: Option<Uuid>,
    pub job_id: Uuid,
    pub resource_type: ResourceType,
    pub resource_id: String,
    pub resource_name: Option<String>,
    pub image_id: Option<String>,
    pub group_snapshot_id: Option<String>,
    pub volume_snapshots: Json<Vec<VolumeSnapshotState>>,
    pub image_size_bytes: Option<i64>,
    pub size_gb: Option<i64>,
    pub complete: bool,
    pub state: SnapshotState,
    pub taken_at: DateTime<Utc>,
    pub delete_attempts: i32,
    pub delete_error: Option<Json<JobError>>,
    pub deleted_at: Option<DateTime<Utc>>,
    pub created_at: DateTime<Utc>,
}

impl Keyed for ManagedSnapshot {
    const TABLE: &'static str = "snapshot";
    const KEY: &'static str = "snapshot_id";
}

impl Retained for ManagedSnapshot {
    fn id(&self) -> Uuid {
        self.snapshot_id
    }
    fn resource_id(&self) -> &str {
        &self.resource_id
    }
    fn taken_at(&self) -> DateTime<Utc> {
        self.taken_at
    }
    fn complete(&self) -> bool {
        self.complete
    }
}

macro_rules! snapshot_columns {
    () => {
        "snapshot_id, project_id, policy_id, run_id, job_id, resource_type, resource_id, resource_name, image_id, \
         group_snapshot_id, volume_snapshots, image_size_bytes, size_gb, complete, state, taken_at, delete_attempts, delete_error, deleted_at, created_at"
    };
}

/// Records what an ended job produced: a complete snapshot when it succeeded,
/// incomplete artefacts (to be cleaned up) when it failed, timed out or was
/// cancelled after making some, or after sending a create whose outcome is
/// unknown (the deletion then looks for what it made). Idempotent per job.
///
/// # Errors
/// The query fails.
pub async fn record_from_job(conn: &mut PgConnection, job_id: Uuid) -> Result<(), sqlx::Error> {
    sqlx::query(
        "insert into snapshot (snapshot_id, project_id, policy_id, run_id, job_id, resource_type, resource_id, \
             resource_name, image_id, group_snapshot_id, volume_snapshots, complete, taken_at, \
             image_size_bytes, size_gb) \
         select $2, j.project_id, p.policy_id, j.run_id, j.job_id, j.resource_type, j.resource_id, j.resource_name, \
             j.image_id, j.group_snapshot_id, j.volume_snapshots, j.status = 'succeeded', \
             coalesce((j.options ->> 'scheduled_at')::timestamptz, j.created_at), j.image_size_bytes, \
             (select sum((piece ->> 'size_gb')::bigint) from jsonb_array_elements(j.volume_snapshots) as piece) \
         from job j left join policy p on p.policy_id = j.policy_id \
         where j.job_id = $1 and (j.status = 'succeeded' or j.image_id is not null \
             or j.group_snapshot_id is not null or j.volume_snapshots <> '[]' \
             or j.create_unclear_at is not null) \
         on conflict (job_id) where not duplicate do nothing",
    )
    .bind(job_id)
    .bind(Uuid::now_v7())
    .execute(conn)
    .await?;
    Ok(())
}

/// Records a second image an earlier create of a job made (a duplicate) as an
/// incomplete snapshot of the job, to be deleted at once with every piece its
/// mapping lists. Idempotent per job and image.
///
/// # Errors
/// The query fails.
pub async fn record_duplicate(
    pool: &PgPool,
    job_id: Uuid,
    image_id: &str,
    now: DateTime<Utc>,
) -> Result<(), sqlx::Error> {
    sqlx::query(
        "insert into snapshot (snapshot_id, project_id, policy_id, run_id, job_id, resource_type, resource_id, \
             resource_name, image_id, complete, taken_at, state, not_before, duplicate) \
         select $3, j.project_id, p.policy_id, j.run_id, j.job_id, j.resource_type, j.resource_id, \
             j.resource_name, $2, false, $4, 'deleting', $4, true \
         from job j left join policy p on p.policy_id = j.policy_id where j.job_id = $1 \
         on conflict (job_id, image_id) where duplicate do nothing",
    )
    .bind(job_id)
    .bind(image_id)
    .bind(Uuid::now_v7())
    .bind(now)
    .execute(pool)
    .await?;
    Ok(())
}

/// The live snapshots of a policy, every resource, oldest first.
///
/// # Errors
/// The query fails.
pub async fn live_for_policy(
    pool: &PgPool,
    policy_id: Uuid,
) -> Result<Vec<ManagedSnapshot>, sqlx::Error> {
    sqlx::query_as::<_, Named<ManagedSnapshot>>(concat!(
        "select ",
        snapshot_columns!(),
        " from snapshot where policy_id = $1 and state = 'available' order by resource_id, taken_at"
    ))
    .bind(policy_id)
    .fetch_all(pool)
    .await
    .map(row::values)
}

/// Policies due for pruning: never pruned, or not since their last run ended,
/// or not for `period`; least recently pruned first.
///
/// # Errors
/// The query fails.
pub async fn policies_to_prune(
    pool: &PgPool,
    now: DateTime<Utc>,
    period: TimeDelta,
    limit: i64,
) -> Result<Vec<Uuid>, sqlx::Error> {
    sqlx::query_scalar(
        "select p.policy_id from policy p \
         where exists (select 1 from snapshot s where s.policy_id = p.policy_id and s.state = 'available') \
           and (p.pruned_at is null or p.pruned_at < $1 - $2 \
                or p.pruned_at < (select max(r.finished_at) from run r where r.policy_id = p.policy_id)) \
         order by p.pruned_at nulls first limit $3",
    )
    .bind(now)
    .bind(period)
    .bind(limit)
    .fetch_all(pool)
    .await
}

/// Notes that a policy was just pruned.
///
/// # Errors
/// The query fails.
pub async fn mark_policy_pruned(
    pool: &PgPool,
    policy_id: Uuid,
    now: DateTime<Utc>,
) -> Result<(), sqlx::Error> {
    sqlx::query("update policy set pruned_at = $2 where policy_id = $1")
        .bind(policy_id)
        .bind(now)
        .execute(pool)
        .await?;
    Ok(())
}

/// Starts deleting snapshots still `available`; returns how many it took.
///
/// # Errors
/// The query fails.
pub async fn mark_deleting(
    pool: &PgPool,
    ids: &[Uuid],
    now: DateTime<Utc>,
) -> Result<u64, sqlx::Error> {
    let result = sqlx::query(
        "update snapshot set state = 'deleting', not_before = $2, delete_attempts = 0, delete_error = null \
         where snapshot_id = any($1) and state = 'available'",
    )
    .bind(ids)
    .bind(now)
    .execute(pool)
    .await?;
    Ok(result.rows_affected())
}

/// Starts deleting incomplete artefacts older than `grace`.
///
/// # Errors
/// The query fails.
pub async fn mark_stale_incomplete_deleting(
    pool: &PgPool,
    now: DateTime<Utc>,
    grace: TimeDelta,
) -> Result<u64, sqlx::Error> {
    let result = sqlx::query(
        "update snapshot set state = 'deleting', not_before = $1 \
         where state = 'available' and not complete and created_at < $1 - $2",
    )
    .bind(now)
    .bind(grace)
    .execute(pool)
    .await?;
    Ok(result.rows_affected())
}

macro_rules! claim_deletion_where {
    ($($condition:tt)+) => {
        concat!(
            "update snapshot set lease_owner = $1, lease_expires_at = $2 + $3, \
                 delete_started_at = coalesce(delete_started_at, $2) \
             where snapshot_id = (select s.snapshot_id from snapshot s \
                 where s.state in ('deleting', 'delete_failed') and ",
            $($condition)+,
            " and s.not_before <= $2 and (s.lease_expires_at is null or s.lease_expires_at < $2) \
                 order by s.not_before limit 1 for update of s skip locked) \
             returning ",
            snapshot_columns!()
        )
    };
}

/// A deletion may start while its policy has fewer deletions under way than its
/// `max_concurrent` (policies without one, and one-off snapshots, have no own limit).
macro_rules! within_policy_limit {
    () => {
        "s.delete_started_at is null and not exists (select 1 from policy p \
             where p.policy_id = s.policy_id and (p.options ->> 'max_concurrent') is not null \
             and (select count(*) from snapshot x where x.policy_id = s.policy_id and x.state = 'deleting' \
                  and x.delete_started_at is not null) >= (p.options ->> 'max_concurrent')::bigint)"
    };
}

/// Claims one snapshot due for deletion work. Deletions already under way come
/// first; a new one starts only while fewer than `max_in_flight` are under way
/// and its policy is below its `max_concurrent`: the limits that protect the
/// cloud's control plane from creations.
///
/// # Errors
/// The query fails.
pub async fn claim_deletion(
    pool: &PgPool,
    owner: Uuid,
    now: DateTime<Utc>,
    lease: TimeDelta,
    max_in_flight: i64,
) -> Result<Option<ManagedSnapshot>, sqlx::Error> {
    let started: Option<ManagedSnapshot> = sqlx::query_as::<_, Named<ManagedSnapshot>>(
        claim_deletion_where!("s.delete_started_at is not null"),
    )
    .bind(owner)
    .bind(now)
    .bind(lease)
    .fetch_optional(pool)
    .await
    .map(|row| row.map(Named::into_inner))?;
    if started.is_some() {
        return Ok(started);
    }
    let busy: i64 = sqlx::query_scalar(
        "select count(*) from snapshot where state = 'deleting' and delete_started_at is not null",
    )
    .fetch_one(pool)
    .await?;
    if busy >= max_in_flight {
        return Ok(None);
    }
    sqlx::query_as::<_, Named<ManagedSnapshot>>(claim_deletion_where!(within_policy_limit!()))
        .bind(owner)
        .bind(now)
        .bind(lease)
        .fetch_optional(pool)
        .await
        .map(|row| row.map(Named::into_inner))
}

/// What a deletion step achieved.
#[derive(Debug, Clone)]
pub enum DeletionStep {
    /// Every piece is gone.
    Deleted,
    /// Some pieces are still being deleted by the cloud: look again later.
    InProgress {
        not_before: DateTime<Utc>,
        pieces: Vec<VolumeSnapshotState>,
    },
    /// An attempt failed; try again later (the attempt is counted).
    Retry {
        not_before: DateTime<Utc>,
        error: JobError,
    },
    /// Out of attempts (or refused for safety): `delete_failed`, retried after a long pause.
    Failed {
        not_before: DateTime<Utc>,
        error: JobError,
    },
}

/// Records a deletion step and gives the lease back.
///
/// # Errors
/// The query fails.
pub async fn record_deletion(
    pool: &PgPool,
    id: Uuid,
    owner: Uuid,
    now: DateTime<Utc>,
    step: &DeletionStep,
) -> Result<(), sqlx::Error> {
    let (state, not_before, error, attempt, pieces) = match step {
        DeletionStep::Deleted => (SnapshotState::Deleted, now, None, 0, None),
        DeletionStep::InProgress { not_before, pieces } => {
            (SnapshotState::Deleting, *not_before, None, 0, Some(pieces))
        }
        DeletionStep::Retry { not_before, error } => {
            (SnapshotState::Deleting, *not_before, Some(error), 1, None)
        }
        DeletionStep::Failed { not_before, error } => (
            SnapshotState::DeleteFailed,
            *not_before,
            Some(error),
            1,
            None,
        ),
    };
    sqlx::query(
        "update snapshot set state = $3, not_before = $4, delete_error = coalesce($5, delete_error), \
             delete_attempts = case when $3 = 'delete_failed' then 0 else delete_attempts + $6 end, \
             volume_snapshots = coalesce($7, volume_snapshots), \
             deleted_at = case when $3 = 'deleted' then $8 end, lease_owner = null, lease_expires_at = null \
         where snapshot_id = $1 and lease_owner = $2",
    )
    .bind(id)
    .bind(owner)
    .bind(state)
    .bind(not_before)
    .bind(error.map(Json))
    .bind(attempt)
    .bind(pieces.map(Json))
    .bind(now)
    .execute(pool)
    .await?;
    Ok(())
}

/// The ids of every Cinder snapshot a server snapshot of stacksnap's lists,
/// deleted or not: the orphan finder's test of "made by stacksnap".
///
/// # Errors
/// The query fails.
pub async fn server_volume_snapshot_ids(pool: &PgPool) -> Result<Vec<String>, sqlx::Error> {
    sqlx::query_scalar(
        "select piece ->> 'snapshot_id' from snapshot, jsonb_array_elements(volume_snapshots) as piece \
         where resource_type = 'server'",
    )
    .fetch_all(pool)
    .await
}

/// Reads one snapshot of a project.
///
/// # Errors
/// The query fails.
pub async fn fetch_snapshot(
    pool: &PgPool,
    project_id: &str,
    id: Uuid,
) -> Result<Option<ManagedSnapshot>, sqlx::Error> {
    sqlx::query_as::<_, Named<ManagedSnapshot>>(concat!(
        "select ",
        snapshot_columns!(),
        " from snapshot where project_id = $1 and snapshot_id = $2"
    ))
    .bind(project_id)
    .bind(id)
    .fetch_optional(pool)
    .await
    .map(|row| row.map(Named::into_inner))
}

/// Filters for [`list_snapshots`].
#[derive(Debug, Clone, Default)]
pub struct SnapshotFilter {
    pub policy_id: Option<Uuid>,
    pub resource_id: Option<String>,
    pub state: Option<SnapshotState>,
}

/// Lists snapshots of a project, newest first, before the cursor id.
///
/// # Errors
/// The query fails.
pub async fn list_snapshots(
    pool: &PgPool,
    project_id: &str,
    filter: &SnapshotFilter,
    before: Option<Uuid>,
    limit: i64,
) -> Result<Vec<ManagedSnapshot>, sqlx::Error> {
    sqlx::query_as::<_, Named<ManagedSnapshot>>(concat!(
        "select ",
        snapshot_columns!(),
        " from snapshot where project_id = $1 and ($2::uuid is null or policy_id = $2) \
         and ($3::text is null or resource_id = $3) and ($4::text is null or state = $4) \
         and ($5::uuid is null or snapshot_id < $5) order by snapshot_id desc limit $6"
    ))
    .bind(project_id)
    .bind(filter.policy_id)
    .bind(&filter.resource_id)
    .bind(filter.state)
    .bind(before)
    .bind(limit)
    .fetch_all(pool)
    .await
    .map(row::values)
}

/// Starts deleting a snapshot on request (also one that failed to delete before).
/// Returns the snapshot afterwards.
///
/// # Errors
/// The query fails.
pub async fn request_delete(
    pool: &PgPool,
    project_id: &str,
    id: Uuid,
    now: DateTime<Utc>,
) -> Result<Option<ManagedSnapshot>, sqlx::Error> {
    sqlx::query(
        "update snapshot set state = 'deleting', not_before = $3, delete_attempts = 0 \
         where project_id = $1 and snapshot_id = $2 and state in ('available', 'delete_failed')",
    )
    .bind(project_id)
    .bind(id)
    .bind(now)
    .execute(pool)
    .await?;
    fetch_snapshot(pool, project_id, id).await
}

/// Starts deleting every live snapshot of a policy (the policy is being deleted with `snapshots=delete`).
///
/// # Errors
/// The query fails.
pub async fn delete_all_of_policy(
    conn: &mut PgConnection,
    policy_id: Uuid,
    now: DateTime<Utc>,
) -> Result<u64, sqlx::Error> {
    let result = sqlx::query(
        "update snapshot set state = 'deleting', not_before = $2, delete_attempts = 0 \
         where policy_id = $1 and state in ('available', 'delete_failed')",
    )
    .bind(policy_id)
    .bind(now)
    .execute(conn)
    .await?;
    Ok(result.rows_affected())
}
