//! Building answers: JSON, empty, and each service's error body (Nova's and
//! Cinder's `{"itemNotFound": …}`, Glance's HTML page).

use axum::{
    http::{HeaderMap, HeaderName, HeaderValue, StatusCode, header},
    response::{IntoResponse as _, Response},
};
use serde_json::Value;

/// A JSON answer.
pub(crate) fn json(status: StatusCode, body: &Value) -> Response {
    let mut r = (status, body.to_string()).into_response();
    r.headers_mut().insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("application/json"),
    );
    r
}

/// An empty answer.
pub(crate) fn empty(status: StatusCode) -> Response {
    status.into_response()
}

/// The error name Nova and Cinder put around their error bodies.
pub(crate) fn fault_name(status: StatusCode) -> &'static str {
    match status.as_u16() {
        400 => "badRequest",
        401 => "unauthorized",
        403 => "forbidden",
        404 => "itemNotFound",
        405 => "badMethod",
        409 => "conflictingRequest",
        413 | 429 => "overLimit",
        415 => "badMediaType",
        501 => "notImplemented",
        503 => "serviceUnavailable",
        _ => "computeFault",
    }
}

/// Nova's and Cinder's error body: `{"itemNotFound": {"code": 404, "message": …}}`.
pub(crate) fn fault_body(status: StatusCode, message: &str, retry_after: Option<u64>) -> Response {
    let mut inner = serde_json::json!({"code": status.as_u16(), "message": message});
    if let Some(secs) = retry_after {
        inner["retryAfter"] = Value::String(secs.to_string());
    }
    let mut r = json(status, &serde_json::json!({ fault_name(status): inner }));
    r.headers_mut().insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("application/json; charset=UTF-8"),
    );
    if let Some(secs) = retry_after {
        insert(r.headers_mut(), "retry-after", &secs.to_string());
    }
    r
}

/// The HTML error page of webob, which Glance answers.
pub(crate) fn html_error(status: StatusCode, message: &str) -> Response {
    let title = format!(
        "{} {}",
        status.as_u16(),
        status.canonical_reason().unwrap_or("Error")
    );
    let body = format!(
        "<html>\n <head>\n  <title>{title}</title>\n </head>\n <body>\n  <h1>{title}</h1>\n  {message}<br /><br />\n\n\n\n </body>\n</html>"
    );
    let mut r = (status, body).into_response();
    r.headers_mut().insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("text/html; charset=UTF-8"),
    );
    r
}

pub(crate) fn insert(headers: &mut HeaderMap, name: &'static str, value: &str) {
    if let Ok(v) = HeaderValue::from_str(value) {
        headers.insert(HeaderName::from_static(name), v);
    }
}
