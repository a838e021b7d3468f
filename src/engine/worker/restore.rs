//! The steps of a restore job: send its create (through the same start,
//! attempt and unclear-create rules as a snapshot's, in `create`), adopt what
//! an interrupted create made, follow it to usable, and delete what a failed
//! or cancelled restore made (its clean-up, claimed apart from the job once
//! the job has ended).

use chrono::{DateTime, Utc};
use uuid::Uuid;

use super::{Leased, fail, later, timed_out};
use crate::{
    domain::{
        job::{JobError, JobKind, JobStatus, Verdict},
        restore::{Cleanup, CleanupState, RestoreSpec, Restored},
    },
    engine::{
        Engine, authority,
        restore::{self, Found, Sent},
        snapshot::BeforeSend,
    },
    openstack::Authority,
    store::{
        jobs::{self, Job, JobUpdate},
        trusts,
    },
};

/// The restore's request, or the job's failure when the row holds none.
fn spec_of(job: &Job) -> Result<&RestoreSpec, Box<JobUpdate>> {
    job.restore.as_ref().map(|r| &r.0).ok_or_else(|| {
        Box::new(fail(JobError::new(
            "internal_error",
            "a restore job without its request",
        )))
    })
}

/// Whether a job ending with `status` leaves something to delete: a restore
/// that did not succeed, or a restore test (`verify`) however it ended, that
/// made something, or may have (an unclear create). A restore test's server
/// or volume is thrown away once it has proved usable.
pub(super) fn needs_cleanup(job: &Job, update: &JobUpdate) -> bool {
    let ends_owing_cleanup = update.status.is_some_and(|s| {
        s.is_terminal() && (s != JobStatus::Succeeded || job.kind == JobKind::Verify)
    });
    let made = update.restored.as_ref().is_some_and(|r| !r.is_empty())
        || job.restored.as_ref().is_some_and(|r| !r.0.is_empty())
        || job.create_unclear_at.is_some()
        || matches!(update.create_unclear_at, Some(Some(_)));
    // Once a move's new server was usable, nothing it made is ever deleted.
    let past_active = update
        .restored
        .as_ref()
        .or(job.restored.as_ref().map(|r| &r.0))
        .is_some_and(|r| r.source_deletion.is_some());
    job.kind != JobKind::Snapshot && ends_owing_cleanup && made && !past_active
}

/// Every id a restore recorded that may still be in the cloud.
fn recorded_ids(restored: &Restored) -> Vec<String> {
    let server_gone = restored.cleanup.as_ref().is_some_and(|c| c.server_gone);
    let mut ids: Vec<String> = restored.group_id.iter().cloned().collect();
    if !server_gone {
        ids.extend(restored.server_id.iter().cloned());
    }
    ids.extend(restored.volume_ids.iter().flatten().cloned());
    ids.extend(restored.volume_id.iter().cloned());
    ids
}

/// The error of a restore that cannot tell its own resource from others
/// carrying its mark (anyone in the project can tag a server or set metadata).
fn ambiguous(ids: &[String]) -> JobError {
    JobError::new(
        "restore_ambiguous",
        format!(
            "{} resources carry this job's tag or metadata and match the snapshot ({}): none is \
             taken for the job's nor deleted; delete the ones that are not yours",
            ids.len(),
            ids.join(", ")
        ),
    )
}

impl Engine {
    /// Sends a restore's create request (the job is `creating` with its attempt counted).
    pub(super) async fn send_restore(
        &self,
        job: &Job,
        gate: &dyn BeforeSend,
        now: DateTime<Utc>,
    ) -> JobUpdate {
        let spec = match spec_of(job) {
            Ok(spec) => spec,
            Err(update) => return *update,
        };
        match restore::create(&self.cloud, job.job_id, spec, gate).await {
            Sent::Made { restored, calls } => JobUpdate {
                calls,
                ..self.adopt_restored(job, restored, now)
            },
            Sent::Retry(error) => JobUpdate {
                create_not_sent: true,
                ..self.retry_start(job, &error, now)
            },
            Sent::Refused(error) => self.retry_start(job, &error, now),
            Sent::Unclear(error) => {
                tracing::warn!(job_id = %job.job_id, error = %error, "unclear outcome of the restore's create request");
                let mut update = later(now + self.config.retry_delay);
                update.error = Some(Some(JobError::new("unclear", error.to_string())));
                update.calls = 1;
                update
            }
            Sent::Fail { error, calls } => JobUpdate {
                calls,
                ..fail(error)
            },
        }
    }

    /// The job now follows what its create made.
    pub(super) fn adopt_restored(
        &self,
        job: &Job,
        restored: Restored,
        now: DateTime<Utc>,
    ) -> JobUpdate {
        JobUpdate {
            status: Some(JobStatus::Tracking),
            restored: Some(restored),
            error: Some(None),
            not_before: Some(now + self.poll_delay(job, now)),
            ..JobUpdate::default()
        }
    }

    /// Looks up what an earlier create of a restore made: `Ok(Some)` adopts
    /// it, `Ok(None)` found nothing (with the calls made).
    pub(super) async fn find_restored(
        &self,
        job: &Job,
    ) -> Result<Result<JobUpdate, i32>, crate::openstack::OpenStackError> {
        let spec = match spec_of(job) {
            Ok(spec) => spec,
            Err(update) => return Ok(Ok(*update)),
        };
        let (found, calls) = restore::find(&self.cloud, job.job_id, spec, None).await?;
        Ok(match found {
            Found::One(restored) => {
                tracing::info!(job_id = %job.job_id, "adopted what an earlier create of the restore made");
                let now = self.clock.now();
                Ok(JobUpdate {
                    calls,
                    ..self.adopt_restored(job, *restored, now)
                })
            }
            Found::Many(ids) => {
                tracing::warn!(job_id = %job.job_id, ?ids, "more than one resource looks like the restore's; none adopted");
                Ok(JobUpdate {
                    calls,
                    ..fail(ambiguous(&ids))
                })
            }
            Found::Nothing | Found::Unowned(_) => Err(calls),
        })
    }

    /// Follows a restore until what it made is usable.
    pub(super) async fn track_restore(
        &self,
        job: &Job,
        now: DateTime<Utc>,
        own_authority: bool,
    ) -> JobUpdate {
        let restored = job
            .restored
            .as_ref()
            .map(|r| r.0.clone())
            .unwrap_or_default();
        // A move whose new server is usable: only its source is looked at now.
        if restored.source_deletion.is_some() {
            return self.delete_source(job, restored, now, own_authority).await;
        }
        let spec = match spec_of(job) {
            Ok(spec) => spec,
            Err(update) => return *update,
        };
        let stamp = spec.stamped_metadata(job.job_id);
        let deadline_passed = job.deadline.is_some_and(|d| now >= d);
        let progress =
            match restore::poll(&self.cloud, spec, &restored, &stamp, &job.timeline.0, now).await {
                Ok(progress) => progress,
                Err(e) if e.is_refused() => {
                    let mut update = fail(JobError::new(
                        "request_refused",
                        format!("the cloud refused a request while following the restore: {e}"),
                    ));
                    update.calls = 1;
                    return update;
                }
                Err(e) if deadline_passed => {
                    return timed_out(JobError::new(
                        "timed_out",
                        format!("not usable in time; last error: {e}"),
                    ));
                }
                Err(e) => {
                    let mut update = later(now + self.poll_delay(job, now));
                    update.calls = 1;
                    update.error = Some(Some(JobError::new("polling", e.to_string())));
                    return update;
                }
            };
        let mut update = JobUpdate {
            calls: progress.calls,
            timeline: progress.timeline,
            restored: Some(progress.restored),
            ..JobUpdate::default()
        };
        match progress.verdict {
            Verdict::Done if self.moves(job) => self.begin_source_deletion(job, &mut update, now),
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
                        "not usable within {}s; what the restore made is deleted",
                        job.options.0.timeout_secs
                    ),
                )));
            }
            Verdict::InProgress => update.not_before = Some(now + self.poll_delay(job, now)),
        }
        update
    }

    /// One step of the clean-up of a claimed restore job that ended without
    /// success: deletes what it made (found by tag or metadata first when its
    /// create's answer was lost), and records how far it got.
    pub(super) async fn cleanup_claimed(&self, job: &Job, token: Uuid) -> Result<(), sqlx::Error> {
        let step = self.cleanup_step(job);
        let recorded = tokio::select! {
            recorded = step => recorded,
            () = self.keep_lease(Leased::Job(job.job_id), token) => return Ok(()),
        };
        let (mut restored, mut next_due, mut timeline, calls) = recorded;
        let now = self.clock.now();
        let overdue = job
            .finished_at
            .is_some_and(|ended| now - ended >= self.config.cleanup_limit);
        if next_due.is_some() && overdue {
            self.give_up_cleanup(job, &mut restored, &mut timeline, now);
            next_due = None;
        } else if let Some(c) = restored.cleanup.as_mut() {
            c.left.clear();
        }
        if next_due.is_none()
            && restored
                .cleanup
                .as_ref()
                .is_none_or(|c| c.state != CleanupState::Kept)
        {
            tracing::info!(job_id = %job.job_id, "what the restore made is deleted");
        }
        jobs::record_cleanup(
            &self.db, job.job_id, token, &restored, next_due, &timeline, calls,
        )
        .await?;
        Ok(())
    }

    /// Ends a clean-up that has tried for longer than `cleanup_limit` since
    /// the job ended (the cloud refusing for good: a volume with a Cinder
    /// snapshot of it, one in `error_deleting`): `kept`, with its last error
    /// and what is left named, so that nothing retries it and the run's
    /// trust can be retired.
    fn give_up_cleanup(
        &self,
        job: &Job,
        restored: &mut Restored,
        timeline: &mut Vec<crate::domain::job::TimelineEntry>,
        now: DateTime<Utc>,
    ) {
        let recorded = recorded_ids(restored);
        let Some(c) = restored.cleanup.as_mut() else {
            return;
        };
        if c.left.is_empty() {
            c.left = recorded;
        }
        c.left.dedup();
        c.state = CleanupState::Kept;
        // The last error is kept, said to be the last (it read "retried").
        let days = self.config.cleanup_limit.num_days();
        c.error = Some(match c.error.take() {
            Some(last) => format!(
                "the clean-up was given up {days} days after the job ended and {} kept; \
                 its last error: {last}",
                c.left.join(", ")
            ),
            None => format!(
                "the clean-up was given up {days} days after the job ended and {} kept",
                c.left.join(", ")
            ),
        });
        tracing::warn!(
            job_id = %job.job_id,
            left = ?c.left,
            error = c.error.as_deref().unwrap_or(""),
            limit_days = self.config.cleanup_limit.num_days(),
            "the restore's clean-up is given up: what is left is kept"
        );
        let left = c.left.clone();
        for id in left {
            let what = if restored.group_id.as_deref() == Some(id.as_str()) {
                "group"
            } else if restored.server_id.as_deref() == Some(id.as_str()) {
                "server"
            } else {
                "volume"
            };
            timeline.push(crate::domain::job::TimelineEntry {
                at: now,
                what: what.to_owned(),
                id,
                status: "kept".to_owned(),
            });
        }
    }

    /// Looks often at first, less often as a clean-up takes longer (a
    /// resource Cinder or Nova keeps in a passing state for long).
    fn cleanup_delay(&self, job: &Job, now: DateTime<Utc>) -> chrono::TimeDelta {
        let age = now - job.finished_at.unwrap_or(now);
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

    async fn cleanup_step(
        &self,
        job: &Job,
    ) -> (
        Restored,
        Option<DateTime<Utc>>,
        Vec<crate::domain::job::TimelineEntry>,
        i32,
    ) {
        let now = self.clock.now();
        let mut restored = job
            .restored
            .as_ref()
            .map(|r| r.0.clone())
            .unwrap_or_default();
        let cleanup = restored.cleanup.get_or_insert(Cleanup {
            state: CleanupState::Deleting,
            error: None,
            server_gone: false,
            left: Vec::new(),
        });
        cleanup.state = CleanupState::Deleting;
        // What it made is deleted with the run's authority where it still
        // works, else with the service's (whose admin role deletes by id).
        let stored = match trusts::for_run(&self.db, job.run_id).await {
            Ok(stored) => stored,
            Err(e) => {
                tracing::warn!(job_id = %job.job_id, error = %e, "cannot read the run's authority");
                return (restored, Some(now + self.config.retry_delay), Vec::new(), 0);
            }
        };
        let delegated = authority::for_work(&stored, now);
        let (cloud, as_service) = match &delegated {
            Authority::Service => (self.cloud.clone(), true),
            other => {
                let acting = self.cloud.acting_as(other);
                match authority::check(&acting, other).await {
                    Ok(()) => (acting, false),
                    Err(_) => (self.cloud.clone(), true),
                }
            }
        };
        // The service's credentials list only the service's own project: for
        // a tenant's job they search every project, by the job's id.
        let owner = (as_service && stored.delegated).then_some(job.project_id.as_str());
        let mut calls = 0;
        let Ok(spec) = spec_of(job) else {
            return (restored, None, Vec::new(), 0);
        };
        if restored.is_empty() {
            // The create's answer was lost: find what it made first.
            match restore::find(&cloud, job.job_id, spec, owner).await {
                Ok((Found::Many(ids), n)) => {
                    // Never deleted on a guess: the job's error names them.
                    tracing::warn!(job_id = %job.job_id, ?ids, "more than one resource looks like the restore's; none deleted");
                    if let Some(c) = restored.cleanup.as_mut() {
                        c.error = Some(ambiguous(&ids).message);
                    }
                    return (restored, None, Vec::new(), calls + n);
                }
                Ok((Found::Unowned(ids), n)) => {
                    // Below volume 3.58 Cinder shows no group's owner: what
                    // may be the job's cannot be told from another
                    // project's with the service's credentials. Said, and
                    // looked at again (the run's trust may work again).
                    tracing::warn!(job_id = %job.job_id, ?ids, "what may be the restore's shows no owner; not deleted");
                    if let Some(c) = restored.cleanup.as_mut() {
                        c.error = Some(format!(
                            "{} may be what the restore made, but the cloud shows no owner for it \
                             (a volume group below Cinder API 3.58) and the run's authority no longer \
                             works: not deleted; retried, or delete it by hand if it is this job's",
                            ids.join(", ")
                        ));
                    }
                    return (
                        restored,
                        Some(now + self.cleanup_delay(job, now)),
                        Vec::new(),
                        calls + n,
                    );
                }
                Ok((Found::One(found), n)) => {
                    calls += n;
                    restored.server_id = found.server_id;
                    restored.volume_id = found.volume_id;
                    restored.group_id = found.group_id;
                    restored.volume_ids = found.volume_ids;
                }
                Ok((Found::Nothing, n)) => {
                    calls += n;
                    // Believed only once the create has had time to settle.
                    if let Some(at) = job
                        .create_unclear_at
                        .map(|at| at + self.config.create_settle)
                        .filter(|settled| now < *settled)
                    {
                        return (restored, Some(at), Vec::new(), calls);
                    }
                    if let Some(c) = restored.cleanup.as_mut() {
                        c.state = CleanupState::Deleted;
                        c.error = None;
                    }
                    return (restored, None, Vec::new(), calls);
                }
                Err(e) => {
                    if let Some(c) = restored.cleanup.as_mut() {
                        c.error = Some(e.to_string());
                    }
                    return (restored, Some(now + self.config.retry_delay), Vec::new(), 1);
                }
            }
        }
        match restore::cleanup_step(&cloud, spec, &restored, &job.timeline.0, now).await {
            Ok(step) => {
                let mut restored = step.restored;
                let next = if step.done {
                    if let Some(c) = restored.cleanup.as_mut() {
                        c.state = CleanupState::Deleted;
                        c.error = None;
                    }
                    None
                } else {
                    // What the cloud refused is said (a refusal no retry
                    // changes must not look like a busy resource); a step
                    // that met none clears an old error.
                    if let Some(c) = restored.cleanup.as_mut() {
                        c.error = step.refused;
                        // Kept only if the clean-up is given up now.
                        c.left = step.left;
                    }
                    Some(now + self.cleanup_delay(job, now))
                };
                (restored, next, step.timeline, calls + step.calls)
            }
            Err(e) => {
                tracing::warn!(job_id = %job.job_id, error = %e, "deleting what the restore made failed; will retry");
                if let Some(c) = restored.cleanup.as_mut() {
                    c.error = Some(e.to_string());
                }
                (
                    restored,
                    Some(now + self.config.retry_delay),
                    Vec::new(),
                    calls + 1,
                )
            }
        }
    }
}
