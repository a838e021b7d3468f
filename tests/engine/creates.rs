//! Create requests: sent once, looked up before any resend once an earlier one
//! may have reached the cloud, capped, and nothing they made is ever leaked
//! (issue 9, items 2 and 5).

use std::{sync::Arc, time::Duration};

use chrono::TimeDelta;
use serde_json::json;
use sqlx::PgPool;
use stacksnap::{
    clock::Clock as _,
    domain::job::JobStatus,
    engine::{Engine, EngineConfig, Outcome},
    openstack::{
        CloudConfig, OpenStack,
        cinder::{Snapshot, SnapshotFilter},
    },
    store::{jobs, lifecycle, snapshots},
};
use stacksnap_sim::{FaultRule, SimConfig};
use uuid::Uuid;

use crate::helpers::{Harness, engine_config, harness, harness_with, quick_session};

/// A client whose requests give up after `timeout`.
fn impatient_cloud(h: &Harness, timeout: Duration) -> OpenStack {
    let config =
        CloudConfig::from_clouds_yaml(&h.sim.clouds_yaml(), "stacksnap-sim", "simulator").unwrap();
    let mut options = quick_session();
    options.request_timeout = timeout;
    OpenStack::new(config, options).unwrap()
}

/// Works with `engine`, letting time pass, until `done` holds for the job.
async fn drive_with(
    h: &Harness,
    engine: &Engine,
    job_id: Uuid,
    done: impl Fn(&jobs::Job) -> bool,
) -> jobs::Job {
    for _ in 0..400 {
        while engine.execute_next().await.unwrap() == Outcome::Worked {}
        let job = h.job(job_id).await;
        if done(&job) {
            return job;
        }
        h.clock.advance(TimeDelta::milliseconds(200));
        tokio::time::sleep(Duration::from_millis(15)).await;
    }
    panic!("job {job_id} did not get there: {:?}", h.job(job_id).await);
}

/// Every Cinder snapshot of the server's volumes that still exists.
async fn cinder_snapshots_of(h: &Harness, server: &str) -> Vec<Snapshot> {
    let server = h.cloud.nova().get_server(server).await.unwrap();
    let mut found = Vec::new();
    for volume in &server.volumes_attached {
        let filter = SnapshotFilter {
            volume_id: Some(volume.id.clone()),
            ..SnapshotFilter::default()
        };
        found.extend(h.cloud.cinder().list_snapshots(&filter).await.unwrap());
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

#[sqlx::test]
async fn a_create_image_whose_answer_is_lost_to_a_503_is_sent_once_and_adopted(pool: PgPool) {
    // Arrange: Nova makes the image, then a proxy answers 503.
    let h = harness(pool).await;
    let server = h.sim.create_image_backed_server("web-1", &[], &[], false);
    h.sim
        .inject(FaultRule::reply_lost("nova.create_image", 503).times(1));

    // Act
    let job_id = h.adhoc("server", &server, json!({})).await;
    let job = h.finish(job_id).await;

    // Assert
    assert_eq!(job.status, JobStatus::Succeeded, "{:?}", job.error);
    assert_eq!(
        h.sim.count("nova.create_image"),
        1,
        "a POST that may have been carried out is never sent again blindly"
    );
    assert_eq!(images_of(&h, job_id).await, vec![job.image_id.unwrap()]);
}

#[sqlx::test]
async fn a_resend_that_meets_a_503_is_looked_up_before_anything_is_sent_again(pool: PgPool) {
    // Arrange: the first createImage fails with a 500 that made nothing (unclear);
    // the resend is carried out but its answer is lost to a 503.
    let h = harness(pool).await;
    let server = h.sim.create_image_backed_server("web-2", &[], &[], false);
    h.sim
        .inject(FaultRule::error("nova.create_image", 500).times(1));
    let job_id = h.adhoc("server", &server, json!({})).await;
    h.drive(job_id, |j| {
        j.attempt == 1 && j.status == JobStatus::Creating
    })
    .await;
    h.sim
        .inject(FaultRule::reply_lost("nova.create_image", 503).times(1));

    // Act
    let job = h.finish(job_id).await;

    // Assert
    assert_eq!(job.status, JobStatus::Succeeded, "{:?}", job.error);
    assert_eq!(
        h.sim.count("nova.create_image"),
        2,
        "the first, and one resend after a look-up found nothing; none after the lost answer"
    );
    assert_eq!(job.attempt, 2);
    assert_eq!(images_of(&h, job_id).await, vec![job.image_id.unwrap()]);
}

#[sqlx::test]
async fn a_volume_backed_create_image_that_outlasts_the_client_is_adopted_not_sent_again(
    pool: PgPool,
) {
    // Arrange: Nova takes 1.5 s to answer (snapshots first, the image last); the client waits 0.4 s.
    let mut config = SimConfig::default();
    config.durations.volume_backed_create_image_call = Duration::from_millis(1500);
    let h = harness_with(pool, config).await;
    let server = h.sim.create_volume_backed_server("db-1", 2, false);
    let engine = Engine::new(
        h.pool.clone(),
        impatient_cloud(&h, Duration::from_millis(400)),
        Arc::new(h.clock.clone()),
        EngineConfig {
            create_settle: TimeDelta::minutes(3),
            ..engine_config()
        },
    );

    // Act
    let job_id = h.adhoc("server", &server, json!({})).await;
    let job = drive_with(&h, &engine, job_id, |j| j.status.is_terminal()).await;

    // Assert
    assert_eq!(job.status, JobStatus::Succeeded, "{:?}", job.error);
    assert_eq!(
        h.sim.count("nova.create_image"),
        1,
        "Nova's snapshots for the image were found: the call was under way"
    );
    assert_eq!(images_of(&h, job_id).await, vec![job.image_id.unwrap()]);
    let made = cinder_snapshots_of(&h, &server).await;
    assert_eq!(made.len(), 2, "one per volume, once: {made:?}");
    for snapshot in &made {
        assert_eq!(
            snapshot.metadata.get("stacksnap_job_id"),
            Some(&job_id.to_string()),
            "Nova's snapshot {} is stamped with the job once found",
            snapshot.id
        );
    }
}

#[sqlx::test]
async fn create_attempts_are_capped_with_a_readable_error(pool: PgPool) {
    // Arrange: every createImage fails with a 500, which leaves open whether it was carried out.
    let h = harness(pool).await;
    let server = h.sim.create_image_backed_server("web-3", &[], &[], false);
    h.sim.inject(FaultRule::error("nova.create_image", 500));

    // Act
    let job = h.finish(h.adhoc("server", &server, json!({})).await).await;

    // Assert
    let max = EngineConfig::default().max_create_attempts;
    assert_eq!(job.status, JobStatus::Failed);
    let error = job.error.unwrap().0;
    assert_eq!(error.code, "create_attempts_exhausted", "{}", error.message);
    assert!(
        error.message.contains(&format!("{max} create requests")) && error.message.contains("500"),
        "{}",
        error.message
    );
    assert_eq!(h.sim.count("nova.create_image"), max as usize);
    assert_eq!(job.attempt, max);
}

#[sqlx::test]
async fn a_job_outlasts_a_40s_outage_of_the_cloud_with_every_token_expiring(pool: PgPool) {
    // Arrange: every service, Keystone included, answers 503; every token is revoked.
    let h = harness(pool).await;
    let server = h.sim.create_image_backed_server("web-4", &[], &[], false);
    let job_id = h.adhoc("server", &server, json!({})).await;
    h.sim.inject(FaultRule::unavailable("*"));
    h.sim.expire_tokens();

    // Act: 40 s of engine time pass in the outage, then the cloud is back.
    let outage_ends = h.clock.now() + TimeDelta::seconds(40);
    while h.clock.now() < outage_ends {
        h.work().await;
        h.clock.advance(TimeDelta::milliseconds(500));
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    let during = h.job(job_id).await;
    h.sim.clear_faults();
    let job = h.finish(job_id).await;

    // Assert
    assert!(!during.status.is_terminal(), "{during:?}");
    assert_eq!(job.status, JobStatus::Succeeded, "{:?}", job.error);
    assert_eq!(h.sim.count("nova.create_image"), 1);
    assert_eq!(
        job.attempt, 1,
        "calls that never sent the create are not attempts"
    );
}

#[sqlx::test]
async fn a_create_image_answer_without_an_image_id_is_looked_up_not_failed(pool: PgPool) {
    // Arrange: Nova accepts, but the answer that arrives names no image.
    let h = harness(pool).await;
    let server = h.sim.create_image_backed_server("web-5", &[], &[], false);
    h.sim
        .inject(FaultRule::reply_lost("nova.create_image", 202).times(1));

    // Act
    let job_id = h.adhoc("server", &server, json!({})).await;
    let job = h.finish(job_id).await;

    // Assert
    assert_eq!(job.status, JobStatus::Succeeded, "{:?}", job.error);
    assert_eq!(h.sim.count("nova.create_image"), 1);
    assert_eq!(images_of(&h, job_id).await, vec![job.image_id.unwrap()]);
}

#[sqlx::test]
async fn a_second_image_carrying_the_job_id_is_deleted_and_reported(pool: PgPool) {
    // Arrange: a worker died after two createImage requests for one job both went
    // through (named, as every artefact is, with the job's id).
    let h = harness(pool).await;
    let server = h.sim.create_volume_backed_server("db-2", 2, false);
    let job_id = h.adhoc("server", &server, json!({})).await;
    let dead = Uuid::new_v4();
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
    // As a worker does right before it sends.
    assert!(
        jobs::mark_sending(&h.pool, job_id, dead, h.clock.now())
            .await
            .unwrap()
    );
    let metadata =
        std::collections::BTreeMap::from([("stacksnap_job_id".to_owned(), job_id.to_string())]);
    let first = h
        .cloud
        .nova()
        .create_image(&server, &format!("db-2-first-{job_id}"), &metadata)
        .await
        .unwrap();
    tokio::time::sleep(Duration::from_millis(1100)).await;
    let second = h
        .cloud
        .nova()
        .create_image(&server, &format!("db-2-second-{job_id}"), &metadata)
        .await
        .unwrap();

    // Act
    h.clock.advance(TimeDelta::seconds(61));
    let job = h.finish(job_id).await;
    h.settle_deletions(job_id).await;

    // Assert: the first is the job's; the second is gone with its Cinder snapshots, and said so.
    assert_eq!(job.status, JobStatus::Succeeded, "{:?}", job.error);
    assert_eq!(job.image_id.as_deref(), Some(first.as_str()));
    assert_eq!(images_of(&h, job_id).await, vec![first.clone()]);
    assert!(
        job.timeline
            .0
            .iter()
            .any(|e| e.what == "duplicate" && e.id == second),
        "{:?}",
        job.timeline.0
    );
    let kept: Vec<&str> = job
        .volume_snapshots
        .0
        .iter()
        .map(|s| s.snapshot_id.as_str())
        .collect();
    let left = cinder_snapshots_of(&h, &server).await;
    assert_eq!(left.len(), 2, "only the kept image's snapshots: {left:?}");
    assert!(left.iter().all(|s| kept.contains(&s.id.as_str())));
}

#[sqlx::test]
async fn deleting_a_volume_backed_snapshot_recorded_before_its_first_poll_deletes_its_cinder_snapshots(
    pool: PgPool,
) {
    // Arrange: the job recorded its image, then was cancelled before a poll read the mapping.
    let h = harness(pool).await;
    let server = h.sim.create_volume_backed_server("db-3", 2, false);
    let job_id = h.adhoc("server", &server, json!({})).await;
    let started = h.drive(job_id, |j| j.status == JobStatus::Tracking).await;
    assert!(started.volume_snapshots.0.is_empty(), "{started:?}");
    lifecycle::cancel_job(&h.pool, "default", job_id, h.clock.now(), "api")
        .await
        .unwrap();
    let rows = h.snapshot_rows(job_id).await;
    assert_eq!(rows.len(), 1);

    // Act
    snapshots::request_delete(&h.pool, "default", rows[0].0, h.clock.now())
        .await
        .unwrap();
    let rows = h.settle_deletions(job_id).await;

    // Assert
    assert_eq!(rows[0].1, "deleted");
    assert!(images_of(&h, job_id).await.is_empty());
    let left = cinder_snapshots_of(&h, &server).await;
    assert!(left.is_empty(), "Nova's snapshots leaked: {left:?}");
}

#[sqlx::test]
async fn a_cinder_snapshot_not_made_for_the_servers_image_is_never_deleted_with_it(pool: PgPool) {
    // Arrange: a finished server snapshot whose record also lists someone's own snapshot.
    let h = harness(pool).await;
    let server = h.sim.create_volume_backed_server("db-4", 1, false);
    let job = h.finish(h.adhoc("server", &server, json!({})).await).await;
    assert_eq!(job.status, JobStatus::Succeeded, "{:?}", job.error);
    let volume = job.volume_snapshots.0[0].volume_id.clone().unwrap();
    let foreign = h
        .cloud
        .cinder()
        .create_snapshot(&volume, "hand-made", "", &Default::default(), true)
        .await
        .unwrap();
    let mut listed = job.volume_snapshots.0.clone();
    let mut stranger = listed[0].clone();
    stranger.snapshot_id = foreign.id.clone();
    listed.push(stranger);
    sqlx::query("update snapshot set volume_snapshots = $2 where job_id = $1")
        .bind(job.job_id)
        .bind(sqlx::types::Json(&listed))
        .execute(&h.pool)
        .await
        .unwrap();
    tokio::time::sleep(Duration::from_millis(300)).await;
    let rows = h.snapshot_rows(job.job_id).await;

    // Act
    snapshots::request_delete(&h.pool, "default", rows[0].0, h.clock.now())
        .await
        .unwrap();
    let rows = h.settle_deletions(job.job_id).await;

    // Assert
    assert_eq!(rows[0].1, "delete_failed");
    let error = snapshots::fetch_snapshot(&h.pool, "default", rows[0].0)
        .await
        .unwrap()
        .unwrap()
        .delete_error
        .unwrap()
        .0;
    assert_eq!(error.code, "not_ours", "{}", error.message);
    assert!(error.message.contains(&foreign.id), "{}", error.message);
    let still = h.cloud.cinder().get_snapshot(&foreign.id).await.unwrap();
    assert_eq!(still.status, "available");
}

#[sqlx::test]
async fn two_jobs_with_one_fixed_name_give_their_images_different_names(pool: PgPool) {
    // Nova names a volume-backed server's Cinder snapshots after the image: the
    // name must tell the jobs apart, or one job's look-up finds the other's.
    let h = harness(pool).await;
    let server = h.sim.create_volume_backed_server("db-5", 1, false);

    let first = h
        .finish(
            h.adhoc("server", &server, json!({"name": "pre-deploy"}))
                .await,
        )
        .await;
    let second = h
        .finish(
            h.adhoc("server", &server, json!({"name": "pre-deploy"}))
                .await,
        )
        .await;

    let name = |image: &str| {
        let glance = h.cloud.glance();
        let image = image.to_owned();
        async move { glance.get_image(&image).await.unwrap().name.unwrap() }
    };
    let (a, b) = (
        name(first.image_id.as_deref().unwrap()).await,
        name(second.image_id.as_deref().unwrap()).await,
    );
    assert_ne!(a, b);
    assert!(
        a.starts_with("pre-deploy") && a.contains(&first.job_id.to_string()),
        "{a}"
    );
    assert!(b.contains(&second.job_id.to_string()), "{b}");
}

#[sqlx::test]
async fn a_job_cancelled_while_its_create_was_unclear_leaves_nothing_behind(pool: PgPool) {
    // Arrange: a volume-backed createImage outlasts the client, and the job is
    // cancelled before a look-up found its image.
    let mut config = SimConfig::default();
    config.durations.volume_backed_create_image_call = Duration::from_millis(1000);
    let h = harness_with(pool, config).await;
    let server = h.sim.create_volume_backed_server("db-6", 2, false);
    let impatient = Engine::new(
        h.pool.clone(),
        impatient_cloud(&h, Duration::from_millis(300)),
        Arc::new(h.clock.clone()),
        engine_config(),
    );
    let job_id = h.adhoc("server", &server, json!({})).await;
    let unclear = drive_with(&h, &impatient, job_id, |j| {
        j.error.as_ref().is_some_and(|e| e.0.code == "unclear")
    })
    .await;
    assert_eq!(unclear.status, JobStatus::Creating);
    lifecycle::cancel_job(&h.pool, "default", job_id, h.clock.now(), "api")
        .await
        .unwrap();
    tokio::time::sleep(Duration::from_millis(1200)).await;
    assert_eq!(images_of(&h, job_id).await.len(), 1, "Nova finished it");
    let rows = h.snapshot_rows(job_id).await;
    assert_eq!(rows.len(), 1, "the job's unclear create is recorded");

    // Act
    snapshots::request_delete(&h.pool, "default", rows[0].0, h.clock.now())
        .await
        .unwrap();
    let rows = h.settle_deletions(job_id).await;

    // Assert
    assert_eq!(rows[0].1, "deleted");
    assert!(images_of(&h, job_id).await.is_empty());
    let left = cinder_snapshots_of(&h, &server).await;
    assert!(left.is_empty(), "{left:?}");
}

/// Nova's volume-backed createImage makes one Cinder snapshot per volume and
/// only then meets a refusal for a later volume (Cinder InvalidVolume -> Nova
/// InvalidInput, 400; Cinder OverLimit -> Nova OverQuota, 403): the snapshots
/// made before it stay. They are looked up, recorded and cleaned up.
#[sqlx::test]
async fn a_volume_backed_create_refused_midway_leaves_nothing_unrecorded(pool: PgPool) {
    let h = harness(pool).await;
    let server = h.sim.create_volume_backed_server("db-9", 2, false);
    let attached = h
        .cloud
        .nova()
        .get_server(&server)
        .await
        .unwrap()
        .volumes_attached;
    h.sim.set_volume_status(&attached[1].id, "backing-up");

    let job_id = h.adhoc("server", &server, json!({})).await;
    let job = h.finish(job_id).await;

    let left = cinder_snapshots_of(&h, &server).await;
    assert!(!left.is_empty(), "Nova made the first volume's snapshot");
    let recorded: Vec<String> = sqlx::query_scalar(
        "select piece ->> 'snapshot_id' from snapshot, jsonb_array_elements(volume_snapshots) piece \
         where job_id = $1",
    )
    .bind(job_id)
    .fetch_all(&h.pool)
    .await
    .unwrap();
    let leaked: Vec<&str> = left
        .iter()
        .filter(|s| !recorded.contains(&s.id))
        .map(|s| s.id.as_str())
        .collect();
    assert!(
        leaked.is_empty(),
        "job ended {:?} ({:?}); Cinder snapshots made for it and recorded nowhere: {leaked:?}",
        job.status,
        job.error
    );
    assert_eq!(job.status, JobStatus::Failed);
    let error = job.error.unwrap().0;
    assert!(
        error.message.contains("backing-up"),
        "the cloud's reason is kept: {error:?}"
    );
    assert_eq!(
        h.sim.count("nova.create_image"),
        1,
        "a refusal is not resent"
    );

    let rows = h.snapshot_rows(job_id).await;
    assert_eq!(rows.len(), 1, "the leftovers are one incomplete snapshot");
    snapshots::request_delete(&h.pool, "default", rows[0].0, h.clock.now())
        .await
        .unwrap();
    let rows = h.settle_deletions(job_id).await;
    assert_eq!(rows[0].1, "deleted");
    let left = cinder_snapshots_of(&h, &server).await;
    assert!(left.is_empty(), "left in Cinder: {left:?}");
}

/// Once a job with an unclear create is done, `track` looks for duplicates;
/// a look-up that keeps failing must not keep the job `tracking` past its deadline.
#[sqlx::test]
async fn a_done_job_whose_duplicate_look_up_keeps_failing_still_ends(pool: PgPool) {
    let h = harness(pool).await;
    let server = h.sim.create_image_backed_server("web-7", &[], &[], false);
    h.sim
        .inject(FaultRule::reply_lost("nova.create_image", 503).times(1));
    let job_id = h.adhoc("server", &server, json!({"timeout": "1m"})).await;
    let tracking = h.drive(job_id, |j| j.status == JobStatus::Tracking).await;
    assert!(tracking.create_unclear_at.is_some());
    // The image becomes active on the simulator's real clock: wait for it, so the
    // jump past the deadline below meets a finished image, not a timeout.
    let image = tracking.image_id.clone().expect("the image is recorded");
    for _ in 0..500 {
        if h.cloud.glance().get_image(&image).await.unwrap().status == "active" {
            break;
        }
        tokio::time::sleep(std::time::Duration::from_millis(10)).await;
    }
    h.sim.inject(FaultRule::error("glance.list_images", 500));
    h.clock.advance(TimeDelta::minutes(5));

    let job = h.finish(job_id).await;

    assert_eq!(
        job.status,
        JobStatus::Succeeded,
        "the image is available: {:?}",
        job.error
    );
    let note = job.error.expect("the skipped duplicate check is noted").0;
    assert_eq!(note.code, "duplicates_not_checked", "{note:?}");
}

/// A duplicate look-up the cloud refuses (403) ends the job at once: asked
/// again, it gives the same answer.
#[sqlx::test]
async fn a_done_job_whose_duplicate_look_up_is_refused_ends_at_once(pool: PgPool) {
    let h = harness(pool).await;
    let server = h.sim.create_image_backed_server("web-8", &[], &[], false);
    h.sim
        .inject(FaultRule::reply_lost("nova.create_image", 503).times(1));
    let job_id = h.adhoc("server", &server, json!({"timeout": "1h"})).await;
    h.drive(job_id, |j| j.status == JobStatus::Tracking).await;
    h.sim.inject(FaultRule::error("glance.list_images", 403));

    let job = h.finish(job_id).await;

    assert_eq!(job.status, JobStatus::Succeeded, "{:?}", job.error);
    assert_eq!(job.error.unwrap().0.code, "duplicates_not_checked");
}

/// A job whose create was unclear and whose look-up found nothing does not
/// wait for the create to settle past its deadline, nor send a new create
/// after it.
#[sqlx::test]
async fn no_create_is_sent_after_the_deadline_and_the_settle_wait_ends_at_it(pool: PgPool) {
    let h = harness(pool).await;
    let server = h.sim.create_image_backed_server("web-9", &[], &[], false);
    // Every createImage meets a 500 that made nothing: each outcome is unclear.
    h.sim.inject(FaultRule::error("nova.create_image", 500));
    let engine = Engine::new(
        h.pool.clone(),
        h.cloud.clone(),
        Arc::new(h.clock.clone()),
        EngineConfig {
            create_settle: TimeDelta::minutes(3),
            ..engine_config()
        },
    );
    let job_id = h.adhoc("server", &server, json!({"timeout": "1m"})).await;
    let unclear = drive_with(&h, &engine, job_id, |j| {
        j.error.as_ref().is_some_and(|e| e.0.code == "unclear")
    })
    .await;
    assert_eq!(unclear.attempt, 1);
    // Past the deadline, before the create would have settled.
    h.clock.advance(TimeDelta::minutes(2));

    let job = drive_with(&h, &engine, job_id, |j| j.status.is_terminal()).await;

    assert_eq!(job.status, JobStatus::TimedOut, "{:?}", job.error);
    assert_eq!(
        h.sim.count("nova.create_image"),
        1,
        "no create is sent after the job's deadline"
    );
}

/// The same once the create has settled: a look-up that finds nothing past
/// the deadline ends the job instead of sending again.
#[sqlx::test]
async fn a_look_up_that_finds_nothing_past_the_deadline_sends_nothing(pool: PgPool) {
    let h = harness(pool).await;
    let server = h.sim.create_image_backed_server("web-10", &[], &[], false);
    h.sim.inject(FaultRule::error("nova.create_image", 500));
    let job_id = h.adhoc("server", &server, json!({"timeout": "1m"})).await;
    h.drive(job_id, |j| {
        j.error.as_ref().is_some_and(|e| e.0.code == "unclear")
    })
    .await;
    h.clock.advance(TimeDelta::minutes(5));

    let job = h.finish(job_id).await;

    assert_eq!(job.status, JobStatus::TimedOut, "{:?}", job.error);
    assert_eq!(h.sim.count("nova.create_image"), 1);
}

/// A job that adopts what an earlier attempt made reports the same as one
/// whose create was answered: the consistency obtained and the server's name.
#[sqlx::test]
async fn an_adopted_snapshot_reports_its_consistency_and_resource_name(pool: PgPool) {
    let h = harness(pool).await;
    let server = h.sim.create_image_backed_server("web-11", &[], &[], false);
    h.sim
        .inject(FaultRule::reply_lost("nova.create_image", 503).times(1));

    let job_id = h.adhoc("server", &server, json!({})).await;
    let job = h.finish(job_id).await;

    assert_eq!(job.status, JobStatus::Succeeded, "{:?}", job.error);
    assert_eq!(h.sim.count("nova.create_image"), 1, "adopted, not resent");
    assert!(
        job.consistency.is_some(),
        "consistency: {:?}",
        job.consistency
    );
    assert_eq!(job.resource_name.as_deref(), Some("web-11"));
}

/// A volume in a passing state (here `backing-up`) is waited for within the
/// start window, as a server's task state is; the create is sent once it is
/// available again.
#[sqlx::test]
async fn a_volume_backing_up_is_waited_for_then_snapshotted(pool: PgPool) {
    let h = harness(pool).await;
    let volume = h.sim.create_volume("data-1", 1, &[]);
    h.sim
        .set_volume_status_for(&volume, "backing-up", Duration::from_millis(1500));

    let job_id = h.adhoc("volume", &volume, json!({})).await;
    let waiting = h
        .drive(job_id, |j| {
            j.error
                .as_ref()
                .is_some_and(|e| e.0.message.contains("backing-up"))
        })
        .await;
    assert_eq!(waiting.status, JobStatus::Pending);
    let job = h.finish(job_id).await;

    assert_eq!(job.status, JobStatus::Succeeded, "{:?}", job.error);
    assert_eq!(
        h.sim.count("cinder.create_snapshot"),
        1,
        "nothing is sent while the volume is busy"
    );
}

/// A volume in `error` cannot be snapshotted: the job fails at once, saying why.
#[sqlx::test]
async fn a_volume_in_error_fails_readably(pool: PgPool) {
    let h = harness(pool).await;
    let volume = h.sim.create_volume("data-2", 1, &[]);
    h.sim.set_volume_status(&volume, "error");

    let job_id = h.adhoc("volume", &volume, json!({})).await;
    let job = h.finish(job_id).await;

    assert_eq!(job.status, JobStatus::Failed);
    let error = job.error.unwrap().0;
    assert_eq!(error.code, "resource_unusable", "{error:?}");
    assert!(error.message.contains("error"), "{error:?}");
    assert_eq!(h.sim.count("cinder.create_snapshot"), 0);
}

/// A group whose member volume is in a passing state Cinder refuses
/// (`maintenance`) is waited for, then snapshotted.
#[sqlx::test]
async fn a_group_with_a_volume_in_maintenance_is_waited_for(pool: PgPool) {
    let h = harness(pool).await;
    let (a, b) = (
        h.sim.create_volume("ga", 1, &[]),
        h.sim.create_volume("gb", 1, &[]),
    );
    let group = crate::helpers::volume_group(&h.cloud, "default_group_type", &[&a, &b]).await;
    h.sim
        .set_volume_status_for(&b, "maintenance", Duration::from_millis(1500));

    let job_id = h.adhoc("volume_group", &group, json!({})).await;
    let waiting = h
        .drive(job_id, |j| {
            j.error
                .as_ref()
                .is_some_and(|e| e.0.message.contains("maintenance"))
        })
        .await;
    assert_eq!(waiting.status, JobStatus::Pending);
    let job = h.finish(job_id).await;

    assert_eq!(job.status, JobStatus::Succeeded, "{:?}", job.error);
    assert_eq!(h.sim.count("cinder.create_group_snapshot"), 1);
}

/// The moment a create's outcome becomes unknown is when it is sent, not when
/// the job was claimed: the reads before it (here slowed, while time passes)
/// must not count towards the settle time of a create still under way.
#[sqlx::test]
async fn the_unclear_create_is_stamped_when_it_is_sent(pool: PgPool) {
    let h = harness(pool).await;
    let server = h.sim.create_image_backed_server("web-12", &[], &[], false);
    h.sim
        .inject(FaultRule::latency("nova.get_server", Duration::from_millis(600)).times(1));
    h.sim
        .inject(FaultRule::reply_held("nova.create_image", Duration::from_millis(1500)).times(1));
    let job_id = h.adhoc("server", &server, json!({})).await;
    let claimed_at = h.clock.now();
    let engine = h.engine.clone();
    let step = tokio::spawn(async move { engine.execute_next().await.unwrap() });
    // While the server is being read, a minute passes.
    tokio::time::sleep(Duration::from_millis(200)).await;
    h.clock.advance(TimeDelta::minutes(1));
    // The create is under way (held).
    tokio::time::sleep(Duration::from_millis(900)).await;
    let sending = h.job(job_id).await;
    step.await.unwrap();

    assert_eq!(sending.status, JobStatus::Creating);
    let stamped = sending.create_unclear_at.expect("a create is under way");
    assert!(
        // The database keeps microseconds.
        stamped >= claimed_at + TimeDelta::minutes(1) - TimeDelta::milliseconds(1),
        "stamped at {stamped}, claimed at {claimed_at}: the stamp is older than the send"
    );
}

/// A burst of server snapshots reads each boot image once per project, not
/// once per job: the consistency it gives is remembered for `BOOT_IMAGE_TTL`
/// (issue 13: fewer calls to start a job), and read again after that.
#[sqlx::test]
async fn the_boot_image_of_many_servers_is_read_once_within_its_ttl(pool: PgPool) {
    // Arrange: three servers booted from the same image, with a guest agent.
    let h = harness(pool).await;
    let servers: Vec<String> = (0..3)
        .map(|i| {
            h.sim
                .create_image_backed_server(&format!("web-{i}"), &[], &[], true)
        })
        .collect();

    // Act
    let mut jobs = Vec::new();
    for server in &servers {
        let job_id = h.adhoc("server", server, json!({})).await;
        jobs.push(h.finish(job_id).await);
    }

    // Assert: one read of the boot image served all three, with its answer.
    assert_eq!(h.sim.count("glance.get_image"), 1);
    for job in &jobs {
        assert_eq!(job.status, JobStatus::Succeeded, "{:?}", job.error);
        assert_eq!(
            job.consistency,
            Some(stacksnap::domain::job::ObtainedConsistency::Unknown),
            "a guest agent without os_require_quiesce, as read the first time"
        );
    }

    // Act: a job started once the answer has expired.
    h.clock
        .advance(stacksnap::engine::snapshot::BOOT_IMAGE_TTL + TimeDelta::seconds(1));
    let late = h.sim.create_image_backed_server("web-late", &[], &[], true);
    let job = h.finish(h.adhoc("server", &late, json!({})).await).await;

    // Assert: the image is read again.
    assert_eq!(job.status, JobStatus::Succeeded, "{:?}", job.error);
    assert_eq!(h.sim.count("glance.get_image"), 2);
}

/// The jobs in flight as the start's limit counts them: the kept count with
/// the changes not yet folded in (migration `job_in_flight_count`).
async fn kept_in_flight(pool: &PgPool) -> (i64, i64) {
    sqlx::query_as(
        "select (select n from job_in_flight_count) \
                    + (select coalesce(sum(n), 0) from job_in_flight_change)::bigint, \
                (select count(*) from job where status in ('creating', 'tracking'))",
    )
    .fetch_one(pool)
    .await
    .unwrap()
}

#[sqlx::test]
async fn the_kept_count_of_jobs_in_flight_holds_the_limit_and_follows_every_change(pool: PgPool) {
    // Arrange: uploads that last, an engine allowing two jobs in flight, three queued.
    let mut config = SimConfig::default();
    config.durations.image_uploading = Duration::from_secs(600);
    let h = harness_with(pool.clone(), config).await;
    let engine = Engine::new(
        h.pool.clone(),
        crate::helpers::cloud_for(&h.sim),
        Arc::new(h.clock.clone()),
        EngineConfig {
            max_in_flight: 2,
            ..engine_config()
        },
    );
    let mut queued = Vec::new();
    for name in ["a", "b", "c"] {
        let server = h.sim.create_image_backed_server(name, &[], &[], false);
        queued.push(h.adhoc_in("default", "server", &server, json!({})).await);
    }

    // Act: every worker turn there is.
    while engine.execute_next().await.unwrap() == Outcome::Worked {}

    // Assert: two started, the third waits; the count is the jobs'.
    let mut statuses = Vec::new();
    for id in &queued {
        statuses.push(h.job(*id).await.status);
    }
    assert_eq!(
        statuses
            .iter()
            .filter(|s| **s == JobStatus::Pending)
            .count(),
        1,
        "{statuses:?}"
    );
    assert_eq!(kept_in_flight(&pool).await, (2, 2));

    // Act: a job leaves flight by any write (here a plain update); then the
    // engine goes on.
    sqlx::query(
        "update job set status = 'failed', finished_at = now() \
         where job_id = (select job_id from job where status = 'tracking' order by job_id limit 1)",
    )
    .execute(&pool)
    .await
    .unwrap();
    assert_eq!(kept_in_flight(&pool).await, (1, 1));
    while engine.execute_next().await.unwrap() == Outcome::Worked {}

    // Assert: the third started, within the limit.
    assert_eq!(kept_in_flight(&pool).await, (2, 2));
    for id in &queued {
        assert_ne!(h.job(*id).await.status, JobStatus::Pending);
    }
    sqlx::query("delete from job where status = 'failed'")
        .execute(&pool)
        .await
        .unwrap();
    sqlx::query("delete from run where run_id = (select run_id from job where job_id = $1)")
        .bind(queued[2])
        .execute(&pool)
        .await
        .unwrap();
    assert_eq!(
        kept_in_flight(&pool).await,
        (1, 1),
        "a run's deletion cascades"
    );

    // Act + Assert: a TRUNCATE; then the count row deleted by hand is counted again.
    sqlx::query("truncate job cascade")
        .execute(&pool)
        .await
        .unwrap();
    assert_eq!(kept_in_flight(&pool).await, (0, 0));
    sqlx::query("delete from job_in_flight_count")
        .execute(&pool)
        .await
        .unwrap();
    let server = h.sim.create_image_backed_server("d", &[], &[], false);
    let fourth = h.adhoc_in("default", "server", &server, json!({})).await;
    while engine.execute_next().await.unwrap() == Outcome::Worked {}
    assert_ne!(h.job(fourth).await.status, JobStatus::Pending);
    assert_eq!(kept_in_flight(&pool).await, (1, 1));
}
