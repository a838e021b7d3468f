//! Restore tests on a schedule (`options.verify`): the job that tests one
//! managed snapshot. A restore test is a restore (`domain::restore`) of kind
//! `verify` into a throwaway resource, deleted once it proved usable.

use chrono::{DateTime, TimeDelta, Utc};
use serde::{Deserialize, Serialize};
use utoipa::ToSchema;
use uuid::Uuid;

use super::{
    job::{JobOptions, NewJob},
    name_template::NameTemplate,
    policy::{Consistency, VerifyOptions},
    restore::{NotRestorable, RestoreRequest, SnapshotPieces},
    status::JobKind,
};

/// Why the last restore test of a snapshot failed, and when.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
#[schema(example = json!({"code": "server_error", "message": "the new server went to ERROR: No valid host was found.",
    "at": "2026-11-27T03:10:00Z"}))]
pub struct VerifyError {
    /// The restore test job's error code (`server_error`, `flavor_not_found`, `timed_out`, ...).
    pub code: String,
    pub message: String,
    /// When the test ended.
    pub at: DateTime<Utc>,
}

/// How late a restore test may still start before it is given up (the next
/// pass queues another once `every` has passed).
const START_WINDOW: TimeDelta = TimeDelta::hours(1);

/// The restore-test job of `snapshot` for the policy `policy_name`: the
/// policy's flavor and networks (servers), a name that says what it is
/// (`<source>-verify-<first 8 characters of the job id>`), the test's timeout,
/// and no share of the policy's `max_concurrent`.
///
/// # Errors
/// The snapshot has nothing a restore can start from.
pub fn verify_job(
    policy_name: &str,
    verify: &VerifyOptions,
    snapshot: &SnapshotPieces,
    job_id: Uuid,
    now: DateTime<Utc>,
) -> Result<NewJob, NotRestorable> {
    let server = snapshot.resource_type == super::policy::ResourceType::Server;
    let request = RestoreRequest {
        flavor: verify.flavor.clone().filter(|_| server),
        networks: verify.networks.clone().filter(|_| server),
        ..RestoreRequest::default()
    };
    let mut spec = request.spec(snapshot, job_id)?;
    let source = snapshot
        .resource_name
        .as_deref()
        .filter(|n| !n.is_empty())
        .unwrap_or(&snapshot.resource_id);
    let job = job_id.to_string();
    let base: String = source.chars().take(200).collect();
    spec.name = format!("{base}-verify-{}", &job[..8]);
    Ok(NewJob {
        job_id,
        resource_type: snapshot.resource_type,
        resource_id: snapshot.resource_id.clone(),
        resource_name: snapshot.resource_name.clone(),
        options: JobOptions {
            name_template: NameTemplate::fixed(&spec.name),
            policy_name: policy_name.to_owned(),
            metadata: spec.metadata.clone(),
            consistency: Consistency::default(),
            timeout_secs: verify.timeout_secs(),
            max_concurrent: None,
            scheduled_at: now,
        },
        start_by: now + START_WINDOW,
        kind: JobKind::Verify,
        restore: Some(spec),
    })
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;
    use crate::domain::{networks::Networks, policy::ResourceType};

    fn pieces(resource_type: ResourceType) -> SnapshotPieces {
        SnapshotPieces {
            snapshot_id: Uuid::nil(),
            resource_type,
            resource_id: "r1".into(),
            resource_name: Some("web-1".into()),
            image_id: Some("img".into()),
            volume_snapshot_id: Some("vs".into()),
            volume_snapshot_ids: Vec::new(),
            group_snapshot_id: Some("gs".into()),
            size_gb: Some(10),
            source_flavor: Some(json!({"original_name": "m1.small"})),
            source_az: None,
            volume_backed: false,
        }
    }

    fn options() -> VerifyOptions {
        serde_json::from_value(json!({"every": "7d", "flavor": "m1.tiny", "networks": "auto"}))
            .unwrap()
    }

    #[test]
    fn a_server_test_boots_with_the_policys_flavor_and_networks_under_a_telling_name() {
        let now = Utc::now();
        let job = verify_job(
            "nightly",
            &options(),
            &pieces(ResourceType::Server),
            Uuid::nil(),
            now,
        )
        .unwrap();
        assert_eq!(job.kind, JobKind::Verify);
        let spec = job.restore.unwrap();
        assert_eq!(spec.name, "web-1-verify-00000000");
        assert_eq!(spec.flavor.as_deref(), Some("m1.tiny"));
        assert_eq!(
            spec.networks,
            Some(serde_json::from_value::<Networks>(json!("auto")).unwrap())
        );
        assert_eq!(job.options.timeout_secs, 1800);
        assert_eq!(job.options.max_concurrent, None);
        assert_eq!(job.options.policy_name, "nightly");
    }

    #[test]
    fn a_volume_test_takes_no_server_fields() {
        let job = verify_job(
            "v",
            &options(),
            &pieces(ResourceType::Volume),
            Uuid::nil(),
            Utc::now(),
        )
        .unwrap();
        let spec = job.restore.unwrap();
        assert_eq!(spec.flavor, None);
        assert_eq!(spec.networks, None);
    }
}
