//! `stacksnap client` run as a subprocess (the real binary, its real exit
//! codes) against the whole service, API and engine, in keystone mode with the
//! simulator as the cloud: tokens from the simulator's Keystone, given in
//! `STACKSNAP_TOKEN` or fetched by the client itself from `OS_CLOUD`.

mod commands;
mod snapshots;

use std::{path::PathBuf, process::Output, sync::Arc, time::Duration};

use sqlx::PgPool;
use stacksnap::{
    clock::SystemClock,
    config::{AuthMode, Settings},
    startup::RunningService,
};
use stacksnap_sim::{ImageSeed, ServerSeed, SimConfig, SimHandle, Simulator, VolumeSeed};

use crate::helpers::{cloud_for, engine_config, start_service_with, test_settings};

/// The service and its cloud, and the clouds.yaml a client may read.
pub struct Rig {
    pub sim: SimHandle,
    pub url: String,
    clouds_yaml: PathBuf,
    _service: RunningService,
}

/// How the client gets its token.
pub enum Auth<'a> {
    /// `STACKSNAP_TOKEN`.
    Token(&'a str),
    /// `OS_CLOUD` naming a cloud of the simulator's clouds.yaml: the client asks Keystone.
    Cloud(&'a str),
}

/// What a client run gave: its exit code and what it printed.
#[derive(Debug)]
pub struct Run {
    pub code: i32,
    pub stdout: String,
    pub stderr: String,
}

impl Run {
    /// Stdout as JSON (`--json`), failing the test with both streams when it is not.
    pub fn json(&self) -> serde_json::Value {
        serde_json::from_str(&self.stdout)
            .unwrap_or_else(|e| panic!("stdout is not JSON ({e}): {self:?}"))
    }
}

/// Starts the service in keystone mode with its engine, against a fresh simulator.
pub async fn rig(pool: PgPool) -> Rig {
    let sim = Simulator::start(SimConfig::default(), "127.0.0.1:0".parse().unwrap()).unwrap();
    let settings = Settings {
        auth: AuthMode::Keystone,
        ..test_settings()
    };
    let service = start_service_with(
        settings,
        pool,
        Arc::new(SystemClock),
        Some(cloud_for(&sim)),
        engine_config(),
    )
    .await;
    let clouds_yaml =
        std::env::temp_dir().join(format!("stacksnap-client-{}.yaml", uuid::Uuid::new_v4()));
    std::fs::write(&clouds_yaml, sim.clouds_yaml()).unwrap();
    Rig {
        url: format!("http://{}", service.local_addr()),
        sim,
        clouds_yaml,
        _service: service,
    }
}

impl Drop for Rig {
    fn drop(&mut self) {
        std::fs::remove_file(&self.clouds_yaml).ok();
    }
}

impl Rig {
    /// Runs `stacksnap client <args>` with only the environment it is given.
    pub async fn client(&self, auth: Auth<'_>, args: &[&str]) -> Run {
        let mut command = tokio::process::Command::new(env!("CARGO_BIN_EXE_stacksnap"));
        command.arg("client").args(args).kill_on_drop(true);
        for (name, _) in std::env::vars() {
            if name.starts_with("OS_") || name.starts_with("STACKSNAP_") {
                command.env_remove(name);
            }
        }
        command.env("STACKSNAP_URL", &self.url);
        match auth {
            Auth::Token(token) => command.env("STACKSNAP_TOKEN", token),
            Auth::Cloud(cloud) => command
                .env("OS_CLIENT_CONFIG_FILE", &self.clouds_yaml)
                .env("OS_CLOUD", cloud),
        };
        let output: Output = tokio::time::timeout(Duration::from_secs(90), command.output())
            .await
            .expect("the client ends within 90 s")
            .expect("the client runs");
        Run {
            code: output.status.code().expect("the client exits, not killed"),
            stdout: String::from_utf8_lossy(&output.stdout).into_owned(),
            stderr: String::from_utf8_lossy(&output.stderr).into_owned(),
        }
    }

    /// An `ACTIVE` image-backed server of the project `demo`.
    pub fn demo_server(&self, name: &str) -> String {
        let image = self.sim.create_image(&ImageSeed {
            name: format!("{name}-image"),
            ..ImageSeed::default()
        });
        self.sim
            .create_server(&ServerSeed {
                name: name.into(),
                image: Some(image),
                project: Some("demo".into()),
                ..ServerSeed::default()
            })
            .unwrap()
    }

    /// An `available` volume of the project `demo`.
    pub fn demo_volume(&self, name: &str) -> String {
        self.sim
            .seed_volume(&VolumeSeed {
                name: name.into(),
                size: 1,
                project: Some("demo".into()),
                ..VolumeSeed::default()
            })
            .unwrap()
    }
}
