//! The `snapshot` table: managed artefacts, from the job that made them to their deletion.
//! Every query shares one column list and row type; the deletion queue (claims,
//! steps, leases) is in `deletion`.

use chrono::{DateTime, TimeDelta, Utc};
use sqlx::{PgConnection, PgPool, types::Json};
use uuid::Uuid;

use super::{
    Scope,
    row::{self, Keyed, Named},
};

use crate::domain::{
    deletion::Dependant,
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
    /// The volumes made from its pieces, while `delete_blocked`.
    pub delete_blocked_by: Option<Json<Vec<Dependant>>>,
    /// Since when its deletion has only been waiting on the cloud.
    pub delete_waiting_since: Option<DateTime<Utc>>,
    pub deleted_at: Option<DateTime<Utc>>,
    pub created_at: DateTime<Utc>,
    /// The flavor of the snapshotted server, as Nova showed it when the snapshot was taken.
    pub source_flavor: Option<Json<serde_json::Value>>,
    /// The availability zone of the snapshotted server or volume, when recorded.
    pub source_az: Option<String>,
    /// When a scheduled restore test of it last passed.
    pub verified_at: Option<DateTime<Utc>>,
    /// Why its last restore test failed, when that is newer than its last pass.
    pub verify_error: Option<Json<crate::domain::verify::VerifyError>>,
}

impl ManagedSnapshot {
    /// What it offers a restore.
    pub fn restore_pieces(&self) -> crate::domain::restore::SnapshotPieces {
        crate::domain::restore::SnapshotPieces {
            snapshot_id: self.snapshot_id,
            resource_type: self.resource_type,
            resource_id: self.resource_id.clone(),
            resource_name: self.resource_name.clone(),
            image_id: self.image_id.clone(),
            volume_snapshot_id: self
                .volume_snapshots
                .0
                .first()
                .map(|s| s.snapshot_id.clone()),
            volume_snapshot_ids: self
                .volume_snapshots
                .0
                .iter()
                .map(|s| s.snapshot_id.clone())
                .collect(),
            group_snapshot_id: self.group_snapshot_id.clone(),
            size_gb: self.size_gb.and_then(|s| u64::try_from(s).ok()),
            source_flavor: self.source_flavor.as_ref().map(|f| f.0.clone()),
            source_az: self.source_az.clone(),
            volume_backed: self.resource_type == crate::domain::policy::ResourceType::Server
                && !self.volume_snapshots.0.is_empty(),
        }
    }
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
         group_snapshot_id, volume_snapshots, image_size_bytes, size_gb, complete, state, taken_at, delete_attempts, delete_error, \
         delete_blocked_by, delete_waiting_since, deleted_at, created_at, source_flavor, source_az, verified_at, verify_error"
    };
}

// After `snapshot_columns!`, which the deletion queue reads too.
mod deletion;

pub use deletion::{
    DeletionStep, claim_deletion, create_unclear_at, record_deletion, record_found, renew_lease,
};

/// Records what an ended job produced: a complete snapshot when it succeeded,
/// incomplete artefacts (to be cleaned up) when it failed, timed out or was
/// cancelled after making some, or after sending a create whose outcome is
/// unknown (the deletion then looks for what it made). Idempotent per job,
/// except that a step's answer arriving after a cancel recorded the job adds
/// what it made to the row (a row already `deleted` is deleted again). A
/// job whose policy was deleted with `snapshots=delete` while it ran records
/// its snapshot already `deleting`; with `keep`, it lands kept and unmanaged (no policy).
///
/// # Errors
/// The query fails.
pub async fn record_from_job(conn: &mut PgConnection, job_id: Uuid) -> Result<(), sqlx::Error> {
    sqlx::query(
        "insert into snapshot (snapshot_id, project_id, policy_id, run_id, job_id, resource_type, resource_id, \
             resource_name, image_id, group_snapshot_id, volume_snapshots, complete, taken_at, \
             image_size_bytes, size_gb, state, source_flavor, source_az) \
         select $2, j.project_id, p.policy_id, j.run_id, j.job_id, j.resource_type, j.resource_id, j.resource_name, \
             j.image_id, j.group_snapshot_id, j.volume_snapshots, j.status = 'succeeded', \
             coalesce((j.options ->> 'scheduled_at')::timestamptz, j.created_at), j.image_size_bytes, \
             (select sum((piece ->> 'size_gb')::bigint) from jsonb_array_elements(j.volume_snapshots) as piece), \
             case when j.delete_on_record then 'deleting' else 'available' end, j.source_flavor, j.source_az \
         from job j left join policy p on p.policy_id = j.policy_id \
         where j.job_id = $1 and j.kind = 'snapshot' and (j.status = 'succeeded' or j.image_id is not null \
             or j.group_snapshot_id is not null or j.volume_snapshots <> '[]' \
             or j.create_unclear_at is not null) \
         on conflict (job_id) where not duplicate do update set \
             image_id = coalesce(snapshot.image_id, excluded.image_id), \
             group_snapshot_id = coalesce(snapshot.group_snapshot_id, excluded.group_snapshot_id), \
             volume_snapshots = case when snapshot.volume_snapshots = '[]' \
                 then excluded.volume_snapshots else snapshot.volume_snapshots end, \
             state = case when snapshot.state = 'deleted' then 'deleting' else snapshot.state end, \
             deleted_at = case when snapshot.state = 'deleted' then null else snapshot.deleted_at end \
         where (snapshot.image_id is null and excluded.image_id is not null) \
             or (snapshot.group_snapshot_id is null and excluded.group_snapshot_id is not null) \
             or (snapshot.volume_snapshots = '[]' and excluded.volume_snapshots <> '[]')",
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
        "update snapshot set state = 'deleting', not_before = $2, delete_attempts = 0, delete_error = null, \
             delete_waiting_since = null \
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

/// Reads one snapshot of a project.
///
/// # Errors
/// The query fails.
pub async fn fetch_snapshot(
    pool: &PgPool,
    scope: impl Into<Scope<'_>>,
    id: Uuid,
) -> Result<Option<ManagedSnapshot>, sqlx::Error> {
    let scope: Scope<'_> = scope.into();
    sqlx::query_as::<_, Named<ManagedSnapshot>>(concat!(
        "select ",
        snapshot_columns!(),
        " from snapshot where ($1::text is null or project_id = $1) and snapshot_id = $2"
    ))
    .bind(scope.project())
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
    scope: impl Into<Scope<'_>>,
    filter: &SnapshotFilter,
    before: Option<Uuid>,
    limit: i64,
) -> Result<Vec<ManagedSnapshot>, sqlx::Error> {
    let scope: Scope<'_> = scope.into();
    sqlx::query_as::<_, Named<ManagedSnapshot>>(concat!(
        "select ",
        snapshot_columns!(),
        " from snapshot where ($1::text is null or project_id = $1) and ($2::uuid is null or policy_id = $2) \
         and ($3::text is null or resource_id = $3) and ($4::text is null or state = $4) \
         and ($5::uuid is null or snapshot_id < $5) order by snapshot_id desc limit $6"
    ))
    .bind(scope.project())
    .bind(filter.policy_id)
    .bind(&filter.resource_id)
    .bind(filter.state)
    .bind(before)
    .bind(limit)
    .fetch_all(pool)
    .await
    .map(row::values)
}

/// Starts deleting a snapshot on request (also one whose deletion failed or is
/// blocked: the user may have removed what blocked it).
/// Returns the snapshot afterwards.
///
/// # Errors
/// The query fails.
pub async fn request_delete(
    pool: &PgPool,
    scope: impl Into<Scope<'_>>,
    id: Uuid,
    now: DateTime<Utc>,
) -> Result<Option<ManagedSnapshot>, sqlx::Error> {
    let scope: Scope<'_> = scope.into();
    sqlx::query(
        "update snapshot set state = 'deleting', not_before = $3, delete_attempts = 0, \
             delete_waiting_since = null, delete_blocked_by = null \
         where ($1::text is null or project_id = $1) and snapshot_id = $2 and state in ('available', 'delete_failed', 'delete_blocked')",
    )
    .bind(scope.project())
    .bind(id)
    .bind(now)
    .execute(pool)
    .await?;
    fetch_snapshot(pool, scope, id).await
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
        "update snapshot set state = 'deleting', not_before = $2, delete_attempts = 0, \
             delete_waiting_since = null, delete_blocked_by = null \
         where policy_id = $1 and state in ('available', 'delete_failed', 'delete_blocked')",
    )
    .bind(policy_id)
    .bind(now)
    .execute(conn)
    .await?;
    Ok(result.rows_affected())
}
