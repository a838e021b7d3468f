//! The `run` table: firings of policies and one-off snapshot requests.

use chrono::{DateTime, Utc};
use serde_json::Value;
use sqlx::{PgConnection, PgPool, types::Json};
use uuid::Uuid;

use super::{
    Scope,
    row::{self, Keyed, Named},
};

use crate::domain::{
    job::JobError,
    status::{JobStatus, RunStatus, RunTrigger},
};

/// A stored run, with its jobs counted by status.
#[derive(Debug, Clone, sqlx::FromRow)]
pub struct Run {
    pub run_id: Uuid,
    pub project_id: String,
    pub policy_id: Option<Uuid>,
    pub policy_name: Option<String>,
    pub trigger: RunTrigger,
    pub scheduled_for: DateTime<Utc>,
    pub status: RunStatus,
    /// The policy spec (or one-off request) at fire time.
    pub spec: Value,
    pub resolved_at: Option<DateTime<Utc>>,
    pub error: Option<Json<JobError>>,
    pub started_at: Option<DateTime<Utc>>,
    pub finished_at: Option<DateTime<Utc>>,
    pub created_at: DateTime<Utc>,
    /// The user who started it by hand (or asked for the one-off snapshot); `None` for a scheduled run.
    pub created_by: Option<String>,
    /// `[[status, count], ...]` for the run's jobs.
    pub job_counts: Json<Vec<(JobStatus, i64)>>,
}

impl Run {
    /// How many of the run's jobs are in `status`.
    pub fn count(&self, status: JobStatus) -> i64 {
        self.job_counts
            .0
            .iter()
            .find(|(s, _)| *s == status)
            .map_or(0, |(_, n)| *n)
    }
}

impl Keyed for Run {
    const TABLE: &'static str = "run";
    const KEY: &'static str = "run_id";
}

macro_rules! run_select {
    () => {
        "select r.run_id, r.project_id, r.policy_id, r.policy_name, r.trigger, r.scheduled_for, r.status, \
         r.spec, r.resolved_at, r.error, r.started_at, r.finished_at, r.created_at, r.created_by, \
         coalesce((select jsonb_agg(jsonb_build_array(c.status, c.n)) from \
             (select status, count(*) as n from job where job.run_id = r.run_id group by status) c), '[]') \
             as job_counts \
         from run r "
    };
}

/// A new run to insert.
#[derive(Debug, Clone)]
pub struct NewRun<'a> {
    pub run_id: Uuid,
    pub project_id: &'a str,
    pub policy_id: Option<Uuid>,
    pub policy_name: Option<&'a str>,
    pub trigger: RunTrigger,
    pub scheduled_for: DateTime<Utc>,
    pub status: RunStatus,
    pub spec: &'a Value,
    pub now: DateTime<Utc>,
    pub resolved: bool,
    /// What the run's jobs act with, beyond the policy's trust (copied by the
    /// insert): a one-off run's trust and its caller's token with its expiry.
    pub authority: RunAuthority<'a>,
    /// The user who asked for it; `None` for a scheduled run or when no user is known.
    pub created_by: Option<&'a str>,
}

impl<'a> NewRun<'a> {
    /// A run resolved as it is inserted (its jobs go in with it) and running
    /// from `now`: a one-off, join, verify or background run. No policy, no
    /// delegated authority and no author until the caller sets them.
    pub fn resolved(
        run_id: Uuid,
        project_id: &'a str,
        trigger: RunTrigger,
        spec: &'a Value,
        now: DateTime<Utc>,
    ) -> Self {
        Self {
            run_id,
            project_id,
            policy_id: None,
            policy_name: None,
            trigger,
            scheduled_for: now,
            status: RunStatus::Running,
            spec,
            now,
            resolved: true,
            authority: RunAuthority::default(),
            created_by: None,
        }
    }
}

/// The delegated authority a run is inserted with.
#[derive(Clone, Copy, Default)]
pub struct RunAuthority<'a> {
    pub trust_id: Option<&'a str>,
    pub user_token: Option<(&'a str, DateTime<Utc>)>,
}

impl std::fmt::Debug for RunAuthority<'_> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("RunAuthority")
            .field("trust_id", &self.trust_id.map(|_| "[redacted]"))
            .field(
                "user_token",
                &self.user_token.map(|(_, e)| ("[redacted]", e)),
            )
            .finish()
    }
}

/// Inserts a run; a scheduled instant already fired is skipped. Returns whether it was inserted.
///
/// # Errors
/// The query fails.
pub async fn insert_run(conn: &mut PgConnection, run: &NewRun<'_>) -> Result<bool, sqlx::Error> {
    let finished = run.status != RunStatus::Running;
    let result = sqlx::query(
        "insert into run (run_id, project_id, policy_id, policy_name, trigger, scheduled_for, status, spec, \
         resolved_at, not_before, started_at, finished_at, created_at, created_by, trust_id, user_token, user_token_expires_at, \
         delegated) \
         values ($1, $2, $3, $4, $5, $6, $7, $8, case when $9 then $10 end, $10, \
                 case when $11 then null else $10 end, case when $11 then $10 end, $10, $12, \
                 coalesce($13, (select trust_id from policy where policy_id = $3)), $14, $15, \
                 $13 is not null or $14 is not null \
                 or exists (select 1 from policy where policy_id = $3 and trust_id is not null)) \
         on conflict do nothing",
    )
    .bind(run.run_id)
    .bind(run.project_id)
    .bind(run.policy_id)
    .bind(run.policy_name)
    .bind(run.trigger)
    .bind(run.scheduled_for)
    .bind(run.status)
    .bind(run.spec)
    .bind(run.resolved || finished)
    .bind(run.now)
    .bind(finished)
    .bind(run.created_by)
    .bind(run.authority.trust_id)
    .bind(run.authority.user_token.map(|(token, _)| token))
    .bind(run.authority.user_token.map(|(_, expires)| expires))
    .execute(conn)
    .await?;
    Ok(result.rows_affected() == 1)
}

/// A scheduler batch's runs, inserted by [`insert_scheduled_runs`] in one
/// statement: each policy's missed instants (`missed`), then the instant it fires.
#[derive(Debug, Default)]
pub struct ScheduledRuns {
    run_ids: Vec<Uuid>,
    project_ids: Vec<String>,
    policy_ids: Vec<Uuid>,
    policy_names: Vec<String>,
    scheduled_for: Vec<DateTime<Utc>>,
    missed: Vec<bool>,
    specs: Vec<Value>,
}

/// A scheduled run [`insert_scheduled_runs`] inserted (an instant already fired is not).
#[derive(Debug, Clone, Copy, PartialEq, Eq, sqlx::FromRow)]
pub struct InsertedRun {
    pub policy_id: Uuid,
    pub scheduled_for: DateTime<Utc>,
    /// Recorded `missed`, not fired.
    pub missed: bool,
}

impl ScheduledRuns {
    /// Adds a run of a policy for `scheduled_for`: `missed`, or fired (`running`).
    pub fn push(
        &mut self,
        policy: (&str, Uuid, &str),
        scheduled_for: DateTime<Utc>,
        missed: bool,
        spec: &Value,
    ) {
        let (project_id, policy_id, policy_name) = policy;
        self.run_ids.push(Uuid::now_v7());
        self.project_ids.push(project_id.to_owned());
        self.policy_ids.push(policy_id);
        self.policy_names.push(policy_name.to_owned());
        self.scheduled_for.push(scheduled_for);
        self.missed.push(missed);
        self.specs.push(spec.clone());
    }

    pub fn is_empty(&self) -> bool {
        self.run_ids.is_empty()
    }
}

/// Inserts a scheduler batch's runs in one statement, as [`insert_run`] inserts
/// each (trigger `schedule`, no creator, the policy's trust): a scheduled
/// instant already fired is skipped. Returns the runs inserted.
///
/// # Errors
/// The query fails.
pub async fn insert_scheduled_runs(
    conn: &mut PgConnection,
    runs: &ScheduledRuns,
    now: DateTime<Utc>,
) -> Result<Vec<InsertedRun>, sqlx::Error> {
    if runs.is_empty() {
        return Ok(Vec::new());
    }
    sqlx::query_as::<_, InsertedRun>(
        "insert into run (run_id, project_id, policy_id, policy_name, trigger, scheduled_for, status, spec, \
         resolved_at, not_before, started_at, finished_at, created_at, created_by, trust_id, user_token, \
         user_token_expires_at, delegated) \
         select u.run_id, u.project_id, u.policy_id, u.policy_name, 'schedule', u.scheduled_for, \
                case when u.missed then 'missed' else 'running' end, u.spec, \
                case when u.missed then $8 end, $8, case when u.missed then null else $8 end, \
                case when u.missed then $8 end, $8, null, p.trust_id, null, null, p.trust_id is not null \
         from unnest($1::uuid[], $2::text[], $3::uuid[], $4::text[], $5::timestamptz[], $6::bool[], $7::jsonb[]) \
              with ordinality as u (run_id, project_id, policy_id, policy_name, scheduled_for, missed, spec, ord) \
         left join policy p on p.policy_id = u.policy_id \
         order by u.ord \
         on conflict do nothing \
         returning policy_id, scheduled_for, status = 'missed' as missed",
    )
    .bind(&runs.run_ids)
    .bind(&runs.project_ids)
    .bind(&runs.policy_ids)
    .bind(&runs.policy_names)
    .bind(&runs.scheduled_for)
    .bind(&runs.missed)
    .bind(&runs.specs)
    .bind(now)
    .fetch_all(conn)
    .await
}

/// Reads one run of a project.
///
/// # Errors
/// The query fails.
pub async fn fetch_run(
    pool: &PgPool,
    scope: impl Into<Scope<'_>>,
    run_id: Uuid,
) -> Result<Option<Run>, sqlx::Error> {
    let scope: Scope<'_> = scope.into();
    sqlx::query_as::<_, Named<Run>>(concat!(
        run_select!(),
        "where ($1::text is null or r.project_id = $1) and r.run_id = $2"
    ))
    .bind(scope.project())
    .bind(run_id)
    .fetch_optional(pool)
    .await
    .map(|row| row.map(Named::into_inner))
}

/// Lists runs of a project, newest first, before the cursor id.
///
/// # Errors
/// The query fails.
pub async fn list_runs(
    pool: &PgPool,
    scope: impl Into<Scope<'_>>,
    policy_id: Option<Uuid>,
    status: Option<RunStatus>,
    before: Option<Uuid>,
    limit: i64,
) -> Result<Vec<Run>, sqlx::Error> {
    let scope: Scope<'_> = scope.into();
    sqlx::query_as::<_, Named<Run>>(concat!(
        run_select!(),
        "where ($1::text is null or r.project_id = $1) and ($2::uuid is null or r.policy_id = $2) \
         and ($3::text is null or r.status = $3) and ($4::uuid is null or r.run_id < $4) \
         order by r.run_id desc limit $5"
    ))
    .bind(scope.project())
    .bind(policy_id)
    .bind(status)
    .bind(before)
    .bind(limit)
    .fetch_all(pool)
    .await
    .map(row::values)
}

/// Claims one run whose targets need resolving, leasing it to `owner`.
///
/// # Errors
/// The query fails.
pub async fn claim_unresolved_run(
    pool: &PgPool,
    owner: Uuid,
    now: DateTime<Utc>,
    lease: chrono::TimeDelta,
) -> Result<Option<Run>, sqlx::Error> {
    let claimed: Option<Uuid> = sqlx::query_scalar(
        "update run set lease_owner = $1, lease_expires_at = $2 + $3 \
         where run_id = (select run_id from run where resolved_at is null and status = 'running' \
             and not_before <= $2 and (lease_expires_at is null or lease_expires_at < $2) \
             order by not_before limit 1 for update skip locked) \
         returning run_id",
    )
    .bind(owner)
    .bind(now)
    .bind(lease)
    .fetch_optional(pool)
    .await?;
    match claimed {
        Some(id) => sqlx::query_as::<_, Named<Run>>(concat!(run_select!(), "where r.run_id = $1"))
            .bind(id)
            .fetch_optional(pool)
            .await
            .map(|row| row.map(Named::into_inner)),
        None => Ok(None),
    }
}

/// Marks a run's targets resolved (its jobs are inserted in the same transaction).
///
/// # Errors
/// The query fails.
pub async fn mark_resolved(
    conn: &mut PgConnection,
    run_id: Uuid,
    owner: Uuid,
    now: DateTime<Utc>,
) -> Result<bool, sqlx::Error> {
    let result = sqlx::query(
        "update run set resolved_at = $3, error = null, lease_owner = null, lease_expires_at = null \
         where run_id = $1 and lease_owner = $2 and resolved_at is null",
    )
    .bind(run_id)
    .bind(owner)
    .bind(now)
    .execute(conn)
    .await?;
    Ok(result.rows_affected() == 1)
}

/// Extends a run lease still held by `owner`. Returns whether it is still held.
///
/// # Errors
/// The query fails.
pub async fn renew_lease(
    pool: &PgPool,
    run_id: Uuid,
    owner: Uuid,
    until: DateTime<Utc>,
) -> Result<bool, sqlx::Error> {
    let result =
        sqlx::query("update run set lease_expires_at = $3 where run_id = $1 and lease_owner = $2")
            .bind(run_id)
            .bind(owner)
            .bind(until)
            .execute(pool)
            .await?;
    Ok(result.rows_affected() == 1)
}

/// Puts off resolving a run (the cloud could not be asked), recording why.
///
/// # Errors
/// The query fails.
pub async fn defer_resolution(
    pool: &PgPool,
    run_id: Uuid,
    owner: Uuid,
    not_before: DateTime<Utc>,
    error: &JobError,
) -> Result<(), sqlx::Error> {
    sqlx::query(
        "update run set not_before = $3, error = $4, lease_owner = null, lease_expires_at = null \
         where run_id = $1 and lease_owner = $2",
    )
    .bind(run_id)
    .bind(owner)
    .bind(not_before)
    .bind(Json(error))
    .execute(pool)
    .await?;
    Ok(())
}

/// Ends a run as failed without jobs.
///
/// # Errors
/// The query fails.
pub async fn fail_run(
    pool: &PgPool,
    run_id: Uuid,
    owner: Uuid,
    now: DateTime<Utc>,
    error: &JobError,
) -> Result<(), sqlx::Error> {
    sqlx::query(
        "update run set status = 'failed', error = $3, finished_at = $2, resolved_at = coalesce(resolved_at, $2), \
         lease_owner = null, lease_expires_at = null \
         where run_id = $1 and status = 'running' and resolved_at is null and lease_owner = $4",
    )
    .bind(run_id)
    .bind(now)
    .bind(Json(error))
    .bind(owner)
    .execute(pool)
    .await?;
    Ok(())
}

/// Ends a resolved run whose jobs have all ended, with the status they add up to.
///
/// # Errors
/// The query fails.
pub async fn complete_run_if_done(
    conn: &mut PgConnection,
    run_id: Uuid,
    now: DateTime<Utc>,
) -> Result<(), sqlx::Error> {
    // Serialise the jobs of one run that end at the same time: without the row
    // lock, each transaction would still see the other's job open, and the run
    // would stay `running` for ever.
    let running: Option<bool> = sqlx::query_scalar(
        "select resolved_at is not null from run where run_id = $1 and status = 'running' for update",
    )
    .bind(run_id)
    .fetch_optional(&mut *conn)
    .await?;
    if running != Some(true) {
        return Ok(());
    }
    let open: bool = sqlx::query_scalar(
        "select exists (select 1 from job where run_id = $1 and status in ('pending', 'creating', 'tracking'))",
    )
    .bind(run_id)
    .fetch_one(&mut *conn)
    .await?;
    if open {
        return Ok(());
    }
    let (succeeded, unsuccessful): (i64, i64) = sqlx::query_as(
        "select count(*) filter (where status = 'succeeded'), count(*) filter (where status <> 'succeeded') \
         from job where run_id = $1",
    )
    .bind(run_id)
    .fetch_one(&mut *conn)
    .await?;
    let status = crate::domain::job::run_outcome(succeeded as usize, unsuccessful as usize);
    // The caller's token is kept only while the run's jobs may need it.
    sqlx::query(
        "update run set status = $2, finished_at = $3, user_token = null, user_token_expires_at = null \
         where run_id = $1",
    )
        .bind(run_id)
        .bind(status)
        .bind(now)
        .execute(conn)
        .await?;
    Ok(())
}

/// Inserts a run of `policy` fired by hand now by `created_by`; its targets are resolved by a worker.
///
/// # Errors
/// The query fails.
pub async fn insert_manual_run(
    pool: &PgPool,
    policy: &crate::domain::policy::Policy,
    created_by: Option<&str>,
    now: DateTime<Utc>,
) -> Result<Uuid, sqlx::Error> {
    let run_id = Uuid::now_v7();
    let spec = serde_json::to_value(&policy.spec).expect("a spec serialises");
    let mut conn = pool.acquire().await?;
    let run = NewRun {
        run_id,
        project_id: &policy.project_id,
        policy_id: Some(policy.id),
        policy_name: Some(&policy.spec.name),
        trigger: RunTrigger::Manual,
        scheduled_for: now,
        status: RunStatus::Running,
        spec: &spec,
        now,
        resolved: false,
        authority: RunAuthority::default(),
        created_by,
    };
    insert_run(&mut conn, &run).await?;
    Ok(run_id)
}
