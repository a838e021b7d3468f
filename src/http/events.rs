//! `/v1/events`: every change of state of a policy, run, job and snapshot, oldest
//! first, in an order a reader paging by cursor can trust (see `store::events`:
//! an event that commits late is never skipped).

use axum::{Json, extract::State};
use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};
use serde_json::Value;
use utoipa::{IntoParams, ToSchema};
use utoipa_axum::{router::OpenApiRouter, routes};
use uuid::Uuid;

use super::{
    ApiError, AppState, Problem, Result,
    extract::{AppQuery, Caller},
    pagination::{List, decode_cursor, encode_cursor, fetch_page},
};
use crate::{
    domain::event::{EventKind, KindFilter},
    store::events::{self, Event, EventFilter, Position},
};

/// One change of state.
#[derive(Debug, Serialize, ToSchema)]
#[schema(as = Event, example = json!({
    "id": "6f0c2a7e-1b5d-4c3e-9a8f-2d1e0c9b8a7f", "kind": "job.failed", "at": "2026-11-26T01:02:13.402Z",
    "project_id": "8d3c1f0b2a4e4b6c9d7e5f1a2b3c4d5e",
    "policy_id": "019ab8f0-6c1e-7d2a-9f3b-2a4c5d6e7f80", "run_id": "019ab9a1-0c1e-7d2a-9f3b-2a4c5d6e7f80",
    "job_id": "019ab9a1-2f00-7c1e-8d2a-1b2c3d4e5f60", "snapshot_id": null, "actor": "engine",
    "data": {"resource_type": "server", "resource_id": "4f1d6a52-0b52-4a8e-9c43-1d0c8e3f2a10",
             "resource_name": "web-1",
             "error": {"code": "snapshot_error", "message": "the image went to killed"}}
}))]
pub struct EventResponse {
    pub id: Uuid,
    pub kind: EventKind,
    /// When the change was made (its transaction's time).
    pub at: DateTime<Utc>,
    pub project_id: String,
    pub policy_id: Option<Uuid>,
    pub run_id: Option<Uuid>,
    pub job_id: Option<Uuid>,
    pub snapshot_id: Option<Uuid>,
    /// Who made the change: a Keystone user id; `scheduler` or `engine` for the
    /// service's own transitions; `api` for a request with no known user (`--auth none`).
    pub actor: String,
    /// What the change concerns, by kind: names, resource ids, and for a failure `error`
    /// (`{code, message}`).
    #[schema(value_type = Object)]
    pub data: Value,
}

impl From<Event> for EventResponse {
    fn from(event: Event) -> Self {
        Self {
            id: event.event_id,
            kind: event.kind,
            at: event.at,
            project_id: event.project_id,
            policy_id: event.policy_id,
            run_id: event.run_id,
            job_id: event.job_id,
            snapshot_id: event.snapshot_id,
            actor: event.actor,
            data: event.data.0,
        }
    }
}

/// One page of events, oldest first.
#[derive(Debug, Serialize, ToSchema)]
#[schema(example = json!({"items": [], "next_cursor": "Y2UCAAAAAAAA2BsAAAAAAAAAB4Y0EjBUu3lq"}))]
pub struct EventList {
    pub items: Vec<EventResponse>,
    /// Pass as `cursor` to get the events after this page. Unlike other lists it is
    /// set on the last page too (`null` only while there has been no event at all):
    /// poll with it later for newer events. A page shorter than `limit` (or empty)
    /// is the end of what is readable now, and its cursor stands after every event
    /// read so far, matching the filters or not.
    #[schema(pattern = "^Y2UC[A-Za-z0-9_-]{32}$")]
    pub next_cursor: Option<String>,
}

/// Filters and paging for `GET /v1/events`.
#[derive(Debug, Deserialize, IntoParams)]
#[serde(deny_unknown_fields)]
#[into_params(parameter_in = Query)]
pub struct ListEventsQuery {
    /// Every project's events, not only the token's project's (admin only; default `false`).
    pub all_projects: Option<bool>,
    /// One kind (`job.failed`) or every kind with a prefix (`job.`, `run.`, `policy.`, `snapshot.`).
    #[param(
        pattern = r"^(policy\.(created|updated|deleted|broken)?|run\.(fired|missed|succeeded|partially_failed|failed)?|job\.(started|succeeded|failed|timed_out|cancelled)?|snapshot\.(created|deleted|delete_failed|delete_blocked|verified|verify_failed)?)$",
        example = "job."
    )]
    pub kind: Option<String>,
    pub policy_id: Option<Uuid>,
    pub job_id: Option<Uuid>,
    /// Only events at or after this time (RFC 3339).
    #[param(example = "2026-11-26T00:00:00Z")]
    pub since: Option<DateTime<Utc>>,
    /// Page size, 1 to 1000 (default 100).
    #[param(minimum = 1, maximum = 1000, example = 100)]
    pub limit: Option<u32>,
    /// The `next_cursor` of the previous page.
    #[param(pattern = "^Y2UC[A-Za-z0-9_-]{32}$")]
    pub cursor: Option<String>,
}

/// The routes of `/v1/events`, with their OpenAPI operations.
pub fn router() -> OpenApiRouter<AppState> {
    OpenApiRouter::new().routes(routes!(list_events))
}

/// List events, oldest first: every change of state of a policy, run, job and snapshot.
///
/// An event is listed once it has committed, in the order events were
/// committed: one that commits late comes after every position already paged
/// past, so a cursor can be kept and polled without missing anything.
#[utoipa::path(
    get,
    path = "/v1/events",
    tag = "events",
    params(ListEventsQuery),
    responses(
        (status = 200, description = "One page of events", body = EventList),
        (status = 422, description = "Invalid query parameters", body = Problem, content_type = "application/problem+json")
    )
)]
pub async fn list_events(
    State(state): State<AppState>,
    caller: Caller,
    AppQuery(query): AppQuery<ListEventsQuery>,
) -> Result<Json<EventList>> {
    let scope = caller.list_scope(query.all_projects)?;
    let kind = query
        .kind
        .as_deref()
        .map(|k| KindFilter::parse("kind", k))
        .transpose()
        .map_err(|e| ApiError::Unprocessable(vec![e]))?;
    let filter = EventFilter {
        kind,
        policy_id: query.policy_id,
        job_id: query.job_id,
        since: query.since,
    };
    // Read before the page, so every position up to it is readable by the
    // page's query: a page that ends the feed read all of them.
    let head = events::horizon(&state.db).await?;
    let page = fetch_page(
        List::Events,
        scope,
        query.limit,
        query.cursor.as_deref(),
        |after, n| {
            let after = after.map(Position::from_uuid);
            events::list_events(&state.db, scope, &filter, after, n)
        },
        |e| e.position().to_uuid(),
    )
    .await?;
    // The feed has no last page: the end of what is readable now is where to
    // poll again from. That is the head read above, not the last item listed,
    // so that a filter matching little does not scan the same events again on
    // every poll (and an empty page moves its reader on too).
    let next_cursor = match page.next_cursor {
        Some(cursor) => Some(cursor),
        None => {
            let after = query
                .cursor
                .as_deref()
                .and_then(|c| decode_cursor(List::Events, scope, c).ok())
                .map(Position::from_uuid)
                .unwrap_or_default();
            let last = page.items.last().map(Event::position).unwrap_or_default();
            let end = after.max(last).max(head);
            (end > Position::default()).then(|| encode_cursor(List::Events, scope, end.to_uuid()))
        }
    };
    Ok(Json(EventList {
        items: page.items.into_iter().map(EventResponse::from).collect(),
        next_cursor,
    }))
}
