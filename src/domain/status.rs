//! Every state the service stores: jobs, runs, managed snapshots, what fired a
//! run and the consistency a job got.
//!
//! Each is a `text` column with a CHECK constraint (not a PostgreSQL enum: a
//! value added with `ALTER TYPE ... ADD VALUE` cannot be used in the migration
//! that adds it). `sqlx::Type` maps them, so a row holding a value this code
//! does not know is a decode error, never a silent default.

use serde::{Deserialize, Serialize};
use utoipa::ToSchema;

/// Where one resource's snapshot stands.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize, ToSchema, sqlx::Type)]
#[serde(rename_all = "snake_case")]
#[sqlx(type_name = "text", rename_all = "snake_case")]
#[schema(example = "tracking")]
pub enum JobStatus {
    /// Waiting to start (or to retry after the cloud said "busy").
    Pending,
    /// The snapshot request is being, or has been, sent.
    Creating,
    /// The artefacts exist; not all of them are finished.
    Tracking,
    Succeeded,
    Failed,
    /// Not finished within the policy's timeout; the artefacts are kept and reported.
    TimedOut,
    Cancelled,
}

impl JobStatus {
    pub const ALL: [Self; 7] = [
        Self::Pending,
        Self::Creating,
        Self::Tracking,
        Self::Succeeded,
        Self::Failed,
        Self::TimedOut,
        Self::Cancelled,
    ];

    /// The name used in the API and the database.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Pending => "pending",
            Self::Creating => "creating",
            Self::Tracking => "tracking",
            Self::Succeeded => "succeeded",
            Self::Failed => "failed",
            Self::TimedOut => "timed_out",
            Self::Cancelled => "cancelled",
        }
    }

    /// Whether the job has ended.
    pub fn is_terminal(self) -> bool {
        match self {
            Self::Pending | Self::Creating | Self::Tracking => false,
            Self::Succeeded | Self::Failed | Self::TimedOut | Self::Cancelled => true,
        }
    }
}

/// How one firing of a policy went.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, ToSchema, sqlx::Type)]
#[serde(rename_all = "snake_case")]
#[sqlx(type_name = "text", rename_all = "snake_case")]
#[schema(example = "running")]
pub enum RunStatus {
    Running,
    Succeeded,
    PartiallyFailed,
    Failed,
    /// The fire time passed while no replica could fire it.
    Missed,
}

/// What made a run.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, ToSchema, sqlx::Type)]
#[serde(rename_all = "snake_case")]
#[sqlx(type_name = "text", rename_all = "snake_case")]
#[schema(example = "schedule")]
pub enum RunTrigger {
    /// One of the policy's schedules.
    Schedule,
    /// `POST /v1/policies/{id}/run`.
    Manual,
    /// A one-off snapshot (`POST /v1/snapshots`).
    Adhoc,
    /// Resources that started matching a policy with `options.snapshot_on_join`.
    Join,
    /// A restore of a managed snapshot (`POST /v1/snapshots/{id}/restore`).
    Restore,
    /// A scheduled restore test of a policy's newest snapshot.
    Verify,
}

/// What a job does.
#[derive(
    Debug, Clone, Copy, Default, PartialEq, Eq, Hash, Serialize, Deserialize, ToSchema, sqlx::Type,
)]
#[serde(rename_all = "snake_case")]
#[sqlx(type_name = "text", rename_all = "snake_case")]
#[schema(example = "snapshot")]
pub enum JobKind {
    /// Takes a snapshot of a resource.
    #[default]
    Snapshot,
    /// Makes a new server, volume or volume group from a managed snapshot.
    Restore,
    /// A restore test: a restore whose result is deleted once it works.
    Verify,
}

impl JobKind {
    /// The name used in the API and the database.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Snapshot => "snapshot",
            Self::Restore => "restore",
            Self::Verify => "verify",
        }
    }
}

/// Where a managed snapshot stands in its life.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, ToSchema, sqlx::Type)]
#[serde(rename_all = "snake_case")]
#[sqlx(type_name = "text", rename_all = "snake_case")]
#[schema(example = "available")]
pub enum SnapshotState {
    /// Every piece exists; retention decides whether it stays.
    Available,
    /// Its pieces are being deleted.
    Deleting,
    /// Every piece is gone.
    Deleted,
    /// Deletion failed repeatedly; it is tried again later.
    DeleteFailed,
    /// Cinder keeps a piece because volumes were made from it; retried daily.
    DeleteBlocked,
}

/// The consistency a server snapshot actually got.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, ToSchema, sqlx::Type)]
#[serde(rename_all = "snake_case")]
#[sqlx(type_name = "text", rename_all = "snake_case")]
#[schema(example = "crash_consistent")]
pub enum ObtainedConsistency {
    /// Nova froze the guest's file systems (or would have failed the snapshot).
    Quiesced,
    /// No guest agent: the disks were copied as they were.
    CrashConsistent,
    /// Nova tried to quiesce but goes on silently when it cannot.
    Unknown,
}

impl ObtainedConsistency {
    /// Judged from the boot image's properties: `hw_qemu_guest_agent=yes` makes Nova
    /// try to quiesce; only with `os_require_quiesce=yes` does a failure stop the snapshot.
    pub fn from_image_properties(guest_agent: bool, require_quiesce: bool) -> Self {
        match (guest_agent, require_quiesce) {
            (false, _) => Self::CrashConsistent,
            (true, true) => Self::Quiesced,
            (true, false) => Self::Unknown,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn job_statuses_serialise_as_their_database_names() {
        for status in JobStatus::ALL {
            assert_eq!(
                serde_json::to_value(status).unwrap(),
                serde_json::Value::from(status.as_str())
            );
        }
        assert!(JobStatus::TimedOut.is_terminal() && !JobStatus::Tracking.is_terminal());
    }
}
