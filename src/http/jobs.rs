//! `/v1/jobs`: one resource's snapshot within a run, followed to its end.

use axum::{
    Json,
    extract::{Path, State},
};
use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};
use utoipa::{IntoParams, ToSchema};
use utoipa_axum::{router::OpenApiRouter, routes};
use uuid::Uuid;

use super::{
    ApiError, AppState, Problem, Result,
    extract::{AppQuery, Caller},
    job_wait::{self, WaitQuery},
    pagination::{List, fetch_page},
};
use crate::{
    domain::{
        event::api_actor,
        job::{
            JobError, JobKind, JobStatus, ObtainedConsistency, TimelineEntry, VolumeSnapshotState,
        },
        policy::ResourceType,
        restore::Restored,
    },
    store::{
        jobs::{self, Job, JobFilter},
        lifecycle::{self, CancelOutcome},
    },
};

/// A job: everything known about one resource's snapshot.
#[derive(Debug, Serialize, ToSchema)]
#[schema(as = Job, example = json!({
    "id": "019ab9a1-2f00-7c1e-8d2a-1b2c3d4e5f60", "project_id": "8d3c1f0b2a4e4b6c9d7e5f1a2b3c4d5e",
    "run_id": "019ab9a1-0c1e-7d2a-9f3b-2a4c5d6e7f80",
    "policy_id": "019ab8f0-6c1e-7d2a-9f3b-2a4c5d6e7f80", "resource_type": "server",
    "resource_id": "4f1d6a52-0b52-4a8e-9c43-1d0c8e3f2a10", "resource_name": "web-1", "status": "tracking", "attempt": 1,
    "image_id": "b92d4c1e-5f6a-4b7c-8d9e-0f1a2b3c4d5e",
    "volume_snapshots": [{"volume_id": "6a2f1b1e-3c8b-4a53-8f4c-0d1e2f3a4b5c", "device": "/dev/vda", "boot_index": 0,
                          "snapshot_id": "0b2e7c1d-9a8f-4e3d-b2c1-a0f9e8d7c6b5", "status": "creating", "progress": "40%"}],
    "consistency": "crash_consistent", "error": null,
    "timeline": [{"at": "2026-11-26T01:00:04Z", "what": "image", "id": "b92d4c1e-5f6a-4b7c-8d9e-0f1a2b3c4d5e", "status": "active"}],
    "openstack_calls": 4, "created_at": "2026-11-26T01:00:00.5Z", "started_at": "2026-11-26T01:00:01Z",
    "finished_at": null, "deadline": "2026-11-26T03:00:01Z", "kind": "snapshot"
}))]
pub struct JobResponse {
    pub id: Uuid,
    /// `snapshot` (takes a snapshot), `restore` (makes a resource from a
    /// managed snapshot) or `verify` (a restore test).
    pub kind: JobKind,
    /// The project the job acts in.
    pub project_id: String,
    pub run_id: Uuid,
    pub policy_id: Option<Uuid>,
    pub resource_type: ResourceType,
    pub resource_id: String,
    pub resource_name: Option<String>,
    pub status: JobStatus,
    /// How many times the snapshot request was sent (a busy server is retried).
    pub attempt: i32,
    /// The Glance image of a server snapshot.
    pub image_id: Option<String>,
    /// The Cinder group snapshot of a volume group.
    pub group_snapshot_id: Option<String>,
    /// Every Cinder snapshot: the one of a volume, or each behind a volume-backed server's image.
    pub volume_snapshots: Vec<VolumeSnapshotState>,
    pub consistency: Option<ObtainedConsistency>,
    pub error: Option<JobError>,
    /// Observed transitions of the server, the image and each snapshot.
    pub timeline: Vec<TimelineEntry>,
    /// OpenStack API calls made for this job.
    pub openstack_calls: i32,
    pub created_at: DateTime<Utc>,
    pub started_at: Option<DateTime<Utc>>,
    pub finished_at: Option<DateTime<Utc>>,
    /// When the job times out.
    pub deadline: Option<DateTime<Utc>>,
    /// Only in answers of `POST /v1/snapshots`: `true` when no snapshot was
    /// taken because this job's was younger than `if_older_than`.
    #[serde(skip_serializing_if = "Option::is_none")]
    #[schema(value_type = bool, required = false)]
    pub reused: Option<bool>,
    /// Restore jobs only: the request as validated, with the managed snapshot
    /// restored (`snapshot_id`) and what it starts from (`source`).
    #[serde(skip_serializing_if = "Option::is_none")]
    #[schema(value_type = Object, required = false, example = json!({
        "snapshot_id": "019ab9a1-3a00-7c1e-8d2a-1b2c3d4e5f61",
        "source": {"type": "server", "image_id": "b92d4c1e-5f6a-4b7c-8d9e-0f1a2b3c4d5e",
                   "source_flavor": {"original_name": "m1.small", "vcpus": 1, "ram": 2048, "disk": 20}},
        "name": "web-1-restored", "networks": "none", "metadata": {}}))]
    pub restore: Option<serde_json::Value>,
    /// Restore jobs only: what the restore made so far (`{}` before the create
    /// was answered): `server_id` and `volume_ids` for a server, `volume_id`
    /// for a volume, `group_id` and `volume_ids` for a volume group; with
    /// `cleanup` once a failed or cancelled restore (or any restore test)
    /// deletes it: `cleanup.state` is `deleting`, `deleted`, or `kept` when
    /// the cloud still refused the deletion 7 days after the job ended (e.g. a
    /// volume with a Cinder snapshot of it): then `cleanup.left` names what
    /// is left and `cleanup.error` why; nothing deletes it any more.
    #[serde(skip_serializing_if = "Option::is_none")]
    #[schema(required = false)]
    pub restored: Option<Restored>,
}

impl JobResponse {
    /// The job as `POST /v1/snapshots` answers it: saying whether it was reused.
    pub fn reused(self, reused: bool) -> Self {
        Self {
            reused: Some(reused),
            ..self
        }
    }
}

impl From<Job> for JobResponse {
    fn from(job: Job) -> Self {
        Self {
            status: job.status,
            consistency: job.consistency,
            id: job.job_id,
            project_id: job.project_id,
            run_id: job.run_id,
            policy_id: job.policy_id,
            resource_type: job.resource_type,
            resource_id: job.resource_id,
            resource_name: job.resource_name,
            attempt: job.attempt,
            image_id: job.image_id,
            group_snapshot_id: job.group_snapshot_id,
            volume_snapshots: job.volume_snapshots.0,
            error: job.error.map(|e| e.0),
            timeline: job.timeline.0,
            openstack_calls: job.openstack_calls,
            created_at: job.created_at,
            started_at: job.started_at,
            finished_at: job.finished_at,
            deadline: job.deadline,
            reused: None,
            kind: job.kind,
            restore: job
                .restore
                .map(|r| serde_json::to_value(r.0).unwrap_or_default()),
            restored: match job.kind {
                JobKind::Snapshot => None,
                JobKind::Restore | JobKind::Verify => {
                    Some(job.restored.map(|r| r.0).unwrap_or_default())
                }
            },
        }
    }
}

/// One page of jobs, newest first.
#[derive(Debug, Serialize, ToSchema)]
#[schema(example = json!({"items": [], "next_cursor": "Y2oCAZq5oS8AfB6NKhssPU5fYLTtD_alpFYU"}))]
pub struct JobList {
    pub items: Vec<JobResponse>,
    /// Pass as `cursor` to get the next page; `null` on the last page.
    #[schema(pattern = "^Y2oC[A-Za-z0-9_-]{32}$")]
    pub next_cursor: Option<String>,
}

/// Filters and paging for `GET /v1/jobs`.
#[derive(Debug, Deserialize, IntoParams)]
#[serde(deny_unknown_fields)]
#[into_params(parameter_in = Query)]
pub struct ListJobsQuery {
    /// Every project's jobs, not only the token's project's (admin only; default `false`).
    pub all_projects: Option<bool>,
    pub policy_id: Option<Uuid>,
    pub run_id: Option<Uuid>,
    #[param(inline)]
    pub status: Option<JobStatus>,
    #[param(pattern = r"^[^\u0000]*$")]
    pub resource_id: Option<String>,
    /// Only jobs of this kind.
    #[param(inline)]
    pub kind: Option<JobKind>,
    /// Page size, 1 to 1000 (default 100).
    #[param(minimum = 1, maximum = 1000, example = 100)]
    pub limit: Option<u32>,
    /// The `next_cursor` of the previous page.
    #[param(pattern = "^Y2oC[A-Za-z0-9_-]{32}$")]
    pub cursor: Option<String>,
}

/// The routes of `/v1/jobs`, with their OpenAPI operations.
pub fn router() -> OpenApiRouter<AppState> {
    OpenApiRouter::new()
        .routes(routes!(list_jobs))
        .routes(routes!(get_job))
        .routes(routes!(cancel_job))
}

/// List jobs, newest first.
#[utoipa::path(
    get,
    path = "/v1/jobs",
    tag = "jobs",
    params(ListJobsQuery),
    responses(
        (status = 200, description = "One page of jobs", body = JobList,
         links(
            ("GetJob" = (operation_id = "get_job", parameters(("id" = "$response.body#/items/0/id")))),
            ("CancelJob" = (operation_id = "cancel_job", parameters(("id" = "$response.body#/items/0/id")))),
            ("GetRun" = (operation_id = "get_run", parameters(("id" = "$response.body#/items/0/run_id"))))
         )),
        (status = 422, description = "Invalid query parameters", body = Problem, content_type = "application/problem+json")
    )
)]
pub async fn list_jobs(
    State(state): State<AppState>,
    caller: Caller,
    AppQuery(query): AppQuery<ListJobsQuery>,
) -> Result<Json<JobList>> {
    let scope = caller.list_scope(query.all_projects)?;
    let filter = JobFilter {
        policy_id: query.policy_id,
        run_id: query.run_id,
        status: query.status,
        resource_id: query.resource_id,
        kind: query.kind,
    };
    let page = fetch_page(
        List::Jobs,
        scope,
        query.limit,
        query.cursor.as_deref(),
        |before, n| jobs::list_jobs(&state.db, scope, &filter, before, n),
        |j| j.job_id,
    )
    .await?
    .map(JobResponse::from);
    Ok(Json(JobList {
        items: page.items,
        next_cursor: page.next_cursor,
    }))
}

/// Read a job.
///
/// With `wait`, the answer comes when the job has ended or when the wait runs
/// out, whichever is first (a long poll: check `status`).
#[utoipa::path(
    get,
    path = "/v1/jobs/{id}",
    tag = "jobs",
    params(("id" = Uuid, Path, description = "Job id"), WaitQuery),
    responses(
        (status = 200, description = "The job", body = JobResponse,
         links(
            ("CancelJob" = (operation_id = "cancel_job", parameters(("id" = "$response.body#/id")))),
            ("GetRun" = (operation_id = "get_run", parameters(("id" = "$response.body#/run_id"))))
         )),
        (status = 404, description = "No such job", body = Problem, content_type = "application/problem+json"),
        (status = 422, description = "Invalid `wait`", body = Problem, content_type = "application/problem+json")
    )
)]
pub async fn get_job(
    State(state): State<AppState>,
    caller: Caller,
    Path(id): Path<String>,
    AppQuery(query): AppQuery<WaitQuery>,
) -> Result<Json<JobResponse>> {
    let id: Uuid = id.parse().map_err(|_| ApiError::NotFound("job"))?;
    let wait = query.duration()?;
    // Watched before the first read, so an end between a read and the wait is seen.
    let ended = wait.map(|_| state.job_events.watch(id));
    let job = job_wait::until_ended(
        &state,
        caller.item_scope(),
        id,
        wait.unwrap_or_default(),
        ended,
    )
    .await?;
    Ok(Json(JobResponse::from(job)))
}

/// Stop following a job and mark it `cancelled`. A snapshot job's artefacts
/// already made are kept; what a restore job made is deleted (its `restored.cleanup`).
#[utoipa::path(
    post,
    path = "/v1/jobs/{id}/cancel",
    tag = "jobs",
    params(("id" = Uuid, Path, description = "Job id")),
    responses(
        (status = 200, description = "The cancelled job", body = JobResponse),
        (status = 404, description = "No such job", body = Problem, content_type = "application/problem+json"),
        (status = 409, description = "The job had already ended, or is a move deleting its source server", body = Problem, content_type = "application/problem+json")
    )
)]
pub async fn cancel_job(
    State(state): State<AppState>,
    caller: Caller,
    Path(id): Path<String>,
) -> Result<Json<JobResponse>> {
    let id: Uuid = id.parse().map_err(|_| ApiError::NotFound("job"))?;
    let actor = api_actor(caller.user_id());
    let now = state.clock.now();
    match lifecycle::cancel_job(&state.db, caller.item_scope(), id, now, actor).await? {
        CancelOutcome::Cancelled(job) => {
            tracing::info!(job_id = %id, run_id = %job.run_id, policy_id = job.policy_id.map(tracing::field::display), status = "cancelled", "job state changed");
            state.job_events.ended(id);
            Ok(Json(JobResponse::from(job)))
        }
        CancelOutcome::AlreadyEnded(job) => Err(ApiError::Conflict(format!(
            "the job has already ended: it is {}",
            job.status.as_str()
        ))),
        CancelOutcome::SourceBeingDeleted(_) => Err(ApiError::Conflict(
            "the move's new server is ACTIVE and its source server is being deleted: it can no \
             longer be cancelled"
                .into(),
        )),
        CancelOutcome::NotFound => Err(ApiError::NotFound("job")),
    }
}
