//! News that a job has ended, for the requests waiting on it (`?wait=`): the
//! engine of this replica tells [`JobEvents`] as it records the end, and
//! [`listen`] passes on the `stacksnap_job_done` notices that every replica's
//! database transaction ending a job sends (a trigger on `job`). Both only
//! shorten the wait: a waiting request still reads its job now and then, so
//! it is answered behind a pooler that drops LISTEN too.

use std::{
    collections::HashMap,
    sync::{Arc, Mutex, MutexGuard},
};

use sqlx::PgPool;
use tokio::sync::watch;
use tokio_util::sync::CancellationToken;
use uuid::Uuid;

/// The channel the database notifies, with the job's id as payload, when a job ends.
pub const JOB_DONE_CHANNEL: &str = "stacksnap_job_done";

/// Who waits on which job; cheap to clone, shared by the API and the engine of one replica.
#[derive(Debug, Clone, Default)]
pub struct JobEvents {
    waiting: Arc<Mutex<HashMap<Uuid, watch::Sender<u64>>>>,
}

impl JobEvents {
    /// Starts watching `job_id`. Watch before reading the job: an end recorded
    /// after that read is then never missed.
    pub fn watch(&self, job_id: Uuid) -> JobWatch {
        let receiver = self
            .lock()
            .entry(job_id)
            .or_insert_with(|| watch::channel(0).0)
            .subscribe();
        JobWatch {
            events: self.clone(),
            job_id,
            receiver,
        }
    }

    /// Tells whoever watches `job_id` that it has ended; nothing when nobody does.
    pub fn ended(&self, job_id: Uuid) {
        if let Some(sender) = self.lock().get(&job_id) {
            sender.send_modify(|count| *count += 1);
        }
    }

    /// How many jobs are watched now.
    pub fn watched(&self) -> usize {
        self.lock().len()
    }

    fn lock(&self) -> MutexGuard<'_, HashMap<Uuid, watch::Sender<u64>>> {
        // A panic while holding this lock leaves the map whole: keep using it.
        self.waiting.lock().unwrap_or_else(|e| e.into_inner())
    }
}

/// One waiter's view of one job; it stops watching when dropped.
#[derive(Debug)]
pub struct JobWatch {
    events: JobEvents,
    job_id: Uuid,
    receiver: watch::Receiver<u64>,
}

impl JobWatch {
    /// Returns once the job is said to have ended since the last call (or since
    /// the watch began). Never returns while nothing is said.
    pub async fn ended(&mut self) {
        if self.receiver.changed().await.is_err() {
            // The sender lives in the map while this watch exists; wait on regardless.
            std::future::pending::<()>().await;
        }
    }
}

impl Drop for JobWatch {
    fn drop(&mut self) {
        let mut waiting = self.events.lock();
        // This watch's receiver is still alive here: it is the last one when the count is 1.
        if waiting
            .get(&self.job_id)
            .is_some_and(|sender| sender.receiver_count() <= 1)
        {
            waiting.remove(&self.job_id);
        }
    }
}

/// Passes the database's `stacksnap_job_done` notices to `events` until
/// `shutdown`, connecting again after a pause when the connection is lost.
pub async fn listen(db: PgPool, events: JobEvents, shutdown: CancellationToken) {
    crate::store::notices::listen(&db, &[JOB_DONE_CHANNEL], &shutdown, |notice| {
        match notice.payload().parse::<Uuid>() {
            Ok(job_id) => events.ended(job_id),
            Err(_) => tracing::warn!(
                payload = notice.payload(),
                "a job-done notice without a job id"
            ),
        }
    })
    .await;
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use super::*;

    async fn woken(watch: &mut JobWatch) -> bool {
        tokio::time::timeout(Duration::from_millis(50), watch.ended())
            .await
            .is_ok()
    }

    #[tokio::test]
    async fn a_watch_is_woken_by_its_own_job_only_and_never_misses_an_end() {
        let events = JobEvents::default();
        let (mine, other) = (Uuid::now_v7(), Uuid::now_v7());
        let mut watch = events.watch(mine);

        events.ended(other);
        assert!(!woken(&mut watch).await, "another job's end");
        // Said before the waiter looks: still seen.
        events.ended(mine);
        assert!(woken(&mut watch).await);
        assert!(!woken(&mut watch).await, "each end is seen once");
    }

    #[tokio::test]
    async fn dropping_the_last_watch_of_a_job_forgets_it() {
        let events = JobEvents::default();
        let job = Uuid::now_v7();
        let first = events.watch(job);
        let second = events.watch(job);
        assert_eq!(events.watched(), 1);

        drop(first);
        assert_eq!(events.watched(), 1, "one still watches");
        drop(second);
        assert_eq!(events.watched(), 0);
        events.ended(job);
    }
}
