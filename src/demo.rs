//! `stacksnap demo`: the built-in OpenStack simulator with a small inventory,
//! the service pointed at it, and sample policies that fire every minute.

use std::{collections::BTreeMap, net::SocketAddr, path::PathBuf};

use chrono::{DateTime, Utc};
use sqlx::PgPool;
use uuid::Uuid;

use stacksnap_sim::{ImageSeed, ServerSeed, SimConfig, SimHandle, Simulator, VolumeSeed};

use crate::{
    domain::policy::PolicySpec,
    openstack::{CloudConfig, OpenStack, SessionOptions},
    store::policies as store,
};

/// The demo's cloud: a simulator and a client for it.
pub struct DemoCloud {
    pub sim: SimHandle,
    pub cloud: OpenStack,
    pub clouds_yaml: PathBuf,
}

/// Starts the simulator with an image-backed server, a volume-backed server with
/// two volumes (its image has the guest agent) and a standalone volume.
///
/// # Errors
/// The simulator cannot start or its clouds.yaml cannot be written.
pub fn start_cloud() -> anyhow::Result<DemoCloud> {
    let config = SimConfig::demo()
        .with_image(ImageSeed {
            name: "cirros".into(),
            size: 196_616,
            ..ImageSeed::default()
        })
        .with_image(ImageSeed {
            name: "ubuntu-qga".into(),
            size: 196_616,
            properties: BTreeMap::from([("hw_qemu_guest_agent".to_owned(), "yes".into())]),
            ..ImageSeed::default()
        });
    let sim = Simulator::start(config, "127.0.0.1:0".parse().expect("a valid address"))?;
    let tags = vec!["demo".to_owned()];
    sim.create_server(&ServerSeed {
        name: "web-1".into(),
        image: Some("cirros".into()),
        tags: tags.clone(),
        ..ServerSeed::default()
    })?;
    sim.create_server(&ServerSeed {
        name: "db-1".into(),
        volumes: vec![
            VolumeSeed {
                name: "db-1-root".into(),
                size: 1,
                image: Some("ubuntu-qga".into()),
                ..VolumeSeed::default()
            },
            VolumeSeed {
                name: "db-1-data".into(),
                size: 1,
                ..VolumeSeed::default()
            },
        ],
        tags,
        ..ServerSeed::default()
    })?;
    sim.create_volume("shared-data", 1, &[("backup", "demo")]);
    let clouds_yaml = std::env::temp_dir().join("stacksnap-demo-clouds.yaml");
    std::fs::write(&clouds_yaml, sim.clouds_yaml())?;
    let config =
        CloudConfig::from_clouds_yaml(&sim.clouds_yaml(), "stacksnap-sim", "the demo simulator")?;
    let cloud = OpenStack::new(config, SessionOptions::default())?;
    Ok(DemoCloud {
        sim,
        cloud,
        clouds_yaml,
    })
}

/// Creates the sample policies unless policies of those names exist. They select
/// by tag and metadata, so they match each new demo simulator.
///
/// # Errors
/// The database refuses the insert.
pub async fn seed(pool: &PgPool, now: DateTime<Utc>) -> anyhow::Result<()> {
    let policies = [
        serde_json::json!({
            "name": "demo-servers-every-minute",
            "description": "Made by `stacksnap demo`: every server tagged `demo`, every minute.",
            "resource_type": "server",
            "targets": {"selector": {"tags": ["demo"]}},
            "schedules": [{"cron": "* * * * *", "timezone": "UTC"}],
            "retention": {"keep_last": 5, "keep_within": "1h"}
        }),
        serde_json::json!({
            "name": "demo-volumes-every-minute",
            "description": "Made by `stacksnap demo`: every volume with metadata backup=demo, every minute.",
            "resource_type": "volume",
            "targets": {"selector": {"metadata": {"backup": "demo"}}},
            "schedules": [{"cron": "* * * * *", "timezone": "UTC"}],
            "retention": {"keep_last": 3}
        }),
    ];
    for json in policies {
        let spec: PolicySpec = serde_json::from_value(json)?;
        let valid = spec
            .validate(now)
            .map_err(|errors| anyhow::anyhow!("a demo policy is invalid: {errors:?}"))?;
        let next_run_at = valid.next_run_after(now);
        match store::insert_policy(pool, "default", Uuid::now_v7(), &valid, next_run_at).await {
            Ok(policy) => tracing::info!(policy = %policy.spec.name, "created a demo policy"),
            Err(sqlx::Error::Database(e)) if e.is_unique_violation() => {}
            Err(e) => return Err(e.into()),
        }
    }
    Ok(())
}

/// Prints where to look and what to try.
pub fn print_welcome(addr: SocketAddr, cloud: &DemoCloud) {
    let server = "{\"resource_type\":\"server\",\"resource_id\":\"<id>\"}";
    println!(
        "\nstacksnap demo is running against the built-in OpenStack simulator.\n\
         \n  API docs:     http://{addr}/docs\
         \n  Policies:     http://{addr}/v1/policies   (two demo policies fire every minute)\
         \n  Runs, jobs:   http://{addr}/v1/runs   http://{addr}/v1/jobs\
         \n  Simulator:    {sim}  (request log: {sim}/_sim/requests)\
         \n  clouds.yaml:  {yaml}  (OS_CLOUD=stacksnap-sim, for the openstack CLI)\
         \n\nTry:\
         \n  curl -s http://{addr}/v1/jobs | python3 -m json.tool\
         \n  curl -s 'http://{addr}/v1/jobs?status=succeeded&limit=1' | python3 -m json.tool\
         \n  # a one-off snapshot that waits until it is finished (ids: OS_CLOUD=stacksnap-sim OS_CLIENT_CONFIG_FILE={yaml} openstack server list):\
         \n  curl -s -X POST 'http://{addr}/v1/snapshots?wait=2m' -H 'content-type: application/json' -d '{server}'\
         \n\nPress Ctrl-C to stop.\n",
        sim = cloud.sim.base_url(),
        yaml = cloud.clouds_yaml.display(),
    );
}
