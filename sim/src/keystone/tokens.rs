//! Keystone's tokens: issuing them (`POST /v3/auth/tokens` by password or
//! application credential, scoped to a project, the system or a trust),
//! validating another token (`GET`/`HEAD /v3/auth/tokens`), and what a token
//! stands for each time it is used. As with Fernet tokens nothing but the
//! scope is stored: roles are read from the assignments, or the trust, on
//! every use, so a removed role or a deleted trust takes effect at once.
//!
//! Keystone's answers (keystone/api/auth.py, keystone/auth/core.py,
//! keystone/api/_shared/authentication.py, keystone/models/token_model.py,
//! keystone/token/provider.py, keystone/common/render_token.py):
//! * a trust that does not exist (or is deleted, expired, used up) at
//!   authentication: 401; the authenticating user is not the trustee, or the
//!   trustor no longer holds the delegated roles: 403 (Keystone's
//!   `Forbidden`, whose details it hides);
//! * an application credential asking for any scope: 401;
//! * validation: the subject token is read first (404 when unknown, expired
//!   or revoked, 403 when its trust lost its roles), then the policy
//!   `identity:validate_token` (`check_token` for HEAD): admin, system
//!   reader, `service` (GET only), or the subject's own user; else 403.

use axum::{
    http::{HeaderValue, StatusCode},
    response::Response,
};
use base64::Engine as _;
use chrono::{DateTime, SecondsFormat, Utc};
use serde_json::{Value, json};

use super::{catalog, error, forbidden, generic_forbidden, role_refs, unauthorized};
use crate::{
    http::{Ctx, json},
    roles::{Role, Roles},
    state::{Fail, Scope, Shared, State, Token, Trust},
    tenancy::{Caller, User},
};

/// Why a token stands for no one now.
#[derive(Debug, PartialEq, Eq)]
pub(crate) enum Rejected {
    /// Unknown, expired, revoked, or its user lost every role there:
    /// Keystone's `TokenNotFound` with this message (404 on validation; 401
    /// at the services and at Keystone's own APIs).
    NotFound(String),
    /// A trust whose trustor no longer holds the delegated roles: Keystone
    /// raises `Forbidden` while validating (403), which keystonemiddleware
    /// turns into 503 at the services.
    Forbidden,
}

/// What a live token stands for.
#[derive(Clone, Debug)]
pub(crate) struct Resolved {
    pub caller: Caller,
    /// The user who authenticated: Keystone's `token.user_id` (a trust's
    /// trustee even when the token impersonates the trustor).
    pub token_user_id: String,
    pub trust: Option<Trust>,
}

/// The identity a stored token stands for now.
///
/// # Errors
/// [`Rejected`] when Keystone would not validate it.
pub(crate) fn resolve(
    st: &State,
    token_id: &str,
    token: &Token,
    now: DateTime<Utc>,
) -> Result<Resolved, Rejected> {
    let expired = || Rejected::NotFound("Failed to validate token".into());
    // Keystone wraps the "no access" Unauthorized of a re-minted token in a
    // TokenNotFound naming the token.
    let no_access = || Rejected::NotFound(format!("Could not find token: {token_id}."));
    if token.expires <= now {
        return Err(expired());
    }
    let user = st.user(&token.user_id).ok_or_else(expired)?;
    let mut caller = Caller {
        user_id: user.id.clone(),
        application_credential: token.application_credential,
        ..Caller::default()
    };
    let mut trust = None;
    match &token.scope {
        Scope::Unscoped => {}
        Scope::System => {
            caller.roles = user.roles_on_system();
            caller.system = true;
            if caller.roles.is_empty() {
                return Err(no_access());
            }
        }
        Scope::Project(project) => {
            caller.roles = user.roles_on(project);
            caller.project_id.clone_from(project);
            if caller.roles.is_empty() {
                return Err(no_access());
            }
        }
        Scope::Trust(id) => {
            let t = st
                .live_trust(id)
                .ok_or_else(|| Rejected::NotFound(format!("Could not find trust: {id}.")))?;
            let trustor = trust_roles_held(st, user, t)?;
            caller.roles = Roles::effective(t.roles.iter().copied());
            caller.project_id = t.project_id.clone().unwrap_or_default();
            caller.trust_id = Some(t.id.clone());
            if t.impersonation {
                caller.user_id.clone_from(&trustor.id);
            }
            trust = Some(t.clone());
        }
    }
    Ok(Resolved {
        caller,
        token_user_id: user.id.clone(),
        trust,
    })
}

/// The trustor of `trust`, if `user` is its trustee and the trustor still
/// holds every delegated role (with what they imply) in the trust's project:
/// the checks of `TokenModel._validate_token_user` and `_validate_trust_scope`.
fn trust_roles_held<'a>(st: &'a State, user: &User, trust: &Trust) -> Result<&'a User, Rejected> {
    if user.id != trust.trustee_user_id {
        return Err(Rejected::Forbidden);
    }
    let trustor = st.user(&trust.trustor_user_id).ok_or(Rejected::Forbidden)?;
    let held = trust
        .project_id
        .as_deref()
        .map(|p| trustor.roles_on(p))
        .unwrap_or_default();
    if !held.covers(&Roles::effective(trust.roles.iter().copied())) {
        return Err(Rejected::Forbidden);
    }
    Ok(trustor)
}

/// `POST /v3/auth/tokens`.
pub(super) fn create(shared: &Shared, ctx: &Ctx) -> Response {
    let Ok(body) = ctx.json::<Value>() else {
        return error(StatusCode::BAD_REQUEST, "Malformed request body.");
    };
    let auth = &body["auth"];
    let identity = &auth["identity"];
    let methods: Vec<&str> = identity["methods"]
        .as_array()
        .map(|m| m.iter().filter_map(Value::as_str).collect())
        .unwrap_or_default();
    let cfg = &shared.config;
    let mut st = shared.lock();
    let (method, app_cred, user, scope) = if methods.contains(&"application_credential") {
        if auth.get("scope").is_some() {
            return error(
                StatusCode::UNAUTHORIZED,
                "Error authenticating with application credential: Application credentials cannot request a scope.",
            );
        }
        let ac = &identity["application_credential"];
        let want = &cfg.application_credential;
        // The one application credential belongs to the admin user.
        let admin = st.users[0].clone();
        let id_ok = ac["id"].as_str() == Some(want.id.as_str())
            || (ac["name"].as_str() == Some(want.name.as_str())
                && find_user(&st, &ac["user"], &cfg.admin.domain_name)
                    .is_some_and(|u| u.id == admin.id));
        if !id_ok || ac["secret"].as_str() != Some(want.secret.as_str()) {
            return unauthorized();
        }
        let scope = Scope::Project(admin.project_id.clone());
        ("application_credential", true, admin, scope)
    } else if methods.contains(&"password") {
        let given = &identity["password"]["user"];
        let user = match find_user(&st, given, &cfg.admin.domain_name) {
            Some(u) if given["password"].as_str() == Some(u.password.as_str()) => u.clone(),
            _ => return unauthorized(),
        };
        let scope = match requested_scope(&st, &auth["scope"], &cfg.admin.domain_name) {
            Ok(scope) => scope,
            Err(fail) => return error(fail.status, &fail.message),
        };
        ("password", false, user, scope)
    } else {
        return unauthorized();
    };
    let token_id = format!(
        "gAAAAAB{}",
        base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(st.rng.bytes(120))
    );
    let now = Utc::now();
    let ttl =
        chrono::Duration::from_std(cfg.token_ttl).unwrap_or_else(|_| chrono::Duration::hours(1));
    let token = Token {
        issued: now,
        expires: now + ttl,
        methods: vec![method],
        application_credential: app_cred,
        user_id: user.id.clone(),
        scope,
        audit_id: base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(st.rng.bytes(16)),
    };
    // Minting checks the scope as validation will (no role there: 401; a
    // trust the user may not use: 403).
    let resolved = match resolve(&st, &token_id, &token, now) {
        Ok(r) => r,
        Err(Rejected::NotFound(_)) => return unauthorized(),
        Err(Rejected::Forbidden) => return generic_forbidden(),
    };
    if let Some(t) = &resolved.trust {
        consume_use(&mut st, &t.id);
    }
    let body = render(shared, &st, &token, &resolved, ctx.q("nocatalog").is_none());
    st.tokens.insert(token_id.clone(), token);
    drop(st);
    let mut r = json(StatusCode::CREATED, &body);
    if let Ok(v) = HeaderValue::from_str(&token_id) {
        r.headers_mut().insert("x-subject-token", v);
    }
    r
}

/// One use of a trust with `remaining_uses` (`consume_use`).
fn consume_use(st: &mut State, trust_id: &str) {
    if let Some(n) = st
        .trusts
        .any_mut(trust_id)
        .and_then(|t| t.remaining_uses.as_mut())
    {
        *n = n.saturating_sub(1);
    }
}

/// The scope a password authentication asks for, or Keystone's answer when
/// it names nothing usable. Whether the user holds a role there is checked
/// as the token is minted.
fn requested_scope(st: &State, scope: &Value, domain: &str) -> Result<Scope, Fail> {
    if scope.is_null() {
        return Ok(Scope::Unscoped);
    }
    if scope["system"]["all"].as_bool() == Some(true) {
        return Ok(Scope::System);
    }
    if let Some(trust) = scope.get("OS-TRUST:trust") {
        let Some(id) = trust["id"].as_str() else {
            return Err(Fail::bad_request(
                "Expecting to find trust_id in trust. The server could not comply with the request since it is either malformed or otherwise incorrect. The client is assumed to be in error.",
            ));
        };
        // TrustNotFound while authenticating is turned into a 401.
        return st
            .live_trust(id)
            .map(|t| Scope::Trust(t.id.clone()))
            .ok_or_else(not_authenticated);
    }
    let project = &scope["project"];
    st.projects
        .iter()
        .find(|p| {
            project["id"].as_str() == Some(p.id.as_str())
                || (project["name"].as_str() == Some(p.name.as_str())
                    && domain_matches(&project["domain"], domain))
        })
        .map(|p| Scope::Project(p.id.clone()))
        .ok_or_else(not_authenticated)
}

/// Keystone's `Unauthorized`, as a failure.
fn not_authenticated() -> Fail {
    Fail::new(
        StatusCode::UNAUTHORIZED,
        "The request you have made requires authentication.",
    )
}

/// `GET`/`HEAD /v3/auth/tokens` with `X-Subject-Token`, by the caller in `ctx`.
pub(super) fn validate(shared: &Shared, ctx: &Ctx) -> Response {
    let head = ctx.method == axum::http::Method::HEAD;
    let action = if head {
        "identity:check_token"
    } else {
        "identity:validate_token"
    };
    let caller = &ctx.caller;
    // The policy's parts that do not depend on the subject.
    let privileged = caller.admin()
        || (caller.system && caller.roles.has(Role::Reader))
        || (!head && caller.roles.has(Role::Service));
    let Some(subject) = ctx
        .headers
        .get("x-subject-token")
        .and_then(|v| v.to_str().ok())
        .map(str::to_owned)
    else {
        return if privileged {
            error(StatusCode::NOT_FOUND, "No token in the request")
        } else {
            forbidden(action)
        };
    };
    let st = shared.lock();
    let Some(token) = st.tokens.get(&subject) else {
        return error(StatusCode::NOT_FOUND, "Could not recognize Fernet token");
    };
    let resolved = match resolve(&st, &subject, token, Utc::now()) {
        Ok(r) => r,
        Err(Rejected::NotFound(message)) => return error(StatusCode::NOT_FOUND, &message),
        Err(Rejected::Forbidden) => return generic_forbidden(),
    };
    if !privileged && caller.user_id != resolved.token_user_id {
        return forbidden(action);
    }
    let body = render(shared, &st, token, &resolved, ctx.q("nocatalog").is_none());
    drop(st);
    let mut r = json(StatusCode::OK, &body);
    if let Ok(v) = HeaderValue::from_str(&subject) {
        r.headers_mut().insert("x-subject-token", v);
    }
    r
}

/// The user a request names, by id or by name in the one domain.
pub(super) fn find_user<'a>(st: &'a State, user: &Value, domain: &str) -> Option<&'a User> {
    st.users.iter().find(|u| {
        user["id"].as_str() == Some(u.id.as_str())
            || (user["name"].as_str() == Some(u.name.as_str())
                && domain_matches(&user["domain"], domain))
    })
}

fn domain_matches(domain: &Value, name: &str) -> bool {
    domain["name"].as_str().is_some_and(|n| n == name)
        || domain["id"].as_str().is_some_and(|id| id == "default")
}

/// The token as `render_token_response_from_model` writes it.
fn render(
    shared: &Shared,
    st: &State,
    token: &Token,
    resolved: &Resolved,
    include_catalog: bool,
) -> Value {
    let cfg = &shared.config;
    let stamp = |t: DateTime<Utc>| t.to_rfc3339_opts(SecondsFormat::Micros, true);
    let domain = json!({"id": "default", "name": cfg.admin.domain_name});
    let caller = &resolved.caller;
    let user_name = st
        .user(&caller.user_id)
        .map(|u| u.name.clone())
        .unwrap_or_default();
    let mut body = json!({
        "methods": token.methods,
        "user": {"domain": domain, "id": caller.user_id, "name": user_name, "password_expires_at": null},
        "audit_ids": [token.audit_id],
        "expires_at": stamp(token.expires),
        "issued_at": stamp(token.issued),
    });
    let project = st.projects.iter().find(|p| p.id == caller.project_id);
    if caller.system {
        body["system"] = json!({"all": true});
    }
    if let Some(t) = &resolved.trust {
        body["OS-TRUST:trust"] = json!({
            "id": t.id,
            "trustor_user": {"id": t.trustor_user_id},
            "trustee_user": {"id": t.trustee_user_id},
            "impersonation": t.impersonation,
        });
    }
    if let Some(p) = project {
        body["project"] = json!({"domain": domain, "id": p.id, "name": p.name});
        if resolved.trust.is_none() {
            body["is_domain"] = json!(false);
        }
    }
    if !matches!(token.scope, Scope::Unscoped) {
        body["roles"] = role_refs(&caller.roles);
        if include_catalog {
            body["catalog"] = catalog(&shared.base_url, &cfg.region);
        }
    }
    if token.application_credential {
        body["application_credential"] = json!({
            "id": cfg.application_credential.id,
            "name": cfg.application_credential.name,
            "restricted": true,
        });
    }
    json!({ "token": body })
}
