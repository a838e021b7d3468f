//! The last phase of a move (`?delete_source=after_active`): once the new
//! server is usable the phase is recorded (`restored.source_deletion`,
//! before any `DELETE` is sent, and a cancel is refused from then on), then
//! each step re-reads the source server and deletes it until Nova no longer
//! shows it. From the moment the phase is recorded the job ends `succeeded`
//! whatever happens to the source: nothing the restore made is deleted, and a
//! source that could not be deleted is named in the job's error
//! (`source_not_deleted`).

use chrono::{DateTime, Utc};

use super::later;
use crate::{
    domain::{
        job::{JobError, JobKind, JobStatus},
        moves::{SOURCE_NOT_DELETED, SourceDeletion, SourceDeletionState},
        restore::Restored,
    },
    engine::{
        Engine,
        snapshot::note,
        source_deletion::{self, Deletion, TIMELINE_WHAT},
    },
    store::jobs::{Job, JobUpdate},
};

impl Engine {
    /// Whether the job is a move: a restore asked to delete its source.
    pub(super) fn moves(&self, job: &Job) -> bool {
        job.kind == JobKind::Restore
            && job
                .restore
                .as_ref()
                .is_some_and(|r| r.0.delete_source.is_some())
    }

    /// The new server is usable: records the deletion of the source as
    /// begun (the job stays `tracking`, due again at once); the `DELETE` is
    /// sent by a later step, after this is recorded.
    pub(super) fn begin_source_deletion(
        &self,
        job: &Job,
        update: &mut JobUpdate,
        now: DateTime<Utc>,
    ) {
        let restored = update.restored.get_or_insert_with(Restored::default);
        restored.source_deletion = Some(SourceDeletion {
            server_id: job.resource_id.clone(),
            state: SourceDeletionState::Deleting,
            since: now,
            error: None,
        });
        update.error = Some(None);
        update.not_before = None;
        let mut seen = job.timeline.0.clone();
        seen.extend(update.timeline.iter().cloned());
        note(
            &mut update.timeline,
            &seen,
            now,
            TIMELINE_WHAT,
            &job.resource_id,
            "delete_due",
        );
        tracing::info!(job_id = %job.job_id, source = %job.resource_id, "the new server is usable; deleting the move's source server");
    }

    /// One step of deleting a move's source server.
    pub(super) async fn delete_source(
        &self,
        job: &Job,
        mut restored: Restored,
        now: DateTime<Utc>,
        own_authority: bool,
    ) -> JobUpdate {
        let Some(deletion) = restored.source_deletion.clone() else {
            return JobUpdate::default();
        };
        if deletion.state != SourceDeletionState::Deleting {
            // Ended already (a step recorded after its job ended is discarded).
            return succeeded(restored, Vec::new(), 0, deletion.error);
        }
        if !own_authority {
            let reason = "the caller's authority ended before the source server could be deleted \
                          (it is never deleted with the service's own credentials); it was kept"
                .to_owned();
            return kept(restored, deletion, reason, Vec::new(), 0);
        }
        let mut timeline = Vec::new();
        let mut calls = 0;
        // The project the job acts in: its token's (the caller's project, or
        // the service's own when stacksnap runs without Keystone tenants).
        let step = match self.cloud.session().project_id().await {
            Ok(scoped) => {
                let project = scoped.unwrap_or_else(|| job.project_id.clone());
                source_deletion::step(
                    &self.cloud,
                    &deletion.server_id,
                    &project,
                    &job.timeline.0,
                    now,
                    &mut timeline,
                    &mut calls,
                )
                .await
            }
            Err(e) => Err(e),
        };
        let deadline_passed = job.deadline.is_some_and(|d| now >= d);
        match step {
            Ok(Deletion::Gone) => {
                tracing::info!(job_id = %job.job_id, source = %deletion.server_id, "the move's source server is deleted");
                restored.source_deletion = Some(SourceDeletion {
                    state: SourceDeletionState::Deleted,
                    ..deletion
                });
                restored.source_deleted_at = Some(now);
                succeeded(restored, timeline, calls, None)
            }
            Ok(Deletion::Foreign(owner)) => {
                let reason = format!(
                    "the source server {} belongs to project {owner}, not the job's; it was not touched",
                    deletion.server_id
                );
                kept(restored, deletion, reason, timeline, calls)
            }
            Ok(Deletion::Refused(reason)) => kept(restored, deletion, reason, timeline, calls),
            Ok(Deletion::Pending) if deadline_passed => {
                let reason = format!(
                    "Nova had not finished deleting the source server {} by the job's deadline; \
                     check it",
                    deletion.server_id
                );
                kept(restored, deletion, reason, timeline, calls)
            }
            Err(e) if deadline_passed || !e.is_retryable() => {
                let reason = format!(
                    "reading or deleting the source server {} failed: {e}",
                    deletion.server_id
                );
                kept(restored, deletion, reason, timeline, calls)
            }
            Ok(Deletion::Pending) | Err(_) => {
                let mut update = later(now + self.poll_delay(job, now));
                update.timeline = timeline;
                update.calls = calls;
                if let Err(e) = step {
                    update.error = Some(Some(JobError::new("polling", e.to_string())));
                }
                update
            }
        }
    }
}

/// The move ends `succeeded` (its new server is usable), with `note` as its error.
fn succeeded(
    restored: Restored,
    timeline: Vec<crate::domain::job::TimelineEntry>,
    calls: i32,
    note: Option<String>,
) -> JobUpdate {
    JobUpdate {
        status: Some(JobStatus::Succeeded),
        error: Some(note.map(|n| JobError::new(SOURCE_NOT_DELETED, n))),
        restored: Some(restored),
        timeline,
        calls,
        ..JobUpdate::default()
    }
}

/// The move ends `succeeded` keeping its source server, for `reason`.
fn kept(
    mut restored: Restored,
    deletion: SourceDeletion,
    reason: String,
    timeline: Vec<crate::domain::job::TimelineEntry>,
    calls: i32,
) -> JobUpdate {
    tracing::warn!(source = %deletion.server_id, %reason, "the move's source server was kept");
    restored.source_deletion = Some(SourceDeletion {
        state: SourceDeletionState::Kept,
        error: Some(reason.clone()),
        ..deletion
    });
    succeeded(restored, timeline, calls, Some(reason))
}
