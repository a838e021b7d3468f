//! `GET /v1/policies/{id}/schedule`: the next fire times of a policy.

use axum::{
    Json,
    extract::{Path, State},
};

use super::{
    broken,
    dto::{FireTimeResponse, ScheduleQuery, ScheduleResponse},
    load,
};
use crate::http::{
    ApiError, AppState, Problem, Result,
    extract::{AppQuery, Caller},
};

/// The next fire times of a policy, in UTC and in each schedule's local time.
#[utoipa::path(
    get,
    path = "/v1/policies/{id}/schedule",
    tag = "policies",
    params(("id" = Uuid, Path, description = "Policy id"), ScheduleQuery),
    responses(
        (status = 200, description = "Upcoming fire times", body = ScheduleResponse),
        (status = 404, description = "No such policy", body = Problem, content_type = "application/problem+json"),
        (status = 409, description = "The policy is broken", body = Problem, content_type = "application/problem+json"),
        (status = 422, description = "Invalid query parameters", body = Problem, content_type = "application/problem+json")
    )
)]
pub async fn get_policy_schedule(
    State(state): State<AppState>,
    caller: Caller,
    Path(id): Path<String>,
    AppQuery(query): AppQuery<ScheduleQuery>,
) -> Result<Json<ScheduleResponse>> {
    let count = query.count.unwrap_or(10);
    if !(1..=100).contains(&count) {
        return Err(ApiError::field(
            "count",
            format!("must be between 1 and 100, found {count}"),
        ));
    }
    let policy = load(&state, caller.item_scope(), &id)
        .await?
        .into_policy()
        .map_err(broken)?;
    let from = query
        .from
        .unwrap_or_else(|| state.clock.now().fixed_offset());
    let schedules = &policy.spec.schedules;
    let items = schedules
        .upcoming(from.to_utc(), count as usize)
        .into_iter()
        .map(|fire| FireTimeResponse::new(fire, &schedules.schedules()[fire.schedule]))
        .collect();
    Ok(Json(ScheduleResponse {
        policy_id: policy.id,
        enabled: policy.spec.enabled,
        from,
        items,
    }))
}
