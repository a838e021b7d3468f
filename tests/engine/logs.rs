//! What the service logs as JSON lines: engine lines name their job, run and
//! policy; each change of a job's state is one line at info; request lines
//! carry the request id the response carries.

use serde_json::{Value, json};
use sqlx::PgPool;
use stacksnap::{clock::Clock as _, domain::job::JobStatus, store::runs};

use crate::helpers::{Captured, capture_json_logs, harness, spawn_app};

fn state_changes(lines: &[Value]) -> Vec<&Value> {
    lines
        .iter()
        .filter(|l| l["message"] == "job state changed")
        .collect()
}

#[sqlx::test]
async fn each_change_of_a_jobs_state_is_one_info_line_naming_job_run_and_policy(pool: PgPool) {
    // Arrange
    let captured = Captured::default();
    let _guard = capture_json_logs(&captured);
    let h = harness(pool).await;
    let server = h.sim.create_image_backed_server("web-1", &[], &[], false);
    let policy = h
        .policy(json!({
            "name": "nightly", "resource_type": "server", "targets": {"ids": [server]},
            "schedules": [{"cron": "0 2 * * *", "timezone": "UTC"}], "retention": {"keep_last": 3}
        }))
        .await;

    // Act
    let run_id = runs::insert_manual_run(&h.pool, &policy, None, h.clock.now())
        .await
        .unwrap();
    h.work().await;
    let job_id: uuid::Uuid = sqlx::query_scalar("select job_id from job where run_id = $1")
        .bind(run_id)
        .fetch_one(&h.pool)
        .await
        .unwrap();
    let job = h.finish(job_id).await;

    // Assert
    assert_eq!(job.status, JobStatus::Succeeded, "{:?}", job.error);
    let lines = captured.json_lines();
    let changes = state_changes(&lines);
    let statuses: Vec<&str> = changes
        .iter()
        .map(|l| l["status"].as_str().unwrap())
        .collect();
    assert_eq!(statuses.first(), Some(&"creating"), "{statuses:?}");
    assert_eq!(statuses.last(), Some(&"succeeded"), "{statuses:?}");
    assert!(
        statuses.windows(2).all(|w| w[0] != w[1]),
        "one line per change: {statuses:?}"
    );
    for line in &changes {
        assert_eq!(line["level"], "INFO");
        assert_eq!(line["job_id"], job_id.to_string());
        assert_eq!(line["run_id"], run_id.to_string());
        assert_eq!(line["policy_id"], policy.id.to_string());
    }
    // Every line logged within a job's step names the job, its run and its policy.
    let in_job: Vec<&Value> = lines.iter().filter(|l| l["span"] == "job").collect();
    assert!(!in_job.is_empty());
    assert!(
        in_job
            .iter()
            .all(|l| l["run_id"].is_string() && l["policy_id"].is_string())
    );
}

#[sqlx::test]
async fn a_request_line_carries_the_request_id_of_its_response(pool: PgPool) {
    // Arrange
    let captured = Captured::default();
    let _guard = capture_json_logs(&captured);
    let app = spawn_app(pool).await;

    // Act
    let response = app
        .get("/v1/policies/019ab8f0-6c1e-7d2a-9f3b-2a4c5d6e7f80")
        .await;

    // Assert
    assert_eq!(response.status(), 404);
    let request_id = response.headers()["x-request-id"].to_str().unwrap();
    let lines = captured.json_lines();
    let finished: Vec<&Value> = lines
        .iter()
        .filter(|l| l["message"] == "request finished" && l["request_id"] == request_id)
        .collect();
    assert_eq!(finished.len(), 1, "{}", captured.text());
    assert_eq!(finished[0]["status"], 404);
    assert_eq!(finished[0]["route"], "/v1/policies/{id}");
}
