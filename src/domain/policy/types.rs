//! A policy parsed: every field typed, as the store keeps it and the engine
//! reads it. Serialised, each type has the JSON shape of its written form
//! (durations and templates as their text), so stored rows need no migration
//! and a stored value that no longer parses is an error, never a default.

use std::collections::BTreeMap;

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};
use utoipa::ToSchema;
use uuid::Uuid;

use crate::domain::{
    duration::HumanDuration, name_template::NameTemplate, networks::Networks, schedule::ScheduleSet,
};

/// What kind of OpenStack resource a policy snapshots.
#[derive(
    Debug,
    Clone,
    Copy,
    PartialEq,
    Eq,
    PartialOrd,
    Ord,
    Hash,
    Serialize,
    Deserialize,
    ToSchema,
    sqlx::Type,
)]
#[serde(rename_all = "snake_case")]
#[sqlx(type_name = "text", rename_all = "snake_case")]
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

/// Retention rules, parsed: a snapshot is kept when any rule keeps it.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RetentionRules {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub keep_last: Option<u32>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub keep_hourly: Option<u32>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub keep_daily: Option<u32>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub keep_weekly: Option<u32>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub keep_monthly: Option<u32>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub keep_yearly: Option<u32>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub keep_within: Option<HumanDuration>,
}

/// How a policy's snapshots are taken, parsed.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SnapshotOptions {
    pub consistency: Consistency,
    pub name_template: NameTemplate,
    pub metadata: BTreeMap<String, String>,
    /// How long one job may take before it is `timed_out`.
    pub timeout: HumanDuration,
    pub max_concurrent: Option<u32>,
    pub missed_run: MissedRun,
    /// How late a run may still start.
    pub start_window: HumanDuration,
    /// The recovery point objective as written; `None` for the default ([`ValidPolicy::rpo`]).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub rpo: Option<HumanDuration>,
    /// Snapshot a target as soon as it joins. Stored only when on, so a replica
    /// from before it still reads the other policies.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub snapshot_on_join: bool,
    /// Restore tests on a schedule. Stored only when set, so a replica from
    /// before it still reads the other policies.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub verify: Option<VerifyOptions>,
}

/// `options.verify`, parsed: how often and how each target's newest snapshot is tested.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct VerifyOptions {
    /// A target tested within this (passed or failed) is not tested again.
    pub every: HumanDuration,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub flavor: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub networks: Option<Networks>,
    /// As written; `None` for the default ([`VerifyOptions::timeout_secs`]).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub timeout: Option<HumanDuration>,
}

impl VerifyOptions {
    /// How long one test may take to be usable: 30 minutes unless written.
    pub fn timeout_secs(&self) -> u64 {
        self.timeout
            .as_ref()
            .map_or(30 * 60, HumanDuration::as_secs)
    }
}

/// A policy that passed every check, every field parsed.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ValidPolicy {
    pub name: String,
    pub description: String,
    pub enabled: bool,
    pub resource_type: ResourceType,
    pub targets: Targets,
    pub schedules: ScheduleSet,
    pub retention: RetentionRules,
    pub options: SnapshotOptions,
}

impl ValidPolicy {
    /// When the policy next fires after `now`: `None` when disabled.
    pub fn next_run_after(&self, now: DateTime<Utc>) -> Option<DateTime<Utc>> {
        if !self.enabled {
            return None;
        }
        self.schedules.next_after(now).map(|f| f.at)
    }

    /// The recovery point objective: `options.rpo`, or by default the longest
    /// gap between fire times over the year after `from` plus the timeout.
    pub fn rpo(&self, from: DateTime<Utc>) -> chrono::TimeDelta {
        match &self.options.rpo {
            Some(rpo) => rpo.as_chrono(),
            None => crate::domain::rpo::default_rpo(
                &self.schedules,
                self.options.timeout.as_chrono(),
                from,
            ),
        }
    }

    /// The zone retention reads calendar days in: the first schedule's.
    pub fn retention_timezone(&self) -> chrono_tz::Tz {
        self.schedules
            .schedules()
            .first()
            .map_or(chrono_tz::UTC, |s| s.timezone())
    }
}

/// A stored policy: its spec plus the fields the service maintains.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Policy {
    pub id: Uuid,
    pub project_id: String,
    pub spec: ValidPolicy,
    pub next_run_at: Option<DateTime<Utc>>,
    pub version: i64,
    pub created_at: DateTime<Utc>,
    pub updated_at: DateTime<Utc>,
    pub authors: Authors,
}

/// Who created a policy and who changed it last (Keystone user ids); `None`
/// where no user is known (written before users were recorded, or by a service
/// running with `--auth none`).
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct Authors {
    pub created_by: Option<String>,
    pub updated_by: Option<String>,
}
