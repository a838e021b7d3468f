//! Cinder: force rules around 3.66, snapshot statuses, deletion rules,
//! quota, group snapshots, filters and paging.

use std::time::Duration;

use reqwest::{Method, StatusCode};
use serde_json::{Value, json};

use stacksnap_sim::SimConfig;

use crate::helpers::{eventually, member_token, observable_durations, spawn, spawn_with};

/// An in-use volume (the root of a volume-backed server).
async fn in_use_volume(t: &crate::helpers::TestSim) -> String {
    let server = t.sim.create_volume_backed_server("db", 1, false);
    t.server(&server).await["os-extended-volumes:volumes_attached"][0]["id"]
        .as_str()
        .unwrap()
        .to_owned()
}

#[tokio::test]
async fn below_3_66_an_in_use_volume_needs_force() {
    // Arrange
    let t = spawn().await;
    let vol = in_use_volume(&t).await;

    // Act
    let without = t.create_snapshot(json!({"volume_id": vol}), "3.65").await;
    let with = t
        .create_snapshot(json!({"volume_id": vol, "force": true}), "3.65")
        .await;

    // Assert
    assert_eq!(without.status(), StatusCode::BAD_REQUEST);
    let body: Value = without.json().await.unwrap();
    assert_eq!(
        body["badRequest"]["message"],
        format!(
            "Invalid volume: Volume {vol} status must be available, but current status is: in-use."
        )
    );
    assert_eq!(with.status(), StatusCode::ACCEPTED);
    assert_eq!(
        with.json::<Value>().await.unwrap()["snapshot"]["status"],
        "creating"
    );
}

#[tokio::test]
async fn from_3_66_force_false_is_400_and_force_is_not_needed() {
    // Arrange
    let t = spawn().await;
    let vol = in_use_volume(&t).await;

    // Act
    let force_false = t
        .create_snapshot(json!({"volume_id": vol, "force": false}), "3.66")
        .await;
    let no_force = t.create_snapshot(json!({"volume_id": vol}), "3.66").await;
    // Real Cinder silently ignores force=true from 3.66 on.
    let force_true = t
        .create_snapshot(json!({"volume_id": vol, "force": true}), "3.66")
        .await;

    // Assert
    assert_eq!(force_false.status(), StatusCode::BAD_REQUEST);
    let body: Value = force_false.json().await.unwrap();
    assert!(
        body["badRequest"]["message"]
            .as_str()
            .unwrap()
            .starts_with("Since microversion 3.66 the 'force' flag is invalid")
    );
    assert_eq!(no_force.status(), StatusCode::ACCEPTED);
    assert_eq!(force_true.status(), StatusCode::ACCEPTED);
    assert_eq!(no_force.headers()["openstack-api-version"], "volume 3.66");
}

#[tokio::test]
async fn snapshot_goes_creating_then_available_and_deletes_only_when_settled() {
    // Arrange
    let t = spawn().await;
    let vol = t.sim.create_volume("data", 2, &[]);
    let r = t
        .create_snapshot(
            json!({"volume_id": vol, "name": "s1", "metadata": {"stacksnap_job_id": "j"}}),
            "3.66",
        )
        .await;
    let snap: Value = r.json().await.unwrap();
    let id = snap["snapshot"]["id"].as_str().unwrap().to_owned();

    // Act / Assert
    assert_eq!(
        t.snapshot(&id).await["os-extended-snapshot-attributes:progress"],
        "0%"
    );
    let early = t
        .call(
            Method::DELETE,
            &format!("/volume/v3/snapshots/{id}"),
            None,
            None,
        )
        .await;
    assert_eq!(early.status(), StatusCode::BAD_REQUEST);
    let refused = t
        .call(
            Method::DELETE,
            &format!("/volume/v3/volumes/{vol}"),
            None,
            None,
        )
        .await;
    assert_eq!(refused.status(), StatusCode::BAD_REQUEST);
    let s = eventually(Duration::from_secs(5), || async {
        let s = t.snapshot(&id).await;
        (s["status"] == "available").then_some(s)
    })
    .await;
    assert_eq!(s["size"], 2);
    assert_eq!(s["metadata"]["stacksnap_job_id"], "j");
    let del = t
        .call(
            Method::DELETE,
            &format!("/volume/v3/snapshots/{id}"),
            None,
            None,
        )
        .await;
    assert_eq!(del.status(), StatusCode::ACCEPTED);
    eventually(Duration::from_secs(5), || async {
        let r = t
            .call(
                Method::GET,
                &format!("/volume/v3/snapshots/{id}"),
                None,
                None,
            )
            .await;
        (r.status() == StatusCode::NOT_FOUND).then_some(())
    })
    .await;
    let del_vol = t
        .call(
            Method::DELETE,
            &format!("/volume/v3/volumes/{vol}"),
            None,
            None,
        )
        .await;
    assert_eq!(del_vol.status(), StatusCode::ACCEPTED);
}

#[tokio::test]
async fn snapshot_quota_gives_413_with_retry_after_0() {
    let t = spawn().await;
    let vol = t.sim.create_volume("data", 1, &[]);
    t.sim.set_snapshot_quota(1);
    assert_eq!(
        t.create_snapshot(json!({"volume_id": vol}), "3.66")
            .await
            .status(),
        StatusCode::ACCEPTED
    );
    let r = t.create_snapshot(json!({"volume_id": vol}), "3.66").await;
    assert_eq!(r.status(), StatusCode::PAYLOAD_TOO_LARGE);
    assert_eq!(r.headers()["retry-after"], "0");
    let body: Value = r.json().await.unwrap();
    assert_eq!(body["overLimit"]["retryAfter"], "0");
    assert_eq!(
        body["overLimit"]["message"],
        "SnapshotLimitExceeded: Maximum number of snapshots allowed (1) exceeded"
    );
}

#[tokio::test]
async fn snapshot_list_filters_by_metadata_status_and_volume_and_pages() {
    // Arrange
    let t = spawn().await;
    let vol = t.sim.create_volume("data", 1, &[]);
    let other = t.sim.create_volume("other", 1, &[]);
    for i in 0..4 {
        let v = if i == 3 { &other } else { &vol };
        let r = t.create_snapshot(json!({"volume_id": v, "name": format!("s{i}"), "metadata": {"job": if i < 2 { "a" } else { "b" }}}), "3.66").await;
        assert_eq!(r.status(), StatusCode::ACCEPTED);
    }

    // Act
    let by_meta = t
        .get_json(
            "/volume/v3/snapshots/detail?metadata=%7B%27job%27%3A+%27a%27%7D",
            Some("volume 3.66"),
        )
        .await;
    let by_volume = t
        .get_json(
            &format!("/volume/v3/snapshots/detail?volume_id={other}"),
            None,
        )
        .await;
    let creating = t
        .get_json("/volume/v3/snapshots?status=creating", None)
        .await;
    let page1 = t.get_json("/volume/v3/snapshots?limit=3", None).await;
    let next = page1["snapshots_links"][0]["href"]
        .as_str()
        .unwrap()
        .to_owned();
    let page2 = t
        .get_json(next.strip_prefix(&t.sim.base_url()).unwrap(), None)
        .await;

    // Assert
    let names = |v: &Value| -> Vec<String> {
        v["snapshots"]
            .as_array()
            .unwrap()
            .iter()
            .map(|s| s["name"].as_str().unwrap().to_owned())
            .collect()
    };
    assert_eq!(names(&by_meta), ["s1", "s0"]);
    assert_eq!(names(&by_volume), ["s3"]);
    assert_eq!(names(&creating).len(), 4);
    assert_eq!(names(&page1), ["s3", "s2", "s1"]);
    assert_eq!(names(&page2), ["s0"]);
    assert!(page2.get("snapshots_links").is_none());
}

#[tokio::test]
async fn group_snapshot_needs_3_14_and_snapshots_every_volume_of_the_group() {
    // Arrange
    let t = spawn().await;
    let (a, b) = (
        t.sim.create_volume("a", 1, &[]),
        t.sim.create_volume("b", 1, &[]),
    );
    let r = t
        .call(Method::POST, "/volume/v3/groups", Some("volume 3.14"), Some(json!({"group": {"name": "g", "group_type": "default_group_type", "volume_types": ["__DEFAULT__"]}})))
        .await;
    assert_eq!(r.status(), StatusCode::ACCEPTED);
    let group = r.json::<Value>().await.unwrap()["group"]["id"]
        .as_str()
        .unwrap()
        .to_owned();
    eventually(Duration::from_secs(5), || async {
        (t.get_json(&format!("/volume/v3/groups/{group}"), Some("volume 3.14"))
            .await["group"]["status"]
            == "available")
            .then_some(())
    })
    .await;
    let r = t
        .call(
            Method::PUT,
            &format!("/volume/v3/groups/{group}"),
            Some("volume 3.14"),
            Some(json!({"group": {"add_volumes": format!("{a},{b}")}})),
        )
        .await;
    assert_eq!(r.status(), StatusCode::ACCEPTED);

    // Act
    let old = t
        .call(
            Method::POST,
            "/volume/v3/group_snapshots",
            Some("volume 3.13"),
            Some(json!({"group_snapshot": {"group_id": group}})),
        )
        .await;
    let r = t
        .call(
            Method::POST,
            "/volume/v3/group_snapshots",
            Some("volume 3.14"),
            Some(json!({"group_snapshot": {"group_id": group, "name": "gs"}})),
        )
        .await;

    // Assert
    assert_eq!(old.status(), StatusCode::NOT_FOUND);
    assert_eq!(r.status(), StatusCode::ACCEPTED);
    let gs = r.json::<Value>().await.unwrap()["group_snapshot"]["id"]
        .as_str()
        .unwrap()
        .to_owned();
    let path = format!("/volume/v3/group_snapshots/{gs}");
    assert_eq!(
        t.get_json(&path, Some("volume 3.14")).await["group_snapshot"]["status"],
        "creating"
    );
    eventually(Duration::from_secs(5), || async {
        (t.get_json(&path, Some("volume 3.14")).await["group_snapshot"]["status"] == "available")
            .then_some(())
    })
    .await;
    let members = t
        .get_json(
            &format!("/volume/v3/snapshots/detail?group_snapshot_id={gs}"),
            Some("volume 3.14"),
        )
        .await;
    assert_eq!(members["snapshots"].as_array().unwrap().len(), 2);
    assert!(
        members["snapshots"]
            .as_array()
            .unwrap()
            .iter()
            .all(|s| s["group_snapshot_id"] == gs.as_str() && s["status"] == "available")
    );
    assert_eq!(
        t.call(Method::DELETE, &path, Some("volume 3.14"), None)
            .await
            .status(),
        StatusCode::ACCEPTED
    );
}

#[tokio::test]
async fn volume_from_image_carries_volume_image_metadata_and_lists_filter_by_metadata() {
    let t = spawn().await;
    let image = t.sim.create_image(&stacksnap_sim::ImageSeed {
        name: "qga".into(),
        size: 1024,
        properties: [("hw_qemu_guest_agent".to_owned(), json!("yes"))]
            .into_iter()
            .collect(),
        ..Default::default()
    });
    let r = t
        .call(Method::POST, "/volume/v3/volumes", Some("volume 3.66"), Some(json!({"volume": {"size": 1, "imageRef": image, "name": "boot", "metadata": {"tier": "db"}}})))
        .await;
    assert_eq!(r.status(), StatusCode::ACCEPTED);
    let id = r.json::<Value>().await.unwrap()["volume"]["id"]
        .as_str()
        .unwrap()
        .to_owned();
    assert_eq!(t.volume(&id).await["status"], "creating");
    let v = eventually(Duration::from_secs(5), || async {
        let v = t.volume(&id).await;
        (v["status"] == "available").then_some(v)
    })
    .await;
    assert_eq!(v["bootable"], "true");
    assert_eq!(v["volume_image_metadata"]["hw_qemu_guest_agent"], "yes");
    assert_eq!(v["volume_image_metadata"]["image_id"], image.as_str());
    let filtered = t
        .get_json(
            "/volume/v3/volumes/detail?metadata=%7B%22tier%22%3A%22db%22%7D",
            None,
        )
        .await;
    assert_eq!(filtered["volumes"].as_array().unwrap().len(), 1);
    let project = t.sim.project_id();
    let with_project = t
        .get_json(&format!("/volume/v3/{project}/volumes/{id}"), None)
        .await;
    assert_eq!(with_project["volume"]["id"], id.as_str());
}

/// A group holding `volumes`, once it is `available` (as the admin).
async fn available_group(t: &crate::helpers::TestSim, volumes: &[&str]) -> String {
    let r = t
        .call(Method::POST, "/volume/v3/groups", Some("volume 3.71"), Some(json!({"group": {"name": "g", "group_type": "default_group_type", "volume_types": ["__DEFAULT__"]}})))
        .await;
    assert_eq!(r.status(), StatusCode::ACCEPTED);
    let group = r.json::<Value>().await.unwrap()["group"]["id"]
        .as_str()
        .unwrap()
        .to_owned();
    eventually(Duration::from_secs(5), || async {
        (t.get_json(&format!("/volume/v3/groups/{group}"), Some("volume 3.71"))
            .await["group"]["status"]
            == "available")
            .then_some(())
    })
    .await;
    let r = t
        .call(
            Method::PUT,
            &format!("/volume/v3/groups/{group}"),
            Some("volume 3.71"),
            Some(json!({"group": {"add_volumes": volumes.join(",")}})),
        )
        .await;
    assert_eq!(r.status(), StatusCode::ACCEPTED);
    group
}

#[tokio::test]
async fn a_members_disallowed_list_filter_is_400_from_3_31_and_silently_dropped_below() {
    // Arrange: two snapshots, neither in a group snapshot.
    let t = spawn().await;
    let member = member_token(&t.http, &t.sim).await;
    for name in ["a", "b"] {
        let volume = t.sim.create_volume(name, 1, &[]);
        let r = t
            .create_snapshot(json!({"volume_id": volume, "name": name}), "3.71")
            .await;
        assert_eq!(r.status(), StatusCode::ACCEPTED);
    }
    let path = "/volume/v3/snapshots/detail?group_snapshot_id=0d2c1f3e-0000-4000-8000-000000000000";

    // Act
    let refused = t.get_with(&member, path, "volume 3.71").await;
    let refused_at_3_31 = t.get_with(&member, path, "volume 3.31").await;
    let dropped = t.get_with(&member, path, "volume 3.30").await;
    let as_admin = t.get_with(&t.token, path, "volume 3.71").await;
    let all_tenants = t
        .get_with(
            &member,
            "/volume/v3/snapshots/detail?all_tenants=1",
            "volume 3.71",
        )
        .await;

    // Assert: Cinder's own answer, word for word (checked on the rig as project demo).
    assert_eq!(refused.status(), StatusCode::BAD_REQUEST);
    assert_eq!(
        refused.json::<Value>().await.unwrap(),
        json!({"badRequest": {"code": 400, "message": "Invalid filters group_snapshot_id are found in query options."}})
    );
    assert_eq!(refused_at_3_31.status(), StatusCode::BAD_REQUEST);
    assert_eq!(dropped.status(), StatusCode::OK);
    let dropped: Value = dropped.json().await.unwrap();
    assert_eq!(
        dropped["snapshots"].as_array().unwrap().len(),
        2,
        "below 3.31 the filter is ignored and every snapshot of the project comes back"
    );
    assert_eq!(as_admin.status(), StatusCode::OK);
    let as_admin: Value = as_admin.json().await.unwrap();
    assert!(as_admin["snapshots"].as_array().unwrap().is_empty());
    assert_eq!(all_tenants.status(), StatusCode::OK);
}

#[tokio::test]
async fn a_member_may_list_a_groups_volumes_and_each_volumes_snapshots() {
    // Arrange
    let t = spawn().await;
    let member = member_token(&t.http, &t.sim).await;
    let (a, b) = (
        t.sim.create_volume("a", 1, &[]),
        t.sim.create_volume("b", 1, &[]),
    );
    let group = available_group(&t, &[&a]).await;
    let r = t
        .create_snapshot(json!({"volume_id": b, "name": "b"}), "3.71")
        .await;
    assert_eq!(r.status(), StatusCode::ACCEPTED);

    // Act
    let volumes = t
        .get_with(
            &member,
            &format!("/volume/v3/volumes/detail?group_id={group}"),
            "volume 3.71",
        )
        .await;
    let snapshots = t
        .get_with(
            &member,
            &format!("/volume/v3/snapshots/detail?volume_id={b}&limit=500"),
            "volume 3.71",
        )
        .await;

    // Assert
    assert_eq!(volumes.status(), StatusCode::OK);
    let volumes: Value = volumes.json().await.unwrap();
    assert_eq!(volumes["volumes"].as_array().unwrap().len(), 1);
    assert_eq!(volumes["volumes"][0]["id"], a.as_str());
    assert_eq!(snapshots.status(), StatusCode::OK);
    let snapshots: Value = snapshots.json().await.unwrap();
    assert_eq!(snapshots["snapshots"].as_array().unwrap().len(), 1);
}

#[tokio::test]
async fn group_snapshots_page_from_3_29_with_group_snapshot_links_and_come_whole_below() {
    // Arrange: three group snapshots, pages of at most two.
    let t = spawn_with(
        SimConfig::default()
            .with_durations(observable_durations())
            .with_cinder_max_limit(2),
    )
    .await;
    let volume = t.sim.create_volume("a", 1, &[]);
    let group = available_group(&t, &[&volume]).await;
    for i in 0..3 {
        let r = t
            .call(
                Method::POST,
                "/volume/v3/group_snapshots",
                Some("volume 3.71"),
                Some(json!({"group_snapshot": {"group_id": group, "name": format!("gs{i}")}})),
            )
            .await;
        assert_eq!(r.status(), StatusCode::ACCEPTED);
    }
    let names = |v: &Value| -> Vec<String> {
        v["group_snapshots"]
            .as_array()
            .unwrap()
            .iter()
            .map(|s| s["name"].as_str().unwrap().to_owned())
            .collect()
    };

    // Act
    let first = t
        .get_json(
            "/volume/v3/group_snapshots/detail?limit=500",
            Some("volume 3.71"),
        )
        .await;
    let next = first["group_snapshot_links"][0]["href"]
        .as_str()
        .expect("a next link named as Cinder names it")
        .to_owned();
    let second = t
        .get_json(
            next.strip_prefix(&t.sim.base_url()).unwrap(),
            Some("volume 3.71"),
        )
        .await;
    let old = t
        .get_json(
            "/volume/v3/group_snapshots/detail?limit=500&marker=ignored",
            Some("volume 3.28"),
        )
        .await;

    // Assert
    assert_eq!(names(&first), ["gs2", "gs1"]);
    assert_eq!(names(&second), ["gs0"]);
    assert!(second.get("group_snapshot_links").is_none());
    assert_eq!(
        names(&old),
        ["gs2", "gs1", "gs0"],
        "below 3.29 Cinder ignores limit and marker"
    );
}
