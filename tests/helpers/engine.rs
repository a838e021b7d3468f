//! A database, a simulator, a client and an engine, wired together for a test.

use std::{sync::Arc, time::Duration};

use chrono::{TimeDelta, Utc};
use serde_json::json;
use sqlx::PgPool;
use stacksnap::{
    clock::{Clock, ManualClock},
    domain::{
        adhoc::AdhocSnapshotRequest,
        policy::{Policy, PolicySpec},
    },
    engine::{Engine, EngineConfig, Outcome},
    openstack::{CloudConfig, OpenStack, SessionOptions, retry::RetryPolicy},
    store::{
        jobs::{self, Job},
        policies,
    },
};
use stacksnap_sim::{SimConfig, SimHandle, Simulator};
use uuid::Uuid;

pub struct Harness {
    pub pool: PgPool,
    pub sim: SimHandle,
    pub cloud: OpenStack,
    pub clock: ManualClock,
    pub engine: Engine,
}

/// Retries quickly: tests should not wait for real backoff.
pub fn quick_session() -> SessionOptions {
    SessionOptions {
        request_timeout: Duration::from_secs(10),
        connect_timeout: Duration::from_secs(2),
        retry: RetryPolicy {
            max_attempts: 3,
            base_delay: Duration::from_millis(10),
            max_delay: Duration::from_millis(50),
        },
    }
}

pub fn engine_config() -> EngineConfig {
    EngineConfig {
        workers: 2,
        poll_interval: TimeDelta::milliseconds(100),
        // Half the poll interval, as by default.
        track_ahead: TimeDelta::milliseconds(50),
        // No pacing of batch claims: the tests step workers one at a time.
        track_gather: TimeDelta::zero(),
        max_poll_interval: TimeDelta::seconds(1),
        retry_delay: TimeDelta::seconds(1),
        capacity_wait: TimeDelta::milliseconds(100),
        retry: RetryPolicy {
            max_attempts: u32::MAX,
            base_delay: Duration::from_millis(200),
            max_delay: Duration::from_secs(1),
        },
        tick: Duration::from_millis(50),
        drain_timeout: Duration::from_secs(5),
        // The simulator answers at once: a look-up that finds nothing is believed soon.
        create_settle: TimeDelta::seconds(5),
        ..EngineConfig::default()
    }
}

pub fn cloud_for(sim: &SimHandle) -> OpenStack {
    cloud_named(sim, "stacksnap-sim")
}

/// A client of `sim` with the credentials of one of its clouds.yaml entries:
/// `stacksnap-sim` (admin) or `stacksnap-sim-member` (a project member).
pub fn cloud_named(sim: &SimHandle, cloud: &str) -> OpenStack {
    let config = CloudConfig::from_clouds_yaml(&sim.clouds_yaml(), cloud, "simulator").unwrap();
    OpenStack::new(config, quick_session()).unwrap()
}

/// The real cloud that `STACKSNAP_E2E_CLOUD` names in the clouds.yaml that
/// `OS_CLIENT_CONFIG_FILE` points at. Panics without one: a test that needs a
/// real cloud is `#[ignore]`d, so it runs only when asked for, and then must not
/// pass without having run.
pub fn real_cloud() -> OpenStack {
    OpenStack::new(real_cloud_config(), SessionOptions::default()).unwrap()
}

/// The credentials of [`real_cloud`].
pub fn real_cloud_config() -> CloudConfig {
    let name = std::env::var("STACKSNAP_E2E_CLOUD")
        .ok()
        .filter(|name| !name.is_empty())
        .expect(
            "STACKSNAP_E2E_CLOUD is not set: this test needs a real OpenStack; set it to a cloud \
             in the clouds.yaml that OS_CLIENT_CONFIG_FILE points at (.ci/run does, after it \
             brings up ../shared/rigs/openstack)",
        );
    CloudConfig::named(&name)
        .unwrap_or_else(|e| panic!("STACKSNAP_E2E_CLOUD={name} is not a usable cloud: {e}"))
}

pub async fn harness(pool: PgPool) -> Harness {
    harness_with(pool, SimConfig::default()).await
}

pub async fn harness_with(pool: PgPool, config: SimConfig) -> Harness {
    harness_as(pool, config, "stacksnap-sim").await
}

/// A harness whose engine uses the simulator's project member, as a tenant's
/// own credentials would: Cinder's and Nova's non-admin list rules apply.
pub async fn member_harness(pool: PgPool, config: SimConfig) -> Harness {
    harness_as(pool, config, "stacksnap-sim-member").await
}

async fn harness_as(pool: PgPool, config: SimConfig, cloud: &str) -> Harness {
    let sim = Simulator::start(config, "127.0.0.1:0".parse().unwrap()).unwrap();
    let cloud = cloud_named(&sim, cloud);
    let clock = ManualClock::new(Utc::now());
    let engine = Engine::new(
        pool.clone(),
        cloud.clone(),
        Arc::new(clock.clone()),
        engine_config(),
    );
    Harness {
        pool,
        sim,
        cloud,
        clock,
        engine,
    }
}

impl Harness {
    /// A second engine (another replica) on the same database and cloud.
    pub fn replica(&self) -> Engine {
        Engine::new(
            self.pool.clone(),
            cloud_for(&self.sim),
            Arc::new(self.clock.clone()),
            engine_config(),
        )
    }

    /// Queues a one-off snapshot job, as `POST /v1/snapshots` does.
    pub async fn adhoc(
        &self,
        resource_type: &str,
        resource_id: &str,
        extra: serde_json::Value,
    ) -> Uuid {
        self.adhoc_in("default", resource_type, resource_id, extra)
            .await
    }

    /// Queues a one-off snapshot job of `project`.
    pub async fn adhoc_in(
        &self,
        project: &str,
        resource_type: &str,
        resource_id: &str,
        extra: serde_json::Value,
    ) -> Uuid {
        let mut body = json!({"resource_type": resource_type, "resource_id": resource_id});
        body.as_object_mut()
            .unwrap()
            .extend(extra.as_object().cloned().unwrap_or_default());
        let request: AdhocSnapshotRequest = serde_json::from_value(body).unwrap();
        let timeout = request.validate().unwrap();
        let job = request.job(timeout, self.clock.now());
        stacksnap::store::lifecycle::insert_adhoc_run(
            &self.pool,
            project,
            None,
            &job,
            Default::default(),
            self.clock.now(),
        )
        .await
        .unwrap();
        job.job_id
    }

    /// Stores a valid policy.
    pub async fn policy(&self, spec: serde_json::Value) -> Policy {
        let spec: PolicySpec = serde_json::from_value(spec).unwrap();
        let now = self.clock.now();
        let valid = spec.validate(now).unwrap();
        let next = valid.next_run_after(now);
        policies::insert_policy(&self.pool, "default", Uuid::now_v7(), &valid, next, None)
            .await
            .unwrap()
    }

    pub async fn job(&self, id: Uuid) -> Job {
        jobs::fetch_job(&self.pool, "default", id)
            .await
            .unwrap()
            .unwrap()
    }

    /// Does every unit of work due now.
    pub async fn work(&self) {
        while self.engine.execute_next().await.unwrap() == Outcome::Worked {}
    }

    /// Works, lets time pass (the engine's clock and, briefly, the simulator's
    /// real one) and works again, until `done` holds for the job or too long passes.
    pub async fn drive(&self, job_id: Uuid, done: impl Fn(&Job) -> bool) -> Job {
        for _ in 0..300 {
            self.work().await;
            let job = self.job(job_id).await;
            if done(&job) {
                return job;
            }
            self.clock.advance(TimeDelta::milliseconds(200));
            tokio::time::sleep(Duration::from_millis(15)).await;
        }
        panic!(
            "job {job_id} did not get there: {:?}",
            self.job(job_id).await
        );
    }

    /// The managed snapshot rows of a job: (id, state), oldest first.
    pub async fn snapshot_rows(&self, job_id: Uuid) -> Vec<(Uuid, String)> {
        sqlx::query_as(
            "select snapshot_id, state from snapshot where job_id = $1 order by created_at",
        )
        .bind(job_id)
        .fetch_all(&self.pool)
        .await
        .unwrap()
    }

    /// Works (deletions included) until no snapshot row of the job is being deleted.
    pub async fn settle_deletions(&self, job_id: Uuid) -> Vec<(Uuid, String)> {
        for _ in 0..200 {
            self.work().await;
            let rows = self.snapshot_rows(job_id).await;
            if rows.iter().all(|(_, state)| state != "deleting") {
                return rows;
            }
            self.clock.advance(TimeDelta::milliseconds(500));
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        panic!(
            "deletions of job {job_id} did not end: {:?}",
            self.snapshot_rows(job_id).await
        );
    }

    /// Drives a job of `project` to its end.
    pub async fn drive_in(&self, project: &str, job_id: Uuid) -> Job {
        for _ in 0..300 {
            self.work().await;
            let job = jobs::fetch_job(&self.pool, project, job_id)
                .await
                .unwrap()
                .unwrap();
            if job.status.is_terminal() {
                return job;
            }
            self.clock.advance(TimeDelta::milliseconds(200));
            tokio::time::sleep(Duration::from_millis(15)).await;
        }
        panic!("job {job_id} of {project} did not end");
    }

    /// Drives a job to its end.
    pub async fn finish(&self, job_id: Uuid) -> Job {
        self.drive(job_id, |j| j.status.is_terminal()).await
    }
}
