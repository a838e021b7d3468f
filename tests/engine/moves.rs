//! Moves (issue 12, item 2) against the simulator: a restore onto another
//! flavor, and `?delete_source=after_active`, which deletes the source
//! server only once the new one is usable, never after a failure or a
//! cancel, survives a crash between its DELETE and the answer, and keeps
//! the new server when the cloud refuses to delete the source.

use std::time::Duration;

use chrono::TimeDelta;
use serde_json::json;
use sqlx::PgPool;
use stacksnap::{
    clock::Clock as _,
    domain::{
        job::JobStatus,
        moves::{DeleteSource, SourceDeletionState},
        restore::{CleanupState, Restored},
    },
    store::{jobs, lifecycle, snapshots},
};
use stacksnap_sim::{Fault, FaultRule};
use uuid::Uuid;

use super::restore::{queue_restore, snapshot_of};
use crate::helpers::{Harness, harness};

/// Queues a restore, or a move with `delete_source`, as the API does.
async fn restore(
    h: &Harness,
    snapshot_id: Uuid,
    body: serde_json::Value,
    delete_source: Option<DeleteSource>,
) -> Uuid {
    queue_restore(h, snapshot_id, body, delete_source).await
}

/// A move of `server`'s snapshot: `?delete_source=after_active`, confirmed.
async fn move_server(h: &Harness, server: &str) -> Uuid {
    let snapshot_id = snapshot_of(h, "server", server).await;
    restore(
        h,
        snapshot_id,
        json!({"confirm": server}),
        Some(DeleteSource::AfterActive),
    )
    .await
}

fn restored(job: &jobs::Job) -> Restored {
    job.restored
        .as_ref()
        .map(|r| r.0.clone())
        .unwrap_or_default()
}

async fn server_status(h: &Harness, id: &str) -> Option<String> {
    match h.cloud.nova().get_server(id).await {
        Err(e) if e.is_not_found() => None,
        Err(e) => panic!("reading server {id}: {e}"),
        Ok(s) if s.status == "DELETED" => None,
        Ok(s) => Some(s.status),
    }
}

/// Works until the source server is gone in the simulator (its deletion
/// runs on the simulator's real clock).
async fn until_gone(h: &Harness, id: &str) {
    for _ in 0..400 {
        if server_status(h, id).await.is_none() {
            return;
        }
        tokio::time::sleep(Duration::from_millis(15)).await;
    }
    panic!("server {id} is still there");
}

/// Works until the job's clean-up (if any) is over.
async fn settle_cleanup(h: &Harness, job_id: Uuid) -> jobs::Job {
    for _ in 0..500 {
        h.work().await;
        let job = h.job(job_id).await;
        if job.status.is_terminal() && job.cleanup_due_at.is_none() {
            return job;
        }
        h.clock.advance(TimeDelta::milliseconds(500));
        tokio::time::sleep(Duration::from_millis(15)).await;
    }
    panic!("the clean-up of {job_id} did not end");
}

#[sqlx::test]
async fn a_restore_onto_another_flavor_boots_the_new_server_on_it(pool: PgPool) {
    // Arrange: the source runs on m1.tiny.
    let h = harness(pool).await;
    let server = h.sim.create_image_backed_server("web-1", &[], &[], false);
    let snapshot_id = snapshot_of(&h, "server", &server).await;

    // Act
    let job_id = restore(&h, snapshot_id, json!({"flavor": "m1.small"}), None).await;
    let job = h.finish(job_id).await;

    // Assert
    assert_eq!(job.status, JobStatus::Succeeded, "{:?}", job.error);
    let new_id = restored(&job).server_id.unwrap();
    let new = h.cloud.nova().get_server(&new_id).await.unwrap();
    assert_eq!(new.status, "ACTIVE");
    assert_eq!(new.flavor["original_name"], "m1.small");
    let source = h.cloud.nova().get_server(&server).await.unwrap();
    assert_eq!(
        source.flavor["original_name"], "m1.tiny",
        "without delete_source the source is untouched"
    );
    assert_eq!(h.sim.count("nova.delete_server"), 0);
}

#[sqlx::test]
async fn a_move_deletes_the_source_once_the_new_server_is_active(pool: PgPool) {
    // Arrange
    let h = harness(pool).await;
    let server = h.sim.create_image_backed_server("web-1", &[], &[], false);

    // Act
    let job_id = move_server(&h, &server).await;
    let job = h.finish(job_id).await;

    // Assert
    assert_eq!(job.status, JobStatus::Succeeded, "{:?}", job.error);
    assert!(job.error.is_none(), "{:?}", job.error);
    let made = restored(&job);
    let deletion = made
        .source_deletion
        .clone()
        .expect("the deletion is recorded");
    assert_eq!(deletion.state, SourceDeletionState::Deleted);
    assert_eq!(deletion.server_id, server);
    assert!(made.source_deleted_at.is_some());
    assert_eq!(server_status(&h, &server).await, None, "the source is gone");
    let new_id = made.server_id.unwrap();
    assert_eq!(server_status(&h, &new_id).await.as_deref(), Some("ACTIVE"));
    assert_eq!(h.sim.count("nova.delete_server"), 1);
    // The timeline: the new server ACTIVE, then the source's deletion.
    let order: Vec<(&str, &str)> = job
        .timeline
        .0
        .iter()
        .filter(|e| e.what == "source_server" || (e.what == "server" && e.status == "ACTIVE"))
        .map(|e| (e.what.as_str(), e.status.as_str()))
        .collect();
    assert_eq!(
        order,
        [
            ("server", "ACTIVE"),
            ("source_server", "delete_due"),
            ("source_server", "deleting"),
            ("source_server", "deleted"),
        ]
    );
    assert!(job.cleanup_due_at.is_none());
}

#[sqlx::test]
async fn a_moved_volume_backed_servers_source_volumes_stay_while_snapshots_depend_on_them(
    pool: PgPool,
) {
    // Arrange
    let h = harness(pool).await;
    let server = h.sim.create_volume_backed_server("db-1", 2, false);
    let source_volumes: Vec<String> = h
        .cloud
        .nova()
        .get_server(&server)
        .await
        .unwrap()
        .volumes_attached
        .into_iter()
        .map(|v| v.id)
        .collect();

    // Act
    let job_id = move_server(&h, &server).await;
    let job = h.finish(job_id).await;
    until_gone(&h, &server).await;

    // Assert: Nova cannot delete a volume Cinder snapshots depend on (it
    // logs and leaves it), whatever its delete_on_termination.
    assert_eq!(job.status, JobStatus::Succeeded, "{:?}", job.error);
    for id in restored(&job).volume_ids.unwrap() {
        assert!(!source_volumes.contains(&id));
        let volume = h.cloud.cinder().get_volume(&id).await.unwrap();
        assert_eq!(volume.status, "in-use", "the new server's volumes stay");
    }
    for id in &source_volumes {
        let mut status = String::new();
        for _ in 0..200 {
            status = h.cloud.cinder().get_volume(id).await.unwrap().status;
            if status == "available" {
                break;
            }
            tokio::time::sleep(Duration::from_millis(15)).await;
        }
        assert_eq!(status, "available", "source volume {id} is kept, detached");
    }
}

#[sqlx::test]
async fn a_move_whose_new_server_fails_keeps_the_source(pool: PgPool) {
    // Arrange
    let h = harness(pool).await;
    let server = h.sim.create_image_backed_server("web-1", &[], &[], false);
    let snapshot_id = snapshot_of(&h, "server", &server).await;
    h.sim
        .inject(FaultRule::new("nova.create_server", Fault::ServerError).times(1));

    // Act
    let job_id = restore(
        &h,
        snapshot_id,
        json!({"confirm": server}),
        Some(DeleteSource::AfterActive),
    )
    .await;
    h.finish(job_id).await;
    let job = settle_cleanup(&h, job_id).await;

    // Assert
    assert_eq!(job.status, JobStatus::Failed);
    let made = restored(&job);
    assert!(made.source_deletion.is_none());
    assert_eq!(made.cleanup.unwrap().state, CleanupState::Deleted);
    assert_eq!(
        server_status(&h, &server).await.as_deref(),
        Some("ACTIVE"),
        "the source is kept"
    );
    assert_eq!(
        h.sim.count("nova.delete_server"),
        1,
        "only the failed new server is deleted"
    );
}

#[sqlx::test]
async fn a_move_cancelled_before_active_keeps_the_source(pool: PgPool) {
    // Arrange: the new server never finishes building.
    let h = harness(pool).await;
    let server = h.sim.create_image_backed_server("web-1", &[], &[], false);
    let snapshot_id = snapshot_of(&h, "server", &server).await;
    h.sim
        .inject(FaultRule::new("nova.create_server", Fault::ServerStuck).times(1));
    let job_id = restore(
        &h,
        snapshot_id,
        json!({"confirm": server}),
        Some(DeleteSource::AfterActive),
    )
    .await;
    h.drive(job_id, |j| j.status == JobStatus::Tracking).await;

    // Act
    let cancelled = lifecycle::cancel_job(&h.pool, "default", job_id, h.clock.now(), "test")
        .await
        .unwrap();
    let job = settle_cleanup(&h, job_id).await;

    // Assert
    assert!(matches!(cancelled, lifecycle::CancelOutcome::Cancelled(_)));
    assert_eq!(job.status, JobStatus::Cancelled);
    assert!(restored(&job).source_deletion.is_none());
    assert_eq!(
        server_status(&h, &server).await.as_deref(),
        Some("ACTIVE"),
        "the source is kept"
    );
    let new_id = restored(&job).server_id.unwrap();
    assert_eq!(
        server_status(&h, &new_id).await,
        None,
        "the new one is deleted"
    );
}

#[sqlx::test]
async fn a_move_that_crashed_between_its_delete_and_the_answer_resumes_and_deletes_once(
    pool: PgPool,
) {
    // Arrange: Nova carries out the source's DELETE and holds its answer.
    let h = harness(pool).await;
    let server = h.sim.create_image_backed_server("web-1", &[], &[], false);
    let job_id = move_server(&h, &server).await;
    h.sim
        .inject(FaultRule::reply_held("nova.delete_server", Duration::from_secs(30)).times(1));
    let (engine, clock) = (h.engine.clone(), h.clock.clone());
    let running = tokio::spawn(async move {
        loop {
            while engine.execute_next().await.unwrap() == stacksnap::engine::Outcome::Worked {}
            clock.advance(TimeDelta::milliseconds(200));
            tokio::time::sleep(Duration::from_millis(15)).await;
        }
    });
    for _ in 0..1000 {
        if h.sim.count("nova.delete_server") == 1 {
            break;
        }
        tokio::time::sleep(Duration::from_millis(15)).await;
    }
    assert_eq!(h.sim.count("nova.delete_server"), 1, "the DELETE was sent");

    // Act: the engine stops while the DELETE is unanswered.
    running.abort();
    let _ = running.await;
    let marked = h.job(job_id).await;
    let refused = lifecycle::cancel_job(&h.pool, "default", job_id, h.clock.now(), "test")
        .await
        .unwrap();
    h.clock.advance(TimeDelta::minutes(5));
    let job = h.finish(job_id).await;

    // Assert
    assert_eq!(marked.status, JobStatus::Tracking);
    assert_eq!(
        restored(&marked).source_deletion.unwrap().state,
        SourceDeletionState::Deleting,
        "the phase was recorded before the DELETE was sent"
    );
    assert!(
        matches!(refused, lifecycle::CancelOutcome::SourceBeingDeleted(_)),
        "a move deleting its source can no longer be cancelled"
    );
    assert_eq!(job.status, JobStatus::Succeeded, "{:?}", job.error);
    assert!(job.error.is_none(), "{:?}", job.error);
    assert!(restored(&job).source_deleted_at.is_some());
    assert_eq!(server_status(&h, &server).await, None);
    assert_eq!(h.sim.count("nova.delete_server"), 1, "deleted once");
    let new_id = restored(&job).server_id.unwrap();
    assert_eq!(server_status(&h, &new_id).await.as_deref(), Some("ACTIVE"));
}

#[sqlx::test]
async fn a_move_whose_source_deletion_is_refused_succeeds_with_a_note_and_keeps_the_new_server(
    pool: PgPool,
) {
    // Arrange: the source is locked (Nova answers 409 to its DELETE).
    let h = harness(pool).await;
    let server = h.sim.create_image_backed_server("web-1", &[], &[], false);
    let job_id = move_server(&h, &server).await;
    h.sim.inject(FaultRule::error("nova.delete_server", 409));

    // Act
    let job = h.finish(job_id).await;
    h.work().await;

    // Assert
    assert_eq!(job.status, JobStatus::Succeeded);
    let error = job.error.clone().expect("the kept source is named").0;
    assert_eq!(error.code, "source_not_deleted");
    assert!(
        error.message.contains("DELETE /servers/"),
        "{}",
        error.message
    );
    let made = restored(&job);
    assert_eq!(
        made.source_deletion.unwrap().state,
        SourceDeletionState::Kept
    );
    assert!(made.source_deleted_at.is_none());
    assert!(job.cleanup_due_at.is_none(), "nothing is cleaned up");
    assert_eq!(server_status(&h, &server).await.as_deref(), Some("ACTIVE"));
    let new_id = made.server_id.unwrap();
    assert_eq!(server_status(&h, &new_id).await.as_deref(), Some("ACTIVE"));
}

#[sqlx::test]
async fn an_image_backed_server_moves_to_another_zone_and_its_snapshot_records_the_source_zone(
    pool: PgPool,
) {
    // Arrange
    let h = crate::helpers::harness_with(
        pool,
        stacksnap_sim::SimConfig::default().with_availability_zones(&["nova", "az2"]),
    )
    .await;
    let server = h.sim.create_image_backed_server("web-1", &[], &[], false);
    let snapshot_id = snapshot_of(&h, "server", &server).await;
    let snapshot = snapshots::fetch_snapshot(&h.pool, "default", snapshot_id)
        .await
        .unwrap()
        .unwrap();
    let volume = h.sim.create_volume("data", 1, &[]);
    let volume_snapshot = snapshot_of(&h, "volume", &volume).await;
    let volume_snapshot = snapshots::fetch_snapshot(&h.pool, "default", volume_snapshot)
        .await
        .unwrap()
        .unwrap();

    // Act
    let job_id = restore(
        &h,
        snapshot_id,
        json!({"availability_zone": "az2", "confirm": server}),
        Some(DeleteSource::AfterActive),
    )
    .await;
    let job = h.finish(job_id).await;

    // Assert
    assert_eq!(snapshot.source_az.as_deref(), Some("nova"));
    assert_eq!(volume_snapshot.source_az.as_deref(), Some("nova"));
    assert_eq!(job.status, JobStatus::Succeeded, "{:?}", job.error);
    let new = h
        .cloud
        .nova()
        .get_server(&restored(&job).server_id.unwrap())
        .await
        .unwrap();
    assert_eq!(new.availability_zone.as_deref(), Some("az2"));
    assert_eq!(server_status(&h, &server).await, None, "the source is gone");
}
