//! The OpenStack side of a restore job: create the server or volume from a
//! managed snapshot, find one a crashed worker created, follow it until it
//! is usable, and delete what a failed or cancelled restore made.
//!
//! Every created resource carries `stacksnap_restored_from` and
//! `stacksnap_job_id` in its metadata, and a server also the tag
//! `stacksnap-job-<job id>` (Nova lists servers by tag, not by metadata;
//! tags in the create body need compute microversion 2.52, and the session
//! asks for up to 2.96). Every function counts the calls it makes.

use std::collections::BTreeMap;

use chrono::{DateTime, Utc};
use serde_json::json;
use uuid::Uuid;

use super::snapshot::{BeforeSend, note};
use crate::{
    domain::{
        job::{JobError, TimelineEntry, Verdict},
        restore::{
            JOB_ID_KEY, RestoreSource, RestoreSpec, Restored, boot_mappings, judge_group,
            judge_server, judge_volume, pick_flavor, server_tag,
        },
    },
    openstack::{
        ErrorKind, OpenStack, OpenStackError,
        cinder::VolumeFilter,
        nova::{ServerFilter, TAGS_IN_CREATE},
    },
};

/// The result of sending a restore's create request.
#[derive(Debug)]
pub enum Sent {
    /// Created: the job follows it.
    Made { restored: Restored, calls: i32 },
    /// Nothing was sent (a read before it failed): try again later.
    Retry(OpenStackError),
    /// Refused before it was carried out (409, 429): try again later.
    Refused(OpenStackError),
    /// It may have been carried out: look it up before sending again.
    Unclear(OpenStackError),
    /// It cannot work: the job fails.
    Fail { error: JobError, calls: i32 },
}

/// Sends the create request of a restore; `gate` is told right before.
pub async fn create(
    cloud: &OpenStack,
    job_id: Uuid,
    spec: &RestoreSpec,
    gate: &dyn BeforeSend,
) -> Sent {
    let metadata = spec.stamped_metadata(job_id);
    match &spec.source {
        RestoreSource::Server {
            image_id,
            source_flavor,
            ..
        } => {
            let flavors = match cloud.nova().list_flavors().await {
                Ok(flavors) => flavors,
                Err(e) if e.is_retryable() => return Sent::Retry(e),
                Err(e) => {
                    return Sent::Fail {
                        error: JobError::new(
                            "openstack_error",
                            format!("listing the flavors failed: {e}"),
                        ),
                        calls: 1,
                    };
                }
            };
            let flavor = match pick_flavor(spec.flavor.as_deref(), source_flavor.as_ref(), &flavors)
            {
                Ok(flavor) => flavor,
                Err(error) => return Sent::Fail { error, calls: 1 },
            };
            // A volume-backed server's image: its mapping, explicitly, with
            // the root raised to the image's min_disk (see `boot_mappings`).
            let image = match cloud.glance().get_image(image_id).await {
                Ok(image) => image,
                Err(e) if e.is_retryable() => return Sent::Retry(e),
                Err(e) => {
                    let code = if e.is_not_found() {
                        "resource_not_found"
                    } else {
                        "openstack_error"
                    };
                    return Sent::Fail {
                        error: JobError::new(
                            code,
                            format!("reading the snapshot's image {image_id} failed: {e}"),
                        ),
                        calls: 2,
                    };
                }
            };
            let min_disk = image
                .properties
                .get("min_disk")
                .and_then(serde_json::Value::as_u64)
                .unwrap_or(0);
            let compute = cloud
                .nova()
                .microversion()
                .await
                .ok()
                .flatten()
                .map_or((2, 1), |v| (v.0, v.1));
            let mappings = boot_mappings(
                image.properties.get("block_device_mapping"),
                min_disk,
                compute,
            );
            let mut server = json!({
                "name": spec.name,
                "imageRef": image_id,
                "flavorRef": flavor,
                "networks": spec.nova_networks(),
                "metadata": metadata,
            });
            if let Some(mappings) = mappings {
                server["block_device_mapping_v2"] = json!(mappings);
            }
            // Below 2.52 Nova refuses `tags` in the body: the server is then
            // found by its metadata (see `find`).
            if tags_in_create(cloud).await {
                server["tags"] = json!([server_tag(job_id)]);
            }
            if let Some(zone) = &spec.availability_zone {
                server["availability_zone"] = json!(zone);
            }
            if let Some(key) = &spec.key_name {
                server["key_name"] = json!(key);
            }
            if !gate.sending().await {
                return Sent::Retry(not_marked());
            }
            match cloud.nova().create_server(server).await {
                Ok(id) => Sent::Made {
                    restored: Restored {
                        server_id: Some(id),
                        volume_ids: Some(Vec::new()),
                        ..Restored::default()
                    },
                    calls: 3,
                },
                Err(e) => failure(e, "creating the server (POST /servers)", 3),
            }
        }
        RestoreSource::Volume {
            volume_snapshot_id, ..
        } => {
            let mut volume = json!({
                "snapshot_id": volume_snapshot_id,
                "name": spec.name,
                "description": format!("restored by stacksnap job {job_id}"),
                "metadata": metadata,
            });
            if let Some(size) = spec.size {
                volume["size"] = json!(size);
            }
            if let Some(kind) = &spec.volume_type {
                volume["volume_type"] = json!(kind);
            }
            if let Some(zone) = &spec.availability_zone {
                volume["availability_zone"] = json!(zone);
            }
            if !gate.sending().await {
                return Sent::Retry(not_marked());
            }
            match cloud.cinder().create_volume(volume).await {
                Ok(created) => Sent::Made {
                    restored: Restored {
                        volume_id: Some(created.id),
                        ..Restored::default()
                    },
                    calls: 1,
                },
                Err(e) => failure(e, "creating the volume (POST /volumes)", 1),
            }
        }
        RestoreSource::VolumeGroup { group_snapshot_id } => {
            // A group has no metadata: its description names the job, and
            // its volumes are stamped once they are available.
            let description = group_description(job_id, spec.snapshot_id);
            if !gate.sending().await {
                return Sent::Retry(not_marked());
            }
            match cloud
                .cinder()
                .create_group_from_src(&spec.name, &description, group_snapshot_id)
                .await
            {
                Ok(group) => Sent::Made {
                    restored: Restored {
                        group_id: Some(group.id),
                        volume_ids: Some(Vec::new()),
                        ..Restored::default()
                    },
                    calls: 1,
                },
                Err(e) => failure(
                    e,
                    "creating the volume group (POST /groups/action create-from-src)",
                    1,
                ),
            }
        }
    }
}

/// The description of a group a restore makes: groups carry no metadata, so
/// it names the job (and recovery lists groups by name, then checks it).
pub fn group_description(job_id: Uuid, snapshot_id: Uuid) -> String {
    format!("restored by stacksnap job {job_id} from snapshot {snapshot_id}")
}

/// Whether the session's compute microversion takes `tags` in `POST /servers`.
async fn tags_in_create(cloud: &OpenStack) -> bool {
    cloud
        .nova()
        .microversion()
        .await
        .ok()
        .flatten()
        .is_some_and(|v| v >= TAGS_IN_CREATE)
}

fn not_marked() -> OpenStackError {
    OpenStackError::new(
        ErrorKind::Transport,
        "stacksnap",
        "before_send",
        "the job could not be marked as sending its create request; nothing was sent",
    )
}

/// What a failed create means for the job, naming the step and OpenStack's error.
fn failure(error: OpenStackError, step: &str, calls: i32) -> Sent {
    match error.kind {
        ErrorKind::Timeout
        | ErrorKind::Transport
        | ErrorKind::ServerError
        | ErrorKind::Unavailable
        | ErrorKind::Decode => Sent::Unclear(error),
        ErrorKind::RateLimited if error.status == Some(503) => Sent::Unclear(error),
        ErrorKind::RateLimited | ErrorKind::Conflict => Sent::Refused(error),
        ErrorKind::QuotaExceeded => Sent::Fail {
            error: JobError::new(
                "quota_exceeded",
                format!("{step}: the project's quota is exhausted: {error}"),
            ),
            calls,
        },
        ErrorKind::NotFound => Sent::Fail {
            error: JobError::new("resource_not_found", format!("{step}: {error}")),
            calls,
        },
        _ => Sent::Fail {
            error: JobError::new("create_refused", format!("{step} was refused: {error}")),
            calls,
        },
    }
}

/// What a look-up for the job's resource found.
#[derive(Debug)]
pub enum Found {
    Nothing,
    /// Exactly one resource carries the job's mark and is what the job makes.
    One(Box<Restored>),
    /// More than one does (ids, sorted): none is taken, since anyone in the
    /// project can put the job's tag or metadata on a resource.
    Many(Vec<String>),
    /// Searching every project, only resources whose owner Cinder does not
    /// show match (a group below volume 3.58): none is taken, but they may
    /// be the job's, so the search is not "nothing".
    Unowned(Vec<String>),
}

/// Looks for what an earlier create of the job made: a server by its tag, a
/// volume by its metadata, a group by its name and description. Returns it
/// (if any) and the calls made. With `owner` (the service's credentials
/// searching for a tenant's job, which would list only the service's own
/// project) every project is searched (`all_tenants`, an admin's filter) by
/// the job's unique id, and what is found must belong to `owner`.
///
/// The tag, the metadata and the name are no proof: anyone in the project
/// can put them on a resource. What is found must also be what the job
/// makes: a server booted from the snapshot's image, a volume made from the
/// snapshot's Cinder snapshot, a group made from its group snapshot. When
/// more than one is, none is taken ([`Found::Many`]).
///
/// # Errors
/// The look-up failed; try again later.
pub async fn find(
    cloud: &OpenStack,
    job_id: Uuid,
    spec: &RestoreSpec,
    owner: Option<&str>,
) -> Result<(Found, i32), OpenStackError> {
    let id = job_id.to_string();
    let all_tenants = owner.is_some();
    // Searching every project, what shows no owner (a group below volume
    // 3.58, a volume whose tenant attribute the policy hides) may be another
    // project's: it is never taken for the job's.
    let owned = |project: Option<&str>| owner.is_none_or(|o| project == Some(o));
    let unknown = |project: Option<&str>| owner.is_some() && project.is_none();
    match &spec.source {
        RestoreSource::Server { image_id, .. } => {
            let tag = server_tag(job_id);
            // Nova filters by tag, not by metadata: without the tag (below
            // 2.52) the project's servers are listed and checked one by one.
            let filter = ServerFilter {
                tags: if tags_in_create(cloud).await {
                    vec![tag.clone()]
                } else {
                    Vec::new()
                },
                all_tenants,
                ..ServerFilter::default()
            };
            let servers = cloud.nova().list_servers(&filter).await?;
            // Nova drops filters it does not allow: check what came back.
            // Nova keeps the image a server was booted with (a volume-backed
            // snapshot's image too, whose mapping it merges).
            let ours: Vec<String> = servers
                .into_iter()
                .filter(|s| s.tags.contains(&tag) || s.metadata.get(JOB_ID_KEY) == Some(&id))
                .filter(|s| owned(s.tenant_id.as_deref()))
                .filter(|s| s.image_id() == Some(image_id.as_str()))
                .map(|s| s.id)
                .collect();
            // Its volumes are learnt while it is followed, each checked.
            Ok((
                found(ours, |id| Restored {
                    server_id: Some(id),
                    volume_ids: Some(Vec::new()),
                    ..Restored::default()
                }),
                1,
            ))
        }
        RestoreSource::Volume {
            volume_snapshot_id, ..
        } => {
            let filter = VolumeFilter {
                metadata: BTreeMap::from([(JOB_ID_KEY.to_owned(), id.clone())]),
                all_tenants,
                ..VolumeFilter::default()
            };
            let volumes = cloud.cinder().list_volumes(&filter).await?;
            let (ours, unowned): (Vec<_>, Vec<_>) = volumes
                .into_iter()
                .filter(|v| v.metadata.get(JOB_ID_KEY) == Some(&id))
                .filter(|v| v.snapshot_id.as_deref() == Some(volume_snapshot_id.as_str()))
                .filter(|v| owned(v.tenant_id.as_deref()) || unknown(v.tenant_id.as_deref()))
                .partition(|v| owned(v.tenant_id.as_deref()));
            let ours = ours.into_iter().map(|v| v.id).collect();
            let unowned = unowned.into_iter().map(|v| v.id).collect();
            Ok((
                found_or_unowned(ours, unowned, |id| Restored {
                    volume_id: Some(id),
                    ..Restored::default()
                }),
                1,
            ))
        }
        RestoreSource::VolumeGroup { group_snapshot_id } => {
            let description = group_description(job_id, spec.snapshot_id);
            let groups = cloud
                .cinder()
                .list_groups_named(&spec.name, all_tenants)
                .await?;
            // Below volume 3.14 Cinder shows no `group_snapshot_id`: the
            // description is then all there is.
            let (ours, unowned): (Vec<_>, Vec<_>) = groups
                .into_iter()
                .filter(|g| g.description.as_deref() == Some(description.as_str()))
                .filter(|g| {
                    g.group_snapshot_id
                        .as_deref()
                        .is_none_or(|s| s == group_snapshot_id)
                })
                .filter(|g| owned(g.project_id.as_deref()) || unknown(g.project_id.as_deref()))
                .partition(|g| owned(g.project_id.as_deref()));
            let ours = ours.into_iter().map(|g| g.id).collect();
            let unowned = unowned.into_iter().map(|g| g.id).collect();
            Ok((
                found_or_unowned(ours, unowned, |id| Restored {
                    group_id: Some(id),
                    volume_ids: Some(Vec::new()),
                    ..Restored::default()
                }),
                1,
            ))
        }
    }
}

/// What was found, or else the matches of unknown owner.
fn found_or_unowned(
    ours: Vec<String>,
    mut unowned: Vec<String>,
    made: impl FnOnce(String) -> Restored,
) -> Found {
    match found(ours, made) {
        Found::Nothing if !unowned.is_empty() => {
            unowned.sort();
            Found::Unowned(unowned)
        }
        other => other,
    }
}

/// One match is the job's; more are never chosen between.
fn found(mut ids: Vec<String>, made: impl FnOnce(String) -> Restored) -> Found {
    ids.sort();
    ids.dedup();
    match ids.len() {
        0 => Found::Nothing,
        1 => Found::One(Box::new(made(ids.remove(0)))),
        _ => Found::Many(ids),
    }
}

/// How far a restore got.
#[derive(Debug)]
pub struct Progress {
    pub verdict: Verdict,
    pub restored: Restored,
    pub timeline: Vec<TimelineEntry>,
    pub calls: i32,
}

/// Looks at what the restore made.
///
/// # Errors
/// A look-up failed for a reason other than the resource being gone.
pub async fn poll(
    cloud: &OpenStack,
    spec: &RestoreSpec,
    restored: &Restored,
    stamp: &BTreeMap<String, String>,
    seen: &[TimelineEntry],
    now: DateTime<Utc>,
) -> Result<Progress, OpenStackError> {
    let mut timeline = Vec::new();
    let mut restored = restored.clone();
    let mut calls = 0;
    if let Some(group_id) = restored.group_id.clone() {
        calls += 1;
        let status = match cloud.cinder().get_group(&group_id).await {
            Ok(group) => Some(group.status),
            Err(e) if e.is_not_found() => None,
            Err(e) => return Err(e),
        };
        note(
            &mut timeline,
            seen,
            now,
            "group",
            &group_id,
            status.as_deref().unwrap_or("missing"),
        );
        let mut volumes = Vec::new();
        if status.is_some() {
            calls += 1;
            let filter = VolumeFilter {
                group_id: Some(group_id.clone()),
                ..VolumeFilter::default()
            };
            let members = cloud.cinder().list_volumes(&filter).await?;
            let members: Vec<_> = members
                .into_iter()
                .filter(|v| v.group_id.as_deref() == Some(group_id.as_str()))
                .collect();
            let known = restored.volume_ids.get_or_insert_with(Vec::new);
            for v in &members {
                if !known.contains(&v.id) {
                    known.push(v.id.clone());
                }
                note(&mut timeline, seen, now, "volume", &v.id, &v.status);
                volumes.push((v.id.clone(), v.status.clone()));
            }
            let verdict = judge_group(&group_id, status.as_deref(), &volumes);
            if verdict == Verdict::Done {
                // Cinder gives the group's volumes no name and no metadata: stamp them.
                let job_id = stamp.get(JOB_ID_KEY);
                for v in members
                    .iter()
                    .filter(|v| v.metadata.get(JOB_ID_KEY) != job_id)
                {
                    let mut metadata = v.metadata.clone();
                    metadata.extend(stamp.clone());
                    calls += 1;
                    cloud.cinder().set_volume_metadata(&v.id, &metadata).await?;
                }
            }
            return Ok(Progress {
                verdict,
                restored,
                timeline,
                calls,
            });
        }
        return Ok(Progress {
            verdict: judge_group(&group_id, None, &volumes),
            restored,
            timeline,
            calls,
        });
    }
    if let Some(server_id) = restored.server_id.clone() {
        calls += 1;
        let server = match cloud.nova().get_server(&server_id).await {
            Ok(server) => Some(server),
            Err(e) if e.is_not_found() => None,
            Err(e) => return Err(e),
        };
        let status = server.as_ref().map(|s| s.status.clone());
        note(
            &mut timeline,
            seen,
            now,
            "server",
            &server_id,
            status.as_deref().unwrap_or("missing"),
        );
        let fault = server
            .as_ref()
            .and_then(|s| s.fault.as_ref())
            .map(|f| f.message.clone());
        let mut volumes = Vec::new();
        if let Some(server) = &server {
            // Only the volumes Nova made from the snapshot's pieces are the
            // restore's: a user may attach their own to the new server.
            let (fresh, n) = learn_volumes(cloud, spec, &mut restored, server).await?;
            calls += n;
            // Volumes matter once the server is up: Nova attaches them while building.
            if server.status == "ACTIVE" {
                let ours = restored.volume_ids.clone().unwrap_or_default();
                for id in ours {
                    let status = match fresh.get(&id) {
                        Some(status) => Some(status.clone()),
                        None => {
                            calls += 1;
                            match cloud.cinder().get_volume(&id).await {
                                Ok(volume) => Some(volume.status),
                                Err(e) if e.is_not_found() => None,
                                Err(e) => return Err(e),
                            }
                        }
                    };
                    note(
                        &mut timeline,
                        seen,
                        now,
                        "volume",
                        &id,
                        status.as_deref().unwrap_or("missing"),
                    );
                    volumes.push((id, status));
                }
            }
        }
        let verdict = judge_server(status.as_deref(), fault.as_deref(), &volumes);
        return Ok(Progress {
            verdict,
            restored,
            timeline,
            calls,
        });
    }
    if let Some(volume_id) = restored.volume_id.clone() {
        let status = match cloud.cinder().get_volume(&volume_id).await {
            Ok(volume) => Some(volume.status),
            Err(e) if e.is_not_found() => None,
            Err(e) => return Err(e),
        };
        note(
            &mut timeline,
            seen,
            now,
            "volume",
            &volume_id,
            status.as_deref().unwrap_or("missing"),
        );
        return Ok(Progress {
            verdict: judge_volume(&volume_id, status.as_deref()),
            restored,
            timeline,
            calls: 1,
        });
    }
    Ok(Progress {
        verdict: Verdict::Failed {
            code: "restored_missing",
            message: "the job recorded nothing it made".into(),
        },
        restored,
        timeline,
        calls,
    })
}

/// Records in `restored` the volumes attached to `server` that the restore
/// made (made from one of the snapshot's Cinder snapshots), each one not yet
/// known read once; returns the ones newly learnt with their status, and the
/// calls made. A volume the restore did not make is never recorded.
async fn learn_volumes(
    cloud: &OpenStack,
    spec: &RestoreSpec,
    restored: &mut Restored,
    server: &crate::openstack::nova::Server,
) -> Result<(BTreeMap<String, String>, i32), OpenStackError> {
    let mut fresh = BTreeMap::new();
    let mut calls = 0;
    let known = restored.volume_ids.get_or_insert_with(Vec::new);
    for attached in &server.volumes_attached {
        if known.contains(&attached.id) {
            continue;
        }
        calls += 1;
        match cloud.cinder().get_volume(&attached.id).await {
            Ok(volume) if spec.made_from_ours(volume.snapshot_id.as_deref()) => {
                known.push(volume.id.clone());
                fresh.insert(volume.id, volume.status);
            }
            Ok(_) => {}
            Err(e) if e.is_not_found() => {}
            Err(e) => return Err(e),
        }
    }
    Ok((fresh, calls))
}

/// Where one step of a clean-up got.
#[derive(Debug)]
pub struct CleanupStep {
    /// Everything the restore made is gone.
    pub done: bool,
    pub restored: Restored,
    pub timeline: Vec<TimelineEntry>,
    pub calls: i32,
    /// Why the cloud refused a `DELETE` this step sent (retried later).
    pub refused: Option<String>,
    /// What the step saw still there (ids): what a clean-up given up keeps.
    pub left: Vec<String>,
}

/// One step of deleting what a restore made: the server first (Nova keeps
/// the volumes it made from the image's mapping unless their
/// `delete_on_termination` was set, so each is then deleted explicitly once
/// it is detached), or the volume. The server's volumes are recorded in a
/// step before the one that deletes it. Idempotent: a crash between two
/// steps resumes from what the cloud shows and what was recorded.
///
/// # Errors
/// A call failed; the step is retried later.
pub async fn cleanup_step(
    cloud: &OpenStack,
    spec: &RestoreSpec,
    restored: &Restored,
    seen: &[TimelineEntry],
    now: DateTime<Utc>,
) -> Result<CleanupStep, OpenStackError> {
    let mut restored = restored.clone();
    let mut timeline = Vec::new();
    let mut calls = 0;
    let mut pending = false;
    let mut left = Vec::new();
    if let Some(group_id) = restored.group_id.clone() {
        let mut refused = None;
        calls += 1;
        match cloud.cinder().get_group(&group_id).await {
            Err(e) if e.is_not_found() => {
                note(&mut timeline, seen, now, "group", &group_id, "deleted");
            }
            Err(e) => return Err(e),
            Ok(group) => {
                pending = true;
                left.push(group_id.clone());
                left.extend(restored.volume_ids.clone().unwrap_or_default());
                if group.status == "available" || group.status.starts_with("error") {
                    calls += 1;
                    match cloud.cinder().delete_group_with_volumes(&group_id).await {
                        Ok(()) => note(&mut timeline, seen, now, "group", &group_id, "deleting"),
                        Err(e) if e.is_not_found() => {}
                        // Busy, or held (a snapshot of one of its volumes):
                        // looked at again, with Cinder's reason said.
                        Err(e)
                            if e.kind == ErrorKind::BadRequest || e.kind == ErrorKind::Conflict =>
                        {
                            refused = Some(format!(
                                "Cinder refuses to delete the group {group_id} (it is retried): {e}"
                            ));
                        }
                        Err(e) => return Err(e),
                    }
                }
            }
        }
        return Ok(CleanupStep {
            done: !pending,
            restored,
            timeline,
            calls,
            refused,
            left,
        });
    }
    let server_gone = restored.cleanup.as_ref().is_some_and(|c| c.server_gone);
    if let (Some(server_id), false) = (restored.server_id.clone(), server_gone) {
        calls += 1;
        match cloud.nova().get_server(&server_id).await {
            Ok(server) => {
                let (fresh, n) = learn_volumes(cloud, spec, &mut restored, &server).await?;
                calls += n;
                left.push(server_id.clone());
                left.extend(restored.volume_ids.clone().unwrap_or_default());
                // Once the server is gone its volumes can no longer be found
                // (Nova made them without our metadata): the ones just learnt
                // are recorded before the delete is sent, in the next step,
                // so that a step whose record is lost (its lease taken over,
                // the service stopped) never loses them.
                if !fresh.is_empty() {
                    return Ok(CleanupStep {
                        done: false,
                        restored,
                        timeline,
                        calls,
                        refused: None,
                        left,
                    });
                }
                if server.task_state.as_deref() != Some("deleting") {
                    calls += 1;
                    match cloud.nova().delete_server(&server_id).await {
                        Ok(()) => note(&mut timeline, seen, now, "server", &server_id, "deleting"),
                        Err(e) if e.is_not_found() => {}
                        Err(e) => return Err(e),
                    }
                }
                pending = true;
            }
            Err(e) if e.is_not_found() => {
                note(&mut timeline, seen, now, "server", &server_id, "deleted");
                if let Some(cleanup) = restored.cleanup.as_mut() {
                    cleanup.server_gone = true;
                }
            }
            Err(e) => return Err(e),
        }
        if pending {
            return Ok(CleanupStep {
                done: false,
                restored,
                timeline,
                calls,
                refused: None,
                left,
            });
        }
    }
    let mut volumes: Vec<String> = restored.volume_ids.clone().unwrap_or_default();
    volumes.extend(restored.volume_id.clone());
    let mut refused = None;
    for id in volumes {
        calls += 1;
        match cloud.cinder().get_volume(&id).await {
            Err(e) if e.is_not_found() => {
                note(&mut timeline, seen, now, "volume", &id, "deleted");
            }
            Err(e) => return Err(e),
            // Recorded before this check existed, or by an earlier
            // version: a volume the restore did not make is never deleted.
            Ok(volume) if !spec.made_from_ours(volume.snapshot_id.as_deref()) => {
                tracing::warn!(volume_id = %id, "not made by the restore; left alone");
            }
            Ok(volume) => {
                pending = true;
                left.push(id.clone());
                let deletable = volume.attachments.is_empty()
                    && (matches!(volume.status.as_str(), "available" | "error")
                        || volume.status.starts_with("error_"));
                if deletable && volume.status != "error_deleting" {
                    calls += 1;
                    match cloud.cinder().delete_volume(&id).await {
                        Ok(()) => note(&mut timeline, seen, now, "volume", &id, "deleting"),
                        Err(e) if e.is_not_found() => {}
                        // Busy (still detaching), or held by something no
                        // retry changes (a snapshot of it, a transfer):
                        // looked at again, with Cinder's reason said.
                        Err(e)
                            if e.kind == ErrorKind::BadRequest || e.kind == ErrorKind::Conflict =>
                        {
                            refused = Some(format!(
                                "Cinder refuses to delete the volume {id} (it is retried): {e}"
                            ));
                        }
                        Err(e) => return Err(e),
                    }
                }
            }
        }
    }
    Ok(CleanupStep {
        done: !pending,
        restored,
        timeline,
        calls,
        refused,
        left,
    })
}
