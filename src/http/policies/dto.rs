//! Request and response shapes of `/v1/policies`.

use chrono::{DateTime, FixedOffset, SecondsFormat, Utc};
use serde::{Deserialize, Serialize};
use serde_json::Value;
use utoipa::{IntoParams, ToSchema};
use uuid::Uuid;

use crate::domain::{
    policy::{
        PolicyError, PolicyOptions, PolicyState, ResourceType, Retention, ScheduleSpec,
        StoredPolicy, Targets,
    },
    schedule::CronSchedule,
    schedule::FireTime,
};
use crate::store::freshness::Freshness;

/// Fields the service maintains; clients may not set them.
pub const READ_ONLY_FIELDS: [&str; 10] = [
    "id",
    "project_id",
    "created_by",
    "updated_by",
    "state",
    "error",
    "next_run_at",
    "version",
    "created_at",
    "updated_at",
];

/// Fields the service derives from the policy's runs and snapshots: a client
/// may send them back in a PATCH, and they are ignored (they change as runs end).
pub const DERIVED_FIELDS: [&str; 5] = [
    "last_run_at",
    "last_success_at",
    "stale_resources",
    "orphaned_resources",
    "unverified_resources",
];

/// A stored policy.
#[derive(Debug, Serialize, ToSchema)]
#[schema(as = Policy, example = json!({
    "id": "019ab8f0-6c1e-7d2a-9f3b-2a4c5d6e7f80",
    "project_id": "default",
    "name": "nightly-web",
    "description": "Web tier, every night at 02:00 Berlin time",
    "enabled": true,
    "resource_type": "server",
    "targets": {"ids": ["4f1d6a52-0b52-4a8e-9c43-1d0c8e3f2a10"], "selector": {"tags": ["backup"], "metadata": {"tier": "web"}}},
    "schedules": [{"cron": "0 2 * * *", "timezone": "Europe/Berlin"}],
    "retention": {"keep_last": 3, "keep_daily": 7, "keep_weekly": 4},
    "options": {"consistency": "quiesce_preferred", "name_template": "{policy}-{resource_name}-{scheduled_at:%Y%m%dT%H%MZ}",
                "metadata": {"team": "web"}, "timeout": "2h", "max_concurrent": 10,
                "missed_run": "run_once", "start_window": "1h",
                "verify": {"every": "7d", "networks": "none"}},
    "state": "active",
    "error": null,
    "next_run_at": "2026-11-26T01:00:00Z",
    "last_run_at": "2026-11-25T01:00:00Z",
    "last_success_at": "2026-11-25T01:07:42.118Z",
    "stale_resources": 0,
    "orphaned_resources": 1,
    "unverified_resources": 0,
    "version": 3,
    "created_at": "2026-11-20T09:12:44.512Z",
    "updated_at": "2026-11-25T17:03:10.007Z",
    "created_by": "5f2b7c1d9e8a4b3c8d7e6f5a4b3c2d1e",
    "updated_by": "9a8b7c6d5e4f40312a1b0c9d8e7f6a5b"
}))]
pub struct PolicyResponse {
    pub id: Uuid,
    /// The project that owns the policy.
    pub project_id: String,
    // The writable fields one by one rather than a flattened `PolicySpec`: that
    // schema refuses properties it does not name, so a composition with it
    // would refuse every stored policy. The spec's parts are JSON values so that
    // a broken policy can be shown as it is stored.
    /// Unique within the project, 1 to 255 characters.
    #[schema(example = "nightly-web")]
    pub name: String,
    pub description: String,
    /// A disabled policy keeps its snapshots but fires no runs.
    pub enabled: bool,
    #[schema(value_type = ResourceType)]
    pub resource_type: Value,
    #[schema(value_type = Targets)]
    pub targets: Value,
    /// The policy fires at the union of their times, once per instant.
    #[schema(value_type = Vec<ScheduleSpec>)]
    pub schedules: Value,
    #[schema(value_type = Retention)]
    pub retention: Value,
    #[schema(value_type = PolicyOptions)]
    pub options: Value,
    /// `active` (fires on its schedules), `disabled`, or `broken`: what is stored
    /// cannot be read or no longer passes validation (say, a rule added since it
    /// was written), so it fires nothing until a PATCH makes it valid. A broken
    /// policy shows its fields as stored, which may break the rules above: that is
    /// why it is broken.
    #[schema(example = "broken")]
    pub state: PolicyState,
    /// Why the policy is broken; `null` unless `state` is `broken`.
    #[schema(example = json!({"code": "invalid_policy",
        "message": "the stored policy no longer passes validation: options.name_template: strftime format \"%#z\" in {scheduled_at} cannot be written (e.g. %#z only reads offsets): use %z or %:z"}))]
    pub error: Option<PolicyError>,
    /// When the policy fires next; `null` when disabled or broken.
    pub next_run_at: Option<DateTime<Utc>>,
    /// When its newest run (scheduled or manual, not missed) was due; `null` before the first.
    #[schema(example = "2026-11-25T01:00:00Z")]
    pub last_run_at: Option<DateTime<Utc>>,
    /// When its newest run that succeeded (every job succeeded) finished; `null` before the first.
    #[schema(example = "2026-11-25T01:07:42.118Z")]
    pub last_success_at: Option<DateTime<Utc>>,
    /// How many targets are stale: their newest available snapshot of this policy is
    /// older than the RPO (`options.rpo`, or by default the longest gap between fire
    /// times over the next year plus `options.timeout`), or they have none. The
    /// targets are the resources of the policy's most recent resolved run plus the
    /// ids it names; `GET /v1/policies/{id}/targets` lists them.
    #[schema(example = 0, minimum = 0)]
    pub stale_resources: i64,
    /// How many resources the policy still holds available snapshots of but no
    /// longer targets (they stopped matching its selector, or were deleted): their
    /// snapshots stay under its retention until pruned.
    #[schema(example = 1, minimum = 0)]
    pub orphaned_resources: i64,
    /// With `options.verify`: how many targets have a snapshot but no passing
    /// restore test within `every` (never tested, the last pass too old, or a
    /// test failed since the last pass); `0` without `verify`.
    #[schema(example = 0, minimum = 0)]
    pub unverified_resources: i64,
    /// Bumped by every change; the `ETag` is this number in quotes.
    pub version: i64,
    pub created_at: DateTime<Utc>,
    pub updated_at: DateTime<Utc>,
    /// The Keystone user id of who created it; `null` when no user is known
    /// (created before users were recorded, or with `--auth none`).
    pub created_by: Option<String>,
    /// The Keystone user id of who changed it last (its creator until then);
    /// `null` when no user is known.
    pub updated_by: Option<String>,
}

impl From<StoredPolicy> for PolicyResponse {
    fn from(policy: StoredPolicy) -> Self {
        let written = policy.written();
        let field = |name: &str| written.get(name).cloned().unwrap_or(Value::Null);
        let text = |name: &str| {
            written
                .get(name)
                .and_then(Value::as_str)
                .unwrap_or_default()
                .to_owned()
        };
        let state = policy.state();
        Self {
            id: policy.id,
            project_id: policy.project_id.clone(),
            name: text("name"),
            description: text("description"),
            enabled: policy.enabled,
            resource_type: field("resource_type"),
            targets: field("targets"),
            schedules: field("schedules"),
            retention: field("retention"),
            options: field("options"),
            state,
            error: policy.error().cloned(),
            next_run_at: policy.next_run_at.filter(|_| state != PolicyState::Broken),
            last_run_at: None,
            last_success_at: None,
            stale_resources: 0,
            orphaned_resources: 0,
            unverified_resources: 0,
            version: policy.version,
            created_at: policy.created_at,
            updated_at: policy.updated_at,
            created_by: policy.authors.created_by,
            updated_by: policy.authors.updated_by,
        }
    }
}

impl PolicyResponse {
    /// The policy with its freshness, as the API shows it.
    pub fn with_freshness(self, freshness: Freshness) -> Self {
        Self {
            last_run_at: freshness.last_run_at,
            last_success_at: freshness.last_success_at,
            stale_resources: freshness.stale_resources,
            orphaned_resources: freshness.orphaned_resources,
            unverified_resources: freshness.unverified_resources,
            ..self
        }
    }
}

/// One page of policies.
#[derive(Debug, Serialize, ToSchema)]
#[schema(example = json!({"items": [], "next_cursor": "Y3ACAZq48GwefSqfOypMXW5_gLTtD_alpFYU"}))]
pub struct PolicyList {
    pub items: Vec<PolicyResponse>,
    /// Pass as `cursor` to get the next page; `null` on the last page.
    #[schema(pattern = "^Y3AC[A-Za-z0-9_-]{32}$")]
    pub next_cursor: Option<String>,
}

/// Filters and paging for `GET /v1/policies`.
#[derive(Debug, Deserialize, IntoParams)]
#[serde(deny_unknown_fields)]
#[into_params(parameter_in = Query)]
pub struct ListPoliciesQuery {
    /// Every project's policies, not only the token's project's (admin only; default `false`).
    pub all_projects: Option<bool>,
    /// Only enabled (`true`) or disabled (`false`) policies.
    pub enabled: Option<bool>,
    /// Only policies of this resource type.
    #[param(inline)]
    pub resource_type: Option<ResourceType>,
    /// Page size, 1 to 1000 (default 100).
    #[param(minimum = 1, maximum = 1000, example = 100)]
    pub limit: Option<u32>,
    /// The `next_cursor` of the previous page.
    #[param(pattern = "^Y3AC[A-Za-z0-9_-]{32}$")]
    pub cursor: Option<String>,
}

/// Which fire times `GET /v1/policies/{id}/schedule` shows.
#[derive(Debug, Deserialize, IntoParams)]
#[serde(deny_unknown_fields)]
#[into_params(parameter_in = Query)]
pub struct ScheduleQuery {
    /// How many fire times, 1 to 100 (default 10).
    #[param(minimum = 1, maximum = 100, example = 10)]
    pub count: Option<u32>,
    /// Show fire times after this RFC 3339 instant (default now).
    #[param(value_type = Option<DateTime<Utc>>, example = "2027-03-27T00:00:00Z")]
    pub from: Option<DateTime<FixedOffset>>,
}

/// The next fire times of a policy.
#[derive(Debug, Serialize, ToSchema)]
#[schema(as = Schedule, example = json!({
    "policy_id": "019ab8f0-6c1e-7d2a-9f3b-2a4c5d6e7f80",
    "enabled": true,
    "from": "2027-03-27T00:00:00Z",
    "items": [
        {"at": "2027-03-27T01:30:00Z", "local_time": "2027-03-27T02:30:00+01:00", "timezone": "Europe/Berlin", "schedule_index": 0, "cron": "30 2 * * *"},
        {"at": "2027-03-28T01:00:00Z", "local_time": "2027-03-28T03:00:00+02:00", "timezone": "Europe/Berlin", "schedule_index": 0, "cron": "30 2 * * *"}
    ]
}))]
pub struct ScheduleResponse {
    pub policy_id: Uuid,
    /// A disabled policy fires none of these until it is enabled again.
    pub enabled: bool,
    /// The instant the fire times follow, with the offset it was given in.
    #[serde(serialize_with = "rfc3339")]
    #[schema(value_type = DateTime<Utc>)]
    pub from: DateTime<FixedOffset>,
    pub items: Vec<FireTimeResponse>,
}

/// Writes an instant in RFC 3339 in the offset it was given in (`Z` for UTC):
/// converted to UTC, an instant early in year 0 given with a positive offset
/// would fall in year -1, which RFC 3339 cannot write.
fn rfc3339<S: serde::Serializer>(at: &DateTime<FixedOffset>, s: S) -> Result<S::Ok, S::Error> {
    s.serialize_str(&at.to_rfc3339_opts(SecondsFormat::AutoSi, true))
}

/// One fire time and the schedule that produced it.
#[derive(Debug, Serialize, ToSchema)]
#[schema(as = FireTime, example = json!({
    "at": "2027-03-28T01:00:00Z", "local_time": "2027-03-28T03:00:00+02:00",
    "timezone": "Europe/Berlin", "schedule_index": 0, "cron": "30 2 * * *"
}))]
pub struct FireTimeResponse {
    /// The instant, in UTC.
    #[schema(example = "2027-03-28T01:00:00Z")]
    pub at: String,
    /// The same instant as local time in the schedule's zone, with its offset.
    #[schema(example = "2027-03-28T03:00:00+02:00")]
    pub local_time: String,
    #[schema(example = "Europe/Berlin")]
    pub timezone: String,
    /// Index into `schedules` of the first schedule firing at this instant.
    #[schema(example = 0)]
    pub schedule_index: usize,
    #[schema(example = "30 2 * * *")]
    pub cron: String,
}

impl FireTimeResponse {
    /// Describes `fire` using the schedule it came from.
    pub fn new(fire: FireTime, schedule: &CronSchedule) -> Self {
        let timezone = schedule.timezone();
        Self {
            at: fire.at.to_rfc3339_opts(SecondsFormat::Secs, true),
            local_time: fire
                .at
                .with_timezone(&timezone)
                .to_rfc3339_opts(SecondsFormat::Secs, false),
            timezone: timezone.name().to_owned(),
            schedule_index: fire.schedule,
            cron: schedule.expression().to_owned(),
        }
    }
}

/// What happens to a deleted policy's snapshots.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize, ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum SnapshotsOnDelete {
    /// Keep them (no policy prunes them any more; delete them one by one).
    Keep,
    /// Delete every piece of every one of them.
    Delete,
}

/// Options of `DELETE /v1/policies/{id}`.
#[derive(Debug, Deserialize, IntoParams)]
#[serde(deny_unknown_fields)]
#[into_params(parameter_in = Query)]
pub struct DeletePolicyQuery {
    /// `keep` (default) or `delete` the policy's snapshots.
    #[param(inline)]
    pub snapshots: Option<SnapshotsOnDelete>,
}
