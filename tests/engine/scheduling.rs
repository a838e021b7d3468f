//! Firing: every scheduled instant exactly once, across replicas and downtime.

use std::collections::HashSet;

use chrono::{DateTime, DurationRound as _, TimeDelta, Utc};
use serde_json::json;
use sqlx::PgPool;
use stacksnap::{
    clock::Clock as _,
    domain::job::{JobStatus, RunStatus},
    engine::Outcome,
    startup::supervisor::Supervisor,
};

use crate::helpers::{get_json, harness, spawn_app_on};

fn every_minute_policy(name: &str, ids: &[String], missed_run: &str) -> serde_json::Value {
    json!({
        "name": name,
        "resource_type": "server",
        "targets": {"ids": ids},
        "schedules": [{"cron": "* * * * *"}],
        "retention": {"keep_last": 3},
        "options": {"missed_run": missed_run, "start_window": "10m"}
    })
}

#[sqlx::test]
async fn two_engines_fire_every_run_once_and_send_one_create_image_per_job(pool: PgPool) {
    // Arrange: 12 policies over 12 servers, all due at the same minute.
    let h = harness(pool).await;
    let minute = h.clock.now().duration_trunc(TimeDelta::minutes(1)).unwrap();
    h.clock.set(minute + TimeDelta::seconds(30));
    for i in 0..12 {
        let server = h
            .sim
            .create_image_backed_server(&format!("s{i}"), &[], &[], false);
        h.policy(every_minute_policy(&format!("p{i}"), &[server], "run_once"))
            .await;
    }
    h.clock
        .set(minute + TimeDelta::minutes(1) + TimeDelta::seconds(1));
    let other = h.replica();

    // Act: both replicas fire at once, then both work until nothing is left.
    let (a, b) = tokio::join!(h.engine.fire_due(), other.fire_due());
    let fired = a.unwrap().runs + b.unwrap().runs;
    for _ in 0..200 {
        let (x, y) = tokio::join!(h.engine.execute_next(), other.execute_next());
        if x.unwrap() == Outcome::Idle && y.unwrap() == Outcome::Idle {
            let open: i64 = sqlx::query_scalar("select count(*) from job where status not in ('succeeded', 'failed', 'timed_out', 'cancelled')")
                .fetch_one(&h.pool).await.unwrap();
            if open == 0 {
                break;
            }
            h.clock.advance(TimeDelta::milliseconds(200));
            tokio::time::sleep(std::time::Duration::from_millis(15)).await;
        }
    }

    // Assert
    assert_eq!(fired, 12, "each due policy fired once");
    let runs: i64 = sqlx::query_scalar("select count(*) from run")
        .fetch_one(&h.pool)
        .await
        .unwrap();
    assert_eq!(runs, 12);
    let statuses: Vec<String> = sqlx::query_scalar("select status from job")
        .fetch_all(&h.pool)
        .await
        .unwrap();
    assert_eq!(statuses.len(), 12);
    assert!(statuses.iter().all(|s| s == "succeeded"), "{statuses:?}");
    assert_eq!(
        h.sim.count("nova.create_image"),
        12,
        "one createImage per job"
    );
    let images: Vec<Option<String>> = sqlx::query_scalar("select image_id from job")
        .fetch_all(&h.pool)
        .await
        .unwrap();
    assert_eq!(images.iter().collect::<HashSet<_>>().len(), 12);
    let run_statuses: Vec<String> = sqlx::query_scalar("select status from run")
        .fetch_all(&h.pool)
        .await
        .unwrap();
    assert!(
        run_statuses.iter().all(|s| s == "succeeded"),
        "{run_statuses:?}"
    );

    // Firing again at the same instant does nothing.
    assert_eq!(h.engine.fire_due().await.unwrap().runs, 0);
}

async fn downtime(missed_run: &str, pool: PgPool) -> (Vec<(String, String)>, i64) {
    let h = harness(pool).await;
    let minute = h.clock.now().duration_trunc(TimeDelta::minutes(1)).unwrap();
    h.clock.set(minute + TimeDelta::seconds(30));
    let server = h.sim.create_image_backed_server("s", &[], &[], false);
    h.policy(every_minute_policy("p", &[server], missed_run))
        .await;
    // The service was down from before minute+1 until minute+3:30: 3 fire times passed.
    h.clock.set(minute + TimeDelta::seconds(210));
    h.engine.fire_due().await.unwrap();
    let runs: Vec<(String, String)> = sqlx::query_as("select status, to_char(scheduled_for at time zone 'utc', 'HH24:MI') from run order by scheduled_for")
        .fetch_all(&h.pool)
        .await
        .unwrap();
    let next: chrono::DateTime<chrono::Utc> = sqlx::query_scalar("select next_run_at from policy")
        .fetch_one(&h.pool)
        .await
        .unwrap();
    (runs, (next - minute).num_minutes())
}

#[sqlx::test]
async fn after_downtime_run_once_fires_one_catch_up_run_and_records_the_misses(pool: PgPool) {
    let (runs, next) = downtime("run_once", pool).await;
    let statuses: Vec<&str> = runs.iter().map(|(s, _)| s.as_str()).collect();
    assert_eq!(statuses, ["missed", "missed", "running"]);
    assert_eq!(next, 4, "the next fire time is after now");
}

#[sqlx::test]
async fn after_downtime_skip_only_records_the_misses(pool: PgPool) {
    let (runs, _) = downtime("skip", pool).await;
    let statuses: Vec<&str> = runs.iter().map(|(s, _)| s.as_str()).collect();
    assert_eq!(statuses, ["missed", "missed", "missed"]);
}

#[sqlx::test]
async fn thirty_days_of_downtime_fire_a_minutely_policy_once_and_record_a_bounded_number_of_misses(
    pool: PgPool,
) {
    // Arrange: a minutely policy, then 30 days (43,200 fire times) without a replica.
    let h = harness(pool).await;
    let minute = h.clock.now().duration_trunc(TimeDelta::minutes(1)).unwrap();
    h.clock.set(minute + TimeDelta::seconds(30));
    let server = h.sim.create_image_backed_server("s", &[], &[], false);
    h.policy(every_minute_policy("p", &[server], "run_once"))
        .await;
    h.clock
        .set(minute + TimeDelta::days(30) + TimeDelta::seconds(30));

    // Act
    let fired = h.engine.fire_due().await.unwrap();

    // Assert: one run for the newest instant, the newest misses, and nothing left due.
    assert_eq!((fired.runs, fired.policies), (1, 1));
    assert_eq!(fired.missed, stacksnap::domain::firing::MAX_RECORDED_MISSES);
    let (running, newest_miss): (i64, chrono::DateTime<chrono::Utc>) = sqlx::query_as(
        "select count(*) filter (where status = 'running'), max(scheduled_for) filter (where status = 'missed') from run",
    )
    .fetch_one(&h.pool)
    .await
    .unwrap();
    assert_eq!(running, 1);
    assert_eq!(
        newest_miss,
        minute + TimeDelta::days(30) - TimeDelta::minutes(1)
    );
    assert_eq!(
        h.engine.fire_due().await.unwrap().policies,
        0,
        "not due again"
    );
}

#[sqlx::test]
async fn a_run_resolves_selectors_and_a_missing_id_fails_only_its_own_job(pool: PgPool) {
    let h = harness(pool).await;
    let tagged = h
        .sim
        .create_image_backed_server("tagged", &["backup"], &[("tier", "web")], false);
    h.sim
        .create_image_backed_server("untagged", &[], &[], false);
    h.sim
        .create_image_backed_server("wrong-tier", &["backup"], &[("tier", "db")], false);
    let missing = "1b2c3d4e-0000-4000-8000-000000000000";
    let policy = h
        .policy(json!({
            "name": "mixed", "resource_type": "server",
            "targets": {"ids": [missing], "selector": {"tags": ["backup"], "metadata": {"tier": "web"}}},
            "schedules": [{"cron": "@daily"}], "retention": {"keep_last": 1}
        }))
        .await;

    let run_id = stacksnap::store::runs::insert_manual_run(&h.pool, &policy, None, h.clock.now())
        .await
        .unwrap();
    h.work().await;
    let jobs: Vec<(String, uuid::Uuid)> = sqlx::query_as(
        "select resource_id, job_id from job where run_id = $1 order by resource_id",
    )
    .bind(run_id)
    .fetch_all(&h.pool)
    .await
    .unwrap();
    let resources: HashSet<&str> = jobs.iter().map(|(r, _)| r.as_str()).collect();
    assert_eq!(resources, HashSet::from([tagged.as_str(), missing]));
    for (_, job_id) in &jobs {
        h.finish(*job_id).await;
    }

    let run = stacksnap::store::runs::fetch_run(&h.pool, "default", run_id)
        .await
        .unwrap()
        .unwrap();
    assert_eq!(run.status, RunStatus::PartiallyFailed);
    assert_eq!(run.count(JobStatus::Succeeded), 1);
    assert_eq!(run.count(JobStatus::Failed), 1);
}

#[sqlx::test]
async fn a_run_with_no_matching_resource_fails_with_a_reason(pool: PgPool) {
    let h = harness(pool).await;
    let policy = h
        .policy(json!({
            "name": "empty", "resource_type": "volume", "targets": {"selector": {"metadata": {"backup": "yes"}}},
            "schedules": [{"cron": "@daily"}], "retention": {"keep_last": 1}
        }))
        .await;
    let run_id = stacksnap::store::runs::insert_manual_run(&h.pool, &policy, None, h.clock.now())
        .await
        .unwrap();
    h.work().await;
    let run = stacksnap::store::runs::fetch_run(&h.pool, "default", run_id)
        .await
        .unwrap()
        .unwrap();
    assert_eq!(run.status, RunStatus::Failed);
    assert_eq!(run.error.unwrap().0.code, "no_targets");
}

#[sqlx::test]
async fn the_engine_stops_promptly_when_cancelled(pool: PgPool) {
    let h = harness(pool).await;
    let token = tokio_util::sync::CancellationToken::new();
    let engine = Supervisor::start_engine(h.engine.clone(), token.clone());
    let running = tokio::spawn(engine.stopped());
    tokio::time::sleep(std::time::Duration::from_millis(200)).await;
    token.cancel();
    tokio::time::timeout(std::time::Duration::from_secs(5), running)
        .await
        .expect("the engine stops within 5s")
        .unwrap();
}

#[sqlx::test]
async fn a_stored_policy_that_cannot_be_read_stops_only_itself(pool: PgPool) {
    // Arrange: two policies due; the one due first holds a zone this build does not know.
    let h = harness(pool).await;
    let server = h.sim.create_image_backed_server("web", &[], &[], false);
    let broken = h
        .policy(every_minute_policy(
            "broken",
            std::slice::from_ref(&server),
            "run_once",
        ))
        .await;
    let fine = h
        .policy(every_minute_policy("fine", &[server], "run_once"))
        .await;
    sqlx::query(
        "update policy set schedules = '[{\"cron\": \"* * * * *\", \"timezone\": \"Mars/Olympus\"}]', \
             next_run_at = next_run_at - interval '1 second' where policy_id = $1",
    )
    .bind(broken.id)
    .execute(&h.pool)
    .await
    .unwrap();
    h.clock.advance(TimeDelta::minutes(1));

    // Act
    let fired = h.engine.fire_due().await;

    // Assert: the readable policy fired; the unreadable one stopped firing.
    assert!(
        fired.is_ok(),
        "one bad row must not stop the scheduler: {fired:?}"
    );
    let runs_of = |id| {
        sqlx::query_scalar::<_, i64>("select count(*) from run where policy_id = $1")
            .bind(id)
            .fetch_one(&h.pool)
    };
    assert_eq!(runs_of(fine.id).await.unwrap(), 1);
    assert_eq!(runs_of(broken.id).await.unwrap(), 0);
    let next: Option<chrono::DateTime<chrono::Utc>> =
        sqlx::query_scalar("select next_run_at from policy where policy_id = $1")
            .bind(broken.id)
            .fetch_one(&h.pool)
            .await
            .unwrap();
    assert_eq!(next, None);
}

#[sqlx::test]
async fn a_scheduled_run_shows_when_the_scheduler_fired_it(pool: PgPool) {
    // Arrange: a policy due at the next minute; the scheduler comes 1.5 s late.
    let h = harness(pool.clone()).await;
    let app = spawn_app_on(pool, h.clock.clone()).await;
    let minute = h.clock.now().duration_trunc(TimeDelta::minutes(1)).unwrap();
    h.clock.set(minute + TimeDelta::seconds(30));
    let server = h.sim.create_image_backed_server("s", &[], &[], false);
    let policy = app
        .create_policy(&every_minute_policy("p", &[server], "run_once"))
        .await;
    let fired = minute + TimeDelta::milliseconds(61_500);
    h.clock.set(fired);

    // Act
    assert_eq!(h.engine.fire_due().await.unwrap().runs, 1);
    let runs = get_json(
        &app,
        &format!("/v1/runs?policy_id={}", policy["id"].as_str().unwrap()),
    )
    .await;

    // Assert: the lag is fired_at − scheduled_for.
    let at = |field: &str| {
        runs["items"][0][field]
            .as_str()
            .unwrap_or_else(|| panic!("{field} in {runs}"))
            .parse::<DateTime<Utc>>()
            .unwrap()
    };
    assert_eq!(at("scheduled_for"), minute + TimeDelta::minutes(1));
    assert_eq!(at("fired_at"), fired);
}
