//! Nova: createImage for both kinds of server, microversions, servers.

use std::time::Duration;

use reqwest::{Method, StatusCode};
use serde_json::{Value, json};
use stacksnap_sim::{Fault, FaultRule, ImageSeed, ServerSeed, SimConfig};

use crate::helpers::{eventually, member_token, observable_durations, record, spawn, spawn_with};

#[tokio::test]
async fn image_backed_create_image_walks_every_task_state_and_image_status() {
    // Arrange
    let t = spawn().await;
    let server = t.sim.create_image_backed_server("web-1", &[], &[], false);

    // Act
    let r = t
        .create_image(
            &server,
            "web-1-snap",
            "2.45",
            json!({"stacksnap_job_id": "j1"}),
        )
        .await;
    assert_eq!(r.status(), StatusCode::ACCEPTED);
    let image_id = r.json::<Value>().await.unwrap()["image_id"]
        .as_str()
        .unwrap()
        .to_owned();
    let (mut tasks, mut statuses) = (Vec::new(), Vec::new());
    let started = std::time::Instant::now();
    let image = loop {
        record(
            &mut tasks,
            t.server(&server).await["OS-EXT-STS:task_state"].clone(),
        );
        let img = t.image(&image_id).await.expect("image exists");
        record(&mut statuses, img["status"].clone());
        if img["status"] == "active" && tasks.last() == Some(&Value::Null) {
            break img;
        }
        assert!(
            started.elapsed() < Duration::from_secs(5),
            "{tasks:?} {statuses:?}"
        );
        tokio::time::sleep(Duration::from_millis(5)).await;
    };

    // Assert
    assert_eq!(
        tasks,
        vec![
            json!("image_snapshot_pending"),
            json!("image_snapshot"),
            json!("image_pending_upload"),
            json!("image_uploading"),
            Value::Null
        ]
    );
    assert_eq!(
        statuses,
        vec![json!("queued"), json!("saving"), json!("active")]
    );
    assert_eq!(image["image_type"], "snapshot");
    assert_eq!(image["instance_uuid"], server.as_str());
    assert_eq!(image["image_location"], "snapshot");
    assert_eq!(image["stacksnap_job_id"], "j1");
    assert_eq!(image["visibility"], "private");
    assert!(
        image["base_image_ref"]
            .as_str()
            .is_some_and(|s| !s.is_empty())
    );
    assert!(image["size"].as_u64().unwrap() > 0);
}

#[tokio::test]
async fn second_image_backed_create_image_while_one_runs_gets_409() {
    // Arrange
    let t = spawn().await;
    let server = t.sim.create_image_backed_server("web-1", &[], &[], false);
    t.create_image_ok(&server, "first").await;

    // Act
    let r = t.create_image(&server, "second", "2.45", json!({})).await;

    // Assert
    assert_eq!(r.status(), StatusCode::CONFLICT);
    let body: Value = r.json().await.unwrap();
    let message = body["conflictingRequest"]["message"].as_str().unwrap();
    assert!(
        message.starts_with(&format!(
            "Cannot 'createImage' instance {server} while it is in task_state image_snapshot"
        )),
        "{message}"
    );
    assert_eq!(body["conflictingRequest"]["code"], 409);
}

#[tokio::test]
async fn volume_backed_create_image_is_active_at_once_while_snapshots_are_creating() {
    // Arrange
    let t = spawn().await;
    let server = t.sim.create_volume_backed_server("db-1", 2, false);

    // Act
    let image_id = t.create_image_ok(&server, "db-1-snap").await;
    let image = t.image(&image_id).await.unwrap();

    // Assert: the image at once
    assert_eq!(image["status"], "active");
    assert_eq!(image["size"], 0);
    assert!(image.get("image_type").is_none() && image.get("instance_uuid").is_none());
    assert_eq!(image["bdm_v2"], "True");
    assert_eq!(image["root_device_name"], "/dev/vda");
    let bdm: Vec<Value> =
        serde_json::from_str(image["block_device_mapping"].as_str().unwrap()).unwrap();
    assert_eq!(bdm.len(), 2);
    let root = bdm.iter().find(|b| b["boot_index"] == 0).unwrap();
    assert_eq!(root["device_name"], "/dev/vda");
    assert!(bdm.iter().all(|b| b["source_type"] == "snapshot"
        && b["destination_type"] == "volume"
        && b["volume_size"] == 1));
    assert!(t.server(&server).await["OS-EXT-STS:task_state"].is_null());
    // Assert: the snapshots are creating, then available
    for b in &bdm {
        let snap = t.snapshot(b["snapshot_id"].as_str().unwrap()).await;
        assert_eq!(snap["status"], "creating");
        assert_eq!(snap["name"], "snapshot for db-1-snap");
        assert_eq!(snap["metadata"], json!({}));
    }
    for b in &bdm {
        let id = b["snapshot_id"].as_str().unwrap();
        eventually(Duration::from_secs(5), || async {
            (t.snapshot(id).await["status"] == "available").then_some(())
        })
        .await;
    }
    assert!(t.server(&server).await["OS-EXT-STS:task_state"].is_null());
}

#[tokio::test]
async fn volume_backed_create_image_does_not_stop_overlapping_requests() {
    let t = spawn().await;
    let server = t.sim.create_volume_backed_server("db-1", 1, false);
    t.create_image_ok(&server, "one").await;
    t.create_image_ok(&server, "two").await;
    assert_eq!(t.sim.count("nova.create_image"), 2);
}

#[tokio::test]
async fn create_image_below_microversion_2_45_answers_only_a_location_header() {
    // Arrange
    let t = spawn_with(SimConfig::default().with_nova_max_microversion("2.44")).await;
    let server = t.sim.create_image_backed_server("web-1", &[], &[], false);

    // Act
    let r = t.create_image(&server, "snap", "2.44", json!({})).await;

    // Assert
    assert_eq!(r.status(), StatusCode::ACCEPTED);
    assert_eq!(r.headers()["openstack-api-version"], "compute 2.44");
    let location = r.headers()["location"].to_str().unwrap().to_owned();
    assert!(r.text().await.unwrap().is_empty());
    let image_id = location.rsplit('/').next().unwrap();
    assert!(t.image(image_id).await.is_some());
    let too_new = t.create_image(&server, "snap2", "2.45", json!({})).await;
    assert_eq!(too_new.status(), StatusCode::NOT_ACCEPTABLE);
}

#[tokio::test]
async fn version_document_and_echoed_microversion_follow_the_configuration() {
    let t = spawn_with(SimConfig::default().with_nova_max_microversion("2.60")).await;
    let doc = t.get_json("/compute/v2.1", None).await;
    assert_eq!(doc["version"]["version"], "2.60");
    assert_eq!(doc["version"]["min_version"], "2.1");
    let r = t
        .call(
            Method::GET,
            "/compute/v2.1/servers",
            Some("compute latest"),
            None,
        )
        .await;
    assert_eq!(r.headers()["openstack-api-version"], "compute 2.60");
    assert_eq!(r.headers()["x-openstack-nova-api-version"], "2.60");
    let legacy = t
        .http
        .get(format!("{}/compute/v2.1/servers", t.sim.base_url()))
        .header("x-auth-token", &t.token)
        .header("x-openstack-nova-api-version", "2.53")
        .send()
        .await
        .unwrap();
    assert_eq!(legacy.headers()["x-openstack-nova-api-version"], "2.53");
    let plain = t
        .call(Method::GET, "/compute/v2.1/servers", None, None)
        .await;
    assert_eq!(plain.headers()["openstack-api-version"], "compute 2.1");
}

#[tokio::test]
async fn guest_agent_quiesces_a_volume_backed_snapshot() {
    let t = spawn().await;
    let with_agent = t.sim.create_volume_backed_server("qga", 1, true);
    let without = t.sim.create_volume_backed_server("plain", 1, false);
    t.create_image_ok(&with_agent, "a").await;
    t.create_image_ok(&without, "b").await;
    let notes: Vec<Vec<String>> = t
        .sim
        .requests()
        .into_iter()
        .filter(|r| r.operation == "nova.create_image")
        .map(|r| r.notes)
        .collect();
    assert_eq!(
        notes,
        vec![vec!["quiesced".to_owned()], vec!["not_quiesced".to_owned()]]
    );
}

fn require_quiesce_server(t: &crate::helpers::TestSim, agent: bool) -> String {
    let mut properties = std::collections::BTreeMap::new();
    properties.insert("os_require_quiesce".to_owned(), json!("yes"));
    if agent {
        properties.insert("hw_qemu_guest_agent".to_owned(), json!("yes"));
    }
    let name = if agent { "strict-qga" } else { "strict" };
    t.sim.create_image(&ImageSeed {
        name: name.into(),
        properties,
        ..ImageSeed::default()
    });
    t.sim
        .create_server(&ServerSeed {
            name: format!("{name}-srv"),
            volumes: vec![stacksnap_sim::VolumeSeed {
                name: "root".into(),
                size: 1,
                image: Some(name.into()),
                ..Default::default()
            }],
            ..ServerSeed::default()
        })
        .unwrap()
}

#[tokio::test]
async fn required_quiesce_without_guest_agent_is_refused_with_400_as_real_nova_does() {
    let t = spawn().await;
    let server = require_quiesce_server(&t, false);
    let r = t.create_image(&server, "snap", "2.45", json!({})).await;
    assert_eq!(r.status(), StatusCode::BAD_REQUEST);
    let body: Value = r.json().await.unwrap();
    assert_eq!(
        body["badRequest"]["message"],
        "QEMU guest agent is not enabled"
    );
    assert!(
        t.sim
            .requests()
            .iter()
            .all(|r| r.operation != "cinder.create_snapshot")
    );
}

#[tokio::test]
async fn required_quiesce_with_an_unresponsive_agent_gets_409() {
    let t = spawn().await;
    let server = require_quiesce_server(&t, true);
    t.sim
        .inject(FaultRule::new("nova.create_image", Fault::QuiesceUnresponsive).times(1));
    let r = t.create_image(&server, "snap", "2.45", json!({})).await;
    assert_eq!(r.status(), StatusCode::CONFLICT);
    let body: Value = r.json().await.unwrap();
    assert!(
        body["conflictingRequest"]["message"]
            .as_str()
            .unwrap()
            .starts_with("Failed to quiesce instance")
    );
    // The next attempt quiesces.
    t.create_image_ok(&server, "snap").await;
}

#[tokio::test]
async fn required_quiesce_failure_on_an_image_backed_server_deletes_the_image() {
    let t = spawn().await;
    t.sim.create_image(&ImageSeed {
        name: "strict".into(),
        properties: [("os_require_quiesce".to_owned(), json!("yes"))]
            .into_iter()
            .collect(),
        ..ImageSeed::default()
    });
    let server = t
        .sim
        .create_server(&ServerSeed {
            name: "s".into(),
            image: Some("strict".into()),
            ..ServerSeed::default()
        })
        .unwrap();
    let image_id = t.create_image_ok(&server, "snap").await;
    eventually(Duration::from_secs(5), || async {
        t.image(&image_id).await.is_none().then_some(())
    })
    .await;
    eventually(Duration::from_secs(5), || async {
        t.server(&server).await["OS-EXT-STS:task_state"]
            .is_null()
            .then_some(())
    })
    .await;
}

#[tokio::test]
async fn exhausted_snapshot_quota_gets_403_from_nova() {
    // Arrange
    let t = spawn().await;
    let server = t.sim.create_volume_backed_server("db-1", 2, false);
    t.sim.set_snapshot_quota(1);

    // Act
    let r = t.create_image(&server, "snap", "2.45", json!({})).await;

    // Assert
    assert_eq!(r.status(), StatusCode::FORBIDDEN);
    let body: Value = r.json().await.unwrap();
    assert_eq!(
        body,
        json!({"forbidden": {"code": 403, "message": "Quota exceeded for resources: snapshots"}})
    );
    assert_eq!(t.sim.count("nova.create_image"), 1);
}

#[tokio::test]
async fn server_create_api_builds_image_and_volume_backed_servers() {
    let t = spawn().await;
    let image = t.sim.create_image(&ImageSeed {
        name: "img".into(),
        ..ImageSeed::default()
    });
    let r = t
        .call(Method::POST, "/compute/v2.1/servers", Some("compute 2.96"), Some(json!({"server": {
            "name": "bfv", "flavorRef": "1", "networks": "none", "imageRef": "",
            "block_device_mapping_v2": [
                {"uuid": image, "source_type": "image", "destination_type": "volume", "boot_index": 0, "volume_size": 1},
                {"source_type": "blank", "destination_type": "volume", "boot_index": -1, "volume_size": 2},
            ]}})))
        .await;
    assert_eq!(r.status(), StatusCode::ACCEPTED);
    assert!(r.headers().contains_key("location"));
    let id = r.json::<Value>().await.unwrap()["server"]["id"]
        .as_str()
        .unwrap()
        .to_owned();
    assert_eq!(t.server(&id).await["status"], "BUILD");
    let server = eventually(Duration::from_secs(5), || async {
        let s = t.server(&id).await;
        (s["status"] == "ACTIVE").then_some(s)
    })
    .await;
    assert_eq!(server["image"], "");
    let vols = server["os-extended-volumes:volumes_attached"]
        .as_array()
        .unwrap();
    assert_eq!(vols.len(), 2);
    let root = t.volume(vols[0]["id"].as_str().unwrap()).await;
    assert_eq!(root["status"], "in-use");
    assert_eq!(root["bootable"], "true");
    assert_eq!(root["volume_image_metadata"]["image_id"], image.as_str());
    let no_net = t
        .call(
            Method::POST,
            "/compute/v2.1/servers",
            Some("compute 2.96"),
            Some(json!({"server": {"name": "x", "flavorRef": "1", "imageRef": image}})),
        )
        .await;
    assert_eq!(no_net.status(), StatusCode::BAD_REQUEST);
}

#[tokio::test]
async fn server_list_filters_by_tags_and_pages_by_marker() {
    // Arrange
    let t = spawn().await;
    for i in 0..5 {
        let tags: &[&str] = if i % 2 == 0 {
            &["backup", "web"]
        } else {
            &["web"]
        };
        t.sim
            .create_image_backed_server(&format!("s{i}"), tags, &[("tier", "web")], false);
    }

    // Act
    let tagged = t
        .get_json(
            "/compute/v2.1/servers/detail?tags=backup,web",
            Some("compute 2.96"),
        )
        .await;
    let page1 = t
        .get_json("/compute/v2.1/servers?limit=2", Some("compute 2.96"))
        .await;
    let next = page1["servers_links"][0]["href"]
        .as_str()
        .unwrap()
        .to_owned();
    let page2 = t
        .get_json(
            next.strip_prefix(&t.sim.base_url()).unwrap(),
            Some("compute 2.96"),
        )
        .await;
    let all = t
        .get_json("/compute/v2.1/servers?all_tenants=1", Some("compute 2.96"))
        .await;

    // Assert
    let names = |v: &Value, key: &str| -> Vec<String> {
        v[key]
            .as_array()
            .unwrap()
            .iter()
            .map(|s| s["name"].as_str().unwrap().to_owned())
            .collect()
    };
    assert_eq!(names(&tagged, "servers"), ["s4", "s2", "s0"]);
    assert_eq!(tagged["servers"][0]["tags"], json!(["backup", "web"]));
    assert_eq!(tagged["servers"][0]["metadata"], json!({"tier": "web"}));
    assert_eq!(names(&page1, "servers"), ["s4", "s3"]);
    assert_eq!(names(&page2, "servers"), ["s2", "s1"]);
    assert_eq!(names(&all, "servers").len(), 5);
    let bad = t
        .call(Method::GET, "/compute/v2.1/servers?marker=nope", None, None)
        .await;
    assert_eq!(bad.status(), StatusCode::BAD_REQUEST);
}

#[tokio::test]
async fn tags_metadata_and_volume_attachments_can_be_read_and_changed() {
    let t = spawn().await;
    let server = t.sim.create_volume_backed_server("db", 1, false);
    let base = format!("/compute/v2.1/servers/{server}");
    assert_eq!(
        t.call(
            Method::PUT,
            &format!("{base}/tags/backup"),
            Some("compute 2.96"),
            None
        )
        .await
        .status(),
        StatusCode::CREATED
    );
    assert_eq!(
        t.get_json(&format!("{base}/tags"), Some("compute 2.96"))
            .await["tags"],
        json!(["backup"])
    );
    let r = t
        .call(
            Method::POST,
            &format!("{base}/metadata"),
            None,
            Some(json!({"metadata": {"a": "1"}})),
        )
        .await;
    assert_eq!(r.status(), StatusCode::OK);
    assert_eq!(t.server(&server).await["metadata"], json!({"a": "1"}));
    let vol = t.sim.create_volume("data", 1, &[]);
    let r = t
        .call(
            Method::POST,
            &format!("{base}/os-volume_attachments"),
            None,
            Some(json!({"volumeAttachment": {"volumeId": vol}})),
        )
        .await;
    assert_eq!(r.status(), StatusCode::OK);
    let list = t
        .get_json(&format!("{base}/os-volume_attachments"), None)
        .await;
    assert_eq!(list["volumeAttachments"].as_array().unwrap().len(), 2);
    eventually(Duration::from_secs(5), || async {
        (t.volume(&vol).await["status"] == "in-use").then_some(())
    })
    .await;
    let _ = observable_durations();
}

#[tokio::test]
async fn unknown_server_gets_item_not_found() {
    let t = spawn().await;
    let r = t
        .call(Method::GET, "/compute/v2.1/servers/nope", None, None)
        .await;
    assert_eq!(r.status(), StatusCode::NOT_FOUND);
    let body: Value = r.json().await.unwrap();
    assert_eq!(
        body,
        json!({"itemNotFound": {"code": 404, "message": "Instance nope could not be found."}})
    );
}

#[tokio::test]
async fn nova_silently_drops_server_list_filters_a_member_may_not_use() {
    // Arrange: one tagged server and one without tags.
    let t = spawn().await;
    let member = member_token(&t.http, &t.sim).await;
    let tagged = t
        .sim
        .create_image_backed_server("tagged", &["backup"], &[], false);
    t.sim.create_image_backed_server("plain", &[], &[], false);
    let ids = |v: &Value| -> Vec<String> {
        v["servers"]
            .as_array()
            .unwrap()
            .iter()
            .map(|s| s["id"].as_str().unwrap().to_owned())
            .collect()
    };
    let path = "/compute/v2.1/servers/detail?tags=backup";

    // Act
    let member_old = t.get_with(&member, path, "compute 2.25").await;
    let member_new = t.get_with(&member, path, "compute 2.26").await;
    let admin_old = t.get_with(&t.token, path, "compute 2.25").await;

    // Assert: no error, the filter is just not applied for a member below 2.26.
    assert_eq!(member_old.status(), StatusCode::OK);
    assert_eq!(ids(&member_old.json().await.unwrap()).len(), 2);
    assert_eq!(
        ids(&member_new.json().await.unwrap()),
        std::slice::from_ref(&tagged)
    );
    assert_eq!(ids(&admin_old.json().await.unwrap()), [tagged]);
}

#[tokio::test]
async fn a_volume_backed_create_image_makes_the_snapshots_first_and_the_image_last() {
    // Arrange: the call takes longer than the client waits.
    let t = spawn().await;
    t.sim
        .update_durations(|d| d.volume_backed_create_image_call = Duration::from_millis(1500));
    let server = t.sim.create_volume_backed_server("db-1", 2, false);
    let impatient = reqwest::Client::builder()
        .timeout(Duration::from_millis(300))
        .build()
        .unwrap();

    // Act
    let sent = impatient
        .post(format!(
            "{}/compute/v2.1/servers/{server}/action",
            t.sim.base_url()
        ))
        .header("x-auth-token", &t.token)
        .header("openstack-api-version", "compute 2.96")
        .json(&json!({"createImage": {"name": "db-1-slow", "metadata": {"k": "v"}}}))
        .send()
        .await;

    // Assert: the client gave up; Nova has made the snapshots, not yet the image.
    assert!(sent.unwrap_err().is_timeout());
    let snapshots = t
        .get_json(
            "/volume/v3/snapshots/detail?name=snapshot%20for%20db-1-slow",
            None,
        )
        .await["snapshots"]
        .as_array()
        .unwrap()
        .clone();
    assert_eq!(snapshots.len(), 2, "one per volume, before the image");
    assert!(snapshots.iter().all(|s| s["metadata"] == json!({})));
    let images = t.get_json("/image/v2/images?k=v", None).await["images"].clone();
    assert_eq!(images, json!([]), "no image yet");
    // The image appears when the call would have answered, listing the snapshots.
    let image = eventually(Duration::from_secs(5), || async {
        t.get_json("/image/v2/images?k=v", None).await["images"]
            .as_array()
            .and_then(|list| list.first().cloned())
    })
    .await;
    let bdm: Vec<Value> =
        serde_json::from_str(image["block_device_mapping"].as_str().unwrap()).unwrap();
    let mut listed: Vec<&str> = bdm
        .iter()
        .filter_map(|b| b["snapshot_id"].as_str())
        .collect();
    let mut made: Vec<&str> = snapshots.iter().filter_map(|s| s["id"].as_str()).collect();
    listed.sort_unstable();
    made.sort_unstable();
    assert_eq!(listed, made);
    assert_eq!(t.sim.count("nova.create_image"), 1);
}

#[tokio::test]
async fn the_volume_backed_create_image_call_duration_is_set_through_the_admin_api() {
    let t = spawn().await;
    let url = format!("{}/_sim/durations", t.sim.base_url());

    let changed: Value = t
        .http
        .patch(&url)
        .json(&json!({"volume_backed_create_image_call": 45000}))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    let unknown = t
        .http
        .patch(&url)
        .json(&json!({"no_such_step": 1}))
        .send()
        .await
        .unwrap();

    assert_eq!(changed["volume_backed_create_image_call"], 45000);
    assert_eq!(
        changed["snapshot_create"], 500,
        "the other durations keep their value"
    );
    assert_eq!(unknown.status(), StatusCode::BAD_REQUEST);
    let read: Value = t.http.get(&url).send().await.unwrap().json().await.unwrap();
    assert_eq!(read, changed);
}
