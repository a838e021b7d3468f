//! `/v1/snapshots` (GET, DELETE) and `/v1/policies/{id}/retention-preview`:
//! the snapshots stacksnap manages, and what retention would do with them.

use std::collections::HashMap;

use axum::{
    Json,
    extract::{Path, State},
    http::StatusCode,
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
        deletion::Dependant,
        job::{JobError, VolumeSnapshotState},
        policy::ResourceType,
        retention::{KeepReason, plan},
        status::SnapshotState,
        verify::VerifyError,
    },
    store::{
        policies,
        snapshots::{self, ManagedSnapshot, SnapshotFilter},
    },
};

/// A snapshot stacksnap made and manages: the image and/or every volume snapshot.
#[derive(Debug, Serialize, ToSchema)]
#[schema(as = Snapshot, example = json!({
    "id": "019ab9a2-1111-7c1e-8d2a-1b2c3d4e5f60", "project_id": "8d3c1f0b2a4e4b6c9d7e5f1a2b3c4d5e",
    "policy_id": "019ab8f0-6c1e-7d2a-9f3b-2a4c5d6e7f80",
    "run_id": "019ab9a1-0c1e-7d2a-9f3b-2a4c5d6e7f80", "job_id": "019ab9a1-2f00-7c1e-8d2a-1b2c3d4e5f60",
    "resource_type": "server", "resource_id": "4f1d6a52-0b52-4a8e-9c43-1d0c8e3f2a10", "resource_name": "web-1",
    "image_id": "b92d4c1e-5f6a-4b7c-8d9e-0f1a2b3c4d5e",
    "volume_snapshot_ids": ["0b2e7c1d-9a8f-4e3d-b2c1-a0f9e8d7c6b5"],
    "complete": true, "state": "available", "kept_by": ["last", "daily"],
    "taken_at": "2026-11-26T01:00:00Z", "created_at": "2026-11-26T01:00:09Z", "deleted_at": null, "delete_error": null,
    "delete_blocked_by": null, "verified_at": "2026-11-27T03:10:00Z", "verify_error": null
}))]
pub struct SnapshotResponse {
    pub id: Uuid,
    /// The project that owns it.
    pub project_id: String,
    /// `null` for a one-off snapshot, or once its policy was deleted.
    pub policy_id: Option<Uuid>,
    pub run_id: Option<Uuid>,
    pub job_id: Uuid,
    pub resource_type: ResourceType,
    pub resource_id: String,
    pub resource_name: Option<String>,
    pub image_id: Option<String>,
    /// The Cinder group snapshot of a volume group.
    pub group_snapshot_id: Option<String>,
    pub volume_snapshot_ids: Vec<String>,
    /// The image's size in bytes, as Glance reports it.
    pub image_size_bytes: Option<i64>,
    /// The volume snapshots' total size in GiB, as Cinder reports it.
    pub size_gb: Option<i64>,
    /// False for the leftovers of a job that failed: cleaned up after a grace period.
    pub complete: bool,
    /// `available`, `deleting`, `deleted`, `delete_failed` (retried hourly) or
    /// `delete_blocked` (Cinder keeps a piece that volumes were made from; retried daily).
    pub state: SnapshotState,
    /// Why retention keeps it; `[]` when it is due for deletion; `null` when no policy's retention applies.
    pub kept_by: Option<Vec<KeepReason>>,
    /// The scheduled instant of the run that took it.
    pub taken_at: DateTime<Utc>,
    pub created_at: DateTime<Utc>,
    pub deleted_at: Option<DateTime<Utc>>,
    /// Why the last deletion attempt failed or is blocked.
    pub delete_error: Option<JobError>,
    /// While `delete_blocked`: the volumes made from its pieces. Delete or flatten
    /// them (then `DELETE` it again, or wait for the daily retry).
    pub delete_blocked_by: Option<Vec<Dependant>>,
    /// A server snapshot's source flavor as Nova showed it when it was taken
    /// (from compute 2.47 `original_name`, `vcpus`, `ram`, `disk`, ...; below
    /// it the `id`): what a restore boots with unless asked otherwise. `null`
    /// for volumes and for snapshots taken before it was recorded.
    #[serde(skip_serializing_if = "Option::is_none")]
    #[schema(value_type = Object, required = false, example = json!({"original_name": "m1.small", "vcpus": 1, "ram": 2048, "disk": 20}))]
    pub source_flavor: Option<serde_json::Value>,
    /// The availability zone of the snapshotted server or volume when it was
    /// taken; a restore of a volume or a volume-backed server stays in it.
    /// Absent for snapshots taken before it was recorded.
    #[serde(skip_serializing_if = "Option::is_none")]
    #[schema(required = false, example = "nova")]
    pub source_az: Option<String>,
    /// When a scheduled restore test of it (its policy's `options.verify`) last
    /// passed: it was restored and usable (`ACTIVE` with every volume
    /// `in-use`, or `available`). `null` when never.
    pub verified_at: Option<DateTime<Utc>>,
    /// Why its last restore test failed, `{code, message, at}`; cleared by a pass.
    pub verify_error: Option<VerifyError>,
}

impl SnapshotResponse {
    fn new(snapshot: ManagedSnapshot, kept_by: Option<Vec<KeepReason>>) -> Self {
        Self {
            id: snapshot.snapshot_id,
            project_id: snapshot.project_id,
            policy_id: snapshot.policy_id,
            run_id: snapshot.run_id,
            job_id: snapshot.job_id,
            resource_type: snapshot.resource_type,
            resource_id: snapshot.resource_id,
            resource_name: snapshot.resource_name,
            image_id: snapshot.image_id,
            group_snapshot_id: snapshot.group_snapshot_id,
            volume_snapshot_ids: snapshot
                .volume_snapshots
                .0
                .iter()
                .map(|s: &VolumeSnapshotState| s.snapshot_id.clone())
                .collect(),
            image_size_bytes: snapshot.image_size_bytes,
            size_gb: snapshot.size_gb,
            complete: snapshot.complete,
            state: snapshot.state,
            kept_by,
            taken_at: snapshot.taken_at,
            created_at: snapshot.created_at,
            deleted_at: snapshot.deleted_at,
            delete_error: snapshot.delete_error.map(|e| e.0),
            delete_blocked_by: snapshot.delete_blocked_by.map(|d| d.0),
            source_flavor: snapshot.source_flavor.map(|f| f.0),
            source_az: snapshot.source_az,
            verified_at: snapshot.verified_at,
            verify_error: snapshot.verify_error.map(|e| e.0),
        }
    }
}

/// One page of snapshots, newest first.
#[derive(Debug, Serialize, ToSchema)]
#[schema(example = json!({"items": [{
    "id": "019ab9a2-1111-7c1e-8d2a-1b2c3d4e5f60", "project_id": "8d3c1f0b2a4e4b6c9d7e5f1a2b3c4d5e",
    "policy_id": "019ab8f0-6c1e-7d2a-9f3b-2a4c5d6e7f80",
    "run_id": "019ab9a1-0c1e-7d2a-9f3b-2a4c5d6e7f80", "job_id": "019ab9a1-2f00-7c1e-8d2a-1b2c3d4e5f60",
    "resource_type": "volume", "resource_id": "3c9e2a10-7b52-4a8e-9c43-1d0c8e3f2a10", "resource_name": "db-data",
    "image_id": null, "group_snapshot_id": null,
    "volume_snapshot_ids": ["0b2e7c1d-9a8f-4e3d-b2c1-a0f9e8d7c6b5"], "image_size_bytes": null, "size_gb": 10,
    "complete": true, "state": "delete_blocked", "kept_by": null,
    "taken_at": "2026-11-26T01:00:00Z", "created_at": "2026-11-26T01:00:09Z", "deleted_at": null,
    "delete_error": {"code": "dependent_volumes", "message": "Cinder keeps what other volumes depend on: volume snapshot 0b2e7c1d-9a8f-4e3d-b2c1-a0f9e8d7c6b5 has volumes made from it: 6a2f0c1e-3b4d-4e5f-8a9b-0c1d2e3f4a5b (restore-test). Delete or flatten those volumes; stacksnap tries again daily"},
    "delete_blocked_by": [{"volume_snapshot_id": "0b2e7c1d-9a8f-4e3d-b2c1-a0f9e8d7c6b5",
        "volume_id": "6a2f0c1e-3b4d-4e5f-8a9b-0c1d2e3f4a5b", "volume_name": "restore-test"}]
}], "next_cursor": "Y3MCAZq5ohERfB6NKhssPU5fYLTtD_alpFYU"}))]
pub struct SnapshotList {
    pub items: Vec<SnapshotResponse>,
    /// Pass as `cursor` to get the next page; `null` on the last page.
    #[schema(pattern = "^Y3MC[A-Za-z0-9_-]{32}$")]
    pub next_cursor: Option<String>,
}

/// Filters and paging for `GET /v1/snapshots`.
#[derive(Debug, Deserialize, IntoParams)]
#[serde(deny_unknown_fields)]
#[into_params(parameter_in = Query)]
pub struct ListSnapshotsQuery {
    /// Every project's snapshots, not only the token's project's (admin only; default `false`).
    pub all_projects: Option<bool>,
    pub policy_id: Option<Uuid>,
    #[param(pattern = r"^[^\u0000]*$")]
    pub resource_id: Option<String>,
    #[param(inline)]
    pub state: Option<SnapshotState>,
    /// Page size, 1 to 1000 (default 100).
    #[param(minimum = 1, maximum = 1000, example = 100)]
    pub limit: Option<u32>,
    /// The `next_cursor` of the previous page.
    #[param(pattern = "^Y3MC[A-Za-z0-9_-]{32}$")]
    pub cursor: Option<String>,
}

/// What retention would do to a policy's snapshots now.
#[derive(Debug, Serialize, ToSchema)]
#[schema(example = json!({"policy_id": "019ab8f0-6c1e-7d2a-9f3b-2a4c5d6e7f80", "keep": [], "delete": []}))]
pub struct RetentionPreview {
    pub policy_id: Uuid,
    pub keep: Vec<SnapshotResponse>,
    pub delete: Vec<SnapshotResponse>,
}

/// Retention's reasons for every live snapshot of the policies in `page`.
async fn reasons(
    state: &AppState,
    page: &[ManagedSnapshot],
) -> Result<HashMap<Uuid, Vec<KeepReason>>> {
    let mut reasons = HashMap::new();
    let mut policy_ids: Vec<Uuid> = page
        .iter()
        .filter(|s| s.state == SnapshotState::Available)
        .filter_map(|s| s.policy_id)
        .collect();
    policy_ids.sort_unstable();
    policy_ids.dedup();
    for policy_id in policy_ids {
        let Some(policy) = policies::fetch_policy_by_id(&state.db, policy_id).await? else {
            continue;
        };
        let live = snapshots::live_for_policy(&state.db, policy_id).await?;
        reasons.extend(
            plan(&policy.spec, live)
                .into_iter()
                .map(|(s, kept_by)| (s.snapshot_id, kept_by)),
        );
    }
    Ok(reasons)
}

/// The routes of `GET /v1/snapshots`, `/v1/snapshots/{id}` and the retention preview, with their OpenAPI operations.
pub fn router() -> OpenApiRouter<AppState> {
    OpenApiRouter::new()
        .routes(routes!(list_snapshots))
        .routes(routes!(get_snapshot, delete_snapshot))
        .routes(routes!(retention_preview))
}

/// List managed snapshots, newest first.
#[utoipa::path(
    get,
    path = "/v1/snapshots",
    tag = "snapshots",
    params(ListSnapshotsQuery),
    responses(
        (status = 200, description = "One page of snapshots", body = SnapshotList,
         links(
            ("GetSnapshot" = (operation_id = "get_snapshot", parameters(("id" = "$response.body#/items/0/id")))),
            ("DeleteSnapshot" = (operation_id = "delete_snapshot", parameters(("id" = "$response.body#/items/0/id")))),
            ("GetJob" = (operation_id = "get_job", parameters(("id" = "$response.body#/items/0/job_id"))))
         )),
        (status = 422, description = "Invalid query parameters", body = Problem, content_type = "application/problem+json")
    )
)]
pub async fn list_snapshots(
    State(state): State<AppState>,
    caller: Caller,
    AppQuery(query): AppQuery<ListSnapshotsQuery>,
) -> Result<Json<SnapshotList>> {
    let scope = caller.list_scope(query.all_projects)?;
    let filter = SnapshotFilter {
        policy_id: query.policy_id,
        resource_id: query.resource_id,
        state: query.state,
    };
    let page = fetch_page(
        List::Snapshots,
        scope,
        query.limit,
        query.cursor.as_deref(),
        |before, n| snapshots::list_snapshots(&state.db, scope, &filter, before, n),
        |s| s.snapshot_id,
    )
    .await?;
    let reasons = reasons(&state, &page.items).await?;
    let items = page
        .items
        .into_iter()
        .map(|s| {
            let kept_by = reasons.get(&s.snapshot_id).cloned();
            SnapshotResponse::new(s, kept_by)
        })
        .collect();
    Ok(Json(SnapshotList {
        items,
        next_cursor: page.next_cursor,
    }))
}

/// Read a managed snapshot, with the reasons retention keeps it.
#[utoipa::path(
    get,
    path = "/v1/snapshots/{id}",
    tag = "snapshots",
    params(("id" = Uuid, Path, description = "Snapshot id")),
    responses(
        (status = 200, description = "The snapshot", body = SnapshotResponse,
         links(
            ("DeleteSnapshot" = (operation_id = "delete_snapshot", parameters(("id" = "$response.body#/id")))),
            ("GetJob" = (operation_id = "get_job", parameters(("id" = "$response.body#/job_id"))))
         )),
        (status = 404, description = "No such snapshot", body = Problem, content_type = "application/problem+json")
    )
)]
pub async fn get_snapshot(
    State(state): State<AppState>,
    caller: Caller,
    Path(id): Path<String>,
) -> Result<Json<SnapshotResponse>> {
    let id: Uuid = id.parse().map_err(|_| ApiError::NotFound("snapshot"))?;
    let snapshot = snapshots::fetch_snapshot(&state.db, caller.item_scope(), id)
        .await?
        .ok_or(ApiError::NotFound("snapshot"))?;
    let kept_by = reasons(&state, std::slice::from_ref(&snapshot))
        .await?
        .remove(&id);
    Ok(Json(SnapshotResponse::new(snapshot, kept_by)))
}

/// Delete a snapshot: the image and every volume snapshot behind it.
///
/// The pieces are deleted in the background (202); follow `state` to `deleted`.
/// A snapshot whose deletion failed or is blocked can be deleted again (at once,
/// without waiting for the next retry).
#[utoipa::path(
    delete,
    path = "/v1/snapshots/{id}",
    tag = "snapshots",
    params(("id" = Uuid, Path, description = "Snapshot id")),
    responses(
        (status = 202, description = "Deletion under way", body = SnapshotResponse),
        (status = 404, description = "No such snapshot", body = Problem, content_type = "application/problem+json")
    )
)]
pub async fn delete_snapshot(
    State(state): State<AppState>,
    caller: Caller,
    Path(id): Path<String>,
) -> Result<Response> {
    let id: Uuid = id.parse().map_err(|_| ApiError::NotFound("snapshot"))?;
    let snapshot = snapshots::request_delete(&state.db, caller.item_scope(), id, state.clock.now())
        .await?
        .ok_or(ApiError::NotFound("snapshot"))?;
    Ok((
        StatusCode::ACCEPTED,
        Json(SnapshotResponse::new(snapshot, None)),
    )
        .into_response())
}

/// What the policy's retention rules would keep and delete now, with reasons. Deletes nothing.
#[utoipa::path(
    get,
    path = "/v1/policies/{id}/retention-preview",
    tag = "snapshots",
    params(("id" = Uuid, Path, description = "Policy id")),
    responses(
        (status = 200, description = "The verdict for each live snapshot", body = RetentionPreview),
        (status = 404, description = "No such policy", body = Problem, content_type = "application/problem+json")
    )
)]
pub async fn retention_preview(
    State(state): State<AppState>,
    caller: Caller,
    Path(id): Path<String>,
) -> Result<Json<RetentionPreview>> {
    let id: Uuid = id.parse().map_err(|_| ApiError::NotFound("policy"))?;
    let policy = policies::fetch_policy(&state.db, caller.item_scope(), id)
        .await?
        .ok_or(ApiError::NotFound("policy"))?;
    let live = snapshots::live_for_policy(&state.db, id).await?;
    let (mut keep, mut delete) = (Vec::new(), Vec::new());
    for (snapshot, kept_by) in plan(&policy.spec, live) {
        let target = if kept_by.is_empty() {
            &mut delete
        } else {
            &mut keep
        };
        target.push(SnapshotResponse::new(snapshot, Some(kept_by)));
    }
    Ok(Json(RetentionPreview {
        policy_id: id,
        keep,
        delete,
    }))
}
