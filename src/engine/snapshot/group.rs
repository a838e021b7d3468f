//! Volume-group snapshots: one Cinder group snapshot, crash-consistent across
//! the group's volumes, tied to its job by its description.
//!
//! Every call here is one a project member may make. Cinder's default
//! `resource_filters.json` does not let a non-admin filter snapshots by
//! `group_snapshot_id` (a 400 from microversion 3.31; below it the filter is
//! silently dropped and every snapshot of the project comes back), so the
//! members are found through the group's volumes and matched here.

use std::collections::BTreeSet;

use chrono::{DateTime, Utc};
use uuid::Uuid;

use super::{
    Artefacts, BeforeSend, JOB_ID_KEY, JobContext, Progress, StartResult, artefact_name,
    create_failure, not_sent, note, snapshot_state, start_failure, waiting_for,
};
use crate::{
    domain::job::{JobError, ObtainedConsistency, TimelineEntry, Verdict, VolumeSnapshotState},
    openstack::{
        OpenStack, OpenStackError,
        cinder::{SnapshotFilter, VolumeFilter},
    },
};

/// Group snapshots need this volume microversion.
const GROUP_SNAPSHOTS: crate::openstack::version::Microversion =
    crate::openstack::cinder::GROUP_SNAPSHOTS;

/// The description that ties a group snapshot (which has no metadata) to its job.
pub fn group_description(job_id: Uuid) -> String {
    format!("{JOB_ID_KEY}={job_id}")
}

/// Cinder makes a group snapshot only of an `available` group whose volumes
/// are neither in maintenance nor in error (`group/api.py`
/// `create_group_snapshot`, `volume/api.py` `_create_snapshot_in_db_validate`):
/// a group or volume passing through another state is waited for (nothing is
/// sent), one in error fails the job. `None`: ready.
async fn group_not_ready(cloud: &OpenStack, group_id: &str, status: &str) -> Option<StartResult> {
    let unusable = |what: String| {
        Some(StartResult::Fail(JobError::new(
            "resource_unusable",
            format!("{what}: Cinder cannot snapshot the group; nothing was sent"),
        )))
    };
    match status {
        "available" => {}
        s if s.starts_with("error") || s == "deleting" => {
            return unusable(format!("volume group {group_id} is {s}"));
        }
        s => {
            return Some(waiting_for(
                "cinder",
                "get_group",
                format!("volume group is {s}; waiting for it to settle"),
            ));
        }
    }
    let filter = VolumeFilter {
        group_id: Some(group_id.to_owned()),
        ..VolumeFilter::default()
    };
    let volumes = match cloud.cinder().list_volumes(&filter).await {
        Ok(volumes) => volumes,
        Err(e) => {
            return Some(start_failure(
                e,
                &format!("the volumes of group {group_id}"),
            ));
        }
    };
    for volume in volumes
        .iter()
        .filter(|v| v.group_id.as_deref() == Some(group_id))
    {
        match volume.status.as_str() {
            "error" => return unusable(format!("volume {} of the group is in error", volume.id)),
            "maintenance" => {
                return Some(waiting_for(
                    "cinder",
                    "list_volumes",
                    format!(
                        "volume {} of the group is in maintenance; waiting for it to settle",
                        volume.id
                    ),
                ));
            }
            _ => {}
        }
    }
    None
}

/// Starts a Cinder group snapshot of a volume group.
pub(super) async fn start(
    cloud: &OpenStack,
    ctx: &JobContext<'_>,
    gate: &dyn BeforeSend,
) -> StartResult {
    match cloud
        .session()
        .microversion(crate::openstack::session::Service::Volume)
        .await
    {
        Ok(Some(v)) if v >= GROUP_SNAPSHOTS => {}
        Ok(v) => {
            return StartResult::Fail(JobError::new(
                "unsupported",
                format!(
                    "group snapshots need block-storage microversion 3.14; the cloud offers {}",
                    v.map_or("none".into(), |v| v.to_string())
                ),
            ));
        }
        Err(e) => return start_failure(e, "the block-storage API"),
    }
    let group = match cloud.cinder().get_group(ctx.resource_id).await {
        Ok(group) => group,
        Err(e) => return start_failure(e, &format!("volume group {}", ctx.resource_id)),
    };
    if let Some(not_now) = group_not_ready(cloud, ctx.resource_id, &group.status).await {
        return not_now;
    }
    let resource_name = group.name.clone().unwrap_or_default();
    let name = artefact_name(ctx, &resource_name);
    if !gate.sending().await {
        return not_sent();
    }
    match cloud
        .cinder()
        .create_group_snapshot(ctx.resource_id, &name, &group_description(ctx.job_id))
        .await
    {
        Ok(created) => StartResult::Started(Artefacts {
            group_snapshot_id: Some(created.id),
            consistency: Some(ObtainedConsistency::CrashConsistent),
            resource_name: Some(resource_name),
            calls: 3,
            ..Artefacts::default()
        }),
        Err(e) => create_failure(e, &format!("volume group {}", ctx.resource_id)),
    }
}

/// Looks for the group snapshot an earlier attempt of this job made.
///
/// # Errors
/// The lookup failed.
pub(super) async fn find_started(
    cloud: &OpenStack,
    ctx: &JobContext<'_>,
) -> Result<Option<Artefacts>, OpenStackError> {
    let description = group_description(ctx.job_id);
    let found = cloud
        .cinder()
        .list_group_snapshots(Some(ctx.resource_id))
        .await?;
    let Some(ours) = found.into_iter().find(|g| {
        g.description.as_deref() == Some(description.as_str())
            && g.group_id.as_deref().is_none_or(|id| id == ctx.resource_id)
    }) else {
        return Ok(None);
    };
    // Reported as when the create was answered: the group's name.
    let resource_name = match cloud.cinder().get_group(ctx.resource_id).await {
        Ok(group) => Some(group.name.unwrap_or_default()),
        Err(e) if e.is_not_found() => None,
        Err(e) => return Err(e),
    };
    Ok(Some(Artefacts {
        group_snapshot_id: Some(ours.id),
        consistency: Some(ObtainedConsistency::CrashConsistent),
        resource_name,
        calls: 2,
        ..Artefacts::default()
    }))
}

/// Looks at a group snapshot and, once it is available, its member snapshots.
///
/// # Errors
/// A lookup failed for a reason other than the group snapshot being gone.
pub(super) async fn poll(
    cloud: &OpenStack,
    group_id: &str,
    group_snapshot_id: &str,
    known: &[VolumeSnapshotState],
    seen: &[TimelineEntry],
    now: DateTime<Utc>,
) -> Result<Progress, OpenStackError> {
    let mut timeline = Vec::new();
    let status = match cloud.cinder().get_group_snapshot(group_snapshot_id).await {
        Ok(g) => g.status,
        Err(e) if e.is_not_found() => "missing".into(),
        Err(e) => return Err(e),
    };
    note(
        &mut timeline,
        seen,
        now,
        "group_snapshot",
        group_snapshot_id,
        &status,
    );
    let (verdict, members, calls) = match status.as_str() {
        "available" => {
            let (members, calls) = members(cloud, group_id, group_snapshot_id, known).await?;
            for member in &members {
                note(
                    &mut timeline,
                    seen,
                    now,
                    "snapshot",
                    &member.snapshot_id,
                    &member.status,
                );
            }
            let failed = members
                .iter()
                .find(|m| matches!(m.status.as_str(), "error" | "error_deleting"));
            let verdict = match failed {
                Some(m) => Verdict::Failed {
                    code: "snapshot_error",
                    message: format!(
                        "snapshot {} of volume {} went to {}",
                        m.snapshot_id,
                        m.volume_id.as_deref().unwrap_or("?"),
                        m.status
                    ),
                },
                None if members.iter().all(|m| m.status == "available") => Verdict::Done,
                None => Verdict::InProgress,
            };
            (verdict, members, 1 + calls)
        }
        "error" => (
            Verdict::Failed {
                code: "snapshot_error",
                message: format!("group snapshot {group_snapshot_id} went to error"),
            },
            Vec::new(),
            1,
        ),
        "missing" | "deleting" | "deleted" => (
            Verdict::Failed {
                code: "snapshot_deleted",
                message: format!(
                    "group snapshot {group_snapshot_id} was deleted before it finished"
                ),
            },
            Vec::new(),
            1,
        ),
        _ => (Verdict::InProgress, Vec::new(), 1),
    };
    Ok(Progress {
        image_size_bytes: None,
        verdict,
        volume_snapshots: members,
        timeline,
        calls,
    })
}

/// The member snapshots of a group snapshot, and the calls it took: the
/// group's volumes (Cinder lets every token filter volumes by `group_id`),
/// then each volume's snapshots (by `volume_id`), kept when their
/// `group_snapshot_id` is this one. Volumes an earlier look recorded are asked
/// too, in case one has left the group since.
async fn members(
    cloud: &OpenStack,
    group_id: &str,
    group_snapshot_id: &str,
    known: &[VolumeSnapshotState],
) -> Result<(Vec<VolumeSnapshotState>, i32), OpenStackError> {
    let filter = VolumeFilter {
        group_id: Some(group_id.to_owned()),
        ..VolumeFilter::default()
    };
    let mut volumes: BTreeSet<String> = cloud
        .cinder()
        .list_volumes(&filter)
        .await?
        .into_iter()
        // A cloud that ignored the filter would list every volume of the project.
        .filter(|v| v.group_id.as_deref() == Some(group_id))
        .map(|v| v.id)
        .collect();
    volumes.extend(known.iter().filter_map(|s| s.volume_id.clone()));
    let mut calls = 1;
    let mut members = Vec::new();
    for volume_id in &volumes {
        let filter = SnapshotFilter {
            volume_id: Some(volume_id.clone()),
            ..SnapshotFilter::default()
        };
        calls += 1;
        members.extend(
            cloud
                .cinder()
                .list_snapshots(&filter)
                .await?
                .iter()
                .filter(|s| {
                    s.volume_id == *volume_id
                        && s.group_snapshot_id.as_deref() == Some(group_snapshot_id)
                })
                .map(|s| snapshot_state(s, None, None)),
        );
    }
    Ok((members, calls))
}
