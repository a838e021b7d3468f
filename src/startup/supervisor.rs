//! Runs the engine's tasks and keeps them running: a task that panics, returns an
//! error or ends before shutdown is logged, counted in [`EngineHealth`] and started
//! again after a bounded exponential backoff. On shutdown it stops restarting and
//! drains the tasks, as long as the engine's drain timeout allows.
//!
//! It knows tasks only by name and by how to start them; what a task does is the
//! engine's business. It must never panic itself: nothing here unwraps or indexes.
//! (Over 400 lines only with its tests, which drive real tasks on tiny backoffs.)

use std::{future::Future, pin::Pin, time::Duration};

use tokio::{
    task::{JoinError, JoinHandle, JoinSet},
    time::Instant,
};
use tokio_util::sync::CancellationToken;

use crate::engine::{Engine, EngineHealth, RestartBackoff, TaskName, health::TaskHealth};

type TaskFuture = Pin<Box<dyn Future<Output = anyhow::Result<()>> + Send>>;

/// A named task that can be started again and again.
pub struct SupervisedTask {
    name: TaskName,
    start: Box<dyn FnMut() -> TaskFuture + Send>,
}

impl SupervisedTask {
    /// A task called `name` that `start` begins anew each time.
    pub fn new<F, Fut>(name: TaskName, mut start: F) -> Self
    where
        F: FnMut() -> Fut + Send + 'static,
        Fut: Future<Output = anyhow::Result<()>> + Send + 'static,
    {
        Self {
            name,
            start: Box::new(move || Box::pin(start())),
        }
    }
}

/// The running tasks of one engine and what is known about them.
#[must_use = "dropping the supervisor aborts its tasks"]
pub struct Supervisor {
    tasks: JoinSet<()>,
    health: EngineHealth,
    shutdown: CancellationToken,
    drain_timeout: Duration,
}

impl Supervisor {
    /// Starts every task of `engine` under supervision, with the engine's
    /// restart backoff and drain timeout.
    pub fn start_engine(engine: Engine, shutdown: CancellationToken) -> Self {
        let backoff = engine.config.restart;
        let drain_timeout = engine.config.drain_timeout;
        let tasks = engine.tasks().into_iter().map(|name| {
            let engine = engine.clone();
            let shutdown = shutdown.clone();
            SupervisedTask::new(name, move || {
                engine.clone().run_task(name, shutdown.clone())
            })
        });
        Self::start(tasks.collect(), backoff, drain_timeout, shutdown)
    }

    /// Starts `tasks`, each restarted after `backoff` when it fails, until
    /// `shutdown` is cancelled.
    pub fn start(
        tasks: Vec<SupervisedTask>,
        backoff: RestartBackoff,
        drain_timeout: Duration,
        shutdown: CancellationToken,
    ) -> Self {
        let health = EngineHealth::new(tasks.iter().map(|task| task.name));
        let mut set = JoinSet::new();
        for (task, state) in tasks.into_iter().zip(health.tasks().iter().cloned()) {
            set.spawn(keep_running(task, state, backoff, shutdown.clone()));
        }
        Self {
            tasks: set,
            health,
            shutdown,
            drain_timeout,
        }
    }

    /// Which tasks are up and how often each was restarted.
    pub fn health(&self) -> EngineHealth {
        self.health.clone()
    }

    /// Waits for shutdown, then lets in-flight steps finish (bounded by the drain
    /// timeout) and returns once every task has ended.
    pub async fn stopped(mut self) {
        self.shutdown.cancelled().await;
        let drained = tokio::time::timeout(self.drain_timeout, async {
            while self.tasks.join_next().await.is_some() {}
        })
        .await;
        if drained.is_err() {
            // Their leases are left to expire rather than released: a request
            // abandoned mid-flight may still be carried out by the cloud, and the
            // replica that takes over must find its artefact, not race it.
            tracing::warn!(
                "in-flight work did not finish in time; abandoning it to other replicas"
            );
            self.tasks.abort_all();
            while self.tasks.join_next().await.is_some() {}
        }
        // Every step that finished gave its lease back when it recorded its outcome.
        tracing::info!("engine stopped");
    }
}

/// Aborts the task when dropped, so that aborting the supervisor's own task
/// (on a drain timeout, or when the supervisor is dropped) reaches the task too.
struct AbortOnDrop(JoinHandle<anyhow::Result<()>>);

impl Drop for AbortOnDrop {
    fn drop(&mut self) {
        self.0.abort();
    }
}

/// Runs `task` until `shutdown`, starting it again whenever it ends before that.
async fn keep_running(
    mut task: SupervisedTask,
    state: std::sync::Arc<TaskHealth>,
    backoff: RestartBackoff,
    shutdown: CancellationToken,
) {
    let name = task.name;
    let mut failures_in_a_row = 0_u32;
    loop {
        let started = Instant::now();
        // Spawned, so that a panic ends this run and not the supervisor.
        let mut running = AbortOnDrop(tokio::spawn((task.start)()));
        let ended = (&mut running.0).await;
        if shutdown.is_cancelled() {
            if let Some(failure) = Failure::of(ended) {
                tracing::error!(task = %name, failure = %failure, "engine task failed while stopping");
            }
            return;
        }
        state.mark_down();
        let ran_for = started.elapsed();
        failures_in_a_row = backoff.count_failure(failures_in_a_row, ran_for);
        let delay = backoff.delay(failures_in_a_row);
        let failure = Failure::of(ended).unwrap_or(Failure::Ended);
        tracing::error!(
            task = %name,
            failure = %failure,
            ran_for_ms = millis(ran_for),
            failures_in_a_row,
            restart_in_ms = millis(delay),
            restarts = state.restarts(),
            "engine task failed; restarting it"
        );
        tokio::select! {
            () = shutdown.cancelled() => return,
            () = tokio::time::sleep(delay) => {}
        }
        state.mark_restarted();
        tracing::info!(task = %name, restarts = state.restarts(), "engine task restarted");
    }
}

/// Why a run of a task ended.
enum Failure {
    Panicked(String),
    Failed(String),
    Aborted,
    /// It returned without an error before shutdown: a loop must not do that.
    Ended,
}

impl Failure {
    /// The failure in `ended`, or `None` when the task returned `Ok`.
    fn of(ended: Result<anyhow::Result<()>, JoinError>) -> Option<Self> {
        match ended {
            Ok(Ok(())) => None,
            Ok(Err(error)) => Some(Self::Failed(format!("{error:#}"))),
            Err(join) if join.is_panic() => {
                let payload = join.into_panic();
                let message = payload
                    .downcast_ref::<&str>()
                    .map(|s| (*s).to_owned())
                    .or_else(|| payload.downcast_ref::<String>().cloned())
                    .unwrap_or_else(|| "a panic without a message".to_owned());
                Some(Self::Panicked(message))
            }
            Err(_) => Some(Self::Aborted),
        }
    }
}

impl std::fmt::Display for Failure {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Self::Panicked(message) => write!(f, "panicked: {message}"),
            Self::Failed(error) => write!(f, "returned an error: {error}"),
            Self::Aborted => f.write_str("was aborted"),
            Self::Ended => f.write_str("ended before shutdown"),
        }
    }
}

fn millis(duration: Duration) -> u64 {
    u64::try_from(duration.as_millis()).unwrap_or(u64::MAX)
}

#[cfg(test)]
mod tests {
    use std::sync::{
        Arc,
        atomic::{AtomicU32, Ordering},
    };

    use super::*;

    fn quick() -> RestartBackoff {
        RestartBackoff {
            initial: Duration::from_millis(5),
            max: Duration::from_millis(20),
            healthy_after: Duration::from_secs(60),
        }
    }

    /// A task that fails its first `failures` runs with `fail`, then runs until shutdown.
    fn flaky(
        failures: u32,
        fail: fn() -> anyhow::Result<()>,
        shutdown: &CancellationToken,
    ) -> (SupervisedTask, Arc<AtomicU32>) {
        let runs = Arc::new(AtomicU32::new(0));
        let counter = runs.clone();
        let shutdown = shutdown.clone();
        let task = SupervisedTask::new(TaskName::Scheduler, move || {
            let run = counter.fetch_add(1, Ordering::SeqCst);
            let shutdown = shutdown.clone();
            async move {
                if run < failures {
                    return fail();
                }
                shutdown.cancelled().await;
                Ok(())
            }
        });
        (task, runs)
    }

    async fn until(what: &str, condition: impl Fn() -> bool) {
        let deadline = Instant::now() + Duration::from_secs(5);
        while !condition() {
            assert!(Instant::now() < deadline, "never: {what}");
            tokio::time::sleep(Duration::from_millis(2)).await;
        }
    }

    #[tokio::test]
    async fn a_task_that_panics_is_restarted_and_counted() {
        // Arrange
        let shutdown = CancellationToken::new();
        let (task, runs) = flaky(3, || panic!("boom"), &shutdown);

        // Act
        let supervisor = Supervisor::start(
            vec![task],
            quick(),
            Duration::from_secs(1),
            shutdown.clone(),
        );
        let health = supervisor.health();
        until("the fourth run", || runs.load(Ordering::SeqCst) == 4).await;

        // Assert
        let scheduler = health.task(TaskName::Scheduler).expect("supervised");
        assert_eq!(scheduler.restarts(), 3);
        assert!(scheduler.is_up());
        shutdown.cancel();
        tokio::time::timeout(Duration::from_secs(2), supervisor.stopped())
            .await
            .expect("the supervisor drains at once");
    }

    #[tokio::test]
    async fn each_failure_in_a_row_waits_longer_before_the_restart() {
        // Arrange: 50 + 100 + 200 + 400 ms before the fifth run.
        let shutdown = CancellationToken::new();
        let (task, runs) = flaky(4, || panic!("boom"), &shutdown);
        let backoff = RestartBackoff {
            initial: Duration::from_millis(50),
            max: Duration::from_secs(10),
            healthy_after: Duration::from_secs(60),
        };
        let started = Instant::now();

        // Act
        let supervisor = Supervisor::start(
            vec![task],
            backoff,
            Duration::from_secs(1),
            shutdown.clone(),
        );
        until("the fifth run", || runs.load(Ordering::SeqCst) == 5).await;

        // Assert
        assert!(
            started.elapsed() >= Duration::from_millis(750),
            "{:?}",
            started.elapsed()
        );
        shutdown.cancel();
        supervisor.stopped().await;
    }

    #[tokio::test]
    async fn a_task_that_returns_an_error_or_ends_early_is_restarted() {
        let shutdown = CancellationToken::new();
        let (failing, failing_runs) = flaky(
            2,
            || Err(anyhow::anyhow!("the database is gone")),
            &shutdown,
        );
        let (ending, ending_runs) = flaky(1, || Ok(()), &shutdown);
        let ending = SupervisedTask {
            name: TaskName::Worker(0),
            ..ending
        };

        let supervisor = Supervisor::start(
            vec![failing, ending],
            quick(),
            Duration::from_secs(1),
            shutdown.clone(),
        );
        until("both are running again", || {
            failing_runs.load(Ordering::SeqCst) == 3 && ending_runs.load(Ordering::SeqCst) == 2
        })
        .await;

        let health = supervisor.health();
        assert_eq!(
            health.task(TaskName::Scheduler).map(|t| t.restarts()),
            Some(2)
        );
        assert_eq!(
            health.task(TaskName::Worker(0)).map(|t| t.restarts()),
            Some(1)
        );
        shutdown.cancel();
        supervisor.stopped().await;
    }

    #[tokio::test]
    async fn a_failed_task_is_down_until_its_restart() {
        let shutdown = CancellationToken::new();
        let (task, runs) = flaky(1, || panic!("boom"), &shutdown);
        let slow = RestartBackoff {
            initial: Duration::from_millis(300),
            max: Duration::from_millis(300),
            ..quick()
        };

        let supervisor =
            Supervisor::start(vec![task], slow, Duration::from_secs(1), shutdown.clone());
        let health = supervisor.health();
        until("it is down", || health.down() == [TaskName::Scheduler]).await;
        assert_eq!(runs.load(Ordering::SeqCst), 1, "not restarted yet");
        until("it is up again", || health.down().is_empty()).await;

        assert_eq!(runs.load(Ordering::SeqCst), 2);
        shutdown.cancel();
        supervisor.stopped().await;
    }

    #[tokio::test]
    async fn shutdown_stops_restarts_and_drains() {
        let shutdown = CancellationToken::new();
        let (task, runs) = flaky(u32::MAX, || panic!("always"), &shutdown);
        let supervisor = Supervisor::start(
            vec![task],
            RestartBackoff {
                initial: Duration::from_secs(3600),
                ..quick()
            },
            Duration::from_secs(1),
            shutdown.clone(),
        );
        until("the first failure", || runs.load(Ordering::SeqCst) == 1).await;

        shutdown.cancel();
        tokio::time::timeout(Duration::from_secs(2), supervisor.stopped())
            .await
            .expect("no restart is waited for");

        assert_eq!(runs.load(Ordering::SeqCst), 1);
    }

    #[tokio::test]
    async fn a_task_that_does_not_drain_in_time_is_aborted() {
        let shutdown = CancellationToken::new();
        let stuck = SupervisedTask::new(TaskName::Worker(3), || async {
            std::future::pending::<()>().await;
            Ok(())
        });
        let supervisor = Supervisor::start(
            vec![stuck],
            quick(),
            Duration::from_millis(50),
            shutdown.clone(),
        );

        shutdown.cancel();
        tokio::time::timeout(Duration::from_secs(2), supervisor.stopped())
            .await
            .expect("the drain is bounded");
    }
}
