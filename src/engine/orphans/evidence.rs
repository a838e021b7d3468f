//! The pure half of the orphan finder: what the images and the database say
//! about one Cinder snapshot, and the verdict. No I/O: `orphans` gathers the
//! listings and calls [`classify`] once per snapshot, and again before deleting it.

use std::collections::HashSet;

use chrono::{DateTime, TimeDelta, Utc};
use uuid::Uuid;

use crate::{
    engine::snapshot::{JOB_ID_KEY, NOVA_PREFIX},
    openstack::{cinder::Snapshot, glance::Image},
    store::orphans::Recorded,
};

/// Cinder states in which a snapshot is being worked on: never an orphan then.
const BUSY: [&str; 5] = [
    "creating",
    "deleting",
    "backing-up",
    "restoring",
    "unmanaging",
];

/// What the orphan finder decides about one snapshot.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Verdict {
    /// Made for an image that no longer exists.
    Orphan { made_by_stacksnap: bool },
    /// It looks like an orphan, but something may still need it.
    Kept(String),
    /// Not made for an image (or not ours when only ours are wanted): not looked at.
    Ignored,
}

/// The image a snapshot was made for, read from the name Nova gave it (in
/// English: a translated name gives none, and the snapshot is tied to images by
/// mapping and job id only).
pub fn image_name(snapshot: &Snapshot) -> Option<&str> {
    snapshot.name.as_deref()?.strip_prefix(NOVA_PREFIX)
}

/// The job a snapshot's `stacksnap_job_id` names, if it names one.
pub fn job_of(snapshot: &Snapshot) -> Option<Uuid> {
    snapshot.metadata.get(JOB_ID_KEY)?.parse().ok()
}

/// Whether a snapshot may be looked at: settled (not being made, deleted, backed
/// up or restored) and older than `grace` at `now`. A snapshot without a
/// creation time is never old enough: nothing proves it is.
pub fn settled_and_old(snapshot: &Snapshot, now: DateTime<Utc>, grace: TimeDelta) -> bool {
    !BUSY.contains(&snapshot.status.as_str())
        && snapshot.created_at.is_some_and(|at| at <= now - grace)
}

/// An image whose `block_device_mapping` could not be read: it may refer to any snapshot.
#[derive(Debug, Clone)]
struct Unreadable {
    id: String,
    name: Option<String>,
    job_id: Option<String>,
    /// The property as Glance gave it, searched for snapshot ids.
    text: String,
}

/// What a set of images says about Cinder snapshots.
#[derive(Debug, Default)]
pub struct Evidence {
    referenced: HashSet<String>,
    unreadable: Vec<Unreadable>,
}

impl Evidence {
    /// Reads the images' mappings.
    pub fn from_images<'a>(images: impl IntoIterator<Item = &'a Image>) -> Self {
        let mut evidence = Self::default();
        for image in images {
            match image.block_device_mapping() {
                Ok(mapping) => evidence
                    .referenced
                    .extend(mapping.into_iter().filter_map(|entry| entry.snapshot_id)),
                Err(reason) => {
                    tracing::warn!(image_id = %image.id, %reason, "an image's block_device_mapping cannot be read; the snapshots it may refer to are kept");
                    evidence.unreadable.push(Unreadable {
                        id: image.id.clone(),
                        name: image.name.clone(),
                        job_id: image.property(JOB_ID_KEY).map(str::to_owned),
                        text: image
                            .properties
                            .get("block_device_mapping")
                            .map(ToString::to_string)
                            .unwrap_or_default(),
                    });
                }
            }
        }
        evidence
    }

    /// Why `snapshot` may be in use by one of the images, if it may: an image
    /// refers to it, or an image whose mapping cannot be read mentions its id, has
    /// the name it was made for, or belongs to one of its jobs or recorded images.
    fn protects(&self, snapshot: &Snapshot, known: &[&Recorded]) -> Option<String> {
        if self.referenced.contains(&snapshot.id) {
            return Some("an image refers to it".into());
        }
        let name = image_name(snapshot);
        let jobs: Vec<String> = known
            .iter()
            .map(|r| r.job_id.to_string())
            .chain(job_of(snapshot).map(|j| j.to_string()))
            .collect();
        self.unreadable
            .iter()
            .find(|image| {
                image.text.contains(&snapshot.id)
                    || (name.is_some() && image.name.as_deref() == name)
                    || image.job_id.as_ref().is_some_and(|j| jobs.contains(j))
                    || known
                        .iter()
                        .any(|r| r.image_id.as_deref() == Some(image.id.as_str()))
            })
            .map(|image| {
                format!(
                    "image {} may refer to it: its block_device_mapping cannot be read",
                    image.id
                )
            })
    }
}

/// The records of `snapshot`: jobs that recorded it, or that its metadata names.
pub fn records_of<'a>(snapshot: &Snapshot, records: &'a [Recorded]) -> Vec<&'a Recorded> {
    let job = job_of(snapshot);
    records
        .iter()
        .filter(|r| match &r.snapshot_id {
            Some(id) => *id == snapshot.id,
            None => Some(r.job_id) == job,
        })
        .collect()
}

/// Decides about one settled, old snapshot.
pub fn classify(
    snapshot: &Snapshot,
    known: &[&Recorded],
    evidence: &Evidence,
    include_foreign: bool,
) -> Verdict {
    if known.iter().any(|r| r.in_flight) {
        return Verdict::Kept("its job is still in flight".into());
    }
    // A volume or group snapshot of ours is a snapshot in its own right, not a piece of an image.
    if known.iter().any(|r| !r.server) {
        return Verdict::Ignored;
    }
    let made_by_stacksnap = !known.is_empty();
    if !made_by_stacksnap && (image_name(snapshot).is_none() || !include_foreign) {
        return Verdict::Ignored;
    }
    match evidence.protects(snapshot, known) {
        Some(reason) => Verdict::Kept(reason),
        None => Verdict::Orphan { made_by_stacksnap },
    }
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;

    fn snapshot(id: &str, name: &str) -> Snapshot {
        serde_json::from_value(json!({"id": id, "name": name, "status": "available",
            "volume_id": "v", "created_at": "2026-11-01T00:00:00.000000"}))
        .unwrap()
    }

    fn image(id: &str, name: &str, mapping: serde_json::Value) -> Image {
        serde_json::from_value(json!({"id": id, "name": name, "status": "active",
            "block_device_mapping": mapping}))
        .unwrap()
    }

    fn record(snapshot_id: &str, server: bool, in_flight: bool) -> Recorded {
        Recorded {
            snapshot_id: Some(snapshot_id.into()),
            job_id: Uuid::nil(),
            server,
            image_id: Some("img".into()),
            in_flight,
        }
    }

    #[test]
    fn a_snapshot_an_image_refers_to_is_kept_and_one_none_does_is_an_orphan() {
        let images = [image(
            "i",
            "a",
            json!("[{\"snapshot_id\": \"s1\", \"boot_index\": 0}]"),
        )];
        let evidence = Evidence::from_images(&images);
        let referred = classify(&snapshot("s1", "snapshot for a"), &[], &evidence, true);
        let orphan = classify(&snapshot("s2", "snapshot for b"), &[], &evidence, true);
        assert!(matches!(referred, Verdict::Kept(_)), "{referred:?}");
        assert_eq!(
            orphan,
            Verdict::Orphan {
                made_by_stacksnap: false
            }
        );
    }

    #[test]
    fn an_unreadable_mapping_keeps_every_snapshot_it_may_refer_to() {
        let images = [
            image("by-name", "a", json!("[{\"snapshot_")),
            image("by-text", "renamed", json!("[{\"snapshot_id\": \"s2\"")),
            image("no-match", "other", json!({"not": "a list"})),
            image("recorded", "x", json!(42)),
        ];
        let evidence = Evidence::from_images(&images);
        let by_name = snapshot("s1", "snapshot for a");
        let by_text = snapshot("s2", "snapshot for b");
        let mut recorded = record("s3", true, false);
        recorded.image_id = Some("recorded".into());
        let by_record = snapshot("s3", "anything");
        let unrelated = snapshot("s4", "snapshot for c");
        assert!(
            matches!(classify(&by_name, &[], &evidence, true), Verdict::Kept(r) if r.contains("by-name"))
        );
        assert!(
            matches!(classify(&by_text, &[], &evidence, true), Verdict::Kept(r) if r.contains("by-text"))
        );
        assert!(
            matches!(classify(&by_record, &[&recorded], &evidence, true), Verdict::Kept(r) if r.contains("recorded"))
        );
        assert_eq!(
            classify(&unrelated, &[], &evidence, true),
            Verdict::Orphan {
                made_by_stacksnap: false
            }
        );
    }

    #[test]
    fn in_flight_jobs_keep_their_snapshots_and_volume_snapshots_are_not_image_pieces() {
        let evidence = Evidence::default();
        let s = snapshot("s1", "snapshot for a");
        let in_flight = record("s1", true, true);
        let volume_job = record("s1", false, false);
        let ended = record("s1", true, false);
        assert!(matches!(
            classify(&s, &[&in_flight], &evidence, true),
            Verdict::Kept(_)
        ));
        assert_eq!(
            classify(&s, &[&volume_job], &evidence, true),
            Verdict::Ignored
        );
        assert_eq!(
            classify(&s, &[&ended], &evidence, false),
            Verdict::Orphan {
                made_by_stacksnap: true
            }
        );
        assert_eq!(
            classify(&s, &[], &evidence, false),
            Verdict::Ignored,
            "foreign"
        );
        assert_eq!(
            classify(&snapshot("s2", "my backup"), &[], &evidence, true),
            Verdict::Ignored,
            "not made for an image"
        );
    }

    #[test]
    fn only_settled_snapshots_older_than_the_grace_period_are_looked_at() {
        let now: DateTime<Utc> = "2026-11-01T02:00:00Z".parse().unwrap();
        let mut s = snapshot("s", "snapshot for a");
        assert!(settled_and_old(&s, now, TimeDelta::hours(1)));
        assert!(!settled_and_old(&s, now, TimeDelta::hours(3)));
        s.status = "creating".into();
        assert!(!settled_and_old(&s, now, TimeDelta::hours(1)));
        s.status = "available".into();
        s.created_at = None;
        assert!(!settled_and_old(&s, now, TimeDelta::zero()));
    }
}
