//! The orphan finder against the simulator: Cinder snapshots whose image is gone
//! are found and cleaned up, and nothing live ever is — not a snapshot whose
//! image appears while the cloud is being listed, not a young one, not one an
//! unreadable image may refer to, not one past the first page of a listing.

use std::{
    collections::BTreeMap,
    sync::{Arc, Mutex},
    time::Duration,
};

use chrono::{DateTime, TimeDelta, Utc};
use serde_json::{Value, json};
use sqlx::PgPool;
use stacksnap::{
    clock::Clock,
    engine::{EngineConfig, orphans},
    openstack::{OpenStack, cinder::SnapshotFilter},
    startup::RunningService,
};
use stacksnap_sim::{FaultRule, ImageSeed, SimConfig, SimHandle, Simulator};

use crate::helpers::{cloud_for, engine_config, start_service};

/// The system clock moved by an offset: the engine runs in real time (the
/// simulator's artefacts progress on their own) while a test can make
/// everything look older than the orphan grace period.
#[derive(Debug, Clone, Default)]
struct ShiftedClock(Arc<Mutex<TimeDelta>>);

impl ShiftedClock {
    fn shift(&self, by: TimeDelta) {
        *self.0.lock().unwrap() += by;
    }
}

impl Clock for ShiftedClock {
    fn now(&self) -> DateTime<Utc> {
        Utc::now() + *self.0.lock().unwrap()
    }
}

struct Live {
    base: String,
    http: reqwest::Client,
    sim: SimHandle,
    cloud: OpenStack,
    pool: PgPool,
    clock: ShiftedClock,
    _service: RunningService,
}

async fn live(pool: PgPool) -> Live {
    let sim = Simulator::start(SimConfig::default(), "127.0.0.1:0".parse().unwrap()).unwrap();
    let clock = ShiftedClock::default();
    let config = EngineConfig {
        prune_interval: Duration::from_secs(3600),
        ..engine_config()
    };
    let service = start_service(
        pool.clone(),
        Arc::new(clock.clone()),
        Some(cloud_for(&sim)),
        config,
    )
    .await;
    Live {
        base: format!("http://{}", service.local_addr()),
        http: reqwest::Client::new(),
        cloud: cloud_for(&sim),
        pool,
        sim,
        clock,
        _service: service,
    }
}

impl Live {
    async fn get(&self, path: &str) -> Value {
        self.http
            .get(format!("{}{path}", self.base))
            .send()
            .await
            .unwrap()
            .json()
            .await
            .unwrap()
    }

    async fn cleanup(&self, query: &str) -> Value {
        let response = self
            .http
            .post(format!("{}/v1/orphans/cleanup{query}", self.base))
            .send()
            .await
            .unwrap();
        assert_eq!(response.status(), 200);
        response.json().await.unwrap()
    }

    /// Every orphan's image name, sorted.
    async fn orphan_images(&self, query: &str) -> Vec<String> {
        let found = self.get(&format!("/v1/orphans{query}")).await;
        let mut names: Vec<String> = found["items"]
            .as_array()
            .unwrap_or_else(|| panic!("{found}"))
            .iter()
            .map(|o| o["image_name"].as_str().unwrap_or("").to_owned())
            .collect();
        names.sort();
        names
    }

    /// Makes everything made so far older than the default grace period (1 h).
    fn age(&self) {
        self.clock.shift(TimeDelta::hours(2));
    }

    /// Snapshots a volume-backed server with Nova directly, as a user would: an
    /// image and its Cinder snapshots, none of stacksnap's.
    async fn nova_snapshot(&self, server: &str, name: &str) -> String {
        let image = self
            .cloud
            .nova()
            .create_image(server, name, &BTreeMap::new())
            .await
            .unwrap();
        tokio::time::sleep(Duration::from_millis(400)).await;
        image
    }

    /// The ids of the Cinder snapshots called `name`.
    async fn cinder_snapshots_named(&self, name: &str) -> Vec<String> {
        self.cloud
            .cinder()
            .list_snapshots(&SnapshotFilter::default())
            .await
            .unwrap()
            .into_iter()
            .filter(|s| s.name.as_deref() == Some(name))
            .map(|s| s.id)
            .collect()
    }

    async fn snapshot_and_wait(&self, server: &str) -> Value {
        let response = self
            .http
            .post(format!("{}/v1/snapshots?wait=30s", self.base))
            .json(&json!({"resource_type": "server", "resource_id": server}))
            .send()
            .await
            .unwrap();
        let job: Value = response.json().await.unwrap();
        assert_eq!(job["status"], "succeeded", "{job}");
        job
    }
}

/// An image whose `block_device_mapping` is the given text.
fn image_with_mapping(name: &str, mapping: &str) -> ImageSeed {
    ImageSeed {
        name: name.into(),
        size: 0,
        visibility: "private".into(),
        properties: BTreeMap::from([
            ("block_device_mapping".to_owned(), Value::from(mapping)),
            ("bdm_v2".to_owned(), Value::from("True")),
        ]),
        ..ImageSeed::default()
    }
}

#[sqlx::test]
async fn orphans_of_deleted_images_are_found_and_only_ours_are_cleaned_by_default(pool: PgPool) {
    let live = live(pool).await;
    // Ours: a stacksnap snapshot of a volume-backed server whose image someone deleted in Glance.
    let server = live.sim.create_volume_backed_server("db", 2, false);
    let job = live.snapshot_and_wait(&server).await;
    live.cloud
        .glance()
        .delete_image(job["image_id"].as_str().unwrap())
        .await
        .unwrap();
    // Foreign: a snapshot someone took with Nova directly, whose image was deleted too.
    let other = live.sim.create_volume_backed_server("other", 1, false);
    let foreign_image = live.nova_snapshot(&other, "manual").await;
    live.cloud
        .glance()
        .delete_image(&foreign_image)
        .await
        .unwrap();
    // A healthy snapshot whose image still exists is no orphan.
    let healthy = live.sim.create_volume_backed_server("healthy", 1, false);
    live.nova_snapshot(&healthy, "kept").await;
    live.age();

    let ours = live.get("/v1/orphans").await;
    assert_eq!(ours["items"].as_array().unwrap().len(), 2, "{ours}");
    assert!(
        ours["items"]
            .as_array()
            .unwrap()
            .iter()
            .all(|o| o["made_by_stacksnap"] == true)
    );
    let all = live.get("/v1/orphans?include_foreign=true").await;
    assert_eq!(all["items"].as_array().unwrap().len(), 3, "{all}");
    let foreign = all["items"]
        .as_array()
        .unwrap()
        .iter()
        .find(|o| o["made_by_stacksnap"] == false)
        .unwrap();
    assert_eq!(foreign["image_name"], "manual");

    let report = live.cleanup("").await;
    assert_eq!(report["deleted"].as_array().unwrap().len(), 2, "{report}");
    tokio::time::sleep(Duration::from_millis(300)).await;
    assert_eq!(
        live.orphan_images("?include_foreign=true").await,
        ["manual"],
        "only the foreign one is left"
    );
    let report = live.cleanup("?include_foreign=true").await;
    assert_eq!(report["deleted"].as_array().unwrap().len(), 1, "{report}");
}

#[sqlx::test]
async fn a_snapshot_younger_than_the_grace_period_is_neither_listed_nor_deleted(pool: PgPool) {
    // Arrange: a snapshot whose image is gone, made a moment ago.
    let live = live(pool).await;
    let server = live.sim.create_volume_backed_server("young", 1, false);
    let image = live.nova_snapshot(&server, "just-made").await;
    live.cloud.glance().delete_image(&image).await.unwrap();
    let snapshots = live.cinder_snapshots_named("snapshot for just-made").await;
    assert_eq!(snapshots.len(), 1);

    // Act
    let listed = live.orphan_images("?include_foreign=true").await;
    let report = live.cleanup("?include_foreign=true").await;

    // Assert: untouched while young, an orphan once older than the grace period.
    assert!(listed.is_empty(), "{listed:?}");
    assert_eq!(report["deleted"], json!([]), "{report}");
    assert_eq!(live.sim.count("cinder.delete_snapshot"), 0);
    live.cloud
        .cinder()
        .get_snapshot(&snapshots[0])
        .await
        .expect("still there");
    live.age();
    assert_eq!(
        live.orphan_images("?include_foreign=true").await,
        ["just-made"]
    );
}

#[sqlx::test]
async fn a_snapshot_whose_image_is_made_while_the_cloud_is_listed_is_no_orphan(pool: PgPool) {
    // Arrange: old enough for the grace period not to hide anything, and a slow
    // Cinder listing during which Nova snapshots a volume-backed server.
    let live = live(pool).await;
    live.age();
    let server = live.sim.create_volume_backed_server("racing", 1, false);
    live.sim.inject(
        FaultRule::latency("cinder.list_snapshots_detail", Duration::from_millis(1500)).times(1),
    );

    // Act
    let listing = live.get("/v1/orphans?include_foreign=true");
    let snapshot = async {
        tokio::time::sleep(Duration::from_millis(300)).await;
        live.nova_snapshot(&server, "made-meanwhile").await
    };
    let (found, _image) = tokio::join!(listing, snapshot);

    // Assert
    assert_eq!(found["items"], json!([]), "{found}");
    assert_eq!(
        live.cinder_snapshots_named("snapshot for made-meanwhile")
            .await
            .len(),
        1,
        "the snapshot was made during the listing"
    );
}

#[sqlx::test]
async fn an_image_whose_block_device_mapping_cannot_be_read_keeps_its_snapshots(pool: PgPool) {
    // Arrange: two images whose mapping is not JSON, and three Nova-named snapshots.
    let live = live(pool).await;
    let volume = live.sim.create_volume("data", 1, &[]);
    let cinder = live.cloud.cinder();
    let mut made = BTreeMap::new();
    for image_name in ["unreadable", "renamed", "gone"] {
        let snapshot = cinder
            .create_snapshot(
                &volume,
                &format!("snapshot for {image_name}"),
                "",
                &BTreeMap::new(),
                false,
            )
            .await
            .unwrap();
        made.insert(image_name, snapshot.id);
    }
    // Its mapping names nothing readable; its name is the snapshot's.
    live.sim
        .create_image(&image_with_mapping("unreadable", "[{\"snapshot_id\": "));
    // Renamed since, and its mapping cut short, but it still names the snapshot.
    live.sim.create_image(&image_with_mapping(
        "new-name",
        &format!(
            "[{{\"snapshot_id\": \"{}\", \"boot_index\": 0",
            made["renamed"]
        ),
    ));
    tokio::time::sleep(Duration::from_millis(400)).await;
    live.age();

    // Act
    let orphans = live.orphan_images("?include_foreign=true").await;

    // Assert
    assert_eq!(orphans, ["gone"]);
}

#[sqlx::test]
async fn images_and_snapshots_past_the_first_page_are_read(pool: PgPool) {
    // Arrange: the oldest image and the oldest snapshot come last in newest-first
    // listings, behind a full page of others (200 images, 500 snapshots a page).
    let live = live(pool).await;
    let volume = live.sim.create_volume("data", 1, &[]);
    let cinder = live.cloud.cinder();
    let kept = cinder
        .create_snapshot(&volume, "snapshot for oldest", "", &BTreeMap::new(), false)
        .await
        .unwrap();
    cinder
        .create_snapshot(&volume, "snapshot for gone", "", &BTreeMap::new(), false)
        .await
        .unwrap();
    live.sim.create_image(&image_with_mapping(
        "oldest",
        &format!("[{{\"snapshot_id\": \"{}\", \"boot_index\": 0}}]", kept.id),
    ));
    for i in 0..200 {
        live.sim.create_image(&ImageSeed {
            name: format!("filler-{i}"),
            ..ImageSeed::default()
        });
    }
    for i in 0..500 {
        cinder
            .create_snapshot(&volume, &format!("filler-{i}"), "", &BTreeMap::new(), false)
            .await
            .unwrap();
    }
    tokio::time::sleep(Duration::from_millis(400)).await;
    live.age();
    live.sim.clear_requests();

    // Act
    let orphans = live.orphan_images("?include_foreign=true").await;

    // Assert
    assert_eq!(orphans, ["gone"]);
    assert!(
        live.sim.count("glance.list_images") >= 2,
        "Glance was paged"
    );
    assert!(
        live.sim.count("cinder.list_snapshots_detail") >= 2,
        "Cinder was paged"
    );
}

#[sqlx::test]
async fn cleanup_checks_each_snapshot_again_and_keeps_one_an_image_now_refers_to(pool: PgPool) {
    // Arrange: an orphan is found; then an image that refers to it appears
    // (a restore, or an image the listing missed) before the cleanup runs.
    let live = live(pool).await;
    let server = live.sim.create_volume_backed_server("late", 1, false);
    let image = live.nova_snapshot(&server, "late").await;
    live.cloud.glance().delete_image(&image).await.unwrap();
    live.age();
    let snapshot = live.cinder_snapshots_named("snapshot for late").await;
    let search = orphans::Search {
        now: live.clock.now(),
        grace: TimeDelta::hours(1),
        include_foreign: true,
    };
    let found = orphans::find_orphans(&live.cloud, &live.pool, &search)
        .await
        .unwrap();
    assert_eq!(found.len(), 1, "{found:?}");
    live.sim.create_image(&image_with_mapping(
        "late",
        &format!(
            "[{{\"snapshot_id\": \"{}\", \"boot_index\": 0}}]",
            snapshot[0]
        ),
    ));

    // Act
    let cleanup = orphans::delete_orphans(&live.cloud, &live.pool, &search, &found).await;

    // Assert
    assert!(cleanup.deleted.is_empty(), "{:?}", cleanup.deleted);
    assert_eq!(cleanup.kept.len(), 1);
    assert_eq!(cleanup.kept[0].1, "an image refers to it");
    assert_eq!(live.sim.count("cinder.delete_snapshot"), 0);
    live.cloud
        .cinder()
        .get_snapshot(&snapshot[0])
        .await
        .expect("still there");
}
