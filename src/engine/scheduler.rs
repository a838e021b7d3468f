//! Fires due policies: one run per scheduled instant, however many replicas race.

use chrono::{DateTime, Utc};

use crate::clock::Clock;
use sqlx::PgPool;
use uuid::Uuid;

use crate::{
    domain::{
        firing,
        status::{RunStatus, RunTrigger},
    },
    store::{
        policies,
        runs::{self, NewRun},
    },
};

/// Policies locked and fired per transaction.
const BATCH: i64 = 200;

/// What one pass of the scheduler did.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub struct Fired {
    pub runs: usize,
    pub missed: usize,
    pub policies: usize,
}

/// Fires every policy due at `now`, in batches. Work is proportional to what is
/// due: the query walks the partial index on `next_run_at`.
///
/// # Errors
/// The database fails; what was committed stays committed.
pub async fn fire_due(db: &PgPool, clock: &dyn Clock) -> Result<Fired, sqlx::Error> {
    replan_unplanned(db, clock).await?;
    let mut total = Fired::default();
    loop {
        // Read per batch: a run records the instant it was really fired.
        let now = clock.now();
        let mut tx = db.begin().await?;
        let due = policies::lock_due_policies(&mut tx, now, BATCH).await?;
        for policy in &due {
            let policy = match policy {
                Ok(policy) => policy,
                Err(set_aside) => {
                    // One policy's bad data must not stop the others: it is marked
                    // broken (the API shows why) and stops firing until it is fixed.
                    tracing::error!(policy_id = %set_aside.id, code = %set_aside.error.code,
                        reason = %set_aside.error.message,
                        "a stored policy cannot be fired; it is broken until a PATCH fixes it");
                    policies::mark_broken(&mut tx, set_aside.id, &set_aside.error).await?;
                    continue;
                }
            };
            let fired = fire_policy(&mut tx, policy, now).await?;
            total.runs += fired.runs;
            total.missed += fired.missed;
        }
        tx.commit().await?;
        total.policies += due.len();
        if (due.len() as i64) < BATCH {
            return Ok(total);
        }
    }
}

/// Gives a next fire time back to every enabled policy that lost it without
/// being set aside (an older replica's answer to a row it could not parse, during
/// a rolling upgrade), in batches, before the due policies are fired: it resumes
/// after its last scheduled run or write, so what it slept through is fired or
/// recorded missed by the pass that follows. One that cannot fire is marked broken.
///
/// # Errors
/// The database fails; what was committed stays committed.
async fn replan_unplanned(db: &PgPool, clock: &dyn Clock) -> Result<(), sqlx::Error> {
    loop {
        let now = clock.now();
        let mut tx = db.begin().await?;
        let unplanned = policies::lock_unplanned_policies(&mut tx, now, BATCH).await?;
        for policy in &unplanned {
            match policy {
                Ok(policy) => {
                    tracing::warn!(policy_id = %policy.id, next_run_at = ?policy.next_run_at,
                        "an enabled policy had no next fire time (cleared by an older replica?); replanned");
                    policies::set_next_run_at(&mut tx, policy.id, policy.next_run_at).await?;
                }
                Err(set_aside) => {
                    tracing::error!(policy_id = %set_aside.id, code = %set_aside.error.code,
                        reason = %set_aside.error.message,
                        "a stored policy cannot be fired; it is broken until a PATCH fixes it");
                    policies::mark_broken(&mut tx, set_aside.id, &set_aside.error).await?;
                }
            }
        }
        tx.commit().await?;
        if (unplanned.len() as i64) < BATCH {
            return Ok(());
        }
    }
}

async fn fire_policy(
    conn: &mut sqlx::PgConnection,
    policy: &crate::domain::policy::Policy,
    now: DateTime<Utc>,
) -> Result<Fired, sqlx::Error> {
    let Some(due) = policy.next_run_at else {
        return Ok(Fired::default());
    };
    let options = &policy.spec.options;
    let window = options.start_window.as_chrono();
    let plan = firing::plan(&policy.spec.schedules, due, now, window, options.missed_run);
    let spec = serde_json::to_value(&policy.spec).expect("a spec serialises");
    let mut fired = Fired::default();
    for instant in &plan.missed {
        let missed = NewRun {
            run_id: Uuid::now_v7(),
            project_id: &policy.project_id,
            policy_id: Some(policy.id),
            policy_name: Some(&policy.spec.name),
            trigger: RunTrigger::Schedule,
            scheduled_for: *instant,
            status: RunStatus::Missed,
            spec: &spec,
            now,
            resolved: true,
            authority: runs::RunAuthority::default(),
            created_by: None,
        };
        fired.missed += usize::from(runs::insert_run(conn, &missed).await?);
    }
    if plan.more_missed {
        tracing::warn!(policy_id = %policy.id, since = %due, recorded = plan.missed.len(),
            "more fire times were missed than are recorded; the older ones are not");
    }
    if let Some(instant) = plan.fire {
        let run = NewRun {
            run_id: Uuid::now_v7(),
            project_id: &policy.project_id,
            policy_id: Some(policy.id),
            policy_name: Some(&policy.spec.name),
            trigger: RunTrigger::Schedule,
            scheduled_for: instant,
            status: RunStatus::Running,
            spec: &spec,
            now,
            resolved: false,
            authority: runs::RunAuthority::default(),
            created_by: None,
        };
        let inserted = runs::insert_run(conn, &run).await?;
        if inserted {
            crate::telemetry::metrics::scheduler_lag(now - instant);
        }
        fired.runs += usize::from(inserted);
    }
    policies::set_next_run_at(conn, policy.id, plan.next_run_at).await?;
    Ok(fired)
}
