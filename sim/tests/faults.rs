//! Injected faults, seen over HTTP.

use std::time::{Duration, Instant};

use reqwest::{Method, StatusCode};
use serde_json::{Value, json};
use stacksnap_sim::{Fault, FaultRule, SimConfig};

use crate::helpers::{eventually, spawn, spawn_with};

#[tokio::test]
async fn rate_limit_fault_answers_429_with_retry_after() {
    let t = spawn().await;
    t.sim
        .inject(FaultRule::rate_limited("glance.list_images", 7));
    let r = t.call(Method::GET, "/image/v2/images", None, None).await;
    assert_eq!(r.status(), StatusCode::TOO_MANY_REQUESTS);
    assert_eq!(r.headers()["retry-after"], "7");
    assert!(
        r.headers()["x-openstack-request-id"]
            .to_str()
            .unwrap()
            .starts_with("req-")
    );
}

#[tokio::test]
async fn unavailable_fault_answers_503_in_the_services_error_shape() {
    let t = spawn().await;
    t.sim.inject(FaultRule::unavailable("cinder.*"));
    let r = t
        .call(Method::GET, "/volume/v3/snapshots", None, None)
        .await;
    assert_eq!(r.status(), StatusCode::SERVICE_UNAVAILABLE);
    let body: Value = r.json().await.unwrap();
    assert_eq!(body["serviceUnavailable"]["code"], 503);
    // Other services are untouched.
    assert_eq!(
        t.call(Method::GET, "/compute/v2.1/servers", None, None)
            .await
            .status(),
        StatusCode::OK
    );
}

#[tokio::test]
async fn error_rate_one_fails_every_call_and_zero_none() {
    let t = spawn().await;
    t.sim
        .inject(FaultRule::error("nova.list_servers", 500).rate(1.0));
    t.sim
        .inject(FaultRule::error("glance.list_images", 500).rate(0.0));
    for _ in 0..5 {
        assert_eq!(
            t.call(Method::GET, "/compute/v2.1/servers", None, None)
                .await
                .status(),
            StatusCode::INTERNAL_SERVER_ERROR
        );
        assert_eq!(
            t.call(Method::GET, "/image/v2/images", None, None)
                .await
                .status(),
            StatusCode::OK
        );
    }
}

#[tokio::test]
async fn partial_error_rate_is_deterministic_under_a_seed() {
    async fn pattern(seed: u64) -> Vec<u16> {
        let t = spawn_with(SimConfig::default().with_seed(seed)).await;
        t.sim
            .inject(FaultRule::error("nova.list_servers", 503).rate(0.5));
        let mut out = Vec::new();
        for _ in 0..20 {
            out.push(
                t.call(Method::GET, "/compute/v2.1/servers", None, None)
                    .await
                    .status()
                    .as_u16(),
            );
        }
        out
    }
    let (a, b) = (pattern(42).await, pattern(42).await);
    assert_eq!(a, b);
    assert!(a.contains(&503) && a.contains(&200), "{a:?}");
}

#[tokio::test]
async fn fail_the_next_call_then_succeed() {
    let t = spawn().await;
    let server = t.sim.create_image_backed_server("web", &[], &[], false);
    t.sim
        .inject(FaultRule::error("nova.create_image", 409).times(1));
    let first = t.create_image(&server, "s", "2.45", json!({})).await;
    assert_eq!(first.status(), StatusCode::CONFLICT);
    let body: Value = first.json().await.unwrap();
    assert_eq!(body["conflictingRequest"]["code"], 409);
    let second = t.create_image(&server, "s", "2.45", json!({})).await;
    assert_eq!(second.status(), StatusCode::ACCEPTED);
}

#[tokio::test]
async fn latency_fault_delays_the_answer() {
    let t = spawn().await;
    t.sim.inject(FaultRule::latency(
        "glance.get_image",
        Duration::from_millis(200),
    ));
    let start = Instant::now();
    assert!(t.image("nope").await.is_none());
    assert!(start.elapsed() >= Duration::from_millis(200));
}

#[tokio::test]
async fn stuck_snapshot_stays_creating() {
    let t = spawn().await;
    t.sim
        .inject(FaultRule::new("cinder.create_snapshot", Fault::SnapshotStuck).times(1));
    let vol = t.sim.create_volume("v", 1, &[]);
    let r = t.create_snapshot(json!({"volume_id": vol}), "3.66").await;
    let id = r.json::<Value>().await.unwrap()["snapshot"]["id"]
        .as_str()
        .unwrap()
        .to_owned();
    tokio::time::sleep(Duration::from_millis(900)).await;
    assert_eq!(t.snapshot(&id).await["status"], "creating");
}

#[tokio::test]
async fn snapshot_error_fault_ends_in_error_for_a_volume_backed_create_image() {
    let t = spawn().await;
    t.sim
        .inject(FaultRule::new("nova.create_image", Fault::SnapshotError).times(1));
    let server = t.sim.create_volume_backed_server("db", 2, false);
    let image = t.create_image_ok(&server, "snap").await;
    let img = t.image(&image).await.unwrap();
    assert_eq!(img["status"], "active");
    let bdm: Vec<Value> =
        serde_json::from_str(img["block_device_mapping"].as_str().unwrap()).unwrap();
    let mut finals = Vec::new();
    for b in &bdm {
        let id = b["snapshot_id"].as_str().unwrap().to_owned();
        finals.push(
            eventually(Duration::from_secs(5), || async {
                let s = t.snapshot(&id).await;
                (s["status"] != "creating").then(|| s["status"].as_str().unwrap().to_owned())
            })
            .await,
        );
    }
    finals.sort();
    assert_eq!(finals, ["available", "error"]);
}

#[tokio::test]
async fn killed_image_fault_ends_the_snapshot_image_killed() {
    let t = spawn().await;
    t.sim
        .inject(FaultRule::new("nova.create_image", Fault::ImageKilled));
    let server = t.sim.create_image_backed_server("web", &[], &[], false);
    let image = t.create_image_ok(&server, "snap").await;
    eventually(Duration::from_secs(5), || async {
        (t.image(&image).await.unwrap()["status"] == "killed").then_some(())
    })
    .await;
    assert!(t.server(&server).await["OS-EXT-STS:task_state"].is_null());
}

#[tokio::test]
async fn failed_image_snapshot_deletes_the_image() {
    let t = spawn().await;
    t.sim
        .inject(FaultRule::new("nova.create_image", Fault::ImageSnapshotFails).times(1));
    let server = t.sim.create_image_backed_server("web", &[], &[], false);
    let image = t.create_image_ok(&server, "snap").await;
    assert_eq!(t.image(&image).await.unwrap()["status"], "queued");
    eventually(Duration::from_secs(5), || async {
        t.image(&image).await.is_none().then_some(())
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
async fn faults_can_be_managed_through_the_admin_endpoint() {
    let t = spawn().await;
    let url = format!("{}/_sim/faults", t.sim.base_url());
    let r = t
        .http
        .post(&url)
        .json(&json!({"operation": "nova.get_server", "fault": "error", "status": 503, "retry_after": 2, "times": 1}))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), StatusCode::CREATED);
    let r = t
        .call(Method::GET, "/compute/v2.1/servers/x", None, None)
        .await;
    assert_eq!(r.status(), StatusCode::SERVICE_UNAVAILABLE);
    assert_eq!(r.headers()["retry-after"], "2");
    t.http
        .post(&url)
        .json(&json!({"operation": "*", "fault": "error", "status": 500}))
        .send()
        .await
        .unwrap();
    assert_eq!(
        t.http.delete(&url).send().await.unwrap().status(),
        StatusCode::NO_CONTENT
    );
    assert_eq!(
        t.call(Method::GET, "/compute/v2.1/servers", None, None)
            .await
            .status(),
        StatusCode::OK
    );
}

/// Creates an `available` Cinder snapshot of a fresh volume and returns its id.
async fn settled_snapshot(t: &crate::helpers::TestSim) -> String {
    let vol = t.sim.create_volume("v", 1, &[]);
    let r = t.create_snapshot(json!({"volume_id": vol}), "3.66").await;
    let id = r.json::<Value>().await.unwrap()["snapshot"]["id"]
        .as_str()
        .unwrap()
        .to_owned();
    eventually(Duration::from_secs(5), || async {
        (t.snapshot(&id).await["status"] == "available").then_some(())
    })
    .await;
    id
}

async fn delete_snapshot(t: &crate::helpers::TestSim, id: &str) -> StatusCode {
    t.call(
        Method::DELETE,
        &format!("/volume/v3/snapshots/{id}"),
        None,
        None,
    )
    .await
    .status()
}

#[tokio::test]
async fn a_busy_snapshot_goes_deleting_then_back_to_available_as_cinder_resets_it() {
    // Arrange: deletions slow enough to see `deleting`.
    let durations = stacksnap_sim::Durations {
        snapshot_delete: Duration::from_millis(300),
        ..crate::helpers::observable_durations()
    };
    let t = spawn_with(SimConfig::default().with_durations(durations)).await;
    let id = settled_snapshot(&t).await;
    t.sim.inject(FaultRule::new(
        "cinder.delete_snapshot",
        Fault::SnapshotDeleteBusy {
            dependants_only: false,
        },
    ));

    // Act
    let accepted = delete_snapshot(&t, &id).await;

    // Assert: accepted, `deleting` for a while, then `available` again, never gone.
    assert_eq!(accepted, StatusCode::ACCEPTED);
    assert_eq!(t.snapshot(&id).await["status"], "deleting");
    eventually(Duration::from_secs(5), || async {
        (t.snapshot(&id).await["status"] == "available").then_some(())
    })
    .await;
}

#[tokio::test]
async fn with_dependants_only_the_busy_fault_hits_a_snapshot_a_volume_was_made_from() {
    // Arrange: two snapshots, a volume made from the first.
    let t = spawn().await;
    let (cloned, plain) = (settled_snapshot(&t).await, settled_snapshot(&t).await);
    let clone = t.sim.create_volume_from_snapshot("clone", &cloned).unwrap();
    assert_eq!(t.volume(&clone).await["snapshot_id"], cloned.as_str());
    t.sim.inject(FaultRule::new(
        "cinder.delete_snapshot",
        Fault::SnapshotDeleteBusy {
            dependants_only: true,
        },
    ));

    // Act
    assert_eq!(delete_snapshot(&t, &cloned).await, StatusCode::ACCEPTED);
    assert_eq!(delete_snapshot(&t, &plain).await, StatusCode::ACCEPTED);

    // Assert: the one with a dependant comes back, the other goes.
    eventually(Duration::from_secs(5), || async {
        (t.snapshot(&cloned).await["status"] == "available").then_some(())
    })
    .await;
    eventually(Duration::from_secs(5), || async {
        let r = t
            .call(
                Method::GET,
                &format!("/volume/v3/snapshots/{plain}"),
                None,
                None,
            )
            .await;
        (r.status() == StatusCode::NOT_FOUND).then_some(())
    })
    .await;
}

#[tokio::test]
async fn a_snapshot_in_error_deleting_cannot_be_deleted_again_by_a_member() {
    // Arrange
    let t = spawn().await;
    let id = settled_snapshot(&t).await;
    t.sim
        .inject(FaultRule::new("cinder.delete_snapshot", Fault::SnapshotDeleteError).times(1));
    assert_eq!(delete_snapshot(&t, &id).await, StatusCode::ACCEPTED);
    eventually(Duration::from_secs(5), || async {
        (t.snapshot(&id).await["status"] == "error_deleting").then_some(())
    })
    .await;

    // Act / Assert: Cinder's API takes a delete only from `available` or `error`.
    assert_eq!(delete_snapshot(&t, &id).await, StatusCode::BAD_REQUEST);
}

#[tokio::test]
async fn a_lost_reply_fault_carries_the_call_out_and_then_answers_503() {
    let t = spawn().await;
    let server = t.sim.create_image_backed_server("web-1", &[], &[], false);
    t.sim
        .inject(FaultRule::reply_lost("nova.create_image", 503).times(1));

    let r = t
        .create_image(&server, "lost", "2.45", json!({"k": "lost"}))
        .await;

    assert_eq!(r.status(), StatusCode::SERVICE_UNAVAILABLE);
    let images = t.get_json("/image/v2/images?k=lost", None).await["images"].clone();
    assert_eq!(
        images.as_array().map(Vec::len),
        Some(1),
        "the image was made all the same: {images}"
    );
    // Once: the next call is answered normally (and refused: a snapshot is under way).
    let again = t.create_image(&server, "again", "2.45", json!({})).await;
    assert_eq!(again.status(), StatusCode::CONFLICT);
}

#[tokio::test]
async fn a_held_reply_fault_carries_the_call_out_past_the_clients_timeout() {
    let t = spawn().await;
    let volume = t.sim.create_volume("data", 1, &[]);
    t.http
        .post(format!("{}/_sim/faults", t.sim.base_url()))
        .json(
            &json!({"operation": "cinder.create_snapshot", "fault": "lose_reply", "hang_ms": 2000}),
        )
        .send()
        .await
        .unwrap();
    let impatient = reqwest::Client::builder()
        .timeout(Duration::from_millis(300))
        .build()
        .unwrap();

    let sent = impatient
        .post(format!("{}/volume/v3/snapshots", t.sim.base_url()))
        .header("x-auth-token", &t.token)
        .json(&json!({"snapshot": {"volume_id": volume, "name": "held"}}))
        .send()
        .await;

    assert!(sent.unwrap_err().is_timeout());
    let listed = t.get_json("/volume/v3/snapshots?name=held", None).await["snapshots"].clone();
    assert_eq!(listed.as_array().map(Vec::len), Some(1), "{listed}");
}
