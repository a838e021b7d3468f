//! Checking a written policy, every field at once, and parsing it into a
//! [`ValidPolicy`].

use std::collections::{BTreeMap, HashSet};

use chrono::{DateTime, Utc};

use super::{
    MAX_CONCURRENT, MAX_DESCRIPTION_CHARS, MAX_KEEP_COUNT, MAX_METADATA_CHARS, MAX_METADATA_ITEMS,
    MAX_NAME_CHARS, MAX_SCHEDULES, MAX_SELECTOR_TERMS, MAX_TAG_CHARS, MAX_TARGET_IDS,
    PolicyOptions, PolicySpec, ResourceType, Retention, RetentionRules, ScheduleSpec,
    SnapshotOptions, Targets, ValidPolicy, VerifyOptions, VerifySpec,
};
use crate::domain::{
    duration::HumanDuration,
    name_template::NameTemplate,
    networks::check_networks,
    schedule::{CronSchedule, ScheduleSet, parse_cron, parse_timezone},
    validation::{FieldError, Violations},
};

/// Property keys a policy may not stamp: those Nova sets on snapshots, and
/// Glance's own image fields (a property named `owner` or `status` would
/// collide with the image's real owner or status).
pub const RESERVED_METADATA_KEYS: [&str; 33] = [
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
/// Property-key prefixes a policy may not stamp: stacksnap's own and Glance's.
pub const RESERVED_METADATA_PREFIXES: [&str; 2] = ["stacksnap_", "os_glance_"];

impl PolicySpec {
    /// Checks every field, reporting all problems at once, and parses the policy.
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
        let retention = check_retention(&mut v, &self.retention);
        let options = check_options(&mut v, &self.options);
        let verify = self
            .options
            .verify
            .as_ref()
            .map(|verify| check_verify(&mut v, self.resource_type, verify));
        match (retention, options, verify) {
            (Some(retention), Some(mut options), verify) if v.is_empty() => Ok(ValidPolicy {
                name: self.name,
                description: self.description,
                enabled: self.enabled,
                resource_type: self.resource_type,
                targets: self.targets,
                schedules,
                retention,
                options: {
                    options.verify = verify.flatten();
                    options
                },
            }),
            _ => Err(v.into_errors()),
        }
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
        let schedule = CronSchedule::new(&spec.cron, cron, tz);
        if !seen.insert((spec.cron.trim().to_ascii_uppercase(), schedule.timezone())) {
            v.add(format!("schedules[{i}]"), "repeats an earlier schedule");
        }
        if schedule.next_after(now).is_none() {
            v.add(format!("schedules[{i}].cron"), "never fires (no such date)");
        }
        parsed.push(schedule);
    }
    ScheduleSet::new(parsed)
}

fn check_retention(v: &mut Violations, retention: &Retention) -> Option<RetentionRules> {
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
    let keep_within = match &retention.keep_within {
        Some(within) => Some(check_duration(v, "retention.keep_within", within, None)?),
        None => None,
    };
    Some(RetentionRules {
        keep_last: retention.keep_last,
        keep_hourly: retention.keep_hourly,
        keep_daily: retention.keep_daily,
        keep_weekly: retention.keep_weekly,
        keep_monthly: retention.keep_monthly,
        keep_yearly: retention.keep_yearly,
        keep_within,
    })
}

fn check_options(v: &mut Violations, options: &PolicyOptions) -> Option<SnapshotOptions> {
    let name_template = options
        .name_template
        .parse::<NameTemplate>()
        .map_err(|e| v.add("options.name_template", e))
        .ok();
    check_metadata(v, "options.metadata", &options.metadata, true);
    let day = 86_400;
    let timeout = check_duration(v, "options.timeout", &options.timeout, Some((60, 7 * day)));
    let start_window = check_duration(
        v,
        "options.start_window",
        &options.start_window,
        Some((60, 7 * day)),
    );
    let rpo = options
        .rpo
        .as_deref()
        .map(|rpo| check_duration(v, "options.rpo", rpo, Some((60, 366 * day))));
    if let Some(n) = options.max_concurrent {
        v.check(
            n == 0 || n > MAX_CONCURRENT,
            "options.max_concurrent",
            format!("must be between 1 and {MAX_CONCURRENT}, or null for no per-policy limit"),
        );
    }
    Some(SnapshotOptions {
        consistency: options.consistency,
        name_template: name_template?,
        metadata: options.metadata.clone(),
        timeout: timeout?,
        max_concurrent: options.max_concurrent,
        missed_run: options.missed_run,
        start_window: start_window?,
        rpo: match rpo {
            Some(None) => return None,
            written => written.flatten(),
        },
        snapshot_on_join: options.snapshot_on_join,
        verify: None,
    })
}

/// Checks `options.verify`: the cadence, the test's timeout, and the server
/// fields (refused on volume and group policies, which restore no server).
fn check_verify(
    v: &mut Violations,
    resource_type: ResourceType,
    verify: &VerifySpec,
) -> Option<VerifyOptions> {
    let day = 86_400;
    let every = check_duration(
        v,
        "options.verify.every",
        &verify.every,
        Some((3600, 366 * day)),
    );
    let timeout = verify
        .timeout
        .as_deref()
        .map(|t| check_duration(v, "options.verify.timeout", t, Some((60, day))));
    if let Some(flavor) = &verify.flavor {
        v.check(
            flavor.trim().is_empty() || flavor.chars().count() > MAX_NAME_CHARS,
            "options.verify.flavor",
            format!("must be 1 to {MAX_NAME_CHARS} characters"),
        );
    }
    if let Some(networks) = &verify.networks {
        check_networks(v, "options.verify.networks", networks);
    }
    if resource_type != ResourceType::Server {
        for (field, set) in [
            ("options.verify.flavor", verify.flavor.is_some()),
            ("options.verify.networks", verify.networks.is_some()),
        ] {
            v.check(set, field, "applies only to policies of servers");
        }
    }
    Some(VerifyOptions {
        every: every?,
        flavor: verify.flavor.clone(),
        networks: verify.networks.clone(),
        timeout: match timeout {
            Some(None) => return None,
            written => written.flatten(),
        },
    })
}

/// Parses a duration, recording why it is refused.
fn check_duration(
    v: &mut Violations,
    field: &str,
    text: &str,
    bounds: Option<(u64, u64)>,
) -> Option<HumanDuration> {
    match text.parse::<HumanDuration>() {
        Err(e) => {
            v.add(field, e.to_string());
            None
        }
        Ok(d) => {
            let out_of_bounds =
                bounds.is_some_and(|(min, max)| d.as_secs() < min || d.as_secs() > max);
            if let (true, Some((min, max))) = (out_of_bounds, bounds) {
                v.add(
                    field,
                    format!("must be between {}m and {}d", min / 60, max / 86_400),
                );
                return None;
            }
            Some(d)
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
        assert!(policy.enabled);
        assert_eq!(policy.description, "");
        assert_eq!(policy.schedules.schedules()[0].timezone(), chrono_tz::UTC);
        assert_eq!(PolicySpec::from(&policy).options, PolicyOptions::default());
        assert_eq!(policy.options.timeout.as_secs(), 7200);
        assert_eq!(policy.options.start_window.as_secs(), 3600);
        assert_eq!(policy.options.missed_run, super::super::MissedRun::RunOnce);
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
    fn a_valid_policy_is_stored_in_the_shape_it_was_written_and_reads_back_equal() {
        let mut json = minimal();
        json["retention"]["keep_within"] = "1h30m".into();
        json["options"] = serde_json::json!({"timeout": "90m", "name_template": "{policy}-{{x}}"});
        let policy = spec(json).validate(now()).unwrap();
        let stored = serde_json::to_value(&policy).unwrap();
        assert_eq!(stored["retention"]["keep_within"], "1h30m");
        assert_eq!(stored["options"]["timeout"], "90m");
        assert_eq!(stored["options"]["name_template"], "{policy}-{{x}}");
        assert_eq!(stored["schedules"][0]["timezone"], "UTC");
        let read: ValidPolicy = serde_json::from_value(stored.clone()).unwrap();
        assert_eq!(read, policy);
        // The API shows `snapshot_on_join: false`; the store leaves it out, so a
        // replica from before the option still reads every policy without it.
        assert!(stored["options"].get("snapshot_on_join").is_none());
        let mut shown = stored;
        shown["options"]["snapshot_on_join"] = false.into();
        assert_eq!(
            serde_json::to_value(PolicySpec::from(&read)).unwrap(),
            shown
        );
    }

    #[test]
    fn a_stored_policy_that_no_longer_parses_is_an_error_naming_the_value() {
        let mut stored = serde_json::to_value(spec(minimal()).validate(now()).unwrap()).unwrap();
        stored["options"]["start_window"] = "soon".into();
        let err = serde_json::from_value::<ValidPolicy>(stored).unwrap_err();
        assert!(err.to_string().contains("duration \"soon\""), "{err}");
    }

    #[test]
    fn verify_is_parsed_kept_as_written_and_each_bad_field_named() {
        let mut json = minimal();
        json["options"] = serde_json::json!({"verify": {"every": "7d"}});
        let policy = spec(json).validate(now()).unwrap();
        let verify = policy.options.verify.as_ref().unwrap();
        assert_eq!(verify.every.as_secs(), 7 * 86_400);
        assert_eq!(verify.timeout_secs(), 1800, "30m by default");
        let shown = PolicySpec::from(&policy).options.verify.unwrap();
        assert_eq!(shown.every, "7d");
        assert_eq!(shown.timeout, None);
        assert!(
            serde_json::to_value(spec(minimal()).validate(now()).unwrap()).unwrap()["options"]
                .get("verify")
                .is_none(),
            "stored only when set"
        );
        let mut json = minimal();
        json["options"] = serde_json::json!({"verify": {"every": "10m", "timeout": "2d",
            "flavor": "", "networks": [{"network": "n", "port": "p"}]}});
        assert_eq!(
            fields(spec(json).validate(now())),
            [
                "options.verify.every",
                "options.verify.timeout",
                "options.verify.flavor",
                "options.verify.networks[0]"
            ]
        );
        let mut json = minimal();
        json["resource_type"] = "volume".into();
        json["options"] = serde_json::json!({"verify": {"every": "1d", "networks": "auto"}});
        assert_eq!(
            fields(spec(json).validate(now())),
            ["options.verify.networks"]
        );
        let mut json = minimal();
        json["options"] = serde_json::json!({"verify": {"every": "1d", "colour": "red"}});
        assert!(serde_json::from_value::<PolicySpec>(json).is_err());
    }

    #[test]
    fn rpo_is_optional_kept_as_written_and_bounded() {
        let policy = spec(minimal()).validate(now()).unwrap();
        assert_eq!(policy.options.rpo, None);
        assert_eq!(
            policy.rpo(now()),
            chrono::TimeDelta::hours(26),
            "a day plus 2h"
        );
        assert!(
            serde_json::to_value(&policy).unwrap()["options"]
                .get("rpo")
                .is_none()
        );
        let mut json = minimal();
        json["options"] = serde_json::json!({"rpo": "36h"});
        let written = spec(json).validate(now()).unwrap();
        assert_eq!(written.rpo(now()), chrono::TimeDelta::hours(36));
        assert_eq!(
            PolicySpec::from(&written).options.rpo.as_deref(),
            Some("36h")
        );
        for bad in ["30s", "400d", "soon"] {
            let mut json = minimal();
            json["options"] = serde_json::json!({"rpo": bad});
            assert_eq!(fields(spec(json).validate(now())), ["options.rpo"], "{bad}");
        }
    }

    #[test]
    fn unknown_fields_are_refused_when_parsing() {
        let mut json = minimal();
        json["retention"]["keep_forever"] = true.into();
        let err = serde_json::from_value::<PolicySpec>(json).unwrap_err();
        assert!(err.to_string().contains("unknown field `keep_forever`"));
    }
}
