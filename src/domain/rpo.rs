//! A policy's recovery point objective (RPO): how old its newest snapshot of a
//! target may be before the target counts as stale.
//!
//! Written as `options.rpo`, or by default the longest gap between consecutive
//! fire times of the policy's schedules over the next year, plus its timeout
//! (a snapshot may finish up to a timeout after its fire time).

use chrono::{DateTime, TimeDelta, Utc};

use super::schedule::ScheduleSet;

/// How far ahead the default RPO looks for the longest gap.
pub const HORIZON: TimeDelta = TimeDelta::days(366);

/// Fire times walked one by one before the search starts to jump: enough to
/// see every gap of a day's or a week's pattern exactly for most schedules.
pub const EXACT_STEPS: usize = 2_000;

/// The shortest jump after [`EXACT_STEPS`]: it bounds the work to about
/// 8,800 look-ups a year per schedule, whatever the schedule (a `* * * * *`
/// walked minute by minute would take 525,600).
pub const MIN_JUMP: TimeDelta = TimeDelta::hours(1);

/// The longest gap between consecutive fire times of `schedules` whose first
/// fire time falls within [`HORIZON`] after `from` (the gap may end after it).
/// `None` when the set fires less than twice.
///
/// Exact when the longest gap is over [`MIN_JUMP`] or shows among the first
/// [`EXACT_STEPS`] fire times; otherwise a gap shorter than `MIN_JUMP` that
/// first appears later may be missed, so the answer is then short by under an hour.
///
/// Why jumping finds every long gap: the search probes instants `c`, measures
/// the gap around each (the last fire time at or before `c` to the first
/// after it), and moves on by at most the longest gap `g` found so far (or
/// `MIN_JUMP`, whichever is longer). A gap longer than that step cannot be
/// jumped over: some probe lands inside it and measures it.
pub fn longest_gap(schedules: &ScheduleSet, from: DateTime<Utc>) -> Option<TimeDelta> {
    let end = from + HORIZON;
    let first = schedules.next_after(from)?.at;
    let (mut probe, mut previous) = (first, first);
    let mut longest: Option<TimeDelta> = None;
    let mut steps = 0usize;
    // Every gap measured starts at or before `end`: `previous <= probe <= end`.
    while probe <= end {
        let next = schedules.next_after(probe)?.at;
        let gap = next - previous;
        longest = Some(longest.map_or(gap, |l| l.max(gap)));
        steps += 1;
        let jump = if steps < EXACT_STEPS {
            TimeDelta::zero()
        } else {
            longest.unwrap_or(MIN_JUMP).max(MIN_JUMP)
        };
        // The last probe sits at `end`, to measure a gap that starts before it.
        let target = (probe + jump).min(end);
        if target <= next {
            (probe, previous) = (next, next);
        } else {
            probe = target;
            // Fire times are whole minutes: a second later finds one at `probe` itself.
            previous = schedules
                .previous_before(probe + TimeDelta::seconds(1))
                .unwrap_or(next);
        }
    }
    longest
}

/// The default RPO: the longest gap ([`longest_gap`]) plus `timeout`; a set
/// that fires once at most has the horizon as its gap.
pub fn default_rpo(schedules: &ScheduleSet, timeout: TimeDelta, from: DateTime<Utc>) -> TimeDelta {
    longest_gap(schedules, from).unwrap_or(HORIZON) + timeout
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::domain::schedule::CronSchedule;

    fn set(crons: &[(&str, &str)]) -> ScheduleSet {
        ScheduleSet::new(
            crons
                .iter()
                .map(|(c, tz)| CronSchedule::parse(c, tz).unwrap())
                .collect(),
        )
    }

    fn from() -> DateTime<Utc> {
        "2026-11-25T12:00:00Z".parse().unwrap()
    }

    fn gap(crons: &[(&str, &str)]) -> TimeDelta {
        longest_gap(&set(crons), from()).unwrap()
    }

    #[test]
    fn a_daily_schedule_has_a_day_between_fires() {
        assert_eq!(gap(&[("0 2 * * *", "UTC")]), TimeDelta::days(1));
    }

    #[test]
    fn weekdays_only_leave_the_weekend_as_the_longest_gap() {
        // Friday 18:00 to Monday 09:00.
        assert_eq!(gap(&[("0 9,18 * * 1-5", "UTC")]), TimeDelta::hours(63));
    }

    #[test]
    fn a_union_fills_the_gaps_of_its_members() {
        assert_eq!(
            gap(&[("0 0 * * *", "UTC"), ("0 12 * * *", "UTC")]),
            TimeDelta::hours(12)
        );
    }

    #[test]
    fn a_dst_change_lengthens_a_local_daily_gap_by_an_hour() {
        // Berlin falls back on 2027-10-31: 02:00 CEST to 02:00 CET is 25 hours.
        assert_eq!(gap(&[("0 2 * * *", "Europe/Berlin")]), TimeDelta::hours(25));
    }

    #[test]
    fn every_minute_is_cheap_and_exact() {
        let started = std::time::Instant::now();
        assert_eq!(gap(&[("* * * * *", "UTC")]), TimeDelta::minutes(1));
        assert!(started.elapsed() < std::time::Duration::from_secs(2));
    }

    #[test]
    fn a_dense_schedule_in_two_months_finds_the_months_between() {
        // Every minute in January and July only: the longest gap runs from
        // Jul 31 23:59 to Jan 1 00:00 (153 days, longer than February to June),
        // found by jumping long after the exact steps ran out.
        let longest = gap(&[("* * * 1,7 *", "UTC")]);
        let end: DateTime<Utc> = "2028-01-01T00:00:00Z".parse().unwrap();
        let start: DateTime<Utc> = "2027-07-31T23:59:00Z".parse().unwrap();
        assert_eq!(longest, end - start);
    }

    #[test]
    fn a_yearly_schedule_has_a_year_between_fires() {
        assert_eq!(gap(&[("@yearly", "UTC")]), TimeDelta::days(365));
    }

    #[test]
    fn the_default_rpo_adds_the_timeout() {
        assert_eq!(
            default_rpo(&set(&[("@daily", "UTC")]), TimeDelta::hours(2), from()),
            TimeDelta::hours(26)
        );
    }
}
