//! Building (and removing) the suite's own image, servers and volumes with plain
//! API calls: nothing it uses was there before it, so nothing it deletes was
//! anyone else's.

use std::time::Duration;

use reqwest::Method;
use secrecy::ExposeSecret as _;
use serde_json::{Value, json};
use stacksnap::openstack::{
    CloudConfig, OpenStack,
    cinder::SnapshotFilter,
    keystone,
    session::{Call, Service},
};

/// What the suite made.
#[derive(Debug, Clone)]
pub struct Fixture {
    pub tag: String,
    /// The private image both servers boot from.
    pub base_image: String,
    pub image_backed_server: String,
    pub volume_backed_server: String,
    pub data_volume: String,
}

pub async fn call(cloud: &OpenStack, call: Call) -> Value {
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

pub async fn wait_for(what: &str, mut probe: impl AsyncFnMut() -> Option<String>, wanted: &str) {
    for _ in 0..180 {
        match probe().await.as_deref() {
            Some(status) if status == wanted => return,
            Some("ERROR" | "error") => panic!("{what} went to error"),
            _ => tokio::time::sleep(Duration::from_secs(1)).await,
        }
    }
    panic!("{what} never became {wanted}");
}

/// Uploads a small private raw image named `{tag}-base` (Glance takes the data
/// outside JSON, so with a plain request) and waits until it is active.
async fn upload_base_image(cloud: &OpenStack, config: &CloudConfig, tag: &str) -> String {
    let created = call(
        cloud,
        Call::new(Service::Image, "create_image", Method::POST, "/v2/images").json(json!({
            "name": format!("{tag}-base"), "disk_format": "raw", "container_format": "bare",
            "visibility": "private"
        })),
    )
    .await;
    let image = created["id"].as_str().unwrap().to_owned();
    let http = reqwest::Client::new();
    let token = keystone::authenticate(&http, config)
        .await
        .unwrap_or_else(|e| panic!("{e}"));
    let endpoint = keystone::endpoint_url(
        &token.catalog,
        &["image"],
        &config.interface,
        config.region_name.as_deref(),
    )
    .expect("an image endpoint in the catalog");
    let uploaded = http
        .put(format!(
            "{}/v2/images/{image}/file",
            endpoint.trim_end_matches("/v2")
        ))
        .header("X-Auth-Token", token.value.expose_secret())
        .header(reqwest::header::CONTENT_TYPE, "application/octet-stream")
        .body(vec![0u8; 1 << 20])
        .send()
        .await
        .unwrap();
    assert!(
        uploaded.status().is_success(),
        "image upload: {}",
        uploaded.status()
    );
    wait_for(
        &image,
        async || Some(cloud.glance().get_image(&image).await.ok()?.status),
        "active",
    )
    .await;
    image
}

/// The smallest flavor whose disk is larger than the volume-backed server's
/// 1 GiB root volume (the rig's `m1.small`): Nova gives the snapshot image of
/// such a server `min_disk` = the flavor's disk, which a restore must honour.
pub async fn flavor_larger_than_the_root(cloud: &OpenStack) -> String {
    let flavors = call(
        cloud,
        Call::new(
            Service::Compute,
            "list_flavors",
            Method::GET,
            "/flavors/detail",
        ),
    )
    .await;
    flavors["flavors"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|f| f["disk"].as_u64().is_some_and(|d| d > 1))
        .min_by_key(|f| {
            (
                f["disk"].as_u64(),
                f["ram"].as_u64(),
                f["id"].as_str().map(str::to_owned),
            )
        })
        .and_then(|f| f["id"].as_str())
        .expect("a flavor with a disk larger than 1 GiB")
        .to_owned()
}

impl Fixture {
    /// Uploads its own base image, boots an image-backed server and a
    /// volume-backed server (root from that image plus a blank data volume),
    /// both tagged, and makes a standalone volume. `config` holds `cloud`'s
    /// credentials, for the image upload.
    pub async fn create(cloud: &OpenStack, config: &CloudConfig) -> Self {
        let tag = format!("e2e-{}", &uuid::Uuid::new_v4().simple().to_string()[..8]);
        let image = upload_base_image(cloud, config, &tag).await;
        let flavor = flavor_larger_than_the_root(cloud).await;

        let image_backed = call(
            cloud,
            Call::new(Service::Compute, "create_server", Method::POST, "/servers").json(json!({"server": {
                "name": format!("{tag}-web"), "imageRef": image, "flavorRef": flavor, "networks": "none", "tags": [tag]
            }})),
        )
        .await["server"]["id"]
            .as_str()
            .unwrap()
            .to_owned();
        let volume_backed = call(
            cloud,
            Call::new(Service::Compute, "create_server", Method::POST, "/servers").json(json!({"server": {
                "name": format!("{tag}-db"), "flavorRef": flavor, "networks": "none", "tags": [tag],
                "block_device_mapping_v2": [
                    {"boot_index": 0, "uuid": image, "source_type": "image", "destination_type": "volume",
                     "volume_size": 1, "delete_on_termination": true},
                    {"boot_index": -1, "source_type": "blank", "destination_type": "volume",
                     "volume_size": 1, "delete_on_termination": true}
                ]
            }})),
        )
        .await["server"]["id"]
            .as_str()
            .unwrap()
            .to_owned();
        let volume = call(
            cloud,
            Call::new(Service::Volume, "create_volume", Method::POST, "/volumes")
                .json(json!({"volume": {"name": format!("{tag}-data"), "size": 1}})),
        )
        .await["volume"]["id"]
            .as_str()
            .unwrap()
            .to_owned();
        for server in [&image_backed, &volume_backed] {
            wait_for(
                server,
                async || Some(cloud.nova().get_server(server).await.ok()?.status),
                "ACTIVE",
            )
            .await;
        }
        wait_for(
            &volume,
            async || Some(cloud.cinder().get_volume(&volume).await.ok()?.status),
            "available",
        )
        .await;
        Self {
            tag,
            base_image: image,
            image_backed_server: image_backed,
            volume_backed_server: volume_backed,
            data_volume: volume,
        }
    }

    /// Deletes what the suite made: snapshots and images first (Cinder refuses to
    /// delete a volume that has snapshots), then servers, the volume and the
    /// base image.
    pub async fn clean_up(&self, cloud: &OpenStack) {
        let mut volumes = vec![self.data_volume.clone()];
        for server in [&self.image_backed_server, &self.volume_backed_server] {
            if let Ok(found) = cloud.nova().get_server(server).await {
                volumes.extend(found.volumes_attached.into_iter().map(|v| v.id));
            }
        }
        for volume in &volumes {
            let filter = SnapshotFilter {
                volume_id: Some(volume.clone()),
                ..SnapshotFilter::default()
            };
            for snapshot in cloud
                .cinder()
                .list_snapshots(&filter)
                .await
                .unwrap_or_default()
            {
                let _ = cloud.cinder().delete_snapshot(&snapshot.id).await;
            }
        }
        for image in cloud.glance().list_images(&[]).await.unwrap_or_default() {
            // Only what this fixture made: tests running at once share the project.
            let servers = [&self.image_backed_server, &self.volume_backed_server];
            let from_us = image.name.as_deref().is_some_and(|n| n.contains(&self.tag))
                || image
                    .property("instance_uuid")
                    .is_some_and(|s| servers.iter().any(|ours| *ours == s));
            if from_us {
                let _ = cloud.glance().delete_image(&image.id).await;
            }
        }
        tokio::time::sleep(Duration::from_secs(3)).await;
        for server in [&self.image_backed_server, &self.volume_backed_server] {
            let _ = cloud
                .session()
                .send(&Call::new(
                    Service::Compute,
                    "delete_server",
                    Method::DELETE,
                    format!("/servers/{server}"),
                ))
                .await;
        }
        tokio::time::sleep(Duration::from_secs(5)).await;
        let _ = cloud
            .session()
            .send(&Call::new(
                Service::Volume,
                "delete_volume",
                Method::DELETE,
                format!("/volumes/{}", self.data_volume),
            ))
            .await;
        let _ = cloud.glance().delete_image(&self.base_image).await;
    }
}
