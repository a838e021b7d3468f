//! Keystone v3, as far as clients need it: version discovery, tokens by
//! password or application credential (with a catalog pointing back at the
//! simulator), token validation. Tokens expire after the configured TTL.
//! The admin user's tokens (and the application credential's) carry the
//! `admin` role; the members' (`SimConfig::members`) only `member` and `reader`.

use axum::{
    http::{HeaderMap, HeaderValue, Method, StatusCode, header::LOCATION},
    response::Response,
};
use base64::Engine as _;
use chrono::{SecondsFormat, Utc};
use serde_json::{Value, json};

mod projects;

use super::{
    http::{Ctx, json},
    state::{Shared, State, Token},
    tenancy::{Caller, User},
};

/// The operation name of a Keystone request.
pub(crate) fn operation(method: &Method, segs: &[&str]) -> &'static str {
    match (method.as_str(), segs) {
        ("GET", []) => "keystone.versions",
        ("GET", ["v3"]) => "keystone.version",
        ("POST", ["v3", "auth", "tokens"]) => "keystone.create_token",
        ("GET" | "HEAD", ["v3", "auth", "tokens"]) => "keystone.validate_token",
        ("GET", ["v3", "projects"]) => "keystone.list_projects",
        ("GET", ["v3", "projects", _]) => "keystone.get_project",
        _ => "keystone.unknown",
    }
}

/// Keystone's error body.
pub(crate) fn error(status: StatusCode, message: &str) -> Response {
    json(
        status,
        &json!({"error": {
            "code": status.as_u16(),
            "title": status.canonical_reason().unwrap_or("Error"),
            "message": message,
        }}),
    )
}

/// Whether the `X-Auth-Token` of a request is a live token.
pub(crate) fn token_valid(shared: &Shared, headers: &HeaderMap) -> bool {
    caller(shared, headers).is_some()
}

/// Who the live `X-Auth-Token` of a request stands for.
pub(crate) fn caller(shared: &Shared, headers: &HeaderMap) -> Option<Caller> {
    let token = headers.get("x-auth-token").and_then(|v| v.to_str().ok())?;
    let st = shared.lock();
    st.tokens
        .get(token)
        .filter(|t| t.expires > Utc::now())
        .map(|t| t.caller.clone())
}

pub(crate) fn handle(shared: &Shared, operation: &str, ctx: &Ctx) -> Response {
    match operation {
        "keystone.versions" => {
            let mut r = json(
                StatusCode::MULTIPLE_CHOICES,
                &json!({"versions": {"values": [version(&ctx.base)]}}),
            );
            if let Ok(v) = HeaderValue::from_str(&format!("{}/identity/v3/", ctx.base)) {
                r.headers_mut().insert(LOCATION, v);
            }
            r
        }
        "keystone.version" => json(StatusCode::OK, &json!({"version": version(&ctx.base)})),
        "keystone.create_token" => create_token(shared, ctx),
        "keystone.validate_token" => validate_token(shared, ctx),
        "keystone.list_projects" | "keystone.get_project" => {
            projects::handle(shared, operation, ctx)
        }
        _ => error(StatusCode::NOT_FOUND, "The resource could not be found."),
    }
}

fn version(base: &str) -> Value {
    json!({
        "id": "v3.14",
        "status": "stable",
        "updated": "2020-04-07T00:00:00Z",
        "links": [{"rel": "self", "href": format!("{base}/identity/v3/")}],
        "media-types": [{"base": "application/json", "type": "application/vnd.openstack.identity-v3+json"}],
    })
}

fn unauthorized() -> Response {
    error(
        StatusCode::UNAUTHORIZED,
        "The request you have made requires authentication.",
    )
}

/// What a token is scoped to.
enum Scope {
    Unscoped,
    Project(String),
    System,
}

fn create_token(shared: &Shared, ctx: &Ctx) -> Response {
    let Ok(body) = ctx.json::<Value>() else {
        return error(StatusCode::BAD_REQUEST, "Malformed request body.");
    };
    let identity = &body["auth"]["identity"];
    let methods: Vec<&str> = identity["methods"]
        .as_array()
        .map(|m| m.iter().filter_map(Value::as_str).collect())
        .unwrap_or_default();
    let cfg = &shared.config;
    let mut st = shared.lock();
    let (method, app_cred, user) = if methods.contains(&"application_credential") {
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
        ("application_credential", true, admin)
    } else if methods.contains(&"password") {
        let given = &identity["password"]["user"];
        match find_user(&st, given, &cfg.admin.domain_name) {
            Some(u) if given["password"].as_str() == Some(u.password.as_str()) => {
                ("password", false, u.clone())
            }
            _ => return unauthorized(),
        }
    } else {
        return unauthorized();
    };
    let scope = if app_cred {
        Scope::Project(user.project_id.clone())
    } else {
        match resolve_scope(&st, &body["auth"]["scope"], &user, &cfg.admin.domain_name) {
            Some(scope) => scope,
            None => return unauthorized(),
        }
    };
    let token_id = format!(
        "gAAAAAB{}",
        base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(st.rng.bytes(120))
    );
    let now = Utc::now();
    let ttl =
        chrono::Duration::from_std(cfg.token_ttl).unwrap_or_else(|_| chrono::Duration::hours(1));
    let scoped = !matches!(scope, Scope::Unscoped);
    let token = Token {
        issued: now,
        expires: now + ttl,
        methods: vec![method],
        application_credential: app_cred,
        system: matches!(scope, Scope::System),
        caller: Caller {
            user_id: user.id.clone(),
            project_id: match scope {
                Scope::Project(p) => p,
                Scope::Unscoped | Scope::System => String::new(),
            },
            admin: user.admin && scoped,
        },
    };
    let body = token_body(shared, &mut st, &token);
    st.tokens.insert(token_id.clone(), token);
    drop(st);
    let mut r = json(StatusCode::CREATED, &body);
    if let Ok(v) = HeaderValue::from_str(&token_id) {
        r.headers_mut().insert("x-subject-token", v);
    }
    r
}

fn validate_token(shared: &Shared, ctx: &Ctx) -> Response {
    if !token_valid(shared, &ctx.headers) {
        return unauthorized();
    }
    let subject = ctx
        .headers
        .get("x-subject-token")
        .and_then(|v| v.to_str().ok())
        .unwrap_or("")
        .to_owned();
    let mut st = shared.lock();
    let Some(token) = st
        .tokens
        .get(&subject)
        .filter(|t| t.expires > Utc::now())
        .cloned()
    else {
        return error(
            StatusCode::NOT_FOUND,
            &format!("Could not find token: {subject}."),
        );
    };
    let body = token_body(shared, &mut st, &token);
    let mut r = json(StatusCode::OK, &body);
    if let Ok(v) = HeaderValue::from_str(&subject) {
        r.headers_mut().insert("x-subject-token", v);
    }
    r
}

/// The user a request names, by id or by name in the one domain.
fn find_user<'a>(st: &'a State, user: &Value, domain: &str) -> Option<&'a User> {
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

/// The scope a user asked for, if it holds a role there: its own project,
/// or the system for an admin.
fn resolve_scope(st: &State, scope: &Value, user: &User, domain: &str) -> Option<Scope> {
    if scope.is_null() {
        return Some(Scope::Unscoped);
    }
    if scope["system"]["all"].as_bool() == Some(true) {
        return user.admin.then_some(Scope::System);
    }
    let project = &scope["project"];
    let p = st.projects.iter().find(|p| {
        project["id"].as_str() == Some(p.id.as_str())
            || (project["name"].as_str() == Some(p.name.as_str())
                && domain_matches(&project["domain"], domain))
    })?;
    (p.id == user.project_id).then(|| Scope::Project(p.id.clone()))
}

fn token_body(shared: &Shared, st: &mut State, token: &Token) -> Value {
    let cfg = &shared.config;
    let stamp = |t: chrono::DateTime<Utc>| t.to_rfc3339_opts(SecondsFormat::Micros, true);
    let domain = json!({"id": "default", "name": cfg.admin.domain_name});
    let user_name = st
        .users
        .iter()
        .find(|u| u.id == token.caller.user_id)
        .map(|u| u.name.clone())
        .unwrap_or_default();
    let mut body = json!({
        "methods": token.methods,
        "user": {"domain": domain, "id": token.caller.user_id, "name": user_name, "password_expires_at": null},
        "audit_ids": [base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(st.rng.bytes(16))],
        "expires_at": stamp(token.expires),
        "issued_at": stamp(token.issued),
    });
    let project = st.projects.iter().find(|p| p.id == token.caller.project_id);
    if let Some(p) = project {
        body["project"] = json!({"domain": domain, "id": p.id, "name": p.name});
        body["is_domain"] = json!(false);
    } else if token.system {
        body["system"] = json!({"all": true});
    }
    if project.is_some() || token.system {
        let mut roles = vec![
            json!({"id": stable_id("role-member"), "name": "member"}),
            json!({"id": stable_id("role-reader"), "name": "reader"}),
        ];
        if token.caller.admin {
            roles.insert(0, json!({"id": stable_id("role-admin"), "name": "admin"}));
        }
        body["roles"] = Value::Array(roles);
        body["catalog"] = catalog(&shared.base_url, &cfg.region);
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

/// The service catalog: every endpoint points back at the simulator.
fn catalog(base: &str, region: &str) -> Value {
    let services = [
        ("identity", "keystone", format!("{base}/identity/v3/")),
        ("compute", "nova", format!("{base}/compute/v2.1")),
        ("image", "glance", format!("{base}/image")),
        ("volumev3", "cinderv3", format!("{base}/volume/v3")),
        ("block-storage", "cinder", format!("{base}/volume/v3")),
    ];
    Value::Array(
        services
            .iter()
            .map(|(kind, name, url)| {
                let endpoints: Vec<Value> = ["public", "internal", "admin"]
                    .iter()
                    .map(|interface| {
                        json!({
                            "id": stable_id(&format!("{kind}-{interface}")),
                            "interface": interface,
                            "region_id": region,
                            "url": url,
                            "region": region,
                        })
                    })
                    .collect();
                json!({"endpoints": endpoints, "id": stable_id(kind), "type": kind, "name": name})
            })
            .collect(),
    )
}

/// A 32-digit hex id derived from a name (FNV-1a), stable across runs.
fn stable_id(name: &str) -> String {
    let mut a: u64 = 0xcbf2_9ce4_8422_2325;
    let mut b: u64 = 0x8422_2325_cbf2_9ce4;
    for byte in name.bytes() {
        a = (a ^ u64::from(byte)).wrapping_mul(0x0100_0000_01b3);
        b = (b ^ u64::from(byte)).wrapping_mul(0x0000_0100_0000_01b3 ^ 0x55);
    }
    format!("{a:016x}{b:016x}")
}
