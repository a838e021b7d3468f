//! The `policy` table.
//!
//! Rows are read raw (the spec parts as JSON) and parsed afterwards, so that a
//! row this build cannot parse is one broken policy, not a failed query: the
//! API shows it `broken`, the scheduler sets it aside and fires the others.
//!
//! Over 400 lines: every query of one table, sharing its column list and raw
//! row type, and the two transactions (update, delete) that stop a policy's work.

use chrono::{DateTime, Utc};
use serde_json::Value;
use sqlx::{PgPool, types::Json};
use uuid::Uuid;

use crate::{domain::event::api_actor, openstack::TrustId};

use super::{
    Scope,
    freshness::{Freshness, cache_row_is_exact},
    lifecycle::{self, PolicyStop},
    row::{self, Keyed, Named},
};

use crate::domain::policy::{
    Authors, Policy, PolicyError, ResourceType, StoredPolicy, ValidPolicy, check_stored,
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
    resource_type: String,
    targets: Value,
    schedules: Value,
    retention: Value,
    options: Value,
    next_run_at: Option<DateTime<Utc>>,
    version: i64,
    broken_error: Option<Value>,
    created_at: DateTime<Utc>,
    updated_at: DateTime<Utc>,
    created_by: Option<String>,
    updated_by: Option<String>,
    /// For an enabled policy with no `next_run_at`: the later of its last
    /// scheduled run and its last write, which it resumes after. Only the
    /// queries that show or replan policies select it ([`replan_since_column`]).
    #[sqlx(default)]
    replan_since: Option<DateTime<Utc>>,
}

impl PolicyRow {
    /// The stored spec in the shape a client writes it.
    fn document(&self) -> Value {
        serde_json::json!({
            "name": self.name,
            "description": self.description,
            "enabled": self.enabled,
            "resource_type": self.resource_type,
            "targets": self.targets,
            "schedules": self.schedules,
            "retention": self.retention,
            "options": self.options,
        })
    }

    /// The policy parsed as stored (no check against newer rules): what retention
    /// and the writes read.
    fn into_policy(self) -> Result<Policy, sqlx::Error> {
        let spec: ValidPolicy = serde_json::from_value(self.document()).map_err(|e| {
            sqlx::Error::Decode(format!("policy {} cannot be read: {e}", self.policy_id).into())
        })?;
        Ok(Policy {
            id: self.policy_id,
            project_id: self.project_id,
            spec,
            next_run_at: self.next_run_at,
            version: self.version,
            created_at: self.created_at,
            updated_at: self.updated_at,
            authors: Authors {
                created_by: self.created_by,
                updated_by: self.updated_by,
            },
        })
    }

    /// The policy read against today's rules, as the API shows it and the scheduler fires it.
    fn into_stored(self, now: DateTime<Utc>) -> StoredPolicy {
        let since = self.replan_since.unwrap_or(self.updated_at);
        let document = self.document();
        let set_aside = self.broken_error.map(|error| {
            serde_json::from_value(error.clone())
                .unwrap_or_else(|_| PolicyError::new("unreadable_policy", error.to_string()))
        });
        StoredPolicy {
            id: self.policy_id,
            project_id: self.project_id,
            enabled: self.enabled,
            spec: check_stored(&document, now),
            document,
            set_aside,
            next_run_at: self.next_run_at,
            version: self.version,
            created_at: self.created_at,
            updated_at: self.updated_at,
            authors: Authors {
                created_by: self.created_by,
                updated_by: self.updated_by,
            },
        }
        .replanned(since)
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
         schedules, retention, options, next_run_at, version, broken_error, created_at, updated_at, \
         created_by, updated_by"
    };
}

/// [`PolicyRow::replan_since`], selected after the [`policy_columns`] by the
/// queries that show policies or replan them (`run_scheduled_once_idx` serves
/// the look-up of the last scheduled run).
macro_rules! replan_since_column {
    () => {
        ", case when enabled and next_run_at is null then greatest(updated_at, \
             (select max(r.scheduled_for) from run r \
              where r.policy_id = policy.policy_id and r.trigger = 'schedule')) end as replan_since"
    };
}

/// A new version of a policy, for [`update_policy`].
#[derive(Debug, Clone, Copy)]
pub struct PolicyChange<'a> {
    /// The version it replaces; another writer's change in between wins.
    pub expected_version: i64,
    pub spec: &'a ValidPolicy,
    pub next_run_at: Option<DateTime<Utc>>,
    /// The user making the change; `None` when unknown (`--auth none`).
    pub updated_by: Option<&'a str>,
    /// A trust from that user replacing the policy's (one Keystone refuses).
    pub renewed_trust: Option<&'a TrustId>,
}

/// The RPO stored with a policy (`rpo_seconds`, what freshness is computed
/// with), counted over the year from `from`: the policy's next fire time, or
/// now when it has none. A policy is stored again whenever it is written.
fn rpo_seconds(spec: &ValidPolicy, from: DateTime<Utc>) -> i64 {
    spec.rpo(from).num_seconds()
}

/// A policy the scheduler cannot fire, with the reason.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SetAside {
    pub id: Uuid,
    pub error: PolicyError,
}

/// Inserts a new policy at version 1, made (and so last changed) by `created_by`.
///
/// # Errors
/// `policy_project_name_key` when the project already has a policy of that name.
pub async fn insert_policy(
    pool: &PgPool,
    project_id: &str,
    id: Uuid,
    spec: &ValidPolicy,
    next_run_at: Option<DateTime<Utc>>,
    created_by: Option<&str>,
) -> Result<Policy, sqlx::Error> {
    insert_delegated_policy(pool, project_id, id, spec, next_run_at, created_by, None).await
}

/// Inserts a policy that acts with `trust` (the creator's, made for it), in one statement.
///
/// # Errors
/// `policy_project_name_key` when the project already has a policy of that name.
pub async fn insert_delegated_policy(
    pool: &PgPool,
    project_id: &str,
    id: Uuid,
    spec: &ValidPolicy,
    next_run_at: Option<DateTime<Utc>>,
    created_by: Option<&str>,
    trust: Option<&TrustId>,
) -> Result<Policy, sqlx::Error> {
    let row: PolicyRow = sqlx::query_as::<_, Named<PolicyRow>>(concat!(
        "insert into policy (policy_id, project_id, name, description, enabled, resource_type, \
         targets, schedules, retention, options, next_run_at, created_by, updated_by, trust_id, rpo_seconds) \
         values ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12, $12, $13, $14) \
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
    .bind(created_by)
    .bind(trust.map(TrustId::expose))
    .bind(rpo_seconds(spec, next_run_at.unwrap_or_else(Utc::now)))
    .fetch_one(pool)
    .await
    .map(Named::into_inner)?;
    row.into_policy()
}

/// Reads one policy of a project.
///
/// # Errors
/// The query fails.
pub async fn fetch_policy(
    pool: &PgPool,
    scope: impl Into<Scope<'_>>,
    id: Uuid,
) -> Result<Option<Policy>, sqlx::Error> {
    let scope: Scope<'_> = scope.into();
    let row: Option<PolicyRow> = sqlx::query_as::<_, Named<PolicyRow>>(concat!(
        "select ",
        policy_columns!(),
        " from policy where ($1::text is null or project_id = $1) and policy_id = $2"
    ))
    .bind(scope.project())
    .bind(id)
    .fetch_optional(pool)
    .await
    .map(|row| row.map(Named::into_inner))?;
    row.map(PolicyRow::into_policy).transpose()
}

/// Reads one policy of a project as the API shows it: checked against the rules
/// of `now`, and readable even when it is broken.
///
/// # Errors
/// The query fails.
pub async fn fetch_stored_policy(
    pool: &PgPool,
    scope: impl Into<Scope<'_>>,
    id: Uuid,
    now: DateTime<Utc>,
) -> Result<Option<StoredPolicy>, sqlx::Error> {
    let scope: Scope<'_> = scope.into();
    let row: Option<PolicyRow> = sqlx::query_as::<_, Named<PolicyRow>>(concat!(
        "select ",
        policy_columns!(),
        replan_since_column!(),
        " from policy where ($1::text is null or project_id = $1) and policy_id = $2"
    ))
    .bind(scope.project())
    .bind(id)
    .fetch_optional(pool)
    .await
    .map(|row| row.map(Named::into_inner))?;
    Ok(row.map(|row| row.into_stored(now)))
}

/// A policy's row with its freshness cache row where that is exact at `now`.
#[derive(sqlx::FromRow)]
struct PolicyWithCacheRow {
    #[sqlx(flatten)]
    policy: PolicyRow,
    cached: bool,
    cached_last_run_at: Option<DateTime<Utc>>,
    cached_last_success_at: Option<DateTime<Utc>>,
    cached_stale: Option<i64>,
    cached_orphaned: Option<i64>,
    cached_unverified: Option<i64>,
}

impl Keyed for PolicyWithCacheRow {
    const TABLE: &'static str = "policy";
    const KEY: &'static str = "policy_id";
}

impl PolicyWithCacheRow {
    fn cached_freshness(&self) -> Option<Freshness> {
        self.cached.then(|| Freshness {
            last_run_at: self.cached_last_run_at,
            last_success_at: self.cached_last_success_at,
            stale_resources: self.cached_stale.unwrap_or_default(),
            orphaned_resources: self.cached_orphaned.unwrap_or_default(),
            unverified_resources: self.cached_unverified.unwrap_or_default(),
        })
    }
}

/// [`fetch_stored_policy`] with the policy's freshness where its cache row is
/// exact at `now`, in one statement (`None` when it must be computed: see
/// [`super::freshness::fetch_freshness`]). The policy read path of the API.
///
/// # Errors
/// The query fails.
pub async fn fetch_stored_policy_with_cached_freshness(
    pool: &PgPool,
    scope: impl Into<Scope<'_>>,
    id: Uuid,
    now: DateTime<Utc>,
) -> Result<Option<(StoredPolicy, Option<Freshness>)>, sqlx::Error> {
    let scope: Scope<'_> = scope.into();
    let row: Option<PolicyWithCacheRow> = sqlx::query_as::<_, Named<PolicyWithCacheRow>>(concat!(
        "select p.*, c.cached is not null as cached, c.last_run_at as cached_last_run_at, \
             c.last_success_at as cached_last_success_at, c.stale_resources as cached_stale, \
             c.orphaned_resources as cached_orphaned, c.unverified_resources as cached_unverified \
         from (select ",
        policy_columns!(),
        replan_since_column!(),
        " from policy where ($1::text is null or project_id = $1) and policy_id = $2) p \
         left join lateral (select true as cached, c.last_run_at, c.last_success_at, c.stale_resources, \
                 c.orphaned_resources, c.unverified_resources \
             from policy_freshness_cache c where c.policy_id = p.policy_id and ",
        cache_row_is_exact!("$3"),
        ") c on true"
    ))
    .bind(scope.project())
    .bind(id)
    .bind(now)
    .fetch_optional(pool)
    .await
    .map(|row| row.map(Named::into_inner))?;
    Ok(row.map(|row| {
        let cached = row.cached_freshness();
        (row.policy.into_stored(now), cached)
    }))
}

/// Lists up to `limit` policies of a project with ids after `after`, in id order,
/// each checked against the rules of `now` (a broken one is listed as such).
///
/// # Errors
/// The query fails.
pub async fn list_policies(
    pool: &PgPool,
    scope: impl Into<Scope<'_>>,
    filter: &PolicyFilter,
    after: Option<Uuid>,
    limit: i64,
    now: DateTime<Utc>,
) -> Result<Vec<StoredPolicy>, sqlx::Error> {
    let scope: Scope<'_> = scope.into();
    let rows: Vec<PolicyRow> = sqlx::query_as::<_, Named<PolicyRow>>(concat!(
        "select ",
        policy_columns!(),
        replan_since_column!(),
        " from policy \
         where ($1::text is null or project_id = $1) \
           and ($2::uuid is null or policy_id > $2) \
           and ($3::boolean is null or enabled = $3) \
           and ($4::text is null or resource_type = $4) \
         order by policy_id \
         limit $5"
    ))
    .bind(scope.project())
    .bind(after)
    .bind(filter.enabled)
    .bind(filter.resource_type.map(ResourceType::as_str))
    .bind(limit)
    .fetch_all(pool)
    .await
    .map(row::values)?;
    Ok(rows.into_iter().map(|row| row.into_stored(now)).collect())
}

/// Replaces a policy's spec if it is still at `expected_version`, bumping the
/// version and clearing what the scheduler recorded when it set the policy aside.
/// Disabling a policy cancels its work not yet started, in the same transaction.
///
/// Returns `None` when the policy is gone or another writer got there first.
///
/// # Errors
/// `policy_project_name_key` when the new name is taken.
pub async fn update_policy(
    pool: &PgPool,
    scope: impl Into<Scope<'_>>,
    id: Uuid,
    change: &PolicyChange<'_>,
    now: DateTime<Utc>,
) -> Result<Option<Policy>, sqlx::Error> {
    let PolicyChange {
        expected_version,
        spec,
        next_run_at,
        updated_by,
        renewed_trust,
    } = *change;
    let scope: Scope<'_> = scope.into();
    let mut tx = pool.begin().await?;
    super::events::act_as(&mut tx, api_actor(updated_by)).await?;
    // `no key update`: a job recording its snapshot of this policy meanwhile only
    // needs a key-share lock on it, and must not wait for this transaction.
    let was_enabled: Option<bool> = sqlx::query_scalar(
        "select enabled from policy where ($1::text is null or project_id = $1) and policy_id = $2 and version = $3 \
         for no key update",
    )
    .bind(scope.project())
    .bind(id)
    .bind(expected_version)
    .fetch_optional(&mut *tx)
    .await?;
    let Some(was_enabled) = was_enabled else {
        return Ok(None);
    };
    let row: PolicyRow = sqlx::query_as::<_, Named<PolicyRow>>(concat!(
        "update policy set name = $4, description = $5, enabled = $6, resource_type = $7, \
         targets = $8, schedules = $9, retention = $10, options = $11, next_run_at = $12, \
         broken_error = null, version = version + 1, updated_by = $13, trust_id = coalesce($14, trust_id), \
         rpo_seconds = $15 \
         where ($1::text is null or project_id = $1) and policy_id = $2 and version = $3 \
         returning ",
        policy_columns!()
    ))
    .bind(scope.project())
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
    .bind(updated_by)
    .bind(renewed_trust.map(TrustId::expose))
    .bind(rpo_seconds(spec, next_run_at.unwrap_or(now)))
    .fetch_one(&mut *tx)
    .await
    .map(Named::into_inner)?;
    if was_enabled && !spec.enabled {
        lifecycle::stop_policy_work(&mut tx, id, PolicyStop::Disabled, now).await?;
    }
    tx.commit().await?;
    row.into_policy().map(Some)
}

/// Deletes a policy if it is still at `expected_version` (any version when `None`),
/// stopping its work in the same transaction: pending jobs are cancelled and runs
/// not yet resolved are failed; jobs in flight finish. With `delete_snapshots`, its
/// live snapshots are set to be deleted, and so is what its jobs in flight make,
/// once recorded; otherwise they all stay, unmanaged (no policy prunes them).
///
/// Returns whether a row was deleted. `actor` (who deletes it) is recorded in the events.
///
/// # Errors
/// The query fails.
pub async fn delete_policy(
    pool: &PgPool,
    scope: impl Into<Scope<'_>>,
    id: Uuid,
    expected_version: Option<i64>,
    delete_snapshots: bool,
    now: DateTime<Utc>,
    actor: &str,
) -> Result<bool, sqlx::Error> {
    let scope: Scope<'_> = scope.into();
    let mut tx = pool.begin().await?;
    super::events::act_as(&mut tx, actor).await?;
    // The policy first, then its runs, then their jobs (DESIGN.md, lock order):
    // a job that ends takes the policy (key share) and its run before its own
    // row, and a worker resolving a run holds the run, so none of them waits on
    // this transaction in a cycle.
    let found: Option<Uuid> = sqlx::query_scalar(
        "select policy_id from policy where ($1::text is null or project_id = $1) and policy_id = $2 \
         and ($3::bigint is null or version = $3) for update",
    )
    .bind(scope.project())
    .bind(id)
    .bind(expected_version)
    .fetch_optional(&mut *tx)
    .await?;
    if found.is_none() {
        return Ok(false);
    }
    let stop = PolicyStop::Deleted { delete_snapshots };
    lifecycle::stop_policy_work(&mut tx, id, stop, now).await?;
    if delete_snapshots {
        super::snapshots::delete_all_of_policy(&mut tx, id, now).await?;
    }
    sqlx::query("delete from policy where policy_id = $1")
        .bind(id)
        .execute(&mut *tx)
        .await?;
    tx.commit().await?;
    Ok(true)
}

/// Locks up to `limit` enabled policies due at `now`, skipping rows other
/// replicas (or writers) hold; call inside the transaction that fires them.
/// Each is checked against the rules of `now`: one that cannot be read or no
/// longer passes comes back [`SetAside`], for the caller to mark broken.
///
/// # Errors
/// The query fails.
pub async fn lock_due_policies(
    conn: &mut sqlx::PgConnection,
    now: DateTime<Utc>,
    limit: i64,
) -> Result<Vec<Result<Policy, SetAside>>, sqlx::Error> {
    let rows: Vec<PolicyRow> = sqlx::query_as::<_, Named<PolicyRow>>(concat!(
        "select ",
        policy_columns!(),
        " from policy where enabled and next_run_at <= $1 \
         order by next_run_at limit $2 for update skip locked"
    ))
    .bind(now)
    .bind(limit)
    .fetch_all(conn)
    .await
    .map(row::values)?;
    Ok(parse_locked(rows, now))
}

/// Locks up to `limit` enabled policies that have no next fire time and were not
/// set aside (an older replica cleared `next_run_at` of a row it could not
/// parse), skipping rows others hold. Each comes back replanned
/// ([`StoredPolicy::replanned`]): with the `next_run_at` to store, or
/// [`SetAside`] when it cannot fire. Walks `policy_unplanned_idx`, so the work
/// is proportional to such policies, and each leaves the set once written.
///
/// # Errors
/// The query fails.
pub async fn lock_unplanned_policies(
    conn: &mut sqlx::PgConnection,
    now: DateTime<Utc>,
    limit: i64,
) -> Result<Vec<Result<Policy, SetAside>>, sqlx::Error> {
    let rows: Vec<PolicyRow> = sqlx::query_as::<_, Named<PolicyRow>>(concat!(
        "select ",
        policy_columns!(),
        replan_since_column!(),
        " from policy where enabled and next_run_at is null and broken_error is null \
         order by policy_id limit $1 for update skip locked"
    ))
    .bind(limit)
    .fetch_all(conn)
    .await
    .map(row::values)?;
    Ok(parse_locked(rows, now))
}

/// Parses locked rows: each a policy that can fire, or set aside with its reason.
fn parse_locked(rows: Vec<PolicyRow>, now: DateTime<Utc>) -> Vec<Result<Policy, SetAside>> {
    rows.into_iter()
        .map(|row| {
            let id = row.policy_id;
            row.into_stored(now)
                .into_policy()
                .map_err(|error| SetAside { id, error })
        })
        .collect()
}

/// Records why a policy cannot fire and stops it firing, until it is written
/// again (the scheduler's own write: no version bump).
///
/// # Errors
/// The query fails.
pub async fn mark_broken(
    conn: &mut sqlx::PgConnection,
    id: Uuid,
    error: &PolicyError,
) -> Result<(), sqlx::Error> {
    sqlx::query("update policy set broken_error = $2, next_run_at = null where policy_id = $1")
        .bind(id)
        .bind(Json(error))
        .execute(conn)
        .await?;
    Ok(())
}

/// Marks a policy broken because Keystone refuses `trust`, only while the
/// policy still holds that trust: a PATCH that renewed it meanwhile wins.
///
/// # Errors
/// The query fails.
pub async fn mark_broken_for_trust(
    pool: &PgPool,
    id: Uuid,
    trust: &TrustId,
    error: &PolicyError,
) -> Result<bool, sqlx::Error> {
    let done = sqlx::query(
        "update policy set broken_error = $3, next_run_at = null where policy_id = $1 and trust_id = $2",
    )
    .bind(id)
    .bind(trust.expose())
    .bind(Json(error))
    .execute(pool)
    .await?;
    Ok(done.rows_affected() == 1)
}

/// A policy's version, read without decoding its spec (so that a policy this
/// build cannot read can still be deleted).
///
/// # Errors
/// The query fails.
pub async fn fetch_policy_version(
    pool: &PgPool,
    scope: impl Into<Scope<'_>>,
    id: Uuid,
) -> Result<Option<i64>, sqlx::Error> {
    let scope: Scope<'_> = scope.into();
    sqlx::query_scalar(
        "select version from policy where ($1::text is null or project_id = $1) and policy_id = $2",
    )
    .bind(scope.project())
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

/// Moves many policies' next fire times in one statement (the scheduler's
/// own write: no version bump).
///
/// # Errors
/// The query fails.
pub async fn set_next_runs_at(
    conn: &mut sqlx::PgConnection,
    next: &[(Uuid, Option<DateTime<Utc>>)],
) -> Result<(), sqlx::Error> {
    if next.is_empty() {
        return Ok(());
    }
    let (ids, at): (Vec<Uuid>, Vec<Option<DateTime<Utc>>>) = next.iter().copied().unzip();
    sqlx::query(
        "update policy p set next_run_at = u.next_run_at \
         from unnest($1::uuid[], $2::timestamptz[]) as u (policy_id, next_run_at) \
         where p.policy_id = u.policy_id",
    )
    .bind(ids)
    .bind(at)
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
    row.map(PolicyRow::into_policy).transpose()
}

/// Works out `rpo_seconds` for the policies stored before it existed (null),
/// counted over the year from `now`; a policy this build cannot read is left
/// for a write to repair. Idempotent: replicas starting together each fill
/// what is still null. Returns how many it filled.
///
/// # Errors
/// A query fails.
pub async fn fill_missing_rpo(pool: &PgPool, now: DateTime<Utc>) -> Result<u64, sqlx::Error> {
    let rows: Vec<PolicyRow> = sqlx::query_as::<_, Named<PolicyRow>>(concat!(
        "select ",
        policy_columns!(),
        " from policy where rpo_seconds is null"
    ))
    .fetch_all(pool)
    .await
    .map(row::values)?;
    let mut filled = 0;
    for policy in rows.into_iter().filter_map(|row| row.into_policy().ok()) {
        let from = policy.next_run_at.unwrap_or(now);
        filled += sqlx::query(
            "update policy set rpo_seconds = $2 where policy_id = $1 and rpo_seconds is null",
        )
        .bind(policy.id)
        .bind(rpo_seconds(&policy.spec, from))
        .execute(pool)
        .await?
        .rows_affected();
    }
    Ok(filled)
}
