//! Lazy, deterministic state timelines: a resource stores when each of its
//! states begins, and every read computes the current one from the clock.
//!
//! No background task ever changes a resource; it must not touch HTTP.

use std::time::{Duration, Instant};

/// The states of one resource over time, each beginning at an instant.
#[derive(Clone, Debug)]
pub(crate) struct Timeline<S> {
    steps: Vec<(Instant, S)>,
}

impl<S: Clone> Timeline<S> {
    /// A timeline that is in `initial` from `start` on.
    pub(crate) fn new(start: Instant, initial: S) -> Self {
        Self {
            steps: vec![(start, initial)],
        }
    }

    /// Appends `state`, beginning `after` the last step began.
    pub(crate) fn then(mut self, after: Duration, state: S) -> Self {
        self.push_after_last(after, state);
        self
    }

    /// Appends `state`, beginning `after` the last step began.
    pub(crate) fn push_after_last(&mut self, after: Duration, state: S) {
        let last = self.steps.last().map_or_else(Instant::now, |s| s.0);
        self.steps.push((last + after, state));
    }

    /// Appends `state`, beginning at `at` (not before the last step).
    pub(crate) fn push_at(&mut self, at: Instant, state: S) {
        let last = self.steps.last().map_or(at, |s| s.0);
        self.steps.push((at.max(last), state));
    }

    /// When the last planned step begins.
    pub(crate) fn settles_at(&self) -> Instant {
        self.steps.last().map_or_else(Instant::now, |s| s.0)
    }

    /// The state at `now`.
    pub(crate) fn at(&self, now: Instant) -> S {
        self.current(now).1.clone()
    }

    /// When the state current at `now` began.
    pub(crate) fn since(&self, now: Instant) -> Instant {
        self.current(now).0
    }

    fn current(&self, now: Instant) -> &(Instant, S) {
        self.steps
            .iter()
            .rev()
            .find(|(at, _)| *at <= now)
            .unwrap_or(&self.steps[0])
    }

    /// Whether a later state is still planned after `now`.
    pub(crate) fn pending(&self, now: Instant) -> bool {
        self.steps.iter().any(|(at, _)| *at > now)
    }

    /// Forgets every planned step after `now` and enters `state` at `now`.
    pub(crate) fn rewrite(&mut self, now: Instant, state: S) {
        self.steps.retain(|(at, _)| *at <= now);
        self.steps.push((now, state));
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn timeline_reports_the_state_of_each_instant() {
        // Arrange
        let t0 = Instant::now();
        let tl = Timeline::new(t0, "creating").then(Duration::from_secs(2), "available");

        // Act / Assert
        assert_eq!(tl.at(t0), "creating");
        assert_eq!(tl.at(t0 + Duration::from_secs(1)), "creating");
        assert_eq!(tl.at(t0 + Duration::from_secs(2)), "available");
        assert!(tl.pending(t0));
        assert!(!tl.pending(t0 + Duration::from_secs(3)));
    }

    #[test]
    fn rewrite_drops_planned_steps() {
        let t0 = Instant::now();
        let mut tl = Timeline::new(t0, 1).then(Duration::from_secs(5), 2);
        tl.rewrite(t0 + Duration::from_secs(1), 3);
        assert_eq!(tl.at(t0 + Duration::from_secs(10)), 3);
    }
}
