//! A policy as a client writes it: the request body of `POST /v1/policies`,
//! the document a merge patch applies to, and what responses show.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};
use utoipa::ToSchema;

use super::{Consistency, MissedRun, ResourceType, Targets, ValidPolicy};
use crate::domain::{name_template::DEFAULT_NAME_TEMPLATE, networks::Networks};

/// One cron expression and the IANA time zone it is read in.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
#[schema(example = json!({"cron": "0 2 * * *", "timezone": "Europe/Berlin"}))]
pub struct ScheduleSpec {
    /// Five fields (minute hour day-of-month month day-of-week) with lists, ranges,
    /// steps and names, or `@hourly`, `@daily`, `@weekly`, `@monthly`, `@yearly`.
    pub cron: String,
    /// IANA time zone name; defaults to `UTC`.
    #[serde(default = "default_timezone")]
    pub timezone: String,
}

fn default_timezone() -> String {
    "UTC".into()
}

/// Restic-style retention: a snapshot is kept when any rule keeps it.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
#[schema(example = json!({"keep_last": 3, "keep_daily": 7, "keep_weekly": 4}))]
pub struct Retention {
    /// Keep the newest N snapshots.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub keep_last: Option<u32>,
    /// Keep the newest snapshot in each of the last N hours that have one.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub keep_hourly: Option<u32>,
    /// Keep the newest snapshot in each of the last N days that have one.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub keep_daily: Option<u32>,
    /// Keep the newest snapshot in each of the last N ISO weeks that have one.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub keep_weekly: Option<u32>,
    /// Keep the newest snapshot in each of the last N months that have one.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub keep_monthly: Option<u32>,
    /// Keep the newest snapshot in each of the last N years that have one.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub keep_yearly: Option<u32>,
    /// Keep every snapshot younger than this duration, e.g. `48h` or `7d`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schema(example = "7d")]
    pub keep_within: Option<String>,
}

/// How a policy's snapshots are taken.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
#[schema(example = json!({
    "consistency": "quiesce_preferred",
    "name_template": "{policy}-{resource_name}-{scheduled_at:%Y%m%dT%H%MZ}",
    "metadata": {"team": "web"},
    "timeout": "2h",
    "max_concurrent": 10,
    "missed_run": "run_once",
    "start_window": "1h",
    "rpo": "26h",
    "snapshot_on_join": false,
    "verify": {"every": "7d", "flavor": "m1.small", "networks": "none", "timeout": "30m"}
}))]
pub struct PolicyOptions {
    #[serde(default)]
    pub consistency: Consistency,
    /// Name of each artefact; see the README for the placeholders.
    #[serde(default = "default_name_template")]
    #[schema(example = "{policy}-{resource_name}-{scheduled_at:%Y%m%dT%H%MZ}")]
    pub name_template: String,
    /// Properties stamped on every image and volume snapshot.
    #[serde(default)]
    #[schema(example = json!({"team": "web"}))]
    pub metadata: BTreeMap<String, String>,
    /// How long one job may take before it is `timed_out`.
    #[serde(default = "default_timeout")]
    #[schema(example = "2h")]
    pub timeout: String,
    /// At most this many jobs of the policy in flight at once; `null` leaves only the global limit.
    #[serde(default)]
    #[schema(example = 10)]
    pub max_concurrent: Option<u32>,
    #[serde(default)]
    pub missed_run: MissedRun,
    /// How late a run may still start (catch-up runs and retries of a busy server).
    #[serde(default = "default_start_window")]
    #[schema(example = "1h")]
    pub start_window: String,
    /// Recovery point objective: a target whose newest snapshot is older is stale.
    /// Between `1m` and `366d`; by default (absent or `null`) the longest gap between
    /// consecutive fire times of the schedules over the next year, plus `timeout`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schema(example = "26h")]
    pub rpo: Option<String>,
    /// Snapshot a resource as soon as it starts matching the targets (the engine
    /// compares them with the cloud every few minutes), not only at the next run.
    #[serde(default)]
    pub snapshot_on_join: bool,
    /// Restore tests on a schedule: every `every`, the newest available snapshot
    /// of each target is restored into a throwaway server (or volume, or
    /// group), waited to `ACTIVE`/`available`, then deleted. Absent (or `null`
    /// in a PATCH) for none.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub verify: Option<VerifySpec>,
}

/// `options.verify` as a client writes it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
#[schema(example = json!({"every": "7d", "flavor": "m1.small", "networks": "none", "timeout": "30m"}))]
pub struct VerifySpec {
    /// How often each target's newest snapshot is tested, between `1h` and `366d`.
    /// A target tested within it (passed or failed) is not tested again.
    #[schema(example = "7d")]
    pub every: String,
    /// Server policies: the flavor (id or name) of the test server; default the
    /// source server's flavor, as recorded when the snapshot was taken.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schema(example = "m1.small")]
    pub flavor: Option<String>,
    /// Server policies: `"none"` (the default), `"auto"`, or a list of
    /// `{"network": id}` / `{"port": id}`, as for a restore.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub networks: Option<Networks>,
    /// How long one test may take to be usable before it fails; `1m` to `1d`, default `30m`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schema(example = "30m")]
    pub timeout: Option<String>,
}

fn default_name_template() -> String {
    DEFAULT_NAME_TEMPLATE.into()
}
fn default_timeout() -> String {
    "2h".into()
}
fn default_start_window() -> String {
    "1h".into()
}

impl Default for PolicyOptions {
    fn default() -> Self {
        Self {
            consistency: Consistency::default(),
            name_template: default_name_template(),
            metadata: BTreeMap::new(),
            timeout: default_timeout(),
            max_concurrent: None,
            missed_run: MissedRun::default(),
            start_window: default_start_window(),
            rpo: None,
            snapshot_on_join: false,
            verify: None,
        }
    }
}

fn default_enabled() -> bool {
    true
}

/// The writable fields of a policy, as a client sends them.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
#[schema(example = json!({
    "name": "nightly-web",
    "description": "Web tier, every night at 02:00 Berlin time",
    "resource_type": "server",
    "targets": {"ids": ["4f1d6a52-0b52-4a8e-9c43-1d0c8e3f2a10"], "selector": {"tags": ["backup"], "metadata": {"tier": "web"}}},
    "schedules": [{"cron": "0 2 * * *", "timezone": "Europe/Berlin"}],
    "retention": {"keep_last": 3, "keep_daily": 7, "keep_weekly": 4},
    "options": {"consistency": "quiesce_preferred", "metadata": {"team": "web"}, "timeout": "2h", "max_concurrent": 10}
}))]
pub struct PolicySpec {
    /// Unique within the project, 1 to 255 characters.
    #[schema(example = "nightly-web")]
    pub name: String,
    #[serde(default)]
    pub description: String,
    /// A disabled policy keeps its snapshots but fires no runs. Defaults to `true`.
    #[serde(default = "default_enabled")]
    pub enabled: bool,
    pub resource_type: ResourceType,
    pub targets: Targets,
    /// 1 to 10 schedules; the policy fires at the union of their times, once per instant.
    pub schedules: Vec<ScheduleSpec>,
    pub retention: Retention,
    #[serde(default)]
    pub options: PolicyOptions,
}

impl From<&ValidPolicy> for PolicySpec {
    /// The policy in the form a client wrote it.
    fn from(policy: &ValidPolicy) -> Self {
        let r = &policy.retention;
        let o = &policy.options;
        Self {
            name: policy.name.clone(),
            description: policy.description.clone(),
            enabled: policy.enabled,
            resource_type: policy.resource_type,
            targets: policy.targets.clone(),
            schedules: policy
                .schedules
                .schedules()
                .iter()
                .map(|s| ScheduleSpec {
                    cron: s.expression().to_owned(),
                    timezone: s.timezone().name().to_owned(),
                })
                .collect(),
            retention: Retention {
                keep_last: r.keep_last,
                keep_hourly: r.keep_hourly,
                keep_daily: r.keep_daily,
                keep_weekly: r.keep_weekly,
                keep_monthly: r.keep_monthly,
                keep_yearly: r.keep_yearly,
                keep_within: r.keep_within.as_ref().map(ToString::to_string),
            },
            options: PolicyOptions {
                consistency: o.consistency,
                name_template: o.name_template.as_str().to_owned(),
                metadata: o.metadata.clone(),
                timeout: o.timeout.to_string(),
                max_concurrent: o.max_concurrent,
                missed_run: o.missed_run,
                start_window: o.start_window.to_string(),
                rpo: o.rpo.as_ref().map(ToString::to_string),
                snapshot_on_join: o.snapshot_on_join,
                verify: o.verify.as_ref().map(|v| VerifySpec {
                    every: v.every.to_string(),
                    flavor: v.flavor.clone(),
                    networks: v.networks.clone(),
                    timeout: v.timeout.as_ref().map(ToString::to_string),
                }),
            },
        }
    }
}
