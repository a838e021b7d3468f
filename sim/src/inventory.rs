//! Creating resources in the simulated cloud: images, volumes, snapshots and
//! servers, shared by the APIs, the JSON/Rust inventory seeds and the
//! `SimHandle` helpers. Transition timelines are planned here.
//!
//! Over 400 lines: one constructor per resource kind, each with its timeline,
//! shared by three callers; splitting it would split each kind's rules.

use std::{collections::BTreeMap, time::Instant};

use serde_json::Value;

use super::{
    config::{ImageSeed, ServerSeed, VolumeSeed},
    digest,
    faults::Fault,
    state::{Bdm, Fail, Image, Outcome, Server, Snapshot, State, Volume, VolumeAttachment},
    tenancy::Owner,
    timeline::Timeline,
};

/// A volume to create.
#[derive(Clone, Debug, Default)]
pub(crate) struct NewVolume {
    pub name: Option<String>,
    pub description: Option<String>,
    /// GiB; 0 takes the size of the source.
    pub size: u64,
    pub image: Option<String>,
    pub snapshot_id: Option<String>,
    pub source_volid: Option<String>,
    pub metadata: BTreeMap<String, String>,
    pub group_id: Option<String>,
    /// The volume type's id; the default type when `None` (or the
    /// snapshot's or source volume's type).
    pub volume_type: Option<String>,
    /// Cinder's zone as requested; `None` takes the source's, else the default.
    pub availability_zone: Option<String>,
    /// The admin project when `None` (seeds and helpers).
    pub owner: Option<Owner>,
    /// The operation whose volume faults apply (`VolumeError`, `VolumeStuck`).
    pub operation: Option<&'static str>,
}

/// A Cinder snapshot to create.
#[derive(Clone, Debug, Default)]
pub(crate) struct NewSnapshot {
    pub volume_id: String,
    pub name: Option<String>,
    pub description: Option<String>,
    pub metadata: BTreeMap<String, String>,
    pub group_snapshot_id: Option<String>,
    /// The caller whose project it is in (Cinder stamps `context.project_id`);
    /// the volume's owner when `None` (seeds and helpers).
    pub owner: Option<Owner>,
}

/// Where a server's block device comes from.
#[derive(Clone, Debug)]
pub(crate) enum BdmSource {
    /// A new volume made from an image.
    Image(String),
    /// An existing volume.
    Volume(String),
    /// A new volume made from a snapshot.
    Snapshot(String),
    /// A new empty volume.
    Blank,
}

/// One block device of a server to create (destination `volume`).
#[derive(Clone, Debug)]
pub(crate) struct NewBdm {
    pub source: BdmSource,
    pub boot_index: Option<i64>,
    pub volume_size: Option<u64>,
    pub delete_on_termination: bool,
    /// Nova merges a request's mappings with the image's by device name.
    pub device_name: Option<String>,
}

/// A server to create.
#[derive(Clone, Debug, Default)]
pub(crate) struct NewServer {
    pub name: String,
    pub flavor: String,
    /// The boot image of an image-backed server.
    pub image: Option<String>,
    pub bdms: Vec<NewBdm>,
    pub tags: Vec<String>,
    pub metadata: BTreeMap<String, String>,
    /// Base64 user data (Nova's `user_data`).
    pub user_data: Option<String>,
    /// The admin project when `None` (seeds and helpers); the volumes it
    /// boots from get the same owner.
    pub owner: Option<Owner>,
    /// The creator's roles, comma-joined; the admin's when `None`.
    pub boot_roles: Option<String>,
    /// The zone asked for (`availability_zone`).
    pub availability_zone: Option<String>,
    pub key_name: Option<String>,
    /// `networks` as requested (`Null` when not given).
    pub networks: Value,
    /// The operation whose server and volume faults apply.
    pub operation: Option<&'static str>,
}

const GIB: u64 = 1 << 30;

/// The block devices a (volume-backed) snapshot image defines in its
/// `block_device_mapping` property (a JSON string, as Nova writes it, or a
/// list), destination `volume` only.
fn image_defined_bdms(properties: &BTreeMap<String, Value>) -> Vec<NewBdm> {
    let list = match properties.get("block_device_mapping") {
        Some(Value::String(text)) => serde_json::from_str::<Value>(text).unwrap_or_default(),
        Some(v) => v.clone(),
        None => return Vec::new(),
    };
    let int = |v: &Value| {
        v.as_i64()
            .or_else(|| v.as_str().and_then(|x| x.parse().ok()))
    };
    list.as_array()
        .into_iter()
        .flatten()
        .filter(|b| b["destination_type"].as_str().unwrap_or("volume") == "volume")
        .filter_map(|b| {
            let id = |k: &str| b[k].as_str().map(str::to_owned);
            let source = match b["source_type"].as_str().unwrap_or("") {
                "snapshot" => BdmSource::Snapshot(id("snapshot_id")?),
                "volume" => BdmSource::Volume(id("volume_id")?),
                "image" => BdmSource::Image(id("image_id")?),
                "blank" => BdmSource::Blank,
                _ => return None,
            };
            Some(NewBdm {
                source,
                boot_index: int(&b["boot_index"]),
                volume_size: int(&b["volume_size"]).and_then(|n| u64::try_from(n).ok()),
                delete_on_termination: truthy(Some(&b["delete_on_termination"])),
                device_name: id("device_name"),
            })
        })
        .collect()
}

/// A property value as a string, as Glance and Cinder store them.
pub(crate) fn value_str(v: &Value) -> String {
    v.as_str().map_or_else(|| v.to_string(), str::to_owned)
}

/// Whether an image property says yes (`yes`, `true`, `1`, `on`).
pub(crate) fn truthy(v: Option<&Value>) -> bool {
    v.map(value_str).is_some_and(|s| {
        matches!(
            s.to_ascii_lowercase().as_str(),
            "yes" | "true" | "1" | "on" | "y"
        )
    })
}

impl State {
    /// The admin user in the admin project: the owner of seeded resources.
    pub(crate) fn admin_owner(&self) -> Owner {
        Owner {
            project_id: self.project_id.clone(),
            user_id: self.user_id.clone(),
        }
    }

    /// The admin user's roles on its project, comma-joined (the
    /// `boot_roles` of seeded servers).
    pub(crate) fn admin_roles(&self) -> String {
        self.user(&self.user_id)
            .map(|u| u.roles_on(&self.project_id).joined())
            .unwrap_or_default()
    }

    /// Adds a settled (`active`) image.
    pub(crate) fn seed_image(&mut self, now: Instant, seed: &ImageSeed) -> String {
        let id = seed.id.clone().unwrap_or_else(|| self.uuid());
        let fake_data = id.as_bytes();
        self.images.push(Image {
            id: id.clone(),
            name: Some(seed.name.clone()),
            owner: self.project_id.clone(),
            visibility: seed.visibility.clone(),
            members: Vec::new(),
            protected: false,
            created: now,
            status: Timeline::new(now, "active"),
            disk_format: Some(seed.disk_format.clone()),
            container_format: Some(seed.container_format.clone()),
            size: Some(seed.size),
            checksum: Some(digest::md5_hex(fake_data)),
            os_hash_value: Some(digest::sha512_hex(fake_data)),
            min_disk: seed.min_disk,
            min_ram: seed.min_ram,
            tags: Vec::new(),
            properties: seed.properties.clone(),
            upload: None,
        });
        id
    }

    /// Adds a volume; `settled` skips `creating`.
    /// The owner of a seed of project `name`: the project, and a user whose
    /// home it is. `None` for the admin's project.
    fn seed_owner(&self, project: Option<&str>) -> Outcome<Option<Owner>> {
        let Some(name) = project else {
            return Ok(None);
        };
        let project = self
            .projects
            .iter()
            .find(|p| p.name == name || p.id == name)
            .ok_or_else(|| Fail::bad_request(format!("Project {name} could not be found.")))?;
        let user = self
            .users
            .iter()
            .find(|u| u.project_id == project.id)
            .ok_or_else(|| Fail::bad_request(format!("Project {name} has no user.")))?;
        Ok(Some(Owner {
            project_id: project.id.clone(),
            user_id: user.id.clone(),
        }))
    }

    pub(crate) fn seed_volume(&mut self, now: Instant, seed: &VolumeSeed) -> Outcome<String> {
        let image = match &seed.image {
            Some(i) => Some(
                self.find_image(i, now)
                    .map(|img| img.id.clone())
                    .ok_or_else(|| Fail::bad_request(format!("Image {i} could not be found.")))?,
            ),
            None => None,
        };
        let spec = NewVolume {
            name: Some(seed.name.clone()),
            size: seed.size.max(1),
            image,
            metadata: seed.metadata.clone(),
            owner: self.seed_owner(seed.project.as_deref())?,
            ..NewVolume::default()
        };
        let id = self.create_volume(now, spec, true)?;
        if let Some(want) = &seed.id {
            self.volumes.rename(&id, want);
            return Ok(want.clone());
        }
        Ok(id)
    }

    /// Creates a volume, empty or from an image, snapshot or volume.
    ///
    /// # Errors
    /// A missing or unusable source, or a size too small for it.
    pub(crate) fn create_volume(
        &mut self,
        now: Instant,
        spec: NewVolume,
        settled: bool,
    ) -> Outcome<String> {
        let mut size = spec.size;
        let mut bootable = false;
        let mut image_metadata = None;
        if let Some(image_id) = &spec.image {
            let img = self.image(image_id, now).ok_or_else(|| {
                Fail::bad_request("Invalid image identifier or unable to access requested image.")
            })?;
            if img.status.at(now) != "active" {
                return Err(Fail::bad_request(format!(
                    "Image {image_id} is not active."
                )));
            }
            let image_gib = img.size.unwrap_or(0).div_ceil(1 << 30);
            if size < image_gib.max(img.min_disk) {
                return Err(Fail::bad_request(format!(
                    "Invalid input received: Size of specified image {} is larger than volume size {size}.",
                    image_gib.max(img.min_disk)
                )));
            }
            bootable = true;
            let mut meta: BTreeMap<String, String> = img
                .properties
                .iter()
                .map(|(k, v)| (k.clone(), value_str(v)))
                .collect();
            meta.insert("image_id".into(), img.id.clone());
            meta.insert("image_name".into(), img.name.clone().unwrap_or_default());
            meta.insert("checksum".into(), img.checksum.clone().unwrap_or_default());
            meta.insert(
                "container_format".into(),
                img.container_format.clone().unwrap_or_default(),
            );
            meta.insert(
                "disk_format".into(),
                img.disk_format.clone().unwrap_or_default(),
            );
            meta.insert("min_disk".into(), img.min_disk.to_string());
            meta.insert("min_ram".into(), img.min_ram.to_string());
            meta.insert("size".into(), img.size.unwrap_or(0).to_string());
            image_metadata = Some(meta);
        }
        let mut volume_type = spec.volume_type.clone();
        // The zone of the source (cinder/volume/flows/api/create_volume.py
        // `_extract_availability_zones`), with what Cinder calls it.
        let mut source_az: Option<(String, &str)> = None;
        if let Some(snap_id) = &spec.snapshot_id {
            let snap = self.snapshot(snap_id, now).ok_or_else(|| {
                Fail::not_found(format!("Snapshot {snap_id} could not be found."))
            })?;
            if snap.status.at(now) != "available" {
                return Err(Fail::bad_request(
                    "Invalid snapshot: Originating snapshot status must be one of 'available' values",
                ));
            }
            if size == 0 {
                size = snap.size;
            } else if size < snap.size {
                return Err(Fail::bad_request(format!(
                    "Invalid input received: Volume size '{size}'GB cannot be smaller than the snapshot size {}GB. They must be >= original snapshot size.",
                    snap.size
                )));
            }
            if let Some(src) = self.volumes.any(&snap.volume_id) {
                bootable = src.bootable;
                image_metadata.clone_from(&src.image_metadata);
            }
            if volume_type.is_none() {
                volume_type.clone_from(&snap.volume_type);
            }
            source_az = Some((snap.availability_zone.clone(), "snapshot"));
        }
        if let Some(src_id) = &spec.source_volid {
            let src = self
                .volume(src_id, now)
                .ok_or_else(|| Fail::not_found(format!("Volume {src_id} could not be found.")))?;
            if size == 0 {
                size = src.size;
            } else if size < src.size {
                return Err(Fail::bad_request(format!(
                    "Invalid input received: Volume size '{size}'GB cannot be smaller than original volume size  {}GB. They must be >= original volume size.",
                    src.size
                )));
            }
            bootable = src.bootable;
            image_metadata.clone_from(&src.image_metadata);
            if volume_type.is_none() {
                volume_type.clone_from(&src.volume_type);
            }
            source_az = Some((src.availability_zone.clone(), "source volume"));
        }
        let mut group_az = None;
        if let Some(g) = &spec.group_id {
            let group = self
                .groups
                .any(g)
                .ok_or_else(|| Fail::not_found(format!("Group {g} could not be found.")))?;
            group_az = Some(group.availability_zone.clone());
        }
        // A volume in a group goes to the group's zone; else the one asked
        // for, else the source's, else the default.
        let availability_zone = group_az
            .or_else(|| spec.availability_zone.clone())
            .or_else(|| source_az.as_ref().map(|(z, _)| z.clone()))
            .unwrap_or_else(|| self.default_az());
        if !self.availability_zones.contains(&availability_zone) {
            return Err(Fail::bad_request(format!(
                "Availability zone '{availability_zone}' is invalid."
            )));
        }
        // Cinder's default `cloned_volume_same_az = True`.
        if let Some((zone, what)) = source_az.filter(|(z, _)| *z != availability_zone) {
            let _ = zone;
            return Err(Fail::bad_request(format!(
                "Invalid input received: Volume must be in the same availability zone as the {what}"
            )));
        }
        let stuck = spec
            .operation
            .is_some_and(|op| self.fault(op, |f| matches!(f, Fault::VolumeStuck)));
        let failed = !stuck
            && spec
                .operation
                .is_some_and(|op| self.fault(op, |f| matches!(f, Fault::VolumeError)));
        let d = self.durations.clone();
        let status = if settled {
            Timeline::new(now, "available")
        } else if stuck {
            Timeline::new(now, "creating")
        } else if failed {
            Timeline::new(now, "creating").then(d.volume_create, "error")
        } else if spec.image.is_some() {
            Timeline::new(now, "creating")
                .then(d.volume_create, "downloading")
                .then(d.volume_download, "available")
        } else {
            Timeline::new(now, "creating").then(d.volume_create, "available")
        };
        let id = self.uuid();
        let owner = spec.owner.unwrap_or_else(|| self.admin_owner());
        self.volumes.push(Volume {
            id: id.clone(),
            name: spec.name,
            description: spec.description,
            size: size.max(1),
            project_id: owner.project_id,
            user_id: owner.user_id,
            created: now,
            status,
            attachments: Vec::new(),
            bootable,
            metadata: spec.metadata,
            image_metadata,
            snapshot_id: spec.snapshot_id,
            source_volid: spec.source_volid,
            group_id: spec.group_id,
            volume_type,
            availability_zone,
        });
        Ok(id)
    }

    /// Creates a Cinder snapshot of a volume, applying the snapshot faults
    /// that hit `operation`.
    pub(crate) fn create_snapshot(
        &mut self,
        now: Instant,
        operation: &str,
        spec: NewSnapshot,
    ) -> String {
        let NewSnapshot {
            volume_id,
            name,
            description,
            metadata,
            group_snapshot_id,
            owner: caller,
        } = spec;
        let volume_id = volume_id.as_str();
        let stuck = self.fault(operation, |f| matches!(f, Fault::SnapshotStuck));
        let error = !stuck && self.fault(operation, |f| matches!(f, Fault::SnapshotError));
        let d = self.durations.snapshot_create;
        let status = if stuck {
            Timeline::new(now, "creating")
        } else {
            Timeline::new(now, "creating").then(d, if error { "error" } else { "available" })
        };
        // Cinder puts a snapshot in the caller's project; seeds and helpers
        // name no caller and get the volume's.
        let (size, volume_owner, volume_type, availability_zone) =
            self.volume(volume_id, now).map_or_else(
                || (1, self.admin_owner(), None, self.default_az()),
                |v| {
                    let owner = Owner {
                        project_id: v.project_id.clone(),
                        user_id: v.user_id.clone(),
                    };
                    (
                        v.size,
                        owner,
                        v.volume_type.clone(),
                        v.availability_zone.clone(),
                    )
                },
            );
        let owner = caller.unwrap_or(volume_owner);
        let id = self.uuid();
        self.snapshots.push(Snapshot {
            id: id.clone(),
            name,
            description,
            volume_id: volume_id.to_owned(),
            size,
            project_id: owner.project_id,
            user_id: owner.user_id,
            created: now,
            status,
            metadata,
            group_snapshot_id,
            volume_type,
            availability_zone,
        });
        id
    }

    /// Creates a server and the volumes it boots from; `settled` makes it
    /// `ACTIVE` at once. An image whose `block_device_mapping` has a root
    /// device (a volume-backed server's snapshot) boots from new volumes made
    /// from the Cinder snapshots it lists, as Nova's
    /// `_check_and_transform_bdm` merges the image's mappings; the server
    /// keeps the image as its `image`.
    ///
    /// # Errors
    /// Nova's API checks in its order: zone, flavor, keypair, image, block
    /// devices, flavor against image, quota; then Cinder's for new volumes.
    pub(crate) fn create_server(
        &mut self,
        now: Instant,
        spec: NewServer,
        settled: bool,
    ) -> Outcome<String> {
        if let Some(az) = spec
            .availability_zone
            .as_ref()
            .filter(|az| !self.availability_zones.contains(az))
        {
            let _ = az;
            return Err(Fail::bad_request(
                "The requested availability zone is not available",
            ));
        }
        let flavor = self.flavor(&spec.flavor).cloned().ok_or_else(|| {
            Fail::bad_request(format!("Flavor {} could not be found.", spec.flavor))
        })?;
        let owner = spec.owner.clone().unwrap_or_else(|| self.admin_owner());
        if let Some(key) = &spec.key_name
            && !self
                .keypairs
                .iter()
                .any(|k| &k.name == key && k.user_id == owner.user_id)
        {
            return Err(Fail::bad_request("Invalid key_name provided."));
        }
        let mut image_meta: BTreeMap<String, Value> = BTreeMap::new();
        let mut requested = spec.bdms.clone();
        let mut image_min = (0, 0, 0);
        let image_id = match &spec.image {
            Some(i) => {
                let img = self
                    .find_image(i, now)
                    .ok_or_else(|| Fail::bad_request("Can not find requested image"))?;
                if img.status.at(now) != "active" {
                    return Err(Fail::bad_request(format!(
                        "Image {} is not active.",
                        img.id
                    )));
                }
                // Nova keeps no mappings in system metadata (SM_SKIP_KEYS).
                image_meta = img
                    .properties
                    .iter()
                    .filter(|(k, _)| !matches!(k.as_str(), "mappings" | "block_device_mapping"))
                    .map(|(k, v)| (k.clone(), v.clone()))
                    .collect();
                image_min = (img.min_disk, img.min_ram, img.size.unwrap_or(0));
                let defined = image_defined_bdms(&img.properties);
                if defined.iter().any(|b| b.boot_index == Some(0)) {
                    // The image's root replaces a root image mapping the client added.
                    requested.retain(|b| {
                        !(b.boot_index == Some(0) && matches!(b.source, BdmSource::Image(_)))
                    });
                }
                // nova/compute/api.py `_merge_bdms_lists`: the request's
                // mappings, then the image's whose device name none of them has.
                let names: Vec<String> = requested
                    .iter()
                    .filter_map(|b| b.device_name.clone())
                    .collect();
                requested.extend(
                    defined
                        .into_iter()
                        .filter(|b| b.device_name.as_ref().is_none_or(|n| !names.contains(n))),
                );
                Some(img.id.clone())
            }
            None => None,
        };
        if image_id.is_none() && requested.is_empty() {
            return Err(Fail::bad_request(
                "Block Device Mapping is Invalid: Boot sequence for the instance and image/block device mapping combination is not valid.",
            ));
        }
        for b in &requested {
            match &b.source {
                BdmSource::Volume(v) => {
                    let vol = self.volume(v, now).ok_or_else(|| {
                        Fail::bad_request(format!(
                            "Block Device Mapping is Invalid: failed to get volume {v}."
                        ))
                    })?;
                    let status = vol.status.at(now);
                    if status != "available" {
                        return Err(Fail::bad_request(format!(
                            "Invalid volume: volume '{v}' status must be 'available'. Currently in '{status}'"
                        )));
                    }
                }
                BdmSource::Snapshot(sid) if self.snapshot(sid, now).is_none() => {
                    return Err(Fail::bad_request(format!(
                        "Block Device Mapping is Invalid: failed to get snapshot {sid}."
                    )));
                }
                _ => {}
            }
        }
        let root = requested.iter().find(|b| b.boot_index == Some(0));
        let (min_disk, min_ram, image_size) = image_min;
        // nova/compute/api.py `_validate_flavor_image_nostatus`.
        if image_id.is_some() {
            if u64::from(flavor.ram) < min_ram {
                return Err(Fail::bad_request(
                    "Flavor's memory is too small for requested image.",
                ));
            }
            match root {
                Some(r) => {
                    if let Some(size) = r.volume_size.filter(|s| min_disk > *s) {
                        return Err(Fail::bad_request(format!(
                            "Volume is smaller than the minimum size specified in image metadata. Volume size is {} bytes, minimum size is {} bytes.",
                            size * GIB,
                            min_disk * GIB
                        )));
                    }
                }
                None if flavor.disk > 0 => {
                    let disk = u64::from(flavor.disk) * GIB;
                    if image_size > disk {
                        return Err(Fail::bad_request(format!(
                            "Flavor's disk is too small for requested image. Flavor disk is {disk} bytes, image is {image_size} bytes."
                        )));
                    }
                    if min_disk * GIB > disk {
                        return Err(Fail::bad_request(format!(
                            "Flavor's disk is smaller than the minimum size specified in image metadata. Flavor disk is {disk} bytes, minimum size is {} bytes.",
                            min_disk * GIB
                        )));
                    }
                }
                None => {}
            }
        }
        let volume_root = root.is_some();
        // Counting walks every server: only when there is a quota.
        let used = if self.instances_quota >= 0 {
            self.servers_used(&owner.project_id, now)
        } else {
            0
        };
        if self.instances_quota >= 0 && used + 1 > self.instances_quota {
            return Err(Fail::new(
                axum::http::StatusCode::FORBIDDEN,
                format!(
                    "Quota exceeded for instances: Requested 1, but already used {used} of {} instances",
                    self.instances_quota
                ),
            ));
        }
        let d = self.durations.clone();
        let server_id = self.uuid();
        let mut volumes_ready = now;
        let mut volume_failed = false;
        let mut bdms = Vec::new();
        let mut ordered = requested;
        ordered.sort_by_key(|b| match b.boot_index {
            Some(i) if i >= 0 => i,
            _ => i64::MAX,
        });
        for (n, b) in ordered.iter().enumerate() {
            let new = |size: u64| NewVolume {
                size,
                description: Some(String::new()),
                name: Some(String::new()),
                owner: Some(owner.clone()),
                operation: spec.operation,
                ..NewVolume::default()
            };
            let volume_id = match &b.source {
                BdmSource::Volume(v) => v.clone(),
                BdmSource::Image(img) => {
                    let size = b.volume_size.ok_or_else(|| {
                        Fail::bad_request("Images with destination_type 'volume' need to have a non-zero size specified")
                    })?;
                    self.create_volume(
                        now,
                        NewVolume {
                            image: Some(img.clone()),
                            ..new(size)
                        },
                        settled,
                    )?
                }
                BdmSource::Snapshot(s) => self.create_volume(
                    now,
                    NewVolume {
                        snapshot_id: Some(s.clone()),
                        ..new(b.volume_size.unwrap_or(0))
                    },
                    settled,
                )?,
                BdmSource::Blank => {
                    self.create_volume(now, new(b.volume_size.unwrap_or(1)), settled)?
                }
            };
            let vol = self.volume(&volume_id, now).expect("volume exists");
            volumes_ready = volumes_ready.max(vol.status.settles_at());
            let end = vol.status.at(vol.status.settles_at());
            volume_failed |= end == "error" || (end == "creating" && !settled);
            if let Some(meta) = vol
                .image_metadata
                .as_ref()
                .filter(|_| n == 0 && (image_id.is_none() || volume_root))
            {
                for (k, v) in meta {
                    if !matches!(k.as_str(), "image_id" | "image_name" | "checksum" | "size") {
                        image_meta.insert(k.clone(), Value::String(v.clone()));
                    }
                }
            }
            bdms.push(Bdm {
                volume_id,
                device_name: format!(
                    "/dev/vd{}",
                    (b'a' + u8::try_from(n).unwrap_or(25).min(25)) as char
                ),
                boot_index: b.boot_index.filter(|i| *i >= 0),
                delete_on_termination: b.delete_on_termination,
                volume_size: vol.size,
            });
        }
        let stuck = spec
            .operation
            .is_some_and(|op| self.fault(op, |f| matches!(f, Fault::ServerStuck)));
        // A volume that never becomes available fails the build (Nova's
        // `VolumeNotCreated`): the server ends ERROR, the volume unattached.
        let error = !stuck
            && (volume_failed
                || spec
                    .operation
                    .is_some_and(|op| self.fault(op, |f| matches!(f, Fault::ServerError))));
        let active_at = if settled {
            now
        } else {
            volumes_ready + d.server_build
        };
        let attached_at = self.utc(active_at);
        if !volume_failed {
            for b in &bdms {
                let attachment_id = self.uuid();
                let vol = self.volume_mut(&b.volume_id, now).expect("volume exists");
                if settled {
                    vol.status.rewrite(now, "in-use");
                } else if !stuck && !error {
                    if vol.status.at(now) == "available" {
                        vol.status.rewrite(now, "reserved");
                    }
                    vol.status.push_at(active_at, "in-use");
                }
                vol.attachments.push(VolumeAttachment {
                    id: attachment_id,
                    server_id: server_id.clone(),
                    device: b.device_name.clone(),
                    attached_at,
                });
            }
        }
        let (vm_state, task_state) = if settled {
            (Timeline::new(now, "active"), Timeline::new(now, None))
        } else {
            let third = (active_at - now) / 3;
            let mut task = Timeline::new(now, Some("scheduling"));
            if !bdms.is_empty() {
                task.push_at(now + third, Some("block_device_mapping"));
            }
            if stuck {
                task.push_at(now + third * 2, Some("spawning"));
                (Timeline::new(now, "building"), task)
            } else if error {
                let at = if volume_failed {
                    volumes_ready
                } else {
                    active_at
                };
                task.push_at(at, None);
                (Timeline::new(now, "building").then(at - now, "error"), task)
            } else {
                task.push_at(now + third * 2, Some("spawning"));
                task.push_at(active_at, None);
                (
                    Timeline::new(now, "building").then(active_at - now, "active"),
                    task,
                )
            }
        };
        // Nova keeps max(image min_disk, flavor root_gb) as the instance's
        // image min_disk (nova/utils.py `get_system_metadata_from_image`).
        image_meta.insert(
            "min_disk".into(),
            Value::from(min_disk.max(u64::from(flavor.disk))),
        );
        self.instance_counter += 1;
        let availability_zone = spec
            .availability_zone
            .clone()
            .unwrap_or_else(|| self.default_az());
        self.servers.push(Server {
            id: server_id.clone(),
            name: spec.name,
            project_id: owner.project_id,
            user_id: owner.user_id,
            created: now,
            flavor_id: flavor.id.to_owned(),
            image_id,
            bdms,
            tags: spec.tags,
            metadata: spec.metadata,
            vm_state,
            task_state,
            image_meta,
            instance_number: self.instance_counter,
            user_data: spec.user_data,
            boot_roles: spec.boot_roles.unwrap_or_else(|| self.admin_roles()),
            requested_az: spec.availability_zone,
            availability_zone,
            key_name: spec.key_name,
            networks: spec.networks,
        });
        Ok(server_id)
    }

    /// Adds a settled server from a seed.
    pub(crate) fn seed_server(&mut self, now: Instant, seed: &ServerSeed) -> Outcome<String> {
        let mut bdms = Vec::new();
        let owner = self.seed_owner(seed.project.as_deref())?;
        for (i, v) in seed.volumes.iter().enumerate() {
            let mut v = v.clone();
            v.project = v.project.or_else(|| seed.project.clone());
            let vol = self.seed_volume(now, &v)?;
            bdms.push(NewBdm {
                source: BdmSource::Volume(vol),
                boot_index: Some(if i == 0 { 0 } else { -1 }),
                volume_size: None,
                delete_on_termination: false,
                device_name: None,
            });
        }
        let spec = NewServer {
            name: seed.name.clone(),
            flavor: if seed.flavor.is_empty() {
                "m1.tiny".into()
            } else {
                seed.flavor.clone()
            },
            image: if bdms.is_empty() {
                seed.image.clone()
            } else {
                None
            },
            bdms,
            tags: seed.tags.clone(),
            metadata: seed.metadata.clone(),
            owner,
            ..NewServer::default()
        };
        let id = self.create_server(now, spec, true)?;
        if let Some(want) = &seed.id {
            // Only the volumes it was just made with are attached to it.
            let attached: Vec<String> = self
                .servers
                .any(&id)
                .map(|s| s.bdms.iter().map(|b| b.volume_id.clone()).collect())
                .unwrap_or_default();
            for volume_id in attached {
                let Some(v) = self.volumes.any_mut(&volume_id) else {
                    continue;
                };
                for a in &mut v.attachments {
                    if a.server_id == id {
                        a.server_id.clone_from(want);
                    }
                }
            }
            self.servers.rename(&id, want);
            return Ok(want.clone());
        }
        Ok(id)
    }
}
