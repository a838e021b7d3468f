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
use sqlx::{PgConnection, PgPool};
use uuid::Uuid;

use super::Scope;
use crate::domain::policy::ResourceType;

/// The common table expressions every freshness query starts with.
/// `$1`: the project (null for all), `$2`: the policy ids (null for every
/// policy in scope), `$3`: now. Yields `target_state` (one row per target) and
/// `held` (one row per resource with live snapshots of a policy, targeted or not).
macro_rules! freshness_ctes {
    () => {
        freshness_ctes!(
            "($1::text is null or project_id = $1) and ($2::uuid[] is null or policy_id = any($2))"
        )
    };
    // `$filter` selects the policies; with ids always given, it is
    // `policy_id = any($2)` so that a generic plan looks them up by key.
    ($filter:literal) => {
        concat!(
        "with p as ( \
             select policy_id, project_id, enabled, resource_type, targets, rpo_seconds, \
                    policy_verify_seconds(options) as verify_seconds from policy \
             where ", $filter, "), \
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
                             or v.failed_at > v.passed_at), false) as unverified, \
                    least(case when n.taken_at >= $3 - p.rpo_seconds * interval '1 second' \
                               then n.taken_at + p.rpo_seconds * interval '1 second' end, \
                          case when p.verify_seconds is not null and n.snapshot_id is not null \
                                and v.passed_at >= $3 - p.verify_seconds * interval '1 second' \
                                and (v.failed_at is null or v.failed_at <= v.passed_at) \
                               then v.passed_at + p.verify_seconds * interval '1 second' end) as flips_at \
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
        )
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

impl FreshnessRow {
    fn into_pair(self) -> (Uuid, Freshness) {
        let freshness = Freshness {
            last_run_at: self.last_run_at,
            last_success_at: self.last_success_at,
            stale_resources: self.stale_resources,
            orphaned_resources: self.orphaned_resources,
            unverified_resources: self.unverified_resources,
        };
        (self.policy_id, freshness)
    }
}

/// The freshness of the policies `ids` in `scope`, as of `now`: read from
/// `policy_freshness_cache` where a row is still exact, computed (and stored)
/// for the others in one query, so a page of a list costs two queries at most,
/// not one per policy. Policies not found are absent.
///
/// # Errors
/// The queries fail.
pub async fn fetch_freshness(
    pool: &PgPool,
    scope: impl Into<Scope<'_>>,
    ids: Option<&[Uuid]>,
    now: DateTime<Utc>,
) -> Result<HashMap<Uuid, Freshness>, sqlx::Error> {
    let scope: Scope<'_> = scope.into();
    let mut conn = pool.acquire().await?;
    match ids {
        Some(ids) => freshness_of(&mut conn, scope, ids, now).await,
        None => {
            let all = policies_in(&mut conn, scope).await?;
            let ids: Vec<Uuid> = all.iter().map(|(id, _)| *id).collect();
            freshness_of(&mut conn, scope, &ids, now).await
        }
    }
}

/// Every policy in `scope` and whether it is enabled, by id.
async fn policies_in(
    conn: &mut PgConnection,
    scope: Scope<'_>,
) -> Result<Vec<(Uuid, bool)>, sqlx::Error> {
    sqlx::query_as(
        "select policy_id, enabled from policy where ($1::text is null or project_id = $1) \
         order by policy_id",
    )
    .bind(scope.project())
    .fetch_all(&mut *conn)
    .await
}

/// [`fetch_freshness`] on one connection. Outside a transaction (as the API
/// and the engine's pass call it), each batch's cache rows are locked only
/// while the statement storing them runs.
///
/// # Errors
/// The queries fail.
pub async fn freshness_of(
    conn: &mut PgConnection,
    scope: Scope<'_>,
    ids: &[Uuid],
    now: DateTime<Utc>,
) -> Result<HashMap<Uuid, Freshness>, sqlx::Error> {
    let mut found = read_cached(conn, scope, ids, now).await?;
    let missing: Vec<Uuid> = ids
        .iter()
        .copied()
        .filter(|id| !found.contains_key(id))
        .collect();
    for batch in missing.chunks(REFRESH_BATCH) {
        found.extend(compute_and_store(conn, scope, batch, now).await?);
    }
    Ok(found)
}

/// Where the cache row `c` is exact at the instant `$now` (a placeholder):
/// computed at or before it and valid until after it; taken in this cluster (a
/// row any reader can see was stored from a snapshot no later than the
/// reader's, so one ahead of it came with a dump restored into another
/// cluster, whose transaction ids started again); and no change row of its
/// policy was written by a transaction its snapshot did not see.
macro_rules! cache_row_is_exact {
    ($now:literal) => {
        concat!(
            "c.computed_at <= ",
            $now,
            " and c.valid_until > ",
            $now,
            " and pg_snapshot_xmax(c.as_of) <= pg_snapshot_xmax(pg_current_snapshot()) \
              and not exists (select 1 from freshness_change f where f.policy_id = c.policy_id \
                                and not pg_visible_in_snapshot(f.xid, c.as_of))"
        )
    };
}
pub(crate) use cache_row_is_exact;

/// The cache rows of `ids` in `scope` that are exact at `now` ([`cache_row_is_exact`]).
async fn read_cached(
    conn: &mut PgConnection,
    scope: Scope<'_>,
    ids: &[Uuid],
    now: DateTime<Utc>,
) -> Result<HashMap<Uuid, Freshness>, sqlx::Error> {
    let rows: Vec<FreshnessRow> = sqlx::query_as(concat!(
        "select c.policy_id, c.last_run_at, c.last_success_at, c.stale_resources, \
             c.orphaned_resources, c.unverified_resources \
         from policy_freshness_cache c join policy p using (policy_id) \
         where c.policy_id = any($2) and ($1::text is null or p.project_id = $1) and ",
        cache_row_is_exact!("$3")
    ))
    .bind(scope.project())
    .bind(ids)
    .bind(now)
    .fetch_all(&mut *conn)
    .await?;
    Ok(rows.into_iter().map(FreshnessRow::into_pair).collect())
}

/// How long a cache row may be served at most, whatever its time-dependent
/// parts: a bound on any flip the query's `flips_at` would not foresee.
const CACHE_HORIZON_SECS: i64 = 3600;

/// A policy's freshness as the query computed it, with what its cache row keeps.
#[derive(sqlx::FromRow)]
struct ComputedRow {
    #[sqlx(flatten)]
    freshness: FreshnessRow,
    valid_until: DateTime<Utc>,
    /// The statement's snapshot (`pg_snapshot` as text: the values agree with it).
    as_of: String,
}

/// Computes the freshness of `ids` in `scope` (one read-only statement, whose
/// snapshot `as_of` the values agree with), then stores it where that waits on
/// nobody ([`store`]). The computed values are returned either way.
async fn compute_and_store(
    conn: &mut PgConnection,
    scope: Scope<'_>,
    ids: &[Uuid],
    now: DateTime<Utc>,
) -> Result<HashMap<Uuid, Freshness>, sqlx::Error> {
    let computed = compute(conn, scope, ids, now).await?;
    store(conn, &computed, now).await?;
    Ok(computed.into_values())
}

/// Freshness values computed by one statement, with the snapshot they agree
/// with, for [`store`].
pub struct Computed(Vec<ComputedRow>);

impl Computed {
    /// The values by policy.
    pub fn into_values(self) -> HashMap<Uuid, Freshness> {
        self.0
            .into_iter()
            .map(|c| c.freshness.into_pair())
            .collect()
    }
}

/// Computes the freshness of `ids` in `scope` at `now` in one read-only
/// statement (the first half of a cache miss; [`store`] is the second).
///
/// # Errors
/// The query fails.
pub async fn compute(
    conn: &mut PgConnection,
    scope: Scope<'_>,
    ids: &[Uuid],
    now: DateTime<Utc>,
) -> Result<Computed, sqlx::Error> {
    let query = concat!(
        freshness_ctes!("($1::text is null or project_id = $1) and policy_id = any($2)"),
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
             coalesce(uv.n, 0) as unverified_resources, \
             least($3 + $4 * interval '1 second', fl.at) as valid_until, \
             pg_current_snapshot()::text as as_of \
         from p \
         left join (select policy_id, count(*) as n from target_state where stale group by policy_id) st \
             using (policy_id) \
         left join (select policy_id, count(*) as n from target_state where unverified group by policy_id) uv \
             using (policy_id) \
         left join (select policy_id, min(flips_at) as at from target_state group by policy_id) fl \
             using (policy_id) \
         left join (select h.policy_id, count(*) as n from held h where not exists ( \
                 select 1 from target t where t.policy_id = h.policy_id \
                   and t.resource_type = h.resource_type and t.resource_id = h.resource_id) \
             group by h.policy_id) o using (policy_id)"
    );
    let computed: Vec<ComputedRow> = sqlx::query_as(query)
        .bind(scope.project())
        .bind(ids)
        .bind(now)
        .bind(CACHE_HORIZON_SECS)
        .fetch_all(&mut *conn)
        .await?;
    Ok(Computed(computed))
}

/// Stores `computed` (all of one statement's snapshot) as cache rows computed
/// for `now`, in one statement that waits on no lock, so a read never queues
/// behind a pass, a deletion or another reader (nor holds one long: outside a
/// transaction its locks end with it). A row is skipped, not waited for, when
/// its policy is locked (being deleted: it then never fails the foreign key),
/// its cache row is locked, or another statement is inserting its first cache
/// row (a per-policy advisory lock, because an insert waits on a conflicting
/// insert in progress). An existing row is replaced only when this snapshot
/// saw all its own did (`freshness_snapshot_covers`, on the newest version),
/// or when it is still, unchanged, a row this statement's snapshot sees
/// ahead of itself: one that came with a dump restored into another cluster
/// ([`cache_row_is_exact`]). Only the version the snapshot sees can be judged
/// so: a newer one, committed since and reached by the row lock, may be a
/// computation later than this one (the second review: judging it against
/// this transaction's id let an older value replace it). A first row
/// committed since this snapshot is kept. Returns the rows stored.
///
/// # Errors
/// The query fails.
pub async fn store(
    conn: &mut PgConnection,
    computed: &Computed,
    now: DateTime<Utc>,
) -> Result<u64, sqlx::Error> {
    let computed = computed.0.as_slice();
    let Some(as_of) = computed.first().map(|c| c.as_of.as_str()) else {
        return Ok(0);
    };
    let ids: Vec<Uuid> = computed.iter().map(|c| c.freshness.policy_id).collect();
    let column = |f: fn(&FreshnessRow) -> i64| -> Vec<i64> {
        computed.iter().map(|c| f(&c.freshness)).collect()
    };
    let stored: i64 = sqlx::query_scalar(
        "with computed as ( \
             select * from unnest($1::uuid[], $2::timestamptz[], $3::timestamptz[], $4::bigint[], \
                 $5::bigint[], $6::bigint[], $7::timestamptz[]) \
                 as t(policy_id, last_run_at, last_success_at, stale_resources, orphaned_resources, \
                      unverified_resources, valid_until)), \
         live as materialized ( \
             select policy_id from policy where policy_id = any($1) for key share skip locked), \
         held as materialized ( \
             select policy_id from policy_freshness_cache where policy_id = any($1) \
             for update skip locked), \
         restored as materialized ( \
             select policy_id, as_of::text as as_of from policy_freshness_cache \
             where policy_id = any($1) \
               and pg_snapshot_xmax(as_of) > pg_snapshot_xmax(pg_current_snapshot())), \
         updated as ( \
             update policy_freshness_cache c set last_run_at = n.last_run_at, \
                 last_success_at = n.last_success_at, stale_resources = n.stale_resources, \
                 orphaned_resources = n.orphaned_resources, \
                 unverified_resources = n.unverified_resources, computed_at = $8, \
                 valid_until = n.valid_until, as_of = $9::text::pg_snapshot \
             from computed n join live using (policy_id) join held using (policy_id) \
             where c.policy_id = n.policy_id \
               and (freshness_snapshot_covers($9::text::pg_snapshot, c.as_of) \
                    or exists (select 1 from restored r where r.policy_id = c.policy_id \
                                 and r.as_of = c.as_of::text)) \
             returning c.policy_id), \
         inserted as ( \
             insert into policy_freshness_cache (policy_id, last_run_at, last_success_at, \
                 stale_resources, orphaned_resources, unverified_resources, computed_at, \
                 valid_until, as_of) \
             select n.policy_id, n.last_run_at, n.last_success_at, n.stale_resources, \
                 n.orphaned_resources, n.unverified_resources, $8, n.valid_until, \
                 $9::text::pg_snapshot \
             from computed n join live using (policy_id) \
             where not exists (select 1 from policy_freshness_cache c where c.policy_id = n.policy_id) \
               and pg_try_advisory_xact_lock(hashtext('stacksnap.freshness_cache'), \
                                             hashtext(n.policy_id::text)) \
             order by n.policy_id \
             on conflict (policy_id) do nothing \
             returning policy_id) \
         select (select count(*) from updated) + (select count(*) from inserted)",
    )
    .bind(&ids)
    .bind(
        computed
            .iter()
            .map(|c| c.freshness.last_run_at)
            .collect::<Vec<_>>(),
    )
    .bind(
        computed
            .iter()
            .map(|c| c.freshness.last_success_at)
            .collect::<Vec<_>>(),
    )
    .bind(column(|f| f.stale_resources))
    .bind(column(|f| f.orphaned_resources))
    .bind(column(|f| f.unverified_resources))
    .bind(computed.iter().map(|c| c.valid_until).collect::<Vec<_>>())
    .bind(now)
    .bind(as_of)
    .fetch_one(&mut *conn)
    .await?;
    Ok(u64::try_from(stored).unwrap_or(0))
}

/// Deletes the change rows every reader can do without: those the cache row
/// of their policy has seen (any row replacing it sees them too, and a
/// computation that did not see them cannot replace it), and those of deleted
/// policies. A change row of a policy with no cache row yet is kept: a reader
/// whose snapshot predates it may still store the first row. So is one of a
/// policy whose cache row came from another cluster ([`cache_row_is_exact`]).
///
/// # Errors
/// The queries fail.
pub async fn collect_changes(conn: &mut PgConnection) -> Result<u64, sqlx::Error> {
    let seen = sqlx::query(
        "delete from freshness_change f using policy_freshness_cache c \
         where c.policy_id = f.policy_id and pg_visible_in_snapshot(f.xid, c.as_of) \
           and pg_snapshot_xmax(c.as_of) <= pg_snapshot_xmax(pg_current_snapshot())",
    )
    .execute(&mut *conn)
    .await?
    .rows_affected();
    let gone = sqlx::query(
        "delete from freshness_change f \
         where not exists (select 1 from policy p where p.policy_id = f.policy_id)",
    )
    .execute(&mut *conn)
    .await?
    .rows_affected();
    Ok(seen + gone)
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

/// What `/v1/status` counts of freshness: how many enabled policies in
/// `scope` (broken ones included: they fire nothing) have at least one stale
/// target, and how many targets of enabled policies are unverified (see
/// [`Freshness::unverified_resources`]). A disabled policy is left out: it was
/// turned off on purpose, and its targets going stale is expected.
///
/// # Errors
/// The queries fail.
pub async fn count_stale_and_unverified(
    pool: &PgPool,
    scope: impl Into<Scope<'_>>,
    now: DateTime<Utc>,
) -> Result<(i64, i64), sqlx::Error> {
    let scope: Scope<'_> = scope.into();
    let mut conn = pool.acquire().await?;
    let enabled: Vec<Uuid> = policies_in(&mut conn, scope)
        .await?
        .into_iter()
        .filter_map(|(id, enabled)| enabled.then_some(id))
        .collect();
    let found = freshness_of(&mut conn, scope, &enabled, now).await?;
    let stale = found.values().filter(|f| f.stale_resources > 0).count();
    let unverified = found.values().map(|f| f.unverified_resources).sum();
    Ok((i64::try_from(stale).unwrap_or(i64::MAX), unverified))
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

/// Policies whose freshness one statement recomputes.
const REFRESH_BATCH: usize = 500;

/// Recomputes `policy_freshness` (the stale-resource count of every enabled
/// policy) as of `now`, unless another replica is doing it or did it less
/// than `min_age` ago. Returns the policies counted, or `None` when skipped.
///
/// Replicas take turns under a transaction advisory lock; that transaction
/// (which holds nothing else meanwhile) re-reads when the last pass counted,
/// and at the end writes the counts and collects the change rows, then
/// commits. The counts come from `policy_freshness_cache`, whose invalid rows
/// are recomputed (in batches of policy ids) for every policy, enabled or not,
/// on another connection outside any transaction: each batch's rows are
/// stored by one statement that waits on no lock and holds its own only while
/// it runs, so no read or deletion queues behind the pass. Every policy then
/// has a cache row (unless a reader held it), and the change rows they have
/// all seen are deleted, after the pass whether or not it failed. A policy
/// deleted during the pass is left out.
///
/// # Errors
/// The queries fail; the cache rows already stored are kept (they are exact),
/// the counts are not written.
pub async fn refresh_stale_counts(
    pool: &PgPool,
    now: DateTime<Utc>,
    min_age: chrono::TimeDelta,
) -> Result<Option<usize>, sqlx::Error> {
    let mut turn = pool.begin().await?;
    let locked: bool =
        sqlx::query_scalar("select pg_try_advisory_xact_lock(hashtext('stacksnap.freshness'))")
            .fetch_one(&mut *turn)
            .await?;
    let last: Option<DateTime<Utc>> =
        sqlx::query_scalar("select max(computed_at) from policy_freshness")
            .fetch_one(&mut *turn)
            .await?;
    if !locked || last.is_some_and(|last| last > now - min_age && last <= now) {
        // Ended here, not on drop: a dropped transaction's rollback is only
        // queued, so its advisory lock would outlive this call and the next
        // pass (on another connection) would find it taken.
        turn.rollback().await?;
        return Ok(None);
    }
    let counted = count_stale(pool, &mut turn, now).await;
    if counted.is_ok() {
        turn.commit().await?;
    } else {
        // Ended here for the same reason; its own failure adds nothing.
        turn.rollback().await.ok();
    }
    // Even after a failure: the cache rows stored before it are exact and have
    // seen what they saw, and a log never collected would grow without bound.
    let collected = async {
        let mut conn = pool.acquire().await?;
        collect_changes(&mut conn).await
    };
    match counted {
        Ok(counted) => {
            collected.await?;
            Ok(Some(counted))
        }
        Err(e) => {
            collected.await.ok();
            Err(e)
        }
    }
}

/// The pass of [`refresh_stale_counts`] once it has its turn (`turn`, the
/// transaction holding the advisory lock): refreshes every policy's cache row
/// on a connection of its own, then writes the stale counts of the enabled
/// ones in `turn`. Returns the policies counted.
async fn count_stale(
    pool: &PgPool,
    turn: &mut PgConnection,
    now: DateTime<Utc>,
) -> Result<usize, sqlx::Error> {
    let (all, found) = {
        let mut conn = pool.acquire().await?;
        let all = policies_in(&mut conn, Scope::AllProjects).await?;
        let ids: Vec<Uuid> = all.iter().map(|(id, _)| *id).collect();
        let found = freshness_of(&mut conn, Scope::AllProjects, &ids, now).await?;
        (all, found)
    };
    let (enabled, stale): (Vec<Uuid>, Vec<i64>) = all
        .iter()
        .filter(|(_, enabled)| *enabled)
        .filter_map(|(id, _)| found.get(id).map(|f| (*id, f.stale_resources)))
        .unzip();
    // Only policies still there (a deletion under way is waited for, then
    // skipped), so one deleted since the list does not fail the foreign key.
    let counted = sqlx::query(
        "insert into policy_freshness (policy_id, stale_resources, computed_at) \
         select t.policy_id, t.stale_resources, $3 from unnest($1::uuid[], $2::bigint[]) \
             as t(policy_id, stale_resources) \
         join (select policy_id from policy where policy_id = any($1) for key share) live \
             using (policy_id) \
         on conflict (policy_id) do update \
             set stale_resources = excluded.stale_resources, computed_at = excluded.computed_at",
    )
    .bind(&enabled)
    .bind(&stale)
    .bind(now)
    .execute(&mut *turn)
    .await?
    .rows_affected();
    // Policies disabled (or not counted) since the last pass lose their row.
    sqlx::query("delete from policy_freshness where computed_at <> $1")
        .bind(now)
        .execute(&mut *turn)
        .await?;
    Ok(usize::try_from(counted).unwrap_or(usize::MAX))
}
