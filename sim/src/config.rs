//! The simulator's configuration: credentials, microversion ranges, the
//! duration of every state transition, quotas, faults and the inventory it
//! starts with. Plain data; it must not touch HTTP or the state.

use std::{collections::BTreeMap, path::Path, time::Duration};

use anyhow::Context as _;
use serde::{Deserialize, Serialize};
use serde_json::Value;

use super::{faults::FaultRule, roles::Role};

/// Everything a simulator run is made of. `SimConfig::default()` has
/// millisecond transitions for tests; [`SimConfig::demo`] has the seconds a
/// real cloud takes.
#[derive(Clone, Debug, Serialize, Deserialize)]
#[serde(default)]
pub struct SimConfig {
    /// Seed of every random choice (ids, tokens, fault rates).
    pub seed: u64,
    /// The region of every catalog endpoint.
    pub region: String,
    /// The admin user (password authentication).
    pub admin: AdminUser,
    /// Project users without `admin`, each with one role (`member`, which
    /// implies `reader`, or `reader` alone) in one project. By default
    /// `member` in the admin's project (a tenant's own credentials on the
    /// admin's resources), `demo` and `alt`, each in a project of its own,
    /// and the readers `demo_reader` and `alt_reader` in those, as on the rig.
    pub members: Vec<MemberUser>,
    /// The one application credential, owned by the admin user.
    pub application_credential: ApplicationCredential,
    /// How long a token lives.
    #[serde(with = "millis")]
    pub token_ttl: Duration,
    /// Highest compute microversion, e.g. `"2.96"` (`"2.44"` to lose `image_id`).
    pub nova_max_microversion: String,
    /// Highest volume microversion, e.g. `"3.71"`.
    pub cinder_max_microversion: String,
    /// Cinder's `osapi_max_limit`: the most items one page of a Cinder list holds.
    pub cinder_max_limit: usize,
    /// Cinder's snapshot quota per project; -1 is unlimited.
    pub snapshot_quota: i64,
    /// Nova's instances quota per project; -1 is unlimited.
    pub instances_quota: i64,
    /// The availability zones Nova and Cinder offer; the first is the
    /// default (`["nova"]` when empty).
    pub availability_zones: Vec<String>,
    /// The duration of every transition.
    pub durations: Durations,
    /// Faults active from the start.
    pub faults: Vec<FaultRule>,
    /// What exists at the start.
    pub inventory: Inventory,
}

/// The admin user: user `admin`, password `secret`, project `admin`, domain `Default`.
#[derive(Clone, Debug, Serialize, Deserialize)]
#[serde(default)]
pub struct AdminUser {
    pub username: String,
    pub password: String,
    pub project_name: String,
    pub domain_name: String,
}

impl Default for AdminUser {
    fn default() -> Self {
        Self {
            username: "admin".into(),
            password: "secret".into(),
            project_name: "admin".into(),
            domain_name: "Default".into(),
        }
    }
}

/// A project user without the admin role, in domain `Default`.
#[derive(Clone, Debug, Serialize, Deserialize)]
#[serde(default)]
pub struct MemberUser {
    pub username: String,
    pub password: String,
    pub project_name: String,
    /// Its one role in the project: `member` (the default) or `reader`.
    pub role: Role,
}

impl Default for MemberUser {
    fn default() -> Self {
        Self::new("demo", "demo", "demo")
    }
}

impl MemberUser {
    /// A member `username` / `password` of `project_name`.
    pub fn new(username: &str, password: &str, project_name: &str) -> Self {
        Self {
            username: username.into(),
            password: password.into(),
            project_name: project_name.into(),
            role: Role::Member,
        }
    }

    /// A user with only the `reader` role in `project_name`.
    pub fn reader(username: &str, password: &str, project_name: &str) -> Self {
        Self {
            role: Role::Reader,
            ..Self::new(username, password, project_name)
        }
    }

    /// `member` / `member-secret` in the admin's project `admin`, `demo` /
    /// `demo` in project `demo` and `alt` / `alt` in project `alt`, and the
    /// readers `demo_reader` / `demo` and `alt_reader` / `alt` (the rig's).
    pub fn defaults() -> Vec<Self> {
        vec![
            Self::new("member", "member-secret", "admin"),
            Self::new("demo", "demo", "demo"),
            Self::new("alt", "alt", "alt"),
            Self::reader("demo_reader", "demo", "demo"),
            Self::reader("alt_reader", "alt", "alt"),
        ]
    }
}

/// An application credential of the admin user, scoped to its project.
#[derive(Clone, Debug, Serialize, Deserialize)]
#[serde(default)]
pub struct ApplicationCredential {
    pub id: String,
    pub name: String,
    pub secret: String,
}

impl Default for ApplicationCredential {
    fn default() -> Self {
        Self {
            id: "0a1b2c3d4e5f40718293a4b5c6d7e8f9".into(),
            name: "stacksnap".into(),
            secret: "stacksnap-secret".into(),
        }
    }
}

/// The duration of each state transition (milliseconds in JSON).
#[derive(Clone, Debug, Serialize, Deserialize)]
#[serde(default)]
pub struct Durations {
    /// Server `BUILD` → `ACTIVE`.
    #[serde(with = "millis")]
    pub server_build: Duration,
    /// Server delete: `deleting` → gone.
    #[serde(with = "millis")]
    pub server_delete: Duration,
    /// Volume `creating` → `available` (or `downloading` for one made from an image).
    #[serde(with = "millis")]
    pub volume_create: Duration,
    /// Volume `downloading` → `available`.
    #[serde(with = "millis")]
    pub volume_download: Duration,
    /// Volume delete: `deleting` → gone.
    #[serde(with = "millis")]
    pub volume_delete: Duration,
    /// Cinder snapshot `creating` → `available`.
    #[serde(with = "millis")]
    pub snapshot_create: Duration,
    /// Cinder snapshot `deleting` → gone.
    #[serde(with = "millis")]
    pub snapshot_delete: Duration,
    /// Group snapshot `creating` → `available`.
    #[serde(with = "millis")]
    pub group_snapshot_create: Duration,
    /// Image-backed createImage: task_state `image_snapshot_pending` (image `queued`).
    #[serde(with = "millis")]
    pub image_snapshot_pending: Duration,
    /// task_state `image_snapshot` (image `queued`).
    #[serde(with = "millis")]
    pub image_snapshot: Duration,
    /// task_state `image_pending_upload` (image `queued`).
    #[serde(with = "millis")]
    pub image_pending_upload: Duration,
    /// task_state `image_uploading` (image `saving`), then null and `active`.
    #[serde(with = "millis")]
    pub image_uploading: Duration,
    /// How long a volume-backed createImage call blocks in the API: Nova
    /// quiesces and creates the Cinder snapshots at once, the image at the
    /// end of this, and answers after it. On a real cloud it can outlast a
    /// client's timeout; set it longer than the client's to see that.
    #[serde(with = "millis")]
    pub volume_backed_create_image_call: Duration,
}

impl Durations {
    /// A few milliseconds per transition, for tests.
    pub fn fast() -> Self {
        let ms = Duration::from_millis;
        Self {
            server_build: ms(30),
            server_delete: ms(20),
            volume_create: ms(30),
            volume_download: ms(30),
            volume_delete: ms(20),
            snapshot_create: ms(150),
            snapshot_delete: ms(20),
            group_snapshot_create: ms(150),
            image_snapshot_pending: ms(40),
            image_snapshot: ms(40),
            image_pending_upload: ms(40),
            image_uploading: ms(40),
            volume_backed_create_image_call: ms(0),
        }
    }

    /// Roughly what a small real cloud takes, for the demo and the CLI.
    pub fn demo() -> Self {
        let s = Duration::from_millis;
        Self {
            server_build: s(2_000),
            server_delete: s(1_000),
            volume_create: s(1_500),
            volume_download: s(1_500),
            volume_delete: s(1_000),
            snapshot_create: s(4_000),
            snapshot_delete: s(1_000),
            group_snapshot_create: s(4_000),
            image_snapshot_pending: s(1_000),
            image_snapshot: s(1_000),
            image_pending_upload: s(1_000),
            image_uploading: s(2_000),
            volume_backed_create_image_call: s(500),
        }
    }
}

impl Default for Durations {
    fn default() -> Self {
        Self::fast()
    }
}

/// The inventory present at start (also the `--inventory` JSON file).
///
/// Seeded resources are already settled (`active`, `available`, `ACTIVE`).
#[derive(Clone, Debug, Default, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct Inventory {
    pub images: Vec<ImageSeed>,
    pub volumes: Vec<VolumeSeed>,
    pub servers: Vec<ServerSeed>,
}

/// A Glance image to seed.
#[derive(Clone, Debug, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct ImageSeed {
    pub id: Option<String>,
    pub name: String,
    pub size: u64,
    pub disk_format: String,
    pub container_format: String,
    pub visibility: String,
    pub min_disk: u64,
    pub min_ram: u64,
    /// Extra properties, e.g. `{"hw_qemu_guest_agent": "yes"}`.
    pub properties: BTreeMap<String, Value>,
}

impl Default for ImageSeed {
    fn default() -> Self {
        Self {
            id: None,
            name: String::new(),
            size: 64 * 1024 * 1024,
            disk_format: "qcow2".into(),
            container_format: "bare".into(),
            visibility: "public".into(),
            min_disk: 0,
            min_ram: 0,
            properties: BTreeMap::new(),
        }
    }
}

/// A Cinder volume to seed.
#[derive(Clone, Debug, Default, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct VolumeSeed {
    pub id: Option<String>,
    pub name: String,
    /// GiB; 1 when zero.
    pub size: u64,
    /// Name or id of an image the volume is made from (bootable, with `volume_image_metadata`).
    pub image: Option<String>,
    pub metadata: BTreeMap<String, String>,
    /// The project (by name) that owns it; the admin's when `None`.
    pub project: Option<String>,
}

/// A Nova server to seed: image-backed when `image` is set and `volumes` is
/// empty, else volume-backed (the first volume is the root disk).
#[derive(Clone, Debug, Default, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct ServerSeed {
    pub id: Option<String>,
    pub name: String,
    /// Flavor name or id; `m1.tiny` when empty.
    pub flavor: String,
    /// Image name or id for an image-backed server.
    pub image: Option<String>,
    /// Volumes for a volume-backed server, in device order.
    pub volumes: Vec<VolumeSeed>,
    pub tags: Vec<String>,
    pub metadata: BTreeMap<String, String>,
    /// The project (by name) that owns it and its volumes, made by a user of
    /// that project; the admin's when `None`.
    pub project: Option<String>,
}

impl Default for SimConfig {
    fn default() -> Self {
        Self {
            seed: 1,
            region: "RegionOne".into(),
            admin: AdminUser::default(),
            members: MemberUser::defaults(),
            application_credential: ApplicationCredential::default(),
            token_ttl: Duration::from_secs(3600),
            nova_max_microversion: "2.96".into(),
            cinder_max_microversion: "3.71".into(),
            cinder_max_limit: 1000,
            snapshot_quota: 1000,
            instances_quota: 1000,
            availability_zones: vec!["nova".into()],
            durations: Durations::fast(),
            faults: Vec::new(),
            inventory: Inventory::default(),
        }
    }
}

impl SimConfig {
    /// The configuration of `stacksnap sim` and the demo: seconds-long transitions.
    pub fn demo() -> Self {
        Self {
            durations: Durations::demo(),
            ..Self::default()
        }
    }

    /// Sets the seed.
    #[must_use]
    pub fn with_seed(mut self, seed: u64) -> Self {
        self.seed = seed;
        self
    }

    /// Sets the highest compute microversion.
    #[must_use]
    pub fn with_nova_max_microversion(mut self, v: &str) -> Self {
        self.nova_max_microversion = v.into();
        self
    }

    /// Sets the highest volume microversion.
    #[must_use]
    pub fn with_cinder_max_microversion(mut self, v: &str) -> Self {
        self.cinder_max_microversion = v.into();
        self
    }

    /// Sets Cinder's `osapi_max_limit` (the largest page of a list).
    #[must_use]
    pub fn with_cinder_max_limit(mut self, limit: usize) -> Self {
        self.cinder_max_limit = limit;
        self
    }

    /// Sets the token lifetime.
    #[must_use]
    pub fn with_token_ttl(mut self, ttl: Duration) -> Self {
        self.token_ttl = ttl;
        self
    }

    /// Sets Cinder's snapshot quota (-1: unlimited).
    #[must_use]
    pub fn with_snapshot_quota(mut self, quota: i64) -> Self {
        self.snapshot_quota = quota;
        self
    }

    /// Sets Nova's instances quota (-1: unlimited).
    #[must_use]
    pub fn with_instances_quota(mut self, quota: i64) -> Self {
        self.instances_quota = quota;
        self
    }

    /// Sets the availability zones (the first is the default).
    #[must_use]
    pub fn with_availability_zones(mut self, zones: &[&str]) -> Self {
        self.availability_zones = zones.iter().map(|z| (*z).to_owned()).collect();
        self
    }

    /// Sets every transition duration.
    #[must_use]
    pub fn with_durations(mut self, durations: Durations) -> Self {
        self.durations = durations;
        self
    }

    /// Adds a fault active from the start.
    #[must_use]
    pub fn with_fault(mut self, rule: FaultRule) -> Self {
        self.faults.push(rule);
        self
    }

    /// Adds an image to the inventory.
    #[must_use]
    pub fn with_image(mut self, image: ImageSeed) -> Self {
        self.inventory.images.push(image);
        self
    }

    /// Adds a volume to the inventory.
    #[must_use]
    pub fn with_volume(mut self, volume: VolumeSeed) -> Self {
        self.inventory.volumes.push(volume);
        self
    }

    /// Adds a server to the inventory.
    #[must_use]
    pub fn with_server(mut self, server: ServerSeed) -> Self {
        self.inventory.servers.push(server);
        self
    }

    /// Replaces the inventory with the one in a JSON file.
    ///
    /// # Errors
    /// The file cannot be read or is not a valid inventory.
    pub fn with_inventory_file(mut self, path: &Path) -> anyhow::Result<Self> {
        let text = std::fs::read_to_string(path)
            .with_context(|| format!("cannot read the inventory {}", path.display()))?;
        self.inventory = serde_json::from_str(&text)
            .with_context(|| format!("invalid inventory {}", path.display()))?;
        Ok(self)
    }
}

/// `Duration` as whole milliseconds in JSON.
mod millis {
    use std::time::Duration;

    use serde::{Deserialize as _, Deserializer, Serializer};

    pub(super) fn serialize<S: Serializer>(d: &Duration, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_u64(u64::try_from(d.as_millis()).unwrap_or(u64::MAX))
    }

    pub(super) fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<Duration, D::Error> {
        u64::deserialize(d).map(Duration::from_millis)
    }
}
