//! Answers the contract fuzzer found at odds with the document, now kept to it:
//! malformed `If-Match`, U+0000 in strings, integers written `3.0`, and fire
//! times far from now.

use reqwest::header;
use serde_json::json;
use sqlx::PgPool;

use crate::helpers::{error_fields, policy_body, problem, spawn_app};

#[sqlx::test]
async fn a_malformed_if_match_is_a_400_and_a_stale_one_a_412(pool: PgPool) {
    // Arrange
    let app = spawn_app(pool).await;
    let id = app.create_policy(&policy_body("tagged")).await["id"]
        .as_str()
        .unwrap()
        .to_owned();

    // Act and assert: not an entity tag, whatever the version.
    for malformed in ["1", "null", "\"1", "W/1", "\"1\","] {
        let body = problem(
            app.patch_policy(&id, &json!({"enabled": false}), Some(malformed))
                .await,
            400,
        )
        .await;
        assert!(
            body["detail"].as_str().unwrap().contains("If-Match"),
            "{malformed}: {body}"
        );
        problem(app.delete_policy(&id, Some(malformed)).await, 400).await;
    }
    // A well-formed tag of another version.
    let stale = app.delete_policy(&id, Some("W/\"7\", \"8\"")).await;
    assert_eq!(stale.headers()[header::ETAG], "\"1\"");
    problem(stale, 412).await;
    assert_eq!(
        app.delete_policy(&id, Some("\"9\", W/\"1\""))
            .await
            .status(),
        204
    );
}

#[sqlx::test]
async fn a_nul_character_in_a_body_or_a_query_is_a_422_naming_the_field(pool: PgPool) {
    // Arrange
    let app = spawn_app(pool).await;
    let mut body = policy_body("nul");
    body["description"] = "before\u{0}after".into();
    body["options"] = json!({"metadata": {"team\u{0}": "web"}});

    // Act
    let refused = problem(app.post_policy(&body).await, 422).await;
    let query = problem(app.get("/v1/jobs?resource_id=a%00b").await, 422).await;
    let snapshots = problem(app.get("/v1/snapshots?resource_id=%00").await, 422).await;

    // Assert: the first string at fault is named; nothing is stored.
    assert_eq!(error_fields(&refused), ["description"]);
    assert_eq!(error_fields(&query), ["resource_id"]);
    assert_eq!(error_fields(&snapshots), ["resource_id"]);
    let stored: i64 = sqlx::query_scalar("select count(*) from policy")
        .fetch_one(&app.pool)
        .await
        .unwrap();
    assert_eq!(stored, 0);
}

#[sqlx::test]
async fn a_number_with_a_zero_fraction_is_an_integer(pool: PgPool) {
    // Arrange: JSON Schema counts 3.0 as an integer, so the document does.
    let app = spawn_app(pool).await;
    let mut body = policy_body("float");
    body["retention"] = json!({"keep_last": 3.0, "keep_daily": 7});
    body["options"] = json!({"max_concurrent": 2.0});

    // Act
    let created = app.create_policy(&body).await;

    // Assert
    assert_eq!(created["retention"]["keep_last"], 3);
    assert_eq!(created["options"]["max_concurrent"], 2);
    let mut fraction = policy_body("fraction");
    fraction["retention"] = json!({"keep_last": 2.5});
    assert_eq!(
        error_fields(&problem(app.post_policy(&fraction).await, 422).await),
        ["retention.keep_last"]
    );
}

#[sqlx::test]
async fn fire_times_far_from_now_are_listed_in_the_offset_they_were_asked_in(pool: PgPool) {
    // Arrange
    let app = spawn_app(pool).await;
    let id = app.create_policy(&policy_body("far")).await["id"]
        .as_str()
        .unwrap()
        .to_owned();
    let schedule = |from: &str| format!("/v1/policies/{id}/schedule?count=2&from={from}");

    // Act: the last instant of year 9999, and the first of year 0 an hour east of UTC.
    let late = app.get(&schedule("9999-12-31T23:59:59Z")).await;
    let early = app.get(&schedule("0000-01-01T00:00:00%2B01:00")).await;

    // Assert: a schedule with no fire time in range is not a broken one.
    assert_eq!(late.status(), 200);
    let late: serde_json::Value = late.json().await.unwrap();
    assert_eq!(late["from"], "9999-12-31T23:59:59Z");
    assert_eq!(early.status(), 200);
    let early: serde_json::Value = early.json().await.unwrap();
    assert_eq!(early["from"], "0000-01-01T00:00:00+01:00");
    assert_eq!(early["items"].as_array().unwrap().len(), 2);
}
