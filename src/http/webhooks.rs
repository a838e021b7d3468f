//! `/v1/webhooks`: subscriptions that POST each event of their project, signed,
//! to a URL of the caller's, and the record of recent attempts. The dispatcher
//! that delivers them is `engine::webhooks`.

use axum::{
    Json,
    extract::{Path, State},
    http::{StatusCode, header},
    response::{IntoResponse, Response},
};
use chrono::{DateTime, Utc};
use secrecy::{ExposeSecret as _, SecretString};
use serde::{Deserialize, Serialize};
use utoipa::{IntoParams, ToSchema};
use utoipa_axum::{router::OpenApiRouter, routes};
use uuid::Uuid;

use super::{
    ApiError, AppState, Problem, Result,
    extract::{AppQuery, Caller, JsonDocument, from_value},
    pagination::{List, fetch_page},
};
use crate::{
    domain::webhook,
    store::{
        events,
        webhooks::{self, Delivery, DeliveryOutcome, NewWebhook, Webhook},
    },
};

/// A new subscription.
#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
#[schema(example = json!({
    "url": "https://hooks.example.com/stacksnap", "events": ["job.failed", "run."],
    "secret": "a long random string"
}))]
pub struct CreateWebhook {
    /// Where to POST each event: an `http` or `https` URL. Keep it away from internal
    /// addresses (the operator may refuse them with `--webhook-deny-private`).
    #[schema(example = "https://hooks.example.com/stacksnap")]
    pub url: String,
    /// Kinds (`job.failed`) and prefixes of kinds (`job.`, `run.`, `policy.`, `snapshot.`).
    #[schema(min_items = 1)]
    pub events: Vec<String>,
    /// The key of the `Stacksnap-Signature` HMAC, at least 8 characters. Never shown again.
    #[schema(value_type = String, min_length = 8, write_only)]
    pub secret: SecretString,
    /// The project to subscribe to: the token's by default (another one needs the admin role).
    pub project_id: Option<String>,
}

/// A subscription (its secret is never shown).
#[derive(Debug, Serialize, ToSchema)]
#[schema(as = Webhook, example = json!({
    "id": "019ad0c4-5a1e-7d2a-9f3b-2a4c5d6e7f80", "project_id": "8d3c1f0b2a4e4b6c9d7e5f1a2b3c4d5e",
    "url": "https://hooks.example.com/stacksnap", "events": ["job.failed", "run."],
    "created_at": "2026-12-01T06:40:00Z"
}))]
pub struct WebhookResponse {
    pub id: Uuid,
    pub project_id: String,
    pub url: String,
    pub events: Vec<String>,
    pub created_at: DateTime<Utc>,
}

impl From<Webhook> for WebhookResponse {
    fn from(w: Webhook) -> Self {
        Self {
            id: w.webhook_id,
            project_id: w.project_id,
            url: w.url,
            events: w.events,
            created_at: w.created_at,
        }
    }
}

/// One page of subscriptions, newest first.
#[derive(Debug, Serialize, ToSchema)]
#[schema(example = json!({"items": [], "next_cursor": null}))]
pub struct WebhookList {
    pub items: Vec<WebhookResponse>,
    /// Pass as `cursor` to get the next page; `null` on the last page.
    #[schema(pattern = "^Y3cC[A-Za-z0-9_-]{32}$")]
    pub next_cursor: Option<String>,
}

/// Paging for `GET /v1/webhooks`.
#[derive(Debug, Deserialize, IntoParams)]
#[serde(deny_unknown_fields)]
#[into_params(parameter_in = Query)]
pub struct ListWebhooksQuery {
    /// Every project's subscriptions, not only the token's project's (admin only; default `false`).
    pub all_projects: Option<bool>,
    /// Page size, 1 to 1000 (default 100).
    #[param(minimum = 1, maximum = 1000, example = 100)]
    pub limit: Option<u32>,
    /// The `next_cursor` of the previous page.
    #[param(pattern = "^Y3cC[A-Za-z0-9_-]{32}$")]
    pub cursor: Option<String>,
}

/// One attempt to deliver an event.
#[derive(Debug, Serialize, ToSchema)]
#[schema(as = WebhookDelivery, example = json!({
    "event_id": "6f0c2a7e-1b5d-4c3e-9a8f-2d1e0c9b8a7f", "kind": "job.failed", "attempt": 2,
    "status_code": 503, "error": null, "outcome": "failed", "at": "2026-12-01T06:41:10.118Z"
}))]
pub struct DeliveryResponse {
    pub event_id: Uuid,
    pub kind: String,
    /// 1 for the first attempt at this event.
    pub attempt: i32,
    /// The receiver's status; `null` when no answer came (see `error`).
    pub status_code: Option<i32>,
    /// Why no answer came: a timeout, a refused connection, a refused address.
    pub error: Option<String>,
    pub outcome: DeliveryOutcome,
    pub at: DateTime<Utc>,
}

impl From<Delivery> for DeliveryResponse {
    fn from(d: Delivery) -> Self {
        Self {
            event_id: d.event_id,
            kind: d.kind,
            attempt: d.attempt,
            status_code: d.status_code,
            error: d.error,
            outcome: d.outcome,
            at: d.at,
        }
    }
}

/// The most recent delivery attempts, newest first.
#[derive(Debug, Serialize, ToSchema)]
#[schema(example = json!({"items": []}))]
pub struct DeliveryList {
    pub items: Vec<DeliveryResponse>,
}

/// How many recent attempts to show.
#[derive(Debug, Deserialize, IntoParams)]
#[serde(deny_unknown_fields)]
#[into_params(parameter_in = Query)]
pub struct ListDeliveriesQuery {
    /// At most this many, 1 to 100 (default 100; only the last 100 are kept).
    #[param(minimum = 1, maximum = 100, example = 20)]
    pub limit: Option<u32>,
}

/// The routes of `/v1/webhooks`, with their OpenAPI operations.
pub fn router() -> OpenApiRouter<AppState> {
    OpenApiRouter::new()
        .routes(routes!(create_webhook, list_webhooks))
        .routes(routes!(get_webhook, delete_webhook))
        .routes(routes!(list_deliveries))
}

/// Subscribe a URL to the project's events.
///
/// Each event of a wanted kind made after now is POSTed to `url` as JSON (the
/// representation of `GET /v1/events`), in order, at least once, with the headers
/// `Stacksnap-Event-Id`, `Stacksnap-Event-Kind` and
/// `Stacksnap-Signature: t=<unix seconds>,v1=<hex HMAC-SHA256 with the secret over "<t>.<body>">`.
/// A receiver answers 2xx to take it; anything else is retried with exponential
/// backoff for a day, then the event is given up (recorded in the deliveries).
#[utoipa::path(
    post,
    path = "/v1/webhooks",
    tag = "webhooks",
    request_body = CreateWebhook,
    responses(
        (status = 201, description = "The subscription", body = WebhookResponse,
         headers(("Location" = String, description = "The subscription's URL"))),
        (status = 400, description = "The body is not JSON", body = Problem, content_type = "application/problem+json"),
        (status = 403, description = "project_id names another project", body = Problem, content_type = "application/problem+json"),
        (status = 413, description = "The body is over the limit", body = Problem, content_type = "application/problem+json"),
        (status = 415, description = "The body is not application/json", body = Problem, content_type = "application/problem+json"),
        (status = 422, description = "Invalid fields", body = Problem, content_type = "application/problem+json")
    )
)]
pub async fn create_webhook(
    State(state): State<AppState>,
    caller: Caller,
    JsonDocument(body): JsonDocument,
) -> Result<Response> {
    let request: CreateWebhook = from_value(body)?;
    let project = caller.target_project(request.project_id)?;
    let mut errors = Vec::new();
    let url = webhook::parse_url(&request.url, state.webhook_deny_private)
        .map_err(|e| errors.push(e))
        .ok();
    let _ = webhook::check_secret(request.secret.expose_secret()).map_err(|e| errors.push(e));
    let _ = webhook::parse_kinds(&request.events).map_err(|e| errors.extend(e));
    let Some(url) = url.filter(|_| errors.is_empty()) else {
        return Err(ApiError::Unprocessable(errors));
    };
    let start = events::horizon(&state.db).await?;
    let created = webhooks::insert_webhook(
        &state.db,
        &NewWebhook {
            project_id: &project,
            url: url.as_str(),
            events: &request.events,
            secret: request.secret.expose_secret(),
            created_by: caller.user_id(),
            start,
        },
    )
    .await?;
    tracing::info!(webhook_id = %created.webhook_id, project_id = %created.project_id, "webhook created");
    let location = format!("/v1/webhooks/{}", created.webhook_id);
    let mut response = (StatusCode::CREATED, Json(WebhookResponse::from(created))).into_response();
    response.headers_mut().insert(
        header::LOCATION,
        location.parse().expect("a path is a valid header"),
    );
    Ok(response)
}

/// List subscriptions, newest first.
#[utoipa::path(
    get,
    path = "/v1/webhooks",
    tag = "webhooks",
    params(ListWebhooksQuery),
    responses(
        (status = 200, description = "One page of subscriptions", body = WebhookList),
        (status = 403, description = "all_projects without the admin role", body = Problem, content_type = "application/problem+json"),
        (status = 422, description = "Invalid query parameters", body = Problem, content_type = "application/problem+json")
    )
)]
pub async fn list_webhooks(
    State(state): State<AppState>,
    caller: Caller,
    AppQuery(query): AppQuery<ListWebhooksQuery>,
) -> Result<Json<WebhookList>> {
    let scope = caller.list_scope(query.all_projects)?;
    let page = fetch_page(
        List::Webhooks,
        scope,
        query.limit,
        query.cursor.as_deref(),
        |before, n| webhooks::list_webhooks(&state.db, scope, before, n),
        |w| w.webhook_id,
    )
    .await?
    .map(WebhookResponse::from);
    Ok(Json(WebhookList {
        items: page.items,
        next_cursor: page.next_cursor,
    }))
}

/// Read a subscription.
#[utoipa::path(
    get,
    path = "/v1/webhooks/{id}",
    tag = "webhooks",
    params(("id" = Uuid, Path, description = "Subscription id")),
    responses(
        (status = 200, description = "The subscription", body = WebhookResponse),
        (status = 404, description = "No such subscription", body = Problem, content_type = "application/problem+json")
    )
)]
pub async fn get_webhook(
    State(state): State<AppState>,
    caller: Caller,
    Path(id): Path<String>,
) -> Result<Json<WebhookResponse>> {
    let webhook = find(&state, &caller, &id).await?;
    Ok(Json(WebhookResponse::from(webhook)))
}

/// Delete a subscription: nothing more is delivered to it.
#[utoipa::path(
    delete,
    path = "/v1/webhooks/{id}",
    tag = "webhooks",
    params(("id" = Uuid, Path, description = "Subscription id")),
    responses(
        (status = 204, description = "Deleted"),
        (status = 404, description = "No such subscription", body = Problem, content_type = "application/problem+json")
    )
)]
pub async fn delete_webhook(
    State(state): State<AppState>,
    caller: Caller,
    Path(id): Path<String>,
) -> Result<StatusCode> {
    let id: Uuid = id.parse().map_err(|_| ApiError::NotFound("webhook"))?;
    if webhooks::delete_webhook(&state.db, caller.item_scope(), id).await? {
        tracing::info!(webhook_id = %id, "webhook deleted");
        Ok(StatusCode::NO_CONTENT)
    } else {
        Err(ApiError::NotFound("webhook"))
    }
}

/// List a subscription's most recent delivery attempts, newest first.
#[utoipa::path(
    get,
    path = "/v1/webhooks/{id}/deliveries",
    tag = "webhooks",
    params(("id" = Uuid, Path, description = "Subscription id"), ListDeliveriesQuery),
    responses(
        (status = 200, description = "Recent attempts", body = DeliveryList),
        (status = 404, description = "No such subscription", body = Problem, content_type = "application/problem+json"),
        (status = 422, description = "Invalid query parameters", body = Problem, content_type = "application/problem+json")
    )
)]
pub async fn list_deliveries(
    State(state): State<AppState>,
    caller: Caller,
    Path(id): Path<String>,
    AppQuery(query): AppQuery<ListDeliveriesQuery>,
) -> Result<Json<DeliveryList>> {
    let limit = match query.limit.unwrap_or(100) {
        n @ 1..=100 => i64::from(n),
        n => {
            return Err(ApiError::Unprocessable(vec![
                crate::domain::validation::FieldError::new(
                    "limit",
                    format!("must be between 1 and 100, found {n}"),
                ),
            ]));
        }
    };
    let webhook = find(&state, &caller, &id).await?;
    let items = webhooks::list_deliveries(&state.db, webhook.webhook_id, limit)
        .await?
        .into_iter()
        .map(DeliveryResponse::from)
        .collect();
    Ok(Json(DeliveryList { items }))
}

/// The subscription `id` names in the caller's reach, or 404.
async fn find(state: &AppState, caller: &Caller, id: &str) -> Result<Webhook> {
    let id: Uuid = id.parse().map_err(|_| ApiError::NotFound("webhook"))?;
    webhooks::fetch_webhook(&state.db, caller.item_scope(), id)
        .await?
        .ok_or(ApiError::NotFound("webhook"))
}
