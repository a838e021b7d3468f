//! Nova beyond servers: flavors (create, access, extra specs), the image
//! proxy and image metadata, limits and extensions by microversion, user
//! data, and volume attachments at 2.79, 2.85 and 2.89.

use std::time::Duration;

use reqwest::{Method, StatusCode};
use serde_json::{Value, json};

use crate::helpers::{eventually, spawn};

const C: Option<&str> = Some("compute 2.61");

async fn status_and_body(r: reqwest::Response) -> (StatusCode, Value) {
    let status = r.status();
    (status, r.json().await.unwrap_or(Value::Null))
}

#[tokio::test]
async fn an_admin_creates_a_private_flavor_that_members_see_only_once_shared() {
    // Arrange
    let t = spawn().await;
    let demo = t.demo_token().await;
    let demo_project =
        t.get_json("/identity/v3/projects?name=demo", None).await["projects"][0]["id"]
            .as_str()
            .unwrap()
            .to_owned();
    let (status, created) = status_and_body(
        t.call(
            Method::POST,
            "/compute/v2.1/flavors",
            C,
            Some(json!({"flavor": {"name": "secret", "ram": 128, "vcpus": 1, "disk": 0, "os-flavor-access:is_public": false}})),
        )
        .await,
    )
    .await;
    let id = created["flavor"]["id"].as_str().unwrap().to_owned();
    let names = |v: &Value| -> Vec<String> {
        v["flavors"]
            .as_array()
            .unwrap()
            .iter()
            .map(|f| f["name"].as_str().unwrap().to_owned())
            .collect()
    };
    let member_list = || async {
        t.call_as(
            &demo,
            Method::GET,
            "/compute/v2.1/flavors/detail?is_public=None",
            C,
            None,
        )
        .await
        .json::<Value>()
        .await
        .unwrap()
    };

    // Act
    let before = member_list().await;
    let hidden = t
        .call_as(
            &demo,
            Method::GET,
            &format!("/compute/v2.1/flavors/{id}"),
            C,
            None,
        )
        .await;
    let admin_all = t
        .get_json("/compute/v2.1/flavors/detail?is_public=None", C)
        .await;
    let admin_default = t.get_json("/compute/v2.1/flavors/detail", C).await;
    let (add, access) = status_and_body(
        t.call(
            Method::POST,
            &format!("/compute/v2.1/flavors/{id}/action"),
            None,
            Some(json!({"addTenantAccess": {"tenant": demo_project}})),
        )
        .await,
    )
    .await;
    let shared = member_list().await;
    let removed = t
        .call(
            Method::POST,
            &format!("/compute/v2.1/flavors/{id}/action"),
            None,
            Some(json!({"removeTenantAccess": {"tenant": demo_project}})),
        )
        .await;
    let again = member_list().await;
    let member_create = t
        .call_as(
            &demo,
            Method::POST,
            "/compute/v2.1/flavors",
            C,
            Some(json!({"flavor": {"name": "x", "ram": 1, "vcpus": 1, "disk": 0}})),
        )
        .await;

    // Assert
    assert_eq!(status, StatusCode::OK);
    assert_eq!(created["flavor"]["os-flavor-access:is_public"], false);
    assert_eq!(created["flavor"]["extra_specs"], json!({}));
    assert!(!names(&before).contains(&"secret".to_owned()));
    assert_eq!(hidden.status(), StatusCode::NOT_FOUND);
    assert!(names(&admin_all).contains(&"secret".to_owned()));
    assert!(!names(&admin_default).contains(&"secret".to_owned()));
    assert_eq!(add, StatusCode::OK);
    assert_eq!(
        access,
        json!({"flavor_access": [{"flavor_id": id, "tenant_id": demo_project}]})
    );
    assert!(names(&shared).contains(&"secret".to_owned()));
    assert_eq!(removed.status(), StatusCode::OK);
    assert!(!names(&again).contains(&"secret".to_owned()));
    assert_eq!(member_create.status(), StatusCode::FORBIDDEN);
}

#[tokio::test]
async fn flavor_descriptions_extra_specs_and_deletion_follow_nova() {
    // Arrange
    let t = spawn().await;
    let (_, created) = status_and_body(
        t.call(
            Method::POST,
            "/compute/v2.1/flavors",
            C,
            Some(json!({"flavor": {"name": "f", "ram": 1024, "vcpus": 2, "disk": 10}})),
        )
        .await,
    )
    .await;
    let id = created["flavor"]["id"].as_str().unwrap().to_owned();
    let specs = format!("/compute/v2.1/flavors/{id}/os-extra_specs");

    // Act
    let duplicate = t
        .call(
            Method::POST,
            "/compute/v2.1/flavors",
            C,
            Some(json!({"flavor": {"name": "f", "ram": 1, "vcpus": 1, "disk": 0}})),
        )
        .await;
    let (_, described) = status_and_body(
        t.call(
            Method::PUT,
            &format!("/compute/v2.1/flavors/{id}"),
            C,
            Some(json!({"flavor": {"description": "updated description"}})),
        )
        .await,
    )
    .await;
    let before_2_55 = t
        .call(
            Method::PUT,
            &format!("/compute/v2.1/flavors/{id}"),
            Some("compute 2.54"),
            Some(json!({"flavor": {"description": "x"}})),
        )
        .await;
    let (_, set) = status_and_body(
        t.call(
            Method::POST,
            &specs,
            C,
            Some(json!({"extra_specs": {"a": "b"}})),
        )
        .await,
    )
    .await;
    let put = t
        .call(
            Method::PUT,
            &format!("{specs}/c"),
            C,
            Some(json!({"c": "d"})),
        )
        .await;
    let one = t.get_json(&format!("{specs}/c"), C).await;
    let deleted = t.call(Method::DELETE, &format!("{specs}/c"), C, None).await;
    let after = t.get_json(&specs, C).await;
    let missing = t.call(Method::GET, &format!("{specs}/c"), C, None).await;
    let removed = t
        .call(
            Method::DELETE,
            &format!("/compute/v2.1/flavors/{id}"),
            C,
            None,
        )
        .await;
    let gone = t
        .call(Method::GET, &format!("/compute/v2.1/flavors/{id}"), C, None)
        .await;

    // Assert
    assert_eq!(duplicate.status(), StatusCode::CONFLICT);
    assert_eq!(described["flavor"]["description"], "updated description");
    assert_eq!(before_2_55.status(), StatusCode::METHOD_NOT_ALLOWED);
    assert_eq!(set, json!({"extra_specs": {"a": "b"}}));
    assert_eq!(put.status(), StatusCode::OK);
    assert_eq!(one, json!({"c": "d"}));
    assert_eq!(deleted.status(), StatusCode::OK);
    assert_eq!(after, json!({"extra_specs": {"a": "b"}}));
    assert_eq!(missing.status(), StatusCode::NOT_FOUND);
    assert_eq!(removed.status(), StatusCode::ACCEPTED);
    assert_eq!(gone.status(), StatusCode::NOT_FOUND);
}

#[tokio::test]
async fn the_image_proxy_lists_shows_and_edits_metadata_until_2_35() {
    // Arrange
    let t = spawn().await;
    let id = t.sim.create_image(&stacksnap_sim::ImageSeed {
        name: "tiny".into(),
        size: 196_616,
        properties: [("hw_qemu_guest_agent".to_owned(), json!("yes"))].into(),
        ..stacksnap_sim::ImageSeed::default()
    });
    let meta = format!("/compute/v2.1/images/{id}/metadata");

    // Act
    let detail = t.get_json("/compute/v2.1/images/detail", None).await;
    let by_name = t.get_json("/compute/v2.1/images?name=tiny", None).await;
    let by_id_name = t
        .call(Method::GET, "/compute/v2.1/images/tiny", None, None)
        .await;
    let shown = t
        .get_json(&format!("/compute/v2.1/images/{id}"), None)
        .await;
    let at_2_36 = t
        .call(
            Method::GET,
            "/compute/v2.1/images/detail",
            Some("compute 2.36"),
            None,
        )
        .await;
    let set = t
        .call(
            Method::POST,
            &meta,
            None,
            Some(json!({"metadata": {"k1": "v1", "k0": ""}})),
        )
        .await;
    let item = t
        .call(
            Method::PUT,
            &format!("{meta}/k1"),
            None,
            Some(json!({"meta": {"k1": "v1.1"}})),
        )
        .await;
    let removed = t
        .call(Method::DELETE, &format!("{meta}/k0"), None, None)
        .await;
    let missing = t
        .call(Method::DELETE, &format!("{meta}/k0"), None, None)
        .await;
    let after = t.get_json(&meta, None).await;
    let glance = t.image(&id).await.unwrap();

    // Assert
    let image = &detail["images"][0];
    assert_eq!(image["id"], id);
    assert_eq!(image["status"], "ACTIVE");
    assert_eq!(image["progress"], 100);
    assert_eq!(image["OS-EXT-IMG-SIZE:size"], 196_616);
    assert_eq!(image["metadata"], json!({"hw_qemu_guest_agent": "yes"}));
    assert_eq!(image["links"].as_array().unwrap().len(), 3);
    assert_eq!(by_name["images"].as_array().unwrap().len(), 1);
    assert!(by_name["images"][0].get("metadata").is_none());
    assert_eq!(by_id_name.status(), StatusCode::NOT_FOUND);
    let body: Value = by_id_name.json().await.unwrap();
    assert_eq!(body["itemNotFound"]["message"], "Image not found.");
    assert_eq!(shown["image"]["name"], "tiny");
    assert_eq!(at_2_36.status(), StatusCode::NOT_FOUND);
    assert_eq!(set.status(), StatusCode::OK);
    assert_eq!(item.status(), StatusCode::OK);
    assert_eq!(removed.status(), StatusCode::NO_CONTENT);
    assert_eq!(missing.status(), StatusCode::NOT_FOUND);
    assert_eq!(
        after,
        json!({"metadata": {"hw_qemu_guest_agent": "yes", "k1": "v1.1"}})
    );
    assert_eq!(glance["k1"], "v1.1");
    assert!(glance.get("k0").is_none());
}

#[tokio::test]
async fn limits_drop_network_and_personality_limits_by_microversion() {
    // Arrange
    let t = spawn().await;
    t.sim.create_image_backed_server("web", &[], &[], false);

    // Act
    let v21 = t.get_json("/compute/v2.1/limits", None).await;
    let v236 = t
        .get_json("/compute/v2.1/limits", Some("compute 2.36"))
        .await;
    let v257 = t
        .get_json("/compute/v2.1/limits", Some("compute 2.57"))
        .await;
    let demo = t.demo_token().await;
    let other: Value = t
        .call_as(&demo, Method::GET, "/compute/v2.1/limits", None, None)
        .await
        .json()
        .await
        .unwrap();

    // Assert
    let abs = &v21["limits"]["absolute"];
    for key in [
        "maxSecurityGroups",
        "maxSecurityGroupRules",
        "maxTotalFloatingIps",
        "maxImageMeta",
        "maxPersonality",
    ] {
        assert!(abs.get(key).is_some(), "{key} at 2.1");
    }
    assert_eq!(abs["totalInstancesUsed"], 1);
    assert_eq!(abs["totalRAMUsed"], 256);
    assert!(
        v236["limits"]["absolute"]
            .get("maxSecurityGroups")
            .is_none()
    );
    assert!(v236["limits"]["absolute"].get("maxImageMeta").is_some());
    assert!(v257["limits"]["absolute"].get("maxPersonality").is_none());
    assert!(v257["limits"]["absolute"].get("maxImageMeta").is_none());
    assert_eq!(other["limits"]["absolute"]["totalInstancesUsed"], 0);
}

#[tokio::test]
async fn extensions_are_listed() {
    let t = spawn().await;

    let body = t.get_json("/compute/v2.1/extensions", None).await;

    let list = body["extensions"].as_array().unwrap();
    assert!(list.len() > 50);
    assert!(
        list.iter()
            .all(|e| e["name"].is_string() && e["namespace"].is_string() && e["alias"].is_string())
    );
}

#[tokio::test]
async fn user_data_is_kept_and_shown_to_admins_and_must_be_base64() {
    // Arrange
    let t = spawn().await;
    let vol = t.sim.create_volume("root", 1, &[]);
    let server = |user_data: &str| {
        json!({"server": {"name": "needstobeshortandlowercase", "flavorRef": "1", "networks": "none",
            "user_data": user_data,
            "block_device_mapping_v2": [{"uuid": vol, "source_type": "volume", "destination_type": "volume",
                "boot_index": 0, "delete_on_termination": true, "volume_size": 1}]}})
    };

    // Act
    let bad = t
        .call(
            Method::POST,
            "/compute/v2.1/servers",
            Some("compute 2.96"),
            Some(server("not base64!")),
        )
        .await;
    let (_, created) = status_and_body(
        t.call(
            Method::POST,
            "/compute/v2.1/servers",
            Some("compute 2.96"),
            Some(server("SSdtIGFjdHVhbGx5IGEgZ29hdC4=")),
        )
        .await,
    )
    .await;
    let id = created["server"]["id"].as_str().unwrap().to_owned();
    let shown = eventually(Duration::from_secs(5), || async {
        let s = t.server(&id).await;
        (s["status"] == "ACTIVE").then_some(s)
    })
    .await;

    // Assert
    assert_eq!(bad.status(), StatusCode::BAD_REQUEST);
    assert_eq!(
        shown["OS-EXT-SRV-ATTR:user_data"],
        "SSdtIGFjdHVhbGx5IGEgZ29hdC4="
    );
    assert_eq!(
        shown["OS-EXT-SRV-ATTR:hostname"],
        "needstobeshortandlowercase"
    );
    assert!(
        shown["OS-EXT-SRV-ATTR:reservation_id"]
            .as_str()
            .unwrap()
            .starts_with("r-")
    );
    assert!(
        shown["OS-EXT-SRV-ATTR:root_device_name"]
            .as_str()
            .unwrap()
            .starts_with("/dev")
    );
    assert_eq!(
        shown["os-extended-volumes:volumes_attached"][0]["delete_on_termination"],
        true
    );
}

#[tokio::test]
async fn a_member_attaches_updates_and_detaches_a_volume_as_nova_shows_it() {
    // Arrange
    let t = spawn().await;
    let demo = t.demo_token().await;
    let call = |method: Method, path: String, mv: &'static str, body: Option<Value>| {
        let demo = demo.clone();
        let t = &t;
        async move { t.call_as(&demo, method, &path, Some(mv), body).await }
    };
    let (_, srv) = status_and_body(
        call(
            Method::POST,
            "/compute/v2.1/servers".into(),
            "compute 2.96",
            Some(json!({"server": {"name": "s", "flavorRef": "1", "networks": "none",
                "block_device_mapping_v2": [{"source_type": "blank", "destination_type": "volume", "boot_index": 0, "volume_size": 1}]}})),
        )
        .await,
    )
    .await;
    let server = srv["server"]["id"].as_str().unwrap().to_owned();
    let (_, vol) = status_and_body(
        call(
            Method::POST,
            "/volume/v3/volumes".into(),
            "volume 3.71",
            Some(json!({"volume": {"size": 1}})),
        )
        .await,
    )
    .await;
    let vol = vol["volume"]["id"].as_str().unwrap().to_owned();
    eventually(Duration::from_secs(5), || async {
        let s: Value = call(
            Method::GET,
            format!("/compute/v2.1/servers/{server}"),
            "compute 2.96",
            None,
        )
        .await
        .json()
        .await
        .unwrap();
        let v: Value = call(
            Method::GET,
            format!("/volume/v3/volumes/{vol}"),
            "volume 3.71",
            None,
        )
        .await
        .json()
        .await
        .unwrap();
        (s["server"]["status"] == "ACTIVE" && v["volume"]["status"] == "available").then_some(())
    })
    .await;
    let base = format!("/compute/v2.1/servers/{server}/os-volume_attachments");
    let one = format!("{base}/{vol}");

    // Act
    let (attached, created) = status_and_body(
        call(
            Method::POST,
            base.clone(),
            "compute 2.89",
            Some(json!({"volumeAttachment": {"volumeId": vol}})),
        )
        .await,
    )
    .await;
    let updated = call(
        Method::PUT,
        one.clone(),
        "compute 2.89",
        Some(json!({"volumeAttachment": {"volumeId": vol, "delete_on_termination": true}})),
    )
    .await;
    let swap = call(
        Method::PUT,
        one.clone(),
        "compute 2.84",
        Some(json!({"volumeAttachment": {"volumeId": vol}})),
    )
    .await;
    let (_, at_289) =
        status_and_body(call(Method::GET, one.clone(), "compute 2.89", None).await).await;
    let (_, at_279) =
        status_and_body(call(Method::GET, one.clone(), "compute 2.79", None).await).await;
    let detached = call(Method::DELETE, one.clone(), "compute 2.89", None).await;
    let after = call(Method::GET, one.clone(), "compute 2.89", None).await;

    // Assert
    assert_eq!(attached, StatusCode::OK);
    assert_eq!(created["volumeAttachment"]["id"], vol);
    assert_eq!(created["volumeAttachment"]["delete_on_termination"], false);
    assert_eq!(updated.status(), StatusCode::ACCEPTED);
    assert_eq!(swap.status(), StatusCode::FORBIDDEN);
    let a = &at_289["volumeAttachment"];
    assert!(a.get("id").is_none());
    assert_eq!(a["volumeId"], vol);
    assert_eq!(a["serverId"], server);
    assert_eq!(a["delete_on_termination"], true);
    assert!(a["attachment_id"].is_string());
    assert!(a["bdm_uuid"].is_string());
    assert_eq!(at_279["volumeAttachment"]["id"], vol);
    assert!(at_279["volumeAttachment"].get("attachment_id").is_none());
    assert_eq!(detached.status(), StatusCode::ACCEPTED);
    assert_eq!(after.status(), StatusCode::NOT_FOUND);
    let body: Value = after.json().await.unwrap();
    assert_eq!(
        body["itemNotFound"]["message"],
        format!("Instance {server} is not attached to volume {vol}")
    );
}
