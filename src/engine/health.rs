//! What is known about the engine's tasks while they run: which are up and how
//! often each was restarted. The start-up code's supervisor writes it, `/readyz`
//! reads it, and a metrics exporter can read it the same way. It owns no task and
//! makes no decision; it is counters and flags only.

use std::{
    fmt,
    sync::{
        Arc,
        atomic::{AtomicBool, AtomicU64, Ordering},
    },
    time::Duration,
};

/// How a failed engine task is started again: after `initial`, doubling with each
/// failure in a row up to `max`; a task that ran for `healthy_after` before it
/// failed starts again from `initial`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RestartBackoff {
    /// Wait before the first restart.
    pub initial: Duration,
    /// Longest wait between two restarts.
    pub max: Duration,
    /// A run this long counts as healthy: the next failure waits `initial` again.
    pub healthy_after: Duration,
}

impl Default for RestartBackoff {
    fn default() -> Self {
        Self {
            initial: Duration::from_millis(100),
            max: Duration::from_secs(30),
            healthy_after: Duration::from_secs(60),
        }
    }
}

impl RestartBackoff {
    /// The wait before restarting a task that has failed `failures_in_a_row`
    /// times (1 for the first failure).
    pub fn delay(&self, failures_in_a_row: u32) -> Duration {
        let doublings = failures_in_a_row.saturating_sub(1).min(31);
        self.initial.saturating_mul(1 << doublings).min(self.max)
    }

    /// Counts a failure that ended a run of `ran_for`: one more in a row, or the
    /// first of a new series when the run was healthy.
    pub fn count_failure(&self, in_a_row: u32, ran_for: Duration) -> u32 {
        if ran_for >= self.healthy_after {
            1
        } else {
            in_a_row.saturating_add(1)
        }
    }
}

/// The name of one engine task, as logs, `/readyz` and metrics show it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum TaskName {
    /// The LISTEN connection that wakes the other loops.
    Listen,
    /// The loop that fires due policies.
    Scheduler,
    /// The loop that applies retention.
    Pruner,
    /// The loop that purges old runs, jobs and deleted snapshot rows.
    History,
    /// The loop that deletes trusts nothing refers to any more.
    Trusts,
    /// The webhook dispatcher.
    Webhooks,
    /// The loop that gives committed events their positions (`store::events`).
    Sequencer,
    /// The loop that recomputes each policy's stale-resource count and folds
    /// metric deltas into their totals, for `/metrics`.
    Freshness,
    /// The loop that snapshots resources joining a policy with `snapshot_on_join`.
    Joins,
    /// The loop that queues scheduled restore tests (`options.verify`).
    Verify,
    /// One of the workers, numbered from 0.
    Worker(usize),
}

impl fmt::Display for TaskName {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Listen => f.write_str("listen"),
            Self::Scheduler => f.write_str("scheduler"),
            Self::Pruner => f.write_str("pruner"),
            Self::History => f.write_str("history"),
            Self::Trusts => f.write_str("trusts"),
            Self::Webhooks => f.write_str("webhooks"),
            Self::Sequencer => f.write_str("sequencer"),
            Self::Freshness => f.write_str("freshness"),
            Self::Joins => f.write_str("joins"),
            Self::Verify => f.write_str("verify"),
            Self::Worker(n) => write!(f, "worker-{n}"),
        }
    }
}

/// One task's flags and counters.
#[derive(Debug)]
pub struct TaskHealth {
    name: TaskName,
    up: AtomicBool,
    restarts: AtomicU64,
}

impl TaskHealth {
    /// Which task this is.
    pub fn name(&self) -> TaskName {
        self.name
    }

    /// Whether the task is running: false between a failure and its restart.
    pub fn is_up(&self) -> bool {
        self.up.load(Ordering::Relaxed)
    }

    /// How many times the task was started again after a failure.
    pub fn restarts(&self) -> u64 {
        self.restarts.load(Ordering::Relaxed)
    }

    /// Records that the task failed and is waiting to be restarted.
    pub fn mark_down(&self) {
        self.up.store(false, Ordering::Relaxed);
    }

    /// Records that the task was started again.
    pub fn mark_restarted(&self) {
        self.restarts.fetch_add(1, Ordering::Relaxed);
        self.up.store(true, Ordering::Relaxed);
    }
}

/// A shared, cheap-to-clone view of every task of one engine.
#[derive(Debug, Clone)]
pub struct EngineHealth {
    tasks: Arc<[Arc<TaskHealth>]>,
}

impl EngineHealth {
    /// Every task in `names` up, none restarted yet.
    pub fn new(names: impl IntoIterator<Item = TaskName>) -> Self {
        let tasks = names
            .into_iter()
            .map(|name| {
                Arc::new(TaskHealth {
                    name,
                    up: AtomicBool::new(true),
                    restarts: AtomicU64::new(0),
                })
            })
            .collect();
        Self { tasks }
    }

    /// Every task, in the order the engine starts them (for a metrics exporter).
    pub fn tasks(&self) -> &[Arc<TaskHealth>] {
        &self.tasks
    }

    /// The task called `name`, if the engine has one.
    pub fn task(&self, name: TaskName) -> Option<&Arc<TaskHealth>> {
        self.tasks.iter().find(|task| task.name == name)
    }

    /// The tasks that are down now, in start order.
    pub fn down(&self) -> Vec<TaskName> {
        self.tasks
            .iter()
            .filter(|task| !task.is_up())
            .map(|task| task.name)
            .collect()
    }

    /// Restarts of all tasks together.
    pub fn total_restarts(&self) -> u64 {
        self.tasks.iter().map(|task| task.restarts()).sum()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ms(n: u64) -> Duration {
        Duration::from_millis(n)
    }

    #[test]
    fn the_restart_delay_doubles_from_its_start_up_to_its_bound() {
        let backoff = RestartBackoff::default();
        let delays: Vec<Duration> = (1..=12).map(|n| backoff.delay(n)).collect();
        assert_eq!(
            delays,
            [
                ms(100),
                ms(200),
                ms(400),
                ms(800),
                ms(1_600),
                ms(3_200),
                ms(6_400),
                ms(12_800),
                ms(25_600),
                ms(30_000),
                ms(30_000),
                ms(30_000),
            ]
        );
    }

    #[test]
    fn the_restart_delay_never_overflows_and_never_goes_below_its_start() {
        let backoff = RestartBackoff {
            initial: ms(100),
            max: Duration::MAX,
            healthy_after: ms(1),
        };
        assert_eq!(backoff.delay(0), ms(100));
        assert!(backoff.delay(u32::MAX) >= ms(100));
        let inverted = RestartBackoff {
            initial: ms(500),
            max: ms(50),
            healthy_after: ms(1),
        };
        assert_eq!(inverted.delay(3), ms(50), "the bound wins");
    }

    #[test]
    fn a_failure_after_a_healthy_run_starts_the_backoff_over() {
        let backoff = RestartBackoff::default();
        assert_eq!(backoff.count_failure(0, ms(10)), 1);
        assert_eq!(backoff.count_failure(4, ms(10)), 5);
        assert_eq!(backoff.count_failure(4, Duration::from_secs(60)), 1);
        assert_eq!(backoff.count_failure(u32::MAX, ms(10)), u32::MAX);
    }

    #[test]
    fn health_names_the_tasks_that_are_down_and_counts_restarts() {
        let health = EngineHealth::new([TaskName::Scheduler, TaskName::Worker(0)]);
        assert!(health.down().is_empty());

        let worker = health.task(TaskName::Worker(0)).expect("a worker");
        worker.mark_down();
        assert_eq!(health.down(), [TaskName::Worker(0)]);
        assert_eq!(TaskName::Worker(0).to_string(), "worker-0");

        worker.mark_restarted();
        assert!(health.down().is_empty());
        assert_eq!(worker.restarts(), 1);
        assert_eq!(health.total_restarts(), 1);
    }
}
