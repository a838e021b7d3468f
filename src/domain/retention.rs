//! Which snapshots a policy keeps: restic's `forget` rules, per resource.
//!
//! Snapshots are taken newest first. `keep_last N` keeps the N newest.
//! `keep_hourly/daily/weekly/monthly/yearly N` keep the newest snapshot of each
//! of the last N hours (days, ISO weeks, months, years) that have one, with
//! buckets read in the policy's time zone. `keep_within D` keeps every snapshot
//! taken within D of the newest one (as restic does: if snapshots stop being
//! taken, the old ones are not all pruned away). A snapshot is kept when any
//! rule keeps it, and the newest one is always kept.

use std::collections::{BTreeMap, HashMap};

use chrono::{DateTime, Datelike as _, TimeDelta, Timelike as _, Utc};
use chrono_tz::Tz;
use serde::{Deserialize, Serialize};
use utoipa::ToSchema;
use uuid::Uuid;

use super::{
    duration::HumanDuration,
    policy::{RetentionRules, ValidPolicy},
};

/// Why a snapshot is kept.
#[derive(
    Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize, ToSchema,
)]
#[serde(rename_all = "snake_case")]
#[schema(example = "daily")]
pub enum KeepReason {
    Last,
    Hourly,
    Daily,
    Weekly,
    Monthly,
    Yearly,
    Within,
    /// The newest snapshot of a resource is never pruned.
    Newest,
}

/// A snapshot as the rules see it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Candidate {
    pub id: Uuid,
    pub taken_at: DateTime<Utc>,
}

/// The rules with their duration parsed.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Rules {
    pub last: u32,
    pub hourly: u32,
    pub daily: u32,
    pub weekly: u32,
    pub monthly: u32,
    pub yearly: u32,
    pub within: Option<TimeDelta>,
}

impl From<&RetentionRules> for Rules {
    fn from(r: &RetentionRules) -> Self {
        Self {
            last: r.keep_last.unwrap_or(0),
            hourly: r.keep_hourly.unwrap_or(0),
            daily: r.keep_daily.unwrap_or(0),
            weekly: r.keep_weekly.unwrap_or(0),
            monthly: r.keep_monthly.unwrap_or(0),
            yearly: r.keep_yearly.unwrap_or(0),
            within: r.keep_within.as_ref().map(HumanDuration::as_chrono),
        }
    }
}

/// One snapshot's fate.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Decision {
    pub id: Uuid,
    pub taken_at: DateTime<Utc>,
    /// Empty: prune it.
    pub kept_by: Vec<KeepReason>,
}

/// The bucket a snapshot falls in for a calendar rule.
fn bucket(reason: KeepReason, at: DateTime<Utc>, tz: Tz) -> i64 {
    let local = at.with_timezone(&tz);
    let (year, month, day, hour) = (
        i64::from(local.year()),
        i64::from(local.month()),
        i64::from(local.day()),
        i64::from(local.hour()),
    );
    match reason {
        KeepReason::Hourly => ((year * 100 + month) * 100 + day) * 100 + hour,
        KeepReason::Daily => (year * 100 + month) * 100 + day,
        KeepReason::Weekly => {
            let week = local.iso_week();
            i64::from(week.year()) * 100 + i64::from(week.week())
        }
        KeepReason::Monthly => year * 100 + month,
        KeepReason::Yearly => year,
        _ => 0,
    }
}

/// Decides, for one resource's snapshots, which to keep and why.
/// The result is ordered newest first.
pub fn decide(snapshots: &[Candidate], rules: &Rules, tz: Tz) -> Vec<Decision> {
    let mut sorted = snapshots.to_vec();
    sorted.sort_by(|a, b| b.taken_at.cmp(&a.taken_at).then(b.id.cmp(&a.id)));
    let Some(newest) = sorted.first().map(|s| s.taken_at) else {
        return Vec::new();
    };
    let calendar = [
        (KeepReason::Hourly, rules.hourly),
        (KeepReason::Daily, rules.daily),
        (KeepReason::Weekly, rules.weekly),
        (KeepReason::Monthly, rules.monthly),
        (KeepReason::Yearly, rules.yearly),
    ];
    let mut last_bucket: [Option<i64>; 5] = [None; 5];
    let mut kept_count = [0u32; 5];
    sorted
        .iter()
        .enumerate()
        .map(|(index, snapshot)| {
            let mut kept_by = Vec::new();
            if index < rules.last as usize {
                kept_by.push(KeepReason::Last);
            }
            for (slot, (reason, limit)) in calendar.iter().enumerate() {
                let key = bucket(*reason, snapshot.taken_at, tz);
                if kept_count[slot] < *limit && last_bucket[slot] != Some(key) {
                    kept_by.push(*reason);
                    kept_count[slot] += 1;
                    last_bucket[slot] = Some(key);
                }
            }
            if rules
                .within
                .is_some_and(|within| newest - snapshot.taken_at <= within)
            {
                kept_by.push(KeepReason::Within);
            }
            if index == 0 {
                kept_by.push(KeepReason::Newest);
            }
            Decision {
                id: snapshot.id,
                taken_at: snapshot.taken_at,
                kept_by,
            }
        })
        .collect()
}

/// A stored snapshot as retention sees it.
pub trait Retained {
    fn id(&self) -> Uuid;
    /// The resource it is a snapshot of: rules apply per resource.
    fn resource_id(&self) -> &str;
    fn taken_at(&self) -> DateTime<Utc>;
    /// Leftovers of failed jobs are not complete snapshots: no rule keeps or counts them.
    fn complete(&self) -> bool;
}

/// Retention's verdict on each complete snapshot of a policy, resource by
/// resource, in the time zone of the policy's first schedule.
pub fn plan<T: Retained>(policy: &ValidPolicy, live: Vec<T>) -> Vec<(T, Vec<KeepReason>)> {
    let rules = Rules::from(&policy.retention);
    let tz = policy.retention_timezone();
    let mut by_resource: BTreeMap<String, Vec<T>> = BTreeMap::new();
    for snapshot in live.into_iter().filter(Retained::complete) {
        by_resource
            .entry(snapshot.resource_id().to_owned())
            .or_default()
            .push(snapshot);
    }
    let mut verdicts = Vec::new();
    for snapshots in by_resource.into_values() {
        let candidates: Vec<Candidate> = snapshots
            .iter()
            .map(|s| Candidate {
                id: s.id(),
                taken_at: s.taken_at(),
            })
            .collect();
        let mut kept_by: HashMap<Uuid, Vec<KeepReason>> = decide(&candidates, &rules, tz)
            .into_iter()
            .map(|d| (d.id, d.kept_by))
            .collect();
        verdicts.extend(snapshots.into_iter().map(|s| {
            let reasons = kept_by.remove(&s.id()).unwrap_or_default();
            (s, reasons)
        }));
    }
    verdicts
}

#[cfg(test)]
mod tests {
    use std::collections::{BTreeMap, HashSet};

    use proptest::prelude::*;

    use super::*;

    fn at(text: &str) -> DateTime<Utc> {
        text.parse().unwrap()
    }

    fn candidates(times: &[DateTime<Utc>]) -> Vec<Candidate> {
        times
            .iter()
            .enumerate()
            .map(|(i, t)| Candidate {
                id: Uuid::from_u128(i as u128 + 1),
                taken_at: *t,
            })
            .collect()
    }

    fn kept(decisions: &[Decision]) -> HashSet<Uuid> {
        decisions
            .iter()
            .filter(|d| !d.kept_by.is_empty())
            .map(|d| d.id)
            .collect()
    }

    /// An independent reading of the rules: group every snapshot into buckets,
    /// take the newest snapshot of each bucket, and keep those of the N newest buckets.
    fn reference(snapshots: &[Candidate], rules: &Rules, tz: Tz) -> HashSet<Uuid> {
        let mut keep = HashSet::new();
        let mut by_time = snapshots.to_vec();
        by_time.sort_by(|a, b| b.taken_at.cmp(&a.taken_at).then(b.id.cmp(&a.id)));
        keep.extend(by_time.iter().take(rules.last as usize).map(|s| s.id));
        for (reason, n) in [
            (KeepReason::Hourly, rules.hourly),
            (KeepReason::Daily, rules.daily),
            (KeepReason::Weekly, rules.weekly),
            (KeepReason::Monthly, rules.monthly),
            (KeepReason::Yearly, rules.yearly),
        ] {
            let mut newest_per_bucket: BTreeMap<DateTime<Utc>, Uuid> = BTreeMap::new();
            let mut seen_buckets = HashSet::new();
            for s in &by_time {
                if seen_buckets.insert(bucket(reason, s.taken_at, tz)) {
                    newest_per_bucket.insert(s.taken_at, s.id);
                }
            }
            keep.extend(newest_per_bucket.values().rev().take(n as usize));
        }
        if let (Some(within), Some(newest)) = (rules.within, by_time.first()) {
            keep.extend(
                by_time
                    .iter()
                    .filter(|s| newest.taken_at - s.taken_at <= within)
                    .map(|s| s.id),
            );
        }
        keep.extend(by_time.first().map(|s| s.id));
        keep
    }

    fn hourly_year(gaps: &[bool]) -> Vec<DateTime<Utc>> {
        let start = at("2026-01-01T00:30:00Z");
        (0..8760)
            .filter(|h| !gaps[*h as usize % gaps.len()])
            .map(|h| start + TimeDelta::hours(h))
            .collect()
    }

    #[test]
    fn keep_last_keeps_the_newest_n() {
        let snaps = candidates(&[
            at("2027-01-01T00:00:00Z"),
            at("2027-01-03T00:00:00Z"),
            at("2027-01-02T00:00:00Z"),
        ]);
        let rules = Rules {
            last: 2,
            ..Rules::default()
        };
        let decisions = decide(&snaps, &rules, chrono_tz::UTC);
        assert_eq!(decisions[0].kept_by, [KeepReason::Last, KeepReason::Newest]);
        assert_eq!(decisions[1].kept_by, [KeepReason::Last]);
        assert!(decisions[2].kept_by.is_empty());
    }

    #[test]
    fn daily_buckets_follow_the_policy_time_zone() {
        // 23:30 UTC on the 1st is already the 2nd in Berlin.
        let snaps = candidates(&[at("2027-01-01T22:30:00Z"), at("2027-01-01T23:30:00Z")]);
        let rules = Rules {
            daily: 5,
            ..Rules::default()
        };
        let utc = decide(&snaps, &rules, chrono_tz::UTC);
        assert_eq!(
            kept(&utc).len(),
            1,
            "one UTC day: only the newer is the day's newest"
        );
        let berlin = decide(&snaps, &rules, chrono_tz::Europe::Berlin);
        assert_eq!(kept(&berlin).len(), 2, "two Berlin days");
    }

    #[test]
    fn hourly_buckets_survive_a_dst_change() {
        // New York falls back on 2027-11-07: 01:00–02:00 happens twice, in two different UTC hours.
        let snaps = candidates(&[at("2027-11-07T05:10:00Z"), at("2027-11-07T06:10:00Z")]);
        let rules = Rules {
            hourly: 5,
            ..Rules::default()
        };
        let decisions = decide(&snaps, &rules, chrono_tz::America::New_York);
        // Both are local 01:10: the same local hour bucket, so only the newer is kept by hourly.
        assert_eq!(
            decisions
                .iter()
                .filter(|d| d.kept_by.contains(&KeepReason::Hourly))
                .count(),
            1
        );
    }

    #[test]
    fn keep_within_counts_from_the_newest_snapshot() {
        let snaps = candidates(&[
            at("2027-01-10T00:00:00Z"),
            at("2027-01-09T01:00:00Z"),
            at("2027-01-08T00:00:00Z"),
        ]);
        let rules = Rules {
            within: Some(TimeDelta::days(1)),
            ..Rules::default()
        };
        let decisions = decide(&snaps, &rules, chrono_tz::UTC);
        let within: Vec<bool> = decisions
            .iter()
            .map(|d| d.kept_by.contains(&KeepReason::Within))
            .collect();
        assert_eq!(within, [true, true, false]);
    }

    #[test]
    fn the_newest_snapshot_is_kept_whatever_the_rules_say() {
        let snaps = candidates(&[at("2027-01-01T00:00:00Z"), at("2026-01-01T00:00:00Z")]);
        let decisions = decide(
            &snaps,
            &Rules {
                within: Some(TimeDelta::seconds(1)),
                ..Rules::default()
            },
            chrono_tz::UTC,
        );
        assert!(decisions[0].kept_by.contains(&KeepReason::Newest));
        assert!(decisions[1].kept_by.is_empty());
    }

    #[test]
    fn a_year_of_hourly_snapshots_keeps_exactly_what_each_rule_asks() {
        let times = hourly_year(&[false]);
        let snaps = candidates(&times);
        let count = |rules: Rules| kept(&decide(&snaps, &rules, chrono_tz::UTC)).len();
        assert_eq!(
            count(Rules {
                last: 10,
                ..Rules::default()
            }),
            10
        );
        assert_eq!(
            count(Rules {
                hourly: 48,
                ..Rules::default()
            }),
            48
        );
        assert_eq!(
            count(Rules {
                daily: 7,
                ..Rules::default()
            }),
            7
        );
        assert_eq!(
            count(Rules {
                weekly: 4,
                ..Rules::default()
            }),
            4
        );
        assert_eq!(
            count(Rules {
                monthly: 12,
                ..Rules::default()
            }),
            12
        );
        assert_eq!(
            count(Rules {
                yearly: 3,
                ..Rules::default()
            }),
            1,
            "one year has snapshots"
        );
        assert_eq!(
            count(Rules {
                within: Some(TimeDelta::hours(23)),
                ..Rules::default()
            }),
            24
        );
        // Combined: daily 7 and weekly 4 overlap in the newest days.
        let combined = Rules {
            last: 3,
            daily: 7,
            weekly: 4,
            monthly: 6,
            ..Rules::default()
        };
        assert_eq!(
            kept(&decide(&snaps, &combined, chrono_tz::UTC)),
            reference(&snaps, &combined, chrono_tz::UTC)
        );
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(48))]

        #[test]
        fn decisions_match_the_reference_for_any_rules_and_gaps(
            gaps in proptest::collection::vec(proptest::bool::weighted(0.3), 1..50),
            last in 0u32..30, hourly in 0u32..60, daily in 0u32..20, weekly in 0u32..10,
            monthly in 0u32..14, yearly in 0u32..3, within_hours in proptest::option::of(1i64..400),
            berlin in proptest::bool::ANY,
        ) {
            let snaps = candidates(&hourly_year(&gaps));
            let rules = Rules { last, hourly, daily, weekly, monthly, yearly, within: within_hours.map(TimeDelta::hours) };
            let tz = if berlin { chrono_tz::Europe::Berlin } else { chrono_tz::UTC };
            prop_assert_eq!(kept(&decide(&snaps, &rules, tz)), reference(&snaps, &rules, tz));
        }
    }
}
