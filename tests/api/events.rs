//! `GET /v1/events`: filters, cursors that survive late commits, and each
//! project seeing only its own events.

use std::time::Duration;

use reqwest::Method;
use serde_json::Value;
use sqlx::PgPool;
use stacksnap_sim::SimConfig;
use uuid::Uuid;

use crate::helpers::{
    SimToken, TestApp, error_fields, policy_body, problem, settled_events, sim_token, spawn_app,
    spawn_app_with_keystone,
};

/// A page of events once every committed one is readable.
async fn events(app: &TestApp, query: &str) -> Value {
    settled_events(&app.pool).await;
    events_now(app, query).await
}

/// A page of events as they are readable now.
async fn events_now(app: &TestApp, query: &str) -> Value {
    let response = app.get(&format!("/v1/events{query}")).await;
    let status = response.status();
    let text = response.text().await.unwrap();
    assert_eq!(status, 200, "{text}");
    serde_json::from_str(&text).unwrap()
}

fn kinds(page: &Value) -> Vec<String> {
    page["items"]
        .as_array()
        .unwrap()
        .iter()
        .map(|e| e["kind"].as_str().unwrap().to_owned())
        .collect()
}

fn names(page: &Value) -> Vec<String> {
    page["items"]
        .as_array()
        .unwrap()
        .iter()
        .map(|e| e["data"]["name"].as_str().unwrap_or_default().to_owned())
        .collect()
}

#[sqlx::test]
async fn kinds_filter_by_name_or_prefix_and_since_bounds_the_time(pool: PgPool) {
    // Arrange: a policy created, changed, run by hand and deleted.
    let app = spawn_app(pool).await;
    let policy = app.create_policy(&policy_body("nightly")).await;
    let id = policy["id"].as_str().unwrap();
    let patched = app
        .patch_policy(id, &serde_json::json!({"description": "x"}), None)
        .await;
    assert_eq!(patched.status(), 200);
    let run = app
        .post_json(&format!("/v1/policies/{id}/run"), &Value::Null)
        .await;
    assert_eq!(run.status(), 202);
    let run: Value = run.json().await.unwrap();

    // Act
    let all = events(&app, "").await;
    let policies = events(&app, "?kind=policy.").await;
    let updated = events(&app, "?kind=policy.updated").await;
    let runs = events(&app, &format!("?kind=run.&policy_id={id}")).await;
    let jobs = events(&app, "?kind=job.").await;
    let future = events(&app, "?since=2999-01-01T00:00:00Z").await;
    let past = events(&app, "?since=2000-01-01T00:00:00%2B02:00").await;

    // Assert
    assert_eq!(
        kinds(&all),
        ["policy.created", "policy.updated", "run.fired"]
    );
    assert_eq!(kinds(&policies), ["policy.created", "policy.updated"]);
    assert_eq!(kinds(&updated), ["policy.updated"]);
    assert_eq!(kinds(&runs), ["run.fired"]);
    assert_eq!(runs["items"][0]["run_id"], run["id"]);
    assert_eq!(runs["items"][0]["policy_id"], id);
    assert_eq!(
        runs["items"][0]["actor"], "api",
        "--auth none knows no user"
    );
    assert!(kinds(&jobs).is_empty());
    assert!(kinds(&future).is_empty());
    assert_eq!(kinds(&past), kinds(&all));
    let event = &all["items"][0];
    for field in [
        "id",
        "kind",
        "at",
        "project_id",
        "policy_id",
        "run_id",
        "job_id",
        "snapshot_id",
        "actor",
        "data",
    ] {
        assert!(event.get(field).is_some(), "{field} in {event}");
    }
    assert_eq!(event["project_id"], "default");
    assert_eq!(event["data"]["name"], "nightly");
}

#[sqlx::test]
async fn a_bad_kind_since_or_cursor_is_422_naming_it(pool: PgPool) {
    let app = spawn_app(pool).await;
    for (query, field) in [
        ("?kind=job", "kind"),
        ("?kind=job.start", "kind"),
        ("?kind=jobs.", "kind"),
        ("?since=yesterday", "since"),
        ("?cursor=Y3AC000", "cursor"),
        ("?limit=0", "limit"),
    ] {
        let body = problem(app.get(&format!("/v1/events{query}")).await, 422).await;
        assert_eq!(error_fields(&body), [field], "{query}: {body}");
    }
}

#[sqlx::test]
async fn a_cursor_kept_across_a_late_commit_misses_nothing(pool: PgPool) {
    // Arrange: one event read one page at a time.
    let app = spawn_app(pool).await;
    app.create_policy(&policy_body("first")).await;
    let first = events(&app, "?limit=1").await;
    assert_eq!(names(&first), ["first"]);
    let cursor = first["next_cursor"]
        .as_str()
        .expect("the feed's last page names where to go on")
        .to_owned();

    // Act: `early` writes first and commits last; the reader pages between.
    let mut early = app.pool.begin().await.unwrap();
    insert_policy(&mut early, "early").await;
    app.create_policy(&policy_body("late")).await;
    let between = events_now(&app, &format!("?limit=1&cursor={cursor}")).await;
    early.commit().await.unwrap();
    let resumed = between["next_cursor"].as_str().unwrap();
    let page_one = events(&app, &format!("?limit=1&cursor={resumed}")).await;
    let next = page_one["next_cursor"].as_str().unwrap();
    let page_two = events(&app, &format!("?limit=1&cursor={next}")).await;
    let from_the_start = events(&app, &format!("?cursor={cursor}")).await;

    // Assert: `late` at once; `early`, committed after the reader paged past
    // `late`, on the next page; both, in commit order, from the old cursor.
    assert_eq!(names(&between), ["late"], "{between}");
    assert_ne!(resumed, cursor);
    assert_eq!(names(&page_one), ["early"]);
    assert!(names(&page_two).is_empty());
    assert_eq!(page_two["next_cursor"].as_str(), Some(next));
    assert_eq!(names(&from_the_start), ["late", "early"]);
}

#[sqlx::test]
async fn a_filtered_poll_moves_its_cursor_past_what_it_did_not_match(pool: PgPool) {
    // Arrange: an event a reader of `policy.deleted` does not want.
    let app = spawn_app(pool).await;
    app.create_policy(&policy_body("first")).await;
    let none_deleted = events(&app, "?kind=policy.deleted").await;
    let cursor = none_deleted["next_cursor"]
        .as_str()
        .expect("an empty filtered page still names where to poll from")
        .to_owned();
    app.create_policy(&policy_body("second")).await;

    // Act
    let created_since = events(&app, &format!("?kind=policy.created&cursor={cursor}")).await;

    // Assert: the next poll starts after `first`, so it does not scan it again.
    assert!(kinds(&none_deleted).is_empty());
    assert_eq!(names(&created_since), ["second"]);
}

#[sqlx::test]
async fn each_project_lists_only_its_own_events(pool: PgPool) {
    // Arrange: demo and alt each make a policy.
    let (app, sim) =
        spawn_app_with_keystone(pool, SimConfig::default(), Duration::from_secs(300)).await;
    let demo = sim_token(&sim, "demo").await;
    let alt = sim_token(&sim, "alt").await;
    let admin = sim_token(&sim, "admin").await;
    let demo_policy = create(&app, &demo, "demo-nightly").await;
    let alt_policy = create(&app, &alt, "alt-nightly").await;

    // Act
    let demo_sees = list(&app, &demo, "").await;
    let alt_sees = list(&app, &alt, "").await;
    let demo_asks_for_alt = list(&app, &demo, &format!("?policy_id={alt_policy}")).await;
    let admin_sees_all = list(&app, &admin, "?all_projects=true").await;
    let member_asks_all = app
        .with_token(Method::GET, "/v1/events?all_projects=true", &demo.value)
        .send()
        .await
        .unwrap();
    let demo_page = list(&app, &demo, "?limit=1").await;
    let cursor = demo_page["next_cursor"].as_str().unwrap();
    let alt_with_demo_cursor = app
        .with_token(
            Method::GET,
            &format!("/v1/events?cursor={cursor}"),
            &alt.value,
        )
        .send()
        .await
        .unwrap();

    // Assert
    assert_eq!(policy_ids(&demo_sees), [demo_policy]);
    assert_eq!(policy_ids(&alt_sees), [alt_policy]);
    assert_eq!(
        demo_sees["items"][0]["project_id"],
        demo.project_id.as_str()
    );
    assert_eq!(demo_sees["items"][0]["actor"], demo.user_id.as_str());
    assert!(policy_ids(&demo_asks_for_alt).is_empty());
    let mut every = policy_ids(&admin_sees_all);
    every.sort();
    let mut expected = vec![demo_policy, alt_policy];
    expected.sort();
    assert_eq!(every, expected);
    problem(member_asks_all, 403).await;
    let body = problem(alt_with_demo_cursor, 422).await;
    assert_eq!(error_fields(&body), ["cursor"]);
}

async fn create(app: &TestApp, who: &SimToken, name: &str) -> Uuid {
    let response = app
        .with_token(Method::POST, "/v1/policies", &who.value)
        .json(&policy_body(name))
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 201);
    let body: Value = response.json().await.unwrap();
    body["id"].as_str().unwrap().parse().unwrap()
}

async fn list(app: &TestApp, who: &SimToken, query: &str) -> Value {
    settled_events(&app.pool).await;
    let response = app
        .with_token(Method::GET, &format!("/v1/events{query}"), &who.value)
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 200);
    response.json().await.unwrap()
}

fn policy_ids(page: &Value) -> Vec<Uuid> {
    page["items"]
        .as_array()
        .unwrap()
        .iter()
        .map(|e| e["policy_id"].as_str().unwrap().parse().unwrap())
        .collect()
}

async fn insert_policy(conn: &mut sqlx::PgConnection, name: &str) {
    sqlx::query(
        "insert into policy (policy_id, project_id, name, resource_type, targets, schedules, retention, options) \
         values ($1, 'default', $2, 'server', '{}', '[]', '{}', '{}')",
    )
    .bind(Uuid::now_v7())
    .bind(name)
    .execute(conn)
    .await
    .unwrap();
}

#[test]
fn the_documented_kind_pattern_is_the_set_of_kinds_and_prefixes() {
    let doc: Value = serde_json::from_str(include_str!("../../openapi/openapi.json")).unwrap();
    let parameters = doc["paths"]["/v1/events"]["get"]["parameters"]
        .as_array()
        .unwrap();
    let kind = parameters.iter().find(|p| p["name"] == "kind").unwrap();
    assert_eq!(
        kind["schema"]["pattern"],
        stacksnap::domain::event::kind_filter_pattern()
    );
}
