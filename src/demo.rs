//! `stacksnap demo`: the built-in OpenStack simulator with a small inventory,
//! the service pointed at it, and sample policies that fire every minute.

use std::{collections::BTreeMap, net::SocketAddr, path::PathBuf};

use chrono::{DateTime, Utc};
use sqlx::PgPool;
use uuid::Uuid;

use stacksnap_sim::{ImageSeed, ServerSeed, SimConfig, SimHandle, Simulator, VolumeSeed};

use crate::{
    config::AuthMode,
    delegation::{self, Delegator},
    domain::policy::PolicySpec,
    http::auth::UNAUTHENTICATED_PROJECT,
    openstack::{
        CloudConfig, OpenStack, SessionOptions,
        keystone::{self, Token},
    },
    store::policies as store,
};

/// The simulator's user whose token the demo prints: a member of project `demo`.
pub const DEMO_USER: &str = "demo";

/// The demo's cloud: a simulator and a client for it.
pub struct DemoCloud {
    pub sim: SimHandle,
    pub cloud: OpenStack,
    pub clouds_yaml: PathBuf,
}

/// Starts the simulator with an image-backed server, a volume-backed server with
/// two volumes (its image has the guest agent) and a standalone volume: in the
/// `demo` user's project with `--auth keystone` (whose policies act there with
/// its trust), in the admin's with `--auth none` (the service's own project).
///
/// # Errors
/// The simulator cannot start or its clouds.yaml cannot be written.
pub fn start_cloud(auth: AuthMode) -> anyhow::Result<DemoCloud> {
    let project = match auth {
        AuthMode::Keystone => Some(DEMO_USER.to_owned()),
        AuthMode::None => None,
    };
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
        project: project.clone(),
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
        project: project.clone(),
        ..ServerSeed::default()
    })?;
    sim.seed_volume(&VolumeSeed {
        name: "shared-data".into(),
        size: 1,
        metadata: BTreeMap::from([("backup".to_owned(), "demo".to_owned())]),
        project,
        ..VolumeSeed::default()
    })?;
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

impl DemoCloud {
    /// A token of the simulator's member `user` (scoped to its project), as
    /// `openstack token issue` would get it.
    ///
    /// # Errors
    /// The simulator has no such user or does not answer.
    pub async fn member_token(&self, user: &str) -> anyhow::Result<Token> {
        let config = CloudConfig::from_clouds_yaml(
            &self.sim.clouds_yaml(),
            &format!("stacksnap-sim-{user}"),
            "the demo simulator",
        )?;
        Ok(keystone::authenticate(&reqwest::Client::new(), &config).await?)
    }
}

/// Creates the sample policies unless policies of those names exist: in the
/// project of the simulator's `demo` user with `--auth keystone` (so that its
/// token sees them), in project `default` with `--auth none`. They select by tag
/// and metadata, so they match each new demo simulator.
///
/// # Errors
/// The database refuses the insert, or the simulator's Keystone does not answer.
pub async fn seed(
    pool: &PgPool,
    cloud: &DemoCloud,
    auth: AuthMode,
    now: DateTime<Utc>,
) -> anyhow::Result<()> {
    let (project, created_by, trust) = match auth {
        AuthMode::None => (UNAUTHENTICATED_PROJECT.to_owned(), None, None),
        AuthMode::Keystone => {
            let token = cloud.member_token(DEMO_USER).await?;
            let project = token
                .project_id
                .clone()
                .ok_or_else(|| anyhow::anyhow!("the demo user's token has no project"))?;
            let user = token
                .user_id
                .clone()
                .ok_or_else(|| anyhow::anyhow!("the demo user's token names no user"))?;
            // As `POST /v1/policies` would: the policies act with a trust from `demo`.
            let who = Delegator {
                token: &token.value,
                user_id: &user,
                application_credential: false,
                trust_scoped: false,
            };
            let trust = delegation::delegate(&cloud.cloud, pool, &who, &project, now).await?;
            (project, Some(user), Some(trust))
        }
    };
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
        let inserted = store::insert_delegated_policy(
            pool,
            &project,
            Uuid::now_v7(),
            &valid,
            next_run_at,
            created_by.as_deref(),
            trust.as_ref(),
        )
        .await;
        match inserted {
            Ok(policy) => tracing::info!(policy = %policy.spec.name, "created a demo policy"),
            // From an earlier demo: its trust was made in that run's simulator.
            Err(sqlx::Error::Database(e)) if e.is_unique_violation() => {
                if let Some(trust) = &trust {
                    crate::store::trusts::renew_named_policy_trust(
                        pool,
                        &project,
                        &valid.name,
                        trust,
                    )
                    .await?;
                }
            }
            Err(e) => return Err(e.into()),
        }
    }
    Ok(())
}

/// Prints where to look and what to try: with `--auth keystone`, a token of the
/// simulator's `demo` user for the curl lines, and how to get another.
pub async fn print_welcome(addr: SocketAddr, cloud: &DemoCloud, auth: AuthMode) {
    let server = "{\"resource_type\":\"server\",\"resource_id\":\"<id>\"}";
    let sim = cloud.sim.base_url();
    let yaml = cloud.clouds_yaml.display();
    let (header, token_help) = match auth {
        AuthMode::None => (
            String::new(),
            "\n  Authentication is off (--auth none): every request acts as an admin of project default.\n"
                .to_owned(),
        ),
        AuthMode::Keystone => match cloud.member_token(DEMO_USER).await {
            Ok(token) => (
                " -H \"X-Auth-Token: $TOKEN\"".to_owned(),
                format!(
                    "\n  Requests need a Keystone token (--auth keystone); this one is the simulator's\
                     \n  user `demo` (roles member, reader in project demo), valid for {ttl}:\
                     \n  export TOKEN={token}\
                     \n  Another (or another user's: alt/alt, member/member-secret, admin/secret):\
                     \n  export TOKEN=$(OS_CLIENT_CONFIG_FILE={yaml} openstack --os-cloud stacksnap-sim-demo token issue -f value -c id)\
                     \n  export TOKEN=$(curl -si {sim}/identity/v3/auth/tokens -H 'content-type: application/json' -d '{body}' | sed -n 's/^x-subject-token: //Ip' | tr -d '\\r')\n",
                    ttl = humane(cloud.sim.config().token_ttl),
                    token = secrecy::ExposeSecret::expose_secret(&token.value),
                    body = r#"{"auth":{"identity":{"methods":["password"],"password":{"user":{"name":"demo","domain":{"name":"Default"},"password":"demo"}}},"scope":{"project":{"name":"demo","domain":{"name":"Default"}}}}}"#,
                ),
            ),
            Err(e) => (
                " -H \"X-Auth-Token: $TOKEN\"".to_owned(),
                format!("\n  (cannot get a token of the demo user from the simulator: {e})\n"),
            ),
        },
    };
    println!(
        "\nstacksnap demo is running against the built-in OpenStack simulator.\n\
         \n  API docs:     http://{addr}/docs\
         \n  Policies:     http://{addr}/v1/policies   (two demo policies fire every minute)\
         \n  Runs, jobs:   http://{addr}/v1/runs   http://{addr}/v1/jobs\
         \n  Simulator:    {sim}  (request log: {sim}/_sim/requests)\
         \n  clouds.yaml:  {yaml}  (OS_CLOUD=stacksnap-sim, for the openstack CLI)\n\
         {token_help}\
         \nTry:\
         \n  curl -s{header} http://{addr}/v1/jobs | python3 -m json.tool\
         \n  curl -s{header} 'http://{addr}/v1/jobs?status=succeeded&limit=1' | python3 -m json.tool\
         \n  # a one-off snapshot that waits until it is finished (ids: OS_CLOUD=stacksnap-sim OS_CLIENT_CONFIG_FILE={yaml} openstack server list):\
         \n  curl -s{header} -X POST 'http://{addr}/v1/snapshots?wait=2m' -H 'content-type: application/json' -d '{server}'\
         \n\nPress Ctrl-C to stop.\n",
    );
}

/// `3600s` as `1h`, `90s` as `90s`.
fn humane(duration: std::time::Duration) -> String {
    let secs = duration.as_secs();
    match secs {
        s if s >= 3600 && s % 3600 == 0 => format!("{}h", s / 3600),
        s if s >= 60 && s % 60 == 0 => format!("{}m", s / 60),
        s => format!("{s}s"),
    }
}
