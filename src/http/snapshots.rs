//! `POST /v1/snapshots`: snapshot one resource now, optionally waiting for it (for CI pipelines).

use std::time::Duration;

use axum::{
    Json,
    extract::State,
    http::{StatusCode, header},
    response::{IntoResponse, Response},
};
use serde::Deserialize;
use utoipa::IntoParams;
use utoipa_axum::{router::OpenApiRouter, routes};

use super::{
    ApiError, AppState, Problem, Result, delegation,
    extract::{AppQuery, Caller, JsonDocument, from_value},
    jobs::JobResponse,
};
use crate::{
    domain::adhoc::{AdhocSnapshotRequest, parse_wait},
    store::{jobs, lifecycle},
};

/// `?wait=` for `POST /v1/snapshots`.
#[derive(Debug, Deserialize, IntoParams)]
#[serde(deny_unknown_fields)]
#[into_params(parameter_in = Query)]
pub struct WaitQuery {
    /// Answer when the job ends or after this long (at most `1h`), e.g. `10m`.
    #[param(
        example = "10m",
        pattern = r"^[\u0009-\u000d\u0085 \u00a0\u1680\u2000-\u200a\u2028\u2029\u202f\u205f\u3000]*(?:0+[smhdw])*0*[1-9][0-9]*[smhdw](?:[0-9]+[smhdw])*[\u0009-\u000d\u0085 \u00a0\u1680\u2000-\u200a\u2028\u2029\u202f\u205f\u3000]*$"
    )]
    pub wait: Option<String>,
}

/// The routes of `POST /v1/snapshots`, with their OpenAPI operations.
pub fn router() -> OpenApiRouter<AppState> {
    OpenApiRouter::new().routes(routes!(create_snapshot))
}

/// Snapshot one resource now.
///
/// Without `wait` the answer comes at once (202). With `wait`, it comes when the
/// job ends (200, whatever its outcome: check `status`) or when the wait runs out (202).
#[utoipa::path(
    post,
    path = "/v1/snapshots",
    tag = "snapshots",
    params(WaitQuery),
    request_body(content = AdhocSnapshotRequest, content_type = "application/json"),
    responses(
        (status = 200, description = "The job ended within the wait", body = JobResponse,
         links(("GetJob" = (operation_id = "get_job", parameters(("id" = "$response.body#/id")))))),
        (status = 202, description = "The job is under way", body = JobResponse,
         headers(("Location" = String, description = "URL of the job")),
         links(
            ("GetJob" = (operation_id = "get_job", parameters(("id" = "$response.body#/id")))),
            ("CancelJob" = (operation_id = "cancel_job", parameters(("id" = "$response.body#/id"))))
         )),
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
    let wait = query
        .wait
        .as_deref()
        .map(parse_wait)
        .transpose()
        .map_err(|m| ApiError::field("wait", m))?;
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
    let job = request.job(timeout_secs, now);
    let job_id = job.job_id;
    // Watched from before the job exists, so its end cannot slip between a read and the wait.
    let mut ended = wait.map(|_| state.job_events.watch(job_id));
    let trust = delegation::adhoc_trust(&state, &caller, &project).await?;
    let authority = delegation::run_authority(&caller, &project, trust.as_ref());
    lifecycle::insert_adhoc_run(&state.db, &project, caller.user_id(), &job, authority, now)
        .await?;

    let deadline = tokio::time::Instant::now() + wait.unwrap_or_default();
    loop {
        let job = jobs::fetch_job(&state.db, project.as_str(), job_id)
            .await?
            .ok_or(ApiError::NotFound("job"))?;
        if job.status.is_terminal() {
            return Ok((StatusCode::OK, Json(JobResponse::from(job))).into_response());
        }
        if tokio::time::Instant::now() >= deadline || state.shutdown.is_cancelled() {
            let location = format!("/v1/jobs/{job_id}");
            return Ok((
                StatusCode::ACCEPTED,
                [(header::LOCATION, location)],
                Json(JobResponse::from(job)),
            )
                .into_response());
        }
        // Woken when the job ends (this replica's engine, or NOTIFY from another);
        // the slow poll only matters where neither reaches (a pooler without LISTEN).
        let poll = state
            .wait_poll_interval
            .min(deadline - tokio::time::Instant::now());
        tokio::select! {
            () = async {
                match ended.as_mut() {
                    Some(watch) => watch.ended().await,
                    None => std::future::pending().await,
                }
            } => {}
            () = tokio::time::sleep(poll) => {}
            () = state.shutdown.cancelled() => {}
        }
    }
}

/// The longest a request to `path` may take: a waiting snapshot request gets its wait on top.
pub fn request_budget(
    method: &axum::http::Method,
    path: &str,
    query: Option<&str>,
    base: Duration,
) -> Duration {
    if method != axum::http::Method::POST || path != "/v1/snapshots" {
        return base;
    }
    let wait = query
        .and_then(|q| {
            form_urlencoded::parse(q.as_bytes())
                .find(|(k, _)| k == "wait")
                .map(|(_, v)| v.into_owned())
        })
        .and_then(|w| parse_wait(&w).ok())
        .unwrap_or_default();
    base + wait
}
