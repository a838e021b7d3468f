//! The snapshot engine: a scheduler that fires due policies and workers that
//! take every snapshot to its end. Each is a long-running loop that the start-up
//! code runs as a supervised tokio task with graceful shutdown; all coordination
//! between replicas is in PostgreSQL (row locks, leases, unique constraints), so
//! replicas can come and go at any moment.

pub mod authority;
pub mod health;
pub mod history;
pub mod job_events;
pub mod joins;
pub mod orphans;
pub mod pruner;
pub mod resolver;
pub mod restore;
pub mod scheduler;
pub mod snapshot;
pub mod source_deletion;
pub mod trusts;
pub mod verify;
pub mod webhooks;
pub mod worker;

use std::{sync::Arc, time::Duration};

use chrono::{DateTime, TimeDelta, Utc};
use sqlx::PgPool;
use tokio::sync::Notify;
use tokio_util::sync::CancellationToken;

pub use health::{EngineHealth, RestartBackoff, TaskName};
pub use job_events::{JobEvents, JobWatch};
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
    /// Most tracking jobs (of one project) a worker looks at together.
    pub track_batch: i64,
    /// How far ahead of its due time a tracking job is taken into a batch of
    /// its project that a due job opened (half of `poll_interval` by default):
    /// without it a batch holds only the jobs due at that very instant. Zero
    /// turns coalescing off.
    pub track_ahead: TimeDelta,
    /// After a tracking batch claim that was not full, how long this replica
    /// lets due tracking jobs gather before it claims the next batch (a full
    /// claim lets the next one go at once). Without it every idle worker takes
    /// the one or two jobs due at its instant. Only claims are paced: the
    /// batches themselves are looked at by as many workers as are free, so a
    /// slow project holds up only the worker looking at it. Zero: no pacing.
    pub track_gather: TimeDelta,
    pub max_poll_interval: TimeDelta,
    /// Pause before retrying a resource the cloud reports busy, or an unreachable cloud.
    pub retry_delay: TimeDelta,
    /// Pause before re-checking a job held back by a concurrency limit, or by
    /// another of our jobs in flight on its resource.
    pub capacity_wait: TimeDelta,
    /// Backoff for a busy or throttling cloud.
    pub retry: RetryPolicy,
    /// How often the scheduler looks for due policies without being woken.
    pub tick: Duration,
    /// How long a shutdown waits for in-flight steps.
    pub drain_timeout: Duration,
    /// How often retention looks for policies to prune.
    pub prune_interval: Duration,
    /// How a task that panicked or failed is started again.
    pub restart: RestartBackoff,
    /// Finished runs (with their jobs), deleted snapshot rows and events older than this are purged.
    pub history_retention: TimeDelta,
    /// How often the history is purged.
    pub history_interval: Duration,
    /// Rows deleted per statement when purging history.
    pub history_batch: i64,
    /// How long after a create request whose outcome is unknown (a timeout, a
    /// 5xx, a lost answer) a look-up that finds nothing is believed: a
    /// volume-backed `createImage` makes its image last and can take longer
    /// than the client waits. Until then the job waits instead of sending again.
    pub create_settle: TimeDelta,
    /// Most create requests one job sends; then it fails with `create_attempts_exhausted`.
    pub max_create_attempts: i32,
    /// Policies act only with their trust (`--auth keystone`): one without
    /// (made under `--auth none`, or before trusts) is broken with
    /// `trust_missing` instead of acting with the service's own credentials.
    pub requires_delegation: bool,
    /// How often trusts nothing refers to any more are looked for and deleted.
    pub trusts_interval: Duration,
    /// A trust is never deleted younger than this: its policy or run may
    /// still be being stored.
    pub trust_grace: TimeDelta,
    /// How webhooks are delivered.
    pub webhooks: webhooks::WebhookSettings,
    /// How often the sequencer numbers committed events (readers also run a
    /// pass themselves, so this bounds only how stale an idle feed gets).
    pub sequence_interval: Duration,
    /// How often the stale-resource counts `/metrics` exports are recomputed
    /// (by one replica at a time).
    pub freshness_interval: Duration,
    /// How often each policy with `options.snapshot_on_join` has its targets
    /// listed to find resources that joined it (across all replicas).
    pub join_interval: Duration,
    /// How often each policy with `options.verify` is looked at for targets
    /// due a restore test (across all replicas).
    pub verify_interval: Duration,
    /// How long after a restore (or restore test) ended its clean-up is
    /// retried: then what the cloud still refuses to delete (a volume with a
    /// Cinder snapshot of it, one in `error_deleting`) is left, the clean-up
    /// ends `kept`, and the run's trust can be retired.
    pub cleanup_limit: TimeDelta,
}

impl Default for EngineConfig {
    fn default() -> Self {
        Self {
            workers: 16,
            max_in_flight: 50,
            lease: TimeDelta::seconds(60),
            poll_interval: TimeDelta::seconds(2),
            track_batch: 100,
            track_ahead: TimeDelta::seconds(1),
            track_gather: TimeDelta::milliseconds(250),
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
            restart: RestartBackoff::default(),
            history_retention: TimeDelta::days(90),
            history_interval: Duration::from_secs(3600),
            history_batch: 500,
            create_settle: TimeDelta::minutes(3),
            max_create_attempts: 5,
            requires_delegation: false,
            trusts_interval: Duration::from_secs(60),
            trust_grace: TimeDelta::minutes(10),
            webhooks: webhooks::WebhookSettings::default(),
            sequence_interval: Duration::from_millis(200),
            freshness_interval: Duration::from_secs(60),
            join_interval: Duration::from_secs(300),
            verify_interval: Duration::from_secs(300),
            cleanup_limit: TimeDelta::days(7),
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
    /// Shared by all the loops of this replica: whoever finds work wakes the others.
    wake: Arc<Notify>,
    /// Told when a job ends here, for the requests of this replica waiting on it.
    pub(crate) job_events: JobEvents,
    /// Boot images' consistency read recently, per project (shared by every worker).
    pub(crate) boot_images: snapshot::BootImages,
    /// When this replica may claim its next tracking batch (`EngineConfig::track_gather`).
    pub(crate) track_pace: Arc<std::sync::Mutex<DateTime<Utc>>>,
}

impl Engine {
    /// An engine over `db` driving `cloud`.
    pub fn new(db: PgPool, cloud: OpenStack, clock: Arc<dyn Clock>, config: EngineConfig) -> Self {
        Self {
            db,
            cloud,
            boot_images: snapshot::BootImages::new(clock.clone()),
            clock,
            wake: Arc::new(Notify::new()),
            job_events: JobEvents::default(),
            track_pace: Arc::new(std::sync::Mutex::new(DateTime::<Utc>::MIN_UTC)),
            config,
        }
    }

    /// The same engine acting on the cloud with another authority.
    pub(crate) fn acting_with(&self, cloud: OpenStack) -> Self {
        Self {
            cloud,
            ..self.clone()
        }
    }

    /// The same engine telling `events` (shared with the API) when it ends a job.
    #[must_use]
    pub fn with_job_events(mut self, events: JobEvents) -> Self {
        self.job_events = events;
        self
    }

    /// Fires what is due now; the scheduler loop calls this on every tick.
    ///
    /// # Errors
    /// The database fails.
    pub async fn fire_due(&self) -> Result<scheduler::Fired, sqlx::Error> {
        scheduler::fire_due(&self.db, self.clock.as_ref()).await
    }

    /// The loops this replica runs: the LISTEN connection, the scheduler, the
    /// pruner, the history purge, the trust retirement, the event sequencer, the webhook dispatcher,
    /// the stale-count refresher, the join watcher, the restore tester and every worker. The start-up code runs each as a supervised task.
    pub fn tasks(&self) -> Vec<TaskName> {
        let mut tasks = vec![
            TaskName::Listen,
            TaskName::Scheduler,
            TaskName::Pruner,
            TaskName::History,
            TaskName::Trusts,
            TaskName::Webhooks,
            TaskName::Sequencer,
            TaskName::Freshness,
            TaskName::Joins,
            TaskName::Verify,
        ];
        tasks.extend((0..self.config.workers).map(TaskName::Worker));
        tasks
    }

    /// Runs one loop until `shutdown` is cancelled. A loop logs what fails in one
    /// pass and tries again; it stops claiming work once `shutdown` is cancelled
    /// and returns when its step in flight has been recorded.
    ///
    /// # Errors
    /// None today: every loop retries what fails. The signature lets a loop give
    /// up, and the supervisor restart it, without changing its caller.
    pub async fn run_task(self, task: TaskName, shutdown: CancellationToken) -> anyhow::Result<()> {
        match task {
            TaskName::Listen => listen(self.db, self.wake, shutdown).await,
            TaskName::Scheduler => self.scheduler_loop(shutdown).await,
            TaskName::Pruner => self.pruner_loop(shutdown).await,
            TaskName::History => self.history_loop(shutdown).await,
            TaskName::Trusts => self.trusts_loop(shutdown).await,
            TaskName::Webhooks => self.webhooks_loop(shutdown).await,
            TaskName::Sequencer => self.sequencer_loop(shutdown).await,
            TaskName::Freshness => self.freshness_loop(shutdown).await,
            TaskName::Joins => self.joins_loop(shutdown).await,
            TaskName::Verify => self.verify_loop(shutdown).await,
            TaskName::Worker(_) => self.worker_loop(shutdown).await,
        }
        Ok(())
    }

    async fn scheduler_loop(self, shutdown: CancellationToken) {
        let pass = || async {
            match self.fire_due().await {
                Ok(fired) if fired.runs + fired.missed > 0 => {
                    tracing::info!(
                        runs = fired.runs,
                        missed = fired.missed,
                        "fired due policies"
                    );
                    self.wake.notify_waiters();
                }
                Ok(_) => {}
                Err(e) => {
                    tracing::error!(error = %e, "scheduler pass failed; retrying");
                    return Next::Backoff;
                }
            }
            Next::Wait
        };
        while turn(&self.wake, self.config.tick, &shutdown, pass()).await {}
    }

    async fn pruner_loop(self, shutdown: CancellationToken) {
        loop {
            match self.prune_due().await {
                Ok(0) => {}
                Ok(marked) => {
                    tracing::info!(
                        snapshots = marked,
                        "retention marked snapshots for deletion"
                    );
                    self.wake.notify_waiters();
                }
                Err(e) => tracing::error!(error = %e, "retention pass failed; retrying"),
            }
            tokio::select! {
                () = shutdown.cancelled() => return,
                () = tokio::time::sleep(self.config.prune_interval) => {}
            }
        }
    }

    async fn history_loop(self, shutdown: CancellationToken) {
        loop {
            match self.purge_history().await {
                Ok(purged) if purged.runs + purged.snapshots + purged.events > 0 => tracing::info!(
                    runs = purged.runs,
                    snapshots = purged.snapshots,
                    events = purged.events,
                    "purged history older than the retention"
                ),
                Ok(_) => {}
                Err(e) => tracing::error!(error = %e, "history purge failed; retrying"),
            }
            tokio::select! {
                () = shutdown.cancelled() => return,
                () = tokio::time::sleep(self.config.history_interval) => {}
            }
        }
    }

    async fn trusts_loop(self, shutdown: CancellationToken) {
        loop {
            match self.retire_trusts().await {
                Ok(r) if r.deleted + r.failed + r.tokens_dropped > 0 => tracing::info!(
                    deleted = r.deleted,
                    failed = r.failed,
                    tokens_dropped = r.tokens_dropped,
                    "retired trusts nothing refers to any more"
                ),
                Ok(_) => {}
                Err(e) => tracing::error!(error = %e, "trust retirement failed; retrying"),
            }
            tokio::select! {
                () = shutdown.cancelled() => return,
                () = tokio::time::sleep(self.config.trusts_interval) => {}
            }
        }
    }

    async fn sequencer_loop(self, shutdown: CancellationToken) {
        loop {
            match crate::store::events::sequence_events(&self.db).await {
                Ok(0) => {}
                Ok(n) => tracing::debug!(events = n, "sequenced events"),
                Err(e) => tracing::error!(error = %e, "event sequencing failed; retrying"),
            }
            tokio::select! {
                () = shutdown.cancelled() => return,
                () = tokio::time::sleep(self.config.sequence_interval) => {}
            }
        }
    }

    async fn joins_loop(self, shutdown: CancellationToken) {
        // Policies come due one by one: look often enough to find each in time.
        let pause =
            (self.config.join_interval / 10).clamp(Duration::from_secs(1), Duration::from_secs(30));
        loop {
            match self.watch_joins().await {
                Ok(joined) if joined.runs > 0 => {
                    tracing::info!(
                        runs = joined.runs,
                        resources = joined.resources,
                        "stored runs for resources that joined their policies"
                    );
                    self.wake.notify_waiters();
                }
                Ok(_) => {}
                Err(e) => {
                    tracing::error!(error = %e, "looking for joining resources failed; retrying")
                }
            }
            tokio::select! {
                () = shutdown.cancelled() => return,
                () = tokio::time::sleep(pause) => {}
            }
        }
    }

    async fn verify_loop(self, shutdown: CancellationToken) {
        let pause = (self.config.verify_interval / 10)
            .clamp(Duration::from_secs(1), Duration::from_secs(30));
        loop {
            match self.queue_restore_tests().await {
                Ok(queued) if queued.jobs > 0 => {
                    tracing::info!(
                        runs = queued.runs,
                        jobs = queued.jobs,
                        "queued restore tests of policies' newest snapshots"
                    );
                    self.wake.notify_waiters();
                }
                Ok(_) => {}
                Err(e) => tracing::error!(error = %e, "queueing restore tests failed; retrying"),
            }
            tokio::select! {
                () = shutdown.cancelled() => return,
                () = tokio::time::sleep(pause) => {}
            }
        }
    }

    async fn freshness_loop(self, shutdown: CancellationToken) {
        loop {
            match self.refresh_freshness().await {
                Ok(Some(policies)) => tracing::debug!(policies, "recomputed stale-resource counts"),
                Ok(None) => {}
                Err(e) => tracing::error!(error = %e, "stale-resource counts failed; retrying"),
            }
            match crate::store::metrics::fold_deltas(&self.db).await {
                Ok(folded) => tracing::debug!(folded, "folded metric deltas into their totals"),
                Err(e) => tracing::error!(error = %e, "folding metric deltas failed; retrying"),
            }
            tokio::select! {
                () = shutdown.cancelled() => return,
                () = tokio::time::sleep(self.config.freshness_interval) => {}
            }
        }
    }

    /// Recomputes the stale-resource count of every enabled policy (what
    /// `stacksnap_policy_stale_resources` exports), unless another replica did
    /// within half the interval. Returns the policies counted, `None` if skipped.
    ///
    /// # Errors
    /// The database fails.
    pub async fn refresh_freshness(&self) -> Result<Option<usize>, sqlx::Error> {
        let min_age =
            TimeDelta::from_std(self.config.freshness_interval / 2).unwrap_or(TimeDelta::zero());
        crate::store::freshness::refresh_stale_counts(&self.db, self.clock.now(), min_age).await
    }

    async fn worker_loop(self, shutdown: CancellationToken) {
        let idle_wait = self
            .config
            .poll_interval
            .to_std()
            .unwrap_or(Duration::from_secs(1))
            .min(Duration::from_secs(1));
        let pass = || async {
            match self.execute_next().await {
                Ok(Outcome::Worked) => Next::AtOnce,
                Ok(Outcome::Idle) => Next::Wait,
                Err(e) => {
                    tracing::error!(error = %e, "worker step failed; backing off");
                    Next::Backoff
                }
            }
        };
        while !shutdown.is_cancelled() && turn(&self.wake, idle_wait, &shutdown, pass()).await {}
    }
}

/// What a loop does after a pass.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Next {
    /// It found work: another pass at once.
    AtOnce,
    /// Nothing more was due: wait for a wake or the idle interval.
    Wait,
    /// The pass failed (the database, most likely): wait the idle interval
    /// whatever wakes come, so other loops' wakes cannot make it spin.
    Backoff,
}

/// One turn of a loop that a wake shortens: a pass over the database, then
/// (unless the pass asks to go on at once) a wait for `idle`, a wake or
/// shutdown. Returns `false` on shutdown.
///
/// The wake is taken before the pass: `Notify::notify_waiters` reaches only
/// the `Notified` futures that exist when it is called, so one made after the
/// pass would miss a wake sent during it (a run inserted, jobs resolved, by
/// this replica or through NOTIFY) and sleep a whole idle interval with work due.
async fn turn(
    wake: &Notify,
    idle: Duration,
    shutdown: &CancellationToken,
    pass: impl Future<Output = Next>,
) -> bool {
    let woken = wake.notified();
    match pass.await {
        Next::AtOnce => true,
        Next::Backoff => tokio::select! {
            () = shutdown.cancelled() => false,
            () = tokio::time::sleep(idle) => true,
        },
        Next::Wait => tokio::select! {
            () = shutdown.cancelled() => false,
            () = tokio::time::sleep(idle) => true,
            () = woken => true,
        },
    }
}

/// Wakes the loops on NOTIFY. Only a shortcut: without it (a pooler in
/// transaction mode) the loops still poll.
async fn listen(db: PgPool, wake: Arc<Notify>, shutdown: CancellationToken) {
    let channels = ["stacksnap_policy", "stacksnap_work"];
    crate::store::notices::listen(&db, &channels, &shutdown, |_| wake.notify_waiters()).await;
}

#[cfg(test)]
mod tests {
    use futures_util::FutureExt as _;

    use super::*;

    const AN_HOUR: Duration = Duration::from_secs(3600);

    #[tokio::test]
    async fn a_wake_sent_during_a_pass_ends_the_wait_after_it() {
        let (wake, shutdown) = (Notify::new(), CancellationToken::new());
        // Meanwhile another loop (or NOTIFY) finds work and wakes the others.
        let pass = async {
            wake.notify_waiters();
            Next::Wait
        };
        assert_eq!(
            turn(&wake, AN_HOUR, &shutdown, pass).now_or_never(),
            Some(true)
        );
    }

    #[tokio::test]
    async fn a_failed_pass_waits_out_its_interval_whatever_the_wakes() {
        let (wake, shutdown) = (Notify::new(), CancellationToken::new());
        // The database failed the pass while other loops keep waking.
        let pass = async {
            wake.notify_waiters();
            Next::Backoff
        };
        assert_eq!(turn(&wake, AN_HOUR, &shutdown, pass).now_or_never(), None);
    }

    #[tokio::test]
    async fn without_a_wake_an_idle_pass_waits() {
        let (wake, shutdown) = (Notify::new(), CancellationToken::new());
        let pass = async { Next::Wait };
        assert_eq!(turn(&wake, AN_HOUR, &shutdown, pass).now_or_never(), None);
    }

    #[tokio::test]
    async fn a_pass_that_found_work_goes_on_at_once() {
        let (wake, shutdown) = (Notify::new(), CancellationToken::new());
        let pass = async { Next::AtOnce };
        assert_eq!(
            turn(&wake, AN_HOUR, &shutdown, pass).now_or_never(),
            Some(true)
        );
    }

    #[tokio::test]
    async fn shutdown_ends_the_wait() {
        let (wake, shutdown) = (Notify::new(), CancellationToken::new());
        shutdown.cancel();
        let pass = async { Next::Wait };
        assert_eq!(
            turn(&wake, AN_HOUR, &shutdown, pass).now_or_never(),
            Some(false)
        );
    }
}
