//! Cinder v3: volumes, snapshots and group snapshots.

use std::collections::BTreeMap;

use chrono::{DateTime, Utc};
use reqwest::Method;
use serde::Deserialize;
use serde_json::{Value, json};

use super::{
    decode,
    error::OpenStackError,
    session::{Call, Service, Session},
    version::Microversion,
};

/// From this microversion on Cinder snapshots in-use volumes without `force`, and refuses the flag.
pub const FORCE_NOT_NEEDED: Microversion = Microversion(3, 66);
/// Group snapshots need at least this microversion.
pub const GROUP_SNAPSHOTS: Microversion = Microversion(3, 14);
/// From this microversion on, the group-snapshot list reads `marker` and
/// `limit`; below it Cinder returns every one at once and ignores both (yet
/// still sends a next link that leads to the same page).
pub const GROUP_SNAPSHOT_PAGINATION: Microversion = Microversion(3, 29);

/// A volume.
#[derive(Debug, Clone, Deserialize)]
pub struct Volume {
    pub id: String,
    #[serde(default)]
    pub name: Option<String>,
    pub status: String,
    #[serde(default)]
    pub size: u64,
    #[serde(default)]
    pub metadata: BTreeMap<String, String>,
    /// Properties of the image a volume was made from (`hw_qemu_guest_agent`, ...).
    #[serde(default)]
    pub volume_image_metadata: BTreeMap<String, String>,
    #[serde(default)]
    pub attachments: Vec<VolumeAttachment>,
    /// Cinder sends `"true"`/`"false"` as strings.
    #[serde(default)]
    pub bootable: Value,
    /// The snapshot it was made from: while it lives, some backends cannot delete that snapshot.
    #[serde(default)]
    pub snapshot_id: Option<String>,
    /// The volume group it belongs to (microversion 3.13 or later).
    #[serde(default)]
    pub group_id: Option<String>,
    /// The owning project (shown to admins).
    #[serde(rename = "os-vol-tenant-attr:tenant_id", default)]
    pub tenant_id: Option<String>,
    #[serde(default)]
    pub availability_zone: Option<String>,
}

/// Where a volume is attached.
#[derive(Debug, Clone, Deserialize)]
pub struct VolumeAttachment {
    #[serde(default)]
    pub server_id: Option<String>,
    #[serde(default)]
    pub device: Option<String>,
}

/// A volume snapshot.
#[derive(Debug, Clone, Deserialize)]
pub struct Snapshot {
    pub id: String,
    #[serde(default)]
    pub name: Option<String>,
    /// `creating`, `available`, `error`, `deleting`, `error_deleting`, `backing-up`, `restoring`, ...
    pub status: String,
    pub volume_id: String,
    #[serde(default)]
    pub size: Option<u64>,
    #[serde(default)]
    pub metadata: BTreeMap<String, String>,
    #[serde(default, deserialize_with = "super::timestamp::optional")]
    pub created_at: Option<DateTime<Utc>>,
    #[serde(rename = "os-extended-snapshot-attributes:progress", default)]
    pub progress: Option<String>,
    /// The owning project (Cinder shows it to readers of the project and to admins).
    #[serde(rename = "os-extended-snapshot-attributes:project_id", default)]
    pub project_id: Option<String>,
    #[serde(default)]
    pub group_snapshot_id: Option<String>,
}

/// A volume group.
#[derive(Debug, Clone, Deserialize)]
pub struct Group {
    pub id: String,
    #[serde(default)]
    pub name: Option<String>,
    #[serde(default)]
    pub status: String,
    #[serde(default)]
    pub description: Option<String>,
    /// The owning project (microversion 3.58 or later).
    #[serde(default)]
    pub project_id: Option<String>,
    /// The group snapshot it was made from (`create-from-src`; microversion 3.14 or later).
    #[serde(default)]
    pub group_snapshot_id: Option<String>,
}

#[derive(Deserialize)]
struct GroupsBody {
    groups: Vec<Group>,
}

/// A group snapshot: crash-consistent snapshots of every volume in a group.
#[derive(Debug, Clone, Deserialize)]
pub struct GroupSnapshot {
    pub id: String,
    #[serde(default)]
    pub name: Option<String>,
    #[serde(default)]
    pub description: Option<String>,
    /// Absent from the create answer (see Cinder's own sample); read it with a get.
    #[serde(default)]
    pub status: String,
    #[serde(default)]
    pub group_id: Option<String>,
}

/// Which snapshots to list. Only filters Cinder's default
/// `resource_filters.json` lets a project member use: from microversion 3.31
/// any other is a 400 for a non-admin, and below it is silently dropped (so
/// the list would hold every snapshot of the project). `group_snapshot_id` is
/// not one of them: find a group snapshot's members by their volumes.
#[derive(Debug, Clone, Default)]
pub struct SnapshotFilter {
    pub metadata: BTreeMap<String, String>,
    pub status: Option<String>,
    pub volume_id: Option<String>,
    pub all_tenants: bool,
}

/// Which volumes to list (filters a project member may use, as for snapshots).
#[derive(Debug, Clone, Default)]
pub struct VolumeFilter {
    pub metadata: BTreeMap<String, String>,
    /// The volumes of one group (microversion 3.10 or later).
    pub group_id: Option<String>,
    pub all_tenants: bool,
}

#[derive(Deserialize)]
struct VolumeBody {
    volume: Volume,
}
#[derive(Deserialize)]
struct VolumesBody {
    volumes: Vec<Volume>,
    #[serde(default)]
    volumes_links: Vec<super::Link>,
}
#[derive(Deserialize)]
struct SnapshotBody {
    snapshot: Snapshot,
}
#[derive(Deserialize)]
struct SnapshotsBody {
    snapshots: Vec<Snapshot>,
    #[serde(default)]
    snapshots_links: Vec<super::Link>,
}
#[derive(Deserialize)]
struct GroupSnapshotBody {
    group_snapshot: GroupSnapshot,
}
#[derive(Deserialize)]
struct GroupSnapshotsBody {
    group_snapshots: Vec<GroupSnapshot>,
    /// Cinder's group-snapshot view names it in the singular.
    #[serde(default)]
    group_snapshot_links: Vec<super::Link>,
}
#[derive(Deserialize)]
struct GroupBody {
    group: Group,
}

const PAGE_SIZE: usize = 500;

/// The block-storage API.
#[derive(Debug, Clone, Copy)]
pub struct Cinder<'a>(pub(super) &'a Session);

impl Cinder<'_> {
    /// Reads one volume.
    ///
    /// # Errors
    /// `NotFound` when it does not exist; other typed failures.
    pub async fn get_volume(&self, id: &str) -> Result<Volume, OpenStackError> {
        let call = Call::new(
            Service::Volume,
            "get_volume",
            Method::GET,
            format!("/volumes/{}", super::segment(id)),
        );
        decode::<VolumeBody>(&call, &self.0.send(&call).await?).map(|b| b.volume)
    }

    /// Lists volumes, following pages by marker.
    ///
    /// # Errors
    /// Typed failures of any page.
    pub async fn list_volumes(&self, filter: &VolumeFilter) -> Result<Vec<Volume>, OpenStackError> {
        let mut base = metadata_query(&filter.metadata);
        if let Some(group_id) = &filter.group_id {
            base.push(("group_id".into(), group_id.clone()));
        }
        if filter.all_tenants {
            base.push(("all_tenants".into(), "1".into()));
        }
        let mut volumes: Vec<Volume> = Vec::new();
        loop {
            let query = page_query(&base, volumes.last().map(|v| v.id.as_str()));
            let call = Call::new(
                Service::Volume,
                "list_volumes",
                Method::GET,
                "/volumes/detail",
            )
            .query(query);
            let body = decode::<VolumesBody>(&call, &self.0.send(&call).await?)?;
            let more = super::more_pages(body.volumes.len(), PAGE_SIZE, &body.volumes_links);
            volumes.extend(body.volumes);
            if !more {
                return Ok(volumes);
            }
        }
    }

    /// Snapshots a volume. `in_use` says whether the volume is attached: below
    /// microversion 3.66 that needs `force: true`; from 3.66 `force` must not be sent.
    ///
    /// # Errors
    /// `QuotaExceeded` (413) and the rest.
    pub async fn create_snapshot(
        &self,
        volume_id: &str,
        name: &str,
        description: &str,
        metadata: &BTreeMap<String, String>,
        in_use: bool,
    ) -> Result<Snapshot, OpenStackError> {
        let version = self.0.microversion(Service::Volume).await?;
        let mut snapshot = json!({"volume_id": volume_id, "name": name, "description": description, "metadata": metadata});
        if in_use && version.is_none_or(|v| v < FORCE_NOT_NEEDED) {
            snapshot["force"] = true.into();
        }
        let call = Call::new(
            Service::Volume,
            "create_snapshot",
            Method::POST,
            "/snapshots",
        )
        .json(json!({"snapshot": snapshot}));
        decode::<SnapshotBody>(&call, &self.0.send(&call).await?).map(|b| b.snapshot)
    }

    /// Reads one snapshot.
    ///
    /// # Errors
    /// `NotFound` when it does not exist; other typed failures.
    pub async fn get_snapshot(&self, id: &str) -> Result<Snapshot, OpenStackError> {
        let call = Call::new(
            Service::Volume,
            "get_snapshot",
            Method::GET,
            format!("/snapshots/{}", super::segment(id)),
        );
        decode::<SnapshotBody>(&call, &self.0.send(&call).await?).map(|b| b.snapshot)
    }

    /// Lists snapshots, following pages by marker.
    ///
    /// # Errors
    /// Typed failures of any page.
    pub async fn list_snapshots(
        &self,
        filter: &SnapshotFilter,
    ) -> Result<Vec<Snapshot>, OpenStackError> {
        self.list_snapshots_counted(filter)
            .await
            .map(|(snapshots, _)| snapshots)
    }

    /// [`Self::list_snapshots`], with the number of calls (pages) it took.
    ///
    /// # Errors
    /// Typed failures of any page.
    pub async fn list_snapshots_counted(
        &self,
        filter: &SnapshotFilter,
    ) -> Result<(Vec<Snapshot>, i32), OpenStackError> {
        let mut base = metadata_query(&filter.metadata);
        if let Some(status) = &filter.status {
            base.push(("status".into(), status.clone()));
        }
        if let Some(volume_id) = &filter.volume_id {
            base.push(("volume_id".into(), volume_id.clone()));
        }
        if filter.all_tenants {
            base.push(("all_tenants".into(), "1".into()));
        }
        let mut snapshots: Vec<Snapshot> = Vec::new();
        let mut calls = 0;
        loop {
            let query = page_query(&base, snapshots.last().map(|s| s.id.as_str()));
            let call = Call::new(
                Service::Volume,
                "list_snapshots",
                Method::GET,
                "/snapshots/detail",
            )
            .query(query);
            calls += 1;
            let body = decode::<SnapshotsBody>(&call, &self.0.send(&call).await?)?;
            let more = super::more_pages(body.snapshots.len(), PAGE_SIZE, &body.snapshots_links);
            snapshots.extend(body.snapshots);
            if !more {
                return Ok((snapshots, calls));
            }
        }
    }

    /// Adds `metadata` to a snapshot's own (keys it names are replaced, others
    /// kept): `POST /snapshots/{id}/metadata`, which a project member may call.
    ///
    /// # Errors
    /// `NotFound` when it does not exist; other typed failures.
    pub async fn add_snapshot_metadata(
        &self,
        id: &str,
        metadata: &BTreeMap<String, String>,
    ) -> Result<(), OpenStackError> {
        let call = Call::new(
            Service::Volume,
            "add_snapshot_metadata",
            Method::POST,
            format!("/snapshots/{}/metadata", super::segment(id)),
        )
        .json(json!({"metadata": metadata}));
        self.0.send(&call).await.map(|_| ())
    }

    /// Deletes a snapshot (Cinder accepts this only from `available` or `error`).
    ///
    /// # Errors
    /// `NotFound` when it is already gone; other typed failures.
    pub async fn delete_snapshot(&self, id: &str) -> Result<(), OpenStackError> {
        let call = Call::new(
            Service::Volume,
            "delete_snapshot",
            Method::DELETE,
            format!("/snapshots/{}", super::segment(id)),
        );
        self.0.send(&call).await.map(|_| ())
    }

    /// Creates a volume; `volume` is the body's `volume` object (e.g. with
    /// `snapshot_id`, `size`, `name`, `metadata`).
    ///
    /// # Errors
    /// `QuotaExceeded` (413), a 400 naming what Cinder refuses (a snapshot not
    /// `available`, a size below the snapshot's), and the rest.
    pub async fn create_volume(&self, volume: Value) -> Result<Volume, OpenStackError> {
        let call = Call::new(Service::Volume, "create_volume", Method::POST, "/volumes")
            .json(json!({"volume": volume}));
        decode::<VolumeBody>(&call, &self.0.send(&call).await?).map(|b| b.volume)
    }

    /// Deletes a volume (Cinder accepts this only when it is not attached).
    ///
    /// # Errors
    /// `NotFound` when it is already gone; other typed failures.
    pub async fn delete_volume(&self, id: &str) -> Result<(), OpenStackError> {
        let call = Call::new(
            Service::Volume,
            "delete_volume",
            Method::DELETE,
            format!("/volumes/{}", super::segment(id)),
        );
        self.0.send(&call).await.map(|_| ())
    }

    /// Replaces a volume's metadata (`PUT /volumes/{id}`).
    ///
    /// # Errors
    /// Typed failures.
    pub async fn set_volume_metadata(
        &self,
        id: &str,
        metadata: &BTreeMap<String, String>,
    ) -> Result<(), OpenStackError> {
        let call = Call::new(
            Service::Volume,
            "update_volume",
            Method::PUT,
            format!("/volumes/{}", super::segment(id)),
        )
        .json(json!({"volume": {"metadata": metadata}}));
        self.0.send(&call).await.map(|_| ())
    }

    /// Makes a new volume group from a group snapshot (`create-from-src`,
    /// microversion 3.14 or later): one volume per member snapshot.
    ///
    /// # Errors
    /// A 400 naming what Cinder refuses, `QuotaExceeded`, and the rest.
    pub async fn create_group_from_src(
        &self,
        name: &str,
        description: &str,
        group_snapshot_id: &str,
    ) -> Result<Group, OpenStackError> {
        let call = Call::new(
            Service::Volume,
            "create_group_from_src",
            Method::POST,
            "/groups/action",
        )
        .json(json!({"create-from-src": {
            "name": name, "description": description, "group_snapshot_id": group_snapshot_id
        }}));
        decode::<GroupBody>(&call, &self.0.send(&call).await?).map(|b| b.group)
    }

    /// The volume groups named `name` (a filter Cinder's default
    /// `resource_filters.json` lets members use), with their descriptions.
    ///
    /// # Errors
    /// Typed failures.
    pub async fn list_groups_named(
        &self,
        name: &str,
        all_tenants: bool,
    ) -> Result<Vec<Group>, OpenStackError> {
        let mut query = vec![("name".to_owned(), name.to_owned())];
        if all_tenants {
            query.push(("all_tenants".to_owned(), "1".to_owned()));
        }
        let call = Call::new(
            Service::Volume,
            "list_groups",
            Method::GET,
            "/groups/detail",
        )
        .query(query);
        decode::<GroupsBody>(&call, &self.0.send(&call).await?).map(|b| b.groups)
    }

    /// Deletes a volume group with its volumes.
    ///
    /// # Errors
    /// `NotFound` when it is already gone; a 400 while it is busy; other typed failures.
    pub async fn delete_group_with_volumes(&self, id: &str) -> Result<(), OpenStackError> {
        let call = Call::new(
            Service::Volume,
            "delete_group",
            Method::POST,
            format!("/groups/{}/action", super::segment(id)),
        )
        .json(json!({"delete": {"delete-volumes": true}}));
        self.0.send(&call).await.map(|_| ())
    }

    /// Reads one volume group (microversion 3.13 or later).
    ///
    /// # Errors
    /// `NotFound` when it does not exist; other typed failures.
    pub async fn get_group(&self, id: &str) -> Result<Group, OpenStackError> {
        let call = Call::new(
            Service::Volume,
            "get_group",
            Method::GET,
            format!("/groups/{}", super::segment(id)),
        );
        decode::<GroupBody>(&call, &self.0.send(&call).await?).map(|b| b.group)
    }

    /// Lists the project's group snapshots (of one group when `group_id` is
    /// set), following pages by marker from microversion 3.29 on; below it
    /// Cinder answers every one at once.
    ///
    /// # Errors
    /// Typed failures of any page.
    pub async fn list_group_snapshots(
        &self,
        group_id: Option<&str>,
    ) -> Result<Vec<GroupSnapshot>, OpenStackError> {
        let pages = self
            .0
            .microversion(Service::Volume)
            .await?
            .is_some_and(|v| v >= GROUP_SNAPSHOT_PAGINATION);
        // A filter every token may use; below 3.29 Cinder ignores it, so
        // callers match the group themselves.
        let base: Vec<(String, String)> = group_id
            .map(|g| vec![("group_id".to_owned(), g.to_owned())])
            .unwrap_or_default();
        let mut found: Vec<GroupSnapshot> = Vec::new();
        loop {
            let query = if pages {
                page_query(&base, found.last().map(|g| g.id.as_str()))
            } else {
                base.clone()
            };
            let call = Call::new(
                Service::Volume,
                "list_group_snapshots",
                Method::GET,
                "/group_snapshots/detail",
            )
            .query(query);
            let body = decode::<GroupSnapshotsBody>(&call, &self.0.send(&call).await?)?;
            let more = pages
                && super::more_pages(
                    body.group_snapshots.len(),
                    PAGE_SIZE,
                    &body.group_snapshot_links,
                );
            found.extend(body.group_snapshots);
            if !more {
                return Ok(found);
            }
        }
    }

    /// Snapshots every volume of a group at once (microversion 3.14 or later).
    ///
    /// # Errors
    /// Typed failures.
    pub async fn create_group_snapshot(
        &self,
        group_id: &str,
        name: &str,
        description: &str,
    ) -> Result<GroupSnapshot, OpenStackError> {
        let call = Call::new(Service::Volume, "create_group_snapshot", Method::POST, "/group_snapshots")
            .json(json!({"group_snapshot": {"group_id": group_id, "name": name, "description": description}}));
        decode::<GroupSnapshotBody>(&call, &self.0.send(&call).await?).map(|b| b.group_snapshot)
    }

    /// Reads one group snapshot.
    ///
    /// # Errors
    /// `NotFound` when it does not exist; other typed failures.
    pub async fn get_group_snapshot(&self, id: &str) -> Result<GroupSnapshot, OpenStackError> {
        let call = Call::new(
            Service::Volume,
            "get_group_snapshot",
            Method::GET,
            format!("/group_snapshots/{}", super::segment(id)),
        );
        decode::<GroupSnapshotBody>(&call, &self.0.send(&call).await?).map(|b| b.group_snapshot)
    }

    /// Deletes a group snapshot and its volume snapshots.
    ///
    /// # Errors
    /// `NotFound` when it is already gone; other typed failures.
    pub async fn delete_group_snapshot(&self, id: &str) -> Result<(), OpenStackError> {
        let call = Call::new(
            Service::Volume,
            "delete_group_snapshot",
            Method::DELETE,
            format!("/group_snapshots/{}", super::segment(id)),
        );
        self.0.send(&call).await.map(|_| ())
    }
}

/// Cinder filters on metadata with one parameter holding a dict literal.
fn metadata_query(metadata: &BTreeMap<String, String>) -> Vec<(String, String)> {
    if metadata.is_empty() {
        Vec::new()
    } else {
        vec![(
            "metadata".into(),
            serde_json::to_string(metadata).expect("a map serialises"),
        )]
    }
}

fn page_query(base: &[(String, String)], marker: Option<&str>) -> Vec<(String, String)> {
    let mut query = base.to_vec();
    query.push(("limit".into(), PAGE_SIZE.to_string()));
    if let Some(marker) = marker {
        query.push(("marker".into(), marker.to_owned()));
    }
    query
}
