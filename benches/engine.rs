//! Engine throughput against the simulator with zero latency.
//!
//! 10,000 policies over 50,000 servers, all due at the same minute. Reports runs
//! fired per second, jobs driven to `succeeded` per second, scheduler lag
//! (fire instant minus scheduled instant), OpenStack calls per job and peak RSS.
//!
//! Run: `cargo bench --bench engine` (PostgreSQL on 127.0.0.1:5432 as for the
//! tests; it uses a database `stacksnap_bench`, made afresh). Sizes can be
//! scaled down with `BENCH_POLICIES` and `BENCH_SERVERS_PER_POLICY`.
//!
//! `cargo bench --bench engine -- metrics` measures `GET /metrics` instead ([`metrics`]).

// In its own directory: a file beside this one would be a bench target of its own.
#[path = "engine/metrics.rs"]
mod metrics;

use std::{
    sync::Arc,
    time::{Duration, Instant},
};

use chrono::{DateTime, DurationRound as _, TimeDelta, Utc};
use sqlx::{Connection as _, Executor as _, PgConnection, postgres::PgPoolOptions};
use stacksnap::{
    clock::Clock,
    domain::policy::PolicySpec,
    engine::{Engine, EngineConfig},
    openstack::{CloudConfig, OpenStack, SessionOptions},
    startup::supervisor::Supervisor,
    store::{self, policies},
};
use stacksnap_sim::{Durations, SimConfig, Simulator};
use tokio_util::sync::CancellationToken;
use uuid::Uuid;

/// The system clock moved by a fixed offset, so the due minute starts now.
#[derive(Debug)]
struct OffsetClock(TimeDelta);

impl Clock for OffsetClock {
    fn now(&self) -> DateTime<Utc> {
        Utc::now() + self.0
    }
}

fn env_usize(name: &str, default: usize) -> usize {
    std::env::var(name)
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(default)
}

fn zero_durations() -> Durations {
    let zero = Duration::ZERO;
    Durations {
        server_build: zero,
        server_delete: zero,
        volume_create: zero,
        volume_download: zero,
        volume_delete: zero,
        snapshot_create: zero,
        snapshot_delete: zero,
        group_snapshot_create: zero,
        image_snapshot_pending: zero,
        image_snapshot: zero,
        image_pending_upload: zero,
        image_uploading: zero,
        volume_backed_create_image_call: zero,
    }
}

fn percentile(sorted: &[f64], p: f64) -> f64 {
    sorted[((sorted.len() as f64 - 1.0) * p).round() as usize]
}

fn peak_rss_mib() -> f64 {
    let status = std::fs::read_to_string("/proc/self/status").unwrap_or_default();
    status
        .lines()
        .find_map(|l| l.strip_prefix("VmHWM:"))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse::<f64>().ok())
        .map_or(0.0, |kb| kb / 1024.0)
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    if std::env::args().any(|a| a == "metrics") {
        return metrics::run().await;
    }
    let policies_n = env_usize("BENCH_POLICIES", 10_000);
    let per_policy = env_usize("BENCH_SERVERS_PER_POLICY", 5);
    let pool = fresh_database().await?;
    engine_throughput(pool, policies_n, per_policy).await
}

/// A fresh, migrated database `stacksnap_bench`.
async fn fresh_database() -> anyhow::Result<sqlx::PgPool> {
    let admin = std::env::var("DATABASE_URL")
        .unwrap_or_else(|_| "postgres://postgres@127.0.0.1:5432/postgres".into());
    let mut conn = PgConnection::connect(&admin).await?;
    conn.execute("drop database if exists stacksnap_bench with (force)")
        .await?;
    conn.execute("create database stacksnap_bench").await?;
    let url = format!("{}/stacksnap_bench", admin.rsplit_once('/').unwrap().0);
    let pool = PgPoolOptions::new()
        .max_connections(40)
        .connect(&url)
        .await?;
    store::MIGRATOR.run(&pool).await?;
    Ok(pool)
}

async fn engine_throughput(
    pool: sqlx::PgPool,
    policies_n: usize,
    per_policy: usize,
) -> anyhow::Result<()> {
    // Arrange: the cloud and the policies, all due at the next minute.
    let sim = Simulator::start(
        SimConfig {
            durations: zero_durations(),
            snapshot_quota: i64::MAX,
            ..SimConfig::default()
        },
        "127.0.0.1:0".parse()?,
    )?;
    let started = Instant::now();
    let servers: Vec<String> = (0..policies_n * per_policy)
        .map(|i| sim.create_image_backed_server(&format!("s{i}"), &[], &[], false))
        .collect();
    let due: DateTime<Utc> =
        Utc::now().duration_trunc(TimeDelta::minutes(1))? + TimeDelta::minutes(1);
    let before_due = due - TimeDelta::seconds(1);
    // Fires once at `due` (a daily time), so the measurement is of one burst.
    let cron = format!("{} {} * * *", due.format("%M"), due.format("%H"));
    for (i, ids) in servers.chunks(per_policy).enumerate() {
        let spec: PolicySpec = serde_json::from_value(serde_json::json!({
            "name": format!("p{i}"), "resource_type": "server", "targets": {"ids": ids},
            "schedules": [{"cron": cron}], "retention": {"keep_last": 3}, "options": {"consistency": "crash"}
        }))?;
        let valid = spec
            .validate(before_due)
            .map_err(|e| anyhow::anyhow!("{e:?}"))?;
        policies::insert_policy(&pool, "default", Uuid::now_v7(), &valid, Some(due), None).await?;
    }
    eprintln!(
        "arranged {} servers and {policies_n} policies in {:.1}s",
        servers.len(),
        started.elapsed().as_secs_f64()
    );

    // Act: one replica with 32 workers, started one second before the due minute.
    let clock = Arc::new(OffsetClock(before_due - Utc::now()));
    let cloud = OpenStack::new(
        CloudConfig::from_clouds_yaml(&sim.clouds_yaml(), "stacksnap-sim", "bench")?,
        SessionOptions::default(),
    )?;
    let config = EngineConfig {
        workers: 32,
        max_in_flight: 2_000,
        poll_interval: TimeDelta::milliseconds(200),
        tick: Duration::from_millis(100),
        ..EngineConfig::default()
    };
    let engine = Engine::new(pool.clone(), cloud.clone(), clock.clone(), config);
    let stop = CancellationToken::new();
    let t0 = Instant::now();
    let running = tokio::spawn(Supervisor::start_engine(engine, stop.clone()).stopped());
    let total_jobs = (policies_n * per_policy) as i64;
    let mut runs_done_at = None;
    let jobs_done_at = loop {
        tokio::time::sleep(Duration::from_millis(250)).await;
        let (runs, succeeded, ended): (i64, i64, i64) = sqlx::query_as(
            "select (select count(*) from run where trigger = 'schedule'), \
                    (select count(*) from job where status = 'succeeded'), \
                    (select count(*) from job where status in ('succeeded', 'failed', 'timed_out', 'cancelled'))",
        )
        .fetch_one(&pool)
        .await?;
        if runs_done_at.is_none() && runs >= policies_n as i64 {
            runs_done_at = Some(t0.elapsed());
        }
        if ended >= total_jobs {
            anyhow::ensure!(
                succeeded == total_jobs,
                "only {succeeded} of {total_jobs} jobs succeeded"
            );
            break t0.elapsed();
        }
        anyhow::ensure!(
            t0.elapsed() < Duration::from_secs(1800),
            "not done in 30 minutes: {succeeded} of {total_jobs}"
        );
    };
    stop.cancel();
    running.await?;

    // Report. Runs record their fire instant on the engine's clock.
    let lags: Vec<f64> = sqlx::query_scalar(
        "select extract(epoch from (created_at - scheduled_for))::float8 from run where trigger = 'schedule' order by 1",
    )
    .fetch_all(&pool)
    .await?;
    let mean_calls: f64 = sqlx::query_scalar("select avg(openstack_calls)::float8 from job")
        .fetch_one(&pool)
        .await?;
    // The engine started one second before the due minute.
    let (runs_s, jobs_s) = (
        runs_done_at.unwrap_or(jobs_done_at).as_secs_f64() - 1.0,
        jobs_done_at.as_secs_f64() - 1.0,
    );
    println!(
        "policies {policies_n}, servers {}, jobs {total_jobs}",
        servers.len()
    );
    println!(
        "runs fired per second      {:.0} ({} runs in {:.1}s)",
        policies_n as f64 / runs_s,
        policies_n,
        runs_s
    );
    println!(
        "jobs succeeded per second  {:.0} ({} jobs in {:.1}s)",
        total_jobs as f64 / jobs_s,
        total_jobs,
        jobs_s
    );
    println!(
        "scheduler lag (s)          median {:.3}  p99 {:.3}  max {:.3}",
        percentile(&lags, 0.5),
        percentile(&lags, 0.99),
        lags.last().copied().unwrap_or_default()
    );
    println!(
        "OpenStack calls per job    {mean_calls:.2} (mean; session total incl. discovery {})",
        cloud.session().call_count()
    );
    println!("simulator requests         {}", sim.requests().len());
    println!(
        "peak RSS (MiB)             {:.0} (service and simulator in one process)",
        peak_rss_mib()
    );
    Ok(())
}
