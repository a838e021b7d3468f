//! Tenants with `--auth keystone`: each role against each class of endpoint
//! (read, write, admin only), another project's resources answered 404 with
//! nothing changed, `all_projects` and `project_id` for admins only, cursors
//! bound to their scope, and who did what.

use std::time::Duration;

use reqwest::{Method, Response};
use serde_json::{Value, json};
use sqlx::PgPool;
use stacksnap_sim::{SimConfig, SimHandle};
use uuid::Uuid;

use crate::helpers::{
    SimToken, TestApp, error_fields, policy_body, problem, sim_token, spawn_app_with_keystone,
};

async fn start(pool: PgPool) -> (TestApp, SimHandle) {
    spawn_app_with_keystone(pool, SimConfig::default(), Duration::from_secs(300)).await
}

/// Sends `method path` as `who`, with `body` as JSON when there is one.
async fn call(
    app: &TestApp,
    who: &SimToken,
    method: Method,
    path: &str,
    body: Option<&Value>,
) -> Response {
    let mut request = app.with_token(method.clone(), path, &who.value);
    if method == Method::PATCH {
        request = request
            .header("content-type", "application/merge-patch+json")
            .body(body.unwrap_or(&json!({})).to_string());
    } else if let Some(body) = body {
        request = request.json(body);
    }
    request.send().await.unwrap()
}

async fn ok_json(response: Response, status: u16) -> Value {
    let got = response.status();
    let text = response.text().await.unwrap();
    assert_eq!(got, status, "{text}");
    serde_json::from_str(&text).unwrap()
}

/// What one project owns after its member worked: a policy, a manual run, a
/// one-off job and a (recorded) snapshot of it.
struct Owned {
    policy: Value,
    run: Value,
    job: Value,
    snapshot_id: Uuid,
}

async fn make_owned(app: &TestApp, who: &SimToken) -> Owned {
    let policy = ok_json(
        call(
            app,
            who,
            Method::POST,
            "/v1/policies",
            Some(&policy_body("nightly")),
        )
        .await,
        201,
    )
    .await;
    let id = policy["id"].as_str().unwrap();
    let run = ok_json(
        call(
            app,
            who,
            Method::POST,
            &format!("/v1/policies/{id}/run"),
            None,
        )
        .await,
        202,
    )
    .await;
    let one_off = json!({"resource_type": "volume", "resource_id": Uuid::new_v4()});
    let job = ok_json(
        call(app, who, Method::POST, "/v1/snapshots", Some(&one_off)).await,
        202,
    )
    .await;
    // A snapshot as a finished job leaves it (the engine does not run here).
    let job_id: Uuid = job["id"].as_str().unwrap().parse().unwrap();
    sqlx::query("update job set status = 'succeeded', finished_at = now() where job_id = $1")
        .bind(job_id)
        .execute(&app.pool)
        .await
        .unwrap();
    let mut conn = app.pool.acquire().await.unwrap();
    stacksnap::store::snapshots::record_from_job(&mut conn, job_id)
        .await
        .unwrap();
    let snapshot_id = sqlx::query_scalar("select snapshot_id from snapshot where job_id = $1")
        .bind(job_id)
        .fetch_one(&app.pool)
        .await
        .unwrap();
    Owned {
        policy,
        run,
        job,
        snapshot_id,
    }
}

#[sqlx::test]
async fn a_member_reads_and_writes_its_own_project_and_is_recorded_as_the_author(pool: PgPool) {
    // Arrange
    let (app, sim) = start(pool).await;
    let demo = sim_token(&sim, "demo").await;

    // Act
    let owned = make_owned(&app, &demo).await;
    let id = owned.policy["id"].as_str().unwrap();
    let patched = ok_json(
        call(
            &app,
            &demo,
            Method::PATCH,
            &format!("/v1/policies/{id}"),
            Some(&json!({"description": "changed"})),
        )
        .await,
        200,
    )
    .await;
    let one_off_run = ok_json(
        call(
            &app,
            &demo,
            Method::GET,
            &format!("/v1/runs/{}", owned.job["run_id"].as_str().unwrap()),
            None,
        )
        .await,
        200,
    )
    .await;

    // Assert: every resource shows its project; the user is recorded.
    assert_eq!(owned.policy["project_id"], demo.project_id.as_str());
    assert_eq!(owned.policy["created_by"], demo.user_id.as_str());
    assert_eq!(owned.policy["updated_by"], demo.user_id.as_str());
    assert_eq!(patched["updated_by"], demo.user_id.as_str());
    assert_eq!(patched["created_by"], demo.user_id.as_str());
    assert_eq!(owned.run["project_id"], demo.project_id.as_str());
    assert_eq!(owned.run["trigger"], "manual");
    assert_eq!(owned.run["created_by"], demo.user_id.as_str());
    assert_eq!(owned.job["project_id"], demo.project_id.as_str());
    assert_eq!(one_off_run["trigger"], "adhoc");
    assert_eq!(one_off_run["created_by"], demo.user_id.as_str());
    let snapshot = ok_json(
        call(
            &app,
            &demo,
            Method::GET,
            &format!("/v1/snapshots/{}", owned.snapshot_id),
            None,
        )
        .await,
        200,
    )
    .await;
    assert_eq!(snapshot["project_id"], demo.project_id.as_str());
    for list in ["/v1/policies", "/v1/runs", "/v1/jobs", "/v1/snapshots"] {
        let page = ok_json(call(&app, &demo, Method::GET, list, None).await, 200).await;
        let items = page["items"].as_array().unwrap();
        assert!(!items.is_empty(), "{list}");
        assert!(
            items
                .iter()
                .all(|i| i["project_id"] == demo.project_id.as_str()),
            "{list}"
        );
    }
}

#[sqlx::test]
async fn a_scheduled_run_has_no_author(pool: PgPool) {
    // Arrange
    let (app, sim) = start(pool).await;
    let demo = sim_token(&sim, "demo").await;
    let owned = make_owned(&app, &demo).await;
    let policy_id: Uuid = owned.policy["id"].as_str().unwrap().parse().unwrap();
    sqlx::query(
        "insert into run (run_id, project_id, policy_id, policy_name, trigger, scheduled_for, status, spec, not_before, created_at) \
         values ($1, $2, $3, 'nightly', 'schedule', now(), 'running', '{}', now(), now())",
    )
    .bind(Uuid::now_v7())
    .bind(&demo.project_id)
    .bind(policy_id)
    .execute(&app.pool)
    .await
    .unwrap();

    // Act
    let page = ok_json(
        call(&app, &demo, Method::GET, "/v1/runs?limit=1", None).await,
        200,
    )
    .await;

    // Assert
    assert_eq!(page["items"][0]["trigger"], "schedule");
    assert_eq!(page["items"][0]["created_by"], Value::Null);
}

#[sqlx::test]
async fn another_projects_resources_are_not_found_and_nothing_changes(pool: PgPool) {
    // Arrange
    let (app, sim) = start(pool).await;
    let demo = sim_token(&sim, "demo").await;
    let alt = sim_token(&sim, "alt").await;
    let owned = make_owned(&app, &demo).await;
    let policy = owned.policy["id"].as_str().unwrap();
    let run = owned.run["id"].as_str().unwrap();
    let job = owned.job["id"].as_str().unwrap();
    let snapshot = owned.snapshot_id;
    let patch = json!({"enabled": false});

    // Act: alt (a member of another project) reads, changes and deletes each of them.
    let attempts = [
        (Method::GET, format!("/v1/policies/{policy}"), None),
        (
            Method::PATCH,
            format!("/v1/policies/{policy}"),
            Some(&patch),
        ),
        (Method::GET, format!("/v1/policies/{policy}/schedule"), None),
        (
            Method::GET,
            format!("/v1/policies/{policy}/retention-preview"),
            None,
        ),
        (Method::POST, format!("/v1/policies/{policy}/run"), None),
        (Method::DELETE, format!("/v1/policies/{policy}"), None),
        (Method::GET, format!("/v1/runs/{run}"), None),
        (Method::GET, format!("/v1/jobs/{job}"), None),
        (Method::POST, format!("/v1/jobs/{job}/cancel"), None),
        (Method::GET, format!("/v1/snapshots/{snapshot}"), None),
        (Method::DELETE, format!("/v1/snapshots/{snapshot}"), None),
    ];
    for (method, path, body) in attempts {
        let response = call(&app, &alt, method.clone(), &path, body).await;
        let body = problem(response, 404).await;
        assert_eq!(
            body["type"], "urn:stacksnap:problem:not-found",
            "{method} {path}"
        );
    }
    let lists: Vec<Value> = {
        let mut pages = Vec::new();
        for list in ["/v1/policies", "/v1/runs", "/v1/jobs", "/v1/snapshots"] {
            pages.push(ok_json(call(&app, &alt, Method::GET, list, None).await, 200).await);
        }
        pages
    };

    // Assert: alt saw nothing, and demo finds everything as it was.
    for page in lists {
        assert_eq!(page["items"], json!([]));
    }
    let read = |path: String| {
        let (app, demo) = (&app, &demo);
        async move { ok_json(call(app, demo, Method::GET, &path, None).await, 200).await }
    };
    let policy_now = read(format!("/v1/policies/{policy}")).await;
    assert_eq!(policy_now["version"], owned.policy["version"]);
    assert_eq!(policy_now["enabled"], true);
    let runs = read(format!("/v1/runs?policy_id={policy}")).await;
    assert_eq!(
        runs["items"].as_array().unwrap().len(),
        1,
        "no run was added"
    );
    assert_eq!(read(format!("/v1/jobs/{job}")).await["status"], "succeeded");
    assert_eq!(
        read(format!("/v1/snapshots/{snapshot}")).await["state"],
        "available"
    );
}

#[sqlx::test]
async fn a_member_may_not_use_the_orphan_finder_but_an_admin_may(pool: PgPool) {
    // Arrange
    let (app, sim) = start(pool).await;
    let demo = sim_token(&sim, "demo").await;
    let admin = sim_token(&sim, "admin").await;

    // Act and assert
    for (method, path) in [
        (Method::GET, "/v1/orphans"),
        (Method::POST, "/v1/orphans/cleanup"),
    ] {
        let refused = call(&app, &demo, method.clone(), path, None).await;
        let body = problem(refused, 403).await;
        assert!(body["detail"].as_str().unwrap().contains("admin"));
        let allowed = call(&app, &admin, method, path, None).await;
        assert_eq!(allowed.status(), 200, "{path}");
    }
}

#[sqlx::test]
async fn all_projects_is_for_admins_only(pool: PgPool) {
    // Arrange
    let (app, sim) = start(pool).await;
    let demo = sim_token(&sim, "demo").await;
    let alt = sim_token(&sim, "alt").await;
    let admin = sim_token(&sim, "admin").await;
    make_owned(&app, &demo).await;
    make_owned(&app, &alt).await;

    for list in ["/v1/policies", "/v1/runs", "/v1/jobs", "/v1/snapshots"] {
        // Act
        let member_all = call(
            &app,
            &demo,
            Method::GET,
            &format!("{list}?all_projects=true"),
            None,
        )
        .await;
        let member_own = call(
            &app,
            &demo,
            Method::GET,
            &format!("{list}?all_projects=false"),
            None,
        )
        .await;
        let admin_own = ok_json(call(&app, &admin, Method::GET, list, None).await, 200).await;
        let admin_all = ok_json(
            call(
                &app,
                &admin,
                Method::GET,
                &format!("{list}?all_projects=true"),
                None,
            )
            .await,
            200,
        )
        .await;

        // Assert
        let body = problem(member_all, 403).await;
        assert!(
            body["detail"].as_str().unwrap().contains("all_projects"),
            "{list}"
        );
        assert_eq!(member_own.status(), 200, "{list}");
        assert_eq!(
            admin_own["items"],
            json!([]),
            "{list}: the admin's own project is empty"
        );
        let projects: Vec<&str> = admin_all["items"]
            .as_array()
            .unwrap()
            .iter()
            .map(|i| i["project_id"].as_str().unwrap())
            .collect();
        assert!(projects.contains(&demo.project_id.as_str()), "{list}");
        assert!(projects.contains(&alt.project_id.as_str()), "{list}");
    }
}

#[sqlx::test]
async fn an_admin_reads_changes_and_deletes_in_any_project_and_creates_where_it_names(
    pool: PgPool,
) {
    // Arrange
    let (app, sim) = start(pool).await;
    let demo = sim_token(&sim, "demo").await;
    let admin = sim_token(&sim, "admin").await;
    let owned = make_owned(&app, &demo).await;
    let policy = owned.policy["id"].as_str().unwrap();

    // Act
    let read = call(
        &app,
        &admin,
        Method::GET,
        &format!("/v1/policies/{policy}"),
        None,
    )
    .await;
    let patched = ok_json(
        call(
            &app,
            &admin,
            Method::PATCH,
            &format!("/v1/policies/{policy}"),
            Some(&json!({"description": "by the operator"})),
        )
        .await,
        200,
    )
    .await;
    let mut body = policy_body("made-for-demo");
    body["project_id"] = json!(demo.project_id);
    // The policy acts with a trust from the admin, which Keystone makes only
    // where the admin holds a role: refused with Keystone's reason until then.
    let refused = call(&app, &admin, Method::POST, "/v1/policies", Some(&body)).await;
    let refusal = ok_json(refused, 403).await;
    assert!(
        refusal["detail"]
            .as_str()
            .unwrap()
            .contains("Keystone refused"),
        "{refusal}"
    );
    sim.grant_role("admin", "demo", stacksnap_sim::Role::Member)
        .unwrap();
    let created = ok_json(
        call(&app, &admin, Method::POST, "/v1/policies", Some(&body)).await,
        201,
    )
    .await;
    let one_off = json!({"resource_type": "volume", "resource_id": Uuid::new_v4(),
        "project_id": demo.project_id});
    let job = ok_json(
        call(&app, &admin, Method::POST, "/v1/snapshots", Some(&one_off)).await,
        202,
    )
    .await;
    let deleted = call(
        &app,
        &admin,
        Method::DELETE,
        &format!("/v1/policies/{policy}"),
        None,
    )
    .await;

    // Assert
    assert_eq!(read.status(), 200);
    assert_eq!(patched["updated_by"], admin.user_id.as_str());
    assert_eq!(patched["created_by"], demo.user_id.as_str());
    assert_eq!(created["project_id"], demo.project_id.as_str());
    assert_eq!(created["created_by"], admin.user_id.as_str());
    assert_eq!(job["project_id"], demo.project_id.as_str());
    assert_eq!(deleted.status(), 204);
    let seen_by_demo = ok_json(
        call(&app, &demo, Method::GET, "/v1/policies", None).await,
        200,
    )
    .await;
    let names: Vec<&str> = seen_by_demo["items"]
        .as_array()
        .unwrap()
        .iter()
        .map(|p| p["name"].as_str().unwrap())
        .collect();
    assert_eq!(names, ["made-for-demo"]);
}

#[sqlx::test]
async fn a_member_may_not_create_in_another_project(pool: PgPool) {
    // Arrange
    let (app, sim) = start(pool).await;
    let demo = sim_token(&sim, "demo").await;
    let alt = sim_token(&sim, "alt").await;
    let mut elsewhere = policy_body("elsewhere");
    elsewhere["project_id"] = json!(alt.project_id);
    let mut own = policy_body("own");
    own["project_id"] = json!(demo.project_id);
    let one_off = json!({"resource_type": "volume", "resource_id": Uuid::new_v4(),
        "project_id": alt.project_id});

    // Act
    let policy = call(&app, &demo, Method::POST, "/v1/policies", Some(&elsewhere)).await;
    let snapshot = call(&app, &demo, Method::POST, "/v1/snapshots", Some(&one_off)).await;
    let named_own = call(&app, &demo, Method::POST, "/v1/policies", Some(&own)).await;
    let mut blank = policy_body("blank");
    blank["project_id"] = json!("");
    let invalid = call(&app, &demo, Method::POST, "/v1/policies", Some(&blank)).await;

    // Assert
    problem(policy, 403).await;
    problem(snapshot, 403).await;
    assert_eq!(named_own.status(), 201, "its own project may be named");
    assert_eq!(error_fields(&problem(invalid, 422).await), ["project_id"]);
    let count: i64 = sqlx::query_scalar("select count(*) from policy where project_id = $1")
        .bind(&alt.project_id)
        .fetch_one(&app.pool)
        .await
        .unwrap();
    assert_eq!(count, 0);
}

#[sqlx::test]
async fn a_cursor_is_refused_under_another_scope(pool: PgPool) {
    // Arrange
    let (app, sim) = start(pool).await;
    let demo = sim_token(&sim, "demo").await;
    let alt = sim_token(&sim, "alt").await;
    let admin = sim_token(&sim, "admin").await;
    for name in ["a", "b"] {
        let response = call(
            &app,
            &demo,
            Method::POST,
            "/v1/policies",
            Some(&policy_body(name)),
        )
        .await;
        assert_eq!(response.status(), 201);
    }
    let page = ok_json(
        call(&app, &demo, Method::GET, "/v1/policies?limit=1", None).await,
        200,
    )
    .await;
    let cursor = page["next_cursor"].as_str().unwrap().to_owned();
    let admin_page = ok_json(
        call(
            &app,
            &admin,
            Method::GET,
            "/v1/policies?limit=1&all_projects=true",
            None,
        )
        .await,
        200,
    )
    .await;
    let admin_cursor = admin_page["next_cursor"].as_str().unwrap().to_owned();

    // Act
    let same = call(
        &app,
        &demo,
        Method::GET,
        &format!("/v1/policies?cursor={cursor}"),
        None,
    )
    .await;
    let other_project = call(
        &app,
        &alt,
        Method::GET,
        &format!("/v1/policies?cursor={cursor}"),
        None,
    )
    .await;
    let admin_own_scope = call(
        &app,
        &admin,
        Method::GET,
        &format!("/v1/policies?cursor={admin_cursor}"),
        None,
    )
    .await;

    // Assert
    let rest = ok_json(same, 200).await;
    assert_eq!(rest["items"].as_array().unwrap().len(), 1);
    for refused in [other_project, admin_own_scope] {
        let body = problem(refused, 422).await;
        assert_eq!(error_fields(&body), ["cursor"]);
    }
}

#[sqlx::test]
async fn a_reader_reads_but_may_not_write(pool: PgPool) {
    // Arrange
    let (app, sim) = start(pool).await;
    let demo = sim_token(&sim, "demo").await;
    let reader = sim_token(&sim, "demo_reader").await;
    let owned = make_owned(&app, &demo).await;
    let policy = owned.policy["id"].as_str().unwrap();

    // Act and assert: reads are answered...
    for path in [
        format!("/v1/policies/{policy}"),
        "/v1/policies".to_owned(),
        "/v1/runs".to_owned(),
        "/v1/jobs".to_owned(),
        "/v1/snapshots".to_owned(),
    ] {
        assert_eq!(
            call(&app, &reader, Method::GET, &path, None).await.status(),
            200,
            "{path}"
        );
    }
    // ... every write is 403, and nothing changes.
    for (method, path) in [
        (Method::POST, "/v1/policies".to_owned()),
        (Method::PATCH, format!("/v1/policies/{policy}")),
        (Method::DELETE, format!("/v1/policies/{policy}")),
        (Method::POST, format!("/v1/policies/{policy}/run")),
        (Method::POST, "/v1/snapshots".to_owned()),
        (
            Method::DELETE,
            format!("/v1/snapshots/{}", owned.snapshot_id),
        ),
        (Method::GET, "/v1/orphans".to_owned()),
    ] {
        let body = Some(policy_body("by-reader"));
        problem(call(&app, &reader, method, &path, body.as_ref()).await, 403).await;
    }
    let now = ok_json(
        call(
            &app,
            &demo,
            Method::GET,
            &format!("/v1/policies/{policy}"),
            None,
        )
        .await,
        200,
    )
    .await;
    assert_eq!(now["version"], owned.policy["version"]);
}

#[sqlx::test]
async fn cancelling_another_projects_job_is_not_found_without_waiting_for_its_locks(pool: PgPool) {
    // Arrange: demo's pending job, whose run another transaction holds locked.
    let (app, sim) = start(pool).await;
    let demo = sim_token(&sim, "demo").await;
    let alt = sim_token(&sim, "alt").await;
    let one_off = json!({"resource_type": "volume", "resource_id": Uuid::new_v4()});
    let job = ok_json(
        call(&app, &demo, Method::POST, "/v1/snapshots", Some(&one_off)).await,
        202,
    )
    .await;
    let job_id: Uuid = job["id"].as_str().unwrap().parse().unwrap();
    let mut holder = app.pool.begin().await.unwrap();
    sqlx::query(
        "select 1 from run where run_id = (select run_id from job where job_id = $1) for update",
    )
    .bind(job_id)
    .execute(&mut *holder)
    .await
    .unwrap();

    // Act: alt cancels it while the lock is held.
    let cancel = tokio::time::timeout(
        Duration::from_secs(2),
        call(
            &app,
            &alt,
            Method::POST,
            &format!("/v1/jobs/{job_id}/cancel"),
            None,
        ),
    )
    .await;

    // Assert: answered at once with 404, never queued behind demo's lock, and nothing changed.
    let response = cancel.expect("the cancel of another project's job waited for that job's locks");
    let body = problem(response, 404).await;
    assert_eq!(body["type"], "urn:stacksnap:problem:not-found");
    holder.rollback().await.unwrap();
    let now = ok_json(
        call(
            &app,
            &demo,
            Method::GET,
            &format!("/v1/jobs/{job_id}"),
            None,
        )
        .await,
        200,
    )
    .await;
    assert_eq!(now["status"], job["status"]);
    assert_eq!(now["status"], "pending");
}

#[sqlx::test]
async fn a_policy_made_with_an_application_credentials_token_is_403_saying_so(pool: PgPool) {
    // Arrange: a token from an application credential (the simulator's admin has one).
    let (app, sim) = start(pool).await;
    let appcred = sim_token(&sim, "appcred").await;
    sim.clear_requests();

    // Act
    let policy = call(
        &app,
        &appcred,
        Method::POST,
        "/v1/policies",
        Some(&policy_body("from-ci")),
    )
    .await;
    let one_off = json!({"resource_type": "volume", "resource_id": Uuid::new_v4()});
    let snapshot = call(
        &app,
        &appcred,
        Method::POST,
        "/v1/snapshots",
        Some(&one_off),
    )
    .await;

    // Assert: refused with a reason that says what to do, before Keystone is asked;
    // a one-off snapshot is not affected.
    let body = problem(policy, 403).await;
    let detail = body["detail"].as_str().unwrap();
    assert!(
        detail.contains("application credential") && detail.contains("password"),
        "{detail}"
    );
    assert_eq!(sim.count("keystone.create_trust"), 0);
    let policies: i64 = sqlx::query_scalar("select count(*) from policy")
        .fetch_one(&app.pool)
        .await
        .unwrap();
    assert_eq!(policies, 0, "no policy was made");
    assert_eq!(
        snapshot.status(),
        202,
        "one-off snapshots work with any token"
    );
}
