//! What the cloud shows the service's admin: the trusts the service made, who
//! owns the images and Cinder snapshots, and that deletion leaves none behind.

use std::time::{Duration, Instant};

use reqwest::Method;
use serde_json::{Value, json};
use sqlx::PgPool;
use stacksnap::openstack::{OpenStack, TrustId};
use uuid::Uuid;

use super::tenants::{Api, Tenant, trust};
use crate::acceptance::cloud::Fixture;

/// The policy's trust, as Keystone shows it to the service user: from the
/// member to the service user, in the member's project, delegating `member`
/// with impersonation. Its id is not in the policy's representation.
pub async fn check_trust(
    pool: &PgPool,
    service: &OpenStack,
    member: &Tenant,
    policy: &Value,
) -> String {
    let policy_id: Uuid = policy["id"].as_str().unwrap().parse().unwrap();
    let trust_id: String = sqlx::query_scalar("select trust_id from policy where policy_id = $1")
        .bind(policy_id)
        .fetch_one(pool)
        .await
        .unwrap();
    assert!(!policy.to_string().contains(&trust_id), "no trust id shown");
    let found = trust(service, &trust_id).await.expect("the trust exists");
    let service_user = service.service_user_id().await.unwrap();
    assert_eq!(found["trustor_user_id"], member.user_id.as_str());
    assert_eq!(found["trustee_user_id"], service_user.as_str());
    assert_eq!(found["project_id"], member.project_id.as_str());
    assert_eq!(found["impersonation"], true);
    let roles: Vec<&str> = found["roles"]
        .as_array()
        .unwrap()
        .iter()
        .map(|r| r["name"].as_str().unwrap())
        .collect();
    assert!(roles.contains(&"member"), "{roles:?}");
    trust_id
}

/// Each job's image is owned by the member's project, and so is every Cinder
/// snapshot behind the volume-backed server's image.
pub async fn check_artefacts(
    service: &OpenStack,
    member: &Tenant,
    fixture: &Fixture,
    jobs: &[Value],
) {
    for job in jobs {
        assert_eq!(job["status"], "succeeded", "{job}");
        assert_eq!(job["project_id"], member.project_id.as_str());
        let image_id = job["image_id"].as_str().unwrap();
        let image = service.glance().get_image(image_id).await.unwrap();
        assert_eq!(image.status, "active");
        assert_eq!(image.property("owner"), Some(member.project_id.as_str()));
        let mapping = image.block_device_mapping().unwrap();
        if job["resource_id"] == fixture.volume_backed_server.as_str() {
            assert_eq!(mapping.len(), 2, "a snapshot per volume: {mapping:?}");
            for entry in mapping {
                let id = entry.snapshot_id.as_deref().unwrap();
                let snapshot = service.cinder().get_snapshot(id).await.unwrap();
                assert_eq!(snapshot.status, "available");
                assert_eq!(
                    snapshot.project_id.as_deref(),
                    Some(member.project_id.as_str()),
                    "Cinder snapshot {id}"
                );
            }
        } else {
            assert_eq!(job["resource_id"], fixture.image_backed_server.as_str());
            assert!(mapping.is_empty());
        }
    }
}

/// A one-off snapshot of the member's volume, which acts through a trust the
/// member's password token made at submission (the token itself is not kept):
/// its Cinder snapshot is in the member's project. Returns the snapshot
/// as the API shows it, and the trust made for the run, to be deleted once the
/// run has ended.
pub async fn one_off_snapshot(
    api: &Api,
    pool: &PgPool,
    service: &OpenStack,
    member: &Tenant,
    fixture: &Fixture,
) -> (Value, String) {
    let body = json!({"resource_type": "volume", "resource_id": fixture.data_volume});
    let path = "/v1/snapshots?wait=2m";
    let job = api
        .expect(member, Method::POST, path, Some(&body), 200)
        .await;
    assert_eq!(job["status"], "succeeded", "{job}");
    assert_eq!(job["project_id"], member.project_id.as_str());
    let id = job["volume_snapshots"][0]["snapshot_id"].as_str().unwrap();
    let in_cinder = service.cinder().get_snapshot(id).await.unwrap();
    assert_eq!(
        in_cinder.project_id.as_deref(),
        Some(member.project_id.as_str())
    );
    let run_id: Uuid = job["run_id"].as_str().unwrap().parse().unwrap();
    let trust_id: Option<String> = sqlx::query_scalar("select trust_id from run where run_id = $1")
        .bind(run_id)
        .fetch_one(pool)
        .await
        .unwrap();
    // The member logs in with a password, so its token can make one.
    let trust_id = trust_id.expect("a trust made for the one-off run");
    let found = trust(service, &trust_id)
        .await
        .expect("the one-off's trust");
    assert_eq!(found["trustor_user_id"], member.user_id.as_str());
    assert_eq!(found["project_id"], member.project_id.as_str());
    let path = format!("/v1/snapshots?resource_id={}", fixture.data_volume);
    let page = api.expect(member, Method::GET, &path, None, 200).await;
    let items = page["items"].as_array().unwrap();
    assert_eq!(items.len(), 1, "{items:?}");
    (items[0].clone(), trust_id)
}

/// Waits until every snapshot is `deleted`, then checks that Glance and Cinder
/// keep none of their pieces.
pub async fn artefacts_are_deleted(
    api: &Api,
    service: &OpenStack,
    member: &Tenant,
    snapshots: &[Value],
) {
    let deadline = Instant::now() + Duration::from_secs(180);
    for snapshot in snapshots {
        let path = format!("/v1/snapshots/{}", snapshot["id"].as_str().unwrap());
        loop {
            let now = api.expect(member, Method::GET, &path, None, 200).await;
            if now["state"] == "deleted" {
                break;
            }
            assert!(Instant::now() < deadline, "not deleted in 3 minutes: {now}");
            tokio::time::sleep(Duration::from_secs(1)).await;
        }
        if let Some(image) = snapshot["image_id"].as_str() {
            let gone = service.glance().get_image(image).await;
            assert!(gone.is_err_and(|e| e.is_not_found()), "image {image}");
        }
        for id in snapshot["volume_snapshot_ids"].as_array().unwrap() {
            let id = id.as_str().unwrap();
            let gone = service.cinder().get_snapshot(id).await;
            assert!(
                gone.is_err_and(|e| e.is_not_found()),
                "Cinder snapshot {id}"
            );
        }
    }
}

/// Waits until Keystone no longer has `trusts`, and the service no longer
/// records any trust.
pub async fn trusts_are_deleted(pool: &PgPool, service: &OpenStack, trusts: &[&str]) {
    let deadline = Instant::now() + Duration::from_secs(60);
    for trust_id in trusts {
        while trust(service, trust_id).await.is_some() {
            assert!(Instant::now() < deadline, "a trust is still in Keystone");
            tokio::time::sleep(Duration::from_millis(500)).await;
        }
    }
    let recorded: i64 = sqlx::query_scalar("select count(*) from trust")
        .fetch_one(pool)
        .await
        .unwrap();
    assert_eq!(recorded, 0, "no trust is left recorded");
}

/// Deletes, as the service, every trust the service made and did not delete
/// itself (the test failed before): none after a pass.
pub async fn delete_leftover_trusts(pool: &PgPool, service: &OpenStack) {
    let ids: Vec<String> = sqlx::query_scalar(
        "select trust_id from trust union select trust_id from policy where trust_id is not null \
         union select trust_id from run where trust_id is not null",
    )
    .fetch_all(pool)
    .await
    .unwrap_or_default();
    for id in &ids {
        if let Err(e) = service.delete_trust(&TrustId::new(id.as_str())).await {
            eprintln!("could not delete a trust the test made: {e}");
        }
    }
}
