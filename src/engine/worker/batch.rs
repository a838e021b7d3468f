//! Batched tracking: a worker claims the due tracking jobs of one project (up
//! to `track_batch`, servers and volumes; after a claim that was not full a
//! replica waits `track_gather` before its next claim, so that the jobs
//! falling due meanwhile gather into the next batch), groups them by the authority their
//! runs act with, and looks at each group's artefacts with one listing per
//! service (`snapshot::poll_batch`). The polls of jobs that go on tracking are
//! recorded in one statement; ends one by one (`record_step`: an end takes its
//! policy's and run's locks, records the snapshot and may end the run).
//!
//! What a batch cannot do as the single step does goes to the single step (the
//! job is already leased to this worker): an authority Keystone refuses (the
//! step then breaks the policy, or follows a one-off job with the service's
//! credentials), a batched listing that failed (each job then meets its own
//! error against its own deadline), a panic.

use std::{
    collections::{HashMap, HashSet},
    panic::AssertUnwindSafe,
};

use chrono::{DateTime, Utc};
use futures_util::FutureExt as _;
use secrecy::ExposeSecret as _;
use tracing::Instrument as _;
use uuid::Uuid;

use super::{context_of, job_span, panicked, recorded_of};
use crate::{
    domain::job::JobStatus,
    engine::{
        Engine, authority,
        snapshot::{self, Polled},
    },
    openstack::Authority,
    store::{
        jobs::{self, Claimed, Job, JobUpdate},
        trusts::{self, StoredAuthority},
    },
};

/// Which authority a group of jobs acts with: jobs are batched only with jobs
/// that act with the very same one (and, by the claim, of the same project).
#[derive(PartialEq, Eq)]
enum AuthorityKey {
    Service,
    Trust(String),
    UserToken(String),
}

impl AuthorityKey {
    fn of(authority: &Authority) -> Self {
        match authority {
            Authority::Service => Self::Service,
            Authority::Trust(trust) => Self::Trust(trust.expose().to_owned()),
            Authority::UserToken { token, .. } => Self::UserToken(token.expose_secret().to_owned()),
        }
    }
}

impl Engine {
    /// Claims due tracking jobs of one project and looks at them together.
    /// Returns whether it claimed any.
    ///
    /// # Errors
    /// The database fails.
    pub(super) async fn track_batch(
        &self,
        token: Uuid,
        now: DateTime<Utc>,
    ) -> Result<bool, sqlx::Error> {
        // A batch was claimed a moment ago: the jobs due meanwhile gather for
        // the next one. Those due for longer than the gather (of another
        // project, or more than a batch holds) have gathered already.
        let due_by = self.track_due_by(now);
        let limit = self.config.track_batch.max(1);
        let claimed = jobs::claim_tracking_batch(
            &self.db,
            token,
            now,
            self.config.lease,
            limit,
            self.config.track_ahead,
            due_by,
        )
        .await?;
        if claimed.len() >= usize::try_from(limit).unwrap_or(usize::MAX) {
            // More may be due than a batch holds: no reason to wait.
            *lock_pace(&self.track_pace) = now;
        }
        if claimed.is_empty() {
            return Ok(false);
        }
        let mut batch = Vec::with_capacity(claimed.len());
        for claimed in claimed {
            match claimed {
                Claimed::Job(job) => batch.push(*job),
                Claimed::Unreadable {
                    job_id,
                    status,
                    reason,
                } => {
                    self.set_aside_unreadable(job_id, &status, reason, token, now)
                        .await?;
                }
            }
        }
        let ids: Vec<Uuid> = batch.iter().map(|j| j.job_id).collect();
        let span = tracing::info_span!("track_batch", jobs = batch.len());
        let work =
            AssertUnwindSafe(self.track_groups(&batch, token, now).instrument(span)).catch_unwind();
        tokio::select! {
            done = work => match done {
                Ok(done) => done?,
                Err(panic) => {
                    let error = panicked("a batched look at jobs", &*panic);
                    tracing::error!(error = %error.message, "a batched look panicked; each job is looked at on its own");
                    self.each_on_its_own(&batch.iter().collect::<Vec<_>>(), token).await?;
                }
            },
            () = self.keep_batch_lease(&ids, token) => {}
        }
        Ok(true)
    }

    /// How long ago the first job of this replica's next tracking batch must
    /// have fallen due: at `now` once `track_gather` has passed since its
    /// last batch began a gather (which this claim then begins), else
    /// `track_gather` before `now`, so that only jobs that gathered that long
    /// are taken meanwhile. A clock stepped back does not stall claims for
    /// longer than the gather.
    fn track_due_by(&self, now: DateTime<Utc>) -> DateTime<Utc> {
        let gather = self.config.track_gather;
        let mut next = lock_pace(&self.track_pace);
        if now < *next && *next - now <= gather {
            return now - gather;
        }
        *next = now + gather;
        now
    }

    /// Groups the batch by authority, looks at each group and records its
    /// polls, then the jobs of it that ended, one by one.
    async fn track_groups(
        &self,
        batch: &[Job],
        token: Uuid,
        now: DateTime<Utc>,
    ) -> Result<(), sqlx::Error> {
        let mut run_ids: Vec<Uuid> = batch.iter().map(|j| j.run_id).collect();
        run_ids.sort_unstable();
        run_ids.dedup();
        let stored = trusts::for_runs(&self.db, &run_ids).await?;
        let mut groups: Vec<(AuthorityKey, Authority, Vec<&Job>)> = Vec::new();
        for job in batch {
            let authority = authority::for_work(&stored[&job.run_id], now);
            let key = AuthorityKey::of(&authority);
            match groups.iter_mut().find(|(k, ..)| *k == key) {
                Some((_, _, jobs)) => jobs.push(job),
                None => groups.push((key, authority, vec![job])),
            }
        }
        for (_, authority, jobs) in groups {
            // Recorded before the next group is looked at: a later group's
            // failure must not leave these jobs to be polled again.
            let ends = self
                .track_group(&authority, &stored, &jobs, token, now)
                .await?;
            for (job, update) in ends {
                self.record_update(job, token, update)
                    .instrument(job_span(job))
                    .await?;
            }
        }
        Ok(())
    }

    /// Looks at the artefacts of jobs that act with one authority in one
    /// project, and records the polls of those that go on tracking. Returns
    /// the updates of those that ended, for the caller to record.
    async fn track_group<'j>(
        &self,
        authority: &Authority,
        stored: &HashMap<Uuid, StoredAuthority>,
        jobs: &[&'j Job],
        token: Uuid,
        now: DateTime<Utc>,
    ) -> Result<Vec<(&'j Job, JobUpdate)>, sqlx::Error> {
        let cloud = self.cloud.acting_as(authority);
        if authority::check(&cloud, authority).await.is_err() {
            self.each_on_its_own(jobs, token).await?;
            return Ok(Vec::new());
        }
        let acting = self.acting_with(cloud);
        let polled: Vec<Polled<'_>> = jobs
            .iter()
            .map(|job| Polled {
                ctx: context_of(job),
                recorded: recorded_of(job),
            })
            .collect();
        let progress = match snapshot::poll_batch(&acting.cloud, &polled, now).await {
            Ok(progress) => progress,
            Err(e) => {
                tracing::info!(error = %e, jobs = jobs.len(), "a batched look failed; each job is looked at on its own");
                self.each_on_its_own(jobs, token).await?;
                return Ok(Vec::new());
            }
        };
        let mut updates = Vec::with_capacity(jobs.len());
        for ((job, polled), progress) in jobs.iter().zip(&polled).zip(progress) {
            let update = acting
                .judge_tracking(job, &polled.ctx, progress, now)
                .instrument(job_span(job))
                .await?;
            updates.push((*job, update));
        }
        // As the single step does: an error met with a trust may be Keystone
        // no longer honouring it behind a cached token.
        let errored =
            |u: &JobUpdate| u.status == Some(JobStatus::Failed) || matches!(u.error, Some(Some(_)));
        if matches!(authority, Authority::Trust(_))
            && updates
                .iter()
                .any(|(j, u)| j.policy_id.is_some() && errored(u))
            && let Err(refusal) = authority::recheck(&acting.cloud, authority).await
        {
            for (job, update) in &mut updates {
                if let (Some(policy_id), true) = (job.policy_id, errored(update)) {
                    let ended = self
                        .trust_refused(
                            job,
                            policy_id,
                            &stored[&job.run_id],
                            authority,
                            &refusal,
                            Some(std::mem::take(update)),
                        )
                        .await?;
                    *update = ended.unwrap_or_default();
                }
            }
        }
        let (polls, ends): (Vec<_>, Vec<_>) = updates.into_iter().partition(|(_, u)| u.is_poll());
        if !polls.is_empty() {
            let rows: Vec<(Uuid, JobUpdate)> = polls
                .iter()
                .map(|(job, update)| (job.job_id, update.clone()))
                .collect();
            let written: HashSet<Uuid> =
                jobs::record_polls(&self.db, token, self.clock.now(), &rows)
                    .await?
                    .into_iter()
                    .collect();
            // Not written: cancelled or taken over meanwhile; the single
            // record keeps what a cancelled job's step made.
            for (job, update) in polls {
                if !written.contains(&job.job_id) {
                    self.record_update(job, token, update)
                        .instrument(job_span(job))
                        .await?;
                }
            }
        }
        Ok(ends)
    }

    /// Takes the single step for each job (already leased to `token`).
    async fn each_on_its_own(&self, jobs: &[&Job], token: Uuid) -> Result<(), sqlx::Error> {
        for job in jobs {
            self.advance_claimed(job, token, self.clock.now())
                .instrument(job_span(job))
                .await?;
        }
        Ok(())
    }

    /// Renews the leases of a batch while it is looked at. Returns (abandoning
    /// the batch) when none is held any more, or when renewals have failed for
    /// so long that they may have expired.
    async fn keep_batch_lease(&self, ids: &[Uuid], token: Uuid) {
        let every = (self.config.lease / 3)
            .to_std()
            .unwrap_or(std::time::Duration::from_secs(10));
        let mut renewed = tokio::time::Instant::now();
        loop {
            tokio::time::sleep(every).await;
            let until = self.clock.now() + self.config.lease;
            match jobs::renew_leases(&self.db, ids, token, until).await {
                Ok(0) => {
                    tracing::warn!("every lease of the batch is lost; abandoning it");
                    return;
                }
                Ok(_) => renewed = tokio::time::Instant::now(),
                Err(e) => {
                    tracing::warn!(error = %e, "cannot renew the batch's leases");
                    if renewed.elapsed() >= every * 2 {
                        tracing::warn!("the batch's leases may have expired; abandoning it");
                        return;
                    }
                }
            }
        }
    }
}

/// The pacing instant, whatever a panicking holder left (it is only a time).
fn lock_pace(pace: &std::sync::Mutex<DateTime<Utc>>) -> std::sync::MutexGuard<'_, DateTime<Utc>> {
    pace.lock()
        .unwrap_or_else(std::sync::PoisonError::into_inner)
}
