//! Freshness from the schedule, through the API on the engine's clock: targets
//! turning stale after the RPO and fresh again with a new snapshot, and a
//! resource that stops matching counted as orphaned.

use chrono::TimeDelta;
use reqwest::Method;
use serde_json::{Value, json};
use sqlx::PgPool;
use stacksnap::{
    clock::Clock as _,
    openstack::session::{Call, Service},
};
use uuid::Uuid;

use crate::helpers::{TestApp, get_json, harness, run_now, spawn_app_on};

/// `(resource_name, stale)` of each target, by name.
fn stale_by_name(targets: &Value) -> Vec<(String, bool)> {
    let mut found: Vec<(String, bool)> = targets["items"]
        .as_array()
        .unwrap()
        .iter()
        .map(|t| {
            let name = t["resource_name"].as_str().unwrap_or_default().to_owned();
            (name, t["stale"].as_bool().unwrap())
        })
        .collect();
    found.sort();
    found
}

fn pairs(items: &[(&str, bool)]) -> Vec<(String, bool)> {
    items.iter().map(|(n, s)| ((*n).to_owned(), *s)).collect()
}

#[sqlx::test]
async fn targets_turn_stale_after_the_rpo_and_fresh_again_and_a_leaver_is_orphaned(pool: PgPool) {
    // Arrange: two tagged servers, a daily policy selecting them (RPO 1d + 2h).
    let h = harness(pool.clone()).await;
    let app = spawn_app_on(pool, h.clock.clone()).await;
    h.sim
        .create_image_backed_server("web", &["backup"], &[], false);
    let db = h
        .sim
        .create_image_backed_server("db", &["backup"], &[], false);
    let policy = app
        .create_policy(&json!({
            "name": "nightly", "resource_type": "server",
            "targets": {"selector": {"tags": ["backup"]}},
            "schedules": [{"cron": "0 2 * * *"}], "retention": {"keep_last": 5}
        }))
        .await;
    let id = policy["id"].as_str().unwrap();
    let path = format!("/v1/policies/{id}");
    assert_eq!(policy["last_run_at"], Value::Null);
    assert_eq!(
        policy["stale_resources"], 0,
        "no run has resolved a target yet"
    );

    // Act: a run snapshots both.
    run_now(&h, &app, id).await;

    // Assert: fresh, both listed with their newest snapshot.
    let fresh = get_json(&app, &path).await;
    assert_eq!(fresh["stale_resources"], 0, "{fresh}");
    assert_eq!(fresh["orphaned_resources"], 0);
    assert!(fresh["last_run_at"].is_string(), "{fresh}");
    assert!(fresh["last_success_at"].is_string(), "{fresh}");
    let targets = get_json(&app, &format!("{path}/targets")).await;
    assert_eq!(
        stale_by_name(&targets),
        pairs(&[("db", false), ("web", false)])
    );
    assert!(targets["items"][0]["newest_snapshot_id"].is_string());

    // Act: a day and a half passes without a run.
    h.clock.advance(TimeDelta::hours(36));

    // Assert: both are older than 26h.
    assert_eq!(get_json(&app, &path).await["stale_resources"], 2);
    let targets = get_json(&app, &format!("{path}/targets")).await;
    assert_eq!(
        stale_by_name(&targets),
        pairs(&[("db", true), ("web", true)])
    );

    // Act: `db` loses its tag, and the policy runs again.
    h.cloud
        .session()
        .send(&Call::new(
            Service::Compute,
            "delete_tag",
            Method::DELETE,
            format!("/servers/{db}/tags/backup"),
        ))
        .await
        .unwrap();
    run_now(&h, &app, id).await;

    // Assert: `web` is fresh again; `db` is no target any more, but its snapshot
    // is still held: one orphaned resource.
    let after = get_json(&app, &path).await;
    assert_eq!(after["stale_resources"], 0, "{after}");
    assert_eq!(after["orphaned_resources"], 1, "{after}");
    let targets = get_json(&app, &format!("{path}/targets")).await;
    assert_eq!(stale_by_name(&targets), pairs(&[("web", false)]));
}

#[sqlx::test]
async fn an_explicit_rpo_decides_when_a_named_target_turns_stale(pool: PgPool) {
    // Arrange: a policy naming one server by id, with a 6h RPO.
    let h = harness(pool.clone()).await;
    let app = spawn_app_on(pool, h.clock.clone()).await;
    let web = h.sim.create_image_backed_server("web", &[], &[], false);
    let policy = app
        .create_policy(&json!({
            "name": "hourly-ish", "resource_type": "server",
            "targets": {"ids": [web]},
            "schedules": [{"cron": "0 2 * * *"}], "retention": {"keep_last": 5},
            "options": {"rpo": "6h"}
        }))
        .await;
    let id = policy["id"].as_str().unwrap();
    let path = format!("/v1/policies/{id}");
    assert_eq!(policy["options"]["rpo"], "6h");
    assert_eq!(
        policy["stale_resources"], 1,
        "a named target without a snapshot is stale"
    );
    let targets = get_json(&app, &format!("{path}/targets")).await;
    assert_eq!(targets["items"][0]["resource_id"], web.as_str());
    assert_eq!(targets["items"][0]["newest_snapshot_id"], Value::Null);

    // Act + Assert: fresh after a run, stale 7h later, fresh after another.
    run_now(&h, &app, id).await;
    assert_eq!(get_json(&app, &path).await["stale_resources"], 0);
    h.clock.advance(TimeDelta::hours(5));
    assert_eq!(get_json(&app, &path).await["stale_resources"], 0);
    h.clock.advance(TimeDelta::hours(2));
    assert_eq!(get_json(&app, &path).await["stale_resources"], 1);
    run_now(&h, &app, id).await;
    let listed = get_json(&app, "/v1/policies").await;
    assert_eq!(listed["items"][0]["stale_resources"], 0, "{listed}");
    assert_eq!(listed["items"][0]["orphaned_resources"], 0);
    // Every policy at once (what a metrics exporter reads): the same figures.
    let all = stacksnap::store::freshness::fetch_freshness(
        &h.pool,
        stacksnap::store::Scope::AllProjects,
        None,
        h.clock.now(),
    )
    .await
    .unwrap();
    let one = &all[&id.parse::<Uuid>().unwrap()];
    assert_eq!((all.len(), one.stale_resources), (1, 0));
    assert!(one.last_success_at.is_some());
}

#[sqlx::test]
async fn a_policy_stored_without_an_rpo_gets_one_when_the_service_starts(pool: PgPool) {
    // Arrange: a daily policy whose RPO was never stored (written by an older build).
    let h = harness(pool.clone()).await;
    let policy = h
        .policy(json!({
            "name": "old", "resource_type": "server", "targets": {"ids": [Uuid::now_v7()]},
            "schedules": [{"cron": "@daily"}], "retention": {"keep_last": 1}
        }))
        .await;
    sqlx::query("update policy set rpo_seconds = null")
        .execute(&pool)
        .await
        .unwrap();

    // Act
    let filled = stacksnap::store::policies::fill_missing_rpo(&pool, h.clock.now())
        .await
        .unwrap();
    let again = stacksnap::store::policies::fill_missing_rpo(&pool, h.clock.now())
        .await
        .unwrap();

    // Assert: a day between fires plus the 2h default timeout.
    let rpo: Option<i64> =
        sqlx::query_scalar("select rpo_seconds from policy where policy_id = $1")
            .bind(policy.id)
            .fetch_one(&pool)
            .await
            .unwrap();
    assert_eq!((filled, again, rpo), (1, 0, Some(26 * 3600)));
}

/// `stacksnap_policy_stale_resources{policy_id}` as scraped, if exported.
async fn stale_metric(app: &TestApp, policy_id: &str) -> Option<f64> {
    let text = app.get("/metrics").await.text().await.unwrap();
    let series = format!("stacksnap_policy_stale_resources{{policy_id=\"{policy_id}\"}}");
    stacksnap::http::metrics::exposition::parse_samples(&text)
        .get(&series)
        .copied()
}

#[sqlx::test]
async fn the_stale_resources_metric_follows_the_targets_and_leaves_disabled_policies_out(
    pool: PgPool,
) {
    // Arrange: a daily policy (RPO 1d + 2h) over one tagged server, snapshotted once.
    let h = harness(pool.clone()).await;
    let app = spawn_app_on(pool, h.clock.clone()).await;
    h.sim
        .create_image_backed_server("web", &["backup"], &[], false);
    let policy = app
        .create_policy(&json!({
            "name": "nightly", "resource_type": "server",
            "targets": {"selector": {"tags": ["backup"]}},
            "schedules": [{"cron": "0 2 * * *"}], "retention": {"keep_last": 5}
        }))
        .await;
    let id = policy["id"].as_str().unwrap();
    assert_eq!(stale_metric(&app, id).await, None, "not counted yet");
    run_now(&h, &app, id).await;

    // Act + Assert: counted fresh; a pass within half the interval is skipped.
    assert_eq!(h.engine.refresh_freshness().await.unwrap(), Some(1));
    assert_eq!(stale_metric(&app, id).await, Some(0.0));
    assert_eq!(h.engine.refresh_freshness().await.unwrap(), None);

    // Act + Assert: a day and a half on, the target is stale.
    h.clock.advance(TimeDelta::hours(36));
    assert_eq!(h.engine.refresh_freshness().await.unwrap(), Some(1));
    assert_eq!(stale_metric(&app, id).await, Some(1.0));

    // Act + Assert: a new snapshot makes it fresh again at the next count.
    run_now(&h, &app, id).await;
    h.clock.advance(TimeDelta::minutes(1));
    h.engine.refresh_freshness().await.unwrap();
    assert_eq!(stale_metric(&app, id).await, Some(0.0));

    // Act + Assert: disabled, the policy has no series (going stale is expected).
    let response = app.patch_policy(id, &json!({"enabled": false}), None).await;
    assert_eq!(response.status(), 200);
    h.clock.advance(TimeDelta::minutes(1));
    h.engine.refresh_freshness().await.unwrap();
    assert_eq!(stale_metric(&app, id).await, None);
}
