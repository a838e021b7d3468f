//! PostgreSQL going away mid-run: the service reports it on /readyz, reconnects
//! when it is back, resumes the job it leased, and sends nothing twice. The
//! database is a private cluster: the shared one serves every other test.

use std::{sync::Arc, time::Duration};

use serde_json::{Value, json};
use stacksnap::{
    clock::{SystemClock, replica_clock},
    store,
};
use stacksnap_sim::{SimConfig, Simulator};

use crate::helpers::{PrivateCluster, cloud_for, engine_config, start_service};

#[tokio::test]
async fn the_service_survives_a_database_restart_mid_run() {
    let pg = PrivateCluster::start();
    let pool = store::connect(Some(&pg.url()), 10).await.unwrap();
    store::MIGRATOR.run(&pool).await.unwrap();
    let mut config = SimConfig::default();
    // Long enough for the database to go away and come back while the job tracks.
    config.durations.snapshot_create = Duration::from_secs(6);
    let sim = Simulator::start(config, "127.0.0.1:0".parse().unwrap()).unwrap();
    let server = sim.create_volume_backed_server("db-outage", 2, false);
    let clock = replica_clock(&pool, Arc::new(SystemClock)).await.unwrap();
    let service = start_service(pool, clock, Some(cloud_for(&sim)), engine_config()).await;
    let base = format!("http://{}", service.local_addr());
    let http = reqwest::Client::new();

    let job: Value = http
        .post(format!("{base}/v1/snapshots"))
        .json(&json!({"resource_type": "server", "resource_id": server}))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    let job_path = format!("{base}/v1/jobs/{}", job["id"].as_str().unwrap());
    let tracking = until(&http, &job_path, |j| j["status"] == "tracking").await;
    assert_eq!(tracking["status"], "tracking", "{tracking}");

    pg.down();
    let readyz = format!("{base}/readyz");
    let mut reported = None;
    for _ in 0..100 {
        let response = http.get(&readyz).send().await.unwrap();
        if response.status() == 503 {
            reported = Some(response.json::<Value>().await.unwrap());
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let reported = reported.expect("/readyz never reported the database outage");
    assert!(
        reported["detail"].as_str().unwrap().contains("database"),
        "{reported}"
    );
    // Let every loop meet the outage before the database comes back.
    tokio::time::sleep(Duration::from_secs(2)).await;
    pg.up();

    let done = until(&http, &job_path, |j| {
        j["status"] != "tracking" && j["status"] != "creating"
    })
    .await;
    assert_eq!(done["status"], "succeeded", "{done}");
    assert_eq!(sim.count("nova.create_image"), 1, "createImage sent again");
    let ready = http.get(&readyz).send().await.unwrap();
    assert_eq!(ready.status(), 200, "{:?}", ready.text().await);
}

/// Polls `url` for up to 60 s until `done` holds; errors while the database is
/// away (5xx) are waited out.
async fn until(http: &reqwest::Client, url: &str, done: impl Fn(&Value) -> bool) -> Value {
    let mut last = Value::Null;
    for _ in 0..600 {
        if let Ok(response) = http.get(url).send().await
            && response.status().is_success()
        {
            last = response.json().await.unwrap();
            if done(&last) {
                return last;
            }
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    panic!("{url} never got there: {last}");
}
