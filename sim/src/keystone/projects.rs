//! Keystone's projects as a client reads them (`GET /v3/projects`,
//! `GET /v3/projects/{id}`), e.g. openstacksdk's `get_project('demo')`,
//! which asks for the id first and then lists by name. Listing is for
//! admins (`identity:list_projects`); a project member may read its own.

use axum::{http::StatusCode, response::Response};
use serde_json::{Value, json};

use super::{error, forbidden};
use crate::{
    http::{Ctx, json},
    state::Shared,
    tenancy::Project,
};

pub(super) fn handle(shared: &Shared, operation: &str, ctx: &Ctx) -> Response {
    let st = shared.lock();
    if operation == "keystone.get_project" {
        let id = ctx.seg(2);
        let found = st.projects.iter().find(|p| p.id == id);
        return match found {
            Some(p) if ctx.caller.admin() || ctx.caller.project_id == p.id => {
                json(StatusCode::OK, &json!({"project": render(&ctx.base, p)}))
            }
            Some(_) => forbidden("identity:get_project"),
            None => error(
                StatusCode::NOT_FOUND,
                &format!("Could not find project: {id}."),
            ),
        };
    }
    if !ctx.caller.admin() {
        return forbidden("identity:list_projects");
    }
    // The rig answers `domain_id=None` (what openstacksdk sends when no
    // domain is given) as if no domain filter were set.
    let domain = ctx.q("domain_id").filter(|d| *d != "None");
    let list: Vec<Value> = st
        .projects
        .iter()
        .filter(|p| ctx.q("name").is_none_or(|n| p.name == n))
        .filter(|_| domain.is_none_or(|d| d == "default"))
        .map(|p| render(&ctx.base, p))
        .collect();
    let query = if ctx.raw_query.is_empty() {
        String::new()
    } else {
        format!("?{}", ctx.raw_query)
    };
    json(
        StatusCode::OK,
        &json!({"projects": list, "links": {
            "next": null,
            "self": format!("{}/identity/v3/projects{query}", ctx.base),
            "previous": null,
        }}),
    )
}

fn render(base: &str, p: &Project) -> Value {
    json!({
        "id": p.id, "name": p.name, "domain_id": "default", "description": p.description,
        "enabled": true, "parent_id": "default", "is_domain": false, "tags": [], "options": {},
        "links": {"self": format!("{base}/identity/v3/projects/{}", p.id)},
    })
}
