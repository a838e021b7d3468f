//! The clients' types read the API samples published by Nova, Glance, Cinder and Keystone
//! (tests/fixtures/openstack, copied byte for byte; see SOURCES.md there).

use serde::de::DeserializeOwned;
use serde_json::Value;
use stacksnap::openstack::{
    cinder::{GroupSnapshot, Snapshot, Volume},
    glance::Image,
    keystone::{auth_request, endpoint_url, parse_token},
    nova::Server,
    version::{Microversion, offered_range},
};

fn fixture(path: &str) -> String {
    std::fs::read_to_string(format!(
        "{}/tests/fixtures/openstack/{path}",
        env!("CARGO_MANIFEST_DIR")
    ))
    .unwrap()
}

fn inner<T: DeserializeOwned>(path: &str, key: &str) -> T {
    let value: Value = serde_json::from_str(&fixture(path)).unwrap();
    serde_json::from_value(value[key].clone()).unwrap_or_else(|e| panic!("{path}: {e}"))
}

#[test]
fn nova_server_sample_reads_task_state_volumes_tags_and_image() {
    let server: Server = inner("nova/v2.100-server-get-resp.json", "server");
    assert_eq!(server.status, "ACTIVE");
    assert_eq!(server.task_state, None);
    assert_eq!(
        server.image_id(),
        Some("70a599e0-31e7-49b7-b260-868f441e862b")
    );
    assert!(!server.is_volume_backed());
    let volumes: Vec<&str> = server
        .volumes_attached
        .iter()
        .map(|v| v.id.as_str())
        .collect();
    assert_eq!(volumes, ["volume_id1", "volume_id2"]);
    assert!(server.tenant_id.is_some());

    let servers: Vec<Server> = inner("nova/v2.100-servers-details-resp.json", "servers");
    assert!(!servers.is_empty());
}

#[test]
fn nova_create_image_samples_match_what_the_client_sends_and_reads() {
    let request: Value =
        serde_json::from_str(&fixture("nova/v2.45-server-action-create-image.json")).unwrap();
    assert!(request["createImage"]["name"].is_string());
    assert!(
        request["createImage"]["metadata"].is_object(),
        "metadata rides along as image properties"
    );
    let response: Value =
        serde_json::from_str(&fixture("nova/v2.45-server-action-create-image-resp.json")).unwrap();
    assert!(response["image_id"].is_string());
}

#[test]
fn version_documents_give_the_microversion_ranges() {
    let (min, max) = offered_range(&fixture("nova/v21-version-get-resp.json"), "v2.1").unwrap();
    assert_eq!(min, Microversion(2, 1));
    assert!(max >= Microversion(2, 45));
    let (min, max) = offered_range(&fixture("nova/versions-get-resp.json"), "v2.1").unwrap();
    assert_eq!(min, Microversion(2, 1));
    assert!(max >= Microversion(2, 45));
    let (min, max) = offered_range(&fixture("cinder/versions-response.json"), "v3").unwrap();
    assert_eq!(min, Microversion(3, 0));
    assert!(max >= Microversion(3, 66));
}

#[test]
fn glance_samples_read_status_size_and_properties() {
    let image: Image = serde_json::from_str(&fixture("glance/image-show-response.json")).unwrap();
    assert_eq!(image.status, "active");
    assert_eq!(image.size, Some(13_167_616));
    assert!(image.created_at.is_some());
    assert_eq!(image.property("disk_format"), Some("qcow2"));
    assert!(image.block_device_mapping().unwrap().is_empty());

    let list: Value = serde_json::from_str(&fixture("glance/images-list-response.json")).unwrap();
    let images: Vec<Image> = serde_json::from_value(list["images"].clone()).unwrap();
    assert!(!images.is_empty());
    let created: Image =
        serde_json::from_str(&fixture("glance/image-create-response.json")).unwrap();
    assert_eq!(created.status, "queued");
}

#[test]
fn cinder_samples_read_volumes_snapshots_and_group_snapshots() {
    let volume: Volume = inner("cinder/v3.69-volume-show-response.json", "volume");
    assert!(!volume.id.is_empty());
    let _: Vec<Volume> = inner(
        "cinder/v3.69-volumes-list-detailed-response.json",
        "volumes",
    );

    let snapshot: Snapshot = inner("cinder/v3.65-snapshot-show-response.json", "snapshot");
    assert_eq!(snapshot.status, "creating");
    assert_eq!(snapshot.progress.as_deref(), Some("0%"));
    assert_eq!(snapshot.metadata.get("key").map(String::as_str), Some("v3"));
    // Cinder writes timestamps without an offset; they are UTC.
    assert_eq!(
        snapshot.created_at.unwrap().to_rfc3339(),
        "2019-03-12T04:42:00.809352+00:00"
    );
    let _: Snapshot = inner("cinder/v3.65-snapshot-create-response.json", "snapshot");
    let _: Vec<Snapshot> = inner(
        "cinder/v3.65-snapshots-list-detailed-response.json",
        "snapshots",
    );

    let group: GroupSnapshot = inner(
        "cinder/group-snapshots-show-response.json",
        "group_snapshot",
    );
    assert_eq!(group.status, "available");
    let _: GroupSnapshot = inner(
        "cinder/group-snapshots-create-response.json",
        "group_snapshot",
    );
}

#[test]
fn keystone_samples_give_token_expiry_project_and_catalog() {
    for path in [
        "keystone/auth-password-project-scoped-response.json",
        "keystone/project-scoped-password.json",
    ] {
        let token = parse_token(Some("gAAAAAB-token"), &fixture(path))
            .unwrap_or_else(|e| panic!("{path}: {e}"));
        assert!(token.project_id.is_some(), "{path}");
        assert!(!token.catalog.is_empty(), "{path}");
        assert!(
            endpoint_url(&token.catalog, &["identity"], "public", None).is_some(),
            "{path}"
        );
    }
    let appcred = parse_token(
        Some("t"),
        &fixture("keystone/auth-application-credential-response.json"),
    )
    .unwrap();
    assert!(appcred.expires_at.timestamp() > 0);
    assert!(parse_token(None, &fixture("keystone/project-scoped-password.json")).is_err());
}

#[test]
fn keystone_request_samples_have_the_shape_the_client_sends() {
    let sample: Value = serde_json::from_str(&fixture(
        "keystone/auth-application-credential-id-request.json",
    ))
    .unwrap();
    let credential = &sample["auth"]["identity"]["application_credential"];
    let ours = auth_request(
        &stacksnap::openstack::config::AuthMethod::ApplicationCredential {
            id: credential["id"].as_str().map(str::to_owned),
            name: None,
            user: None,
            secret: credential["secret"].as_str().unwrap().to_owned().into(),
        },
    );
    assert_eq!(ours, sample);
}
