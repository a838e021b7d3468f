//! Retention: decides which snapshots a policy keeps, and deletes every piece of
//! the rest — the image and each Cinder snapshot behind it — but only artefacts
//! stacksnap made (their `stacksnap_job_id` is checked first). Which pieces a
//! snapshot has, and whether each is ours, is in `pieces`; what each look at a
//! piece comes to (wait, retry, fail, blocked) is in `deletion`.

mod deletion;
mod pieces;

use chrono::{DateTime, TimeDelta, Utc};
use tracing::Instrument as _;
use uuid::Uuid;

use self::{deletion::Sweep, pieces::ImageFacts};
use super::{
    Engine, Outcome, authority,
    snapshot::{JOB_ID_KEY, group_description, pieces_from_mapping},
    worker::Leased,
};
use crate::{
    domain::{
        deletion::{BLOCKED_RETRY, image_is_jobs, protected_message, wait_delay, wait_expired},
        job::JobError,
        policy::ResourceType,
        retention::plan,
    },
    openstack::OpenStackError,
    store::{
        policies,
        snapshots::{self, DeletionStep, ManagedSnapshot},
        trusts,
    },
};

/// How long incomplete artefacts of failed jobs are kept for inspection.
pub const INCOMPLETE_GRACE: TimeDelta = TimeDelta::hours(24);
/// Every policy is re-pruned at least this often (time passing moves `keep_within` and the calendar).
const PRUNE_PERIOD: TimeDelta = TimeDelta::hours(1);

impl Engine {
    /// Applies retention to every policy due for it, and starts cleaning up
    /// stale incomplete artefacts. Returns how many snapshots it set to delete.
    ///
    /// # Errors
    /// The database fails.
    pub async fn prune_due(&self) -> Result<u64, sqlx::Error> {
        let now = self.clock.now();
        let mut marked =
            snapshots::mark_stale_incomplete_deleting(&self.db, now, INCOMPLETE_GRACE).await?;
        for policy_id in snapshots::policies_to_prune(&self.db, now, PRUNE_PERIOD, 100).await? {
            match self.prune_policy(policy_id, now).await {
                Ok(n) => marked += n,
                // A policy this build cannot read keeps its snapshots and waits its turn
                // again; the others are pruned meanwhile.
                Err(e @ sqlx::Error::Decode(_)) => {
                    tracing::error!(%policy_id, error = %e, "cannot prune a policy that cannot be read");
                    snapshots::mark_policy_pruned(&self.db, policy_id, now).await?;
                }
                Err(e) => return Err(e),
            }
        }
        Ok(marked)
    }

    async fn prune_policy(&self, policy_id: Uuid, now: DateTime<Utc>) -> Result<u64, sqlx::Error> {
        let Some(policy) = policies::fetch_policy_by_id(&self.db, policy_id).await? else {
            return Ok(0);
        };
        let live = snapshots::live_for_policy(&self.db, policy_id).await?;
        let doomed: Vec<Uuid> = plan(&policy.spec, live)
            .into_iter()
            .filter(|(_, kept_by)| kept_by.is_empty())
            .map(|(s, _)| s.snapshot_id)
            .collect();
        let marked = snapshots::mark_deleting(&self.db, &doomed, now).await?;
        snapshots::mark_policy_pruned(&self.db, policy_id, now).await?;
        if marked > 0 {
            tracing::info!(policy_id = %policy_id, snapshots = marked, "retention: deleting snapshots no rule keeps");
        }
        Ok(marked)
    }

    /// Does one step of deleting one snapshot, if one is due.
    ///
    /// # Errors
    /// The database fails.
    pub async fn delete_next(&self) -> Result<Outcome, sqlx::Error> {
        let now = self.clock.now();
        let token = Uuid::new_v4();
        let Some(snapshot) = snapshots::claim_deletion(
            &self.db,
            token,
            now,
            self.config.lease,
            self.config.max_in_flight,
        )
        .await?
        else {
            return Ok(Outcome::Idle);
        };
        // A step can outlast the lease (a slow Cinder, many pieces): renew it as
        // job steps do, and abandon the step if another worker took it over.
        let span = tracing::info_span!(
            "deletion",
            snapshot_id = %snapshot.snapshot_id,
            policy_id = tracing::field::Empty
        );
        if let Some(policy_id) = snapshot.policy_id {
            span.record("policy_id", tracing::field::display(policy_id));
        }
        let step = tokio::select! {
            step = self.delete_step(&snapshot, now).instrument(span) => step?,
            () = self.keep_lease(Leased::Snapshot(snapshot.snapshot_id), token) => return Ok(Outcome::Worked),
        };
        snapshots::record_deletion(&self.db, snapshot.snapshot_id, token, now, &step).await?;
        Ok(Outcome::Worked)
    }

    /// One step of a deletion, acting with the authority stored for the
    /// snapshot: its policy's trust, else its run's. Where Keystone refuses
    /// that trust (a broken policy, or a trust deleted once its policy's work
    /// ended), the service's own credentials delete: its `admin` role may.
    async fn delete_step(
        &self,
        snapshot: &ManagedSnapshot,
        now: DateTime<Utc>,
    ) -> Result<DeletionStep, sqlx::Error> {
        let stored = trusts::for_snapshot(&self.db, snapshot.snapshot_id).await?;
        let delegated = authority::for_work(&stored, now);
        let cloud = self.cloud.acting_as(&delegated);
        let (acting, as_service) = match authority::check(&cloud, &delegated).await {
            Ok(()) => (
                self.acting_with(cloud),
                matches!(delegated, crate::openstack::Authority::Service),
            ),
            Err(refusal) => {
                tracing::info!(snapshot_id = %snapshot.snapshot_id, error = %refusal, "the snapshot's trust is refused; deleting with the service's credentials");
                (self.clone(), true)
            }
        };
        // The service's credentials delete by id in any project, but list only
        // the service's own: a search there would find nothing and call the
        // tenant's snapshot deleted. Leave it to be retried (and to the orphan finder).
        if as_service && stored.delegated && pieces::needs_search(snapshot) {
            let error = OpenStackError::new(
                crate::openstack::ErrorKind::Forbidden,
                "keystone",
                "authenticate_with_trust",
                "no trust lets the service search the project for what this snapshot's create made",
            );
            return Ok(self.deletion_failed(snapshot, &error, now));
        }
        acting.delete_step_acting(snapshot, now).await
    }

    async fn delete_step_acting(
        &self,
        snapshot: &ManagedSnapshot,
        now: DateTime<Utc>,
    ) -> Result<DeletionStep, sqlx::Error> {
        if pieces::needs_search(snapshot) {
            return self.search_step(snapshot, now).await;
        }
        Ok(match self.delete_pieces(snapshot, now).await {
            Ok(step) => step,
            Err(error) => self.deletion_failed(snapshot, &error, now),
        })
    }

    /// The job's create had an unknown outcome and nothing is recorded: find
    /// what it made, if anything, once the cloud has had the time the job
    /// itself gives it (`create_settle` after the unclear create): a search
    /// sooner may miss what Nova is still making. What is found is recorded
    /// first and deleted from the next step on, so nothing found is lost.
    async fn search_step(
        &self,
        snapshot: &ManagedSnapshot,
        now: DateTime<Utc>,
    ) -> Result<DeletionStep, sqlx::Error> {
        let unclear_at = snapshots::create_unclear_at(&self.db, snapshot.job_id).await?;
        if let Some(settled) = unclear_at
            .map(|at| at + self.config.create_settle)
            .filter(|settled| now < *settled)
        {
            return Ok(DeletionStep::InProgress {
                not_before: settled,
                pieces: Vec::new(),
            });
        }
        let found = match pieces::search(&self.cloud, snapshot).await {
            Ok(found) => found,
            Err(error) => return Ok(self.deletion_failed(snapshot, &error, now)),
        };
        if found.is_empty() {
            return Ok(DeletionStep::Deleted);
        }
        if found.images.is_empty() && snapshot.resource_type == ResourceType::Server {
            // Nova makes a volume-backed server's Cinder snapshots first and its
            // image last, after a call that may outlast any settle window: while
            // only the snapshots exist the image may still come. Wait for it (as
            // any deletion waits, with a deadline) before deleting the pieces.
            let since = snapshot.delete_waiting_since.unwrap_or(now);
            if !wait_expired(since, now) {
                let delay = wait_delay(
                    since,
                    now,
                    self.config.poll_interval,
                    self.config.max_poll_interval,
                );
                return Ok(DeletionStep::Waiting {
                    not_before: now + delay,
                    pieces: Vec::new(),
                    since,
                });
            }
        }
        let mut images = found.images.iter();
        snapshots::record_found(
            &self.db,
            snapshot.snapshot_id,
            images.next().map(String::as_str),
            found.group_snapshot_id.as_deref(),
        )
        .await?;
        // A second image of the same job is a duplicate: deleted on its own row.
        for image_id in images {
            snapshots::record_duplicate(&self.db, snapshot.job_id, image_id, now).await?;
        }
        Ok(DeletionStep::InProgress {
            not_before: now,
            pieces: found.pieces,
        })
    }

    /// Deletes a group snapshot (Cinder deletes its members with it), checking ownership.
    async fn delete_group_snapshot(
        &self,
        snapshot: &ManagedSnapshot,
        id: &str,
        now: DateTime<Utc>,
    ) -> Result<DeletionStep, OpenStackError> {
        let cinder = self.cloud.cinder();
        let found = match cinder.get_group_snapshot(id).await {
            Err(e) if e.is_not_found() => return Ok(DeletionStep::Deleted),
            Err(e) => return Err(e),
            Ok(found)
                if found.description.as_deref()
                    != Some(group_description(snapshot.job_id).as_str()) =>
            {
                return Ok(refuse(now, format!("group snapshot {id}")));
            }
            Ok(found) => found,
        };
        let mut members = snapshot.volume_snapshots.0.clone();
        let mut sweep = Sweep::default();
        if !self
            .group_snapshot_step(id, &found.status, &mut members, &mut sweep)
            .await?
        {
            return Ok(DeletionStep::Deleted);
        }
        Ok(self
            .settle(snapshot, members, sweep, now)
            .await?
            .unwrap_or(DeletionStep::Deleted))
    }

    /// Deletes the Cinder snapshots first, then the image, checking ownership.
    async fn delete_pieces(
        &self,
        snapshot: &ManagedSnapshot,
        now: DateTime<Utc>,
    ) -> Result<DeletionStep, OpenStackError> {
        if let Some(group_snapshot_id) = &snapshot.group_snapshot_id {
            return self
                .delete_group_snapshot(snapshot, group_snapshot_id, now)
                .await;
        }
        let job_id = snapshot.job_id.to_string();
        let mut pieces = snapshot.volume_snapshots.0.clone();
        let mut image_facts = ImageFacts::default();
        if let Some(image_id) = &snapshot.image_id {
            match self.cloud.glance().get_image(image_id).await {
                Ok(image)
                    if !image_is_jobs(
                        &job_id,
                        image.property(JOB_ID_KEY),
                        image.name.as_deref(),
                    ) =>
                {
                    return Ok(refuse(now, format!("image {image_id}")));
                }
                Ok(image) if image.protected => {
                    // Glance would refuse to delete the image after its Cinder
                    // snapshots (its data) were gone: touch nothing.
                    let error = JobError::new("image_protected", protected_message(image_id));
                    tracing::warn!(snapshot_id = %snapshot.snapshot_id, error = %error.message, "deletion blocked");
                    return Ok(DeletionStep::Blocked {
                        not_before: now + BLOCKED_RETRY,
                        error,
                        pieces,
                        dependants: Vec::new(),
                    });
                }
                Ok(image) => {
                    // Read before the image goes: the job may have ended before it recorded them.
                    let listed = pieces_from_mapping(&image)?;
                    for piece in &listed {
                        if !pieces.iter().any(|p| p.snapshot_id == piece.snapshot_id) {
                            pieces.push(piece.clone());
                        }
                    }
                    image_facts = ImageFacts {
                        name: image.name.clone(),
                        listed: listed.into_iter().map(|p| p.snapshot_id).collect(),
                    };
                }
                Err(e) if e.is_not_found() => {}
                Err(e) => return Err(e),
            }
        }
        let mut sweep = Sweep::default();
        for piece in pieces.iter_mut().filter(|p| p.status != "deleted") {
            match self.cloud.cinder().get_snapshot(&piece.snapshot_id).await {
                Err(e) if e.is_not_found() => piece.status = "deleted".into(),
                Err(e) => return Err(e),
                Ok(found) if !pieces::is_ours(snapshot, &found, piece, &image_facts) => {
                    return Ok(refuse(
                        now,
                        format!("volume snapshot {}", piece.snapshot_id),
                    ));
                }
                Ok(found) => self.piece_step(piece, found.status, &mut sweep).await?,
            }
        }
        if let Some(step) = self.settle(snapshot, pieces, sweep, now).await? {
            return Ok(step);
        }
        if let Some(image_id) = &snapshot.image_id {
            match self.cloud.glance().delete_image(image_id).await {
                Ok(()) => {}
                Err(e) if e.is_not_found() => {}
                Err(e) => return Err(e),
            }
        }
        Ok(DeletionStep::Deleted)
    }
}

fn refuse(now: DateTime<Utc>, what: String) -> DeletionStep {
    DeletionStep::Failed {
        not_before: now + TimeDelta::days(3650),
        pieces: None,
        error: JobError::new(
            "not_ours",
            format!(
                "{what} is not this snapshot's: an image must carry its stacksnap_job_id and be named for its job, a volume snapshot carry the id or (a server's) have Nova's name for its image; stacksnap deletes only what it made"
            ),
        ),
    }
}
