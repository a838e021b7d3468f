//! Keystone's trusts, `/v3/OS-TRUST/trusts`: create, list, get, delete, as
//! keystone/api/trusts.py, keystone/trust/core.py, keystone/trust/schema.py
//! and keystone/common/policies/trust.py define them (Keystone 30):
//!
//! * create (`identity:create_trust`): a project-scoped token of the trustor
//!   itself; never an application-credential token, restricted or not (the
//!   fix of CVE-2026-43000 refuses them for every trust operation); at least
//!   one role when a project is named; the trustee must exist (404); the
//!   trustor must hold every role in the project (404 `RoleNotFound`, not a
//!   403); a trust-scoped token cannot redelegate a trust made without
//!   `allow_redelegation` (403); the same trustor, trustee, project,
//!   impersonation and (non-null) `expires_at` twice is a 409, deleted
//!   trusts included (the unique constraint keeps their rows);
//! * get: the trustor, the trustee or an admin; list: admins, or with
//!   `?trustor_user_id=`/`?trustee_user_id=` naming the caller;
//! * delete: the trustor or an admin; a missing trust is a 404 before any
//!   policy. Tokens scoped to a deleted trust stop working at once.
//!
//! Redelegation (`allow_redelegation: true`) is not simulated (501).

use axum::{http::StatusCode, response::Response};
use chrono::{DateTime, SecondsFormat, Utc};
use serde_json::{Value, json};

use super::{
    error, forbidden, generic_forbidden, role_by_id, role_id,
    trust_schema::{NewTrust, RoleRef, parse},
};
use crate::{
    http::{Ctx, empty, json},
    roles::{Role, Roles},
    state::{Fail, Shared, State, Trust},
    tenancy::Caller,
};

/// The refusal of every trust operation by an application-credential token.
const APP_CRED: &str = "Using method 'application_credential' is not allowed for managing trusts";

pub(super) fn handle(shared: &Shared, operation: &str, ctx: &Ctx) -> Response {
    match operation {
        "keystone.create_trust" => create(shared, ctx),
        "keystone.list_trusts" => list(shared, ctx),
        "keystone.get_trust" => get(shared, ctx),
        _ => delete(shared, ctx),
    }
}

fn create(shared: &Shared, ctx: &Ctx) -> Response {
    let Ok(body) = ctx.json::<Value>() else {
        return error(StatusCode::BAD_REQUEST, "Malformed request body.");
    };
    let new = match parse(&body) {
        Ok(new) => new,
        Err(detail) => return error(StatusCode::BAD_REQUEST, &detail),
    };
    let caller = &ctx.caller;
    // `user_id:%(target.trust.trustor_user_id)s`, project scope only.
    if caller.system || caller.project_id.is_empty() || caller.user_id != new.trustor_user_id {
        return forbidden("identity:create_trust");
    }
    if caller.application_credential {
        return forbidden(APP_CRED);
    }
    if new.project_id.is_some() && new.roles.is_empty() {
        return forbidden("At least one role should be specified");
    }
    let mut st = shared.lock();
    if st.user(&new.trustee_user_id).is_none() {
        return not_found("user", &new.trustee_user_id);
    }
    let roles = match held_roles(&st, &new) {
        Ok(roles) => roles,
        Err(fail) => return error(fail.status, &fail.message),
    };
    let expires_at = match new.expires_at.as_deref().map(parse_expiry).transpose() {
        Ok(e) => e,
        Err(fail) => return error(fail.status, &fail.message),
    };
    // A trust-scoped token redelegates its trust, which was made with a
    // redelegation depth of 0: `_validate_redelegation` refuses.
    if caller.trust_id.is_some() {
        return generic_forbidden();
    }
    if new.allow_redelegation {
        return error(
            StatusCode::NOT_IMPLEMENTED,
            "The simulator does not support trust redelegation.",
        );
    }
    let id = st.rng.hex_id();
    let trust = Trust {
        id: id.clone(),
        trustor_user_id: new.trustor_user_id,
        trustee_user_id: new.trustee_user_id,
        project_id: new.project_id,
        impersonation: new.impersonation,
        roles,
        expires_at,
        remaining_uses: new.remaining_uses,
        deleted_at: None,
    };
    if st.trusts.iter().any(|t| duplicate(t, &trust)) {
        return error(
            StatusCode::CONFLICT,
            &format!(
                "Conflict occurred attempting to store trust - Duplicate entry found with ID {id}."
            ),
        );
    }
    let body = json!({"trust": render(&ctx.base, &trust, true)});
    st.trusts.push(trust);
    json(StatusCode::CREATED, &body)
}

/// The roles of a request, if the trustor holds each in the project
/// (`_normalize_role_list`, `_require_trustor_has_role_in_project`).
fn held_roles(st: &State, new: &NewTrust) -> Result<Vec<Role>, Fail> {
    let mut ids = Vec::new();
    for r in &new.roles {
        ids.push(match r {
            RoleRef::Id(id) => id.clone(),
            RoleRef::Name(name) => Role::from_name(name)
                .map(role_id)
                .ok_or_else(|| Fail::not_found(format!("Role {name} is not defined")))?,
        });
    }
    let held = match &new.project_id {
        Some(p) => {
            if !st.projects.iter().any(|x| &x.id == p) {
                return Err(Fail::not_found(format!("Could not find project: {p}.")));
            }
            st.user(&new.trustor_user_id)
                .map(|u| u.roles_on(p))
                .unwrap_or_default()
        }
        None => Roles::default(),
    };
    ids.iter()
        .map(|id| {
            role_by_id(id)
                .filter(|r| held.has(*r))
                .ok_or_else(|| Fail::not_found(format!("Could not find role: {id}.")))
        })
        .collect()
}

/// Keystone's `parse_expiration_date`.
fn parse_expiry(text: &str) -> Result<DateTime<Utc>, Fail> {
    let text = if text.ends_with('Z') {
        text.to_owned()
    } else {
        format!("{text}Z")
    };
    let tail = " The server could not comply with the request since it is either malformed or otherwise incorrect. The client is assumed to be in error.";
    let at = DateTime::parse_from_rfc3339(&text)
        .map(|t| t.with_timezone(&Utc))
        .map_err(|_| Fail::bad_request(format!("Timestamp not in expected format.{tail}")))?;
    if at < Utc::now() {
        return Err(Fail::bad_request(format!(
            "The 'expires_at' must not be before now.{tail}"
        )));
    }
    Ok(at)
}

/// The unique constraint `duplicate_trust_constraint`: a NULL `expires_at`
/// or `project_id` never collides (PostgreSQL and MySQL treat NULLs as
/// distinct).
fn duplicate(old: &Trust, new: &Trust) -> bool {
    old.trustor_user_id == new.trustor_user_id
        && old.trustee_user_id == new.trustee_user_id
        && old.project_id.is_some()
        && old.project_id == new.project_id
        && old.impersonation == new.impersonation
        && old.expires_at.is_some()
        && old.expires_at == new.expires_at
}

fn list(shared: &Shared, ctx: &Ctx) -> Response {
    let caller = &ctx.caller;
    let reader = caller.admin() || system_reader(caller);
    let trustor = ctx.q("trustor_user_id");
    let trustee = ctx.q("trustee_user_id");
    let refused = match (trustor, trustee) {
        (Some(id), _) => {
            (!reader && caller.user_id != id).then_some("identity:list_trusts_for_trustor")
        }
        (None, Some(id)) => {
            (!reader && caller.user_id != id).then_some("identity:list_trusts_for_trustee")
        }
        (None, None) => (!reader).then_some("identity:list_trusts"),
    };
    if let Some(action) = refused {
        return forbidden(action);
    }
    if caller.application_credential {
        return forbidden(APP_CRED);
    }
    let st = shared.lock();
    let trusts: Vec<Value> = st
        .trusts
        .iter()
        .filter(|t| t.deleted_at.is_none())
        .filter(|t| match (trustor, trustee) {
            (Some(id), _) => t.trustor_user_id == id,
            (None, Some(id)) => t.trustee_user_id == id,
            (None, None) => true,
        })
        .map(|t| render(&ctx.base, t, false))
        .collect();
    let query = if ctx.raw_query.is_empty() {
        String::new()
    } else {
        format!("?{}", ctx.raw_query)
    };
    json(
        StatusCode::OK,
        &json!({"trusts": trusts, "links": {
            "self": format!("{}/identity/v3/OS-TRUST/trusts{query}", ctx.base),
            "previous": null,
            "next": null,
        }}),
    )
}

fn get(shared: &Shared, ctx: &Ctx) -> Response {
    let id = ctx.seg(3);
    let st = shared.lock();
    let Some(trust) = st.live_trust(id) else {
        return not_found("trust", id);
    };
    let caller = &ctx.caller;
    let party = caller.user_id == trust.trustor_user_id || caller.user_id == trust.trustee_user_id;
    if !(party || caller.admin() || system_reader(caller)) {
        return forbidden("identity:get_trust");
    }
    if caller.application_credential {
        return forbidden(APP_CRED);
    }
    json(
        StatusCode::OK,
        &json!({"trust": render(&ctx.base, trust, true)}),
    )
}

fn delete(shared: &Shared, ctx: &Ctx) -> Response {
    let id = ctx.seg(3);
    let mut st = shared.lock();
    let Some(trust) = st.live_trust(id) else {
        return not_found("trust", id);
    };
    let caller = &ctx.caller;
    if !(caller.admin() || caller.user_id == trust.trustor_user_id) {
        return forbidden("identity:delete_trust");
    }
    if caller.application_credential {
        return forbidden(APP_CRED);
    }
    st.delete_trust(id);
    empty(StatusCode::NO_CONTENT)
}

fn system_reader(caller: &Caller) -> bool {
    caller.system && caller.roles.has(Role::Reader)
}

fn not_found(kind: &str, id: &str) -> Response {
    error(
        StatusCode::NOT_FOUND,
        &format!("Could not find {kind}: {id}."),
    )
}

/// A trust as the API shows it; `with_roles` for get and create (a list
/// leaves the roles out).
fn render(base: &str, t: &Trust, with_roles: bool) -> Value {
    let stamp = |at: DateTime<Utc>| at.to_rfc3339_opts(SecondsFormat::Micros, true);
    let mut body = json!({
        "id": t.id,
        "trustor_user_id": t.trustor_user_id,
        "trustee_user_id": t.trustee_user_id,
        "project_id": t.project_id,
        "impersonation": t.impersonation,
        "expires_at": t.expires_at.map(stamp),
        "remaining_uses": t.remaining_uses,
        "redelegated_trust_id": null,
        "redelegation_count": 0,
        "deleted_at": t.deleted_at.map(stamp),
        "links": {"self": format!("{base}/identity/v3/OS-TRUST/trusts/{}", t.id)},
    });
    if with_roles {
        let roles: Vec<Value> = t
            .roles
            .iter()
            .map(|r| {
                let id = role_id(*r);
                json!({
                    "id": id, "name": r.name(), "domain_id": null, "description": null,
                    "options": {}, "links": {"self": format!("{base}/identity/v3/roles/{id}")},
                })
            })
            .collect();
        body["roles"] = Value::Array(roles);
        // Keystone builds this link without the OS-TRUST/trusts part.
        body["roles_links"] = json!({
            "self": format!("{base}/identity/v3/{}/roles", t.id),
            "next": null,
            "previous": null,
        });
    }
    body
}

#[cfg(test)]
mod tests {
    use super::*;

    fn trust(expires: Option<DateTime<Utc>>) -> Trust {
        Trust {
            id: "t".into(),
            trustor_user_id: "a".into(),
            trustee_user_id: "b".into(),
            project_id: Some("p".into()),
            impersonation: true,
            roles: vec![Role::Member],
            expires_at: expires,
            remaining_uses: None,
            deleted_at: None,
        }
    }

    #[test]
    fn only_trusts_with_the_same_expiry_collide() {
        let at = Utc::now();
        assert!(!duplicate(&trust(None), &trust(None)));
        assert!(duplicate(&trust(Some(at)), &trust(Some(at))));
        let mut deleted = trust(Some(at));
        deleted.deleted_at = Some(at);
        assert!(duplicate(&deleted, &trust(Some(at))));
        assert!(!duplicate(
            &trust(Some(at)),
            &trust(Some(at + chrono::Duration::seconds(1)))
        ));
    }
}
