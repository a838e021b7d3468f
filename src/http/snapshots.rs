//! `POST /v1/snapshots`: snapshot one resource now, optionally waiting for it (for CI pipelines).

use axum::{
    Json,
    extract::State,
    http::{StatusCode, header},
    response::{IntoResponse, Response},
};
use utoipa_axum::{router::OpenApiRouter, routes};

use super::{
    ApiError, AppState, Problem, Result, delegation,
    extract::{AppQuery, Caller, JsonDocument, from_value},
    job_wait::{self, WaitQuery},
    jobs::JobResponse,
};
use crate::{
    domain::{adhoc::AdhocSnapshotRequest, policy::Consistency},
    store::{jobs, lifecycle},
};

/// The routes of `POST /v1/snapshots`, with their OpenAPI operations.
pub fn router() -> OpenApiRouter<AppState> {
    OpenApiRouter::new().routes(routes!(create_snapshot))
}

/// Snapshot one resource now.
///
/// Without `wait` the answer comes at once (202). With `wait`, it comes when the
/// job ends (200, whatever its outcome: check `status`) or when the wait runs out (202).
/// With `if_older_than`, a resource whose newest complete, available snapshot in
/// the project is younger than that gets no new one: the answer is 200 with the
/// job that took it, `reused: true`. Every answer of this operation carries `reused`.
#[utoipa::path(
    post,
    path = "/v1/snapshots",
    tag = "snapshots",
    params(WaitQuery),
    request_body(content = AdhocSnapshotRequest, content_type = "application/json"),
    responses(
        (status = 200, description = "The job ended within the wait, or a fresh snapshot was reused (`reused: true`)",
         body = JobResponse,
         links(("GetJob" = (operation_id = "get_job", parameters(("id" = "$response.body#/id"))))),
         // Last: utoipa 6 reads the comma after a media type's attribute twice.
         examples(
            ("ended" = (summary = "The new job ended within the wait", value = json!(job_example(false, "succeeded")))),
            ("reused" = (summary = "A snapshot younger than `if_older_than` was reused", value = json!(job_example(true, "succeeded"))))
         )),
        (status = 202, description = "The job is under way", body = JobResponse,
         headers(("Location" = String, description = "URL of the job")),
         links(
            ("GetJob" = (operation_id = "get_job", parameters(("id" = "$response.body#/id")))),
            ("CancelJob" = (operation_id = "cancel_job", parameters(("id" = "$response.body#/id"))))
         ),
         example = json!(job_example(false, "creating"))),
        (status = 400, description = "The body is not JSON", body = Problem, content_type = "application/problem+json"),
        (status = 413, description = "The body is over the limit", body = Problem, content_type = "application/problem+json"),
        (status = 415, description = "The body is not application/json", body = Problem, content_type = "application/problem+json"),
        (status = 422, description = "Invalid fields or parameters, each named", body = Problem, content_type = "application/problem+json")
    )
)]
pub async fn create_snapshot(
    State(state): State<AppState>,
    caller: Caller,
    AppQuery(query): AppQuery<WaitQuery>,
    JsonDocument(body): JsonDocument,
) -> Result<Response> {
    let wait = query.duration()?;
    if !body.is_object() {
        return Err(ApiError::field(
            "body",
            "a snapshot request must be a JSON object",
        ));
    }
    let request: AdhocSnapshotRequest = from_value(body)?;
    let project = caller.target_project(request.project_id.clone())?;
    let timeout_secs = request.validate().map_err(ApiError::Unprocessable)?;
    let now = state.clock.now();
    if let Some(window) = request.reuse_within() {
        let resource_id = request.resource_id.to_string();
        let fresh = jobs::fetch_reusable_job(
            &state.db,
            &project,
            request.resource_type,
            &resource_id,
            now - window,
            request.consistency == Consistency::QuiesceRequired,
        )
        .await?;
        if let Some(job) = fresh {
            return Ok((StatusCode::OK, Json(JobResponse::from(job).reused(true))).into_response());
        }
    }
    let job = request.job(timeout_secs, now);
    let job_id = job.job_id;
    // Watched from before the job exists, so its end cannot slip between a read and the wait.
    let ended = wait.map(|_| state.job_events.watch(job_id));
    let trust = delegation::adhoc_trust(&state, &caller, &project).await?;
    let authority = delegation::run_authority(&caller, &project, trust.as_ref());
    lifecycle::insert_adhoc_run(&state.db, &project, caller.user_id(), &job, authority, now)
        .await?;

    let job = job_wait::until_ended(
        &state,
        project.as_str().into(),
        job_id,
        wait.unwrap_or_default(),
        ended,
    )
    .await?;
    let response = Json(JobResponse::from(job).reused(false));
    if response.status.is_terminal() {
        return Ok((StatusCode::OK, response).into_response());
    }
    let location = format!("/v1/jobs/{job_id}");
    Ok((
        StatusCode::ACCEPTED,
        [(header::LOCATION, location)],
        response,
    )
        .into_response())
}

/// An example answer of `POST /v1/snapshots`.
fn job_example(reused: bool, status: &str) -> serde_json::Value {
    let finished = status == "succeeded";
    let when_finished = |v: serde_json::Value| if finished { v } else { serde_json::Value::Null };
    serde_json::json!({
        "id": "019ab9a1-2f00-7c1e-8d2a-1b2c3d4e5f60", "project_id": "8d3c1f0b2a4e4b6c9d7e5f1a2b3c4d5e",
        "run_id": "019ab9a1-0c1e-7d2a-9f3b-2a4c5d6e7f80", "policy_id": null,
        "resource_type": "server", "resource_id": "4f1d6a52-0b52-4a8e-9c43-1d0c8e3f2a10",
        "resource_name": "web-1", "status": status, "attempt": 1,
        "image_id": when_finished("b92d4c1e-5f6a-4b7c-8d9e-0f1a2b3c4d5e".into()),
        "group_snapshot_id": null, "volume_snapshots": [],
        "consistency": when_finished("crash_consistent".into()), "error": null,
        "timeline": [], "openstack_calls": if finished { 4 } else { 1 },
        "created_at": "2026-11-26T01:00:00.5Z", "started_at": "2026-11-26T01:00:01Z",
        "finished_at": when_finished("2026-11-26T01:00:09Z".into()),
        "deadline": "2026-11-26T03:00:01Z", "reused": reused
    })
}
