//! Tenancy against a real cloud (issue 10's proof): the whole service, API and
//! engine, in keystone mode with the service's own credentials, called with the
//! tokens of a member of the tenant's project, a reader of it and a member of
//! another project (who is who, and the env vars that name them: `tenants`).
//!
//! The member builds its own servers, creates a policy (a Keystone trust from it
//! to the service user is made), runs it, and the images and Cinder snapshots
//! are in its project, as is a one-off snapshot made with its own token; the
//! other project's member finds none of it and changes nothing; the reader reads
//! but may not write; deleting the policy with its snapshots removes them from
//! Glance and Cinder, and every trust the service made is deleted in Keystone.

mod artefacts;
mod isolation;
mod tenants;

use std::{
    sync::Arc,
    time::{Duration, Instant},
};

use chrono::TimeDelta;
use reqwest::Method;
use serde_json::json;
use sqlx::PgPool;
use stacksnap::{
    clock::SystemClock,
    config::{AuthMode, Settings},
    engine::EngineConfig,
    openstack::{CloudConfig, OpenStack, SessionOptions},
};

use self::{
    artefacts::{
        artefacts_are_deleted, check_artefacts, check_trust, delete_leftover_trusts,
        one_off_snapshot, trusts_are_deleted,
    },
    isolation::{Owned, a_reader_reads_but_may_not_write, another_project_finds_nothing},
    tenants::{Api, Tenant, other_project_config, reader_config, service_cloud},
};
use super::{cloud::Fixture, engine_config};
use crate::helpers::{real_cloud_config, start_service_with, test_settings};

/// Retention and trust retirement run every second here, and a trust may be
/// deleted 5 s after it was made once nothing refers to it.
fn tenancy_engine_config() -> EngineConfig {
    EngineConfig {
        prune_interval: Duration::from_secs(1),
        trusts_interval: Duration::from_secs(1),
        trust_grace: TimeDelta::seconds(5),
        ..engine_config()
    }
}

#[sqlx::test]
#[ignore = "needs a real OpenStack: set STACKSNAP_E2E_CLOUD and OS_CLIENT_CONFIG_FILE \
            (STACKSNAP_E2E_SERVICE_CLOUD, default osrig-admin, for the service)"]
async fn a_members_policy_acts_in_its_project_with_its_trust_and_no_other_project_sees_it(
    pool: PgPool,
) {
    let service = service_cloud();
    let member_config = real_cloud_config();
    let member_cloud = cloud_of(&member_config);
    let started = Instant::now();
    let fixture = Fixture::create(&member_cloud, &member_config).await;
    eprintln!("tenancy: servers built in {:?}", started.elapsed());
    // Clean up even when an assertion fails: run the checks in their own task.
    let checks = exercise(
        pool.clone(),
        service.clone(),
        member_config,
        fixture.clone(),
    );
    let result = tokio::spawn(checks).await;
    fixture.clean_up(&member_cloud).await;
    delete_leftover_trusts(&pool, &service).await;
    eprintln!("tenancy: done in {:?}", started.elapsed());
    if let Err(failure) = result {
        std::panic::resume_unwind(failure.into_panic());
    }
}

fn cloud_of(config: &CloudConfig) -> OpenStack {
    OpenStack::new(config.clone(), SessionOptions::default()).unwrap()
}

async fn exercise(pool: PgPool, service: OpenStack, member_config: CloudConfig, fixture: Fixture) {
    let started = Instant::now();
    let settings = Settings {
        auth: AuthMode::Keystone,
        ..test_settings()
    };
    let running = start_service_with(
        settings,
        pool.clone(),
        Arc::new(SystemClock),
        Some(service.clone()),
        tenancy_engine_config(),
    )
    .await;
    let api = Api::new(running.local_addr());
    let member = Tenant::log_in("member", &member_config).await;
    let reader = Tenant::log_in("reader", &reader_config(&member_config)).await;
    let other_config = other_project_config();
    let other = Tenant::log_in("other project's member", &other_config).await;
    assert_eq!(reader.project_id, member.project_id);
    assert_ne!(other.project_id, member.project_id);

    // The member's policy over its two servers (by tag), with its trust, run by hand.
    let body = json!({
        "name": "e2e-tenancy", "resource_type": "server",
        "targets": {"selector": {"tags": [fixture.tag]}},
        "schedules": [{"cron": "@daily"}], "retention": {"keep_last": 2},
        "options": {"metadata": {"suite": "acceptance"}}
    });
    let policy = api
        .expect(&member, Method::POST, "/v1/policies", Some(&body), 201)
        .await;
    let policy_id = policy["id"].as_str().unwrap().to_owned();
    assert_eq!(policy["project_id"], member.project_id.as_str());
    assert_eq!(policy["created_by"], member.user_id.as_str());
    let policy_trust = check_trust(&pool, &service, &member, &policy).await;
    let path = format!("/v1/policies/{policy_id}/run");
    let run = api.expect(&member, Method::POST, &path, None, 202).await;
    let run_id = run["id"].as_str().unwrap().to_owned();
    assert_eq!(run["created_by"], member.user_id.as_str());
    let run = wait_for_run(&api, &member, &run_id).await;
    eprintln!("tenancy: run ended {:?} after start", started.elapsed());
    assert_eq!(run["status"], "succeeded", "{run}");

    // Everything it made is in the member's project.
    let path = format!("/v1/jobs?run_id={run_id}");
    let jobs = api.expect(&member, Method::GET, &path, None, 200).await["items"].clone();
    let path = format!("/v1/snapshots?policy_id={policy_id}");
    let snapshots = api.expect(&member, Method::GET, &path, None, 200).await["items"].clone();
    let (jobs, snapshots) = (jobs.as_array().unwrap(), snapshots.as_array().unwrap());
    assert_eq!(jobs.len(), 2, "both servers were selected: {jobs:?}");
    assert_eq!(snapshots.len(), 2, "{snapshots:?}");
    check_artefacts(&service, &member, &fixture, jobs).await;
    let (one_off, one_off_trust) = one_off_snapshot(&api, &pool, &service, &member, &fixture).await;

    // Nobody else sees or changes anything; the reader only reads.
    let owned = Owned {
        policy,
        run_id,
        job_id: jobs[0]["id"].as_str().unwrap().to_owned(),
        snapshots: snapshots.clone(),
    };
    another_project_finds_nothing(&api, &other, &cloud_of(&other_config), &owned).await;
    a_reader_reads_but_may_not_write(&api, &reader, &owned).await;
    owned.is_unchanged(&api, &member).await;

    // Deleting the policy with its snapshots, and the one-off snapshot on its own,
    // empties Glance and Cinder, and the trusts are deleted in Keystone.
    let path = format!("/v1/policies/{policy_id}?snapshots=delete");
    api.expect(&member, Method::DELETE, &path, None, 204).await;
    let deleting = Instant::now();
    let path = format!("/v1/snapshots/{}", one_off["id"].as_str().unwrap());
    api.expect(&member, Method::DELETE, &path, None, 202).await;
    let all = [snapshots, &[one_off][..]].concat();
    artefacts_are_deleted(&api, &service, &member, &all).await;
    eprintln!("tenancy: snapshots deleted in {:?}", deleting.elapsed());
    trusts_are_deleted(&pool, &service, &[&policy_trust, &one_off_trust]).await;
    eprintln!(
        "tenancy: trusts deleted {:?} after the policy",
        deleting.elapsed()
    );
    running.shutdown_token().cancel();
    running.stopped().await.unwrap();
}

async fn wait_for_run(api: &Api, member: &Tenant, run_id: &str) -> serde_json::Value {
    let deadline = Instant::now() + Duration::from_secs(300);
    let path = format!("/v1/runs/{run_id}");
    loop {
        let run = api.expect(member, Method::GET, &path, None, 200).await;
        if run["status"] != "running" {
            return run;
        }
        assert!(
            Instant::now() < deadline,
            "not finished in 5 minutes: {run}"
        );
        tokio::time::sleep(Duration::from_secs(1)).await;
    }
}
