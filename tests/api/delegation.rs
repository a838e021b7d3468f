//! The HTTP edge of delegation in keystone mode: every policy is made with a
//! trust, on an API-only replica too; a one-off snapshot keeps its caller's
//! token only where no trust could be made; an admin acts in another project
//! only through a trust Keystone agrees to.

use std::sync::Arc;

use serde_json::json;
use sqlx::PgPool;
use stacksnap::{
    config::{AuthMode, Settings},
    engine::EngineConfig,
    startup::{self, Dependencies, RunningService},
};
use stacksnap_sim::{Fault, FaultRule, SimConfig, SimHandle, Simulator};
use uuid::Uuid;

use crate::helpers::{policy_body, sim_cloud, sim_token, test_settings};

/// An API-only replica (`serve --no-engine --auth keystone`); its state holds
/// the cloud when `cloud_in_state`.
async fn api_only(pool: PgPool, cloud_in_state: bool) -> (RunningService, SimHandle) {
    let sim = Simulator::start(SimConfig::default(), "127.0.0.1:0".parse().unwrap()).unwrap();
    let cloud = sim_cloud(&sim, "stacksnap-sim");
    let settings = Settings {
        auth: AuthMode::Keystone,
        no_engine: true,
        ..test_settings()
    };
    let deps = Dependencies {
        db: pool,
        clock: Arc::new(stacksnap::clock::SystemClock),
        auth: startup::authenticator(&settings, Some(&cloud)).unwrap(),
        cloud: cloud_in_state.then_some(cloud),
    };
    let service = startup::start(&settings, deps, EngineConfig::default())
        .await
        .unwrap();
    (service, sim)
}

async fn post(
    service: &RunningService,
    token: &str,
    path: &str,
    body: &serde_json::Value,
) -> (u16, String) {
    let response = reqwest::Client::new()
        .post(format!("http://{}{path}", service.local_addr()))
        .header("X-Auth-Token", token)
        .json(body)
        .send()
        .await
        .unwrap();
    (response.status().as_u16(), response.text().await.unwrap())
}

#[sqlx::test]
async fn an_api_only_replica_makes_each_policy_with_its_trust(pool: PgPool) {
    let (service, sim) = api_only(pool.clone(), true).await;
    let demo = sim_token(&sim, "demo").await;
    let (status, text) = post(
        &service,
        &demo.value,
        "/v1/policies",
        &policy_body("nightly"),
    )
    .await;
    assert_eq!(status, 201, "{text}");
    let trust: Option<String> = sqlx::query_scalar("select trust_id from policy")
        .fetch_one(&pool)
        .await
        .unwrap();
    let trust = trust.expect("the policy holds a trust");
    assert!(!text.contains(&trust), "the trust id is never shown");
    assert!(sim.trusts().iter().any(|t| t.id == trust));
}

#[sqlx::test]
async fn a_replica_that_cannot_make_a_trust_makes_no_policy(pool: PgPool) {
    let (service, sim) = api_only(pool.clone(), false).await;
    let demo = sim_token(&sim, "demo").await;
    let (status, text) = post(
        &service,
        &demo.value,
        "/v1/policies",
        &policy_body("nightly"),
    )
    .await;
    assert_eq!(status, 503, "{text}");
    let policies: i64 = sqlx::query_scalar("select count(*) from policy")
        .fetch_one(&pool)
        .await
        .unwrap();
    assert_eq!(
        policies, 0,
        "no policy that would act with the service's credentials"
    );
}

#[sqlx::test]
async fn a_one_off_with_a_trust_keeps_no_token_at_rest(pool: PgPool) {
    let (service, sim) = api_only(pool.clone(), true).await;
    let demo = sim_token(&sim, "demo").await;
    let body = json!({"resource_type": "volume", "resource_id": Uuid::new_v4()});
    let (status, text) = post(&service, &demo.value, "/v1/snapshots", &body).await;
    assert_eq!(status, 202, "{text}");
    let (token, trust, delegated): (Option<String>, Option<String>, bool) =
        sqlx::query_as("select user_token, trust_id, delegated from run")
            .fetch_one(&pool)
            .await
            .unwrap();
    assert_eq!(
        token, None,
        "the trust acts: the bearer token is not stored"
    );
    assert!(trust.is_some() && delegated);
}

#[sqlx::test]
async fn an_admins_one_off_in_another_project_acts_only_through_a_trust(pool: PgPool) {
    let (service, sim) = api_only(pool.clone(), true).await;
    let admin = sim_token(&sim, "admin").await;
    let demo = sim_token(&sim, "demo").await;
    let body = json!({"resource_type": "volume", "resource_id": Uuid::new_v4(),
        "project_id": demo.project_id});
    let (status, text) = post(&service, &admin.value, "/v1/snapshots", &body).await;
    assert_eq!(
        status, 403,
        "no role in demo, no trust, no snapshot: {text}"
    );
    assert!(text.contains("Keystone refused"), "{text}");
    let runs: i64 = sqlx::query_scalar("select count(*) from run")
        .fetch_one(&pool)
        .await
        .unwrap();
    assert_eq!(runs, 0);

    sim.grant_role("admin", "demo", stacksnap_sim::Role::Member)
        .unwrap();
    let (status, text) = post(&service, &admin.value, "/v1/snapshots", &body).await;
    assert_eq!(status, 202, "{text}");
    let (token, trust): (Option<String>, Option<String>) =
        sqlx::query_as("select user_token, trust_id from run")
            .fetch_one(&pool)
            .await
            .unwrap();
    assert_eq!(
        token, None,
        "the admin's own token (of its project) never acts in demo's"
    );
    assert!(trust.is_some());
}

#[sqlx::test]
async fn a_refused_trust_whose_message_echoes_the_callers_token_is_answered_without_it(
    pool: PgPool,
) {
    // Arrange: Keystone refuses the trust with a message that quotes the token it was sent.
    let (service, sim) = api_only(pool.clone(), true).await;
    let demo = sim_token(&sim, "demo").await;
    sim.inject(FaultRule::new(
        "keystone.create_trust",
        Fault::Error {
            status: 403,
            retry_after: None,
            message: Some(format!("token {} may not delegate", demo.value)),
        },
    ));

    // Act
    let (status, text) = post(
        &service,
        &demo.value,
        "/v1/policies",
        &policy_body("nightly"),
    )
    .await;

    // Assert
    assert_eq!(status, 403, "{text}");
    assert!(
        text.contains("may not delegate"),
        "Keystone's reason is kept: {text}"
    );
    assert!(
        !text.contains(&demo.value),
        "the caller's token was answered: {text}"
    );
}
