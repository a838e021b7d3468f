//! Driving a policy's runs through the API and the harness's engine.

use serde_json::{Value, json};
use uuid::Uuid;

use super::{Harness, TestApp};

/// `GET path`, which must answer 200, as JSON.
pub async fn get_json(app: &TestApp, path: &str) -> Value {
    let response = app.get(path).await;
    assert_eq!(response.status(), 200, "{path}");
    response.json().await.unwrap()
}

/// Fires the policy now (`POST /v1/policies/{id}/run`) and drives every job of the run to success.
pub async fn run_now(h: &Harness, app: &TestApp, policy_id: &str) {
    let response = app
        .post_json(&format!("/v1/policies/{policy_id}/run"), &json!({}))
        .await;
    assert_eq!(response.status(), 202);
    let run: Value = response.json().await.unwrap();
    h.work().await;
    finish_run(h, run["id"].as_str().unwrap().parse().unwrap()).await;
}

/// Drives every job of a resolved run to success.
pub async fn finish_run(h: &Harness, run_id: Uuid) {
    let jobs: Vec<Uuid> = sqlx::query_scalar("select job_id from job where run_id = $1")
        .bind(run_id)
        .fetch_all(&h.pool)
        .await
        .unwrap();
    assert!(!jobs.is_empty(), "the run resolved no job");
    for job in jobs {
        let done = h.finish(job).await;
        assert_eq!(done.status.as_str(), "succeeded", "{done:?}");
    }
    h.work().await;
}
