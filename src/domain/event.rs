//! Events: the kinds of change the service records for policies, runs, jobs
//! and snapshots, who made them, and the filter a reader (or a webhook) picks
//! them with: one kind, or a prefix such as `job.`.
//!
//! The events themselves are written by database triggers (migration
//! `create_event`); the names here are the ones its CHECK constraint allows.

use serde::{Deserialize, Serialize};
use utoipa::ToSchema;

use super::validation::FieldError;

/// What changed.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize, ToSchema, sqlx::Type)]
#[sqlx(type_name = "text")]
#[schema(example = "job.succeeded")]
pub enum EventKind {
    #[serde(rename = "policy.created")]
    #[sqlx(rename = "policy.created")]
    PolicyCreated,
    #[serde(rename = "policy.updated")]
    #[sqlx(rename = "policy.updated")]
    PolicyUpdated,
    #[serde(rename = "policy.deleted")]
    #[sqlx(rename = "policy.deleted")]
    PolicyDeleted,
    /// The scheduler set the policy aside (`data.error` says why).
    #[serde(rename = "policy.broken")]
    #[sqlx(rename = "policy.broken")]
    PolicyBroken,
    #[serde(rename = "run.fired")]
    #[sqlx(rename = "run.fired")]
    RunFired,
    #[serde(rename = "run.missed")]
    #[sqlx(rename = "run.missed")]
    RunMissed,
    #[serde(rename = "run.succeeded")]
    #[sqlx(rename = "run.succeeded")]
    RunSucceeded,
    #[serde(rename = "run.partially_failed")]
    #[sqlx(rename = "run.partially_failed")]
    RunPartiallyFailed,
    #[serde(rename = "run.failed")]
    #[sqlx(rename = "run.failed")]
    RunFailed,
    #[serde(rename = "job.started")]
    #[sqlx(rename = "job.started")]
    JobStarted,
    #[serde(rename = "job.succeeded")]
    #[sqlx(rename = "job.succeeded")]
    JobSucceeded,
    #[serde(rename = "job.failed")]
    #[sqlx(rename = "job.failed")]
    JobFailed,
    #[serde(rename = "job.timed_out")]
    #[sqlx(rename = "job.timed_out")]
    JobTimedOut,
    #[serde(rename = "job.cancelled")]
    #[sqlx(rename = "job.cancelled")]
    JobCancelled,
    #[serde(rename = "snapshot.created")]
    #[sqlx(rename = "snapshot.created")]
    SnapshotCreated,
    #[serde(rename = "snapshot.deleted")]
    #[sqlx(rename = "snapshot.deleted")]
    SnapshotDeleted,
    #[serde(rename = "snapshot.delete_failed")]
    #[sqlx(rename = "snapshot.delete_failed")]
    SnapshotDeleteFailed,
    #[serde(rename = "snapshot.delete_blocked")]
    #[sqlx(rename = "snapshot.delete_blocked")]
    SnapshotDeleteBlocked,
    /// A scheduled restore test of the snapshot passed (`options.verify`).
    #[serde(rename = "snapshot.verified")]
    #[sqlx(rename = "snapshot.verified")]
    SnapshotVerified,
    /// A scheduled restore test of the snapshot failed (`options.verify`).
    #[serde(rename = "snapshot.verify_failed")]
    #[sqlx(rename = "snapshot.verify_failed")]
    SnapshotVerifyFailed,
}

impl EventKind {
    pub const ALL: [Self; 20] = [
        Self::PolicyCreated,
        Self::PolicyUpdated,
        Self::PolicyDeleted,
        Self::PolicyBroken,
        Self::RunFired,
        Self::RunMissed,
        Self::RunSucceeded,
        Self::RunPartiallyFailed,
        Self::RunFailed,
        Self::JobStarted,
        Self::JobSucceeded,
        Self::JobFailed,
        Self::JobTimedOut,
        Self::JobCancelled,
        Self::SnapshotCreated,
        Self::SnapshotDeleted,
        Self::SnapshotDeleteFailed,
        Self::SnapshotDeleteBlocked,
        Self::SnapshotVerified,
        Self::SnapshotVerifyFailed,
    ];

    /// The name used in the API and the database, e.g. `job.timed_out`.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::PolicyCreated => "policy.created",
            Self::PolicyUpdated => "policy.updated",
            Self::PolicyDeleted => "policy.deleted",
            Self::PolicyBroken => "policy.broken",
            Self::RunFired => "run.fired",
            Self::RunMissed => "run.missed",
            Self::RunSucceeded => "run.succeeded",
            Self::RunPartiallyFailed => "run.partially_failed",
            Self::RunFailed => "run.failed",
            Self::JobStarted => "job.started",
            Self::JobSucceeded => "job.succeeded",
            Self::JobFailed => "job.failed",
            Self::JobTimedOut => "job.timed_out",
            Self::JobCancelled => "job.cancelled",
            Self::SnapshotCreated => "snapshot.created",
            Self::SnapshotDeleted => "snapshot.deleted",
            Self::SnapshotDeleteFailed => "snapshot.delete_failed",
            Self::SnapshotDeleteBlocked => "snapshot.delete_blocked",
            Self::SnapshotVerified => "snapshot.verified",
            Self::SnapshotVerifyFailed => "snapshot.verify_failed",
        }
    }
}

/// The prefixes a filter may name: what a kind says changed.
pub const KIND_PREFIXES: [&str; 4] = ["policy.", "run.", "job.", "snapshot."];

/// The actor of an API change made with no known user (`--auth none`).
pub const API_ACTOR: &str = "api";

/// Who made a change through the API: the caller's Keystone user id, or [`API_ACTOR`].
pub fn api_actor(user_id: Option<&str>) -> &str {
    user_id.unwrap_or(API_ACTOR)
}

/// The regular expression that matches exactly what [`KindFilter::parse`]
/// accepts, as the OpenAPI document declares it: each prefix, optionally
/// followed by the rest of one of its kinds.
pub fn kind_filter_pattern() -> String {
    let groups: Vec<String> = KIND_PREFIXES
        .iter()
        .map(|prefix| {
            let rests: Vec<&str> = EventKind::ALL
                .iter()
                .filter_map(|k| k.as_str().strip_prefix(prefix))
                .collect();
            format!("{}\\.({})?", prefix.trim_end_matches('.'), rests.join("|"))
        })
        .collect();
    format!("^({})$", groups.join("|"))
}

/// Which kinds a reader wants: one kind, or every kind with a prefix.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum KindFilter {
    Exactly(EventKind),
    Prefix(&'static str),
}

impl KindFilter {
    /// Parses `job.failed` (one kind) or `job.` (a prefix ending in a dot).
    ///
    /// # Errors
    /// The field error for `field` when it names neither a kind nor a prefix.
    pub fn parse(field: &str, text: &str) -> Result<Self, FieldError> {
        if let Some(kind) = EventKind::ALL.into_iter().find(|k| k.as_str() == text) {
            return Ok(Self::Exactly(kind));
        }
        if let Some(prefix) = KIND_PREFIXES.into_iter().find(|p| *p == text) {
            return Ok(Self::Prefix(prefix));
        }
        Err(FieldError::new(
            field,
            format!(
                "is neither an event kind nor a prefix of kinds ({}); found {text:?}",
                KIND_PREFIXES.join(", ")
            ),
        ))
    }

    /// Whether an event of `kind` passes.
    pub fn matches(self, kind: EventKind) -> bool {
        match self {
            Self::Exactly(wanted) => wanted == kind,
            Self::Prefix(prefix) => kind.as_str().starts_with(prefix),
        }
    }

    /// The filter as written.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Exactly(kind) => kind.as_str(),
            Self::Prefix(prefix) => prefix,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_kind_round_trips_through_its_name_and_serde() {
        for kind in EventKind::ALL {
            let json = serde_json::to_value(kind).unwrap();
            assert_eq!(json, kind.as_str());
            assert_eq!(serde_json::from_value::<EventKind>(json).unwrap(), kind);
            assert_eq!(
                KindFilter::parse("kind", kind.as_str()).unwrap(),
                KindFilter::Exactly(kind)
            );
        }
    }

    #[test]
    fn every_kind_has_exactly_one_prefix() {
        for kind in EventKind::ALL {
            let prefixes: Vec<_> = KIND_PREFIXES
                .into_iter()
                .filter(|p| kind.as_str().starts_with(p))
                .collect();
            assert_eq!(prefixes.len(), 1, "{kind:?}");
        }
    }

    #[test]
    fn a_prefix_matches_its_kinds_only() {
        let jobs = KindFilter::parse("kind", "job.").unwrap();
        assert!(jobs.matches(EventKind::JobStarted));
        assert!(jobs.matches(EventKind::JobTimedOut));
        assert!(!jobs.matches(EventKind::RunFailed));
        assert!(!jobs.matches(EventKind::SnapshotCreated));
        let one = KindFilter::parse("kind", "run.failed").unwrap();
        assert!(one.matches(EventKind::RunFailed));
        assert!(!one.matches(EventKind::RunPartiallyFailed));
    }

    #[test]
    fn unknown_kinds_and_partial_prefixes_are_refused() {
        for bad in ["", "job", "jo", "job.start", "JOB.", "job.*", "jobs.", "."] {
            let error = KindFilter::parse("kind", bad).unwrap_err();
            assert_eq!(error.field, "kind", "{bad:?}");
        }
    }

    #[test]
    fn the_api_actor_is_the_user_or_api() {
        assert_eq!(api_actor(Some("5f2b")), "5f2b");
        assert_eq!(api_actor(None), "api");
    }
}
