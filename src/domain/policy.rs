//! Snapshot policies: what to snapshot, when, how long to keep it, and how.
//!
//! [`PolicySpec`] is the writable part exactly as clients send it (defaults
//! filled in); [`PolicySpec::validate`] checks every field at once and yields
//! a [`ValidPolicy`], the only form the rest of the service acts on.

use std::collections::{BTreeMap, HashSet};

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};
use utoipa::ToSchema;
use uuid::Uuid;

use super::{
    duration::HumanDuration,
    name_template::{DEFAULT_NAME_TEMPLATE, NameTemplate},
    schedule::{CronSchedule, ScheduleSet, parse_cron, parse_timezone},
    validation::{FieldError, Violations},
};

pub const MAX_NAME_CHARS: usize = 255;
pub const MAX_DESCRIPTION_CHARS: usize = 1024;
pub const MAX_TARGET_IDS: usize = 1000;
pub const MAX_SELECTOR_TERMS: usize = 50;
pub const MAX_SCHEDULES: usize = 10;
pub const MAX_KEEP_COUNT: u32 = 10_000;
pub const MAX_METADATA_ITEMS: usize = 50;
/// Nova rejects longer tags, and tags containing `/` or `,`.
pub const MAX_TAG_CHARS: usize = 60;
/// Nova, Glance and Cinder all cap metadata keys and values at 255 characters.
pub const MAX_METADATA_CHARS: usize = 255;
pub const MAX_CONCURRENT: u32 = 1000;

/// Property keys a policy may not stamp: those Nova sets on snapshots, and
/// Glance's own image fields (a property named `owner` or `status` would
/// collide with the image's real owner or status).
const RESERVED_METADATA_KEYS: [&str; 33] = [
    "image_type",
    "instance_uuid",
    "base_image_ref",
    "image_location",
    "block_device_mapping",
    "bdm_v2",
    "root_device_name",
    "owner_id",
    "user_id",
    "id",
    "name",
    "status",
    "owner",
    "visibility",
    "size",
    "virtual_size",
    "checksum",
    "container_format",
    "disk_format",
    "min_disk",
    "min_ram",
    "protected",
    "tags",
    "created_at",
    "updated_at",
    "deleted",
    "deleted_at",
    "locations",
    "direct_url",
    "self",
    "file",
    "schema",
    "stores",
];
const RESERVED_METADATA_PREFIXES: [&str; 2] = ["stacksnap_", "os_glance_"];

/// What kind of OpenStack resource a policy snapshots.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "snake_case")]
#[schema(example = "server")]
pub enum ResourceType {
    /// A Nova server, snapshotted with `createImage`.
    Server,
    /// A Cinder volume, snapshotted with a volume snapshot.
    Volume,
    /// A Cinder volume group, snapshotted with a group snapshot: crash-consistent across its volumes.
    VolumeGroup,
}

impl ResourceType {
    /// The name used in the API and the database.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Server => "server",
            Self::Volume => "volume",
            Self::VolumeGroup => "volume_group",
        }
    }

    /// Parses the name used in the API and the database.
    pub fn parse(text: &str) -> Option<Self> {
        match text {
            "server" => Some(Self::Server),
            "volume" => Some(Self::Volume),
            "volume_group" => Some(Self::VolumeGroup),
            _ => None,
        }
    }
}

/// Which resources a policy covers: explicit ids plus those matching the selector at each run.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
#[schema(example = json!({"ids": ["4f1d6a52-0b52-4a8e-9c43-1d0c8e3f2a10"], "selector": {"tags": ["backup"], "metadata": {"tier": "web"}}}))]
pub struct Targets {
    /// Resources named by id.
    #[serde(default)]
    pub ids: Vec<Uuid>,
    /// Resources chosen by tags and metadata when the policy fires.
    #[serde(default)]
    pub selector: Selector,
}

/// Resources that carry every listed tag and every listed metadata pair.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
#[schema(example = json!({"tags": ["backup"], "metadata": {"tier": "web"}}))]
pub struct Selector {
    /// Nova server tags, all required (servers only: Cinder volumes have no tags).
    #[serde(default)]
    pub tags: Vec<String>,
    /// Metadata key/value pairs, all required.
    #[serde(default)]
    pub metadata: BTreeMap<String, String>,
}

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

/// How consistent a server snapshot must be.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "snake_case")]
#[schema(example = "quiesce_preferred")]
pub enum Consistency {
    /// Snapshot without trying to quiesce the guest.
    Crash,
    /// Quiesce when the image has the guest agent, crash-consistent otherwise.
    #[default]
    QuiescePreferred,
    /// Refuse to snapshot a server that cannot be quiesced.
    QuiesceRequired,
}

/// What to do with fire times missed while no replica was running.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "snake_case")]
#[schema(example = "run_once")]
pub enum MissedRun {
    /// Record the misses, fire nothing.
    Skip,
    /// Fire one catch-up run when the last miss is within `start_window`.
    #[default]
    RunOnce,
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
    "start_window": "1h"
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

/// A stored policy: its spec plus the fields the service maintains.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Policy {
    pub id: Uuid,
    pub project_id: String,
    pub spec: PolicySpec,
    pub next_run_at: Option<DateTime<Utc>>,
    pub version: i64,
    pub created_at: DateTime<Utc>,
    pub updated_at: DateTime<Utc>,
}

/// A policy spec that passed every check, with its schedules parsed.
#[derive(Debug, Clone)]
pub struct ValidPolicy {
    spec: PolicySpec,
    schedules: ScheduleSet,
}

impl ValidPolicy {
    /// The checked spec.
    pub fn spec(&self) -> &PolicySpec {
        &self.spec
    }

    /// Gives the checked spec back.
    pub fn into_spec(self) -> PolicySpec {
        self.spec
    }

    /// The parsed schedules.
    pub fn schedules(&self) -> &ScheduleSet {
        &self.schedules
    }

    /// When the policy next fires after `now`: `None` when disabled.
    pub fn next_run_after(&self, now: DateTime<Utc>) -> Option<DateTime<Utc>> {
        if !self.spec.enabled {
            return None;
        }
        self.schedules.next_after(now).map(|f| f.at)
    }
}

impl PolicySpec {
    /// Checks every field, reporting all problems at once.
    ///
    /// `now` decides whether a schedule can still fire at all.
    ///
    /// # Errors
    /// Every invalid field, each with its path (`schedules[0].cron`).
    pub fn validate(self, now: DateTime<Utc>) -> Result<ValidPolicy, Vec<FieldError>> {
        let mut v = Violations::default();
        check_name(&mut v, &self.name);
        v.check(
            self.description.chars().count() > MAX_DESCRIPTION_CHARS,
            "description",
            format!("must be at most {MAX_DESCRIPTION_CHARS} characters"),
        );
        check_targets(&mut v, self.resource_type, &self.targets);
        let schedules = check_schedules(&mut v, &self.schedules, now);
        check_retention(&mut v, &self.retention);
        check_options(&mut v, &self.options);
        v.finish(()).map(|()| ValidPolicy {
            spec: self,
            schedules,
        })
    }
}

fn check_name(v: &mut Violations, name: &str) {
    let chars = name.chars().count();
    if name.trim().is_empty() {
        v.add("name", "must not be empty");
    } else if chars > MAX_NAME_CHARS {
        v.add(
            "name",
            format!("must be at most {MAX_NAME_CHARS} characters, found {chars}"),
        );
    } else if name.trim() != name {
        v.add("name", "must not start or end with white space");
    } else if name.chars().any(char::is_control) {
        v.add("name", "must not contain control characters");
    }
}

fn check_targets(v: &mut Violations, resource_type: ResourceType, targets: &Targets) {
    let selector = &targets.selector;
    if targets.ids.is_empty() && selector.tags.is_empty() && selector.metadata.is_empty() {
        v.add(
            "targets",
            "name at least one resource id or one selector term (a tag or a metadata pair)",
        );
    }
    v.check(
        targets.ids.len() > MAX_TARGET_IDS,
        "targets.ids",
        format!("must list at most {MAX_TARGET_IDS} ids"),
    );
    let mut seen = HashSet::new();
    for (i, id) in targets.ids.iter().enumerate() {
        v.check(
            !seen.insert(id),
            format!("targets.ids[{i}]"),
            format!("{id} is listed twice"),
        );
    }
    if resource_type == ResourceType::VolumeGroup
        && (!selector.tags.is_empty() || !selector.metadata.is_empty())
    {
        v.add(
            "targets.selector",
            "Cinder volume groups carry no tags or metadata: name them in targets.ids",
        );
    }
    if resource_type == ResourceType::Volume && !selector.tags.is_empty() {
        v.add(
            "targets.selector.tags",
            "Cinder volumes have no tags: select volumes by metadata instead",
        );
    }
    v.check(
        selector.tags.len() > MAX_SELECTOR_TERMS,
        "targets.selector.tags",
        format!("must list at most {MAX_SELECTOR_TERMS} tags"),
    );
    for (i, tag) in selector.tags.iter().enumerate() {
        let field = format!("targets.selector.tags[{i}]");
        if tag.is_empty() || tag.chars().count() > MAX_TAG_CHARS {
            v.add(field, format!("must be 1 to {MAX_TAG_CHARS} characters"));
        } else if tag.contains(['/', ',']) {
            v.add(
                field,
                "must not contain '/' or ',' (Nova refuses such tags)",
            );
        }
    }
    check_metadata(v, "targets.selector.metadata", &selector.metadata, false);
}

fn check_schedules(v: &mut Violations, specs: &[ScheduleSpec], now: DateTime<Utc>) -> ScheduleSet {
    if specs.is_empty() || specs.len() > MAX_SCHEDULES {
        v.add(
            "schedules",
            format!(
                "must list 1 to {MAX_SCHEDULES} schedules, found {}",
                specs.len()
            ),
        );
    }
    let mut parsed = Vec::new();
    let mut seen = HashSet::new();
    for (i, spec) in specs.iter().enumerate() {
        let cron = parse_cron(&spec.cron).map_err(|e| v.add(format!("schedules[{i}].cron"), e));
        let tz = parse_timezone(&spec.timezone)
            .map_err(|e| v.add(format!("schedules[{i}].timezone"), e));
        let (Ok(cron), Ok(tz)) = (cron, tz) else {
            continue;
        };
        if !seen.insert((spec.cron.trim().to_ascii_uppercase(), tz)) {
            v.add(format!("schedules[{i}]"), "repeats an earlier schedule");
        }
        let schedule = CronSchedule::new(cron, tz);
        if schedule.next_after(now).is_none() {
            v.add(format!("schedules[{i}].cron"), "never fires (no such date)");
        }
        parsed.push(schedule);
    }
    ScheduleSet::new(parsed)
}

fn check_retention(v: &mut Violations, retention: &Retention) {
    let counts = [
        ("keep_last", retention.keep_last),
        ("keep_hourly", retention.keep_hourly),
        ("keep_daily", retention.keep_daily),
        ("keep_weekly", retention.keep_weekly),
        ("keep_monthly", retention.keep_monthly),
        ("keep_yearly", retention.keep_yearly),
    ];
    if counts.iter().all(|(_, n)| n.is_none()) && retention.keep_within.is_none() {
        v.add(
            "retention",
            "set at least one rule: keep_last, keep_hourly, keep_daily, keep_weekly, keep_monthly, keep_yearly or keep_within",
        );
    }
    for (field, count) in counts {
        if let Some(n) = count {
            v.check(
                n == 0 || n > MAX_KEEP_COUNT,
                format!("retention.{field}"),
                format!("must be between 1 and {MAX_KEEP_COUNT}, found {n}"),
            );
        }
    }
    if let Some(within) = &retention.keep_within {
        check_duration(v, "retention.keep_within", within, None);
    }
}

fn check_options(v: &mut Violations, options: &PolicyOptions) {
    if let Err(e) = options.name_template.parse::<NameTemplate>() {
        v.add("options.name_template", e);
    }
    check_metadata(v, "options.metadata", &options.metadata, true);
    let day = 86_400;
    check_duration(v, "options.timeout", &options.timeout, Some((60, 7 * day)));
    check_duration(
        v,
        "options.start_window",
        &options.start_window,
        Some((60, 7 * day)),
    );
    if let Some(n) = options.max_concurrent {
        v.check(
            n == 0 || n > MAX_CONCURRENT,
            "options.max_concurrent",
            format!("must be between 1 and {MAX_CONCURRENT}, or null for no per-policy limit"),
        );
    }
}

fn check_duration(v: &mut Violations, field: &str, text: &str, bounds: Option<(u64, u64)>) {
    match text.parse::<HumanDuration>() {
        Err(e) => v.add(field, e.to_string()),
        Ok(d) => {
            if let Some((min, max)) = bounds {
                v.check(
                    d.as_secs() < min || d.as_secs() > max,
                    field,
                    format!("must be between {}m and {}d", min / 60, max / 86_400),
                );
            }
        }
    }
}

pub(crate) fn check_metadata(
    v: &mut Violations,
    field: &str,
    metadata: &BTreeMap<String, String>,
    stamped: bool,
) {
    v.check(
        metadata.len() > MAX_METADATA_ITEMS,
        field,
        format!("must hold at most {MAX_METADATA_ITEMS} items"),
    );
    for (key, value) in metadata {
        let at = format!("{field}.{key}");
        if key.is_empty() || key.chars().count() > MAX_METADATA_CHARS {
            v.add(
                at,
                format!("keys must be 1 to {MAX_METADATA_CHARS} characters"),
            );
        } else if value.chars().count() > MAX_METADATA_CHARS {
            v.add(
                at,
                format!("values must be at most {MAX_METADATA_CHARS} characters"),
            );
        } else if stamped && is_reserved_key(key) {
            v.add(
                at,
                "is reserved: stacksnap and Nova set this property themselves",
            );
        }
    }
}

fn is_reserved_key(key: &str) -> bool {
    RESERVED_METADATA_KEYS.contains(&key)
        || RESERVED_METADATA_PREFIXES
            .iter()
            .any(|p| key.starts_with(p))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn now() -> DateTime<Utc> {
        "2026-11-25T12:00:00Z".parse().unwrap()
    }

    fn spec(json: serde_json::Value) -> PolicySpec {
        serde_json::from_value(json).unwrap()
    }

    fn minimal() -> serde_json::Value {
        serde_json::json!({
            "name": "nightly",
            "resource_type": "server",
            "targets": {"ids": ["4f1d6a52-0b52-4a8e-9c43-1d0c8e3f2a10"]},
            "schedules": [{"cron": "0 2 * * *"}],
            "retention": {"keep_last": 3}
        })
    }

    fn fields(result: Result<ValidPolicy, Vec<FieldError>>) -> Vec<String> {
        result.unwrap_err().into_iter().map(|e| e.field).collect()
    }

    #[test]
    fn a_minimal_policy_gets_its_defaults() {
        let policy = spec(minimal()).validate(now()).unwrap();
        let spec = policy.spec();
        assert!(spec.enabled);
        assert_eq!(spec.description, "");
        assert_eq!(spec.schedules[0].timezone, "UTC");
        assert_eq!(spec.options, PolicyOptions::default());
        assert_eq!(spec.options.timeout, "2h");
        assert_eq!(spec.options.missed_run, MissedRun::RunOnce);
        assert_eq!(
            policy.next_run_after(now()),
            Some("2026-11-26T02:00:00Z".parse().unwrap())
        );
    }

    #[test]
    fn a_disabled_policy_has_no_next_run() {
        let mut json = minimal();
        json["enabled"] = false.into();
        assert_eq!(
            spec(json).validate(now()).unwrap().next_run_after(now()),
            None
        );
    }

    #[test]
    fn every_problem_is_reported_with_its_path() {
        let json = serde_json::json!({
            "name": " ",
            "resource_type": "volume",
            "targets": {"ids": [], "selector": {"tags": ["a/b"]}},
            "schedules": [{"cron": "* * *", "timezone": "Nowhere/City"}, {"cron": "0 0 31 4 *"}],
            "retention": {"keep_daily": 0, "keep_within": "3y"},
            "options": {"timeout": "10s", "max_concurrent": 0, "name_template": "{x}",
                        "metadata": {"stacksnap_job_id": "x"}, "start_window": "forever"}
        });
        assert_eq!(
            fields(spec(json).validate(now())),
            [
                "name",
                "targets.selector.tags",
                "targets.selector.tags[0]",
                "schedules[0].cron",
                "schedules[0].timezone",
                "schedules[1].cron",
                "retention.keep_daily",
                "retention.keep_within",
                "options.name_template",
                "options.metadata.stacksnap_job_id",
                "options.timeout",
                "options.start_window",
                "options.max_concurrent",
            ]
        );
    }

    #[test]
    fn targets_and_retention_must_not_be_empty() {
        let mut json = minimal();
        json["targets"] = serde_json::json!({});
        json["retention"] = serde_json::json!({});
        json["schedules"] = serde_json::json!([]);
        assert_eq!(
            fields(spec(json).validate(now())),
            ["targets", "schedules", "retention"]
        );
    }

    #[test]
    fn repeated_ids_and_schedules_are_refused() {
        let mut json = minimal();
        let id = "4f1d6a52-0b52-4a8e-9c43-1d0c8e3f2a10";
        json["targets"] = serde_json::json!({"ids": [id, id]});
        json["schedules"] =
            serde_json::json!([{"cron": "@daily"}, {"cron": "@DAILY", "timezone": "UTC"}]);
        assert_eq!(
            fields(spec(json).validate(now())),
            ["targets.ids[1]", "schedules[1]"]
        );
    }

    #[test]
    fn volume_groups_are_named_by_id_only() {
        let mut json = minimal();
        json["resource_type"] = "volume_group".into();
        assert!(spec(json.clone()).validate(now()).is_ok());
        json["targets"]["selector"] = serde_json::json!({"metadata": {"tier": "db"}});
        assert_eq!(fields(spec(json).validate(now())), ["targets.selector"]);
    }

    #[test]
    fn unknown_fields_are_refused_when_parsing() {
        let mut json = minimal();
        json["retention"]["keep_forever"] = true.into();
        let err = serde_json::from_value::<PolicySpec>(json).unwrap_err();
        assert!(err.to_string().contains("unknown field `keep_forever`"));
    }
}
