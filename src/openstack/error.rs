//! Typed OpenStack failures, each carrying the `x-openstack-request-id` that finds it in the cloud's logs.

use std::time::Duration;

/// What kind of failure an OpenStack call met.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ErrorKind {
    /// 404: the resource does not exist (any more).
    NotFound,
    /// 409: a state or task conflict, e.g. Nova busy with another snapshot.
    Conflict,
    /// Nova 403 or Cinder 413 naming a quota: never retried in a loop.
    QuotaExceeded,
    /// 429, or 503 with `Retry-After`: throttled, retry after a pause.
    RateLimited,
    /// 503 without a `Retry-After`.
    Unavailable,
    /// 401 that re-authentication did not cure.
    Unauthorized,
    /// 403 that is not about a quota.
    Forbidden,
    /// 400 and other 4xx: the request itself is wrong (for instance a list
    /// filter Cinder does not allow the token: "Invalid filters ... are found
    /// in query options."). Sending it again gets the same answer.
    BadRequest,
    /// 5xx other than 503.
    ServerError,
    /// No answer within the call's timeout.
    Timeout,
    /// The connection failed before an answer arrived.
    Transport,
    /// The answer could not be understood.
    Decode,
    /// The catalog has no usable endpoint, or the credentials are unusable.
    Config,
}

/// A failed OpenStack call.
#[derive(Debug, Clone, thiserror::Error)]
#[error("{service} {operation}: {message}{}{}", status_text(*.status), request_id_text(.request_id))]
pub struct OpenStackError {
    pub kind: ErrorKind,
    /// `keystone`, `nova`, `glance` or `cinder`.
    pub service: &'static str,
    /// What was being done, e.g. `create_image`.
    pub operation: &'static str,
    pub status: Option<u16>,
    pub request_id: Option<String>,
    /// The cloud's own message where it gave one.
    pub message: String,
    /// How long the cloud asked us to wait, from `Retry-After`.
    pub retry_after: Option<Duration>,
}

fn status_text(status: Option<u16>) -> String {
    status.map(|s| format!(" (HTTP {s})")).unwrap_or_default()
}

fn request_id_text(request_id: &Option<String>) -> String {
    request_id
        .as_ref()
        .map(|id| format!(" [{id}]"))
        .unwrap_or_default()
}

impl OpenStackError {
    /// A failure with no HTTP answer behind it.
    pub fn new(
        kind: ErrorKind,
        service: &'static str,
        operation: &'static str,
        message: impl Into<String>,
    ) -> Self {
        Self {
            kind,
            service,
            operation,
            status: None,
            request_id: None,
            message: message.into(),
            retry_after: None,
        }
    }

    /// Whether repeating the same request later may succeed.
    pub fn is_retryable(&self) -> bool {
        matches!(
            self.kind,
            ErrorKind::RateLimited
                | ErrorKind::Unavailable
                | ErrorKind::ServerError
                | ErrorKind::Timeout
                | ErrorKind::Transport
        )
    }

    /// Whether the cloud refused the request itself: a 400, or a 403 that is
    /// not about a quota (a policy the credentials do not pass). The same
    /// request gets the same answer however long one waits, so a job that
    /// meets it ends at once with the cloud's message.
    pub fn is_refused(&self) -> bool {
        matches!(self.kind, ErrorKind::BadRequest | ErrorKind::Forbidden)
    }

    /// Whether the resource is gone.
    pub fn is_not_found(&self) -> bool {
        self.kind == ErrorKind::NotFound
    }
}

/// Classifies an HTTP error answer.
pub fn classify(status: u16, message: &str, has_retry_after: bool) -> ErrorKind {
    let lower = message.to_ascii_lowercase();
    match status {
        400 => ErrorKind::BadRequest,
        401 => ErrorKind::Unauthorized,
        403 if lower.contains("quota") => ErrorKind::QuotaExceeded,
        403 => ErrorKind::Forbidden,
        404 => ErrorKind::NotFound,
        409 => ErrorKind::Conflict,
        // Cinder answers quota errors with 413 and `Retry-After: 0`.
        413 => ErrorKind::QuotaExceeded,
        429 => ErrorKind::RateLimited,
        503 if has_retry_after => ErrorKind::RateLimited,
        503 => ErrorKind::Unavailable,
        500..=599 => ErrorKind::ServerError,
        _ => ErrorKind::BadRequest,
    }
}

/// Pulls the human message out of an OpenStack error body.
///
/// Nova and Cinder wrap it (`{"conflictingRequest": {"message": ..}}`),
/// Keystone uses `{"error": {"message": ..}}`, Glance sometimes answers text or HTML.
pub fn error_message(body: &str) -> String {
    let from_json = serde_json::from_str::<serde_json::Value>(body)
        .ok()
        .and_then(|value| {
            let direct = value.get("message").and_then(|m| m.as_str());
            let wrapped = || {
                value
                    .as_object()?
                    .values()
                    .find_map(|inner| inner.get("message").and_then(|m| m.as_str()))
            };
            direct.or_else(wrapped).map(str::to_owned)
        });
    let text = from_json.unwrap_or_else(|| strip_tags(body));
    let text = text.split_whitespace().collect::<Vec<_>>().join(" ");
    if text.chars().count() > 500 {
        format!("{}…", text.chars().take(500).collect::<String>())
    } else {
        text
    }
}

fn strip_tags(body: &str) -> String {
    let mut out = String::new();
    let mut in_tag = false;
    for c in body.chars() {
        match c {
            '<' => in_tag = true,
            '>' => {
                in_tag = false;
                out.push(' ');
            }
            c if !in_tag => out.push(c),
            _ => {}
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn quota_errors_are_told_apart_from_other_refusals() {
        assert_eq!(
            classify(403, "Quota exceeded for resources: snapshots", false),
            ErrorKind::QuotaExceeded
        );
        assert_eq!(
            classify(
                403,
                "Policy doesn't allow os_compute_api:servers:create_image",
                false
            ),
            ErrorKind::Forbidden
        );
        assert_eq!(
            classify(413, "SnapshotLimitExceeded", true),
            ErrorKind::QuotaExceeded
        );
        assert_eq!(classify(429, "", false), ErrorKind::RateLimited);
        assert_eq!(classify(503, "", true), ErrorKind::RateLimited);
        assert_eq!(classify(503, "", false), ErrorKind::Unavailable);
        assert_eq!(classify(502, "", false), ErrorKind::ServerError);
        assert_eq!(classify(409, "", false), ErrorKind::Conflict);
    }

    #[test]
    fn only_transient_failures_are_retryable() {
        let err = |kind| OpenStackError::new(kind, "nova", "get_server", "x");
        assert!(err(ErrorKind::RateLimited).is_retryable());
        assert!(err(ErrorKind::Timeout).is_retryable());
        assert!(!err(ErrorKind::QuotaExceeded).is_retryable());
        assert!(!err(ErrorKind::Conflict).is_retryable());
        assert!(!err(ErrorKind::NotFound).is_retryable());
    }

    #[test]
    fn a_bad_request_is_a_refusal_that_is_never_retried() {
        let error = OpenStackError::new(
            classify(
                400,
                "Invalid filters group_snapshot_id are found in query options.",
                false,
            ),
            "cinder",
            "list_snapshots",
            "Invalid filters group_snapshot_id are found in query options.",
        );
        assert_eq!(error.kind, ErrorKind::BadRequest);
        assert!(error.is_refused());
        assert!(!error.is_retryable());
        let forbidden = OpenStackError::new(ErrorKind::Forbidden, "nova", "create_image", "policy");
        assert!(forbidden.is_refused());
        for kind in [
            ErrorKind::QuotaExceeded,
            ErrorKind::NotFound,
            ErrorKind::Conflict,
            ErrorKind::Unavailable,
            ErrorKind::Timeout,
        ] {
            assert!(!OpenStackError::new(kind, "cinder", "x", "y").is_refused());
        }
    }

    #[test]
    fn messages_are_found_in_every_service_error_shape() {
        assert_eq!(
            error_message(
                r#"{"conflictingRequest": {"code": 409, "message": "Cannot 'createImage' instance while it is in task_state image_snapshot"}}"#
            ),
            "Cannot 'createImage' instance while it is in task_state image_snapshot"
        );
        assert_eq!(
            error_message(
                r#"{"error": {"code": 401, "message": "The request you have made requires authentication.", "title": "Unauthorized"}}"#
            ),
            "The request you have made requires authentication."
        );
        assert_eq!(
            error_message(
                "<html><head><title>404 Not Found</title></head><body><h1>404 Not Found</h1>No image found with ID x</body></html>"
            ),
            "404 Not Found 404 Not Found No image found with ID x"
        );
    }

    #[test]
    fn the_request_id_is_part_of_the_message() {
        let mut err = OpenStackError::new(ErrorKind::Conflict, "nova", "create_image", "busy");
        err.status = Some(409);
        err.request_id = Some("req-1".into());
        assert_eq!(
            err.to_string(),
            "nova create_image: busy (HTTP 409) [req-1]"
        );
    }
}
