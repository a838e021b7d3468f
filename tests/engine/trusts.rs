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

/// Why the policy is broken, if it is.
async fn broken_error(h: &Harness, policy_id: Uuid) -> Option<Value> {
    sqlx::query_scalar("select broken_error from policy where policy_id = $1")
        .bind(policy_id)
        .fetch_one(&h.pool)
        .await
        .unwrap()
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
    let broken = broken_error(&h, policy_id).await;
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
        true,
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
        policies::delete_policy(
            &h.pool,
            &project,
            policy_id,
            None,
            true,
            h.clock.now(),
            "api"
        )
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

/// Found by review: each failed before its fix.
mod review {
    /// A policy stored without a trust (under `--auth none`, or by an
    /// API-only replica before the fix) never acts with the service's own
    /// credentials once the service authenticates its callers: it would
    /// snapshot any project's server named by id.
    #[sqlx::test]
    async fn a_policy_without_a_trust_is_broken_in_keystone_mode_not_run_as_the_service(
        pool: PgPool,
    ) {
        let h = harness_with(pool, SimConfig::default()).await;
        let (_, _, demo_project) = token_of(&h, "demo", "demo", "demo").await;
        let (alt_token, _, _) = token_of(&h, "alt", "alt", "alt").await;
        let alts_server = server_of(&h, &alt_token).await;
        let spec: stacksnap::domain::policy::PolicySpec = serde_json::from_value(json!({
            "name": "sneaky", "resource_type": "server", "targets": {"ids": [alts_server]},
            "schedules": [{"cron": "0 2 * * *", "timezone": "UTC"}], "retention": {"keep_last": 2}
        }))
        .unwrap();
        let valid = spec.validate(h.clock.now()).unwrap();
        let policy =
            policies::insert_policy(&h.pool, &demo_project, Uuid::now_v7(), &valid, None, None)
                .await
                .unwrap();
        let engine = stacksnap::engine::Engine::new(
            h.pool.clone(),
            h.cloud.clone(),
            std::sync::Arc::new(h.clock.clone()),
            stacksnap::engine::EngineConfig {
                requires_delegation: true,
                ..crate::helpers::engine_config()
            },
        );
        let run_id = runs::insert_manual_run(&h.pool, &policy, None, h.clock.now())
            .await
            .unwrap();
        for _ in 0..5 {
            engine.execute_next().await.unwrap();
        }
        let (status, error): (String, Value) =
            sqlx::query_as("select status, error from run where run_id = $1")
                .bind(run_id)
                .fetch_one(&h.pool)
                .await
                .unwrap();
        assert_eq!(
            (status.as_str(), &error["code"]),
            ("failed", &json!("trust_missing"))
        );
        let broken = broken_error(&h, policy.id).await;
        assert_eq!(broken.unwrap()["code"], "trust_missing");
        assert_eq!(h.sim.count("nova.create_image"), 0);
        assert_eq!(
            h.sim.count("nova.get_server"),
            0,
            "alt's server was not even read"
        );
    }

    use super::*;
    use stacksnap::{
        domain::adhoc::AdhocSnapshotRequest,
        store::{jobs, lifecycle, runs::RunAuthority},
    };

    async fn adhoc_in(
        h: &Harness,
        project: &str,
        server: &str,
        token: &str,
        expires: chrono::DateTime<chrono::Utc>,
    ) -> Uuid {
        let request: AdhocSnapshotRequest =
            serde_json::from_value(json!({"resource_type": "server", "resource_id": server}))
                .unwrap();
        let timeout = request.validate().unwrap();
        let job = request.job(timeout, h.clock.now());
        lifecycle::insert_adhoc_run(
            &h.pool,
            project,
            None,
            &job,
            RunAuthority {
                trust_id: None,
                user_token: Some((token, expires)),
            },
            h.clock.now(),
        )
        .await
        .unwrap();
        job.job_id
    }

    /// DESIGN: "A one-off job whose token and trust are both gone is followed
    /// with the service's credentials but never started with them".
    #[sqlx::test]
    async fn a_one_off_job_whose_token_ran_out_is_never_started_with_the_services_credentials(
        pool: PgPool,
    ) {
        let h = harness_with(pool, SimConfig::default()).await;
        let (token, _user, project) = token_of(&h, "demo", "demo", "demo").await;
        let server = server_of(&h, &token).await;
        // An application-credential token (no trust possible) with 90 s left,
        // or one whose job waited in the queue until its last two minutes.
        let job_id = adhoc_in(
            &h,
            &project,
            &server,
            &token,
            h.clock.now() + TimeDelta::seconds(90),
        )
        .await;
        let job = h.drive_in(&project, job_id).await;
        let owner = match job.image_id.as_deref() {
            Some(id) => h
                .cloud
                .glance()
                .get_image(id)
                .await
                .unwrap()
                .property("owner")
                .map(str::to_owned),
            None => None,
        };
        assert_eq!(
            h.sim.count("nova.create_image"),
            0,
            "nothing may be created with the service's credentials; image owner {owner:?}"
        );
    }

    /// The trustor loses the delegated role: Keystone answers 403 to the
    /// validation of the cached trust token, keystonemiddleware turns it into
    /// 503 at Nova. The job should fail as trust_refused and break the policy.
    #[sqlx::test]
    async fn a_trustor_losing_the_role_breaks_the_policy_instead_of_looking_like_an_outage(
        pool: PgPool,
    ) {
        let h = harness_with(pool, SimConfig::default()).await;
        let (token, user, project) = token_of(&h, "demo", "demo", "demo").await;
        let server = server_of(&h, &token).await;
        let (policy_id, _trust) = delegated_policy(&h, &token, &user, &project, &server).await;
        let first = run_once(&h, &project, policy_id).await;
        assert_eq!(first.status, JobStatus::Succeeded, "{:?}", first.error);
        h.sim
            .revoke_role("demo", "demo", stacksnap_sim::Role::Member)
            .unwrap();

        let policy = policies::fetch_policy(&h.pool, &project, policy_id)
            .await
            .unwrap()
            .unwrap();
        let run_id = runs::insert_manual_run(&h.pool, &policy, None, h.clock.now())
            .await
            .unwrap();
        let mut last = None;
        for _ in 0..400 {
            h.work().await;
            let job_id: Option<Uuid> =
                sqlx::query_scalar("select job_id from job where run_id = $1")
                    .bind(run_id)
                    .fetch_optional(&h.pool)
                    .await
                    .unwrap();
            let run_status: String = sqlx::query_scalar("select status from run where run_id = $1")
                .bind(run_id)
                .fetch_one(&h.pool)
                .await
                .unwrap();
            if let Some(job_id) = job_id {
                let job = jobs::fetch_job(&h.pool, project.as_str(), job_id)
                    .await
                    .unwrap()
                    .unwrap();
                last = Some((job.status, job.error.clone()));
                if job.status.is_terminal() {
                    break;
                }
            } else if run_status != "running" {
                break;
            }
            h.clock.advance(TimeDelta::seconds(30));
            tokio::time::sleep(std::time::Duration::from_millis(5)).await;
        }
        let broken = broken_error(&h, policy_id).await;
        assert_eq!(
            broken.map(|b| b["code"].clone()),
            Some(json!("trust_refused")),
            "job {last:?}"
        );
        assert_eq!(
            last.map(|(status, error)| (status, error.map(|e| e.0.code))),
            Some((JobStatus::Failed, Some("trust_refused".to_owned()))),
            "the job says why"
        );
    }

    /// The service's own password stops working (rotated, expired, locked):
    /// every trust login is a 401, and no policy is to blame.
    #[sqlx::test]
    async fn the_service_failing_its_own_login_breaks_no_policy(pool: PgPool) {
        let h = harness_with(pool, SimConfig::default()).await;
        let (token, user, project) = token_of(&h, "demo", "demo", "demo").await;
        let server = server_of(&h, &token).await;
        let (policy_id, _trust) = delegated_policy(&h, &token, &user, &project, &server).await;
        let pw = h.sim.config().admin.password.clone();
        let yaml = h.sim.clouds_yaml().replace(&pw, "rotated-elsewhere");
        let config = stacksnap::openstack::CloudConfig::from_clouds_yaml(
            &yaml,
            "stacksnap-sim",
            "simulator",
        )
        .unwrap();
        let bad =
            stacksnap::openstack::OpenStack::new(config, crate::helpers::quick_session()).unwrap();
        let engine = stacksnap::engine::Engine::new(
            h.pool.clone(),
            bad,
            std::sync::Arc::new(h.clock.clone()),
            crate::helpers::engine_config(),
        );
        let policy = policies::fetch_policy(&h.pool, &project, policy_id)
            .await
            .unwrap()
            .unwrap();
        runs::insert_manual_run(&h.pool, &policy, None, h.clock.now())
            .await
            .unwrap();
        for _ in 0..5 {
            let _ = engine.execute_next().await.unwrap();
        }
        let broken = broken_error(&h, policy_id).await;
        assert!(
            broken.is_none(),
            "the tenant's trust is fine; the service cannot log in: {broken:?}"
        );
    }

    #[sqlx::test]
    async fn debug_output_shows_no_trust_id_or_token(pool: PgPool) {
        let h = harness_with(pool, SimConfig::default()).await;
        let trusted = h.cloud.acting_as(&stacksnap::openstack::Authority::Trust(
            stacksnap::openstack::TrustId::new("TRUSTSECRET0123"),
        ));
        let engine_debug = format!("{:?}", h.engine);
        let cloud_debug = format!("{trusted:?}");
        let authority = RunAuthority {
            trust_id: Some("TRUSTSECRET0123"),
            user_token: Some(("gAAAAATOKENSECRET", h.clock.now())),
        };
        let run_debug = format!("{authority:?}");
        assert!(
            !cloud_debug.contains("TRUSTSECRET0123")
                && !engine_debug.contains("TRUSTSECRET0123")
                && !run_debug.contains("TOKENSECRET")
        );
    }

    /// A deletion that must search for an unclear create's pieces falls back to
    /// the service's credentials when the trust is gone; Cinder lists only the
    /// service's project without all_tenants, so the tenant's snapshot is
    /// "not found", the row is marked deleted, and the snapshot leaks.
    #[sqlx::test]
    async fn a_deletion_never_searches_with_the_services_credentials(pool: PgPool) {
        let h = harness_with(pool, SimConfig::default()).await;
        let (token, user, project) = token_of(&h, "demo", "demo", "demo").await;
        let r = reqwest::Client::new()
            .post(format!("{}/volume/v3/volumes", h.sim.base_url()))
            .header("X-Auth-Token", &token)
            .json(&json!({"volume": {"name": "db", "size": 1}}))
            .send()
            .await
            .unwrap();
        assert!(r.status().is_success(), "{}", r.status());
        let volume = r.json::<Value>().await.unwrap()["volume"]["id"]
            .as_str()
            .unwrap()
            .to_owned();
        for _ in 0..50 {
            if h.cloud
                .cinder()
                .get_volume(&volume)
                .await
                .map(|v| v.status == "available")
                .unwrap_or(false)
            {
                break;
            }
            tokio::time::sleep(std::time::Duration::from_millis(50)).await;
        }
        let secret = SecretString::from(token.clone());
        let who = Delegator {
            token: &secret,
            user_id: &user,
            application_credential: false,
            trust_scoped: false,
        };
        let trust = delegation::delegate(&h.cloud, &h.pool, &who, &project, h.clock.now())
            .await
            .unwrap();
        let spec: stacksnap::domain::policy::PolicySpec = serde_json::from_value(json!({
            "name": "db", "resource_type": "volume", "targets": {"ids": [volume]},
            "schedules": [{"cron": "0 2 * * *", "timezone": "UTC"}], "retention": {"keep_last": 2}
        }))
        .unwrap();
        let valid = spec.validate(h.clock.now()).unwrap();
        let policy =
            policies::insert_policy(&h.pool, &project, Uuid::now_v7(), &valid, None, Some(&user))
                .await
                .unwrap();
        trusts::set_policy_trust(&h.pool, policy.id, &trust)
            .await
            .unwrap();
        let job = run_once(&h, &project, policy.id).await;
        assert_eq!(job.status, JobStatus::Succeeded, "{:?}", job.error);
        let made = job.volume_snapshots.0[0].snapshot_id.clone();
        // The row of an unclear create: nothing recorded but the unclear create.
        sqlx::query("update job set create_unclear_at = $2 where job_id = $1")
            .bind(job.job_id)
            .bind(h.clock.now() - TimeDelta::hours(1))
            .execute(&h.pool)
            .await
            .unwrap();
        sqlx::query("update snapshot set volume_snapshots = '[]', state = 'deleting', not_before = $2 where job_id = $1").bind(job.job_id).bind(h.clock.now()).execute(&h.pool).await.unwrap();
        h.sim.delete_trust(trust.expose());
        let rows = h.settle_deletions(job.job_id).await;
        let still = h.cloud.cinder().get_snapshot(&made).await;
        assert!(
            still.is_err() || rows.iter().any(|(_, s)| s != "deleted"),
            "row says deleted, the tenant's snapshot {made} remains"
        );
    }
}
