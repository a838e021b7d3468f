//! Restore tests on a schedule (issue 12, item 3: `options.verify`) against
//! the simulator: a due test restores the newest snapshot, waits until it is
//! usable, records the result on the snapshot and always deletes what it
//! made; a failing one is recorded and cleaned up too; a target is tested
//! once per `every`, by one replica, and a crash in the middle is recovered.

use chrono::TimeDelta;
use serde_json::{Value, json};
use sqlx::PgPool;
use stacksnap::clock::Clock;
use stacksnap::domain::{
    job::{JobKind, JobStatus},
    restore::{CleanupState, Restored},
};
use stacksnap_sim::{Fault, FaultRule};
use uuid::Uuid;

use crate::helpers::{Harness, TestApp, get_json, harness, run_now, spawn_app_on};

fn policy(name: &str, server: &str, verify: Value) -> Value {
    policy_of(name, "server", server, verify)
}

fn policy_of(name: &str, resource_type: &str, id: &str, verify: Value) -> Value {
    json!({
        "name": name, "resource_type": resource_type,
        "targets": {"ids": [id]},
        "schedules": [{"cron": "0 2 * * *"}], "retention": {"keep_last": 5},
        "options": {"verify": verify}
    })
}

/// A policy with `verify` on one image-backed server, with one snapshot
/// taken: (app, policy id, server id, snapshot id).
async fn verified_policy(h: &Harness, pool: PgPool, verify: Value) -> (TestApp, String, Uuid) {
    let server = h.sim.create_image_backed_server("web", &[], &[], false);
    policy_with_snapshot(h, pool, policy("tested", &server, verify)).await
}

/// Stores `body` as a policy and takes one snapshot of its target.
async fn policy_with_snapshot(h: &Harness, pool: PgPool, body: Value) -> (TestApp, String, Uuid) {
    let app = spawn_app_on(pool, h.clock.clone()).await;
    let created = app.create_policy(&body).await;
    let id = created["id"].as_str().unwrap().to_owned();
    run_now(h, &app, &id).await;
    let snapshot: Uuid = sqlx::query_scalar(
        "select snapshot_id from snapshot where policy_id = $1::uuid and state = 'available'",
    )
    .bind(&id)
    .fetch_one(&h.pool)
    .await
    .unwrap();
    (app, id, snapshot)
}

/// The restore-test jobs of a policy, oldest first.
async fn verify_jobs(h: &Harness, policy_id: &str) -> Vec<Uuid> {
    sqlx::query_scalar(
        "select job_id from job where policy_id = $1::uuid and kind = 'verify' order by created_at, job_id",
    )
    .bind(policy_id)
    .fetch_all(&h.pool)
    .await
    .unwrap()
}

fn restored(job: &stacksnap::store::jobs::Job) -> Restored {
    job.restored
        .as_ref()
        .map(|r| r.0.clone())
        .unwrap_or_default()
}

/// Works until the job has ended and its clean-up is over.
async fn settle(h: &Harness, job_id: Uuid) -> stacksnap::store::jobs::Job {
    for _ in 0..500 {
        h.work().await;
        let job = h.job(job_id).await;
        if job.status.is_terminal() && job.cleanup_due_at.is_none() {
            return job;
        }
        h.clock.advance(TimeDelta::milliseconds(500));
        tokio::time::sleep(std::time::Duration::from_millis(15)).await;
    }
    panic!("the test {job_id} did not end: {:?}", h.job(job_id).await);
}

async fn server_gone(h: &Harness, id: &str) -> bool {
    match h.cloud.nova().get_server(id).await {
        Err(e) => e.is_not_found(),
        Ok(s) => s.status == "DELETED",
    }
}

async fn event_kinds(h: &Harness, snapshot: Uuid) -> Vec<String> {
    sqlx::query_scalar(
        "select kind from event where snapshot_id = $1 and kind like 'snapshot.verif%' order by seq",
    )
    .bind(snapshot)
    .fetch_all(&h.pool)
    .await
    .unwrap()
}

#[sqlx::test]
async fn a_due_test_boots_the_newest_snapshot_records_the_pass_and_deletes_the_server(
    pool: PgPool,
) {
    // Arrange
    let h = harness(pool.clone()).await;
    let (app, id, snapshot) = verified_policy(&h, pool, json!({"every": "7d"})).await;
    let before = get_json(&app, &format!("/v1/policies/{id}")).await;
    assert_eq!(before["unverified_resources"], 1, "{before}");
    assert_eq!(before["options"]["verify"]["every"], "7d", "{before}");

    // Act
    let queued = h.engine.queue_restore_tests().await.unwrap();
    let jobs = verify_jobs(&h, &id).await;
    assert_eq!(
        (queued.runs, queued.jobs, jobs.len()),
        (1, 1, 1),
        "{queued:?}"
    );
    let job = settle(&h, jobs[0]).await;
    let server = restored(&job)
        .server_id
        .expect("the test server is recorded");

    // Assert: the test passed on an ACTIVE server, which is deleted after.
    assert_eq!(job.kind, JobKind::Verify);
    assert_eq!(job.status, JobStatus::Succeeded, "{:?}", job.error);
    assert!(
        job.timeline
            .0
            .iter()
            .any(|e| e.what == "server" && e.status == "ACTIVE"),
        "it was ACTIVE when the test passed: {:?}",
        job.timeline.0
    );
    assert_eq!(restored(&job).cleanup.unwrap().state, CleanupState::Deleted);
    assert!(server_gone(&h, &server).await, "the test server is deleted");
    let shown = get_json(&app, &format!("/v1/snapshots/{snapshot}")).await;
    assert!(shown["verified_at"].is_string(), "{shown}");
    assert!(shown["verify_error"].is_null(), "{shown}");
    assert_eq!(event_kinds(&h, snapshot).await, ["snapshot.verified"]);
    let run: Value = get_json(&app, &format!("/v1/runs/{}", job.run_id)).await;
    assert_eq!(run["trigger"], "verify", "{run}");
    let after = get_json(&app, &format!("/v1/policies/{id}")).await;
    assert_eq!(after["unverified_resources"], 0, "{after}");
    assert_eq!(
        after["last_run_at"], before["last_run_at"],
        "not a backup run"
    );
    assert_eq!(after["last_success_at"], before["last_success_at"]);
    let targets = get_json(&app, &format!("/v1/policies/{id}/targets")).await;
    assert_eq!(
        targets["items"][0]["verified_at"], shown["verified_at"],
        "{targets}"
    );
    assert_eq!(targets["items"][0]["unverified"], false, "{targets}");
    let status = get_json(&app, "/v1/status").await;
    assert_eq!(status["unverified_resources"], 0, "{status}");
}

#[sqlx::test]
async fn a_target_is_tested_again_only_once_every_has_passed(pool: PgPool) {
    // Arrange: one test done.
    let h = harness(pool.clone()).await;
    let (_app, id, _snapshot) = verified_policy(&h, pool, json!({"every": "2h"})).await;
    h.engine.queue_restore_tests().await.unwrap();
    let first = verify_jobs(&h, &id).await;
    settle(&h, first[0]).await;

    // Act: looks within `every`, then after it.
    h.clock.advance(TimeDelta::minutes(30));
    let within = h.engine.queue_restore_tests().await.unwrap();
    h.clock.advance(TimeDelta::minutes(100));
    let after = h.engine.queue_restore_tests().await.unwrap();

    // Assert
    assert_eq!((within.policies, within.jobs), (1, 0), "{within:?}");
    assert_eq!(after.jobs, 1, "{after:?}");
    assert_eq!(verify_jobs(&h, &id).await.len(), 2);
}

#[sqlx::test]
async fn a_failing_test_records_the_error_and_an_event_is_cleaned_up_and_is_not_retried_at_once(
    pool: PgPool,
) {
    // Arrange
    let h = harness(pool.clone()).await;
    let (app, id, snapshot) = verified_policy(&h, pool, json!({"every": "1d"})).await;
    h.sim
        .inject(FaultRule::new("nova.create_server", Fault::ServerError).times(1));

    // Act
    h.engine.queue_restore_tests().await.unwrap();
    let jobs = verify_jobs(&h, &id).await;
    let job = settle(&h, jobs[0]).await;
    h.clock.advance(TimeDelta::minutes(10));
    let again = h.engine.queue_restore_tests().await.unwrap();

    // Assert
    assert_eq!(job.status, JobStatus::Failed);
    let made = restored(&job);
    assert_eq!(made.cleanup.unwrap().state, CleanupState::Deleted);
    assert!(server_gone(&h, made.server_id.as_deref().unwrap()).await);
    let shown = get_json(&app, &format!("/v1/snapshots/{snapshot}")).await;
    assert!(shown["verified_at"].is_null(), "{shown}");
    assert_eq!(shown["verify_error"]["code"], "server_error", "{shown}");
    assert!(shown["verify_error"]["at"].is_string(), "{shown}");
    assert_eq!(event_kinds(&h, snapshot).await, ["snapshot.verify_failed"]);
    assert_eq!(again.jobs, 0, "a failed test is not re-run within `every`");
    let policy = get_json(&app, &format!("/v1/policies/{id}")).await;
    assert_eq!(policy["unverified_resources"], 1, "{policy}");
    let status = get_json(&app, "/v1/status").await;
    assert_eq!(status["unverified_resources"], 1, "{status}");
    let failed: i64 = sqlx::query_scalar(
        "select count(*) from run where policy_id = $1::uuid and trigger = 'verify' and status = 'failed'",
    )
    .bind(&id)
    .fetch_one(&h.pool)
    .await
    .unwrap();
    assert_eq!(failed, 1, "the verify run ends failed");
    let runs_total: f64 = sqlx::query_scalar(
        "select coalesce(sum(value), 0) from metric_delta where family = 'stacksnap_runs_total' \
         and labels ->> 'status' = 'failed'",
    )
    .fetch_one(&h.pool)
    .await
    .unwrap();
    assert_eq!(
        runs_total, 0.0,
        "a failed restore test is no failed backup run"
    );
    let verifications: f64 = sqlx::query_scalar(
        "select coalesce(sum(value), 0) from metric_delta \
         where family = 'stacksnap_snapshot_verifications_total' and labels ->> 'status' = 'failed'",
    )
    .fetch_one(&h.pool)
    .await
    .unwrap();
    assert_eq!(verifications, 1.0);
}

#[sqlx::test]
async fn a_pass_after_a_failure_clears_the_error(pool: PgPool) {
    // Arrange: a failed test.
    let h = harness(pool.clone()).await;
    let (app, id, snapshot) = verified_policy(&h, pool, json!({"every": "1h"})).await;
    h.sim
        .inject(FaultRule::new("nova.create_server", Fault::ServerError).times(1));
    h.engine.queue_restore_tests().await.unwrap();
    settle(&h, verify_jobs(&h, &id).await[0]).await;

    // Act
    h.clock.advance(TimeDelta::minutes(90));
    h.engine.queue_restore_tests().await.unwrap();
    let second = verify_jobs(&h, &id).await[1];
    let job = settle(&h, second).await;

    // Assert
    assert_eq!(job.status, JobStatus::Succeeded, "{:?}", job.error);
    let shown = get_json(&app, &format!("/v1/snapshots/{snapshot}")).await;
    assert!(shown["verified_at"].is_string(), "{shown}");
    assert!(shown["verify_error"].is_null(), "{shown}");
    assert_eq!(
        event_kinds(&h, snapshot).await,
        ["snapshot.verify_failed", "snapshot.verified"]
    );
}

#[sqlx::test]
async fn a_test_interrupted_by_a_crash_is_finished_and_cleaned_up_by_another_replica(pool: PgPool) {
    // Arrange: the test's server is being built when its replica dies
    // holding the job's lease.
    let h = harness(pool.clone()).await;
    let (_app, id, snapshot) = verified_policy(&h, pool, json!({"every": "7d"})).await;
    h.engine.queue_restore_tests().await.unwrap();
    let job_id = verify_jobs(&h, &id).await[0];
    let tracking = h
        .drive(job_id, |j| {
            j.status == JobStatus::Tracking && restored(j).server_id.is_some()
        })
        .await;
    sqlx::query("update job set lease_owner = $2, lease_expires_at = $3 where job_id = $1")
        .bind(job_id)
        .bind(Uuid::now_v7())
        .bind(stacksnap::clock::Clock::now(&h.clock) + TimeDelta::seconds(60))
        .execute(&h.pool)
        .await
        .unwrap();

    // Act: another replica, after the lease ran out.
    h.clock.advance(TimeDelta::seconds(90));
    let replica = h.replica();
    let mut job = h.job(job_id).await;
    for _ in 0..500 {
        while replica.execute_next().await.unwrap() == stacksnap::engine::Outcome::Worked {}
        job = h.job(job_id).await;
        if job.status.is_terminal() && job.cleanup_due_at.is_none() {
            break;
        }
        h.clock.advance(TimeDelta::milliseconds(500));
        tokio::time::sleep(std::time::Duration::from_millis(15)).await;
    }

    // Assert: the same server was followed to ACTIVE, recorded, and deleted.
    assert_eq!(job.status, JobStatus::Succeeded, "{:?}", job.error);
    assert!(job.cleanup_due_at.is_none(), "{job:?}");
    let server = restored(&tracking).server_id.unwrap();
    assert_eq!(restored(&job).server_id.as_deref(), Some(server.as_str()));
    assert!(server_gone(&h, &server).await);
    assert_eq!(h.sim.count("nova.create_server"), 1, "never made twice");
    assert_eq!(event_kinds(&h, snapshot).await, ["snapshot.verified"]);
}

#[sqlx::test]
async fn two_replicas_queue_one_test_per_target(pool: PgPool) {
    // Arrange
    let h = harness(pool.clone()).await;
    let (_app, id, _snapshot) = verified_policy(&h, pool, json!({"every": "7d"})).await;
    let replica = h.replica();

    // Act: both look at once; then, past the look interval, both again.
    let (a, b) = tokio::join!(
        h.engine.queue_restore_tests(),
        replica.queue_restore_tests()
    );
    h.clock.advance(TimeDelta::minutes(6));
    let (c, d) = tokio::join!(
        h.engine.queue_restore_tests(),
        replica.queue_restore_tests()
    );

    // Assert
    let (a, b, c, d) = (a.unwrap(), b.unwrap(), c.unwrap(), d.unwrap());
    assert_eq!(
        a.jobs + b.jobs + c.jobs + d.jobs,
        1,
        "{a:?} {b:?} {c:?} {d:?}"
    );
    assert_eq!(verify_jobs(&h, &id).await.len(), 1);
}

#[sqlx::test]
async fn a_policy_without_verify_queues_no_test(pool: PgPool) {
    // Arrange
    let h = harness(pool.clone()).await;
    let app = spawn_app_on(pool, h.clock.clone()).await;
    let server = h.sim.create_image_backed_server("web", &[], &[], false);
    let mut body = policy("plain", &server, Value::Null);
    body["options"] = json!({});
    let id = app.create_policy(&body).await["id"]
        .as_str()
        .unwrap()
        .to_owned();
    run_now(&h, &app, &id).await;

    // Act
    let queued = h.engine.queue_restore_tests().await.unwrap();

    // Assert
    assert_eq!((queued.policies, queued.jobs), (0, 0), "{queued:?}");
    let shown = get_json(&app, &format!("/v1/policies/{id}")).await;
    assert_eq!(shown["unverified_resources"], 0, "{shown}");
    assert!(shown["options"].get("verify").is_none(), "{shown}");
}

#[sqlx::test]
async fn a_volume_backed_servers_test_deletes_the_server_and_each_new_volume(pool: PgPool) {
    // Arrange: Nova copies `delete_on_termination` from the source's mapping,
    // so the test server's volumes may outlive it unless deleted explicitly.
    let h = harness(pool.clone()).await;
    let server = h.sim.create_volume_backed_server("db", 2, false);
    let (_app, id, snapshot) =
        policy_with_snapshot(&h, pool, policy("tested", &server, json!({"every": "7d"}))).await;

    // Act
    h.engine.queue_restore_tests().await.unwrap();
    let job = settle(&h, verify_jobs(&h, &id).await[0]).await;

    // Assert
    assert_eq!(job.status, JobStatus::Succeeded, "{:?}", job.error);
    let made = restored(&job);
    let volumes = made.volume_ids.clone().unwrap_or_default();
    assert_eq!(volumes.len(), 2, "{made:?}");
    assert!(server_gone(&h, made.server_id.as_deref().unwrap()).await);
    for volume in volumes {
        let gone = match h.cloud.cinder().get_volume(&volume).await {
            Err(e) => e.is_not_found(),
            Ok(v) => v.status == "deleting",
        };
        assert!(gone, "volume {volume} of the test is deleted");
    }
    assert_eq!(event_kinds(&h, snapshot).await, ["snapshot.verified"]);
}

#[sqlx::test]
async fn a_volumes_test_restores_an_available_volume_and_deletes_it(pool: PgPool) {
    // Arrange
    let h = harness(pool.clone()).await;
    let volume = h.sim.create_volume("data", 1, &[]);
    let body = policy_of("tested", "volume", &volume, json!({"every": "7d"}));
    let (app, id, snapshot) = policy_with_snapshot(&h, pool, body).await;

    // Act
    h.engine.queue_restore_tests().await.unwrap();
    let job = settle(&h, verify_jobs(&h, &id).await[0]).await;

    // Assert
    assert_eq!(job.status, JobStatus::Succeeded, "{:?}", job.error);
    let made = restored(&job)
        .volume_id
        .expect("the test volume is recorded");
    let gone = match h.cloud.cinder().get_volume(&made).await {
        Err(e) => e.is_not_found(),
        Ok(v) => v.status == "deleting",
    };
    assert!(gone, "the test volume {made} is deleted");
    let shown = get_json(&app, &format!("/v1/snapshots/{snapshot}")).await;
    assert!(shown["verified_at"].is_string(), "{shown}");
}

#[sqlx::test]
async fn a_result_on_the_snapshot_holds_the_cadence_after_the_history_purged_the_job(pool: PgPool) {
    // Arrange: a passed test whose run and job the history purge removed.
    let h = harness(pool.clone()).await;
    let (_app, id, _snapshot) = verified_policy(&h, pool, json!({"every": "2h"})).await;
    h.engine.queue_restore_tests().await.unwrap();
    settle(&h, verify_jobs(&h, &id).await[0]).await;
    sqlx::query("delete from run where trigger = 'verify'")
        .execute(&h.pool)
        .await
        .unwrap();

    // Act
    h.clock.advance(TimeDelta::minutes(30));
    let within = h.engine.queue_restore_tests().await.unwrap();

    // Assert
    assert_eq!((within.policies, within.jobs), (1, 0), "{within:?}");
}

#[sqlx::test]
async fn a_test_volume_cinder_refuses_to_delete_says_why_in_its_clean_up(pool: PgPool) {
    // Arrange: the test volume gets a Cinder snapshot of its own (a user's,
    // or another tool's) while the test runs: Cinder then refuses its DELETE
    // (400, "must not ... have snapshots"), which no retry changes.
    let h = harness(pool.clone()).await;
    let volume = h.sim.create_volume("data", 1, &[]);
    let body = policy_of("tested", "volume", &volume, json!({"every": "7d"}));
    let (_app, id, _snapshot) = policy_with_snapshot(&h, pool, body).await;
    h.engine.queue_restore_tests().await.unwrap();
    let job_id = verify_jobs(&h, &id).await[0];
    let mut made = None;
    for _ in 0..200 {
        h.work().await;
        if let Some(v) = restored(&h.job(job_id).await).volume_id {
            made = Some(v);
            break;
        }
        h.clock.advance(TimeDelta::milliseconds(500));
        tokio::time::sleep(std::time::Duration::from_millis(15)).await;
    }
    let made = made.expect("the test volume is recorded");
    // Nothing works meanwhile: the volume is snapshotted once Cinder made it.
    for _ in 0..200 {
        if h.cloud.cinder().get_volume(&made).await.unwrap().status == "available" {
            break;
        }
        tokio::time::sleep(std::time::Duration::from_millis(15)).await;
    }
    h.cloud
        .cinder()
        .create_snapshot(&made, "mine", "", &Default::default(), false)
        .await
        .unwrap();

    // Act
    for _ in 0..40 {
        h.work().await;
        h.clock.advance(TimeDelta::seconds(5));
        tokio::time::sleep(std::time::Duration::from_millis(15)).await;
    }

    // Assert: the refusal is not taken for a busy volume in silence.
    let job = h.job(job_id).await;
    assert!(job.status.is_terminal(), "{:?}", job.status);
    let cleanup = restored(&job).cleanup.expect("the clean-up began");
    let error = cleanup.error.unwrap_or_default();
    assert!(
        error.contains(&made) && error.to_lowercase().contains("snapshots"),
        "the clean-up names the refused volume and Cinder's reason: {error:?}"
    );
}

/// A test that never reached the cloud (here its start window passed while
/// the service was busy; a refused trust is alike) says nothing of the
/// backup: the job fails, but the snapshot records no failed test, no
/// `snapshot.verify_failed` is sent, and the target stays unverified.
#[sqlx::test]
async fn a_test_that_never_ran_records_no_failure_on_the_snapshot(pool: PgPool) {
    // Arrange
    let h = harness(pool.clone()).await;
    let (app, id, snapshot) = verified_policy(&h, pool, json!({"every": "1d"})).await;
    h.engine.queue_restore_tests().await.unwrap();
    let jobs = verify_jobs(&h, &id).await;

    // Act: no worker took it within its start window.
    h.clock.advance(TimeDelta::minutes(61));
    let job = settle(&h, jobs[0]).await;

    // Assert
    assert_eq!(job.status, JobStatus::Failed, "{:?}", job.error);
    assert!(
        restored(&job).is_empty(),
        "nothing was made: {:?}",
        job.restored
    );
    let shown = get_json(&app, &format!("/v1/snapshots/{snapshot}")).await;
    assert!(shown["verify_error"].is_null(), "{shown}");
    assert!(event_kinds(&h, snapshot).await.is_empty());
    let policy = get_json(&app, &format!("/v1/policies/{id}")).await;
    assert_eq!(policy["unverified_resources"], 1, "{policy}");
}

#[sqlx::test]
async fn a_test_volume_cinder_refuses_for_good_is_kept_after_the_limit_and_its_trust_retired(
    pool: PgPool,
) {
    // Arrange: a restore test of a volume, whose run has a trust, whose
    // volume gets a Cinder snapshot of its own before its clean-up: Cinder refuses
    // its DELETE for as long as that snapshot exists.
    let h = harness(pool.clone()).await;
    let volume = h.sim.create_volume("data", 1, &[]);
    let body = policy_of("tested", "volume", &volume, json!({"every": "7d"}));
    let (_app, id, _snapshot) = policy_with_snapshot(&h, pool, body).await;
    h.engine.queue_restore_tests().await.unwrap();
    let job_id = verify_jobs(&h, &id).await[0];
    let mut made = None;
    for _ in 0..200 {
        h.work().await;
        if let Some(v) = restored(&h.job(job_id).await).volume_id {
            made = Some(v);
            break;
        }
        h.clock.advance(TimeDelta::milliseconds(500));
        tokio::time::sleep(std::time::Duration::from_millis(15)).await;
    }
    let made = made.expect("the test volume is recorded");
    for _ in 0..200 {
        if h.cloud.cinder().get_volume(&made).await.unwrap().status == "available" {
            break;
        }
        tokio::time::sleep(std::time::Duration::from_millis(15)).await;
    }
    h.cloud
        .cinder()
        .create_snapshot(&made, "mine", "", &Default::default(), false)
        .await
        .unwrap();
    for _ in 0..40 {
        h.work().await;
        h.clock.advance(TimeDelta::seconds(5));
        tokio::time::sleep(std::time::Duration::from_millis(15)).await;
    }
    // The run's trust (its clean-up acts with it while it works).
    let trust = stacksnap::openstack::TrustId::new("trust-kept");
    let past = h.clock.now() - TimeDelta::hours(1);
    stacksnap::store::trusts::record(&h.pool, &trust, "default", past)
        .await
        .unwrap();
    sqlx::query(
        "update run set trust_id = 'trust-kept' where run_id = (select run_id from job where job_id = $1)",
    )
    .bind(job_id)
    .execute(&h.pool)
    .await
    .unwrap();
    let job = h.job(job_id).await;
    assert!(job.status.is_terminal(), "{:?}", job.status);
    assert!(
        job.cleanup_due_at.is_some(),
        "the clean-up is still retried"
    );
    let unreferenced = || async {
        stacksnap::store::trusts::unreferenced(&h.pool, h.clock.now(), TimeDelta::minutes(10), 10)
            .await
            .unwrap()
    };
    assert!(
        unreferenced().await.is_empty(),
        "the clean-up still acts with it"
    );

    // Act: the clean-up has tried for longer than the limit.
    h.clock.advance(TimeDelta::days(8));
    for _ in 0..10 {
        h.work().await;
        if h.job(job_id).await.cleanup_due_at.is_none() {
            break;
        }
        h.clock.advance(TimeDelta::seconds(30));
    }

    // Assert: kept, with its last error and what is left named; the trust
    // can be retired.
    let job = h.job(job_id).await;
    assert_eq!(job.cleanup_due_at, None, "the clean-up is over");
    let cleanup = restored(&job).cleanup.expect("the clean-up began");
    assert_eq!(cleanup.state, CleanupState::Kept, "{cleanup:?}");
    let error = cleanup.error.clone().unwrap_or_default();
    assert!(
        error.contains(&made) && error.to_lowercase().contains("snapshots"),
        "the last error is kept: {error:?}"
    );
    assert_eq!(cleanup.left, vec![made.clone()], "{cleanup:?}");
    assert!(
        job.timeline
            .0
            .iter()
            .any(|e| e.what == "volume" && e.id == made && e.status == "kept"),
        "the timeline says so: {:?}",
        job.timeline.0
    );
    let retired: Vec<String> = unreferenced()
        .await
        .into_iter()
        .map(|(t, _)| t.expose().to_owned())
        .collect();
    assert_eq!(retired, vec!["trust-kept".to_owned()]);
}
