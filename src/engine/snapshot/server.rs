//! Server snapshots: Nova's `createImage`, the image in Glance and, for a
//! volume-backed server, every Cinder snapshot its `block_device_mapping` lists.

use chrono::{DateTime, Utc};

use super::{
    Artefacts, BeforeSend, BootImages, JOB_ID_KEY, JobContext, Listed, Lookup, Progress, Recorded,
    StartResult, artefact_metadata, artefact_name, create_failure, not_sent, note, nova_pieces,
    refresh_piece, snapshot_state, start_failure, waiting_for,
};
use crate::{
    domain::{
        job::{
            JobError, ObtainedConsistency, TimelineEntry, VolumeSnapshotState, is_truthy,
            judge_server_snapshot,
        },
        policy::Consistency,
    },
    openstack::{ErrorKind, OpenStack, OpenStackError, glance::Image, nova::Server},
};

/// Nova accepts `createImage` only in these states.
const SNAPSHOTTABLE: [&str; 4] = ["ACTIVE", "SHUTOFF", "PAUSED", "SUSPENDED"];

/// Starts a server snapshot with `createImage`.
pub(super) async fn start(
    cloud: &OpenStack,
    ctx: &JobContext<'_>,
    gate: &dyn BeforeSend,
    boot_images: &BootImages,
) -> StartResult {
    let mut calls = 1;
    let server = match cloud.nova().get_server(ctx.resource_id).await {
        Ok(server) => server,
        Err(e) => return start_failure(e, &format!("server {}", ctx.resource_id)),
    };
    if !SNAPSHOTTABLE.contains(&server.status.as_str()) || server.task_state.is_some() {
        return waiting_for(
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
    }
    let (consistency, checked) = match server_consistency(cloud, ctx, &server, boot_images).await {
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
    if !gate.sending().await {
        return not_sent();
    }
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
            source_flavor: server.recorded_flavor(),
            source_az: server.availability_zone.clone().filter(|z| !z.is_empty()),
            resource_name: Some(server.name),
            calls,
        }),
        // Nova snapshots a volume-backed server's volumes one by one and, when
        // a later one is refused, keeps those already made (`snapshot_volume_backed`
        // only unquiesces): a refusal does not mean nothing was made.
        Err(e) if server.is_volume_backed() && matches!(e.status, Some(400 | 403 | 409)) => {
            refused_part_way(cloud, ctx, e, calls).await
        }
        Err(e) => create_failure(e, &format!("server {}", ctx.resource_id)),
    }
}

/// A volume-backed `createImage` was refused: looks for the Cinder snapshots
/// Nova made for the job's image before it refused. None: the refusal stands
/// as it is. Some: the job fails, recording them (stamped with the job's id)
/// to be cleaned up. The look-up failed: a 409 is treated as unclear (the next
/// step looks up before any resend); a 400/403 fails the job with the create
/// marked unclear, so deletion searches for them.
async fn refused_part_way(
    cloud: &OpenStack,
    ctx: &JobContext<'_>,
    error: OpenStackError,
    calls: i32,
) -> StartResult {
    let what = format!("server {}", ctx.resource_id);
    let refused = match create_failure(error.clone(), &what) {
        StartResult::Fail(e) => e,
        _ => JobError::new("create_refused", error.to_string()),
    };
    match nova_pieces::find_for_job(cloud, ctx.job_id, ctx.resource_id, ctx.since).await {
        Ok((made, _)) if made.is_empty() => create_failure(error, &what),
        Ok((made, looked)) => {
            let ids: Vec<&str> = made.iter().map(|s| s.id.as_str()).collect();
            let stamped = match nova_pieces::stamp(cloud, ctx.job_id, &ids).await {
                Ok(stamped) => stamped,
                // Deletion still knows them: Nova's name for the job's image, on their volume.
                Err(e) => {
                    tracing::warn!(job_id = %ctx.job_id, error = %e, "cannot stamp Nova's snapshots of a refused createImage");
                    i32::try_from(ids.len()).unwrap_or(i32::MAX)
                }
            };
            StartResult::Leftovers {
                error: JobError::new(
                    refused.code,
                    format!(
                        "{}; Nova had made {} volume snapshot(s) for the image before it refused ({}); they are cleaned up",
                        refused.message,
                        made.len(),
                        ids.join(", ")
                    ),
                ),
                pieces: Some(made.iter().map(|s| snapshot_state(s, None, None)).collect()),
                calls: calls + looked + stamped,
            }
        }
        Err(_) if error.status == Some(409) => StartResult::Unclear(error),
        Err(lookup) => StartResult::Leftovers {
            error: JobError::new(
                refused.code,
                format!(
                    "{}; whether Nova had made volume snapshots before it refused could not be looked up \
                     ({lookup}); deletion looks for them",
                    refused.message
                ),
            ),
            pieces: None,
            calls: calls + 1,
        },
    }
}

/// The consistency Nova will give this server, from its boot image's properties
/// (for a volume-backed server, the boot volume's `volume_image_metadata`). A
/// boot image read for the job's project within `BOOT_IMAGE_TTL` is not read again.
async fn server_consistency(
    cloud: &OpenStack,
    ctx: &JobContext<'_>,
    server: &Server,
    boot_images: &BootImages,
) -> Result<(ObtainedConsistency, i32), OpenStackError> {
    if let Some(image_id) = server.image_id() {
        if let Some(known) = boot_images.get(ctx.project_id, image_id) {
            return Ok((known, 0));
        }
        let consistency = match cloud.glance().get_image(image_id).await {
            Ok(image) => ObtainedConsistency::from_image_properties(
                is_truthy(image.property("hw_qemu_guest_agent")),
                is_truthy(image.property("os_require_quiesce")),
            ),
            // The boot image was deleted since: Nova cannot read it either.
            Err(e) if e.is_not_found() => ObtainedConsistency::CrashConsistent,
            Err(e) => return Err(e),
        };
        boot_images.put(ctx.project_id, image_id, consistency);
        return Ok((consistency, 1));
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

/// The images carrying the job's id, oldest first (ties by id, so every
/// replica picks the same first one).
async fn images_of_job(
    cloud: &OpenStack,
    ctx: &JobContext<'_>,
) -> Result<Vec<Image>, OpenStackError> {
    let job_id = ctx.job_id.to_string();
    let images = cloud.glance().list_images(&[(JOB_ID_KEY, &job_id)]).await?;
    // Checked here too: a cloud that ignores the filter must not make us adopt a stranger's image.
    let mut ours: Vec<Image> = images
        .into_iter()
        .filter(|i| i.property(JOB_ID_KEY) == Some(job_id.as_str()))
        .collect();
    ours.sort_by(|a, b| (a.created_at, &a.id).cmp(&(b.created_at, &b.id)));
    Ok(ours)
}

/// Finds what an earlier attempt made: the image, by the job id among its
/// properties (the first one; any other is a duplicate). Without an image, a
/// volume-backed server's createImage may still be under way, for Nova makes
/// the image last: Nova's Cinder snapshots for the job's image say so.
///
/// # Errors
/// The lookup itself failed; try again later.
pub(super) async fn find_started(
    cloud: &OpenStack,
    ctx: &JobContext<'_>,
    boot_images: &BootImages,
) -> Result<Lookup, OpenStackError> {
    let mut images = images_of_job(cloud, ctx).await?.into_iter();
    if let Some(first) = images.next() {
        // Reported as when the create was answered: the server's name and the
        // consistency Nova gives it (unknown once the server is gone).
        let (consistency, resource_name, read) =
            match cloud.nova().get_server(ctx.resource_id).await {
                Ok(server) => {
                    let (consistency, checked) =
                        server_consistency(cloud, ctx, &server, boot_images).await?;
                    let flavor = server.recorded_flavor();
                    (Some(consistency), Some((server.name, flavor)), 1 + checked)
                }
                Err(e) if e.is_not_found() => (None, None, 1),
                Err(e) => return Err(e),
            };
        return Ok(Lookup::Made {
            artefacts: Artefacts {
                image_id: Some(first.id),
                consistency,
                source_flavor: resource_name.as_ref().and_then(|(_, f)| f.clone()),
                resource_name: resource_name.map(|(n, _)| n),
                calls: 1 + read,
                ..Artefacts::default()
            },
            duplicates: images.map(|i| i.id).collect(),
        });
    }
    let (made, calls) =
        nova_pieces::find_for_job(cloud, ctx.job_id, ctx.resource_id, ctx.since).await?;
    let calls = calls + 1;
    if made.is_empty() {
        return Ok(Lookup::Nothing { calls });
    }
    let ids: Vec<&str> = made.iter().map(|s| s.id.as_str()).collect();
    let stamped = nova_pieces::stamp(cloud, ctx.job_id, &ids).await?;
    Ok(Lookup::Underway {
        what: format!(
            "Nova has made {} volume snapshot(s) for the job's image ({}) but not yet the image",
            made.len(),
            ids.join(", ")
        ),
        pieces: made.iter().map(|s| snapshot_state(s, None, None)).collect(),
        calls: calls + stamped,
    })
}

/// Images carrying the job's id other than `kept`.
///
/// # Errors
/// The lookup failed; try again later.
pub(super) async fn find_duplicates(
    cloud: &OpenStack,
    ctx: &JobContext<'_>,
    kept: &str,
) -> Result<(Vec<String>, i32), OpenStackError> {
    let images = images_of_job(cloud, ctx).await?;
    Ok((
        images
            .into_iter()
            .map(|i| i.id)
            .filter(|id| id != kept)
            .collect(),
        1,
    ))
}

/// Looks at a server snapshot: the image, the server's task_state while the image
/// is not active, and every Cinder snapshot the image's mapping lists that is not
/// yet available (stamped with the job's id when the mapping is first read).
/// Transient failures are returned for the caller to retry later.
///
/// # Errors
/// A lookup failed for a reason other than the artefact being gone.
pub(super) async fn poll(
    cloud: &OpenStack,
    ctx: &JobContext<'_>,
    image_id: &str,
    recorded: Recorded<'_>,
    now: DateTime<Utc>,
) -> Result<Progress, OpenStackError> {
    let image = match cloud.glance().get_image(image_id).await {
        Ok(image) => Some(image),
        Err(e) if e.is_not_found() => None,
        Err(e) => return Err(e),
    };
    let looked = look_at_image(cloud, ctx, image_id, image, recorded, now, true).await?;
    finish(cloud, looked, None, recorded.timeline, now, 1).await
}

/// What a look at a server snapshot's image found, before the statuses of its
/// Cinder snapshots are read.
#[derive(Debug)]
pub(super) struct ImageLooked {
    pub(super) image: Option<Image>,
    /// The Cinder snapshots to follow (those not yet available are read next).
    pub(super) snapshots: Vec<VolumeSnapshotState>,
    pub(super) timeline: Vec<TimelineEntry>,
    /// Calls of this job's own (the image's look-up is counted by the caller).
    pub(super) calls: i32,
}

impl ImageLooked {
    /// Whether a Cinder snapshot's status is still to be read.
    pub(super) fn pending(&self) -> impl Iterator<Item = &str> {
        self.snapshots
            .iter()
            .filter(|s| s.status != "available")
            .map(|s| s.snapshot_id.as_str())
    }
}

/// Notes the image's status; reads the server's task_state while the image is
/// not active (every time when `follow_server`, else only the first time: a
/// batched poll keeps its calls per job low); reads the image's mapping once
/// it is active and stamps the Cinder snapshots it lists.
///
/// # Errors
/// Stamping failed, or the mapping is unreadable.
pub(super) async fn look_at_image(
    cloud: &OpenStack,
    ctx: &JobContext<'_>,
    image_id: &str,
    image: Option<Image>,
    recorded: Recorded<'_>,
    now: DateTime<Utc>,
    follow_server: bool,
) -> Result<ImageLooked, OpenStackError> {
    let (known, seen) = (recorded.volume_snapshots, recorded.timeline);
    let mut calls = 0;
    let mut timeline = Vec::new();
    let image_status = image.as_ref().map_or("deleted", |i| i.status.as_str());
    note(&mut timeline, seen, now, "image", image_id, image_status);
    let server_seen = seen.iter().any(|e| e.what == "server");
    if image.as_ref().is_some_and(|i| i.status != "active") && (follow_server || !server_seen) {
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
        snapshots = pieces_from_mapping(image)?;
        // Nova's snapshots carry nothing of ours: the stamp lets deletion (and
        // anyone reading Cinder) tell them from hand-made ones.
        let ids: Vec<&str> = snapshots.iter().map(|s| s.snapshot_id.as_str()).collect();
        calls += nova_pieces::stamp(cloud, ctx.job_id, &ids).await?;
    }
    Ok(ImageLooked {
        image,
        snapshots,
        timeline,
        calls,
    })
}

/// Reads the status of every Cinder snapshot not yet available (from `listed`,
/// a listing of the project, when it holds it; else by id) and judges the job.
/// `image_calls` are the calls that read the image.
///
/// # Errors
/// A lookup failed for a reason other than the snapshot being gone.
pub(super) async fn finish(
    cloud: &OpenStack,
    looked: ImageLooked,
    listed: Option<&Listed>,
    seen: &[TimelineEntry],
    now: DateTime<Utc>,
    image_calls: i32,
) -> Result<Progress, OpenStackError> {
    let ImageLooked {
        image,
        mut snapshots,
        mut timeline,
        mut calls,
    } = looked;
    calls += image_calls;
    for snapshot in snapshots.iter_mut().filter(|s| s.status != "available") {
        calls += refresh_piece(cloud, snapshot, listed).await?;
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

/// The Cinder snapshots an image's `block_device_mapping` lists, status unknown.
///
/// # Errors
/// The mapping is present but unreadable.
pub fn pieces_from_mapping(image: &Image) -> Result<Vec<VolumeSnapshotState>, OpenStackError> {
    let mapping = image
        .block_device_mapping()
        .map_err(|m| OpenStackError::new(ErrorKind::Decode, "glance", "get_image", m))?;
    Ok(mapping
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
        .collect())
}
