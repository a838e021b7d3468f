//! `/v1/policies`: create, read, list, merge-patch, delete, preview schedules and list targets.

pub mod dto;
pub mod schedule;
pub mod targets;

use axum::{
    Json,
    extract::{Path, State},
    http::{HeaderMap, StatusCode, header},
    response::{IntoResponse, Response},
};
use chrono::{DateTime, Utc};
use serde_json::Value;
use utoipa_axum::{router::OpenApiRouter, routes};
use uuid::Uuid;

use self::dto::{
    DERIVED_FIELDS, DeletePolicyQuery, ListPoliciesQuery, PolicyList, PolicyResponse,
    READ_ONLY_FIELDS, SnapshotsOnDelete,
};
use super::{
    ApiError, AppState, Problem, Result,
    contract::patch::{PolicyPatch, take_unknown_fields},
    delegation,
    error::conflict_on,
    extract::{AppQuery, Caller, JsonDocument, MergePatchDocument, from_value},
    merge_patch::merge_patch,
    pagination::{List, fetch_page},
    preconditions::{IfMatchHeader, check_if_match, etag, has_if_match},
};
use crate::{
    domain::{
        adhoc::{PROJECT_ID_RULE, is_project_id},
        event::api_actor,
        policy::{PolicyError, PolicySpec, PolicyState, StoredPolicy, ValidPolicy},
        validation::FieldError,
    },
    store::{
        Scope,
        freshness::{self, Freshness},
        policies::{self as store, PolicyChange, PolicyFilter},
    },
};

const NAME_TAKEN: &str = "policy_project_name_key";
/// How often a PATCH without `If-Match` re-reads and re-applies after losing a race.
const PATCH_ATTEMPTS: usize = 3;

/// The routes of `/v1/policies`, with their OpenAPI operations.
pub fn router() -> OpenApiRouter<AppState> {
    OpenApiRouter::new()
        .routes(routes!(list_policies, create_policy))
        .routes(routes!(get_policy, update_policy, delete_policy))
        .routes(routes!(schedule::get_policy_schedule))
        .routes(routes!(targets::list_policy_targets))
}

/// Create a policy.
#[utoipa::path(
    post,
    path = "/v1/policies",
    tag = "policies",
    request_body(content = PolicySpec, content_type = "application/json"),
    responses(
        (status = 201, description = "Created", body = PolicyResponse,
         headers(("Location" = String, description = "URL of the new policy"), ("ETag" = String, description = "Its version")),
         links(
            ("GetPolicy" = (operation_id = "get_policy", parameters(("id" = "$response.body#/id")))),
            ("UpdatePolicy" = (operation_id = "update_policy", parameters(("id" = "$response.body#/id"), ("header.If-Match" = "$response.header.ETag")))),
            ("DeletePolicy" = (operation_id = "delete_policy", parameters(("id" = "$response.body#/id"), ("header.If-Match" = "$response.header.ETag")))),
            ("GetPolicySchedule" = (operation_id = "get_policy_schedule", parameters(("id" = "$response.body#/id")))),
            ("RunPolicy" = (operation_id = "run_policy", parameters(("id" = "$response.body#/id")))),
            ("PreviewRetention" = (operation_id = "retention_preview", parameters(("id" = "$response.body#/id")))),
            ("ListRuns" = (operation_id = "list_runs", parameters(("policy_id" = "$response.body#/id")))),
            ("ListJobs" = (operation_id = "list_jobs", parameters(("policy_id" = "$response.body#/id")))),
            ("ListSnapshots" = (operation_id = "list_snapshots", parameters(("policy_id" = "$response.body#/id"))))
         )),
        (status = 400, description = "The body is not JSON", body = Problem, content_type = "application/problem+json"),
        (status = 409, description = "The project has a policy of that name", body = Problem, content_type = "application/problem+json"),
        (status = 413, description = "The body is over the limit", body = Problem, content_type = "application/problem+json"),
        (status = 415, description = "The body is not application/json", body = Problem, content_type = "application/problem+json"),
        (status = 422, description = "Invalid fields, each named", body = Problem, content_type = "application/problem+json")
    )
)]
pub async fn create_policy(
    State(state): State<AppState>,
    caller: Caller,
    JsonDocument(body): JsonDocument,
) -> Result<Response> {
    let mut body = body;
    let project = caller.target_project(take_project_id(&mut body)?)?;
    let read_only = take_read_only_fields(&mut body, None);
    let now = state.clock.now();
    let valid = parse_policy(body, read_only, now)?;
    let next_run_at = valid.next_run_after(now);
    let trust = delegation::policy_trust(&state, &caller, &project).await?;
    let policy = store::insert_delegated_policy(
        &state.db,
        &project,
        Uuid::now_v7(),
        &valid,
        next_run_at,
        caller.user_id(),
        trust.as_ref(),
    )
    .await
    .map_err(conflict_on(NAME_TAKEN, || name_taken(&valid.name)))?;
    let location = format!("/v1/policies/{}", policy.id);
    let mut response = policy_response(&state, StatusCode::CREATED, policy.into()).await?;
    response.headers_mut().insert(
        header::LOCATION,
        location.parse().expect("a path is a valid header"),
    );
    Ok(response)
}

/// List policies, oldest first.
#[utoipa::path(
    get,
    path = "/v1/policies",
    tag = "policies",
    params(ListPoliciesQuery),
    responses(
        (status = 200, description = "One page of policies", body = PolicyList,
         links(
            ("GetPolicy" = (operation_id = "get_policy", parameters(("id" = "$response.body#/items/0/id")))),
            ("UpdatePolicy" = (operation_id = "update_policy", parameters(("id" = "$response.body#/items/0/id")))),
            ("DeletePolicy" = (operation_id = "delete_policy", parameters(("id" = "$response.body#/items/0/id")))),
            ("GetPolicySchedule" = (operation_id = "get_policy_schedule", parameters(("id" = "$response.body#/items/0/id")))),
            ("RunPolicy" = (operation_id = "run_policy", parameters(("id" = "$response.body#/items/0/id")))),
            ("PreviewRetention" = (operation_id = "retention_preview", parameters(("id" = "$response.body#/items/0/id"))))
         )),
        (status = 422, description = "Invalid query parameters", body = Problem, content_type = "application/problem+json")
    )
)]
pub async fn list_policies(
    State(state): State<AppState>,
    caller: Caller,
    AppQuery(query): AppQuery<ListPoliciesQuery>,
) -> Result<Json<PolicyList>> {
    let scope = caller.list_scope(query.all_projects)?;
    let filter = PolicyFilter {
        enabled: query.enabled,
        resource_type: query.resource_type,
    };
    let now = state.clock.now();
    let page = fetch_page(
        List::Policies,
        scope,
        query.limit,
        query.cursor.as_deref(),
        |after, n| store::list_policies(&state.db, scope, &filter, after, n, now),
        |p| p.id,
    )
    .await?;
    let ids: Vec<Uuid> = page.items.iter().map(|p| p.id).collect();
    let mut freshness = freshness::fetch_freshness(&state.db, scope, Some(&ids), now).await?;
    let page = page.map(|p| {
        let found = freshness.remove(&p.id).unwrap_or_default();
        PolicyResponse::from(p).with_freshness(found)
    });
    Ok(Json(PolicyList {
        items: page.items,
        next_cursor: page.next_cursor,
    }))
}

/// Read a policy.
#[utoipa::path(
    get,
    path = "/v1/policies/{id}",
    tag = "policies",
    params(("id" = Uuid, Path, description = "Policy id")),
    responses(
        (status = 200, description = "The policy", body = PolicyResponse,
         headers(("ETag" = String, description = "Its version, for If-Match")),
         links(
            ("UpdatePolicy" = (operation_id = "update_policy", parameters(("id" = "$response.body#/id"), ("header.If-Match" = "$response.header.ETag")))),
            ("DeletePolicy" = (operation_id = "delete_policy", parameters(("id" = "$response.body#/id"), ("header.If-Match" = "$response.header.ETag"))))
         )),
        (status = 404, description = "No such policy", body = Problem, content_type = "application/problem+json")
    )
)]
pub async fn get_policy(
    State(state): State<AppState>,
    caller: Caller,
    Path(id): Path<String>,
) -> Result<Response> {
    let id: Uuid = id.parse().map_err(|_| ApiError::NotFound("policy"))?;
    let (policy, cached) = store::fetch_stored_policy_with_cached_freshness(
        &state.db,
        caller.item_scope(),
        id,
        state.clock.now(),
    )
    .await?
    .ok_or(ApiError::NotFound("policy"))?;
    respond(&state, StatusCode::OK, policy, cached).await
}

/// Change a policy with a JSON merge patch (RFC 7396).
///
/// `null` removes a field, which then takes its default. Read-only fields may be
/// sent only with their current values. With `If-Match`, a stale version gets 412.
/// The patch applies to the policy as stored, so a patch that makes a `broken`
/// policy valid makes it `active` (or `disabled`) again, with its next fire time
/// counted from now. Disabling a policy cancels its pending jobs and its runs not
/// yet resolved; jobs already creating or tracking finish.
#[utoipa::path(
    patch,
    path = "/v1/policies/{id}",
    tag = "policies",
    params(("id" = Uuid, Path, description = "Policy id"), IfMatchHeader),
    request_body(content(
        (PolicyPatch = "application/merge-patch+json", example = json!({"enabled": false, "retention": {"keep_daily": 14}})),
        (PolicyPatch = "application/json", example = json!({"options": {"max_concurrent": null}}))
    )),
    responses(
        (status = 200, description = "The changed policy", body = PolicyResponse,
         headers(("ETag" = String, description = "Its new version")),
         links(
            ("GetPolicy" = (operation_id = "get_policy", parameters(("id" = "$response.body#/id")))),
            ("DeletePolicy" = (operation_id = "delete_policy", parameters(("id" = "$response.body#/id"), ("header.If-Match" = "$response.header.ETag"))))
         )),
        (status = 400, description = "The body is not JSON, or If-Match is not a list of entity tags", body = Problem, content_type = "application/problem+json"),
        (status = 404, description = "No such policy", body = Problem, content_type = "application/problem+json"),
        (status = 409, description = "The new name is taken, or the policy kept changing", body = Problem, content_type = "application/problem+json"),
        (status = 412, description = "If-Match names another version", body = Problem, content_type = "application/problem+json",
         headers(("ETag" = String, description = "The current version"))),
        (status = 413, description = "The body is over the limit", body = Problem, content_type = "application/problem+json"),
        (status = 415, description = "Not a merge patch", body = Problem, content_type = "application/problem+json"),
        (status = 422, description = "Invalid fields, each named", body = Problem, content_type = "application/problem+json")
    )
)]
pub async fn update_policy(
    State(state): State<AppState>,
    caller: Caller,
    Path(id): Path<String>,
    headers: HeaderMap,
    MergePatchDocument(patch): MergePatchDocument,
) -> Result<Response> {
    if !patch.is_object() {
        return Err(ApiError::field(
            "body",
            "a merge patch for a policy must be a JSON object",
        ));
    }
    let scope = caller.item_scope();
    let mut renewed = None;
    for _ in 0..PATCH_ATTEMPTS {
        let current = load(&state, scope, &id).await?;
        let now = state.clock.now();
        let mut patch = patch.clone();
        let current_json =
            serde_json::to_value(PolicyResponse::from(current.clone())).expect("serialisable");
        let mut refused = take_read_only_fields(&mut patch, Some(&current_json));
        let mut spec_json = current.written();
        refused.extend(take_unknown_fields(&mut patch, &spec_json));
        merge_patch(&mut spec_json, patch);
        // A body that is wrong whatever the version is a 422 before a stale If-Match is a 412.
        let valid = parse_policy(spec_json, refused, now)?;
        check_if_match(&headers, current.version)?;
        // A broken policy is written even unchanged: that is what makes it fire again.
        if current.state() != PolicyState::Broken && current.spec.as_ref() == Ok(&valid) {
            return policy_response(&state, StatusCode::OK, current).await;
        }
        let next_run_at = next_run_after_change(&current, &valid, now);
        // A policy whose trust Keystone refuses acts with a new one from whoever
        // fixes it (made once, whatever the retries). Only disabling it needs none.
        if renewed.is_none()
            && current
                .error()
                .is_some_and(|e| matches!(e.code.as_str(), "trust_refused" | "trust_missing"))
        {
            match delegation::policy_trust(&state, &caller, &current.project_id).await {
                Ok(trust) => renewed = trust,
                Err(_) if !valid.enabled => {}
                Err(error) => return Err(error),
            }
        }
        let change = PolicyChange {
            expected_version: current.version,
            spec: &valid,
            next_run_at,
            updated_by: caller.user_id(),
            renewed_trust: renewed.as_ref(),
        };
        let updated = store::update_policy(&state.db, scope, current.id, &change, now)
            .await
            .map_err(conflict_on(NAME_TAKEN, || name_taken(&valid.name)))?;
        if let Some(policy) = updated {
            return policy_response(&state, StatusCode::OK, policy.into()).await;
        }
        // Another writer changed the policy between our read and write.
        if has_if_match(&headers) {
            let latest = load(&state, scope, &id).await?;
            return Err(ApiError::PreconditionFailed {
                current_etag: etag(latest.version),
            });
        }
    }
    Err(ApiError::Conflict(
        "the policy kept changing while this patch was applied; try again".into(),
    ))
}

/// Delete a policy.
///
/// Its pending jobs are cancelled and its runs not yet resolved are failed, in
/// the same transaction. Jobs already creating or tracking finish; what they make
/// follows `snapshots`: deleted as soon as it is recorded, or kept like the
/// policy's other snapshots (listed, no longer pruned, deleted one by one).
#[utoipa::path(
    delete,
    path = "/v1/policies/{id}",
    tag = "policies",
    params(("id" = Uuid, Path, description = "Policy id"), IfMatchHeader, DeletePolicyQuery),
    responses(
        (status = 204, description = "Deleted"),
        (status = 400, description = "If-Match is not a list of entity tags", body = Problem, content_type = "application/problem+json"),
        (status = 404, description = "No such policy", body = Problem, content_type = "application/problem+json"),
        (status = 412, description = "If-Match names another version", body = Problem, content_type = "application/problem+json",
         headers(("ETag" = String, description = "The current version"))),
        (status = 422, description = "Invalid query parameters", body = Problem, content_type = "application/problem+json")
    )
)]
pub async fn delete_policy(
    State(state): State<AppState>,
    caller: Caller,
    Path(id): Path<String>,
    headers: HeaderMap,
    AppQuery(query): AppQuery<DeletePolicyQuery>,
) -> Result<StatusCode> {
    let scope = caller.item_scope();
    // Only the version is read: a policy this build cannot decode can still be deleted.
    let id: Uuid = id.parse().map_err(|_| ApiError::NotFound("policy"))?;
    let version = store::fetch_policy_version(&state.db, scope, id)
        .await?
        .ok_or(ApiError::NotFound("policy"))?;
    check_if_match(&headers, version)?;
    let expected = has_if_match(&headers).then_some(version);
    let delete_snapshots = query.snapshots == Some(SnapshotsOnDelete::Delete);
    let now = state.clock.now();
    let actor = api_actor(caller.user_id());
    if store::delete_policy(&state.db, scope, id, expected, delete_snapshots, now, actor).await? {
        return Ok(StatusCode::NO_CONTENT);
    }
    match store::fetch_policy_version(&state.db, scope, id).await? {
        Some(latest) => Err(ApiError::PreconditionFailed {
            current_etag: etag(latest),
        }),
        None => Err(ApiError::NotFound("policy")),
    }
}

/// Loads a policy by the id in the path, broken or not; a malformed id (or one
/// of a project out of `scope`) is simply not found.
async fn load(state: &AppState, scope: Scope<'_>, id: &str) -> Result<StoredPolicy> {
    let id: Uuid = id.parse().map_err(|_| ApiError::NotFound("policy"))?;
    store::fetch_stored_policy(&state.db, scope, id, state.clock.now())
        .await?
        .ok_or(ApiError::NotFound("policy"))
}

/// Takes the project a new policy is made in (`project_id`) out of the body.
fn take_project_id(body: &mut Value) -> Result<Option<String>> {
    let Some(named) = body
        .as_object_mut()
        .and_then(|map| map.remove("project_id"))
    else {
        return Ok(None);
    };
    match named {
        Value::String(project) if is_project_id(&project) => Ok(Some(project)),
        _ => Err(ApiError::field("project_id", PROJECT_ID_RULE)),
    }
}

/// The answer to acting on a broken policy (running it, previewing its schedule).
pub(super) fn broken(error: PolicyError) -> ApiError {
    ApiError::Conflict(format!(
        "the policy is broken ({}): {}; fix it with a PATCH",
        error.code, error.message
    ))
}

/// Parses and validates a policy document, reporting `earlier` problems together with its own.
fn parse_policy(
    document: Value,
    earlier: Vec<FieldError>,
    now: DateTime<Utc>,
) -> Result<ValidPolicy> {
    if !document.is_object() {
        // Serde would read an array as a struct's fields in order; a policy is an object.
        return Err(ApiError::field("body", "a policy must be a JSON object"));
    }
    let parsed = from_value::<PolicySpec>(document)
        .and_then(|spec| spec.validate(now).map_err(ApiError::Unprocessable));
    match parsed {
        Ok(valid) if earlier.is_empty() => Ok(valid),
        Ok(_) => Err(ApiError::Unprocessable(earlier)),
        Err(ApiError::Unprocessable(more)) => Err(ApiError::Unprocessable(
            earlier.into_iter().chain(more).collect(),
        )),
        Err(other) => Err(other),
    }
}

/// The policy with its freshness and its `ETag`.
async fn policy_response(
    state: &AppState,
    status: StatusCode,
    policy: StoredPolicy,
) -> Result<Response> {
    respond(state, status, policy, None).await
}

/// The policy with its ETag and freshness: `cached` when already read with
/// it, else read (or computed) now.
async fn respond(
    state: &AppState,
    status: StatusCode,
    policy: StoredPolicy,
    cached: Option<Freshness>,
) -> Result<Response> {
    let tag = etag(policy.version);
    let found = match cached {
        Some(found) => found,
        None => freshness::fetch_freshness(
            &state.db,
            policy.project_id.as_str(),
            Some(&[policy.id]),
            state.clock.now(),
        )
        .await?
        .remove(&policy.id)
        .unwrap_or_default(),
    };
    let body = PolicyResponse::from(policy).with_freshness(found);
    Ok((status, [(header::ETAG, tag)], Json(body)).into_response())
}

fn name_taken(name: &str) -> String {
    format!("a policy named {name:?} already exists in this project")
}

/// Removes read-only fields from `body`, returning an error for each one that
/// does not repeat its current value (a client may send back what it read).
fn take_read_only_fields(body: &mut Value, current: Option<&Value>) -> Vec<FieldError> {
    let Value::Object(map) = body else {
        return Vec::new();
    };
    for derived in DERIVED_FIELDS {
        map.remove(derived);
    }
    READ_ONLY_FIELDS
        .iter()
        .filter_map(|field| {
            let sent = map.remove(*field)?;
            let unchanged = current.and_then(|c| c.get(field)) == Some(&sent);
            (!unchanged).then(|| FieldError::new(*field, "is read-only; the service sets it"))
        })
        .collect()
}

/// Keeps a pending fire time unless the change moves it: new schedules,
/// re-enabling or repairing a broken policy count from now, so the misses of a
/// disabled or broken spell are not caught up.
fn next_run_after_change(
    current: &StoredPolicy,
    updated: &ValidPolicy,
    now: DateTime<Utc>,
) -> Option<DateTime<Utc>> {
    let unchanged = updated.enabled
        && current.state() == PolicyState::Active
        && current
            .spec
            .as_ref()
            .is_ok_and(|spec| spec.schedules == updated.schedules)
        && current.next_run_at.is_some();
    if unchanged {
        current.next_run_at
    } else {
        updated.next_run_after(now)
    }
}
