//! The simulator's own admin endpoints under `/_sim` (no token needed, not
//! logged): the request log, fault rules and token expiry.
//!
//! * `GET /_sim/requests`, `DELETE /_sim/requests`
//! * `GET /_sim/faults`, `POST /_sim/faults` (one rule or an array), `DELETE /_sim/faults`
//! * `POST /_sim/expire-tokens`
//! * `GET /_sim/health`

use axum::{
    body::Bytes,
    http::{Method, StatusCode},
    response::Response,
};
use serde_json::{Value, json};

use super::{
    faults::FaultRule,
    http::{empty, json},
    state::Shared,
};

pub(crate) fn handle(shared: &Shared, method: &Method, segs: &[String], body: &Bytes) -> Response {
    let segs: Vec<&str> = segs.iter().map(String::as_str).collect();
    let mut st = shared.lock();
    match (method.as_str(), segs.as_slice()) {
        ("GET", ["health"]) => json(StatusCode::OK, &json!({"status": "ok"})),
        ("GET", ["requests"]) => json(StatusCode::OK, &json!(st.log)),
        ("DELETE", ["requests"]) => {
            st.log.clear();
            empty(StatusCode::NO_CONTENT)
        }
        ("GET", ["faults"]) => json(StatusCode::OK, &json!(st.faults)),
        ("DELETE", ["faults"]) => {
            st.faults.clear();
            empty(StatusCode::NO_CONTENT)
        }
        ("POST", ["faults"]) => {
            let parsed = serde_json::from_slice::<Vec<FaultRule>>(body)
                .or_else(|_| serde_json::from_slice::<FaultRule>(body).map(|r| vec![r]));
            match parsed {
                Ok(rules) => {
                    st.faults.extend(rules);
                    json(StatusCode::CREATED, &json!(st.faults))
                }
                Err(e) => json(
                    StatusCode::BAD_REQUEST,
                    &json!({"error": format!("invalid fault rule: {e}")}),
                ),
            }
        }
        ("POST", ["expire-tokens"]) => {
            st.tokens.clear();
            empty(StatusCode::NO_CONTENT)
        }
        _ => json(
            StatusCode::NOT_FOUND,
            &json!({"error": "unknown admin endpoint", "endpoints": Value::from(vec![
                "GET|DELETE /_sim/requests", "GET|POST|DELETE /_sim/faults", "POST /_sim/expire-tokens", "GET /_sim/health",
            ])}),
        ),
    }
}
