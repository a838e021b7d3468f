//! The OpenStack side of a job: start a snapshot, find one a crashed worker
//! started, and look at how far it got.
//!
//! Every function counts the OpenStack calls it makes, so jobs can report them.

use std::collections::BTreeMap;

use chrono::{DateTime, Utc};
use uuid::Uuid;

use crate::{
    domain::{
        job::{
            JobError, JobOptions, ObtainedConsistency, TimelineEntry, Verdict, VolumeSnapshotState,
            is_truthy, judge_server_snapshot, judge_volume_snapshot,
        },
        name_template::{NameContext, NameTemplate},
        policy::Consistency,
    },
    openstack::{
        ErrorKind, OpenStack, OpenStackError,
        cinder::{Snapshot, SnapshotFilter},
        nova::Server,
    },
};

/// The metadata key that ties every artefact to the job that made it.
pub const JOB_ID_KEY: &str = "stacksnap_job_id";

/// What a job knows about itself that the cloud calls need.
#[derive(Debug, Clone)]
pub struct JobContext<'a> {
    pub job_id: Uuid,
    pub run_id: Uuid,
    pub policy_id: Option<Uuid>,
    pub resource_type: &'a str,
    pub resource_id: &'a str,
    pub options: &'a JobOptions,
}

/// The result of trying to start a snapshot.
#[derive(Debug)]
pub enum StartResult {
    /// The request was accepted: these artefacts now exist.
    Started(Artefacts),
    /// The cloud is busy or throttling: try again later (within the start window).
    Retry(OpenStackError),
    /// The create request itself timed out or met a server error: it may have
    /// been carried out. Look the artefact up before sending again.
    Unclear(OpenStackError),
    /// It cannot work: fail the job.
    Fail(JobError),
}

/// What a started snapshot consists of.
#[derive(Debug, Default)]
pub struct Artefacts {
    pub image_id: Option<String>,
    pub group_snapshot_id: Option<String>,
    pub volume_snapshots: Vec<VolumeSnapshotState>,
    pub consistency: Option<ObtainedConsistency>,
    pub resource_name: Option<String>,
    pub calls: i32,
}

/// The properties stamped on every artefact of a job.
pub fn artefact_metadata(ctx: &JobContext<'_>) -> BTreeMap<String, String> {
    let mut metadata = ctx.options.metadata.clone();
    metadata.insert(JOB_ID_KEY.into(), ctx.job_id.to_string());
    metadata.insert("stacksnap_run_id".into(), ctx.run_id.to_string());
    if let Some(policy_id) = ctx.policy_id {
        metadata.insert("stacksnap_policy_id".into(), policy_id.to_string());
    }
    metadata
}

fn artefact_name(ctx: &JobContext<'_>, resource_name: &str) -> String {
    let template: NameTemplate = ctx.options.name_template.parse().unwrap_or_else(|_| {
        crate::domain::name_template::DEFAULT_NAME_TEMPLATE
            .parse()
            .expect("valid")
    });
    template.render(&NameContext {
        policy: &ctx.options.policy_name,
        policy_id: &ctx.policy_id.map(|p| p.to_string()).unwrap_or_default(),
        resource_name,
        resource_id: ctx.resource_id,
        resource_type: ctx.resource_type,
        run_id: &ctx.run_id.to_string(),
        scheduled_at: ctx.options.scheduled_at,
    })
}

/// Turns a failed start call into what the job does next.
fn start_failure(error: OpenStackError, what: &str) -> StartResult {
    match error.kind {
        ErrorKind::NotFound => StartResult::Fail(JobError::new(
            "resource_not_found",
            format!("{what} does not exist: {error}"),
        )),
        ErrorKind::QuotaExceeded => StartResult::Fail(JobError::new(
            "quota_exceeded",
            format!("the project's quota is exhausted: {error}"),
        )),
        ErrorKind::Conflict => StartResult::Retry(error),
        _ if error.is_retryable() => StartResult::Retry(error),
        _ => StartResult::Fail(JobError::new("openstack_error", error.to_string())),
    }
}

/// Turns a failed create call into what the job does next. A timeout, a lost
/// connection or a 5xx other than 503 leave it open whether the cloud acted.
fn create_failure(error: OpenStackError, what: &str) -> StartResult {
    match error.kind {
        ErrorKind::Timeout | ErrorKind::Transport | ErrorKind::ServerError => {
            StartResult::Unclear(error)
        }
        _ => start_failure(error, what),
    }
}

/// Nova accepts `createImage` only in these states.
const SNAPSHOTTABLE: [&str; 4] = ["ACTIVE", "SHUTOFF", "PAUSED", "SUSPENDED"];

/// Starts a server snapshot with `createImage`.
pub async fn start_server_snapshot(cloud: &OpenStack, ctx: &JobContext<'_>) -> StartResult {
    let mut calls = 1;
    let server = match cloud.nova().get_server(ctx.resource_id).await {
        Ok(server) => server,
        Err(e) => return start_failure(e, &format!("server {}", ctx.resource_id)),
    };
    if !SNAPSHOTTABLE.contains(&server.status.as_str()) || server.task_state.is_some() {
        let mut busy = OpenStackError::new(
            ErrorKind::Conflict,
            "nova",
            "get_server",
            format!(
                "server is {}{}; waiting for it to settle",
                server.status,
                server
                    .task_state
                    .as_ref()
                    .map(|t| format!(" ({t})"))
                    .unwrap_or_default()
            ),
        );
        busy.status = Some(409);
        return StartResult::Retry(busy);
    }
    let (consistency, checked) = match server_consistency(cloud, &server).await {
        Ok(found) => found,
        Err(e) => return start_failure(e, "the server's boot image or volume"),
    };
    calls += checked;
    if ctx.options.consistency == Consistency::QuiesceRequired
        && consistency == ObtainedConsistency::CrashConsistent
    {
        return StartResult::Fail(JobError::new(
            "quiesce_unavailable",
            "consistency quiesce_required, but the server's image has no hw_qemu_guest_agent=yes, so Nova cannot \
             freeze its file systems; nothing was sent",
        ));
    }
    let name = artefact_name(ctx, &server.name);
    calls += 1;
    match cloud
        .nova()
        .create_image(ctx.resource_id, &name, &artefact_metadata(ctx))
        .await
    {
        Ok(image_id) => StartResult::Started(Artefacts {
            image_id: Some(image_id),
            group_snapshot_id: None,
            volume_snapshots: Vec::new(),
            consistency: Some(consistency),
            resource_name: Some(server.name),
            calls,
        }),
        Err(e) => create_failure(e, &format!("server {}", ctx.resource_id)),
    }
}

/// The consistency Nova will give this server, from its boot image's properties
/// (for a volume-backed server, the boot volume's `volume_image_metadata`).
async fn server_consistency(
    cloud: &OpenStack,
    server: &Server,
) -> Result<(ObtainedConsistency, i32), OpenStackError> {
    if let Some(image_id) = server.image_id() {
        return match cloud.glance().get_image(image_id).await {
            Ok(image) => Ok((
                ObtainedConsistency::from_image_properties(
                    is_truthy(image.property("hw_qemu_guest_agent")),
                    is_truthy(image.property("os_require_quiesce")),
                ),
                1,
            )),
            // The boot image was deleted since: Nova cannot read it either.
            Err(e) if e.is_not_found() => Ok((ObtainedConsistency::CrashConsistent, 1)),
            Err(e) => Err(e),
        };
    }
    let mut calls = 0;
    for attached in &server.volumes_attached {
        calls += 1;
        let volume = cloud.cinder().get_volume(&attached.id).await?;
        if !volume.volume_image_metadata.is_empty() {
            let properties = &volume.volume_image_metadata;
            return Ok((
                ObtainedConsistency::from_image_properties(
                    is_truthy(properties.get("hw_qemu_guest_agent").map(String::as_str)),
                    is_truthy(properties.get("os_require_quiesce").map(String::as_str)),
                ),
                calls,
            ));
        }
    }
    Ok((ObtainedConsistency::CrashConsistent, calls))
}

/// Starts a volume snapshot in Cinder.
pub async fn start_volume_snapshot(cloud: &OpenStack, ctx: &JobContext<'_>) -> StartResult {
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

fn snapshot_state(
    snapshot: &Snapshot,
    device: Option<String>,
    boot_index: Option<i64>,
) -> VolumeSnapshotState {
    VolumeSnapshotState {
        volume_id: Some(snapshot.volume_id.clone()),
        device,
        boot_index,
        snapshot_id: snapshot.id.clone(),
        status: snapshot.status.clone(),
        progress: snapshot.progress.clone(),
        size_gb: snapshot.size,
    }
}

/// Looks for the artefact an earlier attempt of this job made, by the job id in its metadata.
///
/// # Errors
/// The lookup itself failed; try again later.
pub async fn find_started(
    cloud: &OpenStack,
    ctx: &JobContext<'_>,
) -> Result<Option<Artefacts>, OpenStackError> {
    let job_id = ctx.job_id.to_string();
    if ctx.resource_type == "server" {
        let images = cloud.glance().list_images(&[(JOB_ID_KEY, &job_id)]).await?;
        // Checked here too: a cloud that ignores the filter must not make us adopt a stranger's image.
        let newest = images
            .into_iter()
            .filter(|i| i.property(JOB_ID_KEY) == Some(job_id.as_str()))
            .max_by_key(|i| i.created_at);
        return Ok(newest.map(|image| Artefacts {
            image_id: Some(image.id),
            calls: 1,
            ..Artefacts::default()
        }));
    }
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

/// What one look at a job's artefacts found.
#[derive(Debug)]
pub struct Progress {
    pub verdict: Verdict,
    /// The image's size in bytes, once Glance reports it.
    pub image_size_bytes: Option<u64>,
    pub volume_snapshots: Vec<VolumeSnapshotState>,
    pub timeline: Vec<TimelineEntry>,
    pub calls: i32,
}

/// Looks at a server snapshot: the image, the server's task_state while the image
/// is not active, and every Cinder snapshot the image's mapping lists that is not
/// yet available. Transient failures are returned for the caller to retry later.
///
/// # Errors
/// A lookup failed for a reason other than the artefact being gone.
pub async fn poll_server_snapshot(
    cloud: &OpenStack,
    ctx: &JobContext<'_>,
    image_id: &str,
    known: &[VolumeSnapshotState],
    seen: &[TimelineEntry],
    now: DateTime<Utc>,
) -> Result<Progress, OpenStackError> {
    let mut calls = 1;
    let mut timeline = Vec::new();
    let image = match cloud.glance().get_image(image_id).await {
        Ok(image) => Some(image),
        Err(e) if e.is_not_found() => None,
        Err(e) => return Err(e),
    };
    let image_status = image.as_ref().map_or("deleted", |i| i.status.as_str());
    note(&mut timeline, seen, now, "image", image_id, image_status);
    if image.as_ref().is_some_and(|i| i.status != "active") {
        calls += 1;
        if let Ok(server) = cloud.nova().get_server(ctx.resource_id).await {
            let task_state = server.task_state.as_deref().unwrap_or("none");
            note(
                &mut timeline,
                seen,
                now,
                "server",
                ctx.resource_id,
                task_state,
            );
        }
    }
    let mut snapshots = known.to_vec();
    if let Some(image) = image.as_ref().filter(|i| i.status == "active")
        && snapshots.is_empty()
    {
        let mapping = image
            .block_device_mapping()
            .map_err(|m| OpenStackError::new(ErrorKind::Decode, "glance", "get_image", m))?;
        snapshots = mapping
            .into_iter()
            .filter_map(|entry| {
                Some(VolumeSnapshotState {
                    volume_id: entry.volume_id,
                    device: entry.device_name,
                    boot_index: entry.boot_index,
                    snapshot_id: entry.snapshot_id?,
                    status: "unknown".into(),
                    progress: None,
                    size_gb: entry.volume_size,
                })
            })
            .collect();
    }
    for snapshot in snapshots.iter_mut().filter(|s| s.status != "available") {
        calls += 1;
        match cloud.cinder().get_snapshot(&snapshot.snapshot_id).await {
            Ok(found) => {
                snapshot.status = found.status.clone();
                snapshot.progress = found.progress.clone();
                snapshot.size_gb = found.size.or(snapshot.size_gb);
                snapshot.volume_id = snapshot.volume_id.take().or(Some(found.volume_id));
            }
            Err(e) if e.is_not_found() => snapshot.status = "missing".into(),
            Err(e) => return Err(e),
        }
        note(
            &mut timeline,
            seen,
            now,
            "snapshot",
            &snapshot.snapshot_id,
            &snapshot.status,
        );
    }
    let verdict = judge_server_snapshot(image.as_ref().map(|i| i.status.as_str()), &snapshots);
    Ok(Progress {
        image_size_bytes: image.as_ref().and_then(|i| i.size),
        verdict,
        volume_snapshots: snapshots,
        timeline,
        calls,
    })
}

/// Looks at a standalone volume snapshot.
///
/// # Errors
/// The lookup failed for a reason other than the snapshot being gone.
pub async fn poll_volume_snapshot(
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

/// Adds a timeline entry when `what`/`id` shows a status not seen last time.
fn note(
    timeline: &mut Vec<TimelineEntry>,
    seen: &[TimelineEntry],
    now: DateTime<Utc>,
    what: &str,
    id: &str,
    status: &str,
) {
    let last = seen
        .iter()
        .rev()
        .find(|e| e.what == what && e.id == id)
        .map(|e| e.status.as_str());
    if last != Some(status) {
        timeline.push(TimelineEntry {
            at: now,
            what: what.into(),
            id: id.into(),
            status: status.into(),
        });
    }
}

/// Group snapshots need this volume microversion.
const GROUP_SNAPSHOTS: crate::openstack::version::Microversion =
    crate::openstack::cinder::GROUP_SNAPSHOTS;

/// The description that ties a group snapshot (which has no metadata) to its job.
pub fn group_description(job_id: Uuid) -> String {
    format!("{JOB_ID_KEY}={job_id}")
}

/// Starts a Cinder group snapshot of a volume group.
pub async fn start_group_snapshot(cloud: &OpenStack, ctx: &JobContext<'_>) -> StartResult {
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
    let resource_name = group.name.clone().unwrap_or_default();
    let name = artefact_name(ctx, &resource_name);
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
pub async fn find_started_group(
    cloud: &OpenStack,
    ctx: &JobContext<'_>,
) -> Result<Option<Artefacts>, OpenStackError> {
    let description = group_description(ctx.job_id);
    let found = cloud.cinder().list_group_snapshots().await?;
    Ok(found
        .into_iter()
        .find(|g| g.description.as_deref() == Some(description.as_str()))
        .map(|g| Artefacts {
            group_snapshot_id: Some(g.id),
            consistency: Some(ObtainedConsistency::CrashConsistent),
            calls: 1,
            ..Artefacts::default()
        }))
}

/// Looks at a group snapshot and, once it is available, its member snapshots.
///
/// # Errors
/// A lookup failed for a reason other than the group snapshot being gone.
pub async fn poll_group_snapshot(
    cloud: &OpenStack,
    group_snapshot_id: &str,
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
            let filter = SnapshotFilter {
                group_snapshot_id: Some(group_snapshot_id.to_owned()),
                ..SnapshotFilter::default()
            };
            let members: Vec<VolumeSnapshotState> = cloud
                .cinder()
                .list_snapshots(&filter)
                .await?
                .iter()
                .filter(|s| s.group_snapshot_id.as_deref() == Some(group_snapshot_id))
                .map(|s| snapshot_state(s, None, None))
                .collect();
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
            (verdict, members, 2)
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
