//! `GET /metrics` (Prometheus text format, no token) and the middleware that
//! counts every HTTP request by its route template. The process metrics come
//! from this replica's recorder; the database-derived ones are read at scrape
//! time ([`exposition`]), so every replica shows the same values for those.
//!
//! `/metrics` carries policy ids: with `--metrics-listen` it is served on its own
//! listener (and not on the API's), which operators keep off the public network.

pub mod exposition;

use std::time::Instant;

use axum::{
    Router,
    body::Body,
    extract::{FromRef, MatchedPath, Request, State},
    http::header,
    middleware::Next,
    response::{IntoResponse, Response},
    routing::get,
};
use sqlx::PgPool;

use super::AppState;
use crate::{store, telemetry::metrics};

/// The media type of the Prometheus text format.
pub const CONTENT_TYPE: &str = "text/plain; version=0.0.4; charset=utf-8";

/// What a scrape reads: the database, and every pool of this replica.
#[derive(Clone, Debug)]
pub struct MetricsSource {
    /// Where the database-derived metrics are read (the API's pool).
    pub db: PgPool,
    /// The pools whose connections `stacksnap_db_pool_connections` counts.
    pub pools: Vec<PgPool>,
}

impl FromRef<AppState> for MetricsSource {
    fn from_ref(state: &AppState) -> Self {
        state.metrics.clone()
    }
}

/// `/metrics` alone, for its own listener (`--metrics-listen`).
pub fn router(source: MetricsSource) -> Router {
    Router::new()
        .route("/metrics", get(get_metrics))
        .with_state(source)
        // A page of 10,000 policies is about 1 MB; Prometheus asks for gzip.
        .layer(tower_http::compression::CompressionLayer::new())
}

/// Renders this replica's process metrics and the database-derived ones.
pub async fn get_metrics(State(source): State<MetricsSource>) -> Response {
    let (idle, size) = source.pools.iter().fold((0, 0), |(idle, size), pool| {
        (idle + pool.num_idle(), size + pool.size() as usize)
    });
    metrics::db_pool_connections(idle, size.saturating_sub(idle));
    let mut body = metrics::install().render();
    match store::metrics::fetch_database_metrics(&source.db).await {
        Ok(stored) => exposition::render_database(&stored, &mut body),
        // The process metrics are still worth a scrape while the database is away.
        Err(error) => tracing::warn!(error = %error,
            "/metrics: the database-derived metrics cannot be read; served without them"),
    }
    ([(header::CONTENT_TYPE, CONTENT_TYPE)], body).into_response()
}

/// Counts a request under its route template (never its raw path) once answered.
pub async fn record_request(request: Request<Body>, next: Next) -> Response {
    let method = request.method().as_str().to_owned();
    let route = request
        .extensions()
        .get::<MatchedPath>()
        .map_or(metrics::UNMATCHED_ROUTE, MatchedPath::as_str)
        .to_owned();
    let started = Instant::now();
    let response = next.run(request).await;
    metrics::http_request(
        &method,
        &route,
        response.status().as_u16(),
        started.elapsed(),
    );
    response
}
