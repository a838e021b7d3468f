//! `POST /v1/snapshots/{id}/restore`: make a new server, volume or volume group from a
//! managed snapshot, optionally waiting for it.

use axum::{
    Json,
    extract::{Path, State},
    http::{StatusCode, header},
    response::{IntoResponse, Response},
};
use serde::Deserialize;
use utoipa::IntoParams;
use utoipa_axum::{router::OpenApiRouter, routes};
use uuid::Uuid;

use super::{
    ApiError, AppState, Problem, Result, delegation,
    extract::{AppQuery, Caller, JsonDocument, from_value},
    job_wait::{self, WaitQuery},
    jobs::JobResponse,
};
use crate::{
    domain::{
        moves::{DeleteSource, check_move},
        restore::{RestoreRequest, restore_job},
        status::{RunTrigger, SnapshotState},
    },
    store::{lifecycle, snapshots},
};

/// The routes of `POST /v1/snapshots/{id}/restore`, with their OpenAPI operations.
pub fn router() -> OpenApiRouter<AppState> {
    OpenApiRouter::new().routes(routes!(restore_snapshot))
}

/// Restore a managed snapshot into a new resource.
///
/// A server snapshot boots a new server from the snapshot's image (for a
/// volume-backed server, Nova makes its volumes from the Cinder snapshots the
/// image's `block_device_mapping` lists); the job waits until the server is
/// `ACTIVE` and every new volume `in-use`. A volume snapshot makes a new volume,
/// waited to `available`. A volume-group snapshot makes a new group
/// (Cinder's `create-from-src`), waited to `available` with all its volumes;
/// only `name`, `metadata` and `timeout` apply to it. The new resources carry the metadata
/// `stacksnap_restored_from=<snapshot id>` and `stacksnap_job_id=<job id>`, a
/// server also the tag `stacksnap-job-<job id>`. The job (`kind: restore`) runs
/// in a run with trigger `restore` and no policy, acting with the caller's
/// authority like a one-off snapshot; it never blocks a snapshot of the source.
/// A restore that fails, times out or is cancelled deletes what it made.
///
/// **Move.** A restore onto another `flavor`, or (image-backed servers only)
/// another `availability_zone`, is the migration path. With
/// `?delete_source=after_active` and `confirm` equal to the source server's id
/// (the snapshot's `resource_id`), the source server is deleted once the new
/// one is `ACTIVE` with every new volume `in-use`, and the job ends when Nova
/// no longer shows it (`restored.source_deleted_at`, timeline
/// `source_server`). The source is never deleted before that, nor by a
/// restore that fails, times out or is cancelled; from then on the move can
/// no longer be cancelled and nothing it made is deleted: a source that
/// could not be deleted (refused by the cloud, in another project, the
/// caller's authority gone, still deleting at the deadline) ends the job
/// `succeeded` with the error `source_not_deleted` and
/// `restored.source_deletion.state = kept`. Nova deletes the source's volumes
/// whose `delete_on_termination` is set, except those with Cinder snapshots
/// (a volume-backed source's volumes, which the managed snapshot holds): they
/// stay, detached.
///
/// Limits: the new resource has new ids, ports and addresses (floating IPs
/// are not moved); networks default to `"none"` (so it boots on any cloud;
/// pass `"auto"` or a list for connectivity). Carried over: the image (the
/// root disk), for a volume-backed server its volumes as the snapshot's block
/// device mapping lists them (device names, `delete_on_termination`, and
/// their volume types, which Cinder takes from the snapshots; the root at
/// least the image's `min_disk`). Not carried over: the source's metadata
/// and tags (only `metadata` given here and the stamps below), security
/// groups (Nova's `default`), key pair (unless `key_name`), server group,
/// user data, volume attachments of an image-backed server, and the source's
/// ports. Cinder keeps a volume made from a snapshot in the snapshot's
/// availability zone (`cloned_volume_same_az`), so volumes and volume-backed
/// servers stay in theirs: another `availability_zone` than the one recorded
/// with the snapshot is a 422 (a snapshot that recorded none is left to the
/// cloud). A restored group is in its source's zone, with its types. A group
/// carries no metadata: its description names the job, and its volumes are
/// stamped once available.
///
/// Without `wait` the answer comes at once (202). With `wait`, it comes when the
/// job ends (200, whatever its outcome: check `status`) or when the wait runs out (202).
#[utoipa::path(
    post,
    path = "/v1/snapshots/{id}/restore",
    tag = "snapshots",
    params(("id" = Uuid, Path, description = "Managed snapshot id"), RestoreQuery),
    request_body(content = RestoreRequest, content_type = "application/json"),
    responses(
        (status = 200, description = "The restore ended within the wait (check `status`)", body = JobResponse,
         links(("GetJob" = (operation_id = "get_job", parameters(("id" = "$response.body#/id"))))),
         example = json!(restore_example("succeeded"))),
        (status = 202, description = "The restore is under way", body = JobResponse,
         headers(("Location" = String, description = "URL of the job")),
         links(
            ("GetJob" = (operation_id = "get_job", parameters(("id" = "$response.body#/id")))),
            ("CancelJob" = (operation_id = "cancel_job", parameters(("id" = "$response.body#/id"))))
         ),
         example = json!(restore_example("creating"))),
        (status = 400, description = "The body is not JSON", body = Problem, content_type = "application/problem+json"),
        (status = 404, description = "No such snapshot in the caller's reach", body = Problem, content_type = "application/problem+json"),
        (status = 409, description = "The snapshot is not available and complete, or cannot be restored", body = Problem, content_type = "application/problem+json"),
        (status = 413, description = "The body is over the limit", body = Problem, content_type = "application/problem+json"),
        (status = 415, description = "The body is not application/json", body = Problem, content_type = "application/problem+json"),
        (status = 422, description = "Invalid or inapplicable fields, each named (`delete_source` for a snapshot other than a server's, `confirm` not naming the source server, `availability_zone` other than a volume's or volume-backed server's snapshot zone)", body = Problem, content_type = "application/problem+json")
    )
)]
pub async fn restore_snapshot(
    State(state): State<AppState>,
    caller: Caller,
    Path(id): Path<String>,
    AppQuery(query): AppQuery<RestoreQuery>,
    JsonDocument(body): JsonDocument,
) -> Result<Response> {
    let wait = WaitQuery {
        wait: query.wait.clone(),
    }
    .duration()?;
    if !body.is_object() {
        return Err(ApiError::field(
            "body",
            "a restore request must be a JSON object",
        ));
    }
    let request: RestoreRequest = from_value(body)?;
    let id: Uuid = id.parse().map_err(|_| ApiError::NotFound("snapshot"))?;
    let snapshot = snapshots::fetch_snapshot(&state.db, caller.item_scope(), id)
        .await?
        .ok_or(ApiError::NotFound("snapshot"))?;
    if snapshot.state != SnapshotState::Available || !snapshot.complete {
        return Err(ApiError::Conflict(format!(
            "only an available, complete snapshot can be restored; this one is {}{}",
            serde_json::to_value(snapshot.state)
                .ok()
                .and_then(|v| v.as_str().map(str::to_owned))
                .unwrap_or_default(),
            if snapshot.complete {
                ""
            } else {
                " and incomplete"
            }
        )));
    }
    let pieces = snapshot.restore_pieces();
    let moved = check_move(
        pieces.resource_type,
        &pieces.resource_id,
        query.delete_source,
        request.confirm.as_deref(),
    );
    let timeout_secs = match (request.validate(&pieces), moved.is_empty()) {
        (Ok(timeout), true) => timeout,
        (Ok(_), false) => return Err(ApiError::Unprocessable(moved)),
        (Err(mut errors), _) => {
            errors.extend(moved);
            return Err(ApiError::Unprocessable(errors));
        }
    };
    let job_id = Uuid::now_v7();
    let mut spec = request
        .spec(&pieces, job_id)
        .map_err(|e| ApiError::Conflict(e.0))?;
    spec.delete_source = query.delete_source;
    let now = state.clock.now();
    let project = snapshot.project_id.clone();
    let job = restore_job(&pieces, spec, timeout_secs, job_id, now);
    // Watched from before the job exists, so its end cannot slip between a read and the wait.
    let ended = wait.map(|_| state.job_events.watch(job_id));
    let trust = delegation::adhoc_trust(&state, &caller, &project).await?;
    let authority = delegation::run_authority(&caller, &project, trust.as_ref());
    let queued = lifecycle::insert_single_job_run(
        &state.db,
        &project,
        caller.user_id(),
        &job,
        authority,
        now,
        RunTrigger::Restore,
    )
    .await?;
    if queued.is_none() {
        return Err(ApiError::Conflict(
            "the snapshot started being deleted while the restore was asked for".into(),
        ));
    }
    let job = job_wait::until_ended(
        &state,
        project.as_str().into(),
        job_id,
        wait.unwrap_or_default(),
        ended,
    )
    .await?;
    let response = Json(JobResponse::from(job));
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

/// The query of `POST /v1/snapshots/{id}/restore`.
#[derive(Debug, Deserialize, IntoParams)]
#[serde(deny_unknown_fields)]
#[into_params(parameter_in = Query)]
pub struct RestoreQuery {
    /// Answer when the job ends or after this long (at most `1h`), e.g. `10m`.
    #[param(
        example = "10m",
        pattern = r"^[\u0009-\u000d\u0085 \u00a0\u1680\u2000-\u200a\u2028\u2029\u202f\u205f\u3000]*(?:0+[smhdw])*0*[1-9][0-9]*[smhdw](?:[0-9]+[smhdw])*[\u0009-\u000d\u0085 \u00a0\u1680\u2000-\u200a\u2028\u2029\u202f\u205f\u3000]*$"
    )]
    pub wait: Option<String>,
    /// `after_active` makes the restore a move: once the new server is
    /// `ACTIVE` with every new volume `in-use`, the source server (the
    /// snapshot's resource) is deleted, and the job waits until Nova no
    /// longer shows it. Only for a server snapshot, and only with `confirm`
    /// in the body equal to the source server's id. Off by default.
    #[param(inline)]
    pub delete_source: Option<DeleteSource>,
}

/// An example answer of `POST /v1/snapshots/{id}/restore`.
fn restore_example(status: &str) -> serde_json::Value {
    let finished = status == "succeeded";
    let when_finished = |v: serde_json::Value| if finished { v } else { serde_json::Value::Null };
    serde_json::json!({
        "id": "019ab9b2-1c00-7c1e-8d2a-1b2c3d4e5f61", "kind": "restore",
        "project_id": "8d3c1f0b2a4e4b6c9d7e5f1a2b3c4d5e",
        "run_id": "019ab9b2-0b1e-7d2a-9f3b-2a4c5d6e7f81", "policy_id": null,
        "resource_type": "server", "resource_id": "4f1d6a52-0b52-4a8e-9c43-1d0c8e3f2a10",
        "resource_name": "web-1", "status": status, "attempt": 1,
        "image_id": null, "group_snapshot_id": null, "volume_snapshots": [],
        "consistency": null, "error": null,
        "restore": {"snapshot_id": "019ab9a1-3a00-7c1e-8d2a-1b2c3d4e5f61",
                    "source": {"type": "server", "image_id": "b92d4c1e-5f6a-4b7c-8d9e-0f1a2b3c4d5e",
                               "source_flavor": {"original_name": "m1.small", "vcpus": 1, "ram": 2048, "disk": 20}},
                    "name": "web-1-restored", "networks": "none", "metadata": {}},
        "restored": if finished {
            serde_json::json!({"server_id": "5e2a9c1d-7b3f-4d6e-8a1c-2b3d4e5f6a70", "volume_ids": []})
        } else { serde_json::json!({}) },
        "timeline": if finished {
            serde_json::json!([{"at": "2026-11-26T02:00:09Z", "what": "server", "id": "5e2a9c1d-7b3f-4d6e-8a1c-2b3d4e5f6a70", "status": "ACTIVE"}])
        } else { serde_json::json!([]) },
        "openstack_calls": if finished { 4 } else { 2 },
        "created_at": "2026-11-26T02:00:00.5Z", "started_at": "2026-11-26T02:00:01Z",
        "finished_at": when_finished("2026-11-26T02:00:09Z".into()),
        "deadline": "2026-11-26T04:00:01Z"
    })
}
