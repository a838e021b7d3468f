//! Deleting what a job made when the job could not record it (an unclear
//! create, an answer after a cancel), what Glance protects, and group
//! snapshots whose delete fails (review findings on issue 9).

use std::{sync::Arc, time::Duration};

use chrono::TimeDelta;
use reqwest::Method;
use serde_json::json;
use sqlx::PgPool;
use stacksnap::{
    clock::Clock as _,
    domain::job::JobStatus,
    engine::{Engine, Outcome, snapshot::group_description},
    openstack::{
        CloudConfig, OpenStack,
        cinder::SnapshotFilter,
        session::{Call, Service},
    },
    store::{lifecycle, snapshots},
};
use stacksnap_sim::{Fault, FaultRule, SimConfig};
use uuid::Uuid;

use crate::helpers::{Harness, engine_config, harness, harness_with, quick_session, volume_group};

async fn live_cinder_snapshots_of(h: &Harness, server: &str) -> Vec<String> {
    let server = h.cloud.nova().get_server(server).await.unwrap();
    let mut found = Vec::new();
    for volume in &server.volumes_attached {
        let filter = SnapshotFilter {
            volume_id: Some(volume.id.clone()),
            ..SnapshotFilter::default()
        };
        found.extend(
            h.cloud
                .cinder()
                .list_snapshots(&filter)
                .await
                .unwrap()
                .into_iter()
                .map(|s| format!("{} {}", s.id, s.status)),
        );
    }
    found
}

async fn images_of(h: &Harness, job_id: Uuid) -> Vec<String> {
    h.cloud
        .glance()
        .list_images(&[("stacksnap_job_id", &job_id.to_string())])
        .await
        .unwrap()
        .into_iter()
        .map(|i| i.id)
        .collect()
}

async fn group_snapshots_of(h: &Harness, group: &str) -> Vec<String> {
    h.cloud
        .cinder()
        .list_group_snapshots(Some(group))
        .await
        .unwrap()
        .into_iter()
        .filter(|g| g.group_id.as_deref() == Some(group))
        .map(|g| g.id)
        .collect()
}

/// Finding: Glance refuses to delete a protected image (403, `ProtectedImageDelete`),
/// but the deleter removes the image's Cinder snapshots (the data) first and only
/// then learns the image cannot go: the user's protected backup is destroyed.
#[sqlx::test]
async fn a_protected_images_cinder_snapshots_are_not_deleted(pool: PgPool) {
    let h = harness(pool).await;
    let server = h.sim.create_volume_backed_server("db-p", 2, false);
    let job = h.finish(h.adhoc("server", &server, json!({})).await).await;
    assert_eq!(job.status, JobStatus::Succeeded, "{:?}", job.error);
    let image_id = job.image_id.clone().unwrap();
    assert_eq!(live_cinder_snapshots_of(&h, &server).await.len(), 2);
    // The user protects this backup in Glance.
    let protect = Call::new(
        Service::Image,
        "update_image",
        Method::PATCH,
        format!("/v2/images/{image_id}"),
    )
    .json(json!([{"op": "replace", "path": "/protected", "value": true}]));
    h.cloud.session().send(&protect).await.unwrap();
    let rows = h.snapshot_rows(job.job_id).await;
    snapshots::request_delete(&h.pool, "default", rows[0].0, h.clock.now())
        .await
        .unwrap();

    let rows = h.settle_deletions(job.job_id).await;

    assert_eq!(
        images_of(&h, job.job_id).await,
        [image_id],
        "Glance kept the protected image"
    );
    let left = live_cinder_snapshots_of(&h, &server).await;
    assert_eq!(
        left.len(),
        2,
        "the protected image's Cinder snapshots were deleted (row ends {rows:?}): {left:?}"
    );
}

/// Finding: deleting the row of a job whose create was unclear searches once,
/// at once, and believes "nothing found" — while Nova may still be making the
/// snapshots and the image (the create_settle rule the job itself obeys is not
/// applied). The row ends `deleted` and Nova's image and snapshots leak.
#[sqlx::test]
async fn an_unclear_create_deleted_at_once_leaks_nothing(pool: PgPool) {
    let mut config = SimConfig::default();
    config.durations.volume_backed_create_image_call = Duration::from_millis(1500);
    let h = harness_with(pool, config).await;
    let server = h.sim.create_volume_backed_server("db-u", 2, false);
    let cfg =
        CloudConfig::from_clouds_yaml(&h.sim.clouds_yaml(), "stacksnap-sim", "simulator").unwrap();
    let mut options = quick_session();
    options.request_timeout = Duration::from_millis(300);
    let impatient = Engine::new(
        h.pool.clone(),
        OpenStack::new(cfg, options).unwrap(),
        Arc::new(h.clock.clone()),
        engine_config(),
    );
    let job_id = h.adhoc("server", &server, json!({})).await;
    for _ in 0..100 {
        while impatient.execute_next().await.unwrap() == Outcome::Worked {}
        let job = h.job(job_id).await;
        if job.error.as_ref().is_some_and(|e| e.0.code == "unclear") {
            break;
        }
        tokio::time::sleep(Duration::from_millis(15)).await;
    }
    assert_eq!(h.job(job_id).await.status, JobStatus::Creating);
    // The user cancels the job and deletes what it may have made.
    lifecycle::cancel_job(&h.pool, "default", job_id, h.clock.now(), "api")
        .await
        .unwrap();
    let rows = h.snapshot_rows(job_id).await;
    assert_eq!(rows.len(), 1, "the job's unclear create is recorded");
    snapshots::request_delete(&h.pool, "default", rows[0].0, h.clock.now())
        .await
        .unwrap();
    let rows = h.settle_deletions(job_id).await;
    // Nova finishes its call.
    tokio::time::sleep(Duration::from_millis(2000)).await;

    assert_eq!(rows[0].1, "deleted");
    let images = images_of(&h, job_id).await;
    let left = live_cinder_snapshots_of(&h, &server).await;
    assert!(
        images.is_empty() && left.is_empty(),
        "the row is `deleted` but Nova's image {images:?} and snapshots {left:?} are left"
    );
}

/// before it listed them) has no `sent` marker, so when Cinder's backend fails
/// the delete (the group snapshot goes back to `error`, as the volume manager's
/// `delete_group_snapshot` does) the deleter sends the delete again, uncounted,
/// every poll: it never reaches `delete_failed` and counts as in flight for ever.
#[sqlx::test]
async fn a_group_snapshot_whose_delete_fails_is_not_retried_for_ever(pool: PgPool) {
    let h = harness(pool).await;
    let (a, b) = (
        h.sim.create_volume("a", 1, &[]),
        h.sim.create_volume("b", 1, &[]),
    );
    let group = volume_group(&h.cloud, "default_group_type", &[&a, &b]).await;
    let job = h
        .finish(h.adhoc("volume_group", &group, json!({})).await)
        .await;
    assert_eq!(job.status, JobStatus::Succeeded, "{:?}", job.error);
    // As a job that timed out or was cancelled before it listed the members records it.
    sqlx::query("update snapshot set volume_snapshots = '[]' where job_id = $1")
        .bind(job.job_id)
        .execute(&h.pool)
        .await
        .unwrap();
    h.sim.inject(FaultRule::new(
        "cinder.delete_group_snapshot",
        Fault::GroupSnapshotDeleteError,
    ));
    let rows = h.snapshot_rows(job.job_id).await;
    snapshots::request_delete(&h.pool, "default", rows[0].0, h.clock.now())
        .await
        .unwrap();

    // Three hours of engine time, a minute at a time.
    let mut state = String::new();
    for _ in 0..180 {
        h.work().await;
        state = h.snapshot_rows(job.job_id).await[0].1.clone();
        if state != "deleting" {
            break;
        }
        h.clock.advance(TimeDelta::minutes(1));
        tokio::time::sleep(Duration::from_millis(40)).await;
    }
    let attempts: i32 =
        sqlx::query_scalar("select delete_attempts from snapshot where job_id = $1")
            .bind(job.job_id)
            .fetch_one(&h.pool)
            .await
            .unwrap();
    assert_eq!(
        state,
        "delete_failed",
        "after {} deletes sent ({attempts} attempts counted) the deletion is still `{state}`",
        h.sim.count("cinder.delete_group_snapshot")
    );
}

/// Finding: a volume-group job whose create_group_snapshot had an unclear
/// outcome and that then ends (cancelled, out of time) records an empty
/// snapshot row; its deletion's search returns nothing for a group
/// (`pieces::search`: `ResourceType::VolumeGroup => Ok(Vec::new())`), so the row
/// ends `deleted` while the group snapshot Cinder made, and its members, stay.
#[sqlx::test]
async fn a_group_jobs_unclear_create_is_found_and_deleted(pool: PgPool) {
    let h = harness(pool).await;
    let (a, b) = (
        h.sim.create_volume("a", 1, &[]),
        h.sim.create_volume("b", 1, &[]),
    );
    let group = volume_group(&h.cloud, "default_group_type", &[&a, &b]).await;
    // Cinder makes the group snapshot, then a proxy answers 503.
    h.sim
        .inject(FaultRule::reply_lost("cinder.create_group_snapshot", 503).times(1));
    let job_id = h.adhoc("volume_group", &group, json!({})).await;
    h.engine.execute_next().await.unwrap();
    let job = h.job(job_id).await;
    assert_eq!(job.status, JobStatus::Creating, "{:?}", job.error);
    assert_eq!(h.sim.count("cinder.create_group_snapshot"), 1);
    lifecycle::cancel_job(&h.pool, "default", job_id, h.clock.now(), "api")
        .await
        .unwrap();
    let rows = h.snapshot_rows(job_id).await;
    assert_eq!(
        rows.len(),
        1,
        "the job's unclear create is recorded: {rows:?}"
    );
    snapshots::request_delete(&h.pool, "default", rows[0].0, h.clock.now())
        .await
        .unwrap();
    let rows = h.settle_deletions(job_id).await;

    let description = group_description(job_id);
    let left: Vec<String> = h
        .cloud
        .cinder()
        .list_group_snapshots(Some(&group))
        .await
        .unwrap()
        .into_iter()
        .filter(|g| g.description.as_deref() == Some(description.as_str()))
        .map(|g| format!("{} {}", g.id, g.status))
        .collect();
    assert!(
        left.is_empty(),
        "the row ends {rows:?} but the job's group snapshot is left: {left:?}"
    );
}

/// Finding: a volume-group job that ends with an unclear create and nothing
/// recorded (here: cancelled before its look-up) gets an empty snapshot row
/// whose deletion searches nothing for groups (`pruner/pieces.rs` search:
/// `VolumeGroup => Ok(Vec::new())`): the group snapshot Cinder made leaks.
#[sqlx::test]
async fn a_group_snapshot_of_a_cancelled_unclear_create_is_deleted(pool: PgPool) {
    let h = harness(pool).await;
    let (a, b) = (
        h.sim.create_volume("a", 1, &[]),
        h.sim.create_volume("b", 1, &[]),
    );
    let group = volume_group(&h.cloud, "default_group_type", &[&a, &b]).await;
    h.sim
        .inject(FaultRule::reply_lost("cinder.create_group_snapshot", 503).times(1));
    let job_id = h
        .adhoc("volume_group", &group, json!({"timeout": "10m"}))
        .await;
    let unclear = h
        .drive(job_id, |j| {
            j.error.as_ref().is_some_and(|e| e.0.code == "unclear")
        })
        .await;
    assert_eq!(unclear.status, JobStatus::Creating);
    lifecycle::cancel_job(&h.pool, "default", job_id, h.clock.now(), "api")
        .await
        .unwrap();
    assert_eq!(
        group_snapshots_of(&h, &group).await.len(),
        1,
        "Cinder made it"
    );
    let rows = h.snapshot_rows(job_id).await;
    assert_eq!(rows.len(), 1, "the unclear create is recorded");

    snapshots::request_delete(&h.pool, "default", rows[0].0, h.clock.now())
        .await
        .unwrap();
    let rows = h.settle_deletions(job_id).await;

    assert_eq!(rows[0].1, "deleted");
    let left = group_snapshots_of(&h, &group).await;
    assert!(left.is_empty(), "leaked group snapshot(s): {left:?}");
}

/// Finding: the same leak after a *clear* create: the job is cancelled while
/// `POST /group_snapshots` is under way; `cancel_job` records an empty row, the
/// step's answer (the group snapshot id) goes to the job only (`record_step`'s
/// "kept" branch: `record_from_job` then hits `on conflict do nothing`).
#[sqlx::test]
async fn a_group_snapshot_answered_after_a_cancel_is_deleted(pool: PgPool) {
    let h = harness(pool).await;
    let (a, b) = (
        h.sim.create_volume("a", 1, &[]),
        h.sim.create_volume("b", 1, &[]),
    );
    let group = volume_group(&h.cloud, "default_group_type", &[&a, &b]).await;
    h.sim.inject(
        FaultRule::reply_held("cinder.create_group_snapshot", Duration::from_millis(1500)).times(1),
    );
    let job_id = h
        .adhoc("volume_group", &group, json!({"timeout": "10m"}))
        .await;
    let engine = h.engine.clone();
    let step =
        tokio::spawn(
            async move { while engine.execute_next().await.unwrap() == Outcome::Worked {} },
        );
    tokio::time::sleep(Duration::from_millis(700)).await;
    lifecycle::cancel_job(&h.pool, "default", job_id, h.clock.now(), "api")
        .await
        .unwrap();
    step.await.unwrap();
    let job = h.job(job_id).await;
    assert_eq!(job.status, JobStatus::Cancelled);
    assert!(
        job.group_snapshot_id.is_some(),
        "the job kept what the step made"
    );
    let rows = h.snapshot_rows(job_id).await;
    assert_eq!(rows.len(), 1);

    snapshots::request_delete(&h.pool, "default", rows[0].0, h.clock.now())
        .await
        .unwrap();
    let rows = h.settle_deletions(job_id).await;

    assert_eq!(rows[0].1, "deleted");
    let left = group_snapshots_of(&h, &group).await;
    assert!(left.is_empty(), "leaked group snapshot(s): {left:?}");
}

/// What the search for an unclear create finds is recorded on the row before
/// anything of it is deleted: a crash after the search loses nothing.
#[sqlx::test]
async fn what_the_search_finds_is_recorded_before_it_is_deleted(pool: PgPool) {
    // Arrange: Nova makes the image, then a proxy answers 503; the job is cancelled.
    let h = harness(pool).await;
    let server = h.sim.create_image_backed_server("web-s", &[], &[], false);
    h.sim
        .inject(FaultRule::reply_lost("nova.create_image", 503).times(1));
    let job_id = h.adhoc("server", &server, json!({})).await;
    h.engine.execute_next().await.unwrap();
    assert_eq!(h.job(job_id).await.status, JobStatus::Creating);
    lifecycle::cancel_job(&h.pool, "default", job_id, h.clock.now(), "api")
        .await
        .unwrap();
    let made = images_of(&h, job_id).await;
    assert_eq!(made.len(), 1, "Nova made the image");
    let rows = h.snapshot_rows(job_id).await;
    snapshots::request_delete(&h.pool, "default", rows[0].0, h.clock.now())
        .await
        .unwrap();
    h.clock
        .advance(engine_config().create_settle + TimeDelta::seconds(1));

    // Act: one deletion step, the search.
    assert_eq!(h.engine.delete_next().await.unwrap(), Outcome::Worked);

    // Assert
    let recorded: Option<String> =
        sqlx::query_scalar("select image_id from snapshot where snapshot_id = $1")
            .bind(rows[0].0)
            .fetch_one(&h.pool)
            .await
            .unwrap();
    assert_eq!(
        recorded.as_ref(),
        made.first(),
        "the image found is recorded"
    );
    assert_eq!(images_of(&h, job_id).await, made, "and not yet deleted");
    // The next steps delete it.
    let rows = h.settle_deletions(job_id).await;
    assert_eq!(rows[0].1, "deleted");
    assert!(images_of(&h, job_id).await.is_empty());
}
