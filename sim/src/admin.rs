//! The simulator's own admin endpoints under `/_sim` (no token needed, not
//! logged): the request log, fault rules, token expiry, role assignments and
//! trusts.
//!
//! * `GET /_sim/requests`, `DELETE /_sim/requests`
//! * `GET /_sim/faults`, `POST /_sim/faults` (one rule or an array), `DELETE /_sim/faults`
//! * `POST /_sim/expire-tokens`
//! * `GET /_sim/durations`, `PATCH /_sim/durations` (the fields to change, in
//!   milliseconds, e.g. `{"volume_backed_create_image_call": 45000}`)
//! * `PUT /_sim/users/{user}/projects/{project}/roles/{role}` gives a user a
//!   role on a project, `DELETE` the same path takes it away (names or ids;
//!   204, or 404 naming what is missing). Tokens lose the role at once, and
//!   a trust its user made that delegates the role stops working: new
//!   trust-scoped tokens get Keystone's 403, validating existing ones 403,
//!   and the services answer them 503, as keystonemiddleware does when
//!   Keystone refuses a validation.
//! * `GET /_sim/trusts` (the live ones), `DELETE /_sim/trusts/{id}` (204 or
//!   404): deletes a trust as its trustor or an admin can through Keystone
//!   (`DELETE /identity/v3/OS-TRUST/trusts/{id}` with an admin token does
//!   the same). Its tokens stop working at once: 401 at every service, 404
//!   on validation, 401 when authenticating with it again.
//! * `GET /_sim/health`

use axum::{
    body::Bytes,
    http::{Method, StatusCode},
    response::Response,
};
use chrono::Utc;
use serde_json::{Value, json};

use super::{
    config::Durations,
    faults::FaultRule,
    http::{empty, json},
    roles::Role,
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
        ("PUT" | "DELETE", ["users", user, "projects", project, "roles", role]) => {
            let Some(role) = Role::from_name(role) else {
                return json(
                    StatusCode::NOT_FOUND,
                    &json!({"error": format!("no role {role:?}")}),
                );
            };
            match st.set_role(user, project, role, method == Method::PUT) {
                Ok(()) => empty(StatusCode::NO_CONTENT),
                Err(e) => json(StatusCode::NOT_FOUND, &json!({ "error": e })),
            }
        }
        ("GET", ["trusts"]) => {
            let now = Utc::now();
            let trusts: Vec<Value> = st
                .trusts
                .iter()
                .filter(|t| t.live(now))
                .map(|t| {
                    json!({
                        "id": t.id, "trustor_user_id": t.trustor_user_id,
                        "trustee_user_id": t.trustee_user_id, "project_id": t.project_id,
                        "impersonation": t.impersonation,
                        "roles": t.roles.iter().map(|r| r.name()).collect::<Vec<_>>(),
                    })
                })
                .collect();
            json(StatusCode::OK, &json!({ "trusts": trusts }))
        }
        ("DELETE", ["trusts", id]) => {
            if st.delete_trust(id) {
                empty(StatusCode::NO_CONTENT)
            } else {
                json(
                    StatusCode::NOT_FOUND,
                    &json!({"error": format!("no trust {id:?}")}),
                )
            }
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
                "GET|PATCH /_sim/durations", "PUT|DELETE /_sim/users/{user}/projects/{project}/roles/{role}",
                "GET /_sim/trusts", "DELETE /_sim/trusts/{id}", "GET /_sim/health",
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
