//! Keystone v3, as far as clients and services need it: version discovery,
//! tokens (`tokens`), trusts (`OS-TRUST`, `trusts`), projects (`projects`),
//! and what the `X-Auth-Token` of any request stands for. Roles come from
//! role assignments with the implications `keystone-manage bootstrap` makes
//! (`roles`): the admin user holds `admin` and `service` on its project and
//! `admin` on the system; the other users one role in one project.

use axum::{
    http::{HeaderMap, HeaderValue, Method, StatusCode, header::LOCATION},
    response::Response,
};
use chrono::Utc;
use serde_json::{Value, json};

mod projects;
mod tokens;
mod trust_schema;
mod trusts;

pub(crate) use tokens::Rejected;

use super::{
    http::{Ctx, json},
    roles::{Role, Roles},
    state::Shared,
    tenancy::Caller,
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
        ("POST", ["v3", "OS-TRUST", "trusts"]) => "keystone.create_trust",
        ("GET", ["v3", "OS-TRUST", "trusts"]) => "keystone.list_trusts",
        ("GET", ["v3", "OS-TRUST", "trusts", _]) => "keystone.get_trust",
        ("DELETE", ["v3", "OS-TRUST", "trusts", _]) => "keystone.delete_trust",
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

/// What the live `X-Auth-Token` of a request stands for now.
///
/// # Errors
/// [`Rejected`] when there is no token or Keystone would not validate it.
pub(crate) fn authenticate(shared: &Shared, headers: &HeaderMap) -> Result<Caller, Rejected> {
    let unknown = || Rejected::NotFound("Could not recognize Fernet token".into());
    let token_id = headers
        .get("x-auth-token")
        .and_then(|v| v.to_str().ok())
        .ok_or_else(unknown)?;
    let st = shared.lock();
    let token = st.tokens.get(token_id).ok_or_else(unknown)?;
    tokens::resolve(&st, token_id, token, Utc::now()).map(|r| r.caller)
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
        "keystone.create_token" => tokens::create(shared, ctx),
        "keystone.validate_token" => tokens::validate(shared, ctx),
        "keystone.list_projects" | "keystone.get_project" => {
            projects::handle(shared, operation, ctx)
        }
        op if op.contains("_trust") => trusts::handle(shared, op, ctx),
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

/// Keystone's 401 (an `Unauthorized`, whose details it hides).
fn unauthorized() -> Response {
    error(
        StatusCode::UNAUTHORIZED,
        "The request you have made requires authentication.",
    )
}

/// Keystone's 403 for a policy or rule that refuses `action`
/// (`ForbiddenAction`, which names it).
pub(crate) fn forbidden(action: &str) -> Response {
    error(
        StatusCode::FORBIDDEN,
        &format!("You are not authorized to perform the requested action: {action}."),
    )
}

/// Keystone's 403 for a `Forbidden` raised with a message: a security
/// error, whose message Keystone hides unless `insecure_debug` is on.
pub(crate) fn generic_forbidden() -> Response {
    error(
        StatusCode::FORBIDDEN,
        "You are not authorized to perform the requested action.",
    )
}

/// A role's id (stable across runs, like the rig's own).
pub(crate) fn role_id(role: Role) -> String {
    stable_id(&format!("role-{}", role.name()))
}

/// The role with id `id`.
fn role_by_id(id: &str) -> Option<Role> {
    Role::ALL.into_iter().find(|r| role_id(*r) == id)
}

/// Roles as tokens list them: `[{"id", "name"}]`.
fn role_refs(roles: &Roles) -> Value {
    Value::Array(
        roles
            .iter()
            .map(|r| json!({"id": role_id(r), "name": r.name()}))
            .collect(),
    )
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
