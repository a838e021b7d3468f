//! Resources that join a policy with `options.snapshot_on_join`: which
//! policies are due a look, which resources each already covers, and the run
//! that snapshots the ones that joined.
//!
//! A policy **covers** the resources of its newest resolved run (not a join
//! run) and of the join runs since: the same targets its freshness counts.
//! Before its first run resolves, or while a run is being resolved, nothing
//! joins: that run takes every resource that matches.

use std::collections::BTreeSet;

use chrono::{DateTime, Utc};
use sqlx::{PgConnection, PgPool};
use uuid::Uuid;

use crate::{
    domain::{
        job::NewJob,
        policy::{Policy, ResourceType},
        status::RunTrigger,
    },
    store::policy_runs,
};

/// The resources policy `id` covers now, or `None` when nothing can join it
/// yet: no run has resolved its targets, or a run is resolving them.
///
/// # Errors
/// The query fails.
pub async fn covered(
    conn: &mut PgConnection,
    id: Uuid,
) -> Result<Option<BTreeSet<(ResourceType, String)>>, sqlx::Error> {
    let resolving: bool = sqlx::query_scalar(
        "select exists (select 1 from run where policy_id = $1 and status = 'running' \
             and resolved_at is null)",
    )
    .bind(id)
    .fetch_one(&mut *conn)
    .await?;
    // The same run the freshness queries count from (`store::freshness`).
    let baseline: Option<Uuid> = sqlx::query_scalar(
        "select r.run_id from run r \
         where r.policy_id = $1 and r.trigger not in ('join', 'verify') and r.resolved_at is not null \
           and r.status <> 'missed' \
           and (r.error is null or exists (select 1 from job j where j.run_id = r.run_id)) \
         order by r.run_id desc limit 1",
    )
    .bind(id)
    .fetch_optional(&mut *conn)
    .await?;
    let Some(baseline) = baseline.filter(|_| !resolving) else {
        return Ok(None);
    };
    let rows: Vec<(ResourceType, String)> = sqlx::query_as(
        "select j.resource_type, j.resource_id from run r join job j on j.run_id = r.run_id \
         where r.policy_id = $1 and r.run_id >= $2 and r.trigger <> 'verify'",
    )
    .bind(id)
    .bind(baseline)
    .fetch_all(&mut *conn)
    .await?;
    Ok(Some(rows.into_iter().collect()))
}

/// Stores a join run of `policy` with one job per resource of `candidates` it
/// does not cover yet, in one transaction under the policy's row lock (so two
/// replicas never snapshot the same joiner twice). Nothing is stored when the
/// policy changed since it was read (its version moved), was disabled or
/// broken, or nothing joined. Returns the run.
///
/// # Errors
/// The queries fail.
pub async fn insert_join_run(
    pool: &PgPool,
    policy: &Policy,
    candidates: Vec<NewJob>,
    now: DateTime<Utc>,
) -> Result<Option<(Uuid, usize)>, sqlx::Error> {
    let mut tx = pool.begin().await?;
    if !policy_runs::lock_if_unchanged(&mut tx, policy).await? {
        return Ok(None);
    }
    let Some(covered) = covered(&mut tx, policy.id).await? else {
        return Ok(None);
    };
    let joined: Vec<NewJob> = candidates
        .into_iter()
        .filter(|job| !covered.contains(&(job.resource_type, job.resource_id.clone())))
        .collect();
    if joined.is_empty() {
        return Ok(None);
    }
    let run_id =
        policy_runs::insert_with_jobs(&mut tx, policy, RunTrigger::Join, &joined, now).await?;
    tx.commit().await?;
    Ok(Some((run_id, joined.len())))
}
