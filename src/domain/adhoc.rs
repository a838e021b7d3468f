//! One-off snapshot requests (`POST /v1/snapshots`), e.g. from a CI pipeline before a deploy.

use std::collections::BTreeMap;

use serde::Deserialize;
use utoipa::ToSchema;
use uuid::Uuid;

use chrono::{DateTime, TimeDelta, Utc};

use super::{
    duration::HumanDuration,
    job::{JobOptions, NewJob},
    name_template::NameTemplate,
    policy::{Consistency, ResourceType, check_metadata},
    validation::{FieldError, Violations},
};

/// How late a one-off snapshot may still start (a busy server is retried until then).
const START_WINDOW: TimeDelta = TimeDelta::hours(1);

const ADHOC_NAME_TEMPLATE: &str = "{resource_name}-adhoc-{scheduled_at:%Y%m%dT%H%M%SZ}";

/// What a project id named in a request must be: Keystone keeps them in 64 characters.
pub const PROJECT_ID_RULE: &str = "must be a project id: 1 to 64 characters, no white space";

/// The most characters of a Keystone project id.
pub const MAX_PROJECT_ID_CHARS: usize = 64;

/// Whether `text` can be a Keystone project id.
pub fn is_project_id(text: &str) -> bool {
    !text.is_empty()
        && text.chars().count() <= MAX_PROJECT_ID_CHARS
        && !text.chars().any(|c| c.is_whitespace() || c.is_control())
}

/// The longest a client may ask `POST /v1/snapshots` to wait.
pub const MAX_WAIT_SECS: u64 = 3600;

/// A request to snapshot one resource now.
#[derive(Debug, Clone, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
#[schema(example = json!({"resource_type": "server", "resource_id": "4f1d6a52-0b52-4a8e-9c43-1d0c8e3f2a10",
    "name": "pre-deploy-web-1", "metadata": {"pipeline": "deploy-42"}, "consistency": "quiesce_preferred",
    "if_older_than": "6h"}))]
pub struct AdhocSnapshotRequest {
    pub resource_type: ResourceType,
    pub resource_id: Uuid,
    /// The artefact's name, followed by `-<job id>`; default `<resource name>-adhoc-<time>-<job id>`.
    #[serde(default)]
    pub name: Option<String>,
    /// Properties stamped on the image or volume snapshot.
    #[serde(default)]
    pub metadata: BTreeMap<String, String>,
    #[serde(default)]
    pub consistency: Consistency,
    /// How long the job may take; default `2h`.
    #[serde(default)]
    #[schema(example = "2h")]
    pub timeout: Option<String>,
    /// The project to snapshot in; default the token's. Another project's id
    /// needs the `admin` role.
    #[serde(default)]
    #[schema(example = "8d3c1f0b2a4e4b6c9d7e5f1a2b3c4d5e")]
    pub project_id: Option<String>,
    /// Take no new snapshot when the resource's newest complete, available
    /// snapshot in the project is younger than this: answer 200 with the job
    /// that took it, marked `reused: true`. With `consistency:
    /// quiesce_required`, only a quiesced snapshot is reused.
    #[serde(default)]
    #[schema(value_type = Option<String>, example = "6h")]
    pub if_older_than: Option<HumanDuration>,
}

impl AdhocSnapshotRequest {
    /// Checks every field; returns the timeout in seconds.
    ///
    /// # Errors
    /// Every invalid field.
    pub fn validate(&self) -> Result<u64, Vec<FieldError>> {
        let mut v = Violations::default();
        if let Some(name) = &self.name {
            v.check(
                name.trim().is_empty() || name.chars().count() > 255,
                "name",
                "must be 1 to 255 characters",
            );
        }
        check_metadata(&mut v, "metadata", &self.metadata, true);
        if let Some(project) = &self.project_id {
            v.check(!is_project_id(project), "project_id", PROJECT_ID_RULE);
        }
        let timeout = match self.timeout.as_deref().map(str::parse::<HumanDuration>) {
            None => 7200,
            Some(Ok(d)) if (60..=7 * 86_400).contains(&d.as_secs()) => d.as_secs(),
            Some(Ok(_)) => {
                v.add("timeout", "must be between 1m and 7d");
                0
            }
            Some(Err(e)) => {
                v.add("timeout", e.to_string());
                0
            }
        };
        v.finish(timeout)
    }

    /// How young the newest snapshot of the resource must be to be reused
    /// instead of taking a new one; `None` always takes one.
    pub fn reuse_within(&self) -> Option<TimeDelta> {
        self.if_older_than.as_ref().map(HumanDuration::as_chrono)
    }

    /// The name template: the fixed name, or `<resource name>-adhoc-<time>`.
    pub fn name_template(&self) -> NameTemplate {
        match &self.name {
            Some(name) => NameTemplate::fixed(name),
            None => ADHOC_NAME_TEMPLATE
                .parse()
                .unwrap_or_else(|_| unreachable!("the one-off template parses")),
        }
    }

    /// The job this request makes, given its checked timeout.
    pub fn job(&self, timeout_secs: u64, now: DateTime<Utc>) -> NewJob {
        NewJob {
            job_id: Uuid::now_v7(),
            resource_type: self.resource_type,
            resource_id: self.resource_id.to_string(),
            resource_name: None,
            options: JobOptions {
                name_template: self.name_template(),
                policy_name: "adhoc".into(),
                metadata: self.metadata.clone(),
                consistency: self.consistency,
                timeout_secs,
                max_concurrent: None,
                scheduled_at: now,
            },
            start_by: now + START_WINDOW,
            kind: crate::domain::job::JobKind::Snapshot,
            restore: None,
        }
    }
}

/// Parses `?wait=`: a duration up to an hour.
///
/// # Errors
/// A message for the `wait` parameter.
pub fn parse_wait(text: &str) -> Result<std::time::Duration, String> {
    let wait: HumanDuration = text.parse().map_err(|e| format!("{e}"))?;
    if wait.as_secs() > MAX_WAIT_SECS {
        return Err("must be at most 1h".into());
    }
    Ok(wait.as_std())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn request(json: serde_json::Value) -> AdhocSnapshotRequest {
        serde_json::from_value(json).unwrap()
    }

    #[test]
    fn defaults_and_fixed_names() {
        let r = request(
            serde_json::json!({"resource_type": "volume", "resource_id": "4f1d6a52-0b52-4a8e-9c43-1d0c8e3f2a10"}),
        );
        assert_eq!(r.validate(), Ok(7200));
        assert!(r.name_template().as_str().contains("{resource_name}"));
        let r = request(
            serde_json::json!({"resource_type": "server", "resource_id": "4f1d6a52-0b52-4a8e-9c43-1d0c8e3f2a10", "name": "pre-{deploy}"}),
        );
        assert_eq!(r.name_template().as_str(), "pre-{{deploy}}");
    }

    #[test]
    fn bad_fields_are_named() {
        let r = request(
            serde_json::json!({"resource_type": "server", "resource_id": "4f1d6a52-0b52-4a8e-9c43-1d0c8e3f2a10",
            "name": "", "timeout": "10s", "metadata": {"stacksnap_job_id": "x"}}),
        );
        let fields: Vec<String> = r
            .validate()
            .unwrap_err()
            .into_iter()
            .map(|e| e.field)
            .collect();
        assert_eq!(fields, ["name", "metadata.stacksnap_job_id", "timeout"]);
    }

    #[test]
    fn a_reuse_window_is_a_duration() {
        let r = request(
            serde_json::json!({"resource_type": "server", "resource_id": "4f1d6a52-0b52-4a8e-9c43-1d0c8e3f2a10",
            "if_older_than": "6h"}),
        );
        assert_eq!(r.reuse_within(), Some(TimeDelta::hours(6)));
        let bad = serde_json::from_value::<AdhocSnapshotRequest>(
            serde_json::json!({"resource_type": "server", "resource_id": "4f1d6a52-0b52-4a8e-9c43-1d0c8e3f2a10",
            "if_older_than": "soon"}),
        );
        assert!(bad.is_err());
    }

    #[test]
    fn waits_are_capped_at_an_hour() {
        assert_eq!(parse_wait("90s"), Ok(std::time::Duration::from_secs(90)));
        assert!(parse_wait("2h").is_err());
        assert!(parse_wait("soon").is_err());
    }
}
