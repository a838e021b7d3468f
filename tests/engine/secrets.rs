//! No secret reaches the logs or an answer. A whole one-off snapshot (taken,
//! listed, deleted) and failing cloud calls go through the API with every target
//! logging at debug level, `log` records (reqwest, sqlx) included; the capture,
//! the answers and the cloud client's `Debug` are searched for the simulator
//! admin's password, its application-credential secret and every token it issued.

use std::{sync::Arc, time::Duration};

use serde_json::{Value, json};
use sqlx::PgPool;
use stacksnap::{clock::SystemClock, openstack::OpenStack};
use stacksnap_sim::{Fault, FaultRule, SimConfig, SimHandle, Simulator};

use crate::helpers::{Captured, capture_logs, cloud_named, engine_config, start_service};

/// A simulator whose credentials cannot be mistaken for any other text.
fn simulator() -> SimHandle {
    let mut config = SimConfig::default();
    config.admin.password = format!("admin-pw-{}", uuid::Uuid::new_v4().simple());
    config.application_credential.secret = format!("appcred-{}", uuid::Uuid::new_v4().simple());
    Simulator::start(config, "127.0.0.1:0".parse().unwrap()).unwrap()
}

struct Client {
    base: String,
    http: reqwest::Client,
    /// `X-Auth-Token` sent with every request (keystone mode).
    token: Option<String>,
}

impl Client {
    async fn send(
        &self,
        method: reqwest::Method,
        path: &str,
        body: Option<Value>,
    ) -> (u16, String) {
        let mut request = self.http.request(method, format!("{}{path}", self.base));
        if let Some(token) = &self.token {
            request = request.header("X-Auth-Token", token);
        }
        if let Some(body) = body {
            request = request.json(&body);
        }
        let response = request.send().await.unwrap();
        (response.status().as_u16(), response.text().await.unwrap())
    }

    async fn snapshot(&self, server: &str) -> (u16, Value) {
        let body = json!({"resource_type": "server", "resource_id": server});
        let (status, text) = self
            .send(reqwest::Method::POST, "/v1/snapshots?wait=30s", Some(body))
            .await;
        (status, serde_json::from_str(&text).unwrap())
    }

    async fn get(&self, path: &str) -> Value {
        let (_, text) = self.send(reqwest::Method::GET, path, None).await;
        serde_json::from_str(&text).unwrap()
    }
}

/// What the API answered along the way, to be searched as the log is.
struct Journey {
    answers: Vec<String>,
    cloud: OpenStack,
}

/// A one-off snapshot taken, listed and deleted; then a cloud that echoes the
/// token in its error messages, and one that refuses the token twice (so the
/// client authenticates again and fails).
async fn whole_job(pool: PgPool, sim: &SimHandle, cloud_name: &str) -> Journey {
    let cloud = cloud_named(sim, cloud_name);
    let service = start_service(
        pool,
        Arc::new(SystemClock),
        Some(cloud.clone()),
        engine_config(),
    )
    .await;
    let client = Client {
        base: format!("http://{}", service.local_addr()),
        http: reqwest::Client::new(),
        token: None,
    };
    let mut answers = Vec::new();

    // A job that succeeds, and its snapshot deleted piece by piece.
    let server = sim.create_volume_backed_server("logged", 2, false);
    let (status, job) = client.snapshot(&server).await;
    assert_eq!(
        (status, job["status"].as_str()),
        (200, Some("succeeded")),
        "{job}"
    );
    answers.push(job.to_string());
    let listed = client
        .get(&format!("/v1/snapshots?resource_id={server}"))
        .await;
    let path = format!(
        "/v1/snapshots/{}",
        listed["items"][0]["id"].as_str().unwrap()
    );
    let (status, text) = client.send(reqwest::Method::DELETE, &path, None).await;
    assert_eq!(status, 202, "{text}");
    let mut deleted = Value::Null;
    for _ in 0..300 {
        deleted = client.get(&path).await;
        if deleted["state"] == "deleted" {
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert_eq!(deleted["state"], "deleted", "{deleted}");
    answers.extend([listed.to_string(), deleted.to_string()]);

    // Nova refuses the snapshot with a message that quotes the token it was sent.
    let echoed = sim.live_tokens().join(" ");
    assert!(!echoed.is_empty(), "the simulator issued a token");
    sim.inject(FaultRule::new(
        "nova.create_image",
        Fault::Error {
            status: 400,
            retry_after: None,
            message: Some(format!("Invalid token: {echoed}")),
        },
    ));
    let other = sim.create_image_backed_server("refused", &[], &[], false);
    let (status, failed) = client.snapshot(&other).await;
    assert_eq!(
        (status, failed["status"].as_str()),
        (200, Some("failed")),
        "{failed}"
    );
    assert!(
        failed.to_string().contains("Invalid token: [redacted]"),
        "the cloud's message is kept, its token is not: {failed}"
    );
    answers.push(failed.to_string());
    sim.clear_faults();

    // Glance echoes the token in a 500 (retried, then given up), then refuses
    // every token (a new one is issued in between).
    sim.inject(FaultRule::new(
        "glance.list_images",
        Fault::Error {
            status: 500,
            retry_after: None,
            message: Some(format!("backend rejected {echoed}")),
        },
    ));
    let (status, text) = client.send(reqwest::Method::GET, "/v1/orphans", None).await;
    assert_eq!(status, 502, "{text}");
    answers.push(text);
    sim.clear_faults();
    sim.inject(FaultRule::error("glance.list_images", 401));
    let (status, text) = client.send(reqwest::Method::GET, "/v1/orphans", None).await;
    assert_eq!(status, 502, "{text}");
    answers.push(text);
    sim.clear_faults();

    service.shutdown_token().cancel();
    service.stopped().await.unwrap();
    Journey { answers, cloud }
}

/// Fails the test when any secret of `sim` or token it issued is in `text`.
fn assert_no_secret(sim: &SimHandle, what: &str, text: &str) {
    let config = sim.config();
    let tokens = sim.live_tokens();
    assert!(
        tokens.len() >= 2,
        "a token, and one after re-authentication: {tokens:?}"
    );
    let mut secrets = vec![
        config.admin.password.clone(),
        config.application_credential.secret.clone(),
    ];
    secrets.extend(tokens);
    for secret in &secrets {
        assert!(
            !text.contains(secret.as_str()),
            "{what} contains the secret {secret:?}"
        );
    }
}

async fn nothing_secret_is_logged_or_answered(pool: PgPool, cloud_name: &str) {
    // Arrange
    let captured = Captured::default();
    let _logging = capture_logs(&captured);
    let sim = simulator();

    // Act
    let journey = whole_job(pool, &sim, cloud_name).await;

    // Assert: the capture saw the whole job at debug level, and no secret.
    let logs = captured.text();
    for expected in [
        "authenticated to Keystone",
        "OpenStack call",
        "token refused; authenticating again",
        "a call to the cloud failed",
        "sqlx::query",
        "[redacted]",
    ] {
        assert!(logs.contains(expected), "{expected:?} was not captured");
    }
    assert_no_secret(&sim, "the debug log", &logs);
    for answer in &journey.answers {
        assert_no_secret(&sim, "an API answer", answer);
    }
    let debug = format!("{:?}", journey.cloud);
    assert!(
        debug.contains("Token"),
        "the client holds its token: {debug}"
    );
    assert_no_secret(&sim, "the cloud client's Debug", &debug);
}

#[sqlx::test]
async fn a_whole_job_with_a_password_logs_no_secret_or_token_at_debug_level(pool: PgPool) {
    nothing_secret_is_logged_or_answered(pool, "stacksnap-sim").await;
}

#[sqlx::test]
async fn a_whole_job_with_an_application_credential_logs_no_secret_or_token(pool: PgPool) {
    nothing_secret_is_logged_or_answered(pool, "stacksnap-sim-appcred").await;
}

/// In keystone mode, a tenant's policy acts with a trust: the demo user's
/// token and password, the service's, and the trust's id appear in no log
/// line and no answer, from the policy's creation through a run, a one-off
/// snapshot and the policy's deletion with its snapshots.
#[sqlx::test]
async fn a_tenants_policy_and_its_trust_log_no_token_or_trust_id(pool: PgPool) {
    let captured = Captured::default();
    let _guard = capture_logs(&captured);
    let sim = simulator();
    let cloud = cloud_named(&sim, "stacksnap-sim");
    let settings = stacksnap::config::Settings {
        auth: stacksnap::config::AuthMode::Keystone,
        ..crate::helpers::test_settings()
    };
    let service = crate::helpers::start_service_with(
        settings,
        pool.clone(),
        Arc::new(SystemClock),
        Some(cloud.clone()),
        engine_config(),
    )
    .await;
    let demo = crate::helpers::sim_token(&sim, "demo").await;
    let client = Client {
        base: format!("http://{}", service.local_addr()),
        http: reqwest::Client::new(),
        token: Some(demo.value.clone()),
    };
    let server = sim
        .create_server(&stacksnap_sim::ServerSeed {
            name: "tenant-web".into(),
            volumes: vec![stacksnap_sim::VolumeSeed {
                name: "tenant-root".into(),
                size: 1,
                ..Default::default()
            }],
            project: Some("demo".into()),
            ..Default::default()
        })
        .unwrap();
    let mut answers = Vec::new();

    let (status, text) = client
        .send(
            reqwest::Method::POST,
            "/v1/policies",
            Some(json!({"name": "tenant-nightly", "resource_type": "server",
                "targets": {"ids": [server]}, "schedules": [{"cron": "0 2 * * *", "timezone": "UTC"}],
                "retention": {"keep_last": 1}})),
        )
        .await;
    assert_eq!(status, 201, "{text}");
    let policy: Value = serde_json::from_str(&text).unwrap();
    answers.push(text);
    let trusts: Vec<String> = sqlx::query_scalar("select trust_id from trust")
        .fetch_all(&pool)
        .await
        .unwrap();
    assert_eq!(trusts.len(), 1, "the policy's trust is recorded");
    let id = policy["id"].as_str().unwrap();
    let (status, text) = client
        .send(
            reqwest::Method::POST,
            &format!("/v1/policies/{id}/run"),
            None,
        )
        .await;
    assert_eq!(status, 202, "{text}");
    answers.push(text);
    let mut jobs = Value::Null;
    for _ in 0..300 {
        jobs = client.get(&format!("/v1/jobs?policy_id={id}")).await;
        if jobs["items"][0]["status"] == "succeeded" {
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert_eq!(
        jobs["items"][0]["status"],
        "succeeded",
        "{jobs} {}",
        client.get(&format!("/v1/runs?policy_id={id}")).await
    );
    answers.push(jobs.to_string());
    let (status, one_off) = client.snapshot(&server).await;
    assert_eq!(
        (status, one_off["status"].as_str()),
        (200, Some("succeeded")),
        "{one_off}"
    );
    answers.push(one_off.to_string());
    answers.push(client.get(&format!("/v1/policies/{id}")).await.to_string());
    let (status, text) = client
        .send(
            reqwest::Method::DELETE,
            &format!("/v1/policies/{id}?snapshots=delete"),
            None,
        )
        .await;
    assert_eq!(status, 204, "{text}");
    service.shutdown_token().cancel();
    service.stopped().await.unwrap();

    let all_trusts: Vec<String> = sqlx::query_scalar("select trust_id from trust")
        .fetch_all(&pool)
        .await
        .unwrap();
    let mut secrets: Vec<String> = trusts;
    secrets.extend(all_trusts);
    secrets.extend(sim.trusts().into_iter().map(|t| t.id));
    secrets.push(demo.value.clone());
    secrets.push(sim.config().admin.password.clone());
    let logs = captured.text();
    assert!(
        logs.contains("authenticated to Keystone"),
        "the capture saw the service work"
    );
    for secret in secrets.iter().filter(|s| !s.is_empty()) {
        assert!(
            !logs.contains(secret.as_str()),
            "the log holds the secret {secret:?}"
        );
        for answer in &answers {
            assert!(
                !answer.contains(secret.as_str()),
                "an answer holds {secret:?}: {answer}"
            );
        }
    }
    assert_no_secret(&sim, "the debug log", &logs);
}
