//! The deletion state machine around each look at a snapshot's Cinder pieces:
//! delete a piece, wait on it (with a deadline), count what Cinder undoes, and
//! block on volumes made from a piece. The rules are `domain::deletion`; the
//! pruner's loops over the pieces call in here.

use chrono::{DateTime, Utc};

use crate::{
    domain::{
        deletion::{
            self, BLOCKED_RETRY, Dependant, FAILED_RETRY, PieceAction, blocked_message,
            undone_reason,
        },
        job::{JobError, VolumeSnapshotState},
    },
    engine::Engine,
    openstack::{OpenStackError, cinder::VolumeFilter},
    store::snapshots::{DeletionStep, ManagedSnapshot},
};

/// What one pass over a snapshot's pieces saw.
#[derive(Debug, Default)]
pub(super) struct Sweep {
    /// Some piece is not gone yet: look again later.
    pending: bool,
    /// A delete was sent or a piece changed status: the deletion is moving.
    moved: bool,
    /// The pieces waited on, in words (`volume snapshot … is `creating``).
    waits: Vec<String>,
    /// What Cinder undid or failed to delete.
    undone: Vec<Undone>,
}

/// A delete Cinder undid (`available` again) or failed (`error_deleting`).
#[derive(Debug)]
struct Undone {
    /// `volume snapshot <id>` or `group snapshot <id>`.
    what: String,
    status: String,
    /// The Cinder snapshots whose dependants may explain it.
    pieces: Vec<String>,
}

impl Engine {
    /// One Cinder snapshot of a deletion: delete it, wait on it, or note that
    /// Cinder undid our delete. Records the status seen (or `deleting` once sent).
    ///
    /// # Errors
    /// The delete request fails.
    pub(super) async fn piece_step(
        &self,
        piece: &mut VolumeSnapshotState,
        found: String,
        sweep: &mut Sweep,
    ) -> Result<(), OpenStackError> {
        let id = piece.snapshot_id.clone();
        match deletion::piece_action(&piece.status, &found) {
            PieceAction::Wait => {
                sweep.pending = true;
                sweep.moved |= piece.status != found;
                sweep
                    .waits
                    .push(format!("volume snapshot {id} is `{found}`"));
            }
            PieceAction::Undone => sweep.undone.push(Undone {
                what: format!("volume snapshot {id}"),
                status: found.clone(),
                pieces: vec![id.clone()],
            }),
            PieceAction::Delete => {
                match self.cloud.cinder().delete_snapshot(&id).await {
                    Ok(()) => {
                        sweep.pending = true;
                        sweep.moved = true;
                        piece.status = "deleting".into();
                    }
                    Err(e) if e.is_not_found() => piece.status = "deleted".into(),
                    Err(e) => return Err(e),
                }
                return Ok(());
            }
        }
        piece.status = found;
        Ok(())
    }

    /// A group snapshot in status `found`: the same machine as a piece, with its
    /// members standing for it (`deleting` once our delete went out, as Cinder
    /// marks them). False when Cinder no longer knows it.
    ///
    /// # Errors
    /// The delete request fails.
    pub(super) async fn group_snapshot_step(
        &self,
        id: &str,
        found: &str,
        members: &mut [VolumeSnapshotState],
        sweep: &mut Sweep,
    ) -> Result<bool, OpenStackError> {
        let sent = !members.is_empty() && members.iter().all(|m| m.status == "deleting");
        let recorded = if sent { "deleting" } else { "" };
        let status = match deletion::piece_action(recorded, found) {
            PieceAction::Wait => {
                sweep.pending = true;
                sweep
                    .waits
                    .push(format!("group snapshot {id} is `{found}`"));
                return Ok(true);
            }
            PieceAction::Undone => {
                sweep.undone.push(Undone {
                    what: format!("group snapshot {id}"),
                    status: found.to_owned(),
                    pieces: members.iter().map(|m| m.snapshot_id.clone()).collect(),
                });
                found
            }
            PieceAction::Delete => match self.cloud.cinder().delete_group_snapshot(id).await {
                Ok(()) if found == "error" && !sent => {
                    // Cinder's backend failing a delete leaves the group snapshot
                    // `error`; without recorded members nothing tells that from a
                    // first delete, so each delete from `error` counts as an attempt.
                    sweep.undone.push(Undone {
                        what: format!("group snapshot {id}"),
                        status: found.to_owned(),
                        pieces: Vec::new(),
                    });
                    "deleting"
                }
                Ok(()) => {
                    sweep.pending = true;
                    sweep.moved = true;
                    "deleting"
                }
                Err(e) if e.is_not_found() => return Ok(false),
                Err(e) => return Err(e),
            },
        };
        for member in members.iter_mut() {
            member.status = status.to_owned();
        }
        Ok(true)
    }

    /// What a pass over the pieces comes to; `None` when every piece is gone.
    ///
    /// # Errors
    /// Looking up what depends on an undone piece fails.
    pub(super) async fn settle(
        &self,
        snapshot: &ManagedSnapshot,
        pieces: Vec<VolumeSnapshotState>,
        sweep: Sweep,
        now: DateTime<Utc>,
    ) -> Result<Option<DeletionStep>, OpenStackError> {
        if !sweep.undone.is_empty() {
            return self
                .undone(snapshot, pieces, &sweep.undone, now)
                .await
                .map(Some);
        }
        if !sweep.pending {
            return Ok(None);
        }
        Ok(Some(self.wait(snapshot, pieces, &sweep, now)))
    }

    /// Cinder gave pieces back. Volumes made from them block the deletion until
    /// tomorrow (retrying sooner changes nothing); anything else is a failed
    /// attempt, counted like an error.
    async fn undone(
        &self,
        snapshot: &ManagedSnapshot,
        pieces: Vec<VolumeSnapshotState>,
        undone: &[Undone],
        now: DateTime<Utc>,
    ) -> Result<DeletionStep, OpenStackError> {
        let busy: Vec<&str> = undone
            .iter()
            .filter(|u| u.status != "error_deleting")
            .flat_map(|u| u.pieces.iter().map(String::as_str))
            .collect();
        let dependants = if busy.is_empty() {
            Vec::new()
        } else {
            self.dependants(&busy).await?
        };
        if !dependants.is_empty() {
            let error = JobError::new("dependent_volumes", blocked_message(&dependants));
            tracing::warn!(snapshot_id = %snapshot.snapshot_id, error = %error.message, "deletion blocked");
            return Ok(DeletionStep::Blocked {
                not_before: now + BLOCKED_RETRY,
                error,
                pieces,
                dependants,
            });
        }
        let reasons: Vec<String> = undone
            .iter()
            .map(|u| undone_reason(&u.what, &u.status))
            .collect();
        let error = JobError::new("delete_undone", reasons.join("; "));
        Ok(self.count_failure(snapshot, error, Some(pieces), now))
    }

    /// The volumes of the project made from any of `pieces`. Cinder does not
    /// let a project member filter volumes by `snapshot_id` (it is not in the
    /// default `resource_filters.json`), so every volume is listed and matched here.
    async fn dependants(&self, pieces: &[&str]) -> Result<Vec<Dependant>, OpenStackError> {
        let volumes = self
            .cloud
            .cinder()
            .list_volumes(&VolumeFilter::default())
            .await?;
        let mut found: Vec<Dependant> = volumes
            .into_iter()
            .filter_map(|v| {
                let from = v.snapshot_id.filter(|s| pieces.contains(&s.as_str()))?;
                Some(Dependant {
                    volume_snapshot_id: from,
                    volume_id: v.id,
                    volume_name: v.name,
                })
            })
            .collect();
        found.sort_by(|a, b| {
            (&a.volume_snapshot_id, &a.volume_id).cmp(&(&b.volume_snapshot_id, &b.volume_id))
        });
        Ok(found)
    }

    /// Pieces still pending. After progress, look again soon. A wait without
    /// progress slows down and has a deadline: past it, `delete_failed`.
    fn wait(
        &self,
        snapshot: &ManagedSnapshot,
        pieces: Vec<VolumeSnapshotState>,
        sweep: &Sweep,
        now: DateTime<Utc>,
    ) -> DeletionStep {
        if sweep.moved {
            return DeletionStep::InProgress {
                not_before: now + self.config.poll_interval,
                pieces,
            };
        }
        let since = snapshot.delete_waiting_since.unwrap_or(now);
        if deletion::wait_expired(since, now) {
            let error = JobError::new(
                "delete_stalled",
                format!(
                    "{} and has not changed since {} (over {} minutes); stacksnap tries again later",
                    sweep.waits.join(", "),
                    since.format("%Y-%m-%dT%H:%M:%SZ"),
                    deletion::WAIT_LIMIT.num_minutes()
                ),
            );
            tracing::warn!(snapshot_id = %snapshot.snapshot_id, error = %error.message, "deletion stalled");
            return DeletionStep::Failed {
                not_before: now + FAILED_RETRY,
                error,
                pieces: Some(pieces),
            };
        }
        let delay = deletion::wait_delay(
            since,
            now,
            self.config.poll_interval,
            self.config.max_poll_interval,
        );
        DeletionStep::Waiting {
            not_before: now + delay,
            pieces,
            since,
        }
    }

    /// A request of the step failed.
    pub(super) fn deletion_failed(
        &self,
        snapshot: &ManagedSnapshot,
        error: &OpenStackError,
        now: DateTime<Utc>,
    ) -> DeletionStep {
        let error = JobError::new("delete_error", error.to_string());
        self.count_failure(snapshot, error, None, now)
    }

    /// Counts one failed attempt: another try after a growing pause, or
    /// `delete_failed` once [`deletion::ATTEMPTS`] have failed.
    fn count_failure(
        &self,
        snapshot: &ManagedSnapshot,
        error: JobError,
        pieces: Option<Vec<VolumeSnapshotState>>,
        now: DateTime<Utc>,
    ) -> DeletionStep {
        if snapshot.delete_attempts + 1 >= deletion::ATTEMPTS {
            tracing::warn!(snapshot_id = %snapshot.snapshot_id, error = %error.message, "deletion failed; will retry later");
            DeletionStep::Failed {
                not_before: now + FAILED_RETRY,
                error,
                pieces,
            }
        } else {
            let pause = deletion::retry_pause(snapshot.delete_attempts, self.config.retry_delay);
            DeletionStep::Retry {
                not_before: now + pause,
                error,
                pieces,
            }
        }
    }
}
