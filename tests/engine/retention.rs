//! Retention and pruning: keep what the rules say, delete every piece of the rest,
//! and never anything stacksnap did not make.

use chrono::TimeDelta;
use serde_json::json;
use sqlx::PgPool;
use stacksnap::{
    clock::Clock as _,
    domain::{job::JobStatus, status::SnapshotState},
    store::{runs, snapshots},
};
use stacksnap_sim::{Fault, FaultRule};
use uuid::Uuid;

use crate::helpers::{Harness, harness};

async fn state_of(h: &Harness, id: Uuid) -> String {
    sqlx::query_scalar("select state from snapshot where snapshot_id = $1")
        .bind(id)
        .fetch_one(&h.pool)
        .await
        .unwrap()
}

/// Runs `policy` by hand at the harness clock and drives its one job to the end.
async fn take(h: &Harness, policy: &stacksnap::domain::policy::Policy) -> Uuid {
    let run_id = runs::insert_manual_run(&h.pool, policy, None, h.clock.now())
        .await
        .unwrap();
    h.work().await;
    let job_id: Uuid = sqlx::query_scalar("select job_id from job where run_id = $1")
        .bind(run_id)
        .fetch_one(&h.pool)
        .await
        .unwrap();
    let job = h.finish(job_id).await;
    assert_eq!(job.status, JobStatus::Succeeded, "{:?}", job.error);
    sqlx::query_scalar("select snapshot_id from snapshot where job_id = $1")
        .bind(job_id)
        .fetch_one(&h.pool)
        .await
        .unwrap()
}

/// Prunes, then works off every deletion step.
async fn prune(h: &Harness) {
    h.engine.prune_due().await.unwrap();
    drain_deletions(
        h,
        TimeDelta::seconds(2),
        std::time::Duration::from_millis(15),
        100,
    )
    .await;
}

/// Works until no snapshot is being deleted, letting `step` of engine time and
/// `pause` of real (simulator) time pass between rounds.
async fn drain_deletions(h: &Harness, step: TimeDelta, pause: std::time::Duration, rounds: usize) {
    for _ in 0..rounds {
        h.work().await;
        let open: i64 =
            sqlx::query_scalar("select count(*) from snapshot where state = 'deleting'")
                .fetch_one(&h.pool)
                .await
                .unwrap();
        if open == 0 {
            return;
        }
        h.clock.advance(step);
        tokio::time::sleep(pause).await;
    }
}

#[sqlx::test]
async fn pruning_a_volume_backed_snapshot_deletes_the_image_and_every_cinder_snapshot(
    pool: PgPool,
) {
    // Arrange: keep_last 1, two snapshots of a volume-backed server with two volumes.
    let h = harness(pool).await;
    let server = h.sim.create_volume_backed_server("db", 2, false);
    let policy = h
        .policy(
            json!({"name": "p", "resource_type": "server", "targets": {"ids": [server]},
                       "schedules": [{"cron": "@daily"}], "retention": {"keep_last": 1}}),
        )
        .await;
    let old = take(&h, &policy).await;
    h.clock.advance(TimeDelta::hours(1));
    let new = take(&h, &policy).await;
    let old_row = snapshots::fetch_snapshot(&h.pool, "default", old)
        .await
        .unwrap()
        .unwrap();
    assert!(
        old_row.complete && old_row.image_id.is_some() && old_row.volume_snapshots.0.len() == 2
    );

    // Act
    prune(&h).await;

    // Assert
    assert_eq!(state_of(&h, old).await, "deleted");
    assert_eq!(state_of(&h, new).await, "available", "the newest is kept");
    let image = h
        .cloud
        .glance()
        .get_image(old_row.image_id.as_deref().unwrap())
        .await
        .unwrap_err();
    assert!(image.is_not_found(), "the image is gone");
    for piece in &old_row.volume_snapshots.0 {
        let gone = h
            .cloud
            .cinder()
            .get_snapshot(&piece.snapshot_id)
            .await
            .unwrap_err();
        assert!(
            gone.is_not_found(),
            "Cinder snapshot {} is gone too, not orphaned",
            piece.snapshot_id
        );
    }
}

#[sqlx::test]
async fn retention_keeps_what_the_rules_say_and_preview_matches(pool: PgPool) {
    let h = harness(pool).await;
    let volume = h.sim.create_volume("data", 1, &[]);
    let policy = h
        .policy(
            json!({"name": "v", "resource_type": "volume", "targets": {"ids": [volume]},
                       "schedules": [{"cron": "@hourly"}], "retention": {"keep_last": 2}}),
        )
        .await;
    let mut taken = Vec::new();
    for _ in 0..4 {
        taken.push(take(&h, &policy).await);
        h.clock.advance(TimeDelta::hours(1));
    }

    let planned = stacksnap::domain::retention::plan(
        &policy.spec,
        snapshots::live_for_policy(&h.pool, policy.id)
            .await
            .unwrap(),
    );
    let doomed: Vec<Uuid> = planned
        .iter()
        .filter(|(_, k)| k.is_empty())
        .map(|(s, _)| s.snapshot_id)
        .collect();
    assert_eq!(doomed.len(), 2);
    prune(&h).await;

    let states = futures_states(&h, &taken).await;
    assert_eq!(states, ["deleted", "deleted", "available", "available"]);
    assert_eq!(h.sim.count("cinder.delete_snapshot"), 2);
}

async fn futures_states(h: &Harness, ids: &[Uuid]) -> Vec<String> {
    let mut states = Vec::new();
    for id in ids {
        states.push(state_of(h, *id).await);
    }
    states
}

#[sqlx::test]
async fn a_piece_already_gone_counts_as_deleted(pool: PgPool) {
    let h = harness(pool).await;
    let server = h.sim.create_image_backed_server("web", &[], &[], false);
    let job = h.adhoc("server", &server, json!({})).await;
    h.finish(job).await;
    let row: (Uuid, String) =
        sqlx::query_as("select snapshot_id, image_id from snapshot where job_id = $1")
            .bind(job)
            .fetch_one(&h.pool)
            .await
            .unwrap();
    h.cloud.glance().delete_image(&row.1).await.unwrap();

    snapshots::request_delete(&h.pool, "default", row.0, h.clock.now())
        .await
        .unwrap();
    prune(&h).await;

    assert_eq!(state_of(&h, row.0).await, "deleted");
}

#[sqlx::test]
async fn a_failing_delete_ends_delete_failed_after_bounded_retries_and_is_retried_later(
    pool: PgPool,
) {
    let h = harness(pool).await;
    let volume = h.sim.create_volume("data", 1, &[]);
    let job = h.adhoc("volume", &volume, json!({})).await;
    h.finish(job).await;
    let id: Uuid = sqlx::query_scalar("select snapshot_id from snapshot where job_id = $1")
        .bind(job)
        .fetch_one(&h.pool)
        .await
        .unwrap();
    h.sim
        .inject(FaultRule::error("cinder.delete_snapshot", 500));

    snapshots::request_delete(&h.pool, "default", id, h.clock.now())
        .await
        .unwrap();
    for _ in 0..12 {
        h.work().await;
        h.clock.advance(TimeDelta::minutes(2));
    }
    let row = snapshots::fetch_snapshot(&h.pool, "default", id)
        .await
        .unwrap()
        .unwrap();
    assert_eq!(row.state, SnapshotState::DeleteFailed);
    assert!(row.delete_error.unwrap().0.message.contains("500"));
    // Bounded: 5 deletion attempts, each of which the client tries 3 times (a DELETE is idempotent).
    assert_eq!(h.sim.count("cinder.delete_snapshot"), 15);

    // An hour later, with the cloud healthy again, it is retried and succeeds.
    h.sim.clear_faults();
    h.clock.advance(TimeDelta::hours(1));
    prune(&h).await;
    for _ in 0..20 {
        h.work().await;
        h.clock.advance(TimeDelta::seconds(5));
        tokio::time::sleep(std::time::Duration::from_millis(10)).await;
    }
    assert_eq!(state_of(&h, id).await, "deleted");
}

#[sqlx::test]
async fn artefacts_without_stacksnaps_job_id_are_never_deleted(pool: PgPool) {
    let h = harness(pool).await;
    let server = h.sim.create_image_backed_server("web", &[], &[], false);
    let job = h.adhoc("server", &server, json!({})).await;
    h.finish(job).await;
    // Someone else's image takes the record's place.
    let foreign = h
        .cloud
        .nova()
        .create_image(&server, "not-ours", &Default::default())
        .await
        .unwrap();
    let id: Uuid = sqlx::query_scalar(
        "update snapshot set image_id = $2 where job_id = $1 returning snapshot_id",
    )
    .bind(job)
    .bind(&foreign)
    .fetch_one(&h.pool)
    .await
    .unwrap();
    tokio::time::sleep(std::time::Duration::from_millis(300)).await;

    snapshots::request_delete(&h.pool, "default", id, h.clock.now())
        .await
        .unwrap();
    h.work().await;

    let row = snapshots::fetch_snapshot(&h.pool, "default", id)
        .await
        .unwrap()
        .unwrap();
    assert_eq!(row.state, SnapshotState::DeleteFailed);
    assert_eq!(row.delete_error.unwrap().0.code, "not_ours");
    assert!(
        h.cloud.glance().get_image(&foreign).await.is_ok(),
        "the foreign image is untouched"
    );
    assert_eq!(h.sim.count("glance.delete_image"), 0);
}

#[sqlx::test]
async fn the_leftovers_of_a_failed_job_are_recorded_and_cleaned_up_after_the_grace_period(
    pool: PgPool,
) {
    let h = harness(pool).await;
    let server = h.sim.create_volume_backed_server("db", 2, false);
    h.sim
        .inject(FaultRule::new("nova.create_image", Fault::SnapshotError));
    let job = h.finish(h.adhoc("server", &server, json!({})).await).await;
    assert_eq!(job.status, JobStatus::Failed);
    let row: (Uuid, bool) =
        sqlx::query_as("select snapshot_id, complete from snapshot where job_id = $1")
            .bind(job.job_id)
            .fetch_one(&h.pool)
            .await
            .unwrap();
    assert!(!row.1, "recorded as incomplete");

    prune(&h).await;
    assert_eq!(
        state_of(&h, row.0).await,
        "available",
        "kept during the grace period"
    );
    h.clock.advance(TimeDelta::hours(25));
    prune(&h).await;

    assert_eq!(state_of(&h, row.0).await, "deleted");
    assert!(
        h.cloud
            .glance()
            .get_image(job.image_id.as_deref().unwrap())
            .await
            .unwrap_err()
            .is_not_found()
    );
}

#[sqlx::test]
async fn a_volume_group_is_snapshotted_with_one_group_snapshot_and_pruned_whole(pool: PgPool) {
    use reqwest::Method;
    use stacksnap::openstack::session::{Call, Service};

    // Arrange: a group of two volumes, made through the block-storage API.
    let h = harness(pool).await;
    let (a, b) = (
        h.sim.create_volume("a", 1, &[]),
        h.sim.create_volume("b", 1, &[]),
    );
    let create = Call::new(Service::Volume, "create_group", Method::POST, "/groups")
        .json(json!({"group": {
        "name": "db-group", "group_type": "default_group_type", "volume_types": ["__DEFAULT__"]}}));
    let reply = h.cloud.session().send(&create).await.unwrap();
    let group: serde_json::Value = serde_json::from_slice(&reply.body).unwrap();
    let group_id = group["group"]["id"].as_str().unwrap().to_owned();
    tokio::time::sleep(std::time::Duration::from_millis(100)).await;
    let add = Call::new(
        Service::Volume,
        "update_group",
        Method::PUT,
        format!("/groups/{group_id}"),
    )
    .json(json!({"group": {"add_volumes": format!("{a},{b}")}}));
    h.cloud.session().send(&add).await.unwrap();

    // Act
    let job = h
        .finish(h.adhoc("volume_group", &group_id, json!({})).await)
        .await;

    // Assert: one group snapshot, a member per volume, all available.
    assert_eq!(job.status, JobStatus::Succeeded, "{:?}", job.error);
    let group_snapshot = job.group_snapshot_id.clone().expect("recorded");
    let mut volumes: Vec<String> = job
        .volume_snapshots
        .0
        .iter()
        .map(|s| s.volume_id.clone().unwrap())
        .collect();
    volumes.sort();
    let mut expected = vec![a, b];
    expected.sort();
    assert_eq!(volumes, expected);
    assert_eq!(h.sim.count("cinder.create_group_snapshot"), 1);

    // Pruning deletes the group snapshot, and with it every member.
    let id: Uuid = sqlx::query_scalar("select snapshot_id from snapshot where job_id = $1")
        .bind(job.job_id)
        .fetch_one(&h.pool)
        .await
        .unwrap();
    snapshots::request_delete(&h.pool, "default", id, h.clock.now())
        .await
        .unwrap();
    prune(&h).await;
    assert_eq!(state_of(&h, id).await, "deleted");
    assert!(
        h.cloud
            .cinder()
            .get_group_snapshot(&group_snapshot)
            .await
            .unwrap_err()
            .is_not_found()
    );
    for member in &job.volume_snapshots.0 {
        assert!(
            h.cloud
                .cinder()
                .get_snapshot(&member.snapshot_id)
                .await
                .unwrap_err()
                .is_not_found()
        );
    }
}

#[sqlx::test]
async fn deletions_respect_the_policy_max_concurrent(pool: PgPool) {
    // Arrange: a policy allowing one job at a time, three of its snapshots to delete, slow Cinder deletes.
    let mut config = stacksnap_sim::SimConfig::default();
    config.durations.snapshot_delete = std::time::Duration::from_secs(2);
    let h = crate::helpers::harness_with(pool, config).await;
    let volume = h.sim.create_volume("data", 1, &[]);
    let policy = h
        .policy(
            json!({"name": "one-at-a-time", "resource_type": "volume", "targets": {"ids": [volume]},
                       "schedules": [{"cron": "@hourly"}], "retention": {"keep_last": 1},
                       "options": {"max_concurrent": 1}}),
        )
        .await;
    let mut taken = Vec::new();
    for _ in 0..4 {
        taken.push(take(&h, &policy).await);
        h.clock.advance(TimeDelta::hours(1));
    }

    // Act: retention marks three for deletion; one pass of work starts what it may.
    h.engine.prune_due().await.unwrap();
    h.work().await;

    // Assert: one deletion under way, two waiting their turn.
    let started: i64 = sqlx::query_scalar(
        "select count(*) from snapshot where state = 'deleting' and delete_started_at is not null",
    )
    .fetch_one(&h.pool)
    .await
    .unwrap();
    let waiting: i64 = sqlx::query_scalar(
        "select count(*) from snapshot where state = 'deleting' and delete_started_at is null",
    )
    .fetch_one(&h.pool)
    .await
    .unwrap();
    assert_eq!((started, waiting), (1, 2));
    assert_eq!(h.sim.count("cinder.delete_snapshot"), 1);

    // In the end all three go, one after another.
    drain_deletions(
        &h,
        TimeDelta::seconds(1),
        std::time::Duration::from_millis(50),
        200,
    )
    .await;
    assert_eq!(
        futures_states(&h, &taken).await,
        ["deleted", "deleted", "deleted", "available"]
    );
}

#[sqlx::test]
async fn a_policy_that_cannot_be_read_does_not_stop_retention_for_the_others(pool: PgPool) {
    // Arrange: a policy with three snapshots to prune down to one, and an unreadable policy first in line.
    let h = harness(pool).await;
    let volume = h.sim.create_volume("data", 1, &[]);
    let policy = h
        .policy(
            json!({"name": "v", "resource_type": "volume", "targets": {"ids": [volume]},
                       "schedules": [{"cron": "@hourly"}], "retention": {"keep_last": 1}}),
        )
        .await;
    let broken = h
        .policy(
            json!({"name": "broken", "resource_type": "volume", "targets": {"ids": [volume]},
                       "schedules": [{"cron": "@hourly"}], "retention": {"keep_last": 1}}),
        )
        .await;
    let mut taken = Vec::new();
    for _ in 0..3 {
        taken.push(take(&h, &policy).await);
        h.clock.advance(TimeDelta::hours(1));
    }
    take(&h, &broken).await;
    sqlx::query(
        "update policy set retention = '{\"keep_within\": \"soon\"}', pruned_at = null where policy_id = $1",
    )
    .bind(broken.id)
    .execute(&h.pool)
    .await
    .unwrap();
    sqlx::query("update policy set pruned_at = now() - interval '1 day' where policy_id = $1")
        .bind(policy.id)
        .execute(&h.pool)
        .await
        .unwrap();

    // Act
    let marked = h.engine.prune_due().await;

    // Assert
    assert!(
        marked.is_ok(),
        "one bad policy must not stop retention: {marked:?}"
    );
    let states = futures_states(&h, &taken).await;
    assert_eq!(states, ["deleting", "deleting", "available"]);
}
