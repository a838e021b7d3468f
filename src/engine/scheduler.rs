//! Fires due policies: one run per scheduled instant, however many replicas race.

use chrono::{DateTime, Utc};

use crate::clock::Clock;
use sqlx::PgPool;
use uuid::Uuid;

use crate::{
    domain::firing,
    store::{
        policies,
        runs::{self, ScheduledRuns},
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
/// due: the query walks the partial index on `next_run_at`. A batch is a few
/// statements whatever its size: lock the due policies, insert every run of
/// the batch, advance every next fire time.
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
        // The batch in sets: every policy's plan first, then one insert of
        // all their runs and one update of all their next fire times.
        let mut runs = ScheduledRuns::default();
        let mut next = Vec::with_capacity(due.len());
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
            next.extend(plan_policy(policy, now, &mut runs));
        }
        for run in runs::insert_scheduled_runs(&mut tx, &runs, now).await? {
            if run.missed {
                total.missed += 1;
            } else {
                crate::telemetry::metrics::scheduler_lag(now - run.scheduled_for);
                total.runs += 1;
            }
        }
        policies::set_next_runs_at(&mut tx, &next).await?;
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

/// Adds a policy's runs to the batch: the instants it missed, then the one it
/// fires. Returns its id and next fire time to store, or `None` when it has no
/// due time (nothing to write).
fn plan_policy(
    policy: &crate::domain::policy::Policy,
    now: DateTime<Utc>,
    runs: &mut ScheduledRuns,
) -> Option<(Uuid, Option<DateTime<Utc>>)> {
    let due = policy.next_run_at?;
    let options = &policy.spec.options;
    let window = options.start_window.as_chrono();
    let plan = firing::plan(&policy.spec.schedules, due, now, window, options.missed_run);
    let spec = serde_json::to_value(&policy.spec).expect("a spec serialises");
    let of = (
        policy.project_id.as_str(),
        policy.id,
        policy.spec.name.as_str(),
    );
    for instant in &plan.missed {
        runs.push(of, *instant, true, &spec);
    }
    if plan.more_missed {
        tracing::warn!(policy_id = %policy.id, since = %due, recorded = plan.missed.len(),
            "more fire times were missed than are recorded; the older ones are not");
    }
    if let Some(instant) = plan.fire {
        runs.push(of, instant, false, &spec);
    }
    Some((policy.id, plan.next_run_at))
}
