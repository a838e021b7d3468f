//! `options.verify`: restore tests on a schedule. Every few minutes each such
//! policy is looked at (by one replica per interval), and each target whose
//! newest available, complete snapshot has had no test queued within `every`
//! (passed or failed: a failing one is not retried in a loop) gets a restore
//! test: a job of kind `verify` in a run of trigger `verify`, which restores
//! the snapshot into a throwaway resource, waits until it is usable, and is
//! then always cleaned up (`worker::restore::needs_cleanup`). Its result is
//! recorded on the snapshot when the job ends (`store::verify`).

use chrono::TimeDelta;
use uuid::Uuid;

use super::Engine;
use crate::{
    domain::{job::NewJob, policy::Policy, verify::verify_job},
    store::{
        freshness, policies,
        policy_runs::{self, Watch},
        snapshots, verify,
    },
};

/// Policies one pass looks at, at most, per batch.
const BATCH: i64 = 50;

/// What one pass queued.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub struct Queued {
    /// Policies looked at.
    pub policies: usize,
    /// `verify` runs stored.
    pub runs: usize,
    /// Restore tests queued.
    pub jobs: usize,
}

impl Engine {
    /// Queues the restore tests due in the policies due a look.
    ///
    /// # Errors
    /// The database fails.
    pub async fn queue_restore_tests(&self) -> Result<Queued, sqlx::Error> {
        let now = self.clock.now();
        let interval = TimeDelta::from_std(self.config.verify_interval).unwrap_or(TimeDelta::MAX);
        let mut queued = Queued::default();
        loop {
            let claimed =
                policy_runs::claim_watched(&self.db, Watch::Verify, now, interval, BATCH).await?;
            for id in &claimed {
                self.queue_tests_of(*id, &mut queued).await?;
            }
            if (claimed.len() as i64) < BATCH {
                return Ok(queued);
            }
        }
    }

    async fn queue_tests_of(&self, id: Uuid, queued: &mut Queued) -> Result<(), sqlx::Error> {
        let policy = match policies::fetch_policy_by_id(&self.db, id).await {
            Ok(Some(policy)) => policy,
            // One the scheduler cannot read is marked broken by it.
            Ok(None) | Err(sqlx::Error::Decode(_)) => return Ok(()),
            Err(e) => return Err(e),
        };
        let Some(every) = policy
            .spec
            .options
            .verify
            .as_ref()
            .map(|v| v.every.as_chrono())
        else {
            return Ok(());
        };
        queued.policies += 1;
        let jobs = self.tests_due(&policy, every).await?;
        if jobs.is_empty() {
            return Ok(());
        }
        let now = self.clock.now();
        if let Some((run_id, n)) =
            verify::insert_verify_run(&self.db, &policy, jobs, every, now).await?
        {
            tracing::info!(policy_id = %id, %run_id, jobs = n, "queued restore tests");
            queued.runs += 1;
            queued.jobs += n;
        }
        Ok(())
    }

    /// One restore-test job per target of `policy` due a test now.
    async fn tests_due(
        &self,
        policy: &Policy,
        every: TimeDelta,
    ) -> Result<Vec<NewJob>, sqlx::Error> {
        let Some(options) = policy.spec.options.verify.as_ref() else {
            return Ok(Vec::new());
        };
        let now = self.clock.now();
        let due = freshness::verify_due(
            &mut *self.db.acquire().await?,
            policy.id,
            every.num_seconds(),
            now,
        )
        .await?;
        let mut jobs = Vec::with_capacity(due.len());
        for snapshot_id in due {
            let Some(snapshot) =
                snapshots::fetch_snapshot(&self.db, crate::store::Scope::AllProjects, snapshot_id)
                    .await?
            else {
                continue;
            };
            match verify_job(
                &policy.spec.name,
                options,
                &snapshot.restore_pieces(),
                Uuid::now_v7(),
                now,
            ) {
                Ok(job) => jobs.push(job),
                Err(e) => tracing::warn!(policy_id = %policy.id, %snapshot_id, reason = %e.0,
                    "the newest snapshot cannot be restored; no restore test of it"),
            }
        }
        Ok(jobs)
    }
}
