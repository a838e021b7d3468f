//! Freshness of policies, computed from the database (the same on every
//! replica): each policy's targets, the newest snapshot of each, and the
//! resources it still holds snapshots of without targeting them.
//!
//! A policy's **targets** are the resources of its most recent resolved run
//! (the jobs of that run: what its selector and ids resolved to when it last
//! fired), those that joined it since (the jobs of `join` runs, with
//! `options.snapshot_on_join`), plus the ids it names now (which may not have
//! been resolved yet).
//! Runs that were missed, or failed before resolving, resolved nothing and do
//! not count. A target is **stale** when its newest available, complete snapshot
//! of the policy is older than the policy's RPO (`policy.rpo_seconds`), or when
//! it has none. A resource the policy holds available snapshots of but no longer
//! targets (it stopped matching, or was deleted) is **orphaned**.

use std::collections::HashMap;

use chrono::{DateTime, Utc};
use sqlx::PgPool;
use uuid::Uuid;

use super::Scope;
use crate::domain::policy::ResourceType;

/// The common table expressions every freshness query starts with.
/// `$1`: the project (null for all), `$2`: the policy ids (null for every
/// policy in scope), `$3`: now. Yields `target_state` (one row per target) and
/// `held` (one row per resource with live snapshots of a policy, targeted or not).
macro_rules! freshness_ctes {
    () => {
        "with p as ( \
             select policy_id, project_id, enabled, resource_type, targets, rpo_seconds, \
                    policy_verify_seconds(options) as verify_seconds from policy \
             where ($1::text is null or project_id = $1) and ($2::uuid[] is null or policy_id = any($2))), \
         last_resolved as ( \
             select p.policy_id, lr.run_id from p cross join lateral ( \
                 select r.run_id from run r \
                 where r.policy_id = p.policy_id and r.trigger not in ('join', 'verify') and r.resolved_at is not null \
                   and r.status <> 'missed' \
                   and (r.error is null or exists (select 1 from job j where j.run_id = r.run_id)) \
                 order by r.run_id desc limit 1) lr), \
         target as ( \
             select distinct on (policy_id, resource_type, resource_id) policy_id, resource_type, resource_id, resource_name \
             from ( \
                 select lr.policy_id, j.resource_type, j.resource_id, j.resource_name, 0 as named_by_id \
                 from last_resolved lr join job j on j.run_id = lr.run_id \
                 union all \
                 select lr.policy_id, j.resource_type, j.resource_id, j.resource_name, 0 \
                 from last_resolved lr \
                 join run r on r.policy_id = lr.policy_id and r.trigger = 'join' and r.run_id > lr.run_id \
                 join job j on j.run_id = r.run_id \
                 union all \
                 select p.policy_id, p.resource_type, ids.id, null, 1 \
                 from p cross join lateral policy_target_ids(p.targets) ids(id) \
             ) t order by policy_id, resource_type, resource_id, named_by_id), \
         target_state as ( \
             select t.policy_id, t.resource_type, t.resource_id, \
                    coalesce(t.resource_name, n.resource_name) as resource_name, \
                    n.snapshot_id, n.taken_at, \
                    coalesce(n.taken_at is null \
                        or n.taken_at < $3 - p.rpo_seconds * interval '1 second', false) as stale, \
                    v.passed_at as verified_at, \
                    coalesce(p.verify_seconds is not null and n.snapshot_id is not null \
                        and (v.passed_at is null \
                             or v.passed_at < $3 - p.verify_seconds * interval '1 second' \
                             or v.failed_at > v.passed_at), false) as unverified \
             from target t join p using (policy_id) \
             left join lateral ( \
                 select s.snapshot_id, s.taken_at, s.resource_name from snapshot s \
                 where s.policy_id = t.policy_id and s.resource_id = t.resource_id \
                   and s.resource_type = t.resource_type and s.state = 'available' and s.complete \
                 order by s.taken_at desc limit 1) n on true \
             left join lateral ( \
                 select max(s.verified_at) as passed_at, \
                        max((s.verify_error ->> 'at')::timestamptz) as failed_at from snapshot s \
                 where p.verify_seconds is not null and s.policy_id = t.policy_id \
                   and s.resource_id = t.resource_id and s.resource_type = t.resource_type \
                   and s.state = 'available') v on true), \
         held as ( \
             select distinct s.policy_id, s.resource_type, s.resource_id from snapshot s join p using (policy_id) \
             where s.state = 'available') "
    };
}

/// What the API shows of a policy's freshness.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Freshness {
    /// When its newest run that was not missed was scheduled for.
    pub last_run_at: Option<DateTime<Utc>>,
    /// When its newest succeeded run finished.
    pub last_success_at: Option<DateTime<Utc>>,
    /// Targets whose newest snapshot is older than the RPO, or that have none.
    pub stale_resources: i64,
    /// Resources it holds snapshots of but no longer targets.
    pub orphaned_resources: i64,
    /// With `options.verify`: targets with a snapshot whose last restore test
    /// is not a pass within `every` (none yet, too old, or failed since).
    pub unverified_resources: i64,
}

#[derive(sqlx::FromRow)]
struct FreshnessRow {
    policy_id: Uuid,
    last_run_at: Option<DateTime<Utc>>,
    last_success_at: Option<DateTime<Utc>>,
    stale_resources: i64,
    orphaned_resources: i64,
    unverified_resources: i64,
}

/// The freshness of the policies `ids` in `scope` (`None`: every policy in
/// scope, as a metrics exporter wants it), in one query: a page of a list
/// costs one query, not one per policy. Policies not found are absent.
///
/// # Errors
/// The query fails.
pub async fn fetch_freshness(
    pool: &PgPool,
    scope: impl Into<Scope<'_>>,
    ids: Option<&[Uuid]>,
    now: DateTime<Utc>,
) -> Result<HashMap<Uuid, Freshness>, sqlx::Error> {
    let scope: Scope<'_> = scope.into();
    let rows: Vec<FreshnessRow> = sqlx::query_as(concat!(
        freshness_ctes!(),
        // Counts per policy are grouped once and joined (hash joins), not
        // counted per policy row (which would scan every target once per policy).
        "select p.policy_id, \
             (select r.scheduled_for from run r where r.policy_id = p.policy_id and r.status <> 'missed' \
                and r.trigger not in ('join', 'verify') \
              order by r.run_id desc limit 1) as last_run_at, \
             (select r.finished_at from run r where r.policy_id = p.policy_id and r.status = 'succeeded' \
                and r.trigger not in ('join', 'verify') \
              order by r.run_id desc limit 1) as last_success_at, \
             coalesce(st.n, 0) as stale_resources, coalesce(o.n, 0) as orphaned_resources, \
             coalesce(uv.n, 0) as unverified_resources \
         from p \
         left join (select policy_id, count(*) as n from target_state where stale group by policy_id) st \
             using (policy_id) \
         left join (select policy_id, count(*) as n from target_state where unverified group by policy_id) uv \
             using (policy_id) \
         left join (select h.policy_id, count(*) as n from held h where not exists ( \
                 select 1 from target t where t.policy_id = h.policy_id \
                   and t.resource_type = h.resource_type and t.resource_id = h.resource_id) \
             group by h.policy_id) o using (policy_id)"
    ))
    .bind(scope.project())
    .bind(ids)
    .bind(now)
    .fetch_all(pool)
    .await?;
    Ok(rows
        .into_iter()
        .map(|r| {
            let freshness = Freshness {
                last_run_at: r.last_run_at,
                last_success_at: r.last_success_at,
                stale_resources: r.stale_resources,
                orphaned_resources: r.orphaned_resources,
                unverified_resources: r.unverified_resources,
            };
            (r.policy_id, freshness)
        })
        .collect())
}

/// One target of a policy and its newest snapshot.
#[derive(Debug, Clone, PartialEq, Eq, sqlx::FromRow)]
pub struct Target {
    pub resource_type: ResourceType,
    pub resource_id: String,
    pub resource_name: Option<String>,
    pub newest_snapshot_id: Option<Uuid>,
    pub newest_snapshot_at: Option<DateTime<Utc>>,
    pub stale: bool,
    /// The last passing restore test of any of its live snapshots (`options.verify`).
    pub verified_at: Option<DateTime<Utc>>,
    /// Whether it counts in the policy's `unverified_resources`.
    pub unverified: bool,
}

/// The targets of policy `id` in `scope`, by resource type and id; empty when
/// the policy is not found (the caller checks that first).
///
/// # Errors
/// The query fails.
pub async fn list_targets(
    pool: &PgPool,
    scope: impl Into<Scope<'_>>,
    id: Uuid,
    now: DateTime<Utc>,
) -> Result<Vec<Target>, sqlx::Error> {
    let scope: Scope<'_> = scope.into();
    sqlx::query_as::<_, Target>(concat!(
        freshness_ctes!(),
        "select resource_type, resource_id, resource_name, snapshot_id as newest_snapshot_id, \
             taken_at as newest_snapshot_at, stale, verified_at, unverified \
         from target_state order by resource_type, resource_id"
    ))
    .bind(scope.project())
    .bind([id].as_slice())
    .bind(now)
    .fetch_all(pool)
    .await
}

/// How many enabled policies in `scope` (broken ones included: they fire
/// nothing) have at least one stale target. A disabled policy is left out: it
/// was turned off on purpose, and its targets going stale is expected.
///
/// # Errors
/// The query fails.
pub async fn count_stale_policies(
    pool: &PgPool,
    scope: impl Into<Scope<'_>>,
    now: DateTime<Utc>,
) -> Result<i64, sqlx::Error> {
    let scope: Scope<'_> = scope.into();
    sqlx::query_scalar(concat!(
        freshness_ctes!(),
        "select count(distinct ts.policy_id) from target_state ts join p using (policy_id) \
         where ts.stale and p.enabled"
    ))
    .bind(scope.project())
    .bind(None::<Vec<Uuid>>)
    .bind(now)
    .fetch_one(pool)
    .await
}

/// The newest available, complete snapshot of each target of policy `id`
/// that has had no restore test (`kind = 'verify'`, whatever its end) queued
/// within `every_secs` of `now`: what a restore-test pass tests. A result
/// recorded on one of its snapshots within `every_secs` counts too, so a
/// cadence longer than the history's retention (which purges old jobs) holds.
///
/// # Errors
/// The query fails.
pub async fn verify_due(
    conn: &mut sqlx::PgConnection,
    id: Uuid,
    every_secs: i64,
    now: DateTime<Utc>,
) -> Result<Vec<Uuid>, sqlx::Error> {
    sqlx::query_scalar(concat!(
        freshness_ctes!(),
        "select ts.snapshot_id from target_state ts \
         where ts.snapshot_id is not null and not exists ( \
             select 1 from job j where j.kind = 'verify' and j.policy_id = ts.policy_id \
               and j.resource_type = ts.resource_type and j.resource_id = ts.resource_id \
               and j.created_at > $3 - $4 * interval '1 second') \
           and not exists ( \
             select 1 from snapshot s where s.policy_id = ts.policy_id \
               and s.resource_type = ts.resource_type and s.resource_id = ts.resource_id \
               and greatest(s.verified_at, (s.verify_error ->> 'at')::timestamptz) \
                   > $3 - $4 * interval '1 second') \
         order by ts.resource_type, ts.resource_id"
    ))
    .bind(None::<&str>)
    .bind([id].as_slice())
    .bind(now)
    .bind(every_secs)
    .fetch_all(conn)
    .await
}

/// How many targets of enabled policies in `scope` are unverified (see
/// [`Freshness::unverified_resources`]).
///
/// # Errors
/// The query fails.
pub async fn count_unverified_resources(
    pool: &PgPool,
    scope: impl Into<Scope<'_>>,
    now: DateTime<Utc>,
) -> Result<i64, sqlx::Error> {
    let scope: Scope<'_> = scope.into();
    sqlx::query_scalar(concat!(
        freshness_ctes!(),
        "select count(*) from target_state ts join p using (policy_id) \
         where ts.unverified and p.enabled"
    ))
    .bind(scope.project())
    .bind(None::<Vec<Uuid>>)
    .bind(now)
    .fetch_one(pool)
    .await
}

/// Policies whose stale counts one statement recomputes.
const REFRESH_BATCH: usize = 500;

/// Recomputes `policy_freshness` (the stale-resource count of every enabled
/// policy) as of `now`, unless another replica is doing it or did it less
/// than `min_age` ago. Returns the policies counted, or `None` when skipped.
///
/// One transaction under an advisory lock, so replicas take turns; the counts
/// are written in batches of policy ids so no statement grows with the cloud.
///
/// # Errors
/// The queries fail; nothing of the pass is kept.
pub async fn refresh_stale_counts(
    pool: &PgPool,
    now: DateTime<Utc>,
    min_age: chrono::TimeDelta,
) -> Result<Option<usize>, sqlx::Error> {
    let mut tx = pool.begin().await?;
    let locked: bool =
        sqlx::query_scalar("select pg_try_advisory_xact_lock(hashtext('stacksnap.freshness'))")
            .fetch_one(&mut *tx)
            .await?;
    let last: Option<DateTime<Utc>> =
        sqlx::query_scalar("select max(computed_at) from policy_freshness")
            .fetch_one(&mut *tx)
            .await?;
    if !locked || last.is_some_and(|last| last > now - min_age && last <= now) {
        // Ended here, not on drop: a dropped transaction's rollback is only
        // queued, so its advisory lock would outlive this call and the next
        // pass (on another connection) would find it taken.
        tx.rollback().await?;
        return Ok(None);
    }
    let enabled: Vec<Uuid> =
        sqlx::query_scalar("select policy_id from policy where enabled order by policy_id")
            .fetch_all(&mut *tx)
            .await?;
    for batch in enabled.chunks(REFRESH_BATCH) {
        sqlx::query(concat!(
            freshness_ctes!(),
            "insert into policy_freshness (policy_id, stale_resources, computed_at) \
             select p.policy_id, coalesce(st.n, 0), $3 from p \
             left join (select policy_id, count(*) as n from target_state where stale group by policy_id) st \
                 using (policy_id) \
             where p.enabled \
             on conflict (policy_id) do update \
                 set stale_resources = excluded.stale_resources, computed_at = excluded.computed_at"
        ))
        .bind(None::<&str>)
        .bind(batch)
        .bind(now)
        .execute(&mut *tx)
        .await?;
    }
    // Policies disabled (or not counted) since the last pass lose their row.
    sqlx::query("delete from policy_freshness where computed_at <> $1")
        .bind(now)
        .execute(&mut *tx)
        .await?;
    tx.commit().await?;
    Ok(Some(enabled.len()))
}
