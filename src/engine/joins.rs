//! `options.snapshot_on_join`: every few minutes each such policy's targets
//! are listed with its own authority, and the resources it does not cover yet
//! (they started matching its selector, or were named since) are snapshotted
//! at once by a run of trigger `join`, instead of waiting for the next fire.
//! Which resources a policy covers is decided in `store::joins`.

use chrono::TimeDelta;
use uuid::Uuid;

use super::{Engine, authority, resolver};
use crate::{
    domain::{job::NewJob, policy::Policy},
    openstack::Authority,
    store::{
        joins, policies,
        policy_runs::{self, Watch},
        trusts,
    },
};

/// Policies one pass looks at, at most.
const BATCH: i64 = 50;

/// What one pass did.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub struct Joined {
    /// Policies whose targets were listed.
    pub policies: usize,
    /// Join runs stored.
    pub runs: usize,
    /// Jobs of those runs: resources that joined.
    pub resources: usize,
}

impl Engine {
    /// Looks for resources that joined the policies due a look, and stores a
    /// run that snapshots them. A policy that cannot be looked at now (no
    /// authority, the cloud unreachable) is looked at again next interval; its
    /// scheduled run reports what is wrong.
    ///
    /// # Errors
    /// The database fails.
    pub async fn watch_joins(&self) -> Result<Joined, sqlx::Error> {
        let now = self.clock.now();
        let interval = TimeDelta::from_std(self.config.join_interval).unwrap_or(TimeDelta::MAX);
        let mut joined = Joined::default();
        loop {
            let claimed =
                policy_runs::claim_watched(&self.db, Watch::Joins, now, interval, BATCH).await?;
            for id in &claimed {
                self.look_for_joiners(*id, &mut joined).await?;
            }
            if (claimed.len() as i64) < BATCH {
                return Ok(joined);
            }
        }
    }

    async fn look_for_joiners(&self, id: Uuid, joined: &mut Joined) -> Result<(), sqlx::Error> {
        {
            let Some((policy, jobs)) = self.joiners(id).await? else {
                return Ok(());
            };
            joined.policies += 1;
            if let Some((run_id, n)) =
                joins::insert_join_run(&self.db, &policy, jobs, self.clock.now()).await?
            {
                tracing::info!(policy_id = %id, %run_id, resources = n,
                    "resources joined the policy; snapshotting them now");
                joined.runs += 1;
                joined.resources += n;
            }
        }
        Ok(())
    }

    /// Policy `id` as read, and the jobs a join run of it would have: one per
    /// resource it targets now, as listed with its authority; `None` when it
    /// cannot be looked at now or nothing can join it yet.
    async fn joiners(&self, id: Uuid) -> Result<Option<(Policy, Vec<NewJob>)>, sqlx::Error> {
        let policy = match policies::fetch_policy_by_id(&self.db, id).await {
            Ok(Some(policy)) => policy,
            // One the scheduler cannot read is marked broken by it.
            Ok(None) | Err(sqlx::Error::Decode(_)) => return Ok(None),
            Err(e) => return Err(e),
        };
        if joins::covered(&mut *self.db.acquire().await?, id)
            .await?
            .is_none()
        {
            return Ok(None);
        }
        let now = self.clock.now();
        let stored = trusts::for_policy(&self.db, id).await?;
        let acting = authority::for_work(&stored, now);
        if matches!(acting, Authority::Service)
            && (stored.delegated || self.config.requires_delegation)
        {
            // Listed as the service, the targets would be the service's project's.
            return Ok(None);
        }
        let cloud = self.cloud.acting_as(&acting);
        if let Err(error) = authority::check(&cloud, &acting).await {
            tracing::warn!(policy_id = %id, error = %error,
                "cannot look for joining resources with the policy's trust");
            return Ok(None);
        }
        let targets = match resolver::resolve_targets(&cloud, &policy.spec).await {
            Ok(targets) => targets,
            Err(error) => {
                tracing::warn!(policy_id = %id, error = %error,
                    "cannot list the policy's targets to look for joining resources");
                return Ok(None);
            }
        };
        let options = resolver::job_options(&policy.spec, now);
        let start_by = now + policy.spec.options.start_window.as_chrono();
        let jobs = targets
            .into_iter()
            .map(|target| NewJob {
                job_id: Uuid::now_v7(),
                resource_type: policy.spec.resource_type,
                resource_id: target.id,
                resource_name: target.name,
                options: options.clone(),
                start_by,
                kind: crate::domain::job::JobKind::Snapshot,
                restore: None,
            })
            .collect();
        Ok(Some((policy, jobs)))
    }
}
