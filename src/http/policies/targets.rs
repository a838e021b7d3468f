//! `GET /v1/policies/{id}/targets`: each resource a policy targets and how
//! fresh its newest snapshot is (see `store::freshness` for what a target is).

use axum::{
    Json,
    extract::{Path, State},
};
use chrono::{DateTime, Utc};
use serde::Serialize;
use utoipa::ToSchema;
use uuid::Uuid;

use super::load;
use crate::{
    domain::policy::ResourceType,
    http::{AppState, Problem, Result, extract::Caller},
    store::freshness::{self, Target},
};

/// One target of a policy and its newest snapshot.
#[derive(Debug, Serialize, ToSchema)]
#[schema(as = PolicyTarget, example = json!({
    "resource_type": "server",
    "resource_id": "4f1d6a52-0b52-4a8e-9c43-1d0c8e3f2a10",
    "resource_name": "web-1",
    "newest_snapshot_id": "019ab8f3-1c2d-7e4f-8a9b-0c1d2e3f4a5b",
    "newest_snapshot_at": "2026-11-25T01:02:11.804Z",
    "stale": false,
    "verified_at": "2026-11-24T03:10:00Z",
    "unverified": false
}))]
pub struct TargetResponse {
    pub resource_type: ResourceType,
    #[schema(example = "4f1d6a52-0b52-4a8e-9c43-1d0c8e3f2a10")]
    pub resource_id: String,
    /// The name it had when last resolved or snapshotted; `null` when never seen.
    #[schema(example = "web-1")]
    pub resource_name: Option<String>,
    /// Its newest available, complete snapshot of this policy; `null` when none.
    pub newest_snapshot_id: Option<Uuid>,
    /// When that snapshot was taken.
    pub newest_snapshot_at: Option<DateTime<Utc>>,
    /// The newest snapshot is older than the policy's RPO, or there is none.
    pub stale: bool,
    /// When a restore test (`options.verify`) of one of its available
    /// snapshots of this policy last passed; `null` when never.
    pub verified_at: Option<DateTime<Utc>>,
    /// With `options.verify`: it has a snapshot but no passing restore test
    /// within `every`, or a test failed since the last pass (counted in the
    /// policy's `unverified_resources`).
    pub unverified: bool,
}

impl From<Target> for TargetResponse {
    fn from(t: Target) -> Self {
        Self {
            resource_type: t.resource_type,
            resource_id: t.resource_id,
            resource_name: t.resource_name,
            newest_snapshot_id: t.newest_snapshot_id,
            newest_snapshot_at: t.newest_snapshot_at,
            stale: t.stale,
            verified_at: t.verified_at,
            unverified: t.unverified,
        }
    }
}

/// The targets of a policy.
#[derive(Debug, Serialize, ToSchema)]
#[schema(as = PolicyTargets, example = json!({"items": [{
    "resource_type": "server",
    "resource_id": "4f1d6a52-0b52-4a8e-9c43-1d0c8e3f2a10",
    "resource_name": "web-1",
    "newest_snapshot_id": null,
    "newest_snapshot_at": null,
    "stale": true,
    "verified_at": null,
    "unverified": false
}]}))]
pub struct TargetList {
    /// By resource type, then id. At most the policy's ids plus what its last run resolved.
    pub items: Vec<TargetResponse>,
}

/// The resources a policy targets, with the newest snapshot of each.
///
/// The targets are the resources of the policy's most recent resolved run (what
/// its selector and ids resolved to when it last fired; runs that were missed or
/// failed before resolving do not count) plus the ids it names now. A target is
/// `stale` when its newest available snapshot of this policy is older than the
/// policy's RPO (`options.rpo`, or the longest gap between fire times over the next
/// year plus `options.timeout`), or when it has none.
#[utoipa::path(
    get,
    path = "/v1/policies/{id}/targets",
    tag = "policies",
    params(("id" = Uuid, Path, description = "Policy id")),
    responses(
        (status = 200, description = "The policy's targets", body = TargetList),
        (status = 404, description = "No such policy", body = Problem, content_type = "application/problem+json")
    )
)]
pub async fn list_policy_targets(
    State(state): State<AppState>,
    caller: Caller,
    Path(id): Path<String>,
) -> Result<Json<TargetList>> {
    let policy = load(&state, caller.item_scope(), &id).await?;
    let targets = freshness::list_targets(
        &state.db,
        policy.project_id.as_str(),
        policy.id,
        state.clock.now(),
    )
    .await?;
    Ok(Json(TargetList {
        items: targets.into_iter().map(TargetResponse::from).collect(),
    }))
}
