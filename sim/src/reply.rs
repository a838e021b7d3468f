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

/// A JSON value as Python's `repr` writes the decoded value (how Nova's and
/// Cinder's schema errors quote the input): `{'uuid': 'x'}`, `True`, `None`.
pub(crate) fn py_repr(v: &Value) -> String {
    match v {
        Value::Null => "None".into(),
        Value::Bool(true) => "True".into(),
        Value::Bool(false) => "False".into(),
        Value::Number(n) => n.to_string(),
        Value::String(s) => format!("'{}'", s.replace('\\', "\\\\").replace('\'', "\\'")),
        Value::Array(a) => format!("[{}]", a.iter().map(py_repr).collect::<Vec<_>>().join(", ")),
        Value::Object(m) => format!(
            "{{{}}}",
            m.iter()
                .map(|(k, v)| format!("{}: {}", py_repr(&Value::from(k.as_str())), py_repr(v)))
                .collect::<Vec<_>>()
                .join(", ")
        ),
    }
}

/// A JSON value as Python's `%s` writes it (a string bare, anything else as `repr`).
pub(crate) fn py_str(v: &Value) -> String {
    v.as_str().map_or_else(|| py_repr(v), str::to_owned)
}

/// The error of Nova's and Cinder's JSON-schema validation:
/// `Invalid input for field/attribute FIELD. Value: VALUE. DETAIL`.
pub(crate) fn schema_error(field: &str, value: &Value, detail: &str) -> String {
    format!(
        "Invalid input for field/attribute {field}. Value: {}. {detail}",
        py_str(value)
    )
}

/// Whether `s` is a UUID as the schemas' `uuid` format takes it.
pub(crate) fn is_uuid(s: &str) -> bool {
    uuid::Uuid::parse_str(s).is_ok()
}
