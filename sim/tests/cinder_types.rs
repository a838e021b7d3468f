//! Cinder volume types, group types and their specs, groups made from them,
//! resource filters, availability zones, extensions and limits.

use reqwest::{Method, StatusCode};
use serde_json::{Value, json};

use crate::helpers::spawn;

const V: Option<&str> = Some("volume 3.71");

async fn status_and_body(r: reqwest::Response) -> (StatusCode, Value) {
    let status = r.status();
    (status, r.json().await.unwrap_or(Value::Null))
}

#[tokio::test]
async fn an_admin_creates_reads_and_deletes_a_volume_type_and_a_member_may_not() {
    // Arrange
    let t = spawn().await;
    let demo = t.demo_token().await;
    let body = json!({"volume_type": {"name": "fast"}});

    // Act
    let (member_status, member_body) = status_and_body(
        t.call_as(
            &demo,
            Method::POST,
            "/volume/v3/types",
            V,
            Some(body.clone()),
        )
        .await,
    )
    .await;
    let (status, created) = status_and_body(
        t.call(Method::POST, "/volume/v3/types", V, Some(body.clone()))
            .await,
    )
    .await;
    let (again, _) = status_and_body(
        t.call(Method::POST, "/volume/v3/types", V, Some(body))
            .await,
    )
    .await;
    let id = created["volume_type"]["id"].as_str().unwrap().to_owned();
    let shown = t.get_json(&format!("/volume/v3/types/{id}"), V).await;
    let listed = t.get_json("/volume/v3/types", V).await;

    // Assert
    assert_eq!(member_status, StatusCode::FORBIDDEN);
    assert_eq!(
        member_body["forbidden"]["message"],
        "Policy doesn't allow volume_extension:type_create to be performed."
    );
    assert_eq!(status, StatusCode::OK);
    assert_eq!(
        created["volume_type"],
        json!({"id": id, "name": "fast", "is_public": true, "extra_specs": {}, "description": null,
               "os-volume-type-access:is_public": true})
    );
    assert_eq!(again, StatusCode::CONFLICT);
    assert_eq!(shown["volume_type"]["name"], "fast");
    assert_eq!(shown["volume_type"]["qos_specs_id"], Value::Null);
    let names: Vec<&str> = listed["volume_types"]
        .as_array()
        .unwrap()
        .iter()
        .map(|t| t["name"].as_str().unwrap())
        .collect();
    assert_eq!(names, ["__DEFAULT__", "fast"]);
    let deleted = t
        .call(Method::DELETE, &format!("/volume/v3/types/{id}"), V, None)
        .await;
    assert_eq!(deleted.status(), StatusCode::ACCEPTED);
    let gone = t
        .call(Method::GET, &format!("/volume/v3/types/{id}"), V, None)
        .await;
    assert_eq!(gone.status(), StatusCode::NOT_FOUND);
}

#[tokio::test]
async fn a_volume_type_in_use_and_the_default_type_cannot_be_deleted() {
    // Arrange
    let t = spawn().await;
    let (_, created) = status_and_body(
        t.call(
            Method::POST,
            "/volume/v3/types",
            V,
            Some(json!({"volume_type": {"name": "gold"}})),
        )
        .await,
    )
    .await;
    let id = created["volume_type"]["id"].as_str().unwrap().to_owned();
    let (_, vol) = status_and_body(
        t.call(
            Method::POST,
            "/volume/v3/volumes",
            V,
            Some(json!({"volume": {"size": 1, "volume_type": "gold"}})),
        )
        .await,
    )
    .await;
    let default_id = t.get_json("/volume/v3/types/default", V).await["volume_type"]["id"]
        .as_str()
        .unwrap()
        .to_owned();

    // Act
    let (in_use, in_use_body) = status_and_body(
        t.call(Method::DELETE, &format!("/volume/v3/types/{id}"), V, None)
            .await,
    )
    .await;
    let (default, default_body) = status_and_body(
        t.call(
            Method::DELETE,
            &format!("/volume/v3/types/{default_id}"),
            V,
            None,
        )
        .await,
    )
    .await;
    let (unknown, _) = status_and_body(
        t.call(
            Method::POST,
            "/volume/v3/volumes",
            V,
            Some(json!({"volume": {"size": 1, "volume_type": "nope"}})),
        )
        .await,
    )
    .await;

    // Assert
    assert_eq!(vol["volume"]["volume_type"], "gold");
    assert_eq!(vol["volume"]["volume_type_id"], id);
    assert_eq!(in_use, StatusCode::BAD_REQUEST);
    assert_eq!(
        in_use_body["badRequest"]["message"],
        "Target volume type is still in use."
    );
    assert_eq!(default, StatusCode::BAD_REQUEST);
    assert_eq!(
        default_body["badRequest"]["message"],
        format!("The volume type {default_id} is a default volume type and cannot be deleted.")
    );
    assert_eq!(unknown, StatusCode::NOT_FOUND);
}

#[tokio::test]
async fn group_types_and_their_specs_are_managed_by_admins_from_3_11() {
    // Arrange
    let t = spawn().await;
    let demo = t.demo_token().await;
    let gv = Some("volume 3.11");

    // Act
    let too_old = t
        .call(
            Method::GET,
            "/volume/v3/group_types",
            Some("volume 3.10"),
            None,
        )
        .await;
    let (status, created) = status_and_body(
        t.call(
            Method::POST,
            "/volume/v3/group_types",
            gv,
            Some(json!({"group_type": {"name": "cg"}})),
        )
        .await,
    )
    .await;
    let id = created["group_type"]["id"].as_str().unwrap().to_owned();
    let specs = format!("/volume/v3/group_types/{id}/group_specs");
    let (spec_status, spec_body) = status_and_body(
        t.call(
            Method::POST,
            &specs,
            gv,
            Some(json!({"group_specs": {"foo": "bar", "acme": "buzz"}})),
        )
        .await,
    )
    .await;
    let put = t
        .call(
            Method::PUT,
            &format!("{specs}/foo"),
            gv,
            Some(json!({"foo": "baz"})),
        )
        .await;
    let mismatch = t
        .call(
            Method::PUT,
            &format!("{specs}/foo"),
            gv,
            Some(json!({"bar": "x"})),
        )
        .await;
    let one = t.get_json(&format!("{specs}/foo"), gv).await;
    let deleted = t
        .call(Method::DELETE, &format!("{specs}/acme"), gv, None)
        .await;
    let missing = t
        .call(Method::GET, &format!("{specs}/acme"), gv, None)
        .await;
    let updated = t
        .call(
            Method::PUT,
            &format!("/volume/v3/group_types/{id}"),
            gv,
            Some(json!({"group_type": {"description": "consistent"}})),
        )
        .await;
    let shown = t
        .get_json(&format!("/volume/v3/group_types/{id}"), gv)
        .await;
    let member_list: Value = t
        .call_as(&demo, Method::GET, "/volume/v3/group_types", gv, None)
        .await
        .json()
        .await
        .unwrap();
    let member_specs = t.call_as(&demo, Method::GET, &specs, gv, None).await;

    // Assert
    assert_eq!(too_old.status(), StatusCode::NOT_FOUND);
    assert_eq!(status, StatusCode::ACCEPTED);
    assert_eq!(
        created["group_type"],
        json!({"id": id, "name": "cg", "description": null, "is_public": true, "group_specs": {}})
    );
    assert_eq!(spec_status, StatusCode::ACCEPTED);
    assert_eq!(
        spec_body,
        json!({"group_specs": {"foo": "bar", "acme": "buzz"}})
    );
    assert_eq!(put.status(), StatusCode::OK);
    assert_eq!(mismatch.status(), StatusCode::BAD_REQUEST);
    assert_eq!(one, json!({"foo": "baz"}));
    assert_eq!(deleted.status(), StatusCode::ACCEPTED);
    assert_eq!(missing.status(), StatusCode::NOT_FOUND);
    assert_eq!(updated.status(), StatusCode::OK);
    assert_eq!(shown["group_type"]["description"], "consistent");
    assert_eq!(shown["group_type"]["group_specs"], json!({"foo": "baz"}));
    let entry = member_list["group_types"]
        .as_array()
        .unwrap()
        .iter()
        .find(|g| g["id"] == id.as_str())
        .unwrap();
    assert!(entry.get("group_specs").is_none());
    assert_eq!(member_specs.status(), StatusCode::FORBIDDEN);
}

#[tokio::test]
async fn groups_take_a_created_group_type_by_id_and_refuse_cinders_reserved_one() {
    // Arrange
    let t = spawn().await;
    let gv = Some("volume 3.38");
    let (_, gt) = status_and_body(
        t.call(
            Method::POST,
            "/volume/v3/group_types",
            gv,
            Some(json!({"group_type": {"name": "mine"}})),
        )
        .await,
    )
    .await;
    let gt = gt["group_type"]["id"].as_str().unwrap().to_owned();
    let default_type = t.get_json("/volume/v3/types/default", V).await["volume_type"]["id"].clone();

    // Act
    let (status, group) = status_and_body(
        t.call(
            Method::POST,
            "/volume/v3/groups",
            gv,
            Some(
                json!({"group": {"name": "g1", "group_type": gt, "volume_types": [default_type]}}),
            ),
        )
        .await,
    )
    .await;
    let (reserved, reserved_body) = status_and_body(
        t.call(
            Method::POST,
            "/volume/v3/groups",
            gv,
            Some(json!({"group": {"name": "g2", "group_type": "default_cgsnapshot_type", "volume_types": ["__DEFAULT__"]}})),
        )
        .await,
    )
    .await;
    let (unknown_type, _) = status_and_body(
        t.call(
            Method::POST,
            "/volume/v3/groups",
            gv,
            Some(json!({"group": {"name": "g3", "group_type": gt, "volume_types": ["nope"]}})),
        )
        .await,
    )
    .await;
    let in_use = t
        .call(
            Method::DELETE,
            &format!("/volume/v3/group_types/{gt}"),
            gv,
            None,
        )
        .await;

    // Assert
    assert_eq!(status, StatusCode::ACCEPTED);
    let id = group["group"]["id"].as_str().unwrap();
    let shown = t.get_json(&format!("/volume/v3/groups/{id}"), gv).await;
    assert_eq!(shown["group"]["group_type"], gt);
    assert_eq!(shown["group"]["volume_types"], json!([default_type]));
    assert_eq!(reserved, StatusCode::BAD_REQUEST);
    assert!(
        reserved_body["badRequest"]["message"]
            .as_str()
            .unwrap()
            .ends_with("is reserved for migrating CGs to groups. Migrated group can only be operated by CG APIs.")
    );
    assert_eq!(unknown_type, StatusCode::NOT_FOUND);
    assert_eq!(in_use.status(), StatusCode::BAD_REQUEST);
}

#[tokio::test]
async fn resource_filters_availability_zones_and_extensions_answer_as_on_the_rig() {
    // Arrange
    let t = spawn().await;

    // Act
    let filters = t
        .get_json("/volume/v3/resource_filters", Some("volume 3.33"))
        .await;
    let one = t
        .get_json(
            "/volume/v3/resource_filters?resource=snapshot",
            Some("volume 3.33"),
        )
        .await;
    let too_old = t
        .call(
            Method::GET,
            "/volume/v3/resource_filters",
            Some("volume 3.32"),
            None,
        )
        .await;
    let zones = t.get_json("/volume/v3/os-availability-zone", None).await;
    let extensions = t.get_json("/volume/v3/extensions", None).await;
    let with_project = t
        .get_json(
            &format!("/volume/v3/{}/os-availability-zone", t.sim.project_id()),
            None,
        )
        .await;

    // Assert
    let resources: Vec<&str> = filters["resource_filters"]
        .as_array()
        .unwrap()
        .iter()
        .map(|f| f["resource"].as_str().unwrap())
        .collect();
    assert_eq!(
        resources,
        [
            "volume",
            "backup",
            "snapshot",
            "group",
            "group_snapshot",
            "attachment",
            "message",
            "pool",
            "volume_type"
        ]
    );
    assert_eq!(
        one,
        json!({"resource_filters": [{"resource": "snapshot", "filters":
            ["name", "status", "volume_id", "metadata", "availability_zone", "consumes_quota"]}]})
    );
    assert_eq!(too_old.status(), StatusCode::NOT_FOUND);
    assert_eq!(
        zones,
        json!({"availabilityZoneInfo": [{"zoneName": "nova", "zoneState": {"available": true}}]})
    );
    assert_eq!(with_project, zones);
    let list = extensions["extensions"].as_array().unwrap();
    assert!(list.len() > 20);
    assert!(list.iter().all(|e| e["alias"].is_string()
        && e["description"].is_string()
        && e["updated"].is_string()));
    assert!(list.iter().any(|e| e["alias"] == "os-availability-zone"));
}

#[tokio::test]
async fn limits_name_another_project_for_admins_from_3_39() {
    // Arrange
    let t = spawn().await;
    t.sim.create_volume("v", 2, &[]);

    // Act
    let own = t.get_json("/volume/v3/limits", Some("volume 3.39")).await;
    let other = t
        .get_json("/volume/v3/limits?project_id=None", Some("volume 3.39"))
        .await;
    let before = t
        .get_json("/volume/v3/limits?project_id=None", Some("volume 3.38"))
        .await;

    // Assert
    let abs = &own["limits"]["absolute"];
    assert_eq!(abs["totalVolumesUsed"], 1);
    assert_eq!(abs["totalGigabytesUsed"], 2);
    for key in [
        "maxTotalBackups",
        "maxTotalBackupGigabytes",
        "totalBackupsUsed",
        "totalBackupGigabytesUsed",
    ] {
        assert!(abs[key].is_number(), "{key}");
    }
    assert_eq!(other["limits"]["absolute"]["totalVolumesUsed"], 0);
    assert_eq!(before["limits"]["absolute"]["totalVolumesUsed"], 1);
}
