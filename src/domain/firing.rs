//! What the scheduler does with a policy whose fire time has come: which
//! instant it fires, which it records as missed, and when it fires next.

use chrono::{DateTime, TimeDelta, Utc};

use super::{policy::MissedRun, schedule::ScheduleSet};

/// At most this many missed instants are recorded per catch-up; older ones are only logged.
pub const MAX_RECORDED_MISSES: usize = 100;

/// The scheduler's decision for one due policy.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FirePlan {
    /// The scheduled instant to fire a run for, if any.
    pub fire: Option<DateTime<Utc>>,
    /// Instants to record as `missed` runs (newest last, at most [`MAX_RECORDED_MISSES`]).
    pub missed: Vec<DateTime<Utc>>,
    /// Older missed instants, back to the policy's `next_run_at`, were left out:
    /// there were more than [`MAX_RECORDED_MISSES`].
    pub more_missed: bool,
    /// The policy's next fire time after `now`.
    pub next_run_at: Option<DateTime<Utc>>,
}

/// The fire times [`plan`] reads: a policy's schedules (or, in tests, a wrapper that counts).
pub trait FireTimes {
    /// The first fire time strictly after `after`.
    fn next_after(&self, after: DateTime<Utc>) -> Option<DateTime<Utc>>;
    /// The last fire time strictly before `before`.
    fn previous_before(&self, before: DateTime<Utc>) -> Option<DateTime<Utc>>;
}

impl FireTimes for ScheduleSet {
    fn next_after(&self, after: DateTime<Utc>) -> Option<DateTime<Utc>> {
        ScheduleSet::next_after(self, after).map(|f| f.at)
    }
    fn previous_before(&self, before: DateTime<Utc>) -> Option<DateTime<Utc>> {
        ScheduleSet::previous_before(self, before)
    }
}

/// Plans a due policy. `due` is its stored `next_run_at` (already `<= now`).
///
/// Every fire instant from `due` to `now` counts as passed. The newest one fires
/// when it is still within `start_window`, unless older instants were also passed
/// (the service was down) and the policy says `skip`; the newest
/// [`MAX_RECORDED_MISSES`] of the others are recorded as missed.
///
/// The scheduler plans while it holds the policy's row lock, so the work here is
/// bounded whatever the downtime: the newest instant is found from `now`
/// backwards, not by walking every instant since `due`, and the misses are
/// walked back from it only as far as they are recorded.
pub fn plan(
    schedules: &impl FireTimes,
    due: DateTime<Utc>,
    now: DateTime<Utc>,
    start_window: TimeDelta,
    missed_run: MissedRun,
) -> FirePlan {
    let newest = newest_passed(schedules, due, now);
    let in_window = now - newest <= start_window;
    let caught_up = newest > due;
    let fire = match (in_window, caught_up, missed_run) {
        (false, _, _) => None,
        (true, false, _) => Some(newest),
        (true, true, MissedRun::RunOnce) => Some(newest),
        (true, true, MissedRun::Skip) => None,
    };
    let (missed, more_missed) = misses(schedules, due, newest, fire.is_none());
    FirePlan {
        fire,
        missed,
        more_missed,
        next_run_at: schedules.next_after(now),
    }
}

/// The newest fire time in `[due, now]` by the forward rules (`next_after`, whose
/// DST handling fires a repeated hour once and a skipped one after the gap).
/// The search starts two instants back from `now`, so an odd backward answer
/// around a DST change is corrected by the forward steps that follow; it
/// starts at `due` when that is later.
fn newest_passed(
    schedules: &impl FireTimes,
    due: DateTime<Utc>,
    now: DateTime<Utc>,
) -> DateTime<Utc> {
    let start = schedules
        .previous_before(now)
        .and_then(|p| schedules.previous_before(p))
        .filter(|p| *p > due && *p <= now)
        .unwrap_or(due);
    let mut newest = start;
    // A handful of steps: from two instants back to now.
    while let Some(next) = schedules
        .next_after(newest)
        .filter(|t| *t <= now && *t > newest)
    {
        newest = next;
    }
    newest
}

/// The passed instants before `newest` (and `newest` itself unless it fires),
/// oldest first, at most [`MAX_RECORDED_MISSES`]; and whether older ones since
/// `due` were left out.
fn misses(
    schedules: &impl FireTimes,
    due: DateTime<Utc>,
    newest: DateTime<Utc>,
    newest_missed: bool,
) -> (Vec<DateTime<Utc>>, bool) {
    let mut missed = Vec::new();
    if newest_missed {
        missed.push(newest);
    }
    let mut cursor = newest;
    let earlier = |cursor: DateTime<Utc>| {
        schedules
            .previous_before(cursor)
            .filter(|t| *t >= due && *t < cursor)
    };
    while missed.len() < MAX_RECORDED_MISSES {
        match earlier(cursor) {
            Some(t) => {
                missed.push(t);
                cursor = t;
            }
            None => break,
        }
    }
    let more = missed.len() == MAX_RECORDED_MISSES && earlier(cursor).is_some();
    missed.reverse();
    (missed, more)
}

#[cfg(test)]
mod tests {
    use std::cell::Cell;

    use super::*;
    use crate::domain::schedule::CronSchedule;

    /// A schedule set that counts how many fire times were computed.
    struct Counting(ScheduleSet, Cell<usize>);

    impl FireTimes for Counting {
        fn next_after(&self, after: DateTime<Utc>) -> Option<DateTime<Utc>> {
            self.1.set(self.1.get() + 1);
            FireTimes::next_after(&self.0, after)
        }
        fn previous_before(&self, before: DateTime<Utc>) -> Option<DateTime<Utc>> {
            self.1.set(self.1.get() + 1);
            FireTimes::previous_before(&self.0, before)
        }
    }

    #[test]
    fn thirty_days_of_downtime_on_a_minutely_schedule_compute_a_bounded_number_of_instants() {
        // Arrange: the scheduler plans inside the transaction that locks the policy.
        let minutely = Counting(
            ScheduleSet::new(vec![CronSchedule::parse("* * * * *", "UTC").unwrap()]),
            Cell::new(0),
        );

        // Act
        let plan = plan(
            &minutely,
            t("2027-01-01T00:00:00Z"),
            t("2027-01-31T00:00:30Z"),
            TimeDelta::hours(1),
            MissedRun::RunOnce,
        );

        // Assert: one fire, the newest misses recorded, older ones only reported.
        assert_eq!(plan.fire, Some(t("2027-01-31T00:00:00Z")));
        assert_eq!(plan.missed.len(), MAX_RECORDED_MISSES);
        assert_eq!(*plan.missed.last().unwrap(), t("2027-01-30T23:59:00Z"));
        assert_eq!(plan.next_run_at, Some(t("2027-01-31T00:01:00Z")));
        assert!(
            minutely.1.get() <= MAX_RECORDED_MISSES + 10,
            "{} fire times computed for 43200 passed instants",
            minutely.1.get()
        );
    }

    fn hourly() -> ScheduleSet {
        ScheduleSet::new(vec![CronSchedule::parse("0 * * * *", "UTC").unwrap()])
    }

    fn t(text: &str) -> DateTime<Utc> {
        text.parse().unwrap()
    }

    #[test]
    fn an_on_time_fire_runs_and_moves_to_the_next_instant() {
        let plan = plan(
            &hourly(),
            t("2027-01-01T10:00:00Z"),
            t("2027-01-01T10:00:02Z"),
            TimeDelta::hours(1),
            MissedRun::Skip,
        );
        assert_eq!(plan.fire, Some(t("2027-01-01T10:00:00Z")));
        assert!(plan.missed.is_empty());
        assert_eq!(plan.next_run_at, Some(t("2027-01-01T11:00:00Z")));
    }

    #[test]
    fn after_downtime_run_once_fires_the_newest_instant_and_records_the_rest() {
        let plan = plan(
            &hourly(),
            t("2027-01-01T10:00:00Z"),
            t("2027-01-01T13:20:00Z"),
            TimeDelta::hours(1),
            MissedRun::RunOnce,
        );
        assert_eq!(plan.fire, Some(t("2027-01-01T13:00:00Z")));
        assert_eq!(
            plan.missed,
            [
                t("2027-01-01T10:00:00Z"),
                t("2027-01-01T11:00:00Z"),
                t("2027-01-01T12:00:00Z")
            ]
        );
        assert_eq!(plan.next_run_at, Some(t("2027-01-01T14:00:00Z")));
    }

    #[test]
    fn after_downtime_skip_records_every_instant_as_missed() {
        let plan = plan(
            &hourly(),
            t("2027-01-01T10:00:00Z"),
            t("2027-01-01T13:20:00Z"),
            TimeDelta::hours(1),
            MissedRun::Skip,
        );
        assert_eq!(plan.fire, None);
        assert_eq!(plan.missed.len(), 4);
    }

    #[test]
    fn an_instant_older_than_the_start_window_is_missed_either_way() {
        for policy in [MissedRun::RunOnce, MissedRun::Skip] {
            let plan = plan(
                &hourly(),
                t("2027-01-01T10:00:00Z"),
                t("2027-01-01T10:45:00Z"),
                TimeDelta::minutes(30),
                policy,
            );
            assert_eq!(plan.fire, None);
            assert_eq!(plan.missed, [t("2027-01-01T10:00:00Z")]);
        }
    }

    #[test]
    fn long_downtime_records_only_the_newest_misses_and_says_there_were_more() {
        let plan = plan(
            &hourly(),
            t("2027-01-01T00:00:00Z"),
            t("2027-01-31T00:30:00Z"),
            TimeDelta::hours(1),
            MissedRun::RunOnce,
        );
        assert_eq!(plan.fire, Some(t("2027-01-31T00:00:00Z")));
        assert_eq!(plan.missed.len(), MAX_RECORDED_MISSES);
        assert_eq!(*plan.missed.last().unwrap(), t("2027-01-30T23:00:00Z"));
        assert!(plan.more_missed);
    }

    #[test]
    fn exactly_as_many_misses_as_are_recorded_leave_none_out() {
        let due = t("2027-01-01T00:00:00Z");
        let plan = plan(
            &hourly(),
            due,
            due + TimeDelta::hours(MAX_RECORDED_MISSES as i64) + TimeDelta::minutes(5),
            TimeDelta::hours(1),
            MissedRun::RunOnce,
        );
        assert_eq!(plan.missed.len(), MAX_RECORDED_MISSES);
        assert_eq!(plan.missed[0], due);
        assert!(!plan.more_missed);
    }

    #[test]
    fn a_catch_up_across_a_repeated_hour_fires_its_first_occurrence_once() {
        // America/New_York repeats 01:00–02:00 on 2027-11-07: 01:30 EDT is 05:30Z, 01:30 EST 06:30Z.
        let daily = ScheduleSet::new(vec![
            CronSchedule::parse("30 1 * * *", "America/New_York").unwrap(),
        ]);
        let plan = plan(
            &daily,
            t("2027-11-05T05:30:00Z"),
            t("2027-11-07T06:45:00Z"),
            TimeDelta::hours(2),
            MissedRun::RunOnce,
        );
        assert_eq!(plan.fire, Some(t("2027-11-07T05:30:00Z")));
        assert_eq!(
            plan.missed,
            [t("2027-11-05T05:30:00Z"), t("2027-11-06T05:30:00Z")]
        );
        assert_eq!(plan.next_run_at, Some(t("2027-11-08T06:30:00Z")));
    }

    #[test]
    fn a_catch_up_across_a_skipped_hour_fires_after_the_gap() {
        // Europe/Berlin skips 02:00–03:00 on 2027-03-28: 02:30 fires at 03:00 CEST (01:00Z).
        let daily = ScheduleSet::new(vec![
            CronSchedule::parse("30 2 * * *", "Europe/Berlin").unwrap(),
        ]);
        let plan = plan(
            &daily,
            t("2027-03-26T01:30:00Z"),
            t("2027-03-28T01:10:00Z"),
            TimeDelta::hours(1),
            MissedRun::RunOnce,
        );
        assert_eq!(plan.fire, Some(t("2027-03-28T01:00:00Z")));
        assert_eq!(
            plan.missed,
            [t("2027-03-26T01:30:00Z"), t("2027-03-27T01:30:00Z")]
        );
    }
}
