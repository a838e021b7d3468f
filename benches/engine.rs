//! Engine throughput against the simulator with zero latency.
//!
//! 10,000 policies over 50,000 servers, all due at the same minute. Reports runs
//! fired per second, jobs driven to `succeeded` per second, scheduler lag
//! (fire instant minus scheduled instant), OpenStack calls per job and peak RSS.
//!
//! Run: `cargo bench --bench engine` (PostgreSQL on 127.0.0.1:5432 as for the
//! tests; it uses a database `stacksnap_bench`, made afresh, or the one
//! `BENCH_DB` names). Sizes can be scaled down with `BENCH_POLICIES` and
//! `BENCH_SERVERS_PER_POLICY`.
//!
//! By default the simulator runs in the bench's own process with every
//! transition at zero latency. With `BENCH_SIM=process` it runs as
//! `stacksnap sim --fast` (millisecond transitions) in a process of its own,
//! seeded from an inventory file, and the service talks to it over HTTP: the
//! service's CPU time and peak RSS are then measured apart from the
//! simulator's, and both are reported.
//!
//! `BENCH_TRANSITIONS=demo` gives the simulator the seconds-long transitions
//! of `stacksnap demo` and `stacksnap sim` without `--fast` (an image takes
//! 5 s to become `active`, a Cinder snapshot 4 s), and the engine its default
//! poll interval and `track_ahead` instead of the bench's 200 ms and 100 ms:
//! the setting issue 13's calls-per-job targets are defined in.
//! `BENCH_BACKING=volume` makes every server volume-backed with 2 volumes
//! (a root volume made from the image and an empty one) instead of
//! image-backed. `BENCH_TRACK_GATHER_MS` sets how long a replica waits after a
//! tracking batch claim that was not full before its next (the engine's default, 250 ms, otherwise).
//!
//! Besides the jobs' own counts it reports, from the simulator's request log,
//! the requests per job by operation and the mean tracking batch: the image
//! ids per Glance `id=in:` listing (one listing per batch and authority, for
//! image- and volume-backed servers alike).
//!
//! `cargo bench --bench engine -- metrics` measures `GET /metrics` instead ([`metrics`]);
//! `-- memory` the service's memory with 100,000 jobs in flight ([`memory`]);
//! `-- keystone` the burst with every policy acting through its own trust ([`keystone`]).

// In its own directory: a file beside this one would be a bench target of its own.
#[path = "engine/keystone.rs"]
mod keystone;
#[path = "engine/memory.rs"]
mod memory;
#[path = "engine/metrics.rs"]
mod metrics;

use std::{
    io::BufRead as _,
    process::{Child, Command, Stdio},
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
use stacksnap_sim::{Durations, LoggedRequest, SimConfig, SimHandle, Simulator};
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

/// The peak RSS of a process (`self` or a pid), from `/proc/…/status`.
fn peak_rss_mib(pid: &str) -> f64 {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap_or_default();
    status
        .lines()
        .find_map(|l| l.strip_prefix("VmHWM:"))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse::<f64>().ok())
        .map_or(0.0, |kb| kb / 1024.0)
}

/// The CPU time (user + system) a process (`self` or a pid) has used, from
/// `/proc/…/stat` (Linux's clock ticks are 1/100 s).
fn cpu_seconds(pid: &str) -> f64 {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).unwrap_or_default();
    // The fields after the command name, which is in parentheses.
    let fields: Vec<&str> = stat
        .rsplit_once(')')
        .map(|(_, rest)| rest.split_whitespace().collect())
        .unwrap_or_default();
    // utime and stime are fields 14 and 15; `fields[0]` is field 3.
    let ticks = |i: usize| fields.get(i).and_then(|v| v.parse::<f64>().ok());
    ticks(11)
        .zip(ticks(12))
        .map_or(0.0, |(u, s)| (u + s) / 100.0)
}

/// The simulator the bench drives: in this process, or `stacksnap sim` in its own.
enum Cloud {
    InProcess(SimHandle),
    Process {
        child: Child,
        base_url: String,
        clouds_yaml: String,
        _dir: TempDir,
    },
}

/// A directory removed when dropped.
struct TempDir(std::path::PathBuf);

impl Drop for TempDir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

/// What the simulated cloud is like.
#[derive(Clone, Copy)]
struct CloudShape {
    /// In `stacksnap sim`'s own process rather than the bench's.
    own_process: bool,
    /// Seconds-long transitions (`stacksnap demo`) rather than zero
    /// (in-process) or milliseconds (`stacksnap sim --fast`).
    demo_transitions: bool,
    /// Volumes per server; 0 for image-backed servers.
    volumes_per_server: usize,
}

impl Cloud {
    /// The simulator with `servers` servers shaped by `shape`; returns their ids.
    fn start(servers: usize, shape: CloudShape) -> anyhow::Result<(Self, Vec<String>)> {
        if !shape.own_process {
            let sim = Simulator::start(
                SimConfig {
                    durations: if shape.demo_transitions {
                        Durations::demo()
                    } else {
                        zero_durations()
                    },
                    snapshot_quota: -1,
                    instances_quota: -1,
                    ..SimConfig::default()
                },
                "127.0.0.1:0".parse()?,
            )?;
            let ids = (0..servers)
                .map(|i| match shape.volumes_per_server {
                    0 => sim.create_image_backed_server(&format!("s{i}"), &[], &[], false),
                    n => sim.create_volume_backed_server(&format!("s{i}"), n, false),
                })
                .collect();
            return Ok((Self::InProcess(sim), ids));
        }
        let dir = TempDir(std::env::temp_dir().join(format!("stacksnap-bench-{}", Uuid::now_v7())));
        std::fs::create_dir_all(&dir.0)?;
        let ids: Vec<String> = (0..servers).map(|_| Uuid::new_v4().to_string()).collect();
        let inventory = serde_json::json!({
            "images": [{"name": "tiny", "size": 196_616}],
            "servers": ids.iter().enumerate()
                .map(|(i, id)| match shape.volumes_per_server {
                    0 => serde_json::json!({"id": id, "name": format!("s{i}"), "image": "tiny"}),
                    n => serde_json::json!({"id": id, "name": format!("s{i}"), "volumes": (0..n)
                        .map(|v| serde_json::json!({
                            "name": format!("s{i}-vol{v}"), "size": 1,
                            "image": (v == 0).then_some("tiny"),
                        }))
                        .collect::<Vec<_>>()}),
                })
                .collect::<Vec<_>>(),
        });
        let (inventory_path, yaml_path) = (dir.0.join("inventory.json"), dir.0.join("clouds.yaml"));
        std::fs::write(&inventory_path, serde_json::to_vec(&inventory)?)?;
        let mut command = Command::new(env!("CARGO_BIN_EXE_stacksnap"));
        command.arg("sim");
        if !shape.demo_transitions {
            command.arg("--fast");
        }
        let mut child = command
            .args([
                "--listen",
                "127.0.0.1:0",
                "--instances-quota",
                "-1",
                "--snapshot-quota",
                "-1",
            ])
            .arg("--inventory")
            .arg(&inventory_path)
            .arg("--clouds-yaml")
            .arg(&yaml_path)
            .env("RUST_LOG", "warn")
            .stdout(Stdio::piped())
            .stderr(Stdio::inherit())
            .spawn()?;
        // It prints its URL once it listens and has written the clouds.yaml.
        // Its stdout is read to the end (a closed pipe would fail its next print).
        let stdout = child.stdout.take().expect("piped");
        let (url_tx, url_rx) = std::sync::mpsc::channel();
        std::thread::spawn(move || {
            for line in std::io::BufReader::new(stdout).lines() {
                let Ok(line) = line else { break };
                if let Some(url) = line.strip_prefix("OpenStack simulator on ") {
                    let _ = url_tx.send(url.trim().to_owned());
                }
            }
        });
        let Ok(base_url) = url_rx.recv_timeout(Duration::from_secs(300)) else {
            let _ = child.kill();
            anyhow::bail!("stacksnap sim stopped before it listened");
        };
        let clouds_yaml = std::fs::read_to_string(&yaml_path)?;
        Ok((
            Self::Process {
                child,
                base_url,
                clouds_yaml,
                _dir: dir,
            },
            ids,
        ))
    }

    fn clouds_yaml(&self) -> String {
        match self {
            Self::InProcess(sim) => sim.clouds_yaml(),
            Self::Process { clouds_yaml, .. } => clouds_yaml.clone(),
        }
    }

    /// The simulator's process id, when it has its own.
    fn pid(&self) -> Option<String> {
        match self {
            Self::InProcess(_) => None,
            Self::Process { child, .. } => Some(child.id().to_string()),
        }
    }

    /// Fails once the simulator's own process has ended.
    fn check_alive(&mut self) -> anyhow::Result<()> {
        if let Self::Process { child, .. } = self
            && let Some(status) = child.try_wait()?
        {
            anyhow::bail!("stacksnap sim ended: {status}");
        }
        Ok(())
    }

    /// Every request the simulator has answered, in order.
    async fn requests(&self) -> anyhow::Result<Vec<LoggedRequest>> {
        match self {
            Self::InProcess(sim) => Ok(sim.requests()),
            Self::Process { base_url, .. } => Ok(reqwest::get(format!("{base_url}/_sim/requests"))
                .await?
                .json()
                .await?),
        }
    }

    async fn stop(self) {
        match self {
            Self::InProcess(sim) => sim.shutdown().await,
            Self::Process { mut child, .. } => {
                let _ = child.kill();
                let _ = child.wait();
            }
        }
    }
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    if std::env::args().any(|a| a == "metrics") {
        return metrics::run().await;
    }
    if std::env::args().any(|a| a == "memory") {
        return memory::run().await;
    }
    if std::env::args().any(|a| a == "keystone") {
        return keystone::run().await;
    }
    let policies_n = env_usize("BENCH_POLICIES", 10_000);
    let per_policy = env_usize("BENCH_SERVERS_PER_POLICY", 5);
    let pool = fresh_database().await?;
    engine_throughput(pool, policies_n, per_policy).await
}

/// A fresh, migrated database `stacksnap_bench` (or `BENCH_DB`: two benches
/// on one server must not drop each other's).
async fn fresh_database() -> anyhow::Result<sqlx::PgPool> {
    let admin = std::env::var("DATABASE_URL")
        .unwrap_or_else(|_| "postgres://postgres@127.0.0.1:5432/postgres".into());
    let name = std::env::var("BENCH_DB").unwrap_or_else(|_| "stacksnap_bench".into());
    anyhow::ensure!(
        !name.is_empty() && name.chars().all(|c| c.is_ascii_alphanumeric() || c == '_'),
        "BENCH_DB must be a plain database name"
    );
    let mut conn = PgConnection::connect(&admin).await?;
    // The name is checked above to be a plain identifier.
    conn.execute(sqlx::AssertSqlSafe(format!(
        "drop database if exists {name} with (force)"
    )))
    .await?;
    conn.execute(sqlx::AssertSqlSafe(format!("create database {name}")))
        .await?;
    let url = format!("{}/{name}", admin.rsplit_once('/').unwrap().0);
    let pool = PgPoolOptions::new()
        .max_connections(40)
        .connect(&url)
        .await?;
    store::MIGRATOR.run(&pool).await?;
    Ok(pool)
}

/// How many image ids a Glance listing by `id=in:` asked for (`None` for
/// any other request).
fn ids_in_listing(request: &LoggedRequest) -> Option<usize> {
    if request.operation != "glance.list_images" {
        return None;
    }
    let ids = request
        .query
        .split('&')
        .find_map(|pair| pair.strip_prefix("id="))?;
    let ids = ids.replace("%3A", ":").replace("%3a", ":");
    let ids = ids.strip_prefix("in:")?;
    Some(
        ids.replace("%2C", ",")
            .replace("%2c", ",")
            .split(',')
            .count(),
    )
}

/// Committed and rolled-back transactions of the current database so far
/// (every statement outside a transaction counts as one).
/// Waits until `total_jobs` jobs have ended, counting every 250 ms on `conn`
/// (a connection of its own: under load the engine's workers can hold every
/// connection of its pool longer than a checkout may wait), and returns when
/// since `t0`. Fails unless every one succeeded, or after 30 minutes. `each`
/// sees the scheduled runs fired so far, at every count.
async fn wait_for_jobs(
    conn: &mut PgConnection,
    t0: Instant,
    total_jobs: i64,
    mut each: impl FnMut(i64) -> anyhow::Result<()>,
) -> anyhow::Result<Duration> {
    loop {
        tokio::time::sleep(Duration::from_millis(250)).await;
        let (runs, succeeded, ended): (i64, i64, i64) = sqlx::query_as(
            "select (select count(*) from run where trigger = 'schedule'), \
                    (select count(*) from job where status = 'succeeded'), \
                    (select count(*) from job where status in ('succeeded', 'failed', 'timed_out', 'cancelled'))",
        )
        .fetch_one(&mut *conn)
        .await?;
        each(runs)?;
        if ended >= total_jobs {
            anyhow::ensure!(
                succeeded == total_jobs,
                "only {succeeded} of {total_jobs} jobs succeeded"
            );
            return Ok(t0.elapsed());
        }
        anyhow::ensure!(
            t0.elapsed() < Duration::from_secs(1800),
            "not done in 30 minutes: {succeeded} of {total_jobs}"
        );
    }
}

async fn transactions(pool: &sqlx::PgPool) -> anyhow::Result<(i64, i64)> {
    Ok(sqlx::query_as(
        "select xact_commit, xact_rollback from pg_stat_database where datname = current_database()",
    )
    .fetch_one(pool)
    .await?)
}

async fn engine_throughput(
    pool: sqlx::PgPool,
    policies_n: usize,
    per_policy: usize,
) -> anyhow::Result<()> {
    // Arrange: the cloud and the policies, all due at the next minute.
    let shape = CloudShape {
        own_process: std::env::var("BENCH_SIM").is_ok_and(|v| v == "process"),
        demo_transitions: std::env::var("BENCH_TRANSITIONS").is_ok_and(|v| v == "demo"),
        volumes_per_server: if std::env::var("BENCH_BACKING").is_ok_and(|v| v == "volume") {
            2
        } else {
            0
        },
    };
    let started = Instant::now();
    let (mut sim, servers) = Cloud::start(policies_n * per_policy, shape)?;
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
    let defaults = EngineConfig::default();
    // With demo transitions the engine's own poll interval; else 200 ms, as
    // the fast simulator's transitions are milliseconds long.
    let poll_interval = if shape.demo_transitions {
        defaults.poll_interval
    } else {
        TimeDelta::milliseconds(200)
    };
    // Half the poll interval, as by default; `BENCH_TRACK_AHEAD_MS=0` turns
    // coalescing off to compare.
    let track_ahead_ms: i64 = std::env::var("BENCH_TRACK_AHEAD_MS")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(poll_interval.num_milliseconds() / 2);
    let config = EngineConfig {
        workers: 32,
        max_in_flight: 2_000,
        poll_interval,
        track_ahead: TimeDelta::milliseconds(track_ahead_ms),
        track_gather: std::env::var("BENCH_TRACK_GATHER_MS")
            .ok()
            .and_then(|v| v.parse().ok())
            .map_or(defaults.track_gather, TimeDelta::milliseconds),
        tick: Duration::from_millis(100),
        ..defaults
    };
    let track_gather_ms = config.track_gather.num_milliseconds();
    let engine = Engine::new(pool.clone(), cloud.clone(), clock.clone(), config);
    let stop = CancellationToken::new();
    let sim_pid = sim.pid();
    let (cpu0, sim_cpu0) = (
        cpu_seconds("self"),
        sim_pid.as_deref().map_or(0.0, cpu_seconds),
    );
    let xacts0 = transactions(&pool).await?;
    let t0 = Instant::now();
    let running = tokio::spawn(Supervisor::start_engine(engine, stop.clone()).stopped());
    let total_jobs = (policies_n * per_policy) as i64;
    let mut runs_done_at = None;
    let mut progress = PgConnection::connect_with(&pool.connect_options()).await?;
    let jobs_done_at = wait_for_jobs(&mut progress, t0, total_jobs, |runs| {
        sim.check_alive()?;
        if runs_done_at.is_none() && runs >= policies_n as i64 {
            runs_done_at = Some(t0.elapsed());
        }
        Ok(())
    })
    .await?;
    let (cpu, sim_cpu) = (
        cpu_seconds("self") - cpu0,
        sim_pid.as_deref().map_or(0.0, cpu_seconds) - sim_cpu0,
    );
    // Before the request log is fetched: reading it costs both sides memory.
    let (rss, sim_rss) = (
        peak_rss_mib("self"),
        sim_pid.as_deref().map_or(0.0, peak_rss_mib),
    );
    stop.cancel();
    running.await?;
    // PostgreSQL publishes a backend's counts when it goes idle, at most once a second.
    tokio::time::sleep(Duration::from_millis(1500)).await;
    let xacts = transactions(&pool).await?;
    let (commits, rollbacks) = (xacts.0 - xacts0.0, xacts.1 - xacts0.1);

    // Report. Runs record their fire instant (`fired_at`, the run's
    // `created_at`) on the engine's clock.
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
        "policies {policies_n}, servers {} ({}), jobs {total_jobs}, transitions {}",
        servers.len(),
        match shape.volumes_per_server {
            0 => "image-backed".to_owned(),
            n => format!("volume-backed, {n} volumes each"),
        },
        if shape.demo_transitions {
            "seconds-long (demo)"
        } else if shape.own_process {
            "milliseconds (sim --fast)"
        } else {
            "zero"
        },
    );
    println!(
        "engine                     poll interval {} ms, tracking batches take jobs due within {track_ahead_ms} ms, \
         a replica waits {track_gather_ms} ms after a batch claim that was not full",
        poll_interval.num_milliseconds()
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
        "OpenStack calls per job    {mean_calls:.2} (mean of the jobs' own counts, each batched call counted by every job in it; session total incl. discovery {})",
        cloud.session().call_count()
    );
    let log = sim.requests().await?;
    println!(
        "simulator requests         {}: {:.2} per job (issue 13's calls per job: a batched call counts once)",
        log.len(),
        log.len() as f64 / total_jobs as f64
    );
    let mut by_operation: std::collections::BTreeMap<&str, usize> = Default::default();
    for request in &log {
        *by_operation.entry(request.operation.as_str()).or_default() += 1;
    }
    let mut by_operation: Vec<_> = by_operation.into_iter().collect();
    by_operation.sort_by_key(|(_, count)| std::cmp::Reverse(*count));
    for (operation, count) in by_operation {
        println!(
            "  {operation:<32} {:.2} per job ({count})",
            count as f64 / total_jobs as f64
        );
    }
    let listed: Vec<usize> = log.iter().filter_map(ids_in_listing).collect();
    println!(
        "mean tracking batch        {:.1} image ids per Glance id=in listing ({} listings)",
        listed.iter().sum::<usize>() as f64 / listed.len().max(1) as f64,
        listed.len()
    );
    println!(
        "transactions per job       {:.2} committed, {:.2} rolled back ({commits} / {rollbacks} in the bench database, \
         the bench's own progress queries included: about 4 a second)",
        commits as f64 / total_jobs as f64,
        rollbacks as f64 / total_jobs as f64,
    );
    match sim_pid.as_deref() {
        None => {
            println!("peak RSS (MiB)             {rss:.0} (service and simulator in one process)");
            println!("CPU time (s)               {cpu:.1} (service and simulator in one process)");
        }
        Some(_) => {
            println!(
                "peak RSS (MiB)             service {rss:.0}, simulator {sim_rss:.0} (own process)"
            );
            println!(
                "CPU time (s)               service {cpu:.1}, simulator {sim_cpu:.1} (own process), over {:.1}s",
                jobs_done_at.as_secs_f64()
            );
        }
    }
    sim.stop().await;
    Ok(())
}
