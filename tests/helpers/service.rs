//! The one way tests start the service: `startup::start`, the path `stacksnap
//! serve` takes, on a random port and a test database; and typed request helpers.

use std::{net::SocketAddr, sync::Arc, time::Duration};

use reqwest::{Response, header};
use serde_json::{Value, json};
use sqlx::PgPool;
use stacksnap::{
    clock::{Clock, ManualClock},
    config::{AuthMode, Settings},
    engine::EngineConfig,
    openstack::{CloudConfig, OpenStack, SessionOptions, retry::RetryPolicy},
    startup::{self, Dependencies, RunningService},
};
use stacksnap_sim::{SimConfig, SimHandle, Simulator};

/// The instant the test clock shows when an app starts.
pub const TEST_NOW: &str = "2026-11-25T12:00:00Z";

/// A running application and what a test needs to talk to it.
pub struct TestApp {
    pub addr: SocketAddr,
    pub client: reqwest::Client,
    pub pool: PgPool,
    pub clock: ManualClock,
    /// Stops the service when the test drops it.
    _service: RunningService,
}

/// Settings for a test app: a random port, the default limits.
pub fn test_settings() -> Settings {
    Settings {
        listen: "127.0.0.1:0".parse().unwrap(),
        tls_cert: None,
        tls_key: None,
        metrics_listen: None,
        database_url: None,
        db_max_connections: 5,
        request_timeout: Duration::from_secs(30),
        header_read_timeout: Duration::from_secs(30),
        body_limit: 1024 * 1024,
        no_engine: true,
        workers: 1,
        max_in_flight: 50,
        orphan_grace: Duration::from_secs(3600),
        history_retention: Duration::from_secs(90 * 86400),
        api_db_max_connections: 3,
        wait_poll_interval: Duration::from_millis(200),
        // The tests of everything but authentication run without it; those of
        // authentication start the service with `spawn_app_with_keystone`.
        auth: AuthMode::None,
        token_cache_ttl: Duration::from_secs(300),
        webhook_deny_private: false,
    }
}

/// Starts the service on `pool` as `stacksnap serve` does, on a random port: the
/// API and, when there is a `cloud`, the engine with `engine` as its settings.
/// Dropping the returned service stops it.
pub async fn start_service(
    pool: PgPool,
    clock: Arc<dyn Clock>,
    cloud: Option<OpenStack>,
    engine: EngineConfig,
) -> RunningService {
    start_service_with(test_settings(), pool, clock, cloud, engine).await
}

/// [`start_service`] with `settings` (the engine runs when there is a `cloud`).
pub async fn start_service_with(
    settings: Settings,
    pool: PgPool,
    clock: Arc<dyn Clock>,
    cloud: Option<OpenStack>,
    engine: EngineConfig,
) -> RunningService {
    let settings = Settings {
        no_engine: cloud.is_none(),
        ..settings
    };
    let auth = startup::authenticator(&settings, cloud.as_ref()).expect("an authenticator");
    let deps = Dependencies {
        db: pool,
        clock,
        cloud,
        auth,
    };
    startup::start(&settings, deps, engine)
        .await
        .expect("the service starts")
}

/// Starts the API alone (`--no-engine`) on `pool` with a manual clock at [`TEST_NOW`].
pub async fn spawn_app(pool: PgPool) -> TestApp {
    start(pool, None).await
}

/// Starts the application with a simulated cloud for the endpoints that read
/// the cloud directly (the engine runs too, with nothing to do), and returns the simulator.
pub async fn spawn_app_with_cloud(pool: PgPool) -> (TestApp, SimHandle) {
    let sim = Simulator::start(SimConfig::default(), "127.0.0.1:0".parse().unwrap()).unwrap();
    let config =
        CloudConfig::from_clouds_yaml(&sim.clouds_yaml(), "stacksnap-sim", "simulator").unwrap();
    // Retries quickly: a test should not wait for real backoff.
    let options = SessionOptions {
        request_timeout: Duration::from_secs(10),
        connect_timeout: Duration::from_secs(2),
        retry: RetryPolicy {
            max_attempts: 2,
            base_delay: Duration::from_millis(10),
            max_delay: Duration::from_millis(50),
        },
    };
    let cloud = OpenStack::new(config, options).unwrap();
    (start(pool, Some(cloud)).await, sim)
}

/// Starts the API alone (`--no-engine`) on `pool` and `clock`: for a test that
/// drives an engine step by step on the same database and clock.
pub async fn spawn_app_on(pool: PgPool, clock: ManualClock) -> TestApp {
    start_on(pool, None, clock).await
}

async fn start(pool: PgPool, cloud: Option<OpenStack>) -> TestApp {
    start_on(pool, cloud, ManualClock::new(TEST_NOW.parse().unwrap())).await
}

async fn start_on(pool: PgPool, cloud: Option<OpenStack>, clock: ManualClock) -> TestApp {
    let service = start_service(
        pool.clone(),
        Arc::new(clock.clone()),
        cloud,
        EngineConfig::default(),
    )
    .await;
    TestApp {
        addr: service.local_addr(),
        client: reqwest::Client::new(),
        pool,
        clock,
        _service: service,
    }
}

/// A valid policy body named `name`.
pub fn policy_body(name: &str) -> Value {
    json!({
        "name": name,
        "resource_type": "server",
        "targets": {"ids": ["4f1d6a52-0b52-4a8e-9c43-1d0c8e3f2a10"], "selector": {"tags": ["backup"]}},
        "schedules": [{"cron": "0 2 * * *", "timezone": "Europe/Berlin"}],
        "retention": {"keep_last": 3, "keep_daily": 7}
    })
}

impl TestApp {
    /// Absolute URL of `path`.
    pub fn url(&self, path: &str) -> String {
        format!("http://{}{}", self.addr, path)
    }

    pub async fn get(&self, path: &str) -> Response {
        self.client.get(self.url(path)).send().await.unwrap()
    }

    pub async fn post_json(&self, path: &str, body: &Value) -> Response {
        self.client
            .post(self.url(path))
            .json(body)
            .send()
            .await
            .unwrap()
    }

    pub async fn post_policy(&self, body: &Value) -> Response {
        self.post_json("/v1/policies", body).await
    }

    /// Creates a policy and returns its JSON, failing the test unless it is 201.
    pub async fn create_policy(&self, body: &Value) -> Value {
        let response = self.post_policy(body).await;
        assert_eq!(
            response.status(),
            201,
            "create failed: {}",
            response.text().await.unwrap()
        );
        response.json().await.unwrap()
    }

    pub async fn patch_policy(&self, id: &str, patch: &Value, if_match: Option<&str>) -> Response {
        let mut request = self
            .client
            .patch(self.url(&format!("/v1/policies/{id}")))
            .header(header::CONTENT_TYPE, "application/merge-patch+json")
            .body(patch.to_string());
        if let Some(tag) = if_match {
            request = request.header(header::IF_MATCH, tag);
        }
        request.send().await.unwrap()
    }

    pub async fn delete_policy(&self, id: &str, if_match: Option<&str>) -> Response {
        let mut request = self.client.delete(self.url(&format!("/v1/policies/{id}")));
        if let Some(tag) = if_match {
            request = request.header(header::IF_MATCH, tag);
        }
        request.send().await.unwrap()
    }
}

/// Reads a problem+json body, checking its media type and status.
pub async fn problem(response: Response, status: u16) -> Value {
    assert_eq!(response.status(), status);
    assert_eq!(
        response.headers()[header::CONTENT_TYPE],
        "application/problem+json",
        "errors are problem documents"
    );
    let body: Value = response.json().await.unwrap();
    assert_eq!(body["status"], status);
    assert!(
        body["type"]
            .as_str()
            .unwrap()
            .starts_with("urn:stacksnap:problem:")
    );
    assert!(body["title"].is_string() && body["detail"].is_string());
    body
}

/// The `field` of every error in a 422 problem.
pub fn error_fields(problem: &Value) -> Vec<String> {
    problem["errors"]
        .as_array()
        .expect("a 422 lists errors")
        .iter()
        .map(|e| e["field"].as_str().unwrap().to_owned())
        .collect()
}

/// Starts the API with `--auth keystone` against a simulator started with
/// `sim_config`: tokens are validated by the simulator's Keystone with the
/// admin's credentials (the service user), trusted for `token_cache_ttl`. The
/// engine does not run (requests only record work); the orphan finder reads
/// the simulator.
pub async fn spawn_app_with_keystone(
    pool: PgPool,
    sim_config: SimConfig,
    token_cache_ttl: Duration,
) -> (TestApp, SimHandle) {
    let sim = Simulator::start(sim_config, "127.0.0.1:0".parse().unwrap()).unwrap();
    let cloud = sim_cloud(&sim, "stacksnap-sim");
    let settings = Settings {
        auth: AuthMode::Keystone,
        token_cache_ttl,
        no_engine: true,
        ..test_settings()
    };
    let clock = ManualClock::new(TEST_NOW.parse().unwrap());
    let deps = Dependencies {
        db: pool.clone(),
        clock: Arc::new(clock.clone()),
        auth: startup::authenticator(&settings, Some(&cloud)).unwrap(),
        cloud: Some(cloud),
    };
    let service = startup::start(&settings, deps, EngineConfig::default())
        .await
        .expect("the service starts");
    let app = TestApp {
        addr: service.local_addr(),
        client: reqwest::Client::new(),
        pool,
        clock,
        _service: service,
    };
    (app, sim)
}

/// A client of the simulator's cloud `name` (from its clouds.yaml), retrying quickly.
pub fn sim_cloud(sim: &SimHandle, name: &str) -> OpenStack {
    let config = CloudConfig::from_clouds_yaml(&sim.clouds_yaml(), name, "simulator").unwrap();
    let options = SessionOptions {
        request_timeout: Duration::from_secs(10),
        connect_timeout: Duration::from_secs(2),
        retry: RetryPolicy {
            max_attempts: 2,
            base_delay: Duration::from_millis(10),
            max_delay: Duration::from_millis(50),
        },
    };
    OpenStack::new(config, options).unwrap()
}

/// A token of the simulator's user `user` (`admin`, or a member: `member`,
/// `demo`, `alt`), scoped to its project, as `openstack token issue` gets it.
pub async fn sim_token(sim: &SimHandle, user: &str) -> SimToken {
    let cloud = match user {
        "admin" => "stacksnap-sim".to_owned(),
        other => format!("stacksnap-sim-{}", other.replace('_', "-")),
    };
    let config = CloudConfig::from_clouds_yaml(&sim.clouds_yaml(), &cloud, "simulator").unwrap();
    let token = stacksnap::openstack::keystone::authenticate(&reqwest::Client::new(), &config)
        .await
        .unwrap();
    SimToken {
        value: secrecy::ExposeSecret::expose_secret(&token.value).to_owned(),
        user_id: token.user_id.unwrap(),
        project_id: token.project_id.unwrap_or_default(),
    }
}

/// A token of a simulated user, with whom it stands for.
#[derive(Debug, Clone)]
pub struct SimToken {
    pub value: String,
    pub user_id: String,
    pub project_id: String,
}

impl TestApp {
    /// A request to `path` carrying `token` in `X-Auth-Token`.
    pub fn with_token(
        &self,
        method: reqwest::Method,
        path: &str,
        token: &str,
    ) -> reqwest::RequestBuilder {
        self.client
            .request(method, self.url(path))
            .header("X-Auth-Token", token)
    }
}
