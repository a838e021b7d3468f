//! Turns a fired run into jobs: resolves the policy's targets (ids plus the
//! tag/metadata selector) against the cloud at fire time.

use std::collections::BTreeSet;

use chrono::{DateTime, TimeDelta, Utc};
use sqlx::PgPool;
use uuid::Uuid;

use crate::{
    domain::{
        job::{JobError, JobOptions},
        policy::{PolicyError, ResourceType, ValidPolicy},
    },
    engine::authority,
    openstack::{Authority, OpenStack, OpenStackError, cinder::VolumeFilter, nova::ServerFilter},
    store::{
        jobs::{self, NewJob},
        policies,
        runs::{self, Run},
        trusts,
    },
};

/// One resource a run will snapshot.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord)]
pub struct Target {
    pub id: String,
    pub name: Option<String>,
}

/// Lists the resources a policy covers right now, each once.
///
/// # Errors
/// A listing call failed.
pub async fn resolve_targets(
    cloud: &OpenStack,
    spec: &ValidPolicy,
) -> Result<Vec<Target>, OpenStackError> {
    let selector = &spec.targets.selector;
    let mut targets: BTreeSet<Target> = BTreeSet::new();
    let mut explicit: Vec<String> = spec.targets.ids.iter().map(Uuid::to_string).collect();
    let selects = !selector.tags.is_empty() || !selector.metadata.is_empty();
    match spec.resource_type {
        ResourceType::Server if selects => {
            let filter = ServerFilter {
                tags: selector.tags.clone(),
                ..ServerFilter::default()
            };
            for server in cloud.nova().list_servers(&filter).await? {
                // Metadata is matched here, and tags too: Nova silently drops
                // a non-admin's `tags` filter below compute microversion 2.26
                // (and shows no tags there), so its answer alone proves nothing.
                if selector.tags.iter().all(|t| server.tags.contains(t))
                    && selector
                        .metadata
                        .iter()
                        .all(|(k, v)| server.metadata.get(k) == Some(v))
                {
                    explicit.retain(|id| *id != server.id);
                    targets.insert(Target {
                        id: server.id,
                        name: Some(server.name),
                    });
                }
            }
        }
        ResourceType::Volume if selects => {
            let filter = VolumeFilter {
                metadata: selector.metadata.clone(),
                ..VolumeFilter::default()
            };
            for volume in cloud.cinder().list_volumes(&filter).await? {
                if selector
                    .metadata
                    .iter()
                    .all(|(k, v)| volume.metadata.get(k) == Some(v))
                {
                    explicit.retain(|id| *id != volume.id);
                    targets.insert(Target {
                        id: volume.id,
                        name: volume.name,
                    });
                }
            }
        }
        _ => {}
    }
    // Named ids become jobs even when they no longer exist: the job then fails
    // with a clear error instead of the resource silently dropping out.
    targets.extend(explicit.into_iter().map(|id| Target { id, name: None }));
    Ok(targets.into_iter().collect())
}

/// The options every job of a run gets from the policy spec it fired with.
pub fn job_options(spec: &ValidPolicy, scheduled_at: DateTime<Utc>) -> JobOptions {
    JobOptions {
        name_template: spec.options.name_template.clone(),
        policy_name: spec.name.clone(),
        metadata: spec.options.metadata.clone(),
        consistency: spec.options.consistency,
        timeout_secs: spec.options.timeout.as_secs(),
        max_concurrent: spec.options.max_concurrent,
        scheduled_at,
    }
}

/// Resolves one claimed run into jobs, or fails it, or puts it off when the cloud
/// cannot answer and the start window is still open.
///
/// # Errors
/// The database fails.
pub async fn resolve_run(
    db: &PgPool,
    cloud: &OpenStack,
    run: &Run,
    owner: Uuid,
    now: DateTime<Utc>,
    retry_in: TimeDelta,
    requires_delegation: bool,
) -> Result<(), sqlx::Error> {
    let spec: ValidPolicy = match serde_json::from_value(run.spec.clone()) {
        Ok(spec) => spec,
        Err(e) => {
            return runs::fail_run(
                db,
                run.run_id,
                owner,
                now,
                &JobError::new("invalid_spec", e.to_string()),
            )
            .await;
        }
    };
    let window = spec.options.start_window.as_chrono();
    let start_by = run.scheduled_for.max(run.created_at) + window;
    // Targets are resolved with the policy's own authority: inside its project.
    let stored = trusts::for_run(db, run.run_id).await?;
    let delegated = authority::for_work(&stored, now);
    if let (Some(policy_id), Authority::Service, false, true) = (
        run.policy_id,
        &delegated,
        stored.delegated,
        requires_delegation,
    ) {
        let message = authority::trust_missing(stored.policy_name.as_deref());
        let mut conn = db.acquire().await?;
        policies::mark_broken(
            &mut conn,
            policy_id,
            &PolicyError::new("trust_missing", message.clone()),
        )
        .await?;
        let error = JobError::new("trust_missing", message);
        return runs::fail_run(db, run.run_id, owner, now, &error).await;
    }
    if stored.delegated && matches!(delegated, Authority::Service) {
        // Listed with the service's credentials, the targets would be the service's project's.
        let error = JobError::new(
            "authority_ended",
            "no trust lets the service act for the policy's project any more",
        );
        return runs::fail_run(db, run.run_id, owner, now, &error).await;
    }
    let cloud = cloud.acting_as(&delegated);
    if let Err(refusal) = authority::check(&cloud, &delegated).await {
        let message = authority::trust_refused(stored.policy_name.as_deref(), &refusal);
        if let (Some(policy_id), Authority::Trust(trust)) = (run.policy_id, &delegated) {
            let error = PolicyError::new("trust_refused", message.clone());
            policies::mark_broken_for_trust(db, policy_id, trust, &error).await?;
        }
        let error = JobError::new("trust_refused", message);
        return runs::fail_run(db, run.run_id, owner, now, &error).await;
    }
    let targets = match resolve_targets(&cloud, &spec).await {
        Ok(targets) => targets,
        Err(e) if now + retry_in < start_by => {
            tracing::warn!(run_id = %run.run_id, error = %e, "cannot resolve targets yet");
            let error = JobError::new(
                "targets_unavailable",
                format!("cannot list the targets yet: {e}"),
            );
            return runs::defer_resolution(db, run.run_id, owner, now + retry_in, &error).await;
        }
        Err(e) => {
            let error = JobError::new(
                "targets_unavailable",
                format!("could not list the targets within the start window: {e}"),
            );
            return runs::fail_run(db, run.run_id, owner, now, &error).await;
        }
    };
    if targets.is_empty() {
        let error = JobError::new("no_targets", "no resource matched the policy's targets");
        return runs::fail_run(db, run.run_id, owner, now, &error).await;
    }
    let options = job_options(&spec, run.scheduled_for);
    let new_jobs: Vec<NewJob> = targets
        .into_iter()
        .map(|target| NewJob {
            job_id: Uuid::now_v7(),
            resource_type: spec.resource_type,
            resource_id: target.id,
            resource_name: target.name,
            options: options.clone(),
            start_by,
            kind: crate::domain::job::JobKind::Snapshot,
            restore: None,
        })
        .collect();
    let mut tx = db.begin().await?;
    jobs::insert_jobs(
        &mut tx,
        run.run_id,
        &run.project_id,
        run.policy_id,
        &new_jobs,
        now,
    )
    .await?;
    if runs::mark_resolved(&mut tx, run.run_id, owner, now).await? {
        tx.commit().await?;
    }
    Ok(())
}
