//! A policy acts with its creator's authority through a Keystone trust: its
//! images and snapshots are made in and owned by the creator's project; a
//! trust Keystone refuses fails the job naming the policy and breaks the
//! policy; a trust is deleted once its policy is gone and its work has ended.

use chrono::TimeDelta;
use reqwest::StatusCode;
use secrecy::SecretString;
use serde_json::{Value, json};
use sqlx::PgPool;
use stacksnap::{
    clock::Clock as _,
    delegation::{self, Delegator},
    domain::job::JobStatus,
    store::{policies, runs, trusts},
};
use stacksnap_sim::SimConfig;
use uuid::Uuid;

use crate::helpers::{Harness, harness_with};

/// A token of a simulator user scoped to its project: (token, user id, project id).
async fn token_of(
    h: &Harness,
    user: &str,
    password: &str,
    project: &str,
) -> (String, String, String) {
    let body = json!({"auth": {
        "identity": {"methods": ["password"], "password": {"user": {"name": user, "domain": {"id": "default"}, "password": password}}},
        "scope": {"project": {"name": project, "domain": {"id": "default"}}},
    }});
    let r = reqwest::Client::new()
        .post(format!("{}/auth/tokens", h.sim.auth_url()))
        .json(&body)
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), StatusCode::CREATED);
    let token = r.headers()["x-subject-token"].to_str().unwrap().to_owned();
    let body: Value = r.json().await.unwrap();
    (
        token,
        body["token"]["user"]["id"].as_str().unwrap().to_owned(),
        body["token"]["project"]["id"].as_str().unwrap().to_owned(),
    )
}

/// An image-backed server of the token's project, made through Nova.
async fn server_of(h: &Harness, token: &str) -> String {
    let image = h.sim.create_image(&stacksnap_sim::ImageSeed {
        name: "cirros".into(),
        ..stacksnap_sim::ImageSeed::default()
    });
    let r = reqwest::Client::new()
        .post(format!("{}/compute/v2.1/servers", h.sim.base_url()))
        .header("X-Auth-Token", token)
        .header("OpenStack-API-Version", "compute 2.96")
        .json(&json!({"server": {"name": "web", "flavorRef": "1", "networks": "none", "imageRef": image}}))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), StatusCode::ACCEPTED);
    r.json::<Value>().await.unwrap()["server"]["id"]
        .as_str()
        .unwrap()
        .to_owned()
}

/// A policy of `project` for `server`, holding a trust from the user of `token`.
async fn delegated_policy(
    h: &Harness,
    token: &str,
    user_id: &str,
    project: &str,
    server: &str,
) -> (Uuid, String) {
    let token = SecretString::from(token.to_owned());
    let who = Delegator {
        token: &token,
        user_id,
        application_credential: false,
        trust_scoped: false,
    };
    let trust = delegation::delegate(&h.cloud, &h.pool, &who, project, h.clock.now())
        .await
        .unwrap();
    let spec: stacksnap::domain::policy::PolicySpec = serde_json::from_value(json!({
        "name": "nightly-web", "resource_type": "server", "targets": {"ids": [server]},
        "schedules": [{"cron": "0 2 * * *", "timezone": "UTC"}], "retention": {"keep_last": 2}
    }))
    .unwrap();
    let valid = spec.validate(h.clock.now()).unwrap();
    let policy = policies::insert_policy(
        &h.pool,
        project,
        Uuid::now_v7(),
        &valid,
        None,
        Some(user_id),
    )
    .await
    .unwrap();
    assert!(
        trusts::set_policy_trust(&h.pool, policy.id, &trust)
            .await
            .unwrap()
    );
    (policy.id, trust.expose().to_owned())
}

/// Runs the policy by hand and drives its one job to its end.
async fn run_once(h: &Harness, project: &str, policy_id: Uuid) -> stacksnap::store::jobs::Job {
    let policy = policies::fetch_policy(&h.pool, project, policy_id)
        .await
        .unwrap()
        .unwrap();
    let run_id = runs::insert_manual_run(&h.pool, &policy, None, h.clock.now())
        .await
        .unwrap();
    for _ in 0..100 {
        h.work().await;
        let job_id: Option<Uuid> = sqlx::query_scalar("select job_id from job where run_id = $1")
            .bind(run_id)
            .fetch_optional(&h.pool)
            .await
            .unwrap();
        if let Some(job_id) = job_id {
            return h.drive_in(project, job_id).await;
        }
        let status: String = sqlx::query_scalar("select status from run where run_id = $1")
            .bind(run_id)
            .fetch_one(&h.pool)
            .await
            .unwrap();
        assert_eq!(status, "running", "the run ended without a job");
        h.clock.advance(TimeDelta::milliseconds(200));
    }
    panic!("the run made no job");
}

#[sqlx::test]
async fn a_policy_snapshots_in_its_creators_project_with_the_trust(pool: PgPool) {
    let h = harness_with(pool, SimConfig::default()).await;
    let (token, user, project) = token_of(&h, "demo", "demo", "demo").await;
    let server = server_of(&h, &token).await;
    let (policy_id, trust) = delegated_policy(&h, &token, &user, &project, &server).await;

    let job = run_once(&h, &project, policy_id).await;

    assert_eq!(job.status, JobStatus::Succeeded, "{:?}", job.error);
    let image_id = job.image_id.clone().unwrap();
    let image = h.cloud.glance().get_image(&image_id).await.unwrap();
    assert_eq!(
        image.property("owner"),
        Some(project.as_str()),
        "the image belongs to the demo project"
    );
    assert_eq!(
        image.property("stacksnap_project_id"),
        Some(project.as_str())
    );
    let trusted = h.sim.trusts();
    let made = trusted
        .iter()
        .find(|t| t.id == trust)
        .expect("the trust exists");
    assert_eq!(made.trustor_user_id, user);
    assert_eq!(made.project_id.as_deref(), Some(project.as_str()));
    assert!(made.impersonation);
}

#[sqlx::test]
async fn a_trust_keystone_refuses_fails_the_job_naming_the_policy_and_breaks_it(pool: PgPool) {
    let h = harness_with(pool, SimConfig::default()).await;
    let (token, user, project) = token_of(&h, "demo", "demo", "demo").await;
    let server = server_of(&h, &token).await;
    let (policy_id, trust) = delegated_policy(&h, &token, &user, &project, &server).await;
    assert!(
        h.sim.delete_trust(&trust),
        "revoked, as a user deleting it would"
    );

    let run = policies::fetch_policy(&h.pool, &project, policy_id)
        .await
        .unwrap()
        .unwrap();
    let run_id = runs::insert_manual_run(&h.pool, &run, None, h.clock.now())
        .await
        .unwrap();
    h.work().await;

    let (status, error): (String, Value) =
        sqlx::query_as("select status, error from run where run_id = $1")
            .bind(run_id)
            .fetch_one(&h.pool)
            .await
            .unwrap();
    assert_eq!(status, "failed");
    assert_eq!(error["code"], "trust_refused");
    let message = error["message"].as_str().unwrap();
    assert!(message.contains("nightly-web"), "{message}");
    assert!(
        !message.contains(&trust),
        "the trust id never shows: {message}"
    );
    let broken: Option<Value> =
        sqlx::query_scalar("select broken_error from policy where policy_id = $1")
            .bind(policy_id)
            .fetch_one(&h.pool)
            .await
            .unwrap();
    assert_eq!(
        broken.unwrap()["code"],
        "trust_refused",
        "the policy shows state broken"
    );
    assert_eq!(
        h.sim.count("nova.create_image"),
        0,
        "nothing was created with other credentials"
    );
}

#[sqlx::test]
async fn a_job_whose_trust_breaks_after_its_run_was_resolved_fails_clearly(pool: PgPool) {
    let h = harness_with(pool, SimConfig::default()).await;
    let (token, user, project) = token_of(&h, "demo", "demo", "demo").await;
    let server = server_of(&h, &token).await;
    let (policy_id, trust) = delegated_policy(&h, &token, &user, &project, &server).await;
    let policy = policies::fetch_policy(&h.pool, &project, policy_id)
        .await
        .unwrap()
        .unwrap();
    let run_id = runs::insert_manual_run(&h.pool, &policy, None, h.clock.now())
        .await
        .unwrap();
    // Resolve the run only: its job exists, not started.
    let owner = Uuid::new_v4();
    let resolved =
        runs::claim_unresolved_run(&h.pool, owner, h.clock.now(), TimeDelta::seconds(60))
            .await
            .unwrap()
            .unwrap();
    stacksnap::engine::resolver::resolve_run(
        &h.pool,
        &h.cloud,
        &resolved,
        owner,
        h.clock.now(),
        TimeDelta::seconds(1),
    )
    .await
    .unwrap();
    let job_id: Uuid = sqlx::query_scalar("select job_id from job where run_id = $1")
        .bind(run_id)
        .fetch_one(&h.pool)
        .await
        .unwrap();
    h.sim.delete_trust(&trust);
    let job = h.drive_in(&project, job_id).await;
    assert_eq!(job.status, JobStatus::Failed);
    let error = job.error.unwrap().0;
    assert_eq!(error.code, "trust_refused");
    assert!(error.message.contains("nightly-web") && !error.message.contains(&trust));
    assert_eq!(h.sim.count("nova.create_image"), 0);
}

#[sqlx::test]
async fn a_trust_is_deleted_once_its_policy_is_gone_and_its_last_job_ended(pool: PgPool) {
    let h = harness_with(pool, SimConfig::default()).await;
    let (token, user, project) = token_of(&h, "demo", "demo", "demo").await;
    let server = server_of(&h, &token).await;
    let (policy_id, trust) = delegated_policy(&h, &token, &user, &project, &server).await;
    h.clock.advance(TimeDelta::hours(1));

    // Held by its policy: kept.
    assert_eq!(h.engine.retire_trusts().await.unwrap().deleted, 0);
    let job = run_once(&h, &project, policy_id).await;
    assert_eq!(job.status, JobStatus::Succeeded, "{:?}", job.error);

    // The policy is deleted with its snapshots: the trust stays while they are deleted.
    assert!(
        policies::delete_policy(&h.pool, &project, policy_id, None, true, h.clock.now())
            .await
            .unwrap()
    );
    sqlx::query("update snapshot set state = 'deleting', not_before = $2 where job_id = $1")
        .bind(job.job_id)
        .bind(h.clock.now() + TimeDelta::hours(1))
        .execute(&h.pool)
        .await
        .unwrap();
    assert_eq!(
        h.engine.retire_trusts().await.unwrap().deleted,
        0,
        "a deletion still needs it"
    );
    assert!(h.sim.trusts().iter().any(|t| t.id == trust));

    sqlx::query("update snapshot set not_before = $2 where job_id = $1")
        .bind(job.job_id)
        .bind(h.clock.now())
        .execute(&h.pool)
        .await
        .unwrap();
    let rows = h.settle_deletions(job.job_id).await;
    assert!(rows.iter().all(|(_, s)| s == "deleted"), "{rows:?}");
    let retired = h.engine.retire_trusts().await.unwrap();
    assert_eq!(retired.deleted, 1);
    assert!(
        !h.sim.trusts().iter().any(|t| t.id == trust),
        "deleted in Keystone"
    );
    let left: i64 = sqlx::query_scalar("select count(*) from trust")
        .fetch_one(&h.pool)
        .await
        .unwrap();
    assert_eq!(left, 0);
}

#[sqlx::test]
async fn a_token_from_an_application_credential_cannot_delegate(pool: PgPool) {
    let h = harness_with(pool, SimConfig::default()).await;
    let token = SecretString::from("whatever".to_owned());
    let who = Delegator {
        token: &token,
        user_id: "u",
        application_credential: true,
        trust_scoped: false,
    };
    let error = delegation::delegate(&h.cloud, &h.pool, &who, "p", h.clock.now())
        .await
        .unwrap_err();
    assert!(
        error.to_string().contains("application credential"),
        "{error}"
    );
    assert_eq!(
        h.sim.count("keystone.create_trust"),
        0,
        "refused before Keystone is asked"
    );
}

#[sqlx::test]
async fn keystone_refusing_a_trust_is_a_refusal_with_its_reason(pool: PgPool) {
    // The admin holds no role in the demo project.
    let h = harness_with(pool, SimConfig::default()).await;
    let (admin_token, admin, _) =
        token_of(&h, "admin", &h.sim.config().admin.password.clone(), "admin").await;
    let demo_project = h.sim.project_id_named("demo").unwrap();
    let token = SecretString::from(admin_token);
    let who = Delegator {
        token: &token,
        user_id: &admin,
        application_credential: false,
        trust_scoped: false,
    };
    let error = delegation::delegate(&h.cloud, &h.pool, &who, &demo_project, h.clock.now())
        .await
        .unwrap_err();
    assert!(
        matches!(error, delegation::DelegationError::Refused(_)),
        "{error:?}"
    );
}
