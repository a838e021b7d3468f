//! The current time, injected so schedules, timeouts and retention can be tested without sleeping.

use std::sync::{
    Arc, Mutex, Weak,
    atomic::{AtomicI64, Ordering},
};

use chrono::{DateTime, TimeDelta, Utc};
use sqlx::PgPool;

/// A source of the current instant.
pub trait Clock: Send + Sync + std::fmt::Debug {
    /// Now.
    fn now(&self) -> DateTime<Utc>;
}

/// The system clock.
#[derive(Debug, Default, Clone, Copy)]
pub struct SystemClock;

impl Clock for SystemClock {
    fn now(&self) -> DateTime<Utc> {
        Utc::now()
    }
}

/// A clock that stands still until told to move; for tests.
#[derive(Debug, Clone)]
pub struct ManualClock(Arc<Mutex<DateTime<Utc>>>);

impl ManualClock {
    /// A clock showing `at`.
    pub fn new(at: DateTime<Utc>) -> Self {
        Self(Arc::new(Mutex::new(at)))
    }

    /// Moves the clock to `at`.
    pub fn set(&self, at: DateTime<Utc>) {
        *self.0.lock().unwrap_or_else(|e| e.into_inner()) = at;
    }

    /// Moves the clock forward by `by`.
    pub fn advance(&self, by: chrono::TimeDelta) {
        let mut now = self.0.lock().unwrap_or_else(|e| e.into_inner());
        *now += by;
    }
}

impl Clock for ManualClock {
    fn now(&self) -> DateTime<Utc> {
        *self.0.lock().unwrap_or_else(|e| e.into_inner())
    }
}

/// The clock a replica runs on: the database's. Leases, deadlines and run
/// timestamps are compared across replicas, so they must come from one clock;
/// a replica whose own clock is 40 s ahead would otherwise take over live leases.
///
/// In production `local` is the system clock and the result is the database's
/// time; in tests it can be a [`ManualClock`], whose moves then apply as an
/// offset to the database's time.
///
/// # Errors
/// The database does not answer the first reading.
pub async fn replica_clock(
    db: &PgPool,
    local: Arc<dyn Clock>,
) -> Result<Arc<DatabaseClock>, sqlx::Error> {
    let clock = Arc::new(DatabaseClock {
        local,
        offset_micros: AtomicI64::new(0),
    });
    clock.sync(db).await?;
    tokio::spawn(keep_in_sync(Arc::downgrade(&clock), db.clone()));
    Ok(clock)
}

/// How often a replica reads the database's clock again: a step of the local
/// clock (NTP) between two readings shows for at most this long.
const SYNC_EVERY: std::time::Duration = std::time::Duration::from_secs(10);

/// The local clock corrected by its offset from the database's, read every [`SYNC_EVERY`].
#[derive(Debug)]
pub struct DatabaseClock {
    local: Arc<dyn Clock>,
    offset_micros: AtomicI64,
}

impl DatabaseClock {
    /// Reads the database's clock and records the local clock's offset from it,
    /// taking the local reading halfway through the round trip.
    ///
    /// # Errors
    /// The database does not answer.
    pub async fn sync(&self, db: &PgPool) -> Result<(), sqlx::Error> {
        // Only the query is timed: waiting for a connection is not round trip.
        let mut connection = db.acquire().await?;
        let before = self.local.now();
        let database: DateTime<Utc> = sqlx::query_scalar("SELECT clock_timestamp()")
            .fetch_one(&mut *connection)
            .await?;
        let after = self.local.now();
        let local = before + (after - before) / 2;
        let offset = (database - local).num_microseconds().unwrap_or(i64::MAX);
        self.offset_micros.store(offset, Ordering::Relaxed);
        Ok(())
    }
}

impl Clock for DatabaseClock {
    fn now(&self) -> DateTime<Utc> {
        let offset = TimeDelta::microseconds(self.offset_micros.load(Ordering::Relaxed));
        self.local.now() + offset
    }
}

/// Re-reads the database's clock until the clock is dropped. A failed reading
/// keeps the last offset: the database is away, and nothing is leased meanwhile.
async fn keep_in_sync(clock: Weak<DatabaseClock>, db: PgPool) {
    loop {
        tokio::time::sleep(SYNC_EVERY).await;
        let Some(clock) = clock.upgrade() else { return };
        if let Err(e) = clock.sync(&db).await {
            tracing::warn!(error = %e, "cannot read the database's clock; keeping the last offset");
        }
    }
}
