//! Cron schedules evaluated in an IANA time zone, and the union of several.
//!
//! DST rules: a fire time that falls in a gap (clocks jump forward) fires at
//! the first instant after the gap; a local time that occurs twice (clocks go
//! back) fires once, at its first occurrence. `croner` implements both.

use chrono::{DateTime, Utc};
use chrono_tz::Tz;
use croner::{
    Cron,
    parser::{CronParser, Seconds, Year},
};
use serde::{Deserialize, Deserializer, Serialize, Serializer};

/// The shorthands accepted in place of five fields.
const SHORTHANDS: [&str; 6] = [
    "@hourly",
    "@daily",
    "@weekly",
    "@monthly",
    "@yearly",
    "@annually",
];

/// One cron expression bound to the time zone it is read in. It keeps the
/// expression as written, and is stored and shown as `{"cron", "timezone"}`.
#[derive(Debug, Clone)]
pub struct CronSchedule {
    expression: String,
    cron: Cron,
    timezone: Tz,
}

impl PartialEq for CronSchedule {
    fn eq(&self, other: &Self) -> bool {
        self.expression == other.expression && self.timezone == other.timezone
    }
}

impl Eq for CronSchedule {}

/// One fire time of a set of schedules.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct FireTime {
    /// The instant the policy fires.
    pub at: DateTime<Utc>,
    /// Index of the first schedule in the set that fires at this instant.
    pub schedule: usize,
}

/// Parses a standard five-field cron expression (or a shorthand such as `@daily`).
///
/// # Errors
/// A message naming what is wrong with the expression.
pub fn parse_cron(expression: &str) -> Result<Cron, String> {
    let trimmed = expression.trim();
    if trimmed.is_empty() {
        return Err("must not be empty".into());
    }
    if trimmed.starts_with('@') {
        if !SHORTHANDS.iter().any(|s| s.eq_ignore_ascii_case(trimmed)) {
            return Err(format!(
                "unknown shorthand {trimmed:?}: use @hourly, @daily, @weekly, @monthly or @yearly"
            ));
        }
    } else {
        let fields = trimmed.split_whitespace().count();
        if fields != 5 {
            return Err(format!(
                "expected 5 fields (minute hour day-of-month month day-of-week), found {fields}"
            ));
        }
    }
    CronParser::builder()
        .seconds(Seconds::Disallowed)
        .year(Year::Disallowed)
        .build()
        .parse(trimmed)
        .map_err(|e| format!("invalid cron expression: {e}"))
}

/// Parses an IANA time zone name such as `Europe/Berlin` or `UTC`.
///
/// # Errors
/// A message saying the zone is unknown.
pub fn parse_timezone(name: &str) -> Result<Tz, String> {
    name.parse::<Tz>().map_err(|_| {
        format!("unknown time zone {name:?}: use an IANA name such as \"Europe/Berlin\" or \"UTC\"")
    })
}

impl CronSchedule {
    /// Parses an expression and binds it to its zone.
    ///
    /// # Errors
    /// What is wrong with the expression, or with the zone's name.
    pub fn parse(expression: &str, timezone: &str) -> Result<Self, ScheduleError> {
        let cron = parse_cron(expression).map_err(ScheduleError::Cron);
        let timezone = parse_timezone(timezone).map_err(ScheduleError::Timezone);
        match (cron, timezone) {
            (Ok(cron), Ok(timezone)) => Ok(Self::new(expression, cron, timezone)),
            (Err(e), _) | (_, Err(e)) => Err(e),
        }
    }

    /// Binds an expression already parsed to its zone.
    pub fn new(expression: &str, cron: Cron, timezone: Tz) -> Self {
        Self {
            expression: expression.to_owned(),
            cron,
            timezone,
        }
    }

    /// The expression as written.
    pub fn expression(&self) -> &str {
        &self.expression
    }

    /// The time zone the expression is read in.
    pub fn timezone(&self) -> Tz {
        self.timezone
    }

    /// The first fire time strictly after `after`, or `None` when it never fires again.
    pub fn next_after(&self, after: DateTime<Utc>) -> Option<DateTime<Utc>> {
        let local = after.with_timezone(&self.timezone);
        self.cron
            .find_next_occurrence(&local, false)
            .ok()
            .map(|t| t.with_timezone(&Utc))
    }
}

impl CronSchedule {
    /// The last fire time strictly before `before`, or `None` when there is none.
    pub fn previous_before(&self, before: DateTime<Utc>) -> Option<DateTime<Utc>> {
        let local = before.with_timezone(&self.timezone);
        self.cron
            .find_previous_occurrence(&local, false)
            .ok()
            .map(|t| t.with_timezone(&Utc))
    }
}

/// Why a schedule was refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ScheduleError {
    #[error("{0}")]
    Cron(String),
    #[error("{0}")]
    Timezone(String),
}

/// A schedule as written: stored and shown in this form.
#[derive(Serialize, Deserialize)]
struct Written<'a> {
    #[serde(borrow)]
    cron: std::borrow::Cow<'a, str>,
    #[serde(borrow, default = "utc")]
    timezone: std::borrow::Cow<'a, str>,
}

fn utc() -> std::borrow::Cow<'static, str> {
    "UTC".into()
}

impl Serialize for CronSchedule {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        Written {
            cron: self.expression.as_str().into(),
            timezone: self.timezone.name().into(),
        }
        .serialize(serializer)
    }
}

impl<'de> Deserialize<'de> for CronSchedule {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        let written = Written::deserialize(deserializer)?;
        Self::parse(&written.cron, &written.timezone)
            .map_err(|e| serde::de::Error::custom(format!("schedule {:?}: {e}", written.cron)))
    }
}

/// Several schedules that fire as the union of their times, once per instant.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(transparent)]
pub struct ScheduleSet(Vec<CronSchedule>);

impl ScheduleSet {
    /// Builds a set; the order gives each schedule its index.
    pub fn new(schedules: Vec<CronSchedule>) -> Self {
        Self(schedules)
    }

    /// The schedules in order.
    pub fn schedules(&self) -> &[CronSchedule] {
        &self.0
    }

    /// The first fire time strictly after `after` across all schedules.
    pub fn next_after(&self, after: DateTime<Utc>) -> Option<FireTime> {
        self.0
            .iter()
            .enumerate()
            .filter_map(|(index, s)| {
                s.next_after(after).map(|at| FireTime {
                    at,
                    schedule: index,
                })
            })
            // min_by_key keeps the first of equal instants: the lowest schedule index.
            .min_by_key(|f| f.at)
    }

    /// The last fire time strictly before `before` across all schedules.
    pub fn previous_before(&self, before: DateTime<Utc>) -> Option<DateTime<Utc>> {
        self.0
            .iter()
            .filter_map(|s| s.previous_before(before))
            .max()
    }

    /// Up to `count` fire times strictly after `after`, in order, without repeats.
    pub fn upcoming(&self, after: DateTime<Utc>, count: usize) -> Vec<FireTime> {
        std::iter::successors(self.next_after(after), |prev| self.next_after(prev.at))
            .take(count)
            .collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn schedule(cron: &str, tz: &str) -> CronSchedule {
        CronSchedule::parse(cron, tz).unwrap()
    }

    fn utc(text: &str) -> DateTime<Utc> {
        text.parse().unwrap()
    }

    fn fire_times(set: &ScheduleSet, after: &str, count: usize) -> Vec<String> {
        set.upcoming(utc(after), count)
            .iter()
            .map(|f| f.at.to_rfc3339_opts(chrono::SecondsFormat::Secs, true))
            .collect()
    }

    #[test]
    fn daily_time_in_a_spring_forward_gap_fires_at_the_first_instant_after_it() {
        // Europe/Berlin skips 02:00–03:00 on 2027-03-28.
        let set = ScheduleSet::new(vec![schedule("30 2 * * *", "Europe/Berlin")]);
        assert_eq!(
            fire_times(&set, "2027-03-26T12:00:00Z", 3),
            [
                "2027-03-27T01:30:00Z", // 02:30 CET
                "2027-03-28T01:00:00Z", // 03:00 CEST, the end of the gap
                "2027-03-29T00:30:00Z", // 02:30 CEST
            ]
        );
    }

    #[test]
    fn daily_time_in_a_repeated_hour_fires_once_at_its_first_occurrence() {
        // America/New_York repeats 01:00–02:00 on 2027-11-07.
        let set = ScheduleSet::new(vec![schedule("30 1 * * *", "America/New_York")]);
        assert_eq!(
            fire_times(&set, "2027-11-06T00:00:00Z", 3),
            [
                "2027-11-06T05:30:00Z", // 01:30 EDT
                "2027-11-07T05:30:00Z", // 01:30 EDT, not again at 01:30 EST
                "2027-11-08T06:30:00Z", // 01:30 EST
            ]
        );
    }

    #[test]
    fn a_start_inside_the_repeated_hour_does_not_fire_the_second_occurrence() {
        let set = ScheduleSet::new(vec![schedule("30 1 * * *", "America/New_York")]);
        // 05:45Z is 01:45 EDT, after the first 01:30; the second 01:30 (EST) is 06:30Z.
        assert_eq!(
            fire_times(&set, "2027-11-07T05:45:00Z", 1),
            ["2027-11-08T06:30:00Z"]
        );
    }

    #[test]
    fn steps_ranges_and_names_are_understood() {
        let every_quarter = ScheduleSet::new(vec![schedule("*/15 * * * *", "UTC")]);
        assert_eq!(
            fire_times(&every_quarter, "2027-01-01T00:07:00Z", 3),
            [
                "2027-01-01T00:15:00Z",
                "2027-01-01T00:30:00Z",
                "2027-01-01T00:45:00Z"
            ]
        );
        // 2027-01-01 is a Friday.
        let named = ScheduleSet::new(vec![schedule("0 9 * JAN,FEB MON-WED", "UTC")]);
        assert_eq!(
            fire_times(&named, "2027-01-01T00:00:00Z", 3),
            [
                "2027-01-04T09:00:00Z",
                "2027-01-05T09:00:00Z",
                "2027-01-06T09:00:00Z"
            ]
        );
    }

    #[test]
    fn weekly_shorthand_fires_sunday_midnight_in_the_zone() {
        let set = ScheduleSet::new(vec![schedule("@weekly", "Asia/Tokyo")]);
        assert_eq!(
            fire_times(&set, "2027-01-01T00:00:00Z", 2),
            ["2027-01-02T15:00:00Z", "2027-01-09T15:00:00Z"]
        );
    }

    #[test]
    fn a_union_fires_each_instant_once_and_names_the_first_schedule() {
        let set = ScheduleSet::new(vec![
            schedule("0 */6 * * *", "UTC"),
            schedule("0 0,3 * * *", "UTC"),
        ]);
        let fires = set.upcoming(utc("2027-01-01T00:00:00Z"), 4);
        let got: Vec<(String, usize)> = fires
            .iter()
            .map(|f| (f.at.format("%dT%H").to_string(), f.schedule))
            .collect();
        assert_eq!(
            got,
            [
                ("01T03".to_string(), 1),
                ("01T06".to_string(), 0),
                ("01T12".to_string(), 0),
                ("01T18".to_string(), 0),
            ]
        );
        let midnight = set.next_after(utc("2027-01-01T23:00:00Z")).unwrap();
        assert_eq!(
            midnight.schedule, 0,
            "both fire at 00:00; the first schedule is named"
        );
    }

    #[test]
    fn malformed_expressions_are_refused_with_a_reason() {
        assert!(parse_cron("* * * *").unwrap_err().contains("found 4"));
        assert!(parse_cron("0 * * * * *").unwrap_err().contains("found 6"));
        assert!(
            parse_cron("@reboot")
                .unwrap_err()
                .contains("unknown shorthand")
        );
        assert!(parse_cron("61 * * * *").is_err());
        assert!(parse_cron("").is_err());
        assert!(
            parse_timezone("Mars/Olympus")
                .unwrap_err()
                .contains("unknown time zone")
        );
    }

    #[test]
    fn an_impossible_date_never_fires() {
        let never = schedule("0 0 30 2 *", "UTC");
        assert_eq!(never.next_after(utc("2027-01-01T00:00:00Z")), None);
    }
}
