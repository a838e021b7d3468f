//! Project members (`demo`, `alt`), the system-scoped admin, Keystone's
//! projects, and each service scoping resources to the caller's project as
//! on the rig.

use reqwest::{Method, StatusCode};
use serde_json::{Value, json};

use crate::helpers::{eventually, spawn};

async fn token_body(t: &crate::helpers::TestSim, auth: Value) -> (StatusCode, Value) {
    let r = t
        .http
        .post(format!("{}/auth/tokens", t.sim.auth_url()))
        .json(&json!({ "auth": auth }))
        .send()
        .await
        .unwrap();
    let status = r.status();
    (status, r.json().await.unwrap_or(Value::Null))
}

fn password(user: &str, password: &str) -> Value {
    json!({"methods": ["password"], "password": {"user": {"name": user, "domain": {"name": "Default"}, "password": password}}})
}

#[tokio::test]
async fn a_member_gets_a_token_for_its_own_project_without_the_admin_role() {
    // Arrange
    let t = spawn().await;
    let demo = json!({"project": {"name": "demo", "domain": {"name": "Default"}}});
    let alt = json!({"project": {"name": "alt", "domain": {"name": "Default"}}});

    // Act
    let (ok, body) = token_body(
        &t,
        json!({"identity": password("demo", "demo"), "scope": demo}),
    )
    .await;
    let (other_project, _) = token_body(
        &t,
        json!({"identity": password("demo", "demo"), "scope": alt}),
    )
    .await;
    let (wrong_password, _) = token_body(
        &t,
        json!({"identity": password("demo", "secret"), "scope": demo}),
    )
    .await;

    // Assert
    assert_eq!(ok, StatusCode::CREATED);
    let token = &body["token"];
    assert_eq!(token["user"]["name"], "demo");
    assert_eq!(token["project"]["name"], "demo");
    assert_ne!(token["project"]["id"], t.sim.project_id());
    let roles: Vec<&str> = token["roles"]
        .as_array()
        .unwrap()
        .iter()
        .map(|r| r["name"].as_str().unwrap())
        .collect();
    assert_eq!(roles, ["member", "reader"]);
    assert!(token["catalog"].as_array().is_some_and(|c| !c.is_empty()));
    assert_eq!(other_project, StatusCode::UNAUTHORIZED);
    assert_eq!(wrong_password, StatusCode::UNAUTHORIZED);
}

#[tokio::test]
async fn the_admin_gets_a_system_scoped_token_and_a_member_does_not() {
    // Arrange
    let t = spawn().await;
    let system = json!({"system": {"all": true}});

    // Act
    let (admin, body) = token_body(
        &t,
        json!({"identity": password("admin", "secret"), "scope": system}),
    )
    .await;
    let (member, _) = token_body(
        &t,
        json!({"identity": password("demo", "demo"), "scope": system}),
    )
    .await;

    // Assert
    assert_eq!(admin, StatusCode::CREATED);
    assert_eq!(body["token"]["system"], json!({"all": true}));
    assert!(body["token"].get("project").is_none());
    assert_eq!(body["token"]["roles"][0]["name"], "admin");
    assert_eq!(member, StatusCode::UNAUTHORIZED);
}

#[tokio::test]
async fn clouds_yaml_names_the_members_and_the_system_admin() {
    let t = spawn().await;

    let yaml = t.sim.clouds_yaml();

    for cloud in [
        "stacksnap-sim:",
        "stacksnap-sim-appcred:",
        "stacksnap-sim-system-admin:",
        "stacksnap-sim-demo:",
        "stacksnap-sim-alt:",
        "stacksnap-sim-demo-reader:",
        "stacksnap-sim-alt-reader:",
    ] {
        assert!(
            yaml.contains(&format!("\n  {cloud}\n")),
            "{cloud} in {yaml}"
        );
    }
    assert!(yaml.contains("      system_scope: all\n"));
    assert!(
        yaml.contains("      username: demo\n      password: demo\n      project_name: demo\n")
    );
    assert!(
        yaml.contains(
            "      username: demo_reader\n      password: demo\n      project_name: demo\n"
        )
    );
}

#[tokio::test]
async fn projects_are_listed_by_name_for_admins_and_read_by_their_members() {
    // Arrange
    let t = spawn().await;
    let demo = t.demo_token().await;

    // Act: what openstacksdk's get_project('demo') sends.
    let by_id = t
        .call(
            Method::GET,
            "/identity/v3/projects/demo?domain_id=None",
            None,
            None,
        )
        .await;
    let listed = t
        .get_json("/identity/v3/projects?domain_id=None&name=demo", None)
        .await;
    let as_member = t
        .call_as(&demo, Method::GET, "/identity/v3/projects", None, None)
        .await;

    // Assert
    assert_eq!(by_id.status(), StatusCode::NOT_FOUND);
    let body: Value = by_id.json().await.unwrap();
    assert_eq!(body["error"]["message"], "Could not find project: demo.");
    let projects = listed["projects"].as_array().unwrap();
    assert_eq!(projects.len(), 1);
    assert_eq!(projects[0]["name"], "demo");
    assert_eq!(projects[0]["domain_id"], "default");
    assert_eq!(as_member.status(), StatusCode::FORBIDDEN);
    let id = projects[0]["id"].as_str().unwrap();
    let own = t
        .call_as(
            &demo,
            Method::GET,
            &format!("/identity/v3/projects/{id}"),
            None,
            None,
        )
        .await;
    assert_eq!(own.status(), StatusCode::OK);
}

#[tokio::test]
async fn cinder_scopes_volumes_to_the_callers_project() {
    // Arrange
    let t = spawn().await;
    let (demo, alt) = (t.demo_token().await, t.alt_token().await);
    let created = t
        .call_as(
            &demo,
            Method::POST,
            "/volume/v3/volumes",
            Some("volume 3.71"),
            Some(json!({"volume": {"name": "demo-vol", "size": 1}})),
        )
        .await;
    assert_eq!(created.status(), StatusCode::ACCEPTED);
    let id = created.json::<Value>().await.unwrap()["volume"]["id"]
        .as_str()
        .unwrap()
        .to_owned();
    let path = format!("/volume/v3/volumes/{id}");

    // Act
    let by_alt = t
        .call_as(&alt, Method::GET, &path, Some("volume 3.71"), None)
        .await;
    let alt_list = t
        .call_as(
            &alt,
            Method::GET,
            "/volume/v3/volumes/detail?all_tenants=1",
            Some("volume 3.71"),
            None,
        )
        .await
        .json::<Value>()
        .await
        .unwrap();
    let by_admin = t.get_json(&path, Some("volume 3.71")).await;
    let admin_list = t.get_json("/volume/v3/volumes", Some("volume 3.71")).await;
    let admin_all = t
        .get_json("/volume/v3/volumes?all_tenants=1", Some("volume 3.71"))
        .await;

    // Assert
    assert_eq!(by_alt.status(), StatusCode::NOT_FOUND);
    let body: Value = by_alt.json().await.unwrap();
    assert_eq!(
        body["itemNotFound"]["message"],
        format!("Volume {id} could not be found.")
    );
    assert_eq!(alt_list["volumes"], json!([]));
    let demo_project = by_admin["volume"]["os-vol-tenant-attr:tenant_id"].clone();
    assert_ne!(demo_project, json!(t.sim.project_id()));
    assert_eq!(admin_list["volumes"], json!([]));
    assert_eq!(admin_all["volumes"][0]["id"], id);
}

#[tokio::test]
async fn nova_scopes_servers_and_members_see_only_the_hostname_at_2_90() {
    // Arrange
    let t = spawn().await;
    let (demo, alt) = (t.demo_token().await, t.alt_token().await);
    let created = t
        .call_as(
            &demo,
            Method::POST,
            "/compute/v2.1/servers",
            Some("compute 2.96"),
            Some(json!({"server": {"name": "demo-srv", "flavorRef": "1", "networks": "none",
                "block_device_mapping_v2": [{"source_type": "blank", "destination_type": "volume", "boot_index": 0, "volume_size": 1}]}})),
        )
        .await;
    assert_eq!(created.status(), StatusCode::ACCEPTED);
    let id = created.json::<Value>().await.unwrap()["server"]["id"]
        .as_str()
        .unwrap()
        .to_owned();
    let path = format!("/compute/v2.1/servers/{id}");

    // Act
    let by_alt = t
        .call_as(&alt, Method::GET, &path, Some("compute 2.96"), None)
        .await;
    let by_demo: Value = t
        .call_as(&demo, Method::GET, &path, Some("compute 2.96"), None)
        .await
        .json()
        .await
        .unwrap();
    let by_admin = t.server(&id).await;
    let admin_list = t
        .get_json("/compute/v2.1/servers", Some("compute 2.96"))
        .await;
    let admin_all = t
        .get_json(
            "/compute/v2.1/servers?all_tenants=True",
            Some("compute 2.96"),
        )
        .await;
    let member_all = t
        .call_as(
            &demo,
            Method::GET,
            "/compute/v2.1/servers?all_tenants=1",
            Some("compute 2.96"),
            None,
        )
        .await;

    // Assert
    assert_eq!(by_alt.status(), StatusCode::NOT_FOUND);
    let server = &by_demo["server"];
    assert_eq!(server["OS-EXT-SRV-ATTR:hostname"], "demo-srv");
    assert!(server.get("OS-EXT-SRV-ATTR:host").is_none());
    assert!(server.get("OS-EXT-SRV-ATTR:user_data").is_none());
    assert!(server.get("host_status").is_none());
    assert!(by_admin.get("OS-EXT-SRV-ATTR:instance_name").is_some());
    assert_eq!(admin_list["servers"], json!([]));
    assert_eq!(admin_all["servers"][0]["id"], id);
    assert_eq!(member_all.status(), StatusCode::FORBIDDEN);
    // The volume Nova made for it belongs to the same project.
    let volume = by_admin["os-extended-volumes:volumes_attached"][0]["id"]
        .as_str()
        .unwrap()
        .to_owned();
    let vol = t
        .call_as(
            &demo,
            Method::GET,
            &format!("/volume/v3/volumes/{volume}"),
            Some("volume 3.71"),
            None,
        )
        .await;
    assert_eq!(vol.status(), StatusCode::OK);
}

#[tokio::test]
async fn glance_hides_a_private_image_from_other_projects_but_not_from_admins() {
    // Arrange
    let t = spawn().await;
    let (demo, alt) = (t.demo_token().await, t.alt_token().await);
    let created: Value = t
        .call_as(
            &demo,
            Method::POST,
            "/image/v2/images",
            None,
            Some(json!({"name": "demo-private", "visibility": "private", "disk_format": "raw", "container_format": "bare"})),
        )
        .await
        .json()
        .await
        .unwrap();
    let id = created["id"].as_str().unwrap().to_owned();
    let path = format!("/image/v2/images/{id}");

    // Act
    let by_alt = t.call_as(&alt, Method::GET, &path, None, None).await;
    let alt_list: Value = t
        .call_as(&alt, Method::GET, "/image/v2/images", None, None)
        .await
        .json()
        .await
        .unwrap();
    let admin_list = t.get_json("/image/v2/images", None).await;
    let delete_by_alt_public = {
        let tiny = t.sim.create_image(&stacksnap_sim::ImageSeed {
            name: "public-one".into(),
            ..stacksnap_sim::ImageSeed::default()
        });
        t.call_as(
            &alt,
            Method::DELETE,
            &format!("/image/v2/images/{tiny}"),
            None,
            None,
        )
        .await
    };

    // Assert
    assert_ne!(created["owner"], json!(t.sim.project_id()));
    assert_eq!(by_alt.status(), StatusCode::NOT_FOUND);
    assert!(
        alt_list["images"]
            .as_array()
            .unwrap()
            .iter()
            .all(|i| i["id"] != id.as_str())
    );
    assert!(
        admin_list["images"]
            .as_array()
            .unwrap()
            .iter()
            .any(|i| i["id"] == id.as_str())
    );
    assert_eq!(delete_by_alt_public.status(), StatusCode::FORBIDDEN);
    assert!(
        delete_by_alt_public
            .text()
            .await
            .unwrap()
            .contains("You are not authorized to complete delete_image action.")
    );
}

#[tokio::test]
async fn a_members_snapshot_and_limits_count_in_its_own_project() {
    // Arrange
    let t = spawn().await;
    let demo = t.demo_token().await;
    let vol: Value = t
        .call_as(
            &demo,
            Method::POST,
            "/volume/v3/volumes",
            Some("volume 3.71"),
            Some(json!({"volume": {"size": 3}})),
        )
        .await
        .json()
        .await
        .unwrap();
    let vol = vol["volume"]["id"].as_str().unwrap().to_owned();
    eventually(std::time::Duration::from_secs(5), || async {
        let v: Value = t
            .call_as(
                &demo,
                Method::GET,
                &format!("/volume/v3/volumes/{vol}"),
                Some("volume 3.71"),
                None,
            )
            .await
            .json()
            .await
            .unwrap();
        (v["volume"]["status"] == "available").then_some(())
    })
    .await;
    let snap = t
        .call_as(
            &demo,
            Method::POST,
            "/volume/v3/snapshots",
            Some("volume 3.71"),
            Some(json!({"snapshot": {"volume_id": vol}})),
        )
        .await;
    assert_eq!(snap.status(), StatusCode::ACCEPTED);

    // Act
    let demo_limits: Value = t
        .call_as(
            &demo,
            Method::GET,
            "/volume/v3/limits",
            Some("volume 3.71"),
            None,
        )
        .await
        .json()
        .await
        .unwrap();
    let admin_limits = t.get_json("/volume/v3/limits", Some("volume 3.71")).await;
    let admin_snapshots = t
        .get_json("/volume/v3/snapshots", Some("volume 3.71"))
        .await;

    // Assert
    let demo_abs = &demo_limits["limits"]["absolute"];
    assert_eq!(demo_abs["totalVolumesUsed"], 1);
    assert_eq!(demo_abs["totalGigabytesUsed"], 3);
    assert_eq!(demo_abs["totalSnapshotsUsed"], 1);
    assert_eq!(admin_limits["limits"]["absolute"]["totalVolumesUsed"], 0);
    assert_eq!(admin_snapshots["snapshots"], json!([]));
}

#[tokio::test]
async fn another_projects_volume_cannot_be_snapshotted_cloned_or_booted_from() {
    // Arrange
    let t = spawn().await;
    let (demo, alt) = (t.demo_token().await, t.alt_token().await);
    let vol: Value = t
        .call_as(
            &demo,
            Method::POST,
            "/volume/v3/volumes",
            Some("volume 3.71"),
            Some(json!({"volume": {"size": 1}})),
        )
        .await
        .json()
        .await
        .unwrap();
    let vol = vol["volume"]["id"].as_str().unwrap().to_owned();
    eventually(std::time::Duration::from_secs(5), || async {
        (t.volume(&vol).await["status"] == "available").then_some(())
    })
    .await;

    // Act
    let snapshot = t
        .call_as(
            &alt,
            Method::POST,
            "/volume/v3/snapshots",
            Some("volume 3.71"),
            Some(json!({"snapshot": {"volume_id": vol}})),
        )
        .await;
    let clone = t
        .call_as(
            &alt,
            Method::POST,
            "/volume/v3/volumes",
            Some("volume 3.71"),
            Some(json!({"volume": {"source_volid": vol}})),
        )
        .await;
    let boot = t
        .call_as(
            &alt,
            Method::POST,
            "/compute/v2.1/servers",
            Some("compute 2.96"),
            Some(json!({"server": {"name": "s", "flavorRef": "1", "networks": "none",
                "block_device_mapping_v2": [{"uuid": vol, "source_type": "volume", "destination_type": "volume", "boot_index": 0}]}})),
        )
        .await;
    let by_admin = t.create_snapshot(json!({"volume_id": vol}), "3.71").await;

    // Assert
    assert_eq!(snapshot.status(), StatusCode::NOT_FOUND);
    assert_eq!(clone.status(), StatusCode::NOT_FOUND);
    assert_eq!(boot.status(), StatusCode::BAD_REQUEST);
    let body: Value = boot.json().await.unwrap();
    assert_eq!(
        body["badRequest"]["message"],
        format!("Block Device Mapping is Invalid: failed to get volume {vol}.")
    );
    assert_eq!(by_admin.status(), StatusCode::ACCEPTED);
}
