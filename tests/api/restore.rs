//! `POST /v1/snapshots/{id}/restore` (issue 12, item 1): a restore end to end
//! with `?wait=`, its run and its jobs' `kind`, the checks of its body, and
//! tenancy (another project's snapshot is 404, a reader gets 403).

use std::{sync::Arc, time::Duration};

use reqwest::Method;
use serde_json::{Value, json};
use sqlx::PgPool;
use stacksnap::clock::SystemClock;
use stacksnap_sim::{SimConfig, Simulator};
use uuid::Uuid;

use crate::helpers::{
    SimToken, TestApp, cloud_for, engine_config, error_fields, problem, sim_token,
    spawn_app_with_keystone, start_service_with, test_settings,
};

async fn post(url: String, body: &Value) -> (u16, Value) {
    let response = reqwest::Client::new()
        .post(url)
        .timeout(Duration::from_secs(60))
        .json(body)
        .send()
        .await
        .unwrap();
    (response.status().as_u16(), response.json().await.unwrap())
}

async fn get(url: String) -> Value {
    reqwest::get(url).await.unwrap().json().await.unwrap()
}

#[sqlx::test]
async fn a_volume_snapshot_is_restored_and_waited_for_and_listed_by_kind(pool: PgPool) {
    // Arrange: a service with its engine, and a snapshot of a volume.
    let sim = Simulator::start(SimConfig::default(), "127.0.0.1:0".parse().unwrap()).unwrap();
    let volume = sim.create_volume("data", 1, &[]);
    let service = start_service_with(
        test_settings(),
        pool,
        Arc::new(SystemClock),
        Some(cloud_for(&sim)),
        engine_config(),
    )
    .await;
    let base = format!("http://{}", service.local_addr());
    let (status, snapshot_job) = post(
        format!("{base}/v1/snapshots?wait=30s"),
        &json!({"resource_type": "volume", "resource_id": volume}),
    )
    .await;
    assert_eq!(status, 200, "{snapshot_job}");
    assert_eq!(snapshot_job["kind"], "snapshot");
    assert!(snapshot_job.get("restored").is_none());
    let snapshot = get(format!("{base}/v1/snapshots")).await["items"][0].clone();
    let snapshot_id = snapshot["id"].as_str().unwrap();

    // Act
    let (status, job) = post(
        format!("{base}/v1/snapshots/{snapshot_id}/restore?wait=30s"),
        &json!({"name": "data-copy", "metadata": {"ticket": "OPS-1"}}),
    )
    .await;

    // Assert
    assert_eq!(status, 200, "{job}");
    assert_eq!(job["kind"], "restore");
    assert_eq!(job["status"], "succeeded", "{job}");
    assert_eq!(job["restore"]["snapshot_id"], snapshot_id);
    assert_eq!(job["restore"]["name"], "data-copy");
    let new_volume = job["restored"]["volume_id"].as_str().unwrap();
    assert_ne!(new_volume, volume);
    let runs = get(format!("{base}/v1/runs")).await;
    let run = runs["items"]
        .as_array()
        .unwrap()
        .iter()
        .find(|r| r["id"] == job["run_id"])
        .expect("the restore's run is listed");
    assert_eq!(run["trigger"], "restore");
    assert_eq!(run["policy_id"], Value::Null);
    let restores = get(format!("{base}/v1/jobs?kind=restore")).await;
    assert_eq!(restores["items"].as_array().unwrap().len(), 1);
    assert_eq!(restores["items"][0]["id"], job["id"]);
    let snapshots = get(format!("{base}/v1/jobs?kind=snapshot")).await;
    assert_eq!(snapshots["items"].as_array().unwrap().len(), 1);
    assert_eq!(snapshots["items"][0]["id"], snapshot_job["id"]);
    let listed = get(format!("{base}/v1/snapshots")).await;
    assert_eq!(
        listed["items"].as_array().unwrap().len(),
        1,
        "a restore records no snapshot"
    );
    drop(service);
}

async fn call(app: &TestApp, who: &SimToken, path: &str, body: &Value) -> reqwest::Response {
    app.with_token(Method::POST, path, &who.value)
        .json(body)
        .send()
        .await
        .unwrap()
}

/// A managed volume snapshot of `who`'s project, as a finished one-off job leaves it.
async fn volume_snapshot_of(app: &TestApp, who: &SimToken) -> Uuid {
    let one_off = json!({"resource_type": "volume", "resource_id": Uuid::new_v4()});
    let response = call(app, who, "/v1/snapshots", &one_off).await;
    assert_eq!(response.status(), 202);
    let job: Value = response.json().await.unwrap();
    let job_id: Uuid = job["id"].as_str().unwrap().parse().unwrap();
    sqlx::query(
        "update job set status = 'succeeded', finished_at = now(), \
         volume_snapshots = '[{\"snapshot_id\": \"s-1\", \"volume_id\": \"v-1\", \"device\": null, \
             \"boot_index\": null, \"status\": \"available\", \"progress\": \"100%\", \"size_gb\": 2}]' \
         where job_id = $1",
    )
    .bind(job_id)
    .execute(&app.pool)
    .await
    .unwrap();
    let mut conn = app.pool.acquire().await.unwrap();
    stacksnap::store::snapshots::record_from_job(&mut conn, job_id)
        .await
        .unwrap();
    sqlx::query_scalar("select snapshot_id from snapshot where job_id = $1")
        .bind(job_id)
        .fetch_one(&app.pool)
        .await
        .unwrap()
}

#[sqlx::test]
async fn a_restore_needs_a_member_of_the_snapshots_project(pool: PgPool) {
    // Arrange
    let (app, sim) =
        spawn_app_with_keystone(pool, SimConfig::default(), Duration::from_secs(300)).await;
    let demo = sim_token(&sim, "demo").await;
    let alt = sim_token(&sim, "alt").await;
    let reader = sim_token(&sim, "demo_reader").await;
    let snapshot = volume_snapshot_of(&app, &demo).await;
    let path = format!("/v1/snapshots/{snapshot}/restore");

    // Act and assert: another project's snapshot is not found, a reader may not write...
    problem(call(&app, &alt, &path, &json!({})).await, 404).await;
    problem(call(&app, &reader, &path, &json!({})).await, 403).await;
    let jobs: i64 = sqlx::query_scalar("select count(*) from job where kind = 'restore'")
        .fetch_one(&app.pool)
        .await
        .unwrap();
    assert_eq!(jobs, 0);
    // ... and the member gets its job.
    let response = call(&app, &demo, &path, &json!({"size": 3})).await;
    assert_eq!(response.status(), 202);
    let location = response.headers()["location"].to_str().unwrap().to_owned();
    let job: Value = response.json().await.unwrap();
    assert_eq!(
        location,
        format!("/v1/jobs/{}", job["id"].as_str().unwrap())
    );
    assert_eq!(job["kind"], "restore");
    assert_eq!(job["status"], "pending");
    assert_eq!(job["restored"], json!({}));
    assert_eq!(job["restore"]["size"], 3);
    assert_eq!(job["restore"]["source"]["volume_snapshot_id"], "s-1");
    assert_eq!(job["project_id"], demo.project_id);
}

#[sqlx::test]
async fn unknown_inapplicable_and_invalid_fields_are_named(pool: PgPool) {
    // Arrange
    let (app, sim) =
        spawn_app_with_keystone(pool, SimConfig::default(), Duration::from_secs(300)).await;
    let demo = sim_token(&sim, "demo").await;
    let snapshot = volume_snapshot_of(&app, &demo).await;
    let path = format!("/v1/snapshots/{snapshot}/restore");

    // Act and assert
    for (body, fields) in [
        (json!({"colour": "red"}), vec!["colour"]),
        (
            json!({"flavor": "m1.small", "networks": "none"}),
            vec!["flavor", "networks"],
        ),
        (json!({"size": 1}), vec!["size"]),
        (json!({"timeout": "5s"}), vec!["timeout"]),
        (
            json!({"metadata": {"stacksnap_job_id": "x"}}),
            vec!["metadata.stacksnap_job_id"],
        ),
    ] {
        let problem = problem(call(&app, &demo, &path, &body).await, 422).await;
        assert_eq!(error_fields(&problem), fields, "{body}");
    }
    let jobs: i64 = sqlx::query_scalar("select count(*) from job where kind = 'restore'")
        .fetch_one(&app.pool)
        .await
        .unwrap();
    assert_eq!(jobs, 0);
}

#[sqlx::test]
async fn only_an_available_complete_snapshot_is_restored(pool: PgPool) {
    // Arrange
    let (app, sim) =
        spawn_app_with_keystone(pool, SimConfig::default(), Duration::from_secs(300)).await;
    let demo = sim_token(&sim, "demo").await;
    let snapshot = volume_snapshot_of(&app, &demo).await;
    sqlx::query("update snapshot set state = 'deleting' where snapshot_id = $1")
        .bind(snapshot)
        .execute(&app.pool)
        .await
        .unwrap();

    // Act
    let problem = problem(
        call(
            &app,
            &demo,
            &format!("/v1/snapshots/{snapshot}/restore"),
            &json!({}),
        )
        .await,
        409,
    )
    .await;

    // Assert
    assert!(
        problem["detail"].as_str().unwrap().contains("deleting"),
        "{problem}"
    );
    problem_for_unknown(&app, &demo).await;
}

async fn problem_for_unknown(app: &TestApp, demo: &SimToken) {
    let path = format!("/v1/snapshots/{}/restore", Uuid::new_v4());
    problem(call(app, demo, &path, &json!({})).await, 404).await;
}
