//! The engine behind the HTTP API: run now, runs and jobs, one-off snapshots with `?wait`.

use std::{sync::Arc, time::Duration};

use serde_json::{Value, json};
use sqlx::PgPool;
use stacksnap::{
    clock::SystemClock,
    config::Settings,
    engine::Engine,
    sim::{Fault, FaultRule, SimConfig, SimHandle, Simulator},
    startup::Application,
};
use tokio_util::sync::CancellationToken;

use crate::helpers::{cloud_for, engine_config};

struct Live {
    base: String,
    http: reqwest::Client,
    sim: SimHandle,
    stop: CancellationToken,
}

impl Drop for Live {
    fn drop(&mut self) {
        self.stop.cancel();
    }
}

/// The whole service on the system clock: API, scheduler and workers, against a simulator.
async fn live(pool: PgPool) -> Live {
    let sim = Simulator::start(SimConfig::default(), "127.0.0.1:0".parse().unwrap()).unwrap();
    let settings = Settings {
        listen: "127.0.0.1:0".parse().unwrap(),
        database_url: None,
        db_max_connections: 5,
        request_timeout: Duration::from_secs(10),
        body_limit: 1024 * 1024,
        no_engine: false,
        workers: 2,
        max_in_flight: 50,
    };
    let stop = CancellationToken::new();
    let engine = Engine::new(
        pool.clone(),
        cloud_for(&sim),
        Arc::new(SystemClock),
        engine_config(),
    );
    tokio::spawn(engine.run(stop.clone()));
    let app = Application::build(&settings, pool, Arc::new(SystemClock))
        .await
        .unwrap();
    let base = format!("http://{}", app.local_addr().unwrap());
    tokio::spawn(app.run_until_stopped(stop.clone()));
    Live {
        base,
        http: reqwest::Client::new(),
        sim,
        stop,
    }
}

impl Live {
    async fn post(&self, path: &str, body: Value) -> reqwest::Response {
        self.http
            .post(format!("{}{path}", self.base))
            .json(&body)
            .send()
            .await
            .unwrap()
    }
    async fn get(&self, path: &str) -> Value {
        self.http
            .get(format!("{}{path}", self.base))
            .send()
            .await
            .unwrap()
            .json()
            .await
            .unwrap()
    }
}

#[sqlx::test]
async fn a_waiting_snapshot_request_answers_200_when_the_job_ends(pool: PgPool) {
    let live = live(pool).await;
    let server = live.sim.create_volume_backed_server("ci-target", 2, false);

    let response = live
        .post(
            "/v1/snapshots?wait=30s",
            json!({"resource_type": "server", "resource_id": server, "name": "pre-deploy"}),
        )
        .await;

    assert_eq!(response.status(), 200);
    let job: Value = response.json().await.unwrap();
    assert_eq!(job["status"], "succeeded", "{job}");
    assert_eq!(job["volume_snapshots"].as_array().unwrap().len(), 2);
    assert!(
        job["volume_snapshots"]
            .as_array()
            .unwrap()
            .iter()
            .all(|s| s["status"] == "available")
    );
    assert!(job["image_id"].is_string());
}

#[sqlx::test]
async fn a_waiting_snapshot_request_answers_202_when_the_wait_runs_out(pool: PgPool) {
    let live = live(pool).await;
    let volume = live.sim.create_volume("slow", 1, &[]);
    live.sim.inject(FaultRule::new(
        "cinder.create_snapshot",
        Fault::SnapshotStuck,
    ));

    let response = live
        .post(
            "/v1/snapshots?wait=1s",
            json!({"resource_type": "volume", "resource_id": volume}),
        )
        .await;

    assert_eq!(response.status(), 202);
    let location = response.headers()["location"].to_str().unwrap().to_owned();
    let job: Value = response.json().await.unwrap();
    assert!(
        ["pending", "creating", "tracking"].contains(&job["status"].as_str().unwrap()),
        "{job}"
    );
    assert_eq!(
        location,
        format!("/v1/jobs/{}", job["id"].as_str().unwrap())
    );

    // The job can be cancelled once, then it has ended.
    let cancel = format!("{location}/cancel");
    assert_eq!(live.post(&cancel, json!({})).await.status(), 200);
    let again = live.post(&cancel, json!({})).await;
    assert_eq!(again.status(), 409);
    assert_eq!(live.get(&location).await["status"], "cancelled");
}

#[sqlx::test]
async fn a_bad_wait_is_a_422_naming_it(pool: PgPool) {
    let live = live(pool).await;
    let response = live.post("/v1/snapshots?wait=2h", json!({"resource_type": "volume", "resource_id": "7d9c4a1e-0000-4000-8000-000000000000"})).await;
    assert_eq!(response.status(), 422);
    let problem: Value = response.json().await.unwrap();
    assert_eq!(problem["errors"][0]["field"], "wait");
}

#[sqlx::test]
async fn run_now_fires_a_policy_whose_run_and_jobs_can_be_followed(pool: PgPool) {
    let live = live(pool).await;
    let a = live
        .sim
        .create_image_backed_server("a", &["nightly"], &[], false);
    let b = live
        .sim
        .create_image_backed_server("b", &["nightly"], &[], true);
    let policy: Value = live
        .post(
            "/v1/policies",
            json!({"name": "nightly", "resource_type": "server", "targets": {"selector": {"tags": ["nightly"]}},
                   "schedules": [{"cron": "0 2 * * *"}], "retention": {"keep_last": 7}}),
        )
        .await
        .json()
        .await
        .unwrap();

    let response = live
        .post(
            &format!("/v1/policies/{}/run", policy["id"].as_str().unwrap()),
            json!({}),
        )
        .await;
    assert_eq!(response.status(), 202);
    let run: Value = response.json().await.unwrap();
    assert_eq!(run["trigger"], "manual");
    let run_path = format!("/v1/runs/{}", run["id"].as_str().unwrap());

    let mut finished = Value::Null;
    for _ in 0..300 {
        finished = live.get(&run_path).await;
        if finished["status"] != "running" {
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert_eq!(finished["status"], "succeeded", "{finished}");
    assert_eq!(finished["jobs"]["succeeded"], 2);

    let jobs = live
        .get(&format!("/v1/jobs?run_id={}", run["id"].as_str().unwrap()))
        .await;
    let mut resources: Vec<&str> = jobs["items"]
        .as_array()
        .unwrap()
        .iter()
        .map(|j| j["resource_id"].as_str().unwrap())
        .collect();
    resources.sort_unstable();
    let mut expected = [a.as_str(), b.as_str()];
    expected.sort_unstable();
    assert_eq!(resources, expected);
    let consistencies: Vec<&str> = jobs["items"]
        .as_array()
        .unwrap()
        .iter()
        .map(|j| j["consistency"].as_str().unwrap())
        .collect();
    assert!(
        consistencies.contains(&"crash_consistent") && consistencies.contains(&"unknown"),
        "{consistencies:?}"
    );

    let runs = live
        .get(&format!(
            "/v1/runs?policy_id={}",
            policy["id"].as_str().unwrap()
        ))
        .await;
    assert_eq!(runs["items"].as_array().unwrap().len(), 1);
    assert_eq!(live.get("/v1/jobs?status=failed").await["items"], json!([]));
}
