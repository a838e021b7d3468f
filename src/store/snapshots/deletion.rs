//! The deletion queue on the `snapshot` table: claim a snapshot due for a
//! deletion step (within the in-flight limits), keep its lease, record the step.

use chrono::{DateTime, TimeDelta, Utc};
use sqlx::{PgPool, types::Json};
use uuid::Uuid;

use super::ManagedSnapshot;
use crate::{
    domain::{
        deletion::{Dependant, STALLED_AFTER},
        job::{JobError, VolumeSnapshotState},
        status::SnapshotState,
    },
    store::row::Named,
};

macro_rules! claim_deletion_where {
    ($($condition:tt)+) => {
        concat!(
            "update snapshot set lease_owner = $1, lease_expires_at = $2 + $3, \
                 delete_started_at = coalesce(delete_started_at, $2) \
             where snapshot_id = (select s.snapshot_id from snapshot s \
                 where s.state in ('deleting', 'delete_failed', 'delete_blocked') \
                   and not exists (select 1 from job j where j.kind <> 'snapshot' \
                       and (j.status in ('pending', 'creating', 'tracking') \
                            or j.cleanup_due_at is not null) \
                       and j.restore ->> 'snapshot_id' = s.snapshot_id::text) and ",
            $($condition)+,
            " and s.not_before <= $2 and (s.lease_expires_at is null or s.lease_expires_at < $2) \
                 order by s.not_before limit 1 for update of s skip locked) \
             returning ",
            snapshot_columns!()
        )
    };
}

/// Whether deletion `x` is in flight at `now`: started, not pausing after a
/// failed attempt, and not waiting for longer than `stalled` (a stuck or
/// pausing deletion loads nothing and must not hold up others).
macro_rules! in_flight {
    ($x:literal, $now:literal, $stalled:literal) => {
        concat!(
            $x,
            ".state = 'deleting' and not ",
            $x,
            ".delete_backing_off and ",
            $x,
            ".delete_started_at is not null and (",
            $x,
            ".delete_waiting_since is null or ",
            $x,
            ".delete_waiting_since > ",
            $now,
            " - ",
            $stalled,
            ")"
        )
    };
}

/// A deletion may start while its policy has fewer deletions in flight than its
/// `max_concurrent` (policies without one, and one-off snapshots, have no own limit).
macro_rules! within_policy_limit {
    () => {
        concat!(
            "s.delete_started_at is null and not exists (select 1 from policy p \
             where p.policy_id = s.policy_id and (p.options ->> 'max_concurrent') is not null \
             and (select count(*) from snapshot x where x.policy_id = s.policy_id and ",
            in_flight!("x", "$2", "$4"),
            ") >= (p.options ->> 'max_concurrent')::bigint)"
        )
    };
}

/// Claims one snapshot due for deletion work. Deletions already under way come
/// first; a new one starts only while fewer than `max_in_flight` are in flight
/// and its policy is below its `max_concurrent`: the limits that protect the
/// cloud's control plane from creations. A deletion that has only waited for
/// [`STALLED_AFTER`] (a piece stuck `creating`, say) is not in flight: it
/// loads nothing, and fifty of them must not stop every other deletion.
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
    let busy: i64 = sqlx::query_scalar(concat!(
        "select count(*) from snapshot s where ",
        in_flight!("s", "$1", "$2")
    ))
    .bind(now)
    .bind(STALLED_AFTER)
    .fetch_one(pool)
    .await?;
    if busy >= max_in_flight {
        return Ok(None);
    }
    sqlx::query_as::<_, Named<ManagedSnapshot>>(claim_deletion_where!(within_policy_limit!()))
        .bind(owner)
        .bind(now)
        .bind(lease)
        .bind(STALLED_AFTER)
        .fetch_optional(pool)
        .await
        .map(|row| row.map(Named::into_inner))
}

/// What a deletion step achieved.
#[derive(Debug, Clone)]
pub enum DeletionStep {
    /// Every piece is gone.
    Deleted,
    /// Something moved (a delete was sent, a piece changed): look again later.
    InProgress {
        not_before: DateTime<Utc>,
        pieces: Vec<VolumeSnapshotState>,
    },
    /// Nothing moved; the deletion has only been waiting on the cloud `since` then.
    Waiting {
        not_before: DateTime<Utc>,
        pieces: Vec<VolumeSnapshotState>,
        since: DateTime<Utc>,
    },
    /// An attempt failed; try again later (the attempt is counted).
    Retry {
        not_before: DateTime<Utc>,
        error: JobError,
        /// The pieces as last seen, when the step saw them.
        pieces: Option<Vec<VolumeSnapshotState>>,
    },
    /// Out of attempts or time (or refused for safety): `delete_failed`, retried after a long pause.
    Failed {
        not_before: DateTime<Utc>,
        error: JobError,
        pieces: Option<Vec<VolumeSnapshotState>>,
    },
    /// Cinder keeps pieces that volumes were made from: `delete_blocked`, retried after `not_before`.
    Blocked {
        not_before: DateTime<Utc>,
        error: JobError,
        pieces: Vec<VolumeSnapshotState>,
        dependants: Vec<Dependant>,
    },
}

/// The columns one [`DeletionStep`] writes.
struct DeletionWrite<'a> {
    state: SnapshotState,
    not_before: DateTime<Utc>,
    error: Option<&'a JobError>,
    /// 1 when the step counts a failed attempt.
    attempt: i32,
    pieces: Option<&'a Vec<VolumeSnapshotState>>,
    waiting_since: Option<DateTime<Utc>>,
    blocked_by: Option<&'a Vec<Dependant>>,
}

impl<'a> DeletionWrite<'a> {
    fn of(step: &'a DeletionStep, now: DateTime<Utc>) -> Self {
        let base = |state, not_before| Self {
            state,
            not_before,
            error: None,
            attempt: 0,
            pieces: None,
            waiting_since: None,
            blocked_by: None,
        };
        match step {
            DeletionStep::Deleted => base(SnapshotState::Deleted, now),
            DeletionStep::InProgress { not_before, pieces } => Self {
                pieces: Some(pieces),
                ..base(SnapshotState::Deleting, *not_before)
            },
            DeletionStep::Waiting {
                not_before,
                pieces,
                since,
            } => Self {
                pieces: Some(pieces),
                waiting_since: Some(*since),
                ..base(SnapshotState::Deleting, *not_before)
            },
            DeletionStep::Retry {
                not_before,
                error,
                pieces,
            } => Self {
                error: Some(error),
                attempt: 1,
                pieces: pieces.as_ref(),
                ..base(SnapshotState::Deleting, *not_before)
            },
            DeletionStep::Failed {
                not_before,
                error,
                pieces,
            } => Self {
                error: Some(error),
                attempt: 1,
                pieces: pieces.as_ref(),
                ..base(SnapshotState::DeleteFailed, *not_before)
            },
            DeletionStep::Blocked {
                not_before,
                error,
                pieces,
                dependants,
            } => Self {
                error: Some(error),
                pieces: Some(pieces),
                blocked_by: Some(dependants),
                ..base(SnapshotState::DeleteBlocked, *not_before)
            },
        }
    }
}

/// Records a deletion step and gives the lease back. A step that ends a round
/// (`delete_failed`, `delete_blocked`) resets the attempts for the next one.
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
    let write = DeletionWrite::of(step, now);
    sqlx::query(
        "update snapshot set state = $3, not_before = $4, delete_error = coalesce($5, delete_error), \
             delete_attempts = case when $3 in ('delete_failed', 'delete_blocked') then 0 \
                 else delete_attempts + $6 end, \
             volume_snapshots = coalesce($7, volume_snapshots), \
             deleted_at = case when $3 = 'deleted' then $8 end, delete_waiting_since = $9, \
             delete_blocked_by = $10, delete_backing_off = $11, \
             lease_owner = null, lease_expires_at = null \
         where snapshot_id = $1 and lease_owner = $2",
    )
    .bind(id)
    .bind(owner)
    .bind(write.state)
    .bind(write.not_before)
    .bind(write.error.map(Json))
    .bind(write.attempt)
    .bind(write.pieces.map(Json))
    .bind(now)
    .bind(write.waiting_since)
    .bind(write.blocked_by.map(Json))
    .bind(matches!(step, DeletionStep::Retry { .. }))
    .execute(pool)
    .await?;
    Ok(())
}

/// Extends the lease on a snapshot being deleted while its step runs. False
/// when the lease is no longer `owner`'s.
///
/// # Errors
/// The query fails.
pub async fn renew_lease(
    pool: &PgPool,
    id: Uuid,
    owner: Uuid,
    until: DateTime<Utc>,
) -> Result<bool, sqlx::Error> {
    let result = sqlx::query(
        "update snapshot set lease_expires_at = $3 where snapshot_id = $1 and lease_owner = $2",
    )
    .bind(id)
    .bind(owner)
    .bind(until)
    .execute(pool)
    .await?;
    Ok(result.rows_affected() == 1)
}

/// When the job of a snapshot sent its last create whose outcome is unknown, if it did.
///
/// # Errors
/// The query fails.
pub async fn create_unclear_at(
    pool: &PgPool,
    job_id: Uuid,
) -> Result<Option<DateTime<Utc>>, sqlx::Error> {
    sqlx::query_scalar("select create_unclear_at from job where job_id = $1")
        .bind(job_id)
        .fetch_optional(pool)
        .await
        .map(Option::flatten)
}

/// Records on a snapshot what the search for its job's unclear create found,
/// before anything of it is deleted: from then on it is deleted like any
/// recorded artefact, and a crash in between loses nothing.
///
/// # Errors
/// The query fails.
pub async fn record_found(
    pool: &PgPool,
    id: Uuid,
    image_id: Option<&str>,
    group_snapshot_id: Option<&str>,
) -> Result<(), sqlx::Error> {
    sqlx::query(
        "update snapshot set image_id = coalesce(image_id, $2), \
             group_snapshot_id = coalesce(group_snapshot_id, $3) where snapshot_id = $1",
    )
    .bind(id)
    .bind(image_id)
    .bind(group_snapshot_id)
    .execute(pool)
    .await?;
    Ok(())
}
