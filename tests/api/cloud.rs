//! Answers when the cloud behind an endpoint fails: 502 with the failed call, or
//! 503 when the cloud cannot be reached, and never the cloud's internals.

use serde_json::Value;
use sqlx::PgPool;
use stacksnap_sim::{Fault, FaultRule};

use crate::helpers::{problem, spawn_app_with_cloud};

/// Fails the test if `body` names an endpoint URL or the project.
fn assert_reveals_no_internals(body: &Value, base_url: &str, project_id: &str) {
    let text = body.to_string();
    let host = base_url.trim_start_matches("http://");
    for secret in ["http://", "https://", host, project_id] {
        assert!(!text.contains(secret), "{secret:?} in {text}");
    }
}

#[sqlx::test]
async fn a_cloud_error_is_a_502_naming_the_failed_call(pool: PgPool) {
    // Arrange: Glance fails, and its message names an internal URL and the project.
    let (app, sim) = spawn_app_with_cloud(pool).await;
    let (base, project) = (sim.base_url(), sim.project_id());
    sim.inject(FaultRule::new(
        "glance.list_images",
        Fault::Error {
            status: 500,
            retry_after: None,
            message: Some(format!("backend {base}/v2/{project} is down")),
        },
    ));

    // Act
    let response = app.get("/v1/orphans").await;

    // Assert
    let body = problem(response, 502).await;
    assert_eq!(body["type"], "urn:stacksnap:problem:openstack");
    assert_eq!(body["openstack"]["service"], "glance");
    assert_eq!(body["openstack"]["operation"], "list_images");
    assert_eq!(body["openstack"]["status"], 500);
    let request_id = body["openstack"]["request_id"].as_str().unwrap();
    let logged = sim.requests();
    assert!(
        logged
            .iter()
            .any(|r| r.operation == "glance.list_images" && r.request_id == request_id),
        "the request id is the cloud's own"
    );
    assert_eq!(
        body["detail"],
        "OpenStack glance list_images: the cloud answered HTTP 500"
    );
    assert_reveals_no_internals(&body, &base, &project);
}

#[sqlx::test]
async fn a_cloud_error_during_cleanup_is_a_502_too(pool: PgPool) {
    // Arrange
    let (app, sim) = spawn_app_with_cloud(pool).await;
    sim.inject(FaultRule::error("cinder.list_snapshots_detail", 403));

    // Act
    let response = app
        .client
        .post(app.url("/v1/orphans/cleanup"))
        .send()
        .await
        .unwrap();

    // Assert
    let body = problem(response, 502).await;
    assert_eq!(body["openstack"]["service"], "cinder");
    assert_eq!(body["openstack"]["operation"], "list_snapshots");
    assert_eq!(body["openstack"]["status"], 403);
    assert!(body["openstack"]["request_id"].is_string());
    assert_reveals_no_internals(&body, &sim.base_url(), &sim.project_id());
}

#[sqlx::test]
async fn an_unreachable_cloud_is_a_503_without_an_upstream_status(pool: PgPool) {
    // Arrange: the cloud goes away before the first call.
    let (app, sim) = spawn_app_with_cloud(pool).await;
    let (base, project) = (sim.base_url(), sim.project_id());
    sim.shutdown().await;

    // Act
    let response = app.get("/v1/orphans").await;

    // Assert
    let body = problem(response, 503).await;
    assert_eq!(body["type"], "urn:stacksnap:problem:openstack");
    assert_eq!(body["openstack"]["service"], "keystone");
    assert_eq!(body["openstack"]["operation"], "authenticate");
    assert_eq!(body["openstack"]["status"], Value::Null);
    assert_eq!(body["openstack"]["request_id"], Value::Null);
    assert_eq!(
        body["detail"],
        "OpenStack keystone authenticate: the cloud could not be reached"
    );
    assert_reveals_no_internals(&body, &base, &project);
}
