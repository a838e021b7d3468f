//! Every error class, with its status and problem body.

use reqwest::header;
use serde_json::json;
use sqlx::PgPool;

use crate::helpers::{error_fields, policy_body, problem, spawn_app};

#[sqlx::test]
async fn validation_errors_name_every_field_at_fault(pool: PgPool) {
    let app = spawn_app(pool).await;
    let body = json!({
        "name": "",
        "resource_type": "server",
        "targets": {},
        "schedules": [{"cron": "0 2 * *", "timezone": "Europe/Berlin"}, {"cron": "0 3 * * *", "timezone": "Moon/Base"}],
        "retention": {"keep_within": "ten days"},
        "options": {"timeout": "0s", "name_template": "{nope}"}
    });
    let problem = problem(app.post_policy(&body).await, 422).await;
    assert_eq!(
        error_fields(&problem),
        [
            "name",
            "targets",
            "schedules[0].cron",
            "schedules[1].timezone",
            "retention.keep_within",
            "options.name_template",
            "options.timeout",
        ]
    );
    let cron_message = problem["errors"][2]["message"].as_str().unwrap();
    assert!(cron_message.contains("expected 5 fields"), "{cron_message}");
    let stored: i64 = sqlx::query_scalar("select count(*) from policy")
        .fetch_one(&app.pool)
        .await
        .unwrap();
    assert_eq!(stored, 0, "nothing stored");
}

#[sqlx::test]
async fn type_errors_and_unknown_fields_are_named_by_path(pool: PgPool) {
    let app = spawn_app(pool).await;

    let mut unknown = policy_body("x");
    unknown["colour"] = "blue".into();
    let body = problem(app.post_policy(&unknown).await, 422).await;
    assert_eq!(error_fields(&body), ["colour"]);
    assert!(
        body["errors"][0]["message"]
            .as_str()
            .unwrap()
            .starts_with("unknown field")
    );

    let mut nested = policy_body("x");
    nested["options"] = json!({"retries": 3});
    assert_eq!(
        error_fields(&problem(app.post_policy(&nested).await, 422).await),
        ["options.retries"]
    );

    let mut wrong_type = policy_body("x");
    wrong_type["retention"]["keep_last"] = "three".into();
    assert_eq!(
        error_fields(&problem(app.post_policy(&wrong_type).await, 422).await),
        ["retention.keep_last"]
    );

    let mut bad_uuid = policy_body("x");
    bad_uuid["targets"]["ids"] = json!(["not-a-uuid"]);
    assert_eq!(
        error_fields(&problem(app.post_policy(&bad_uuid).await, 422).await),
        ["targets.ids[0]"]
    );

    let mut bad_enum = policy_body("x");
    bad_enum["resource_type"] = "network".into();
    assert_eq!(
        error_fields(&problem(app.post_policy(&bad_enum).await, 422).await),
        ["resource_type"]
    );

    let mut missing = policy_body("x");
    missing.as_object_mut().unwrap().remove("schedules");
    let body = problem(app.post_policy(&missing).await, 422).await;
    assert_eq!(
        body["errors"],
        json!([{"field": "schedules", "message": "is required"}])
    );

    let mut read_only = policy_body("x");
    read_only["version"] = 9.into();
    read_only["next_run_at"] = "2027-01-01T00:00:00Z".into();
    assert_eq!(
        error_fields(&problem(app.post_policy(&read_only).await, 422).await),
        ["next_run_at", "version"]
    );

    let not_an_object = problem(app.post_policy(&json!([1, 2])).await, 422).await;
    assert_eq!(error_fields(&not_an_object), ["body"]);
}

#[sqlx::test]
async fn malformed_json_is_a_400(pool: PgPool) {
    let app = spawn_app(pool).await;
    let response = app
        .client
        .post(app.url("/v1/policies"))
        .header(header::CONTENT_TYPE, "application/json")
        .body(r#"{"name": "x", "#)
        .send()
        .await
        .unwrap();
    let body = problem(response, 400).await;
    assert!(body["detail"].as_str().unwrap().contains("not valid JSON"));
}

#[sqlx::test]
async fn a_body_that_is_not_json_is_a_415(pool: PgPool) {
    let app = spawn_app(pool).await;
    let response = app
        .client
        .post(app.url("/v1/policies"))
        .header(header::CONTENT_TYPE, "text/plain")
        .body(policy_body("x").to_string())
        .send()
        .await
        .unwrap();
    problem(response, 415).await;

    let no_type = app
        .client
        .post(app.url("/v1/policies"))
        .body("{}")
        .send()
        .await
        .unwrap();
    problem(no_type, 415).await;

    // PATCH wants a merge patch; a JSON Patch (RFC 6902) is a different thing.
    let id = app.create_policy(&policy_body("p")).await["id"]
        .as_str()
        .unwrap()
        .to_owned();
    let json_patch = app
        .client
        .patch(app.url(&format!("/v1/policies/{id}")))
        .header(header::CONTENT_TYPE, "application/json-patch+json")
        .body(r#"[{"op": "replace", "path": "/enabled", "value": false}]"#)
        .send()
        .await
        .unwrap();
    problem(json_patch, 415).await;
}

#[sqlx::test]
async fn a_body_over_one_mebibyte_is_a_413(pool: PgPool) {
    let app = spawn_app(pool).await;
    let mut body = policy_body("big");
    body["description"] = "x".repeat(1024 * 1024 + 1).into();
    let body = problem(app.post_policy(&body).await, 413).await;
    assert!(body["detail"].as_str().unwrap().contains("1048576"));
}

#[sqlx::test]
async fn unknown_and_malformed_ids_are_a_404(pool: PgPool) {
    let app = spawn_app(pool).await;
    problem(
        app.get("/v1/policies/019ab8f0-6c1e-7d2a-9f3b-2a4c5d6e7f80")
            .await,
        404,
    )
    .await;
    problem(app.get("/v1/policies/not-a-uuid").await, 404).await;
    problem(app.get("/v1/policies/not-a-uuid/schedule").await, 404).await;
    problem(app.patch_policy("not-a-uuid", &json!({}), None).await, 404).await;
    problem(app.delete_policy("not-a-uuid", None).await, 404).await;
    problem(app.get("/v1/no-such-thing").await, 404).await;
}

#[sqlx::test]
async fn a_duplicate_name_is_a_409(pool: PgPool) {
    let app = spawn_app(pool).await;
    app.create_policy(&policy_body("taken")).await;
    let body = problem(app.post_policy(&policy_body("taken")).await, 409).await;
    assert!(body["detail"].as_str().unwrap().contains("\"taken\""));

    let other = app.create_policy(&policy_body("other")).await;
    let rename = app
        .patch_policy(
            other["id"].as_str().unwrap(),
            &json!({"name": "taken"}),
            None,
        )
        .await;
    problem(rename, 409).await;
}

#[sqlx::test]
async fn bad_query_parameters_are_a_422_naming_the_parameter(pool: PgPool) {
    let app = spawn_app(pool).await;
    for (query, field) in [
        ("limit=0", "limit"),
        ("limit=1001", "limit"),
        ("limit=ten", "limit"),
        ("enabled=maybe", "enabled"),
        ("resource_type=network", "resource_type"),
        ("cursor=garbage", "cursor"),
        ("sort=name", "sort"),
    ] {
        let body = problem(app.get(&format!("/v1/policies?{query}")).await, 422).await;
        assert_eq!(error_fields(&body), [field], "{query}");
    }
}

#[sqlx::test]
async fn a_wrong_method_is_a_405_problem(pool: PgPool) {
    let app = spawn_app(pool).await;
    let response = app
        .client
        .put(app.url("/v1/policies"))
        .send()
        .await
        .unwrap();
    assert!(response.headers().contains_key(header::ALLOW));
    problem(response, 405).await;
}

/// A database error's Debug form carries PostgreSQL's DETAIL, which for a
/// refused row is "Failing row contains (...)": every column, a run's token and
/// trust id included. The 500's log line keeps the error and its code, not the row.
#[sqlx::test]
async fn a_database_error_is_logged_without_the_failing_row(pool: PgPool) {
    use axum::response::IntoResponse as _;
    sqlx::query("create table held (secret text, n int not null)")
        .execute(&pool)
        .await
        .unwrap();
    let refused = sqlx::query("insert into held values ('gAAAAAB-token-in-a-row', null)")
        .execute(&pool)
        .await
        .expect_err("the not-null constraint refuses the row");
    assert!(format!("{refused:?}").contains("gAAAAAB-token-in-a-row"));

    let captured = crate::helpers::Captured::default();
    let response = {
        let _logs = crate::helpers::capture_logs(&captured);
        stacksnap::http::error::ApiError::from(refused).into_response()
    };
    assert_eq!(response.status(), 500);
    let logged = captured.text();
    assert!(logged.contains("request failed"), "{logged}");
    assert!(logged.contains("23502"), "the SQLSTATE is logged: {logged}");
    assert!(!logged.contains("gAAAAAB-token-in-a-row"), "{logged}");
}
