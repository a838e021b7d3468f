//! Runs a background task stores for a policy it read a moment earlier (a
//! join run, a restore test's run): stored under the policy's row lock, and
//! only if the policy is still the version read, enabled and unbroken, so a
//! change in between (a PATCH, a disable, a deletion) always wins.

use chrono::{DateTime, Utc};
use sqlx::PgConnection;
use uuid::Uuid;

use crate::{
    domain::{
        job::NewJob,
        policy::Policy,
        status::{RunStatus, RunTrigger},
    },
    store::{
        jobs,
        runs::{self, NewRun, RunAuthority},
    },
};

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
        run_id,
        project_id: &policy.project_id,
        policy_id: Some(policy.id),
        policy_name: Some(&policy.spec.name),
        trigger,
        scheduled_for: now,
        status: RunStatus::Running,
        spec: &spec,
        now,
        resolved: true,
        authority: RunAuthority::default(),
        created_by: None,
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
