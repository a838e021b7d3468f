//! The OpenStack side of a job: start a snapshot, find one a crashed worker
//! started, and look at how far it got. This module holds what every kind
//! shares and dispatches on the resource type; `server`, `volume` and `group`
//! hold each kind's calls.
//!
//! Every function counts the OpenStack calls it makes, so jobs can report them.

use std::collections::{BTreeMap, HashMap};

use chrono::{DateTime, Utc};
use futures_util::future::BoxFuture;
use uuid::Uuid;

mod batch;
mod boot_images;
mod group;
mod nova_pieces;
mod server;
mod volume;

use crate::{
    domain::{
        job::{
            JobError, JobOptions, ObtainedConsistency, TimelineEntry, Verdict, VolumeSnapshotState,
        },
        name_template::{MAX_NAME_CHARS, NameContext},
        policy::ResourceType,
    },
    openstack::{ErrorKind, OpenStack, OpenStackError, cinder::Snapshot},
};

pub use batch::{Polled, poll_batch};
pub use boot_images::{BOOT_IMAGE_TTL, BootImages};
pub use group::group_description;
pub use nova_pieces::NOVA_PREFIX;
pub(crate) use nova_pieces::{
    find_for_job as find_nova_pieces, is_ours as nova_piece_is_ours, stamp,
};
pub use server::pieces_from_mapping;

/// The metadata key that ties every artefact to the job that made it.
pub const JOB_ID_KEY: &str = "stacksnap_job_id";

/// What a job knows about itself that the cloud calls need.
#[derive(Debug, Clone)]
pub struct JobContext<'a> {
    pub job_id: Uuid,
    pub run_id: Uuid,
    pub policy_id: Option<Uuid>,
    /// The project the job acts in (stamped on its artefacts).
    pub project_id: &'a str,
    pub resource_type: ResourceType,
    pub resource_id: &'a str,
    pub options: &'a JobOptions,
    /// When the job was made: what the cloud made for it is younger.
    pub since: DateTime<Utc>,
}

/// The result of trying to start a snapshot.
#[derive(Debug)]
pub enum StartResult {
    /// The request was accepted: these artefacts now exist.
    Started(Artefacts),
    /// No create request was sent (the cloud could not be read, or the
    /// resource is busy): try again later (within the start window).
    Retry(OpenStackError),
    /// The create request was refused without being carried out (409, 429):
    /// try again later, counting the attempt.
    Refused(OpenStackError),
    /// The create request timed out, met a 5xx (a proxy's 503 included) or
    /// was answered unreadably: it may have been carried out. Look the
    /// artefact up before sending again.
    Unclear(OpenStackError),
    /// It cannot work: fail the job.
    Fail(JobError),
    /// A volume-backed `createImage` was refused after Nova had made some of
    /// its Cinder snapshots (Nova snapshots the volumes one by one and keeps
    /// those made when a later one is refused): fail the job, recording them
    /// to be cleaned up. `None`: they could not be looked up, so the create is
    /// marked unclear and deletion searches for them.
    Leftovers {
        error: JobError,
        pieces: Option<Vec<VolumeSnapshotState>>,
        calls: i32,
    },
}

/// Called by a kind right before it sends its create request, so the moment a
/// create may reach the cloud is recorded when it is sent (not when the job
/// was claimed). `false`: the job could not be marked (lost, or the database
/// failed); nothing is sent.
pub trait BeforeSend: Sync {
    fn sending(&self) -> BoxFuture<'_, bool>;
}

/// What a kind answers when [`BeforeSend`] says not to send.
pub(super) fn not_sent() -> StartResult {
    StartResult::Retry(OpenStackError::new(
        ErrorKind::Transport,
        "stacksnap",
        "before_send",
        "the job could not be marked as sending its create request; nothing was sent",
    ))
}

/// A resource in a passing state (a server's task, a volume backing up): no
/// create is sent; the job waits for it within its start window.
pub(super) fn waiting_for(
    service: &'static str,
    operation: &'static str,
    what: String,
) -> StartResult {
    let mut busy = OpenStackError::new(ErrorKind::Conflict, service, operation, what);
    busy.status = Some(409);
    StartResult::Retry(busy)
}

/// What a started snapshot consists of.
#[derive(Debug, Default)]
pub struct Artefacts {
    pub image_id: Option<String>,
    pub group_snapshot_id: Option<String>,
    pub volume_snapshots: Vec<VolumeSnapshotState>,
    pub consistency: Option<ObtainedConsistency>,
    pub resource_name: Option<String>,
    /// The snapshotted server's flavor, as Nova shows it.
    pub source_flavor: Option<serde_json::Value>,
    /// The availability zone of what is snapshotted, as Nova or Cinder shows it.
    pub source_az: Option<String>,
    pub calls: i32,
}

/// The properties stamped on every artefact of a job.
pub fn artefact_metadata(ctx: &JobContext<'_>) -> BTreeMap<String, String> {
    let mut metadata = ctx.options.metadata.clone();
    metadata.insert(JOB_ID_KEY.into(), ctx.job_id.to_string());
    metadata.insert("stacksnap_run_id".into(), ctx.run_id.to_string());
    metadata.insert("stacksnap_project_id".into(), ctx.project_id.to_owned());
    if let Some(policy_id) = ctx.policy_id {
        metadata.insert("stacksnap_policy_id".into(), policy_id.to_string());
    }
    metadata
}

/// The name of the job's artefact, unique per job. A server snapshot's is
/// shorter: Nova names its Cinder snapshots "snapshot for <name>", which
/// Cinder caps at 255 characters.
pub(super) fn artefact_name(ctx: &JobContext<'_>, resource_name: &str) -> String {
    let max_chars = match ctx.resource_type {
        ResourceType::Server => MAX_NAME_CHARS - nova_pieces::NOVA_PREFIX.len(),
        ResourceType::Volume | ResourceType::VolumeGroup => MAX_NAME_CHARS,
    };
    let job_id = ctx.job_id.to_string();
    let context = NameContext {
        policy: &ctx.options.policy_name,
        policy_id: &ctx.policy_id.map(|p| p.to_string()).unwrap_or_default(),
        resource_name,
        resource_id: ctx.resource_id,
        resource_type: ctx.resource_type.as_str(),
        run_id: &ctx.run_id.to_string(),
        job_id: &job_id,
        scheduled_at: ctx.options.scheduled_at,
    };
    ctx.options
        .name_template
        .render_for_job(&context, max_chars)
}

/// Turns a failed start call into what the job does next.
pub(super) fn start_failure(error: OpenStackError, what: &str) -> StartResult {
    match error.kind {
        ErrorKind::NotFound => StartResult::Fail(JobError::new(
            "resource_not_found",
            format!("{what} does not exist: {error}"),
        )),
        ErrorKind::QuotaExceeded => StartResult::Fail(JobError::new(
            "quota_exceeded",
            format!("the project's quota is exhausted: {error}"),
        )),
        ErrorKind::Conflict => StartResult::Retry(error),
        _ if error.is_retryable() => StartResult::Retry(error),
        _ => StartResult::Fail(JobError::new("openstack_error", error.to_string())),
    }
}

/// Turns a failed create call into what the job does next. A timeout, a lost
/// connection, a 5xx (a proxy's 503 too: the service behind it may have
/// committed) or a success answer that cannot be read leave it open whether the
/// cloud acted; a 409 or a 429 refused the request before it was carried out.
pub(super) fn create_failure(error: OpenStackError, what: &str) -> StartResult {
    match error.kind {
        ErrorKind::Timeout
        | ErrorKind::Transport
        | ErrorKind::ServerError
        | ErrorKind::Unavailable
        | ErrorKind::Decode => StartResult::Unclear(error),
        ErrorKind::RateLimited if error.status == Some(503) => StartResult::Unclear(error),
        ErrorKind::RateLimited | ErrorKind::Conflict => StartResult::Refused(error),
        _ => start_failure(error, what),
    }
}

/// What a look-up for the artefacts of a job's earlier attempts found.
#[derive(Debug)]
pub enum Lookup {
    /// What an earlier attempt made; `duplicates` are further images carrying
    /// the job's id (made by another attempt), to be deleted.
    Made {
        artefacts: Artefacts,
        duplicates: Vec<String>,
    },
    /// The cloud is still carrying an attempt out: Nova has made the Cinder
    /// snapshots for the job's image, not yet the image. They are stamped with
    /// the job's id.
    Underway {
        what: String,
        pieces: Vec<VolumeSnapshotState>,
        calls: i32,
    },
    /// Nothing of an earlier attempt (yet).
    Nothing { calls: i32 },
}

impl Lookup {
    fn from_found(found: Option<Artefacts>) -> Self {
        match found {
            Some(artefacts) => Self::Made {
                artefacts,
                duplicates: Vec::new(),
            },
            None => Self::Nothing { calls: 1 },
        }
    }
}

/// What a job has recorded of its artefacts, for the next look at them.
#[derive(Debug, Clone, Copy)]
pub struct Recorded<'a> {
    pub image_id: Option<&'a str>,
    pub group_snapshot_id: Option<&'a str>,
    pub volume_snapshots: &'a [VolumeSnapshotState],
    pub timeline: &'a [TimelineEntry],
}

/// Starts the snapshot of the job's resource; `gate` is told right before the
/// create request is sent.
pub async fn start(
    cloud: &OpenStack,
    ctx: &JobContext<'_>,
    gate: &dyn BeforeSend,
    boot_images: &BootImages,
) -> StartResult {
    match ctx.resource_type {
        ResourceType::Server => server::start(cloud, ctx, gate, boot_images).await,
        ResourceType::Volume => volume::start(cloud, ctx, gate).await,
        ResourceType::VolumeGroup => group::start(cloud, ctx, gate).await,
    }
}

/// Looks for what an earlier attempt of this job made, by the job id it carries
/// (and, for a volume-backed server, by Nova's name for the job's image).
///
/// # Errors
/// The lookup itself failed; try again later.
pub async fn find_started(
    cloud: &OpenStack,
    ctx: &JobContext<'_>,
    boot_images: &BootImages,
) -> Result<Lookup, OpenStackError> {
    match ctx.resource_type {
        ResourceType::Server => server::find_started(cloud, ctx, boot_images).await,
        ResourceType::Volume => volume::find_started(cloud, ctx)
            .await
            .map(Lookup::from_found),
        ResourceType::VolumeGroup => group::find_started(cloud, ctx)
            .await
            .map(Lookup::from_found),
    }
}

/// Further images carrying the job's id besides `kept`: an earlier create
/// whose outcome was unknown may have made one. Returns them and the calls made.
///
/// # Errors
/// The lookup failed; try again later.
pub async fn find_duplicates(
    cloud: &OpenStack,
    ctx: &JobContext<'_>,
    kept: &str,
) -> Result<(Vec<String>, i32), OpenStackError> {
    match ctx.resource_type {
        ResourceType::Server => server::find_duplicates(cloud, ctx, kept).await,
        ResourceType::Volume | ResourceType::VolumeGroup => Ok((Vec::new(), 0)),
    }
}

/// Looks at how far the job's artefacts got.
///
/// # Errors
/// A lookup failed for a reason other than an artefact being gone.
pub async fn poll(
    cloud: &OpenStack,
    ctx: &JobContext<'_>,
    recorded: Recorded<'_>,
    now: DateTime<Utc>,
) -> Result<Progress, OpenStackError> {
    let seen = recorded.timeline;
    match ctx.resource_type {
        ResourceType::Server => match recorded.image_id {
            Some(image_id) => server::poll(cloud, ctx, image_id, recorded, now).await,
            None => Ok(Progress::failed(
                "image_missing",
                "the job recorded no image",
            )),
        },
        ResourceType::Volume => {
            volume::poll(cloud, recorded.volume_snapshots, seen, now, None).await
        }
        ResourceType::VolumeGroup => match recorded.group_snapshot_id {
            Some(id) => {
                group::poll(
                    cloud,
                    ctx.resource_id,
                    id,
                    recorded.volume_snapshots,
                    seen,
                    now,
                )
                .await
            }
            None => Ok(Progress::failed(
                "snapshot_missing",
                "the job recorded no group snapshot",
            )),
        },
    }
}

/// A Cinder snapshot as a job records it.
pub(crate) fn snapshot_state(
    snapshot: &Snapshot,
    device: Option<String>,
    boot_index: Option<i64>,
) -> VolumeSnapshotState {
    VolumeSnapshotState {
        volume_id: Some(snapshot.volume_id.clone()),
        device,
        boot_index,
        snapshot_id: snapshot.id.clone(),
        status: snapshot.status.clone(),
        progress: snapshot.progress.clone(),
        size_gb: snapshot.size,
    }
}

/// A listing of a project's Cinder snapshots by id, made once for a batch of
/// jobs and matched locally (Cinder cannot filter on several ids or volumes at once).
pub(crate) type Listed = HashMap<String, Snapshot>;

/// Reads a Cinder snapshot's status into `piece`: from `listed` when it holds
/// it, else by id (one call); a snapshot that is gone is `missing`. Returns
/// the calls made.
///
/// # Errors
/// The look-up by id failed for a reason other than the snapshot being gone.
pub(super) async fn refresh_piece(
    cloud: &OpenStack,
    piece: &mut VolumeSnapshotState,
    listed: Option<&Listed>,
) -> Result<i32, OpenStackError> {
    let (found, calls) = match listed.and_then(|l| l.get(&piece.snapshot_id)) {
        Some(found) => (Some(found.clone()), 0),
        None => match cloud.cinder().get_snapshot(&piece.snapshot_id).await {
            Ok(found) => (Some(found), 1),
            Err(e) if e.is_not_found() => (None, 1),
            Err(e) => return Err(e),
        },
    };
    match found {
        Some(found) => {
            piece.status = found.status;
            piece.progress = found.progress;
            piece.size_gb = found.size.or(piece.size_gb);
            piece.volume_id = piece.volume_id.take().or(Some(found.volume_id));
        }
        None => piece.status = "missing".into(),
    }
    Ok(calls)
}

/// What one look at a job's artefacts found.
#[derive(Debug)]
pub struct Progress {
    pub verdict: Verdict,
    /// The image's size in bytes, once Glance reports it.
    pub image_size_bytes: Option<u64>,
    pub volume_snapshots: Vec<VolumeSnapshotState>,
    pub timeline: Vec<TimelineEntry>,
    pub calls: i32,
}

impl Progress {
    /// A look that found the job cannot succeed, without calling the cloud.
    fn failed(code: &'static str, message: &str) -> Self {
        Self {
            image_size_bytes: None,
            verdict: Verdict::Failed {
                code,
                message: message.into(),
            },
            volume_snapshots: Vec::new(),
            timeline: Vec::new(),
            calls: 0,
        }
    }
}

/// Adds a timeline entry when `what`/`id` shows a status not seen last time.
pub(super) fn note(
    timeline: &mut Vec<TimelineEntry>,
    seen: &[TimelineEntry],
    now: DateTime<Utc>,
    what: &str,
    id: &str,
    status: &str,
) {
    let last = seen
        .iter()
        .rev()
        .find(|e| e.what == what && e.id == id)
        .map(|e| e.status.as_str());
    if last != Some(status) {
        timeline.push(TimelineEntry {
            at: now,
            what: what.into(),
            id: id.into(),
            status: status.into(),
        });
    }
}
