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

use crate::{
    domain::validation::FieldError,
    openstack::{ErrorKind, OpenStackError},
};

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
    /// 401: no token, or one Keystone does not know. Answered with
    /// `WWW-Authenticate: Keystone uri="<auth_url>"`.
    #[error("{reason}")]
    Unauthenticated {
        reason: &'static str,
        auth_url: String,
    },
    /// 403: the caller's roles do not allow the operation.
    #[error("{0}")]
    Forbidden(String),
    /// 503: Keystone could not tell whether the token is valid.
    #[error("the token cannot be validated now: {}", openstack_summary(.0))]
    IdentityUnavailable(OpenStackError),
    /// 500: a fault of the service itself (never of the request).
    #[error("{0}")]
    Internal(&'static str),
    #[error(transparent)]
    Database(#[from] sqlx::Error),
    /// A call to the cloud failed: 502, or 503 when the cloud could not be reached.
    #[error(transparent)]
    OpenStack(#[from] OpenStackError),
}

impl ApiError {
    /// Logs a server-side failure. A database error is logged by its message,
    /// SQLSTATE and where it arose, never with PostgreSQL's DETAIL: for a
    /// refused row that is "Failing row contains (...)", every column of it, a
    /// run's token or trust id included.
    fn log_internal(&self) {
        match self {
            Self::Database(sqlx::Error::Database(db)) => {
                let pg = db.try_downcast_ref::<sqlx::postgres::PgDatabaseError>();
                tracing::error!(
                    error = %db.message(),
                    code = db.code().as_deref().unwrap_or(""),
                    table = db.table().unwrap_or(""),
                    column = pg.and_then(|e| e.column()).unwrap_or(""),
                    constraint = db.constraint().unwrap_or(""),
                    "request failed"
                );
            }
            other => tracing::error!(error = ?other, "request failed"),
        }
    }

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
            Self::Unavailable(_) | Self::IdentityUnavailable(_) => StatusCode::SERVICE_UNAVAILABLE,
            Self::Unauthenticated { .. } => StatusCode::UNAUTHORIZED,
            Self::Forbidden(_) => StatusCode::FORBIDDEN,
            Self::Internal(_) => StatusCode::INTERNAL_SERVER_ERROR,
            Self::Database(_) => StatusCode::INTERNAL_SERVER_ERROR,
            Self::OpenStack(e) if cloud_unreachable(e) => StatusCode::SERVICE_UNAVAILABLE,
            Self::OpenStack(_) => StatusCode::BAD_GATEWAY,
        }
    }
}

/// Whether no answer came from the cloud at all.
fn cloud_unreachable(error: &OpenStackError) -> bool {
    matches!(error.kind, ErrorKind::Transport | ErrorKind::Timeout)
}

/// A short account of a failed cloud call that is safe to show a client: the
/// service, the operation and what went wrong in general terms, never the
/// cloud's own message, which may name internal endpoints or project ids.
pub fn openstack_summary(error: &OpenStackError) -> String {
    let what = match (error.kind, error.status) {
        (ErrorKind::Timeout, _) => "the cloud did not answer in time".to_owned(),
        (ErrorKind::Transport, _) => "the cloud could not be reached".to_owned(),
        (ErrorKind::Decode, _) => "the cloud's answer could not be read".to_owned(),
        (ErrorKind::Config, _) => {
            "the cloud's catalog or the service's credentials cannot be used".to_owned()
        }
        (_, Some(status)) => format!("the cloud answered HTTP {status}"),
        (_, None) => "the call failed".to_owned(),
    };
    format!("OpenStack {} {}: {what}", error.service, error.operation)
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
    /// For 502 and 503 from the cloud: the call that failed.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub openstack: Option<OpenStackFailure>,
}

/// The OpenStack call behind a 502 or 503.
#[derive(Debug, Serialize, ToSchema)]
#[schema(example = json!({"service": "glance", "operation": "list_images", "status": 500,
    "request_id": "req-6f0c2b1e-9d8a-4c7b-a6e5-4f3d2c1b0a99"}))]
pub struct OpenStackFailure {
    /// `keystone`, `nova`, `glance` or `cinder`.
    pub service: &'static str,
    /// What was being done, e.g. `list_images`.
    pub operation: &'static str,
    /// The cloud's HTTP status; `null` when no answer came.
    pub status: Option<u16>,
    /// The cloud's `x-openstack-request-id`, which finds the call in its logs; `null` when it sent none.
    pub request_id: Option<String>,
}

impl From<&OpenStackError> for OpenStackFailure {
    fn from(error: &OpenStackError) -> Self {
        Self {
            service: error.service,
            operation: error.operation,
            status: error.status,
            request_id: error.request_id.clone(),
        }
    }
}

impl Problem {
    /// A problem for `status` with `detail`.
    pub fn new(status: StatusCode, detail: impl Into<String>) -> Self {
        let kind = match status {
            StatusCode::UNPROCESSABLE_ENTITY => "validation",
            StatusCode::BAD_REQUEST => "malformed-request",
            StatusCode::NOT_FOUND => "not-found",
            StatusCode::UNAUTHORIZED => "unauthenticated",
            StatusCode::FORBIDDEN => "forbidden",
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
            openstack: None,
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
        if let Self::OpenStack(error) = &self {
            return openstack_problem(status, error).into_response();
        }
        if let Self::IdentityUnavailable(error) = &self {
            tracing::error!(error = %error, kind = ?error.kind, "a token could not be validated");
            let mut problem = Problem::new(status, self.to_string());
            problem.openstack = Some(OpenStackFailure::from(error));
            return problem.into_response();
        }
        if let Self::Unauthenticated { auth_url, .. } = &self {
            let challenge = format!("Keystone uri=\"{auth_url}\"");
            let mut response = Problem::new(status, self.to_string()).into_response();
            if let Ok(value) = HeaderValue::from_str(&challenge) {
                response
                    .headers_mut()
                    .insert(header::WWW_AUTHENTICATE, value);
            }
            return response;
        }
        let detail = if status.is_server_error() && !matches!(self, Self::Unavailable(_)) {
            // Internal details stay in the log, never in the response.
            self.log_internal();
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

/// The problem for a failed cloud call; the whole error goes to the log only.
fn openstack_problem(status: StatusCode, error: &OpenStackError) -> Problem {
    tracing::error!(error = %error, kind = ?error.kind, "a call to the cloud failed");
    let mut problem = Problem::new(status, openstack_summary(error));
    problem.kind = "urn:stacksnap:problem:openstack".to_owned();
    problem.openstack = Some(OpenStackFailure::from(error));
    problem
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
