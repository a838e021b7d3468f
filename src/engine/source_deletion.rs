//! The OpenStack side of a move's last phase: delete the source server once
//! the new one is usable, and see it gone. Every step re-reads the source
//! first, so a step resumed after a crash (or after a `DELETE` whose answer
//! was lost) does not care whether the earlier `DELETE` was answered: Nova
//! answering 404 means done. A server of another project is never touched.

use chrono::{DateTime, Utc};

use super::snapshot::note;
use crate::{
    domain::{
        job::TimelineEntry,
        moves::{SourceStep, judge_source},
    },
    openstack::{OpenStack, OpenStackError},
};

/// The name of the source server in the job's timeline.
pub const TIMELINE_WHAT: &str = "source_server";

/// Where one step of the deletion got.
#[derive(Debug)]
pub enum Deletion {
    /// Nova no longer shows the source server (its last status as seen).
    Gone,
    /// The `DELETE` was sent or Nova is deleting it: look again.
    Pending,
    /// It belongs to another project: never touched.
    Foreign(String),
    /// The cloud refused the `DELETE` (the step named); the source is kept.
    Refused(String),
}

/// One step: read the source server, then send its `DELETE` unless Nova is
/// already deleting it (or it is gone, or another project's).
///
/// # Errors
/// A call failed in a way worth retrying (5xx, timeouts, 429), or the read
/// was refused; the caller decides.
pub async fn step(
    cloud: &OpenStack,
    server_id: &str,
    project: &str,
    seen: &[TimelineEntry],
    now: DateTime<Utc>,
    timeline: &mut Vec<TimelineEntry>,
    calls: &mut i32,
) -> Result<Deletion, OpenStackError> {
    *calls += 1;
    let server = match cloud.nova().get_server(server_id).await {
        Ok(server) => Some(server),
        Err(e) if e.is_not_found() => None,
        Err(e) => return Err(e),
    };
    let status = server.as_ref().map(|s| s.status.as_str());
    let task_state = server.as_ref().and_then(|s| s.task_state.as_deref());
    let owner = server.as_ref().and_then(|s| s.tenant_id.as_deref());
    match judge_source(status, task_state, owner, project) {
        SourceStep::Gone => {
            let seen_as = status.map_or("deleted", |s| {
                if s == "SOFT_DELETED" {
                    "SOFT_DELETED"
                } else {
                    "deleted"
                }
            });
            note(timeline, seen, now, TIMELINE_WHAT, server_id, seen_as);
            Ok(Deletion::Gone)
        }
        SourceStep::Foreign(owner) => Ok(Deletion::Foreign(owner)),
        SourceStep::Wait => {
            note(timeline, seen, now, TIMELINE_WHAT, server_id, "deleting");
            Ok(Deletion::Pending)
        }
        SourceStep::SendDelete => {
            *calls += 1;
            match cloud.nova().delete_server(server_id).await {
                Ok(()) => {
                    note(timeline, seen, now, TIMELINE_WHAT, server_id, "deleting");
                    Ok(Deletion::Pending)
                }
                // Gone meanwhile: the next read says so.
                Err(e) if e.is_not_found() => Ok(Deletion::Pending),
                Err(e) if e.is_retryable() => Err(e),
                Err(e) => Ok(Deletion::Refused(format!(
                    "deleting the source server (DELETE /servers/{server_id}) was refused: {e}"
                ))),
            }
        }
    }
}
