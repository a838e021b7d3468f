//! Request extractors that fail with problem documents instead of axum's plain text.

use axum::{
    body::Bytes,
    extract::{FromRequest, FromRequestParts, Request, rejection::BytesRejection},
    http::{header, request::Parts},
};
use chrono::{DateTime, Utc};
use secrecy::SecretString;
use serde::de::DeserializeOwned;
use serde_json::Value;

use super::{AppState, error::ApiError};
use crate::{
    domain::{access::Roles, validation::FieldError},
    store::Scope,
};

/// Who is calling: the project the request acts in, its roles, and the
/// Keystone user and token behind it. Put on the request by
/// [`super::auth::authenticate`], which has already checked that the roles
/// allow the operation.
#[derive(Debug, Clone)]
pub struct Caller {
    /// The token's project: what the caller's lists, reads and writes reach.
    pub project_id: String,
    pub roles: Roles,
    /// The Keystone user and token; `None` with `--auth none`, where no user is known.
    pub identity: Option<KeystoneIdentity>,
}

/// A Keystone user behind a request, and the token it came with.
#[derive(Debug, Clone)]
pub struct KeystoneIdentity {
    pub user_id: String,
    pub user_name: String,
    pub project_name: String,
    /// The caller's token, to act with the caller's own authority (e.g. to make
    /// a trust). A secret: it never shows in `Debug` output or logs.
    pub token: SecretString,
    pub expires_at: DateTime<Utc>,
    /// The token was made from an application credential.
    pub application_credential: bool,
    /// The token is scoped to a trust.
    pub trust_scoped: bool,
}

impl Caller {
    /// The Keystone user id, recorded as who did it; `None` with `--auth none`.
    pub fn user_id(&self) -> Option<&str> {
        self.identity.as_ref().map(|i| i.user_id.as_str())
    }

    /// Whether the caller acts on any project.
    pub fn is_admin(&self) -> bool {
        self.roles.is_admin()
    }

    /// What a list reaches: the caller's project, or every project with
    /// `all_projects=true`.
    ///
    /// # Errors
    /// 403 when a caller without the `admin` role asks for every project.
    pub fn list_scope(&self, all_projects: Option<bool>) -> Result<Scope<'_>, ApiError> {
        match all_projects {
            Some(true) if self.is_admin() => Ok(Scope::AllProjects),
            Some(true) => Err(ApiError::Forbidden(
                "all_projects=true needs the admin role".into(),
            )),
            _ => Ok(Scope::Project(&self.project_id)),
        }
    }

    /// What a resource named by its id is looked up in: an admin reaches every
    /// project, anyone else only the token's (another project's resource is
    /// simply not found).
    pub fn item_scope(&self) -> Scope<'_> {
        if self.is_admin() {
            Scope::AllProjects
        } else {
            Scope::Project(&self.project_id)
        }
    }

    /// The project something new is made in: the token's, or the one named by
    /// `project_id` in the request.
    ///
    /// # Errors
    /// 403 when a caller without the `admin` role names another project.
    pub fn target_project(&self, named: Option<String>) -> Result<String, ApiError> {
        match named {
            None => Ok(self.project_id.clone()),
            Some(project) if project == self.project_id || self.is_admin() => Ok(project),
            Some(_) => Err(ApiError::Forbidden(
                "project_id names another project: only the admin role may create there".into(),
            )),
        }
    }
}

impl<S: Send + Sync> FromRequestParts<S> for Caller {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, _state: &S) -> Result<Self, Self::Rejection> {
        parts.extensions.get::<Self>().cloned().ok_or_else(|| {
            // Every route under /v1/ is behind `auth::authenticate`; this one is not.
            ApiError::Internal("a handler needs a caller on a route without authentication")
        })
    }
}

/// A JSON document body: `application/json` (or any `+json` type) of at most the body limit.
#[derive(Debug)]
pub struct JsonDocument(pub Value);

impl FromRequest<AppState> for JsonDocument {
    type Rejection = ApiError;

    async fn from_request(request: Request, state: &AppState) -> Result<Self, Self::Rejection> {
        let accepts = |essence: &str| {
            essence == "application/json"
                || (essence.starts_with("application/") && essence.ends_with("+json"))
        };
        read_json(request, state, accepts, "application/json")
            .await
            .map(Self)
    }
}

/// A JSON Merge Patch body (RFC 7396): `application/merge-patch+json` or `application/json`.
#[derive(Debug)]
pub struct MergePatchDocument(pub Value);

impl FromRequest<AppState> for MergePatchDocument {
    type Rejection = ApiError;

    async fn from_request(request: Request, state: &AppState) -> Result<Self, Self::Rejection> {
        let accepts = |essence: &str| {
            essence == "application/merge-patch+json" || essence == "application/json"
        };
        read_json(
            request,
            state,
            accepts,
            "application/merge-patch+json (or application/json)",
        )
        .await
        .map(Self)
    }
}

async fn read_json(
    request: Request,
    state: &AppState,
    accepts: impl Fn(&str) -> bool,
    expected: &'static str,
) -> Result<Value, ApiError> {
    let essence = request
        .headers()
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .map(|v| {
            v.split(';')
                .next()
                .unwrap_or("")
                .trim()
                .to_ascii_lowercase()
        });
    if !essence.as_deref().is_some_and(accepts) {
        return Err(ApiError::UnsupportedMediaType(expected));
    }
    let limit = state.body_limit;
    let bytes = Bytes::from_request(request, state)
        .await
        .map_err(|e| body_error(e, limit))?;
    let mut value = serde_json::from_slice(&bytes)
        .map_err(|e| ApiError::BadRequest(format!("the body is not valid JSON: {e}")))?;
    integers_as_integers(&mut value);
    match nul_in(&value, "") {
        Some(path) => Err(ApiError::field(path, NUL_MESSAGE)),
        None => Ok(value),
    }
}

/// PostgreSQL text cannot hold U+0000, so no string the service keeps may contain it.
const NUL_MESSAGE: &str = "must not contain the character U+0000";

/// Writes numbers with a zero fraction (`3.0`) as the integers they are: JSON
/// Schema, and so the OpenAPI document, counts them as integers, serde does not.
fn integers_as_integers(value: &mut Value) {
    // Beyond 2^53 a float no longer holds every integer; such numbers stay as sent.
    const EXACT: f64 = 9_007_199_254_740_992.0;
    match value {
        Value::Number(n) => {
            let integral = n
                .as_f64()
                .filter(|f| n.is_f64() && f.fract() == 0.0 && (-EXACT..=EXACT).contains(f));
            if let Some(f) = integral {
                // In range and integral, so the cast is exact.
                *n = serde_json::Number::from(f as i64);
            }
        }
        Value::Array(items) => items.iter_mut().for_each(integers_as_integers),
        Value::Object(map) => map.values_mut().for_each(integers_as_integers),
        _ => {}
    }
}

/// The path of the first string or key in `value` that contains U+0000
/// (a key is reported by the path of the object that holds it).
fn nul_in(value: &Value, path: &str) -> Option<String> {
    let named = || {
        if path.is_empty() {
            "body".to_owned()
        } else {
            path.to_owned()
        }
    };
    match value {
        Value::String(s) if s.contains('\0') => Some(named()),
        Value::Array(items) => items
            .iter()
            .enumerate()
            .find_map(|(i, item)| nul_in(item, &format!("{path}[{i}]"))),
        Value::Object(map) => map.iter().find_map(|(key, item)| {
            if key.contains('\0') {
                return Some(named());
            }
            let inner = if path.is_empty() {
                key.clone()
            } else {
                format!("{path}.{key}")
            };
            nul_in(item, &inner)
        }),
        _ => None,
    }
}

fn body_error(rejection: BytesRejection, limit: usize) -> ApiError {
    match rejection {
        BytesRejection::FailedToBufferBody(e)
            if e.status() == axum::http::StatusCode::PAYLOAD_TOO_LARGE =>
        {
            ApiError::PayloadTooLarge(limit)
        }
        other => ApiError::BadRequest(format!("cannot read the body: {other}")),
    }
}

/// Turns a JSON value into `T`, naming the field at fault on failure.
///
/// # Errors
/// A 422 whose field is the path of the first value that does not fit.
pub fn from_value<T: DeserializeOwned>(value: Value) -> Result<T, ApiError> {
    serde_path_to_error::deserialize(value).map_err(|e| {
        let path = e.path().to_string();
        let message = e.into_inner().to_string();
        ApiError::Unprocessable(vec![field_error(&path, &message)])
    })
}

/// Builds a field error from serde's path and message.
///
/// Serde reports a missing or unknown field at the path of the object that
/// holds it; the field itself is the more useful thing to name.
pub fn field_error(path: &str, message: &str) -> FieldError {
    let parent = if path == "." { "" } else { path };
    let named = ["missing field `", "unknown field `"]
        .iter()
        .find_map(|prefix| message.strip_prefix(prefix))
        .and_then(|rest| rest.split_once('`'))
        .map(|(name, _)| name);
    let already_named = |name: &str| parent == name || parent.ends_with(&format!(".{name}"));
    let field = match (named, parent) {
        (Some(name), _) if already_named(name) => parent.to_owned(),
        (Some(name), "") => name.to_owned(),
        (Some(name), parent) => format!("{parent}.{name}"),
        (None, "") => "body".to_owned(),
        (None, parent) => parent.to_owned(),
    };
    let message = if message.starts_with("missing field") {
        "is required".to_owned()
    } else if let Some(rest) = message.strip_prefix("unknown field `") {
        let expected = rest.split_once(", expected ").map(|(_, e)| e).unwrap_or("");
        format!("unknown field; expected {expected}")
    } else {
        message.to_owned()
    };
    FieldError { field, message }
}

/// Query parameters parsed into `T`, failing with a 422 that names the parameter.
#[derive(Debug)]
pub struct AppQuery<T>(pub T);

impl<T: DeserializeOwned, S: Send + Sync> FromRequestParts<S> for AppQuery<T> {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, _state: &S) -> Result<Self, Self::Rejection> {
        let query = parts.uri.query().unwrap_or("");
        if let Some((name, _)) =
            form_urlencoded::parse(query.as_bytes()).find(|(_, value)| value.contains('\0'))
        {
            return Err(ApiError::field(name, NUL_MESSAGE));
        }
        let deserializer =
            serde_urlencoded::Deserializer::new(form_urlencoded::parse(query.as_bytes()));
        serde_path_to_error::deserialize(deserializer)
            .map(Self)
            .map_err(|e| {
                let path = e.path().to_string();
                ApiError::Unprocessable(vec![field_error(&path, &e.into_inner().to_string())])
            })
    }
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;

    fn caller(roles: &[&str]) -> Caller {
        Caller {
            project_id: "demo".into(),
            roles: Roles::new(roles.iter().copied()),
            identity: None,
        }
    }

    #[test]
    fn a_member_lists_and_reaches_only_its_project_and_creates_only_there() {
        let member = caller(&["member", "reader"]);
        assert_eq!(member.list_scope(None).unwrap(), Scope::Project("demo"));
        assert_eq!(
            member.list_scope(Some(false)).unwrap(),
            Scope::Project("demo")
        );
        assert!(matches!(
            member.list_scope(Some(true)),
            Err(ApiError::Forbidden(_))
        ));
        assert_eq!(member.item_scope(), Scope::Project("demo"));
        assert_eq!(member.target_project(None).unwrap(), "demo");
        assert_eq!(member.target_project(Some("demo".into())).unwrap(), "demo");
        assert!(matches!(
            member.target_project(Some("alt".into())),
            Err(ApiError::Forbidden(_))
        ));
    }

    #[test]
    fn an_admin_lists_every_project_when_asked_and_reaches_and_creates_anywhere() {
        let admin = caller(&["admin"]);
        assert_eq!(admin.list_scope(None).unwrap(), Scope::Project("demo"));
        assert_eq!(admin.list_scope(Some(true)).unwrap(), Scope::AllProjects);
        assert_eq!(admin.item_scope(), Scope::AllProjects);
        assert_eq!(admin.target_project(Some("alt".into())).unwrap(), "alt");
    }

    #[test]
    fn a_callers_debug_output_never_shows_its_token() {
        let mut with_token = caller(&["member"]);
        with_token.identity = Some(KeystoneIdentity {
            user_id: "u".into(),
            user_name: "demo".into(),
            project_name: "demo".into(),
            token: SecretString::from("gAAAAAB-very-secret".to_owned()),
            expires_at: Utc::now(),
            application_credential: false,
            trust_scoped: false,
        });
        let shown = format!("{with_token:?}");
        assert!(!shown.contains("very-secret"), "{shown}");
        assert_eq!(with_token.user_id(), Some("u"));
    }

    #[test]
    fn integral_floats_become_integers_and_others_stay() {
        let mut value: Value =
            serde_json::from_str(r#"{"a": 3.0, "b": [-2.0, 2.5, 1e300], "c": 7}"#).unwrap();
        integers_as_integers(&mut value);
        assert_eq!(value, json!({"a": 3, "b": [-2, 2.5, 1e300], "c": 7}));
        assert!(value["a"].is_u64() || value["a"].is_i64());
    }

    #[test]
    fn a_nul_character_is_found_by_the_path_of_its_string_or_key() {
        let find = |value: Value| nul_in(&value, "");
        assert_eq!(find(json!({"a": ["x", {"b": "y"}]})), None);
        assert_eq!(find(json!("a\0")).as_deref(), Some("body"));
        assert_eq!(
            find(json!({"options": {"metadata": {"k": "v\0"}}})).as_deref(),
            Some("options.metadata.k")
        );
        assert_eq!(
            find(json!({"targets": {"selector": {"tags": ["ok", "no\0"]}}})).as_deref(),
            Some("targets.selector.tags[1]")
        );
        assert_eq!(
            find(json!({"metadata": {"k\0": "v"}})).as_deref(),
            Some("metadata")
        );
    }

    #[test]
    fn missing_and_unknown_fields_are_named_by_their_own_path() {
        let missing = field_error(".", "missing field `name`");
        assert_eq!(
            (missing.field.as_str(), missing.message.as_str()),
            ("name", "is required")
        );
        let unknown = field_error(
            "options",
            "unknown field `colour`, expected `consistency` or `timeout`",
        );
        assert_eq!(unknown.field, "options.colour");
        assert_eq!(
            unknown.message,
            "unknown field; expected `consistency` or `timeout`"
        );
        let typed = field_error(
            "retention.keep_last",
            "invalid type: string \"3\", expected u32",
        );
        assert_eq!(typed.field, "retention.keep_last");
        assert_eq!(
            field_error(".", "invalid type: sequence, expected struct PolicySpec").field,
            "body"
        );
    }
}
