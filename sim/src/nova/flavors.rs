//! Nova flavors as `nova/api/openstack/compute/flavors.py`,
//! `flavor_access.py` and `flavors_extraspecs.py` serve them: anyone lists
//! and reads public flavors and the private ones shared with its project;
//! an admin sees every flavor with `is_public=None`, and alone creates,
//! describes (2.55), deletes, shares and sets extra specs.

use std::collections::BTreeMap;

use axum::http::{Method, StatusCode};
use serde_json::{Value, json};

use super::{Reply, links};
use crate::{
    http::{Ctx, Mv},
    state::{Fail, Flavor, State},
};

pub(super) fn handle(st: &mut State, operation: &str, ctx: &Ctx, id: &str) -> Reply {
    match operation {
        "nova.list_flavors" | "nova.list_flavors_detail" => {
            list(st, ctx, operation.ends_with("detail"))
        }
        "nova.get_flavor" => {
            let f = visible(st, ctx, id)?;
            Ok((StatusCode::OK, json!({"flavor": render(f, ctx, true)})))
        }
        "nova.create_flavor" => create(st, ctx),
        "nova.update_flavor" => {
            if ctx.mv < Mv(2, 55) {
                return Err(Fail::new(
                    StatusCode::METHOD_NOT_ALLOWED,
                    "The method specified is not allowed for this resource.",
                ));
            }
            admin_only(ctx, "os-flavor-manage:update")?;
            let body: Value = ctx.json()?;
            let description = match &body["flavor"]["description"] {
                Value::String(d) => Some(d.clone()),
                Value::Null if body["flavor"].get("description").is_some() => None,
                _ => {
                    return Err(Fail::bad_request(
                        "Invalid input for field/attribute flavor. 'description' is a required property",
                    ));
                }
            };
            let f = flavor_mut(st, ctx, id)?;
            f.description = description;
            let f = f.clone();
            Ok((StatusCode::OK, json!({"flavor": render(&f, ctx, true)})))
        }
        "nova.delete_flavor" => {
            admin_only(ctx, "os-flavor-manage:delete")?;
            visible(st, ctx, id)?;
            st.flavors.retain(|f| f.id != id);
            Ok((StatusCode::ACCEPTED, Value::Null))
        }
        "nova.list_flavor_access" => {
            admin_only(ctx, "os-flavor-access")?;
            let f = visible(st, ctx, id)?;
            if f.is_public {
                return Err(Fail::not_found(
                    "Access list not available for public flavors.",
                ));
            }
            Ok((StatusCode::OK, access_list(f)))
        }
        "nova.flavor_action" => action(st, ctx, id),
        _ => extra_specs(st, ctx, id),
    }
}

fn forbidden(policy: &str) -> Fail {
    Fail::new(
        StatusCode::FORBIDDEN,
        format!("Policy doesn't allow os_compute_api:{policy} to be performed."),
    )
}

fn admin_only(ctx: &Ctx, policy: &str) -> Result<(), Fail> {
    if ctx.caller.admin() {
        Ok(())
    } else {
        Err(forbidden(policy))
    }
}

/// Whether the caller may see a flavor: admins all, others public ones
/// and those shared with their project.
fn sees(ctx: &Ctx, f: &Flavor) -> bool {
    ctx.caller.admin() || f.is_public || f.access.contains(&ctx.caller.project_id)
}

fn not_found(id: &str) -> Fail {
    Fail::not_found(format!("Flavor {id} could not be found."))
}

fn visible<'a>(st: &'a State, ctx: &Ctx, id: &str) -> Result<&'a Flavor, Fail> {
    st.flavors
        .iter()
        .find(|f| f.id == id && sees(ctx, f))
        .ok_or_else(|| not_found(id))
}

fn flavor_mut<'a>(st: &'a mut State, ctx: &Ctx, id: &str) -> Result<&'a mut Flavor, Fail> {
    st.flavors
        .iter_mut()
        .find(|f| f.id == id && sees(ctx, f))
        .ok_or_else(|| not_found(id))
}

/// A flavor as Nova's view builder shows it at the request's microversion.
pub(crate) fn render(f: &Flavor, ctx: &Ctx, detail: bool) -> Value {
    let mut body = json!({"id": f.id, "name": f.name, "links": links(&ctx.base, "flavors", &f.id)});
    if detail {
        body["ram"] = json!(f.ram);
        body["disk"] = json!(f.disk);
        body["swap"] = if f.swap == 0 && ctx.mv < Mv(2, 75) {
            json!("")
        } else {
            json!(f.swap)
        };
        body["OS-FLV-EXT-DATA:ephemeral"] = json!(f.ephemeral);
        body["vcpus"] = json!(f.vcpus);
        body["os-flavor-access:is_public"] = json!(f.is_public);
        if ctx.mv < Mv(2, 102) {
            body["OS-FLV-DISABLED:disabled"] = json!(false);
            body["rxtx_factor"] = json!(f.rxtx_factor);
        }
        if ctx.mv >= Mv(2, 61) {
            body["extra_specs"] = json!(f.extra_specs);
        }
    }
    if ctx.mv >= Mv(2, 55) {
        body["description"] = json!(f.description);
    }
    body
}

/// Nova's `_parse_is_public` (admins only; everyone else gets public and
/// shared flavors).
fn parse_is_public(v: Option<&str>) -> Result<Option<bool>, Fail> {
    match v.map(str::to_ascii_lowercase).as_deref() {
        None => Ok(Some(true)),
        Some("none" | "null") => Ok(None),
        Some("1" | "t" | "true" | "on" | "y" | "yes") => Ok(Some(true)),
        Some("0" | "f" | "false" | "off" | "n" | "no") => Ok(Some(false)),
        Some(_) => Err(Fail::bad_request(format!(
            "Invalid is_public filter [{}]",
            v.unwrap_or_default()
        ))),
    }
}

fn list(st: &State, ctx: &Ctx, detail: bool) -> Reply {
    let is_public = if ctx.caller.admin() {
        parse_is_public(ctx.q("is_public"))?
    } else {
        Some(true)
    };
    let min = |key: &str, what: &str| -> Result<Option<u32>, Fail> {
        ctx.q(key)
            .map(|v| {
                v.parse::<u32>()
                    .map_err(|_| Fail::bad_request(format!("Invalid {what} filter [{v}]")))
            })
            .transpose()
    };
    let (min_ram, min_disk) = (min("minRam", "minRam")?, min("minDisk", "minDisk")?);
    let mut flavors: Vec<&Flavor> = st
        .flavors
        .iter()
        .filter(|f| match is_public {
            None => true,
            // flavor_get_all: `is_public=True` also takes the private
            // flavors shared with the caller's project.
            Some(true) => f.is_public || f.access.contains(&ctx.caller.project_id),
            Some(false) => !f.is_public,
        })
        .filter(|f| min_ram.is_none_or(|m| f.ram >= m))
        .filter(|f| min_disk.is_none_or(|m| f.disk >= m))
        .filter(|f| ctx.q("name").is_none_or(|n| f.name == n))
        .collect();
    flavors.sort_by(|a, b| a.id.cmp(&b.id));
    let list: Vec<Value> = flavors.iter().map(|f| render(f, ctx, detail)).collect();
    Ok((StatusCode::OK, json!({ "flavors": list })))
}

fn create(st: &mut State, ctx: &Ctx) -> Reply {
    admin_only(ctx, "os-flavor-manage:create")?;
    let body: Value = ctx.json()?;
    let v = &body["flavor"];
    let invalid =
        |field: &str| Fail::bad_request(format!("Invalid input for field/attribute {field}."));
    let name = v["name"]
        .as_str()
        .map(str::trim)
        .filter(|n| !n.is_empty() && n.len() <= 255)
        .ok_or_else(|| invalid("name"))?
        .to_owned();
    // Nova accepts integers and integer strings for the sizes.
    let number = |field: &str, min: u32, required: bool| -> Result<u32, Fail> {
        match &v[field] {
            Value::Null if !required => Some(0),
            Value::Number(n) => n.as_u64().and_then(|n| u32::try_from(n).ok()),
            Value::String(s) => s.trim().parse().ok(),
            _ => None,
        }
        .filter(|n| *n >= min)
        .ok_or_else(|| invalid(field))
    };
    let ram = number("ram", 1, true)?;
    let vcpus = number("vcpus", 1, true)?;
    let disk = number("disk", 0, true)?;
    let ephemeral = number("OS-FLV-EXT-DATA:ephemeral", 0, false)?;
    let swap = number("swap", 0, false)?;
    let is_public = match &v["os-flavor-access:is_public"] {
        Value::Null => true,
        Value::Bool(b) => *b,
        _ => return Err(invalid("os-flavor-access:is_public")),
    };
    let id = match &v["id"] {
        Value::String(id) => id.clone(),
        Value::Number(n) => n.to_string(),
        _ => st.uuid(),
    };
    if st.flavors.iter().any(|f| f.name == name) {
        return Err(Fail::conflict(format!(
            "Flavor with name {name} already exists."
        )));
    }
    if st.flavors.iter().any(|f| f.id == id) {
        return Err(Fail::conflict(format!(
            "Flavor with ID {id} already exists."
        )));
    }
    let flavor = Flavor {
        ephemeral,
        swap,
        rxtx_factor: v["rxtx_factor"].as_f64().unwrap_or(1.0),
        is_public,
        description: if ctx.mv >= Mv(2, 55) {
            v["description"].as_str().map(str::to_owned)
        } else {
            None
        },
        ..Flavor::public(&id, &name, vcpus, ram, disk)
    };
    let shown = render(&flavor, ctx, true);
    st.flavors.push(flavor);
    Ok((StatusCode::OK, json!({ "flavor": shown })))
}

fn access_list(f: &Flavor) -> Value {
    let list: Vec<Value> = f
        .access
        .iter()
        .map(|p| json!({"flavor_id": f.id, "tenant_id": p}))
        .collect();
    json!({ "flavor_access": list })
}

/// `addTenantAccess` / `removeTenantAccess`.
fn action(st: &mut State, ctx: &Ctx, id: &str) -> Reply {
    let body: Value = ctx.json()?;
    let (add, tenant) = if let Some(a) = body.get("addTenantAccess") {
        (true, a["tenant"].as_str())
    } else if let Some(r) = body.get("removeTenantAccess") {
        (false, r["tenant"].as_str())
    } else {
        return Err(Fail::bad_request(
            "The simulator does not support this flavor action.",
        ));
    };
    admin_only(
        ctx,
        if add {
            "os-flavor-access:add_tenant_access"
        } else {
            "os-flavor-access:remove_tenant_access"
        },
    )?;
    let tenant = tenant
        .ok_or_else(|| Fail::bad_request("Invalid input for field/attribute tenant."))?
        .to_owned();
    // identity.verify_project_id: Keystone must know the project.
    if add && !st.projects.iter().any(|p| p.id == tenant) {
        return Err(Fail::bad_request(format!(
            "Project ID {tenant} is not a valid project."
        )));
    }
    let mv = ctx.mv;
    let f = flavor_mut(st, ctx, id)?;
    if add {
        if mv >= Mv(2, 7) && f.is_public {
            return Err(Fail::conflict("Can not add access to a public flavor."));
        }
        if f.access.contains(&tenant) {
            return Err(Fail::conflict(format!(
                "Flavor access already exists for flavor {id} and project {tenant} combination."
            )));
        }
        f.access.push(tenant);
    } else {
        let before = f.access.len();
        f.access.retain(|p| *p != tenant);
        if f.access.len() == before {
            return Err(Fail::not_found(format!(
                "Flavor access not found for {id} / {tenant} combination."
            )));
        }
    }
    Ok((StatusCode::OK, access_list(f)))
}

/// `/flavors/{id}/os-extra_specs[/{key}]`: reading is for anyone who sees
/// the flavor, changing for admins.
fn extra_specs(st: &mut State, ctx: &Ctx, id: &str) -> Reply {
    let key = ctx
        .segs
        .iter()
        .skip_while(|s| *s != "os-extra_specs")
        .nth(1)
        .cloned()
        .unwrap_or_default();
    let body: Option<Value> = if matches!(ctx.method, Method::POST | Method::PUT) {
        Some(ctx.json()?)
    } else {
        None
    };
    match ctx.method {
        Method::POST => admin_only(ctx, "os-flavor-extra-specs:create")?,
        Method::PUT => admin_only(ctx, "os-flavor-extra-specs:update")?,
        Method::DELETE => admin_only(ctx, "os-flavor-extra-specs:delete")?,
        _ => {}
    }
    let specs = |v: &Value| -> Result<BTreeMap<String, String>, Fail> {
        let map = v
            .as_object()
            .ok_or_else(|| Fail::bad_request("Invalid input for field/attribute extra_specs."))?;
        map.iter()
            .map(|(k, v)| {
                let text = match v {
                    Value::String(s) => s.clone(),
                    Value::Number(n) => n.to_string(),
                    Value::Bool(b) => b.to_string(),
                    _ => {
                        return Err(Fail::bad_request(
                            "Invalid input for field/attribute extra_specs.",
                        ));
                    }
                };
                Ok((k.clone(), text))
            })
            .collect()
    };
    let missing = || Fail::not_found(format!("Flavor {id} has no extra specs with key {key}."));
    let f = flavor_mut(st, ctx, id)?;
    match ctx.method {
        Method::GET if key.is_empty() => {
            Ok((StatusCode::OK, json!({"extra_specs": f.extra_specs})))
        }
        Method::GET => f
            .extra_specs
            .get(&key)
            .map(|v| (StatusCode::OK, json!({ key.as_str(): v })))
            .ok_or_else(missing),
        Method::POST => {
            let body = body.unwrap_or_default();
            let given = specs(&body["extra_specs"])?;
            f.extra_specs.extend(given);
            Ok((StatusCode::OK, json!({"extra_specs": body["extra_specs"]})))
        }
        Method::PUT => {
            let body = body.unwrap_or_default();
            let given = specs(&body)?;
            if !given.contains_key(&key) {
                return Err(Fail::bad_request("Request body and URI mismatch"));
            }
            f.extra_specs.extend(given);
            Ok((StatusCode::OK, body))
        }
        _ => {
            f.extra_specs.remove(&key).ok_or_else(missing)?;
            Ok((StatusCode::OK, Value::Null))
        }
    }
}
