//! A tenant's own credentials: the engine lists only with filters a project
//! member may use (Cinder answers 400 to the others from volume microversion
//! 3.31, Nova silently drops them), and a request the cloud refuses ends the
//! job at once with the cloud's words instead of being retried until it times out.

use std::time::Duration;

use chrono::TimeDelta;
use serde_json::json;
use sqlx::PgPool;
use stacksnap::{
    clock::Clock as _,
    domain::job::{JobStatus, RunStatus},
    store::{jobs::Job, runs},
};
use stacksnap_sim::{Fault, FaultRule, SimConfig};
use uuid::Uuid;

use crate::helpers::{Harness, harness, member_harness, volume_group};

/// Drives a job to its end in steps of five seconds of engine time, so that a
/// job that never finishes reaches its timeout within the loop.
async fn finish_in_steps(h: &Harness, job_id: Uuid) -> Job {
    for _ in 0..400 {
        h.work().await;
        let job = h.job(job_id).await;
        if job.status.is_terminal() {
            return job;
        }
        h.clock.advance(TimeDelta::seconds(5));
        tokio::time::sleep(Duration::from_millis(15)).await;
    }
    panic!("job {job_id} never ended: {:?}", h.job(job_id).await);
}

/// Every request the simulator refused with 400, for the failure message.
fn refused(h: &Harness) -> Vec<String> {
    h.sim
        .requests()
        .iter()
        .filter(|r| r.status == 400)
        .map(|r| format!("{} {}?{}", r.operation, r.path, r.query))
        .collect()
}

#[sqlx::test]
async fn a_volume_group_job_succeeds_with_a_project_members_credentials(pool: PgPool) {
    // Arrange: a group of two volumes, one of which already has a snapshot of its own.
    let h = member_harness(pool, SimConfig::default()).await;
    let (a, b) = (
        h.sim.create_volume("a", 1, &[]),
        h.sim.create_volume("b", 1, &[]),
    );
    let group = volume_group(&h.cloud, "default_group_type", &[&a, &b]).await;
    let standalone = h
        .cloud
        .cinder()
        .create_snapshot(&a, "by hand", "", &Default::default(), false)
        .await
        .unwrap();

    // Act
    let job_id = h
        .adhoc("volume_group", &group, json!({"timeout": "10m"}))
        .await;
    let job = finish_in_steps(&h, job_id).await;

    // Assert: done, with exactly the group snapshot's members, and no refused call.
    assert_eq!(
        job.status,
        JobStatus::Succeeded,
        "{:?}; refused: {:?}",
        job.error,
        refused(&h)
    );
    assert!(refused(&h).is_empty(), "{:?}", refused(&h));
    let group_snapshot = job.group_snapshot_id.clone().expect("recorded");
    let mut volumes: Vec<String> = job
        .volume_snapshots
        .0
        .iter()
        .map(|s| s.volume_id.clone().unwrap())
        .collect();
    volumes.sort();
    let mut expected = vec![a.clone(), b.clone()];
    expected.sort();
    assert_eq!(volumes, expected);
    for member in &job.volume_snapshots.0 {
        assert_ne!(member.snapshot_id, standalone.id);
        assert_eq!(member.status, "available");
        let snapshot = h
            .cloud
            .cinder()
            .get_snapshot(&member.snapshot_id)
            .await
            .unwrap();
        assert_eq!(
            snapshot.group_snapshot_id.as_deref(),
            Some(group_snapshot.as_str())
        );
    }
    let recorded: Option<String> =
        sqlx::query_scalar("select group_snapshot_id from snapshot where job_id = $1")
            .bind(job_id)
            .fetch_one(&h.pool)
            .await
            .unwrap();
    assert_eq!(recorded, Some(group_snapshot));
}

#[sqlx::test]
async fn a_request_the_cloud_refuses_while_tracking_fails_the_job_with_its_message(pool: PgPool) {
    // Arrange: Cinder refuses every look at the snapshot with 400: the batched
    // listing of the project's snapshots (after which the job is looked at on
    // its own) and the look by id.
    let h = harness(pool).await;
    let volume = h.sim.create_volume("data", 1, &[]);
    for operation in ["cinder.list_snapshots_detail", "cinder.get_snapshot"] {
        h.sim.inject(FaultRule::new(
            operation,
            Fault::Error {
                status: 400,
                retry_after: None,
                message: Some("Invalid input received: refused for this test.".into()),
            },
        ));
    }

    // Act
    let job_id = h.adhoc("volume", &volume, json!({"timeout": "10m"})).await;
    let job = finish_in_steps(&h, job_id).await;

    // Assert: failed at the first refusal, naming the call and the cloud's message.
    assert_eq!(job.status, JobStatus::Failed, "{:?}", job.error);
    let error = job.error.clone().expect("an error").0;
    assert_eq!(error.code, "request_refused");
    assert!(
        error.message.contains(
            "cinder get_snapshot: Invalid input received: refused for this test. (HTTP 400)"
        ),
        "{}",
        error.message
    );
    assert_eq!(h.sim.count("cinder.get_snapshot"), 1, "not retried");
}

#[sqlx::test]
async fn a_tag_selector_never_takes_servers_nova_did_not_filter_for_a_member(pool: PgPool) {
    // Arrange: below compute 2.26 Nova drops a member's `tags` filter without a word.
    let h = member_harness(
        pool,
        SimConfig::default().with_nova_max_microversion("2.25"),
    )
    .await;
    h.sim
        .create_image_backed_server("tagged", &["backup"], &[], false);
    let untagged = h
        .sim
        .create_image_backed_server("untagged", &[], &[], false);
    let policy = h
        .policy(json!({
            "name": "tagged", "resource_type": "server",
            "targets": {"selector": {"tags": ["backup"]}},
            "schedules": [{"cron": "@daily"}], "retention": {"keep_last": 1}
        }))
        .await;

    // Act
    let run_id = runs::insert_manual_run(&h.pool, &policy, None, h.clock.now())
        .await
        .unwrap();
    h.work().await;

    // Assert: the untagged server is not snapshotted; as Nova shows no tags
    // below 2.26, nothing can be told to match, and the run says so.
    let resources: Vec<String> =
        sqlx::query_scalar("select resource_id from job where run_id = $1")
            .bind(run_id)
            .fetch_all(&h.pool)
            .await
            .unwrap();
    assert!(!resources.contains(&untagged), "{resources:?}");
    let run = runs::fetch_run(&h.pool, "default", run_id)
        .await
        .unwrap()
        .unwrap();
    assert_eq!(run.status, RunStatus::Failed);
    assert_eq!(run.error.unwrap().0.code, "no_targets");
}
