//! Liveness and readiness probes. Readiness covers the database and, when this
//! replica runs the engine, the engine's tasks.

use std::time::Duration;

use axum::{Json, extract::State};
use serde::Serialize;
use utoipa::ToSchema;
use utoipa_axum::{router::OpenApiRouter, routes};

use super::{ApiError, AppState, Problem, Result};
use crate::{config::AuthMode, store};

/// A probe's answer.
#[derive(Debug, Serialize, ToSchema)]
#[schema(example = json!({"status": "ready", "warning": "authentication is off (--auth none): every request acts as an admin of project default"}))]
pub struct Health {
    /// `ok` for liveness, `ready` for readiness.
    pub status: &'static str,
    /// Set when the service runs in a mode unfit for production (`--auth none`).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub warning: Option<&'static str>,
}

/// What `/readyz` says, and the start-up log warns, when authentication is off.
pub const AUTH_OFF_WARNING: &str =
    "authentication is off (--auth none): every request acts as an admin of project default";

/// The routes of the probes, with their OpenAPI operations.
pub fn router() -> OpenApiRouter<AppState> {
    OpenApiRouter::new()
        .routes(routes!(healthz))
        .routes(routes!(readyz))
}

/// The process is alive.
#[utoipa::path(
    get,
    path = "/healthz",
    tag = "health",
    responses((status = 200, description = "The process is alive", body = Health))
)]
pub async fn healthz() -> Json<Health> {
    Json(Health {
        status: "ok",
        warning: None,
    })
}

/// The database answers, every migration is applied, and every engine task is up.
#[utoipa::path(
    get,
    path = "/readyz",
    tag = "health",
    responses(
        (status = 200, description = "Ready to serve", body = Health),
        (status = 503, description = "The database is unreachable, migrations are pending, \
         or an engine task is down (between its failure and its restart; the detail names it)",
         body = Problem, content_type = "application/problem+json")
    )
)]
pub async fn readyz(State(state): State<AppState>) -> Result<Json<Health>> {
    // With `--no-engine` there is no engine to wait for.
    if let Some(engine) = &state.engine {
        let down = engine.down();
        if !down.is_empty() {
            let names: Vec<String> = down.iter().map(ToString::to_string).collect();
            return Err(ApiError::Unavailable(format!(
                "engine tasks are down, waiting to be restarted: {}",
                names.join(", ")
            )));
        }
    }
    let check =
        tokio::time::timeout(Duration::from_secs(3), store::migrations_applied(&state.db)).await;
    match check {
        Ok(Ok(true)) => Ok(Json(Health {
            status: "ready",
            warning: (state.auth.mode() == AuthMode::None).then_some(AUTH_OFF_WARNING),
        })),
        Ok(Ok(false)) => Err(ApiError::Unavailable(
            "database migrations are pending".into(),
        )),
        Ok(Err(e)) => {
            tracing::warn!(error = %e, "readiness check failed");
            Err(ApiError::Unavailable("the database is unreachable".into()))
        }
        Err(_) => Err(ApiError::Unavailable(
            "the database did not answer within 3s".into(),
        )),
    }
}
