//! The one place errors become HTTP responses: `application/problem+json` (RFC 9457).

use axum::{
    Json,
    extract::Request,
    http::{HeaderValue, StatusCode, header},
    middleware::Next,
    response::{IntoResponse, Response},
};
use serde::Serialize;
use utoipa::ToSchema;

use crate::domain::validation::FieldError;

/// The media type of every error body.
pub const PROBLEM_JSON: &str = "application/problem+json";

/// Everything a handler can fail with.
#[derive(Debug, thiserror::Error)]
pub enum ApiError {
    #[error("{0}")]
    BadRequest(String),
    #[error("unsupported media type: send {0}")]
    UnsupportedMediaType(&'static str),
    #[error("the request body is larger than {0} bytes")]
    PayloadTooLarge(usize),
    #[error("{0} not found")]
    NotFound(&'static str),
    #[error("{0}")]
    Conflict(String),
    #[error("the resource has changed: its current ETag is {current_etag}")]
    PreconditionFailed { current_etag: String },
    #[error("the request has invalid fields")]
    Unprocessable(Vec<FieldError>),
    #[error("{0}")]
    Unavailable(String),
    #[error(transparent)]
    Database(#[from] sqlx::Error),
}

impl ApiError {
    /// A 422 for a single field.
    pub fn field(field: impl Into<String>, message: impl Into<String>) -> Self {
        Self::Unprocessable(vec![FieldError::new(field, message)])
    }

    fn status_code(&self) -> StatusCode {
        match self {
            Self::BadRequest(_) => StatusCode::BAD_REQUEST,
            Self::UnsupportedMediaType(_) => StatusCode::UNSUPPORTED_MEDIA_TYPE,
            Self::PayloadTooLarge(_) => StatusCode::PAYLOAD_TOO_LARGE,
            Self::NotFound(_) => StatusCode::NOT_FOUND,
            Self::Conflict(_) => StatusCode::CONFLICT,
            Self::PreconditionFailed { .. } => StatusCode::PRECONDITION_FAILED,
            Self::Unprocessable(_) => StatusCode::UNPROCESSABLE_ENTITY,
            Self::Unavailable(_) => StatusCode::SERVICE_UNAVAILABLE,
            Self::Database(_) => StatusCode::INTERNAL_SERVER_ERROR,
        }
    }
}

/// An RFC 9457 problem document.
#[derive(Debug, Serialize, ToSchema)]
#[schema(example = json!({
    "type": "urn:stacksnap:problem:validation",
    "title": "Unprocessable Content",
    "status": 422,
    "detail": "the request has invalid fields",
    "errors": [{"field": "schedules[0].cron", "message": "expected 5 fields (minute hour day-of-month month day-of-week), found 4"}]
}))]
pub struct Problem {
    /// A URI naming the kind of problem.
    #[serde(rename = "type")]
    pub kind: String,
    /// The HTTP reason phrase.
    pub title: String,
    /// The HTTP status code.
    pub status: u16,
    /// What went wrong, for a person.
    pub detail: String,
    /// For 422: every invalid field.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub errors: Option<Vec<FieldError>>,
}

impl Problem {
    /// A problem for `status` with `detail`.
    pub fn new(status: StatusCode, detail: impl Into<String>) -> Self {
        let kind = match status {
            StatusCode::UNPROCESSABLE_ENTITY => "validation",
            StatusCode::BAD_REQUEST => "malformed-request",
            StatusCode::NOT_FOUND => "not-found",
            StatusCode::CONFLICT => "conflict",
            StatusCode::PRECONDITION_FAILED => "stale-version",
            StatusCode::UNSUPPORTED_MEDIA_TYPE => "unsupported-media-type",
            StatusCode::PAYLOAD_TOO_LARGE => "payload-too-large",
            StatusCode::SERVICE_UNAVAILABLE => "unavailable",
            s if s.is_server_error() => "internal",
            _ => "http",
        };
        Self {
            kind: format!("urn:stacksnap:problem:{kind}"),
            title: status.canonical_reason().unwrap_or("Error").to_owned(),
            status: status.as_u16(),
            detail: detail.into(),
            errors: None,
        }
    }
}

impl IntoResponse for Problem {
    fn into_response(self) -> Response {
        let status = StatusCode::from_u16(self.status).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR);
        let mut response = (status, Json(self)).into_response();
        response
            .headers_mut()
            .insert(header::CONTENT_TYPE, HeaderValue::from_static(PROBLEM_JSON));
        response
    }
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        let status = self.status_code();
        let detail = if status.is_server_error() && !matches!(self, Self::Unavailable(_)) {
            // Internal details stay in the log, never in the response.
            tracing::error!(error = ?self, "request failed");
            "an internal error occurred; the request id in x-request-id finds it in the log"
                .to_owned()
        } else {
            self.to_string()
        };
        let mut problem = Problem::new(status, detail);
        let etag = match self {
            Self::Unprocessable(errors) => {
                problem.errors = Some(errors);
                None
            }
            Self::PreconditionFailed { current_etag } => Some(current_etag),
            _ => None,
        };
        let mut response = problem.into_response();
        if let Some(etag) = etag.and_then(|e| HeaderValue::from_str(&e).ok()) {
            response.headers_mut().insert(header::ETAG, etag);
        }
        response
    }
}

/// Gives error responses that carry no body of their own (unknown routes, wrong
/// methods, timeouts) a problem document, so clients meet one error shape.
pub async fn problem_for_bare_errors(request: Request, next: Next) -> Response {
    let response = next.run(request).await;
    let status = response.status();
    if !(status.is_client_error() || status.is_server_error())
        || response.headers().contains_key(header::CONTENT_TYPE)
    {
        return response;
    }
    let detail = match status {
        StatusCode::NOT_FOUND => "no such resource",
        StatusCode::METHOD_NOT_ALLOWED => "this method is not allowed on this resource",
        StatusCode::SERVICE_UNAVAILABLE => "the request took too long and was stopped",
        _ => status.canonical_reason().unwrap_or("error"),
    };
    let (mut parts, _) = response.into_parts();
    let mut problem = Problem::new(status, detail).into_response();
    // Keep headers such as `Allow` on a 405.
    parts.headers.remove(header::CONTENT_LENGTH);
    for (name, value) in problem.headers() {
        parts.headers.insert(name.clone(), value.clone());
    }
    *problem.headers_mut() = parts.headers;
    problem
}

/// Maps a unique-constraint violation to a 409, leaving other errors alone.
pub fn conflict_on(
    constraint: &str,
    message: impl FnOnce() -> String,
) -> impl FnOnce(sqlx::Error) -> ApiError {
    move |error| match &error {
        sqlx::Error::Database(db) if db.constraint() == Some(constraint) => {
            ApiError::Conflict(message())
        }
        _ => ApiError::Database(error),
    }
}
