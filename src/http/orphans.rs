//! `/v1/orphans`: Cinder snapshots made for an instance snapshot image whose image
//! is gone. The finding and deleting is in `engine::orphans`, the record of what
//! stacksnap made in `store::snapshots`; this module only answers HTTP.

use axum::{Json, extract::State};
use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};
use utoipa::{IntoParams, ToSchema};
use utoipa_axum::{router::OpenApiRouter, routes};

use super::{ApiError, AppState, Problem, Result, error::openstack_summary, extract::AppQuery};
use crate::{engine::orphans, openstack::OpenStack};

/// A Cinder snapshot whose image no longer exists.
#[derive(Debug, Serialize, ToSchema)]
#[schema(as = Orphan, example = json!({
    "snapshot_id": "0b2e7c1d-9a8f-4e3d-b2c1-a0f9e8d7c6b5", "volume_id": "6a2f1b1e-3c8b-4a53-8f4c-0d1e2f3a4b5c",
    "project_id": "8d3c1f0b2a4e4b6c9d7e5f1a2b3c4d5e", "name": "snapshot for nightly-web-db-1-20261126T0100Z", "image_name": "nightly-web-db-1-20261126T0100Z",
    "status": "available", "size_gb": 10, "created_at": "2026-11-26T01:00:03Z", "made_by_stacksnap": true
}))]
pub struct Orphan {
    pub snapshot_id: String,
    pub volume_id: String,
    /// The project that owns it, as Cinder reports it; `null` when Cinder does not say.
    pub project_id: Option<String>,
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
#[schema(example = json!({"deleted": ["0b2e7c1d-9a8f-4e3d-b2c1-a0f9e8d7c6b5"],
    "kept": [{"snapshot_id": "5d1c9a7e-2b3f-4c8d-9e0a-1b2c3d4e5f60", "reason": "an image refers to it"}], "failed": []}))]
pub struct CleanupReport {
    /// Snapshots whose deletion Cinder accepted (or that were already gone).
    pub deleted: Vec<String>,
    /// Snapshots found, then left alone: checked again right before deletion,
    /// something may still need them.
    pub kept: Vec<KeptOrphan>,
    pub failed: Vec<CleanupFailure>,
}

/// A snapshot the cleanup found but did not delete.
#[derive(Debug, Serialize, ToSchema)]
#[schema(example = json!({"snapshot_id": "5d1c9a7e-2b3f-4c8d-9e0a-1b2c3d4e5f60", "reason": "an image refers to it"}))]
pub struct KeptOrphan {
    pub snapshot_id: String,
    /// Why it was kept.
    pub reason: String,
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

fn search(state: &AppState, query: &OrphanQuery) -> orphans::Search {
    orphans::Search {
        now: state.clock.now(),
        grace: state.orphan_grace,
        include_foreign: query.include_foreign.unwrap_or(false),
    }
}

impl From<orphans::OrphanError> for ApiError {
    fn from(e: orphans::OrphanError) -> Self {
        match e {
            orphans::OrphanError::Cloud(e) => Self::OpenStack(e),
            orphans::OrphanError::Database(e) => Self::Database(e),
        }
    }
}

impl From<orphans::Orphan> for Orphan {
    fn from(o: orphans::Orphan) -> Self {
        Self {
            snapshot_id: o.snapshot_id,
            volume_id: o.volume_id,
            project_id: o.project_id,
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
///
/// Only snapshots older than the service's orphan grace period (`--orphan-grace`,
/// `STACKSNAP_ORPHAN_GRACE`, default `1h`) are looked at: Nova makes an image's
/// snapshots before the image, and a job in flight may not have recorded them yet.
/// A snapshot that an image with an unreadable `block_device_mapping` may refer to
/// is not listed.
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
    let search = search(&state, &query);
    let found = orphans::find_orphans(cloud(&state)?, &state.db, &search).await?;
    Ok(Json(OrphanList {
        items: found.into_iter().map(Orphan::from).collect(),
    }))
}
/// Delete orphaned Cinder snapshots: those of stacksnap's images, and others only with `include_foreign=true`.
///
/// Finds the orphans as the listing does (the same grace period, `--orphan-grace`),
/// then reads each one again, with its records and every image that may refer to
/// it, right before deleting it; one that is no longer an orphan is reported in `kept`.
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
    let search = search(&state, &query);
    let cloud = cloud(&state)?;
    let found = orphans::find_orphans(cloud, &state.db, &search).await?;
    let cleanup = orphans::delete_orphans(cloud, &state.db, &search, &found).await;
    let report = CleanupReport {
        deleted: cleanup.deleted,
        kept: cleanup
            .kept
            .into_iter()
            .map(|(snapshot_id, reason)| KeptOrphan {
                snapshot_id,
                reason,
            })
            .collect(),
        failed: cleanup
            .failed
            .into_iter()
            .map(|(snapshot_id, e)| {
                tracing::warn!(%snapshot_id, error = %e, "an orphan could not be deleted");
                let error = match &e {
                    orphans::OrphanError::Cloud(e) => openstack_summary(e),
                    orphans::OrphanError::Database(_) => {
                        "the database could not be read; it was not deleted".to_owned()
                    }
                };
                CleanupFailure { snapshot_id, error }
            })
            .collect(),
    };
    Ok(Json(report))
}
