//! The OpenAPI document: checked in, served, and complete.

use serde_json::Value;
use sqlx::PgPool;

use crate::helpers::spawn_app;

const CHECKED_IN: &str = include_str!("../../openapi/openapi.json");

#[test]
fn the_checked_in_openapi_document_is_current() {
    let generated = stacksnap::http::docs::openapi_json();
    assert!(
        generated == CHECKED_IN,
        "openapi/openapi.json is stale: run `cargo run -- openapi > openapi/openapi.json`"
    );
}

#[test]
fn every_schema_and_every_request_body_has_an_example() {
    let doc: Value = serde_json::from_str(CHECKED_IN).unwrap();
    assert!(doc["openapi"].as_str().unwrap().starts_with("3.1"));
    let schemas = doc["components"]["schemas"].as_object().unwrap();
    let missing: Vec<&String> = schemas
        .iter()
        .filter(|(_, schema)| schema.get("example").is_none() && schema.get("examples").is_none())
        .map(|(name, _)| name)
        .collect();
    assert!(
        missing.is_empty(),
        "schemas without an example: {missing:?}"
    );

    for (path, item) in doc["paths"].as_object().unwrap() {
        for (method, operation) in item.as_object().unwrap() {
            if let Some(content) = operation.pointer("/requestBody/content") {
                for (media, body) in content.as_object().unwrap() {
                    let schema_ref = body.pointer("/schema/$ref").and_then(Value::as_str);
                    let has_example = body.get("example").is_some()
                        || schema_ref.is_some_and(|r| {
                            schemas[r.rsplit('/').next().unwrap()]
                                .get("example")
                                .is_some()
                        });
                    assert!(has_example, "{method} {path} {media} has no example");
                }
            }
        }
    }
}

#[sqlx::test]
async fn the_service_serves_the_same_document(pool: PgPool) {
    let app = spawn_app(pool).await;
    let served: Value = app.get("/openapi.json").await.json().await.unwrap();
    let checked_in: Value = serde_json::from_str(CHECKED_IN).unwrap();
    assert_eq!(served, checked_in);
}

/// The operation with `operation_id`, as `(path, method, operation)`.
fn operation<'a>(doc: &'a Value, operation_id: &str) -> (&'a str, &'a str, &'a Value) {
    doc["paths"]
        .as_object()
        .unwrap()
        .iter()
        .flat_map(|(path, item)| {
            item.as_object()
                .unwrap()
                .iter()
                .map(move |(method, op)| (path.as_str(), method.as_str(), op))
        })
        .find(|(_, _, op)| op["operationId"] == operation_id)
        .unwrap_or_else(|| panic!("no operation {operation_id}"))
}

#[test]
fn list_and_create_operations_link_to_the_operations_that_take_their_ids() {
    let doc: Value = serde_json::from_str(CHECKED_IN).unwrap();
    for (source, status, targets) in [
        (
            "create_policy",
            "201",
            &["get_policy", "update_policy", "delete_policy", "run_policy"][..],
        ),
        (
            "list_policies",
            "200",
            &[
                "get_policy",
                "update_policy",
                "delete_policy",
                "get_policy_schedule",
            ],
        ),
        ("run_policy", "202", &["get_run", "list_jobs"]),
        ("list_runs", "200", &["get_run", "list_jobs"]),
        ("list_jobs", "200", &["get_job", "cancel_job"]),
        ("create_snapshot", "202", &["get_job", "cancel_job"]),
        (
            "list_snapshots",
            "200",
            &["get_snapshot", "delete_snapshot"],
        ),
    ] {
        let (_, _, op) = operation(&doc, source);
        let links = op["responses"][status]["links"]
            .as_object()
            .unwrap_or_else(|| panic!("{source} {status} has no links"));
        let linked: Vec<&str> = links
            .values()
            .map(|l| l["operationId"].as_str().unwrap())
            .collect();
        for target in targets {
            assert!(
                linked.contains(target),
                "{source} does not link to {target}"
            );
        }
        for link in links.values() {
            let (_, _, target) = operation(&doc, link["operationId"].as_str().unwrap());
            for parameter in link["parameters"].as_object().unwrap().keys() {
                let name = parameter.rsplit('.').next().unwrap();
                assert!(
                    target["parameters"]
                        .as_array()
                        .unwrap()
                        .iter()
                        .any(|p| p["name"] == name),
                    "{source} passes {parameter}, which {} does not take",
                    target["operationId"]
                );
            }
        }
    }
}

#[test]
fn the_policy_schema_lists_every_field_a_policy_has() {
    // A composition with the closed PolicySpec refused every stored policy.
    let doc: Value = serde_json::from_str(CHECKED_IN).unwrap();
    let policy = &doc["components"]["schemas"]["Policy"];
    assert!(policy.get("allOf").is_none(), "{policy}");
    let example = policy["example"].as_object().unwrap();
    let properties = policy["properties"].as_object().unwrap();
    for field in example.keys() {
        assert!(
            properties.contains_key(field),
            "Policy does not declare {field}"
        );
    }
}

#[test]
fn body_and_cloud_failures_are_declared_where_they_can_happen() {
    let doc: Value = serde_json::from_str(CHECKED_IN).unwrap();
    for (path, item) in doc["paths"].as_object().unwrap() {
        for (method, op) in item.as_object().unwrap() {
            let responses = op["responses"].as_object().unwrap();
            if op.get("requestBody").is_some() {
                for status in ["400", "413", "415", "422"] {
                    assert!(
                        responses.contains_key(status),
                        "{method} {path} lacks {status}"
                    );
                }
            }
            if path.starts_with("/v1/orphans") {
                for status in ["502", "503"] {
                    assert!(
                        responses.contains_key(status),
                        "{method} {path} lacks {status}"
                    );
                }
            }
        }
    }
}

#[test]
fn every_api_operation_declares_the_keystone_token_and_its_401_403_and_404_answers() {
    // Issue 10's proof: an `apiKey` in the `X-Auth-Token` header, required by
    // every operation under /v1/ (and by nothing else), with the answers a
    // token brings: 401 (with the challenge), 403, and 404 for an id of
    // another project.
    let doc: Value = serde_json::from_str(CHECKED_IN).unwrap();
    let scheme = &doc["components"]["securitySchemes"]["keystone_token"];
    assert_eq!(scheme["type"], "apiKey", "{scheme}");
    assert_eq!(scheme["in"], "header", "{scheme}");
    assert_eq!(scheme["name"], "X-Auth-Token", "{scheme}");
    let mut protected = 0;
    for (path, item) in doc["paths"].as_object().unwrap() {
        for (method, op) in item.as_object().unwrap() {
            let security = op.get("security");
            if !path.starts_with("/v1/") {
                assert!(security.is_none(), "{method} {path} needs no token");
                continue;
            }
            protected += 1;
            assert_eq!(
                security,
                Some(&serde_json::json!([{"keystone_token": []}])),
                "{method} {path}"
            );
            let responses = op["responses"].as_object().unwrap();
            for status in ["401", "403"] {
                assert!(
                    responses.contains_key(status),
                    "{method} {path} lacks {status}"
                );
            }
            assert!(
                responses["401"]["headers"]
                    .get("WWW-Authenticate")
                    .is_some(),
                "{method} {path}: 401 without its challenge"
            );
            if path.contains('{') {
                assert!(responses.contains_key("404"), "{method} {path} lacks 404");
            }
        }
    }
    assert!(
        protected > 20,
        "the API's operations were seen: {protected}"
    );
}
