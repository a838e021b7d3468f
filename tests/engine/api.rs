//! The engine behind the HTTP API: run now, runs and jobs, one-off snapshots with `?wait`.

use std::{sync::Arc, time::Duration};

use serde_json::{Value, json};
use sqlx::PgPool;
use stacksnap::{clock::SystemClock, engine::EngineConfig, startup::RunningService};
use stacksnap_sim::{Fault, FaultRule, SimConfig, SimHandle, Simulator};

use crate::helpers::{cloud_for, engine_config, start_service};

struct Live {
    base: String,
    http: reqwest::Client,
    sim: SimHandle,
    /// Stops the service when the test drops it.
    _service: RunningService,
}

/// The whole service on the system clock: API, scheduler and workers, against a simulator.
async fn live(pool: PgPool) -> Live {
    let sim = Simulator::start(SimConfig::default(), "127.0.0.1:0".parse().unwrap()).unwrap();
    // Retention runs only when a test asks, so what it sees is stable.
    let config = EngineConfig {
        prune_interval: Duration::from_secs(3600),
        ..engine_config()
    };
    let service = start_service(pool, Arc::new(SystemClock), Some(cloud_for(&sim)), config).await;
    Live {
        base: format!("http://{}", service.local_addr()),
        http: reqwest::Client::new(),
        sim,
        _service: service,
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
    /// Snapshots a server with `?wait`, failing the test unless the job succeeds.
    async fn snapshot_and_wait(&self, server: &str) -> Value {
        let body = json!({"resource_type": "server", "resource_id": server});
        let job: Value = self
            .post("/v1/snapshots?wait=30s", body)
            .await
            .json()
            .await
            .unwrap();
        assert_eq!(job["status"], "succeeded", "{job}");
        job
    }
    async fn delete(&self, path: &str) -> reqwest::Response {
        self.http
            .delete(format!("{}{path}", self.base))
            .send()
            .await
            .unwrap()
    }
    /// Polls `path` until `field` equals `wanted`, for up to 30s.
    async fn until(&self, path: &str, field: &str, wanted: &str) -> Value {
        let mut last = Value::Null;
        for _ in 0..300 {
            last = self.get(path).await;
            if last[field] == wanted {
                return last;
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
        panic!("{path}: {field} never became {wanted}: {last}");
    }
    /// Creates a policy over `ids` and fires it, returning the policy and the finished run.
    async fn policy_run(&self, name: &str, ids: &[&str], keep_last: u32) -> (Value, Value) {
        let policy: Value = self
            .post(
                "/v1/policies",
                json!({"name": name, "resource_type": "server", "targets": {"ids": ids},
                       "schedules": [{"cron": "0 2 * * *"}], "retention": {"keep_last": keep_last}}),
            )
            .await
            .json()
            .await
            .unwrap();
        let run = self.fire(&policy).await;
        (policy, run)
    }
    async fn fire(&self, policy: &Value) -> Value {
        let path = format!("/v1/policies/{}/run", policy["id"].as_str().unwrap());
        let run: Value = self.post(&path, json!({})).await.json().await.unwrap();
        self.until(
            &format!("/v1/runs/{}", run["id"].as_str().unwrap()),
            "status",
            "succeeded",
        )
        .await
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

#[sqlx::test]
async fn managed_snapshots_are_listed_read_and_deleted_piece_by_piece(pool: PgPool) {
    let live = live(pool).await;
    let server = live.sim.create_volume_backed_server("db", 2, false);
    let job = live.snapshot_and_wait(&server).await;

    let list = live
        .get(&format!("/v1/snapshots?resource_id={server}"))
        .await;
    let snapshot = &list["items"][0];
    assert_eq!(snapshot["job_id"], job["id"]);
    assert_eq!(snapshot["state"], "available");
    assert_eq!(snapshot["volume_snapshot_ids"].as_array().unwrap().len(), 2);
    assert_eq!(
        snapshot["kept_by"],
        Value::Null,
        "no policy's retention applies to a one-off"
    );
    let path = format!("/v1/snapshots/{}", snapshot["id"].as_str().unwrap());
    assert_eq!(live.get(&path).await["id"], snapshot["id"]);

    let response = live.delete(&path).await;
    assert_eq!(response.status(), 202);
    live.until(&path, "state", "deleted").await;
    assert_eq!(live.get("/v1/snapshots?state=bogus").await["status"], 422);
}

#[sqlx::test]
async fn the_retention_preview_shows_what_would_be_kept_and_deleted_with_reasons(pool: PgPool) {
    let live = live(pool).await;
    let server = live.sim.create_image_backed_server("web", &[], &[], false);
    let (policy, _) = live.policy_run("keep-one", &[&server], 1).await;
    tokio::time::sleep(Duration::from_millis(20)).await;
    live.fire(&policy).await;

    let preview = live
        .get(&format!(
            "/v1/policies/{}/retention-preview",
            policy["id"].as_str().unwrap()
        ))
        .await;

    let keep = preview["keep"].as_array().unwrap();
    let delete = preview["delete"].as_array().unwrap();
    assert_eq!((keep.len(), delete.len()), (1, 1), "{preview}");
    assert_eq!(keep[0]["kept_by"], json!(["last", "newest"]));
    assert_eq!(delete[0]["kept_by"], json!([]));
    assert_eq!(delete[0]["state"], "available", "a preview deletes nothing");
}

#[sqlx::test]
async fn deleting_a_policy_keeps_or_deletes_its_snapshots_as_asked(pool: PgPool) {
    let live = live(pool).await;
    let a = live.sim.create_image_backed_server("a", &[], &[], false);
    let b = live.sim.create_image_backed_server("b", &[], &[], false);
    let (keeper, _) = live.policy_run("keeper", &[&a], 3).await;
    let (deleter, _) = live.policy_run("deleter", &[&b], 3).await;
    let kept = live.get(&format!("/v1/snapshots?resource_id={a}")).await["items"][0].clone();
    let doomed = live.get(&format!("/v1/snapshots?resource_id={b}")).await["items"][0].clone();

    assert_eq!(
        live.delete(&format!("/v1/policies/{}", keeper["id"].as_str().unwrap()))
            .await
            .status(),
        204
    );
    let response = live
        .delete(&format!(
            "/v1/policies/{}?snapshots=delete",
            deleter["id"].as_str().unwrap()
        ))
        .await;
    assert_eq!(response.status(), 204);

    live.until(
        &format!("/v1/snapshots/{}", doomed["id"].as_str().unwrap()),
        "state",
        "deleted",
    )
    .await;
    let survivor = live
        .get(&format!("/v1/snapshots/{}", kept["id"].as_str().unwrap()))
        .await;
    assert_eq!(survivor["state"], "available");
    assert_eq!(survivor["policy_id"], Value::Null, "its policy is gone");
    let image = live
        .sim
        .requests()
        .iter()
        .filter(|r| r.operation == "glance.delete_image")
        .count();
    assert_eq!(image, 1, "only the deleted policy's image went");
}
