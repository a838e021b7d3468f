//! The burst in keystone mode (issue 13): every policy belongs to a tenant
//! project and acts with its own Keystone trust, as under `--auth keystone`
//! (`requires_delegation`). `BENCH_PROJECTS` projects (default 20), each with
//! a member user, hold `BENCH_POLICIES` policies (default 2,000) of
//! `BENCH_SERVERS_PER_POLICY` image-backed servers (default 5) of their
//! project, all due at one minute. Each policy's trust is made as the API
//! makes it (`delegation::delegate` with the member's token).
//!
//! Reports jobs/s, the scheduler lag, and the Keystone requests during the
//! burst: the trust-scoped tokens issued against the trusts used (one per
//! trust, reused until near its expiry, is the aim), and the OpenStack calls
//! per job. `BENCH_TOKEN_TTL_S` (default 3600) shortens the simulator's token
//! lifetime to make the burst outlive its tokens and show their renewal.
//!
//! The simulator runs in this process with zero-latency transitions (its
//! projects and users are set in its configuration, which `stacksnap sim`
//! does not take from the command line), so the RSS and CPU time are of both.
//!
//! Run: `cargo bench --bench engine -- keystone`.

use std::{
    collections::BTreeMap,
    sync::Arc,
    time::{Duration, Instant},
};

use chrono::{DateTime, DurationRound as _, TimeDelta, Utc};
use secrecy::SecretString;
use serde_json::{Value, json};
use sqlx::{Connection as _, PgConnection};
use stacksnap::{
    clock::{Clock as _, SystemClock},
    delegation::{self, Delegator},
    domain::policy::PolicySpec,
    engine::{Engine, EngineConfig},
    openstack::{CloudConfig, OpenStack, SessionOptions},
    startup::supervisor::Supervisor,
    store::{policies, trusts},
};
use stacksnap_sim::{ImageSeed, Inventory, MemberUser, ServerSeed, SimConfig, Simulator};
use tokio_util::sync::CancellationToken;
use uuid::Uuid;

use super::{
    OffsetClock, cpu_seconds, env_usize, fresh_database, peak_rss_mib, percentile, wait_for_jobs,
    zero_durations,
};

/// A member's token scoped to its project: (token, user id, project id).
async fn member_token(
    auth_url: &str,
    user: &str,
    project: &str,
) -> anyhow::Result<(String, String, String)> {
    let body = json!({"auth": {
        "identity": {"methods": ["password"], "password": {"user": {"name": user, "domain": {"id": "default"}, "password": "pw"}}},
        "scope": {"project": {"name": project, "domain": {"id": "default"}}},
    }});
    let r = reqwest::Client::new()
        .post(format!("{auth_url}/auth/tokens"))
        .json(&body)
        .send()
        .await?
        .error_for_status()?;
    let token = r.headers()["x-subject-token"].to_str()?.to_owned();
    let body: Value = r.json().await?;
    Ok((
        token,
        body["token"]["user"]["id"]
            .as_str()
            .unwrap_or_default()
            .to_owned(),
        body["token"]["project"]["id"]
            .as_str()
            .unwrap_or_default()
            .to_owned(),
    ))
}

pub async fn run() -> anyhow::Result<()> {
    let projects_n = env_usize("BENCH_PROJECTS", 20);
    let policies_n = env_usize("BENCH_POLICIES", 2_000);
    let per_policy = env_usize("BENCH_SERVERS_PER_POLICY", 5);
    let token_ttl = Duration::from_secs(env_usize("BENCH_TOKEN_TTL_S", 3600) as u64);
    let pool = fresh_database().await?;
    let started = Instant::now();

    // Arrange: a member per project, the servers spread over the projects.
    let project_of = |policy: usize| format!("tenant{}", policy % projects_n);
    let servers = (0..policies_n * per_policy)
        .map(|i| ServerSeed {
            id: Some(Uuid::new_v4().to_string()),
            name: format!("s{i}"),
            image: Some("tiny".into()),
            project: Some(project_of(i / per_policy)),
            ..ServerSeed::default()
        })
        .collect::<Vec<_>>();
    let sim = Simulator::start(
        SimConfig {
            durations: zero_durations(),
            snapshot_quota: i64::MAX,
            instances_quota: -1,
            token_ttl,
            members: (0..projects_n)
                .map(|i| MemberUser::new(&format!("user{i}"), "pw", &format!("tenant{i}")))
                .collect(),
            inventory: Inventory {
                images: vec![ImageSeed {
                    name: "tiny".into(),
                    size: 196_616,
                    ..ImageSeed::default()
                }],
                volumes: Vec::new(),
                servers: servers.clone(),
            },
            ..SimConfig::default()
        },
        "127.0.0.1:0".parse()?,
    )?;
    let cloud = OpenStack::new(
        CloudConfig::from_clouds_yaml(&sim.clouds_yaml(), "stacksnap-sim", "bench")?,
        SessionOptions::default(),
    )?;
    let due: DateTime<Utc> =
        Utc::now().duration_trunc(TimeDelta::minutes(1))? + TimeDelta::minutes(1);
    let before_due = due - TimeDelta::seconds(1);
    let cron = format!("{} {} * * *", due.format("%M"), due.format("%H"));
    let mut members = Vec::new();
    for i in 0..projects_n {
        members
            .push(member_token(&sim.auth_url(), &format!("user{i}"), &format!("tenant{i}")).await?);
    }
    for (i, chunk) in servers.chunks(per_policy).enumerate() {
        let (token, user_id, project_id) = &members[i % projects_n];
        let ids: Vec<&str> = chunk.iter().filter_map(|s| s.id.as_deref()).collect();
        let token = SecretString::from(token.clone());
        let who = Delegator {
            token: &token,
            user_id,
            application_credential: false,
            trust_scoped: false,
        };
        let trust = delegation::delegate(&cloud, &pool, &who, project_id, SystemClock.now())
            .await
            .map_err(|e| anyhow::anyhow!("{e}"))?;
        let spec: PolicySpec = serde_json::from_value(json!({
            "name": format!("p{i}"), "resource_type": "server", "targets": {"ids": ids},
            "schedules": [{"cron": cron}], "retention": {"keep_last": 3}, "options": {"consistency": "crash"}
        }))?;
        let valid = spec
            .validate(before_due)
            .map_err(|e| anyhow::anyhow!("{e:?}"))?;
        let policy = policies::insert_policy(
            &pool,
            project_id,
            Uuid::now_v7(),
            &valid,
            Some(due),
            Some(user_id),
        )
        .await?;
        anyhow::ensure!(trusts::set_policy_trust(&pool, policy.id, &trust).await?);
    }
    eprintln!(
        "arranged {} servers, {policies_n} policies and their trusts in {projects_n} projects in {:.1}s",
        servers.len(),
        started.elapsed().as_secs_f64()
    );

    // Act: one replica with 32 workers, acting only with trusts, started one
    // second before the due minute (on its clock: the arrangement takes a while).
    let clock = Arc::new(OffsetClock(before_due - Utc::now()));
    let config = EngineConfig {
        workers: 32,
        max_in_flight: 2_000,
        poll_interval: TimeDelta::milliseconds(200),
        track_ahead: TimeDelta::milliseconds(100),
        tick: Duration::from_millis(100),
        requires_delegation: true,
        ..EngineConfig::default()
    };
    let engine = Engine::new(pool.clone(), cloud.clone(), clock, config);
    let stop = CancellationToken::new();
    let seq0 = sim.requests().last().map_or(0, |r| r.seq + 1);
    let cpu0 = cpu_seconds("self");
    let mut progress = PgConnection::connect_with(&pool.connect_options()).await?;
    let t0 = Instant::now();
    let running = tokio::spawn(Supervisor::start_engine(engine, stop.clone()).stopped());
    let total_jobs = (policies_n * per_policy) as i64;
    let jobs_done_at = wait_for_jobs(&mut progress, t0, total_jobs, |_| Ok(())).await?;
    let (cpu, rss) = (cpu_seconds("self") - cpu0, peak_rss_mib("self"));
    stop.cancel();
    running.await?;

    // Report.
    let lags: Vec<f64> = sqlx::query_scalar(
        "select extract(epoch from (created_at - scheduled_for))::float8 from run where trigger = 'schedule' order by 1",
    )
    .fetch_all(&pool)
    .await?;
    let log: Vec<_> = sim
        .requests()
        .into_iter()
        .filter(|r| r.seq >= seq0)
        .collect();
    let mut by_operation: BTreeMap<&str, usize> = BTreeMap::new();
    for r in &log {
        *by_operation.entry(r.operation.as_str()).or_default() += 1;
    }
    let tokens = by_operation
        .get("keystone.create_token")
        .copied()
        .unwrap_or(0);
    let keystone: usize = by_operation
        .iter()
        .filter(|(op, _)| op.starts_with("keystone."))
        .map(|(_, n)| n)
        .sum();
    let jobs_s = jobs_done_at.as_secs_f64() - 1.0;
    println!(
        "projects {projects_n}, policies {policies_n} (one trust each), servers {}, jobs {total_jobs}, token lifetime {}s",
        servers.len(),
        token_ttl.as_secs()
    );
    println!(
        "jobs succeeded per second  {:.0} ({total_jobs} jobs in {jobs_s:.1}s)",
        total_jobs as f64 / jobs_s
    );
    println!(
        "scheduler lag (s)          median {:.3}  p99 {:.3}  max {:.3}",
        percentile(&lags, 0.5),
        percentile(&lags, 0.99),
        lags.last().copied().unwrap_or_default()
    );
    println!(
        "Keystone requests          {keystone}: {tokens} tokens issued for {policies_n} trusts ({:.2} per trust)",
        tokens as f64 / policies_n as f64
    );
    for (op, n) in by_operation
        .iter()
        .filter(|(op, _)| op.starts_with("keystone."))
    {
        println!("  {op:<24} {n}");
    }
    let others: Vec<String> = by_operation
        .iter()
        .filter(|(op, _)| !op.starts_with("keystone."))
        .map(|(op, n)| format!("{op} {n}"))
        .collect();
    println!("other operations           {}", others.join(", "));
    println!(
        "simulator requests         {}: {:.2} per job",
        log.len(),
        log.len() as f64 / total_jobs as f64
    );
    println!(
        "peak RSS (MiB)             {rss:.0}, CPU time {cpu:.1}s (service and simulator in one process)"
    );
    sim.shutdown().await;
    Ok(())
}
