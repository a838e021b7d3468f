//! The rules of deleting a managed snapshot's Cinder pieces: what to do with
//! a piece given what we recorded and what Cinder says now, how long a wait
//! may last, how retries back off, and what blocks a deletion.
//!
//! Every wait has a deadline and every retry counts, so no deletion loops for
//! ever. Pure: the pruner does the calls and the store the writes.

use chrono::{DateTime, TimeDelta, Utc};
use serde::{Deserialize, Serialize};
use utoipa::ToSchema;

/// Failed attempts before a deletion is `delete_failed` (and retried after [`FAILED_RETRY`]).
pub const ATTEMPTS: i32 = 5;
/// How long a `delete_failed` snapshot rests before it is tried again.
pub const FAILED_RETRY: TimeDelta = TimeDelta::hours(1);
/// How long a `delete_blocked` snapshot rests before it is tried again.
pub const BLOCKED_RETRY: TimeDelta = TimeDelta::days(1);
/// How long a deletion may wait on pieces that do not move (stuck `creating`,
/// `deleting` that never ends) before it is `delete_failed`.
pub const WAIT_LIMIT: TimeDelta = TimeDelta::hours(1);
/// After waiting this long without progress a deletion is stuck, not busy:
/// it no longer counts against the in-flight limit, so it does not hold up others.
/// Cinder deletes a snapshot in seconds; this leaves room for a slow backend.
pub const STALLED_AFTER: TimeDelta = TimeDelta::minutes(2);

/// What to do with one Cinder snapshot of a snapshot being deleted.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum PieceAction {
    /// Ask Cinder to delete it.
    Delete,
    /// Cinder is busy with it (`creating`, `deleting`, `backing-up`, ...): look again later.
    Wait,
    /// Cinder undid or failed our delete: `available`/`error` again after we
    /// deleted it (the backend said busy, e.g. volumes were made from it), or
    /// `error_deleting`, from which a project member cannot delete it again.
    Undone,
}

/// What to do with a piece we last recorded as `recorded` and Cinder now shows as `found`.
pub fn piece_action(recorded: &str, found: &str) -> PieceAction {
    match found {
        "available" | "error" if recorded == "deleting" => PieceAction::Undone,
        "available" | "error" => PieceAction::Delete,
        "error_deleting" => PieceAction::Undone,
        _ => PieceAction::Wait,
    }
}

/// Why Cinder gave back `what` (`volume snapshot <id>`), in words, from the status it shows now.
pub fn undone_reason(what: &str, found: &str) -> String {
    match found {
        "error_deleting" => format!(
            "Cinder could not delete {what} (it is `error_deleting`); an administrator must \
             reset its state before it can be deleted"
        ),
        "available" => format!(
            "Cinder put {what} back to `available` after the delete (its backend reported it busy)"
        ),
        _ => format!("Cinder's delete of {what} failed: it is `{found}` again"),
    }
}

/// Whether a wait that began at `since` has passed [`WAIT_LIMIT`].
pub fn wait_expired(since: DateTime<Utc>, now: DateTime<Utc>) -> bool {
    now - since >= WAIT_LIMIT
}

/// How long to wait before looking again at pieces that have not moved since
/// `since`: often at first, less often the longer they take, at most `max`.
pub fn wait_delay(
    since: DateTime<Utc>,
    now: DateTime<Utc>,
    base: TimeDelta,
    max: TimeDelta,
) -> TimeDelta {
    let waited = now - since;
    let scaled = if waited < base * 15 {
        base
    } else if waited < base * 150 {
        base * 3
    } else {
        base * 10
    };
    scaled.min(max)
}

/// The pause before retry number `attempts + 1`: `base` doubling, at most 64 × `base`.
pub fn retry_pause(attempts: i32, base: TimeDelta) -> TimeDelta {
    base * 2_i32.pow(attempts.clamp(0, 6).unsigned_abs())
}

/// A volume made from one of a snapshot's pieces: while it lives, Cinder's
/// backend may refuse to delete the piece.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
#[schema(example = json!({"volume_snapshot_id": "0b2e7c1d-9a8f-4e3d-b2c1-a0f9e8d7c6b5",
    "volume_id": "6a2f0c1e-3b4d-4e5f-8a9b-0c1d2e3f4a5b", "volume_name": "restore-test"}))]
pub struct Dependant {
    /// The Cinder snapshot the volume was made from.
    pub volume_snapshot_id: String,
    pub volume_id: String,
    pub volume_name: Option<String>,
}

/// The readable error of a deletion blocked by `dependants` (never empty).
pub fn blocked_message(dependants: &[Dependant]) -> String {
    let mut pieces: Vec<&str> = dependants
        .iter()
        .map(|d| d.volume_snapshot_id.as_str())
        .collect();
    pieces.dedup();
    let parts: Vec<String> = pieces
        .iter()
        .map(|piece| {
            let volumes: Vec<String> = dependants
                .iter()
                .filter(|d| d.volume_snapshot_id == *piece)
                .map(|d| match &d.volume_name {
                    Some(name) if !name.is_empty() => format!("{} ({name})", d.volume_id),
                    _ => d.volume_id.clone(),
                })
                .collect();
            format!(
                "volume snapshot {piece} has volumes made from it: {}",
                volumes.join(", ")
            )
        })
        .collect();
    format!(
        "Cinder keeps what other volumes depend on: {}. Delete or flatten those volumes; \
         stacksnap tries again daily",
        parts.join("; ")
    )
}

/// Whether an image is job `job_id`'s: it carries the job's `stacksnap_job_id`
/// (`carried`). Nova copies the boot image's properties into every snapshot of a
/// server, so an image made by hand from a server booted from one of our images
/// carries that old job's id too: the property alone proves nothing. Our
/// artefact names always hold the job id, so the name must as well.
pub fn image_is_jobs(job_id: &str, carried: Option<&str>, name: Option<&str>) -> bool {
    carried == Some(job_id) && name.is_some_and(|n| n.contains(job_id))
}

/// The readable error of a deletion Glance's `protected` flag stops.
pub fn protected_message(image_id: &str) -> String {
    format!(
        "image {image_id} is protected in Glance; unprotect it to delete it (its Cinder snapshots are kept meanwhile); stacksnap tries again daily"
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_image_is_a_jobs_only_when_it_carries_the_job_and_is_named_for_it() {
        let job = "01a22f9b-c4f0-727a-8db5-d24e8041982a";
        let ours = format!("nightly-web-{job}");
        assert!(image_is_jobs(job, Some(job), Some(&ours)));
        // Nova copied the boot image's stacksnap_job_id into a hand-made snapshot.
        assert!(!image_is_jobs(job, Some(job), Some("before-upgrade")));
        assert!(!image_is_jobs(job, Some(job), None));
        assert!(!image_is_jobs(job, Some("another"), Some(&ours)));
        assert!(!image_is_jobs(job, None, Some(&ours)));
    }

    #[test]
    fn a_piece_cinder_gives_back_after_our_delete_is_undone_not_deleted_again() {
        assert_eq!(piece_action("deleting", "available"), PieceAction::Undone);
        assert_eq!(piece_action("deleting", "error"), PieceAction::Undone);
        assert_eq!(
            piece_action("available", "error_deleting"),
            PieceAction::Undone
        );
        assert_eq!(piece_action("available", "available"), PieceAction::Delete);
        assert_eq!(piece_action("error", "error"), PieceAction::Delete);
    }

    #[test]
    fn pieces_cinder_is_busy_with_are_waited_on() {
        for found in ["creating", "deleting", "backing-up", "restoring"] {
            assert_eq!(piece_action("available", found), PieceAction::Wait);
            assert_eq!(piece_action("deleting", found), PieceAction::Wait);
        }
    }

    #[test]
    fn waits_end_and_slow_down() {
        let t0 = DateTime::<Utc>::UNIX_EPOCH;
        assert!(!wait_expired(t0, t0 + WAIT_LIMIT - TimeDelta::seconds(1)));
        assert!(wait_expired(t0, t0 + WAIT_LIMIT));
        let (base, max) = (TimeDelta::seconds(2), TimeDelta::seconds(30));
        assert_eq!(wait_delay(t0, t0, base, max), base);
        assert_eq!(
            wait_delay(t0, t0 + TimeDelta::minutes(1), base, max),
            base * 3
        );
        assert_eq!(
            wait_delay(t0, t0 + TimeDelta::hours(1), base, max),
            base * 10
        );
        assert_eq!(
            wait_delay(t0, t0 + TimeDelta::hours(1), base, TimeDelta::seconds(10)),
            TimeDelta::seconds(10)
        );
    }

    #[test]
    fn retries_back_off_and_stop_growing() {
        let base = TimeDelta::seconds(15);
        assert_eq!(retry_pause(0, base), base);
        assert_eq!(retry_pause(3, base), base * 8);
        assert_eq!(retry_pause(40, base), base * 64);
    }

    #[test]
    fn a_blocked_message_names_every_piece_and_volume() {
        let dependants = [
            Dependant {
                volume_snapshot_id: "s1".into(),
                volume_id: "v1".into(),
                volume_name: Some("restore".into()),
            },
            Dependant {
                volume_snapshot_id: "s1".into(),
                volume_id: "v2".into(),
                volume_name: None,
            },
        ];
        let message = blocked_message(&dependants);
        assert!(message.contains("volume snapshot s1 has volumes made from it: v1 (restore), v2"));
    }
}
