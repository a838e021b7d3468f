//! Glance: create, upload, show, property filters, paging, delete.

use reqwest::{Method, StatusCode};
use serde_json::{Value, json};

use crate::helpers::spawn;

#[tokio::test]
async fn uploaded_image_becomes_active_with_its_checksum() {
    // Arrange
    let t = spawn().await;
    let r = t
        .call(Method::POST, "/image/v2/images", None, Some(json!({"name": "cirros", "disk_format": "qcow2", "container_format": "bare", "hw_qemu_guest_agent": "yes"})))
        .await;
    assert_eq!(r.status(), StatusCode::CREATED);
    let image: Value = r.json().await.unwrap();
    assert_eq!(image["status"], "queued");
    let id = image["id"].as_str().unwrap().to_owned();

    // Act
    let r = t
        .http
        .put(format!("{}/image/v2/images/{id}/file", t.sim.base_url()))
        .header("x-auth-token", &t.token)
        .header("content-type", "application/octet-stream")
        .body("The quick brown fox jumps over the lazy dog")
        .send()
        .await
        .unwrap();

    // Assert
    assert_eq!(r.status(), StatusCode::NO_CONTENT);
    let image = t.image(&id).await.unwrap();
    assert_eq!(image["status"], "active");
    assert_eq!(image["size"], 43);
    assert_eq!(image["checksum"], "9e107d9d372bb6826bd81d3542a419d6");
    assert_eq!(image["hw_qemu_guest_agent"], "yes");
    assert_eq!(image["os_hash_algo"], "sha512");
}

#[tokio::test]
async fn list_filters_on_arbitrary_properties_and_pages_with_next_links() {
    // Arrange
    let t = spawn().await;
    for i in 0..5 {
        let job = if i < 3 { "job-a" } else { "job-b" };
        let r = t
            .call(
                Method::POST,
                "/image/v2/images",
                None,
                Some(json!({"name": format!("img{i}"), "stacksnap_job_id": job})),
            )
            .await;
        assert_eq!(r.status(), StatusCode::CREATED);
    }

    // Act
    let a = t
        .get_json("/image/v2/images?stacksnap_job_id=job-a", None)
        .await;
    let page1 = t
        .get_json("/image/v2/images?stacksnap_job_id=job-a&limit=2", None)
        .await;
    let next = page1["next"].as_str().unwrap().to_owned();
    let page2 = t.get_json(&format!("/image{next}"), None).await;
    let queued = t
        .get_json("/image/v2/images?status=queued&name=img4", None)
        .await;

    // Assert
    let names = |v: &Value| -> Vec<String> {
        v["images"]
            .as_array()
            .unwrap()
            .iter()
            .map(|i| i["name"].as_str().unwrap().to_owned())
            .collect()
    };
    assert_eq!(names(&a), ["img2", "img1", "img0"]);
    assert_eq!(names(&page1), ["img2", "img1"]);
    assert_eq!(names(&page2), ["img0"]);
    assert!(page2.get("next").is_none());
    assert_eq!(names(&queued), ["img4"]);
}

#[tokio::test]
async fn a_core_filter_reads_an_operator_before_its_first_colon_as_glance_does() {
    // Arrange: a name with a colon can only be asked for with `eq:`.
    let t = spawn().await;
    for name in ["db:nightly", "web"] {
        let r = t
            .call(
                Method::POST,
                "/image/v2/images",
                None,
                Some(json!({"name": name})),
            )
            .await;
        assert_eq!(r.status(), StatusCode::CREATED);
    }

    // Act
    let exact = t
        .get_json("/image/v2/images?name=eq:db:nightly", None)
        .await;
    let listed = t.get_json("/image/v2/images?name=in:web,nope", None).await;
    let bare = t
        .call(Method::GET, "/image/v2/images?name=db:nightly", None, None)
        .await;

    // Assert
    assert_eq!(exact["images"].as_array().unwrap().len(), 1, "{exact}");
    assert_eq!(exact["images"][0]["name"], "db:nightly");
    assert_eq!(listed["images"][0]["name"], "web");
    assert_eq!(
        bare.status(),
        StatusCode::BAD_REQUEST,
        "operator `db` is unknown"
    );
}

#[tokio::test]
async fn deleted_image_answers_404_with_glances_html_body() {
    let t = spawn().await;
    let r = t
        .call(
            Method::POST,
            "/image/v2/images",
            None,
            Some(json!({"name": "x"})),
        )
        .await;
    let id = r.json::<Value>().await.unwrap()["id"]
        .as_str()
        .unwrap()
        .to_owned();
    assert_eq!(
        t.call(
            Method::DELETE,
            &format!("/image/v2/images/{id}"),
            None,
            None
        )
        .await
        .status(),
        StatusCode::NO_CONTENT
    );
    let r = t
        .call(Method::GET, &format!("/image/v2/images/{id}"), None, None)
        .await;
    assert_eq!(r.status(), StatusCode::NOT_FOUND);
    assert!(
        r.headers()["content-type"]
            .to_str()
            .unwrap()
            .starts_with("text/html")
    );
    assert!(
        r.text()
            .await
            .unwrap()
            .contains(&format!("No image found with ID {id}"))
    );
}

#[tokio::test]
async fn version_discovery_answers_300_without_a_token() {
    let t = spawn().await;
    let r = t
        .http
        .get(format!("{}/image/", t.sim.base_url()))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), StatusCode::MULTIPLE_CHOICES);
    let body: Value = r.json().await.unwrap();
    assert_eq!(body["versions"][0]["status"], "CURRENT");
}

#[tokio::test]
async fn an_id_in_list_answers_those_images_newest_first_in_pages_with_the_other_filters() {
    // Arrange
    let t = spawn().await;
    let mut ids = Vec::new();
    for i in 0..6 {
        let r = t
            .call(
                Method::POST,
                "/image/v2/images",
                None,
                Some(json!({"name": format!("img{i}"), "k": if i == 4 { "other" } else { "v" }})),
            )
            .await;
        assert_eq!(r.status(), StatusCode::CREATED);
        ids.push(
            r.json::<Value>().await.unwrap()["id"]
                .as_str()
                .unwrap()
                .to_owned(),
        );
    }
    // Images 0, 2, 4 and 5, an unknown id and a repeat, in no order.
    let asked = [&ids[5], &ids[0], "no-such-image", &ids[2], &ids[4], &ids[0]].join(",");

    // Act
    let page1 = t
        .get_json(&format!("/image/v2/images?id=in:{asked}&k=v&limit=2"), None)
        .await;
    let next = page1["next"].as_str().unwrap().to_owned();
    let page2 = t.get_json(&format!("/image{next}"), None).await;

    // Assert
    let names = |v: &Value| -> Vec<String> {
        v["images"]
            .as_array()
            .unwrap()
            .iter()
            .map(|i| i["name"].as_str().unwrap().to_owned())
            .collect()
    };
    assert_eq!(names(&page1), ["img5", "img2"]);
    assert_eq!(names(&page2), ["img0"]);
}
