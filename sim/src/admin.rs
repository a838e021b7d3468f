//! The simulator's own admin endpoints under `/_sim` (no token needed, not
//! logged): the request log, fault rules and token expiry.
//!
//! * `GET /_sim/requests`, `DELETE /_sim/requests`
//! * `GET /_sim/faults`, `POST /_sim/faults` (one rule or an array), `DELETE /_sim/faults`
//! * `POST /_sim/expire-tokens`
//! * `GET /_sim/durations`, `PATCH /_sim/durations` (the fields to change, in
//!   milliseconds, e.g. `{"volume_backed_create_image_call": 45000}`)
//! * `GET /_sim/health`

use axum::{
    body::Bytes,
    http::{Method, StatusCode},
    response::Response,
};
use serde_json::{Value, json};

use super::{
    config::Durations,
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
        ("GET", ["durations"]) => json(StatusCode::OK, &json!(st.durations)),
        ("PATCH", ["durations"]) => match merge_durations(&st.durations, body) {
            Ok(durations) => {
                st.durations = durations;
                json(StatusCode::OK, &json!(st.durations))
            }
            Err(e) => json(
                StatusCode::BAD_REQUEST,
                &json!({"error": format!("invalid durations: {e}")}),
            ),
        },
        _ => json(
            StatusCode::NOT_FOUND,
            &json!({"error": "unknown admin endpoint", "endpoints": Value::from(vec![
                "GET|DELETE /_sim/requests", "GET|POST|DELETE /_sim/faults", "POST /_sim/expire-tokens",
                "GET|PATCH /_sim/durations", "GET /_sim/health",
            ])}),
        ),
    }
}

/// The durations with the fields in `body` changed; the others keep their value.
fn merge_durations(current: &Durations, body: &Bytes) -> Result<Durations, String> {
    let changes: serde_json::Map<String, Value> =
        serde_json::from_slice(body).map_err(|e| e.to_string())?;
    let mut merged = serde_json::to_value(current).map_err(|e| e.to_string())?;
    let fields = merged
        .as_object_mut()
        .ok_or_else(|| "durations are an object".to_owned())?;
    for (key, value) in changes {
        if !fields.contains_key(&key) {
            return Err(format!("unknown duration {key:?}"));
        }
        fields.insert(key, value);
    }
    serde_json::from_value(merged).map_err(|e| e.to_string())
}
