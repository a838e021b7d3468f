//! The snapshot engine: a scheduler that fires due policies and workers that
//! take every snapshot to its end. Each is a tokio task with graceful shutdown;
//! all coordination between replicas is in PostgreSQL (row locks, leases,
//! unique constraints), so replicas can come and go at any moment.

pub mod orphans;
pub mod pruner;
pub mod resolver;
pub mod scheduler;
pub mod snapshot;
pub mod worker;

use std::{sync::Arc, time::Duration};

use chrono::TimeDelta;
use sqlx::{PgPool, postgres::PgListener};
use tokio::{sync::Notify, task::JoinSet};
use tokio_util::sync::CancellationToken;

pub use worker::Outcome;

use crate::{clock::Clock, openstack::OpenStack, openstack::retry::RetryPolicy};

/// How hard the engine works and how patiently it waits.
#[derive(Debug, Clone)]
pub struct EngineConfig {
    /// Concurrent worker tasks in this replica.
    pub workers: usize,
    /// Most jobs in `creating` or `tracking` at once, across all replicas.
    pub max_in_flight: i64,
    /// How long a claimed run or job stays ours without renewal.
    pub lease: TimeDelta,
    /// First interval between looks at a snapshot in progress.
    pub poll_interval: TimeDelta,
    pub max_poll_interval: TimeDelta,
    /// Pause before retrying a busy resource or an unreachable cloud.
    pub retry_delay: TimeDelta,
    /// Pause before re-checking a job held back by a concurrency limit.
    pub capacity_wait: TimeDelta,
    /// Backoff for a busy or throttling cloud.
    pub retry: RetryPolicy,
    /// How often the scheduler looks for due policies without being woken.
    pub tick: Duration,
    /// How long a shutdown waits for in-flight steps.
    pub drain_timeout: Duration,
    /// How often retention looks for policies to prune.
    pub prune_interval: Duration,
}

impl Default for EngineConfig {
    fn default() -> Self {
        Self {
            workers: 16,
            max_in_flight: 50,
            lease: TimeDelta::seconds(60),
            poll_interval: TimeDelta::seconds(2),
            max_poll_interval: TimeDelta::seconds(30),
            retry_delay: TimeDelta::seconds(15),
            capacity_wait: TimeDelta::seconds(2),
            retry: RetryPolicy {
                max_attempts: u32::MAX,
                base_delay: Duration::from_secs(5),
                max_delay: Duration::from_secs(120),
            },
            tick: Duration::from_secs(1),
            drain_timeout: Duration::from_secs(30),
            prune_interval: Duration::from_secs(30),
        }
    }
}

/// One replica's engine.
#[derive(Debug, Clone)]
pub struct Engine {
    pub(crate) db: PgPool,
    pub(crate) cloud: OpenStack,
    pub(crate) clock: Arc<dyn Clock>,
    pub(crate) config: EngineConfig,
}

impl Engine {
    /// An engine over `db` driving `cloud`.
    pub fn new(db: PgPool, cloud: OpenStack, clock: Arc<dyn Clock>, config: EngineConfig) -> Self {
        Self {
            db,
            cloud,
            clock,
            config,
        }
    }

    /// Fires what is due now; the scheduler loop calls this on every tick.
    ///
    /// # Errors
    /// The database fails.
    pub async fn fire_due(&self) -> Result<scheduler::Fired, sqlx::Error> {
        scheduler::fire_due(&self.db, self.clock.as_ref()).await
    }

    /// Runs the scheduler and the workers until `shutdown` is cancelled, then
    /// stops claiming, lets in-flight steps finish (bounded) and releases leases.
    pub async fn run(self, shutdown: CancellationToken) {
        let wake = Arc::new(Notify::new());
        let mut tasks = JoinSet::new();
        tasks.spawn(listen(self.db.clone(), wake.clone(), shutdown.clone()));
        tasks.spawn(self.clone().scheduler_loop(wake.clone(), shutdown.clone()));
        tasks.spawn(self.clone().pruner_loop(wake.clone(), shutdown.clone()));
        for _ in 0..self.config.workers {
            tasks.spawn(self.clone().worker_loop(wake.clone(), shutdown.clone()));
        }
        shutdown.cancelled().await;
        if tokio::time::timeout(self.config.drain_timeout, async {
            while tasks.join_next().await.is_some() {}
        })
        .await
        .is_err()
        {
            // Their leases are left to expire rather than released: a request
            // abandoned mid-flight may still be carried out by the cloud, and the
            // replica that takes over must find its artefact, not race it.
            tracing::warn!(
                "in-flight work did not finish in time; abandoning it to other replicas"
            );
            tasks.abort_all();
        }
        // Every step that finished gave its lease back when it recorded its outcome.
        tracing::info!("engine stopped");
    }

    async fn scheduler_loop(self, wake: Arc<Notify>, shutdown: CancellationToken) {
        loop {
            match self.fire_due().await {
                Ok(fired) if fired.runs + fired.missed > 0 => {
                    tracing::info!(
                        runs = fired.runs,
                        missed = fired.missed,
                        "fired due policies"
                    );
                    wake.notify_waiters();
                }
                Ok(_) => {}
                Err(e) => tracing::error!(error = %e, "scheduler pass failed; retrying"),
            }
            tokio::select! {
                () = shutdown.cancelled() => return,
                () = tokio::time::sleep(self.config.tick) => {}
                () = wake.notified() => {}
            }
        }
    }

    async fn pruner_loop(self, wake: Arc<Notify>, shutdown: CancellationToken) {
        loop {
            match self.prune_due().await {
                Ok(0) => {}
                Ok(marked) => {
                    tracing::info!(
                        snapshots = marked,
                        "retention marked snapshots for deletion"
                    );
                    wake.notify_waiters();
                }
                Err(e) => tracing::error!(error = %e, "retention pass failed; retrying"),
            }
            tokio::select! {
                () = shutdown.cancelled() => return,
                () = tokio::time::sleep(self.config.prune_interval) => {}
            }
        }
    }

    async fn worker_loop(self, wake: Arc<Notify>, shutdown: CancellationToken) {
        let idle_wait = self
            .config
            .poll_interval
            .to_std()
            .unwrap_or(Duration::from_secs(1))
            .min(Duration::from_secs(1));
        while !shutdown.is_cancelled() {
            match self.execute_next().await {
                Ok(Outcome::Worked) => continue,
                Ok(Outcome::Idle) => {}
                Err(e) => tracing::error!(error = %e, "worker step failed; backing off"),
            }
            tokio::select! {
                () = shutdown.cancelled() => return,
                () = tokio::time::sleep(idle_wait) => {}
                () = wake.notified() => {}
            }
        }
    }
}

/// Wakes the loops on NOTIFY. Only a shortcut: without it (a pooler in
/// transaction mode) the loops still poll.
async fn listen(db: PgPool, wake: Arc<Notify>, shutdown: CancellationToken) {
    loop {
        let listener = async {
            let mut listener = PgListener::connect_with(&db).await?;
            listener
                .listen_all(["stacksnap_policy", "stacksnap_work"])
                .await?;
            loop {
                listener.recv().await?;
                wake.notify_waiters();
            }
            #[allow(unreachable_code)]
            Ok::<(), sqlx::Error>(())
        };
        tokio::select! {
            () = shutdown.cancelled() => return,
            result = listener => {
                if let Err(e) = result {
                    tracing::warn!(error = %e, "LISTEN connection lost; polling until it is back");
                }
            }
        }
        tokio::select! {
            () = shutdown.cancelled() => return,
            () = tokio::time::sleep(Duration::from_secs(5)) => {}
        }
    }
}
