//! Restoring snapshots: booting servers from snapshot images (volume-backed
//! ones build their volumes from the listed Cinder snapshots), volumes from
//! Cinder snapshots, groups from group snapshots, and Nova's and Cinder's
//! refusals with the rig's messages.

use std::time::Duration;

use reqwest::{Method, StatusCode};
use serde_json::{Value, json};
use stacksnap_sim::{Fault, FaultRule, ImageSeed, ServerSeed, SimConfig, VolumeSeed};

use crate::helpers::{TestSim, eventually, record, spawn_with};

const NOVA: Option<&str> = Some("compute 2.96");
const CINDER: Option<&str> = Some("volume 3.71");

async fn boot(t: &TestSim, server: Value, mv: Option<&str>) -> (StatusCode, Value) {
    let r = t
        .call(
            Method::POST,
            "/compute/v2.1/servers",
            mv,
            Some(json!({ "server": server })),
        )
        .await;
    let status = r.status();
    (status, r.json().await.unwrap_or(Value::Null))
}

fn message(body: &Value) -> &str {
    body.as_object()
        .and_then(|o| o.values().next())
        .and_then(|v| v["message"].as_str())
        .unwrap_or_default()
}

/// A volume-backed server made through the API: a bootable root (deleted
/// with the server) and a 2 GiB data volume (kept), as on the rig.
async fn volume_backed_source(t: &TestSim) -> String {
    t.sim.create_image(&ImageSeed {
        name: "restore-base".into(),
        size: 1 << 20,
        properties: [("hw_qemu_guest_agent".to_owned(), json!("yes"))].into(),
        ..ImageSeed::default()
    });
    let root = t
        .sim
        .seed_volume(&VolumeSeed {
            name: "src-root".into(),
            size: 1,
            image: Some("restore-base".into()),
            ..VolumeSeed::default()
        })
        .unwrap();
    let data = t.sim.create_volume("src-data", 2, &[]);
    let (status, body) = boot(
        t,
        json!({"name": "src", "flavorRef": "1", "networks": "none", "block_device_mapping_v2": [
            {"uuid": root, "source_type": "volume", "destination_type": "volume", "boot_index": 0, "delete_on_termination": true},
            {"uuid": data, "source_type": "volume", "destination_type": "volume", "boot_index": -1, "delete_on_termination": false},
        ]}),
        NOVA,
    )
    .await;
    assert_eq!(status, StatusCode::ACCEPTED, "{body}");
    let id = body["server"]["id"].as_str().unwrap().to_owned();
    eventually(Duration::from_secs(5), || async {
        (t.sim.server(&id)?.status == "ACTIVE").then_some(())
    })
    .await;
    id
}

/// createImage of a volume-backed server, waited until its snapshots are available.
async fn volume_backed_snapshot_image(t: &TestSim, server: &str) -> String {
    snapshot_image(t, server, 2).await
}

/// createImage of a volume-backed server with `volumes` volumes, waited
/// until its snapshots are available.
async fn snapshot_image(t: &TestSim, server: &str, volumes: usize) -> String {
    let image = t.create_image_ok(server, "src-snap").await;
    eventually(Duration::from_secs(5), || async {
        let snaps = t.sim.image_snapshot_ids(&image);
        (snaps.len() == volumes
            && snaps
                .iter()
                .all(|s| t.sim.snapshot_status(s).as_deref() == Some("available")))
        .then_some(())
    })
    .await;
    image
}

#[tokio::test]
async fn a_volume_backed_snapshot_image_boots_from_new_volumes_made_from_its_snapshots() {
    // Arrange
    let t = spawn_with(SimConfig::default()).await;
    let source = volume_backed_source(&t).await;
    let image = volume_backed_snapshot_image(&t, &source).await;
    let snapshots = t.sim.image_snapshot_ids(&image);

    // Act
    let (status, body) = boot(
        &t,
        json!({"name": "restored", "flavorRef": "2", "imageRef": image, "networks": "none",
               "availability_zone": "nova", "metadata": {"stacksnap_restored_from": "s1"},
               "tags": ["stacksnap-job-1"]}),
        NOVA,
    )
    .await;
    assert_eq!(status, StatusCode::ACCEPTED, "{body}");
    let id = body["server"]["id"].as_str().unwrap().to_owned();
    let mut statuses = Vec::new();
    let server = eventually(Duration::from_secs(5), || async {
        let s = t.sim.server(&id).unwrap();
        let vols: Vec<String> = s
            .volumes
            .iter()
            .map(|v| t.sim.volume(&v.volume_id).unwrap().status)
            .collect();
        (s.status == "ACTIVE").then_some((s, vols))
    })
    .await;
    record(&mut statuses, json!(server.0.status));

    // Assert
    let (server, volume_statuses) = server;
    assert_eq!(volume_statuses, ["in-use", "in-use"]);
    assert!(server.volume_backed);
    assert_eq!(server.image_id.as_deref(), Some(image.as_str()));
    assert_eq!(server.availability_zone, "nova");
    assert_eq!(server.networks, json!("none"));
    assert_eq!(t.sim.servers_with_tag("stacksnap-job-1"), vec![id.clone()]);
    let root = t.sim.volume(&server.volumes[0].volume_id).unwrap();
    let data = t.sim.volume(&server.volumes[1].volume_id).unwrap();
    assert_eq!(root.snapshot_id.as_deref(), Some(snapshots[0].as_str()));
    assert_eq!(data.snapshot_id.as_deref(), Some(snapshots[1].as_str()));
    assert_eq!((root.size, data.size), (1, 2));
    assert!(root.bootable && !data.bootable);
    assert_eq!(root.attached_to, vec![id.clone()]);
    assert_eq!(server.volumes[0].boot_index, Some(0));
    assert!(server.volumes[0].delete_on_termination);
    assert!(!server.volumes[1].delete_on_termination);
    let shown = t.server(&id).await;
    assert_eq!(shown["image"]["id"], image.as_str());
    assert_eq!(shown["OS-EXT-AZ:availability_zone"], "nova");
    assert_eq!(shown["pinned_availability_zone"], "nova");
    assert_eq!(shown["addresses"], json!({}));
    assert_eq!(shown["metadata"]["stacksnap_restored_from"], "s1");
    assert_eq!(
        shown["os-extended-volumes:volumes_attached"],
        json!([
            {"id": root.id, "delete_on_termination": true},
            {"id": data.id, "delete_on_termination": false},
        ])
    );
    // The snapshot image of the restored server is volume-backed again.
    let again = t.create_image_ok(&id, "restored-snap").await;
    assert_eq!(t.sim.image_snapshot_ids(&again).len(), 2);
}

#[tokio::test]
async fn a_restored_server_builds_while_its_volumes_are_made() {
    let t = spawn_with(SimConfig::default()).await;
    let source = volume_backed_source(&t).await;
    let image = volume_backed_snapshot_image(&t, &source).await;

    let (_, body) = boot(
        &t,
        json!({"name": "r", "flavorRef": "1", "imageRef": image, "networks": "none"}),
        NOVA,
    )
    .await;
    let id = body["server"]["id"].as_str().unwrap().to_owned();
    let (mut servers, mut roots) = (Vec::new(), Vec::new());
    eventually(Duration::from_secs(5), || {
        let s = t.sim.server(&id).unwrap();
        record(&mut servers, json!(s.status));
        let root = t.sim.volume(&s.volumes[0].volume_id).unwrap();
        record(&mut roots, json!(root.status));
        async move { (s.status == "ACTIVE").then_some(()) }
    })
    .await;

    assert_eq!(servers, [json!("BUILD"), json!("ACTIVE")]);
    assert_eq!(roots.first(), Some(&json!("creating")));
    assert_eq!(roots.last(), Some(&json!("in-use")));
}

#[tokio::test]
async fn deleting_a_restored_server_deletes_the_volumes_marked_so_and_detaches_the_others() {
    let t = spawn_with(SimConfig::default()).await;
    let source = volume_backed_source(&t).await;
    let image = volume_backed_snapshot_image(&t, &source).await;
    let (_, body) = boot(
        &t,
        json!({"name": "r", "flavorRef": "1", "imageRef": image, "networks": "none"}),
        NOVA,
    )
    .await;
    let id = body["server"]["id"].as_str().unwrap().to_owned();
    let server = eventually(Duration::from_secs(5), || async {
        t.sim.server(&id).filter(|s| s.status == "ACTIVE")
    })
    .await;

    let r = t
        .call(
            Method::DELETE,
            &format!("/compute/v2.1/servers/{id}"),
            NOVA,
            None,
        )
        .await;

    assert_eq!(r.status(), StatusCode::NO_CONTENT);
    let (root, data) = (&server.volumes[0].volume_id, &server.volumes[1].volume_id);
    eventually(Duration::from_secs(5), || async {
        (t.sim.server(&id).is_none()
            && t.sim.volume(root).is_none()
            && t.sim.volume(data).is_some_and(|v| v.status == "available"))
        .then_some(())
    })
    .await;
    assert!(t.sim.volume(data).unwrap().attached_to.is_empty());
}

#[tokio::test]
async fn a_volume_to_delete_on_termination_that_has_snapshots_stays_available() {
    // On the rig Cinder refuses to delete a volume with snapshots, so Nova's
    // delete_on_termination leaves it behind, detached.
    let t = spawn_with(SimConfig::default()).await;
    let source = volume_backed_source(&t).await;
    let _image = volume_backed_snapshot_image(&t, &source).await;
    let root = t.sim.server(&source).unwrap().volumes[0].volume_id.clone();

    let r = t
        .call(
            Method::DELETE,
            &format!("/compute/v2.1/servers/{source}"),
            NOVA,
            None,
        )
        .await;

    assert_eq!(r.status(), StatusCode::NO_CONTENT);
    eventually(Duration::from_secs(5), || async {
        (t.sim.server(&source).is_none()
            && t.sim.volume(&root).is_some_and(|v| v.status == "available"))
        .then_some(())
    })
    .await;
    tokio::time::sleep(Duration::from_millis(100)).await;
    assert!(t.sim.volume(&root).is_some());
}

#[tokio::test]
async fn an_image_backed_snapshot_image_boots_as_an_ordinary_image() {
    let t = spawn_with(SimConfig::default()).await;
    let source = t.sim.create_image_backed_server("web", &[], &[], false);
    let image = t.create_image_ok(&source, "web-snap").await;
    eventually(Duration::from_secs(5), || async {
        t.image(&image)
            .await
            .filter(|i| i["status"] == "active")
            .map(|_| ())
    })
    .await;

    let (status, body) = boot(
        &t,
        json!({"name": "web-2", "flavorRef": "1", "imageRef": image, "networks": "none"}),
        NOVA,
    )
    .await;

    assert_eq!(status, StatusCode::ACCEPTED, "{body}");
    let id = body["server"]["id"].as_str().unwrap();
    let s = t.sim.server(id).unwrap();
    assert!(!s.volume_backed && s.volumes.is_empty());
    assert_eq!(s.image_id.as_deref(), Some(image.as_str()));
}

#[tokio::test]
async fn a_snapshot_image_whose_snapshot_is_gone_is_refused() {
    let t = spawn_with(SimConfig::default()).await;
    let source = volume_backed_source(&t).await;
    let image = volume_backed_snapshot_image(&t, &source).await;
    let gone = t.sim.image_snapshot_ids(&image)[1].clone();
    let r = t
        .call(
            Method::DELETE,
            &format!("/volume/v3/snapshots/{gone}"),
            CINDER,
            None,
        )
        .await;
    assert_eq!(r.status(), StatusCode::ACCEPTED);
    eventually(Duration::from_secs(5), || async {
        t.sim.snapshot_status(&gone).is_none().then_some(())
    })
    .await;

    let (status, body) = boot(
        &t,
        json!({"name": "r", "flavorRef": "1", "imageRef": image, "networks": "none"}),
        NOVA,
    )
    .await;

    // The rig's answer.
    assert_eq!(status, StatusCode::BAD_REQUEST);
    assert_eq!(
        message(&body),
        format!("Block Device Mapping is Invalid: failed to get snapshot {gone}.")
    );
}

#[tokio::test]
async fn nova_refuses_a_flavor_too_small_for_the_image_as_the_rig_does() {
    let t = spawn_with(SimConfig::default()).await;
    let min_disk = t.sim.create_image(&ImageSeed {
        name: "min-disk".into(),
        min_disk: 5,
        ..ImageSeed::default()
    });
    let min_ram = t.sim.create_image(&ImageSeed {
        name: "min-ram".into(),
        min_ram: 1024,
        ..ImageSeed::default()
    });
    let big = t.sim.create_image(&ImageSeed {
        name: "big".into(),
        size: 3 << 30,
        ..ImageSeed::default()
    });
    let cases = [
        (
            min_disk,
            "Flavor's disk is smaller than the minimum size specified in image metadata. Flavor disk is 1073741824 bytes, minimum size is 5368709120 bytes.",
        ),
        (min_ram, "Flavor's memory is too small for requested image."),
        (
            big,
            "Flavor's disk is too small for requested image. Flavor disk is 1073741824 bytes, image is 3221225472 bytes.",
        ),
        (
            "00000000-0000-0000-0000-000000000000".to_owned(),
            "Can not find requested image",
        ),
    ];
    for (image, expected) in cases {
        let (status, body) = boot(
            &t,
            json!({"name": "x", "flavorRef": "1", "imageRef": image, "networks": "none"}),
            NOVA,
        )
        .await;
        assert_eq!(status, StatusCode::BAD_REQUEST, "{body}");
        assert_eq!(message(&body), expected);
    }
    assert!(t.sim.servers().is_empty());
}

#[tokio::test]
async fn a_volume_backed_snapshot_keeps_the_flavor_disk_as_min_disk_so_a_smaller_root_is_refused() {
    // Nova records max(image min_disk, flavor root_gb) as the instance's
    // min_disk and the snapshot image carries it; the image's root mapping
    // has the root volume's size, which Nova's API compares with it.
    let t = spawn_with(SimConfig::default()).await;
    let source = t
        .sim
        .create_server(&ServerSeed {
            name: "db".into(),
            flavor: "m1.small".into(),
            volumes: vec![VolumeSeed {
                name: "db-root".into(),
                size: 1,
                ..VolumeSeed::default()
            }],
            ..ServerSeed::default()
        })
        .unwrap();
    let image = snapshot_image(&t, &source, 1).await;
    assert_eq!(t.image(&image).await.unwrap()["min_disk"], 2);

    let (status, body) = boot(
        &t,
        json!({"name": "r", "flavorRef": "3", "imageRef": image, "networks": "none"}),
        NOVA,
    )
    .await;

    assert_eq!(status, StatusCode::BAD_REQUEST);
    assert_eq!(
        message(&body),
        "Volume is smaller than the minimum size specified in image metadata. Volume size is 1073741824 bytes, minimum size is 2147483648 bytes."
    );
}

#[tokio::test]
async fn quota_key_name_and_zone_are_checked_with_novas_messages() {
    let t = spawn_with(SimConfig::default()).await;
    let image = t.sim.create_image(&ImageSeed {
        name: "img".into(),
        ..ImageSeed::default()
    });
    let server = |extra: Value| {
        let mut s = json!({"name": "x", "flavorRef": "1", "imageRef": image, "networks": "none"});
        s.as_object_mut()
            .unwrap()
            .extend(extra.as_object().unwrap().clone());
        s
    };

    let bad_key = boot(&t, server(json!({"key_name": "nope"})), NOVA).await;
    let bad_zone = boot(&t, server(json!({"availability_zone": "nope"})), NOVA).await;
    t.sim.add_keypair("admin", "ops").unwrap();
    let with_key = boot(&t, server(json!({"key_name": "ops"})), NOVA).await;
    t.sim.set_instances_quota(1);
    let over = boot(&t, server(json!({})), NOVA).await;

    assert_eq!(bad_key.0, StatusCode::BAD_REQUEST);
    assert_eq!(message(&bad_key.1), "Invalid key_name provided.");
    assert_eq!(bad_zone.0, StatusCode::BAD_REQUEST);
    assert_eq!(
        message(&bad_zone.1),
        "The requested availability zone is not available"
    );
    assert_eq!(with_key.0, StatusCode::ACCEPTED, "{}", with_key.1);
    let id = with_key.1["server"]["id"].as_str().unwrap();
    assert_eq!(t.server(id).await["key_name"], "ops");
    assert_eq!(over.0, StatusCode::FORBIDDEN);
    assert_eq!(
        message(&over.1),
        "Quota exceeded for instances: Requested 1, but already used 1 of 1 instances"
    );
}

#[tokio::test]
async fn keypairs_can_be_imported_listed_and_deleted() {
    let t = spawn_with(SimConfig::default()).await;
    let demo = t.demo_token().await;

    let r = t
        .call_as(
            &demo,
            Method::POST,
            "/compute/v2.1/os-keypairs",
            NOVA,
            Some(json!({"keypair": {"name": "k1", "public_key": "ssh-ed25519 AAAA demo"}})),
        )
        .await;
    assert_eq!(r.status(), StatusCode::CREATED);
    let dup = t
        .call_as(
            &demo,
            Method::POST,
            "/compute/v2.1/os-keypairs",
            NOVA,
            Some(json!({"keypair": {"name": "k1", "public_key": "ssh-ed25519 AAAA demo"}})),
        )
        .await;
    let list: Value = t
        .call_as(&demo, Method::GET, "/compute/v2.1/os-keypairs", NOVA, None)
        .await
        .json()
        .await
        .unwrap();
    let admin_list: Value = t.get_json("/compute/v2.1/os-keypairs", NOVA).await;
    let del = t
        .call_as(
            &demo,
            Method::DELETE,
            "/compute/v2.1/os-keypairs/k1",
            NOVA,
            None,
        )
        .await;

    assert_eq!(dup.status(), StatusCode::CONFLICT);
    assert_eq!(list["keypairs"][0]["keypair"]["name"], "k1");
    assert_eq!(admin_list["keypairs"], json!([]), "keypairs are per user");
    assert_eq!(del.status(), StatusCode::ACCEPTED);
}

#[tokio::test]
async fn networks_tags_and_metadata_are_validated_as_novas_schema_answers_on_the_rig() {
    let t = spawn_with(SimConfig::default()).await;
    let image = t.sim.create_image(&ImageSeed {
        name: "img".into(),
        ..ImageSeed::default()
    });
    let net = "4b5a1f2e-0000-4000-8000-000000000000";
    let with = |key: &str, v: Value| {
        let mut s = json!({"name": "x", "flavorRef": "1", "imageRef": image});
        s[key] = v;
        s
    };
    let refused = [
        (
            with("networks", json!("foo")),
            NOVA,
            "Invalid input for field/attribute networks. Value: foo. 'foo' is not valid under any of the given schemas",
        ),
        (
            with("networks", json!([{"uuid": "bad"}])),
            NOVA,
            "Invalid input for field/attribute networks. Value: [{'uuid': 'bad'}]. [{'uuid': 'bad'}] is not valid under any of the given schemas",
        ),
        (
            with("networks", json!({"uuid": net})),
            NOVA,
            "Invalid input for field/attribute networks. Value: {'uuid': '4b5a1f2e-0000-4000-8000-000000000000'}. {'uuid': '4b5a1f2e-0000-4000-8000-000000000000'} is not valid under any of the given schemas",
        ),
        (
            with("networks", json!([{"network": net}])),
            NOVA,
            "Invalid input for field/attribute networks. Value: [{'network': '4b5a1f2e-0000-4000-8000-000000000000'}]. [{'network': '4b5a1f2e-0000-4000-8000-000000000000'}] is not valid under any of the given schemas",
        ),
        (
            with("networks", json!("none")),
            Some("compute 2.36"),
            "Invalid input for field/attribute networks. Value: none. 'none' is not of type 'array'",
        ),
        (
            with("tags", json!("a")),
            NOVA,
            "Invalid input for field/attribute tags. Value: a. 'a' is not of type 'array'",
        ),
        (
            with("metadata", json!({"a": 1})),
            NOVA,
            "Invalid input for field/attribute a. Value: 1. 1 is not of type 'string'",
        ),
        (
            with("name", json!("")),
            NOVA,
            "Invalid input for field/attribute name. Value: . '' should be non-empty",
        ),
    ];
    for (server, mv, expected) in refused {
        let mut server = server;
        if server.get("networks").is_none() && mv == NOVA {
            server["networks"] = json!("none");
        }
        let (status, body) = boot(&t, server, mv).await;
        assert_eq!(status, StatusCode::BAD_REQUEST, "{expected}");
        assert_eq!(message(&body), expected);
    }
    let (status, body) = boot(&t, with("flavorRef", json!("1")), NOVA).await;
    assert_eq!(status, StatusCode::BAD_REQUEST);
    assert!(
        message(&body).ends_with("'networks' is a required property"),
        "{body}"
    );
    let mut tags_early = with("networks", json!("none"));
    tags_early["tags"] = json!(["a"]);
    let (status, body) = boot(&t, tags_early, Some("compute 2.51")).await;
    assert_eq!(status, StatusCode::BAD_REQUEST);
    assert!(
        message(&body).ends_with("Additional properties are not allowed ('tags' was unexpected)"),
        "{body}"
    );

    // Accepted and recorded: the simulator has no Neutron.
    for networks in [
        json!("auto"),
        json!([]),
        json!([{"uuid": net}]),
        json!([{"port": net}]),
    ] {
        let (status, body) = boot(&t, with("networks", networks.clone()), NOVA).await;
        assert_eq!(status, StatusCode::ACCEPTED, "{networks} {body}");
        let id = body["server"]["id"].as_str().unwrap();
        assert_eq!(t.sim.server(id).unwrap().networks, networks);
    }
}

async fn create_volume(t: &TestSim, volume: Value) -> (StatusCode, Value) {
    let r = t
        .call(
            Method::POST,
            "/volume/v3/volumes",
            CINDER,
            Some(json!({ "volume": volume })),
        )
        .await;
    let status = r.status();
    (status, r.json().await.unwrap_or(Value::Null))
}

async fn available_snapshot(t: &TestSim, volume: &str) -> String {
    let r = t
        .create_snapshot(json!({"volume_id": volume, "name": "s"}), "3.71")
        .await;
    let id = r.json::<Value>().await.unwrap()["snapshot"]["id"]
        .as_str()
        .unwrap()
        .to_owned();
    eventually(Duration::from_secs(5), || async {
        (t.sim.snapshot_status(&id).as_deref() == Some("available")).then_some(())
    })
    .await;
    id
}

#[tokio::test]
async fn a_volume_from_a_snapshot_takes_its_size_type_and_zone_and_cinders_checks() {
    let t = spawn_with(SimConfig::default().with_availability_zones(&["nova", "az2"])).await;
    let source = t.sim.create_volume("data", 2, &[]);
    let snap = available_snapshot(&t, &source).await;

    let (status, body) = create_volume(&t, json!({"snapshot_id": snap, "name": "restored"})).await;
    let smaller = create_volume(&t, json!({"snapshot_id": snap, "size": 1})).await;
    let other_zone =
        create_volume(&t, json!({"snapshot_id": snap, "availability_zone": "az2"})).await;
    let unknown_zone = create_volume(
        &t,
        json!({"snapshot_id": snap, "availability_zone": "other"}),
    )
    .await;
    let zero = create_volume(&t, json!({"snapshot_id": snap, "size": 0})).await;
    let bad_type = create_volume(&t, json!({"snapshot_id": snap, "volume_type": "nope"})).await;
    let typed = create_volume(
        &t,
        json!({"snapshot_id": snap, "volume_type": "__DEFAULT__", "size": 3, "availability_zone": "nova"}),
    )
    .await;
    t.sim.set_snapshot_status(&snap, "error");
    let from_error = create_volume(&t, json!({"snapshot_id": snap})).await;

    assert_eq!(status, StatusCode::ACCEPTED, "{body}");
    assert_eq!(body["volume"]["status"], "creating");
    assert_eq!(body["volume"]["size"], 2);
    assert_eq!(body["volume"]["availability_zone"], "nova");
    assert_eq!(body["volume"]["volume_type"], "__DEFAULT__");
    let id = body["volume"]["id"].as_str().unwrap();
    eventually(Duration::from_secs(5), || async {
        t.sim
            .volume(id)
            .filter(|v| v.status == "available")
            .map(|_| ())
    })
    .await;
    assert_eq!(
        t.sim.volume(id).unwrap().snapshot_id.as_deref(),
        Some(snap.as_str())
    );
    let expect = [
        (
            smaller,
            "Invalid input received: Volume size '1'GB cannot be smaller than the snapshot size 2GB. They must be >= original snapshot size.",
        ),
        (
            other_zone,
            "Invalid input received: Volume must be in the same availability zone as the snapshot",
        ),
        (unknown_zone, "Availability zone 'other' is invalid."),
        (
            zero,
            "Invalid input for field/attribute size. Value: 0. 0 is less than the minimum of 1",
        ),
        (
            from_error,
            "Invalid snapshot: Originating snapshot status must be one of 'available' values",
        ),
    ];
    for ((status, body), expected) in expect {
        assert_eq!(status, StatusCode::BAD_REQUEST, "{expected}");
        assert_eq!(message(&body), expected);
    }
    assert_eq!(bad_type.0, StatusCode::NOT_FOUND);
    assert_eq!(
        message(&bad_type.1),
        "Volume type with name nope could not be found."
    );
    assert_eq!(typed.0, StatusCode::ACCEPTED, "{}", typed.1);
    assert_eq!(typed.1["volume"]["size"], 3);
}

#[tokio::test]
async fn a_volume_in_another_zone_keeps_its_zone_through_snapshot_and_restore() {
    let t = spawn_with(SimConfig::default().with_availability_zones(&["nova", "az2"])).await;
    let (_, body) = create_volume(&t, json!({"size": 1, "availability_zone": "az2"})).await;
    let source = body["volume"]["id"].as_str().unwrap().to_owned();
    eventually(Duration::from_secs(5), || async {
        t.sim
            .volume(&source)
            .filter(|v| v.status == "available")
            .map(|_| ())
    })
    .await;
    let snap = available_snapshot(&t, &source).await;

    let (status, body) = create_volume(&t, json!({"snapshot_id": snap})).await;
    let refused = create_volume(
        &t,
        json!({"snapshot_id": snap, "availability_zone": "nova"}),
    )
    .await;

    assert_eq!(status, StatusCode::ACCEPTED);
    assert_eq!(body["volume"]["availability_zone"], "az2");
    assert_eq!(refused.0, StatusCode::BAD_REQUEST);
    let zones = t.get_json("/volume/v3/os-availability-zone", CINDER).await;
    assert_eq!(zones["availabilityZoneInfo"][1]["zoneName"], "az2");
}

async fn group_with_snapshot(t: &TestSim) -> (String, String, Vec<String>) {
    let r = t
        .call(
            Method::POST,
            "/volume/v3/groups",
            CINDER,
            Some(json!({"group": {"name": "g", "group_type": "default_group_type", "volume_types": ["__DEFAULT__"]}})),
        )
        .await;
    let group = r.json::<Value>().await.unwrap()["group"]["id"]
        .as_str()
        .unwrap()
        .to_owned();
    eventually(Duration::from_secs(5), || async {
        t.sim
            .group(&group)
            .filter(|g| g.status == "available")
            .map(|_| ())
    })
    .await;
    let mut members = Vec::new();
    for size in [1, 2] {
        let (_, body) = create_volume(
            t,
            json!({"size": size, "group_id": group, "volume_type": "__DEFAULT__"}),
        )
        .await;
        members.push(body["volume"]["id"].as_str().unwrap().to_owned());
    }
    eventually(Duration::from_secs(5), || async {
        members
            .iter()
            .all(|m| t.sim.volume(m).is_some_and(|v| v.status == "available"))
            .then_some(())
    })
    .await;
    let r = t
        .call(
            Method::POST,
            "/volume/v3/group_snapshots",
            CINDER,
            Some(json!({"group_snapshot": {"name": "gs", "group_id": group}})),
        )
        .await;
    let gs = r.json::<Value>().await.unwrap()["group_snapshot"]["id"]
        .as_str()
        .unwrap()
        .to_owned();
    eventually(Duration::from_secs(5), || async {
        let v = t
            .get_json(&format!("/volume/v3/group_snapshots/{gs}"), CINDER)
            .await;
        (v["group_snapshot"]["status"] == "available").then_some(())
    })
    .await;
    (group, gs, members)
}

async fn from_src(t: &TestSim, body: Value, mv: &str) -> (StatusCode, Value) {
    let project = t.sim.project_id();
    let r = t
        .call(
            Method::POST,
            &format!("/volume/v3/{project}/groups/action"),
            Some(mv),
            Some(json!({ "create-from-src": body })),
        )
        .await;
    let status = r.status();
    (status, r.json().await.unwrap_or(Value::Null))
}

#[tokio::test]
async fn a_group_is_made_from_a_group_snapshot_with_one_volume_per_snapshot() {
    let t = spawn_with(SimConfig::default()).await;
    let (group, gs, _) = group_with_snapshot(&t).await;

    let (status, body) = from_src(
        &t,
        json!({"group_snapshot_id": gs, "name": "restored", "description": "d"}),
        "volume 3.71",
    )
    .await;

    assert_eq!(status, StatusCode::ACCEPTED, "{body}");
    assert_eq!(body["group"]["name"], "restored");
    let id = body["group"]["id"].as_str().unwrap().to_owned();
    assert_eq!(t.sim.group(&id).unwrap().status, "creating");
    let restored = eventually(Duration::from_secs(5), || async {
        t.sim.group(&id).filter(|g| g.status == "available")
    })
    .await;
    assert_eq!(restored.group_snapshot_id.as_deref(), Some(gs.as_str()));
    assert_eq!(restored.volume_ids.len(), 2);
    let mut sizes: Vec<u64> = restored
        .volume_ids
        .iter()
        .map(|v| {
            let v = t.sim.volume(v).unwrap();
            assert_eq!(v.status, "available");
            assert!(v.snapshot_id.is_some() && v.name.is_none());
            v.size
        })
        .collect();
    sizes.sort_unstable();
    assert_eq!(sizes, [1, 2]);
    let shown = t.get_json(&format!("/volume/v3/groups/{id}"), CINDER).await;
    assert_eq!(shown["group"]["group_snapshot_id"], gs.as_str());
    assert_eq!(
        shown["group"]["group_type"],
        t.sim.group(&group).unwrap().group_type
    );
}

#[tokio::test]
async fn create_from_src_refuses_as_cinder_does() {
    let t = spawn_with(SimConfig::default()).await;
    let (group, gs, _) = group_with_snapshot(&t).await;
    let missing = "00000000-0000-0000-0000-000000000000";

    let old = from_src(&t, json!({"group_snapshot_id": gs}), "volume 3.13").await;
    let both = from_src(
        &t,
        json!({"group_snapshot_id": gs, "source_group_id": group}),
        "volume 3.71",
    )
    .await;
    let neither = from_src(&t, json!({}), "volume 3.71").await;
    let unknown = from_src(&t, json!({"group_snapshot_id": missing}), "volume 3.71").await;
    let not_uuid = from_src(&t, json!({"group_snapshot_id": "nope"}), "volume 3.71").await;

    assert_eq!(old.0, StatusCode::NOT_FOUND);
    assert_eq!(both.0, StatusCode::BAD_REQUEST);
    assert_eq!(
        message(&both.1),
        format!(
            "Invalid input for field/attribute create-from-src. Value: {{'group_snapshot_id': '{gs}', 'source_group_id': '{group}'}}. {{'group_snapshot_id': '{gs}', 'source_group_id': '{group}'}} is valid under each of {{'required': ['source_group_id']}}, {{'required': ['group_snapshot_id']}}"
        )
    );
    assert_eq!(
        message(&neither.1),
        "Invalid input for field/attribute create-from-src. Value: {}. {} is not valid under any of the given schemas"
    );
    assert_eq!(unknown.0, StatusCode::NOT_FOUND);
    assert_eq!(
        message(&unknown.1),
        format!("GroupSnapshot {missing} could not be found.")
    );
    assert_eq!(
        message(&not_uuid.1),
        "Invalid input for field/attribute group_snapshot_id. Value: nope. 'nope' is not a 'uuid'"
    );
}

#[tokio::test]
async fn faults_spoil_restores_by_operation_name() {
    let t = spawn_with(SimConfig::default()).await;
    let source = volume_backed_source(&t).await;
    let image = volume_backed_snapshot_image(&t, &source).await;
    let snap = t.sim.image_snapshot_ids(&image)[0].clone();
    let (_, gs, _) = group_with_snapshot(&t).await;
    t.sim
        .inject(FaultRule::new("nova.create_server", Fault::VolumeError).times(1));
    t.sim
        .inject(FaultRule::new("cinder.create_volume", Fault::VolumeStuck).times(1));
    t.sim
        .inject(FaultRule::error("cinder.create_group_from_src", 503).times(1));

    let (_, failed) = boot(
        &t,
        json!({"name": "r", "flavorRef": "1", "imageRef": image, "networks": "none"}),
        NOVA,
    )
    .await;
    let (_, stuck) = create_volume(&t, json!({"snapshot_id": snap})).await;
    let unavailable = from_src(&t, json!({"group_snapshot_id": gs}), "volume 3.71").await;
    t.sim
        .inject(FaultRule::new("nova.create_server", Fault::ServerError).times(1));
    let (_, errored) = boot(
        &t,
        json!({"name": "r2", "flavorRef": "1", "imageRef": image, "networks": "none"}),
        NOVA,
    )
    .await;
    t.sim
        .inject(FaultRule::new("cinder.create_group_from_src", Fault::VolumeError).times(1));
    let (_, group) = from_src(&t, json!({"group_snapshot_id": gs}), "volume 3.71").await;

    let failed = failed["server"]["id"].as_str().unwrap();
    let server = eventually(Duration::from_secs(5), || async {
        t.sim.server(failed).filter(|s| s.status == "ERROR")
    })
    .await;
    assert_eq!(
        t.sim.volume(&server.volumes[0].volume_id).unwrap().status,
        "error"
    );
    let errored = errored["server"]["id"].as_str().unwrap();
    eventually(Duration::from_secs(5), || async {
        t.sim
            .server(errored)
            .filter(|s| s.status == "ERROR")
            .map(|_| ())
    })
    .await;
    tokio::time::sleep(Duration::from_millis(200)).await;
    let stuck = stuck["volume"]["id"].as_str().unwrap();
    assert_eq!(t.sim.volume(stuck).unwrap().status, "creating");
    assert_eq!(unavailable.0, StatusCode::SERVICE_UNAVAILABLE);
    let group = group["group"]["id"].as_str().unwrap();
    eventually(Duration::from_secs(5), || async {
        t.sim
            .group(group)
            .filter(|g| g.status == "error")
            .map(|_| ())
    })
    .await;
}

/// Nova gives the snapshot image of a volume-backed server on a flavor with a
/// larger disk than its 1 GiB root `min_disk` = the flavor's disk: booting it
/// as it is, or with an explicit root no larger, is refused; an explicit
/// mapping whose root reaches `min_disk` replaces the image's entries of the
/// same device names (nova/compute/api.py `_merge_bdms_lists`).
#[tokio::test]
async fn a_snapshot_images_min_disk_binds_an_explicit_root_which_replaces_the_images_by_device_name()
 {
    // Arrange
    let t = spawn_with(SimConfig::default()).await;
    let source = t
        .sim
        .create_volume_backed_server_with_flavor("src", 2, false, "m1.small");
    let image = snapshot_image(&t, &source, 2).await;
    let shown: Value = t
        .call(
            Method::GET,
            &format!("/image/v2/images/{image}"),
            None,
            None,
        )
        .await
        .json()
        .await
        .unwrap();
    assert_eq!(shown["min_disk"], 2);
    let entries: Vec<Value> =
        serde_json::from_str(shown["block_device_mapping"].as_str().unwrap()).unwrap();
    let explicit = |root_size: u64| {
        entries
            .iter()
            .map(|e| {
                let root = e["boot_index"] == 0;
                json!({"uuid": e["snapshot_id"], "source_type": "snapshot", "destination_type": "volume",
                       "device_name": e["device_name"], "boot_index": if root { 0 } else { -1 },
                       "volume_size": if root { root_size } else { e["volume_size"].as_u64().unwrap() },
                       "delete_on_termination": true})
            })
            .collect::<Vec<_>>()
    };
    let server = |bdms: Option<Vec<Value>>| {
        let mut s = json!({"name": "r", "flavorRef": "2", "imageRef": image, "networks": "none"});
        if let Some(bdms) = bdms {
            s["block_device_mapping_v2"] = json!(bdms);
        }
        s
    };
    let too_small = "Volume is smaller than the minimum size specified in image metadata. Volume size is 1073741824 bytes, minimum size is 2147483648 bytes.";

    // Act
    let (as_is, as_is_body) = boot(&t, server(None), NOVA).await;
    let (small, small_body) = boot(&t, server(Some(explicit(1))), NOVA).await;
    let (fits, fits_body) = boot(&t, server(Some(explicit(2))), NOVA).await;

    // Assert
    assert_eq!(as_is, StatusCode::BAD_REQUEST);
    assert_eq!(message(&as_is_body), too_small);
    assert_eq!(small, StatusCode::BAD_REQUEST);
    assert_eq!(message(&small_body), too_small);
    assert_eq!(fits, StatusCode::ACCEPTED, "{fits_body}");
    let id = fits_body["server"]["id"].as_str().unwrap().to_owned();
    let made = t.sim.server(&id).unwrap();
    let mut sizes: Vec<u64> = made
        .volumes
        .iter()
        .map(|v| t.sim.volume(&v.volume_id).unwrap().size)
        .collect();
    sizes.sort_unstable();
    assert_eq!(sizes, [1, 2], "two volumes, not the image's as well");
}
