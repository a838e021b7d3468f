//! Sending a job's create request, and recovering a job whose create may have
//! reached the cloud.
//!
//! The rule: once a create may have reached the cloud (its outcome unknown: a
//! timeout, a 5xx, a lost or unreadable answer, a worker that died while
//! sending), the job stays `creating` and every further create is preceded by
//! a look-up. A look-up that finds nothing is believed only `create_settle`
//! after that create, since a volume-backed `createImage` makes its image last
//! and can outlast the client; Nova's Cinder snapshots for the job's image mean
//! the call is still under way. Only sends count as attempts, and they are
//! capped; the start window bounds the time spent retrying.

use chrono::{DateTime, TimeDelta, Utc};
use futures_util::{FutureExt as _, future::BoxFuture};
use uuid::Uuid;

use super::{fail, later, start_window_passed, timed_out};
use crate::{
    domain::job::{JobError, JobKind, JobStatus, TimelineEntry, VolumeSnapshotState},
    engine::{
        Engine,
        snapshot::{self, Artefacts, BeforeSend, JobContext, Lookup, StartResult},
    },
    openstack::OpenStackError,
    store::{
        jobs::{self, Job, JobUpdate, StartOutcome},
        snapshots,
    },
};

impl Engine {
    /// Starts a pending job: counts the attempt within the concurrency limits,
    /// then sends the create request.
    pub(super) async fn start(
        &self,
        job: &Job,
        ctx: &JobContext<'_>,
        token: Uuid,
        now: DateTime<Utc>,
    ) -> Result<Option<JobUpdate>, sqlx::Error> {
        if now > job.start_by {
            return Ok(Some(start_window_passed(job)));
        }
        if let Some(over) = deadline_passed(job, now) {
            return Ok(Some(over));
        }
        if let Some(exhausted) = self.attempts_exhausted(job) {
            return Ok(Some(exhausted));
        }
        let policy_limit = job.options.0.max_concurrent.map(i64::from);
        match jobs::start_job(
            &self.db,
            job,
            token,
            now,
            self.config.max_in_flight,
            policy_limit,
        )
        .await?
        {
            StartOutcome::Started => tracing::info!(status = "creating", "job state changed"),
            StartOutcome::AtCapacity => return Ok(Some(later(now + self.config.capacity_wait))),
            StartOutcome::ResourceBusy => {
                // Held by another job of ours, not by the cloud: looked at
                // again as soon as a job held back by a limit would be, so a
                // pipeline's `?wait=` behind a job about to end is not held
                // for the cloud's retry delay (15 s).
                let mut update = later(now + self.config.capacity_wait);
                update.error = Some(Some(JobError::new(
                    "resource_busy",
                    "another snapshot of this resource is still in progress; waiting for it",
                )));
                return Ok(Some(update));
            }
            StartOutcome::Lost => return Ok(None),
        }
        Ok(Some(self.send_create(job, ctx, token, now).await))
    }

    /// Sends the create request of a job already marked `creating` with its
    /// attempt; right before the request goes out, the job is marked as having
    /// an unclear create, until its outcome is known.
    async fn send_create(
        &self,
        job: &Job,
        ctx: &JobContext<'_>,
        token: Uuid,
        now: DateTime<Utc>,
    ) -> JobUpdate {
        let gate = MarkSending {
            engine: self,
            job_id: job.job_id,
            token,
        };
        if job.kind != JobKind::Snapshot {
            let mut update = self.send_restore(job, &gate, now).await;
            if update.create_unclear_at.is_none()
                && update
                    .error
                    .as_ref()
                    .and_then(Option::as_ref)
                    .is_none_or(|e| e.code != "unclear")
            {
                update.create_unclear_at = Some(job.create_unclear_at);
            }
            return update;
        }
        let result = snapshot::start(&self.cloud, ctx, &gate, &self.boot_images).await;
        let mut update = match result {
            StartResult::Started(artefacts) => self.adopt(job, artefacts, now),
            StartResult::Retry(error) => JobUpdate {
                create_not_sent: true,
                ..self.retry_start(job, &error, now)
            },
            StartResult::Refused(error) => self.retry_start(job, &error, now),
            StartResult::Unclear(error) => {
                // The request may have been carried out: stay in `creating`, so the
                // next step looks the artefact up before it would ever send again.
                // The job was marked unclear when the request was sent.
                tracing::warn!(job_id = %job.job_id, error = %error, "unclear outcome of the snapshot request");
                let mut update = later(now + self.config.retry_delay);
                update.error = Some(Some(JobError::new("unclear", error.to_string())));
                return update;
            }
            StartResult::Fail(error) => fail(error),
            StartResult::Leftovers {
                error,
                pieces,
                calls,
            } => {
                tracing::warn!(job_id = %job.job_id, error = %error.message, "the create was refused after Nova had made some of its snapshots");
                let mut update = fail(error);
                update.calls = calls;
                match pieces {
                    Some(pieces) => update.volume_snapshots = Some(pieces),
                    // Recorded with nothing but an unclear create: deletion searches for them.
                    None => update.create_unclear_at = Some(Some(self.clock.now())),
                }
                update
            }
        };
        if update.create_unclear_at.is_none() {
            // This send's outcome is known (or nothing was sent): an earlier unclear one still stands.
            update.create_unclear_at = Some(job.create_unclear_at);
        }
        update
    }

    /// The cloud was busy or refused the request: try again after a pause —
    /// from `pending` when no earlier create may have reached the cloud, else
    /// from `creating`, so that a look-up comes first.
    pub(super) fn retry_start(
        &self,
        job: &Job,
        error: &OpenStackError,
        now: DateTime<Utc>,
    ) -> JobUpdate {
        let attempt = u32::try_from(job.attempt.max(1)).unwrap_or(1);
        let pause = self
            .config
            .retry
            .delay(attempt, error.retry_after, fastrand::f64().max(0.5));
        let pause = TimeDelta::from_std(pause)
            .unwrap_or(self.config.retry_delay)
            .max(TimeDelta::milliseconds(1));
        tracing::info!(job_id = %job.job_id, error = %error, "the cloud is busy; will retry the snapshot");
        JobUpdate {
            status: job
                .create_unclear_at
                .is_none()
                .then_some(JobStatus::Pending),
            error: Some(Some(JobError::new("retrying", error.to_string()))),
            calls: 1,
            not_before: Some(now + pause),
            ..JobUpdate::default()
        }
    }

    /// A job left in `creating`: its worker died after counting the attempt, an
    /// outcome was unclear, or the cloud refused a resend. Adopt what an earlier
    /// attempt made; wait while one is under way; send again only when a
    /// look-up found nothing long enough after the last unclear create.
    pub(super) async fn recover(
        &self,
        job: &Job,
        ctx: &JobContext<'_>,
        token: Uuid,
        now: DateTime<Utc>,
    ) -> Result<Option<JobUpdate>, sqlx::Error> {
        if job.kind != JobKind::Snapshot {
            return match self.find_restored(job).await {
                Ok(Ok(adopted)) => Ok(Some(adopted)),
                Ok(Err(calls)) => self.found_nothing(job, ctx, token, now, calls).await,
                Err(e) => Ok(Some(self.lookup_failed(job, &e, now))),
            };
        }
        match snapshot::find_started(&self.cloud, ctx, &self.boot_images).await {
            Ok(Lookup::Made {
                artefacts,
                duplicates,
            }) => {
                tracing::info!(job_id = %job.job_id, "adopted the artefact of an earlier attempt");
                let mut update = self.adopt(job, artefacts, now);
                self.discard_duplicates(job, &duplicates, now, &mut update)
                    .await?;
                Ok(Some(update))
            }
            Ok(Lookup::Underway {
                what,
                pieces,
                calls,
            }) => Ok(Some(self.underway(job, what, pieces, calls, now))),
            Ok(Lookup::Nothing { calls }) => self.found_nothing(job, ctx, token, now, calls).await,
            Err(e) => Ok(Some(self.lookup_failed(job, &e, now))),
        }
    }

    /// A look-up for what an interrupted create made failed.
    fn lookup_failed(&self, job: &Job, e: &OpenStackError, now: DateTime<Utc>) -> JobUpdate {
        if job.deadline.is_some_and(|d| now >= d) {
            return timed_out(JobError::new(
                "timed_out",
                format!("could not find out whether the create was carried out: {e}"),
            ));
        }
        if !e.is_retryable() {
            return fail(JobError::new(
                "recovery_failed",
                format!("could not look up what an interrupted attempt made: {e}"),
            ));
        }
        let mut update = later(now + self.config.retry_delay);
        update.calls = 1;
        update.error = Some(Some(JobError::new("recovering", e.to_string())));
        update
    }

    /// The job now follows what a create made.
    fn adopt(&self, job: &Job, artefacts: Artefacts, now: DateTime<Utc>) -> JobUpdate {
        JobUpdate {
            status: Some(JobStatus::Tracking),
            image_id: artefacts.image_id,
            group_snapshot_id: artefacts.group_snapshot_id,
            volume_snapshots: (!artefacts.volume_snapshots.is_empty())
                .then_some(artefacts.volume_snapshots),
            consistency: artefacts.consistency,
            resource_name: artefacts.resource_name,
            source_flavor: artefacts.source_flavor,
            source_az: artefacts.source_az,
            calls: artefacts.calls,
            error: Some(None),
            not_before: Some(now + self.poll_delay(job, now)),
            ..JobUpdate::default()
        }
    }

    /// Nova is making the job's image (its Cinder snapshots exist): wait for it,
    /// unless it has had long enough, or the job's time is up. Then the snapshots
    /// Nova made are recorded, to be cleaned up.
    fn underway(
        &self,
        job: &Job,
        what: String,
        pieces: Vec<VolumeSnapshotState>,
        calls: i32,
        now: DateTime<Utc>,
    ) -> JobUpdate {
        let leftovers = |ended: JobUpdate| JobUpdate {
            volume_snapshots: Some(pieces.clone()),
            calls,
            ..ended
        };
        if job.deadline.is_some_and(|d| now >= d) {
            return leftovers(timed_out(JobError::new(
                "timed_out",
                format!("{what} when the job's time was up; they are cleaned up"),
            )));
        }
        if self.settled(job, now) {
            return leftovers(fail(JobError::new(
                "image_missing",
                format!(
                    "{what} {}s after the request: Nova did not finish it; they are cleaned up",
                    self.config.create_settle.num_seconds()
                ),
            )));
        }
        JobUpdate {
            calls,
            error: Some(Some(JobError::new("creating", what))),
            ..later(now + self.poll_delay(job, now))
        }
    }

    /// A look-up found nothing of an earlier attempt.
    async fn found_nothing(
        &self,
        job: &Job,
        ctx: &JobContext<'_>,
        token: Uuid,
        now: DateTime<Utc>,
        calls: i32,
    ) -> Result<Option<JobUpdate>, sqlx::Error> {
        // No create is sent, nor waited for, once the job's time is up. What a
        // create still under way makes is recorded (the job's row carries the
        // unclear create) and found by deletion.
        if let Some(over) = deadline_passed(job, now) {
            return Ok(Some(JobUpdate { calls, ..over }));
        }
        if let Some(unclear_at) = job.create_unclear_at.filter(|_| !self.settled(job, now)) {
            // Too early to believe: the cloud may still be carrying that create out.
            return Ok(Some(JobUpdate {
                calls,
                ..later(unclear_at + self.config.create_settle)
            }));
        }
        if now > job.start_by {
            return Ok(Some(start_window_passed(job)));
        }
        if let Some(exhausted) = self.attempts_exhausted(job) {
            return Ok(Some(exhausted));
        }
        if !jobs::count_attempt(&self.db, job.job_id, token).await? {
            return Ok(None);
        }
        tracing::info!(job_id = %job.job_id, "an earlier attempt made nothing; sending again");
        let mut update = self.send_create(job, ctx, token, now).await;
        update.calls += calls;
        Ok(Some(update))
    }

    /// Whether a look-up may be believed: no create is unclear, or the last
    /// unclear one was sent `create_settle` ago.
    fn settled(&self, job: &Job, now: DateTime<Utc>) -> bool {
        job.create_unclear_at
            .is_none_or(|at| now >= at + self.config.create_settle)
    }

    /// The job's failure once it has sent as many create requests as allowed.
    fn attempts_exhausted(&self, job: &Job) -> Option<JobUpdate> {
        (job.attempt >= self.config.max_create_attempts).then(|| {
            let last = job
                .error
                .as_ref()
                .map(|e| format!("; last: {}", e.0.message))
                .unwrap_or_default();
            fail(JobError::new(
                "create_attempts_exhausted",
                format!(
                    "sent {} create requests and none made a snapshot{last}",
                    job.attempt
                ),
            ))
        })
    }

    /// Records each further image carrying the job's id as a duplicate, which
    /// the deleter removes at once with its Cinder snapshots, and says so in the
    /// job's timeline.
    pub(super) async fn discard_duplicates(
        &self,
        job: &Job,
        duplicates: &[String],
        now: DateTime<Utc>,
        update: &mut JobUpdate,
    ) -> Result<(), sqlx::Error> {
        for image_id in duplicates {
            tracing::warn!(job_id = %job.job_id, %image_id, "a second image carries the job's id; deleting it");
            snapshots::record_duplicate(&self.db, job.job_id, image_id, now).await?;
            update.timeline.push(TimelineEntry {
                at: now,
                what: "duplicate".into(),
                id: image_id.clone(),
                status: "deleting".into(),
            });
        }
        Ok(())
    }
}

/// The job's end once its deadline has passed before a snapshot was made.
fn deadline_passed(job: &Job, now: DateTime<Utc>) -> Option<JobUpdate> {
    job.deadline.filter(|d| now >= *d).map(|_| {
        let last = job
            .error
            .as_ref()
            .map(|e| format!("; last: {}", e.0.message))
            .unwrap_or_default();
        timed_out(JobError::new(
            "timed_out",
            format!(
                "no snapshot was made within {}s{last}",
                job.options.0.timeout_secs
            ),
        ))
    })
}

/// Marks the job as sending its create, right before the request goes out.
struct MarkSending<'a> {
    engine: &'a Engine,
    job_id: Uuid,
    token: Uuid,
}

impl BeforeSend for MarkSending<'_> {
    fn sending(&self) -> BoxFuture<'_, bool> {
        async move {
            let now = self.engine.clock.now();
            match jobs::mark_sending(&self.engine.db, self.job_id, self.token, now).await {
                Ok(marked) => marked,
                Err(e) => {
                    tracing::warn!(job_id = %self.job_id, error = %e, "cannot mark the job as sending; nothing is sent");
                    false
                }
            }
        }
        .boxed()
    }
}
