//! Authentication with `--auth keystone`: tokens validated by the simulator's
//! Keystone, cached by hash until the earlier of their expiry and the TTL;
//! 401 with the Keystone challenge, 503 when Keystone cannot answer; the
//! probes and the document open to all. And `--auth none`, which says so.

use std::time::Duration;

use reqwest::{Method, header};
use serde_json::json;
use sqlx::PgPool;
use stacksnap_sim::{Fault, FaultRule, SimConfig};

use crate::helpers::{
    Captured, capture_logs, policy_body, problem, sim_token, spawn_app, spawn_app_with_keystone,
};

const VALIDATIONS: &str = "keystone.validate_token";
const FIVE_MINUTES: Duration = Duration::from_secs(300);

#[sqlx::test]
async fn a_request_without_a_token_is_401_with_the_keystone_challenge(pool: PgPool) {
    // Arrange
    let (app, sim) = spawn_app_with_keystone(pool, SimConfig::default(), FIVE_MINUTES).await;

    // Act: a read, and a write whose body is also wrong (authentication comes first).
    let read = app.get("/v1/policies").await;
    let write = app
        .client
        .post(app.url("/v1/policies"))
        .header(header::CONTENT_TYPE, "text/plain")
        .body("not json")
        .send()
        .await
        .unwrap();
    let unknown = app.get("/v1/no-such-thing").await;

    // Assert
    for response in [read, write, unknown] {
        let challenge = response.headers()[header::WWW_AUTHENTICATE]
            .to_str()
            .unwrap()
            .to_owned();
        assert_eq!(challenge, format!("Keystone uri=\"{}\"", sim.auth_url()));
        let body = problem(response, 401).await;
        assert_eq!(body["type"], "urn:stacksnap:problem:unauthenticated");
        assert!(body["detail"].as_str().unwrap().contains("X-Auth-Token"));
    }
    assert_eq!(sim.count(VALIDATIONS), 0, "nothing to ask Keystone about");
}

#[sqlx::test]
async fn an_invalid_token_is_401_and_keystone_is_asked_once(pool: PgPool) {
    // Arrange
    let (app, sim) = spawn_app_with_keystone(pool, SimConfig::default(), FIVE_MINUTES).await;

    // Act
    let first = app
        .with_token(Method::GET, "/v1/jobs", "gAAAAABnot-a-token")
        .send()
        .await
        .unwrap();
    let again = app
        .with_token(Method::DELETE, "/v1/policies/x", "gAAAAABnot-a-token")
        .send()
        .await
        .unwrap();
    let empty = app
        .with_token(Method::GET, "/v1/jobs", "")
        .send()
        .await
        .unwrap();

    // Assert
    for response in [first, again, empty] {
        assert!(response.headers().contains_key(header::WWW_AUTHENTICATE));
        problem(response, 401).await;
    }
    assert_eq!(
        sim.count(VALIDATIONS),
        1,
        "an unknown token is remembered too"
    );
}

#[sqlx::test]
async fn a_valid_token_is_validated_once_while_cached(pool: PgPool) {
    // Arrange
    let (app, sim) = spawn_app_with_keystone(pool, SimConfig::default(), FIVE_MINUTES).await;
    let demo = sim_token(&sim, "demo").await;
    sim.clear_requests();

    // Act
    for _ in 0..3 {
        let response = app
            .with_token(Method::GET, "/v1/policies", &demo.value)
            .send()
            .await
            .unwrap();
        assert_eq!(response.status(), 200);
    }

    // Assert
    assert_eq!(sim.count(VALIDATIONS), 1);
    let validation = sim
        .requests()
        .into_iter()
        .find(|r| r.operation == VALIDATIONS)
        .unwrap();
    assert_eq!(validation.path, "/identity/v3/auth/tokens");
    assert_eq!(validation.query, "nocatalog=1", "the catalog is of no use");
}

#[sqlx::test]
async fn a_cached_token_is_validated_again_once_the_cache_ttl_has_passed(pool: PgPool) {
    // Arrange: a short cache TTL; Keystone's tokens live an hour.
    let ttl = Duration::from_millis(400);
    let (app, sim) = spawn_app_with_keystone(pool, SimConfig::default(), ttl).await;
    let demo = sim_token(&sim, "demo").await;
    let list = || async {
        app.with_token(Method::GET, "/v1/policies", &demo.value)
            .send()
            .await
            .unwrap()
            .status()
    };
    assert_eq!(list().await, 200);
    sim.clear_requests();

    // Act: Keystone forgets every token (a revocation); the cache still holds it...
    sim.expire_tokens();
    let while_cached = list().await;
    let asked_while_cached = sim.count(VALIDATIONS);
    tokio::time::sleep(ttl + Duration::from_millis(100)).await;
    // ... until the TTL has passed: then Keystone is asked, and says no.
    let after_ttl = list().await;

    // Assert
    assert_eq!(
        while_cached, 200,
        "a revoked token works until the TTL passes"
    );
    assert_eq!(asked_while_cached, 0);
    assert_eq!(after_ttl, 401);
    // The service's own token went too: its first validation is refused (401)
    // and sent again with a new one; Keystone then says it does not know the token.
    let refused = sim
        .requests()
        .into_iter()
        .filter(|r| r.operation == VALIDATIONS && r.status == 404)
        .count();
    assert_eq!(refused, 1, "validated again after the TTL");
}

#[sqlx::test]
async fn a_token_is_validated_again_once_it_has_expired_and_is_then_refused(pool: PgPool) {
    // Arrange: Keystone's tokens live 2 s, the cache would keep them 5 min.
    let config = SimConfig::default().with_token_ttl(Duration::from_secs(2));
    let (app, sim) = spawn_app_with_keystone(pool, config, FIVE_MINUTES).await;
    let demo = sim_token(&sim, "demo").await;
    let list = || async {
        app.with_token(Method::GET, "/v1/runs", &demo.value)
            .send()
            .await
            .unwrap()
    };
    assert_eq!(list().await.status(), 200);
    assert_eq!(list().await.status(), 200);
    let asked_before = sim.count(VALIDATIONS);

    // Act
    tokio::time::sleep(Duration::from_millis(2_200)).await;
    let expired = list().await;

    // Assert
    assert_eq!(asked_before, 1, "cached while the token lived");
    assert!(expired.headers().contains_key(header::WWW_AUTHENTICATE));
    problem(expired, 401).await;
    assert_eq!(sim.count(VALIDATIONS), 2, "the expired entry was not used");
}

#[sqlx::test]
async fn keystone_unreachable_is_503_not_401(pool: PgPool) {
    // Arrange
    let (app, sim) = spawn_app_with_keystone(pool, SimConfig::default(), FIVE_MINUTES).await;
    let demo = sim_token(&sim, "demo").await;
    sim.inject(FaultRule::unavailable(VALIDATIONS));

    // Act
    let response = app
        .with_token(Method::GET, "/v1/policies", &demo.value)
        .send()
        .await
        .unwrap();

    // Assert
    assert!(!response.headers().contains_key(header::WWW_AUTHENTICATE));
    let body = problem(response, 503).await;
    assert_eq!(body["openstack"]["service"], "keystone");
    assert_eq!(body["openstack"]["operation"], "validate_token");
    assert!(
        !body.to_string().contains(&demo.value),
        "the token is not repeated"
    );

    // Once Keystone answers again, so does the service (nothing was cached).
    sim.clear_faults();
    let recovered = app
        .with_token(Method::GET, "/v1/policies", &demo.value)
        .send()
        .await
        .unwrap();
    assert_eq!(recovered.status(), 200);
}

#[sqlx::test]
async fn a_token_scoped_to_no_project_is_403(pool: PgPool) {
    // Arrange: the admin's system-scoped token.
    let (app, sim) = spawn_app_with_keystone(pool, SimConfig::default(), FIVE_MINUTES).await;
    let system = sim_token(&sim, "system-admin").await;
    assert_eq!(system.project_id, "", "a system-scoped token");

    // Act
    let response = app
        .with_token(Method::GET, "/v1/policies", &system.value)
        .send()
        .await
        .unwrap();

    // Assert
    let body = problem(response, 403).await;
    assert!(body["detail"].as_str().unwrap().contains("project"));
}

#[sqlx::test]
async fn the_probes_and_the_document_need_no_token(pool: PgPool) {
    // Arrange
    let (app, _sim) = spawn_app_with_keystone(pool, SimConfig::default(), FIVE_MINUTES).await;

    // Act and assert
    for path in ["/healthz", "/readyz", "/openapi.json", "/docs/"] {
        let response = app.get(path).await;
        assert_eq!(response.status(), 200, "{path}");
    }
    let ready: serde_json::Value = app.get("/readyz").await.json().await.unwrap();
    assert_eq!(
        ready,
        json!({"status": "ready"}),
        "no warning with keystone"
    );
}

#[sqlx::test]
async fn without_authentication_every_request_is_an_admin_of_default_and_readyz_says_so(
    pool: PgPool,
) {
    // Arrange
    let app = spawn_app(pool).await;

    // Act
    let created = app.create_policy(&policy_body("nightly")).await;
    let ready: serde_json::Value = app.get("/readyz").await.json().await.unwrap();
    let all = app.get("/v1/policies?all_projects=true").await;

    // Assert
    assert_eq!(created["project_id"], "default");
    assert_eq!(
        created["created_by"],
        serde_json::Value::Null,
        "no user is known"
    );
    assert_eq!(created["updated_by"], serde_json::Value::Null);
    assert!(
        ready["warning"]
            .as_str()
            .unwrap()
            .contains("authentication is off")
    );
    assert_eq!(all.status(), 200, "an admin may list every project");
}

#[sqlx::test]
async fn a_keystone_error_that_echoes_the_callers_token_is_retried_and_answered_without_it(
    pool: PgPool,
) {
    // Arrange: Keystone fails validation with a message that quotes the token asked about.
    let (app, sim) = spawn_app_with_keystone(pool, SimConfig::default(), FIVE_MINUTES).await;
    let demo = sim_token(&sim, "demo").await;
    sim.inject(FaultRule::new(
        VALIDATIONS,
        Fault::Error {
            status: 503,
            retry_after: None,
            message: Some(format!("cannot validate {} now", demo.value)),
        },
    ));
    let captured = Captured::default();
    let logging = capture_logs(&captured);

    // Act
    let response = app
        .with_token(Method::GET, "/v1/policies", &demo.value)
        .send()
        .await
        .unwrap();

    // Assert
    let body = problem(response, 503).await;
    drop(logging);
    let logs = captured.text();
    assert!(
        logs.contains("retrying OpenStack call"),
        "the capture saw the retry"
    );
    assert!(sim.count(VALIDATIONS) >= 2, "the validation was retried");
    assert!(!logs.contains(&demo.value), "the caller's token was logged");
    assert!(
        !body.to_string().contains(&demo.value),
        "the caller's token was answered: {body}"
    );
}

#[tokio::test]
async fn keystone_mode_refuses_to_start_with_a_service_that_cannot_log_in_with_a_password() {
    // Arrange: the same simulator user, once with its password, once with an
    // application credential (Keystone scopes only a password login to a trust,
    // so with the latter every tenant's policy would fail at its first run).
    let sim = stacksnap_sim::Simulator::start(SimConfig::default(), "127.0.0.1:0".parse().unwrap())
        .unwrap();
    let keystone = stacksnap::config::Settings {
        auth: stacksnap::config::AuthMode::Keystone,
        ..crate::helpers::test_settings()
    };
    let none = stacksnap::config::Settings {
        auth: stacksnap::config::AuthMode::None,
        ..crate::helpers::test_settings()
    };
    let password = crate::helpers::sim_cloud(&sim, "stacksnap-sim");
    let application_credential = crate::helpers::sim_cloud(&sim, "stacksnap-sim-appcred");

    // Act
    let refused = stacksnap::startup::authenticator(&keystone, Some(&application_credential));
    let with_password = stacksnap::startup::authenticator(&keystone, Some(&password));
    let without_tenants = stacksnap::startup::authenticator(&none, Some(&application_credential));

    // Assert
    let error = refused
        .expect_err("keystone mode started with an application credential")
        .to_string();
    assert!(error.contains("password"), "{error}");
    assert!(error.contains("application credential"), "{error}");
    assert!(with_password.is_ok());
    assert!(
        without_tenants.is_ok(),
        "no trust is made without authentication"
    );
}
