//! The consistency a boot image gives, remembered for a short while per
//! project, so that a burst of server snapshots reads each boot image from
//! Glance once instead of once per job (issue 13: fewer calls to start a job).
//!
//! Why a short cache is safe: Nova does not read the live Glance image when it
//! snapshots. The libvirt driver's `snapshot` and `quiesce` use
//! `instance.image_meta`, the image properties copied into the instance's
//! system metadata at boot (nova/virt/libvirt/driver.py `snapshot`,
//! `_can_quiesce`). The Glance read is our proxy for those properties, and an
//! image's properties change rarely. A minute-old answer is as good as a fresh
//! one.
//!
//! Why per project: whether an image is visible at all (private, shared,
//! community) depends on the project asking. An answer read with one
//! project's authority is never given to another.

use std::{
    collections::HashMap,
    sync::{Arc, Mutex},
};

use chrono::{DateTime, TimeDelta, Utc};

use crate::{clock::Clock, domain::job::ObtainedConsistency};

/// How long a boot image's answer is reused.
pub const BOOT_IMAGE_TTL: TimeDelta = TimeDelta::seconds(60);

/// At most this many answers are kept. At the limit, the expired ones are
/// dropped first, then all of them: the cache bounds memory, not correctness.
const MAX_ENTRIES: usize = 10_000;

/// The consistency of each boot image read recently, keyed by project and image id.
#[derive(Debug, Clone)]
pub struct BootImages {
    clock: Arc<dyn Clock>,
    entries: Arc<Mutex<Answers>>,
}

impl BootImages {
    /// An empty cache whose answers expire by `clock`.
    pub fn new(clock: Arc<dyn Clock>) -> Self {
        Self {
            clock,
            entries: Arc::new(Mutex::new(Answers::new(BOOT_IMAGE_TTL, MAX_ENTRIES))),
        }
    }

    /// The consistency `image_id` gives, as read for `project_id` within the TTL.
    pub fn get(&self, project_id: &str, image_id: &str) -> Option<ObtainedConsistency> {
        let now = self.clock.now();
        self.lock().get(project_id, image_id, now)
    }

    /// Remembers what Glance said of `image_id` for `project_id`.
    pub fn put(&self, project_id: &str, image_id: &str, consistency: ObtainedConsistency) {
        let now = self.clock.now();
        self.lock().put(project_id, image_id, consistency, now);
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Answers> {
        // A panic while holding the lock leaves a map that is still valid.
        self.entries.lock().unwrap_or_else(|e| e.into_inner())
    }
}

/// The cached answers and their expiry rule: no I/O and no clock of its own.
#[derive(Debug)]
struct Answers {
    ttl: TimeDelta,
    capacity: usize,
    by_key: HashMap<(String, String), (DateTime<Utc>, ObtainedConsistency)>,
}

impl Answers {
    fn new(ttl: TimeDelta, capacity: usize) -> Self {
        Self {
            ttl,
            capacity,
            by_key: HashMap::new(),
        }
    }

    fn get(
        &self,
        project_id: &str,
        image_id: &str,
        now: DateTime<Utc>,
    ) -> Option<ObtainedConsistency> {
        self.by_key
            .get(&(project_id.to_owned(), image_id.to_owned()))
            .filter(|(read_at, _)| now < *read_at + self.ttl)
            .map(|(_, consistency)| *consistency)
    }

    fn put(
        &mut self,
        project_id: &str,
        image_id: &str,
        consistency: ObtainedConsistency,
        now: DateTime<Utc>,
    ) {
        if self.by_key.len() >= self.capacity {
            let ttl = self.ttl;
            self.by_key.retain(|_, (read_at, _)| now < *read_at + ttl);
            if self.by_key.len() >= self.capacity {
                self.by_key.clear();
            }
        }
        self.by_key.insert(
            (project_id.to_owned(), image_id.to_owned()),
            (now, consistency),
        );
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn at(seconds: i64) -> DateTime<Utc> {
        DateTime::from_timestamp(1_800_000_000 + seconds, 0).expect("a valid instant")
    }

    #[test]
    fn an_answer_is_reused_within_the_ttl_and_read_again_after_it() {
        let mut answers = Answers::new(TimeDelta::seconds(60), 10);
        answers.put("p1", "img", ObtainedConsistency::Quiesced, at(0));

        assert_eq!(
            answers.get("p1", "img", at(59)),
            Some(ObtainedConsistency::Quiesced)
        );
        assert_eq!(answers.get("p1", "img", at(60)), None);
    }

    #[test]
    fn an_answer_read_for_one_project_is_never_given_to_another() {
        let mut answers = Answers::new(TimeDelta::seconds(60), 10);
        answers.put("p1", "img", ObtainedConsistency::Quiesced, at(0));

        assert_eq!(answers.get("p2", "img", at(1)), None);
        assert_eq!(answers.get("p1", "other", at(1)), None);
    }

    #[test]
    fn at_capacity_the_expired_answers_go_first_then_all() {
        let mut answers = Answers::new(TimeDelta::seconds(60), 2);
        answers.put("p", "old", ObtainedConsistency::CrashConsistent, at(0));
        answers.put("p", "fresh", ObtainedConsistency::Quiesced, at(50));

        answers.put("p", "new", ObtainedConsistency::Unknown, at(70));
        assert_eq!(answers.by_key.len(), 2, "the expired one made room");
        assert_eq!(
            answers.get("p", "fresh", at(70)),
            Some(ObtainedConsistency::Quiesced)
        );

        answers.put("p", "newer", ObtainedConsistency::Unknown, at(71));
        assert_eq!(answers.by_key.len(), 1, "none expired: all were dropped");
        assert_eq!(
            answers.get("p", "newer", at(71)),
            Some(ObtainedConsistency::Unknown)
        );
    }
}
