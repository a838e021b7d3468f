//! What happens to a policy's work when the policy is deleted or disabled, and to
//! a stored policy the scheduler cannot fire: the API and the engine together, on
//! one database and one clock.

use std::time::Duration;

use chrono::TimeDelta;
use serde_json::{Value, json};
use sqlx::PgPool;
use stacksnap::{
    clock::Clock as _,
    domain::{
        job::{JobStatus, NewJob},
        policy::Policy,
    },
    engine::resolver::job_options,
    store::{jobs, policies, runs, snapshots},
};
use stacksnap_sim::SimConfig;
use uuid::Uuid;

use crate::helpers::{Harness, TestApp, harness, harness_with, spawn_app_on};

/// A harness whose Cinder snapshots take 1.5s, so a job can be caught in flight,
/// and the API on the same database and clock.
async fn setup(pool: PgPool) -> (Harness, TestApp) {
    let mut config = SimConfig::default();
    config.durations.snapshot_create = Duration::from_millis(1500);
    let h = harness_with(pool, config).await;
    let app = spawn_app_on(h.pool.clone(), h.clock.clone()).await;
    (h, app)
}

/// A volume policy over `volumes`, at most `max_concurrent` jobs at once.
async fn volume_policy(h: &Harness, name: &str, volumes: &[String], max_concurrent: u32) -> Policy {
    h.policy(json!({
        "name": name,
        "resource_type": "volume",
        "targets": {"ids": volumes},
        "schedules": [{"cron": "0 3 * * *"}],
        "retention": {"keep_last": 3},
        "options": {"max_concurrent": max_concurrent}
    }))
    .await
}

/// Fires the policy by hand, as `POST /v1/policies/{id}/run` does.
async fn run_now(h: &Harness, policy: &Policy) -> Uuid {
    runs::insert_manual_run(&h.pool, policy, None, h.clock.now())
        .await
        .unwrap()
}

/// Status and error code of every job of a run, in job order.
async fn jobs_of(h: &Harness, run_id: Uuid) -> Vec<(String, Option<String>)> {
    sqlx::query_as("select status, error ->> 'code' from job where run_id = $1 order by job_id")
        .bind(run_id)
        .fetch_all(&h.pool)
        .await
        .unwrap()
}

/// A run's status and error code.
async fn run_of(h: &Harness, run_id: Uuid) -> (String, Option<String>) {
    sqlx::query_as("select status, error ->> 'code' from run where run_id = $1")
        .bind(run_id)
        .fetch_one(&h.pool)
        .await
        .unwrap()
}

/// The id of the job of `run_id` in `status`.
async fn job_in(h: &Harness, run_id: Uuid, status: &str) -> Uuid {
    sqlx::query_scalar("select job_id from job where run_id = $1 and status = $2")
        .bind(run_id)
        .bind(status)
        .fetch_one(&h.pool)
        .await
        .unwrap()
}

/// The state, policy and volume snapshot of what a job recorded.
async fn snapshot_of(h: &Harness, job_id: Uuid) -> (String, Option<Uuid>, String) {
    sqlx::query_as(
        "select state, policy_id, volume_snapshots -> 0 ->> 'snapshot_id' from snapshot where job_id = $1",
    )
    .bind(job_id)
    .fetch_one(&h.pool)
    .await
    .unwrap()
}

/// Works and lets time pass until nothing is left to do.
async fn settle(h: &Harness) {
    for _ in 0..40 {
        h.work().await;
        h.clock.advance(TimeDelta::seconds(1));
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

#[sqlx::test]
async fn deleting_a_policy_cancels_its_pending_jobs_and_unresolved_runs_and_sends_nothing(
    pool: PgPool,
) {
    // Arrange: a run resolved into two pending jobs, and a second run not resolved yet.
    let (h, app) = setup(pool).await;
    let volumes = [
        h.sim.create_volume("a", 1, &[]),
        h.sim.create_volume("b", 1, &[]),
    ];
    let policy = volume_policy(&h, "doomed", &volumes, 10).await;
    let resolved = run_now(&h, &policy).await;
    h.engine.execute_next().await.unwrap();
    assert_eq!(
        jobs_of(&h, resolved).await,
        [("pending".into(), None), ("pending".into(), None)]
    );
    let unresolved = run_now(&h, &policy).await;

    // Act
    let response = app
        .delete_policy(&policy.id.to_string(), None)
        .await
        .status();
    settle(&h).await;

    // Assert: nothing was sent; every job and run says why it ended.
    assert_eq!(response, 204);
    assert_eq!(h.sim.count("cinder.create_snapshot"), 0);
    let cancelled = (
        String::from("cancelled"),
        Some(String::from("policy_deleted")),
    );
    assert_eq!(jobs_of(&h, resolved).await, [cancelled.clone(), cancelled]);
    assert_eq!(run_of(&h, resolved).await.0, "failed");
    assert_eq!(
        run_of(&h, unresolved).await,
        ("failed".into(), Some("policy_deleted".into()))
    );
    assert!(jobs_of(&h, unresolved).await.is_empty());
}

#[sqlx::test]
async fn a_job_in_flight_when_its_policy_is_deleted_finishes_and_its_snapshot_follows_the_choice(
    pool: PgPool,
) {
    // Arrange: two policies, each with a job tracking its Cinder snapshot.
    let (h, app) = setup(pool).await;
    let mut jobs = Vec::new();
    for name in ["deleted-with-snapshots", "deleted-keeping-snapshots"] {
        let volume = h.sim.create_volume(name, 1, &[]);
        let policy = volume_policy(&h, name, &[volume], 10).await;
        let run = run_now(&h, &policy).await;
        h.engine.execute_next().await.unwrap();
        let job = job_in(&h, run, "pending").await;
        h.drive(job, |j| j.status == JobStatus::Tracking).await;
        jobs.push((policy, job));
    }
    let [(deleted, deleted_job), (kept, kept_job)] = <[_; 2]>::try_from(jobs).unwrap();

    // Act: both policies are deleted while their jobs run; then the jobs end.
    let delete = |id: Uuid, snapshots: &str| {
        let url = app.url(&format!("/v1/policies/{id}?snapshots={snapshots}"));
        app.client.delete(url).send()
    };
    assert_eq!(delete(deleted.id, "delete").await.unwrap().status(), 204);
    assert_eq!(delete(kept.id, "keep").await.unwrap().status(), 204);
    let deleted_done = h.finish(deleted_job).await;
    let kept_done = h.finish(kept_job).await;
    settle(&h).await;

    // Assert: both jobs finished. With `delete`, the snapshot was deleted as soon
    // as it was recorded; with `keep`, it stays, listed, with no policy.
    assert_eq!(deleted_done.status, JobStatus::Succeeded);
    assert_eq!(kept_done.status, JobStatus::Succeeded);
    let (state, policy_id, cinder_id) = snapshot_of(&h, deleted_job).await;
    assert_eq!((state.as_str(), policy_id), ("deleted", None));
    assert!(
        h.cloud.cinder().get_snapshot(&cinder_id).await.is_err(),
        "the Cinder snapshot is gone"
    );
    let (state, policy_id, cinder_id) = snapshot_of(&h, kept_job).await;
    assert_eq!((state.as_str(), policy_id), ("available", None));
    let cinder = h.cloud.cinder().get_snapshot(&cinder_id).await.unwrap();
    assert_eq!(cinder.status, "available");
    let listed: Value = app
        .get("/v1/snapshots?state=available")
        .await
        .json()
        .await
        .unwrap();
    let listed: Vec<&Value> = listed["items"].as_array().unwrap().iter().collect();
    assert_eq!(listed.len(), 1, "{listed:?}");
    assert_eq!(listed[0]["job_id"], kept_job.to_string());
    assert_eq!(listed[0]["policy_id"], Value::Null);
}

#[sqlx::test]
async fn disabling_a_policy_cancels_its_pending_jobs_and_lets_the_job_in_flight_finish(
    pool: PgPool,
) {
    // Arrange: one job at a time: the first tracks its snapshot, the second waits.
    let (h, app) = setup(pool).await;
    let volumes = [
        h.sim.create_volume("a", 1, &[]),
        h.sim.create_volume("b", 1, &[]),
    ];
    let policy = volume_policy(&h, "nightly", &volumes, 1).await;
    let run = run_now(&h, &policy).await;
    h.engine.execute_next().await.unwrap();
    let first = sqlx::query_scalar::<_, Uuid>(
        "select job_id from job where run_id = $1 order by job_id limit 1",
    )
    .bind(run)
    .fetch_one(&h.pool)
    .await
    .unwrap();
    h.drive(first, |j| j.status == JobStatus::Tracking).await;
    let waiting = job_in(&h, run, "pending").await;

    // Act
    let response = app
        .patch_policy(&policy.id.to_string(), &json!({"enabled": false}), None)
        .await;
    assert_eq!(response.status(), 200);
    let first_done = h.finish(first).await;
    settle(&h).await;

    // Assert: the job in flight finished and its snapshot belongs to the policy;
    // the waiting one was cancelled without sending anything.
    assert_eq!(first_done.status, JobStatus::Succeeded);
    let (state, policy_id, _) = snapshot_of(&h, first).await;
    assert_eq!((state.as_str(), policy_id), ("available", Some(policy.id)));
    let (status, code): (String, Option<String>) =
        sqlx::query_as("select status, error ->> 'code' from job where job_id = $1")
            .bind(waiting)
            .fetch_one(&h.pool)
            .await
            .unwrap();
    assert_eq!(
        (status.as_str(), code.as_deref()),
        ("cancelled", Some("policy_disabled"))
    );
    assert_eq!(h.sim.count("cinder.create_snapshot"), 1);
    assert_ne!(run_of(&h, run).await.0, "running", "the run ended");
}

#[sqlx::test]
async fn policies_the_scheduler_cannot_fire_are_shown_broken_and_the_others_fire(pool: PgPool) {
    // Arrange: three policies due. One holds an option this build does not know
    // (written by a newer replica, say: it cannot be read); one a property name a
    // later release reserves (it reads, but breaks today's rules); one is fine.
    let (h, app) = setup(pool).await;
    let volume = h.sim.create_volume("v", 1, &[]);
    let every_minute = |name: &str| {
        json!({
            "name": name, "resource_type": "volume", "targets": {"ids": [volume]},
            "schedules": [{"cron": "* * * * *"}], "retention": {"keep_last": 3}
        })
    };
    let unreadable = h.policy(every_minute("unreadable")).await;
    let reserved = h.policy(every_minute("reserved")).await;
    let fine = h.policy(every_minute("fine")).await;
    sqlx::query(
        "update policy set options = options || '{\"snapshot_kind\": \"incremental\"}' \
         where policy_id = $1",
    )
    .bind(unreadable.id)
    .execute(&h.pool)
    .await
    .unwrap();
    sqlx::query(
        "update policy set options = jsonb_set(options, '{metadata}', '{\"owner\": \"ops\"}') \
         where policy_id = $1",
    )
    .bind(reserved.id)
    .execute(&h.pool)
    .await
    .unwrap();
    h.clock.advance(TimeDelta::minutes(1));

    // Act
    let fired = h.engine.fire_due().await;

    // Assert: only the fine policy fired; the API lists all three, two broken with the reason.
    assert!(fired.is_ok(), "{fired:?}");
    let runs_of = |id: Uuid| {
        sqlx::query_scalar::<_, i64>("select count(*) from run where policy_id = $1")
            .bind(id)
            .fetch_one(&h.pool)
    };
    assert_eq!(runs_of(fine.id).await.unwrap(), 1);
    assert_eq!(runs_of(unreadable.id).await.unwrap(), 0);
    assert_eq!(runs_of(reserved.id).await.unwrap(), 0);
    let response = app.get("/v1/policies").await;
    assert_eq!(response.status(), 200);
    let list: Value = response.json().await.unwrap();
    let shown = |id: Uuid| {
        list["items"]
            .as_array()
            .unwrap()
            .iter()
            .find(|p| p["id"] == id.to_string())
            .cloned()
            .unwrap_or_else(|| panic!("{id} is listed: {list}"))
    };
    assert_eq!(shown(fine.id)["state"], "active");
    assert_eq!(shown(fine.id)["error"], Value::Null);
    let broken = shown(unreadable.id);
    assert_eq!(broken["state"], "broken", "{broken}");
    assert_eq!(broken["error"]["code"], "unreadable_policy");
    assert!(
        broken["error"]["message"]
            .as_str()
            .unwrap()
            .contains("snapshot_kind"),
        "{broken}"
    );
    assert_eq!(broken["next_run_at"], Value::Null);
    let broken = shown(reserved.id);
    assert_eq!(broken["state"], "broken", "{broken}");
    assert_eq!(broken["error"]["code"], "invalid_policy");
    assert!(
        broken["error"]["message"]
            .as_str()
            .unwrap()
            .contains("options.metadata.owner"),
        "{broken}"
    );

    // Act: a PATCH drops the refused property.
    let response = app
        .patch_policy(
            &reserved.id.to_string(),
            &json!({"options": {"metadata": {"owner": null}}}),
            None,
        )
        .await;

    // Assert: active again, with a next fire time from now, and it fires.
    assert_eq!(response.status(), 200);
    let repaired: Value = response.json().await.unwrap();
    assert_eq!(repaired["state"], "active", "{repaired}");
    assert_eq!(repaired["error"], Value::Null);
    assert!(repaired["next_run_at"].is_string(), "{repaired}");
    h.clock.advance(TimeDelta::minutes(1));
    h.engine.fire_due().await.unwrap();
    assert_eq!(runs_of(reserved.id).await.unwrap(), 1);
    assert_eq!(runs_of(unreadable.id).await.unwrap(), 0);
}

/// A worker's resolution (insert jobs + mark_resolved, one transaction) that
/// commits while the policy is being deleted must not leave its jobs `pending`:
/// they would run after the policy is gone, and what they make would land with
/// no policy although the user chose `snapshots=delete`.
#[sqlx::test]
async fn a_run_resolved_while_its_policy_is_deleted_leaves_no_pending_job(pool: PgPool) {
    let h = harness(pool).await;
    let volume = h.sim.create_volume("a", 1, &[]);
    let policy = h
        .policy(json!({
            "name": "doomed",
            "resource_type": "volume",
            "targets": {"ids": [volume]},
            "schedules": [{"cron": "0 3 * * *"}],
            "retention": {"keep_last": 3}
        }))
        .await;
    let now = h.clock.now();
    let run_id = runs::insert_manual_run(&h.pool, &policy, None, now)
        .await
        .unwrap();
    // A worker claims the run and resolves it, as `resolver::resolve_run` does.
    let owner = Uuid::new_v4();
    let run = runs::claim_unresolved_run(&h.pool, owner, now, TimeDelta::minutes(5))
        .await
        .unwrap()
        .unwrap();
    assert_eq!(run.run_id, run_id);
    let job = NewJob {
        job_id: Uuid::now_v7(),
        resource_type: policy.spec.resource_type,
        resource_id: volume.clone(),
        resource_name: Some("a".into()),
        options: job_options(&policy.spec, now),
        start_by: now + TimeDelta::hours(1),
        kind: stacksnap::domain::job::JobKind::Snapshot,
        restore: None,
    };
    let mut tx = h.pool.begin().await.unwrap();
    jobs::insert_jobs(&mut tx, run_id, "default", Some(policy.id), &[job], now)
        .await
        .unwrap();
    assert!(
        runs::mark_resolved(&mut tx, run_id, owner, now)
            .await
            .unwrap()
    );

    // Meanwhile the user deletes the policy with its snapshots.
    let pool2 = h.pool.clone();
    let id = policy.id;
    let deleting = tokio::spawn(async move {
        policies::delete_policy(&pool2, "default", id, None, true, now, "api").await
    });
    tokio::time::sleep(Duration::from_millis(500)).await;
    tx.commit().await.unwrap();
    assert!(deleting.await.unwrap().unwrap(), "the policy is deleted");

    let pending: Vec<(Uuid, String)> =
        sqlx::query_as("select job_id, status from job where run_id = $1")
            .bind(run_id)
            .fetch_all(&h.pool)
            .await
            .unwrap();
    // Let the engine run what is left.
    for _ in 0..40 {
        h.work().await;
        h.clock.advance(TimeDelta::seconds(1));
        tokio::time::sleep(Duration::from_millis(30)).await;
    }
    let recorded: Vec<(String, Option<Uuid>)> = sqlx::query_as(
        "select s.state, s.policy_id from snapshot s join job j on j.job_id = s.job_id where j.run_id = $1",
    )
    .bind(run_id)
    .fetch_all(&h.pool)
    .await
    .unwrap();
    assert!(
        pending.iter().all(|(_, status)| status != "pending"),
        "a job of the deleted policy stayed pending: {pending:?}; later it recorded {recorded:?}"
    );
}

/// Deleting a policy and a job of its run ending take their locks in one order
/// (policy, run, jobs), so a run with one job ending and one pending job does
/// not deadlock the two transactions.
#[sqlx::test]
async fn deleting_a_policy_while_a_job_of_its_run_ends_does_not_deadlock(pool: PgPool) {
    let h = harness(pool).await;
    let volumes = [
        h.sim.create_volume("a", 1, &[]),
        h.sim.create_volume("b", 1, &[]),
    ];
    let policy = h
        .policy(json!({
            "name": "doomed",
            "resource_type": "volume",
            "targets": {"ids": volumes},
            "schedules": [{"cron": "0 3 * * *"}],
            "retention": {"keep_last": 3}
        }))
        .await;
    let now = h.clock.now();
    let run_id = runs::insert_manual_run(&h.pool, &policy, None, now)
        .await
        .unwrap();
    h.engine.execute_next().await.unwrap(); // resolves: two pending jobs
    let ids: Vec<Uuid> =
        sqlx::query_scalar("select job_id from job where run_id = $1 order by job_id")
            .bind(run_id)
            .fetch_all(&h.pool)
            .await
            .unwrap();
    assert_eq!(ids.len(), 2);
    // Job A is tracking (its artefact is being made); job B still waits.
    sqlx::query("update job set status = 'tracking' where job_id = $1")
        .bind(ids[0])
        .execute(&h.pool)
        .await
        .unwrap();

    // Job A ends, as `lifecycle::record_step` ends it: job, then snapshot, then run.
    let mut ending = h.pool.begin().await.unwrap();
    sqlx::query("update job set status = 'succeeded', finished_at = $2 where job_id = $1")
        .bind(ids[0])
        .bind(now)
        .execute(&mut *ending)
        .await
        .unwrap();
    snapshots::record_from_job(&mut ending, ids[0])
        .await
        .unwrap();
    // Meanwhile the user deletes the policy (keeping its snapshots).
    let pool2 = h.pool.clone();
    let id = policy.id;
    let deleting = tokio::spawn(async move {
        policies::delete_policy(&pool2, "default", id, None, false, now, "api").await
    });
    tokio::time::sleep(Duration::from_millis(500)).await;
    let ended = runs::complete_run_if_done(&mut ending, run_id, now).await;
    let ended = match ended {
        Ok(()) => ending.commit().await,
        Err(e) => Err(e),
    };
    let deleted = deleting.await.unwrap();
    assert!(
        ended.is_ok() && deleted.is_ok(),
        "the job's end: {ended:?}; the policy's delete: {deleted:?}"
    );
}

/// A policy whose `next_run_at` an older replica cleared (the old
/// scheduler's answer to a row it could not parse, e.g. one written by a new
/// replica with the new `{job_id}` placeholder during the rolling upgrade) is
/// re-planned: it fires, and is never shown `active` while it cannot.
#[sqlx::test]
async fn a_policy_an_old_replica_stopped_is_not_shown_active_and_silent(pool: PgPool) {
    use stacksnap::domain::policy::PolicyState;
    let h = harness(pool).await;
    let volume = h.sim.create_volume("a", 1, &[]);
    let policy = h
        .policy(json!({
            "name": "nightly",
            "resource_type": "volume",
            "targets": {"ids": [volume]},
            "schedules": [{"cron": "0 3 * * *"}],
            "retention": {"keep_last": 3},
            "options": {"name_template": "{policy}-{job_id}"}
        }))
        .await;
    // What the pre-change scheduler did with a row it could not parse.
    sqlx::query("update policy set next_run_at = null where policy_id = $1")
        .bind(policy.id)
        .execute(&h.pool)
        .await
        .unwrap();

    h.clock.advance(TimeDelta::days(3));
    h.engine.fire_due().await.unwrap();

    let runs: i64 = sqlx::query_scalar("select count(*) from run where policy_id = $1")
        .bind(policy.id)
        .fetch_one(&h.pool)
        .await
        .unwrap();
    let stored = policies::fetch_stored_policy(&h.pool, "default", policy.id, h.clock.now())
        .await
        .unwrap()
        .unwrap();
    assert!(
        runs > 0 || stored.state() != PolicyState::Active,
        "three days without a run, yet the policy is shown {:?} (next_run_at {:?})",
        stored.state(),
        stored.next_run_at
    );
}

/// Until the scheduler's next pass replans it, a policy an older replica stopped
/// is shown with the fire time it resumes at, never `active` with none.
#[sqlx::test]
async fn a_policy_an_old_replica_stopped_is_shown_with_the_fire_time_it_resumes_at(pool: PgPool) {
    let (h, app) = setup(pool).await;
    let volume = h.sim.create_volume("a", 1, &[]);
    let policy = volume_policy(&h, "nightly", &[volume], 1).await;
    let planned = policy.next_run_at.expect("an enabled policy is planned");
    sqlx::query("update policy set next_run_at = null where policy_id = $1")
        .bind(policy.id)
        .execute(&h.pool)
        .await
        .unwrap();

    let shown: Value = app
        .get(&format!("/v1/policies/{}", policy.id))
        .await
        .json()
        .await
        .unwrap();
    assert_eq!(shown["state"], "active", "{shown}");
    assert_eq!(
        shown["next_run_at"]
            .as_str()
            .map(|t| t.parse::<chrono::DateTime<chrono::Utc>>().unwrap()),
        Some(planned),
        "{shown}"
    );
}
