//! Volume snapshots: one Cinder snapshot of a standalone volume.

use std::collections::BTreeMap;

use chrono::{DateTime, Utc};

use super::{
    Artefacts, JOB_ID_KEY, JobContext, Progress, StartResult, artefact_metadata, artefact_name,
    create_failure, note, snapshot_state, start_failure,
};
use crate::{
    domain::job::{
        ObtainedConsistency, TimelineEntry, Verdict, VolumeSnapshotState, judge_volume_snapshot,
    },
    openstack::{OpenStack, OpenStackError, cinder::SnapshotFilter},
};

/// Starts a volume snapshot in Cinder.
pub(super) async fn start(cloud: &OpenStack, ctx: &JobContext<'_>) -> StartResult {
    let volume = match cloud.cinder().get_volume(ctx.resource_id).await {
        Ok(volume) => volume,
        Err(e) => return start_failure(e, &format!("volume {}", ctx.resource_id)),
    };
    let resource_name = volume.name.clone().unwrap_or_default();
    let name = artefact_name(ctx, &resource_name);
    let in_use = volume.status == "in-use";
    let description = format!("stacksnap job {}", ctx.job_id);
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
    let ours = snapshots
        .iter()
        .find(|s| s.metadata.get(JOB_ID_KEY) == Some(&job_id));
    Ok(ours.map(|snapshot| Artefacts {
        volume_snapshots: vec![snapshot_state(snapshot, None, None)],
        consistency: Some(ObtainedConsistency::CrashConsistent),
        calls: 1,
        ..Artefacts::default()
    }))
}

/// Looks at a standalone volume snapshot.
///
/// # Errors
/// The lookup failed for a reason other than the snapshot being gone.
pub(super) async fn poll(
    cloud: &OpenStack,
    known: &[VolumeSnapshotState],
    seen: &[TimelineEntry],
    now: DateTime<Utc>,
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
    match cloud.cinder().get_snapshot(&snapshot.snapshot_id).await {
        Ok(found) => {
            snapshot.status = found.status;
            snapshot.progress = found.progress;
            snapshot.size_gb = found.size.or(snapshot.size_gb);
        }
        Err(e) if e.is_not_found() => snapshot.status = "missing".into(),
        Err(e) => return Err(e),
    }
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
        calls: 1,
    })
}
