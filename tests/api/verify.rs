//! `options.verify` through the API: validation naming each field, the option
//! shown as written, set and removed by PATCH, and the restore-test fields on
//! policies, targets, snapshots and the status.

use serde_json::{Value, json};
use sqlx::PgPool;

use crate::helpers::{error_fields, get_json, policy_body, problem, spawn_app};

#[sqlx::test]
async fn invalid_verify_fields_are_422s_naming_each_field(pool: PgPool) {
    // Arrange
    let app = spawn_app(pool).await;
    let mut body = policy_body("tested");
    body["options"] = json!({"verify": {"every": "5m", "timeout": "soon", "flavor": " ",
        "networks": [{"network": "n1", "port": "p1"}]}});
    let mut volume = policy_body("tested-volume");
    volume["resource_type"] = "volume".into();
    volume["targets"] = json!({"ids": ["4f1d6a52-0b52-4a8e-9c43-1d0c8e3f2a10"]});
    volume["options"] = json!({"verify": {"every": "7d", "flavor": "m1.small"}});
    let mut missing = policy_body("tested-missing");
    missing["options"] = json!({"verify": {"flavor": "m1.small"}});

    // Act
    let invalid = problem(app.post_policy(&body).await, 422).await;
    let not_a_server = problem(app.post_policy(&volume).await, 422).await;
    let no_every = problem(app.post_policy(&missing).await, 422).await;

    // Assert
    assert_eq!(
        error_fields(&invalid),
        [
            "options.verify.every",
            "options.verify.timeout",
            "options.verify.flavor",
            "options.verify.networks[0]"
        ],
        "{invalid}"
    );
    assert_eq!(error_fields(&not_a_server), ["options.verify.flavor"]);
    assert!(
        no_every.to_string().contains("every"),
        "a missing `every` is named: {no_every}"
    );
}

#[sqlx::test]
async fn verify_is_shown_as_written_and_a_patch_sets_and_removes_it(pool: PgPool) {
    // Arrange
    let app = spawn_app(pool).await;
    let created = app.create_policy(&policy_body("tested")).await;
    let id = created["id"].as_str().unwrap().to_owned();
    assert!(created["options"].get("verify").is_none(), "{created}");
    assert_eq!(created["unverified_resources"], 0, "{created}");

    // Act
    let set: Value = app
        .patch_policy(
            &id,
            &json!({"options": {"verify": {"every": "7d", "networks": "none"}}}),
            None,
        )
        .await
        .json()
        .await
        .unwrap();
    let removed: Value = app
        .patch_policy(&id, &json!({"options": {"verify": null}}), None)
        .await
        .json()
        .await
        .unwrap();

    // Assert
    assert_eq!(
        set["options"]["verify"],
        json!({"every": "7d", "networks": "none"}),
        "{set}"
    );
    assert!(removed["options"].get("verify").is_none(), "{removed}");
    let status = get_json(&app, "/v1/status").await;
    assert_eq!(status["unverified_resources"], 0, "{status}");
}
