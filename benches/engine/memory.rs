//! Memory with many jobs in flight at once (issue 13, item 7): the simulator
//! in its own process (`stacksnap sim --fast`, no instances quota) with the
//! image upload made to last an hour, so that every job started stays in
//! `tracking`. The engine runs in this process with `max_in_flight` as large
//! as the burst and its default poll intervals (2 s backing off to 30 s).
//!
//! Every two seconds it samples the service's resident memory (`VmRSS`, and
//! the peak `VmHWM`, of this process: the simulator is apart), the jobs in
//! each state, and the OpenStack calls the service made so far. Once every job
//! is in flight it holds for `BENCH_HOLD_S` seconds (default 90) and reports
//! the calls per second over that hold: with batched tracking they follow the
//! poll batches (jobs ÷ batch size ÷ poll interval), not the jobs.
//!
//! Run: `cargo bench --bench engine -- memory`. `BENCH_JOBS` (default
//! 100,000) jobs in policies of `BENCH_SERVERS_PER_POLICY` servers (default
//! 50). It gives up the wait for every job to be in flight after
//! `BENCH_START_LIMIT_S` seconds (default 1800) and reports what it reached.
//! `BENCH_MAX_POLL_S` sets the longest poll interval (default 30).

use std::{
    sync::Arc,
    time::{Duration, Instant},
};

use chrono::{DateTime, DurationRound as _, TimeDelta, Utc};
use stacksnap::{
    domain::policy::PolicySpec,
    engine::{Engine, EngineConfig},
    openstack::{CloudConfig, OpenStack, SessionOptions},
    startup::supervisor::Supervisor,
    store::policies,
};
use tokio_util::sync::CancellationToken;
use uuid::Uuid;

use super::{Cloud, CloudShape, OffsetClock, cpu_seconds, env_usize, fresh_database, peak_rss_mib};

/// The resident memory of a process (`self` or a pid) now, from `/proc/…/status`.
pub(crate) fn rss_mib(pid: &str) -> f64 {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap_or_default();
    status
        .lines()
        .find_map(|l| l.strip_prefix("VmRSS:"))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse::<f64>().ok())
        .map_or(0.0, |kb| kb / 1024.0)
}

/// Jobs by state at one instant.
#[derive(Debug, Clone, Copy)]
struct Census {
    pending: i64,
    creating: i64,
    tracking: i64,
    ended: i64,
}

async fn census(pool: &sqlx::PgPool) -> anyhow::Result<Census> {
    let (pending, creating, tracking, ended): (i64, i64, i64, i64) = sqlx::query_as(
        "select count(*) filter (where status = 'pending'), \
                count(*) filter (where status = 'creating'), \
                count(*) filter (where status = 'tracking'), \
                count(*) filter (where status in ('succeeded', 'failed', 'timed_out', 'cancelled')) \
         from job",
    )
    .fetch_one(pool)
    .await?;
    Ok(Census {
        pending,
        creating,
        tracking,
        ended,
    })
}

pub async fn run() -> anyhow::Result<()> {
    let total = env_usize("BENCH_JOBS", 100_000);
    let per_policy = env_usize("BENCH_SERVERS_PER_POLICY", 50);
    let hold = Duration::from_secs(env_usize("BENCH_HOLD_S", 90) as u64);
    let start_limit = Duration::from_secs(env_usize("BENCH_START_LIMIT_S", 1800) as u64);
    let policies_n = total.div_ceil(per_policy);
    let pool = fresh_database().await?;

    // Arrange: the simulator apart, its image uploads an hour long.
    let started = Instant::now();
    let (mut sim, servers) = Cloud::start(
        total,
        CloudShape {
            own_process: true,
            demo_transitions: false,
            volumes_per_server: 0,
        },
    )?;
    let Cloud::Process { base_url, .. } = &sim else {
        unreachable!("started in its own process")
    };
    let hour_ms = 3_600_000;
    reqwest::Client::new()
        .patch(format!("{base_url}/_sim/durations"))
        .json(&serde_json::json!({"image_uploading": hour_ms}))
        .send()
        .await?
        .error_for_status()?;
    let due: DateTime<Utc> =
        Utc::now().duration_trunc(TimeDelta::minutes(1))? + TimeDelta::minutes(1);
    let before_due = due - TimeDelta::seconds(1);
    let cron = format!("{} {} * * *", due.format("%M"), due.format("%H"));
    for (i, ids) in servers.chunks(per_policy).enumerate() {
        let spec: PolicySpec = serde_json::from_value(serde_json::json!({
            "name": format!("p{i}"), "resource_type": "server", "targets": {"ids": ids},
            "schedules": [{"cron": cron}], "retention": {"keep_last": 3},
            "options": {"consistency": "crash", "timeout": "2h"}
        }))?;
        let valid = spec
            .validate(before_due)
            .map_err(|e| anyhow::anyhow!("{e:?}"))?;
        policies::insert_policy(&pool, "default", Uuid::now_v7(), &valid, Some(due), None).await?;
    }
    eprintln!(
        "arranged {total} servers and {policies_n} policies in {:.1}s",
        started.elapsed().as_secs_f64()
    );

    // Act: one replica, 32 workers, every job allowed in flight at once.
    let clock = Arc::new(OffsetClock(before_due - Utc::now()));
    let cloud = OpenStack::new(
        CloudConfig::from_clouds_yaml(&sim.clouds_yaml(), "stacksnap-sim", "bench")?,
        SessionOptions::default(),
    )?;
    let config = EngineConfig {
        // An hour-long upload is looked at less often than a fast one
        // (`BENCH_MAX_POLL_S`, default the engine's 30 s; all.sh sets 300):
        // on 2 cores, 100,000 jobs each looked at every 30 s is ~3,300 job
        // updates a second, which leave the starts too little to reach
        // 100,000 in flight within the start limit.
        max_poll_interval: TimeDelta::seconds(
            env_usize("BENCH_MAX_POLL_S", 30).try_into().unwrap_or(30),
        ),
        workers: 32,
        max_in_flight: total as i64,
        tick: Duration::from_millis(100),
        ..EngineConfig::default()
    };
    let (poll, max_poll, batch) = (
        config.poll_interval,
        config.max_poll_interval,
        config.track_batch,
    );
    let engine = Engine::new(pool.clone(), cloud.clone(), clock, config);
    let stop = CancellationToken::new();
    let sim_pid = sim.pid().expect("own process");
    let (rss0, cpu0, sim_cpu0) = (rss_mib("self"), cpu_seconds("self"), cpu_seconds(&sim_pid));
    let t0 = Instant::now();
    let running = tokio::spawn(Supervisor::start_engine(engine, stop.clone()).stopped());
    println!(
        "jobs {total} in {policies_n} policies of {per_policy} servers; poll {}s backing off to {}s, batches of up to {batch}",
        poll.num_seconds(),
        max_poll.num_seconds()
    );
    println!(
        "{:>7} {:>8} {:>8} {:>8} {:>6} {:>9} {:>9} {:>8} {:>8}",
        "t (s)",
        "pending",
        "creating",
        "tracking",
        "ended",
        "RSS MiB",
        "peak MiB",
        "calls",
        "calls/s"
    );
    let mut all_in_flight_at = None;
    let mut last_calls = (0_u64, Instant::now());
    let mut samples = Vec::new();
    loop {
        tokio::time::sleep(Duration::from_secs(2)).await;
        sim.check_alive()?;
        let c = census(&pool).await?;
        let (rss, peak, calls) = (
            rss_mib("self"),
            peak_rss_mib("self"),
            cloud.session().call_count(),
        );
        let now = Instant::now();
        let rate = (calls - last_calls.0) as f64 / now.duration_since(last_calls.1).as_secs_f64();
        last_calls = (calls, now);
        samples.push((t0.elapsed(), c, rss, calls));
        println!(
            "{:>7.0} {:>8} {:>8} {:>8} {:>6} {rss:>9.0} {peak:>9.0} {calls:>8} {rate:>8.0}",
            t0.elapsed().as_secs_f64(),
            c.pending,
            c.creating,
            c.tracking,
            c.ended,
        );
        anyhow::ensure!(
            c.ended == 0,
            "{} jobs ended: the uploads should last an hour",
            c.ended
        );
        let in_flight = c.creating + c.tracking;
        if all_in_flight_at.is_none() && c.tracking as usize >= total {
            all_in_flight_at = Some((t0.elapsed(), calls, now));
        }
        if let Some((_, _, at)) = all_in_flight_at
            && now.duration_since(at) >= hold
        {
            break;
        }
        if all_in_flight_at.is_none() && t0.elapsed() >= start_limit {
            eprintln!("gave up waiting after {start_limit:?}: {in_flight} of {total} in flight");
            break;
        }
    }
    let (cpu, sim_cpu) = (cpu_seconds("self") - cpu0, cpu_seconds(&sim_pid) - sim_cpu0);
    let (peak, sim_peak, rss_end) = (
        peak_rss_mib("self"),
        peak_rss_mib(&sim_pid),
        rss_mib("self"),
    );
    stop.cancel();
    running.await?;

    // Report.
    println!(
        "service RSS before the engine started {rss0:.0} MiB, at the end {rss_end:.0} MiB, peak {peak:.0} MiB"
    );
    println!("simulator peak RSS {sim_peak:.0} MiB (own process)");
    println!(
        "CPU time (s): service {cpu:.1}, simulator {sim_cpu:.1}, over {:.0}s",
        t0.elapsed().as_secs_f64()
    );
    match all_in_flight_at {
        Some((at, calls_then, _)) => {
            let calls_end = cloud.session().call_count();
            let held = t0.elapsed() - at;
            let rate = (calls_end - calls_then) as f64 / held.as_secs_f64();
            println!(
                "all {total} jobs tracking after {:.0}s ({:.0} jobs/s started)",
                at.as_secs_f64(),
                total as f64 / (at.as_secs_f64() - 1.0)
            );
            println!(
                "tracking {total} jobs: {rate:.1} calls/s over the next {:.0}s; at the longest poll interval \
                 batches alone would need {:.1}/s ({total} / {batch} / {}s), one call per job {:.0}/s",
                held.as_secs_f64(),
                total as f64 / batch as f64 / max_poll.num_seconds() as f64,
                max_poll.num_seconds(),
                total as f64 / max_poll.num_seconds() as f64,
            );
        }
        None => println!("not every job reached tracking: see the table"),
    }
    // RSS against jobs in flight: the slope is the in-process cost of a job.
    if let (Some(first), Some(last)) = (
        samples.iter().find(|s| s.1.creating + s.1.tracking > 0),
        samples.last(),
    ) {
        let jobs = (last.1.creating + last.1.tracking) - (first.1.creating + first.1.tracking);
        if jobs > 0 {
            println!(
                "RSS grew {:.1} MiB from {} to {} jobs in flight: {:.2} KiB per job",
                last.2 - first.2,
                first.1.creating + first.1.tracking,
                last.1.creating + last.1.tracking,
                (last.2 - first.2) * 1024.0 / jobs as f64
            );
        }
    }
    sim.stop().await;
    Ok(())
}
