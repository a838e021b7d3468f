//! Looking at many jobs' artefacts at once: the images of a batch of server
//! jobs in one Glance listing (`id=in:…`, a call per page), and the Cinder
//! snapshots still being made in one paged listing of the project, matched
//! to the jobs locally.
//!
//! The caller makes a batch of jobs that act with one authority in one
//! project (`engine::worker::batch`): a listing made with that authority shows
//! that project's artefacts, and a job takes from it only the ids it recorded.
//! Each job's `calls` counts every batched call it took part in, besides its
//! own (stamping Nova's snapshots, a snapshot the listing did not hold).

use std::collections::HashMap;

use chrono::{DateTime, Utc};

use super::{JobContext, Listed, Progress, Recorded, poll, server, volume};
use crate::{
    domain::policy::ResourceType,
    openstack::{OpenStack, OpenStackError, cinder::SnapshotFilter, glance::Image},
};

/// Image ids per Glance listing: `id=in:` with 100 ids makes a request line of
/// about 3.8 KB, well within what Glance's server reads (`max_header_line`, 16 KB).
const IDS_PER_LISTING: usize = 100;

/// One job of a batch: what its look needs.
#[derive(Debug, Clone)]
pub struct Polled<'a> {
    pub ctx: JobContext<'a>,
    pub recorded: Recorded<'a>,
}

/// A job's look between the image listing and the Cinder listing.
enum Partial {
    Server {
        looked: Result<server::ImageLooked, OpenStackError>,
        image_calls: i32,
    },
    Volume,
    Done(Result<Progress, OpenStackError>),
}

/// Looks at every job of the batch. The outer error: a batched listing failed
/// (the caller then looks at each job on its own, which also tells each job's
/// error apart). The inner ones: what failed for one job alone.
///
/// # Errors
/// A batched listing failed.
pub async fn poll_batch(
    cloud: &OpenStack,
    jobs: &[Polled<'_>],
    now: DateTime<Utc>,
) -> Result<Vec<Result<Progress, OpenStackError>>, OpenStackError> {
    let mut ids: Vec<&str> = jobs
        .iter()
        .filter(|j| j.ctx.resource_type == ResourceType::Server)
        .filter_map(|j| j.recorded.image_id)
        .collect();
    ids.sort_unstable();
    ids.dedup();
    let mut images: HashMap<&str, Image> = HashMap::new();
    let mut image_calls: HashMap<&str, i32> = HashMap::new();
    for chunk in ids.chunks(IDS_PER_LISTING) {
        let (found, calls) = cloud.glance().list_images_by_id(chunk).await?;
        for id in chunk {
            image_calls.insert(id, calls);
        }
        // Only what was asked for: a Glance that ignored the filter must not
        // hand a job another image.
        for image in found {
            if let Some(id) = chunk.iter().find(|id| **id == image.id) {
                images.insert(id, image);
            }
        }
    }

    let mut partials = Vec::with_capacity(jobs.len());
    for job in jobs {
        partials.push(match (job.ctx.resource_type, job.recorded.image_id) {
            (ResourceType::Server, Some(id)) => Partial::Server {
                looked: server::look_at_image(
                    cloud,
                    &job.ctx,
                    id,
                    images.get(id).cloned(),
                    job.recorded,
                    now,
                    false,
                )
                .await,
                image_calls: image_calls.get(id).copied().unwrap_or(0),
            },
            (ResourceType::Volume, _) => Partial::Volume,
            // No image recorded, or a kind not batched: the single look says what it says.
            _ => Partial::Done(poll(cloud, &job.ctx, job.recorded, now).await),
        });
    }

    let wanted = partials.iter().any(|p| match p {
        Partial::Volume => true,
        Partial::Server {
            looked: Ok(looked), ..
        } => looked.pending().next().is_some(),
        _ => false,
    });
    let (listed, listing_calls): (Listed, i32) = if wanted {
        let (snapshots, calls) = cloud
            .cinder()
            .list_snapshots_counted(&SnapshotFilter::default())
            .await?;
        (
            snapshots.into_iter().map(|s| (s.id.clone(), s)).collect(),
            calls,
        )
    } else {
        (Listed::new(), 0)
    };

    let mut progress = Vec::with_capacity(jobs.len());
    for (job, partial) in jobs.iter().zip(partials) {
        let seen = job.recorded.timeline;
        progress.push(match partial {
            Partial::Server {
                looked: Ok(looked),
                image_calls,
            } => {
                let listing = if looked.pending().next().is_some() {
                    listing_calls
                } else {
                    0
                };
                server::finish(
                    cloud,
                    looked,
                    Some(&listed),
                    seen,
                    now,
                    image_calls + listing,
                )
                .await
            }
            Partial::Server { looked: Err(e), .. } => Err(e),
            Partial::Volume => volume::poll(
                cloud,
                job.recorded.volume_snapshots,
                seen,
                now,
                Some(&listed),
            )
            .await
            .map(|mut p| {
                p.calls += listing_calls;
                p
            }),
            Partial::Done(result) => result,
        });
    }
    Ok(progress)
}
