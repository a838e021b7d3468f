//! The clients end to end against the simulator: auth, discovery, retries and typed errors.

use std::time::Duration;

use stacksnap::openstack::{
    CloudConfig, ErrorKind, OpenStack, SessionOptions, cinder::SnapshotFilter, nova::ServerFilter,
    retry::RetryPolicy, session::Service, version::Microversion,
};
use stacksnap_sim::{FaultRule, SimConfig, SimHandle, Simulator};

fn start(config: SimConfig) -> SimHandle {
    Simulator::start(config, "127.0.0.1:0".parse().unwrap()).unwrap()
}

fn options() -> SessionOptions {
    SessionOptions {
        request_timeout: Duration::from_secs(2),
        connect_timeout: Duration::from_secs(2),
        retry: RetryPolicy {
            max_attempts: 3,
            base_delay: Duration::from_millis(10),
            max_delay: Duration::from_secs(2),
        },
    }
}

fn client(sim: &SimHandle) -> OpenStack {
    let config =
        CloudConfig::from_clouds_yaml(&sim.clouds_yaml(), "stacksnap-sim", "simulator").unwrap();
    OpenStack::new(config, options()).unwrap()
}

#[tokio::test]
async fn the_client_authenticates_once_and_reuses_its_token() {
    let sim = start(SimConfig::default());
    let cloud = client(&sim);
    let server = sim.create_image_backed_server("web", &["backup"], &[], false);

    cloud.nova().get_server(&server).await.unwrap();
    cloud
        .nova()
        .list_servers(&ServerFilter::default())
        .await
        .unwrap();
    cloud.glance().list_images(&[]).await.unwrap();

    assert_eq!(sim.count("keystone.create_token"), 1);
    assert_eq!(
        cloud
            .session()
            .microversion(Service::Compute)
            .await
            .unwrap(),
        Some(Microversion(2, 96))
    );
    let logged = sim.requests();
    let get = logged
        .iter()
        .find(|r| r.operation == "nova.get_server")
        .unwrap();
    assert_eq!(get.microversion.as_deref(), Some("compute 2.96"));
}

#[tokio::test]
async fn application_credentials_work_too() {
    let sim = start(SimConfig::default());
    let credential = &sim.config().application_credential;
    let yaml = format!(
        "clouds:\n  app:\n    auth_type: v3applicationcredential\n    auth:\n      auth_url: {}\n      application_credential_id: {}\n      application_credential_secret: {}\n",
        sim.auth_url(),
        credential.id,
        credential.secret
    );
    let cloud = OpenStack::new(
        CloudConfig::from_clouds_yaml(&yaml, "app", "test").unwrap(),
        options(),
    )
    .unwrap();
    cloud
        .cinder()
        .list_snapshots(&SnapshotFilter::default())
        .await
        .unwrap();
}

#[tokio::test]
async fn an_expired_token_is_replaced_with_exactly_one_reauthentication() {
    let sim = start(SimConfig::default());
    let cloud = client(&sim);
    let server = sim.create_image_backed_server("web", &[], &[], false);
    cloud.nova().get_server(&server).await.unwrap();

    sim.expire_tokens();
    cloud.nova().get_server(&server).await.unwrap();

    assert_eq!(sim.count("keystone.create_token"), 2);
    let statuses: Vec<u16> = sim
        .requests()
        .iter()
        .filter(|r| r.operation == "nova.get_server")
        .map(|r| r.status)
        .collect();
    assert_eq!(statuses, [200, 401, 200]);
}

#[tokio::test]
async fn a_token_near_its_expiry_is_renewed_before_use() {
    // A 2s token is renewed once it is past half its life, before any call meets a 401.
    let config = SimConfig {
        token_ttl: Duration::from_secs(2),
        ..SimConfig::default()
    };
    let sim = start(config);
    let cloud = client(&sim);
    cloud.glance().list_images(&[]).await.unwrap();
    cloud.glance().list_images(&[]).await.unwrap();
    assert_eq!(
        sim.count("keystone.create_token"),
        1,
        "a fresh token is reused"
    );
    tokio::time::sleep(Duration::from_millis(1200)).await;
    cloud.glance().list_images(&[]).await.unwrap();
    assert_eq!(sim.count("keystone.create_token"), 2);
    assert!(sim.requests().iter().all(|r| r.status != 401));
}

#[tokio::test]
async fn below_microversion_2_45_the_image_id_comes_from_the_location_header() {
    let config = SimConfig {
        nova_max_microversion: "2.44".into(),
        ..SimConfig::default()
    };
    let sim = start(config);
    let cloud = client(&sim);
    let server = sim.create_image_backed_server("old", &[], &[], false);

    let image_id = cloud
        .nova()
        .create_image(&server, "snap", &Default::default())
        .await
        .unwrap();

    assert_eq!(
        cloud
            .session()
            .microversion(Service::Compute)
            .await
            .unwrap(),
        Some(Microversion(2, 44))
    );
    let image = cloud.glance().get_image(&image_id).await.unwrap();
    assert_eq!(image.name.as_deref(), Some("snap"));
}

#[tokio::test]
async fn throttling_is_retried_after_the_time_retry_after_asks_for() {
    let sim = start(SimConfig::default());
    let cloud = client(&sim);
    let server = sim.create_image_backed_server("web", &[], &[], false);
    sim.inject(FaultRule::rate_limited("nova.get_server", 1).times(1));

    cloud.nova().get_server(&server).await.unwrap();

    let calls: Vec<_> = sim
        .requests()
        .into_iter()
        .filter(|r| r.operation == "nova.get_server")
        .collect();
    assert_eq!(
        calls.iter().map(|r| r.status).collect::<Vec<_>>(),
        [429, 200]
    );
    let waited = calls[1].at - calls[0].at;
    assert!(
        waited >= chrono::TimeDelta::milliseconds(950),
        "waited only {waited}"
    );
}

#[tokio::test]
async fn a_create_is_retried_after_a_429_but_not_after_a_503_or_a_conflict() {
    let sim = start(SimConfig::default());
    let cloud = client(&sim);
    let server = sim.create_image_backed_server("web", &[], &[], false);

    sim.inject(FaultRule::error("nova.create_image", 429).times(1));
    cloud
        .nova()
        .create_image(&server, "after-429", &Default::default())
        .await
        .unwrap();
    assert_eq!(sim.count("nova.create_image"), 2, "a 429 was not processed");

    // A proxy's 503 may come after the service committed: only the engine,
    // after a look-up, may send the create again.
    let other = sim.create_image_backed_server("web-2", &[], &[], false);
    sim.inject(FaultRule::unavailable("nova.create_image").times(1));
    let error = cloud
        .nova()
        .create_image(&other, "after-503", &Default::default())
        .await
        .unwrap_err();
    assert_eq!(error.kind, ErrorKind::Unavailable);
    assert_eq!(sim.count("nova.create_image"), 3);

    sim.inject(FaultRule::error("nova.create_image", 409).times(1));
    let error = cloud
        .nova()
        .create_image(&other, "after-409", &Default::default())
        .await
        .unwrap_err();
    assert_eq!(error.kind, ErrorKind::Conflict);
    assert_eq!(
        sim.count("nova.create_image"),
        4,
        "a conflict is the engine's to retry, not the client's"
    );
}

#[tokio::test]
async fn every_injected_fault_reaches_the_caller_as_its_typed_error() {
    let sim = start(SimConfig::default());
    let cloud = client(&sim);
    let server = sim.create_image_backed_server("web", &[], &[], false);
    let cases = [
        (
            FaultRule::error("nova.get_server", 404),
            ErrorKind::NotFound,
        ),
        (
            FaultRule::error("nova.get_server", 409),
            ErrorKind::Conflict,
        ),
        (
            FaultRule::error("nova.get_server", 400),
            ErrorKind::BadRequest,
        ),
        (
            FaultRule::error("nova.get_server", 500),
            ErrorKind::ServerError,
        ),
        (
            FaultRule::unavailable("nova.get_server"),
            ErrorKind::Unavailable,
        ),
        (
            FaultRule::rate_limited("nova.get_server", 0),
            ErrorKind::RateLimited,
        ),
    ];
    for (rule, kind) in cases {
        sim.clear_faults();
        sim.inject(rule.clone());
        let error = cloud.nova().get_server(&server).await.unwrap_err();
        assert_eq!(error.kind, kind, "{rule:?}: {error}");
        assert!(
            error
                .request_id
                .as_deref()
                .is_some_and(|id| id.starts_with("req-")),
            "{error}"
        );
    }
    sim.clear_faults();

    sim.inject(FaultRule::latency(
        "glance.get_image",
        Duration::from_secs(5),
    ));
    let error = cloud.glance().get_image("anything").await.unwrap_err();
    assert_eq!(error.kind, ErrorKind::Timeout);
    sim.clear_faults();

    sim.inject(FaultRule::error("keystone.create_token", 401));
    sim.expire_tokens();
    let error = cloud.nova().get_server(&server).await.unwrap_err();
    assert_eq!(error.kind, ErrorKind::Unauthorized);
}

#[tokio::test]
async fn quota_errors_are_typed_and_not_retried() {
    let sim = start(SimConfig::default());
    let cloud = client(&sim);
    let volume = sim.create_volume("data", 1, &[]);
    let server = sim.create_volume_backed_server("db", 1, false);
    sim.set_snapshot_quota(0);

    let cinder = cloud
        .cinder()
        .create_snapshot(&volume, "s", "", &Default::default(), false)
        .await
        .unwrap_err();
    assert_eq!(cinder.kind, ErrorKind::QuotaExceeded, "{cinder}");
    assert_eq!(cinder.status, Some(413));
    let nova = cloud
        .nova()
        .create_image(&server, "s", &Default::default())
        .await
        .unwrap_err();
    assert_eq!(nova.kind, ErrorKind::QuotaExceeded, "{nova}");
    assert_eq!(nova.status, Some(403));
    assert_eq!(
        sim.count("cinder.create_snapshot") + sim.count("nova.create_image"),
        2
    );
}

#[tokio::test]
async fn in_use_volumes_get_force_only_below_3_66() {
    for (max, forced) in [("3.65", true), ("3.71", false)] {
        let config = SimConfig {
            cinder_max_microversion: max.into(),
            ..SimConfig::default()
        };
        let sim = start(config);
        let cloud = client(&sim);
        let server = sim.create_volume_backed_server("db", 1, false);
        let volume = cloud
            .nova()
            .get_server(&server)
            .await
            .unwrap()
            .volumes_attached[0]
            .id
            .clone();
        // Cinder refuses an in-use volume without force below 3.66, and refuses force from 3.66 on.
        let snapshot = cloud
            .cinder()
            .create_snapshot(&volume, "s", "", &Default::default(), true)
            .await;
        assert!(
            snapshot.is_ok(),
            "max {max} (force sent: {forced}): {snapshot:?}"
        );
    }
}

#[tokio::test]
async fn listing_follows_every_page() {
    let sim = start(SimConfig::default());
    let cloud = client(&sim);
    for i in 0..7 {
        sim.create_image_backed_server(&format!("s{i}"), &["paged"], &[], false);
    }
    let filter = ServerFilter {
        tags: vec!["paged".into()],
        page_size: Some(3),
        ..ServerFilter::default()
    };
    let servers = cloud.nova().list_servers(&filter).await.unwrap();
    assert_eq!(servers.len(), 7);
    assert_eq!(sim.count("nova.list_servers_detail"), 3);
}

/// `n` group snapshots of one group of one volume, made as the admin.
async fn group_snapshots(sim: &SimHandle, cloud: &OpenStack, n: usize) -> String {
    let volume = sim.create_volume("a", 1, &[]);
    let group = crate::helpers::volume_group(cloud, "default_group_type", &[&volume]).await;
    for i in 0..n {
        cloud
            .cinder()
            .create_group_snapshot(&group, &format!("gs{i}"), "")
            .await
            .unwrap();
    }
    group
}

#[tokio::test]
async fn group_snapshot_listing_follows_every_page() {
    // Arrange: five group snapshots, and a Cinder that pages by two.
    let sim = start(SimConfig::default().with_cinder_max_limit(2));
    let cloud = client(&sim);
    let group = group_snapshots(&sim, &cloud, 5).await;

    // Act
    let all = cloud.cinder().list_group_snapshots(None).await.unwrap();
    let of_group = cloud
        .cinder()
        .list_group_snapshots(Some(&group))
        .await
        .unwrap();

    // Assert
    let mut names: Vec<String> = all.iter().filter_map(|g| g.name.clone()).collect();
    names.sort();
    assert_eq!(names, ["gs0", "gs1", "gs2", "gs3", "gs4"]);
    assert_eq!(of_group.len(), 5);
    assert_eq!(sim.count("cinder.list_group_snapshots_detail"), 6);
}

#[tokio::test]
async fn below_3_29_group_snapshots_are_listed_with_one_request() {
    // Cinder ignores marker and limit there, yet sends a next link: following
    // it would read the same page for ever.
    let sim = start(
        SimConfig::default()
            .with_cinder_max_microversion("3.28")
            .with_cinder_max_limit(2),
    );
    let cloud = client(&sim);
    group_snapshots(&sim, &cloud, 3).await;

    let all = cloud.cinder().list_group_snapshots(None).await.unwrap();

    assert_eq!(all.len(), 3);
    assert_eq!(sim.count("cinder.list_group_snapshots_detail"), 1);
}
