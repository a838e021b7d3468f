//! Acceptance against a real OpenStack, the cloud `STACKSNAP_E2E_CLOUD` names in
//! the clouds.yaml that `OS_CLIENT_CONFIG_FILE` points at. Ignored unless asked
//! for (`-- --include-ignored`); asked for without a cloud, it fails.
//!
//! It builds its own image and servers through the standard APIs (an image-backed
//! one and a volume-backed one with two volumes), runs a policy and a one-off
//! snapshot with the real engine, checks the artefacts in Glance and Cinder, and
//! cleans up. `groups` does the same for a volume-group policy; `tenancy` runs the
//! whole service in keystone mode with the service's and the tenants' own users.

mod cloud;
mod groups;
mod restore;
mod tenancy;

use std::{sync::Arc, time::Duration};

use chrono::TimeDelta;
use serde_json::json;
use sqlx::PgPool;
use stacksnap::{
    clock::{Clock as _, SystemClock},
    domain::{
        adhoc::AdhocSnapshotRequest,
        job::{JobStatus, RunStatus},
        policy::PolicySpec,
    },
    engine::{Engine, EngineConfig},
    openstack::OpenStack,
    startup::supervisor::Supervisor,
    store::{jobs, policies, runs},
};
use tokio_util::sync::CancellationToken;
use uuid::Uuid;

use self::cloud::Fixture;
use crate::helpers::{real_cloud, real_cloud_config};

fn engine_config() -> EngineConfig {
    EngineConfig {
        workers: 4,
        poll_interval: TimeDelta::seconds(1),
        max_poll_interval: TimeDelta::seconds(3),
        retry_delay: TimeDelta::seconds(3),
        tick: Duration::from_millis(500),
        ..EngineConfig::default()
    }
}

#[sqlx::test]
#[ignore = "needs a real OpenStack: set STACKSNAP_E2E_CLOUD and OS_CLIENT_CONFIG_FILE"]
async fn policies_and_one_off_snapshots_finish_in_a_real_glance_and_cinder(pool: PgPool) {
    let cloud = real_cloud();
    let fixture = Fixture::create(&cloud, &real_cloud_config()).await;
    // Clean up even when an assertion fails: run the checks in their own task.
    let result = tokio::spawn(exercise(pool.clone(), cloud.clone(), fixture.clone())).await;
    fixture.clean_up(&cloud).await;
    if let Err(failure) = result {
        std::panic::resume_unwind(failure.into_panic());
    }
}

async fn exercise(pool: PgPool, cloud: OpenStack, fixture: Fixture) {
    let (pool, cloud) = (&pool, &cloud);
    let clock = Arc::new(SystemClock);
    let stop = CancellationToken::new();
    let engine = Engine::new(pool.clone(), cloud.clone(), clock.clone(), engine_config());
    let running = tokio::spawn(Supervisor::start_engine(engine, stop.clone()).stopped());

    // A policy over both servers, by tag, fired by hand.
    let spec: PolicySpec = serde_json::from_value(json!({
        "name": "e2e", "resource_type": "server",
        "targets": {"selector": {"tags": [fixture.tag]}},
        "schedules": [{"cron": "@daily"}], "retention": {"keep_last": 2},
        "options": {"metadata": {"suite": "acceptance"}}
    }))
    .unwrap();
    let now = clock.now();
    let valid = spec.validate(now).unwrap();
    let policy = policies::insert_policy(
        pool,
        "default",
        Uuid::now_v7(),
        &valid,
        valid.next_run_after(now),
        None,
    )
    .await
    .unwrap();
    let run_id = runs::insert_manual_run(pool, &policy, None, now)
        .await
        .unwrap();

    // A one-off snapshot of the data volume.
    let request: AdhocSnapshotRequest = serde_json::from_value(
        json!({"resource_type": "volume", "resource_id": fixture.data_volume}),
    )
    .unwrap();
    let adhoc = request.job(request.validate().unwrap(), now);
    stacksnap::store::lifecycle::insert_adhoc_run(
        pool,
        "default",
        None,
        &adhoc,
        Default::default(),
        now,
    )
    .await
    .unwrap();

    let deadline = tokio::time::Instant::now() + Duration::from_secs(300);
    loop {
        let run = runs::fetch_run(pool, "default", run_id)
            .await
            .unwrap()
            .unwrap();
        let one_off = jobs::fetch_job(pool, "default", adhoc.job_id)
            .await
            .unwrap()
            .unwrap();
        if run.status != RunStatus::Running && one_off.status.is_terminal() {
            break;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "not finished in 5 minutes: {run:?} {one_off:?}"
        );
        tokio::time::sleep(Duration::from_secs(1)).await;
    }
    check_artefacts(pool, cloud, &fixture, run_id, &adhoc).await;
    prune_everything(pool, cloud).await;
    stop.cancel();
    running.await.unwrap();
}

async fn check_artefacts(
    pool: &PgPool,
    cloud: &OpenStack,
    fixture: &Fixture,
    run_id: Uuid,
    adhoc: &stacksnap::store::jobs::NewJob,
) {
    let filter = jobs::JobFilter {
        run_id: Some(run_id),
        ..Default::default()
    };
    let policy_jobs = jobs::list_jobs(pool, "default", &filter, None, 10)
        .await
        .unwrap();
    assert_eq!(policy_jobs.len(), 2, "both servers were selected by tag");
    for job in &policy_jobs {
        assert_eq!(job.status, JobStatus::Succeeded, "{job:?}");
        let image = cloud
            .glance()
            .get_image(job.image_id.as_deref().unwrap())
            .await
            .unwrap();
        assert_eq!(image.status, "active");
        assert_eq!(
            image.property("stacksnap_job_id"),
            Some(job.job_id.to_string().as_str())
        );
        assert_eq!(image.property("suite"), Some("acceptance"));
        if job.resource_id == fixture.volume_backed_server {
            let mapping = image.block_device_mapping().unwrap();
            assert_eq!(
                mapping.len(),
                2,
                "one Cinder snapshot per volume: {mapping:?}"
            );
            assert_eq!(job.volume_snapshots.0.len(), 2);
            for entry in mapping {
                let snapshot = cloud
                    .cinder()
                    .get_snapshot(entry.snapshot_id.as_deref().unwrap())
                    .await
                    .unwrap();
                assert_eq!(snapshot.status, "available");
            }
        } else {
            assert!(image.block_device_mapping().unwrap().is_empty());
            assert_eq!(image.property("image_type"), Some("snapshot"));
        }
    }
    let one_off = jobs::fetch_job(pool, "default", adhoc.job_id)
        .await
        .unwrap()
        .unwrap();
    assert_eq!(one_off.status, JobStatus::Succeeded, "{one_off:?}");
    let snapshot = cloud
        .cinder()
        .get_snapshot(&one_off.volume_snapshots.0[0].snapshot_id)
        .await
        .unwrap();
    assert_eq!(snapshot.status, "available");
    assert_eq!(
        snapshot.metadata.get("stacksnap_job_id"),
        Some(&adhoc.job_id.to_string())
    );
}

/// Deletes every snapshot the suite made through stacksnap and checks that real
/// Glance and Cinder keep nothing behind: no image, and no Cinder snapshot of a
/// volume-backed server's image.
async fn prune_everything(pool: &PgPool, cloud: &OpenStack) {
    let now = SystemClock.now();
    let all = stacksnap::store::snapshots::list_snapshots(
        pool,
        "default",
        &Default::default(),
        None,
        100,
    )
    .await
    .unwrap();
    assert_eq!(
        all.len(),
        3,
        "two server snapshots and one volume snapshot are managed"
    );
    for snapshot in &all {
        stacksnap::store::snapshots::request_delete(pool, "default", snapshot.snapshot_id, now)
            .await
            .unwrap();
    }
    let deadline = tokio::time::Instant::now() + Duration::from_secs(180);
    loop {
        let states: Vec<String> = sqlx::query_scalar("select state from snapshot")
            .fetch_all(pool)
            .await
            .unwrap();
        if states.iter().all(|s| s == "deleted") {
            break;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "not deleted in 3 minutes: {states:?}"
        );
        tokio::time::sleep(Duration::from_secs(1)).await;
    }
    for snapshot in &all {
        if let Some(image_id) = &snapshot.image_id {
            assert!(
                cloud
                    .glance()
                    .get_image(image_id)
                    .await
                    .unwrap_err()
                    .is_not_found(),
                "image {image_id} is gone"
            );
        }
        for piece in &snapshot.volume_snapshots.0 {
            let gone = cloud
                .cinder()
                .get_snapshot(&piece.snapshot_id)
                .await
                .unwrap_err();
            assert!(
                gone.is_not_found(),
                "Cinder snapshot {} is gone, not orphaned",
                piece.snapshot_id
            );
        }
    }
}
