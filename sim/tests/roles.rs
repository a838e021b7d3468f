//! What Nova, Cinder and Glance let each role do, and whose artefacts a
//! snapshot makes: readers read but cannot write; a snapshot taken with a
//! trust-scoped token belongs to the trustor's project; an admin's snapshot
//! of another project's server is the admin's, shared with that project.

use std::time::Duration;

use reqwest::{Method, StatusCode};
use serde_json::{Value, json};

use crate::helpers::{eventually, spawn};

async fn fault_message(r: reqwest::Response) -> (StatusCode, String) {
    let status = r.status();
    let body: Value = r.json().await.unwrap();
    let message = body["forbidden"]["message"].as_str().unwrap_or_default();
    (status, message.to_owned())
}

#[tokio::test]
async fn a_reader_reads_its_project_but_nova_cinder_and_glance_refuse_its_writes() {
    // Arrange
    let t = spawn().await;
    let demo = t.demo_token().await;
    let reader = t.token_of("demo_reader", "demo", "demo").await;
    let server = t.demo_server(&demo, false).await;
    let volume = t
        .call_as(
            &demo,
            Method::POST,
            "/volume/v3/volumes",
            Some("volume 3.71"),
            Some(json!({"volume": {"name": "v", "size": 1}})),
        )
        .await
        .json::<Value>()
        .await
        .unwrap()["volume"]["id"]
        .as_str()
        .unwrap()
        .to_owned();
    let alt = t.alt_token().await;
    let alt_server = t.demo_server(&alt, false).await;

    // Act
    let reads = t
        .call_as(
            &reader,
            Method::GET,
            &format!("/compute/v2.1/servers/{server}"),
            None,
            None,
        )
        .await;
    let boot = t
        .call_as(&reader, Method::POST, "/compute/v2.1/servers", Some("compute 2.96"),
            Some(json!({"server": {"name": "x", "flavorRef": "1", "networks": "none", "imageRef": "whatever"}})))
        .await;
    let snapshot = t
        .call_as(
            &reader,
            Method::POST,
            &format!("/compute/v2.1/servers/{server}/action"),
            Some("compute 2.96"),
            Some(json!({"createImage": {"name": "snap"}})),
        )
        .await;
    let other_project = t
        .call_as(
            &reader,
            Method::POST,
            &format!("/compute/v2.1/servers/{alt_server}/action"),
            Some("compute 2.96"),
            Some(json!({"createImage": {"name": "snap"}})),
        )
        .await;
    let new_volume = t
        .call_as(
            &reader,
            Method::POST,
            "/volume/v3/volumes",
            Some("volume 3.71"),
            Some(json!({"volume": {"size": 1}})),
        )
        .await;
    let delete_volume = t
        .call_as(
            &reader,
            Method::DELETE,
            &format!("/volume/v3/volumes/{volume}"),
            Some("volume 3.71"),
            None,
        )
        .await;
    let cinder_snapshot = t
        .call_as(
            &reader,
            Method::POST,
            "/volume/v3/snapshots",
            Some("volume 3.71"),
            Some(json!({"snapshot": {"volume_id": volume}})),
        )
        .await;
    let image = t
        .call_as(
            &reader,
            Method::POST,
            "/image/v2/images",
            None,
            Some(json!({"name": "x", "disk_format": "raw", "container_format": "bare"})),
        )
        .await;

    // Assert
    assert_eq!(reads.status(), StatusCode::OK);
    assert_eq!(
        fault_message(boot).await,
        (
            StatusCode::FORBIDDEN,
            "Policy doesn't allow os_compute_api:servers:create to be performed.".into()
        )
    );
    assert_eq!(
        fault_message(snapshot).await,
        (
            StatusCode::FORBIDDEN,
            "Policy doesn't allow os_compute_api:servers:create_image to be performed.".into()
        )
    );
    // Another project's server stays unknown: 404 before any policy.
    assert_eq!(other_project.status(), StatusCode::NOT_FOUND);
    assert_eq!(
        fault_message(new_volume).await,
        (
            StatusCode::FORBIDDEN,
            "Policy doesn't allow volume:create to be performed.".into()
        )
    );
    assert_eq!(
        fault_message(delete_volume).await,
        (
            StatusCode::FORBIDDEN,
            "Policy doesn't allow volume:delete to be performed.".into()
        )
    );
    assert_eq!(
        fault_message(cinder_snapshot).await,
        (
            StatusCode::FORBIDDEN,
            "Policy doesn't allow volume:create_snapshot to be performed.".into()
        )
    );
    assert_eq!(image.status(), StatusCode::FORBIDDEN);
    assert!(
        image
            .text()
            .await
            .unwrap()
            .contains("You are not authorized to complete add_image action.")
    );
    let snaps = t.get_json("/image/v2/images?name=snap", None).await;
    assert_eq!(snaps["images"], json!([]), "no snapshot was made");
}

#[tokio::test]
async fn snapshots_taken_with_a_demo_trust_belong_to_the_demo_project() {
    // Arrange
    let t = spawn().await;
    let demo = t.demo_token().await;
    let image_backed = t.demo_server(&demo, false).await;
    let volume_backed = t.demo_server(&demo, true).await;
    let trust = t.demo_trust().await;
    let (_, token, _) = t.trust_token("admin", "secret", &trust).await;
    let create = |server: String| {
        let token = token.clone();
        let t = &t;
        async move {
            let r = t
                .call_as(
                    &token,
                    Method::POST,
                    &format!("/compute/v2.1/servers/{server}/action"),
                    Some("compute 2.96"),
                    Some(json!({"createImage": {"name": "by-trust"}})),
                )
                .await;
            assert_eq!(r.status(), StatusCode::ACCEPTED);
            r.json::<Value>().await.unwrap()["image_id"]
                .as_str()
                .unwrap()
                .to_owned()
        }
    };

    // Act
    let image = create(image_backed).await;
    let volume_image = create(volume_backed).await;

    // Assert
    let demo_project = t.project("demo");
    let image = eventually(Duration::from_secs(5), || async {
        t.image(&image).await.filter(|i| i["status"] == "active")
    })
    .await;
    assert_eq!(image["owner"], demo_project.as_str());
    assert_eq!(image["visibility"], "private");
    assert_eq!(image["owner_user_name"], "demo");
    assert_eq!(image["owner_project_name"], "demo");
    assert_eq!(image["boot_roles"], "member,reader");
    let volume_image = t.image(&volume_image).await.unwrap();
    assert_eq!(volume_image["owner"], demo_project.as_str());
    let mapping: Value =
        serde_json::from_str(volume_image["block_device_mapping"].as_str().unwrap()).unwrap();
    let snapshot = t
        .snapshot(mapping[0]["snapshot_id"].as_str().unwrap())
        .await;
    assert_eq!(
        snapshot["os-extended-snapshot-attributes:project_id"],
        demo_project.as_str()
    );
    // demo sees what was made for it.
    let by_demo = t
        .call_as(
            &demo,
            Method::GET,
            &format!("/image/v2/images/{}", image["id"].as_str().unwrap()),
            None,
            None,
        )
        .await;
    assert_eq!(by_demo.status(), StatusCode::OK);
}

#[tokio::test]
async fn an_admins_snapshot_of_another_projects_server_is_the_admins_and_shared_with_it() {
    // Arrange
    let t = spawn().await;
    let demo = t.demo_token().await;
    let server = t.demo_server(&demo, false).await;

    // Act
    let image = t.create_image_ok(&server, "by-admin").await;

    // Assert
    let image = t.image(&image).await.unwrap();
    assert_eq!(image["owner"], t.sim.project_id().as_str());
    assert_eq!(image["visibility"], "shared");
    let id = image["id"].as_str().unwrap();
    let by_demo = t
        .call_as(
            &demo,
            Method::GET,
            &format!("/image/v2/images/{id}"),
            None,
            None,
        )
        .await;
    assert_eq!(by_demo.status(), StatusCode::OK);
    let by_alt = t
        .call_as(
            &t.alt_token().await,
            Method::GET,
            &format!("/image/v2/images/{id}"),
            None,
            None,
        )
        .await;
    assert_eq!(by_alt.status(), StatusCode::NOT_FOUND);
}
