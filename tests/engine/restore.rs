//! Restores of managed snapshots (issue 12, item 1) against the simulator:
//! each kind, each failure, a cancel, and recovery of a create whose answer
//! was lost.

use std::collections::BTreeMap;

use serde_json::json;
use sqlx::PgPool;
use stacksnap::{
    clock::Clock as _,
    domain::{
        job::{JobKind, JobStatus},
        moves::DeleteSource,
        restore::{CleanupState, RestoreRequest, Restored, restore_job},
        status::RunTrigger,
        status::SnapshotState,
    },
    openstack::{cinder::VolumeFilter, nova::ServerFilter},
    store::{jobs, lifecycle, snapshots},
};
use stacksnap_sim::{Fault, FaultRule, ImageSeed, ServerSeed, SimConfig};
use uuid::Uuid;

use crate::helpers::{Harness, harness, harness_with};

/// Takes a one-off snapshot and returns its managed snapshot's id.
pub(super) async fn snapshot_of(h: &Harness, resource_type: &str, id: &str) -> Uuid {
    let job_id = h.adhoc(resource_type, id, json!({})).await;
    let job = h.finish(job_id).await;
    assert_eq!(job.status, JobStatus::Succeeded, "{:?}", job.error);
    let rows = h.snapshot_rows(job_id).await;
    rows[0].0
}

/// Queues a restore of `snapshot_id`, as `POST /v1/snapshots/{id}/restore` does.
async fn restore(h: &Harness, snapshot_id: Uuid, body: serde_json::Value) -> Uuid {
    queue_restore(h, snapshot_id, body, None).await
}

/// Queues a restore, or a move with `delete_source`, as the API does.
pub(super) async fn queue_restore(
    h: &Harness,
    snapshot_id: Uuid,
    body: serde_json::Value,
    delete_source: Option<DeleteSource>,
) -> Uuid {
    let snapshot = snapshots::fetch_snapshot(&h.pool, "default", snapshot_id)
        .await
        .unwrap()
        .unwrap();
    let request: RestoreRequest = serde_json::from_value(body).unwrap();
    let pieces = snapshot.restore_pieces();
    let timeout = request.validate(&pieces).unwrap();
    let job_id = Uuid::now_v7();
    let mut spec = request.spec(&pieces, job_id).unwrap();
    spec.delete_source = delete_source;
    let job = restore_job(&pieces, spec, timeout, job_id, h.clock.now());
    lifecycle::insert_single_job_run(
        &h.pool,
        "default",
        None,
        &job,
        Default::default(),
        h.clock.now(),
        RunTrigger::Restore,
    )
    .await
    .unwrap()
    .expect("the snapshot is restorable");
    job_id
}

fn restored(job: &jobs::Job) -> Restored {
    job.restored
        .as_ref()
        .map(|r| r.0.clone())
        .unwrap_or_default()
}

/// Works until the job's clean-up is over (at least 15 s of the simulator's
/// real time: its transitions run on it, and the machine may be busy).
async fn settle_cleanup(h: &Harness, job_id: Uuid) -> jobs::Job {
    for _ in 0..500 {
        h.work().await;
        let job = h.job(job_id).await;
        if job.status.is_terminal() && job.cleanup_due_at.is_none() {
            return job;
        }
        h.clock.advance(chrono::TimeDelta::milliseconds(500));
        tokio::time::sleep(std::time::Duration::from_millis(15)).await;
    }
    panic!(
        "the clean-up of {job_id} did not end: {:?}",
        h.job(job_id).await
    );
}

async fn server_gone(h: &Harness, id: &str) -> bool {
    match h.cloud.nova().get_server(id).await {
        Err(e) => e.is_not_found(),
        Ok(s) => s.status == "DELETED",
    }
}

#[sqlx::test]
async fn an_image_backed_server_snapshot_restores_to_an_active_server_with_the_sources_flavor(
    pool: PgPool,
) {
    // Arrange
    let h = harness(pool).await;
    let server = h.sim.create_image_backed_server("web-1", &[], &[], false);
    let snapshot_id = snapshot_of(&h, "server", &server).await;
    let snapshot = snapshots::fetch_snapshot(&h.pool, "default", snapshot_id)
        .await
        .unwrap()
        .unwrap();
    assert_eq!(
        snapshot.source_flavor.as_ref().unwrap().0["original_name"],
        "m1.tiny",
        "the snapshot job records the flavor as Nova shows it from 2.47"
    );

    // Act
    let job_id = restore(&h, snapshot_id, json!({"metadata": {"ticket": "OPS-1"}})).await;
    let job = h.finish(job_id).await;

    // Assert
    assert_eq!(job.status, JobStatus::Succeeded, "{:?}", job.error);
    assert_eq!(job.kind, JobKind::Restore);
    let made = restored(&job);
    let new_id = made.server_id.expect("the new server is recorded");
    assert_ne!(new_id, server);
    let new = h.cloud.nova().get_server(&new_id).await.unwrap();
    assert_eq!(new.status, "ACTIVE");
    assert_eq!(
        new.metadata["stacksnap_restored_from"],
        snapshot_id.to_string()
    );
    assert_eq!(new.metadata["stacksnap_job_id"], job_id.to_string());
    assert_eq!(new.metadata["ticket"], "OPS-1");
    assert!(new.tags.contains(&format!("stacksnap-job-{job_id}")));
    assert_eq!(new.flavor["original_name"], "m1.tiny");
    assert!(
        h.snapshot_rows(job_id).await.is_empty(),
        "a restore records no snapshot"
    );
    assert!(job.openstack_calls >= 3, "{}", job.openstack_calls);
    assert!(
        job.timeline
            .0
            .iter()
            .any(|e| e.what == "server" && e.status == "ACTIVE")
    );
    assert_eq!(h.sim.count("nova.create_server"), 1);
    let events: Vec<(String, serde_json::Value)> =
        sqlx::query_as("select kind, data from event where job_id = $1 order by seq")
            .bind(job_id)
            .fetch_all(&h.pool)
            .await
            .unwrap();
    let kinds: Vec<&str> = events.iter().map(|(k, _)| k.as_str()).collect();
    assert_eq!(kinds, ["job.started", "job.succeeded"]);
    for (_, data) in &events {
        assert_eq!(data["kind"], "restore");
        assert_eq!(data["snapshot_id"], snapshot_id.to_string());
    }
    assert_eq!(events[1].1["restored"]["server_id"], new_id.as_str());
}

#[sqlx::test]
async fn a_volume_backed_server_snapshot_restores_with_new_volumes_in_use(pool: PgPool) {
    // Arrange
    let h = harness(pool).await;
    let server = h.sim.create_volume_backed_server("db-1", 2, false);
    let snapshot_id = snapshot_of(&h, "server", &server).await;

    // Act
    let job_id = restore(&h, snapshot_id, json!({"name": "db-1-copy"})).await;
    let job = h.finish(job_id).await;

    // Assert
    assert_eq!(job.status, JobStatus::Succeeded, "{:?}", job.error);
    let made = restored(&job);
    let volumes = made.volume_ids.clone().unwrap();
    assert_eq!(volumes.len(), 2, "{made:?}");
    let source = h.cloud.nova().get_server(&server).await.unwrap();
    for id in &volumes {
        assert!(source.volumes_attached.iter().all(|v| v.id != *id));
        let volume = h.cloud.cinder().get_volume(id).await.unwrap();
        assert_eq!(volume.status, "in-use");
    }
    let new = h
        .cloud
        .nova()
        .get_server(made.server_id.as_deref().unwrap())
        .await
        .unwrap();
    assert_eq!(new.name, "db-1-copy");
}

#[sqlx::test]
async fn a_volume_backed_server_on_a_flavor_with_a_larger_disk_restores_with_a_root_of_min_disk(
    pool: PgPool,
) {
    // Arrange: 1 GiB volumes on m1.small (2 GB disk): Nova gives the snapshot
    // image min_disk 2, and its mapping's root (1 GiB) is too small for it.
    let h = harness(pool).await;
    let server = h
        .sim
        .create_volume_backed_server_with_flavor("db-2", 2, false, "m1.small");
    let snapshot_id = snapshot_of(&h, "server", &server).await;

    // Act
    let job_id = restore(&h, snapshot_id, json!({})).await;
    let job = h.finish(job_id).await;

    // Assert
    assert_eq!(job.status, JobStatus::Succeeded, "{:?}", job.error);
    let made = restored(&job);
    let new = h
        .cloud
        .nova()
        .get_server(made.server_id.as_deref().unwrap())
        .await
        .unwrap();
    assert_eq!(new.flavor["original_name"], "m1.small");
    assert_eq!(new.volumes_attached.len(), 2, "{new:?}");
    // Each volume goes with the server as the source's did (the mapping's flag).
    let source = h.cloud.nova().get_server(&server).await.unwrap();
    let mut sizes = Vec::new();
    for attached in &new.volumes_attached {
        assert!(
            source
                .volumes_attached
                .iter()
                .all(|v| v.delete_on_termination == attached.delete_on_termination),
            "{attached:?} {source:?}"
        );
        let volume = h.cloud.cinder().get_volume(&attached.id).await.unwrap();
        assert_eq!(volume.status, "in-use");
        sizes.push(volume.size);
    }
    sizes.sort_unstable();
    assert_eq!(
        sizes,
        [1, 2],
        "the root grows to the image's min_disk, the data volume keeps its size"
    );
}

#[sqlx::test]
async fn a_volume_snapshot_restores_to_an_available_volume(pool: PgPool) {
    // Arrange
    let h = harness(pool).await;
    let volume = h.sim.create_volume("data", 2, &[]);
    let snapshot_id = snapshot_of(&h, "volume", &volume).await;

    // Act
    let job_id = restore(&h, snapshot_id, json!({"size": 3, "name": "data-copy"})).await;
    let job = h.finish(job_id).await;

    // Assert
    assert_eq!(job.status, JobStatus::Succeeded, "{:?}", job.error);
    let id = restored(&job)
        .volume_id
        .expect("the new volume is recorded");
    let new = h.cloud.cinder().get_volume(&id).await.unwrap();
    assert_eq!(new.status, "available");
    assert_eq!(new.size, 3);
    assert_eq!(new.name.as_deref(), Some("data-copy"));
    assert_eq!(
        new.metadata["stacksnap_restored_from"],
        snapshot_id.to_string()
    );
    assert_eq!(new.metadata["stacksnap_job_id"], job_id.to_string());
}

#[sqlx::test]
async fn a_flavor_too_small_for_the_image_fails_naming_novas_error(pool: PgPool) {
    // Arrange: the image needs 2 GiB; m1.tiny has 1.
    let h = harness(pool).await;
    h.sim.create_image(&ImageSeed {
        name: "big".into(),
        min_disk: 2,
        ..ImageSeed::default()
    });
    let server = h
        .sim
        .create_server(&ServerSeed {
            name: "big-1".into(),
            flavor: "m1.small".into(),
            image: Some("big".into()),
            ..ServerSeed::default()
        })
        .unwrap();
    let snapshot_id = snapshot_of(&h, "server", &server).await;

    // Act
    let job_id = restore(&h, snapshot_id, json!({"flavor": "m1.tiny"})).await;
    let job = h.finish(job_id).await;

    // Assert
    assert_eq!(job.status, JobStatus::Failed);
    let error = job.error.unwrap().0;
    assert_eq!(error.code, "create_refused");
    assert!(error.message.contains("POST /servers"), "{}", error.message);
    assert!(error.message.contains("Flavor's disk"), "{}", error.message);
    assert!(job.cleanup_due_at.is_none(), "nothing was made");
}

#[sqlx::test]
async fn an_exhausted_instances_quota_fails_the_restore(pool: PgPool) {
    // Arrange: one instance allowed, the source uses it.
    let h = harness_with(pool, SimConfig::default().with_instances_quota(1)).await;
    let server = h.sim.create_image_backed_server("web-1", &[], &[], false);
    let snapshot_id = snapshot_of(&h, "server", &server).await;

    // Act
    let job_id = restore(&h, snapshot_id, json!({})).await;
    let job = h.finish(job_id).await;

    // Assert
    assert_eq!(job.status, JobStatus::Failed);
    let error = job.error.unwrap().0;
    assert_eq!(error.code, "quota_exceeded");
    assert!(error.message.contains("instances"), "{}", error.message);
}

#[sqlx::test]
async fn a_fault_on_the_volume_create_fails_the_restore(pool: PgPool) {
    // Arrange
    let h = harness(pool).await;
    let volume = h.sim.create_volume("data", 1, &[]);
    let snapshot_id = snapshot_of(&h, "volume", &volume).await;
    h.sim
        .inject(FaultRule::error("cinder.create_volume", 413).times(1));

    // Act
    let job_id = restore(&h, snapshot_id, json!({})).await;
    let job = h.finish(job_id).await;

    // Assert
    assert_eq!(job.status, JobStatus::Failed);
    assert!(
        job.error.unwrap().0.message.contains("POST /volumes"),
        "the step is named"
    );
}

#[sqlx::test]
async fn a_server_that_goes_error_fails_with_novas_fault_and_is_deleted(pool: PgPool) {
    // Arrange
    let h = harness(pool).await;
    let server = h.sim.create_image_backed_server("web-1", &[], &[], false);
    let snapshot_id = snapshot_of(&h, "server", &server).await;
    h.sim
        .inject(FaultRule::new("nova.create_server", Fault::ServerError).times(1));

    // Act
    let job_id = restore(&h, snapshot_id, json!({})).await;
    let job = h.finish(job_id).await;

    // Assert
    assert_eq!(job.status, JobStatus::Failed);
    assert_eq!(job.error.as_ref().unwrap().0.code, "server_error");
    let job = settle_cleanup(&h, job_id).await;
    let made = restored(&job);
    assert_eq!(made.cleanup.as_ref().unwrap().state, CleanupState::Deleted);
    assert!(server_gone(&h, made.server_id.as_deref().unwrap()).await);
    assert!(
        job.timeline
            .0
            .iter()
            .any(|e| e.what == "server" && e.status == "deleted")
    );
}

#[sqlx::test]
async fn a_cancelled_restore_deletes_the_server_and_its_volumes(pool: PgPool) {
    // Arrange: a volume-backed server whose copy never finishes building.
    let h = harness(pool).await;
    let server = h.sim.create_volume_backed_server("db-1", 2, false);
    let snapshot_id = snapshot_of(&h, "server", &server).await;
    h.sim
        .inject(FaultRule::new("nova.create_server", Fault::ServerStuck).times(1));
    let job_id = restore(&h, snapshot_id, json!({})).await;
    let tracking = h
        .drive(job_id, |j| {
            j.status == JobStatus::Tracking
                && restored(j)
                    .volume_ids
                    .as_ref()
                    .is_some_and(|v| v.len() == 2)
        })
        .await;
    let made = restored(&tracking);

    // Act
    let cancelled = lifecycle::cancel_job(&h.pool, "default", job_id, h.clock.now(), "test")
        .await
        .unwrap();
    assert!(matches!(cancelled, lifecycle::CancelOutcome::Cancelled(_)));
    let job = settle_cleanup(&h, job_id).await;

    // Assert
    assert_eq!(job.status, JobStatus::Cancelled);
    assert_eq!(restored(&job).cleanup.unwrap().state, CleanupState::Deleted);
    assert!(server_gone(&h, made.server_id.as_deref().unwrap()).await);
    for id in made.volume_ids.unwrap() {
        let gone = match h.cloud.cinder().get_volume(&id).await {
            Err(e) => e.is_not_found(),
            Ok(v) => v.status == "deleting",
        };
        assert!(gone, "volume {id} of the restore is deleted");
    }
}

#[sqlx::test]
async fn a_server_create_whose_answer_is_lost_is_found_by_its_tag_not_sent_twice(pool: PgPool) {
    // Arrange: Nova creates the server, then a proxy answers 503.
    let h = harness(pool).await;
    let server = h.sim.create_image_backed_server("web-1", &[], &[], false);
    let snapshot_id = snapshot_of(&h, "server", &server).await;
    h.sim
        .inject(FaultRule::reply_lost("nova.create_server", 503).times(1));

    // Act
    let job_id = restore(&h, snapshot_id, json!({})).await;
    let job = h.finish(job_id).await;

    // Assert
    assert_eq!(job.status, JobStatus::Succeeded, "{:?}", job.error);
    assert_eq!(
        h.sim.count("nova.create_server"),
        1,
        "never sent blindly again"
    );
    let tagged = h
        .cloud
        .nova()
        .list_servers(&ServerFilter {
            tags: vec![format!("stacksnap-job-{job_id}")],
            ..ServerFilter::default()
        })
        .await
        .unwrap();
    assert_eq!(tagged.len(), 1);
    assert_eq!(
        restored(&job).server_id.as_deref(),
        Some(tagged[0].id.as_str())
    );
}

#[sqlx::test]
async fn a_volume_create_whose_answer_is_lost_is_found_by_its_metadata(pool: PgPool) {
    // Arrange
    let h = harness(pool).await;
    let volume = h.sim.create_volume("data", 1, &[]);
    let snapshot_id = snapshot_of(&h, "volume", &volume).await;
    h.sim
        .inject(FaultRule::reply_lost("cinder.create_volume", 503).times(1));

    // Act
    let job_id = restore(&h, snapshot_id, json!({})).await;
    let job = h.finish(job_id).await;

    // Assert
    assert_eq!(job.status, JobStatus::Succeeded, "{:?}", job.error);
    assert_eq!(h.sim.count("cinder.create_volume"), 1);
    let ours = h
        .cloud
        .cinder()
        .list_volumes(&VolumeFilter {
            metadata: BTreeMap::from([("stacksnap_job_id".to_owned(), job_id.to_string())]),
            ..VolumeFilter::default()
        })
        .await
        .unwrap();
    assert_eq!(ours.len(), 1);
    assert_eq!(
        restored(&job).volume_id.as_deref(),
        Some(ours[0].id.as_str())
    );
}

#[sqlx::test]
async fn a_cancel_while_the_create_is_unclear_finds_and_deletes_what_it_made(pool: PgPool) {
    // Arrange: the create is carried out but its answer lost; the job is
    // cancelled before any look-up.
    let h = harness(pool).await;
    let volume = h.sim.create_volume("data", 1, &[]);
    let snapshot_id = snapshot_of(&h, "volume", &volume).await;
    h.sim
        .inject(FaultRule::reply_lost("cinder.create_volume", 503).times(1));
    let job_id = restore(&h, snapshot_id, json!({})).await;
    h.drive(job_id, |j| j.create_unclear_at.is_some() && j.attempt == 1)
        .await;

    // Act
    lifecycle::cancel_job(&h.pool, "default", job_id, h.clock.now(), "test")
        .await
        .unwrap();
    let job = settle_cleanup(&h, job_id).await;

    // Assert
    let made = restored(&job);
    assert_eq!(made.cleanup.unwrap().state, CleanupState::Deleted);
    let id = made.volume_id.expect("found by its metadata");
    let gone = match h.cloud.cinder().get_volume(&id).await {
        Err(e) => e.is_not_found(),
        Ok(v) => v.status == "deleting",
    };
    assert!(gone);
}

#[sqlx::test]
async fn a_restore_in_flight_does_not_block_a_snapshot_of_its_source(pool: PgPool) {
    // Arrange: a restore that stays building.
    let h = harness(pool).await;
    let server = h.sim.create_image_backed_server("web-1", &[], &[], false);
    let snapshot_id = snapshot_of(&h, "server", &server).await;
    h.sim
        .inject(FaultRule::new("nova.create_server", Fault::ServerStuck).times(1));
    let restore_id = restore(&h, snapshot_id, json!({})).await;
    h.drive(restore_id, |j| j.status == JobStatus::Tracking)
        .await;

    // Act
    let job_id = h.adhoc("server", &server, json!({})).await;
    let job = h.finish(job_id).await;

    // Assert
    assert_eq!(job.status, JobStatus::Succeeded, "{:?}", job.error);
    assert_eq!(h.job(restore_id).await.status, JobStatus::Tracking);
}

#[sqlx::test]
async fn a_restores_trust_is_kept_until_its_clean_up_is_over(pool: PgPool) {
    // Arrange: a cancelled restore whose clean-up is due, made with a trust.
    let h = harness(pool).await;
    let volume = h.sim.create_volume("data", 1, &[]);
    let snapshot_id = snapshot_of(&h, "volume", &volume).await;
    let job_id = restore(&h, snapshot_id, json!({})).await;
    h.drive(job_id, |j| j.status == JobStatus::Tracking).await;
    let trust = stacksnap::openstack::TrustId::new("trust-1");
    let past = h.clock.now() - chrono::TimeDelta::hours(1);
    stacksnap::store::trusts::record(&h.pool, &trust, "default", past)
        .await
        .unwrap();
    sqlx::query("update run set trust_id = 'trust-1' where run_id = (select run_id from job where job_id = $1)")
        .bind(job_id)
        .execute(&h.pool)
        .await
        .unwrap();
    lifecycle::cancel_job(&h.pool, "default", job_id, h.clock.now(), "test")
        .await
        .unwrap();
    let unreferenced = || async {
        stacksnap::store::trusts::unreferenced(
            &h.pool,
            h.clock.now(),
            chrono::TimeDelta::minutes(10),
            10,
        )
        .await
        .unwrap()
        .len()
    };

    // Act and assert: kept while the clean-up is due, released after it.
    assert_eq!(unreferenced().await, 0, "the clean-up still acts with it");
    settle_cleanup(&h, job_id).await;
    assert_eq!(unreferenced().await, 1);
}

#[sqlx::test]
async fn a_failed_restore_counts_as_a_restore_not_as_a_failed_snapshot_job(pool: PgPool) {
    // Arrange: a restore Nova refuses (quota).
    let h = harness_with(pool, SimConfig::default().with_instances_quota(1)).await;
    let server = h.sim.create_image_backed_server("web-1", &[], &[], false);
    snapshot_of(&h, "server", &server).await;
    let snapshot_id: Uuid = sqlx::query_scalar("select snapshot_id from snapshot")
        .fetch_one(&h.pool)
        .await
        .unwrap();

    // Act
    let job_id = restore(&h, snapshot_id, json!({})).await;
    assert_eq!(h.finish(job_id).await.status, JobStatus::Failed);

    // Assert: the snapshot-failure alert reads stacksnap_jobs_total.
    let count = |family: &'static str, status: &'static str| {
        let pool = h.pool.clone();
        async move {
            sqlx::query_scalar::<_, f64>(
                "select coalesce(sum(value), 0) from (select family, labels, value from metric_delta \
                 union all select family, labels, value from metric_counter) m \
                 where family = $1 and labels ->> 'status' = $2",
            )
            .bind(family)
            .bind(status)
            .fetch_one(&pool)
            .await
            .unwrap()
        }
    };
    assert_eq!(count("stacksnap_jobs_total", "failed").await, 0.0);
    assert_eq!(count("stacksnap_jobs_total", "succeeded").await, 1.0);
    assert_eq!(count("stacksnap_restores_total", "failed").await, 1.0);
}

#[sqlx::test]
async fn the_history_purge_keeps_a_restore_whose_clean_up_is_due(pool: PgPool) {
    // Arrange: a cancelled restore whose clean-up has not run.
    let h = harness(pool).await;
    let volume = h.sim.create_volume("data", 1, &[]);
    let snapshot_id = snapshot_of(&h, "volume", &volume).await;
    let job_id = restore(&h, snapshot_id, json!({})).await;
    h.drive(job_id, |j| j.status == JobStatus::Tracking).await;
    lifecycle::cancel_job(&h.pool, "default", job_id, h.clock.now(), "test")
        .await
        .unwrap();
    let later = h.clock.now() + chrono::TimeDelta::days(400);

    // Act
    stacksnap::store::history::purge_finished_runs(&h.pool, later, 100)
        .await
        .unwrap();

    // Assert: still there to be cleaned up, and cleaned up.
    let job = settle_cleanup(&h, job_id).await;
    assert_eq!(restored(&job).cleanup.unwrap().state, CleanupState::Deleted);
}

#[sqlx::test]
async fn a_boot_volume_in_error_fails_the_restore_and_its_volumes_are_deleted(pool: PgPool) {
    // Arrange: Nova's boot volume from the snapshot goes to error.
    let h = harness(pool).await;
    let server = h.sim.create_volume_backed_server("db-1", 1, false);
    let snapshot_id = snapshot_of(&h, "server", &server).await;
    let before: Vec<String> = h
        .cloud
        .cinder()
        .list_volumes(&VolumeFilter::default())
        .await
        .unwrap()
        .into_iter()
        .map(|v| v.id)
        .collect();
    h.sim
        .inject(FaultRule::new("nova.create_server", Fault::VolumeError).times(1));

    // Act
    let job_id = restore(&h, snapshot_id, json!({})).await;
    h.finish(job_id).await;
    let job = settle_cleanup(&h, job_id).await;

    // Assert
    assert_eq!(job.status, JobStatus::Failed);
    let error = job.error.clone().unwrap().0;
    assert!(
        matches!(error.code.as_str(), "server_error" | "volume_error"),
        "{error:?}"
    );
    let left: Vec<String> = h
        .cloud
        .cinder()
        .list_volumes(&VolumeFilter::default())
        .await
        .unwrap()
        .into_iter()
        .filter(|v| !before.contains(&v.id) && v.status != "deleting")
        .map(|v| format!("{} {}", v.id, v.status))
        .collect();
    assert!(
        left.is_empty(),
        "left behind: {left:?}; restored {:?}",
        restored(&job)
    );
}

/// A group snapshot of two volumes, and the group's id.
async fn group_snapshot(h: &Harness) -> (Uuid, String) {
    let (a, b) = (
        h.sim.create_volume("ga", 1, &[]),
        h.sim.create_volume("gb", 1, &[]),
    );
    let group = crate::helpers::volume_group(&h.cloud, "default_group_type", &[&a, &b]).await;
    (snapshot_of(h, "volume_group", &group).await, group)
}

#[sqlx::test]
async fn a_volume_group_snapshot_restores_to_a_new_group_with_stamped_volumes(pool: PgPool) {
    // Arrange
    let h = harness(pool).await;
    let (snapshot_id, source) = group_snapshot(&h).await;

    // Act
    let job_id = restore(
        &h,
        snapshot_id,
        json!({"name": "g-copy", "metadata": {"t": "1"}}),
    )
    .await;
    let job = h.finish(job_id).await;

    // Assert
    assert_eq!(job.status, JobStatus::Succeeded, "{:?}", job.error);
    let made = restored(&job);
    let group_id = made.group_id.expect("the new group is recorded");
    assert_ne!(group_id, source);
    let group = h.cloud.cinder().get_group(&group_id).await.unwrap();
    assert_eq!(group.status, "available");
    let volumes = made.volume_ids.unwrap();
    assert_eq!(volumes.len(), 2);
    for id in &volumes {
        let volume = h.cloud.cinder().get_volume(id).await.unwrap();
        assert_eq!(volume.group_id.as_deref(), Some(group_id.as_str()));
        assert_eq!(
            volume.metadata["stacksnap_restored_from"],
            snapshot_id.to_string()
        );
        assert_eq!(volume.metadata["stacksnap_job_id"], job_id.to_string());
        assert_eq!(volume.metadata["t"], "1");
    }
}

#[sqlx::test]
async fn a_group_create_whose_answer_is_lost_is_found_by_name_and_description(pool: PgPool) {
    // Arrange
    let h = harness(pool).await;
    let (snapshot_id, _) = group_snapshot(&h).await;
    h.sim
        .inject(FaultRule::reply_lost("cinder.create_group_from_src", 503).times(1));

    // Act
    let job_id = restore(&h, snapshot_id, json!({})).await;
    let job = h.finish(job_id).await;

    // Assert
    assert_eq!(job.status, JobStatus::Succeeded, "{:?}", job.error);
    assert_eq!(h.sim.count("cinder.create_group_from_src"), 1);
    assert!(restored(&job).group_id.is_some());
}

#[sqlx::test]
async fn a_cancelled_group_restore_deletes_the_group_with_its_volumes(pool: PgPool) {
    // Arrange: the group's volumes take a while (the simulator's real time).
    let mut config = SimConfig::default();
    config.durations.volume_create = std::time::Duration::from_millis(1500);
    let h = harness_with(pool, config).await;
    let (snapshot_id, _) = group_snapshot(&h).await;
    let job_id = restore(&h, snapshot_id, json!({})).await;
    let tracking = h
        .drive(job_id, |j| {
            j.status == JobStatus::Tracking
                && restored(j)
                    .volume_ids
                    .as_ref()
                    .is_some_and(|v| v.len() == 2)
        })
        .await;
    let made = restored(&tracking);
    let group_id = made.group_id.clone().unwrap();
    let group = h.cloud.cinder().get_group(&group_id).await.unwrap();
    assert_eq!(group.status, "creating");

    // Act
    lifecycle::cancel_job(&h.pool, "default", job_id, h.clock.now(), "test")
        .await
        .unwrap();
    let job = settle_cleanup(&h, job_id).await;

    // Assert
    assert_eq!(restored(&job).cleanup.unwrap().state, CleanupState::Deleted);
    let gone = h
        .cloud
        .cinder()
        .get_group(made.group_id.as_deref().unwrap())
        .await
        .is_err_and(|e| e.is_not_found());
    assert!(gone, "the group is deleted");
    for id in made.volume_ids.unwrap() {
        let gone = match h.cloud.cinder().get_volume(&id).await {
            Err(e) => e.is_not_found(),
            Ok(v) => v.status == "deleting",
        };
        assert!(gone, "volume {id} is deleted with its group");
    }
}

#[sqlx::test]
async fn below_compute_2_52_the_server_carries_no_tag_and_is_found_by_its_metadata(pool: PgPool) {
    // Arrange: Nova refuses `tags` in the create body below 2.52; the
    // create's answer is lost.
    let config = SimConfig {
        nova_max_microversion: "2.51".into(),
        ..SimConfig::default()
    };
    let h = harness_with(pool, config).await;
    let server = h.sim.create_image_backed_server("web-1", &[], &[], false);
    let snapshot_id = snapshot_of(&h, "server", &server).await;
    h.sim
        .inject(FaultRule::reply_lost("nova.create_server", 503).times(1));

    // Act
    let job_id = restore(&h, snapshot_id, json!({})).await;
    let job = h.finish(job_id).await;

    // Assert
    assert_eq!(job.status, JobStatus::Succeeded, "{:?}", job.error);
    assert_eq!(
        h.sim.count("nova.create_server"),
        1,
        "found, not sent again"
    );
    let id = restored(&job).server_id.unwrap();
    let new = h.cloud.nova().get_server(&id).await.unwrap();
    assert_eq!(new.metadata["stacksnap_job_id"], job_id.to_string());
}

#[sqlx::test]
async fn a_clean_up_left_to_the_services_credentials_searches_every_project_by_the_job_id(
    pool: PgPool,
) {
    // Arrange: a volume restore whose create's answer was lost, then its run
    // becomes a tenant's whose trust Keystone refuses: the service's
    // credentials search every project (the simulator cannot move the volume
    // to another project, so the search's filter is what is checked).
    let h = harness(pool).await;
    let volume = h.sim.create_volume("data", 1, &[]);
    let snapshot_id = snapshot_of(&h, "volume", &volume).await;
    h.sim
        .inject(FaultRule::reply_lost("cinder.create_volume", 503).times(1));
    let job_id = restore(&h, snapshot_id, json!({})).await;
    h.drive(job_id, |j| j.create_unclear_at.is_some() && j.attempt == 1)
        .await;
    let made = h
        .cloud
        .cinder()
        .list_volumes(&VolumeFilter {
            metadata: BTreeMap::from([("stacksnap_job_id".to_owned(), job_id.to_string())]),
            ..VolumeFilter::default()
        })
        .await
        .unwrap();
    let tenant = made[0].tenant_id.clone().expect("an admin sees the owner");
    let tenant = tenant.as_str();
    let made = made[0].id.clone();
    sqlx::query(
        "update run set delegated = true, trust_id = 'refused', project_id = $2 \
         where run_id = (select run_id from job where job_id = $1)",
    )
    .bind(job_id)
    .bind(tenant)
    .execute(&h.pool)
    .await
    .unwrap();
    sqlx::query("update job set project_id = $2 where job_id = $1")
        .bind(job_id)
        .bind(tenant)
        .execute(&h.pool)
        .await
        .unwrap();

    // Act
    lifecycle::cancel_job(&h.pool, tenant, job_id, h.clock.now(), "test")
        .await
        .unwrap();
    let mut job = None;
    for _ in 0..500 {
        h.work().await;
        let j = jobs::fetch_job(&h.pool, tenant, job_id)
            .await
            .unwrap()
            .unwrap();
        if j.cleanup_due_at.is_none() {
            job = Some(j);
            break;
        }
        h.clock.advance(chrono::TimeDelta::milliseconds(500));
        tokio::time::sleep(std::time::Duration::from_millis(30)).await;
    }

    // Assert
    let job = job.expect("the clean-up ends");
    assert_eq!(restored(&job).volume_id.as_deref(), Some(made.as_str()));
    assert!(h.sim.requests().iter().any(
        |r| r.operation.starts_with("cinder.list_volumes") && r.query.contains("all_tenants=1")
    ));
    let gone = match h.cloud.cinder().get_volume(&made).await {
        Err(e) => e.is_not_found(),
        Ok(v) => v.status == "deleting",
    };
    assert!(gone, "the tenant's volume the restore made is deleted");
}

#[sqlx::test]
async fn a_snapshot_being_restored_is_deleted_only_after_the_restore_ends(pool: PgPool) {
    // Arrange: a volume snapshot with a restore queued; then its deletion is asked for
    // (as retention, a DELETE or the policy's deletion do).
    let h = harness(pool).await;
    let volume = h.sim.create_volume("data", 1, &[]);
    let source_job = h.adhoc("volume", &volume, json!({})).await;
    assert_eq!(h.finish(source_job).await.status, JobStatus::Succeeded);
    let snapshot_id = h.snapshot_rows(source_job).await[0].0;
    let restore_job = restore(&h, snapshot_id, json!({})).await;
    let marked = snapshots::request_delete(&h.pool, "default", snapshot_id, h.clock.now())
        .await
        .unwrap()
        .unwrap();
    assert_eq!(marked.state, SnapshotState::Deleting);

    // Act: the deletion loop runs while the restore is still queued.
    for _ in 0..5 {
        h.engine.delete_next().await.unwrap();
        h.clock.advance(chrono::TimeDelta::seconds(30));
    }
    let waiting = snapshots::fetch_snapshot(&h.pool, "default", snapshot_id)
        .await
        .unwrap()
        .unwrap();

    // Assert: nothing was deleted under the restore, which then succeeds.
    assert_eq!(waiting.state, SnapshotState::Deleting);
    let piece = &waiting.volume_snapshots.0[0].snapshot_id;
    assert_eq!(
        h.sim.snapshot_status(piece).as_deref(),
        Some("available"),
        "the Cinder snapshot is still there"
    );
    let restored_job = h.finish(restore_job).await;
    assert_eq!(
        restored_job.status,
        JobStatus::Succeeded,
        "{:?}",
        restored_job.error
    );

    // Act + Assert: once the restore ended, the deletion goes ahead.
    let rows = h.settle_deletions(source_job).await;
    assert_eq!(rows[0].1, "deleted", "{rows:?}");
}

#[sqlx::test]
async fn a_restore_of_a_snapshot_already_being_deleted_is_not_queued(pool: PgPool) {
    let h = harness(pool).await;
    let volume = h.sim.create_volume("data", 1, &[]);
    let snapshot_id = snapshot_of(&h, "volume", &volume).await;
    let snapshot = snapshots::fetch_snapshot(&h.pool, "default", snapshot_id)
        .await
        .unwrap()
        .unwrap();
    let pieces = snapshot.restore_pieces();
    let request: RestoreRequest = serde_json::from_value(json!({})).unwrap();
    let timeout = request.validate(&pieces).unwrap();
    let job_id = Uuid::now_v7();
    let spec = request.spec(&pieces, job_id).unwrap();
    let job = restore_job(&pieces, spec, timeout, job_id, h.clock.now());

    // Act: retention marks it for deletion between the API's read and the insert.
    snapshots::request_delete(&h.pool, "default", snapshot_id, h.clock.now())
        .await
        .unwrap();
    let queued = lifecycle::insert_single_job_run(
        &h.pool,
        "default",
        None,
        &job,
        Default::default(),
        h.clock.now(),
        RunTrigger::Restore,
    )
    .await
    .unwrap();

    // Assert
    assert_eq!(queued, None);
    let jobs: i64 = sqlx::query_scalar("select count(*) from job where kind = 'restore'")
        .fetch_one(&h.pool)
        .await
        .unwrap();
    assert_eq!(jobs, 0);
}

#[sqlx::test]
async fn a_clean_up_with_the_services_credentials_never_deletes_a_group_of_unknown_project(
    pool: PgPool,
) {
    // Arrange: below volume 3.58 a group shows no `project_id`. A group
    // restore's create fails unclearly (nothing made), its run's trust is
    // refused, and another project (`alt`) holds a group of the same name whose
    // description names the job.
    let h = harness_with(
        pool,
        SimConfig::default().with_cinder_max_microversion("3.50"),
    )
    .await;
    let (snapshot_id, _) = group_snapshot(&h).await;
    h.sim
        .inject(FaultRule::error("cinder.create_group_from_src", 503).times(1));
    let job_id = restore(&h, snapshot_id, json!({"name": "shared-name"})).await;
    h.drive(job_id, |j| j.create_unclear_at.is_some() && j.attempt == 1)
        .await;
    let alt = crate::helpers::cloud_named(&h.sim, "stacksnap-sim-alt");
    let create = stacksnap::openstack::session::Call::new(
        stacksnap::openstack::session::Service::Volume,
        "create_group",
        reqwest::Method::POST,
        "/groups",
    )
    .json(json!({"group": {
        "name": "shared-name",
        "description": format!("mine, not stacksnap job {job_id}'s"),
        "group_type": "default_group_type",
        "volume_types": ["__DEFAULT__"]}}));
    let reply = alt.session().send(&create).await.unwrap();
    let forged: serde_json::Value = serde_json::from_slice(&reply.body).unwrap();
    let forged = forged["group"]["id"].as_str().unwrap().to_owned();
    for _ in 0..40 {
        if alt.cinder().get_group(&forged).await.unwrap().status == "available" {
            break;
        }
        tokio::time::sleep(std::time::Duration::from_millis(100)).await;
    }
    sqlx::query(
        "update run set delegated = true, trust_id = 'refused' \
         where run_id = (select run_id from job where job_id = $1)",
    )
    .bind(job_id)
    .execute(&h.pool)
    .await
    .unwrap();

    // Act
    lifecycle::cancel_job(&h.pool, "default", job_id, h.clock.now(), "test")
        .await
        .unwrap();
    for _ in 0..200 {
        h.work().await;
        let j = jobs::fetch_job(&h.pool, "default", job_id)
            .await
            .unwrap()
            .unwrap();
        if j.cleanup_due_at.is_none() {
            break;
        }
        h.clock.advance(chrono::TimeDelta::milliseconds(500));
        tokio::time::sleep(std::time::Duration::from_millis(20)).await;
    }

    // Assert
    let group = alt.cinder().get_group(&forged).await;
    assert!(
        group.as_ref().is_ok_and(|g| g.status == "available"),
        "another project's group was deleted by the service: {group:?}"
    );
}

/// A server "a user" makes in the project with `image` and the job's tag and
/// metadata, as anyone in the project can.
async fn forged_server(h: &Harness, job_id: Uuid, image: &str) -> String {
    h.cloud
        .nova()
        .create_server(json!({
            "name": "not-the-restore",
            "imageRef": image,
            "flavorRef": "1",
            "networks": "none",
            "tags": [format!("stacksnap-job-{job_id}")],
            "metadata": {"stacksnap_job_id": job_id.to_string()},
        }))
        .await
        .unwrap()
}

#[sqlx::test]
async fn recovery_never_adopts_a_server_carrying_the_jobs_tag_with_another_image(pool: PgPool) {
    // Arrange: a server of another image carries the job's tag; the job's
    // create fails unclearly without being carried out.
    let h = harness(pool).await;
    let server = h.sim.create_image_backed_server("web-1", &[], &[], false);
    let snapshot_id = snapshot_of(&h, "server", &server).await;
    let base = h.cloud.nova().get_server(&server).await.unwrap();
    let job_id = restore(&h, snapshot_id, json!({})).await;
    let forged = forged_server(&h, job_id, base.image_id().unwrap()).await;
    h.sim
        .inject(FaultRule::error("nova.create_server", 503).times(1));

    // Act
    let job = h.finish(job_id).await;

    // Assert: the forged server is neither adopted nor touched; the job made its own.
    assert_eq!(job.status, JobStatus::Succeeded, "{:?}", job.error);
    let made = restored(&job).server_id.unwrap();
    assert_ne!(made, forged, "the forged server was adopted");
    let image = snapshots::fetch_snapshot(&h.pool, "default", snapshot_id)
        .await
        .unwrap()
        .unwrap()
        .image_id;
    let new = h.cloud.nova().get_server(&made).await.unwrap();
    assert_eq!(new.image_id(), image.as_deref());
    assert!(!server_gone(&h, &forged).await);
}

#[sqlx::test]
async fn recovery_never_adopts_a_volume_carrying_the_jobs_metadata_made_from_elsewhere(
    pool: PgPool,
) {
    // Arrange: a blank volume carries the job's metadata; the job's create
    // fails unclearly without being carried out.
    let h = harness(pool).await;
    let volume = h.sim.create_volume("data", 1, &[]);
    let snapshot_id = snapshot_of(&h, "volume", &volume).await;
    let job_id = restore(&h, snapshot_id, json!({})).await;
    let forged = h.sim.create_volume(
        "not-the-restore",
        1,
        &[("stacksnap_job_id", &job_id.to_string())],
    );
    h.sim
        .inject(FaultRule::error("cinder.create_volume", 503).times(1));

    // Act
    let job = h.finish(job_id).await;

    // Assert
    assert_eq!(job.status, JobStatus::Succeeded, "{:?}", job.error);
    let made = restored(&job).volume_id.unwrap();
    assert_ne!(made, forged, "the forged volume was adopted");
    let new = h.cloud.cinder().get_volume(&made).await.unwrap();
    assert!(new.snapshot_id.is_some());
    assert_eq!(
        h.cloud.cinder().get_volume(&forged).await.unwrap().status,
        "available"
    );
}

#[sqlx::test]
async fn recovery_refuses_to_pick_between_two_servers_that_both_look_like_the_restore(
    pool: PgPool,
) {
    // Arrange: two servers of the snapshot's image carry the job's tag; the
    // job's create fails unclearly without being carried out.
    let h = harness(pool).await;
    let server = h.sim.create_image_backed_server("web-1", &[], &[], false);
    let snapshot_id = snapshot_of(&h, "server", &server).await;
    let image = snapshots::fetch_snapshot(&h.pool, "default", snapshot_id)
        .await
        .unwrap()
        .unwrap()
        .image_id
        .unwrap();
    let job_id = restore(&h, snapshot_id, json!({})).await;
    let first = forged_server(&h, job_id, &image).await;
    let second = forged_server(&h, job_id, &image).await;
    h.sim
        .inject(FaultRule::error("nova.create_server", 503).times(1));

    // Act
    h.finish(job_id).await;
    let job = settle_cleanup(&h, job_id).await;

    // Assert: failed, naming both; neither adopted nor deleted.
    assert_eq!(job.status, JobStatus::Failed);
    let error = job.error.clone().unwrap().0;
    assert_eq!(error.code, "restore_ambiguous", "{error:?}");
    assert!(
        error.message.contains(&first) && error.message.contains(&second),
        "{error:?}"
    );
    assert_eq!(restored(&job).server_id, None);
    assert!(!server_gone(&h, &first).await);
    assert!(!server_gone(&h, &second).await);
}

/// Attaches `volume` to `server` as a user does (`POST os-volume_attachments`).
async fn attach(h: &Harness, server: &str, volume: &str) {
    use stacksnap::openstack::session::{Call, Service};
    let call = Call::new(
        Service::Compute,
        "attach_volume",
        reqwest::Method::POST,
        format!("/servers/{server}/os-volume_attachments"),
    )
    .json(json!({"volumeAttachment": {"volumeId": volume}}));
    h.cloud.session().send(&call).await.unwrap();
}

/// Waits (on the simulator's real clock) until the server is ACTIVE.
async fn until_active(h: &Harness, server: &str) {
    for _ in 0..400 {
        if h.cloud.nova().get_server(server).await.unwrap().status == "ACTIVE" {
            return;
        }
        tokio::time::sleep(std::time::Duration::from_millis(25)).await;
    }
    panic!("{server} never became ACTIVE");
}

#[sqlx::test]
async fn the_clean_up_deletes_only_the_volumes_the_restore_made_not_one_a_user_attached(
    pool: PgPool,
) {
    // Arrange: a volume-backed restore, ACTIVE; a user attaches their own
    // volume to it; then the restore is cancelled.
    let h = harness(pool).await;
    let server = h.sim.create_volume_backed_server("db-1", 2, false);
    let snapshot_id = snapshot_of(&h, "server", &server).await;
    let job_id = restore(&h, snapshot_id, json!({})).await;
    let tracking = h.drive(job_id, |j| j.status == JobStatus::Tracking).await;
    let new = restored(&tracking).server_id.unwrap();
    until_active(&h, &new).await;
    let ours: Vec<String> = h
        .cloud
        .nova()
        .get_server(&new)
        .await
        .unwrap()
        .volumes_attached
        .into_iter()
        .map(|v| v.id)
        .collect();
    assert_eq!(ours.len(), 2);
    let theirs = h.sim.create_volume("users-data", 1, &[]);
    attach(&h, &new, &theirs).await;

    // Act
    lifecycle::cancel_job(&h.pool, "default", job_id, h.clock.now(), "test")
        .await
        .unwrap();
    let job = settle_cleanup(&h, job_id).await;

    // Assert: the server and its two volumes are gone; the user's volume stays.
    assert_eq!(job.status, JobStatus::Cancelled);
    assert_eq!(restored(&job).cleanup.unwrap().state, CleanupState::Deleted);
    assert!(server_gone(&h, &new).await);
    for id in &ours {
        let gone = match h.cloud.cinder().get_volume(id).await {
            Err(e) => e.is_not_found(),
            Ok(v) => v.status == "deleting",
        };
        assert!(gone, "volume {id} of the restore is deleted");
    }
    let kept = h.cloud.cinder().get_volume(&theirs).await;
    assert!(
        kept.as_ref().is_ok_and(|v| v.status != "deleting"),
        "the user's volume was deleted: {kept:?}"
    );
    assert!(
        !restored(&job)
            .volume_ids
            .unwrap_or_default()
            .contains(&theirs),
        "the user's volume is not recorded as the restore's"
    );
}

#[sqlx::test]
async fn a_clean_up_whose_lease_is_lost_after_the_server_delete_still_deletes_its_volumes(
    pool: PgPool,
) {
    // Arrange: a volume-backed restore cancelled before any poll recorded
    // its volumes; Nova's answer to the server delete is slow.
    let h = harness(pool).await;
    let server = h.sim.create_volume_backed_server("db-1", 2, false);
    let snapshot_id = snapshot_of(&h, "server", &server).await;
    let job_id = restore(&h, snapshot_id, json!({})).await;
    let tracking = h.drive(job_id, |j| j.status == JobStatus::Tracking).await;
    let new = restored(&tracking).server_id.unwrap();
    until_active(&h, &new).await;
    let ours: Vec<String> = h
        .cloud
        .nova()
        .get_server(&new)
        .await
        .unwrap()
        .volumes_attached
        .into_iter()
        .map(|v| v.id)
        .collect();
    assert_eq!(ours.len(), 2);
    lifecycle::cancel_job(&h.pool, "default", job_id, h.clock.now(), "test")
        .await
        .unwrap();
    h.sim.inject(
        FaultRule::latency("nova.delete_server", std::time::Duration::from_millis(800)).times(1),
    );

    // Act: clean-up steps run; while the server delete is in flight another
    // worker takes the lease over, so that step records nothing.
    let thief = Uuid::new_v4();
    let mut stolen = false;
    for _ in 0..50 {
        let steal = async {
            tokio::time::sleep(std::time::Duration::from_millis(300)).await;
            sqlx::query(
                "update job set lease_owner = $2, lease_expires_at = $3 \
                 where job_id = $1 and lease_owner is not null and lease_owner <> $2",
            )
            .bind(job_id)
            .bind(thief)
            .bind(h.clock.now() + chrono::TimeDelta::days(1))
            .execute(&h.pool)
            .await
            .unwrap()
            .rows_affected()
                == 1
        };
        let ((), took) = tokio::join!(h.work(), steal);
        if took {
            stolen = true;
            break;
        }
        h.clock.advance(chrono::TimeDelta::milliseconds(500));
    }
    assert!(stolen, "the lease was taken over during a step");
    assert_eq!(h.sim.count("nova.delete_server"), 1, "the delete was sent");
    for _ in 0..400 {
        if server_gone(&h, &new).await {
            break;
        }
        tokio::time::sleep(std::time::Duration::from_millis(25)).await;
    }
    assert!(server_gone(&h, &new).await);
    // The other worker dies: its lease is released.
    sqlx::query("update job set lease_owner = null, lease_expires_at = null where job_id = $1")
        .bind(job_id)
        .execute(&h.pool)
        .await
        .unwrap();
    let job = settle_cleanup(&h, job_id).await;

    // Assert: the restore's volumes are deleted all the same.
    assert_eq!(restored(&job).cleanup.unwrap().state, CleanupState::Deleted);
    for id in &ours {
        let gone = match h.cloud.cinder().get_volume(id).await {
            Err(e) => e.is_not_found(),
            Ok(v) => v.status == "deleting",
        };
        assert!(gone, "volume {id} of the restore is left behind");
    }
}

#[sqlx::test]
async fn a_failed_restore_is_not_a_failed_job_in_the_status_summary(pool: PgPool) {
    // Arrange: a restore Nova refuses (quota).
    let h = harness_with(pool, SimConfig::default().with_instances_quota(1)).await;
    let server = h.sim.create_image_backed_server("web-1", &[], &[], false);
    let snapshot_id = snapshot_of(&h, "server", &server).await;

    // Act
    let job_id = restore(&h, snapshot_id, json!({})).await;
    assert_eq!(h.finish(job_id).await.status, JobStatus::Failed);

    // Assert: GET /v1/status's jobs_failed_24h counts snapshot jobs only.
    let summary = stacksnap::store::summary::fetch_summary(&h.pool, "default", h.clock.now())
        .await
        .unwrap();
    assert_eq!(summary.jobs_failed_24h, 0, "{summary:?}");
    assert_eq!(
        summary.restores_failed_24h, 1,
        "the restore counts as a restore"
    );
}

#[sqlx::test]
async fn below_volume_3_58_a_group_the_services_credentials_cannot_own_is_a_clean_up_error_not_silence(
    pool: PgPool,
) {
    // Arrange: below volume 3.58 a group shows no `project_id`. A group
    // restore's create is carried out but its answer lost; the job is
    // cancelled at once and its run's trust is refused, so the clean-up
    // searches with the service's credentials.
    let h = harness_with(
        pool,
        SimConfig::default().with_cinder_max_microversion("3.50"),
    )
    .await;
    let (snapshot_id, _) = group_snapshot(&h).await;
    h.sim
        .inject(FaultRule::reply_lost("cinder.create_group_from_src", 503).times(1));
    let job_id = restore(&h, snapshot_id, json!({"name": "restored-group"})).await;
    h.drive(job_id, |j| j.create_unclear_at.is_some() && j.attempt == 1)
        .await;
    sqlx::query(
        "update run set delegated = true, trust_id = 'refused' \
         where run_id = (select run_id from job where job_id = $1)",
    )
    .bind(job_id)
    .execute(&h.pool)
    .await
    .unwrap();
    let made = h
        .cloud
        .cinder()
        .list_groups_named("restored-group", false)
        .await
        .unwrap();
    assert_eq!(made.len(), 1, "the create was carried out");
    let group = made[0].id.clone();

    // Act: the clean-up runs well past the create's settling time.
    lifecycle::cancel_job(&h.pool, "default", job_id, h.clock.now(), "test")
        .await
        .unwrap();
    for _ in 0..40 {
        h.work().await;
        h.clock.advance(chrono::TimeDelta::milliseconds(500));
        tokio::time::sleep(std::time::Duration::from_millis(10)).await;
    }

    // Assert: not ended as if nothing was made: an error names the group,
    // and the clean-up is still due (retried).
    let job = h.job(job_id).await;
    let cleanup = restored(&job).cleanup.expect("the clean-up ran");
    assert_eq!(cleanup.state, CleanupState::Deleting, "{cleanup:?}");
    let error = cleanup.error.unwrap_or_default();
    assert!(error.contains(&group), "{error}");
    assert!(job.cleanup_due_at.is_some(), "the clean-up is retried");
    assert!(h.cloud.cinder().get_group(&group).await.is_ok());
}

/// A restore whose clean-up is still due (retrying: Cinder busy, a volume
/// still deleting) may still hold volumes made from the snapshot's Cinder
/// snapshot: the snapshot's deletion waits for the clean-up, not only for the
/// job, rather than racing it into `delete_blocked` on its own restore.
#[sqlx::test]
async fn a_snapshot_is_deleted_only_after_its_restores_clean_up_is_over(pool: PgPool) {
    // Arrange: a failed restore of a volume snapshot, its clean-up retrying later.
    let h = harness(pool).await;
    let volume = h.sim.create_volume("data", 1, &[]);
    let source_job = h.adhoc("volume", &volume, json!({})).await;
    assert_eq!(h.finish(source_job).await.status, JobStatus::Succeeded);
    let snapshot_id = h.snapshot_rows(source_job).await[0].0;
    h.sim
        .inject(FaultRule::new("cinder.create_volume", Fault::VolumeError).times(1));
    let restore_job = restore(&h, snapshot_id, json!({})).await;
    let failed = h.finish(restore_job).await;
    assert_eq!(failed.status, JobStatus::Failed, "{:?}", failed.error);
    let retry_at = h.clock.now() + chrono::TimeDelta::hours(1);
    let due: bool = sqlx::query_scalar(
        "update job set cleanup_due_at = $2 where job_id = $1 and cleanup_due_at is not null \
         returning true",
    )
    .bind(restore_job)
    .bind(retry_at)
    .fetch_optional(&h.pool)
    .await
    .unwrap()
    .unwrap_or(false);
    assert!(due, "the failed restore owes a clean-up");
    snapshots::request_delete(&h.pool, "default", snapshot_id, h.clock.now())
        .await
        .unwrap()
        .unwrap();

    // Act: the deletion loop runs while the clean-up is still due.
    for _ in 0..5 {
        h.engine.delete_next().await.unwrap();
        h.clock.advance(chrono::TimeDelta::seconds(30));
    }

    // Assert
    let waiting = snapshots::fetch_snapshot(&h.pool, "default", snapshot_id)
        .await
        .unwrap()
        .unwrap();
    assert_eq!(waiting.state, SnapshotState::Deleting);
    let piece = &waiting.volume_snapshots.0[0].snapshot_id;
    assert_eq!(
        h.sim.snapshot_status(piece).as_deref(),
        Some("available"),
        "the Cinder snapshot is not deleted under the clean-up"
    );

    // Act + Assert: once the clean-up is over, the deletion goes ahead.
    h.clock.advance(chrono::TimeDelta::hours(1));
    for _ in 0..200 {
        h.work().await;
        if h.job(restore_job).await.cleanup_due_at.is_none() {
            break;
        }
        h.clock.advance(chrono::TimeDelta::seconds(5));
    }
    assert!(
        h.job(restore_job).await.cleanup_due_at.is_none(),
        "the clean-up ended"
    );
    let rows = h.settle_deletions(source_job).await;
    assert_eq!(rows[0].1, "deleted", "{rows:?}");
}
