//! A volume-group policy against a real cloud, run with whatever credentials
//! `STACKSNAP_E2E_CLOUD` names (CI: the rig's `osrig-demo`, a project member):
//! it makes a group of the public group type `STACKSNAP_E2E_GROUP_TYPE`
//! (default `osrig-group`, see the rig's README) holding one volume of the
//! default volume type, fires a `volume_group` policy, checks the group
//! snapshot and its member in Cinder, prunes it, and removes what it made.

use std::{sync::Arc, time::Duration};

use reqwest::Method;
use serde_json::{Value, json};
use sqlx::PgPool;
use stacksnap::{
    clock::{Clock as _, SystemClock},
    domain::{
        job::{JobStatus, RunStatus},
        policy::PolicySpec,
    },
    engine::Engine,
    openstack::{
        OpenStack,
        session::{Call, Service},
    },
    startup::supervisor::Supervisor,
    store::{jobs, policies, runs, snapshots},
};
use tokio_util::sync::CancellationToken;
use uuid::Uuid;

use super::engine_config;
use crate::helpers::{real_cloud, volume_group};

/// The group and volume the test made.
#[derive(Debug, Clone)]
struct GroupFixture {
    group: String,
    volume: String,
}

async fn send(cloud: &OpenStack, call: Call) -> Value {
    let reply = cloud
        .session()
        .send(&call)
        .await
        .unwrap_or_else(|e| panic!("{e}"));
    if reply.body.is_empty() {
        Value::Null
    } else {
        serde_json::from_slice(&reply.body).unwrap()
    }
}

impl GroupFixture {
    async fn create(cloud: &OpenStack) -> Self {
        let group_type = std::env::var("STACKSNAP_E2E_GROUP_TYPE")
            .ok()
            .filter(|t| !t.is_empty())
            .unwrap_or_else(|| "osrig-group".into());
        let name = format!("e2e-group-{}", &Uuid::new_v4().simple().to_string()[..8]);
        let volume = send(
            cloud,
            Call::new(Service::Volume, "create_volume", Method::POST, "/volumes").json(
                json!({"volume": {"name": format!("{name}-data"), "size": 1, "volume_type": "__DEFAULT__"}}),
            ),
        )
        .await["volume"]["id"]
            .as_str()
            .unwrap()
            .to_owned();
        let mut status = String::new();
        for _ in 0..120 {
            status = cloud.cinder().get_volume(&volume).await.unwrap().status;
            if status != "creating" {
                break;
            }
            tokio::time::sleep(Duration::from_millis(500)).await;
        }
        assert_eq!(status, "available", "volume {volume}");
        let group = volume_group(cloud, &group_type, &[&volume]).await;
        Self { group, volume }
    }

    /// Deletes every group snapshot of the group, then the group with its volume.
    async fn clean_up(&self, cloud: &OpenStack) {
        for snapshot in cloud
            .cinder()
            .list_group_snapshots(Some(&self.group))
            .await
            .unwrap_or_default()
            .into_iter()
            .filter(|g| g.group_id.as_deref() == Some(self.group.as_str()))
        {
            let _ = cloud.cinder().delete_group_snapshot(&snapshot.id).await;
        }
        for _ in 0..60 {
            let left = cloud
                .cinder()
                .list_group_snapshots(Some(&self.group))
                .await
                .map(|all| {
                    all.iter()
                        .any(|g| g.group_id.as_deref() == Some(self.group.as_str()))
                })
                .unwrap_or(false);
            if !left {
                break;
            }
            tokio::time::sleep(Duration::from_secs(1)).await;
        }
        let delete = Call::new(
            Service::Volume,
            "delete_group",
            Method::POST,
            format!("/groups/{}/action", self.group),
        )
        .json(json!({"delete": {"delete-volumes": true}}));
        if let Err(e) = cloud.session().send(&delete).await {
            eprintln!("could not delete group {}: {e}", self.group);
        }
        for _ in 0..60 {
            let group_gone = cloud
                .cinder()
                .get_group(&self.group)
                .await
                .is_err_and(|e| e.is_not_found());
            let volume_gone = cloud
                .cinder()
                .get_volume(&self.volume)
                .await
                .is_err_and(|e| e.is_not_found());
            if group_gone && volume_gone {
                return;
            }
            tokio::time::sleep(Duration::from_secs(1)).await;
        }
        panic!(
            "group {} or volume {} is still there after clean-up",
            self.group, self.volume
        );
    }
}

#[sqlx::test]
#[ignore = "needs a real cloud"]
async fn a_volume_group_policy_runs_with_the_clouds_credentials(pool: PgPool) {
    let cloud = real_cloud();
    let fixture = GroupFixture::create(&cloud).await;
    // Clean up even when an assertion fails: run the checks in their own task.
    let result = tokio::spawn(exercise(pool.clone(), cloud.clone(), fixture.clone())).await;
    fixture.clean_up(&cloud).await;
    if let Err(failure) = result {
        std::panic::resume_unwind(failure.into_panic());
    }
}

async fn exercise(pool: PgPool, cloud: OpenStack, fixture: GroupFixture) {
    let clock = Arc::new(SystemClock);
    let stop = CancellationToken::new();
    let engine = Engine::new(pool.clone(), cloud.clone(), clock.clone(), engine_config());
    let running = tokio::spawn(Supervisor::start_engine(engine, stop.clone()).stopped());

    // A volume_group policy over the group, fired by hand.
    let spec: PolicySpec = serde_json::from_value(json!({
        "name": "e2e-group", "resource_type": "volume_group",
        "targets": {"ids": [fixture.group]},
        "schedules": [{"cron": "@daily"}], "retention": {"keep_last": 1}
    }))
    .unwrap();
    let now = clock.now();
    let valid = spec.validate(now).unwrap();
    let policy = policies::insert_policy(
        &pool,
        "default",
        Uuid::now_v7(),
        &valid,
        valid.next_run_after(now),
        None,
    )
    .await
    .unwrap();
    let run_id = runs::insert_manual_run(&pool, &policy, None, now)
        .await
        .unwrap();
    let deadline = tokio::time::Instant::now() + Duration::from_secs(300);
    let run = loop {
        let run = runs::fetch_run(&pool, "default", run_id)
            .await
            .unwrap()
            .unwrap();
        if run.status != RunStatus::Running {
            break run;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "not finished in 5 minutes: {run:?}"
        );
        tokio::time::sleep(Duration::from_secs(1)).await;
    };

    // The job succeeded and recorded the group snapshot and its member.
    let filter = jobs::JobFilter {
        run_id: Some(run_id),
        ..Default::default()
    };
    let found = jobs::list_jobs(&pool, "default", &filter, None, 10)
        .await
        .unwrap();
    assert_eq!(found.len(), 1, "{found:?}");
    let job = &found[0];
    assert_eq!(job.status, JobStatus::Succeeded, "{job:?}");
    assert_eq!(run.status, RunStatus::Succeeded, "{run:?}");
    let group_snapshot_id = job.group_snapshot_id.clone().expect("recorded");
    let group_snapshot = cloud
        .cinder()
        .get_group_snapshot(&group_snapshot_id)
        .await
        .unwrap();
    assert_eq!(group_snapshot.status, "available");
    assert_eq!(
        group_snapshot.group_id.as_deref(),
        Some(fixture.group.as_str())
    );
    assert_eq!(job.volume_snapshots.0.len(), 1, "{job:?}");
    let member = &job.volume_snapshots.0[0];
    assert_eq!(member.volume_id.as_deref(), Some(fixture.volume.as_str()));
    let snapshot = cloud
        .cinder()
        .get_snapshot(&member.snapshot_id)
        .await
        .unwrap();
    assert_eq!(snapshot.status, "available");
    assert_eq!(
        snapshot.group_snapshot_id.as_deref(),
        Some(group_snapshot_id.as_str())
    );
    let managed = snapshots::list_snapshots(&pool, "default", &Default::default(), None, 10)
        .await
        .unwrap();
    assert_eq!(managed.len(), 1, "{managed:?}");
    assert_eq!(
        managed[0].group_snapshot_id.as_deref(),
        Some(group_snapshot_id.as_str())
    );

    // Pruning removes the group snapshot and its member from Cinder.
    snapshots::request_delete(&pool, "default", managed[0].snapshot_id, clock.now())
        .await
        .unwrap();
    let deadline = tokio::time::Instant::now() + Duration::from_secs(180);
    loop {
        let state: String = sqlx::query_scalar("select state from snapshot")
            .fetch_one(&pool)
            .await
            .unwrap();
        if state == "deleted" {
            break;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "not deleted in 3 minutes: {state}"
        );
        tokio::time::sleep(Duration::from_secs(1)).await;
    }
    assert!(
        cloud
            .cinder()
            .get_group_snapshot(&group_snapshot_id)
            .await
            .unwrap_err()
            .is_not_found()
    );
    assert!(
        cloud
            .cinder()
            .get_snapshot(&member.snapshot_id)
            .await
            .unwrap_err()
            .is_not_found()
    );
    stop.cancel();
    running.await.unwrap();
}
