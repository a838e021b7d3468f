//! An in-process OpenStack simulator: Keystone v3, Nova (compute v2.1),
//! Glance v2 and Cinder v3 on one port, faithful enough for
//! python-openstackclient, with lazy deterministic state transitions,
//! fault injection and a request log. It is the cloud of the demo, the
//! tests and the benchmarks (`stacksnap sim`). It must not depend on the
//! clients in the service crate (`stacksnap::openstack`).
//!
//! # URL layout (one port)
//!
//! | service | path | catalog type |
//! |---|---|---|
//! | Keystone | `/identity` (`/identity/v3`) | `identity` |
//! | Nova | `/compute/v2.1` | `compute` |
//! | Glance | `/image` (`/image/v2`) | `image` |
//! | Cinder | `/volume/v3` (also `/volume/v3/{project_id}`) | `volumev3`, `block-storage` |
//! | admin | `/_sim/requests`, `/_sim/faults`, `/_sim/expire-tokens`, `/_sim/users/…/roles/…`, `/_sim/trusts` (see `admin`) | — |
//!
//! # Credentials
//!
//! User `admin`, password `secret`, project `admin`, domain `Default`
//! (`SimConfig::admin`), with the roles `admin` and `service` on its project
//! (a service user, as stacksnap runs: it may validate others' tokens and
//! delete their trusts) and `admin` on the system; application credential id
//! `0a1b2c3d4e5f40718293a4b5c6d7e8f9`, secret `stacksnap-secret`
//! (`SimConfig::application_credential`, restricted, as Keystone makes them
//! by default); project users (`SimConfig::members`), each with one role:
//! `member`/`member-secret` in the admin's own project (a tenant's own
//! credentials: Cinder and Nova apply their non-admin list-filter rules to
//! its tokens), `demo`/`demo` (project `demo`) and `alt`/`alt` (project
//! `alt`) with `member`, and `demo_reader`/`demo` and `alt_reader`/`alt`
//! with `reader` in those projects, as on the rig. Roles imply others as
//! `keystone-manage bootstrap` makes them (admin → manager → member →
//! reader), and tokens list them expanded. [`SimHandle::clouds_yaml`]
//! writes the clouds `stacksnap-sim`, `stacksnap-sim-appcred`,
//! `stacksnap-sim-system-admin`, `stacksnap-sim-member`,
//! `stacksnap-sim-demo`, `stacksnap-sim-alt`, `stacksnap-sim-demo-reader`
//! and `stacksnap-sim-alt-reader`.
//!
//! Keystone validates tokens (`GET /v3/auth/tokens`) and keeps trusts
//! (`OS-TRUST`: create, get, list, delete, trust-scoped tokens with
//! impersonation) by Keystone 30's rules. Nova, Cinder and Glance scope
//! resources to the token's project as the real services do (`tenancy`),
//! act as the token's user (the trustor of an impersonating trust), and
//! refuse writes to tokens without `member` or `admin` (`rbac`); seeded
//! resources belong to `admin`.
//!
//! # Time
//!
//! Every resource stores the instants its states begin (from
//! [`Durations`]); each read computes the current state, so there are no
//! background tasks. Ids, tokens and fault rates come from a generator
//! seeded by `SimConfig::seed`.
//!
//! # Example
//!
//! ```no_run
//! # async fn demo() -> anyhow::Result<()> {
//! use stacksnap_sim::{FaultRule, SimConfig, Simulator};
//! let sim = Simulator::start(SimConfig::default(), "127.0.0.1:0".parse()?)?;
//! let server = sim.create_image_backed_server("web-1", &["backup"], &[("tier", "web")], true);
//! sim.inject(FaultRule::error("nova.create_image", 409).times(1));
//! // … point a client at sim.auth_url() …
//! assert_eq!(sim.count("nova.create_image"), 0);
//! sim.shutdown().await;
//! # let _ = server; Ok(()) }
//! ```

mod admin;
mod cinder;
mod config;
mod digest;
mod faults;
mod glance;
mod handle;
mod http;
mod identity;
mod inspect;
mod inventory;
mod keystone;
mod log;
mod nova;
mod rbac;
mod reply;
mod rng;
mod roles;
mod state;
mod table;
mod tenancy;
mod timeline;

use std::{net::SocketAddr, path::PathBuf};

use anyhow::Context as _;
use clap::Args;

pub use config::{
    AdminUser, ApplicationCredential, Durations, ImageSeed, Inventory, MemberUser, ServerSeed,
    SimConfig, VolumeSeed,
};
pub use faults::{Fault, FaultRule};
pub use handle::{SimHandle, Simulator};
pub use identity::TrustInfo;
pub use inspect::{GroupInfo, ServerInfo, ServerVolume, VolumeInfo};
pub use log::LoggedRequest;
pub use roles::Role;

/// `stacksnap sim`: serve the OpenStack simulator.
#[derive(Debug, Clone, Args)]
pub struct SimArgs {
    /// Address to listen on.
    #[arg(long, env = "STACKSNAP_SIM_LISTEN", default_value = "127.0.0.1:5000")]
    pub listen: SocketAddr,
    /// Write a clouds.yaml here: the admin user (cloud `stacksnap-sim`), its
    /// application credential, its system scope, the members `member`,
    /// `demo`, `alt` and the readers `demo_reader`, `alt_reader`.
    #[arg(long)]
    pub clouds_yaml: Option<PathBuf>,
    /// Seed the inventory from this JSON file (default: the public image `tiny`).
    #[arg(long)]
    pub inventory: Option<PathBuf>,
    /// Seed of ids, tokens and fault decisions.
    #[arg(long, default_value_t = 1)]
    pub seed: u64,
    /// Millisecond transitions (as in the tests) instead of seconds.
    #[arg(long)]
    pub fast: bool,
    /// Highest compute microversion offered.
    #[arg(long, default_value = "2.96")]
    pub nova_max_microversion: String,
    /// Highest volume microversion offered.
    #[arg(long, default_value = "3.71")]
    pub cinder_max_microversion: String,
    /// Nova's instances quota per project (-1: unlimited). The inventory's
    /// servers count against it, so a larger inventory needs a larger one.
    #[arg(long, default_value_t = 1000, allow_negative_numbers = true)]
    pub instances_quota: i64,
    /// Cinder's snapshot quota per project (-1: unlimited).
    #[arg(long, default_value_t = 1000, allow_negative_numbers = true)]
    pub snapshot_quota: i64,
}

/// Runs `stacksnap sim` until `shutdown` completes (the binary passes Ctrl-C or SIGTERM).
///
/// # Errors
/// The inventory cannot be read, the address cannot be bound, or the
/// clouds.yaml cannot be written.
pub async fn run(args: SimArgs, shutdown: impl Future<Output = ()>) -> anyhow::Result<()> {
    let mut config = if args.fast {
        SimConfig::default()
    } else {
        SimConfig::demo()
    }
    .with_seed(args.seed)
    .with_nova_max_microversion(&args.nova_max_microversion)
    .with_cinder_max_microversion(&args.cinder_max_microversion)
    .with_instances_quota(args.instances_quota)
    .with_snapshot_quota(args.snapshot_quota);
    config = match &args.inventory {
        Some(path) => config.with_inventory_file(path)?,
        None => config.with_image(ImageSeed {
            name: "tiny".into(),
            size: 196_616,
            ..ImageSeed::default()
        }),
    };
    let sim = Simulator::start(config, args.listen)?;
    if let Some(path) = &args.clouds_yaml {
        std::fs::write(path, sim.clouds_yaml())
            .with_context(|| format!("cannot write {}", path.display()))?;
    }
    tracing::info!(url = %sim.base_url(), auth_url = %sim.auth_url(), "OpenStack simulator listening");
    println!(
        "OpenStack simulator on {base}\n  auth_url: {auth}\n  user admin / password {pw}, project admin, domain Default; members member/member-secret, demo/demo and alt/alt, readers demo_reader/demo and alt_reader/alt{yaml}\n  request log: {base}/_sim/requests, faults: {base}/_sim/faults\nPress Ctrl-C to stop.",
        base = sim.base_url(),
        auth = sim.auth_url(),
        pw = sim.config().admin.password,
        yaml = args
            .clouds_yaml
            .as_ref()
            .map(|p| format!("\n  clouds.yaml: {} (OS_CLOUD=stacksnap-sim)", p.display()))
            .unwrap_or_default(),
    );
    shutdown.await;
    sim.shutdown().await;
    Ok(())
}
