//! Cinder volume types (`/types`) and group types (`/group_types`, from
//! microversion 3.11, with their `group_specs`), as in Cinder's
//! `api/v3/types.py`, `api/contrib/types_manage.py`, `api/v3/group_types.py`
//! and `api/v3/group_specs.py`: anyone lists and reads the public ones;
//! creating, changing and deleting them, and reading group specs, is for
//! admins. A type still used by a volume (a group) cannot be deleted, nor
//! can the default volume type.

use std::collections::BTreeMap;

use axum::http::{Method, StatusCode};
use serde_json::{Value, json};

use super::Reply;
use crate::{
    http::{Ctx, Mv},
    state::{Fail, GONE, GroupType, State, VolumeType},
};

/// The id of `__DEFAULT__`, the volume type of every volume made without one.
pub(crate) const DEFAULT_TYPE_ID: &str = "4800ddd8-0a6f-4b1c-9b00-4bbacd4d1f7c";

/// The public group type the simulator starts with (the rig's is `osrig-group`).
const GROUP_TYPE_ID: &str = "7270c56e-6354-4528-8e8b-f54dee2232c8";

/// Cinder's own group type for migrated consistency groups, refused by the groups API.
const CGSNAPSHOT_TYPE_ID: &str = "a1d6c3b4-2f0e-4d5a-9c8b-7e6f5a4b3c2d";

/// The name of Cinder's reserved group type.
pub(crate) const CGSNAPSHOT_TYPE_NAME: &str = "default_cgsnapshot_type";

/// Seeds `__DEFAULT__` and the two group types.
pub(crate) fn seed(st: &mut State) {
    st.volume_types.push(VolumeType {
        id: DEFAULT_TYPE_ID.into(),
        name: "__DEFAULT__".into(),
        description: Some("Default Volume Type".into()),
        is_public: true,
        extra_specs: BTreeMap::new(),
    });
    let consistent = BTreeMap::from([(
        "consistent_group_snapshot_enabled".to_owned(),
        "<is> True".to_owned(),
    )]);
    st.group_types.push(GroupType {
        id: GROUP_TYPE_ID.into(),
        name: "default_group_type".into(),
        description: Some("Default group type".into()),
        is_public: true,
        group_specs: consistent.clone(),
    });
    st.group_types.push(GroupType {
        id: CGSNAPSHOT_TYPE_ID.into(),
        name: CGSNAPSHOT_TYPE_NAME.into(),
        description: Some("Default group type for migrating cgsnapshot".into()),
        is_public: true,
        group_specs: consistent,
    });
}

pub(super) fn handle(st: &mut State, operation: &str, ctx: &Ctx, id: &str) -> Reply {
    if operation.contains("group_type") {
        if ctx.mv < Mv(3, 11) {
            return Err(Fail::not_found("The resource could not be found."));
        }
        return group_types(st, operation, ctx, id);
    }
    match operation {
        "cinder.list_volume_types" => {
            let list: Vec<Value> = st
                .volume_types
                .iter()
                .filter(|t| listed(ctx, t.is_public))
                .map(|t| {
                    let mut body = render_volume_type(t, ctx);
                    body["os-volume-type-access:is_public"] = json!(t.is_public);
                    body
                })
                .collect();
            Ok((StatusCode::OK, json!({ "volume_types": list })))
        }
        "cinder.get_volume_type" => {
            let t = volume_type(st, ctx, id)?;
            let mut body = render_volume_type(t, ctx);
            if ctx.caller.admin() {
                body["os-volume-type-access:is_public"] = json!(t.is_public);
            }
            Ok((StatusCode::OK, json!({ "volume_type": body })))
        }
        "cinder.create_volume_type" => create_volume_type(st, ctx),
        "cinder.update_volume_type" => update_volume_type(st, ctx, id),
        "cinder.delete_volume_type" => delete_volume_type(st, ctx, id),
        _ => Err(Fail::not_found("The resource could not be found.")),
    }
}

/// Cinder's `_parse_is_public` for admins (`none` lists every type, no
/// value only the public ones); everyone else sees the public ones.
fn listed(ctx: &Ctx, is_public: bool) -> bool {
    if !ctx.caller.admin() {
        return is_public;
    }
    match ctx.q("is_public").map(str::to_ascii_lowercase).as_deref() {
        Some("none") => true,
        Some("false" | "0" | "f" | "no" | "n" | "off") => !is_public,
        _ => is_public,
    }
}

fn forbidden(policy: &str) -> Fail {
    Fail::new(
        StatusCode::FORBIDDEN,
        format!("Policy doesn't allow {policy} to be performed."),
    )
}

fn admin_only(ctx: &Ctx, policy: &str) -> Result<(), Fail> {
    if ctx.caller.admin() {
        Ok(())
    } else {
        Err(forbidden(policy))
    }
}

/// `strutils.bool_from_string(value, strict=True)` of a JSON value.
fn strict_bool(v: &Value, field: &str) -> Result<bool, Fail> {
    match v {
        Value::Bool(b) => Ok(*b),
        Value::String(s) => match s.to_ascii_lowercase().as_str() {
            "1" | "t" | "true" | "on" | "y" | "yes" => Ok(true),
            "0" | "f" | "false" | "off" | "n" | "no" => Ok(false),
            _ => Err(Fail::bad_request(format!(
                "Invalid input for field/attribute {field}."
            ))),
        },
        _ => Err(Fail::bad_request(format!(
            "Invalid input for field/attribute {field}."
        ))),
    }
}

fn string_map(v: &Value, field: &str) -> Result<BTreeMap<String, String>, Fail> {
    if v.is_null() {
        return Ok(BTreeMap::new());
    }
    serde_json::from_value(v.clone())
        .map_err(|_| Fail::bad_request(format!("Invalid input for field/attribute {field}.")))
}

fn name_of(v: &Value, what: &str) -> Result<String, Fail> {
    match v.as_str().map(str::trim) {
        Some(n) if !n.is_empty() && n.len() <= 255 => Ok(n.to_owned()),
        _ => Err(Fail::bad_request(format!(
            "Invalid input for field/attribute name. {what} name is required."
        ))),
    }
}

/// A volume type by id (or `default`), as the caller may see it.
fn volume_type<'a>(st: &'a State, ctx: &Ctx, id: &str) -> Result<&'a VolumeType, Fail> {
    let id = if id == "default" { DEFAULT_TYPE_ID } else { id };
    st.volume_types
        .iter()
        .find(|t| t.id == id && (t.is_public || ctx.caller.admin()))
        .ok_or_else(|| Fail::not_found(format!("Volume type {id} could not be found.")))
}

/// The id of the volume type a request names by id or name (volume create,
/// group create).
pub(crate) fn volume_type_id(st: &State, name_or_id: &str) -> Result<String, Fail> {
    st.volume_types
        .iter()
        .find(|t| t.id == name_or_id)
        .or_else(|| st.volume_types.iter().find(|t| t.name == name_or_id))
        .map(|t| t.id.clone())
        .ok_or_else(|| {
            Fail::not_found(format!(
                "Volume type with name {name_or_id} could not be found."
            ))
        })
}

/// The name of a volume's type, for the volume's JSON.
pub(crate) fn volume_type_name(st: &State, id: &str) -> String {
    st.volume_types
        .iter()
        .find(|t| t.id == id)
        .map_or_else(|| id.to_owned(), |t| t.name.clone())
}

fn render_volume_type(t: &VolumeType, ctx: &Ctx) -> Value {
    let mut body = json!({
        "id": t.id, "name": t.name, "is_public": t.is_public, "description": t.description,
        "extra_specs": t.extra_specs,
    });
    if ctx.caller.admin() {
        body["qos_specs_id"] = Value::Null;
    }
    body
}

fn create_volume_type(st: &mut State, ctx: &Ctx) -> Reply {
    admin_only(ctx, "volume_extension:type_create")?;
    let body: Value = ctx.json()?;
    let t = &body["volume_type"];
    let name = name_of(&t["name"], "Volume type")?;
    let is_public = match t.get("os-volume-type-access:is_public") {
        Some(v) => strict_bool(v, "os-volume-type-access:is_public")?,
        None => true,
    };
    if st.volume_types.iter().any(|x| x.name == name) {
        return Err(Fail::conflict(format!(
            "Volume Type {name} already exists."
        )));
    }
    let vt = VolumeType {
        id: st.uuid(),
        name,
        description: t["description"].as_str().map(str::to_owned),
        is_public,
        extra_specs: string_map(&t["extra_specs"], "extra_specs")?,
    };
    let mut shown = render_volume_type(&vt, ctx);
    shown["os-volume-type-access:is_public"] = json!(vt.is_public);
    // types_manage answers without qos_specs_id (the type is re-read by name).
    if let Some(o) = shown.as_object_mut() {
        o.remove("qos_specs_id");
    }
    st.volume_types.push(vt);
    Ok((StatusCode::OK, json!({ "volume_type": shown })))
}

/// What an update of a volume or group type changes, checked as Cinder checks it.
struct TypeUpdate {
    name: Option<String>,
    description: Option<String>,
    is_public: Option<bool>,
}

impl TypeUpdate {
    fn read(t: &Value, empty_name: &str, nothing_given: &str) -> Result<Self, Fail> {
        let update = Self {
            name: t["name"].as_str().map(str::to_owned),
            description: t["description"].as_str().map(str::to_owned),
            is_public: t
                .get("is_public")
                .map(|v| strict_bool(v, "is_public"))
                .transpose()?,
        };
        if update.name.as_deref().is_some_and(|n| n.trim().is_empty()) {
            return Err(Fail::bad_request(empty_name));
        }
        if update.name.is_none() && update.description.is_none() && update.is_public.is_none() {
            return Err(Fail::bad_request(nothing_given));
        }
        Ok(update)
    }

    fn apply(self, name: &mut String, description: &mut Option<String>, is_public: &mut bool) {
        if let Some(n) = self.name {
            *name = n;
        }
        if let Some(d) = self.description {
            *description = Some(d);
        }
        if let Some(p) = self.is_public {
            *is_public = p;
        }
    }
}

fn update_volume_type(st: &mut State, ctx: &Ctx, id: &str) -> Reply {
    admin_only(ctx, "volume_extension:type_update")?;
    let body: Value = ctx.json()?;
    let update = TypeUpdate::read(
        &body["volume_type"],
        "Volume type name can not be empty.",
        "Specify volume type name, description, is_public or a combination thereof.",
    )?;
    volume_type(st, ctx, id)?;
    let vt = st
        .volume_types
        .iter_mut()
        .find(|t| t.id == id)
        .expect("found above");
    update.apply(&mut vt.name, &mut vt.description, &mut vt.is_public);
    let vt = vt.clone();
    Ok((
        StatusCode::OK,
        json!({"volume_type": render_volume_type(&vt, ctx)}),
    ))
}

fn delete_volume_type(st: &mut State, ctx: &Ctx, id: &str) -> Reply {
    admin_only(ctx, "volume_extension:type_delete")?;
    let t = volume_type(st, ctx, id)?;
    if t.id == DEFAULT_TYPE_ID {
        return Err(Fail::bad_request(format!(
            "The volume type {} is a default volume type and cannot be deleted.",
            t.id
        )));
    }
    let in_use = st
        .volumes
        .iter()
        .any(|v| v.volume_type.as_deref() == Some(id) && v.status.at(ctx.now) != GONE)
        || st
            .groups
            .iter()
            .any(|g| g.volume_types.iter().any(|x| x == id) && g.status.at(ctx.now) != GONE);
    if in_use {
        return Err(Fail::bad_request("Target volume type is still in use."));
    }
    st.volume_types.retain(|t| t.id != id);
    Ok((StatusCode::ACCEPTED, Value::Null))
}

/// A group type by id (or `default`, which Cinder reads from its
/// `default_group_type` option, unset here and on the rig).
fn group_type<'a>(st: &'a State, ctx: &Ctx, id: &str) -> Result<&'a GroupType, Fail> {
    if id == "default" {
        return Err(Fail::not_found("Default group type can not be found."));
    }
    st.group_types
        .iter()
        .find(|t| t.id == id && (t.is_public || ctx.caller.admin()))
        .ok_or_else(|| Fail::not_found(format!("Group type {id} could not be found.")))
}

/// The group type a groups request names by id or name.
pub(crate) fn group_type_by_name_or_id<'a>(
    st: &'a State,
    name_or_id: &str,
) -> Result<&'a GroupType, Fail> {
    st.group_types
        .iter()
        .find(|t| t.id == name_or_id)
        .or_else(|| st.group_types.iter().find(|t| t.name == name_or_id))
        .ok_or_else(|| {
            if uuid::Uuid::parse_str(name_or_id).is_ok() {
                Fail::not_found(format!("Group type {name_or_id} could not be found."))
            } else {
                Fail::not_found(format!(
                    "Group type with name {name_or_id} could not be found."
                ))
            }
        })
}

fn render_group_type(t: &GroupType, ctx: &Ctx) -> Value {
    let mut body =
        json!({"id": t.id, "name": t.name, "description": t.description, "is_public": t.is_public});
    if ctx.caller.admin() {
        body["group_specs"] = json!(t.group_specs);
    }
    body
}

fn group_types(st: &mut State, operation: &str, ctx: &Ctx, id: &str) -> Reply {
    let key = ctx.seg(4).to_owned();
    match operation {
        "cinder.list_group_types" => {
            let list: Vec<Value> = st
                .group_types
                .iter()
                .filter(|t| listed(ctx, t.is_public))
                .map(|t| render_group_type(t, ctx))
                .collect();
            Ok((StatusCode::OK, json!({ "group_types": list })))
        }
        "cinder.get_group_type" => {
            let t = group_type(st, ctx, id)?;
            Ok((
                StatusCode::OK,
                json!({"group_type": render_group_type(t, ctx)}),
            ))
        }
        "cinder.create_group_type" => create_group_type(st, ctx),
        "cinder.update_group_type" => update_group_type(st, ctx, id),
        "cinder.delete_group_type" => {
            admin_only(ctx, "group:group_types:delete")?;
            group_type(st, ctx, id)?;
            let in_use = st
                .groups
                .iter()
                .any(|g| g.group_type == id && g.status.at(ctx.now) != GONE);
            if in_use {
                return Err(Fail::bad_request("Target group type is still in use."));
            }
            st.group_types.retain(|t| t.id != id);
            Ok((StatusCode::ACCEPTED, Value::Null))
        }
        _ => group_specs(st, ctx, id, &key),
    }
}

fn create_group_type(st: &mut State, ctx: &Ctx) -> Reply {
    admin_only(ctx, "group:group_types:create")?;
    let body: Value = ctx.json()?;
    let t = &body["group_type"];
    let name = name_of(&t["name"], "Group type")?;
    let is_public = match t.get("is_public") {
        Some(v) => strict_bool(v, "is_public")?,
        None => true,
    };
    if st.group_types.iter().any(|x| x.name == name) {
        return Err(Fail::conflict(format!("Group Type {name} already exists.")));
    }
    let gt = GroupType {
        id: st.uuid(),
        name,
        description: t["description"].as_str().map(str::to_owned),
        is_public,
        group_specs: string_map(&t["group_specs"], "group_specs")?,
    };
    let shown = render_group_type(&gt, ctx);
    st.group_types.push(gt);
    Ok((StatusCode::ACCEPTED, json!({ "group_type": shown })))
}

fn update_group_type(st: &mut State, ctx: &Ctx, id: &str) -> Reply {
    admin_only(ctx, "group:group_types:update")?;
    let body: Value = ctx.json()?;
    let update = TypeUpdate::read(
        &body["group_type"],
        "Group type name can not be empty.",
        "Specify group type name, description or a combination thereof.",
    )?;
    group_type(st, ctx, id)?;
    let gt = st
        .group_types
        .iter_mut()
        .find(|t| t.id == id)
        .expect("found above");
    update.apply(&mut gt.name, &mut gt.description, &mut gt.is_public);
    let gt = gt.clone();
    Ok((
        StatusCode::OK,
        json!({"group_type": render_group_type(&gt, ctx)}),
    ))
}

/// `/group_types/{id}/group_specs[/{key}]` (admins only).
fn group_specs(st: &mut State, ctx: &Ctx, id: &str, key: &str) -> Reply {
    let policy = match ctx.method {
        Method::GET if key.is_empty() => "group:group_types_specs:get_all",
        Method::GET => "group:group_types_specs:get",
        Method::POST => "group:group_types_specs:create",
        Method::PUT => "group:group_types_specs:update",
        _ => "group:group_types_specs:delete",
    };
    admin_only(ctx, policy)?;
    group_type(st, ctx, id)?;
    let body: Option<Value> = if matches!(ctx.method, Method::POST | Method::PUT) {
        Some(ctx.json()?)
    } else {
        None
    };
    let gt = st
        .group_types
        .iter_mut()
        .find(|t| t.id == id)
        .expect("found above");
    let missing = || Fail::not_found(format!("Group Type {id} has no specs with key {key}."));
    match ctx.method {
        Method::GET if key.is_empty() => {
            Ok((StatusCode::OK, json!({"group_specs": gt.group_specs})))
        }
        Method::GET => gt
            .group_specs
            .get(key)
            .map(|v| (StatusCode::OK, json!({ key: v })))
            .ok_or_else(|| {
                Fail::not_found(format!("Group Type {id} has no extra spec with key {key}."))
            }),
        Method::POST => {
            let specs = string_map(&body.unwrap_or_default()["group_specs"], "group_specs")?;
            gt.group_specs.extend(specs.clone());
            Ok((StatusCode::ACCEPTED, json!({ "group_specs": specs })))
        }
        Method::PUT => {
            let given = string_map(&body.unwrap_or_default(), "group_specs")?;
            if given.len() > 1 {
                return Err(Fail::bad_request("Request body contains too many items."));
            }
            let Some(value) = given.get(key) else {
                return Err(Fail::bad_request("Request body and URI mismatch"));
            };
            gt.group_specs.insert(key.to_owned(), value.clone());
            Ok((StatusCode::OK, json!({ key: value })))
        }
        _ => {
            gt.group_specs.remove(key).ok_or_else(missing)?;
            Ok((StatusCode::ACCEPTED, Value::Null))
        }
    }
}
