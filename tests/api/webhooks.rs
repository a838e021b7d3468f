//! `/v1/webhooks`: creating, reading and deleting subscriptions, the secret
//! never shown, validation, `--webhook-deny-private` at creation, and each
//! project reaching only its own subscriptions.

use std::{sync::Arc, time::Duration};

use reqwest::Method;
use serde_json::{Value, json};
use sqlx::PgPool;
use stacksnap::{
    clock::SystemClock, config::Settings, engine::EngineConfig, startup::RunningService,
};
use stacksnap_sim::SimConfig;

use crate::helpers::{
    error_fields, problem, sim_token, spawn_app, spawn_app_with_keystone, start_service_with,
    test_settings,
};

const SECRET: &str = "s3cr3t-never-shown";

fn hook(url: &str) -> Value {
    json!({"url": url, "events": ["job.", "policy.created"], "secret": SECRET})
}

#[sqlx::test]
async fn a_webhook_is_created_read_listed_and_deleted_and_its_secret_never_shown(pool: PgPool) {
    let app = spawn_app(pool).await;

    let created = app
        .post_json("/v1/webhooks", &hook("https://hooks.example.com/x"))
        .await;
    assert_eq!(created.status(), 201);
    let location = created.headers()["location"].to_str().unwrap().to_owned();
    let text = created.text().await.unwrap();
    let body: Value = serde_json::from_str(&text).unwrap();
    let id = body["id"].as_str().unwrap().to_owned();
    assert_eq!(location, format!("/v1/webhooks/{id}"));
    assert_eq!(body["url"], "https://hooks.example.com/x");
    assert_eq!(body["events"], json!(["job.", "policy.created"]));
    assert!(body["created_at"].is_string() && body["project_id"].is_string());

    let mut answers = vec![text];
    for path in [
        format!("/v1/webhooks/{id}"),
        "/v1/webhooks".to_owned(),
        format!("/v1/webhooks/{id}/deliveries"),
    ] {
        let response = app.get(&path).await;
        assert_eq!(response.status(), 200, "{path}");
        answers.push(response.text().await.unwrap());
    }
    let listed: Value = serde_json::from_str(&answers[2]).unwrap();
    assert_eq!(listed["items"][0]["id"], id.as_str());
    assert_eq!(listed["next_cursor"], Value::Null);
    let deliveries: Value = serde_json::from_str(&answers[3]).unwrap();
    assert_eq!(deliveries["items"], json!([]));
    for answer in &answers {
        assert!(!answer.contains(SECRET), "{answer}");
        assert!(!answer.contains("secret"), "{answer}");
    }

    let deleted = app
        .client
        .delete(app.url(&format!("/v1/webhooks/{id}")))
        .send()
        .await
        .unwrap();
    assert_eq!(deleted.status(), 204);
    problem(app.get(&format!("/v1/webhooks/{id}")).await, 404).await;
    problem(app.get("/v1/webhooks/not-a-uuid").await, 404).await;
}

#[sqlx::test]
async fn invalid_urls_secrets_and_kinds_are_named_and_the_secret_not_echoed(pool: PgPool) {
    let app = spawn_app(pool).await;

    let bad = app
        .post_json(
            "/v1/webhooks",
            &json!({"url": "ftp://example.com/", "events": ["job.", "nope"], "secret": "short"}),
        )
        .await;
    let none = app
        .post_json(
            "/v1/webhooks",
            &json!({"url": "https://example.com/", "events": [], "secret": SECRET}),
        )
        .await;

    let bad = problem(bad, 422).await;
    assert_eq!(error_fields(&bad), ["url", "secret", "events[1]"]);
    assert!(!bad.to_string().contains("short"), "{bad}");
    assert_eq!(error_fields(&problem(none, 422).await), ["events"]);
}

async fn start_denying(pool: PgPool, deny: bool) -> (String, RunningService) {
    let settings = Settings {
        webhook_deny_private: deny,
        ..test_settings()
    };
    let service = start_service_with(
        settings,
        pool,
        Arc::new(SystemClock),
        None,
        EngineConfig::default(),
    )
    .await;
    (format!("http://{}", service.local_addr()), service)
}

#[sqlx::test]
async fn deny_private_refuses_loopback_and_private_literals_at_creation(pool: PgPool) {
    let (base, _service) = start_denying(pool, true).await;
    let http = reqwest::Client::new();

    for url in [
        "http://127.0.0.1:9/",
        "http://10.0.0.1/",
        "http://[::1]/",
        "http://169.254.169.254/",
    ] {
        let response = http
            .post(format!("{base}/v1/webhooks"))
            .json(&hook(url))
            .send()
            .await
            .unwrap();
        assert_eq!(
            error_fields(&problem(response, 422).await),
            ["url"],
            "{url}"
        );
    }
    let public = http
        .post(format!("{base}/v1/webhooks"))
        .json(&hook("https://203.0.113.7/hook"))
        .send()
        .await
        .unwrap();
    assert_eq!(public.status(), 201);
}

#[sqlx::test]
async fn each_project_reaches_only_its_own_webhooks(pool: PgPool) {
    let (app, sim) =
        spawn_app_with_keystone(pool, SimConfig::default(), Duration::from_secs(300)).await;
    let demo = sim_token(&sim, "demo").await;
    let alt = sim_token(&sim, "alt").await;
    let admin = sim_token(&sim, "admin").await;
    let created: Value = app
        .with_token(Method::POST, "/v1/webhooks", &demo.value)
        .json(&hook("https://hooks.example.com/demo"))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    let id = created["id"].as_str().unwrap();
    assert_eq!(created["project_id"], demo.project_id.as_str());

    let send =
        |method: Method, path: String, token: &str| app.with_token(method, &path, token).send();
    let alt_get = send(Method::GET, format!("/v1/webhooks/{id}"), &alt.value)
        .await
        .unwrap();
    let alt_deliveries = send(
        Method::GET,
        format!("/v1/webhooks/{id}/deliveries"),
        &alt.value,
    )
    .await
    .unwrap();
    let alt_delete = send(Method::DELETE, format!("/v1/webhooks/{id}"), &alt.value)
        .await
        .unwrap();
    let alt_list: Value = send(Method::GET, "/v1/webhooks".into(), &alt.value)
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    let alt_all = send(
        Method::GET,
        "/v1/webhooks?all_projects=true".into(),
        &alt.value,
    )
    .await
    .unwrap();
    let admin_all: Value = send(
        Method::GET,
        "/v1/webhooks?all_projects=true".into(),
        &admin.value,
    )
    .await
    .unwrap()
    .json()
    .await
    .unwrap();
    let demo_get = send(Method::GET, format!("/v1/webhooks/{id}"), &demo.value)
        .await
        .unwrap();

    problem(alt_get, 404).await;
    problem(alt_deliveries, 404).await;
    problem(alt_delete, 404).await;
    assert_eq!(alt_list["items"], json!([]));
    problem(alt_all, 403).await;
    assert_eq!(admin_all["items"][0]["id"], id);
    assert_eq!(demo_get.status(), 200);
}
