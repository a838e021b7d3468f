//! Following a job to its end within the caller's `--wait`: long polls of
//! `?wait=` (at most an hour each, as the service allows), repeated until the
//! job ends or the client's own deadline passes; and what the end means.

use std::time::Duration;

use serde_json::Value;
use tokio::time::Instant;

use super::{
    api::{Api, MAX_SERVER_WAIT},
    error::{ClientError, Exit},
};

/// The pause before polling again after a poll that could not be answered.
const TRANSIENT_PAUSE: Duration = Duration::from_secs(2);

/// How a job ended, as the exit code says it.
pub fn verdict(job: &Value) -> Option<Exit> {
    match job["status"].as_str()? {
        "succeeded" => Some(Exit::Done),
        "failed" | "timed_out" | "cancelled" => Some(Exit::Failed),
        _ => None,
    }
}

/// The wait to ask the service for with `remaining` left: whole seconds (its
/// unit), at most its limit; `None` when less than a second is left.
pub fn next_wait(remaining: Duration) -> Option<Duration> {
    let secs = remaining.min(MAX_SERVER_WAIT).as_secs();
    (secs > 0).then(|| Duration::from_secs(secs))
}

/// Polls `job` until it ends or `deadline` passes; returns it as last read.
/// Each change of status is told on stderr. A poll the service could not
/// answer ([`ClientError::is_transient`]) is tried again until the deadline.
///
/// # Errors
/// The service refuses a poll (4xx).
pub async fn until_ended(
    api: &Api,
    mut job: Value,
    deadline: Instant,
) -> Result<Value, ClientError> {
    let id = job["id"].as_str().unwrap_or_default().to_owned();
    loop {
        if verdict(&job).is_some() {
            return Ok(job);
        }
        let Some(wait) = next_wait(deadline.saturating_duration_since(Instant::now())) else {
            return Ok(job);
        };
        let before = job["status"].clone();
        job = match api.get_job(&id, Some(wait)).await {
            Ok(answer) => answer.body,
            // The job goes on whatever happened to this poll (a replica restarting,
            // a proxy cutting a long poll off): ask again, until the deadline.
            Err(error) if error.is_transient() => {
                eprintln!("job {id}: {}; asking again", error.report());
                let remaining = deadline.saturating_duration_since(Instant::now());
                tokio::time::sleep(TRANSIENT_PAUSE.min(remaining)).await;
                continue;
            }
            Err(error) => return Err(error),
        };
        if job["status"] != before {
            eprintln!("job {id}: {}", super::output::text(&job["status"]));
        }
    }
}

/// The one line stderr gets about a job that did not succeed, or `None`.
pub fn failure_line(job: &Value) -> Option<String> {
    let status = job["status"].as_str()?;
    if verdict(job) != Some(Exit::Failed) {
        return None;
    }
    let id = super::output::text(&job["id"]);
    Some(match &job["error"] {
        Value::Null => format!("error: job {id} {status}"),
        error => format!(
            "error: job {id} {status}: {}: {}",
            super::output::text(&error["code"]),
            super::output::text(&error["message"])
        ),
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn waits_are_whole_seconds_and_at_most_an_hour() {
        assert_eq!(
            next_wait(Duration::from_millis(2500)),
            Some(Duration::from_secs(2))
        );
        assert_eq!(next_wait(Duration::from_secs(7200)), Some(MAX_SERVER_WAIT));
        assert_eq!(next_wait(Duration::from_millis(999)), None);
    }

    #[tokio::test]
    async fn a_poll_the_service_cannot_answer_is_asked_again_until_the_job_ends() {
        use std::sync::{
            Arc,
            atomic::{AtomicUsize, Ordering},
        };

        use axum::{Json, Router, http::StatusCode, response::IntoResponse, routing::get};

        // Arrange: a service whose first poll fails as a proxy would (502).
        let polls = Arc::new(AtomicUsize::new(0));
        let seen = polls.clone();
        let app = Router::new().route(
            "/v1/jobs/j",
            get(move || {
                let seen = seen.clone();
                async move {
                    if seen.fetch_add(1, Ordering::SeqCst) == 0 {
                        StatusCode::BAD_GATEWAY.into_response()
                    } else {
                        Json(json!({"id": "j", "status": "succeeded"})).into_response()
                    }
                }
            }),
        );
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        tokio::spawn(async move { axum::serve(listener, app).await });
        let api = Api::new(&format!("http://{addr}"), "t".to_owned().into()).unwrap();
        let deadline = Instant::now() + Duration::from_secs(30);

        // Act
        let job = until_ended(&api, json!({"id": "j", "status": "tracking"}), deadline).await;

        // Assert
        let job = job.expect("the 502 is asked again, not the end of the wait");
        assert_eq!(verdict(&job), Some(Exit::Done));
        assert_eq!(polls.load(Ordering::SeqCst), 2);
    }

    #[test]
    fn only_ended_jobs_have_a_verdict() {
        let job = |status: &str| json!({"id": "j", "status": status});
        assert_eq!(verdict(&job("succeeded")), Some(Exit::Done));
        assert_eq!(verdict(&job("timed_out")), Some(Exit::Failed));
        assert_eq!(verdict(&job("cancelled")), Some(Exit::Failed));
        assert_eq!(verdict(&job("tracking")), None);
        assert_eq!(failure_line(&job("succeeded")), None);
        assert_eq!(
            failure_line(
                &json!({"id": "j", "status": "failed", "error": {"code": "image_failed", "message": "killed"}})
            ),
            Some("error: job j failed: image_failed: killed".into())
        );
    }
}
