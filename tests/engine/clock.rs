//! Replicas read time from the database, not from their own clocks: a replica
//! whose clock runs ahead must not take over a live lease.

use std::sync::Arc;

use chrono::{DateTime, TimeDelta, Utc};
use serde_json::json;
use sqlx::PgPool;
use stacksnap::{
    clock::{Clock, SystemClock, replica_clock},
    store::jobs,
};
use uuid::Uuid;

use crate::helpers::harness;

/// A machine clock set `0` ahead of the true time.
#[derive(Debug)]
struct Ahead(TimeDelta);

impl Clock for Ahead {
    fn now(&self) -> DateTime<Utc> {
        Utc::now() + self.0
    }
}

#[sqlx::test(migrator = "stacksnap::store::MIGRATOR")]
async fn a_replica_whose_clock_runs_ahead_does_not_take_over_a_live_lease(pool: PgPool) {
    let h = harness(pool.clone()).await;
    h.adhoc("volume", &Uuid::new_v4().to_string(), json!({}))
        .await;
    let right = replica_clock(&pool, Arc::new(SystemClock)).await.unwrap();
    let ahead = replica_clock(&pool, Arc::new(Ahead(TimeDelta::seconds(40))))
        .await
        .unwrap();
    let drift = (ahead.now() - right.now()).abs();
    assert!(
        drift < TimeDelta::seconds(2),
        "the replicas disagree by {drift}"
    );

    let lease = TimeDelta::seconds(30);
    let first = jobs::claim_job(&pool, Uuid::new_v4(), right.now(), lease, 10)
        .await
        .unwrap();
    assert!(first.is_some(), "the first replica claims the job");
    let second = jobs::claim_job(&pool, Uuid::new_v4(), ahead.now(), lease, 10)
        .await
        .unwrap();
    assert!(
        second.is_none(),
        "a replica 40 s ahead took over a lease that has 30 s to run"
    );
}

/// Waiting for a pool connection is not round-trip time: counted as such, half
/// of it would become a false offset and the replica's clock would run ahead.
#[sqlx::test(migrator = "stacksnap::store::MIGRATOR")]
async fn the_database_clock_is_not_skewed_by_waiting_for_a_connection(pool: PgPool) {
    let options = (*pool.connect_options()).clone();
    let small = sqlx::postgres::PgPoolOptions::new()
        .max_connections(1)
        .connect_with(options)
        .await
        .unwrap();
    let held = small.acquire().await.unwrap();
    let release = tokio::spawn(async move {
        tokio::time::sleep(std::time::Duration::from_secs(3)).await;
        drop(held);
    });
    let clock = replica_clock(&small, Arc::new(SystemClock)).await.unwrap();
    release.await.unwrap();
    // The database runs on this machine: the true offset is about zero.
    let skew = clock.now() - Utc::now();
    assert!(
        skew.num_milliseconds().abs() < 500,
        "replica clock off by {skew}"
    );
}
