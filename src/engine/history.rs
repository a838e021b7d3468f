//! History retention: the periodic pass that purges finished runs with their jobs,
//! the rows of snapshots deleted long ago and old events, so the tables (and every query
//! that walks them) stop growing with the service's age. The SQL, and the rule
//! that nothing still named by a live row goes, are in `store::history`.

use super::Engine;
use crate::store::history;

/// Batches one pass deletes of each kind at most; the rest waits for the next pass.
const MAX_BATCHES: u32 = 20;

/// What one pass purged.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub struct Purged {
    /// Runs, each with its jobs.
    pub runs: u64,
    /// Rows of deleted snapshots.
    pub snapshots: u64,
    /// Events older than the retention.
    pub events: u64,
}

impl Engine {
    /// Purges history older than the retention, in batches. Deleted snapshot
    /// rows go first, so that the runs they named can go in the same pass.
    ///
    /// # Errors
    /// The database fails; what was deleted stays deleted.
    pub async fn purge_history(&self) -> Result<Purged, sqlx::Error> {
        let cutoff = self.clock.now() - self.config.history_retention;
        let batch = self.config.history_batch.max(1);
        let mut purged = Purged::default();
        for _ in 0..MAX_BATCHES {
            let n = history::purge_deleted_snapshots(&self.db, cutoff, batch).await?;
            purged.snapshots += n;
            if n < batch as u64 {
                break;
            }
        }
        for _ in 0..MAX_BATCHES {
            let n = history::purge_finished_runs(&self.db, cutoff, batch).await?;
            purged.runs += n;
            if n < batch as u64 {
                break;
            }
        }
        for _ in 0..MAX_BATCHES {
            let n = history::purge_old_events(&self.db, cutoff, batch).await?;
            purged.events += n;
            if n < batch as u64 {
                break;
            }
        }
        Ok(purged)
    }
}
