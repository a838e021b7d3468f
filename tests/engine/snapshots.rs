//! Jobs: started once, followed until every artefact is really finished.

use chrono::TimeDelta;
use serde_json::json;
use sqlx::PgPool;
use stacksnap::{
    clock::Clock as _,
    domain::job::{JobStatus, ObtainedConsistency, RunStatus},
    openstack::cinder::SnapshotFilter,
    store::jobs,
};
use stacksnap_sim::{Fault, FaultRule};

use crate::helpers::harness;

#[sqlx::test]
async fn an_image_backed_snapshot_succeeds_when_its_image_is_active(pool: PgPool) {
    // Arrange: the image takes long enough (1.6 s of the simulator's real time)
    // that the first look sees it unfinished however busy the machine is.
    let mut config = stacksnap_sim::SimConfig::default();
    config.durations.image_snapshot_pending = std::time::Duration::from_millis(400);
    config.durations.image_snapshot = std::time::Duration::from_millis(400);
    config.durations.image_pending_upload = std::time::Duration::from_millis(400);
    config.durations.image_uploading = std::time::Duration::from_millis(400);
    let h = crate::helpers::harness_with(pool, config).await;
    let server = h.sim.create_image_backed_server("web-1", &[], &[], false);

    // Act
    let job_id = h
        .adhoc("server", &server, json!({"metadata": {"team": "web"}}))
        .await;
    let job = h.finish(job_id).await;

    // Assert
    assert_eq!(job.status, JobStatus::Succeeded, "{:?}", job.error);
    let image_id = job.image_id.clone().expect("the image is recorded");
    let image = h.cloud.glance().get_image(&image_id).await.unwrap();
    assert_eq!(image.status, "active");
    assert_eq!(
        image.property("stacksnap_job_id"),
        Some(job_id.to_string().as_str())
    );
    assert_eq!(image.property("team"), Some("web"));
    assert!(image.name.unwrap().starts_with("web-1-adhoc-"));
    assert_eq!(job.consistency, Some(ObtainedConsistency::CrashConsistent));
    assert_eq!(job.resource_name.as_deref(), Some("web-1"));
    let image_states: Vec<&str> = job
        .timeline
        .0
        .iter()
        .filter(|e| e.what == "image")
        .map(|e| e.status.as_str())
        .collect();
    assert_eq!(image_states.last(), Some(&"active"));
    assert!(
        job.timeline.0.iter().any(|e| e.what == "server"),
        "the server's task_state is followed too"
    );
    assert!(
        job.openstack_calls >= 3,
        "calls are counted: {}",
        job.openstack_calls
    );
    assert_eq!(h.sim.count("nova.create_image"), 1);
}

#[sqlx::test]
async fn a_volume_backed_job_tracks_until_every_cinder_snapshot_is_available(pool: PgPool) {
    let mut config = stacksnap_sim::SimConfig::default();
    config.durations.snapshot_create = std::time::Duration::from_millis(1500);
    let h = crate::helpers::harness_with(pool, config).await;
    let server = h.sim.create_volume_backed_server("db-1", 2, true);

    let job_id = h.adhoc("server", &server, json!({})).await;
    // The first look after the start: Nova made the image active at once.
    let tracking = h
        .drive(job_id, |j| {
            j.status == JobStatus::Tracking && !j.volume_snapshots.0.is_empty()
        })
        .await;
    let image = h
        .cloud
        .glance()
        .get_image(tracking.image_id.as_deref().unwrap())
        .await
        .unwrap();
    assert_eq!(image.status, "active", "the image is active already");
    assert!(
        tracking
            .volume_snapshots
            .0
            .iter()
            .any(|s| s.status == "creating"),
        "but a snapshot is still creating: {:?}",
        tracking.volume_snapshots.0
    );
    assert_eq!(tracking.volume_snapshots.0.len(), 2, "one per volume");

    let done = h.finish(job_id).await;
    assert_eq!(done.status, JobStatus::Succeeded, "{:?}", done.error);
    assert!(
        done.volume_snapshots
            .0
            .iter()
            .all(|s| s.status == "available")
    );
    assert!(
        done.volume_snapshots
            .0
            .iter()
            .all(|s| s.volume_id.is_some() && s.device.is_some())
    );
    assert_eq!(
        done.consistency,
        Some(ObtainedConsistency::Unknown),
        "guest agent without os_require_quiesce"
    );
}

#[sqlx::test]
async fn a_snapshot_error_fails_the_job_naming_the_snapshot_and_volume(pool: PgPool) {
    let h = harness(pool).await;
    let server = h.sim.create_volume_backed_server("db-2", 2, false);
    h.sim
        .inject(FaultRule::new("nova.create_image", Fault::SnapshotError));

    let job = h.finish(h.adhoc("server", &server, json!({})).await).await;

    assert_eq!(job.status, JobStatus::Failed);
    let error = job.error.clone().unwrap().0;
    assert_eq!(error.code, "snapshot_error");
    let failed = job
        .volume_snapshots
        .0
        .iter()
        .find(|s| s.status == "error")
        .expect("the failed snapshot is recorded");
    assert!(
        error.message.contains(&failed.snapshot_id),
        "{}",
        error.message
    );
    assert!(
        error.message.contains(failed.volume_id.as_deref().unwrap()),
        "{}",
        error.message
    );
}

#[sqlx::test]
async fn a_killed_image_fails_the_job(pool: PgPool) {
    let h = harness(pool).await;
    let server = h.sim.create_image_backed_server("web-2", &[], &[], false);
    h.sim
        .inject(FaultRule::new("nova.create_image", Fault::ImageKilled));

    let job = h.finish(h.adhoc("server", &server, json!({})).await).await;

    assert_eq!(job.status, JobStatus::Failed);
    assert_eq!(job.error.unwrap().0.code, "image_failed");
}

#[sqlx::test]
async fn an_image_nova_deleted_after_a_failed_snapshot_fails_the_job(pool: PgPool) {
    let h = harness(pool).await;
    let server = h.sim.create_image_backed_server("web-3", &[], &[], false);
    h.sim.inject(FaultRule::new(
        "nova.create_image",
        Fault::ImageSnapshotFails,
    ));

    let job = h.finish(h.adhoc("server", &server, json!({})).await).await;

    assert_eq!(job.status, JobStatus::Failed);
    assert_eq!(job.error.unwrap().0.code, "image_deleted");
}

#[sqlx::test]
async fn a_job_past_its_deadline_times_out_and_keeps_its_artefacts(pool: PgPool) {
    let h = harness(pool).await;
    let volume = h.sim.create_volume("data", 1, &[]);
    h.sim.inject(FaultRule::new(
        "cinder.create_snapshot",
        Fault::SnapshotStuck,
    ));

    let job_id = h.adhoc("volume", &volume, json!({"timeout": "5m"})).await;
    h.drive(job_id, |j| j.status == JobStatus::Tracking).await;
    h.clock.advance(TimeDelta::minutes(6));
    let job = h.finish(job_id).await;

    assert_eq!(job.status, JobStatus::TimedOut);
    assert_eq!(job.error.unwrap().0.code, "timed_out");
    let kept = &job.volume_snapshots.0[0];
    assert_eq!(
        h.cloud
            .cinder()
            .get_snapshot(&kept.snapshot_id)
            .await
            .unwrap()
            .status,
        "creating",
        "not deleted"
    );
}

#[sqlx::test]
async fn a_cancelled_job_stops_being_followed(pool: PgPool) {
    let h = harness(pool).await;
    let volume = h.sim.create_volume("data", 1, &[]);
    h.sim.inject(FaultRule::new(
        "cinder.create_snapshot",
        Fault::SnapshotStuck,
    ));
    let job_id = h.adhoc("volume", &volume, json!({})).await;
    h.drive(job_id, |j| j.status == JobStatus::Tracking).await;
    let polls_before = h.sim.count("cinder.get_snapshot");

    let outcome =
        stacksnap::store::lifecycle::cancel_job(&h.pool, "default", job_id, h.clock.now(), "api")
            .await
            .unwrap();
    assert!(matches!(
        outcome,
        stacksnap::store::lifecycle::CancelOutcome::Cancelled(_)
    ));
    for _ in 0..5 {
        h.clock.advance(TimeDelta::seconds(5));
        h.work().await;
    }

    let job = h.job(job_id).await;
    assert_eq!(job.status, JobStatus::Cancelled);
    assert_eq!(
        h.sim.count("cinder.get_snapshot"),
        polls_before,
        "no more polling"
    );
    let run = stacksnap::store::runs::fetch_run(&h.pool, "default", job.run_id)
        .await
        .unwrap()
        .unwrap();
    assert_eq!(
        run.status,
        RunStatus::Failed,
        "a run whose only job was cancelled did not succeed"
    );
}

#[sqlx::test]
async fn nova_409_is_retried_and_the_snapshot_then_succeeds(pool: PgPool) {
    let h = harness(pool).await;
    let server = h.sim.create_image_backed_server("busy", &[], &[], false);
    h.sim
        .inject(FaultRule::error("nova.create_image", 409).times(1));

    let job = h.finish(h.adhoc("server", &server, json!({})).await).await;

    assert_eq!(job.status, JobStatus::Succeeded, "{:?}", job.error);
    assert_eq!(job.attempt, 2);
    assert_eq!(
        h.sim.count("nova.create_image"),
        2,
        "one refused, one accepted"
    );
    let images = h
        .cloud
        .glance()
        .list_images(&[("stacksnap_job_id", &job.job_id.to_string())])
        .await
        .unwrap();
    assert_eq!(images.len(), 1, "exactly one image");
}

#[sqlx::test]
async fn a_quota_error_fails_at_once_naming_the_quota(pool: PgPool) {
    let h = harness(pool).await;
    let volume = h.sim.create_volume("data", 1, &[]);
    h.sim.set_snapshot_quota(0);

    let job = h.finish(h.adhoc("volume", &volume, json!({})).await).await;

    assert_eq!(job.status, JobStatus::Failed);
    let error = job.error.unwrap().0;
    assert_eq!(error.code, "quota_exceeded");
    assert!(
        error.message.to_lowercase().contains("quota") || error.message.contains("snapshot"),
        "{}",
        error.message
    );
    assert_eq!(
        h.sim.count("cinder.create_snapshot"),
        1,
        "not retried in a loop"
    );
}

#[sqlx::test]
async fn quiesce_required_is_refused_before_any_request_without_a_guest_agent(pool: PgPool) {
    let h = harness(pool).await;
    let server = h
        .sim
        .create_image_backed_server("no-agent", &[], &[], false);

    let job = h
        .finish(
            h.adhoc(
                "server",
                &server,
                json!({"consistency": "quiesce_required"}),
            )
            .await,
        )
        .await;

    assert_eq!(job.status, JobStatus::Failed);
    let error = job.error.unwrap().0;
    assert_eq!(error.code, "quiesce_unavailable");
    assert!(
        error.message.contains("hw_qemu_guest_agent"),
        "{}",
        error.message
    );
    assert_eq!(h.sim.count("nova.create_image"), 0);
}

#[sqlx::test]
async fn a_missing_resource_fails_its_job_clearly(pool: PgPool) {
    let h = harness(pool).await;
    let job = h
        .finish(
            h.adhoc("volume", "7d9c4a1e-0000-4000-8000-000000000000", json!({}))
                .await,
        )
        .await;
    assert_eq!(job.status, JobStatus::Failed);
    assert_eq!(job.error.unwrap().0.code, "resource_not_found");
}

#[sqlx::test]
async fn a_worker_that_died_after_sending_is_succeeded_by_one_that_adopts_the_image(pool: PgPool) {
    // Arrange: a job marked `creating` whose worker sent createImage and died before recording it.
    let h = harness(pool).await;
    let server = h.sim.create_image_backed_server("crashy", &[], &[], false);
    let job_id = h.adhoc("server", &server, json!({})).await;
    let dead = uuid::Uuid::new_v4();
    let Some(jobs::Claimed::Job(claimed)) =
        jobs::claim_job(&h.pool, dead, h.clock.now(), TimeDelta::seconds(60), 50)
            .await
            .unwrap()
    else {
        panic!("the job is claimable")
    };
    let started = jobs::start_job(&h.pool, &claimed, dead, h.clock.now(), 50, None)
        .await
        .unwrap();
    assert_eq!(started, jobs::StartOutcome::Started);
    // As a worker does right before it sends.
    assert!(
        jobs::mark_sending(&h.pool, job_id, dead, h.clock.now())
            .await
            .unwrap()
    );
    let metadata =
        std::collections::BTreeMap::from([("stacksnap_job_id".to_owned(), job_id.to_string())]);
    let sent = h
        .cloud
        .nova()
        .create_image(&server, "crashy-snap", &metadata)
        .await
        .unwrap();

    // Act: the lease runs out and a live worker takes the job.
    h.clock.advance(TimeDelta::seconds(61));
    let job = h.finish(job_id).await;

    // Assert
    assert_eq!(job.status, JobStatus::Succeeded, "{:?}", job.error);
    assert_eq!(
        job.image_id.as_deref(),
        Some(sent.as_str()),
        "the image was adopted"
    );
    assert_eq!(
        h.sim.count("nova.create_image"),
        1,
        "nothing was sent twice"
    );
    assert_eq!(job.attempt, 1);
}

#[sqlx::test]
async fn a_worker_that_died_before_sending_sends_once_on_recovery(pool: PgPool) {
    let h = harness(pool).await;
    let volume = h.sim.create_volume("data", 1, &[]);
    let job_id = h.adhoc("volume", &volume, json!({})).await;
    let dead = uuid::Uuid::new_v4();
    let Some(jobs::Claimed::Job(claimed)) =
        jobs::claim_job(&h.pool, dead, h.clock.now(), TimeDelta::seconds(60), 50)
            .await
            .unwrap()
    else {
        panic!("the job is claimable")
    };
    jobs::start_job(&h.pool, &claimed, dead, h.clock.now(), 50, None)
        .await
        .unwrap();

    h.clock.advance(TimeDelta::seconds(61));
    let job = h.finish(job_id).await;

    assert_eq!(job.status, JobStatus::Succeeded, "{:?}", job.error);
    assert_eq!(h.sim.count("cinder.create_snapshot"), 1);
    let filter = SnapshotFilter {
        metadata: [("stacksnap_job_id".to_owned(), job_id.to_string())].into(),
        ..Default::default()
    };
    assert_eq!(
        h.cloud
            .cinder()
            .list_snapshots(&filter)
            .await
            .unwrap()
            .len(),
        1
    );
}

#[sqlx::test]
async fn a_second_snapshot_of_a_server_waits_for_the_first(pool: PgPool) {
    let mut config = stacksnap_sim::SimConfig::default();
    config.durations.snapshot_create = std::time::Duration::from_millis(600);
    let h = crate::helpers::harness_with(pool, config).await;
    let server = h.sim.create_volume_backed_server("db-3", 1, false);

    let first = h.adhoc("server", &server, json!({})).await;
    let second = h.adhoc("server", &server, json!({})).await;
    h.work().await;

    let (a, b) = (h.job(first).await, h.job(second).await);
    let in_flight = [a.status, b.status]
        .iter()
        .filter(|s| matches!(s, JobStatus::Creating | JobStatus::Tracking))
        .count();
    assert_eq!(
        in_flight, 1,
        "Nova would take both: stacksnap must not ({:?}, {:?})",
        a.status, b.status
    );
    let waiting = if a.status == JobStatus::Pending {
        &a
    } else {
        &b
    };
    assert_eq!(waiting.error.as_ref().unwrap().0.code, "resource_busy");
    let capacity_wait = crate::helpers::engine_config().capacity_wait;
    assert!(
        waiting.not_before <= h.clock.now() + capacity_wait,
        "looked at again at {}, not within the capacity wait",
        waiting.not_before
    );

    let (a, b) = (h.finish(first).await, h.finish(second).await);
    assert_eq!(
        (a.status, b.status),
        (JobStatus::Succeeded, JobStatus::Succeeded)
    );
    assert_eq!(h.sim.count("nova.create_image"), 2);
}

#[sqlx::test]
async fn a_job_row_that_cannot_be_read_is_failed_with_a_reason_and_the_worker_goes_on(
    pool: PgPool,
) {
    // Arrange: two one-off jobs; the first one's stored name template no longer parses.
    let h = harness(pool).await;
    let broken_volume = h.sim.create_volume("broken", 1, &[]);
    let fine_volume = h.sim.create_volume("fine", 1, &[]);
    let broken = h.adhoc("volume", &broken_volume, json!({})).await;
    let fine = h.adhoc("volume", &fine_volume, json!({})).await;
    sqlx::query(
        "update job set options = jsonb_set(options, '{name_template}', '\"{nope}\"') where job_id = $1",
    )
    .bind(broken)
    .execute(&h.pool)
    .await
    .unwrap();
    let read = jobs::fetch_job(&h.pool, "default", broken)
        .await
        .unwrap_err();
    assert!(
        read.to_string()
            .contains(&format!("job {broken} cannot be read")),
        "the error names the row: {read}"
    );

    // Act
    let done = h.finish(fine).await;

    // Assert: the broken job ended failed with the reason, its run ended, the other job succeeded.
    assert_eq!(done.status, JobStatus::Succeeded, "{:?}", done.error);
    let (status, code, message, run_status): (String, String, String, String) = sqlx::query_as(
        "select j.status, j.error->>'code', j.error->>'message', r.status \
         from job j join run r using (run_id) where j.job_id = $1",
    )
    .bind(broken)
    .fetch_one(&h.pool)
    .await
    .unwrap();
    assert_eq!(
        (status.as_str(), code.as_str()),
        ("failed", "unreadable_job")
    );
    assert!(message.contains("unknown placeholder {nope}"), "{message}");
    assert_eq!(run_status, "failed");
}

#[sqlx::test]
async fn a_job_in_flight_that_cannot_be_read_is_put_off_not_failed(pool: PgPool) {
    // Arrange: a job tracking its image whose options this build cannot read
    // (say, written by a newer replica during a rolling upgrade).
    let h = harness(pool).await;
    let server = h.sim.create_image_backed_server("web", &[], &[], false);
    let job_id = h.adhoc("server", &server, json!({})).await;
    h.drive(job_id, |j| j.status == JobStatus::Tracking).await;
    sqlx::query(
        "update job set options = jsonb_set(options, '{name_template}', '\"{nope}\"') where job_id = $1",
    )
    .bind(job_id)
    .execute(&h.pool)
    .await
    .unwrap();

    // Act: once it is due again.
    h.clock.advance(TimeDelta::minutes(1));
    h.work().await;

    // Assert: still in flight, with the reason recorded and no incomplete snapshot made of it.
    let (status, code, leased): (String, Option<String>, bool) = sqlx::query_as(
        "select status, error->>'code', lease_owner is not null from job where job_id = $1",
    )
    .bind(job_id)
    .fetch_one(&h.pool)
    .await
    .unwrap();
    assert_eq!(status, "tracking");
    assert_eq!(code.as_deref(), Some("unreadable_job"));
    assert!(!leased, "the lease is given back");
    let recorded: i64 = sqlx::query_scalar("select count(*) from snapshot where job_id = $1")
        .bind(job_id)
        .fetch_one(&h.pool)
        .await
        .unwrap();
    assert_eq!(recorded, 0);
}

/// The images of a project's jobs in tracking are looked at together, in one
/// Glance listing by id (`id=in:…`), never one `get_image` per job and poll; each
/// job counts the listings it took part in (issue 13, item 4).
#[sqlx::test]
async fn the_images_of_many_tracking_jobs_are_looked_at_in_one_listing(pool: PgPool) {
    // Arrange: images that take 1.6 s of the simulator's real time, so the
    // jobs are looked at while they are unfinished.
    let mut config = stacksnap_sim::SimConfig::default();
    config.durations.image_snapshot_pending = std::time::Duration::from_millis(400);
    config.durations.image_snapshot = std::time::Duration::from_millis(400);
    config.durations.image_pending_upload = std::time::Duration::from_millis(400);
    config.durations.image_uploading = std::time::Duration::from_millis(400);
    let h = crate::helpers::harness_with(pool, config).await;
    let mut job_ids = Vec::new();
    for i in 0..4 {
        let server = h
            .sim
            .create_image_backed_server(&format!("web-{i}"), &[], &[], false);
        job_ids.push(h.adhoc("server", &server, json!({})).await);
    }

    // Act
    let mut jobs = Vec::new();
    for job_id in &job_ids {
        jobs.push(h.finish(*job_id).await);
    }

    // Assert
    let images: Vec<String> = jobs
        .iter()
        .map(|j| {
            assert_eq!(j.status, JobStatus::Succeeded, "{:?}", j.error);
            j.image_id.clone().expect("the image is recorded")
        })
        .collect();
    assert_eq!(
        h.sim.count("glance.get_image"),
        1,
        "one get_image of the servers' shared boot image (before the first create), none to poll"
    );
    let listings: Vec<String> = h
        .sim
        .requests()
        .into_iter()
        .filter(|r| r.operation == "glance.list_images")
        .map(|r| r.query)
        .collect();
    assert!(
        listings
            .iter()
            .any(|q| images.iter().all(|id| q.contains(id.as_str()))),
        "one listing asked for every job's image: {listings:?}"
    );
    for job in &jobs {
        assert!(
            job.openstack_calls >= 3,
            "get_server, createImage (get_image for the first only) and at least one listing: {}",
            job.openstack_calls
        );
    }
}

/// A tracking batch that a due job opens also takes the jobs of its project
/// due within `track_ahead`, so that jobs started a little apart share a
/// listing instead of each being looked at alone at its own instant (issue 13).
#[sqlx::test]
async fn a_tracking_batch_takes_the_jobs_of_its_project_due_a_little_later(pool: PgPool) {
    // Arrange: images that stay unfinished for seconds of the simulator's real
    // time; job A starts at t0 (due t0 + 100 ms), job B at t0 + 30 ms (due
    // t0 + 130 ms, within the 50 ms look-ahead of t0 + 100 ms).
    let h = images_lasting(pool, std::time::Duration::from_secs(5)).await;
    let a = h
        .adhoc(
            "server",
            &h.sim.create_image_backed_server("web-a", &[], &[], false),
            json!({}),
        )
        .await;
    h.work().await;
    h.clock.advance(TimeDelta::milliseconds(30));
    let b = h
        .adhoc(
            "server",
            &h.sim.create_image_backed_server("web-b", &[], &[], false),
            json!({}),
        )
        .await;
    h.work().await;
    let (job_a, job_b) = (h.job(a).await, h.job(b).await);
    assert_eq!(job_a.status, JobStatus::Tracking, "{:?}", job_a.error);
    assert_eq!(job_b.status, JobStatus::Tracking, "{:?}", job_b.error);
    let image_a = job_a.image_id.expect("A's image is recorded");
    let image_b = job_b.image_id.expect("B's image is recorded");
    assert_eq!(h.sim.count("glance.list_images"), 0, "neither is due yet");

    // Act: A becomes due; B is due 30 ms later.
    h.clock.advance(TimeDelta::milliseconds(70));
    h.work().await;

    // Assert
    let listings: Vec<String> = h
        .sim
        .requests()
        .into_iter()
        .filter(|r| r.operation == "glance.list_images")
        .map(|r| r.query)
        .collect();
    // (The listing may take a second page, asked with a marker.)
    assert!(!listings.is_empty(), "A was looked at");
    for query in &listings {
        assert!(
            query.contains(image_a.as_str()) && query.contains(image_b.as_str()),
            "a listing asked for one job's image alone: {listings:?}"
        );
    }
    let (job_a, job_b) = (h.job(a).await, h.job(b).await);
    assert_eq!(job_a.status, JobStatus::Tracking);
    assert_eq!(job_b.status, JobStatus::Tracking);
}

/// Only a tracking batch claims a due tracking job of a server or volume: the
/// claim of any one job in flight leaves it, so that it is not looked at
/// alone by whichever worker comes first (issue 13: batches of ~2.5 jobs).
#[sqlx::test]
async fn a_due_tracking_job_is_claimed_by_a_tracking_batch_only(pool: PgPool) {
    // Arrange: a job tracking an image that stays unfinished for seconds.
    let h = images_lasting(pool, std::time::Duration::from_secs(5)).await;
    let job_id = h
        .adhoc(
            "server",
            &h.sim.create_image_backed_server("web", &[], &[], false),
            json!({}),
        )
        .await;
    h.work().await;
    assert_eq!(h.job(job_id).await.status, JobStatus::Tracking);
    h.clock.advance(TimeDelta::seconds(1));
    let lease = TimeDelta::seconds(60);

    // Act
    let single = jobs::claim_job(&h.pool, uuid::Uuid::new_v4(), h.clock.now(), lease, 50)
        .await
        .unwrap();
    let batch = jobs::claim_tracking_batch(
        &h.pool,
        uuid::Uuid::new_v4(),
        h.clock.now(),
        lease,
        100,
        TimeDelta::zero(),
        h.clock.now(),
    )
    .await
    .unwrap();

    // Assert
    assert!(single.is_none(), "claimed alone: {single:?}");
    assert!(
        matches!(batch.as_slice(), [jobs::Claimed::Job(job)] if job.job_id == job_id),
        "the batch claim takes it: {batch:?}"
    );
}

/// An engine like the harness's, pacing its tracking batch claims by `gather`.
fn paced_engine(h: &crate::helpers::Harness, gather: TimeDelta) -> stacksnap::engine::Engine {
    stacksnap::engine::Engine::new(
        h.pool.clone(),
        crate::helpers::cloud_for(&h.sim),
        std::sync::Arc::new(h.clock.clone()),
        stacksnap::engine::EngineConfig {
            track_gather: gather,
            ..crate::helpers::engine_config()
        },
    )
}

/// Queues a one-off snapshot of a new image-backed server of `project`.
async fn adhoc_in(h: &crate::helpers::Harness, project: &str, name: &str) -> uuid::Uuid {
    let server = h.sim.create_image_backed_server(name, &[], &[], false);
    h.adhoc_in(project, "server", &server, json!({})).await
}

/// After a tracking batch claim that was not full, the replica's workers
/// leave the tracking jobs that fall due for `track_gather`: they gather for
/// the next batch instead of each being looked at alone.
#[sqlx::test]
async fn tracking_jobs_due_just_after_a_batch_wait_for_the_gather(pool: PgPool) {
    // Arrange: A starts at t0 (due t0 + 100 ms), B at t0 + 90 ms (due
    // t0 + 190 ms); at t0 + 110 ms A is due and B is beyond the 50 ms look-ahead.
    let h = images_lasting(pool, std::time::Duration::from_secs(10)).await;
    let a = adhoc_in(&h, "default", "web-a").await;
    h.work().await;
    h.clock.advance(TimeDelta::milliseconds(90));
    let b = adhoc_in(&h, "default", "web-b").await;
    h.work().await;
    assert_eq!(h.job(a).await.status, JobStatus::Tracking);
    assert_eq!(h.job(b).await.status, JobStatus::Tracking);
    let image_b = h.job(b).await.image_id.expect("B's image is recorded");
    let listings_of_b = || {
        h.sim
            .requests()
            .into_iter()
            .filter(|r| r.operation == "glance.list_images" && r.query.contains(image_b.as_str()))
            .count()
    };
    let engine = paced_engine(&h, TimeDelta::milliseconds(300));
    h.clock.advance(TimeDelta::milliseconds(20));
    assert_eq!(
        engine.execute_next().await.unwrap(),
        stacksnap::engine::Outcome::Worked,
        "A is looked at"
    );

    // Act: B is due 100 ms later, within the gather.
    h.clock.advance(TimeDelta::milliseconds(100));
    let within = engine.execute_next().await.unwrap();
    let listed_within = listings_of_b();
    h.clock.advance(TimeDelta::milliseconds(250));
    let after = engine.execute_next().await.unwrap();

    // Assert
    assert_eq!(
        within,
        stacksnap::engine::Outcome::Idle,
        "B was taken alone"
    );
    assert_eq!(listed_within, 0);
    assert_eq!(after, stacksnap::engine::Outcome::Worked);
    assert!(listings_of_b() > 0, "the next batch looked at B");
}

/// A project whose listing hangs holds up only the worker looking at it: the
/// replica's other workers go on claiming and looking at other projects'
/// batches (the hostile review of issue 13: one claimer per replica, held
/// while it looked, stopped every project's tracking).
#[sqlx::test]
async fn a_slow_projects_batch_does_not_hold_up_another_projects(pool: PgPool) {
    // Arrange: one job tracking in each of two projects, both due; the slow
    // project's was started first, so it is the most overdue.
    let h = images_lasting(pool, std::time::Duration::from_secs(30)).await;
    let slow = adhoc_in(&h, "default", "web-slow").await;
    h.work().await;
    h.clock.advance(TimeDelta::milliseconds(10));
    let other = adhoc_in(&h, "other", "web-other").await;
    h.work().await;
    // (Read across projects: `h.job` reads the default project's.)
    let status_and_image = |id| {
        sqlx::query_as::<_, (String, Option<String>)>(
            "select status, image_id from job where job_id = $1",
        )
        .bind(id)
        .fetch_one(&h.pool)
    };
    for id in [slow, other] {
        assert_eq!(status_and_image(id).await.unwrap().0, "tracking");
    }
    let engine = paced_engine(&h, TimeDelta::milliseconds(100));
    h.clock.advance(TimeDelta::seconds(1));
    // The first listing, the slow project's, is held 20 s.
    h.sim
        .inject(FaultRule::new("glance.list_images", Fault::Latency { ms: 20_000 }).times(1));
    let first_worker = tokio::spawn({
        let engine = engine.clone();
        async move { engine.execute_next().await }
    });
    let leased = |id| {
        sqlx::query_scalar::<_, bool>("select lease_owner is not null from job where job_id = $1")
            .bind(id)
            .fetch_one(&h.pool)
    };
    // (Waits for the claim, not for a time.)
    while !leased(slow).await.unwrap() {
        assert!(
            !first_worker.is_finished(),
            "the first worker claimed nothing"
        );
        tokio::time::sleep(std::time::Duration::from_millis(10)).await;
    }
    assert!(!leased(other).await.unwrap(), "one project per batch");

    // Act: past the gather, another worker of the replica looks for work.
    h.clock.advance(TimeDelta::milliseconds(150));
    let second = engine.execute_next().await.unwrap();

    // Assert: it looked at the other project's job while the first is held.
    let image = status_and_image(other)
        .await
        .unwrap()
        .1
        .expect("its image is recorded");
    assert_eq!(second, stacksnap::engine::Outcome::Worked);
    assert!(
        !first_worker.is_finished(),
        "the held listing is still held"
    );
    assert!(
        h.sim
            .requests()
            .iter()
            .any(|r| r.operation == "glance.list_images" && r.query.contains(image.as_str())),
        "the other project's image was looked at"
    );
    first_worker.abort();
}

/// A batch is of one project: two projects' jobs in tracking at once are
/// never looked at in one listing.
#[sqlx::test]
async fn a_batched_listing_never_mixes_projects(pool: PgPool) {
    // Arrange
    let h = images_lasting(pool, std::time::Duration::from_millis(800)).await;
    let mut job_ids = Vec::new();
    for project in ["default", "other"] {
        let job_id = adhoc_in(&h, project, &format!("web-{project}")).await;
        job_ids.push((project, job_id));
    }

    // Act
    let mut images = Vec::new();
    for (project, job_id) in &job_ids {
        let job = h.drive_in(project, *job_id).await;
        assert_eq!(job.status, JobStatus::Succeeded, "{:?}", job.error);
        images.push(job.image_id.expect("the image is recorded"));
    }

    // Assert
    let listings: Vec<String> = h
        .sim
        .requests()
        .into_iter()
        .filter(|r| r.operation == "glance.list_images")
        .map(|r| r.query)
        .collect();
    assert!(!listings.is_empty(), "the images were looked at by listing");
    for query in &listings {
        assert!(
            !images.iter().all(|id| query.contains(id.as_str())),
            "one listing asked for both projects' images: {query}"
        );
    }
}

/// Within the gather after one project's batch, the jobs of other projects
/// that have been due for longer than the gather are claimed at once: the
/// pace is there to fill batches, not to space the looks of a replica.
#[sqlx::test]
async fn jobs_due_longer_than_the_gather_are_claimed_within_it(pool: PgPool) {
    // Arrange: five projects with a job each in tracking, all due for a second.
    let h = images_lasting(pool, std::time::Duration::from_secs(10)).await;
    let mut images = Vec::new();
    for i in 0..5 {
        let job = adhoc_in(&h, &format!("project{i}"), &format!("web-{i}")).await;
        h.work().await;
        let job = jobs::fetch_job(&h.pool, stacksnap::store::Scope::AllProjects, job)
            .await
            .unwrap()
            .expect("the job is stored");
        assert_eq!(job.status, JobStatus::Tracking);
        images.push(job.image_id.expect("its image is recorded"));
    }
    h.clock.advance(TimeDelta::seconds(1));
    let engine = paced_engine(&h, TimeDelta::milliseconds(250));

    // Act: five workers' turns at one instant.
    let mut outcomes = Vec::new();
    for _ in 0..5 {
        outcomes.push(engine.execute_next().await.unwrap());
    }

    // Assert: each looked at one project's batch.
    assert_eq!(outcomes, [stacksnap::engine::Outcome::Worked; 5]);
    let listings: Vec<String> = h
        .sim
        .requests()
        .into_iter()
        .filter(|r| r.operation == "glance.list_images")
        .map(|r| r.query)
        .collect();
    for image in &images {
        assert!(
            listings.iter().any(|q| q.contains(image.as_str())),
            "{image} was not listed: {listings:?}"
        );
    }
}

/// A harness whose image snapshots and uploads each last `phase`, so that
/// jobs stay in tracking while a test steps the workers.
async fn images_lasting(pool: PgPool, phase: std::time::Duration) -> crate::helpers::Harness {
    let mut config = stacksnap_sim::SimConfig::default();
    config.durations.image_snapshot = phase;
    config.durations.image_uploading = phase;
    crate::helpers::harness_with(pool, config).await
}
