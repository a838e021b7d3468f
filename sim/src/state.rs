//! The simulator's in-memory cloud: identities, tokens, trusts, images, volumes,
//! snapshots, groups, servers, flavors, faults and the request log, behind
//! one mutex. Images, volumes, snapshots, groups, group snapshots and servers
//! are tables indexed by id (`table`), so a request holds the lock for a
//! look-up, not a scan. Statuses are timelines read lazily. It renders no JSON and
//! knows nothing of HTTP beyond the status code of a failure.
//!
//! Over 400 lines: the one data model of the simulated cloud; its types are
//! read by every service module.

use std::{
    collections::{BTreeMap, HashMap},
    sync::Mutex,
    time::{Duration, Instant},
};

use axum::http::StatusCode;
use chrono::{DateTime, Utc};
use serde_json::Value;

use super::{
    config::{Durations, SimConfig},
    faults::FaultRule,
    log::LoggedRequest,
    rng::SplitMix64,
    roles::Role,
    table::{Row, Table},
    tenancy::{Project, User},
    timeline::Timeline,
};

/// The status a resource has once it no longer exists (reads answer 404).
pub(crate) const GONE: &str = "__gone__";

/// A failed operation: the HTTP status and the message for the service's error body.
#[derive(Debug)]
pub(crate) struct Fail {
    pub status: StatusCode,
    pub message: String,
}

impl Fail {
    pub(crate) fn new(status: StatusCode, message: impl Into<String>) -> Self {
        Self {
            status,
            message: message.into(),
        }
    }
    pub(crate) fn bad_request(message: impl Into<String>) -> Self {
        Self::new(StatusCode::BAD_REQUEST, message)
    }
    pub(crate) fn not_found(message: impl Into<String>) -> Self {
        Self::new(StatusCode::NOT_FOUND, message)
    }
    pub(crate) fn conflict(message: impl Into<String>) -> Self {
        Self::new(StatusCode::CONFLICT, message)
    }
}

/// A result of the state's operations.
pub(crate) type Outcome<T> = Result<T, Fail>;

/// Everything the HTTP layer shares.
pub(crate) struct Shared {
    pub config: SimConfig,
    pub base_url: String,
    pub state: Mutex<State>,
}

impl Shared {
    /// Locks the state (a poisoned lock is taken over: the state stays usable).
    pub(crate) fn lock(&self) -> std::sync::MutexGuard<'_, State> {
        self.state
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }
}

/// What a token is scoped to.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) enum Scope {
    Unscoped,
    /// A project, by id.
    Project(String),
    /// `{"system": {"all": true}}`.
    System,
    /// A trust, by id (its project is the token's).
    Trust(String),
}

/// A Keystone token. Like a Fernet token it carries no roles: they are
/// read from the assignments (or the trust) each time it is used.
#[derive(Clone, Debug)]
pub(crate) struct Token {
    pub issued: DateTime<Utc>,
    pub expires: DateTime<Utc>,
    pub methods: Vec<&'static str>,
    pub application_credential: bool,
    /// The user who authenticated (a trust's trustee).
    pub user_id: String,
    pub scope: Scope,
    pub audit_id: String,
}

/// A Keystone trust (`OS-TRUST`). Deleted trusts stay, as Keystone keeps
/// the row with `deleted_at`, and still count for the duplicate check.
#[derive(Clone, Debug)]
pub(crate) struct Trust {
    pub id: String,
    pub trustor_user_id: String,
    pub trustee_user_id: String,
    pub project_id: Option<String>,
    pub impersonation: bool,
    /// The delegated roles as requested (not expanded).
    pub roles: Vec<Role>,
    pub expires_at: Option<DateTime<Utc>>,
    pub remaining_uses: Option<u64>,
    pub deleted_at: Option<DateTime<Utc>>,
}

impl Trust {
    /// Whether Keystone's `get_trust` finds it: not deleted, not expired,
    /// uses left.
    pub(crate) fn live(&self, now: DateTime<Utc>) -> bool {
        self.deleted_at.is_none()
            && self.expires_at.is_none_or(|e| now <= e)
            && self.remaining_uses.is_none_or(|n| n > 0)
    }
}

/// A flavor.
#[derive(Clone, Debug)]
pub(crate) struct Flavor {
    pub id: String,
    pub name: String,
    pub vcpus: u32,
    pub ram: u32,
    pub disk: u32,
    pub ephemeral: u32,
    pub swap: u32,
    pub rxtx_factor: f64,
    pub is_public: bool,
    pub description: Option<String>,
    pub extra_specs: BTreeMap<String, String>,
    /// The projects a private flavor is shared with.
    pub access: Vec<String>,
}

impl Flavor {
    /// A public flavor with no extra specs.
    pub(crate) fn public(id: &str, name: &str, vcpus: u32, ram: u32, disk: u32) -> Self {
        Self {
            id: id.into(),
            name: name.into(),
            vcpus,
            ram,
            disk,
            ephemeral: 0,
            swap: 0,
            rxtx_factor: 1.0,
            is_public: true,
            description: None,
            extra_specs: BTreeMap::new(),
            access: Vec::new(),
        }
    }
}

/// A Glance image.
#[derive(Clone, Debug)]
pub(crate) struct Image {
    pub id: String,
    pub name: Option<String>,
    pub owner: String,
    pub visibility: String,
    /// Projects the image is shared with (Glance image members; Nova adds
    /// the server's project when someone else snapshots it).
    pub members: Vec<String>,
    pub protected: bool,
    pub created: Instant,
    /// `queued`, `saving`, `active`, `killed`, `deactivated` or [`GONE`].
    pub status: Timeline<&'static str>,
    pub disk_format: Option<String>,
    pub container_format: Option<String>,
    /// Size once `active`.
    pub size: Option<u64>,
    pub checksum: Option<String>,
    pub os_hash_value: Option<String>,
    pub min_disk: u64,
    pub min_ram: u64,
    pub tags: Vec<String>,
    /// Extra properties, flattened into the image JSON.
    pub properties: BTreeMap<String, Value>,
    /// What the compute service sets when it starts uploading a snapshot:
    /// shown from `saving` on.
    pub upload: Option<SnapshotUpload>,
}

/// Attributes Nova's virt driver sets on a snapshot image with its data.
#[derive(Clone, Debug)]
pub(crate) struct SnapshotUpload {
    pub disk_format: String,
    pub container_format: String,
    pub properties: BTreeMap<String, Value>,
}

/// A Cinder volume attachment.
#[derive(Clone, Debug)]
pub(crate) struct VolumeAttachment {
    pub id: String,
    pub server_id: String,
    pub device: String,
    pub attached_at: DateTime<Utc>,
}

/// A Cinder volume.
#[derive(Clone, Debug)]
pub(crate) struct Volume {
    pub id: String,
    pub name: Option<String>,
    pub description: Option<String>,
    pub size: u64,
    pub project_id: String,
    pub user_id: String,
    pub created: Instant,
    /// `creating`, `downloading`, `available`, `reserved`, `in-use`, `deleting`, `error` or [`GONE`].
    pub status: Timeline<&'static str>,
    pub attachments: Vec<VolumeAttachment>,
    pub bootable: bool,
    pub metadata: BTreeMap<String, String>,
    pub image_metadata: Option<BTreeMap<String, String>>,
    pub snapshot_id: Option<String>,
    pub source_volid: Option<String>,
    pub group_id: Option<String>,
    /// The volume type's id; the default type when `None`.
    pub volume_type: Option<String>,
    /// Cinder's availability zone.
    pub availability_zone: String,
}

/// A Cinder snapshot.
#[derive(Clone, Debug)]
pub(crate) struct Snapshot {
    pub id: String,
    pub name: Option<String>,
    pub description: Option<String>,
    pub volume_id: String,
    pub size: u64,
    pub project_id: String,
    pub user_id: String,
    pub created: Instant,
    /// `creating`, `available`, `error`, `deleting`, `error_deleting` or [`GONE`].
    pub status: Timeline<&'static str>,
    pub metadata: BTreeMap<String, String>,
    pub group_snapshot_id: Option<String>,
    /// Its volume's type id (Cinder's `snapshot.volume_type_id`): a volume
    /// made from it gets this type when the request names none.
    pub volume_type: Option<String>,
    /// Its volume's availability zone (`snapshot['volume']['availability_zone']`).
    pub availability_zone: String,
}

/// A Cinder volume type.
#[derive(Clone, Debug)]
pub(crate) struct VolumeType {
    pub id: String,
    pub name: String,
    pub description: Option<String>,
    pub is_public: bool,
    pub extra_specs: BTreeMap<String, String>,
}

/// A Cinder group type.
#[derive(Clone, Debug)]
pub(crate) struct GroupType {
    pub id: String,
    pub name: String,
    pub description: Option<String>,
    pub is_public: bool,
    pub group_specs: BTreeMap<String, String>,
}

/// A Cinder generic volume group.
#[derive(Clone, Debug)]
pub(crate) struct Group {
    pub id: String,
    pub name: Option<String>,
    pub description: Option<String>,
    pub project_id: String,
    pub created: Instant,
    pub status: Timeline<&'static str>,
    pub group_type: String,
    pub volume_types: Vec<String>,
    /// The group snapshot it was made from (`create-from-src`).
    pub group_snapshot_id: Option<String>,
    /// The group it was cloned from (`create-from-src`).
    pub source_group_id: Option<String>,
    pub availability_zone: String,
}

/// A Cinder group snapshot.
#[derive(Clone, Debug)]
pub(crate) struct GroupSnapshot {
    pub id: String,
    pub name: Option<String>,
    pub description: Option<String>,
    pub group_id: String,
    pub group_type_id: String,
    pub project_id: String,
    pub created: Instant,
    pub status: Timeline<&'static str>,
}

/// One of a server's block devices.
#[derive(Clone, Debug)]
pub(crate) struct Bdm {
    pub volume_id: String,
    pub device_name: String,
    pub boot_index: Option<i64>,
    pub delete_on_termination: bool,
    pub volume_size: u64,
}

/// A Nova server.
#[derive(Clone, Debug)]
pub(crate) struct Server {
    pub id: String,
    pub name: String,
    pub project_id: String,
    pub user_id: String,
    pub created: Instant,
    pub flavor_id: String,
    /// The boot image of an image-backed server.
    pub image_id: Option<String>,
    pub bdms: Vec<Bdm>,
    pub tags: Vec<String>,
    pub metadata: BTreeMap<String, String>,
    /// `building`, `active`, `stopped`, `error` or [`GONE`].
    pub vm_state: Timeline<&'static str>,
    pub task_state: Timeline<Option<&'static str>>,
    /// The boot image's properties as Nova keeps them in system metadata
    /// (for a volume-backed server: the root volume's `volume_image_metadata`).
    pub image_meta: BTreeMap<String, Value>,
    /// The n of `instance-0000000n`.
    pub instance_number: u64,
    /// Base64 user data as given at create (admins read it from 2.3 on).
    pub user_data: Option<String>,
    /// The creator's roles, comma-joined (Nova's `boot_roles` system metadata).
    pub boot_roles: String,
    /// The zone asked for at create (Nova's `pinned_availability_zone`).
    pub requested_az: Option<String>,
    /// The zone it runs in.
    pub availability_zone: String,
    pub key_name: Option<String>,
    /// `networks` as requested (`"none"`, `"auto"` or the list); the
    /// simulator has no Neutron, so a server has no addresses.
    pub networks: Value,
}

impl Server {
    /// Whether its root disk is a volume (Nova's `is_volume_backed_instance`).
    /// A server booted from a volume-backed snapshot image is, though it
    /// keeps the image as its `image`.
    pub(crate) fn volume_backed(&self) -> bool {
        self.image_id.is_none() || self.bdms.iter().any(|b| b.boot_index == Some(0))
    }
}

impl Row for Trust {
    fn id(&self) -> &str {
        &self.id
    }
    fn set_id(&mut self, id: String) {
        self.id = id;
    }
}

impl Row for Image {
    fn id(&self) -> &str {
        &self.id
    }
    fn set_id(&mut self, id: String) {
        self.id = id;
    }
}

impl Row for Volume {
    fn id(&self) -> &str {
        &self.id
    }
    fn set_id(&mut self, id: String) {
        self.id = id;
    }
}

impl Row for Snapshot {
    fn id(&self) -> &str {
        &self.id
    }
    fn set_id(&mut self, id: String) {
        self.id = id;
    }
}

impl Row for Group {
    fn id(&self) -> &str {
        &self.id
    }
    fn set_id(&mut self, id: String) {
        self.id = id;
    }
}

impl Row for GroupSnapshot {
    fn id(&self) -> &str {
        &self.id
    }
    fn set_id(&mut self, id: String) {
        self.id = id;
    }
}

impl Row for Server {
    fn id(&self) -> &str {
        &self.id
    }
    fn set_id(&mut self, id: String) {
        self.id = id;
    }
}

/// A Nova keypair (per user).
#[derive(Clone, Debug)]
pub(crate) struct Keypair {
    pub name: String,
    pub user_id: String,
    pub public_key: String,
    pub fingerprint: String,
    pub key_type: String,
}

/// The whole simulated cloud.
pub(crate) struct State {
    pub rng: SplitMix64,
    /// Anchors `Instant`s to wall-clock time for timestamps.
    pub epoch: (Instant, DateTime<Utc>),
    /// The admin user's id.
    pub user_id: String,
    /// The admin project's id (the owner of seeded resources).
    pub project_id: String,
    /// Keystone's projects and users (the admin's first).
    pub projects: Vec<Project>,
    pub users: Vec<User>,
    pub tokens: HashMap<String, Token>,
    /// By id: every request with a trust-scoped token looks its trust up.
    pub trusts: Table<Trust>,
    pub flavors: Vec<Flavor>,
    pub images: Table<Image>,
    pub volumes: Table<Volume>,
    pub snapshots: Table<Snapshot>,
    pub groups: Table<Group>,
    pub group_snapshots: Table<GroupSnapshot>,
    pub volume_types: Vec<VolumeType>,
    pub group_types: Vec<GroupType>,
    pub servers: Table<Server>,
    pub keypairs: Vec<Keypair>,
    pub faults: Vec<FaultRule>,
    pub log: Vec<LoggedRequest>,
    pub snapshot_quota: i64,
    /// Nova's instances quota per project; -1 is unlimited.
    pub instances_quota: i64,
    /// The availability zones of Nova and Cinder (the first is the default).
    pub availability_zones: Vec<String>,
    /// Cinder's `osapi_max_limit`.
    pub cinder_max_limit: usize,
    pub durations: Durations,
    pub instance_counter: u64,
    /// When [`State::collect_garbage`] next looks at the tables.
    pub next_collection: Instant,
}

impl State {
    /// An empty cloud with the admin identity and the flavors.
    pub(crate) fn new(config: &SimConfig) -> Self {
        let mut rng = SplitMix64::new(config.seed);
        let user_id = rng.hex_id();
        let project_id = rng.hex_id();
        let (projects, users) = super::tenancy::identities(config, &user_id, &project_id);
        Self {
            rng,
            epoch: (Instant::now(), Utc::now()),
            user_id,
            project_id,
            projects,
            users,
            tokens: HashMap::new(),
            trusts: Table::default(),
            flavors: vec![
                Flavor::public("1", "m1.tiny", 1, 256, 1),
                Flavor::public("2", "m1.small", 1, 512, 2),
                Flavor::public("3", "m1.medium", 2, 4096, 40),
            ],
            images: Table::default(),
            volumes: Table::default(),
            snapshots: Table::default(),
            groups: Table::default(),
            group_snapshots: Table::default(),
            volume_types: Vec::new(),
            group_types: Vec::new(),
            servers: Table::default(),
            keypairs: Vec::new(),
            faults: config.faults.clone(),
            log: Vec::new(),
            snapshot_quota: config.snapshot_quota,
            instances_quota: config.instances_quota,
            availability_zones: if config.availability_zones.is_empty() {
                vec!["nova".to_owned()]
            } else {
                config.availability_zones.clone()
            },
            cinder_max_limit: config.cinder_max_limit,
            durations: config.durations.clone(),
            instance_counter: 0,
            next_collection: Instant::now(),
        }
    }

    /// The wall-clock time of an instant.
    pub(crate) fn utc(&self, at: Instant) -> DateTime<Utc> {
        let (i0, t0) = self.epoch;
        match at.checked_duration_since(i0) {
            Some(d) => t0 + chrono::Duration::from_std(d).unwrap_or_default(),
            None => t0 - chrono::Duration::from_std(i0 - at).unwrap_or_default(),
        }
    }

    /// A fresh UUID.
    pub(crate) fn uuid(&mut self) -> String {
        self.rng.uuid()
    }

    /// Whether an artefact fault hits `operation` now (and consumes it).
    pub(crate) fn fault(
        &mut self,
        operation: &str,
        pred: impl Fn(&super::faults::Fault) -> bool,
    ) -> bool {
        super::faults::take(&mut self.faults, &mut self.rng, operation, pred)
    }

    /// A trust Keystone's `get_trust` finds.
    pub(crate) fn live_trust(&self, id: &str) -> Option<&Trust> {
        let now = Utc::now();
        self.trusts.find(id, |t| t.live(now))
    }

    pub(crate) fn user(&self, id: &str) -> Option<&User> {
        self.users.iter().find(|u| u.id == id)
    }

    pub(crate) fn image(&self, id: &str, now: Instant) -> Option<&Image> {
        self.images.find(id, |i| i.status.at(now) != GONE)
    }

    pub(crate) fn image_mut(&mut self, id: &str, now: Instant) -> Option<&mut Image> {
        self.images.find_mut(id, |i| i.status.at(now) != GONE)
    }

    /// An image by id, or else by unique name.
    pub(crate) fn find_image(&self, id_or_name: &str, now: Instant) -> Option<&Image> {
        self.image(id_or_name, now).or_else(|| {
            self.images
                .iter()
                .find(|i| i.name.as_deref() == Some(id_or_name) && i.status.at(now) != GONE)
        })
    }

    pub(crate) fn volume(&self, id: &str, now: Instant) -> Option<&Volume> {
        self.volumes.find(id, |v| v.status.at(now) != GONE)
    }

    pub(crate) fn volume_mut(&mut self, id: &str, now: Instant) -> Option<&mut Volume> {
        self.volumes.find_mut(id, |v| v.status.at(now) != GONE)
    }

    pub(crate) fn snapshot(&self, id: &str, now: Instant) -> Option<&Snapshot> {
        self.snapshots.find(id, |s| s.status.at(now) != GONE)
    }

    pub(crate) fn snapshot_mut(&mut self, id: &str, now: Instant) -> Option<&mut Snapshot> {
        self.snapshots.find_mut(id, |s| s.status.at(now) != GONE)
    }

    pub(crate) fn server(&self, id: &str, now: Instant) -> Option<&Server> {
        self.servers.find(id, |s| s.vm_state.at(now) != GONE)
    }

    pub(crate) fn server_mut(&mut self, id: &str, now: Instant) -> Option<&mut Server> {
        self.servers.find_mut(id, |s| s.vm_state.at(now) != GONE)
    }

    pub(crate) fn flavor(&self, id_or_name: &str) -> Option<&Flavor> {
        self.flavors
            .iter()
            .find(|f| f.id == id_or_name)
            .or_else(|| self.flavors.iter().find(|f| f.name == id_or_name))
    }

    /// The default availability zone (Cinder's `default_availability_zone`).
    pub(crate) fn default_az(&self) -> String {
        self.availability_zones
            .first()
            .cloned()
            .unwrap_or_else(|| "nova".to_owned())
    }

    /// Servers that count against the project's instances quota.
    pub(crate) fn servers_used(&self, project_id: &str, now: Instant) -> i64 {
        let n = self
            .servers
            .iter()
            .filter(|s| s.project_id == project_id && s.vm_state.at(now) != GONE)
            .count();
        i64::try_from(n).unwrap_or(i64::MAX)
    }

    /// Snapshots that count against the project's quota.
    pub(crate) fn snapshots_used(&self, project_id: &str, now: Instant) -> i64 {
        let n = self
            .snapshots
            .iter()
            .filter(|s| s.project_id == project_id && s.status.at(now) != GONE)
            .count();
        i64::try_from(n).unwrap_or(i64::MAX)
    }

    /// Drops resources that have been gone for a while, so lists stay short.
    /// Called after every request, it walks the tables at most once a second
    /// (every row's timeline, each time): a gone resource is dropped between
    /// 60 and 61 seconds after it went (reads skip it meanwhile; a Glance
    /// create naming its id is refused until then).
    pub(crate) fn collect_garbage(&mut self, now: Instant) {
        if now < self.next_collection {
            return;
        }
        self.next_collection = now + Duration::from_secs(1);
        let keep = Duration::from_secs(60);
        let old = |since: Instant| now.saturating_duration_since(since) > keep;
        // An image still to appear (a volume-backed createImage under way) is not garbage.
        self.images.retain(|i| {
            !(i.status.at(now) == GONE && old(i.status.since(now)) && !i.status.pending(now))
        });
        self.volumes
            .retain(|v| !(v.status.at(now) == GONE && old(v.status.since(now))));
        self.snapshots
            .retain(|s| !(s.status.at(now) == GONE && old(s.status.since(now))));
        self.servers
            .retain(|s| !(s.vm_state.at(now) == GONE && old(s.vm_state.since(now))));
        // An expired token is kept a while: Keystone still recognises it
        // ("Failed to validate token", not an unknown token).
        let keep_tokens = Utc::now() - chrono::Duration::seconds(60);
        self.tokens.retain(|_, t| t.expires > keep_tokens);
    }
}
