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
