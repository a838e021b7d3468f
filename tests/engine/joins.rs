//! `options.snapshot_on_join`: a resource that starts matching a policy's
//! selector is snapshotted at once by a `join` run, once, whatever the number
//! of replicas; before the policy's first run nothing joins, and a policy
//! without the option waits for its next run.

use chrono::TimeDelta;
use serde_json::{Value, json};
use sqlx::PgPool;
use uuid::Uuid;

use crate::helpers::{Harness, finish_run, get_json, harness, run_now, spawn_app_on};

/// The runs of a policy with trigger `join`, with their jobs' resource ids.
async fn join_runs(h: &Harness, policy_id: &str) -> Vec<(Uuid, Vec<String>)> {
    let runs: Vec<Uuid> = sqlx::query_scalar(
        "select run_id from run where policy_id = $1::uuid and trigger = 'join' order by run_id",
    )
    .bind(policy_id)
    .fetch_all(&h.pool)
    .await
    .unwrap();
    let mut found = Vec::new();
    for run in runs {
        let resources: Vec<String> = sqlx::query_scalar(
            "select resource_id from job where run_id = $1 order by resource_id",
        )
        .bind(run)
        .fetch_all(&h.pool)
        .await
        .unwrap();
        found.push((run, resources));
    }
    found
}

fn policy(name: &str, on_join: bool) -> Value {
    json!({
        "name": name, "resource_type": "server",
        "targets": {"selector": {"tags": ["backup"]}},
        "schedules": [{"cron": "0 2 * * *"}], "retention": {"keep_last": 5},
        "options": {"snapshot_on_join": on_join}
    })
}

#[sqlx::test]
async fn a_server_that_starts_matching_is_snapshotted_at_once_and_only_once(pool: PgPool) {
    // Arrange: one tagged server; a policy that snapshots joiners, another that waits.
    let h = harness(pool.clone()).await;
    let app = spawn_app_on(pool, h.clock.clone()).await;
    h.sim
        .create_image_backed_server("web", &["backup"], &[], false);
    let joining = app.create_policy(&policy("joining", true)).await;
    let waiting = app.create_policy(&policy("waiting", false)).await;
    assert_eq!(joining["options"]["snapshot_on_join"], true);
    assert_eq!(waiting["options"]["snapshot_on_join"], false);
    let (joining, waiting) = (
        joining["id"].as_str().unwrap().to_owned(),
        waiting["id"].as_str().unwrap().to_owned(),
    );

    // Act + Assert: before its first run, nothing joins (that run takes all).
    let before = h.engine.watch_joins().await.unwrap();
    assert_eq!((before.policies, before.runs), (0, 0), "{before:?}");

    // Act: both policies run once; then a second tagged server appears.
    run_now(&h, &app, &joining).await;
    run_now(&h, &app, &waiting).await;
    let scheduled = get_json(&app, &format!("/v1/policies/{joining}")).await;
    h.clock.advance(TimeDelta::minutes(6));
    let quiet = h.engine.watch_joins().await.unwrap();
    let db = h
        .sim
        .create_image_backed_server("db", &["backup"], &[], false);
    h.clock.advance(TimeDelta::minutes(6));
    // Two replicas look at the same moment.
    let replica = h.replica();
    let (a, b) = tokio::join!(h.engine.watch_joins(), replica.watch_joins());
    let (a, b) = (a.unwrap(), b.unwrap());

    // Assert: nothing joined before `db`; then one join run, of `db` alone, for
    // the joining policy only; the policy looked at by one replica.
    assert_eq!((quiet.policies, quiet.runs), (1, 0), "{quiet:?}");
    assert_eq!(a.policies + b.policies, 1, "{a:?} {b:?}");
    assert_eq!(a.runs + b.runs, 1, "{a:?} {b:?}");
    let joins = join_runs(&h, &joining).await;
    assert_eq!(joins.len(), 1, "{joins:?}");
    assert_eq!(joins[0].1, [db]);
    assert!(join_runs(&h, &waiting).await.is_empty());
    let run = get_json(&app, &format!("/v1/runs/{}", joins[0].0)).await;
    assert_eq!(run["trigger"], "join", "{run}");

    // Act: the join run's snapshot is taken; later looks find nothing new.
    h.work().await;
    finish_run(&h, joins[0].0).await;
    h.clock.advance(TimeDelta::minutes(6));
    let again = h.engine.watch_joins().await.unwrap();

    // Assert: `db` is a fresh target of the joining policy; no second join run;
    // the policy's last run and success are still its own runs', not the join's.
    let after = get_json(&app, &format!("/v1/policies/{joining}")).await;
    assert_eq!(after["last_run_at"], scheduled["last_run_at"], "{after}");
    assert_eq!(
        after["last_success_at"], scheduled["last_success_at"],
        "{after}"
    );
    assert_eq!((again.policies, again.runs), (1, 0), "{again:?}");
    let targets = get_json(&app, &format!("/v1/policies/{joining}/targets")).await;
    let mut fresh: Vec<(String, bool)> = targets["items"]
        .as_array()
        .unwrap()
        .iter()
        .map(|t| {
            let name = t["resource_name"].as_str().unwrap().to_owned();
            (name, t["stale"].as_bool().unwrap())
        })
        .collect();
    fresh.sort();
    assert_eq!(
        fresh,
        [("db".to_owned(), false), ("web".to_owned(), false)],
        "{targets}"
    );
}

#[sqlx::test]
async fn a_join_run_is_fired_by_the_scheduler_not_by_the_api(pool: PgPool) {
    // Arrange: a joining policy that ran once; then a second tagged server.
    let h = harness(pool.clone()).await;
    let app = spawn_app_on(pool, h.clock.clone()).await;
    h.sim
        .create_image_backed_server("web", &["backup"], &[], false);
    let id = app.create_policy(&policy("joining", true)).await["id"]
        .as_str()
        .unwrap()
        .to_owned();
    run_now(&h, &app, &id).await;
    h.sim
        .create_image_backed_server("db", &["backup"], &[], false);
    h.clock.advance(TimeDelta::minutes(6));

    // Act
    let joined = h.engine.watch_joins().await.unwrap();

    // Assert: the event says the service fired it, as for a scheduled run
    // (it said `api`: no user asked for it).
    assert_eq!(joined.runs, 1, "{joined:?}");
    let run = &join_runs(&h, &id).await[0].0;
    let actor: String =
        sqlx::query_scalar("select actor from event where run_id = $1 and kind = 'run.fired'")
            .bind(run)
            .fetch_one(&h.pool)
            .await
            .unwrap();
    assert_eq!(actor, "scheduler");
}
