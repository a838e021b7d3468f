//! Ids read from answers go into URL paths escaped: an id is one path segment,
//! whatever characters it holds, and one that cannot be a segment is refused.

use std::time::Duration;

use stacksnap::openstack::{CloudConfig, ErrorKind, OpenStack, SessionOptions, retry::RetryPolicy};
use stacksnap_sim::{SimConfig, SimHandle, Simulator};

fn start() -> (SimHandle, OpenStack) {
    let sim = Simulator::start(SimConfig::default(), "127.0.0.1:0".parse().unwrap()).unwrap();
    let config =
        CloudConfig::from_clouds_yaml(&sim.clouds_yaml(), "stacksnap-sim", "simulator").unwrap();
    let options = SessionOptions {
        request_timeout: Duration::from_secs(2),
        connect_timeout: Duration::from_secs(2),
        retry: RetryPolicy {
            max_attempts: 1,
            base_delay: Duration::from_millis(10),
            max_delay: Duration::from_millis(10),
        },
    };
    (sim, OpenStack::new(config, options).unwrap())
}

#[tokio::test]
async fn an_id_with_slashes_and_a_query_stays_one_escaped_path_segment() {
    let (sim, cloud) = start();

    let image = cloud.glance().get_image("a/b?limit=1#x").await;
    let snapshot = cloud.cinder().get_snapshot("c d/e").await;

    assert_eq!(image.unwrap_err().kind, ErrorKind::NotFound);
    assert_eq!(snapshot.unwrap_err().kind, ErrorKind::NotFound);
    let log = sim.requests();
    let image_call = log
        .iter()
        .find(|r| r.operation == "glance.get_image")
        .expect("one image read");
    assert_eq!(image_call.path, "/image/v2/images/a%2Fb%3Flimit%3D1%23x");
    assert_eq!(image_call.query, "");
    let snapshot_call = log
        .iter()
        .find(|r| r.operation == "cinder.get_snapshot")
        .expect("one snapshot read");
    assert!(
        snapshot_call.path.ends_with("/snapshots/c%20d%2Fe"),
        "{}",
        snapshot_call.path
    );
}

#[tokio::test]
async fn an_id_that_would_climb_the_path_is_refused_before_anything_is_sent() {
    let (sim, cloud) = start();
    let image = sim.create_image(&stacksnap_sim::ImageSeed {
        name: "keep-me".into(),
        ..Default::default()
    });
    sim.clear_requests();

    let dot_dot = cloud.glance().delete_image("..").await;
    let empty = cloud.cinder().delete_snapshot("").await;

    assert_eq!(dot_dot.unwrap_err().kind, ErrorKind::BadRequest);
    assert_eq!(empty.unwrap_err().kind, ErrorKind::BadRequest);
    assert!(
        sim.requests().iter().all(|r| r.method != "DELETE"),
        "{:?}",
        sim.requests()
    );
    assert!(cloud.glance().get_image(&image).await.is_ok());
}
