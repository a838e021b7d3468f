//! Volume groups made through the block-storage API, as a tenant makes them.

use std::time::Duration;

use reqwest::Method;
use serde_json::{Value, json};
use stacksnap::openstack::{
    OpenStack,
    session::{Call, Service},
};

/// Makes a volume group of `group_type` holding `volumes` (volume type
/// `__DEFAULT__`) and returns its id once it is `available` with them in it.
pub async fn volume_group(cloud: &OpenStack, group_type: &str, volumes: &[&str]) -> String {
    let create = Call::new(Service::Volume, "create_group", Method::POST, "/groups").json(
        json!({"group": {"name": "stacksnap-test-group", "group_type": group_type, "volume_types": ["__DEFAULT__"]}}),
    );
    let reply = cloud
        .session()
        .send(&create)
        .await
        .unwrap_or_else(|e| panic!("{e}"));
    let group: Value = serde_json::from_slice(&reply.body).unwrap();
    let id = group["group"]["id"].as_str().unwrap().to_owned();
    let mut status = String::new();
    for _ in 0..120 {
        status = cloud.cinder().get_group(&id).await.unwrap().status;
        if status != "creating" {
            break;
        }
        tokio::time::sleep(Duration::from_millis(250)).await;
    }
    assert_eq!(status, "available", "group {id}");
    let add = Call::new(
        Service::Volume,
        "update_group",
        Method::PUT,
        format!("/groups/{id}"),
    )
    .json(json!({"group": {"add_volumes": volumes.join(",")}}));
    cloud
        .session()
        .send(&add)
        .await
        .unwrap_or_else(|e| panic!("{e}"));
    // A real Cinder adds them in the volume service, after the answer.
    for volume in volumes {
        let mut group_id = None;
        for _ in 0..120 {
            group_id = cloud.cinder().get_volume(volume).await.unwrap().group_id;
            if group_id.as_deref() == Some(id.as_str()) {
                break;
            }
            tokio::time::sleep(Duration::from_millis(250)).await;
        }
        assert_eq!(group_id.as_deref(), Some(id.as_str()), "volume {volume}");
    }
    id
}
