//! Starting the simulator and the handle tests and the demo drive it with:
//! URLs, clouds.yaml, the request log, faults, token expiry and inventory
//! helpers. It owns the server task; the state lives in `state`.

use std::{
    collections::BTreeMap,
    net::SocketAddr,
    sync::{Arc, Mutex},
    time::{Duration, Instant},
};

use anyhow::Context as _;
use serde_json::Value;
use tokio::task::JoinHandle;
use tokio_util::sync::CancellationToken;

use super::{
    cinder,
    config::{Durations, ImageSeed, ServerSeed, SimConfig, VolumeSeed},
    faults::FaultRule,
    http,
    inventory::NewVolume,
    log::LoggedRequest,
    state::{Shared, State},
};

/// The in-process OpenStack simulator.
pub struct Simulator;

impl Simulator {
    /// Binds `listen` (port 0 picks a free port), seeds the inventory and
    /// serves Keystone, Nova, Glance and Cinder until the handle shuts down.
    /// Must be called within a Tokio runtime.
    ///
    /// # Errors
    /// The address cannot be bound, or the inventory is inconsistent (an
    /// unknown image or flavor).
    pub fn start(config: SimConfig, listen: SocketAddr) -> anyhow::Result<SimHandle> {
        let std_listener = std::net::TcpListener::bind(listen)
            .with_context(|| format!("cannot listen on {listen}"))?;
        std_listener.set_nonblocking(true)?;
        let addr = std_listener.local_addr()?;
        let listener = tokio::net::TcpListener::from_std(std_listener)?;
        let host = if addr.ip().is_unspecified() {
            SocketAddr::new(std::net::Ipv4Addr::LOCALHOST.into(), addr.port())
        } else {
            addr
        };
        let mut state = State::new(&config);
        seed(&mut state, &config)?;
        let shared = Arc::new(Shared {
            base_url: format!("http://{host}"),
            config,
            state: Mutex::new(state),
        });
        let token = CancellationToken::new();
        let app = http::router(shared.clone());
        let stop = token.clone();
        let task = tokio::spawn(async move {
            let served = axum::serve(listener, app)
                .with_graceful_shutdown(async move { stop.cancelled().await })
                .await;
            if let Err(e) = served {
                tracing::error!(error = %e, "the OpenStack simulator stopped");
            }
        });
        Ok(SimHandle {
            shared,
            addr: host,
            token,
            task: Mutex::new(Some(task)),
        })
    }
}

fn seed(st: &mut State, config: &SimConfig) -> anyhow::Result<()> {
    let now = Instant::now();
    cinder::seed(st);
    for image in &config.inventory.images {
        st.seed_image(now, image);
    }
    for volume in &config.inventory.volumes {
        st.seed_volume(now, volume)
            .map_err(|f| anyhow::anyhow!("inventory volume {:?}: {}", volume.name, f.message))?;
    }
    for server in &config.inventory.servers {
        st.seed_server(now, server)
            .map_err(|f| anyhow::anyhow!("inventory server {:?}: {}", server.name, f.message))?;
    }
    Ok(())
}

/// A running simulator.
pub struct SimHandle {
    pub(crate) shared: Arc<Shared>,
    addr: SocketAddr,
    token: CancellationToken,
    task: Mutex<Option<JoinHandle<()>>>,
}

impl SimHandle {
    /// `http://127.0.0.1:PORT`.
    pub fn base_url(&self) -> String {
        self.shared.base_url.clone()
    }

    /// The Keystone v3 URL, `http://127.0.0.1:PORT/identity/v3`.
    pub fn auth_url(&self) -> String {
        format!("{}/identity/v3", self.shared.base_url)
    }

    /// The address the simulator listens on.
    pub fn local_addr(&self) -> SocketAddr {
        self.addr
    }

    /// The admin project's id.
    pub fn project_id(&self) -> String {
        self.shared.lock().project_id.clone()
    }

    /// The configuration it runs with.
    pub fn config(&self) -> &SimConfig {
        &self.shared.config
    }

    /// A clouds.yaml with the cloud `stacksnap-sim` (admin user, password
    /// auth), `stacksnap-sim-appcred` (the application credential),
    /// `stacksnap-sim-system-admin` (the admin user, system scope) and one
    /// `stacksnap-sim-<user>` per project user, `_` written `-` (`-member`,
    /// `-demo`, `-alt`, `-demo-reader`, `-alt-reader`).
    pub fn clouds_yaml(&self) -> String {
        let c = &self.shared.config;
        let auth_url = self.auth_url();
        let tail = format!(
            "    region_name: {region}\n    interface: public\n    identity_api_version: 3\n",
            region = c.region
        );
        let password_cloud = |cloud: &str, user: &str, password: &str, scope: &str| {
            format!(
                "  {cloud}:\n    auth:\n      auth_url: {auth_url}\n      username: {user}\n      password: {password}\n{scope}      user_domain_name: {domain}\n{tail}",
                domain = c.admin.domain_name,
            )
        };
        let project_scope = |project: &str| {
            format!(
                "      project_name: {project}\n      project_domain_name: {domain}\n",
                domain = c.admin.domain_name
            )
        };
        let mut yaml = String::from("clouds:\n");
        yaml += &password_cloud(
            "stacksnap-sim",
            &c.admin.username,
            &c.admin.password,
            &project_scope(&c.admin.project_name),
        );
        yaml += &format!(
            "  stacksnap-sim-appcred:\n    auth_type: v3applicationcredential\n    auth:\n      auth_url: {auth_url}\n      application_credential_id: {ac_id}\n      application_credential_secret: {ac_secret}\n{tail}",
            ac_id = c.application_credential.id,
            ac_secret = c.application_credential.secret,
        );
        yaml += &password_cloud(
            "stacksnap-sim-system-admin",
            &c.admin.username,
            &c.admin.password,
            "      system_scope: all\n",
        );
        for m in &c.members {
            yaml += &password_cloud(
                &format!("stacksnap-sim-{}", m.username.replace('_', "-")),
                &m.username,
                &m.password,
                &project_scope(&m.project_name),
            );
        }
        yaml
    }

    /// Every request answered so far, in order.
    pub fn requests(&self) -> Vec<LoggedRequest> {
        self.shared.lock().log.clone()
    }

    /// Forgets the request log.
    pub fn clear_requests(&self) {
        self.shared.lock().log.clear();
    }

    /// How many requests of `operation` (e.g. `nova.create_image`) were answered.
    pub fn count(&self, operation: &str) -> usize {
        self.shared
            .lock()
            .log
            .iter()
            .filter(|r| r.operation == operation)
            .count()
    }

    /// Adds a fault rule.
    pub fn inject(&self, rule: FaultRule) {
        self.shared.lock().faults.push(rule);
    }

    /// Removes every fault rule.
    pub fn clear_faults(&self) {
        self.shared.lock().faults.clear();
    }

    /// Invalidates every token issued so far (clients get 401 until they re-authenticate).
    pub fn expire_tokens(&self) {
        self.shared.lock().tokens.clear();
    }

    /// The tokens issued and still live, so that a test can look for them where
    /// they must never appear (logs, error bodies).
    pub fn live_tokens(&self) -> Vec<String> {
        self.shared.lock().tokens.keys().cloned().collect()
    }

    /// Changes the duration of transitions from now on (what `PATCH /_sim/durations` does).
    pub fn update_durations(&self, change: impl FnOnce(&mut Durations)) {
        change(&mut self.shared.lock().durations);
    }

    /// Puts a volume into `status` from now on (e.g. `backing-up`, `error`).
    pub fn set_volume_status(&self, id: &str, status: &'static str) {
        let now = Instant::now();
        let mut st = self.shared.lock();
        if let Some(v) = st.volume_mut(id, now) {
            v.status.rewrite(now, status);
        }
    }

    /// Puts a volume into a passing `status` (e.g. `backing-up`) for `how_long`,
    /// after which it is back in the status it had.
    pub fn set_volume_status_for(&self, id: &str, status: &'static str, how_long: Duration) {
        let now = Instant::now();
        let mut st = self.shared.lock();
        if let Some(v) = st.volume_mut(id, now) {
            let before = v.status.at(now);
            v.status.rewrite(now, status);
            v.status.push_after_last(how_long, before);
        }
    }

    /// Sets Cinder's snapshot quota (-1: unlimited).
    pub fn set_snapshot_quota(&self, quota: i64) {
        self.shared.lock().snapshot_quota = quota;
    }

    /// Adds an `active` image and returns its id.
    pub fn create_image(&self, seed: &ImageSeed) -> String {
        self.shared.lock().seed_image(Instant::now(), seed)
    }

    /// Adds an `available` volume and returns its id.
    ///
    /// # Panics
    /// Never for an empty volume (no source to miss).
    pub fn create_volume(&self, name: &str, size: u64, metadata: &[(&str, &str)]) -> String {
        let spec = NewVolume {
            name: Some(name.into()),
            size: size.max(1),
            metadata: pairs(metadata),
            ..NewVolume::default()
        };
        self.shared
            .lock()
            .create_volume(Instant::now(), spec, true)
            .expect("an empty volume has no source to miss")
    }

    /// Adds an `available` volume from a seed (of another project, say).
    ///
    /// # Errors
    /// An unknown image or project in the seed.
    pub fn seed_volume(&self, seed: &VolumeSeed) -> anyhow::Result<String> {
        self.shared
            .lock()
            .seed_volume(Instant::now(), seed)
            .map_err(|f| anyhow::anyhow!("{}", f.message))
    }

    /// Adds an `available` volume made from Cinder snapshot `snapshot_id`
    /// (a dependant of that snapshot) and returns its id.
    ///
    /// # Errors
    /// The snapshot does not exist or is not `available`.
    pub fn create_volume_from_snapshot(
        &self,
        name: &str,
        snapshot_id: &str,
    ) -> anyhow::Result<String> {
        let spec = NewVolume {
            name: Some(name.into()),
            snapshot_id: Some(snapshot_id.into()),
            ..NewVolume::default()
        };
        self.shared
            .lock()
            .create_volume(Instant::now(), spec, true)
            .map_err(|f| anyhow::anyhow!("{}", f.message))
    }

    /// Adds an `ACTIVE` server from a seed (image- or volume-backed).
    ///
    /// # Errors
    /// An unknown image or flavor in the seed.
    pub fn create_server(&self, seed: &ServerSeed) -> anyhow::Result<String> {
        self.shared
            .lock()
            .seed_server(Instant::now(), seed)
            .map_err(|f| anyhow::anyhow!("{}", f.message))
    }

    /// Adds an `ACTIVE` image-backed server; with `guest_agent` its image
    /// has `hw_qemu_guest_agent=yes`.
    pub fn create_image_backed_server(
        &self,
        name: &str,
        tags: &[&str],
        metadata: &[(&str, &str)],
        guest_agent: bool,
    ) -> String {
        let image = self.base_image(guest_agent);
        let seed = ServerSeed {
            name: name.into(),
            image: Some(image),
            tags: tags.iter().map(|t| (*t).to_owned()).collect(),
            metadata: pairs(metadata),
            ..ServerSeed::default()
        };
        self.create_server(&seed)
            .expect("the base image and flavor exist")
    }

    /// Adds an `ACTIVE` server booted from `volume_count` volumes (1 GiB
    /// each; the root one made from an image, with
    /// `hw_qemu_guest_agent=yes` in its `volume_image_metadata` when
    /// `guest_agent`).
    pub fn create_volume_backed_server(
        &self,
        name: &str,
        volume_count: usize,
        guest_agent: bool,
    ) -> String {
        self.create_volume_backed_server_with_flavor(name, volume_count, guest_agent, "")
    }

    /// [`Self::create_volume_backed_server`] on the flavor `flavor` (name or
    /// id; `m1.tiny` when empty). Its 1 GiB volumes stay 1 GiB whatever the
    /// flavor's disk.
    pub fn create_volume_backed_server_with_flavor(
        &self,
        name: &str,
        volume_count: usize,
        guest_agent: bool,
        flavor: &str,
    ) -> String {
        let image = self.base_image(guest_agent);
        let volumes = (0..volume_count.max(1))
            .map(|i| VolumeSeed {
                name: format!("{name}-vol{i}"),
                size: 1,
                image: (i == 0).then(|| image.clone()),
                ..VolumeSeed::default()
            })
            .collect();
        let seed = ServerSeed {
            name: name.into(),
            flavor: flavor.into(),
            volumes,
            ..ServerSeed::default()
        };
        self.create_server(&seed)
            .expect("the base image and flavor exist")
    }

    /// The id of the helpers' base image (`sim-cirros`, or `sim-cirros-qga`
    /// with the guest agent), made on first use.
    fn base_image(&self, guest_agent: bool) -> String {
        let name = if guest_agent {
            "sim-cirros-qga"
        } else {
            "sim-cirros"
        };
        let mut st = self.shared.lock();
        let now = Instant::now();
        if let Some(img) = st.find_image(name, now) {
            return img.id.clone();
        }
        let mut properties = BTreeMap::new();
        if guest_agent {
            properties.insert("hw_qemu_guest_agent".to_owned(), Value::from("yes"));
        }
        st.seed_image(
            now,
            &ImageSeed {
                name: name.into(),
                size: 196_616,
                properties,
                ..ImageSeed::default()
            },
        )
    }

    /// Stops serving and waits for the server task.
    pub async fn shutdown(self) {
        self.token.cancel();
        let task = self.task.lock().ok().and_then(|mut t| t.take());
        if let Some(task) = task {
            let _ = task.await;
        }
    }
}

impl Drop for SimHandle {
    fn drop(&mut self) {
        self.token.cancel();
    }
}

fn pairs(items: &[(&str, &str)]) -> BTreeMap<String, String> {
    items
        .iter()
        .map(|(k, v)| ((*k).to_owned(), (*v).to_owned()))
        .collect()
}
