//! The OpenAPI document (generated from the handlers) and the offline docs page.

pub mod security;

use axum::Router;
use utoipa::OpenApi;
use utoipa_axum::router::OpenApiRouter;
use utoipa_swagger_ui::SwaggerUi;

use super::{
    AppState, events, health, jobs, managed, orphans, policies, restore, runs, snapshots, status,
    webhooks,
};

#[derive(OpenApi)]
#[openapi(
    info(
        title = "stacksnap",
        description = "Scheduled, retention-managed snapshots of OpenStack servers and volumes.\n\n\
            Errors are `application/problem+json` (RFC 9457); validation errors (422) list every \
            invalid field with its path. Lists are paginated with `limit` and an opaque `cursor`.\n\n\
            Every request under `/v1/` carries a Keystone token in `X-Auth-Token` and acts in the \
            token's project with its roles: `reader` reads, `member` also writes, `admin` may act \
            on any project. Another project's resources are not found (404).",
        license(name = "Apache-2.0", identifier = "Apache-2.0")
    ),
    tags(
        (name = "policies", description = "Snapshot policies: what to snapshot, when, and how long to keep it."),
        (name = "runs", description = "Firings of policies: scheduled, manual, and one-off."),
        (name = "jobs", description = "One resource's snapshot, followed until it is really finished."),
        (name = "snapshots", description = "Managed snapshots and retention; one-off snapshots, e.g. before a deploy."),
        (name = "status", description = "A summary of policies, failures and misses, from the database."),
        (name = "events", description = "Every change of state of a policy, run, job and snapshot, oldest first."),
        (name = "webhooks", description = "Subscriptions that POST each event, signed, to a URL."),
        (name = "health", description = "Liveness and readiness probes.")
    )
)]
struct ApiDoc;

/// Every documented route, with its OpenAPI operations: each resource's own router.
pub fn api_router() -> OpenApiRouter<AppState> {
    OpenApiRouter::with_openapi(ApiDoc::openapi())
        .merge(policies::router())
        .merge(runs::router())
        .merge(jobs::router())
        .merge(snapshots::router())
        .merge(managed::router())
        .merge(restore::router())
        .merge(orphans::router())
        .merge(status::router())
        .merge(events::router())
        .merge(webhooks::router())
        .merge(health::router())
}

/// The API's routes and its OpenAPI document, with the request schemas tightened
/// to what the service accepts.
pub fn api() -> (Router<AppState>, utoipa::openapi::OpenApi) {
    let (router, mut openapi) = api_router().split_for_parts();
    super::contract::constrain(&mut openapi);
    security::declare(&mut openapi);
    (router, openapi)
}

/// `/openapi.json` and the Swagger UI at `/docs`, with its assets inside the binary.
pub fn docs_router(openapi: utoipa::openapi::OpenApi) -> Router<AppState> {
    SwaggerUi::new("/docs").url("/openapi.json", openapi).into()
}

/// The OpenAPI document as pretty JSON, as `stacksnap openapi` prints it and `openapi/openapi.json` holds it.
pub fn openapi_json() -> String {
    let (_, openapi) = api();
    let mut json = openapi
        .to_pretty_json()
        .expect("the OpenAPI document serialises");
    json.push('\n');
    json
}
