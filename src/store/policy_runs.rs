//! Runs a background task stores for a policy it read a moment earlier (a
//! join run, a restore test's run): stored under the policy's row lock, and
//! only if the policy is still the version read, enabled and unbroken, so a
//! change in between (a PATCH, a disable, a deletion) always wins.

use chrono::{DateTime, TimeDelta, Utc};
use sqlx::{PgConnection, PgPool};
use uuid::Uuid;

use crate::{
    domain::{job::NewJob, policy::Policy, status::RunTrigger},
    store::{
        jobs,
        runs::{self, NewRun},
    },
};

/// A background task that looks at policies on a cadence, with the table
/// recording when each policy was last looked at.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Watch {
    /// Policies with `options.snapshot_on_join` (`policy_join_watch`).
    Joins,
    /// Policies with `options.verify` (`policy_verify_watch`).
    Verify,
}

/// The claim statement of a watch: `$1` now, `$2` the last look that is due
/// again, `$3` the limit. Static SQL per watch, so no name is ever spliced in.
macro_rules! claim_watched_sql {
    ($watch:literal, $predicate:literal) => {
        concat!(
            "with due as ( \
                 select p.policy_id from policy p left join ",
            $watch,
            " w using (policy_id) \
                 where p.enabled and p.broken_error is null and ",
            $predicate,
            " \
                   and (w.checked_at is null or w.checked_at <= $2) \
                 order by w.checked_at nulls first, p.policy_id limit $3) \
             insert into ",
            $watch,
            " (policy_id, checked_at) select policy_id, $1 from due \
             on conflict (policy_id) do update set checked_at = excluded.checked_at \
                 where ",
            $watch,
            ".checked_at <= $2 \
             returning policy_id"
        )
    };
}

/// Claims up to `limit` enabled, unbroken policies of `watch` that were not
/// looked at for `interval`, marking them looked at now. The upsert decides:
/// a replica whose claim commits first wins the row, and the other's upsert,
/// waiting on it, re-checks `checked_at` and claims nothing, so each policy is
/// looked at once per interval whatever the number of replicas. No policy row
/// is locked.
///
/// # Errors
/// The query fails.
pub async fn claim_watched(
    pool: &PgPool,
    watch: Watch,
    now: DateTime<Utc>,
    interval: TimeDelta,
    limit: i64,
) -> Result<Vec<Uuid>, sqlx::Error> {
    let sql = match watch {
        Watch::Joins => claim_watched_sql!(
            "policy_join_watch",
            "p.options @> '{\"snapshot_on_join\": true}'"
        ),
        Watch::Verify => claim_watched_sql!("policy_verify_watch", "p.options ? 'verify'"),
    };
    sqlx::query_scalar(sql)
        .bind(now)
        .bind(now - interval)
        .bind(limit)
        .fetch_all(pool)
        .await
}

/// Locks `policy`'s row (`FOR UPDATE`) and tells whether it is still the
/// version read, enabled and not broken.
///
/// # Errors
/// The query fails.
pub async fn lock_if_unchanged(
    conn: &mut PgConnection,
    policy: &Policy,
) -> Result<bool, sqlx::Error> {
    let unchanged: Option<bool> = sqlx::query_scalar(
        "select version = $2 and enabled and broken_error is null from policy \
         where policy_id = $1 for update",
    )
    .bind(policy.id)
    .bind(policy.version)
    .fetch_optional(conn)
    .await?;
    Ok(unchanged == Some(true))
}

/// Stores a resolved, running run of `policy` with `trigger` and `jobs`
/// (its jobs act with the policy's trust, copied into the run). Returns the run.
///
/// # Errors
/// The queries fail.
pub async fn insert_with_jobs(
    conn: &mut PgConnection,
    policy: &Policy,
    trigger: RunTrigger,
    jobs: &[NewJob],
    now: DateTime<Utc>,
) -> Result<Uuid, sqlx::Error> {
    let run_id = Uuid::now_v7();
    let spec = serde_json::to_value(&policy.spec).expect("a spec serialises");
    let run = NewRun {
        policy_id: Some(policy.id),
        policy_name: Some(&policy.spec.name),
        ..NewRun::resolved(run_id, &policy.project_id, trigger, &spec, now)
    };
    runs::insert_run(&mut *conn, &run).await?;
    jobs::insert_jobs(
        &mut *conn,
        run_id,
        &policy.project_id,
        Some(policy.id),
        jobs,
        now,
    )
    .await?;
    Ok(run_id)
}
