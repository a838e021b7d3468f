//! The `policy` table.

use chrono::{DateTime, Utc};
use sqlx::{PgPool, types::Json};
use uuid::Uuid;

use super::row::{self, Keyed, Named, Unreadable};

use crate::domain::{
    policy::{Policy, ResourceType, RetentionRules, SnapshotOptions, Targets, ValidPolicy},
    schedule::ScheduleSet,
};

/// Filters for [`list_policies`]; `None` matches everything.
#[derive(Debug, Clone, Default)]
pub struct PolicyFilter {
    pub enabled: Option<bool>,
    pub resource_type: Option<ResourceType>,
}

#[derive(sqlx::FromRow)]
struct PolicyRow {
    policy_id: Uuid,
    project_id: String,
    name: String,
    description: String,
    enabled: bool,
    resource_type: ResourceType,
    targets: Json<Targets>,
    schedules: Json<ScheduleSet>,
    retention: Json<RetentionRules>,
    options: Json<SnapshotOptions>,
    next_run_at: Option<DateTime<Utc>>,
    version: i64,
    created_at: DateTime<Utc>,
    updated_at: DateTime<Utc>,
}

impl From<PolicyRow> for Policy {
    fn from(row: PolicyRow) -> Self {
        Policy {
            id: row.policy_id,
            project_id: row.project_id,
            spec: ValidPolicy {
                name: row.name,
                description: row.description,
                enabled: row.enabled,
                resource_type: row.resource_type,
                targets: row.targets.0,
                schedules: row.schedules.0,
                retention: row.retention.0,
                options: row.options.0,
            },
            next_run_at: row.next_run_at,
            version: row.version,
            created_at: row.created_at,
            updated_at: row.updated_at,
        }
    }
}

impl Keyed for PolicyRow {
    const TABLE: &'static str = "policy";
    const KEY: &'static str = "policy_id";
}

/// The columns every query returns, in [`PolicyRow`] order.
macro_rules! policy_columns {
    () => {
        "policy_id, project_id, name, description, enabled, resource_type, targets, \
         schedules, retention, options, next_run_at, version, created_at, updated_at"
    };
}

/// Inserts a new policy at version 1.
///
/// # Errors
/// `policy_project_name_key` when the project already has a policy of that name.
pub async fn insert_policy(
    pool: &PgPool,
    project_id: &str,
    id: Uuid,
    spec: &ValidPolicy,
    next_run_at: Option<DateTime<Utc>>,
) -> Result<Policy, sqlx::Error> {
    let row: PolicyRow = sqlx::query_as::<_, Named<PolicyRow>>(concat!(
        "insert into policy (policy_id, project_id, name, description, enabled, resource_type, \
         targets, schedules, retention, options, next_run_at) \
         values ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11) \
         returning ",
        policy_columns!()
    ))
    .bind(id)
    .bind(project_id)
    .bind(&spec.name)
    .bind(&spec.description)
    .bind(spec.enabled)
    .bind(spec.resource_type)
    .bind(Json(&spec.targets))
    .bind(Json(&spec.schedules))
    .bind(Json(&spec.retention))
    .bind(Json(&spec.options))
    .bind(next_run_at)
    .fetch_one(pool)
    .await
    .map(Named::into_inner)?;
    Ok(row.into())
}

/// Reads one policy of a project.
///
/// # Errors
/// The query fails.
pub async fn fetch_policy(
    pool: &PgPool,
    project_id: &str,
    id: Uuid,
) -> Result<Option<Policy>, sqlx::Error> {
    let row: Option<PolicyRow> = sqlx::query_as::<_, Named<PolicyRow>>(concat!(
        "select ",
        policy_columns!(),
        " from policy where project_id = $1 and policy_id = $2"
    ))
    .bind(project_id)
    .bind(id)
    .fetch_optional(pool)
    .await
    .map(|row| row.map(Named::into_inner))?;
    Ok(row.map(Policy::from))
}

/// Lists up to `limit` policies of a project with ids after `after`, in id order.
///
/// # Errors
/// The query fails.
pub async fn list_policies(
    pool: &PgPool,
    project_id: &str,
    filter: &PolicyFilter,
    after: Option<Uuid>,
    limit: i64,
) -> Result<Vec<Policy>, sqlx::Error> {
    let rows: Vec<PolicyRow> = sqlx::query_as::<_, Named<PolicyRow>>(concat!(
        "select ",
        policy_columns!(),
        " from policy \
         where project_id = $1 \
           and ($2::uuid is null or policy_id > $2) \
           and ($3::boolean is null or enabled = $3) \
           and ($4::text is null or resource_type = $4) \
         order by policy_id \
         limit $5"
    ))
    .bind(project_id)
    .bind(after)
    .bind(filter.enabled)
    .bind(filter.resource_type.map(ResourceType::as_str))
    .bind(limit)
    .fetch_all(pool)
    .await
    .map(row::values)?;
    Ok(rows.into_iter().map(Policy::from).collect())
}

/// Replaces a policy's spec if it is still at `expected_version`, bumping the version.
///
/// Returns `None` when the policy is gone or another writer got there first.
///
/// # Errors
/// `policy_project_name_key` when the new name is taken.
pub async fn update_policy(
    pool: &PgPool,
    project_id: &str,
    id: Uuid,
    expected_version: i64,
    spec: &ValidPolicy,
    next_run_at: Option<DateTime<Utc>>,
) -> Result<Option<Policy>, sqlx::Error> {
    let row: Option<PolicyRow> = sqlx::query_as::<_, Named<PolicyRow>>(concat!(
        "update policy set name = $4, description = $5, enabled = $6, resource_type = $7, \
         targets = $8, schedules = $9, retention = $10, options = $11, next_run_at = $12, \
         version = version + 1 \
         where project_id = $1 and policy_id = $2 and version = $3 \
         returning ",
        policy_columns!()
    ))
    .bind(project_id)
    .bind(id)
    .bind(expected_version)
    .bind(&spec.name)
    .bind(&spec.description)
    .bind(spec.enabled)
    .bind(spec.resource_type)
    .bind(Json(&spec.targets))
    .bind(Json(&spec.schedules))
    .bind(Json(&spec.retention))
    .bind(Json(&spec.options))
    .bind(next_run_at)
    .fetch_optional(pool)
    .await
    .map(|row| row.map(Named::into_inner))?;
    Ok(row.map(Policy::from))
}

/// Deletes a policy if it is still at `expected_version` (any version when `None`).
/// With `delete_snapshots`, its live snapshots are set to be deleted in the same
/// transaction; otherwise they stay, no longer pruned by any policy.
///
/// Returns whether a row was deleted.
///
/// # Errors
/// The query fails.
pub async fn delete_policy(
    pool: &PgPool,
    project_id: &str,
    id: Uuid,
    expected_version: Option<i64>,
    delete_snapshots: bool,
    now: DateTime<Utc>,
) -> Result<bool, sqlx::Error> {
    let mut tx = pool.begin().await?;
    if delete_snapshots {
        super::snapshots::delete_all_of_policy(&mut tx, id, now).await?;
    }
    let result = sqlx::query(
        "delete from policy where project_id = $1 and policy_id = $2 \
         and ($3::bigint is null or version = $3)",
    )
    .bind(project_id)
    .bind(id)
    .bind(expected_version)
    .execute(&mut *tx)
    .await?;
    if result.rows_affected() == 1 {
        tx.commit().await?;
        Ok(true)
    } else {
        Ok(false)
    }
}

/// Locks up to `limit` enabled policies due at `now`, skipping rows other
/// replicas (or writers) hold; call inside the transaction that fires them.
///
/// # Errors
/// The query fails.
pub async fn lock_due_policies(
    conn: &mut sqlx::PgConnection,
    now: DateTime<Utc>,
    limit: i64,
) -> Result<Vec<Result<Policy, Unreadable>>, sqlx::Error> {
    let rows = sqlx::query(concat!(
        "select ",
        policy_columns!(),
        " from policy where enabled and next_run_at <= $1 \
         order by next_run_at limit $2 for update skip locked"
    ))
    .bind(now)
    .bind(limit)
    .fetch_all(conn)
    .await?;
    rows.iter()
        .map(|row| Ok(row::decode_or_set_aside::<PolicyRow>(row)?.map(Policy::from)))
        .collect()
}

/// A policy's version, read without decoding its spec (so that a policy this
/// build cannot read can still be deleted).
///
/// # Errors
/// The query fails.
pub async fn fetch_policy_version(
    pool: &PgPool,
    project_id: &str,
    id: Uuid,
) -> Result<Option<i64>, sqlx::Error> {
    sqlx::query_scalar("select version from policy where project_id = $1 and policy_id = $2")
        .bind(project_id)
        .bind(id)
        .fetch_optional(pool)
        .await
}

/// Moves a policy's next fire time (the scheduler's own write: no version bump).
///
/// # Errors
/// The query fails.
pub async fn set_next_run_at(
    conn: &mut sqlx::PgConnection,
    id: Uuid,
    next_run_at: Option<DateTime<Utc>>,
) -> Result<(), sqlx::Error> {
    sqlx::query("update policy set next_run_at = $2 where policy_id = $1")
        .bind(id)
        .bind(next_run_at)
        .execute(conn)
        .await?;
    Ok(())
}

/// Reads a policy by id in any project (for the engine, which serves them all).
///
/// # Errors
/// The query fails.
pub async fn fetch_policy_by_id(pool: &PgPool, id: Uuid) -> Result<Option<Policy>, sqlx::Error> {
    let row: Option<PolicyRow> = sqlx::query_as::<_, Named<PolicyRow>>(concat!(
        "select ",
        policy_columns!(),
        " from policy where policy_id = $1"
    ))
    .bind(id)
    .fetch_optional(pool)
    .await
    .map(|row| row.map(Named::into_inner))?;
    Ok(row.map(Policy::from))
}
