//! The cloud side of the orphan finder: Cinder snapshots made for an instance
//! snapshot image whose image is gone. Deleting such an image in Glance leaves
//! its Cinder snapshots behind, and nobody sees them until the quota or the
//! storage bill does.
//!
//! Deleting a live snapshot is the one mistake this must never make, so it reads
//! Cinder first, then the database, then Glance: a snapshot made after the Cinder
//! listing is not looked at, and the image of one made before it is either in the
//! Glance listing (made before that), in the database (a job in flight), or too
//! young (Nova makes the image right after the snapshots, and the grace period is
//! far longer). Every listing is read to its last page, hidden images included.
//! An image whose mapping cannot be read protects what it may refer to. And each
//! snapshot is checked again, alone, right before it is deleted.

mod evidence;

use chrono::{DateTime, TimeDelta, Utc};
use sqlx::PgPool;
use uuid::Uuid;

use evidence::{Evidence, Verdict, classify, image_name, job_of, records_of, settled_and_old};

use crate::{
    engine::snapshot::JOB_ID_KEY,
    openstack::{
        OpenStack, OpenStackError,
        cinder::{Snapshot, SnapshotFilter},
        glance::Image,
    },
    store::orphans::{self as records, Recorded},
};

/// What the finder looks for.
#[derive(Debug, Clone, Copy)]
pub struct Search {
    /// The time the snapshots' ages are measured at.
    pub now: DateTime<Utc>,
    /// Snapshots younger than this are never looked at.
    pub grace: TimeDelta,
    /// Also snapshots of images stacksnap did not make.
    pub include_foreign: bool,
}

/// Why the finder could not finish.
#[derive(Debug, thiserror::Error)]
pub enum OrphanError {
    #[error(transparent)]
    Cloud(#[from] OpenStackError),
    #[error("the database could not be read: {0}")]
    Database(#[from] sqlx::Error),
}

/// A Cinder snapshot whose image no longer exists.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Orphan {
    pub snapshot_id: String,
    pub volume_id: String,
    /// The project that owns it, as Cinder reports it.
    pub project_id: Option<String>,
    pub name: Option<String>,
    /// The name of the image it was made for, read from its own name.
    pub image_name: Option<String>,
    pub status: String,
    pub size_gb: Option<u64>,
    pub created_at: Option<DateTime<Utc>>,
    /// Listed by one of stacksnap's jobs.
    pub made_by_stacksnap: bool,
    /// The `stacksnap_job_id` it carried when it was found: a change means it is not what was found.
    pub job_id: Option<Uuid>,
}

/// What a cleanup did.
#[derive(Debug, Default)]
pub struct Cleanup {
    /// Deleted, or already gone.
    pub deleted: Vec<String>,
    /// Left alone when checked again: something may still need them. With the reason.
    pub kept: Vec<(String, String)>,
    pub failed: Vec<(String, OrphanError)>,
}

/// Lists the orphans: settled snapshots older than the grace period, made for an
/// image (named by Nova, or recorded by one of stacksnap's server jobs) that no
/// image refers to or may refer to. Those of images stacksnap did not make are
/// included only with `include_foreign`.
///
/// # Errors
/// Cinder, the database or Glance cannot be read.
pub async fn find_orphans(
    cloud: &OpenStack,
    db: &PgPool,
    search: &Search,
) -> Result<Vec<Orphan>, OrphanError> {
    let candidates: Vec<Snapshot> = cloud
        .cinder()
        // Every project's: tenants' policies make their snapshots in their own projects.
        .list_snapshots(&SnapshotFilter {
            all_tenants: true,
            ..SnapshotFilter::default()
        })
        .await?
        .into_iter()
        .filter(|s| settled_and_old(s, search.now, search.grace))
        .collect();
    let ids: Vec<String> = candidates.iter().map(|s| s.id.clone()).collect();
    let jobs: Vec<Uuid> = candidates.iter().filter_map(job_of).collect();
    let recorded = records::recorded(db, &ids, &jobs).await?;
    let images = list_images_including_hidden(cloud, &[]).await?;
    let evidence = Evidence::from_images(&images);
    Ok(candidates
        .into_iter()
        .filter_map(|s| {
            let known = records_of(&s, &recorded);
            match classify(&s, &known, &evidence, search.include_foreign) {
                Verdict::Orphan { made_by_stacksnap } => Some(orphan(s, made_by_stacksnap)),
                Verdict::Kept(reason) => {
                    tracing::debug!(snapshot_id = %s.id, %reason, "not an orphan");
                    None
                }
                Verdict::Ignored => None,
            }
        })
        .collect())
}

/// Deletes each orphan that is still one when checked again on its own; a
/// snapshot already gone counts as deleted.
pub async fn delete_orphans(
    cloud: &OpenStack,
    db: &PgPool,
    search: &Search,
    orphans: &[Orphan],
) -> Cleanup {
    let mut cleanup = Cleanup::default();
    for orphan in orphans {
        let id = orphan.snapshot_id.clone();
        match recheck(cloud, db, search, orphan).await {
            Ok(Recheck::Gone) => cleanup.deleted.push(id),
            Ok(Recheck::Kept(reason)) => {
                tracing::info!(snapshot_id = %id, %reason, "an orphan is kept after all");
                cleanup.kept.push((id, reason));
            }
            Ok(Recheck::Orphan) => match cloud.cinder().delete_snapshot(&id).await {
                Ok(()) => cleanup.deleted.push(id),
                Err(e) if e.is_not_found() => cleanup.deleted.push(id),
                Err(e) => cleanup.failed.push((id, e.into())),
            },
            Err(e) => cleanup.failed.push((id, e)),
        }
    }
    tracing::info!(
        deleted = cleanup.deleted.len(),
        kept = cleanup.kept.len(),
        failed = cleanup.failed.len(),
        "orphan cleanup"
    );
    cleanup
}

enum Recheck {
    Gone,
    Kept(String),
    Orphan,
}

/// Reads one snapshot, its records and every image that may refer to it again.
async fn recheck(
    cloud: &OpenStack,
    db: &PgPool,
    search: &Search,
    orphan: &Orphan,
) -> Result<Recheck, OrphanError> {
    let snapshot = match cloud.cinder().get_snapshot(&orphan.snapshot_id).await {
        Ok(snapshot) => snapshot,
        Err(e) if e.is_not_found() => return Ok(Recheck::Gone),
        Err(e) => return Err(e.into()),
    };
    if !settled_and_old(&snapshot, search.now, search.grace) {
        return Ok(Recheck::Kept(format!(
            "it is {} now, or younger than the grace period",
            snapshot.status
        )));
    }
    let job = job_of(&snapshot);
    if job != orphan.job_id {
        return Ok(Recheck::Kept("its stacksnap_job_id changed".into()));
    }
    let recorded =
        records::recorded(db, std::slice::from_ref(&snapshot.id), job.as_slice()).await?;
    let known = records_of(&snapshot, &recorded);
    let images = images_that_may_refer_to(cloud, &snapshot, &known).await?;
    let evidence = Evidence::from_images(&images);
    Ok(match classify(&snapshot, &known, &evidence, true) {
        Verdict::Orphan { .. } => Recheck::Orphan,
        Verdict::Kept(reason) => Recheck::Kept(reason),
        Verdict::Ignored => Recheck::Kept("it is no longer made for an image".into()),
    })
}

/// The images that could refer to `snapshot`: those with the name Nova made it
/// for, those of its jobs, and the images its jobs recorded.
async fn images_that_may_refer_to(
    cloud: &OpenStack,
    snapshot: &Snapshot,
    known: &[&Recorded],
) -> Result<Vec<Image>, OpenStackError> {
    let mut images = Vec::new();
    if let Some(name) = image_name(snapshot) {
        // `eq:` makes Glance read the whole value as the name, colons and all.
        let name = format!("eq:{name}");
        images.extend(list_images_including_hidden(cloud, &[("name", &name)]).await?);
    }
    let mut jobs: Vec<String> = known.iter().map(|r| r.job_id.to_string()).collect();
    jobs.extend(job_of(snapshot).map(|j| j.to_string()));
    jobs.sort();
    jobs.dedup();
    for job in &jobs {
        images.extend(list_images_including_hidden(cloud, &[(JOB_ID_KEY, job)]).await?);
    }
    for id in known.iter().filter_map(|r| r.image_id.as_deref()) {
        match cloud.glance().get_image(id).await {
            Ok(image) => images.push(image),
            Err(e) if e.is_not_found() => {}
            Err(e) => return Err(e),
        }
    }
    Ok(images)
}

/// Glance leaves images with `os_hidden=true` out of a listing unless asked for them.
async fn list_images_including_hidden(
    cloud: &OpenStack,
    filters: &[(&str, &str)],
) -> Result<Vec<Image>, OpenStackError> {
    let mut images = cloud.glance().list_images(filters).await?;
    let mut hidden = filters.to_vec();
    hidden.push(("os_hidden", "true"));
    images.extend(cloud.glance().list_images(&hidden).await?);
    Ok(images)
}

fn orphan(s: Snapshot, made_by_stacksnap: bool) -> Orphan {
    Orphan {
        image_name: image_name(&s).map(str::to_owned),
        job_id: job_of(&s),
        snapshot_id: s.id,
        volume_id: s.volume_id,
        project_id: s.project_id,
        name: s.name,
        status: s.status,
        size_gb: s.size,
        created_at: s.created_at,
        made_by_stacksnap,
    }
}
