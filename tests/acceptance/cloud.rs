//! Building (and removing) the suite's own servers and volumes with plain API calls.

use std::time::Duration;

use reqwest::Method;
use serde_json::{Value, json};
use stacksnap::openstack::{
    OpenStack,
    cinder::SnapshotFilter,
    session::{Call, Service},
};

/// What the suite made.
#[derive(Debug, Clone)]
pub struct Fixture {
    pub tag: String,
    pub image_backed_server: String,
    pub volume_backed_server: String,
    pub data_volume: String,
}

async fn call(cloud: &OpenStack, call: Call) -> Value {
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

async fn wait_for(what: &str, mut probe: impl AsyncFnMut() -> Option<String>, wanted: &str) {
    for _ in 0..180 {
        match probe().await.as_deref() {
            Some(status) if status == wanted => return,
            Some("ERROR" | "error") => panic!("{what} went to error"),
            _ => tokio::time::sleep(Duration::from_secs(1)).await,
        }
    }
    panic!("{what} never became {wanted}");
}

impl Fixture {
    /// Boots an image-backed server and a volume-backed server (root from an image
    /// plus a blank data volume), both tagged, and makes a standalone volume.
    pub async fn create(cloud: &OpenStack) -> Self {
        let tag = format!("e2e-{}", &uuid::Uuid::new_v4().simple().to_string()[..8]);
        let images = cloud
            .glance()
            .list_images(&[("status", "active")])
            .await
            .unwrap();
        let image = images
            .iter()
            .find(|i| {
                i.property("image_type").is_none() && i.property("block_device_mapping").is_none()
            })
            .expect("an active base image");
        let flavors = call(
            cloud,
            Call::new(Service::Compute, "list_flavors", Method::GET, "/flavors"),
        )
        .await;
        let flavor = flavors["flavors"][0]["id"].as_str().unwrap().to_owned();

        let image_backed = call(
            cloud,
            Call::new(Service::Compute, "create_server", Method::POST, "/servers").json(json!({"server": {
                "name": format!("{tag}-web"), "imageRef": image.id, "flavorRef": flavor, "networks": "none", "tags": [tag]
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
                    {"boot_index": 0, "uuid": image.id, "source_type": "image", "destination_type": "volume",
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
            image_backed_server: image_backed,
            volume_backed_server: volume_backed,
            data_volume: volume,
        }
    }

    /// Deletes what the suite made: snapshots and images first (Cinder refuses to
    /// delete a volume that has snapshots), then servers and the volume.
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
            let from_us = image.name.as_deref().is_some_and(|n| n.contains(&self.tag))
                || image.property("suite") == Some("acceptance");
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
    }
}
