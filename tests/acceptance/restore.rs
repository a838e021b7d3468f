//! Restores (issue 12, item 1) on a real OpenStack: the engine snapshots the
//! fixture's image-backed server, its volume-backed server (a 1 GiB root on a
//! flavor with a larger disk, so Nova's snapshot image has `min_disk` above
//! the root snapshot's size) and its volume, restores each one (servers boot
//! with `networks: "none"`), checks what Nova and Cinder made, deletes it, and
//! prunes the snapshots. Everything is removed again, also when a check fails.

use std::{sync::Arc, time::Duration};

use reqwest::Method;
use serde_json::json;
use sqlx::PgPool;
use stacksnap::{
    clock::{Clock as _, SystemClock},
    domain::{
        adhoc::AdhocSnapshotRequest,
        job::{JobKind, JobStatus},
        restore::{RestoreRequest, Restored, restore_job},
        status::RunTrigger,
    },
    engine::Engine,
    openstack::{
        OpenStack,
        cinder::VolumeFilter,
        nova::ServerFilter,
        session::{Call, Service},
    },
    startup::supervisor::Supervisor,
    store::{jobs, lifecycle, snapshots},
};
use tokio_util::sync::CancellationToken;
use uuid::Uuid;

use super::{cloud::Fixture, engine_config};
use crate::helpers::{real_cloud, real_cloud_config};

#[sqlx::test]
#[ignore = "needs a real OpenStack: set STACKSNAP_E2E_CLOUD and OS_CLIENT_CONFIG_FILE"]
async fn server_and_volume_snapshots_restore_on_a_real_nova_and_cinder(pool: PgPool) {
    let cloud = real_cloud();
    let fixture = Fixture::create(&cloud, &real_cloud_config()).await;
    let result = tokio::spawn(exercise(pool.clone(), cloud.clone(), fixture.clone())).await;
    // What the restores made first (their volumes come from the fixture's
    // snapshots), then the fixture's own.
    remove_restored(&cloud, &fixture.tag).await;
    fixture.clean_up(&cloud).await;
    if let Err(failure) = result {
        std::panic::resume_unwind(failure.into_panic());
    }
}

/// Takes a one-off snapshot through the engine and returns the managed snapshot's id.
async fn snapshot(pool: &PgPool, resource_type: &str, id: &str) -> Uuid {
    let now = SystemClock.now();
    let request: AdhocSnapshotRequest =
        serde_json::from_value(json!({"resource_type": resource_type, "resource_id": id})).unwrap();
    let job = request.job(request.validate().unwrap(), now);
    lifecycle::insert_adhoc_run(pool, "default", None, &job, Default::default(), now)
        .await
        .unwrap();
    let done = finish(pool, job.job_id).await;
    assert_eq!(done.status, JobStatus::Succeeded, "{done:?}");
    let all = snapshots::list_snapshots(pool, "default", &Default::default(), None, 100)
        .await
        .unwrap();
    all.iter()
        .find(|s| s.job_id == job.job_id)
        .expect("the job's managed snapshot")
        .snapshot_id
}

/// Queues a restore, as `POST /v1/snapshots/{id}/restore` does.
async fn restore(pool: &PgPool, snapshot_id: Uuid, body: serde_json::Value) -> Uuid {
    let now = SystemClock.now();
    let snapshot = snapshots::fetch_snapshot(pool, "default", snapshot_id)
        .await
        .unwrap()
        .unwrap();
    let request: RestoreRequest = serde_json::from_value(body).unwrap();
    let pieces = snapshot.restore_pieces();
    let timeout = request.validate(&pieces).unwrap();
    let job_id = Uuid::now_v7();
    let spec = request.spec(&pieces, job_id).unwrap();
    let job = restore_job(&pieces, spec, timeout, job_id, now);
    lifecycle::insert_single_job_run(
        pool,
        "default",
        None,
        &job,
        Default::default(),
        now,
        RunTrigger::Restore,
    )
    .await
    .unwrap();
    job_id
}

async fn finish(pool: &PgPool, job_id: Uuid) -> jobs::Job {
    let deadline = tokio::time::Instant::now() + Duration::from_secs(300);
    loop {
        let job = jobs::fetch_job(pool, "default", job_id)
            .await
            .unwrap()
            .unwrap();
        if job.status.is_terminal() {
            return job;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "not finished in 5 minutes: {job:?}"
        );
        tokio::time::sleep(Duration::from_secs(1)).await;
    }
}

fn restored(job: &jobs::Job) -> Restored {
    job.restored
        .as_ref()
        .map(|r| r.0.clone())
        .unwrap_or_default()
}

async fn exercise(pool: PgPool, cloud: OpenStack, fixture: Fixture) {
    let (pool, cloud) = (&pool, &cloud);
    let stop = CancellationToken::new();
    let engine = Engine::new(
        pool.clone(),
        cloud.clone(),
        Arc::new(SystemClock),
        engine_config(),
    );
    let running = tokio::spawn(Supervisor::start_engine(engine, stop.clone()).stopped());

    let image_backed = snapshot(pool, "server", &fixture.image_backed_server).await;
    let volume_backed = snapshot(pool, "server", &fixture.volume_backed_server).await;
    let volume = snapshot(pool, "volume", &fixture.data_volume).await;

    let tag = &fixture.tag;
    let jobs = [
        (image_backed, format!("{tag}-restored-web")),
        (volume_backed, format!("{tag}-restored-db")),
        (volume, format!("{tag}-restored-data")),
    ];
    let mut ids = Vec::new();
    for (snapshot_id, name) in &jobs {
        let body = json!({"name": name, "metadata": {"suite": "acceptance"}});
        ids.push(restore(pool, *snapshot_id, body).await);
    }
    let mut made = Vec::new();
    for (job_id, (snapshot_id, name)) in ids.iter().zip(&jobs) {
        let job = finish(pool, *job_id).await;
        assert_eq!(job.kind, JobKind::Restore);
        assert_eq!(job.status, JobStatus::Succeeded, "{name}: {:?}", job.error);
        made.push((restored(&job), *snapshot_id, *job_id));
    }

    // The image-backed server: ACTIVE, stamped, no volumes.
    let (web, web_snapshot, web_job) = &made[0];
    let server = cloud
        .nova()
        .get_server(web.server_id.as_deref().unwrap())
        .await
        .unwrap();
    assert_eq!(server.status, "ACTIVE");
    assert_eq!(
        server.metadata["stacksnap_restored_from"],
        web_snapshot.to_string()
    );
    assert_eq!(server.metadata["stacksnap_job_id"], web_job.to_string());
    assert_eq!(server.metadata["suite"], "acceptance");
    assert!(server.volumes_attached.is_empty());

    // The volume-backed server: ACTIVE with a new root and data volume made
    // from the Cinder snapshots, both in use and deleted with the server.
    let (db, db_snapshot, _) = &made[1];
    let server = cloud
        .nova()
        .get_server(db.server_id.as_deref().unwrap())
        .await
        .unwrap();
    assert_eq!(server.status, "ACTIVE");
    assert_eq!(
        server.metadata["stacksnap_restored_from"],
        db_snapshot.to_string()
    );
    assert_eq!(server.volumes_attached.len(), 2, "{server:?}");
    let source = snapshots::fetch_snapshot(pool, "default", *db_snapshot)
        .await
        .unwrap()
        .unwrap();
    let pieces: Vec<&str> = source
        .volume_snapshots
        .0
        .iter()
        .map(|p| p.snapshot_id.as_str())
        .collect();
    for attached in &server.volumes_attached {
        assert!(attached.delete_on_termination, "{attached:?}");
        let volume = cloud.cinder().get_volume(&attached.id).await.unwrap();
        assert_eq!(volume.status, "in-use");
        let from = volume.snapshot_id.as_deref().unwrap_or_default();
        assert!(pieces.contains(&from), "{from} is one of {pieces:?}");
    }
    let mut restored_volumes: Vec<String> = db.volume_ids.clone().unwrap_or_default();
    restored_volumes.sort();
    let mut attached: Vec<String> = server
        .volumes_attached
        .iter()
        .map(|v| v.id.clone())
        .collect();
    attached.sort();
    assert_eq!(restored_volumes, attached, "the job records the volumes");

    // The volume: available, from the snapshot, stamped.
    let (data, data_snapshot, _) = &made[2];
    let volume = cloud
        .cinder()
        .get_volume(data.volume_id.as_deref().unwrap())
        .await
        .unwrap();
    assert_eq!(volume.status, "available");
    assert_eq!(
        volume.metadata["stacksnap_restored_from"],
        data_snapshot.to_string()
    );

    // The restored resources are the caller's: delete them, and Nova takes the
    // server's volumes along (delete_on_termination from the image's mapping).
    remove_restored(cloud, tag).await;
    for id in restored_volumes.iter().chain(data.volume_id.iter()) {
        let gone = cloud.cinder().get_volume(id).await;
        assert!(
            gone.as_ref().is_err_and(|e| e.is_not_found()),
            "volume {id} is gone: {gone:?}"
        );
    }
    super::prune_everything(pool, cloud).await;
    stop.cancel();
    running.await.unwrap();
}

/// Deletes the servers and volumes the restores made (by their names, which
/// start with the fixture's tag) and waits until they are gone; a server's
/// volumes that Nova kept are deleted too.
async fn remove_restored(cloud: &OpenStack, tag: &str) {
    let prefix = format!("{tag}-restored");
    let servers = cloud
        .nova()
        .list_servers(&ServerFilter::default())
        .await
        .unwrap_or_default();
    let mut volumes = Vec::new();
    let mut deleting = Vec::new();
    for server in servers.iter().filter(|s| s.name.starts_with(&prefix)) {
        volumes.extend(server.volumes_attached.iter().map(|v| v.id.clone()));
        let _ = cloud.nova().delete_server(&server.id).await;
        deleting.push(server.id.clone());
    }
    for _ in 0..120 {
        let mut left = 0;
        for id in &deleting {
            if cloud.nova().get_server(id).await.is_ok() {
                left += 1;
            }
        }
        if left == 0 {
            break;
        }
        tokio::time::sleep(Duration::from_secs(1)).await;
    }
    let named = cloud
        .cinder()
        .list_volumes(&VolumeFilter::default())
        .await
        .unwrap_or_default();
    volumes.extend(
        named
            .into_iter()
            .filter(|v| v.name.as_deref().is_some_and(|n| n.starts_with(&prefix)))
            .map(|v| v.id),
    );
    for _ in 0..60 {
        let mut left = 0;
        for id in &volumes {
            match cloud.cinder().get_volume(id).await {
                Err(e) if e.is_not_found() => {}
                Ok(v) if v.status == "deleting" => left += 1,
                _ => {
                    left += 1;
                    let _ = cloud
                        .session()
                        .send(&Call::new(
                            Service::Volume,
                            "delete_volume",
                            Method::DELETE,
                            format!("/volumes/{id}"),
                        ))
                        .await;
                }
            }
        }
        if left == 0 {
            break;
        }
        tokio::time::sleep(Duration::from_secs(1)).await;
    }
}
