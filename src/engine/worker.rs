//! One unit of work at a time: resolve a fired run, or advance one job by one
//! step (start it, recover it, or look at its artefacts), then record the outcome.
//!
//! No transaction is held across an OpenStack call: a job is leased, the call
//! is made, and the result is written in a new transaction.
//!
//! Starting a job and recovering one whose create may have reached the cloud
//! are in `create`; the cloud calls are in `snapshot`.

mod batch;
mod create;
mod moves;
mod restore;

use super::{
    Engine, authority, resolver,
    snapshot::{self, JobContext, Recorded},
};
use crate::openstack::Authority;
use crate::{
    domain::{
        job::{JobError, JobKind, JobStatus, Verdict},
        policy::ResourceType,
    },
    store::{
        jobs::{self, Claimed, Job, JobUpdate},
        lifecycle, runs, snapshots, trusts,
    },
};
use chrono::{DateTime, TimeDelta, Utc};
use futures_util::FutureExt as _;
use std::{any::Any, panic::AssertUnwindSafe};
use tracing::Instrument as _;
use uuid::Uuid;

/// How long a job in flight that cannot be read waits before it is looked at again.
const UNREADABLE_RETRY: TimeDelta = TimeDelta::hours(1);

/// What one call of [`Engine::execute_next`] did.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Outcome {
    /// Something was done; call again.
    Worked,
    /// Nothing is due.
    Idle,
}

impl Engine {
    /// Does one unit of due work, if there is any: resolve a run, advance a job,
    /// or take a step in deleting a snapshot.
    ///
    /// # Errors
    /// The database fails.
    pub async fn execute_next(&self) -> Result<Outcome, sqlx::Error> {
        let now = self.clock.now();
        // Every claim gets its own lease token, so a takeover is visible even
        // between two workers of one replica.
        let token = Uuid::new_v4();
        if let Some(run) =
            runs::claim_unresolved_run(&self.db, token, now, self.config.lease).await?
        {
            let span = tracing::info_span!(
                "run",
                run_id = %run.run_id,
                policy_id = tracing::field::Empty
            );
            if let Some(policy_id) = run.policy_id {
                span.record("policy_id", tracing::field::display(policy_id));
            }
            self.resolve_claimed(&run, token, now)
                .instrument(span)
                .await?;
            return Ok(Outcome::Worked);
        }
        if self.track_batch(token, now).await? {
            return Ok(Outcome::Worked);
        }
        let job = match jobs::claim_job(
            &self.db,
            token,
            now,
            self.config.lease,
            self.config.max_in_flight,
        )
        .await?
        {
            None => {
                if let Some(Claimed::Job(job)) =
                    jobs::claim_cleanup(&self.db, token, now, self.config.lease).await?
                {
                    let span = job_span(&job);
                    self.cleanup_claimed(&job, token).instrument(span).await?;
                    return Ok(Outcome::Worked);
                }
                return self.delete_next().await;
            }
            Some(Claimed::Job(job)) => job,
            Some(Claimed::Unreadable {
                job_id,
                status,
                reason,
            }) => {
                self.set_aside_unreadable(job_id, &status, reason, token, now)
                    .await?;
                return Ok(Outcome::Worked);
            }
        };
        let span = job_span(&job);
        self.advance_claimed(&job, token, now)
            .instrument(span)
            .await?;
        Ok(Outcome::Worked)
    }

    /// Resolves a claimed run into jobs (or fails it), within the run's log span.
    async fn resolve_claimed(
        &self,
        run: &runs::Run,
        token: Uuid,
        now: DateTime<Utc>,
    ) -> Result<(), sqlx::Error> {
        let resolve = resolver::resolve_run(
            &self.db,
            &self.cloud,
            run,
            token,
            now,
            self.config.retry_delay,
            self.config.requires_delegation,
        );
        tokio::select! {
            resolved = AssertUnwindSafe(resolve).catch_unwind() => match resolved {
                Ok(resolved) => resolved?,
                Err(panic) => {
                    let error = panicked("resolving the run's targets", &*panic);
                    tracing::error!(run_id = %run.run_id, error = %error.message, "a run's step panicked; the run is failed");
                    runs::fail_run(&self.db, run.run_id, token, self.clock.now(), &error).await?;
                }
            },
            () = self.keep_lease(Leased::Run(run.run_id), token) => {}
        }
        Ok(())
    }

    /// Takes one step of a claimed job and records it, within the job's log span;
    /// a change of the job's state is logged once, at info.
    async fn advance_claimed(
        &self,
        job: &Job,
        token: Uuid,
        now: DateTime<Utc>,
    ) -> Result<(), sqlx::Error> {
        // One job's data must never end a worker: a step that panics fails its job
        // (which would otherwise be claimed again and panic on the next worker).
        let step = AssertUnwindSafe(self.step(job, token, now)).catch_unwind();
        let update = tokio::select! {
            update = step => match update {
                Ok(update) => update?,
                Err(panic) => {
                    let error = panicked("a step of the job", &*panic);
                    tracing::error!(job_id = %job.job_id, error = %error.message, "a job's step panicked; the job is failed");
                    Some(fail(error))
                }
            },
            () = self.keep_lease(Leased::Job(job.job_id), token) => return Ok(()),
        };
        if let Some(update) = update {
            self.record_update(job, token, update).await?;
        }
        Ok(())
    }

    /// Records what a step of a leased job found (with `record_step`), logging a
    /// change of state once and telling waiters when the job ended.
    pub(super) async fn record_update(
        &self,
        job: &Job,
        token: Uuid,
        mut update: JobUpdate,
    ) -> Result<(), sqlx::Error> {
        let now = self.clock.now();
        if restore::needs_cleanup(job, &update) {
            update.cleanup_due_at = Some(now);
        }
        if !lifecycle::record_step(&self.db, job.job_id, token, now, &update).await? {
            tracing::info!(job_id = %job.job_id, "job changed meanwhile (cancelled or taken over); step discarded");
            return Ok(());
        }
        // A pending job that comes back pending was started (and so logged
        // `creating`) within this step: that is a change too.
        if let Some(status) = update
            .status
            .filter(|s| *s != job.status || *s == JobStatus::Pending)
        {
            log_state_change(status, &update);
        }
        if update.status.is_some_and(JobStatus::is_terminal) {
            self.job_events.ended(job.job_id);
        }
        Ok(())
    }

    /// One job's bad data must not stall a worker. A pending job has sent
    /// nothing and is failed with the reason. A job in flight may have made
    /// artefacts (or be a newer replica's, during a rolling upgrade): ending it
    /// would leak them or mark a good snapshot incomplete, so it is put off
    /// with the reason instead.
    async fn set_aside_unreadable(
        &self,
        job_id: Uuid,
        status: &str,
        reason: String,
        token: Uuid,
        now: DateTime<Utc>,
    ) -> Result<(), sqlx::Error> {
        tracing::error!(%job_id, %status, %reason, "a job row cannot be read");
        let error = JobError::new("unreadable_job", reason);
        if status == JobStatus::Pending.as_str() {
            let failed = fail(error);
            if lifecycle::record_step(&self.db, job_id, token, now, &failed).await? {
                let span = tracing::info_span!("job", %job_id);
                span.in_scope(|| log_state_change(JobStatus::Failed, &failed));
                self.job_events.ended(job_id);
            }
        } else {
            jobs::put_off_unreadable(&self.db, job_id, token, now + UNREADABLE_RETRY, &error)
                .await?;
        }
        Ok(())
    }

    /// Renews a lease while a step runs. Returns (abandoning the step) when the
    /// lease is lost, or when renewals have failed for so long that it may have
    /// expired: another worker may then own the work.
    pub(super) async fn keep_lease(&self, leased: Leased, token: Uuid) {
        let every = (self.config.lease / 3)
            .to_std()
            .unwrap_or(std::time::Duration::from_secs(10));
        let mut renewed = tokio::time::Instant::now();
        loop {
            tokio::time::sleep(every).await;
            let until = self.clock.now() + self.config.lease;
            let result = match leased {
                Leased::Job(id) => jobs::renew_lease(&self.db, id, token, until).await,
                Leased::Run(id) => runs::renew_lease(&self.db, id, token, until).await,
                Leased::Snapshot(id) => snapshots::renew_lease(&self.db, id, token, until).await,
            };
            match result {
                Ok(true) => renewed = tokio::time::Instant::now(),
                Ok(false) => {
                    tracing::warn!(?leased, "lease lost; abandoning the step");
                    return;
                }
                Err(e) => {
                    tracing::warn!(?leased, error = %e, "cannot renew lease");
                    if renewed.elapsed() >= every * 2 {
                        tracing::warn!(?leased, "lease may have expired; abandoning the step");
                        return;
                    }
                }
            }
        }
    }

    /// One step of a job, acting with the authority stored for its run.
    async fn step(
        &self,
        job: &Job,
        token: Uuid,
        now: DateTime<Utc>,
    ) -> Result<Option<JobUpdate>, sqlx::Error> {
        let stored = trusts::for_run(&self.db, job.run_id).await?;
        let delegated = authority::for_work(&stored, now);
        // Work done for a caller is never started with the service's own
        // credentials: that would make the caller's snapshot in the service's
        // project (and a look-up there would miss what the caller's token made).
        let service_acts =
            matches!(delegated, Authority::Service) && job.status != JobStatus::Tracking;
        if let (true, Some(policy_id), false, true) = (
            service_acts,
            job.policy_id,
            stored.delegated,
            self.config.requires_delegation,
        ) {
            let message = authority::trust_missing(stored.policy_name.as_deref());
            let error = crate::domain::policy::PolicyError::new("trust_missing", message.clone());
            let mut conn = self.db.acquire().await?;
            crate::store::policies::mark_broken(&mut conn, policy_id, &error).await?;
            return Ok(Some(fail(JobError::new("trust_missing", message))));
        }
        if stored.delegated && service_acts {
            return Ok(Some(fail(JobError::new(
                "authority_ended",
                "the caller's token expired before the snapshot could be started, and no trust \
                 lets the service act for the caller; ask again",
            ))));
        }
        let cloud = self.cloud.acting_as(&delegated);
        // Whether the job acts with its caller's authority, as it was given
        // (a move's source is never deleted with the service's own).
        let mut own_authority = !(stored.delegated && matches!(delegated, Authority::Service));
        let acting = match authority::check(&cloud, &delegated).await {
            Ok(()) => self.acting_with(cloud),
            Err(refusal) => match (job.policy_id, job.status) {
                (Some(policy_id), _) => {
                    return self
                        .trust_refused(job, policy_id, &stored, &delegated, &refusal, None)
                        .await;
                }
                // A one-off job outlived its caller's token and its trust: what
                // it made may still be followed with the service's own
                // credentials, but nothing is created with them.
                (None, JobStatus::Tracking) => {
                    own_authority = false;
                    self.clone()
                }
                (None, _) => {
                    return Ok(Some(fail(JobError::new(
                        "authority_ended",
                        format!(
                            "the caller's token expired before the snapshot started, and Keystone refuses \
                             the trust made when it was asked for (HTTP {}); ask again",
                            refusal
                                .status
                                .map_or_else(|| "-".to_owned(), |s| s.to_string())
                        ),
                    ))));
                }
            },
        };
        let update = acting.step_acting(job, token, now, own_authority).await?;
        // A step that met an error may have met a trust Keystone no longer
        // honours behind a cached token (a service's 401 whose re-login is
        // refused, or keystonemiddleware's 503 once the trustor lost its
        // roles): log in afresh, and if Keystone refuses, say so and break
        // the policy instead of retrying until the job times out.
        let errored = update.as_ref().is_some_and(|u| {
            u.status == Some(JobStatus::Failed) || matches!(u.error, Some(Some(_)))
        });
        if let (Some(policy_id), Authority::Trust(_), true) = (job.policy_id, &delegated, errored)
            && let Err(refusal) = authority::recheck(&acting.cloud, &delegated).await
        {
            return self
                .trust_refused(job, policy_id, &stored, &delegated, &refusal, update)
                .await;
        }
        Ok(update)
    }

    /// Ends a policy's job whose trust Keystone refuses, keeping what `update`
    /// recorded, and marks the policy broken (unless its trust was renewed
    /// meanwhile).
    async fn trust_refused(
        &self,
        job: &Job,
        policy_id: Uuid,
        stored: &trusts::StoredAuthority,
        refused: &Authority,
        refusal: &crate::openstack::OpenStackError,
        update: Option<JobUpdate>,
    ) -> Result<Option<JobUpdate>, sqlx::Error> {
        let message = authority::trust_refused(stored.policy_name.as_deref(), refusal);
        tracing::warn!(job_id = %job.job_id, %policy_id, "Keystone refuses the policy's trust; the policy is broken");
        if let Authority::Trust(trust) = refused {
            let error = crate::domain::policy::PolicyError::new("trust_refused", message.clone());
            crate::store::policies::mark_broken_for_trust(&self.db, policy_id, trust, &error)
                .await?;
        }
        let mut ended = update.unwrap_or_default();
        ended.status = Some(JobStatus::Failed);
        ended.error = Some(Some(JobError::new("trust_refused", message)));
        ended.not_before = None;
        Ok(Some(ended))
    }

    /// One step of a job. `None` means the step already wrote what it had to.
    async fn step_acting(
        &self,
        job: &Job,
        token: Uuid,
        now: DateTime<Utc>,
        own_authority: bool,
    ) -> Result<Option<JobUpdate>, sqlx::Error> {
        let ctx = context_of(job);
        match job.status {
            JobStatus::Pending => self.start(job, &ctx, token, now).await,
            JobStatus::Creating => self.recover(job, &ctx, token, now).await,
            JobStatus::Tracking if job.kind != JobKind::Snapshot => {
                Ok(Some(self.track_restore(job, now, own_authority).await))
            }
            JobStatus::Tracking => self.track(job, &ctx, now).await.map(Some),
            _ => Ok(None),
        }
    }

    async fn track(
        &self,
        job: &Job,
        ctx: &JobContext<'_>,
        now: DateTime<Utc>,
    ) -> Result<JobUpdate, sqlx::Error> {
        let progress = snapshot::poll(&self.cloud, ctx, recorded_of(job), now).await;
        self.judge_tracking(job, ctx, progress, now).await
    }

    /// What a job in tracking does after a look at its artefacts (`progress`).
    async fn judge_tracking(
        &self,
        job: &Job,
        ctx: &JobContext<'_>,
        progress: Result<snapshot::Progress, crate::openstack::OpenStackError>,
        now: DateTime<Utc>,
    ) -> Result<JobUpdate, sqlx::Error> {
        let deadline_passed = job.deadline.is_some_and(|d| now >= d);
        let progress = match progress {
            Ok(progress) => progress,
            // Asked again, the cloud gives the same answer: waiting for the
            // deadline would only turn its reason into a timeout.
            Err(e) if e.is_refused() => {
                let mut update = fail(JobError::new(
                    "request_refused",
                    format!("the cloud refused a request while following the snapshot: {e}"),
                ));
                update.calls = 1;
                return Ok(update);
            }
            Err(e) if deadline_passed => {
                return Ok(timed_out(JobError::new(
                    "timed_out",
                    format!("not finished in time; last error: {e}"),
                )));
            }
            Err(e) => {
                let mut update = later(now + self.poll_delay(job, now));
                update.calls = 1;
                update.error = Some(Some(JobError::new("polling", e.to_string())));
                return Ok(update);
            }
        };
        let mut update = JobUpdate {
            image_size_bytes: progress.image_size_bytes,
            calls: progress.calls,
            timeline: progress.timeline,
            volume_snapshots: Some(progress.volume_snapshots),
            ..JobUpdate::default()
        };
        match progress.verdict {
            // A create whose outcome was unknown may have made a second image:
            // look once, before the job is called done.
            Verdict::Done
                if job.create_unclear_at.is_some() && job.resource_type == ResourceType::Server =>
            {
                let kept = job.image_id.as_deref().unwrap_or_default();
                match snapshot::find_duplicates(&self.cloud, ctx, kept).await {
                    Ok((duplicates, calls)) => {
                        update.calls += calls;
                        self.discard_duplicates(job, &duplicates, now, &mut update)
                            .await?;
                        update.status = Some(JobStatus::Succeeded);
                        update.error = Some(None);
                    }
                    // The snapshot is complete (every artefact available); only
                    // the check for a second image failed. Once asking again
                    // cannot help (refused, or the job's time is up) the job
                    // ends succeeded, as users expect of a complete snapshot,
                    // with the unchecked duplicate noted; the orphan finder
                    // lists any such image.
                    Err(e) if e.is_refused() || deadline_passed => {
                        update.calls += 1;
                        update.status = Some(JobStatus::Succeeded);
                        update.error = Some(Some(JobError::new(
                            "duplicates_not_checked",
                            format!(
                                "the snapshot is complete, but whether an earlier create request made a second \
                                 image could not be checked: {e}; the orphan finder lists any such image"
                            ),
                        )));
                    }
                    Err(e) => {
                        update.calls += 1;
                        update.not_before = Some(now + self.poll_delay(job, now));
                        update.error = Some(Some(JobError::new("polling", e.to_string())));
                    }
                }
            }
            Verdict::Done => {
                update.status = Some(JobStatus::Succeeded);
                update.error = Some(None);
            }
            Verdict::Failed { code, message } => {
                update.status = Some(JobStatus::Failed);
                update.error = Some(Some(JobError::new(code, message)));
            }
            Verdict::InProgress if deadline_passed => {
                update.status = Some(JobStatus::TimedOut);
                update.error = Some(Some(JobError::new(
                    "timed_out",
                    format!(
                        "not finished within {}s; the artefacts are kept",
                        job.options.0.timeout_secs
                    ),
                )));
            }
            Verdict::InProgress => update.not_before = Some(now + self.poll_delay(job, now)),
        }
        Ok(update)
    }

    /// Polls often at first and less often as a snapshot takes longer.
    fn poll_delay(&self, job: &Job, now: DateTime<Utc>) -> TimeDelta {
        let age = now - job.started_at.unwrap_or(now);
        let base = self.config.poll_interval;
        let scaled = if age < base * 15 {
            base
        } else if age < base * 150 {
            base * 3
        } else {
            base * 10
        };
        scaled.min(self.config.max_poll_interval)
    }
}

/// What the cloud calls of a job need to know about it.
fn context_of(job: &Job) -> JobContext<'_> {
    JobContext {
        job_id: job.job_id,
        run_id: job.run_id,
        policy_id: job.policy_id,
        project_id: &job.project_id,
        resource_type: job.resource_type,
        resource_id: &job.resource_id,
        options: &job.options.0,
        since: job.created_at,
    }
}

/// What a job recorded of its artefacts, for the next look at them.
fn recorded_of(job: &Job) -> Recorded<'_> {
    Recorded {
        image_id: job.image_id.as_deref(),
        group_snapshot_id: job.group_snapshot_id.as_deref(),
        volume_snapshots: &job.volume_snapshots.0,
        timeline: &job.timeline.0,
    }
}

/// The log span of a job's step: every line logged within it names the job,
/// its run and its policy.
fn job_span(job: &Job) -> tracing::Span {
    let span = tracing::info_span!(
        "job",
        job_id = %job.job_id,
        run_id = %job.run_id,
        policy_id = tracing::field::Empty
    );
    if let Some(policy_id) = job.policy_id {
        span.record("policy_id", tracing::field::display(policy_id));
    }
    span
}

/// The one info line of a job's change of state (within its span), with the
/// error's code when it ended otherwise than succeeded.
pub(super) fn log_state_change(status: JobStatus, update: &JobUpdate) {
    let error = update
        .error
        .as_ref()
        .and_then(Option::as_ref)
        .filter(|_| status.is_terminal() && status != JobStatus::Succeeded)
        .map(|e| e.code.as_str());
    tracing::info!(
        status = status.as_str(),
        error_code = error,
        "job state changed"
    );
}

/// What a lease is held on.
#[derive(Debug, Clone, Copy)]
pub(super) enum Leased {
    Job(Uuid),
    Run(Uuid),
    /// A managed snapshot being deleted.
    Snapshot(Uuid),
}

fn start_window_passed(job: &Job) -> JobUpdate {
    let last = job
        .error
        .as_ref()
        .map(|e| format!(": last seen {}", e.0.message))
        .unwrap_or_default();
    fail(JobError::new(
        "start_window_passed",
        format!("could not start within the start window{last}"),
    ))
}

/// The error of work that panicked, naming what panicked and the panic's message.
fn panicked(what: &str, panic: &(dyn Any + Send)) -> JobError {
    let message = panic
        .downcast_ref::<&str>()
        .copied()
        .or_else(|| panic.downcast_ref::<String>().map(String::as_str))
        .unwrap_or("(no message)");
    JobError::new(
        "internal_error",
        format!("{what} panicked (a bug in stacksnap; please report it): {message}"),
    )
}

fn fail(error: JobError) -> JobUpdate {
    JobUpdate {
        status: Some(JobStatus::Failed),
        error: Some(Some(error)),
        ..JobUpdate::default()
    }
}

fn timed_out(error: JobError) -> JobUpdate {
    JobUpdate {
        status: Some(JobStatus::TimedOut),
        error: Some(Some(error)),
        ..JobUpdate::default()
    }
}

fn later(at: DateTime<Utc>) -> JobUpdate {
    JobUpdate {
        not_before: Some(at),
        ..JobUpdate::default()
    }
}
