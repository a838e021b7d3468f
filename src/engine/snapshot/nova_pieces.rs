//! The Cinder snapshots Nova makes for a volume-backed server's image. They
//! carry no metadata of ours: Nova names each "snapshot for <image name>"
//! (`nova/compute/api.py`, `snapshot_volume_backed`) and makes them before the
//! image, which it creates last. A job's image name holds the job id, so they
//! are found by that name on the server's volumes, younger than the job, and
//! stamped with `stacksnap_job_id` once found; a piece is deleted only when it
//! carries that stamp or Nova's name for the job's image.

use std::collections::BTreeMap;

use chrono::{DateTime, TimeDelta, Utc};
use uuid::Uuid;

use super::JOB_ID_KEY;
use crate::openstack::{
    OpenStack, OpenStackError,
    cinder::{Snapshot, SnapshotFilter},
};

/// How Nova begins the name of each Cinder snapshot of a volume-backed server's
/// image in English. nova-api translates it (`_('snapshot for %s')`) with its
/// process locale, so names are never parsed by it: a name is Nova's for an
/// image when it holds the image's name and more ([`names_for`]).
pub const NOVA_PREFIX: &str = "snapshot for ";

/// Whether `snapshot_name` is Nova's name, in any language, for a snapshot made
/// for an image whose name holds `image_part` (the image name, or the job id
/// every one of a job's image names holds).
fn names_for(snapshot_name: &str, image_part: &str) -> bool {
    snapshot_name != image_part && snapshot_name.contains(image_part)
}

/// How far the cloud's clock may lag ours when comparing `created_at` with the job's start.
const CLOCK_SKEW: TimeDelta = TimeDelta::minutes(10);

/// Whether Nova made `snapshot` for an image of job `job_id`, made at `since` or later.
fn named_for_job(snapshot: &Snapshot, job_id: &str, since: DateTime<Utc>) -> bool {
    let for_job = snapshot
        .name
        .as_deref()
        .is_some_and(|name| names_for(name, job_id));
    for_job && snapshot.created_at.is_none_or(|t| t >= since - CLOCK_SKEW)
}

/// Finds the Cinder snapshots Nova made for an image of the job on the server's
/// volumes (listed by `volume_id`, a filter a project member may use). A server
/// that is gone, or boots from an image (Nova snapshots no volume then), has none.
/// Returns them and the calls made.
///
/// # Errors
/// The server or a volume's snapshots cannot be read.
pub async fn find_for_job(
    cloud: &OpenStack,
    job_id: Uuid,
    server_id: &str,
    since: DateTime<Utc>,
) -> Result<(Vec<Snapshot>, i32), OpenStackError> {
    let mut calls = 1;
    let server = match cloud.nova().get_server(server_id).await {
        Ok(server) => server,
        Err(e) if e.is_not_found() => return Ok((Vec::new(), calls)),
        Err(e) => return Err(e),
    };
    if !server.is_volume_backed() {
        return Ok((Vec::new(), calls));
    }
    let job_id = job_id.to_string();
    let mut found = Vec::new();
    for volume in &server.volumes_attached {
        calls += 1;
        let filter = SnapshotFilter {
            volume_id: Some(volume.id.clone()),
            ..SnapshotFilter::default()
        };
        let listed = cloud.cinder().list_snapshots(&filter).await?;
        found.extend(
            listed
                .into_iter()
                // Checked here too: a cloud that ignores the filter must not hand us another volume's.
                .filter(|s| s.volume_id == volume.id && named_for_job(s, &job_id, since)),
        );
    }
    Ok((found, calls))
}

/// Stamps `stacksnap_job_id` on each of Nova's snapshots for the job's image
/// (one that is gone is skipped). Returns the calls made.
///
/// # Errors
/// A stamp failed for a reason other than the snapshot being gone.
pub async fn stamp(
    cloud: &OpenStack,
    job_id: Uuid,
    snapshot_ids: &[&str],
) -> Result<i32, OpenStackError> {
    let metadata = BTreeMap::from([(JOB_ID_KEY.to_owned(), job_id.to_string())]);
    let mut calls = 0;
    for id in snapshot_ids {
        calls += 1;
        match cloud.cinder().add_snapshot_metadata(id, &metadata).await {
            Ok(()) => {}
            Err(e) if e.is_not_found() => {}
            Err(e) => return Err(e),
        }
    }
    Ok(calls)
}

/// Whether a Cinder snapshot listed as a piece of job `job_id`'s server snapshot
/// is ours to delete: it carries the job's stamp, or Nova's name for the job's
/// image (`image_name` when the image is known, else any name holding the job
/// id) on the volume the job recorded for it.
pub fn is_ours(
    snapshot: &Snapshot,
    job_id: Uuid,
    image_name: Option<&str>,
    recorded_volume: Option<&str>,
) -> bool {
    let job_id = job_id.to_string();
    if snapshot.metadata.get(JOB_ID_KEY) == Some(&job_id) {
        return true;
    }
    let nova_name = snapshot
        .name
        .as_deref()
        .is_some_and(|name| names_for(name, image_name.unwrap_or(&job_id)));
    nova_name && recorded_volume.is_none_or(|v| v == snapshot.volume_id)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn snapshot(name: &str, metadata: &[(&str, &str)]) -> Snapshot {
        serde_json::from_value(serde_json::json!({
            "id": "s1", "name": name, "status": "available", "volume_id": "v1",
            "created_at": "2026-12-01T10:00:00.000000",
            "metadata": metadata.iter().copied().collect::<BTreeMap<_, _>>(),
        }))
        .unwrap()
    }

    const JOB: &str = "0190a8c2-7d4e-7a3b-9f2c-1a2b3c4d5e6f";

    #[test]
    fn nova_snapshots_are_told_by_the_job_id_in_the_image_name_and_their_age() {
        let since: DateTime<Utc> = "2026-12-01T10:05:00Z".parse().unwrap();
        let ours = snapshot(&format!("snapshot for db-1-nightly-{JOB}"), &[]);
        assert!(named_for_job(&ours, JOB, since), "within the clock skew");
        assert!(!named_for_job(&ours, JOB, since + TimeDelta::hours(1)));
        assert!(!named_for_job(
            &snapshot("snapshot for db-1-nightly", &[]),
            JOB,
            since
        ));
        assert!(!named_for_job(&snapshot(JOB, &[]), JOB, since));
    }

    /// nova-api translates the name (`_('snapshot for %s')`), with its locale:
    /// German puts the image name last, Japanese first.
    #[test]
    fn nova_snapshots_are_recognised_whatever_language_nova_names_them_in() {
        let since: DateTime<Utc> = "2026-12-01T10:05:00Z".parse().unwrap();
        let job: Uuid = JOB.parse().unwrap();
        for name in [
            format!("Momentaufnahme für db-1-{JOB}"),
            format!("db-1-{JOB} のスナップショット"),
        ] {
            let piece = snapshot(&name, &[]);
            assert!(named_for_job(&piece, JOB, since), "{name}");
            assert!(
                is_ours(&piece, job, Some(&format!("db-1-{JOB}")), Some("v1")),
                "{name}"
            );
            assert!(is_ours(&piece, job, None, Some("v1")), "{name}");
        }
        let image = snapshot(&format!("db-1-{JOB}"), &[]);
        assert!(
            !is_ours(&image, job, Some(&format!("db-1-{JOB}")), None),
            "a snapshot named as the image itself is not Nova's name for it"
        );
    }

    #[test]
    fn a_piece_is_ours_by_our_stamp_or_novas_name_for_our_image_on_its_volume() {
        let job: Uuid = JOB.parse().unwrap();
        let stamped = snapshot("hand-made", &[(JOB_ID_KEY, JOB)]);
        let named = snapshot("snapshot for web-1-legacy", &[]);
        let hand_made = snapshot("hand-made", &[]);
        let other_job = snapshot("other", &[(JOB_ID_KEY, "another-job")]);
        assert!(is_ours(&stamped, job, None, None));
        assert!(is_ours(&named, job, Some("web-1-legacy"), Some("v1")));
        assert!(!is_ours(&named, job, Some("web-1-legacy"), Some("v2")));
        assert!(!is_ours(&named, job, Some("another-image"), None));
        assert!(
            !is_ours(&named, job, None, None),
            "no image to compare, no job id"
        );
        assert!(is_ours(
            &snapshot(&format!("snapshot for x-{JOB}"), &[]),
            job,
            None,
            None
        ));
        assert!(!is_ours(&hand_made, job, Some("web-1"), None));
        assert!(!is_ours(&other_job, job, None, None));
    }
}
