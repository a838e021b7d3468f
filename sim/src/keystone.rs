//! Keystone v3, as far as clients need it: version discovery, tokens by
//! password or application credential (with a catalog pointing back at the
//! simulator), token validation. Tokens expire after the configured TTL.
//! The admin user's tokens (and the application credential's) carry the
//! `admin` role; the member user's only `member` and `reader`.

use axum::{
    http::{HeaderMap, HeaderValue, Method, StatusCode, header::LOCATION},
    response::Response,
};
use base64::Engine as _;
use chrono::{SecondsFormat, Utc};
use serde_json::{Value, json};

use super::{
    http::{Ctx, json},
    state::{Shared, State, Token},
};

/// The operation name of a Keystone request.
pub(crate) fn operation(method: &Method, segs: &[&str]) -> &'static str {
    match (method.as_str(), segs) {
        ("GET", []) => "keystone.versions",
        ("GET", ["v3"]) => "keystone.version",
        ("POST", ["v3", "auth", "tokens"]) => "keystone.create_token",
        ("GET" | "HEAD", ["v3", "auth", "tokens"]) => "keystone.validate_token",
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
    live_token(shared, headers).is_some()
}

/// Whether the `X-Auth-Token` of a request is a live token with the `admin`
/// role: Cinder and Nova exempt such tokens from their list-filter rules.
pub(crate) fn token_is_admin(shared: &Shared, headers: &HeaderMap) -> bool {
    live_token(shared, headers).is_some_and(|t| t.admin)
}

fn live_token(shared: &Shared, headers: &HeaderMap) -> Option<Token> {
    let token = headers.get("x-auth-token").and_then(|v| v.to_str().ok())?;
    let st = shared.lock();
    st.tokens
        .get(token)
        .filter(|t| t.expires > Utc::now())
        .cloned()
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
    let (method, app_cred, admin) = if methods.contains(&"application_credential") {
        let ac = &identity["application_credential"];
        let want = &cfg.application_credential;
        let id_ok = ac["id"].as_str() == Some(want.id.as_str())
            || (ac["name"].as_str() == Some(want.name.as_str())
                && user_matches(&ac["user"], shared));
        if !id_ok || ac["secret"].as_str() != Some(want.secret.as_str()) {
            return unauthorized();
        }
        ("application_credential", true, true)
    } else if methods.contains(&"password") {
        let user = &identity["password"]["user"];
        let password = user["password"].as_str();
        if user_matches(user, shared) && password == Some(cfg.admin.password.as_str()) {
            ("password", false, true)
        } else if member_matches(user, shared) && password == Some(cfg.member.password.as_str()) {
            ("password", false, false)
        } else {
            return unauthorized();
        }
    } else {
        return error(
            StatusCode::UNAUTHORIZED,
            "The request you have made requires authentication.",
        );
    };
    let scoped = app_cred || scope_matches(&body["auth"]["scope"], shared);
    if !scoped && !body["auth"]["scope"].is_null() {
        return unauthorized();
    }
    let mut st = shared.lock();
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
        admin,
    };
    let body = token_body(shared, &mut st, &token, scoped);
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
    let body = token_body(shared, &mut st, &token, true);
    let mut r = json(StatusCode::OK, &body);
    if let Ok(v) = HeaderValue::from_str(&subject) {
        r.headers_mut().insert("x-subject-token", v);
    }
    r
}

fn user_matches(user: &Value, shared: &Shared) -> bool {
    let admin = &shared.config.admin;
    let st = shared.lock();
    let by_id = user["id"].as_str() == Some(st.user_id.as_str());
    let by_name = user["name"].as_str() == Some(admin.username.as_str())
        && domain_matches(&user["domain"], &admin.domain_name);
    by_id || by_name
}

/// The member user, by name in its domain or by id.
fn member_matches(user: &Value, shared: &Shared) -> bool {
    let cfg = &shared.config;
    user["id"].as_str() == Some(member_user_id().as_str())
        || (user["name"].as_str() == Some(cfg.member.username.as_str())
            && domain_matches(&user["domain"], &cfg.admin.domain_name))
}

/// The member user's id: stable, and drawn from no seeded generator so that the
/// ids of everything else stay what they were.
fn member_user_id() -> String {
    stable_id("user-member")
}

fn domain_matches(domain: &Value, name: &str) -> bool {
    domain["name"].as_str().is_some_and(|n| n == name)
        || domain["id"].as_str().is_some_and(|id| id == "default")
}

fn scope_matches(scope: &Value, shared: &Shared) -> bool {
    let project = &scope["project"];
    let st = shared.lock();
    project["id"].as_str() == Some(st.project_id.as_str())
        || (project["name"].as_str() == Some(shared.config.admin.project_name.as_str())
            && domain_matches(&project["domain"], &shared.config.admin.domain_name))
}

fn token_body(shared: &Shared, st: &mut State, token: &Token, scoped: bool) -> Value {
    let cfg = &shared.config;
    let stamp = |t: chrono::DateTime<Utc>| t.to_rfc3339_opts(SecondsFormat::Micros, true);
    let domain = json!({"id": "default", "name": cfg.admin.domain_name});
    let (user_id, user_name) = if token.admin {
        (st.user_id.clone(), cfg.admin.username.as_str())
    } else {
        (member_user_id(), cfg.member.username.as_str())
    };
    let mut body = json!({
        "methods": token.methods,
        "user": {"domain": domain, "id": user_id, "name": user_name, "password_expires_at": null},
        "audit_ids": [base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(st.rng.bytes(16))],
        "expires_at": stamp(token.expires),
        "issued_at": stamp(token.issued),
    });
    if scoped {
        body["project"] =
            json!({"domain": domain, "id": st.project_id, "name": cfg.admin.project_name});
        body["is_domain"] = json!(false);
        let mut roles = vec![
            json!({"id": stable_id("role-member"), "name": "member"}),
            json!({"id": stable_id("role-reader"), "name": "reader"}),
        ];
        if token.admin {
            roles.insert(0, json!({"id": stable_id("role-admin"), "name": "admin"}));
        }
        body["roles"] = json!(roles);
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
