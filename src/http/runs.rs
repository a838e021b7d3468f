//! `/v1/runs` and `POST /v1/policies/{id}/run`: firings of policies.

use std::collections::BTreeMap;

use axum::{
    Json,
    extract::{Path, State},
    http::{StatusCode, header},
    response::{IntoResponse, Response},
};
use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};
use utoipa::{IntoParams, ToSchema};
use utoipa_axum::{router::OpenApiRouter, routes};
use uuid::Uuid;

use super::{
    ApiError, AppState, Problem, Result,
    extract::{AppQuery, Caller},
    pagination::{List, fetch_page},
};
use crate::{
    domain::{
        job::{JobError, JobStatus, RunStatus},
        status::RunTrigger,
    },
    store::{
        policies as policy_store,
        runs::{self, Run},
    },
};

/// One firing of a policy, or a one-off snapshot request.
#[derive(Debug, Serialize, ToSchema)]
#[schema(as = Run, example = json!({
    "id": "019ab9a1-0c1e-7d2a-9f3b-2a4c5d6e7f80", "project_id": "8d3c1f0b2a4e4b6c9d7e5f1a2b3c4d5e",
    "policy_id": "019ab8f0-6c1e-7d2a-9f3b-2a4c5d6e7f80",
    "policy_name": "nightly-web", "trigger": "schedule", "created_by": null, "scheduled_for": "2026-11-26T01:00:00Z",
    "fired_at": "2026-11-26T01:00:00.412Z", "status": "running", "error": null, "started_at": "2026-11-26T01:00:00.412Z", "finished_at": null,
    "jobs": {"pending": 0, "creating": 1, "tracking": 4, "succeeded": 10, "failed": 0, "timed_out": 0, "cancelled": 0}
}))]
pub struct RunResponse {
    pub id: Uuid,
    /// The project the run acts in.
    pub project_id: String,
    /// `null` for a one-off snapshot, or once the policy was deleted.
    pub policy_id: Option<Uuid>,
    pub policy_name: Option<String>,
    /// `schedule`, `manual` or `adhoc`.
    pub trigger: RunTrigger,
    /// The Keystone user id of who started it by hand (`manual`) or asked for
    /// the one-off snapshot (`adhoc`); `null` for a scheduled run, and when no
    /// user is known (`--auth none`).
    pub created_by: Option<String>,
    pub scheduled_for: DateTime<Utc>,
    /// When the run was made: for a scheduled run the instant the scheduler
    /// fired it (its lag is `fired_at` − `scheduled_for`), for one started by
    /// hand or a one-off snapshot when it was asked for.
    pub fired_at: DateTime<Utc>,
    pub status: RunStatus,
    /// Why the run failed without jobs (no targets, cloud unreachable), or why it is waiting.
    pub error: Option<JobError>,
    pub started_at: Option<DateTime<Utc>>,
    pub finished_at: Option<DateTime<Utc>>,
    /// The run's jobs, counted by status.
    pub jobs: BTreeMap<String, i64>,
}

impl From<Run> for RunResponse {
    fn from(run: Run) -> Self {
        let jobs = JobStatus::ALL
            .iter()
            .map(|s| (s.as_str().to_owned(), run.count(*s)))
            .collect();
        Self {
            id: run.run_id,
            project_id: run.project_id,
            created_by: run.created_by,
            policy_id: run.policy_id,
            policy_name: run.policy_name,
            trigger: run.trigger,
            scheduled_for: run.scheduled_for,
            fired_at: run.created_at,
            status: run.status,
            error: run.error.map(|e| e.0),
            started_at: run.started_at,
            finished_at: run.finished_at,
            jobs,
        }
    }
}

/// One page of runs, newest first.
#[derive(Debug, Serialize, ToSchema)]
#[schema(example = json!({"items": [], "next_cursor": "Y3ICAZq5oQwefSqfOypMXW5_gLTtD_alpFYU"}))]
pub struct RunList {
    pub items: Vec<RunResponse>,
    /// Pass as `cursor` to get the next page; `null` on the last page.
    #[schema(pattern = "^Y3IC[A-Za-z0-9_-]{32}$")]
    pub next_cursor: Option<String>,
}

/// Filters and paging for `GET /v1/runs`.
#[derive(Debug, Deserialize, IntoParams)]
#[serde(deny_unknown_fields)]
#[into_params(parameter_in = Query)]
pub struct ListRunsQuery {
    /// Every project's runs, not only the token's project's (admin only; default `false`).
    pub all_projects: Option<bool>,
    pub policy_id: Option<Uuid>,
    #[param(inline)]
    pub status: Option<RunStatus>,
    /// Page size, 1 to 1000 (default 100).
    #[param(minimum = 1, maximum = 1000, example = 100)]
    pub limit: Option<u32>,
    /// The `next_cursor` of the previous page.
    #[param(pattern = "^Y3IC[A-Za-z0-9_-]{32}$")]
    pub cursor: Option<String>,
}

/// The routes of `/v1/runs` and `POST /v1/policies/{id}/run`, with their OpenAPI operations.
pub fn router() -> OpenApiRouter<AppState> {
    OpenApiRouter::new()
        .routes(routes!(run_policy))
        .routes(routes!(list_runs))
        .routes(routes!(get_run))
}

/// Fire a policy now.
#[utoipa::path(
    post,
    path = "/v1/policies/{id}/run",
    tag = "runs",
    params(("id" = Uuid, Path, description = "Policy id")),
    responses(
        (status = 202, description = "The run was created; its jobs follow", body = RunResponse,
         headers(("Location" = String, description = "URL of the run")),
         links(
            ("GetRun" = (operation_id = "get_run", parameters(("id" = "$response.body#/id")))),
            ("ListJobs" = (operation_id = "list_jobs", parameters(("run_id" = "$response.body#/id"))))
         )),
        (status = 404, description = "No such policy", body = Problem, content_type = "application/problem+json"),
        (status = 409, description = "The policy is broken: fix it first", body = Problem, content_type = "application/problem+json")
    )
)]
pub async fn run_policy(
    State(state): State<AppState>,
    caller: Caller,
    Path(id): Path<String>,
) -> Result<Response> {
    let id: Uuid = id.parse().map_err(|_| ApiError::NotFound("policy"))?;
    let now = state.clock.now();
    let scope = caller.item_scope();
    let policy = policy_store::fetch_stored_policy(&state.db, scope, id, now)
        .await?
        .ok_or(ApiError::NotFound("policy"))?
        .into_policy()
        .map_err(super::policies::broken)?;
    let run_id = runs::insert_manual_run(&state.db, &policy, caller.user_id(), now).await?;
    let run = runs::fetch_run(&state.db, scope, run_id)
        .await?
        .ok_or(ApiError::NotFound("run"))?;
    let location = format!("/v1/runs/{run_id}");
    Ok((
        StatusCode::ACCEPTED,
        [(header::LOCATION, location)],
        Json(RunResponse::from(run)),
    )
        .into_response())
}

/// List runs, newest first.
#[utoipa::path(
    get,
    path = "/v1/runs",
    tag = "runs",
    params(ListRunsQuery),
    responses(
        (status = 200, description = "One page of runs", body = RunList,
         links(
            ("GetRun" = (operation_id = "get_run", parameters(("id" = "$response.body#/items/0/id")))),
            ("ListJobs" = (operation_id = "list_jobs", parameters(("run_id" = "$response.body#/items/0/id"))))
         )),
        (status = 422, description = "Invalid query parameters", body = Problem, content_type = "application/problem+json")
    )
)]
pub async fn list_runs(
    State(state): State<AppState>,
    caller: Caller,
    AppQuery(query): AppQuery<ListRunsQuery>,
) -> Result<Json<RunList>> {
    let scope = caller.list_scope(query.all_projects)?;
    let page = fetch_page(
        List::Runs,
        scope,
        query.limit,
        query.cursor.as_deref(),
        |before, n| runs::list_runs(&state.db, scope, query.policy_id, query.status, before, n),
        |r| r.run_id,
    )
    .await?
    .map(RunResponse::from);
    Ok(Json(RunList {
        items: page.items,
        next_cursor: page.next_cursor,
    }))
}

/// Read a run, with its jobs counted by status.
#[utoipa::path(
    get,
    path = "/v1/runs/{id}",
    tag = "runs",
    params(("id" = Uuid, Path, description = "Run id")),
    responses(
        (status = 200, description = "The run", body = RunResponse,
         links(("ListJobs" = (operation_id = "list_jobs", parameters(("run_id" = "$response.body#/id")))))),
        (status = 404, description = "No such run", body = Problem, content_type = "application/problem+json")
    )
)]
pub async fn get_run(
    State(state): State<AppState>,
    caller: Caller,
    Path(id): Path<String>,
) -> Result<Json<RunResponse>> {
    let id: Uuid = id.parse().map_err(|_| ApiError::NotFound("run"))?;
    let run = runs::fetch_run(&state.db, caller.item_scope(), id)
        .await?
        .ok_or(ApiError::NotFound("run"))?;
    Ok(Json(RunResponse::from(run)))
}
