//! What `GET /metrics` costs with many policies: 10,000 policies (one series
//! each), 50,000 ended jobs and 10,000 succeeded runs in the history, the API
//! served alone. Reports the scrape latency through HTTP, the database reads
//! alone, the size of the page, and what the triggers that keep the totals add
//! to writing the history.
//!
//! Run: `cargo bench --bench engine -- metrics` (`BENCH_POLICIES` scales it).

use std::{sync::Arc, time::Instant};

use sqlx::PgPool;
use stacksnap::{
    clock::SystemClock,
    config::Settings,
    domain::policy::PolicySpec,
    engine::EngineConfig,
    http::auth::Authenticator,
    startup::{self, Dependencies},
    store::{self, policies},
};
use uuid::Uuid;

use super::{env_usize, fresh_database, percentile};

const SCRAPES: usize = 200;

#[derive(clap::Parser)]
struct Cli {
    #[command(flatten)]
    settings: Settings,
}

/// Writes `jobs` ended jobs (in runs of five) as one statement; the triggers
/// run unless `session_replication_role` is `replica`.
const HISTORY: &str = "
    with runs as (
        insert into run (run_id, project_id, policy_id, trigger, scheduled_for, status, spec,
                         resolved_at, started_at, finished_at)
        select gen_random_uuid(), 'default', p.policy_id, 'schedule', now() - interval '1 hour',
               'succeeded', '{}', now(), now() - interval '1 hour', now() - random() * interval '1 hour'
        from policy p
        returning run_id
    )
    insert into job (job_id, run_id, project_id, resource_type, resource_id, status, options,
                     start_by, started_at, finished_at)
    select gen_random_uuid(), r.run_id, 'default', 'server', gen_random_uuid()::text, 'succeeded', '{}',
           now(), now() - (1 + random() * 600) * interval '1 second', now()
    from runs r cross join generate_series(1, 5)";

pub async fn run() -> anyhow::Result<()> {
    let policies_n = env_usize("BENCH_POLICIES", 10_000);
    let pool = fresh_database().await?;
    seed_policies(&pool, policies_n).await?;

    // The history twice: without the triggers, then (afresh) with them.
    let mut conn = pool.acquire().await?;
    sqlx::query("set session_replication_role = replica")
        .execute(&mut *conn)
        .await?;
    let t = Instant::now();
    sqlx::query(HISTORY).execute(&mut *conn).await?;
    let without = t.elapsed().as_secs_f64();
    sqlx::query("set session_replication_role = origin")
        .execute(&mut *conn)
        .await?;
    sqlx::query("truncate run cascade")
        .execute(&mut *conn)
        .await?;
    let t = Instant::now();
    sqlx::query(HISTORY).execute(&mut *conn).await?;
    let with = t.elapsed().as_secs_f64();
    drop(conn);
    let jobs: i64 = sqlx::query_scalar("select count(*) from job")
        .fetch_one(&pool)
        .await?;

    // Serve the API alone and scrape it.
    let cli = <Cli as clap::Parser>::parse_from([
        "bench",
        "--listen",
        "127.0.0.1:0",
        "--auth",
        "none",
        "--no-engine",
    ]);
    let deps = Dependencies {
        db: pool.clone(),
        clock: Arc::new(SystemClock),
        cloud: None,
        auth: Authenticator::Disabled,
    };
    let service = startup::start(&cli.settings, deps, EngineConfig::default()).await?;
    let url = format!("http://{}/metrics", service.local_addr());
    let client = reqwest::Client::new();
    let mut body = String::new();
    let mut http = Vec::with_capacity(SCRAPES);
    for _ in 0..SCRAPES {
        let t = Instant::now();
        body = client
            .get(&url)
            .send()
            .await?
            .error_for_status()?
            .text()
            .await?;
        http.push(t.elapsed().as_secs_f64() * 1000.0);
    }
    let mut reads = Vec::with_capacity(SCRAPES);
    for _ in 0..SCRAPES {
        let t = Instant::now();
        store::metrics::fetch_database_metrics(&pool).await?;
        reads.push(t.elapsed().as_secs_f64() * 1000.0);
    }
    http.sort_by(f64::total_cmp);
    reads.sort_by(f64::total_cmp);
    let series = body.lines().filter(|l| !l.starts_with('#')).count();
    let policy_series = body
        .lines()
        .filter(|l| l.starts_with("stacksnap_policy_last_success_timestamp_seconds{"))
        .count();

    println!("policies {policies_n}, ended jobs {jobs}, scrapes {SCRAPES}");
    println!(
        "GET /metrics (ms)            median {:.1}  p99 {:.1}  max {:.1}",
        percentile(&http, 0.5),
        percentile(&http, 0.99),
        http.last().copied().unwrap_or_default()
    );
    println!(
        "database reads alone (ms)    median {:.1}  p99 {:.1}",
        percentile(&reads, 0.5),
        percentile(&reads, 0.99)
    );
    println!(
        "page                         {} bytes, {series} samples ({policy_series} per-policy)",
        body.len()
    );
    println!(
        "writing the history          {with:.2}s with the metric triggers, {without:.2}s without \
         ({:.0} µs per ended job and its run's share)",
        (with - without) / jobs as f64 * 1e6
    );
    service.shutdown_token().cancel();
    service.stopped().await?;
    Ok(())
}

async fn seed_policies(pool: &PgPool, n: usize) -> anyhow::Result<()> {
    let now = chrono::Utc::now();
    for i in 0..n {
        let spec: PolicySpec = serde_json::from_value(serde_json::json!({
            "name": format!("p{i}"), "resource_type": "server",
            "targets": {"ids": [Uuid::new_v4()]},
            "schedules": [{"cron": "0 3 * * *"}], "retention": {"keep_last": 3}
        }))?;
        let valid = spec.validate(now).map_err(|e| anyhow::anyhow!("{e:?}"))?;
        policies::insert_policy(pool, "default", Uuid::now_v7(), &valid, None, None).await?;
    }
    Ok(())
}
