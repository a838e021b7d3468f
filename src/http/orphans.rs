//! `/v1/orphans`: Cinder snapshots made for an instance snapshot image whose image
//! is gone. The finding and deleting is in `engine::orphans`, the record of what
//! stacksnap made in `store::snapshots`; this module only answers HTTP.

use std::collections::HashSet;

use axum::{Json, extract::State};
use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};
use utoipa::{IntoParams, ToSchema};
use utoipa_axum::{router::OpenApiRouter, routes};

use super::{ApiError, AppState, Problem, Result, error::openstack_summary, extract::AppQuery};
use crate::{engine::orphans, openstack::OpenStack, store::snapshots};

/// A Cinder snapshot whose image no longer exists.
#[derive(Debug, Serialize, ToSchema)]
#[schema(as = Orphan, example = json!({
    "snapshot_id": "0b2e7c1d-9a8f-4e3d-b2c1-a0f9e8d7c6b5", "volume_id": "6a2f1b1e-3c8b-4a53-8f4c-0d1e2f3a4b5c",
    "name": "snapshot for nightly-web-db-1-20261126T0100Z", "image_name": "nightly-web-db-1-20261126T0100Z",
    "status": "available", "size_gb": 10, "created_at": "2026-11-26T01:00:03Z", "made_by_stacksnap": true
}))]
pub struct Orphan {
    pub snapshot_id: String,
    pub volume_id: String,
    pub name: Option<String>,
    /// The name of the image it was made for, from its own name.
    pub image_name: Option<String>,
    pub status: String,
    pub size_gb: Option<u64>,
    pub created_at: Option<DateTime<Utc>>,
    /// Made for an image of one of stacksnap's jobs.
    pub made_by_stacksnap: bool,
}

/// The orphans found.
#[derive(Debug, Serialize, ToSchema)]
#[schema(example = json!({"items": []}))]
pub struct OrphanList {
    pub items: Vec<Orphan>,
}

/// Which orphans to show.
#[derive(Debug, Deserialize, IntoParams)]
#[serde(deny_unknown_fields)]
#[into_params(parameter_in = Query)]
pub struct OrphanQuery {
    /// Also orphans of images stacksnap did not make (default `false`).
    pub include_foreign: Option<bool>,
}

/// What a cleanup did.
#[derive(Debug, Serialize, ToSchema)]
#[schema(example = json!({"deleted": ["0b2e7c1d-9a8f-4e3d-b2c1-a0f9e8d7c6b5"], "failed": []}))]
pub struct CleanupReport {
    /// Snapshots whose deletion Cinder accepted (or that were already gone).
    pub deleted: Vec<String>,
    pub failed: Vec<CleanupFailure>,
}

/// A snapshot that could not be deleted.
#[derive(Debug, Serialize, ToSchema)]
#[schema(example = json!({"snapshot_id": "0b2e7c1d-9a8f-4e3d-b2c1-a0f9e8d7c6b5", "error": "OpenStack cinder delete_snapshot: the cloud answered HTTP 400"}))]
pub struct CleanupFailure {
    pub snapshot_id: String,
    /// What went wrong, in general terms; the service's log has the cloud's own message.
    pub error: String,
}

/// The cloud this replica reads, or a 503 on one started with `--no-engine`.
fn cloud(state: &AppState) -> Result<&OpenStack> {
    state.cloud.as_ref().ok_or_else(|| {
        ApiError::Unavailable("this replica has no OpenStack credentials (--no-engine)".into())
    })
}

async fn find(state: &AppState, include_foreign: bool) -> Result<Vec<orphans::Orphan>> {
    let ours: HashSet<String> = snapshots::server_volume_snapshot_ids(&state.db)
        .await?
        .into_iter()
        .collect();
    Ok(orphans::find_orphans(cloud(state)?, &ours, include_foreign).await?)
}

impl From<orphans::Orphan> for Orphan {
    fn from(o: orphans::Orphan) -> Self {
        Self {
            snapshot_id: o.snapshot_id,
            volume_id: o.volume_id,
            name: o.name,
            image_name: o.image_name,
            status: o.status,
            size_gb: o.size_gb,
            created_at: o.created_at,
            made_by_stacksnap: o.made_by_stacksnap,
        }
    }
}

/// The routes of `/v1/orphans`, with their OpenAPI operations.
pub fn router() -> OpenApiRouter<AppState> {
    OpenApiRouter::new()
        .routes(routes!(list_orphans))
        .routes(routes!(cleanup_orphans))
}

/// List Cinder snapshots left behind by deleted instance snapshot images.
#[utoipa::path(
    get,
    path = "/v1/orphans",
    tag = "snapshots",
    params(OrphanQuery),
    responses(
        (status = 200, description = "The orphans", body = OrphanList),
        (status = 422, description = "Invalid query parameters", body = Problem, content_type = "application/problem+json"),
        (status = 502, description = "The cloud answered a call with an error", body = Problem, content_type = "application/problem+json"),
        (status = 503, description = "The cloud cannot be reached, or this replica has none (`--no-engine`)", body = Problem, content_type = "application/problem+json")
    )
)]
pub async fn list_orphans(
    State(state): State<AppState>,
    AppQuery(query): AppQuery<OrphanQuery>,
) -> Result<Json<OrphanList>> {
    Ok(Json(OrphanList {
        items: find(&state, query.include_foreign.unwrap_or(false))
            .await?
            .into_iter()
            .map(Orphan::from)
            .collect(),
    }))
}

/// Delete orphaned Cinder snapshots: those of stacksnap's images, and others only with `include_foreign=true`.
#[utoipa::path(
    post,
    path = "/v1/orphans/cleanup",
    tag = "snapshots",
    params(OrphanQuery),
    responses(
        (status = 200, description = "What was deleted and what failed", body = CleanupReport),
        (status = 422, description = "Invalid query parameters", body = Problem, content_type = "application/problem+json"),
        (status = 502, description = "The cloud answered a call with an error", body = Problem, content_type = "application/problem+json"),
        (status = 503, description = "The cloud cannot be reached, or this replica has none (`--no-engine`)", body = Problem, content_type = "application/problem+json")
    )
)]
pub async fn cleanup_orphans(
    State(state): State<AppState>,
    AppQuery(query): AppQuery<OrphanQuery>,
) -> Result<Json<CleanupReport>> {
    let found = find(&state, query.include_foreign.unwrap_or(false)).await?;
    let cleanup = orphans::delete_orphans(cloud(&state)?, &found).await;
    let report = CleanupReport {
        deleted: cleanup.deleted,
        failed: cleanup
            .failed
            .into_iter()
            .map(|(snapshot_id, e)| {
                tracing::warn!(%snapshot_id, error = %e, "an orphan could not be deleted");
                CleanupFailure {
                    snapshot_id,
                    error: openstack_summary(&e),
                }
            })
            .collect(),
    };
    Ok(Json(report))
}
