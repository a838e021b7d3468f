//! The database-derived families in the Prometheus text format. Every known
//! label set is written, at 0 when the database has no row for it yet, so that
//! alert rules and `rate()` see a series from the first scrape on. The label
//! values mirror the CHECK constraints of `job`, `run` and `snapshot`.

use std::{collections::BTreeMap, fmt::Write as _};

use crate::store::metrics::DatabaseMetrics;

/// Upper bounds of `stacksnap_job_duration_seconds` (as `metric_job_duration_buckets()`).
pub const JOB_DURATION_BUCKETS: &[f64] = &[
    10.0, 30.0, 60.0, 120.0, 300.0, 600.0, 1200.0, 1800.0, 3600.0, 7200.0, 14400.0, 28800.0,
];

const RESOURCE_TYPES: &[&str] = &["server", "volume", "volume_group"];
const JOB_STATUSES: &[&str] = &[
    "pending",
    "creating",
    "tracking",
    "succeeded",
    "failed",
    "timed_out",
    "cancelled",
];
const JOB_END_STATUSES: &[&str] = &["succeeded", "failed", "timed_out", "cancelled"];
const RUN_END_STATUSES: &[&str] = &["succeeded", "partially_failed", "failed", "missed"];
const SNAPSHOT_STATES: &[&str] = &[
    "available",
    "deleting",
    "deleted",
    "delete_failed",
    "delete_blocked",
];
const DELETION_RESULTS: &[&str] = &["deleted", "failed", "blocked"];

type Labels = Vec<(&'static str, String)>;

/// Appends the database-derived families to `out`.
pub fn render_database(stored: &DatabaseMetrics, out: &mut String) {
    let value = |family: &str, labels: &Labels| -> f64 {
        stored
            .samples
            .iter()
            .find(|s| {
                s.family == family
                    && s.labels.len() == labels.len()
                    && labels.iter().all(|(k, v)| s.labels.get(*k) == Some(v))
            })
            .map_or(0.0, |s| s.value)
    };
    let one = |key: &'static str, values: &[&str]| -> Vec<Labels> {
        values
            .iter()
            .map(|v| vec![(key, (*v).to_owned())])
            .collect()
    };

    let gauges = [
        (
            "stacksnap_jobs",
            "Jobs now in each state (database: the same on every replica).",
            one("status", JOB_STATUSES),
        ),
        (
            "stacksnap_snapshots",
            "Managed snapshot rows now in each state (database: the same on every replica).",
            one("state", SNAPSHOT_STATES),
        ),
    ];
    for (family, help, label_sets) in gauges {
        header(out, family, help, "gauge");
        for labels in &label_sets {
            sample(out, family, labels, value(family, labels));
        }
    }

    let jobs_total: Vec<Labels> = RESOURCE_TYPES
        .iter()
        .flat_map(|t| {
            JOB_END_STATUSES.iter().map(|s| {
                vec![
                    ("resource_type", (*t).to_owned()),
                    ("status", (*s).to_owned()),
                ]
            })
        })
        .collect();
    let restores_total: Vec<Labels> = ["restore", "verify"]
        .iter()
        .flat_map(|k| {
            RESOURCE_TYPES.iter().flat_map(move |t| {
                JOB_END_STATUSES.iter().map(move |s| {
                    vec![
                        ("kind", (*k).to_owned()),
                        ("resource_type", (*t).to_owned()),
                        ("status", (*s).to_owned()),
                    ]
                })
            })
        })
        .collect();
    let counters = [
        (
            "stacksnap_jobs_total",
            "Snapshot jobs ended, by final state (database running total).",
            jobs_total,
        ),
        (
            "stacksnap_restores_total",
            "Restore and restore-test jobs ended, by final state (database running total).",
            restores_total,
        ),
        (
            "stacksnap_runs_total",
            "Runs ended, by final state (database running total).",
            one("status", RUN_END_STATUSES),
        ),
        (
            "stacksnap_snapshot_deletions_total",
            "Snapshot deletions that reached deleted, delete_failed or delete_blocked (database running total).",
            one("result", DELETION_RESULTS),
        ),
        (
            "stacksnap_snapshot_verifications_total",
            "Scheduled restore tests of snapshots recorded, by result: passed or failed (database running total).",
            one("status", &["passed", "failed"]),
        ),
    ];
    for (family, help, label_sets) in counters {
        header(out, family, help, "counter");
        for labels in &label_sets {
            sample(out, family, labels, value(family, labels));
        }
    }

    job_duration(out, &value);
    policy_last_success(out, stored);
    policy_stale_resources(out, stored);
}

fn job_duration(out: &mut String, value: &dyn Fn(&str, &Labels) -> f64) {
    let family = "stacksnap_job_duration_seconds";
    header(
        out,
        family,
        "Duration of ended jobs that started, start to end (database running totals).",
        "histogram",
    );
    for resource_type in RESOURCE_TYPES {
        let by_type: Labels = vec![("resource_type", (*resource_type).to_owned())];
        let bounds = JOB_DURATION_BUCKETS
            .iter()
            .map(|b| b.to_string())
            .chain(["+Inf".to_owned()]);
        for le in bounds {
            let mut labels = by_type.clone();
            labels.push(("le", le));
            let bucket = "stacksnap_job_duration_seconds_bucket";
            sample(out, bucket, &labels, value(bucket, &labels));
        }
        for suffix in ["sum", "count"] {
            let name = format!("{family}_{suffix}");
            sample(out, &name, &by_type, value(&name, &by_type));
        }
    }
}

fn policy_last_success(out: &mut String, stored: &DatabaseMetrics) {
    let family = "stacksnap_policy_last_success_timestamp_seconds";
    header(
        out,
        family,
        "When a run of the policy last succeeded, Unix seconds (policies with a success only).",
        "gauge",
    );
    for (policy_id, at) in &stored.policy_last_success {
        let seconds = at.timestamp_micros() as f64 / 1e6;
        let _ = writeln!(out, "{family}{{policy_id=\"{policy_id}\"}} {seconds}");
    }
}

fn policy_stale_resources(out: &mut String, stored: &DatabaseMetrics) {
    let family = "stacksnap_policy_stale_resources";
    header(
        out,
        family,
        "Targets of the policy whose newest complete snapshot is older than its RPO, or that have \
         none (enabled policies; recounted every minute by one replica).",
        "gauge",
    );
    for (policy_id, stale) in &stored.policy_stale_resources {
        let _ = writeln!(out, "{family}{{policy_id=\"{policy_id}\"}} {stale}");
    }
    let family = "stacksnap_policy_stale_resources_counted_timestamp_seconds";
    header(
        out,
        family,
        "When the stale-resource counts were last made, Unix seconds.",
        "gauge",
    );
    if let Some(at) = stored.stale_counted_at {
        let _ = writeln!(out, "{family} {}", at.timestamp_micros() as f64 / 1e6);
    }
}

fn header(out: &mut String, family: &str, help: &str, kind: &str) {
    let _ = writeln!(out, "# HELP {family} {help}\n# TYPE {family} {kind}");
}

fn sample(out: &mut String, name: &str, labels: &Labels, value: f64) {
    let rendered: Vec<String> = labels
        .iter()
        .map(|(k, v)| format!("{k}=\"{}\"", escape(v)))
        .collect();
    let _ = writeln!(out, "{name}{{{}}} {value}", rendered.join(","));
}

/// Escapes a label value as the text format requires.
fn escape(value: &str) -> String {
    value
        .replace('\\', r"\\")
        .replace('"', "\\\"")
        .replace('\n', r"\n")
}

/// Samples by family, for tests and readers of a rendered page.
pub fn parse_samples(text: &str) -> BTreeMap<String, f64> {
    text.lines()
        .filter(|l| !l.starts_with('#') && !l.trim().is_empty())
        .filter_map(|l| {
            let (series, value) = l.rsplit_once(' ')?;
            Some((series.to_owned(), value.parse().ok()?))
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use chrono::{TimeZone as _, Utc};
    use uuid::Uuid;

    use super::*;
    use crate::store::metrics::StoredSample;

    fn stored() -> DatabaseMetrics {
        DatabaseMetrics {
            samples: vec![StoredSample {
                family: "stacksnap_jobs_total".into(),
                labels: [("resource_type", "server"), ("status", "succeeded")]
                    .into_iter()
                    .map(|(k, v)| (k.to_owned(), v.to_owned()))
                    .collect(),
                value: 3.0,
            }],
            policy_last_success: vec![(
                Uuid::nil(),
                Utc.with_ymd_and_hms(2026, 12, 1, 0, 0, 0).unwrap(),
            )],
            policy_stale_resources: vec![(Uuid::nil(), 2)],
            stale_counted_at: Some(Utc.with_ymd_and_hms(2026, 12, 1, 0, 1, 0).unwrap()),
        }
    }

    #[test]
    fn stored_values_are_rendered_and_missing_label_sets_are_zero() {
        let mut out = String::new();
        render_database(&stored(), &mut out);
        let samples = parse_samples(&out);
        assert_eq!(
            samples[r#"stacksnap_jobs_total{resource_type="server",status="succeeded"}"#],
            3.0
        );
        assert_eq!(
            samples[r#"stacksnap_jobs_total{resource_type="volume",status="failed"}"#],
            0.0
        );
        assert_eq!(samples[r#"stacksnap_jobs{status="pending"}"#], 0.0);
        assert_eq!(
            samples[r#"stacksnap_policy_last_success_timestamp_seconds{policy_id="00000000-0000-0000-0000-000000000000"}"#],
            1_796_083_200.0
        );
        assert_eq!(
            samples[r#"stacksnap_policy_stale_resources{policy_id="00000000-0000-0000-0000-000000000000"}"#],
            2.0
        );
        assert_eq!(
            samples["stacksnap_policy_stale_resources_counted_timestamp_seconds"],
            1_796_083_260.0
        );
    }

    #[test]
    fn every_family_has_one_type_line_and_histograms_end_in_inf() {
        let mut out = String::new();
        render_database(&DatabaseMetrics::default(), &mut out);
        for family in [
            "stacksnap_jobs",
            "stacksnap_snapshots",
            "stacksnap_jobs_total",
            "stacksnap_runs_total",
            "stacksnap_snapshot_deletions_total",
            "stacksnap_job_duration_seconds",
            "stacksnap_policy_last_success_timestamp_seconds",
            "stacksnap_policy_stale_resources",
            "stacksnap_policy_stale_resources_counted_timestamp_seconds",
        ] {
            let line = format!("# TYPE {family} ");
            assert_eq!(out.matches(&line).count(), 1, "{family}");
        }
        assert!(out.contains(
            r#"stacksnap_job_duration_seconds_bucket{resource_type="server",le="+Inf"} 0"#
        ));
        assert!(out.contains(
            r#"stacksnap_job_duration_seconds_bucket{resource_type="server",le="10"} 0"#
        ));
    }

    #[test]
    fn label_values_are_escaped() {
        assert_eq!(escape("a\"b\\c\nd"), r#"a\"b\\c\nd"#);
    }
}
