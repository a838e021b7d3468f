//! `POST /v1/snapshots?wait=` and `GET /v1/jobs/{id}?wait=`: the request is answered when its job ends because
//! something wakes it (the engine in its own replica, LISTEN/NOTIFY from another),
//! not because it keeps reading the database. The fallback poll is set to an hour
//! and the wait to 30 minutes: a request that is not woken would only be answered
//! after 30 minutes, so the client gives up long before (and the test fails).

use std::{sync::Arc, time::Duration};

use chrono::TimeDelta;
use serde_json::{Value, json};
use sqlx::PgPool;
use stacksnap::{
    clock::SystemClock,
    config::Settings,
    domain::job::JobStatus,
    engine::{JobEvents, Outcome},
    startup::RunningService,
};
use stacksnap_sim::{SimConfig, Simulator};

use crate::helpers::{
    cloud_for, engine_config, harness, start_service, start_service_with, test_settings,
};

fn no_fallback_poll() -> Settings {
    Settings {
        wait_poll_interval: Duration::from_secs(3600),
        ..test_settings()
    }
}

async fn snapshot_and_wait(service: &RunningService, volume: &str) -> (u16, Value) {
    let response = reqwest::Client::new()
        .post(format!(
            "http://{}/v1/snapshots?wait=30m",
            service.local_addr()
        ))
        .timeout(Duration::from_secs(60))
        .json(&json!({"resource_type": "volume", "resource_id": volume}))
        .send()
        .await
        .expect("answered before the client gives up");
    (response.status().as_u16(), response.json().await.unwrap())
}

#[sqlx::test]
async fn a_wait_ends_when_this_replicas_engine_ends_the_job(pool: PgPool) {
    // Arrange
    let sim = Simulator::start(SimConfig::default(), "127.0.0.1:0".parse().unwrap()).unwrap();
    let volume = sim.create_volume("data", 1, &[]);
    let service = start_service_with(
        no_fallback_poll(),
        pool,
        Arc::new(SystemClock),
        Some(cloud_for(&sim)),
        engine_config(),
    )
    .await;

    // Act
    let (status, job) = snapshot_and_wait(&service, &volume).await;

    // Assert
    assert_eq!(status, 200, "{job}");
    assert_eq!(job["status"], "succeeded");
}

#[sqlx::test]
async fn a_job_read_with_a_wait_is_answered_when_the_job_ends(pool: PgPool) {
    // Arrange: a job under way, asked for without waiting.
    let sim = Simulator::start(SimConfig::default(), "127.0.0.1:0".parse().unwrap()).unwrap();
    let volume = sim.create_volume("data", 1, &[]);
    let service = start_service_with(
        no_fallback_poll(),
        pool,
        Arc::new(SystemClock),
        Some(cloud_for(&sim)),
        engine_config(),
    )
    .await;
    let client = reqwest::Client::new();
    let base = format!("http://{}", service.local_addr());
    let created: Value = client
        .post(format!("{base}/v1/snapshots"))
        .json(&json!({"resource_type": "volume", "resource_id": volume}))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    let id = created["id"].as_str().unwrap();

    // Act
    let response = client
        .get(format!("{base}/v1/jobs/{id}?wait=30m"))
        .timeout(Duration::from_secs(60))
        .send()
        .await
        .expect("answered before the client gives up");

    // Assert: answered at the job's end, carrying no `reused` (only POST's answers do).
    assert_eq!(response.status(), 200);
    let job: Value = response.json().await.unwrap();
    assert_eq!(job["status"], "succeeded", "{job}");
    assert!(job.get("reused").is_none(), "{job}");
    assert_eq!(created["reused"], false);
}

#[sqlx::test]
async fn a_wait_on_an_api_replica_ends_when_another_replica_ends_the_job(pool: PgPool) {
    // Arrange: the request goes to a replica without an engine; another replica
    // does the work and ends the job.
    let sim = Simulator::start(SimConfig::default(), "127.0.0.1:0".parse().unwrap()).unwrap();
    let volume = sim.create_volume("data", 1, &[]);
    let api = start_service_with(
        no_fallback_poll(),
        pool.clone(),
        Arc::new(SystemClock),
        None,
        engine_config(),
    )
    .await;
    let _engine = start_service(
        pool,
        Arc::new(SystemClock),
        Some(cloud_for(&sim)),
        engine_config(),
    )
    .await;

    // Act
    let (status, job) = snapshot_and_wait(&api, &volume).await;

    // Assert
    assert_eq!(status, 200, "{job}");
    assert_eq!(job["status"], "succeeded");
}

#[sqlx::test]
async fn the_engine_tells_its_replica_when_it_ends_a_job(pool: PgPool) {
    // Arrange
    let h = harness(pool).await;
    let events = JobEvents::default();
    let engine = h.replica().with_job_events(events.clone());
    let volume = h.sim.create_volume("data", 1, &[]);
    let job = h.adhoc("volume", &volume, json!({})).await;
    let mut watch = events.watch(job);

    // Act: this engine alone works the job to its end.
    for _ in 0..200 {
        while engine.execute_next().await.unwrap() == Outcome::Worked {}
        if h.job(job).await.status.is_terminal() {
            break;
        }
        h.clock.advance(TimeDelta::milliseconds(200));
        tokio::time::sleep(Duration::from_millis(15)).await;
    }

    // Assert: the end was told, not only written (a zero timeout: told already).
    assert_eq!(h.job(job).await.status, JobStatus::Succeeded);
    tokio::time::timeout(Duration::ZERO, watch.ended())
        .await
        .expect("the watch was told the job ended");
}

#[sqlx::test]
async fn a_crash_consistent_snapshot_is_not_reused_for_a_request_that_requires_quiescing(
    pool: PgPool,
) {
    // Arrange: a server without the guest agent has a fresh, crash-consistent snapshot.
    let h = harness(pool.clone()).await;
    let app = crate::helpers::spawn_app_on(pool, h.clock.clone()).await;
    let server = h.sim.create_image_backed_server("web", &[], &[], false);
    let first = h.finish(h.adhoc("server", &server, json!({})).await).await;
    assert_eq!(first.status, JobStatus::Succeeded, "{:?}", first.error);

    // Act: within the window, but asking for a quiesced snapshot; then without asking.
    let body = |consistency: &str| {
        json!({"resource_type": "server", "resource_id": server,
               "consistency": consistency, "if_older_than": "6h"})
    };
    let required = app
        .post_json("/v1/snapshots", &body("quiesce_required"))
        .await;
    let required_status = required.status().as_u16();
    let required: Value = required.json().await.unwrap();
    let preferred: Value = app
        .post_json("/v1/snapshots", &body("quiesce_preferred"))
        .await
        .json()
        .await
        .unwrap();

    // Assert: a crash-consistent snapshot does not answer a request that requires
    // quiescing (a new job is made, which says why it cannot be); it answers one
    // that only prefers it.
    assert_eq!(required_status, 202, "{required}");
    assert_eq!(required["reused"], false, "{required}");
    assert_ne!(required["id"], first.job_id.to_string().as_str());
    assert_eq!(preferred["reused"], true, "{preferred}");
}
