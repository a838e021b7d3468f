//! `GET /v1/status`: a summary of what the caller may see, computed from the
//! database (the same on every replica).

use axum::{Json, extract::State};
use serde::{Deserialize, Serialize};
use utoipa::{IntoParams, ToSchema};
use utoipa_axum::{router::OpenApiRouter, routes};

use super::{
    AppState, Problem, Result,
    extract::{AppQuery, Caller},
};
use crate::store::summary::{self, Summary};

/// The routes of `/v1/status`, with their OpenAPI operations.
pub fn router() -> OpenApiRouter<AppState> {
    OpenApiRouter::new().routes(routes!(get_status))
}

/// What `GET /v1/status` summarises.
#[derive(Debug, Deserialize, IntoParams)]
#[serde(deny_unknown_fields)]
#[into_params(parameter_in = Query)]
pub struct StatusQuery {
    /// Every project, not only the token's project's (admin only; default `false`).
    pub all_projects: Option<bool>,
}

/// Policies by state.
#[derive(Debug, Serialize, ToSchema)]
#[schema(as = PolicyCounts, example = json!({"active": 12, "disabled": 2, "broken": 1, "stale": 1}))]
pub struct PolicyCounts {
    /// Enabled and firing.
    pub active: i64,
    /// Disabled (they keep their snapshots).
    pub disabled: i64,
    /// Set aside by the scheduler until a PATCH repairs them (a policy that no
    /// longer passes validation counts here once the scheduler has met it).
    pub broken: i64,
    /// Enabled policies, broken ones included, with at least one stale target
    /// (`stale_resources` > 0). Disabled policies are left out: they were turned off on purpose.
    pub stale: i64,
}

/// A summary of what the caller may see.
#[derive(Debug, Serialize, ToSchema)]
#[schema(as = Status, example = json!({
    "policies": {"active": 12, "disabled": 2, "broken": 1, "stale": 1},
    "jobs_failed_24h": 3,
    "restores_failed_24h": 0,
    "deletions_failed": 0,
    "deletions_blocked": 1,
    "runs_missed_24h": 0,
    "unverified_resources": 2
}))]
pub struct StatusResponse {
    pub policies: PolicyCounts,
    /// Snapshot jobs that failed or timed out in the last 24 hours (restores
    /// and restore tests are not counted here).
    pub jobs_failed_24h: i64,
    /// Restores (`POST /v1/snapshots/{id}/restore`) that failed or timed out
    /// in the last 24 hours.
    pub restores_failed_24h: i64,
    /// Snapshots whose deletion failed and is being retried (`delete_failed`).
    pub deletions_failed: i64,
    /// Snapshots Cinder will not delete while volumes made from them exist (`delete_blocked`).
    pub deletions_blocked: i64,
    /// Fire times missed (no replica fired them in time) in the last 24 hours.
    pub runs_missed_24h: i64,
    /// Targets of enabled policies with `options.verify` whose snapshots have
    /// no passing restore test within the policy's `every` (none yet, the last
    /// one too old, or a failure since): each policy shows its own as
    /// `unverified_resources`.
    pub unverified_resources: i64,
}

impl From<Summary> for StatusResponse {
    fn from(s: Summary) -> Self {
        Self {
            policies: PolicyCounts {
                active: s.active,
                disabled: s.disabled,
                broken: s.broken,
                stale: s.stale,
            },
            jobs_failed_24h: s.jobs_failed_24h,
            restores_failed_24h: s.restores_failed_24h,
            deletions_failed: s.deletions_failed,
            deletions_blocked: s.deletions_blocked,
            runs_missed_24h: s.runs_missed_24h,
            unverified_resources: s.unverified_resources,
        }
    }
}

/// A summary of the caller's project (every project for an admin with `all_projects=true`).
#[utoipa::path(
    get,
    path = "/v1/status",
    tag = "status",
    params(StatusQuery),
    responses(
        (status = 200, description = "The summary", body = StatusResponse),
        (status = 403, description = "all_projects=true without the admin role", body = Problem, content_type = "application/problem+json"),
        (status = 422, description = "Invalid query parameters", body = Problem, content_type = "application/problem+json")
    )
)]
pub async fn get_status(
    State(state): State<AppState>,
    caller: Caller,
    AppQuery(query): AppQuery<StatusQuery>,
) -> Result<Json<StatusResponse>> {
    let scope = caller.list_scope(query.all_projects)?;
    let summary = summary::fetch_summary(&state.db, scope, state.clock.now()).await?;
    Ok(Json(summary.into()))
}
