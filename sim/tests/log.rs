//! The request log and the request id header.

use reqwest::{Method, StatusCode};
use serde_json::{Value, json};

use crate::helpers::spawn;

#[tokio::test]
async fn request_log_records_each_call_in_order_with_its_microversion() {
    // Arrange
    let t = spawn().await;
    let server = t.sim.create_image_backed_server("web", &[], &[], false);
    t.sim.clear_requests();

    // Act
    t.server(&server).await;
    t.create_image_ok(&server, "snap").await;
    t.call(Method::GET, "/image/v2/images?name=snap", None, None)
        .await;

    // Assert
    let log = t.sim.requests();
    let ops: Vec<&str> = log.iter().map(|r| r.operation.as_str()).collect();
    assert_eq!(
        ops,
        ["nova.get_server", "nova.create_image", "glance.list_images"]
    );
    assert_eq!(t.sim.count("nova.create_image"), 1);
    let create = &log[1];
    assert_eq!(create.method, "POST");
    assert_eq!(
        create.path,
        format!("/compute/v2.1/servers/{server}/action")
    );
    assert_eq!(create.microversion.as_deref(), Some("compute 2.45"));
    assert_eq!(create.status, 202);
    assert_eq!(create.service, "nova");
    assert_eq!(log[2].query, "name=snap");
    assert!(
        log.windows(2)
            .all(|w| w[0].seq < w[1].seq && w[0].at <= w[1].at)
    );
}

#[tokio::test]
async fn every_answer_carries_a_request_id_that_the_log_records() {
    let t = spawn().await;
    let r = t
        .call(Method::GET, "/volume/v3/volumes/nope", None, None)
        .await;
    assert_eq!(r.status(), StatusCode::NOT_FOUND);
    let id = r.headers()["x-openstack-request-id"]
        .to_str()
        .unwrap()
        .to_owned();
    assert!(id.starts_with("req-") && id.len() == 40, "{id}");
    let body: Value = r.json().await.unwrap();
    assert_eq!(
        body,
        json!({"itemNotFound": {"code": 404, "message": "Volume nope could not be found."}})
    );
    assert_eq!(t.sim.requests().last().unwrap().request_id, id);
}

#[tokio::test]
async fn request_log_is_readable_over_http() {
    let t = spawn().await;
    t.call(Method::GET, "/compute/v2.1/flavors/detail", None, None)
        .await;
    let log: Value = t
        .http
        .get(format!("{}/_sim/requests", t.sim.base_url()))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    let last = log.as_array().unwrap().last().unwrap();
    assert_eq!(last["operation"], "nova.list_flavors_detail");
    assert_eq!(last["status"], 200);
}

#[tokio::test]
async fn same_seed_gives_the_same_ids() {
    use stacksnap_sim::{SimConfig, Simulator};
    let start = || {
        Simulator::start(
            SimConfig::default().with_seed(5),
            "127.0.0.1:0".parse().unwrap(),
        )
        .unwrap()
    };
    let (a, b) = (start(), start());
    assert_eq!(a.project_id(), b.project_id());
    assert_eq!(
        a.create_image_backed_server("x", &[], &[], false),
        b.create_image_backed_server("x", &[], &[], false)
    );
    let c = Simulator::start(
        SimConfig::default().with_seed(6),
        "127.0.0.1:0".parse().unwrap(),
    )
    .unwrap();
    assert_ne!(a.project_id(), c.project_id());
}

#[tokio::test]
async fn inventory_file_seeds_settled_images_volumes_and_servers() {
    // Arrange
    let dir = std::env::temp_dir().join(format!("sim-inventory-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let path = dir.join("inventory.json");
    std::fs::write(
        &path,
        serde_json::to_string(&json!({
            "images": [{"name": "cirros", "properties": {"hw_qemu_guest_agent": "yes"}}],
            "volumes": [{"name": "data", "size": 2, "metadata": {"backup": "yes"}}],
            "servers": [
                {"name": "web-1", "image": "cirros", "tags": ["backup"], "metadata": {"tier": "web"}},
                {"name": "db-1", "volumes": [{"name": "db-root", "size": 1, "image": "cirros"}, {"name": "db-data", "size": 1}]},
            ],
        }))
        .unwrap(),
    )
    .unwrap();
    let config = stacksnap_sim::SimConfig::default()
        .with_inventory_file(&path)
        .unwrap();

    // Act
    let t = crate::helpers::spawn_with(config).await;

    // Assert
    let servers = t
        .get_json("/compute/v2.1/servers/detail", Some("compute 2.96"))
        .await;
    let servers = servers["servers"].as_array().unwrap();
    assert_eq!(servers.len(), 2);
    assert!(servers.iter().all(|s| s["status"] == "ACTIVE"));
    let db = servers.iter().find(|s| s["name"] == "db-1").unwrap();
    assert_eq!(
        db["os-extended-volumes:volumes_attached"]
            .as_array()
            .unwrap()
            .len(),
        2
    );
    let vols = t
        .get_json(
            "/volume/v3/volumes/detail?metadata=%7B%22backup%22%3A%22yes%22%7D",
            None,
        )
        .await;
    assert_eq!(vols["volumes"][0]["name"], "data");
    assert_eq!(vols["volumes"][0]["status"], "available");
    std::fs::remove_dir_all(&dir).unwrap();
}
