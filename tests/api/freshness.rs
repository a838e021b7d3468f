//! `GET /v1/status`, `GET /v1/policies/{id}/targets` and `options.rpo` over
//! HTTP: counts and targets of the caller's project only (every project for an
//! admin who asks), another project's policy not found, and the RPO validated.

use std::time::Duration;

use chrono::{DateTime, TimeDelta, Utc};
use reqwest::{Method, Response};
use serde_json::{Value, json};
use sqlx::PgPool;
use stacksnap_sim::SimConfig;
use uuid::Uuid;

use crate::helpers::{
    SimToken, TEST_NOW, TestApp, error_fields, policy_body, problem, sim_token, spawn_app,
    spawn_app_with_keystone,
};

async fn call(
    app: &TestApp,
    who: &SimToken,
    method: Method,
    path: &str,
    body: Option<&Value>,
) -> Response {
    let mut request = app.with_token(method, path, &who.value);
    if let Some(body) = body {
        request = request.json(body);
    }
    request.send().await.unwrap()
}

async fn ok_json(response: Response) -> Value {
    let status = response.status();
    let text = response.text().await.unwrap();
    assert!(status.is_success(), "{status}: {text}");
    serde_json::from_str(&text).unwrap()
}

fn now() -> DateTime<Utc> {
    TEST_NOW.parse().unwrap()
}

/// Records, in `project`, one missed run and one failed job in the last day,
/// one older failed job, and one snapshot each whose deletion failed or is blocked.
async fn seed_trouble(pool: &PgPool, project: &str, policy_id: Uuid) {
    let hour_ago = now() - TimeDelta::hours(1);
    let two_days_ago = now() - TimeDelta::hours(48);
    sqlx::query(
        "insert into run (run_id, project_id, policy_id, trigger, scheduled_for, status, spec, resolved_at) \
         values ($1, $2, $3, 'schedule', $4, 'missed', '{}', $4)",
    )
    .bind(Uuid::now_v7())
    .bind(project)
    .bind(policy_id)
    .bind(hour_ago)
    .execute(pool)
    .await
    .unwrap();
    for finished in [hour_ago, two_days_ago] {
        let run_id = Uuid::now_v7();
        sqlx::query(
            "insert into run (run_id, project_id, policy_id, trigger, scheduled_for, status, spec, resolved_at, finished_at) \
             values ($1, $2, $3, 'manual', $4, 'failed', '{}', $4, $4)",
        )
        .bind(run_id)
        .bind(project)
        .bind(policy_id)
        .bind(finished)
        .execute(pool)
        .await
        .unwrap();
        sqlx::query(
            "insert into job (job_id, run_id, project_id, policy_id, resource_type, resource_id, status, \
             options, start_by, finished_at) \
             values ($1, $2, $3, $4, 'server', $5, 'failed', '{}', $6, $6)",
        )
        .bind(Uuid::now_v7())
        .bind(run_id)
        .bind(project)
        .bind(policy_id)
        .bind(Uuid::new_v4().to_string())
        .bind(finished)
        .execute(pool)
        .await
        .unwrap();
    }
    for state in ["delete_failed", "delete_blocked"] {
        sqlx::query(
            "insert into snapshot (snapshot_id, project_id, policy_id, job_id, resource_type, resource_id, \
             complete, state, taken_at) values ($1, $2, $3, $4, 'server', $5, true, $6, $7)",
        )
        .bind(Uuid::now_v7())
        .bind(project)
        .bind(policy_id)
        .bind(Uuid::now_v7())
        .bind(Uuid::new_v4().to_string())
        .bind(state)
        .bind(two_days_ago)
        .execute(pool)
        .await
        .unwrap();
    }
}

#[sqlx::test]
async fn status_counts_only_the_callers_project_and_every_project_for_an_admin_who_asks(
    pool: PgPool,
) {
    // Arrange: demo has one active policy naming a server never snapshotted
    // (stale); alt has an active and a disabled one (both stale, only the
    // enabled one counted), and trouble on record.
    let (app, sim) =
        spawn_app_with_keystone(pool.clone(), SimConfig::default(), Duration::from_secs(300)).await;
    let demo = sim_token(&sim, "demo").await;
    let alt = sim_token(&sim, "alt").await;
    let admin = sim_token(&sim, "admin").await;
    ok_json(
        call(
            &app,
            &demo,
            Method::POST,
            "/v1/policies",
            Some(&policy_body("nightly")),
        )
        .await,
    )
    .await;
    let alt_policy = ok_json(
        call(
            &app,
            &alt,
            Method::POST,
            "/v1/policies",
            Some(&policy_body("alt-nightly")),
        )
        .await,
    )
    .await;
    let mut disabled = policy_body("alt-off");
    disabled["enabled"] = false.into();
    ok_json(call(&app, &alt, Method::POST, "/v1/policies", Some(&disabled)).await).await;
    let alt_policy_id: Uuid = alt_policy["id"].as_str().unwrap().parse().unwrap();
    seed_trouble(&app.pool, &alt.project_id, alt_policy_id).await;

    // Act
    let demo_status = ok_json(call(&app, &demo, Method::GET, "/v1/status", None).await).await;
    let alt_status = ok_json(call(&app, &alt, Method::GET, "/v1/status", None).await).await;
    let everyone = ok_json(
        call(
            &app,
            &admin,
            Method::GET,
            "/v1/status?all_projects=true",
            None,
        )
        .await,
    )
    .await;
    let refused = call(
        &app,
        &demo,
        Method::GET,
        "/v1/status?all_projects=true",
        None,
    )
    .await;

    // Assert
    assert_eq!(
        demo_status,
        json!({"policies": {"active": 1, "disabled": 0, "broken": 0, "stale": 1},
               "jobs_failed_24h": 0, "restores_failed_24h": 0, "deletions_failed": 0, "deletions_blocked": 0, "runs_missed_24h": 0,
               "unverified_resources": 0})
    );
    assert_eq!(
        alt_status,
        json!({"policies": {"active": 1, "disabled": 1, "broken": 0, "stale": 1},
               "jobs_failed_24h": 1, "restores_failed_24h": 0, "deletions_failed": 1, "deletions_blocked": 1, "runs_missed_24h": 1,
               "unverified_resources": 0})
    );
    assert_eq!(everyone["policies"]["active"], 2);
    assert_eq!(
        everyone["policies"]["stale"], 2,
        "the disabled policy is not counted"
    );
    assert_eq!(everyone["jobs_failed_24h"], 1);
    assert_eq!(everyone["runs_missed_24h"], 1);
    assert_eq!(refused.status(), 403);
}

#[sqlx::test]
async fn targets_list_named_ids_and_another_projects_policy_is_not_found(pool: PgPool) {
    // Arrange
    let (app, sim) =
        spawn_app_with_keystone(pool, SimConfig::default(), Duration::from_secs(300)).await;
    let demo = sim_token(&sim, "demo").await;
    let alt = sim_token(&sim, "alt").await;
    let policy = ok_json(
        call(
            &app,
            &demo,
            Method::POST,
            "/v1/policies",
            Some(&policy_body("nightly")),
        )
        .await,
    )
    .await;
    let path = format!("/v1/policies/{}/targets", policy["id"].as_str().unwrap());

    // Act
    let own = ok_json(call(&app, &demo, Method::GET, &path, None).await).await;
    let foreign = call(&app, &alt, Method::GET, &path, None).await;
    let unknown = call(
        &app,
        &demo,
        Method::GET,
        &format!("/v1/policies/{}/targets", Uuid::now_v7()),
        None,
    )
    .await;

    // Assert: the named id is a target without a snapshot, so stale.
    assert_eq!(
        own,
        json!({"items": [{"resource_type": "server", "resource_id": "4f1d6a52-0b52-4a8e-9c43-1d0c8e3f2a10",
               "resource_name": null, "newest_snapshot_id": null, "newest_snapshot_at": null, "stale": true,
               "verified_at": null, "unverified": false}]})
    );
    assert_eq!(policy["stale_resources"], 1);
    problem(foreign, 404).await;
    problem(unknown, 404).await;
}

#[sqlx::test]
async fn an_invalid_rpo_is_refused_with_422_naming_options_rpo(pool: PgPool) {
    // Arrange
    let app = spawn_app(pool).await;
    let mut body = policy_body("nightly");
    body["options"] = json!({"rpo": "30s"});

    // Act
    let created = app.post_policy(&body).await;
    let valid = app.create_policy(&policy_body("valid")).await;
    let patched = app
        .patch_policy(
            valid["id"].as_str().unwrap(),
            &json!({"options": {"rpo": "1y"}}),
            None,
        )
        .await;
    let fixed = app
        .patch_policy(
            valid["id"].as_str().unwrap(),
            &json!({"options": {"rpo": "12h"}}),
            None,
        )
        .await;

    // Assert
    assert_eq!(error_fields(&problem(created, 422).await), ["options.rpo"]);
    assert_eq!(error_fields(&problem(patched, 422).await), ["options.rpo"]);
    assert_eq!(fixed.status(), 200);
    let fixed: Value = fixed.json().await.unwrap();
    assert_eq!(fixed["options"]["rpo"], "12h");
    // The derived fields may be sent back in a patch; they are ignored.
    let echoed = app
        .patch_policy(
            valid["id"].as_str().unwrap(),
            &json!({"stale_resources": 99, "last_run_at": null, "description": "x"}),
            None,
        )
        .await;
    assert_eq!(echoed.status(), 200);
}
