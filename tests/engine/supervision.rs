//! The engine under its supervisor, started the way `stacksnap serve` starts it:
//! a task that panics is logged, counted and restarted, and `/readyz` answers 503
//! naming it until it is back.

use std::{
    sync::{
        Arc,
        atomic::{AtomicBool, Ordering},
    },
    time::Duration,
};

use chrono::{DateTime, Utc};
use serde_json::Value;
use sqlx::PgPool;
use stacksnap::{
    clock::{Clock, SystemClock},
    engine::{EngineConfig, RestartBackoff, TaskName},
};
use stacksnap_sim::{SimConfig, Simulator};

use crate::helpers::{cloud_for, engine_config, start_service};

/// The system clock, except that it panics while told to: every engine loop that
/// reads it then panics, as a bug would make it.
#[derive(Debug, Default)]
struct PanickingClock {
    panicking: AtomicBool,
}

impl Clock for PanickingClock {
    fn now(&self) -> DateTime<Utc> {
        assert!(
            !self.panicking.load(Ordering::SeqCst),
            "the test clock was told to panic"
        );
        Utc::now()
    }
}

/// Polls `url` until it answers `status` with a detail naming all of `named`,
/// returning the body; fails after 10s.
async fn until_status(url: &str, status: u16, named: &[&str]) -> Value {
    let mut last = (0, Value::Null);
    for _ in 0..500 {
        let response = reqwest::get(url).await.unwrap();
        let code = response.status().as_u16();
        let body: Value = response.json().await.unwrap_or(Value::Null);
        let detail = body["detail"].as_str().unwrap_or_default();
        if code == status && named.iter().all(|name| detail.contains(name)) {
            return body;
        }
        last = (code, body);
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    panic!("{url} never answered {status} naming {named:?}: {last:?}");
}

#[sqlx::test]
async fn an_engine_task_that_panics_is_restarted_and_counted_and_readyz_is_503_meanwhile(
    pool: PgPool,
) {
    // Arrange: the whole service on a clock that can panic, with a short backoff.
    let sim = Simulator::start(SimConfig::default(), "127.0.0.1:0".parse().unwrap()).unwrap();
    let clock = Arc::new(PanickingClock::default());
    let config = EngineConfig {
        restart: RestartBackoff {
            initial: Duration::from_millis(200),
            max: Duration::from_millis(200),
            healthy_after: Duration::from_secs(60),
        },
        ..engine_config()
    };
    let service = start_service(pool, clock.clone(), Some(cloud_for(&sim)), config).await;
    let readyz = format!("http://{}/readyz", service.local_addr());
    let health = service.engine_health().expect("the engine runs").clone();
    assert_eq!(reqwest::get(&readyz).await.unwrap().status(), 200);

    // Act: the scheduler and the workers panic at their next look at the clock.
    clock.panicking.store(true, Ordering::SeqCst);

    // Assert: readiness names the tasks that are down.
    let problem = until_status(&readyz, 503, &["scheduler", "worker-0"]).await;
    assert!(
        problem["detail"]
            .as_str()
            .unwrap()
            .starts_with("engine tasks are down"),
        "{problem}"
    );

    // Act: the cause goes away.
    clock.panicking.store(false, Ordering::SeqCst);

    // Assert: every task is back and each restart was counted.
    until_status(&readyz, 200, &[]).await;
    let restarts = |name| health.task(name).map_or(0, |task| task.restarts());
    assert!(restarts(TaskName::Scheduler) >= 1, "{health:?}");
    assert!(restarts(TaskName::Worker(0)) >= 1, "{health:?}");
    assert_eq!(
        restarts(TaskName::Listen),
        0,
        "the listener reads no clock and never failed"
    );
    assert!(health.down().is_empty(), "{health:?}");
}

#[sqlx::test]
async fn the_engine_stops_within_its_drain_timeout_when_the_service_is_stopped(pool: PgPool) {
    // Arrange
    let sim = Simulator::start(SimConfig::default(), "127.0.0.1:0".parse().unwrap()).unwrap();
    let cloud = Some(cloud_for(&sim));
    let service = start_service(pool, Arc::new(SystemClock), cloud, engine_config()).await;
    tokio::time::sleep(Duration::from_millis(200)).await;

    // Act
    service.shutdown_token().cancel();

    // Assert
    tokio::time::timeout(Duration::from_secs(5), service.stopped())
        .await
        .expect("the service stops within 5s")
        .expect("the server ended cleanly");
}
