//! Who is calling: every request under `/v1/` is authenticated before anything
//! else reads it (its path, query or body), and its roles are checked against
//! what the operation needs. With `--auth keystone` the `X-Auth-Token` is
//! validated with Keystone (cached, [`cache`]); with `--auth none` every request
//! is an admin of project `default`. The [`Caller`] goes to the handlers as a
//! request extension; which project a handler reaches is decided there.
//!
//! The probes, the OpenAPI document and the docs page need no token.

pub mod cache;

use std::{sync::Arc, time::Duration};

use axum::{
    extract::{Request, State},
    http::{HeaderMap, Method},
    middleware::Next,
    response::{IntoResponse as _, Response},
};
use secrecy::SecretString;

use self::cache::{MAX_ENTRIES, TokenCache, TokenKey};
use super::{
    ApiError, AppState,
    extract::{Caller, KeystoneIdentity},
};
use crate::{
    config::AuthMode,
    domain::access::{Permission, Roles},
    openstack::{OpenStack, keystone::validation::validate_token},
};

/// The header a token comes in.
pub const TOKEN_HEADER: &str = "x-auth-token";

/// The project every request acts in with `--auth none`.
pub const UNAUTHENTICATED_PROJECT: &str = "default";

/// Longer than any token Keystone makes (Fernet ~200 bytes, JWS ~800): not sent to Keystone.
const MAX_TOKEN_BYTES: usize = 8 * 1024;

/// How requests are authenticated.
#[derive(Debug, Clone)]
pub enum Authenticator {
    /// `--auth none`: every request is an admin of project `default`.
    Disabled,
    /// `--auth keystone`: tokens validated with Keystone.
    Keystone(Arc<KeystoneAuth>),
}

/// Token validation with the service's own Keystone session, and its cache.
#[derive(Debug)]
pub struct KeystoneAuth {
    cloud: OpenStack,
    cache: TokenCache,
}

impl Authenticator {
    /// Validates tokens with the Keystone of `cloud` (its own credentials),
    /// trusting a result for at most `cache_ttl`.
    pub fn keystone(cloud: OpenStack, cache_ttl: Duration) -> Self {
        Self::Keystone(Arc::new(KeystoneAuth {
            cloud,
            cache: TokenCache::new(cache_ttl, MAX_ENTRIES),
        }))
    }

    /// The mode, as `--auth` names it.
    pub fn mode(&self) -> AuthMode {
        match self {
            Self::Disabled => AuthMode::None,
            Self::Keystone(_) => AuthMode::Keystone,
        }
    }

    /// Who the request's headers say is calling.
    ///
    /// # Errors
    /// 401 without a token or with one Keystone does not know, 403 for a token
    /// scoped to no project, 503 when Keystone cannot answer.
    pub async fn caller(&self, headers: &HeaderMap) -> Result<Caller, ApiError> {
        match self {
            Self::Disabled => Ok(Caller {
                project_id: UNAUTHENTICATED_PROJECT.to_owned(),
                roles: Roles::new(["admin"]),
                identity: None,
            }),
            Self::Keystone(keystone) => keystone.caller(headers).await,
        }
    }
}

impl KeystoneAuth {
    async fn caller(&self, headers: &HeaderMap) -> Result<Caller, ApiError> {
        let unauthenticated = |reason: &'static str| ApiError::Unauthenticated {
            reason,
            auth_url: self.cloud.session().auth_url().to_owned(),
        };
        let token = match headers.get(TOKEN_HEADER) {
            None => return Err(unauthenticated(MISSING)),
            Some(value) if value.is_empty() => return Err(unauthenticated(MISSING)),
            Some(value) => value
                .to_str()
                .ok()
                .filter(|t| t.len() <= MAX_TOKEN_BYTES)
                .map(|t| SecretString::from(t.to_owned()))
                .ok_or_else(|| unauthenticated(INVALID))?,
        };
        let key = TokenKey::of(&token);
        let verdict = match self.cache.get(&key, std::time::Instant::now()) {
            Some(verdict) => verdict,
            None => {
                let validated = validate_token(self.cloud.session(), &token)
                    .await
                    .map_err(ApiError::IdentityUnavailable)?
                    .map(Arc::new);
                self.cache.put(
                    key,
                    validated.clone(),
                    std::time::Instant::now(),
                    chrono::Utc::now(),
                );
                validated
            }
        };
        let validated = verdict.ok_or_else(|| unauthenticated(INVALID))?;
        let project = validated.project.clone().ok_or_else(|| {
            ApiError::Forbidden(
                "the token is not scoped to a project: ask Keystone for a project-scoped token"
                    .into(),
            )
        })?;
        Ok(Caller {
            project_id: project.id,
            roles: Roles::new(validated.roles.iter().cloned()),
            identity: Some(KeystoneIdentity {
                user_id: validated.user_id.clone(),
                user_name: validated.user_name.clone(),
                project_name: project.name,
                token,
                expires_at: validated.expires_at,
                application_credential: validated.application_credential,
                trust_scoped: validated.trust_scoped,
            }),
        })
    }
}

const MISSING: &str = "this request needs a Keystone token in the X-Auth-Token header";
const INVALID: &str = "the token in X-Auth-Token is invalid or has expired";

/// What an operation needs: `None` for the paths open to all (probes, the
/// document, the docs page), `admin` for the orphan finder and cleanup (they
/// read and delete what no project's policy owns), `reader` for reading, and
/// `member` for every change.
pub fn required_permission(method: &Method, path: &str) -> Option<Permission> {
    if path != "/v1" && !path.starts_with("/v1/") {
        return None;
    }
    Some(
        if path == "/v1/orphans" || path.starts_with("/v1/orphans/") {
            Permission::Admin
        } else if matches!(*method, Method::GET | Method::HEAD) {
            Permission::Read
        } else {
            Permission::Write
        },
    )
}

/// Authenticates a request under `/v1/` and checks its roles, before any
/// extractor reads it; hands the [`Caller`] on as an extension.
pub async fn authenticate(
    State(state): State<AppState>,
    mut request: Request,
    next: Next,
) -> Response {
    let Some(needed) = required_permission(request.method(), request.uri().path()) else {
        return next.run(request).await;
    };
    let caller = match state.auth.caller(request.headers()).await {
        Ok(caller) => caller,
        Err(error) => return error.into_response(),
    };
    let span = tracing::Span::current();
    span.record("project_id", caller.project_id.as_str());
    if let Some(user_id) = caller.user_id() {
        span.record("user_id", user_id);
    }
    if !caller.roles.allow(needed) {
        return ApiError::Forbidden(format!(
            "this operation needs one of the roles {} in the token's project",
            needed.roles()
        ))
        .into_response();
    }
    request.extensions_mut().insert(caller);
    next.run(request).await
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_the_api_needs_a_token_and_the_orphans_need_an_admin() {
        let need = |method: Method, path: &str| required_permission(&method, path);
        for open in [
            "/healthz",
            "/readyz",
            "/openapi.json",
            "/docs",
            "/docs/",
            "/v1x",
        ] {
            assert_eq!(need(Method::GET, open), None, "{open}");
        }
        assert_eq!(need(Method::GET, "/v1/policies"), Some(Permission::Read));
        assert_eq!(need(Method::HEAD, "/v1/jobs/x"), Some(Permission::Read));
        assert_eq!(
            need(Method::GET, "/v1/policies/x/retention-preview"),
            Some(Permission::Read)
        );
        for (method, path) in [
            (Method::POST, "/v1/policies"),
            (Method::PATCH, "/v1/policies/x"),
            (Method::DELETE, "/v1/policies/x"),
            (Method::POST, "/v1/policies/x/run"),
            (Method::POST, "/v1/jobs/x/cancel"),
            (Method::POST, "/v1/snapshots"),
            (Method::DELETE, "/v1/snapshots/x"),
            (Method::PUT, "/v1/unknown"),
        ] {
            assert_eq!(
                need(method.clone(), path),
                Some(Permission::Write),
                "{method} {path}"
            );
        }
        assert_eq!(need(Method::GET, "/v1/orphans"), Some(Permission::Admin));
        assert_eq!(
            need(Method::POST, "/v1/orphans/cleanup"),
            Some(Permission::Admin)
        );
    }
}
