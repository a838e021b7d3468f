//! Keystone: tokens, catalog, expiry.

use std::time::Duration;

use reqwest::{Method, StatusCode};
use serde_json::{Value, json};
use stacksnap_sim::SimConfig;

use crate::helpers::{spawn, spawn_with};

#[tokio::test]
async fn password_token_has_a_catalog_pointing_back_at_the_simulator() {
    // Arrange
    let t = spawn().await;
    let body = json!({"auth": {
        "identity": {"methods": ["password"], "password": {"user": {"name": "admin", "domain": {"name": "Default"}, "password": "secret"}}},
        "scope": {"project": {"name": "admin", "domain": {"name": "Default"}}},
    }});

    // Act
    let r = t
        .http
        .post(format!("{}/auth/tokens", t.sim.auth_url()))
        .json(&body)
        .send()
        .await
        .unwrap();

    // Assert
    assert_eq!(r.status(), StatusCode::CREATED);
    assert!(r.headers().contains_key("x-subject-token"));
    let token: Value = r.json().await.unwrap();
    let token = &token["token"];
    assert_eq!(token["project"]["name"], "admin");
    assert_eq!(token["user"]["name"], "admin");
    assert!(token["expires_at"].as_str().unwrap().ends_with('Z'));
    assert!(
        token["roles"]
            .as_array()
            .unwrap()
            .iter()
            .any(|r| r["name"] == "admin")
    );
    let types: Vec<&str> = token["catalog"]
        .as_array()
        .unwrap()
        .iter()
        .map(|s| s["type"].as_str().unwrap())
        .collect();
    for kind in ["identity", "compute", "image", "volumev3", "block-storage"] {
        assert!(types.contains(&kind), "{kind} missing from {types:?}");
    }
    for service in token["catalog"].as_array().unwrap() {
        let interfaces: Vec<&str> = service["endpoints"]
            .as_array()
            .unwrap()
            .iter()
            .map(|e| e["interface"].as_str().unwrap())
            .collect();
        assert_eq!(interfaces, ["public", "internal", "admin"]);
        for e in service["endpoints"].as_array().unwrap() {
            assert!(e["url"].as_str().unwrap().starts_with(&t.sim.base_url()));
            assert_eq!(e["region_id"], "RegionOne");
        }
    }
}

#[tokio::test]
async fn application_credential_gets_a_scoped_token() {
    let t = spawn().await;
    let ac = &t.sim.config().application_credential;
    let body = json!({"auth": {"identity": {"methods": ["application_credential"], "application_credential": {"id": ac.id, "secret": ac.secret}}}});
    let r = t
        .http
        .post(format!("{}/auth/tokens", t.sim.auth_url()))
        .json(&body)
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), StatusCode::CREATED);
    let token: Value = r.json().await.unwrap();
    assert_eq!(token["token"]["methods"], json!(["application_credential"]));
    assert_eq!(
        token["token"]["application_credential"]["id"],
        ac.id.as_str()
    );
    assert!(token["token"]["catalog"].is_array());
}

#[tokio::test]
async fn wrong_password_gets_401_in_keystones_error_shape() {
    let t = spawn().await;
    let body = json!({"auth": {"identity": {"methods": ["password"], "password": {"user": {"name": "admin", "domain": {"name": "Default"}, "password": "nope"}}}}});
    let r = t
        .http
        .post(format!("{}/auth/tokens", t.sim.auth_url()))
        .json(&body)
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), StatusCode::UNAUTHORIZED);
    let body: Value = r.json().await.unwrap();
    assert_eq!(body["error"]["code"], 401);
    assert_eq!(body["error"]["title"], "Unauthorized");
}

#[tokio::test]
async fn expired_tokens_get_401_until_a_new_token_is_issued() {
    // Arrange
    let mut t = spawn().await;
    assert_eq!(
        t.call(Method::GET, "/compute/v2.1/servers", None, None)
            .await
            .status(),
        StatusCode::OK
    );

    // Act
    t.sim.expire_tokens();
    let r = t
        .call(Method::GET, "/compute/v2.1/servers", None, None)
        .await;

    // Assert
    assert_eq!(r.status(), StatusCode::UNAUTHORIZED);
    assert!(
        r.headers()["www-authenticate"]
            .to_str()
            .unwrap()
            .starts_with("Keystone uri=")
    );
    let glance = t.call(Method::GET, "/image/v2/images", None, None).await;
    assert_eq!(glance.status(), StatusCode::UNAUTHORIZED);
    t.token = crate::helpers::password_token(&t.http, &t.sim).await;
    assert_eq!(
        t.call(Method::GET, "/compute/v2.1/servers", None, None)
            .await
            .status(),
        StatusCode::OK
    );
}

#[tokio::test]
async fn tokens_expire_after_the_configured_ttl() {
    let t = spawn_with(SimConfig::default().with_token_ttl(Duration::from_millis(150))).await;
    assert_eq!(
        t.call(Method::GET, "/volume/v3/volumes", None, None)
            .await
            .status(),
        StatusCode::OK
    );
    tokio::time::sleep(Duration::from_millis(300)).await;
    assert_eq!(
        t.call(Method::GET, "/volume/v3/volumes", None, None)
            .await
            .status(),
        StatusCode::UNAUTHORIZED
    );
}

#[tokio::test]
async fn version_discovery_needs_no_token() {
    let t = spawn().await;
    let r = t
        .http
        .get(format!("{}/identity/v3", t.sim.base_url()))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), StatusCode::OK);
    let v: Value = r.json().await.unwrap();
    assert_eq!(v["version"]["id"], "v3.14");
    let r = t
        .http
        .get(format!("{}/volume/", t.sim.base_url()))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), StatusCode::MULTIPLE_CHOICES);
    // Cinder's /v3/ needs a token, as keystonemiddleware guards it.
    let r = t
        .http
        .get(format!("{}/volume/v3/", t.sim.base_url()))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), StatusCode::UNAUTHORIZED);
}

#[tokio::test]
async fn the_member_users_token_has_member_and_reader_but_not_admin() {
    // Arrange
    let t = spawn().await;
    let member = crate::helpers::member_token(&t.http, &t.sim).await;

    // Act
    let r = t
        .http
        .get(format!("{}/auth/tokens", t.sim.auth_url()))
        .header("x-auth-token", &t.token)
        .header("x-subject-token", &member)
        .send()
        .await
        .unwrap();

    // Assert
    assert_eq!(r.status(), StatusCode::OK);
    let token: Value = r.json().await.unwrap();
    let roles: Vec<&str> = token["token"]["roles"]
        .as_array()
        .unwrap()
        .iter()
        .map(|r| r["name"].as_str().unwrap())
        .collect();
    assert_eq!(roles, ["member", "reader"]);
    assert_eq!(token["token"]["user"]["name"], "member");
    assert_eq!(token["token"]["project"]["id"], t.sim.project_id().as_str());
}
