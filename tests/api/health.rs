//! Probes, request ids, compression and the docs page.

use reqwest::header;
use serde_json::Value;
use sqlx::{PgPool, postgres::PgPoolOptions};

use crate::helpers::{policy_body, problem, spawn_app};

#[sqlx::test]
async fn healthz_and_readyz_answer_when_all_is_well(pool: PgPool) {
    let app = spawn_app(pool).await;
    let health: Value = app.get("/healthz").await.json().await.unwrap();
    assert_eq!(health["status"], "ok");
    let response = app.get("/readyz").await;
    assert_eq!(response.status(), 200);
    assert_eq!(response.json::<Value>().await.unwrap()["status"], "ready");
}

#[tokio::test]
async fn readyz_is_503_when_the_database_is_gone() {
    // Arrange: a pool pointing at a port nobody listens on.
    let pool = PgPoolOptions::new()
        .acquire_timeout(std::time::Duration::from_secs(1))
        .connect_lazy("postgres://postgres@127.0.0.1:1/stacksnap")
        .unwrap();
    let app = spawn_app(pool).await;

    // Act
    let response = app.get("/readyz").await;
    let live = app.get("/healthz").await;

    // Assert
    let body = problem(response, 503).await;
    assert!(body["detail"].as_str().unwrap().contains("database"));
    assert_eq!(
        live.status(),
        200,
        "liveness does not depend on the database"
    );
}

#[sqlx::test(migrations = false)]
async fn readyz_is_503_while_migrations_are_pending(pool: PgPool) {
    let app = spawn_app(pool).await;
    let body = problem(app.get("/readyz").await, 503).await;
    assert!(body["detail"].as_str().unwrap().contains("migrations"));
}

#[sqlx::test]
async fn request_ids_are_generated_or_echoed(pool: PgPool) {
    let app = spawn_app(pool).await;
    let generated = app.get("/healthz").await;
    let id = generated.headers()["x-request-id"].to_str().unwrap();
    assert_eq!(id.len(), 36, "a UUID: {id}");

    let echoed = app
        .client
        .get(app.url("/v1/policies/nope"))
        .header("x-request-id", "ci-run-42")
        .send()
        .await
        .unwrap();
    assert_eq!(
        echoed.headers()["x-request-id"],
        "ci-run-42",
        "errors carry it too"
    );
}

#[sqlx::test]
async fn large_responses_are_compressed_when_the_client_accepts_it(pool: PgPool) {
    let app = spawn_app(pool).await;
    for i in 0..10 {
        app.create_policy(&policy_body(&format!("p{i}"))).await;
    }
    let response = app
        .client
        .get(app.url("/v1/policies"))
        .header(header::ACCEPT_ENCODING, "gzip")
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 200);
    assert_eq!(response.headers()[header::CONTENT_ENCODING], "gzip");
}

#[sqlx::test]
async fn the_docs_page_needs_no_internet(pool: PgPool) {
    let app = spawn_app(pool).await;
    let page = app.get("/docs/").await;
    assert_eq!(page.status(), 200);
    let html = page.text().await.unwrap();
    assert!(html.contains("swagger-ui"));
    assert!(
        !html.contains("http://") && !html.contains("https://"),
        "no CDN: {html}"
    );
    let config = app
        .get("/docs/swagger-initializer.js")
        .await
        .text()
        .await
        .unwrap();
    assert!(config.contains("/openapi.json"));
    let bundle = app.get("/docs/swagger-ui-bundle.js").await;
    assert_eq!(bundle.status(), 200, "assets are served from the binary");
}
