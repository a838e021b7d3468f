//! The cloud side of the orphan finder: Cinder snapshots made for an instance
//! snapshot image whose image is gone. Deleting such an image in Glance leaves
//! its Cinder snapshots behind, and nobody sees them until the quota or the
//! storage bill does.

use std::collections::HashSet;

use chrono::{DateTime, Utc};

use crate::openstack::{OpenStack, OpenStackError, cinder::SnapshotFilter};

/// Nova names the Cinder snapshots of a volume-backed server's image "snapshot for <image name>".
const NOVA_PREFIX: &str = "snapshot for ";

/// A Cinder snapshot whose image no longer exists.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Orphan {
    pub snapshot_id: String,
    pub volume_id: String,
    pub name: Option<String>,
    /// The name of the image it was made for, read from its own name.
    pub image_name: Option<String>,
    pub status: String,
    pub size_gb: Option<u64>,
    pub created_at: Option<DateTime<Utc>>,
    /// Listed by one of stacksnap's snapshots.
    pub made_by_stacksnap: bool,
}

/// What a cleanup did: the snapshots deleted (or already gone), and those that failed.
#[derive(Debug, Default)]
pub struct Cleanup {
    pub deleted: Vec<String>,
    pub failed: Vec<(String, OpenStackError)>,
}

/// Lists the orphans: snapshots no existing image refers to, that were made
/// for an image (named by Nova, or recorded as `ours`). Those of images
/// stacksnap did not make are included only with `include_foreign`.
///
/// # Errors
/// Glance or Cinder cannot be listed.
pub async fn find_orphans(
    cloud: &OpenStack,
    ours: &HashSet<String>,
    include_foreign: bool,
) -> Result<Vec<Orphan>, OpenStackError> {
    // Every snapshot any existing image still refers to.
    let mut referenced = HashSet::new();
    for image in cloud.glance().list_images(&[]).await? {
        for entry in image.block_device_mapping().unwrap_or_default() {
            referenced.extend(entry.snapshot_id);
        }
    }
    let snapshots = cloud
        .cinder()
        .list_snapshots(&SnapshotFilter::default())
        .await?;
    Ok(snapshots
        .into_iter()
        .filter(|s| {
            !referenced.contains(&s.id) && !matches!(s.status.as_str(), "deleting" | "creating")
        })
        .filter_map(|s| {
            let made_by_stacksnap = ours.contains(&s.id);
            let image_name = s
                .name
                .as_deref()
                .and_then(|n| n.strip_prefix(NOVA_PREFIX))
                .map(str::to_owned);
            let for_an_image = made_by_stacksnap || image_name.is_some();
            (for_an_image && (made_by_stacksnap || include_foreign)).then_some(Orphan {
                snapshot_id: s.id,
                volume_id: s.volume_id,
                name: s.name,
                image_name,
                status: s.status,
                size_gb: s.size,
                created_at: s.created_at,
                made_by_stacksnap,
            })
        })
        .collect())
}

/// Deletes each orphan; a 404 counts as deleted.
pub async fn delete_orphans(cloud: &OpenStack, orphans: &[Orphan]) -> Cleanup {
    let mut cleanup = Cleanup::default();
    for orphan in orphans {
        let id = orphan.snapshot_id.clone();
        match cloud.cinder().delete_snapshot(&id).await {
            Ok(()) => cleanup.deleted.push(id),
            Err(e) if e.is_not_found() => cleanup.deleted.push(id),
            Err(e) => cleanup.failed.push((id, e)),
        }
    }
    tracing::info!(
        deleted = cleanup.deleted.len(),
        failed = cleanup.failed.len(),
        "orphan cleanup"
    );
    cleanup
}
