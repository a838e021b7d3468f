//! The `trust` table and the authority stored on runs: which Keystone trust
//! (or caller's token) a run, a job or a deletion acts with, and which trusts
//! nothing refers to any more and may be deleted in Keystone.
//!
//! A trust is referred to by the policy that holds it, by every run made with
//! it while the run is unresolved or has a job in flight, and by every snapshot
//! of such a run whose deletion has not ended. Counting references (instead of
//! following each way a policy, run or snapshot can end) keeps a trust exactly
//! as long as some work may still act with it.

use chrono::{DateTime, TimeDelta, Utc};
use sqlx::PgPool;
use uuid::Uuid;

use crate::openstack::TrustId;

/// What is stored about whose authority some work acts with.
#[derive(Debug, Clone, Default)]
pub struct StoredAuthority {
    /// The policy's current trust (a renewed trust replaces a broken one).
    pub policy_trust: Option<TrustId>,
    /// The trust the run was made with.
    pub run_trust: Option<TrustId>,
    /// A one-off run's caller's token and its expiry.
    pub user_token: Option<(secrecy::SecretString, DateTime<Utc>)>,
    /// The project the work belongs to.
    pub project_id: String,
    /// The policy's name as the run recorded it, for errors.
    pub policy_name: Option<String>,
    /// The work acts for a caller: the service's own credentials never start it.
    pub delegated: bool,
}

type AuthorityRow = (
    Option<String>,
    Option<String>,
    Option<String>,
    Option<DateTime<Utc>>,
    String,
    Option<String>,
    bool,
);

/// An [`AuthorityRow`] with its run's id in front.
type RunAuthorityRow = (
    Uuid,
    Option<String>,
    Option<String>,
    Option<String>,
    Option<DateTime<Utc>>,
    String,
    Option<String>,
    bool,
);

fn stored(row: AuthorityRow) -> StoredAuthority {
    let (policy_trust, run_trust, token, expires, project_id, policy_name, delegated) = row;
    StoredAuthority {
        policy_trust: policy_trust.map(TrustId::new),
        run_trust: run_trust.map(TrustId::new),
        user_token: token.zip(expires).map(|(t, e)| (t.into(), e)),
        project_id,
        policy_name,
        delegated,
    }
}

/// The authority stored for the work of a run.
///
/// # Errors
/// The query fails.
pub async fn for_run(pool: &PgPool, run_id: Uuid) -> Result<StoredAuthority, sqlx::Error> {
    let row: Option<AuthorityRow> = sqlx::query_as(
        "select p.trust_id, r.trust_id, r.user_token, r.user_token_expires_at, r.project_id, r.policy_name, \
             r.delegated \
         from run r left join policy p on p.policy_id = r.policy_id where r.run_id = $1",
    )
    .bind(run_id)
    .fetch_optional(pool)
    .await?;
    Ok(row.map(stored).unwrap_or_default())
}

/// [`for_run`] for many runs in one query; a run not found gets the default
/// (no trust, nothing delegated), as in [`for_run`].
///
/// # Errors
/// The query fails.
pub async fn for_runs(
    pool: &PgPool,
    run_ids: &[Uuid],
) -> Result<std::collections::HashMap<Uuid, StoredAuthority>, sqlx::Error> {
    let rows: Vec<RunAuthorityRow> =
        sqlx::query_as(
            "select r.run_id, p.trust_id, r.trust_id, r.user_token, r.user_token_expires_at, r.project_id, \
                 r.policy_name, r.delegated \
             from run r left join policy p on p.policy_id = r.policy_id where r.run_id = any($1)",
        )
        .bind(run_ids)
        .fetch_all(pool)
        .await?;
    let mut found: std::collections::HashMap<Uuid, StoredAuthority> = rows
        .into_iter()
        .map(|(run_id, a, b, c, d, e, f, g)| (run_id, stored((a, b, c, d, e, f, g))))
        .collect();
    for run_id in run_ids {
        found.entry(*run_id).or_default();
    }
    Ok(found)
}

/// The authority stored for a policy's own look at the cloud (outside any
/// run): its trust; delegated whenever it holds one.
///
/// # Errors
/// The query fails.
pub async fn for_policy(pool: &PgPool, policy_id: Uuid) -> Result<StoredAuthority, sqlx::Error> {
    let row: Option<AuthorityRow> = sqlx::query_as(
        "select trust_id, null::text, null::text, null::timestamptz, project_id, name, \
             trust_id is not null \
         from policy where policy_id = $1",
    )
    .bind(policy_id)
    .fetch_optional(pool)
    .await?;
    Ok(row.map(stored).unwrap_or_default())
}

/// The authority stored for deleting a snapshot: its policy's trust while the
/// policy lives, else the trust its run was made with while that trust is
/// kept. Never a caller's token: a deletion may run long after.
///
/// # Errors
/// The query fails.
pub async fn for_snapshot(
    pool: &PgPool,
    snapshot_id: Uuid,
) -> Result<StoredAuthority, sqlx::Error> {
    let row: Option<AuthorityRow> = sqlx::query_as(
        "select p.trust_id, r.trust_id, null::text, null::timestamptz, s.project_id, r.policy_name, \
             coalesce(r.delegated, false) \
         from snapshot s left join policy p on p.policy_id = s.policy_id \
         left join run r on r.run_id = s.run_id where s.snapshot_id = $1",
    )
    .bind(snapshot_id)
    .fetch_optional(pool)
    .await?;
    Ok(row.map(stored).unwrap_or_default())
}

/// Records a trust the service just made, before anything refers to it: a
/// trust whose policy or run was never stored is then still deleted.
///
/// # Errors
/// The query fails.
pub async fn record(
    pool: &PgPool,
    trust: &TrustId,
    project_id: &str,
    now: DateTime<Utc>,
) -> Result<(), sqlx::Error> {
    sqlx::query(
        "insert into trust (trust_id, project_id, created_at, not_before) values ($1, $2, $3, $3) \
         on conflict do nothing",
    )
    .bind(trust.expose())
    .bind(project_id)
    .bind(now)
    .execute(pool)
    .await?;
    Ok(())
}

/// Trusts nothing refers to any more, made more than `grace` ago (a trust
/// being stored with its policy is not taken), due for deletion, with the
/// attempts made so far: up to `limit`.
///
/// # Errors
/// The query fails.
pub async fn unreferenced(
    pool: &PgPool,
    now: DateTime<Utc>,
    grace: TimeDelta,
    limit: i64,
) -> Result<Vec<(TrustId, i32)>, sqlx::Error> {
    let ids: Vec<(String, i32)> = sqlx::query_as(
        "select t.trust_id, t.attempts from trust t \
         where t.not_before <= $1 and t.created_at <= $1 - $2 \
           and not exists (select 1 from policy p where p.trust_id = t.trust_id) \
           and not exists (select 1 from run r where r.trust_id = t.trust_id and ( \
                   (r.status = 'running' and r.resolved_at is null) \
                   or exists (select 1 from job j where j.run_id = r.run_id \
                              and (j.status in ('pending', 'creating', 'tracking') \
                                   or j.cleanup_due_at is not null)) \
                   or exists (select 1 from snapshot s where s.run_id = r.run_id \
                              and s.state in ('deleting', 'delete_failed', 'delete_blocked')))) \
         order by t.not_before limit $3",
    )
    .bind(now)
    .bind(grace)
    .bind(limit)
    .fetch_all(pool)
    .await?;
    Ok(ids
        .into_iter()
        .map(|(id, attempts)| (TrustId::new(id), attempts))
        .collect())
}

/// Forgets a trust deleted in Keystone, and every run's mention of it, in one
/// transaction. A trust id is never handed out again, so nothing can have
/// come to refer to it since [`unreferenced`]; a deletion that read it just
/// before falls back to the service's own credentials.
///
/// # Errors
/// The query fails.
pub async fn forget(pool: &PgPool, trust: &TrustId) -> Result<(), sqlx::Error> {
    let mut tx = pool.begin().await?;
    sqlx::query("delete from trust where trust_id = $1")
        .bind(trust.expose())
        .execute(&mut *tx)
        .await?;
    sqlx::query("update run set trust_id = null where trust_id = $1")
        .bind(trust.expose())
        .execute(&mut *tx)
        .await?;
    tx.commit().await
}

/// Puts off deleting a trust after Keystone refused or could not be reached.
///
/// # Errors
/// The query fails.
pub async fn put_off(
    pool: &PgPool,
    trust: &TrustId,
    until: DateTime<Utc>,
    error: &str,
) -> Result<(), sqlx::Error> {
    sqlx::query(
        "update trust set not_before = $2, attempts = attempts + 1, last_error = $3 where trust_id = $1",
    )
    .bind(trust.expose())
    .bind(until)
    .bind(error)
    .execute(pool)
    .await?;
    Ok(())
}

/// Drops the caller's tokens of runs that ended or whose token expired: a
/// token is kept only while a run's jobs may act with it.
///
/// # Errors
/// The query fails.
pub async fn drop_spent_tokens(pool: &PgPool, now: DateTime<Utc>) -> Result<u64, sqlx::Error> {
    let done = sqlx::query(
        "update run set user_token = null, user_token_expires_at = null \
         where user_token is not null and (status <> 'running' or user_token_expires_at <= $1)",
    )
    .bind(now)
    .execute(pool)
    .await?;
    Ok(done.rows_affected())
}

/// Gives a policy a new trust (its first, or one renewing a refused trust).
/// The trust it held stays recorded and is deleted once its runs' work ends.
///
/// # Errors
/// The query fails.
pub async fn set_policy_trust(
    pool: &PgPool,
    policy_id: Uuid,
    trust: &TrustId,
) -> Result<bool, sqlx::Error> {
    let done = sqlx::query("update policy set trust_id = $2 where policy_id = $1")
        .bind(policy_id)
        .bind(trust.expose())
        .execute(pool)
        .await?;
    Ok(done.rows_affected() == 1)
}

/// Gives the policy named `name` of `project` a new trust and lifts a
/// `trust_refused` break (the demo's policies outlive the simulator that
/// held their trust).
///
/// # Errors
/// The query fails.
pub async fn renew_named_policy_trust(
    pool: &PgPool,
    project_id: &str,
    name: &str,
    trust: &TrustId,
) -> Result<(), sqlx::Error> {
    sqlx::query(
        "update policy set trust_id = $3, \
             broken_error = case when broken_error ->> 'code' = 'trust_refused' then null else broken_error end \
         where project_id = $1 and name = $2",
    )
    .bind(project_id)
    .bind(name)
    .bind(trust.expose())
    .execute(pool)
    .await?;
    Ok(())
}
