//! Jobs and runs: their states, and the rules that decide when a snapshot is really finished.

use serde::{Deserialize, Serialize};
use utoipa::ToSchema;

pub use super::status::{JobKind, JobStatus, ObtainedConsistency, RunStatus};

/// A run's status once all its jobs ended: `succeeded` only when all did.
pub fn run_outcome(succeeded: usize, unsuccessful: usize) -> RunStatus {
    match (succeeded, unsuccessful) {
        (_, 0) if succeeded > 0 => RunStatus::Succeeded,
        (0, _) => RunStatus::Failed,
        _ => RunStatus::PartiallyFailed,
    }
}

/// Whether a Glance/Nova property value means yes, as Nova reads it.
pub fn is_truthy(value: Option<&str>) -> bool {
    value.is_some_and(|v| {
        matches!(
            v.to_ascii_lowercase().as_str(),
            "yes" | "true" | "1" | "on" | "y" | "t"
        )
    })
}

/// One Cinder snapshot a job follows.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
#[schema(example = json!({"volume_id": "6a2f1b1e-3c8b-4a53-8f4c-0d1e2f3a4b5c", "device": "/dev/vda", "boot_index": 0,
    "snapshot_id": "0b2e7c1d-9a8f-4e3d-b2c1-a0f9e8d7c6b5", "status": "creating", "progress": "40%"}))]
pub struct VolumeSnapshotState {
    pub volume_id: Option<String>,
    pub device: Option<String>,
    pub boot_index: Option<i64>,
    pub snapshot_id: String,
    /// Cinder's status; `missing` when Cinder no longer knows the snapshot.
    pub status: String,
    pub progress: Option<String>,
    /// Size in GiB, as Cinder reports it.
    #[serde(default)]
    pub size_gb: Option<u64>,
}

/// What the latest look at a job's artefacts says.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Verdict {
    InProgress,
    Done,
    Failed { code: &'static str, message: String },
}

/// Judges a server snapshot from its image's status (`None`: Glance says 404)
/// and, for a volume-backed server, every Cinder snapshot its mapping lists.
///
/// An image-backed snapshot is done when the image is `active`. A volume-backed
/// one needs every snapshot `available` too: Nova marks its image `active` at once.
pub fn judge_server_snapshot(
    image_status: Option<&str>,
    snapshots: &[VolumeSnapshotState],
) -> Verdict {
    match image_status {
        None => {
            return Verdict::Failed {
                code: "image_deleted",
                message: "the image is gone: Nova deletes the image of a snapshot that failed"
                    .into(),
            };
        }
        Some(status @ ("killed" | "deleted" | "pending_delete")) => {
            return Verdict::Failed {
                code: "image_failed",
                message: format!("the image ended {status}"),
            };
        }
        Some("active") => {}
        Some(_) => return Verdict::InProgress,
    }
    for snapshot in snapshots {
        if let Some(verdict) = judge_volume_snapshot_piece(snapshot) {
            return verdict;
        }
    }
    if snapshots.iter().all(|s| s.status == "available") {
        Verdict::Done
    } else {
        Verdict::InProgress
    }
}

/// Judges a standalone volume snapshot.
pub fn judge_volume_snapshot(snapshot: &VolumeSnapshotState) -> Verdict {
    judge_volume_snapshot_piece(snapshot).unwrap_or(if snapshot.status == "available" {
        Verdict::Done
    } else {
        Verdict::InProgress
    })
}

fn judge_volume_snapshot_piece(snapshot: &VolumeSnapshotState) -> Option<Verdict> {
    let what = || {
        format!(
            "snapshot {} of volume {}{}",
            snapshot.snapshot_id,
            snapshot.volume_id.as_deref().unwrap_or("(unknown)"),
            snapshot
                .device
                .as_ref()
                .map(|d| format!(" ({d})"))
                .unwrap_or_default()
        )
    };
    match snapshot.status.as_str() {
        "error" | "error_deleting" => Some(Verdict::Failed {
            code: "snapshot_error",
            message: format!("{} went to {}", what(), snapshot.status),
        }),
        "missing" | "deleting" | "deleted" => Some(Verdict::Failed {
            code: "snapshot_deleted",
            message: format!("{} was deleted before it finished", what()),
        }),
        _ => None,
    }
}

/// A job about to be inserted: one resource of a run, with the options it keeps.
#[derive(Debug, Clone)]
pub struct NewJob {
    pub job_id: uuid::Uuid,
    pub resource_type: super::policy::ResourceType,
    pub resource_id: String,
    pub resource_name: Option<String>,
    pub options: JobOptions,
    pub start_by: chrono::DateTime<chrono::Utc>,
    pub kind: super::status::JobKind,
    /// A restore job's request, as validated.
    pub restore: Option<super::restore::RestoreSpec>,
}

/// How a job's artefacts are made: fixed when the job is created, so a later
/// policy change does not alter a job in flight.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct JobOptions {
    /// The name template, or a fixed name for a one-off snapshot.
    pub name_template: super::name_template::NameTemplate,
    pub policy_name: String,
    /// Properties to stamp, besides stacksnap's own ids.
    pub metadata: std::collections::BTreeMap<String, String>,
    pub consistency: crate::domain::policy::Consistency,
    /// Seconds from the job's start to its deadline.
    pub timeout_secs: u64,
    /// The policy's limit of its jobs in flight at once.
    #[serde(default)]
    pub max_concurrent: Option<u32>,
    pub scheduled_at: chrono::DateTime<chrono::Utc>,
}

/// A structured job or run error.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
#[schema(example = json!({"code": "snapshot_error", "message": "snapshot 0b2e… of volume 6a2f… (/dev/vdb) went to error"}))]
pub struct JobError {
    /// A stable identifier: `resource_not_found`, `quota_exceeded`, `quiesce_unavailable`,
    /// `snapshot_error`, `image_failed`, `image_deleted`, `start_window_passed`, `timed_out`,
    /// `policy_deleted`, `policy_disabled`, `internal_error`, ...
    pub code: String,
    pub message: String,
}

impl JobError {
    /// An error with `code` and `message`.
    pub fn new(code: impl Into<String>, message: impl Into<String>) -> Self {
        Self {
            code: code.into(),
            message: message.into(),
        }
    }
}

/// One observed transition of something a job follows.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
#[schema(example = json!({"at": "2026-11-26T01:00:04Z", "what": "image", "id": "b92d…", "status": "active"}))]
pub struct TimelineEntry {
    pub at: chrono::DateTime<chrono::Utc>,
    /// `server` (its task_state), `image` or `snapshot`.
    pub what: String,
    pub id: String,
    pub status: String,
}

#[cfg(test)]
mod tests {
    use super::*;

    fn snap(id: &str, status: &str) -> VolumeSnapshotState {
        VolumeSnapshotState {
            volume_id: Some(format!("vol-{id}")),
            device: Some("/dev/vdb".into()),
            boot_index: None,
            snapshot_id: id.into(),
            status: status.into(),
            progress: None,
            size_gb: None,
        }
    }

    #[test]
    fn an_image_backed_snapshot_is_done_when_the_image_is_active() {
        assert_eq!(
            judge_server_snapshot(Some("queued"), &[]),
            Verdict::InProgress
        );
        assert_eq!(
            judge_server_snapshot(Some("saving"), &[]),
            Verdict::InProgress
        );
        assert_eq!(judge_server_snapshot(Some("active"), &[]), Verdict::Done);
    }

    #[test]
    fn a_volume_backed_snapshot_waits_for_every_cinder_snapshot() {
        let pieces = [snap("s1", "available"), snap("s2", "creating")];
        assert_eq!(
            judge_server_snapshot(Some("active"), &pieces),
            Verdict::InProgress
        );
        let pieces = [snap("s1", "available"), snap("s2", "available")];
        assert_eq!(
            judge_server_snapshot(Some("active"), &pieces),
            Verdict::Done
        );
    }

    #[test]
    fn one_snapshot_error_fails_the_job_naming_snapshot_and_volume() {
        let pieces = [snap("s1", "available"), snap("s2", "error")];
        let Verdict::Failed { code, message } = judge_server_snapshot(Some("active"), &pieces)
        else {
            panic!()
        };
        assert_eq!(code, "snapshot_error");
        assert!(
            message.contains("s2") && message.contains("vol-s2"),
            "{message}"
        );
    }

    #[test]
    fn a_killed_or_deleted_image_fails_the_job() {
        assert!(matches!(
            judge_server_snapshot(Some("killed"), &[]),
            Verdict::Failed {
                code: "image_failed",
                ..
            }
        ));
        assert!(matches!(
            judge_server_snapshot(None, &[]),
            Verdict::Failed {
                code: "image_deleted",
                ..
            }
        ));
    }

    #[test]
    fn run_outcomes() {
        assert_eq!(run_outcome(3, 0), RunStatus::Succeeded);
        assert_eq!(run_outcome(2, 1), RunStatus::PartiallyFailed);
        assert_eq!(run_outcome(0, 2), RunStatus::Failed);
        assert_eq!(run_outcome(0, 0), RunStatus::Failed);
    }

    #[test]
    fn consistency_follows_the_image_properties() {
        assert_eq!(
            ObtainedConsistency::from_image_properties(false, true),
            ObtainedConsistency::CrashConsistent
        );
        assert_eq!(
            ObtainedConsistency::from_image_properties(true, true),
            ObtainedConsistency::Quiesced
        );
        assert_eq!(
            ObtainedConsistency::from_image_properties(true, false),
            ObtainedConsistency::Unknown
        );
        assert!(
            is_truthy(Some("yes"))
                && is_truthy(Some("True"))
                && !is_truthy(Some("no"))
                && !is_truthy(None)
        );
    }
}
