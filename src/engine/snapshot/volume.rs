//! Volume snapshots: one Cinder snapshot of a standalone volume.

use std::collections::BTreeMap;

use chrono::{DateTime, Utc};

use super::{
    Artefacts, BeforeSend, JOB_ID_KEY, JobContext, Listed, Progress, StartResult,
    artefact_metadata, artefact_name, create_failure, not_sent, note, refresh_piece,
    snapshot_state, start_failure, waiting_for,
};
use crate::{
    domain::job::{
        JobError, ObtainedConsistency, TimelineEntry, Verdict, VolumeSnapshotState,
        judge_volume_snapshot,
    },
    openstack::{OpenStack, OpenStackError, cinder::SnapshotFilter},
};

/// What Cinder's status of a volume means for snapshotting it.
#[derive(Debug, PartialEq, Eq)]
pub(super) enum VolumeState {
    /// Cinder snapshots it now (`in-use` with `force`).
    Ready,
    /// A state it leaves by itself (backing-up, attaching, extending, ...): wait.
    Passing,
    /// It will not get better by waiting (error, deleting): fail.
    Unusable,
}

/// Cinder snapshots a single volume only when it is `available` (or `in-use`,
/// with `force`): `volume/api.py` `create_snapshot_in_db` refuses any other
/// status with InvalidVolume. Most are passing states; the error states and
/// deletion are not.
pub(super) fn volume_state(status: &str) -> VolumeState {
    match status {
        "available" | "in-use" => VolumeState::Ready,
        s if s.starts_with("error") || matches!(s, "deleting" | "deleted") => VolumeState::Unusable,
        _ => VolumeState::Passing,
    }
}

/// Starts a volume snapshot in Cinder, once the volume is in a state Cinder
/// snapshots; while it is passing through another, nothing is sent.
pub(super) async fn start(
    cloud: &OpenStack,
    ctx: &JobContext<'_>,
    gate: &dyn BeforeSend,
) -> StartResult {
    let volume = match cloud.cinder().get_volume(ctx.resource_id).await {
        Ok(volume) => volume,
        Err(e) => return start_failure(e, &format!("volume {}", ctx.resource_id)),
    };
    match volume_state(&volume.status) {
        VolumeState::Ready => {}
        VolumeState::Passing => {
            return waiting_for(
                "cinder",
                "get_volume",
                format!("volume is {}; waiting for it to settle", volume.status),
            );
        }
        VolumeState::Unusable => {
            return StartResult::Fail(JobError::new(
                "resource_unusable",
                format!(
                    "volume {} is {}: Cinder cannot snapshot it; nothing was sent",
                    ctx.resource_id, volume.status
                ),
            ));
        }
    }
    let resource_name = volume.name.clone().unwrap_or_default();
    let name = artefact_name(ctx, &resource_name);
    let in_use = volume.status == "in-use";
    let description = format!("stacksnap job {}", ctx.job_id);
    if !gate.sending().await {
        return not_sent();
    }
    match cloud
        .cinder()
        .create_snapshot(
            ctx.resource_id,
            &name,
            &description,
            &artefact_metadata(ctx),
            in_use,
        )
        .await
    {
        Ok(snapshot) => StartResult::Started(Artefacts {
            image_id: None,
            group_snapshot_id: None,
            volume_snapshots: vec![snapshot_state(&snapshot, None, None)],
            consistency: Some(ObtainedConsistency::CrashConsistent),
            resource_name: Some(resource_name),
            source_flavor: None,
            source_az: volume.availability_zone.clone().filter(|z| !z.is_empty()),
            calls: 2,
        }),
        Err(e) => create_failure(e, &format!("volume {}", ctx.resource_id)),
    }
}

/// Finds the Cinder snapshot an earlier attempt made, by the job id in its metadata.
///
/// # Errors
/// The lookup itself failed; try again later.
pub(super) async fn find_started(
    cloud: &OpenStack,
    ctx: &JobContext<'_>,
) -> Result<Option<Artefacts>, OpenStackError> {
    let job_id = ctx.job_id.to_string();
    let filter = SnapshotFilter {
        metadata: BTreeMap::from([(JOB_ID_KEY.to_owned(), job_id.clone())]),
        ..SnapshotFilter::default()
    };
    let snapshots = cloud.cinder().list_snapshots(&filter).await?;
    let Some(ours) = snapshots
        .iter()
        .find(|s| s.metadata.get(JOB_ID_KEY) == Some(&job_id))
    else {
        return Ok(None);
    };
    // Reported as when the create was answered: the volume's name and zone.
    let (resource_name, source_az) = match cloud.cinder().get_volume(ctx.resource_id).await {
        Ok(volume) => (
            Some(volume.name.unwrap_or_default()),
            volume.availability_zone.filter(|z| !z.is_empty()),
        ),
        Err(e) if e.is_not_found() => (None, None),
        Err(e) => return Err(e),
    };
    Ok(Some(Artefacts {
        volume_snapshots: vec![snapshot_state(ours, None, None)],
        consistency: Some(ObtainedConsistency::CrashConsistent),
        resource_name,
        source_az,
        calls: 2,
        ..Artefacts::default()
    }))
}

/// Looks at a standalone volume snapshot: in `listed` (a listing of the
/// project's snapshots made for a batch of jobs) when it holds it, else by id.
///
/// # Errors
/// The lookup failed for a reason other than the snapshot being gone.
pub(super) async fn poll(
    cloud: &OpenStack,
    known: &[VolumeSnapshotState],
    seen: &[TimelineEntry],
    now: DateTime<Utc>,
    listed: Option<&Listed>,
) -> Result<Progress, OpenStackError> {
    let mut snapshots = known.to_vec();
    let Some(snapshot) = snapshots.first_mut() else {
        return Ok(Progress {
            image_size_bytes: None,
            verdict: Verdict::Failed {
                code: "snapshot_missing",
                message: "the job recorded no snapshot".into(),
            },
            volume_snapshots: snapshots,
            timeline: Vec::new(),
            calls: 0,
        });
    };
    let calls = refresh_piece(cloud, snapshot, listed).await?;
    let mut timeline = Vec::new();
    note(
        &mut timeline,
        seen,
        now,
        "snapshot",
        &snapshot.snapshot_id,
        &snapshot.status,
    );
    let verdict = judge_volume_snapshot(snapshot);
    Ok(Progress {
        image_size_bytes: None,
        verdict,
        volume_snapshots: snapshots,
        timeline,
        calls,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_volume_is_snapshotted_when_available_or_in_use_waited_for_while_passing_and_failed_in_error()
     {
        assert_eq!(volume_state("available"), VolumeState::Ready);
        assert_eq!(volume_state("in-use"), VolumeState::Ready);
        for passing in [
            "backing-up",
            "creating",
            "downloading",
            "uploading",
            "attaching",
            "detaching",
            "extending",
            "retyping",
            "restoring-backup",
            "maintenance",
            "reserved",
        ] {
            assert_eq!(volume_state(passing), VolumeState::Passing, "{passing}");
        }
        for unusable in [
            "error",
            "error_restoring",
            "error_extending",
            "error_managing",
            "deleting",
        ] {
            assert_eq!(volume_state(unusable), VolumeState::Unusable, "{unusable}");
        }
    }
}
