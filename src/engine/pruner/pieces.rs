//! Which Cinder snapshots a deletion removes with a snapshot, and whether each
//! is ours: the pieces an image's `block_device_mapping` lists (read before the
//! image is deleted, also when the job never recorded them), and for a job
//! whose create had an unknown outcome, whatever that create made.

use std::collections::BTreeSet;

use crate::{
    domain::{deletion::image_is_jobs, job::VolumeSnapshotState, policy::ResourceType},
    engine::snapshot::{
        JOB_ID_KEY, find_nova_pieces, group_description, nova_piece_is_ours, pieces_from_mapping,
        stamp,
    },
    openstack::{
        OpenStack, OpenStackError,
        cinder::{Snapshot, SnapshotFilter},
        glance::Image,
    },
    store::snapshots::ManagedSnapshot,
};

/// What the deleter knows of the image a server snapshot's pieces belong to.
#[derive(Debug, Default)]
pub(super) struct ImageFacts {
    /// The image's name, when it still exists.
    pub name: Option<String>,
    /// The snapshots its mapping lists.
    pub listed: BTreeSet<String>,
}

/// Whether a Cinder snapshot recorded as `piece` of `snapshot` is ours to
/// delete. A volume snapshot's carries the job's id; a server snapshot's was
/// made by Nova for the job's image: it carries the stamp the job put on it,
/// is listed in the image's mapping, or has Nova's name for the image on the
/// volume recorded for it.
pub(super) fn is_ours(
    snapshot: &ManagedSnapshot,
    found: &Snapshot,
    piece: &VolumeSnapshotState,
    image: &ImageFacts,
) -> bool {
    let job_id = snapshot.job_id.to_string();
    match snapshot.resource_type {
        ResourceType::Volume | ResourceType::VolumeGroup => {
            found.metadata.get(JOB_ID_KEY) == Some(&job_id)
        }
        ResourceType::Server => {
            image.listed.contains(&found.id)
                || nova_piece_is_ours(
                    found,
                    snapshot.job_id,
                    image.name.as_deref(),
                    piece.volume_id.as_deref(),
                )
        }
    }
}

/// Whether a snapshot row has nothing recorded although its job sent a create:
/// the create's outcome was unknown when the job ended.
pub(super) fn needs_search(snapshot: &ManagedSnapshot) -> bool {
    snapshot.image_id.is_none()
        && snapshot.group_snapshot_id.is_none()
        && snapshot.volume_snapshots.0.is_empty()
}

/// What the search for an unclear create's artefacts found.
#[derive(Debug, Default)]
pub(super) struct Found {
    /// The job's images (a server's); more than one when a resend made a duplicate.
    pub images: Vec<String>,
    /// The job's group snapshot (a volume group's).
    pub group_snapshot_id: Option<String>,
    /// The Cinder snapshots found (a volume's, or Nova's for a server's image).
    pub pieces: Vec<VolumeSnapshotState>,
}

impl Found {
    pub fn is_empty(&self) -> bool {
        self.images.is_empty() && self.group_snapshot_id.is_none() && self.pieces.is_empty()
    }
}

/// Finds what a job whose create had an unknown outcome made after all: every
/// image of the job with the snapshots its mapping lists, and Nova's snapshots
/// for its image (a server's); the Cinder snapshots carrying its id (a
/// volume's); the group snapshot with the job's description (a group's, looked
/// up as the job looks it up). Server pieces are stamped with the job's id.
/// Nothing is deleted here: the caller records what was found first.
///
/// # Errors
/// A look-up or a stamp failed.
pub(super) async fn search(
    cloud: &OpenStack,
    snapshot: &ManagedSnapshot,
) -> Result<Found, OpenStackError> {
    let job_id = snapshot.job_id.to_string();
    match snapshot.resource_type {
        ResourceType::VolumeGroup => {
            let description = group_description(snapshot.job_id);
            let found = cloud
                .cinder()
                .list_group_snapshots(Some(&snapshot.resource_id))
                .await?;
            Ok(Found {
                group_snapshot_id: found
                    .into_iter()
                    .find(|g| {
                        g.description.as_deref() == Some(description.as_str())
                            && g.group_id
                                .as_deref()
                                .is_none_or(|id| id == snapshot.resource_id)
                    })
                    .map(|g| g.id),
                ..Found::default()
            })
        }
        ResourceType::Volume => {
            let filter = SnapshotFilter {
                metadata: [(JOB_ID_KEY.to_owned(), job_id.clone())].into(),
                ..SnapshotFilter::default()
            };
            let found = cloud.cinder().list_snapshots(&filter).await?;
            Ok(Found {
                pieces: found
                    .iter()
                    .filter(|s| s.metadata.get(JOB_ID_KEY) == Some(&job_id))
                    .map(|s| crate::engine::snapshot::snapshot_state(s, None, None))
                    .collect(),
                ..Found::default()
            })
        }
        ResourceType::Server => {
            // Nova copies the boot image's properties into every snapshot of a
            // server: an image carrying the job's id is the job's only if it is
            // also named for the job.
            let images: Vec<Image> = cloud
                .glance()
                .list_images(&[(JOB_ID_KEY, &job_id)])
                .await?
                .into_iter()
                .filter(|i| image_is_jobs(&job_id, i.property(JOB_ID_KEY), i.name.as_deref()))
                .collect();
            let mut pieces = Vec::new();
            for image in &images {
                pieces.extend(pieces_from_mapping(image)?);
            }
            let (named, _) = find_nova_pieces(
                cloud,
                snapshot.job_id,
                &snapshot.resource_id,
                snapshot.taken_at,
            )
            .await?;
            for found in &named {
                if !pieces.iter().any(|p| p.snapshot_id == found.id) {
                    pieces.push(crate::engine::snapshot::snapshot_state(found, None, None));
                }
            }
            let ids: Vec<&str> = pieces.iter().map(|p| p.snapshot_id.as_str()).collect();
            stamp(cloud, snapshot.job_id, &ids).await?;
            Ok(Found {
                images: images.into_iter().map(|i| i.id).collect(),
                group_snapshot_id: None,
                pieces,
            })
        }
    }
}
