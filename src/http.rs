//! The HTTP API: router, shared state, middleware and the OpenAPI document.

pub mod auth;
pub mod contract;
pub mod delegation;
pub mod docs;
pub mod error;
pub mod events;
pub mod extract;
pub mod health;
pub mod job_wait;
pub mod jobs;
pub mod managed;
pub mod merge_patch;
pub mod metrics;
pub mod orphans;
pub mod pagination;
pub mod policies;
pub mod preconditions;
pub mod restore;
pub mod runs;
pub mod snapshots;
pub mod status;
pub mod webhooks;

use std::{sync::Arc, time::Duration};

use axum::{
    Router,
    body::Body,
    extract::{DefaultBodyLimit, MatchedPath},
    http::{Request, Response, StatusCode},
    middleware,
};
use sqlx::PgPool;
use tower::ServiceBuilder;
use tower_http::{
    catch_panic::CatchPanicLayer,
    compression::CompressionLayer,
    request_id::{MakeRequestUuid, PropagateRequestIdLayer, RequestId, SetRequestIdLayer},
    trace::TraceLayer,
};
use tracing::Span;

use crate::clock::Clock;

pub use error::{ApiError, Problem};

/// Handler results.
pub type Result<T, E = ApiError> = std::result::Result<T, E>;

/// What every handler can reach.
#[derive(Clone, Debug)]
pub struct AppState {
    pub db: PgPool,
    pub clock: Arc<dyn Clock>,
    /// The cloud, for the endpoints that read it directly; `None` with `--no-engine`.
    pub cloud: Option<crate::openstack::OpenStack>,
    /// The engine's tasks, for readiness; `None` with `--no-engine`.
    pub engine: Option<crate::engine::EngineHealth>,
    /// Largest request body accepted, in bytes.
    pub body_limit: usize,
    /// Cancelled when the server shuts down: long waits answer at once.
    pub shutdown: tokio_util::sync::CancellationToken,
    /// Cinder snapshots younger than this are never taken for orphans.
    pub orphan_grace: chrono::TimeDelta,
    /// How often a waiting request reads its job when nothing wakes it.
    pub wait_poll_interval: Duration,
    /// Wakes waiting requests when their job ends (shared with this replica's engine).
    pub job_events: crate::engine::JobEvents,
    /// Who is calling: Keystone tokens, or nobody (`--auth none`).
    pub auth: auth::Authenticator,
    /// Refuse webhook URLs naming a loopback, private, link-local or unique-local address.
    pub webhook_deny_private: bool,
    /// What `/metrics` reads.
    pub metrics: metrics::MetricsSource,
}

/// The complete application router with its middleware; with `serve_metrics`,
/// `/metrics` too (false when `--metrics-listen` serves it on its own listener).
pub fn router(state: AppState, request_timeout: Duration, serve_metrics: bool) -> Router {
    let body_limit = state.body_limit;
    let (api, openapi) = docs::api();
    let mut app = api.merge(docs::docs_router(openapi));
    if serve_metrics {
        app = app.route("/metrics", axum::routing::get(metrics::get_metrics));
    }
    app.fallback(|| async { ApiError::NotFound("resource") })
        .layer(DefaultBodyLimit::max(body_limit))
        .layer(middleware::from_fn_with_state(
            state.clone(),
            auth::authenticate,
        ))
        .with_state(state)
        .layer(
            ServiceBuilder::new()
                // Outermost: counts every answer, timeouts and panics included.
                .layer(middleware::from_fn(metrics::record_request))
                .layer(SetRequestIdLayer::x_request_id(MakeRequestUuid))
                .layer(
                    TraceLayer::new_for_http()
                        .make_span_with(make_span)
                        .on_request(())
                        .on_response(on_response)
                        .on_failure(()),
                )
                .layer(PropagateRequestIdLayer::x_request_id())
                .layer(CompressionLayer::new())
                .layer(middleware::from_fn(error::problem_for_bare_errors))
                .layer(CatchPanicLayer::custom(on_panic))
                .layer(middleware::from_fn(
                    move |request: Request<Body>, next: middleware::Next| {
                        time_limit(request, next, request_timeout)
                    },
                )),
        )
}

/// Stops a request that takes longer than its budget: the request timeout, plus
/// the wait a request asked for with `?wait=` (`POST /v1/snapshots`, `GET /v1/jobs/{id}`).
async fn time_limit(
    request: Request<Body>,
    next: middleware::Next,
    base: Duration,
) -> axum::response::Response {
    use axum::response::IntoResponse as _;
    let budget = job_wait::request_budget(
        request.method(),
        request.uri().path(),
        request.uri().query(),
        base,
    );
    match tokio::time::timeout(budget, next.run(request)).await {
        Ok(response) => response,
        Err(_) => Problem::new(
            StatusCode::SERVICE_UNAVAILABLE,
            format!(
                "the request took longer than {}s and was stopped",
                budget.as_secs()
            ),
        )
        .into_response(),
    }
}

fn make_span(request: &Request<Body>) -> Span {
    let route = request.extensions().get::<MatchedPath>().map_or_else(
        || request.uri().path().to_owned(),
        |p| p.as_str().to_owned(),
    );
    let request_id = request
        .extensions()
        .get::<RequestId>()
        .and_then(|id| id.header_value().to_str().ok())
        .unwrap_or("-")
        .to_owned();
    tracing::info_span!(
        "request",
        method = %request.method(),
        route,
        request_id,
        project_id = tracing::field::Empty,
        user_id = tracing::field::Empty,
        status = tracing::field::Empty,
        latency_ms = tracing::field::Empty,
    )
}

fn on_response<B>(response: &Response<B>, latency: Duration, span: &Span) {
    span.record("status", response.status().as_u16());
    span.record("latency_ms", latency.as_secs_f64() * 1000.0);
    tracing::info!("request finished");
}

fn on_panic(_: Box<dyn std::any::Any + Send + 'static>) -> Response<Body> {
    tracing::error!("handler panicked");
    use axum::response::IntoResponse as _;
    Problem::new(
        StatusCode::INTERNAL_SERVER_ERROR,
        "an internal error occurred",
    )
    .into_response()
}
