//! Waiting for a job to end within a request (`?wait=` on `POST /v1/snapshots`
//! and `GET /v1/jobs/{id}`): a long poll, woken by the engine, not a tight loop.

use std::time::Duration;

use serde::Deserialize;
use utoipa::IntoParams;
use uuid::Uuid;

use super::{ApiError, AppState, Result};
use crate::{
    domain::adhoc::parse_wait,
    engine::JobWatch,
    store::{
        Scope,
        jobs::{self, Job},
    },
};

/// `?wait=`: answer when the job ends or after this long.
#[derive(Debug, Deserialize, IntoParams)]
#[serde(deny_unknown_fields)]
#[into_params(parameter_in = Query)]
pub struct WaitQuery {
    /// Answer when the job ends or after this long (at most `1h`), e.g. `10m`.
    #[param(
        example = "10m",
        pattern = r"^[\u0009-\u000d\u0085 \u00a0\u1680\u2000-\u200a\u2028\u2029\u202f\u205f\u3000]*(?:0+[smhdw])*0*[1-9][0-9]*[smhdw](?:[0-9]+[smhdw])*[\u0009-\u000d\u0085 \u00a0\u1680\u2000-\u200a\u2028\u2029\u202f\u205f\u3000]*$"
    )]
    pub wait: Option<String>,
}

impl WaitQuery {
    /// The wait asked for, checked.
    ///
    /// # Errors
    /// A 422 naming `wait`.
    pub fn duration(&self) -> Result<Option<Duration>> {
        self.wait
            .as_deref()
            .map(parse_wait)
            .transpose()
            .map_err(|m| ApiError::field("wait", m))
    }
}

/// Reads the job until it has ended, the wait runs out or the service stops;
/// returns it as last read. `ended` must have been taken before the job could
/// end (before it was inserted, or before this first read), so its end cannot
/// slip between a read and the wait.
///
/// # Errors
/// The job is not in `scope` (404), or the database fails.
pub async fn until_ended(
    state: &AppState,
    scope: Scope<'_>,
    job_id: Uuid,
    wait: Duration,
    mut ended: Option<JobWatch>,
) -> Result<Job> {
    let deadline = tokio::time::Instant::now() + wait;
    loop {
        let job = jobs::fetch_job(&state.db, scope, job_id)
            .await?
            .ok_or(ApiError::NotFound("job"))?;
        if job.status.is_terminal()
            || tokio::time::Instant::now() >= deadline
            || state.shutdown.is_cancelled()
        {
            return Ok(job);
        }
        // Woken when the job ends (this replica's engine, or NOTIFY from another);
        // the slow poll only matters where neither reaches (a pooler without LISTEN).
        let poll = state
            .wait_poll_interval
            .min(deadline - tokio::time::Instant::now());
        tokio::select! {
            () = async {
                match ended.as_mut() {
                    Some(watch) => watch.ended().await,
                    None => std::future::pending().await,
                }
            } => {}
            () = tokio::time::sleep(poll) => {}
            () = state.shutdown.cancelled() => {}
        }
    }
}

/// The longest a request may take: one that waits for a job gets its wait on top.
pub fn request_budget(
    method: &axum::http::Method,
    path: &str,
    query: Option<&str>,
    base: Duration,
) -> Duration {
    let waits = (method == axum::http::Method::POST && path == "/v1/snapshots")
        || (method == axum::http::Method::GET && is_job_path(path));
    if !waits {
        return base;
    }
    let wait = query
        .and_then(|q| {
            form_urlencoded::parse(q.as_bytes())
                .find(|(k, _)| k == "wait")
                .map(|(_, v)| v.into_owned())
        })
        .and_then(|w| parse_wait(&w).ok())
        .unwrap_or_default();
    base + wait
}

/// `/v1/jobs/{id}`, not a longer path below it.
fn is_job_path(path: &str) -> bool {
    path.strip_prefix("/v1/jobs/")
        .is_some_and(|id| !id.is_empty() && !id.contains('/'))
}

#[cfg(test)]
mod tests {
    use super::*;
    use axum::http::Method;

    #[test]
    fn only_waiting_requests_get_their_wait_on_top() {
        let base = Duration::from_secs(30);
        let budget = |m: &Method, p: &str, q: Option<&str>| request_budget(m, p, q, base);
        assert_eq!(
            budget(&Method::POST, "/v1/snapshots", Some("wait=10m")),
            Duration::from_secs(630)
        );
        assert_eq!(
            budget(&Method::GET, "/v1/jobs/abc", Some("wait=1m")),
            Duration::from_secs(90)
        );
        assert_eq!(
            budget(&Method::POST, "/v1/jobs/abc/cancel", Some("wait=1m")),
            base
        );
        assert_eq!(budget(&Method::GET, "/v1/policies", Some("wait=1m")), base);
        assert_eq!(budget(&Method::GET, "/v1/jobs/abc", Some("wait=2h")), base);
    }
}
