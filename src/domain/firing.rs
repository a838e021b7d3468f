//! What the scheduler does with a policy whose fire time has come: which
//! instant it fires, which it records as missed, and when it fires next.

use std::collections::VecDeque;

use chrono::{DateTime, TimeDelta, Utc};

use super::{policy::MissedRun, schedule::ScheduleSet};

/// At most this many missed instants are recorded per catch-up; older ones are only counted.
pub const MAX_RECORDED_MISSES: usize = 100;

/// The scheduler's decision for one due policy.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FirePlan {
    /// The scheduled instant to fire a run for, if any.
    pub fire: Option<DateTime<Utc>>,
    /// Instants to record as `missed` runs (newest last, at most [`MAX_RECORDED_MISSES`]).
    pub missed: Vec<DateTime<Utc>>,
    /// Missed instants not recorded because there were too many.
    pub missed_unrecorded: usize,
    /// The policy's next fire time after `now`.
    pub next_run_at: Option<DateTime<Utc>>,
}

/// Plans a due policy. `due` is its stored `next_run_at` (already `<= now`).
///
/// Every fire instant from `due` to `now` is considered. The newest one fires when
/// it is still within `start_window`, unless older instants were also passed
/// (the service was down) and the policy says `skip`; every other instant is
/// recorded as missed.
pub fn plan(
    schedules: &ScheduleSet,
    due: DateTime<Utc>,
    now: DateTime<Utc>,
    start_window: TimeDelta,
    missed_run: MissedRun,
) -> FirePlan {
    // Walk every passed instant once, keeping only the newest few.
    let mut passed: VecDeque<DateTime<Utc>> = VecDeque::from([due]);
    let mut total_passed = 1;
    let mut cursor = due;
    while let Some(next) = schedules
        .next_after(cursor)
        .map(|f| f.at)
        .filter(|t| *t <= now)
    {
        total_passed += 1;
        passed.push_back(next);
        if passed.len() > MAX_RECORDED_MISSES + 1 {
            passed.pop_front();
        }
        cursor = next;
    }
    let newest = *passed.back().expect("due is in the list");
    let in_window = now - newest <= start_window;
    let caught_up = total_passed > 1;
    let fire = match (in_window, caught_up, missed_run) {
        (false, _, _) => None,
        (true, false, _) => Some(newest),
        (true, true, MissedRun::RunOnce) => Some(newest),
        (true, true, MissedRun::Skip) => None,
    };
    let mut missed: Vec<DateTime<Utc>> = passed.into_iter().filter(|t| Some(*t) != fire).collect();
    let missed_total = total_passed - usize::from(fire.is_some());
    if missed.len() > MAX_RECORDED_MISSES {
        missed.drain(..missed.len() - MAX_RECORDED_MISSES);
    }
    FirePlan {
        fire,
        missed_unrecorded: missed_total.saturating_sub(missed.len()),
        missed,
        next_run_at: schedules.next_after(now).map(|f| f.at),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::domain::schedule::CronSchedule;

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
    fn long_downtime_records_only_the_newest_misses_and_counts_the_rest() {
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
        assert_eq!(plan.missed.len() + plan.missed_unrecorded, 30 * 24);
    }
}
