//! What tests read of the simulated cloud without going through the APIs:
//! servers, volumes and groups with their status, zone, attachments, tags
//! and metadata, as `SimHandle` methods. Read-only except the few setters
//! a test needs to reach a state (a snapshot in `error`, a keypair, a quota).

use std::{collections::BTreeMap, time::Instant};

use serde_json::Value;

use super::{
    handle::SimHandle,
    nova::servers::status_of,
    state::{GONE, Group, Keypair, Server, State, Volume},
};

/// A server as the simulator holds it.
#[derive(Clone, Debug, PartialEq)]
pub struct ServerInfo {
    pub id: String,
    pub name: String,
    pub project_id: String,
    /// Nova's status: `BUILD`, `ACTIVE`, `SHUTOFF`, `ERROR`.
    pub status: String,
    pub task_state: Option<String>,
    pub flavor_id: String,
    /// The image it was booted from (also for a server booted from a
    /// volume-backed snapshot image, as Nova shows it).
    pub image_id: Option<String>,
    /// Whether its root disk is a volume.
    pub volume_backed: bool,
    pub availability_zone: String,
    pub key_name: Option<String>,
    /// `networks` as requested (`"none"`, `"auto"`, the list, or `null`).
    pub networks: Value,
    pub tags: Vec<String>,
    pub metadata: BTreeMap<String, String>,
    /// Its block devices in device order.
    pub volumes: Vec<ServerVolume>,
}

/// One of a server's volumes.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ServerVolume {
    pub volume_id: String,
    pub device: String,
    pub boot_index: Option<i64>,
    pub delete_on_termination: bool,
}

/// A Cinder volume as the simulator holds it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct VolumeInfo {
    pub id: String,
    pub name: Option<String>,
    pub project_id: String,
    pub status: String,
    pub size: u64,
    pub availability_zone: String,
    /// The volume type's id (`None`: the default type).
    pub volume_type: Option<String>,
    pub snapshot_id: Option<String>,
    pub source_volid: Option<String>,
    pub group_id: Option<String>,
    pub bootable: bool,
    pub metadata: BTreeMap<String, String>,
    /// The servers it is attached to (while `in-use`).
    pub attached_to: Vec<String>,
}

/// A Cinder group as the simulator holds it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct GroupInfo {
    pub id: String,
    pub name: Option<String>,
    pub project_id: String,
    pub status: String,
    pub group_type: String,
    pub group_snapshot_id: Option<String>,
    pub source_group_id: Option<String>,
    pub availability_zone: String,
    /// Its live member volumes.
    pub volume_ids: Vec<String>,
}

fn server_info(s: &Server, now: Instant) -> ServerInfo {
    ServerInfo {
        id: s.id.clone(),
        name: s.name.clone(),
        project_id: s.project_id.clone(),
        status: status_of(s.vm_state.at(now)).to_owned(),
        task_state: s.task_state.at(now).map(str::to_owned),
        flavor_id: s.flavor_id.clone(),
        image_id: s.image_id.clone(),
        volume_backed: s.volume_backed(),
        availability_zone: s.availability_zone.clone(),
        key_name: s.key_name.clone(),
        networks: s.networks.clone(),
        tags: s.tags.clone(),
        metadata: s.metadata.clone(),
        volumes: s
            .bdms
            .iter()
            .map(|b| ServerVolume {
                volume_id: b.volume_id.clone(),
                device: b.device_name.clone(),
                boot_index: b.boot_index,
                delete_on_termination: b.delete_on_termination,
            })
            .collect(),
    }
}

fn volume_info(v: &Volume, now: Instant) -> VolumeInfo {
    let status = v.status.at(now);
    VolumeInfo {
        id: v.id.clone(),
        name: v.name.clone(),
        project_id: v.project_id.clone(),
        status: status.to_owned(),
        size: v.size,
        availability_zone: v.availability_zone.clone(),
        volume_type: v.volume_type.clone(),
        snapshot_id: v.snapshot_id.clone(),
        source_volid: v.source_volid.clone(),
        group_id: v.group_id.clone(),
        bootable: v.bootable,
        metadata: v.metadata.clone(),
        attached_to: if status == "in-use" {
            v.attachments.iter().map(|a| a.server_id.clone()).collect()
        } else {
            Vec::new()
        },
    }
}

fn group_info(st: &State, g: &Group, now: Instant) -> GroupInfo {
    GroupInfo {
        id: g.id.clone(),
        name: g.name.clone(),
        project_id: g.project_id.clone(),
        status: g.status.at(now).to_owned(),
        group_type: g.group_type.clone(),
        group_snapshot_id: g.group_snapshot_id.clone(),
        source_group_id: g.source_group_id.clone(),
        availability_zone: g.availability_zone.clone(),
        volume_ids: st
            .volumes
            .iter()
            .filter(|v| v.group_id.as_deref() == Some(g.id.as_str()) && v.status.at(now) != GONE)
            .map(|v| v.id.clone())
            .collect(),
    }
}

impl SimHandle {
    /// A live server by id (`None` once deleted).
    pub fn server(&self, id: &str) -> Option<ServerInfo> {
        let now = Instant::now();
        let st = self.shared.lock();
        st.server(id, now).map(|s| server_info(s, now))
    }

    /// Every live server, oldest first.
    pub fn servers(&self) -> Vec<ServerInfo> {
        let now = Instant::now();
        let st = self.shared.lock();
        st.servers
            .iter()
            .filter(|s| s.vm_state.at(now) != GONE)
            .map(|s| server_info(s, now))
            .collect()
    }

    /// The ids of the live servers carrying `tag` (what
    /// `GET /servers?tags=` finds), oldest first.
    pub fn servers_with_tag(&self, tag: &str) -> Vec<String> {
        self.servers()
            .into_iter()
            .filter(|s| s.tags.iter().any(|t| t == tag))
            .map(|s| s.id)
            .collect()
    }

    /// A live volume by id (`None` once deleted).
    pub fn volume(&self, id: &str) -> Option<VolumeInfo> {
        let now = Instant::now();
        let st = self.shared.lock();
        st.volume(id, now).map(|v| volume_info(v, now))
    }

    /// The live volumes made from Cinder snapshot `snapshot_id` (its dependants).
    pub fn volumes_from_snapshot(&self, snapshot_id: &str) -> Vec<VolumeInfo> {
        let now = Instant::now();
        let st = self.shared.lock();
        st.volumes
            .iter()
            .filter(|v| v.snapshot_id.as_deref() == Some(snapshot_id) && v.status.at(now) != GONE)
            .map(|v| volume_info(v, now))
            .collect()
    }

    /// A live group by id (`None` once deleted).
    pub fn group(&self, id: &str) -> Option<GroupInfo> {
        let now = Instant::now();
        let st = self.shared.lock();
        st.groups
            .find(id, |g| g.status.at(now) != GONE)
            .map(|g| group_info(&st, g, now))
    }

    /// The status of a live Cinder snapshot (`None` once deleted).
    pub fn snapshot_status(&self, id: &str) -> Option<String> {
        let now = Instant::now();
        let st = self.shared.lock();
        st.snapshot(id, now).map(|s| s.status.at(now).to_owned())
    }

    /// Puts a Cinder snapshot into `status` from now on (e.g. `error`, as an
    /// administrator's reset-state does).
    pub fn set_snapshot_status(&self, id: &str, status: &'static str) {
        let now = Instant::now();
        let mut st = self.shared.lock();
        if let Some(s) = st.snapshot_mut(id, now) {
            s.status.rewrite(now, status);
        }
    }

    /// The Cinder snapshot ids a volume-backed snapshot image lists in its
    /// `block_device_mapping`, root first.
    pub fn image_snapshot_ids(&self, image_id: &str) -> Vec<String> {
        let now = Instant::now();
        let st = self.shared.lock();
        let Some(img) = st.image(image_id, now) else {
            return Vec::new();
        };
        let list = match img.properties.get("block_device_mapping") {
            Some(Value::String(text)) => serde_json::from_str(text).unwrap_or_default(),
            Some(v) => v.clone(),
            None => Value::Null,
        };
        let mut items: Vec<(i64, String)> = list
            .as_array()
            .into_iter()
            .flatten()
            .filter_map(|b| {
                let id = b["snapshot_id"].as_str()?.to_owned();
                Some((
                    b["boot_index"]
                        .as_i64()
                        .filter(|i| *i >= 0)
                        .unwrap_or(i64::MAX),
                    id,
                ))
            })
            .collect();
        items.sort();
        items.into_iter().map(|(_, id)| id).collect()
    }

    /// Gives user `username` a keypair `name` (for `key_name` on create).
    ///
    /// # Errors
    /// No such user.
    pub fn add_keypair(&self, username: &str, name: &str) -> anyhow::Result<()> {
        let mut st = self.shared.lock();
        let user_id = st
            .users
            .iter()
            .find(|u| u.name == username)
            .map(|u| u.id.clone())
            .ok_or_else(|| anyhow::anyhow!("no user {username}"))?;
        st.keypairs
            .retain(|k| !(k.name == name && k.user_id == user_id));
        st.keypairs.push(Keypair {
            name: name.to_owned(),
            user_id,
            public_key: format!("ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAI{name} sim"),
            fingerprint: "00:11:22:33:44:55:66:77:88:99:aa:bb:cc:dd:ee:ff".to_owned(),
            key_type: "ssh".to_owned(),
        });
        Ok(())
    }

    /// Sets Nova's instances quota (-1: unlimited).
    pub fn set_instances_quota(&self, quota: i64) {
        self.shared.lock().instances_quota = quota;
    }
}
