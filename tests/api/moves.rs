//! Moves through `POST /v1/snapshots/{id}/restore` (issue 12, item 2): the
//! 422s of `?delete_source=after_active` and `confirm`, and of an
//! availability zone Cinder would not make the volumes in.

use std::time::Duration;

use reqwest::Method;
use serde_json::{Value, json};
use sqlx::PgPool;
use stacksnap_sim::SimConfig;
use uuid::Uuid;

use crate::helpers::{
    SimToken, TestApp, error_fields, problem, sim_token, spawn_app_with_keystone,
};

async fn call(app: &TestApp, who: &SimToken, path: &str, body: &Value) -> reqwest::Response {
    app.with_token(Method::POST, path, &who.value)
        .json(body)
        .send()
        .await
        .unwrap()
}

/// A managed snapshot of `who`'s project as a finished one-off job of
/// `resource_type` leaves it, taken of `resource_id` in zone `nova`; a
/// server one with Cinder snapshots when `volume_backed`.
async fn snapshot_of(
    app: &TestApp,
    who: &SimToken,
    resource_type: &str,
    resource_id: &str,
    volume_backed: bool,
) -> Uuid {
    let one_off = json!({"resource_type": resource_type, "resource_id": resource_id});
    let response = call(app, who, "/v1/snapshots", &one_off).await;
    assert_eq!(response.status(), 202);
    let job: Value = response.json().await.unwrap();
    let job_id: Uuid = job["id"].as_str().unwrap().parse().unwrap();
    let pieces = if resource_type == "volume" || volume_backed {
        json!([{"snapshot_id": "s-1", "volume_id": "v-1", "device": "/dev/vda", "boot_index": 0,
                "status": "available", "progress": "100%", "size_gb": 2}])
    } else {
        json!([])
    };
    sqlx::query(
        "update job set status = 'succeeded', finished_at = now(), source_az = 'nova', \
         image_id = case when resource_type = 'server' then 'img-1' end, volume_snapshots = $2 \
         where job_id = $1",
    )
    .bind(job_id)
    .bind(pieces)
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

async fn restore_jobs(app: &TestApp) -> i64 {
    sqlx::query_scalar("select count(*) from job where kind = 'restore'")
        .fetch_one(&app.pool)
        .await
        .unwrap()
}

#[sqlx::test]
async fn delete_source_is_refused_without_a_confirm_naming_the_source_server(pool: PgPool) {
    // Arrange
    let (app, sim) =
        spawn_app_with_keystone(pool, SimConfig::default(), Duration::from_secs(300)).await;
    let demo = sim_token(&sim, "demo").await;
    let server = Uuid::new_v4().to_string();
    let snapshot = snapshot_of(&app, &demo, "server", &server, false).await;
    let path = format!("/v1/snapshots/{snapshot}/restore");
    let moving = format!("{path}?delete_source=after_active");

    // Act and assert
    for (path, body, fields) in [
        (&moving, json!({}), vec!["confirm"]),
        (
            &moving,
            json!({"confirm": "another-server"}),
            vec!["confirm"],
        ),
        (&path, json!({"confirm": server}), vec!["confirm"]),
        (&moving, json!({"size": 3}), vec!["size", "confirm"]),
    ] {
        let problem = problem(call(&app, &demo, path, &body).await, 422).await;
        assert_eq!(error_fields(&problem), fields, "{path} {body}");
    }
    let unknown = format!("{path}?delete_source=now");
    let problem = problem(
        call(&app, &demo, &unknown, &json!({"confirm": server})).await,
        422,
    )
    .await;
    assert_eq!(error_fields(&problem), ["delete_source"]);
    assert_eq!(restore_jobs(&app).await, 0);

    // ... and the confirmed move is queued, asking to delete its source.
    let response = call(&app, &demo, &moving, &json!({"confirm": server})).await;
    assert_eq!(response.status(), 202);
    let job: Value = response.json().await.unwrap();
    assert_eq!(job["restore"]["delete_source"], "after_active");
    assert_eq!(job["resource_id"], server.as_str());
}

#[sqlx::test]
async fn delete_source_is_refused_for_a_volume_snapshot(pool: PgPool) {
    // Arrange
    let (app, sim) =
        spawn_app_with_keystone(pool, SimConfig::default(), Duration::from_secs(300)).await;
    let demo = sim_token(&sim, "demo").await;
    let volume = Uuid::new_v4().to_string();
    let snapshot = snapshot_of(&app, &demo, "volume", &volume, false).await;

    // Act
    let problem = problem(
        call(
            &app,
            &demo,
            &format!("/v1/snapshots/{snapshot}/restore?delete_source=after_active"),
            &json!({"confirm": volume}),
        )
        .await,
        422,
    )
    .await;

    // Assert
    assert_eq!(error_fields(&problem), ["delete_source"]);
    assert_eq!(restore_jobs(&app).await, 0);
}

#[sqlx::test]
async fn another_zone_is_refused_for_a_volume_and_a_volume_backed_server_not_an_image_backed_one(
    pool: PgPool,
) {
    // Arrange
    let (app, sim) =
        spawn_app_with_keystone(pool, SimConfig::default(), Duration::from_secs(300)).await;
    let demo = sim_token(&sim, "demo").await;
    let id = || Uuid::new_v4().to_string();
    let volume = snapshot_of(&app, &demo, "volume", &id(), false).await;
    let volume_backed = snapshot_of(&app, &demo, "server", &id(), true).await;
    let image_backed = snapshot_of(&app, &demo, "server", &id(), false).await;
    let elsewhere = json!({"availability_zone": "az2"});

    // Act and assert
    for snapshot in [volume, volume_backed] {
        let path = format!("/v1/snapshots/{snapshot}/restore");
        let problem = problem(call(&app, &demo, &path, &elsewhere).await, 422).await;
        assert_eq!(error_fields(&problem), ["availability_zone"]);
        let reason = problem["errors"][0]["message"].as_str().unwrap();
        assert!(reason.contains("cloned_volume_same_az"), "{reason}");
        assert!(reason.contains("\"nova\""), "{reason}");
        let same = call(&app, &demo, &path, &json!({"availability_zone": "nova"})).await;
        assert_eq!(same.status(), 202, "the snapshot's own zone is fine");
    }
    let path = format!("/v1/snapshots/{image_backed}/restore");
    let moved = call(&app, &demo, &path, &elsewhere).await;
    assert_eq!(moved.status(), 202, "an image-backed server moves");
}
