//! A policy as it is stored, read against today's rules: whether it can still
//! fire (`active`, `disabled`) or not (`broken`, with the reason).
//!
//! A stored policy can stop parsing or passing validation without anyone
//! writing it: a rule tightened in a later release (a name template chrono
//! cannot write, a property name Glance reserves), a value written by a newer
//! replica, a hand edit. Such a policy is shown and skipped as `broken`, never
//! fired and never a reason to fail a page or a batch of other policies.

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};
use serde_json::Value;
use utoipa::ToSchema;
use uuid::Uuid;

use super::{Authors, Policy, PolicySpec, ValidPolicy};

/// Whether a policy fires.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "snake_case")]
#[schema(example = "active")]
pub enum PolicyState {
    /// Enabled and valid: it fires on its schedules.
    Active,
    /// Disabled by a user: it fires nothing until it is enabled again.
    Disabled,
    /// Its stored form cannot be read or no longer passes validation: it fires
    /// nothing until a PATCH makes it valid again. `error` says why.
    Broken,
}

/// Why a policy is broken, in the shape job and run errors have.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
#[schema(example = json!({"code": "invalid_policy",
    "message": "the stored policy no longer passes validation: options.metadata.owner: is reserved: stacksnap and Nova set this property themselves"}))]
pub struct PolicyError {
    /// `unreadable_policy` (this build cannot parse what is stored),
    /// `invalid_policy` (it parses, but breaks a rule; the message names each
    /// field), `trust_refused` (Keystone no longer honours the authority
    /// its creator delegated) or `trust_missing` (it holds no trust while the
    /// service authenticates its callers).
    pub code: String,
    pub message: String,
}

impl PolicyError {
    /// An error with `code` and `message`.
    pub fn new(code: impl Into<String>, message: impl Into<String>) -> Self {
        Self {
            code: code.into(),
            message: message.into(),
        }
    }
}

/// Parses a stored policy document (the shape a client writes) and checks it
/// against today's rules, as if it were written now.
///
/// # Errors
/// `unreadable_policy` with serde's reason, or `invalid_policy` naming every
/// field that breaks a rule.
pub fn check_stored(document: &Value, now: DateTime<Utc>) -> Result<ValidPolicy, PolicyError> {
    let spec: PolicySpec = serde_json::from_value(document.clone()).map_err(|e| {
        PolicyError::new(
            "unreadable_policy",
            format!("the stored policy cannot be read by this version of stacksnap: {e}"),
        )
    })?;
    spec.validate(now).map_err(|errors| {
        let fields: Vec<String> = errors
            .iter()
            .map(|e| format!("{}: {}", e.field, e.message))
            .collect();
        PolicyError::new(
            "invalid_policy",
            format!(
                "the stored policy no longer passes validation: {}",
                fields.join("; ")
            ),
        )
    })
}

/// A stored policy as the API shows it: what is stored, and what it means today.
#[derive(Debug, Clone, PartialEq)]
pub struct StoredPolicy {
    pub id: Uuid,
    pub project_id: String,
    pub enabled: bool,
    /// The policy as stored, in the shape a client writes it.
    pub document: Value,
    /// The policy parsed and checked against today's rules, or why it cannot be.
    pub spec: Result<ValidPolicy, PolicyError>,
    /// Why the scheduler set the policy aside, if it did (until the policy is written again).
    pub set_aside: Option<PolicyError>,
    pub next_run_at: Option<DateTime<Utc>>,
    pub version: i64,
    pub created_at: DateTime<Utc>,
    pub updated_at: DateTime<Utc>,
    pub authors: Authors,
}

impl StoredPolicy {
    /// Whether the policy fires.
    pub fn state(&self) -> PolicyState {
        match (&self.spec, &self.set_aside) {
            (Err(_), _) | (_, Some(_)) => PolicyState::Broken,
            (Ok(_), None) if self.enabled => PolicyState::Active,
            (Ok(_), None) => PolicyState::Disabled,
        }
    }

    /// Why the policy is broken: what is wrong with it now, else why the scheduler set it aside.
    pub fn error(&self) -> Option<&PolicyError> {
        self.spec.as_ref().err().or(self.set_aside.as_ref())
    }

    /// The policy in the form a client writes it: with every default filled in
    /// when it parses, as stored when it does not (what a PATCH applies to).
    pub fn written(&self) -> Value {
        let spec = match &self.spec {
            Ok(valid) => Ok(PolicySpec::from(valid)),
            Err(_) => serde_json::from_value::<PolicySpec>(self.document.clone()),
        };
        spec.ok()
            .and_then(|spec| serde_json::to_value(spec).ok())
            .unwrap_or_else(|| self.document.clone())
    }

    /// The policy with a next fire time planned again when it is enabled and
    /// valid but has none: an older replica stopped it (it could not parse a row
    /// a newer one wrote, and cleared `next_run_at` with only a log line). It
    /// resumes at its first fire time after `since` (its last scheduled run or
    /// last write, whichever is later), so the instants it slept through are
    /// fired or recorded missed as after any downtime; one that has no fire time
    /// left is set aside as broken. Anything else comes back unchanged: an enabled
    /// policy is never `active` without a next fire time.
    #[must_use]
    pub fn replanned(mut self, since: DateTime<Utc>) -> Self {
        if !self.enabled || self.next_run_at.is_some() || self.set_aside.is_some() {
            return self;
        }
        let Ok(spec) = &self.spec else {
            return self;
        };
        match spec.schedules.next_after(since) {
            Some(fire) => self.next_run_at = Some(fire.at),
            None => {
                self.set_aside = Some(PolicyError::new(
                    "invalid_policy",
                    format!("the policy's schedules have no fire time after {since}"),
                ));
            }
        }
        self
    }

    /// The policy parsed, when it can fire (or could, once enabled).
    ///
    /// # Errors
    /// Why it is broken.
    pub fn into_policy(self) -> Result<Policy, PolicyError> {
        let spec = match (self.spec, self.set_aside) {
            (Ok(spec), None) => spec,
            (Err(error), _) | (Ok(_), Some(error)) => return Err(error),
        };
        Ok(Policy {
            id: self.id,
            project_id: self.project_id,
            spec,
            next_run_at: self.next_run_at,
            version: self.version,
            created_at: self.created_at,
            updated_at: self.updated_at,
            authors: self.authors,
        })
    }
}

impl From<Policy> for StoredPolicy {
    /// A policy just written: valid, and not set aside.
    fn from(policy: Policy) -> Self {
        Self {
            id: policy.id,
            project_id: policy.project_id,
            enabled: policy.spec.enabled,
            document: serde_json::to_value(PolicySpec::from(&policy.spec))
                .expect("a spec serialises"),
            spec: Ok(policy.spec),
            set_aside: None,
            next_run_at: policy.next_run_at,
            version: policy.version,
            created_at: policy.created_at,
            updated_at: policy.updated_at,
            authors: policy.authors,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn now() -> DateTime<Utc> {
        "2026-11-25T12:00:00Z".parse().unwrap()
    }

    fn document() -> Value {
        serde_json::json!({
            "name": "nightly", "description": "", "enabled": true, "resource_type": "server",
            "targets": {"ids": ["4f1d6a52-0b52-4a8e-9c43-1d0c8e3f2a10"]},
            "schedules": [{"cron": "0 2 * * *", "timezone": "UTC"}],
            "retention": {"keep_last": 3},
            "options": {"metadata": {"team": "web"}}
        })
    }

    #[test]
    fn a_valid_stored_policy_parses() {
        let valid = check_stored(&document(), now()).unwrap();
        assert_eq!(valid.name, "nightly");
    }

    #[test]
    fn a_stored_policy_breaking_a_newer_rule_is_invalid_naming_each_field() {
        let mut stored = document();
        stored["options"]["metadata"]["owner"] = "x".into();
        stored["options"]["name_template"] = "{scheduled_at:%#z}".into();
        let error = check_stored(&stored, now()).unwrap_err();
        assert_eq!(error.code, "invalid_policy");
        assert!(
            error.message.contains("options.name_template: ")
                && error
                    .message
                    .contains("options.metadata.owner: is reserved"),
            "{error:?}"
        );
    }

    #[test]
    fn a_stored_policy_this_build_cannot_parse_is_unreadable() {
        let mut stored = document();
        stored["options"]["snapshot_kind"] = "incremental".into();
        let error = check_stored(&stored, now()).unwrap_err();
        assert_eq!(error.code, "unreadable_policy");
        assert!(error.message.contains("snapshot_kind"), "{error:?}");
    }

    #[test]
    fn broken_wins_over_enabled_and_disabled() {
        let policy = |enabled: bool, spec_ok: bool, set_aside: bool| StoredPolicy {
            id: Uuid::nil(),
            project_id: "p".into(),
            enabled,
            document: document(),
            spec: if spec_ok {
                check_stored(&document(), now())
            } else {
                Err(PolicyError::new("unreadable_policy", "x"))
            },
            set_aside: set_aside.then(|| PolicyError::new("unreadable_policy", "y")),
            next_run_at: None,
            version: 1,
            created_at: now(),
            updated_at: now(),
            authors: Authors::default(),
        };
        assert_eq!(policy(true, true, false).state(), PolicyState::Active);
        assert_eq!(policy(false, true, false).state(), PolicyState::Disabled);
        assert_eq!(policy(true, false, false).state(), PolicyState::Broken);
        assert_eq!(policy(false, false, false).state(), PolicyState::Broken);
        let set_aside = policy(true, true, true);
        assert_eq!(set_aside.state(), PolicyState::Broken);
        assert_eq!(set_aside.error().unwrap().message, "y");
        assert!(set_aside.into_policy().is_err());
        assert!(policy(false, true, false).into_policy().is_ok());
    }

    fn unplanned(enabled: bool) -> StoredPolicy {
        StoredPolicy {
            id: Uuid::nil(),
            project_id: "p".into(),
            enabled,
            document: document(),
            spec: check_stored(&document(), now()),
            set_aside: None,
            next_run_at: None,
            version: 1,
            created_at: now(),
            updated_at: now(),
            authors: Authors::default(),
        }
    }

    #[test]
    fn an_enabled_policy_without_a_next_fire_time_resumes_after_its_last_fire() {
        let since: DateTime<Utc> = "2026-11-20T02:00:00Z".parse().unwrap();
        let replanned = unplanned(true).replanned(since);
        assert_eq!(
            replanned.next_run_at,
            Some("2026-11-21T02:00:00Z".parse().unwrap())
        );
        assert_eq!(replanned.state(), PolicyState::Active);
    }

    #[test]
    fn replanning_leaves_disabled_planned_and_set_aside_policies_alone() {
        let since = now();
        assert_eq!(unplanned(false).replanned(since), unplanned(false));
        let mut planned = unplanned(true);
        planned.next_run_at = Some(now());
        assert_eq!(planned.clone().replanned(since), planned);
        let mut set_aside = unplanned(true);
        set_aside.set_aside = Some(PolicyError::new("invalid_policy", "x"));
        assert_eq!(set_aside.clone().replanned(since), set_aside);
    }

    #[test]
    fn a_policy_with_no_fire_time_left_is_broken_not_active() {
        use crate::domain::schedule::{CronSchedule, ScheduleSet};
        let mut stored = unplanned(true);
        // Set past today's check (it refuses such a cron), as an old row could be.
        let mut spec = stored.spec.clone().unwrap();
        spec.schedules = ScheduleSet::new(vec![CronSchedule::parse("0 0 30 2 *", "UTC").unwrap()]);
        stored.spec = Ok(spec);
        let replanned = stored.replanned(now());
        assert_eq!(replanned.state(), PolicyState::Broken);
        assert_eq!(replanned.next_run_at, None);
    }
}
