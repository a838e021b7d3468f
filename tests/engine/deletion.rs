//! Deleting snapshots when Cinder does not cooperate: pieces stuck `creating`,
//! deletes Cinder undoes, snapshots other volumes depend on, many stuck
//! deletions at once, and steps slower than their lease. Every wait ends and
//! every retry counts.

use std::{sync::Arc, time::Duration};

use chrono::TimeDelta;
use serde_json::json;
use sqlx::PgPool;
use stacksnap::{
    clock::Clock as _,
    domain::job::JobStatus,
    engine::{Engine, EngineConfig, Outcome},
    store::snapshots,
};
use stacksnap_sim::{Fault, FaultRule};
use uuid::Uuid;

use crate::helpers::{Harness, engine_config, harness, spawn_app};

mod unrecorded;

/// What the database says about one snapshot's deletion.
#[derive(Debug, sqlx::FromRow)]
struct Deletion {
    state: String,
    code: Option<String>,
    message: Option<String>,
    not_before: chrono::DateTime<chrono::Utc>,
}

async fn deletion(h: &Harness, id: Uuid) -> Deletion {
    sqlx::query_as(
        "select state, delete_error ->> 'code' as code, \
             delete_error ->> 'message' as message, not_before \
         from snapshot where snapshot_id = $1",
    )
    .bind(id)
    .fetch_one(&h.pool)
    .await
    .unwrap()
}

/// A one-off snapshot of a fresh volume that succeeded: its snapshot row and its Cinder snapshot.
async fn volume_snapshot(h: &Harness) -> (Uuid, String) {
    let volume = h.sim.create_volume("data", 1, &[]);
    let job = h.finish(h.adhoc("volume", &volume, json!({})).await).await;
    assert_eq!(job.status, JobStatus::Succeeded, "{:?}", job.error);
    let id: Uuid = sqlx::query_scalar("select snapshot_id from snapshot where job_id = $1")
        .bind(job.job_id)
        .fetch_one(&h.pool)
        .await
        .unwrap();
    (id, job.volume_snapshots.0[0].snapshot_id.clone())
}

/// Works, then lets `step` of engine time and a little real (simulator) time
/// pass, `rounds` times or until `done` holds for snapshot `id`.
async fn rounds(
    h: &Harness,
    id: Uuid,
    step: TimeDelta,
    rounds: usize,
    done: impl Fn(&Deletion) -> bool,
) -> Deletion {
    for _ in 0..rounds {
        h.work().await;
        let now = deletion(h, id).await;
        if done(&now) {
            return now;
        }
        h.clock.advance(step);
        tokio::time::sleep(Duration::from_millis(30)).await;
    }
    deletion(h, id).await
}

#[sqlx::test]
async fn a_piece_stuck_creating_is_not_waited_on_forever_but_ends_delete_failed(pool: PgPool) {
    // Arrange: a job whose Cinder snapshot never leaves `creating` times out;
    // its leftovers are then deleted.
    let h = harness(pool).await;
    let volume = h.sim.create_volume("data", 1, &[]);
    h.sim
        .inject(FaultRule::new("cinder.create_snapshot", Fault::SnapshotStuck).times(1));
    let job_id = h.adhoc("volume", &volume, json!({"timeout": "1m"})).await;
    h.work().await;
    h.clock.advance(TimeDelta::minutes(2));
    let job = h.finish(job_id).await;
    assert_eq!(job.status, JobStatus::TimedOut, "{:?}", job.error);
    let piece = job.volume_snapshots.0[0].snapshot_id.clone();
    let id: Uuid = sqlx::query_scalar("select snapshot_id from snapshot where job_id = $1")
        .bind(job_id)
        .fetch_one(&h.pool)
        .await
        .unwrap();
    snapshots::request_delete(&h.pool, "default", id, h.clock.now())
        .await
        .unwrap();

    // Act: three hours of engine time, five minutes at a time.
    let end = rounds(&h, id, TimeDelta::minutes(5), 36, |d| d.state != "deleting").await;

    // Assert: the wait had a deadline and the error says why.
    assert_eq!(end.state, "delete_failed", "{end:?}");
    let message = end.message.unwrap_or_default();
    assert!(
        message.contains(&piece) && message.contains("creating"),
        "the error names the piece and its status: {message}"
    );
    assert_eq!(
        h.sim.count("cinder.delete_snapshot"),
        0,
        "Cinder refuses to delete a snapshot in `creating`: nothing was sent"
    );
}

#[sqlx::test]
async fn a_piece_cinder_puts_back_to_available_is_deleted_a_bounded_number_of_times(pool: PgPool) {
    // Arrange: Cinder's backend reports every delete busy and resets the snapshot.
    let h = harness(pool).await;
    let (id, piece) = volume_snapshot(&h).await;
    h.sim.inject(FaultRule::new(
        "cinder.delete_snapshot",
        Fault::SnapshotDeleteBusy {
            dependants_only: false,
        },
    ));
    snapshots::request_delete(&h.pool, "default", id, h.clock.now())
        .await
        .unwrap();

    // Act: an hour of engine time, a minute at a time.
    let end = rounds(&h, id, TimeDelta::minutes(1), 60, |d| d.state != "deleting").await;

    // Assert: every reset counted; after the last attempt it is `delete_failed`, readably.
    assert_eq!(end.state, "delete_failed", "{end:?}");
    assert_eq!(
        h.sim.count("cinder.delete_snapshot"),
        5,
        "one delete per attempt, five attempts"
    );
    let message = end.message.unwrap_or_default();
    assert!(
        message.contains(&piece) && message.contains("available"),
        "the error says Cinder put the piece back: {message}"
    );
}

#[sqlx::test]
async fn a_piece_left_error_deleting_is_not_deleted_again_and_fails_readably(pool: PgPool) {
    // Arrange: the backend fails the delete; Cinder leaves the snapshot `error_deleting`.
    let h = harness(pool).await;
    let (id, piece) = volume_snapshot(&h).await;
    h.sim.inject(FaultRule::new(
        "cinder.delete_snapshot",
        Fault::SnapshotDeleteError,
    ));
    snapshots::request_delete(&h.pool, "default", id, h.clock.now())
        .await
        .unwrap();

    // Act
    let end = rounds(&h, id, TimeDelta::minutes(1), 60, |d| d.state != "deleting").await;

    // Assert: one delete (a member cannot delete from `error_deleting`), then a readable failure.
    assert_eq!(end.state, "delete_failed", "{end:?}");
    assert_eq!(h.sim.count("cinder.delete_snapshot"), 1);
    let message = end.message.unwrap_or_default();
    assert!(
        message.contains(&piece) && message.contains("error_deleting"),
        "{message}"
    );
}

/// A snapshot whose Cinder snapshot a volume was made from, on a backend that
/// cannot delete a snapshot with clones, driven until its deletion settles.
/// Returns the snapshot, its Cinder snapshot, the volume, and how the deletion stands.
async fn blocked_snapshot(h: &Harness) -> (Uuid, String, String, Deletion) {
    let (id, piece) = volume_snapshot(h).await;
    let clone = h.sim.create_volume_from_snapshot("clone", &piece).unwrap();
    h.sim.inject(FaultRule::new(
        "cinder.delete_snapshot",
        Fault::SnapshotDeleteBusy {
            dependants_only: true,
        },
    ));
    snapshots::request_delete(&h.pool, "default", id, h.clock.now())
        .await
        .unwrap();
    let settled = rounds(h, id, TimeDelta::seconds(5), 20, |d| d.state != "deleting").await;
    (id, piece, clone, settled)
}

#[sqlx::test]
async fn a_piece_a_volume_was_made_from_ends_delete_blocked_naming_it_and_is_retried_daily(
    pool: PgPool,
) {
    // Arrange / Act
    let h = harness(pool).await;
    let (id, piece, clone, blocked) = blocked_snapshot(&h).await;

    // Assert: blocked, naming the volume, put off for a day.
    assert_eq!(blocked.state, "delete_blocked", "{blocked:?}");
    let message = blocked.message.clone().unwrap_or_default();
    assert!(
        message.contains(&clone) && message.contains(&piece),
        "the error names the dependant and the piece: {message}"
    );
    assert_eq!(blocked.code.as_deref(), Some("dependent_volumes"));
    assert!(blocked.not_before >= h.clock.now() + TimeDelta::hours(23));
    let dependants: serde_json::Value =
        sqlx::query_scalar("select delete_blocked_by from snapshot where snapshot_id = $1")
            .bind(id)
            .fetch_one(&h.pool)
            .await
            .unwrap();
    assert_eq!(
        dependants,
        json!([{"volume_snapshot_id": piece, "volume_id": clone, "volume_name": "clone"}])
    );
    assert_eq!(h.sim.count("cinder.delete_snapshot"), 1);

    // Not looped on: nothing more is sent for the rest of the day.
    for _ in 0..22 {
        h.clock.advance(TimeDelta::hours(1));
        h.work().await;
    }
    assert_eq!(h.sim.count("cinder.delete_snapshot"), 1);

    // A day later it is tried once more, and is blocked again while the clone lives.
    h.clock.advance(TimeDelta::hours(2));
    let again = rounds(&h, id, TimeDelta::seconds(5), 20, |d| {
        d.state == "delete_blocked" && d.not_before > h.clock.now()
    })
    .await;
    assert_eq!(again.state, "delete_blocked");
    assert_eq!(h.sim.count("cinder.delete_snapshot"), 2);

    // Once the clone is gone, the next daily try deletes it.
    let delete_clone = stacksnap::openstack::session::Call::new(
        stacksnap::openstack::session::Service::Volume,
        "delete_volume",
        reqwest::Method::DELETE,
        format!("/volumes/{clone}"),
    );
    h.cloud.session().send(&delete_clone).await.unwrap();
    tokio::time::sleep(Duration::from_millis(100)).await;
    h.clock.advance(TimeDelta::days(1));
    let end = rounds(&h, id, TimeDelta::seconds(5), 40, |d| d.state == "deleted").await;
    assert_eq!(end.state, "deleted", "{end:?}");
}

#[sqlx::test]
async fn a_blocked_deletion_is_listed_and_shown_with_its_dependants(pool: PgPool) {
    // Arrange
    let h = harness(pool).await;
    let (id, piece, clone, blocked) = blocked_snapshot(&h).await;
    assert_eq!(blocked.state, "delete_blocked");
    let app = spawn_app(h.pool.clone()).await;

    // Act
    let listed: serde_json::Value = app
        .get("/v1/snapshots?state=delete_blocked")
        .await
        .json()
        .await
        .unwrap();
    let shown: serde_json::Value = app
        .get(&format!("/v1/snapshots/{id}"))
        .await
        .json()
        .await
        .unwrap();
    let available: serde_json::Value = app
        .get("/v1/snapshots?state=available")
        .await
        .json()
        .await
        .unwrap();

    // Assert
    assert_eq!(listed["items"].as_array().unwrap().len(), 1, "{listed}");
    assert_eq!(listed["items"][0], shown);
    assert_eq!(shown["state"], "delete_blocked");
    assert_eq!(shown["delete_error"]["code"], "dependent_volumes");
    assert_eq!(
        shown["delete_blocked_by"],
        json!([{"volume_snapshot_id": piece, "volume_id": clone, "volume_name": "clone"}])
    );
    assert_eq!(available["items"], json!([]));
}

#[sqlx::test]
async fn fifty_stuck_deletions_do_not_stop_a_fresh_one(pool: PgPool) {
    // Arrange: as many deletions as the in-flight limit, each waiting on a Cinder
    // snapshot stuck in `creating`, queued before a fresh one.
    let h = harness(pool).await;
    let limit = engine_config().max_in_flight;
    let volume = h.sim.create_volume("busy", 1, &[]);
    h.sim.inject(
        FaultRule::new("cinder.create_snapshot", Fault::SnapshotStuck)
            .times(u32::try_from(limit).unwrap()),
    );
    let mut stuck = Vec::new();
    for n in 0..limit {
        let job_id = Uuid::now_v7();
        let metadata =
            std::collections::BTreeMap::from([("stacksnap_job_id".to_owned(), job_id.to_string())]);
        let made = h
            .cloud
            .cinder()
            .create_snapshot(&volume, &format!("stuck-{n}"), "", &metadata, false)
            .await
            .unwrap();
        let id: Uuid = sqlx::query_scalar(
            "insert into snapshot (snapshot_id, project_id, job_id, resource_type, resource_id, \
                 volume_snapshots, complete, taken_at, state, not_before) \
             values ($1, 'default', $2, 'volume', $3, \
                 jsonb_build_array(jsonb_build_object('snapshot_id', $4::text, 'volume_id', $3, 'status', 'creating')), \
                 false, $5, 'deleting', $5 - interval '1 minute') \
             returning snapshot_id",
        )
        .bind(Uuid::now_v7())
        .bind(job_id)
        .bind(&volume)
        .bind(&made.id)
        .bind(h.clock.now())
        .fetch_one(&h.pool)
        .await
        .unwrap();
        stuck.push(id);
    }
    let (fresh, _) = volume_snapshot(&h).await;
    snapshots::request_delete(&h.pool, "default", fresh, h.clock.now())
        .await
        .unwrap();

    // Act: ten minutes of engine time, well within the stuck ones' deadline.
    let end = rounds(&h, fresh, TimeDelta::minutes(1), 10, |d| {
        d.state == "deleted"
    })
    .await;

    // Assert
    assert_eq!(end.state, "deleted", "{end:?}");
    let still_waiting: i64 = sqlx::query_scalar(
        "select count(*) from snapshot where snapshot_id = any($1) and state = 'deleting'",
    )
    .bind(&stuck)
    .fetch_one(&h.pool)
    .await
    .unwrap();
    assert_eq!(
        still_waiting, limit,
        "the stuck ones are still waiting within their deadline"
    );
}

#[sqlx::test]
async fn a_deletion_step_slower_than_its_lease_keeps_the_lease(pool: PgPool) {
    // Arrange: a short lease, and a Cinder delete that takes longer than it.
    let h = harness(pool).await;
    let (id, _) = volume_snapshot(&h).await;
    let engine = Engine::new(
        h.pool.clone(),
        h.cloud.clone(),
        Arc::new(h.clock.clone()),
        EngineConfig {
            lease: TimeDelta::milliseconds(600),
            ..engine_config()
        },
    );
    h.sim
        .inject(FaultRule::latency("cinder.delete_snapshot", Duration::from_millis(1500)).times(1));
    snapshots::request_delete(&h.pool, "default", id, h.clock.now())
        .await
        .unwrap();

    // Act: the step runs while the lease's time passes; another replica looks for work.
    let step = tokio::spawn({
        let engine = engine.clone();
        async move { engine.delete_next().await }
    });
    tokio::time::sleep(Duration::from_millis(300)).await;
    h.clock.advance(TimeDelta::seconds(2));
    tokio::time::sleep(Duration::from_millis(500)).await;
    let other = h.replica().delete_next().await.unwrap();

    // Assert
    assert_eq!(
        other,
        Outcome::Idle,
        "the lease was renewed: nobody took over"
    );
    assert_eq!(step.await.unwrap().unwrap(), Outcome::Worked);
    assert_eq!(h.sim.count("cinder.delete_snapshot"), 1, "one delete sent");
}

#[sqlx::test]
async fn a_deletion_backing_off_after_a_failed_attempt_does_not_hold_up_a_fresh_one(pool: PgPool) {
    // Arrange: room for one deletion in flight; the first one's delete is refused
    // once, so it waits out a long back-off before its next attempt.
    let h = harness(pool).await;
    let engine = Engine::new(
        h.pool.clone(),
        h.cloud.clone(),
        Arc::new(h.clock.clone()),
        EngineConfig {
            max_in_flight: 1,
            retry_delay: TimeDelta::minutes(10),
            ..engine_config()
        },
    );
    let (first, _) = volume_snapshot(&h).await;
    let (fresh, _) = volume_snapshot(&h).await;
    h.sim
        .inject(FaultRule::error("cinder.delete_snapshot", 403).times(1));
    snapshots::request_delete(&h.pool, "default", first, h.clock.now())
        .await
        .unwrap();
    assert_eq!(engine.delete_next().await.unwrap(), Outcome::Worked);
    let backing_off = deletion(&h, first).await;
    assert_eq!(
        backing_off.code.as_deref(),
        Some("delete_error"),
        "{backing_off:?}"
    );
    assert!(backing_off.not_before > h.clock.now() + TimeDelta::minutes(5));
    snapshots::request_delete(&h.pool, "default", fresh, h.clock.now())
        .await
        .unwrap();

    // Act
    let outcome = engine.delete_next().await.unwrap();

    // Assert: the fresh deletion started while the first one backs off.
    assert_eq!(
        outcome,
        Outcome::Worked,
        "the fresh deletion was not started"
    );
    assert_eq!(h.sim.count("cinder.delete_snapshot"), 2);
}
