//! Restores of managed snapshots (`POST /v1/snapshots/{id}/restore`): the
//! request, what a restore job keeps of it, what it made, and the pure rules
//! that judge how far it got. The cloud calls are in `engine::restore`.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};
use serde_json::Value;
use utoipa::ToSchema;
use uuid::Uuid;

use super::{
    duration::HumanDuration,
    job::{JobError, Verdict},
    policy::{ResourceType, check_metadata},
    validation::{FieldError, Violations},
};

/// The metadata key naming the managed snapshot a resource was restored from.
pub const RESTORED_FROM_KEY: &str = "stacksnap_restored_from";

/// The metadata key naming the job that made a resource (as on snapshots).
pub const JOB_ID_KEY: &str = "stacksnap_job_id";

/// The tag of a server a restore job made: Nova lists servers by tag, not by
/// metadata, so recovery after a crash finds it by this.
pub fn server_tag(job_id: Uuid) -> String {
    format!("stacksnap-job-{job_id}")
}

/// The most characters of a name, an availability zone, a key pair or a type.
const MAX_TEXT_CHARS: usize = 255;

pub use super::networks::{NetworkChoice, NetworkRef, Networks};

/// A request to restore a managed snapshot. Every field is optional; those
/// that do not apply to the snapshot's resource type are refused.
#[derive(Debug, Clone, Default, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
#[schema(example = json!({"name": "web-1-restored", "flavor": "m1.small", "networks": "none",
    "metadata": {"ticket": "OPS-1234"}}))]
pub struct RestoreRequest {
    /// The new resource's name; default `<source name>-restore-<first 8 characters of the job id>`.
    #[serde(default)]
    pub name: Option<String>,
    /// Servers: a flavor id or name; default the source server's flavor, as
    /// recorded when the snapshot was taken (by name when Nova showed only its name).
    #[serde(default)]
    pub flavor: Option<String>,
    /// Servers and volumes: the availability zone. Only an image-backed
    /// server moves to another zone: Cinder keeps a volume made from a
    /// snapshot in the snapshot's zone (`cloned_volume_same_az`, on by
    /// default), so for a volume snapshot or a volume-backed server's
    /// snapshot a zone other than the one recorded with the snapshot is
    /// refused (422); a snapshot that recorded none leaves it to the cloud.
    #[serde(default)]
    pub availability_zone: Option<String>,
    /// Servers: `"none"` (the default: it works on every cloud), `"auto"`, or
    /// a list of `{"network": id}` / `{"port": id}`.
    #[serde(default)]
    pub networks: Option<Networks>,
    /// Servers: the key pair to inject.
    #[serde(default)]
    pub key_name: Option<String>,
    /// Metadata for the new server or volume (or each volume of a new
    /// group), besides `stacksnap_restored_from` and `stacksnap_job_id`.
    #[serde(default)]
    pub metadata: Option<BTreeMap<String, String>>,
    /// Volumes: the volume type; default Cinder's choice (the snapshot's volume's type).
    #[serde(default)]
    pub volume_type: Option<String>,
    /// Volumes: the size in GiB, at least the snapshot's.
    #[serde(default)]
    #[schema(minimum = 1, example = 20)]
    pub size: Option<u64>,
    /// How long the restore may take; default `2h`.
    #[serde(default)]
    #[schema(example = "2h")]
    pub timeout: Option<String>,
    /// With `?delete_source=after_active` (a move), and only then: the
    /// source server's id (the snapshot's `resource_id`), confirming that
    /// it is to be deleted once the new server is `ACTIVE`.
    #[serde(default)]
    #[schema(example = "4f1d6a52-0b52-4a8e-9c43-1d0c8e3f2a10")]
    pub confirm: Option<String>,
}

/// What a restore starts from: the pieces of the managed snapshot.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "type", rename_all = "snake_case")]
pub enum RestoreSource {
    /// A server snapshot: the Glance image (for a volume-backed server, its
    /// `block_device_mapping` lists the Cinder snapshots Nova makes the
    /// volumes from) and the source's flavor as recorded.
    Server {
        image_id: String,
        #[serde(default)]
        source_flavor: Option<Value>,
        /// The Cinder snapshots of a volume-backed server's snapshot: Nova
        /// makes the new server's volumes from these, and only a volume made
        /// from one of them is the restore's (a user may attach their own
        /// volume to the new server). Empty for an image-backed server (and
        /// for a job queued before they were recorded): no volume is then
        /// the restore's.
        #[serde(default, skip_serializing_if = "Vec::is_empty")]
        volume_snapshot_ids: Vec<String>,
    },
    /// A volume snapshot.
    Volume {
        volume_snapshot_id: String,
        #[serde(default)]
        size_gb: Option<u64>,
    },
    /// A volume group's snapshot: Cinder's `create-from-src` makes a new
    /// group with one volume per member snapshot.
    VolumeGroup { group_snapshot_id: String },
}

/// What a restore job keeps of its request (`job.restore`), as validated.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct RestoreSpec {
    /// The managed snapshot restored.
    pub snapshot_id: Uuid,
    pub source: RestoreSource,
    pub name: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub flavor: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub availability_zone: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub networks: Option<Networks>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub key_name: Option<String>,
    #[serde(default)]
    pub metadata: BTreeMap<String, String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub volume_type: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub size: Option<u64>,
    /// A move: the source server is deleted once the new one is usable.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub delete_source: Option<super::moves::DeleteSource>,
}

impl RestoreSpec {
    /// The metadata every resource the restore makes carries.
    pub fn stamped_metadata(&self, job_id: Uuid) -> BTreeMap<String, String> {
        let mut metadata = self.metadata.clone();
        metadata.insert(RESTORED_FROM_KEY.into(), self.snapshot_id.to_string());
        metadata.insert(JOB_ID_KEY.into(), job_id.to_string());
        metadata
    }

    /// Whether a volume made from the Cinder snapshot `from` (its
    /// `snapshot_id`) can be one this restore made: for a server, one of the
    /// snapshot's pieces; for a volume, the snapshot's; for a group, never
    /// asked (its volumes are its members).
    pub fn made_from_ours(&self, from: Option<&str>) -> bool {
        let Some(from) = from else { return false };
        match &self.source {
            RestoreSource::Server {
                volume_snapshot_ids,
                ..
            } => volume_snapshot_ids.iter().any(|s| s == from),
            RestoreSource::Volume {
                volume_snapshot_id, ..
            } => volume_snapshot_id == from,
            RestoreSource::VolumeGroup { .. } => false,
        }
    }

    /// The networks Nova is given: `"none"` unless the request chose.
    pub fn nova_networks(&self) -> Value {
        self.networks
            .as_ref()
            .unwrap_or(&Networks::Choice(NetworkChoice::None))
            .to_nova()
    }
}

/// What a managed snapshot offers a restore, as the API read it.
#[derive(Debug, Clone)]
pub struct SnapshotPieces {
    pub snapshot_id: Uuid,
    pub resource_type: ResourceType,
    pub resource_id: String,
    pub resource_name: Option<String>,
    pub image_id: Option<String>,
    pub volume_snapshot_id: Option<String>,
    /// Every Cinder snapshot of the snapshot (a volume-backed server's pieces).
    pub volume_snapshot_ids: Vec<String>,
    pub group_snapshot_id: Option<String>,
    pub size_gb: Option<u64>,
    pub source_flavor: Option<Value>,
    /// The availability zone of the snapshotted server or volume, when recorded.
    pub source_az: Option<String>,
    /// A server snapshot whose server booted from a volume (it has Cinder snapshots).
    pub volume_backed: bool,
}

/// Why a snapshot cannot be restored at all (answered 409).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NotRestorable(pub String);

impl RestoreRequest {
    /// Checks every field against the snapshot; returns the job's timeout in seconds.
    ///
    /// # Errors
    /// Every invalid field, and every field that does not apply to the snapshot's resource type.
    pub fn validate(&self, snapshot: &SnapshotPieces) -> Result<u64, Vec<FieldError>> {
        let mut v = Violations::default();
        let text = |v: &mut Violations, field: &str, value: &Option<String>| {
            if let Some(value) = value {
                v.check(
                    value.trim().is_empty() || value.chars().count() > MAX_TEXT_CHARS,
                    field,
                    format!("must be 1 to {MAX_TEXT_CHARS} characters"),
                );
            }
        };
        text(&mut v, "name", &self.name);
        text(&mut v, "flavor", &self.flavor);
        text(&mut v, "availability_zone", &self.availability_zone);
        text(&mut v, "key_name", &self.key_name);
        text(&mut v, "volume_type", &self.volume_type);
        if let Some(metadata) = &self.metadata {
            check_metadata(&mut v, "metadata", metadata, true);
        }
        let server_only = [
            ("flavor", self.flavor.is_some()),
            ("networks", self.networks.is_some()),
            ("key_name", self.key_name.is_some()),
        ];
        let volume_only = [
            ("volume_type", self.volume_type.is_some()),
            ("size", self.size.is_some()),
        ];
        match snapshot.resource_type {
            ResourceType::Server => {
                for (field, _) in volume_only.iter().filter(|(_, set)| *set) {
                    v.add(*field, "applies only to the restore of a volume snapshot");
                }
            }
            ResourceType::Volume => {
                for (field, _) in server_only.iter().filter(|(_, set)| *set) {
                    v.add(*field, "applies only to the restore of a server snapshot");
                }
            }
            ResourceType::VolumeGroup => {
                let zone = [("availability_zone", self.availability_zone.is_some())];
                let set = server_only.iter().chain(&volume_only).chain(&zone);
                for (field, _) in set.filter(|(_, set)| *set) {
                    v.add(
                        *field,
                        "does not apply to the restore of a volume group snapshot (Cinder makes the \
                         group in its source's zone, with its source's types and sizes)",
                    );
                }
            }
        }
        if let (Some(zone), Some(source)) = (&self.availability_zone, &snapshot.source_az) {
            check_zone(&mut v, snapshot, zone, source);
        }
        if let Some(Networks::List(list)) = &self.networks {
            v.check(
                list.is_empty(),
                "networks",
                "must name at least one network or port; use \"none\" for none",
            );
            for (i, n) in list.iter().enumerate() {
                let at = format!("networks[{i}]");
                match (&n.network, &n.port) {
                    (Some(_), Some(_)) | (None, None) => {
                        v.add(at, "must name exactly one of `network` and `port`");
                    }
                    (Some(id), None) | (None, Some(id)) => v.check(
                        id.trim().is_empty() || id.chars().count() > 64,
                        at,
                        "must be a Neutron id",
                    ),
                }
            }
        }
        if let Some(size) = self.size {
            let least = snapshot.size_gb.unwrap_or(1).max(1);
            v.check(
                size < least,
                "size",
                format!("must be at least the snapshot's size, {least} GiB"),
            );
        }
        let timeout = match self.timeout.as_deref().map(str::parse::<HumanDuration>) {
            None => 7200,
            Some(Ok(d)) if (60..=7 * 86_400).contains(&d.as_secs()) => d.as_secs(),
            Some(Ok(_)) => {
                v.add("timeout", "must be between 1m and 7d");
                0
            }
            Some(Err(e)) => {
                v.add("timeout", e.to_string());
                0
            }
        };
        v.finish(timeout)
    }

    /// What the job keeps: the request with its defaults filled in.
    ///
    /// # Errors
    /// The snapshot has nothing a restore can start from.
    pub fn spec(
        &self,
        snapshot: &SnapshotPieces,
        job_id: Uuid,
    ) -> Result<RestoreSpec, NotRestorable> {
        let source = match snapshot.resource_type {
            ResourceType::Server => RestoreSource::Server {
                image_id: snapshot.image_id.clone().ok_or_else(|| {
                    NotRestorable("the snapshot has no image to boot from".into())
                })?,
                source_flavor: snapshot.source_flavor.clone(),
                volume_snapshot_ids: snapshot.volume_snapshot_ids.clone(),
            },
            ResourceType::Volume => RestoreSource::Volume {
                volume_snapshot_id: snapshot
                    .volume_snapshot_id
                    .clone()
                    .ok_or_else(|| NotRestorable("the snapshot has no Cinder snapshot".into()))?,
                size_gb: snapshot.size_gb,
            },
            ResourceType::VolumeGroup => RestoreSource::VolumeGroup {
                group_snapshot_id: snapshot.group_snapshot_id.clone().ok_or_else(|| {
                    NotRestorable("the snapshot has no Cinder group snapshot".into())
                })?,
            },
        };
        let source_name = snapshot
            .resource_name
            .as_deref()
            .filter(|n| !n.is_empty())
            .unwrap_or(&snapshot.resource_id);
        let job = job_id.to_string();
        let name = self.name.clone().unwrap_or_else(|| {
            let base: String = source_name.chars().take(MAX_TEXT_CHARS - 18).collect();
            format!("{base}-restore-{}", &job[..8])
        });
        Ok(RestoreSpec {
            snapshot_id: snapshot.snapshot_id,
            source,
            name,
            flavor: self.flavor.clone(),
            availability_zone: self.availability_zone.clone(),
            networks: self.networks.clone(),
            key_name: self.key_name.clone(),
            metadata: self.metadata.clone().unwrap_or_default(),
            volume_type: self.volume_type.clone(),
            size: self.size,
            delete_source: None,
        })
    }
}

/// Refuses a zone other than the snapshot's where Cinder makes volumes from
/// the snapshot: Cinder's `cloned_volume_same_az` (on by default) keeps a
/// volume made from a snapshot in the snapshot's zone (`_extract_availability_zones`
/// in `cinder/volume/flows/api/create_volume.py` answers 400 "Volume must be
/// in the same availability zone as the snapshot"). Nova creates a
/// volume-backed server's volumes with no zone (`cross_az_attach`, the
/// default) or the server's (`cross_az_attach = False`, then refused), so
/// only an image-backed server moves to another zone.
fn check_zone(v: &mut Violations, snapshot: &SnapshotPieces, zone: &str, source: &str) {
    let why = match snapshot.resource_type {
        ResourceType::Volume => "Cinder makes a volume from a snapshot in the snapshot's zone",
        ResourceType::Server if snapshot.volume_backed => {
            "a volume-backed server's volumes are made from its Cinder snapshots, which Cinder \
             keeps in their zone; only an image-backed server moves to another zone"
        }
        _ => return,
    };
    v.check(
        zone != source,
        "availability_zone",
        format!(
            "must be the snapshot's zone, {source:?}, or left out: {why} (`cloned_volume_same_az`, \
             on by default)"
        ),
    );
}

/// How late a restore may still start.
const START_WINDOW: chrono::TimeDelta = chrono::TimeDelta::hours(1);

/// The job of a validated restore request.
pub fn restore_job(
    snapshot: &SnapshotPieces,
    spec: RestoreSpec,
    timeout_secs: u64,
    job_id: Uuid,
    now: chrono::DateTime<chrono::Utc>,
) -> super::job::NewJob {
    super::job::NewJob {
        job_id,
        resource_type: snapshot.resource_type,
        resource_id: snapshot.resource_id.clone(),
        resource_name: snapshot.resource_name.clone(),
        options: super::job::JobOptions {
            name_template: super::name_template::NameTemplate::fixed(&spec.name),
            policy_name: "restore".into(),
            metadata: spec.metadata.clone(),
            consistency: super::policy::Consistency::default(),
            timeout_secs,
            max_concurrent: None,
            scheduled_at: now,
        },
        start_by: now + START_WINDOW,
        kind: super::status::JobKind::Restore,
        restore: Some(spec),
    }
}

/// Where the clean-up of a failed or cancelled restore stands.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "snake_case")]
#[schema(example = "deleted")]
pub enum CleanupState {
    /// What the restore made is being deleted.
    Deleting,
    /// Everything it made is gone.
    Deleted,
    /// Given up: the cloud refused to delete what is named in `left` for
    /// longer than the engine's clean-up limit (7 days after the job ended by
    /// default), e.g. a volume with a Cinder snapshot of it. It is left to
    /// its owner, with the last error said; nothing deletes it any more.
    Kept,
}

/// The clean-up of what a failed or cancelled restore (or a restore test)
/// made: `deleting`, then `deleted`, or `kept` (with `left` and `error`) when
/// the cloud refused the deletion for longer than the engine's limit.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
#[schema(example = json!({"state": "deleted", "server_gone": true}))]
pub struct Cleanup {
    pub state: CleanupState,
    /// The last error met while deleting (it is retried; once `kept`, why
    /// it was given up).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub error: Option<String>,
    /// Whether the server is gone (its volumes are deleted after it).
    #[serde(default)]
    pub server_gone: bool,
    /// What is left in the cloud (ids) when the clean-up ended `kept`.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    #[schema(example = json!(["0c1d2e3f-4a5b-4c6d-8e7f-9a0b1c2d3e4f"]))]
    pub left: Vec<String>,
}

/// What a restore job made.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
#[schema(example = json!({"server_id": "5e2a9c1d-7b3f-4d6e-8a1c-2b3d4e5f6a70",
    "volume_ids": ["0c1d2e3f-4a5b-4c6d-8e7f-9a0b1c2d3e4f"]}))]
pub struct Restored {
    /// The new server (a server snapshot's restore).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub server_id: Option<String>,
    /// The new volume (a volume snapshot's restore).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub volume_id: Option<String>,
    /// The new volume group (a volume group snapshot's restore).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub group_id: Option<String>,
    /// The new server's volumes, as Nova attached them (a volume-backed
    /// server's), or the new group's volumes.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub volume_ids: Option<Vec<String>>,
    /// Set once a failed or cancelled restore (or a restore test) deletes
    /// what it made; `kept` once given up (see [`CleanupState::Kept`]).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub cleanup: Option<Cleanup>,
    /// A move (`?delete_source=after_active`): the deletion of the source
    /// server, begun once the new server is usable. Once set, nothing the
    /// restore made is ever deleted by it.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub source_deletion: Option<super::moves::SourceDeletion>,
    /// A move: when the job saw that Nova no longer shows the source server.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub source_deleted_at: Option<chrono::DateTime<chrono::Utc>>,
}

impl Restored {
    /// Whether the restore made anything known by id.
    pub fn is_empty(&self) -> bool {
        self.server_id.is_none()
            && self.volume_id.is_none()
            && self.group_id.is_none()
            && self.volume_ids.as_ref().is_none_or(Vec::is_empty)
    }
}

/// Judges a restored server from its status, Nova's fault message, and the
/// status of each volume Nova attached (`None`: Cinder no longer knows it).
pub fn judge_server(
    status: Option<&str>,
    fault: Option<&str>,
    volumes: &[(String, Option<String>)],
) -> Verdict {
    match status {
        None | Some("DELETED" | "SOFT_DELETED") => {
            return Verdict::Failed {
                code: "server_deleted",
                message: "the new server was deleted before it was ACTIVE".into(),
            };
        }
        Some("ERROR") => {
            return Verdict::Failed {
                code: "server_error",
                message: format!(
                    "the new server went to ERROR: {}",
                    fault
                        .filter(|f| !f.is_empty())
                        .unwrap_or("Nova gave no fault message")
                ),
            };
        }
        Some("ACTIVE") => {}
        Some(_) => return Verdict::InProgress,
    }
    for (id, status) in volumes {
        match status.as_deref() {
            None => {
                return Verdict::Failed {
                    code: "volume_deleted",
                    message: format!("volume {id} of the new server is gone"),
                };
            }
            Some(s) if s.starts_with("error") => {
                return Verdict::Failed {
                    code: "volume_error",
                    message: format!("volume {id} of the new server went to {s}"),
                };
            }
            Some("in-use") => {}
            Some(_) => return Verdict::InProgress,
        }
    }
    Verdict::Done
}

/// Judges a restored volume from its status (`None`: Cinder no longer knows it).
pub fn judge_volume(id: &str, status: Option<&str>) -> Verdict {
    match status {
        Some("available") => Verdict::Done,
        None | Some("deleting") => Verdict::Failed {
            code: "volume_deleted",
            message: format!("the new volume {id} was deleted before it was available"),
        },
        Some(s) if s.starts_with("error") => Verdict::Failed {
            code: "volume_error",
            message: format!("the new volume {id} went to {s}"),
        },
        Some(_) => Verdict::InProgress,
    }
}

/// Judges a restored volume group from its status (`None`: Cinder no longer
/// knows it) and the status of each of its volumes.
pub fn judge_group(id: &str, status: Option<&str>, volumes: &[(String, String)]) -> Verdict {
    match status {
        None | Some("deleting") => {
            return Verdict::Failed {
                code: "group_deleted",
                message: format!("the new volume group {id} was deleted before it was available"),
            };
        }
        Some(s) if s.starts_with("error") => {
            let failed: Vec<&str> = volumes
                .iter()
                .filter(|(_, s)| s.starts_with("error"))
                .map(|(v, _)| v.as_str())
                .collect();
            return Verdict::Failed {
                code: "group_error",
                message: format!(
                    "the new volume group {id} went to {s}{}",
                    if failed.is_empty() {
                        String::new()
                    } else {
                        format!(" (volumes in error: {})", failed.join(", "))
                    }
                ),
            };
        }
        Some("available") => {}
        Some(_) => return Verdict::InProgress,
    }
    if let Some((v, s)) = volumes.iter().find(|(_, s)| s.starts_with("error")) {
        return Verdict::Failed {
            code: "volume_error",
            message: format!("volume {v} of the new group went to {s}"),
        };
    }
    if !volumes.is_empty() && volumes.iter().all(|(_, s)| s == "available") {
        Verdict::Done
    } else {
        Verdict::InProgress
    }
}

/// The `block_device_mapping_v2` to boot a volume-backed server's snapshot
/// image with, from the image's `block_device_mapping` property and its
/// `min_disk` (GiB); `None` to let Nova use the image's mapping as it is (an
/// image-backed snapshot, or a mapping this cannot rewrite faithfully).
///
/// Nova gives a volume-backed server's snapshot image `min_disk` = the
/// source flavor's disk (`get_system_metadata_from_image`), while the
/// mapping's root keeps the root volume's size: on a flavor whose disk is
/// larger than the root volume, booting the image as it is fails with 400
/// "Volume is smaller than the minimum size specified in image metadata"
/// (`_validate_flavor_image_nostatus`). Each entry is passed explicitly
/// instead, with the root's `volume_size` raised to `min_disk`; Nova merges
/// the image's entries with the request's by `device_name`
/// (`_merge_bdms_lists`: a request's entry replaces the image's whole), so
/// every entry must keep its device name and every field the API takes:
/// `delete_on_termination` (the new volumes go with the server as the
/// source's did), `disk_bus`, `device_type`, `guest_format`, and, where the
/// session's compute microversion `compute` takes them, `tag` (2.42, and
/// 2.32) and `volume_type` (2.67). The rest (encryption fields, which the
/// API refuses, and null values) are dropped. (Without `volume_type`
/// Cinder gives a volume made from a snapshot the snapshot's type.)
pub fn boot_mappings(
    property: Option<&Value>,
    min_disk: u64,
    compute: (u32, u32),
) -> Option<Vec<Value>> {
    // servers.py: a mapping's `tag` from compute 2.42 (and in 2.32 alone),
    // its `volume_type` from 2.67; below, Nova's schema refuses them.
    let tag = compute == (2, 32) || compute >= (2, 42);
    let volume_type = compute >= (2, 67);
    let optional = [("tag", tag), ("volume_type", volume_type)];
    const KEPT: [&str; 9] = [
        "source_type",
        "destination_type",
        "device_name",
        "boot_index",
        "volume_size",
        "delete_on_termination",
        "guest_format",
        "device_type",
        "disk_bus",
    ];
    let entries: Vec<Value> = match property? {
        Value::String(text) => serde_json::from_str(text).ok()?,
        Value::Array(list) => list.clone(),
        _ => return None,
    };
    let entries = entries
        .iter()
        .map(Value::as_object)
        .collect::<Option<Vec<_>>>()?;
    if entries.is_empty() {
        return None;
    }
    let mut mappings = Vec::new();
    for entry in entries {
        entry.get("device_name").and_then(Value::as_str)?;
        let mut mapping = serde_json::Map::new();
        let allowed = optional.iter().filter(|(_, ok)| *ok).map(|(key, _)| *key);
        for key in KEPT.into_iter().chain(allowed) {
            if let Some(value) = entry.get(key).filter(|v| !v.is_null()) {
                mapping.insert(key.to_owned(), value.clone());
            }
        }
        let uuid = ["snapshot_id", "volume_id", "image_id"]
            .into_iter()
            .find_map(|key| entry.get(key).and_then(Value::as_str));
        if let Some(uuid) = uuid {
            mapping.insert("uuid".into(), Value::from(uuid));
        }
        if entry.get("no_device").and_then(Value::as_bool) == Some(true) {
            mapping.insert("no_device".into(), Value::Bool(true));
        }
        let root = entry.get("boot_index").and_then(Value::as_i64) == Some(0);
        let to_volume = entry.get("destination_type").and_then(Value::as_str) == Some("volume");
        if root && to_volume {
            let size = entry
                .get("volume_size")
                .and_then(Value::as_u64)
                .unwrap_or(0);
            if size < min_disk {
                mapping.insert("volume_size".into(), Value::from(min_disk));
            }
        }
        mappings.push(Value::Object(mapping));
    }
    Some(mappings)
}

/// The flavor to boot with: the requested one (an id or a name) else the
/// source's as recorded (its `id` below compute 2.47, its `original_name`
/// from 2.47), matched against the flavors the project sees as `(id, name)`.
///
/// # Errors
/// No flavor was asked for nor recorded, or none matches.
pub fn pick_flavor(
    requested: Option<&str>,
    recorded: Option<&Value>,
    flavors: &[(String, String)],
) -> Result<String, JobError> {
    let wanted = match (requested, recorded) {
        (Some(r), _) => r.to_owned(),
        (None, Some(rec)) => match rec
            .get("id")
            .and_then(Value::as_str)
            .or_else(|| rec.get("original_name").and_then(Value::as_str))
        {
            Some(w) => w.to_owned(),
            None => {
                return Err(JobError::new(
                    "flavor_unknown",
                    "the snapshot's recorded flavor names no id nor name; ask for a `flavor`",
                ));
            }
        },
        (None, None) => {
            return Err(JobError::new(
                "flavor_unknown",
                "the snapshot recorded no flavor (taken before stacksnap recorded them); ask for a `flavor`",
            ));
        }
    };
    flavors
        .iter()
        .find(|(id, _)| *id == wanted)
        .or_else(|| flavors.iter().find(|(_, name)| *name == wanted))
        .map(|(id, _)| id.clone())
        .ok_or_else(|| {
            JobError::new(
                "flavor_not_found",
                format!("no flavor with the id or name {wanted:?} is visible to the project"),
            )
        })
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;

    #[test]
    fn boot_mappings_raise_the_root_to_min_disk_and_keep_every_entry() {
        let property = Value::from(
            r#"[{"boot_index": 0, "snapshot_id": "s1", "source_type": "snapshot", "destination_type": "volume", "device_name": "/dev/vda", "volume_size": 1, "delete_on_termination": true, "tag": null, "volume_type": null, "encrypted": null},
                {"boot_index": null, "snapshot_id": "s2", "source_type": "snapshot", "destination_type": "volume", "device_name": "/dev/vdb", "volume_size": 1, "delete_on_termination": false}]"#,
        );
        let mappings = boot_mappings(Some(&property), 2, (2, 96)).unwrap();
        assert_eq!(
            mappings,
            vec![
                json!({"boot_index": 0, "uuid": "s1", "source_type": "snapshot", "destination_type": "volume",
                       "device_name": "/dev/vda", "volume_size": 2, "delete_on_termination": true}),
                json!({"uuid": "s2", "source_type": "snapshot", "destination_type": "volume",
                       "device_name": "/dev/vdb", "volume_size": 1, "delete_on_termination": false}),
            ]
        );
        let fits = boot_mappings(Some(&property), 1, (2, 96)).unwrap();
        assert_eq!(
            fits[0]["volume_size"], 1,
            "a root as large as min_disk stays"
        );
    }

    #[test]
    fn boot_mappings_keep_the_tag_and_volume_type_where_nova_takes_them() {
        let property = json!([{"boot_index": 0, "snapshot_id": "s1", "source_type": "snapshot",
            "destination_type": "volume", "device_name": "/dev/vda", "volume_size": 1,
            "tag": "root", "volume_type": "fast", "disk_bus": "virtio", "device_type": "disk",
            "encrypted": false, "encryption_secret_uuid": null}]);
        let all = boot_mappings(Some(&property), 1, (2, 96)).unwrap();
        assert_eq!(
            all[0],
            json!({"boot_index": 0, "uuid": "s1", "source_type": "snapshot", "destination_type": "volume",
                   "device_name": "/dev/vda", "volume_size": 1, "tag": "root", "volume_type": "fast",
                   "disk_bus": "virtio", "device_type": "disk"})
        );
        // servers.py: bdm `tag` from 2.42 (and 2.32 only), `volume_type` from
        // 2.67; the schema refuses unknown properties below.
        let no_type = boot_mappings(Some(&property), 1, (2, 66)).unwrap();
        assert_eq!(no_type[0]["tag"], "root");
        assert!(no_type[0].get("volume_type").is_none());
        let neither = boot_mappings(Some(&property), 1, (2, 41)).unwrap();
        assert!(neither[0].get("tag").is_none() && neither[0].get("volume_type").is_none());
        let only_32 = boot_mappings(Some(&property), 1, (2, 32)).unwrap();
        assert_eq!(only_32[0]["tag"], "root");
    }

    #[test]
    fn boot_mappings_leave_an_image_without_a_usable_mapping_to_nova() {
        assert_eq!(boot_mappings(None, 2, (2, 96)), None);
        assert_eq!(boot_mappings(Some(&Value::from("[]")), 2, (2, 96)), None);
        assert_eq!(
            boot_mappings(Some(&Value::from("not json")), 2, (2, 96)),
            None
        );
        let nameless = json!([{"boot_index": 0, "snapshot_id": "s1", "source_type": "snapshot"}]);
        assert_eq!(
            boot_mappings(Some(&nameless), 2, (2, 96)),
            None,
            "Nova merges by device name"
        );
    }

    fn pieces(resource_type: ResourceType) -> SnapshotPieces {
        SnapshotPieces {
            snapshot_id: Uuid::nil(),
            resource_type,
            resource_id: "r1".into(),
            resource_name: Some("web-1".into()),
            image_id: Some("img".into()),
            volume_snapshot_id: Some("vs".into()),
            volume_snapshot_ids: vec!["vs".into()],
            group_snapshot_id: Some("gs".into()),
            size_gb: Some(10),
            source_flavor: Some(json!({"original_name": "m1.small"})),
            source_az: Some("az1".into()),
            volume_backed: false,
        }
    }

    fn request(body: Value) -> RestoreRequest {
        serde_json::from_value(body).unwrap()
    }

    fn fields(r: &RestoreRequest, t: ResourceType) -> Vec<String> {
        r.validate(&pieces(t))
            .unwrap_err()
            .into_iter()
            .map(|e| e.field)
            .collect()
    }

    #[test]
    fn fields_of_the_other_resource_type_are_named() {
        let r = request(json!({"flavor": "m1", "size": 20, "networks": "auto"}));
        assert_eq!(fields(&r, ResourceType::Server), ["size"]);
        assert_eq!(fields(&r, ResourceType::Volume), ["flavor", "networks"]);
        let r = request(json!({"flavor": "m1", "availability_zone": "az1", "name": "g"}));
        assert_eq!(
            fields(&r, ResourceType::VolumeGroup),
            ["flavor", "availability_zone"]
        );
    }

    #[test]
    fn another_zone_is_refused_where_cinder_makes_the_volumes_from_the_snapshot() {
        let r = request(json!({"availability_zone": "az2"}));
        let volume_backed = SnapshotPieces {
            volume_backed: true,
            ..pieces(ResourceType::Server)
        };
        let refused = r.validate(&volume_backed).unwrap_err();
        assert_eq!(refused[0].field, "availability_zone");
        assert!(refused[0].message.contains("az1"), "{}", refused[0].message);
        assert_eq!(fields(&r, ResourceType::Volume), ["availability_zone"]);
        assert!(
            r.validate(&pieces(ResourceType::Server)).is_ok(),
            "an image-backed server moves"
        );
        let unknown = SnapshotPieces {
            source_az: None,
            ..pieces(ResourceType::Volume)
        };
        assert!(
            r.validate(&unknown).is_ok(),
            "not recorded: the cloud decides"
        );
        let same = request(json!({"availability_zone": "az1"}));
        assert!(same.validate(&pieces(ResourceType::Volume)).is_ok());
    }

    #[test]
    fn a_size_below_the_snapshots_and_bad_networks_are_refused() {
        let r = request(json!({"size": 5}));
        assert_eq!(fields(&r, ResourceType::Volume), ["size"]);
        let r = request(json!({"networks": [{"network": "n", "port": "p"}, {}]}));
        assert_eq!(
            fields(&r, ResourceType::Server),
            ["networks[0]", "networks[1]"]
        );
        assert!(serde_json::from_value::<RestoreRequest>(json!({"networks": "some"})).is_err());
        assert!(serde_json::from_value::<RestoreRequest>(json!({"colour": "red"})).is_err());
    }

    #[test]
    fn networks_default_to_none_and_map_to_novas_words() {
        let spec = request(json!({}))
            .spec(&pieces(ResourceType::Server), Uuid::nil())
            .unwrap();
        assert_eq!(spec.nova_networks(), json!("none"));
        assert_eq!(spec.name, "web-1-restore-00000000");
        let r = request(json!({"networks": [{"network": "n1"}, {"port": "p1"}]}));
        assert_eq!(
            r.networks.unwrap().to_nova(),
            json!([{"uuid": "n1"}, {"port": "p1"}])
        );
    }

    #[test]
    fn the_flavor_is_the_requested_one_else_the_recorded_one_by_id_or_name() {
        let flavors = [
            ("1".to_owned(), "m1.tiny".to_owned()),
            ("2".to_owned(), "m1.small".to_owned()),
        ];
        assert_eq!(pick_flavor(Some("m1.tiny"), None, &flavors).unwrap(), "1");
        assert_eq!(pick_flavor(Some("2"), None, &flavors).unwrap(), "2");
        let by_name = json!({"original_name": "m1.small", "vcpus": 1});
        assert_eq!(pick_flavor(None, Some(&by_name), &flavors).unwrap(), "2");
        let by_id = json!({"id": "1"});
        assert_eq!(pick_flavor(None, Some(&by_id), &flavors).unwrap(), "1");
        assert_eq!(
            pick_flavor(None, None, &flavors).unwrap_err().code,
            "flavor_unknown"
        );
        assert_eq!(
            pick_flavor(Some("m9"), None, &flavors).unwrap_err().code,
            "flavor_not_found"
        );
    }

    #[test]
    fn a_server_is_done_when_active_with_every_volume_in_use() {
        let vols = |s: &str| vec![("v1".to_owned(), Some(s.to_owned()))];
        assert_eq!(judge_server(Some("BUILD"), None, &[]), Verdict::InProgress);
        assert_eq!(
            judge_server(Some("ACTIVE"), None, &vols("attaching")),
            Verdict::InProgress
        );
        assert_eq!(
            judge_server(Some("ACTIVE"), None, &vols("in-use")),
            Verdict::Done
        );
        let Verdict::Failed { code, message } =
            judge_server(Some("ERROR"), Some("No valid host was found."), &[])
        else {
            panic!()
        };
        assert_eq!(code, "server_error");
        assert!(message.contains("No valid host"), "{message}");
        assert!(matches!(
            judge_server(None, None, &[]),
            Verdict::Failed {
                code: "server_deleted",
                ..
            }
        ));
    }

    #[test]
    fn a_group_is_done_when_available_with_every_volume() {
        let vols = |a: &str, b: &str| {
            vec![
                ("v1".to_owned(), a.to_owned()),
                ("v2".to_owned(), b.to_owned()),
            ]
        };
        assert_eq!(
            judge_group("g", Some("creating"), &vols("creating", "available")),
            Verdict::InProgress
        );
        assert_eq!(
            judge_group("g", Some("available"), &[]),
            Verdict::InProgress
        );
        assert_eq!(
            judge_group("g", Some("available"), &vols("available", "available")),
            Verdict::Done
        );
        let Verdict::Failed { code, message } =
            judge_group("g", Some("error"), &vols("error", "available"))
        else {
            panic!()
        };
        assert_eq!(code, "group_error");
        assert!(message.contains("v1"), "{message}");
        assert!(matches!(
            judge_group("g", None, &[]),
            Verdict::Failed {
                code: "group_deleted",
                ..
            }
        ));
    }

    #[test]
    fn a_volume_is_done_when_available() {
        assert_eq!(judge_volume("v", Some("creating")), Verdict::InProgress);
        assert_eq!(judge_volume("v", Some("available")), Verdict::Done);
        assert!(matches!(
            judge_volume("v", Some("error")),
            Verdict::Failed {
                code: "volume_error",
                ..
            }
        ));
        assert!(matches!(
            judge_volume("v", None),
            Verdict::Failed {
                code: "volume_deleted",
                ..
            }
        ));
    }
}
