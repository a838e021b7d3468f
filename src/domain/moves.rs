//! Moves (issue 12, item 2): a restore that deletes its source server once
//! the new one is usable (`?delete_source=after_active`). The request's
//! checks, where the deletion stands (`restored.source_deletion`), and the
//! pure rule that reads the source server as Nova shows it. The cloud calls
//! are in `engine::source_deletion`, the job's steps in `engine::worker`.

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};
use utoipa::ToSchema;

use super::{policy::ResourceType, validation::FieldError};

/// When a restore deletes its source server.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "snake_case")]
#[schema(example = "after_active")]
pub enum DeleteSource {
    /// Once the new server is `ACTIVE` and every new volume `in-use`.
    AfterActive,
}

/// Where the deletion of a move's source server stands.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "snake_case")]
#[schema(example = "deleted")]
pub enum SourceDeletionState {
    /// The new server is usable; the source is being deleted (recorded before
    /// the `DELETE` is sent).
    Deleting,
    /// Nova no longer shows the source server.
    Deleted,
    /// The source server was kept: the cloud refused its deletion, it is not
    /// in the job's project, or the job's authority ended (`error` says which).
    Kept,
}

/// The deletion of a move's source server, once the new server is usable.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
#[schema(example = json!({"server_id": "4f1d6a52-0b52-4a8e-9c43-1d0c8e3f2a10", "state": "deleted",
    "since": "2026-11-26T02:00:09Z"}))]
pub struct SourceDeletion {
    /// The source server (the snapshot's resource).
    pub server_id: String,
    pub state: SourceDeletionState,
    /// When the new server was seen usable and the deletion began.
    pub since: DateTime<Utc>,
    /// Why the source server was kept.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub error: Option<String>,
}

/// The error code of a move that made its new server but kept its source.
pub const SOURCE_NOT_DELETED: &str = "source_not_deleted";

/// Checks `?delete_source` and `confirm` against the snapshot: only a server
/// snapshot's source may be deleted, and only when `confirm` names it.
pub fn check_move(
    resource_type: ResourceType,
    resource_id: &str,
    delete_source: Option<DeleteSource>,
    confirm: Option<&str>,
) -> Vec<FieldError> {
    match (delete_source, resource_type) {
        (None, _) if confirm.is_some() => vec![FieldError::new(
            "confirm",
            "applies only with ?delete_source=after_active",
        )],
        (None, _) => Vec::new(),
        (Some(_), ResourceType::Server) if confirm == Some(resource_id) => Vec::new(),
        (Some(_), ResourceType::Server) => vec![FieldError::new(
            "confirm",
            format!(
                "?delete_source=after_active deletes the source server: `confirm` must be its id, \
                 {resource_id}"
            ),
        )],
        (Some(_), _) => vec![FieldError::new(
            "delete_source",
            "applies only to the restore of a server snapshot (a move); a volume or a volume \
             group is never deleted by a restore",
        )],
    }
}

/// What the next step of a source server's deletion is, from what Nova shows.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum SourceStep {
    /// Nova no longer shows it (404, `DELETED`) or has soft-deleted it
    /// (`SOFT_DELETED`, reclaimed by Nova later): done.
    Gone,
    /// Nova is deleting it: look again.
    Wait,
    /// Send (or send again) `DELETE /servers/{id}`.
    SendDelete,
    /// It belongs to another project: never touched.
    Foreign(String),
}

/// Reads the source server: its `status` and `task_state` (`None` when Nova
/// answered 404) and its owner, against the job's project.
pub fn judge_source(
    status: Option<&str>,
    task_state: Option<&str>,
    owner: Option<&str>,
    project: &str,
) -> SourceStep {
    match (status, owner) {
        (None | Some("DELETED" | "SOFT_DELETED"), _) => SourceStep::Gone,
        (Some(_), Some(owner)) if owner != project => SourceStep::Foreign(owner.to_owned()),
        _ if task_state == Some("deleting") => SourceStep::Wait,
        _ => SourceStep::SendDelete,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn fields(errors: &[FieldError]) -> Vec<&str> {
        errors.iter().map(|e| e.field.as_str()).collect()
    }

    #[test]
    fn delete_source_needs_a_server_snapshot_and_a_confirm_naming_the_source() {
        let after = Some(DeleteSource::AfterActive);
        assert!(check_move(ResourceType::Server, "s1", after, Some("s1")).is_empty());
        assert_eq!(
            fields(&check_move(ResourceType::Server, "s1", after, None)),
            ["confirm"]
        );
        let wrong = check_move(ResourceType::Server, "s1", after, Some("s2"));
        assert_eq!(fields(&wrong), ["confirm"]);
        assert!(wrong[0].message.contains("s1"), "{}", wrong[0].message);
        assert_eq!(
            fields(&check_move(ResourceType::Volume, "v1", after, Some("v1"))),
            ["delete_source"]
        );
        assert_eq!(
            fields(&check_move(ResourceType::VolumeGroup, "g1", after, None)),
            ["delete_source"]
        );
        assert_eq!(
            fields(&check_move(ResourceType::Server, "s1", None, Some("s1"))),
            ["confirm"]
        );
        assert!(check_move(ResourceType::Volume, "v1", None, None).is_empty());
    }

    #[test]
    fn the_source_is_gone_when_nova_no_longer_shows_it_and_never_touched_in_another_project() {
        assert_eq!(judge_source(None, None, None, "p"), SourceStep::Gone);
        assert_eq!(
            judge_source(Some("DELETED"), None, Some("p"), "p"),
            SourceStep::Gone
        );
        assert_eq!(
            judge_source(Some("ACTIVE"), Some("deleting"), Some("p"), "p"),
            SourceStep::Wait
        );
        assert_eq!(
            judge_source(Some("ACTIVE"), None, Some("p"), "p"),
            SourceStep::SendDelete
        );
        assert_eq!(
            judge_source(Some("SHUTOFF"), None, None, "p"),
            SourceStep::SendDelete
        );
        assert_eq!(
            judge_source(Some("ACTIVE"), None, Some("q"), "p"),
            SourceStep::Foreign("q".into())
        );
    }
}
