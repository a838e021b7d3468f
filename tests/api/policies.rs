//! The policy resource: create, read, list, patch, delete.

use reqwest::header;
use serde_json::{Value, json};
use sqlx::PgPool;

use crate::helpers::{error_fields, policy_body, problem, spawn_app};

#[sqlx::test]
async fn policy_crud_round_trip(pool: PgPool) {
    let app = spawn_app(pool).await;

    // Create
    let response = app.post_policy(&policy_body("nightly-web")).await;
    assert_eq!(response.status(), 201);
    let etag = response.headers()[header::ETAG]
        .to_str()
        .unwrap()
        .to_owned();
    let location = response.headers()[header::LOCATION]
        .to_str()
        .unwrap()
        .to_owned();
    let created: Value = response.json().await.unwrap();
    let id = created["id"].as_str().unwrap().to_owned();
    assert_eq!(location, format!("/v1/policies/{id}"));
    assert_eq!(etag, "\"1\"");
    assert_eq!(created["version"], 1);
    assert_eq!(created["project_id"], "default");
    assert_eq!(created["enabled"], true);
    assert_eq!(created["options"]["consistency"], "quiesce_preferred");
    assert_eq!(created["options"]["timeout"], "2h");
    assert_eq!(created["options"]["missed_run"], "run_once");
    assert_eq!(created["options"]["start_window"], "1h");
    // 02:00 in Berlin (CET, UTC+1) after the test clock's 2026-11-25T12:00Z.
    assert_eq!(created["next_run_at"], "2026-11-26T01:00:00Z");

    // Read
    let response = app.get(&location).await;
    assert_eq!(response.status(), 200);
    assert_eq!(response.headers()[header::ETAG], etag.as_str());
    let read: Value = response.json().await.unwrap();
    assert_eq!(read, created);

    // List
    let list: Value = app.get("/v1/policies").await.json().await.unwrap();
    assert_eq!(list["items"], json!([created]));
    assert_eq!(list["next_cursor"], Value::Null);

    // Update
    let response = app
        .patch_policy(
            &id,
            &json!({"description": "web tier", "retention": {"keep_last": null, "keep_weekly": 4}}),
            Some(&etag),
        )
        .await;
    assert_eq!(response.status(), 200);
    assert_eq!(response.headers()[header::ETAG], "\"2\"");
    let updated: Value = response.json().await.unwrap();
    assert_eq!(updated["version"], 2);
    assert_eq!(updated["description"], "web tier");
    assert_eq!(
        updated["retention"],
        json!({"keep_daily": 7, "keep_weekly": 4})
    );
    assert_eq!(
        updated["next_run_at"], created["next_run_at"],
        "unchanged schedules keep their fire time"
    );

    // Delete
    let response = app.delete_policy(&id, None).await;
    assert_eq!(response.status(), 204);
    problem(app.get(&location).await, 404).await;
    problem(app.delete_policy(&id, None).await, 404).await;
}

#[sqlx::test]
async fn list_pages_through_every_policy_once_with_a_cursor(pool: PgPool) {
    let app = spawn_app(pool).await;
    let mut created = Vec::new();
    for i in 0..5 {
        created.push(app.create_policy(&policy_body(&format!("p{i}"))).await["id"].clone());
    }

    let mut seen = Vec::new();
    let mut path = "/v1/policies?limit=2".to_owned();
    let mut pages = 0;
    loop {
        let page: Value = app.get(&path).await.json().await.unwrap();
        pages += 1;
        let items = page["items"].as_array().unwrap();
        assert!(items.len() <= 2);
        seen.extend(items.iter().map(|p| p["id"].clone()));
        match page["next_cursor"].as_str() {
            Some(cursor) => path = format!("/v1/policies?limit=2&cursor={cursor}"),
            None => break,
        }
    }
    assert_eq!(pages, 3);
    assert_eq!(seen, created, "every policy once, oldest first");
}

#[sqlx::test]
async fn list_filters_by_enabled_and_resource_type(pool: PgPool) {
    let app = spawn_app(pool).await;
    app.create_policy(&policy_body("servers-on")).await;
    let mut off = policy_body("servers-off");
    off["enabled"] = false.into();
    app.create_policy(&off).await;
    let mut volumes = policy_body("volumes");
    volumes["resource_type"] = "volume".into();
    volumes["targets"] = json!({"selector": {"metadata": {"backup": "yes"}}});
    app.create_policy(&volumes).await;

    let names = |list: Value| -> Vec<String> {
        list["items"]
            .as_array()
            .unwrap()
            .iter()
            .map(|p| p["name"].as_str().unwrap().to_owned())
            .collect()
    };
    let disabled = app
        .get("/v1/policies?enabled=false")
        .await
        .json()
        .await
        .unwrap();
    assert_eq!(names(disabled), ["servers-off"]);
    let vols = app
        .get("/v1/policies?resource_type=volume")
        .await
        .json()
        .await
        .unwrap();
    assert_eq!(names(vols), ["volumes"]);
    let enabled_servers = app
        .get("/v1/policies?enabled=true&resource_type=server")
        .await
        .json()
        .await
        .unwrap();
    assert_eq!(names(enabled_servers), ["servers-on"]);
}

#[sqlx::test]
async fn if_match_guards_updates_and_deletes(pool: PgPool) {
    let app = spawn_app(pool).await;
    let id = app.create_policy(&policy_body("guarded")).await["id"]
        .as_str()
        .unwrap()
        .to_owned();

    // A writer holding version 1 wins and moves the policy to version 2.
    let response = app
        .patch_policy(&id, &json!({"description": "first"}), Some("\"1\""))
        .await;
    assert_eq!(response.status(), 200);

    // A second writer still holding version 1 is refused and told the current tag.
    let response = app
        .patch_policy(&id, &json!({"description": "second"}), Some("\"1\""))
        .await;
    assert_eq!(response.headers()[header::ETAG], "\"2\"");
    let body = problem(response, 412).await;
    assert!(body["detail"].as_str().unwrap().contains("\"2\""));
    problem(app.delete_policy(&id, Some("\"1\"")).await, 412).await;

    let current: Value = app
        .get(&format!("/v1/policies/{id}"))
        .await
        .json()
        .await
        .unwrap();
    assert_eq!(
        current["description"], "first",
        "the stale write changed nothing"
    );
    assert_eq!(app.delete_policy(&id, Some("\"2\"")).await.status(), 204);
}

#[sqlx::test]
async fn merge_patch_null_restores_defaults_and_a_no_op_keeps_the_version(pool: PgPool) {
    let app = spawn_app(pool).await;
    let mut body = policy_body("defaults");
    body["options"] = json!({"timeout": "30m", "consistency": "crash"});
    let id = app.create_policy(&body).await["id"]
        .as_str()
        .unwrap()
        .to_owned();

    let patched: Value = app
        .patch_policy(&id, &json!({"options": {"timeout": null}}), None)
        .await
        .json()
        .await
        .unwrap();
    assert_eq!(patched["options"]["timeout"], "2h");
    assert_eq!(
        patched["options"]["consistency"], "crash",
        "untouched keys stay"
    );
    assert_eq!(patched["version"], 2);

    // Sending back read-only fields with their current values is allowed and changes nothing.
    let same = json!({"id": patched["id"], "version": 2, "name": "defaults"});
    let response = app.patch_policy(&id, &same, Some("\"2\"")).await;
    assert_eq!(response.status(), 200);
    let unchanged: Value = response.json().await.unwrap();
    assert_eq!(unchanged["version"], 2);
}

#[sqlx::test]
async fn changing_schedules_or_enabled_moves_next_run(pool: PgPool) {
    let app = spawn_app(pool).await;
    let id = app.create_policy(&policy_body("moving")).await["id"]
        .as_str()
        .unwrap()
        .to_owned();

    let hourly: Value = app
        .patch_policy(&id, &json!({"schedules": [{"cron": "@hourly"}]}), None)
        .await
        .json()
        .await
        .unwrap();
    assert_eq!(hourly["next_run_at"], "2026-11-25T13:00:00Z");

    let disabled: Value = app
        .patch_policy(&id, &json!({"enabled": false}), None)
        .await
        .json()
        .await
        .unwrap();
    assert_eq!(disabled["next_run_at"], Value::Null);

    app.clock.set("2026-11-25T15:30:00Z".parse().unwrap());
    let enabled: Value = app
        .patch_policy(&id, &json!({"enabled": true}), None)
        .await
        .json()
        .await
        .unwrap();
    assert_eq!(
        enabled["next_run_at"], "2026-11-25T16:00:00Z",
        "counted from now, not from before"
    );
}

#[sqlx::test]
async fn patch_validates_the_merged_policy(pool: PgPool) {
    let app = spawn_app(pool).await;
    let id = app.create_policy(&policy_body("strict")).await["id"]
        .as_str()
        .unwrap()
        .to_owned();

    let response = app
        .patch_policy(
            &id,
            &json!({"name": null, "schedules": [{"cron": "99 * * * *"}], "version": 7}),
            None,
        )
        .await;
    let body = problem(response, 422).await;
    assert_eq!(error_fields(&body), ["version", "name"]);

    let response = app
        .patch_policy(
            &id,
            &json!({"schedules": [{"cron": "99 * * * *"}], "retention": {"keep_last": 0}}),
            None,
        )
        .await;
    let body = problem(response, 422).await;
    assert_eq!(
        error_fields(&body),
        ["schedules[0].cron", "retention.keep_last"]
    );
}

#[sqlx::test]
async fn patch_refuses_unknown_fields_even_when_they_remove_nothing(pool: PgPool) {
    // Found by schemathesis: `{"": null}` merged to the unchanged policy and was a 200.
    let app = spawn_app(pool).await;
    let id = app.create_policy(&policy_body("strict")).await["id"]
        .as_str()
        .unwrap()
        .to_owned();

    let body = json!({"": null, "colour": null, "retention": {"keep_hourly": null, "keep_forever": null},
        "targets": {"selector": {"shape": null, "metadata": {"tier": null}}},
        "options": {"paint": null}});
    let response = app.patch_policy(&id, &body, None).await;

    let body = problem(response, 422).await;
    assert_eq!(
        error_fields(&body),
        [
            "",
            "colour",
            "options.paint",
            "retention.keep_forever",
            "targets.selector.shape"
        ]
    );
}

#[sqlx::test]
async fn a_stored_policy_that_cannot_be_read_can_still_be_deleted(pool: PgPool) {
    // Arrange: a policy whose stored schedule names a zone this build does not know.
    let app = spawn_app(pool).await;
    let created: serde_json::Value = app
        .post_policy(&policy_body("broken"))
        .await
        .json()
        .await
        .unwrap();
    let id = created["id"].as_str().unwrap().to_owned();
    sqlx::query(
        "update policy set schedules = '[{\"cron\": \"0 2 * * *\", \"timezone\": \"Mars/Olympus\"}]' \
         where policy_id = $1::uuid",
    )
    .bind(&id)
    .execute(&app.pool)
    .await
    .unwrap();

    // Act and assert: it can be deleted, honouring If-Match.
    problem(app.delete_policy(&id, Some("\"7\"")).await, 412).await;
    assert_eq!(app.delete_policy(&id, Some("\"1\"")).await.status(), 204);
    problem(app.delete_policy(&id, None).await, 404).await;
}

#[sqlx::test]
async fn an_invalid_patch_is_a_422_even_with_a_stale_if_match(pool: PgPool) {
    let app = spawn_app(pool).await;
    let created: serde_json::Value = app
        .post_policy(&policy_body("p"))
        .await
        .json()
        .await
        .unwrap();
    let id = created["id"].as_str().unwrap();
    let response = app
        .client
        .patch(app.url(&format!("/v1/policies/{id}")))
        .header("content-type", "application/merge-patch+json")
        .header("if-match", "\"3\"")
        .body(r#"{"schedules": [{"cron": "not a cron"}]}"#)
        .send()
        .await
        .unwrap();
    let body = problem(response, 422).await;
    assert_eq!(error_fields(&body), ["schedules[0].cron"]);
}

#[sqlx::test]
async fn a_name_template_chrono_cannot_write_is_a_422_naming_the_field(pool: PgPool) {
    // Arrange: `%#z` parses in chrono but panics when written.
    let app = spawn_app(pool).await;
    let mut body = policy_body("odd-zone");
    body["options"] = json!({"name_template": "{policy}-{scheduled_at:%#z}"});

    // Act
    let response = app.post_policy(&body).await;

    // Assert
    let problem = problem(response, 422).await;
    assert_eq!(error_fields(&problem), ["options.name_template"]);
    assert!(
        problem["errors"][0]["message"]
            .as_str()
            .unwrap()
            .contains("%#z"),
        "{problem}"
    );
}

#[sqlx::test]
async fn a_stored_policy_with_a_now_refused_metadata_key_shows_broken_and_cannot_be_run(
    pool: PgPool,
) {
    // Arrange: a policy stored before `os_glance_*` property names were refused.
    let app = spawn_app(pool).await;
    let created = app.create_policy(&policy_body("older")).await;
    let id = created["id"].as_str().unwrap().to_owned();
    sqlx::query(
        "update policy set options = jsonb_set(options, '{metadata}', '{\"os_glance_import\": \"x\"}') \
         where policy_id = $1::uuid",
    )
    .bind(&id)
    .execute(&app.pool)
    .await
    .unwrap();

    // Act
    let read = app.get(&format!("/v1/policies/{id}")).await;
    let run = app
        .post_json(&format!("/v1/policies/{id}/run"), &json!({}))
        .await;

    // Assert: shown broken, naming the field; running it is refused with the reason.
    assert_eq!(read.status(), 200);
    let read: Value = read.json().await.unwrap();
    assert_eq!(read["state"], "broken", "{read}");
    assert_eq!(read["error"]["code"], "invalid_policy");
    let message = read["error"]["message"].as_str().unwrap();
    assert!(
        message.contains("options.metadata.os_glance_import: is reserved"),
        "{message}"
    );
    assert_eq!(
        read["options"]["metadata"],
        json!({"os_glance_import": "x"})
    );
    assert_eq!(read["next_run_at"], Value::Null);
    let problem = problem(run, 409).await;
    assert!(
        problem["detail"]
            .as_str()
            .unwrap()
            .contains("os_glance_import"),
        "{problem}"
    );
}

#[sqlx::test]
async fn an_unreadable_policy_is_listed_as_broken_and_a_patch_that_fixes_it_makes_it_active(
    pool: PgPool,
) {
    // Arrange: two policies; the first one's stored zone is unknown to this build.
    let app = spawn_app(pool).await;
    let broken = app.create_policy(&policy_body("broken")).await;
    let fine = app.create_policy(&policy_body("fine")).await;
    let id = broken["id"].as_str().unwrap().to_owned();
    sqlx::query(
        "update policy set schedules = '[{\"cron\": \"0 2 * * *\", \"timezone\": \"Mars/Olympus\"}]' \
         where policy_id = $1::uuid",
    )
    .bind(&id)
    .execute(&app.pool)
    .await
    .unwrap();

    // Act
    let list = app.get("/v1/policies").await;

    // Assert: the page is served, the bad row shown broken as stored.
    assert_eq!(list.status(), 200);
    let list: Value = list.json().await.unwrap();
    let items = list["items"].as_array().unwrap();
    assert_eq!(items.len(), 2, "{list}");
    assert_eq!(items[0]["id"], broken["id"]);
    assert_eq!(items[0]["state"], "broken");
    assert_eq!(items[0]["error"]["code"], "invalid_policy");
    let message = items[0]["error"]["message"].as_str().unwrap();
    assert!(message.contains("schedules[0].timezone"), "{message}");
    assert_eq!(items[0]["schedules"][0]["timezone"], "Mars/Olympus");
    assert_eq!(items[1]["id"], fine["id"]);
    assert_eq!(items[1]["state"], "active");

    // Act: a patch names a zone that exists.
    let response = app
        .patch_policy(
            &id,
            &json!({"schedules": [{"cron": "0 2 * * *", "timezone": "Europe/Berlin"}]}),
            Some("\"1\""),
        )
        .await;

    // Assert: active again, its next fire time counted from now.
    assert_eq!(response.status(), 200);
    let repaired: Value = response.json().await.unwrap();
    assert_eq!(repaired["state"], "active", "{repaired}");
    assert_eq!(repaired["error"], Value::Null);
    assert_eq!(repaired["version"], 2);
    assert_eq!(repaired["next_run_at"], "2026-11-26T01:00:00Z");
}

#[sqlx::test]
async fn a_field_only_a_newer_build_knows_can_be_patched_away(pool: PgPool) {
    // Arrange: a policy written by a newer build (an option this one does not
    // know), which this build shows broken; a client misspells another field.
    let app = spawn_app(pool).await;
    let created = app.create_policy(&policy_body("newer")).await;
    let id = created["id"].as_str().unwrap().to_owned();
    sqlx::query(
        "update policy set options = options || '{\"snapshot_kind\": \"incremental\"}' \
         where policy_id = $1::uuid",
    )
    .bind(&id)
    .execute(&app.pool)
    .await
    .unwrap();
    let read: Value = app
        .get(&format!("/v1/policies/{id}"))
        .await
        .json()
        .await
        .unwrap();
    assert_eq!(read["state"], "broken", "{read}");

    // Act: the unknown fields are removed, one stored and one not.
    let misspelt = app
        .patch_policy(
            &id,
            &json!({"options": {"snapshot_kind": null, "paint": null}}),
            None,
        )
        .await;
    let removed = app
        .patch_policy(&id, &json!({"options": {"snapshot_kind": null}}), None)
        .await;

    // Assert: a field the policy does not hold is still refused; removing the
    // stored one repairs the policy (it was refused as unknown before).
    let misspelt = problem(misspelt, 422).await;
    assert_eq!(error_fields(&misspelt), ["options.paint"]);
    assert_eq!(removed.status(), 200);
    let repaired: Value = removed.json().await.unwrap();
    assert_eq!(repaired["state"], "active", "{repaired}");
    assert_eq!(repaired["options"].get("snapshot_kind"), None, "{repaired}");
}
