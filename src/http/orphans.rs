//! `/v1/orphans`: Cinder snapshots made for an instance snapshot image whose image
//! is gone. Deleting such an image in Glance leaves its Cinder snapshots behind,
//! and nobody sees them until the quota or the storage bill does.

use std::collections::HashSet;

use axum::{Json, extract::State};
use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};
use utoipa::{IntoParams, ToSchema};
use utoipa_axum::{router::OpenApiRouter, routes};

use super::{ApiError, AppState, Problem, Result, error::openstack_summary, extract::AppQuery};
use crate::openstack::{OpenStack, cinder::SnapshotFilter};

/// Nova names the Cinder snapshots of a volume-backed server's image "snapshot for <image name>".
const NOVA_PREFIX: &str = "snapshot for ";

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

async fn find(state: &AppState, include_foreign: bool) -> Result<Vec<Orphan>> {
    let cloud: &OpenStack = state.cloud.as_ref().ok_or_else(|| {
        ApiError::Unavailable("this replica has no OpenStack credentials (--no-engine)".into())
    })?;
    // Every snapshot any existing image still refers to.
    let mut referenced = HashSet::new();
    for image in cloud.glance().list_images(&[]).await? {
        for entry in image.block_device_mapping().unwrap_or_default() {
            referenced.extend(entry.snapshot_id);
        }
    }
    let ours: HashSet<String> = sqlx::query_scalar(
        "select piece ->> 'snapshot_id' from snapshot, jsonb_array_elements(volume_snapshots) as piece \
         where resource_type = 'server'",
    )
    .fetch_all(&state.db)
    .await?
    .into_iter()
    .collect();
    let snapshots = cloud
        .cinder()
        .list_snapshots(&SnapshotFilter::default())
        .await?;
    Ok(snapshots
        .into_iter()
        .filter(|s| {
            !referenced.contains(&s.id) && !matches!(s.status.as_str(), "deleting" | "creating")
        })
        .filter_map(|s| {
            let made_by_stacksnap = ours.contains(&s.id);
            let image_name = s
                .name
                .as_deref()
                .and_then(|n| n.strip_prefix(NOVA_PREFIX))
                .map(str::to_owned);
            let for_an_image = made_by_stacksnap || image_name.is_some();
            (for_an_image && (made_by_stacksnap || include_foreign)).then_some(Orphan {
                snapshot_id: s.id,
                volume_id: s.volume_id,
                name: s.name,
                image_name,
                status: s.status,
                size_gb: s.size,
                created_at: s.created_at,
                made_by_stacksnap,
            })
        })
        .collect())
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
        items: find(&state, query.include_foreign.unwrap_or(false)).await?,
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
    let orphans = find(&state, query.include_foreign.unwrap_or(false)).await?;
    let cloud = state.cloud.as_ref().expect("find checked the cloud");
    let mut report = CleanupReport {
        deleted: Vec::new(),
        failed: Vec::new(),
    };
    for orphan in orphans {
        match cloud.cinder().delete_snapshot(&orphan.snapshot_id).await {
            Ok(()) => report.deleted.push(orphan.snapshot_id),
            Err(e) if e.is_not_found() => report.deleted.push(orphan.snapshot_id),
            Err(e) => {
                tracing::warn!(error = %e, "an orphan could not be deleted");
                report.failed.push(CleanupFailure {
                    snapshot_id: orphan.snapshot_id,
                    error: openstack_summary(&e),
                });
            }
        }
    }
    tracing::info!(
        deleted = report.deleted.len(),
        failed = report.failed.len(),
        "orphan cleanup"
    );
    Ok(Json(report))
}
