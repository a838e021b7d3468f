//! Cinder generic volume groups (microversion >= 3.13) and group snapshots
//! (>= 3.14): one crash-consistent snapshot of every volume in a group. Lists
//! filter as `filters` allows the token and page like Cinder (group snapshots
//! only from 3.29), with `group_links` and `group_snapshot_links`.

use axum::http::StatusCode;
use serde_json::{Value, json};

use super::{
    Reply,
    filters::{self, GROUP_SNAPSHOT_PAGINATION, Resource},
    limit_param, next_link, page, stamp,
    types::{CGSNAPSHOT_TYPE_NAME, group_type_by_name_or_id, volume_type_id},
};
use crate::{
    http::{Ctx, Mv},
    inventory::NewSnapshot,
    reply::{is_uuid, py_repr, schema_error},
    state::{Fail, GONE, Group, GroupSnapshot, State},
    timeline::Timeline,
};

pub(super) fn handle(st: &mut State, operation: &str, ctx: &Ctx, id: &str) -> Reply {
    let needed = if operation.contains("group_snapshot") || operation.ends_with("_from_src") {
        Mv(3, 14)
    } else {
        Mv(3, 11)
    };
    if ctx.mv < needed {
        return Err(Fail::not_found("The resource could not be found."));
    }
    match operation {
        "cinder.list_groups" | "cinder.list_groups_detail" => list_groups(st, operation, ctx),
        "cinder.create_group" => create_group(st, ctx),
        "cinder.create_group_from_src" => create_from_src(st, ctx),
        "cinder.get_group" => {
            let g = group(st, ctx, id)?;
            Ok((StatusCode::OK, json!({"group": render_group(st, g, ctx)})))
        }
        "cinder.update_group" => update_group(st, ctx, id),
        "cinder.group_action" => delete_group(st, ctx, id),
        "cinder.list_group_snapshots" | "cinder.list_group_snapshots_detail" => {
            list_group_snapshots(st, operation, ctx)
        }
        "cinder.create_group_snapshot" => create_group_snapshot(st, ctx),
        "cinder.get_group_snapshot" => {
            let g = st
                .group_snapshots
                .find(id, |g| g.status.at(ctx.now) != GONE)
                .ok_or_else(|| group_snapshot_not_found(id))?;
            Ok((
                StatusCode::OK,
                json!({"group_snapshot": render_group_snapshot(st, g, ctx)}),
            ))
        }
        "cinder.delete_group_snapshot" => delete_group_snapshot(st, ctx, id),
        _ => Err(Fail::not_found("The resource could not be found.")),
    }
}

fn list_groups(st: &State, operation: &str, ctx: &Ctx) -> Reply {
    let filters = filters::applied(Resource::Group, &ctx.query, ctx.mv, ctx.caller.admin())?;
    let items: Vec<&Group> = st
        .groups
        .iter()
        .rev()
        .filter(|g| g.status.at(ctx.now) != GONE)
        .filter(|g| super::scope::listed(ctx, &g.project_id))
        .filter(|g| filters::get(&filters, "name").is_none_or(|n| g.name.as_deref() == Some(n)))
        .collect();
    let (items, next) = page(items, |g| g.id.as_str(), ctx, st.cinder_max_limit)?;
    let detail = operation.ends_with("detail");
    let list: Vec<Value> = items
        .iter()
        .map(|g| {
            if detail {
                render_group(st, g, ctx)
            } else {
                json!({"id": g.id, "name": g.name})
            }
        })
        .collect();
    let mut body = json!({ "groups": list });
    if let Some(n) = next {
        // Cinder's groups view names it in the singular.
        body["group_links"] = n;
    }
    Ok((StatusCode::OK, body))
}

/// Group snapshots page (and filter) only from 3.29; below, every one comes
/// back at once, with a next link all the same when there are at least `limit`.
fn list_group_snapshots(st: &State, operation: &str, ctx: &Ctx) -> Reply {
    let filters = filters::applied(
        Resource::GroupSnapshot,
        &ctx.query,
        ctx.mv,
        ctx.caller.admin(),
    )?;
    let q = |key: &str| filters::get(&filters, key);
    let items: Vec<&GroupSnapshot> = st
        .group_snapshots
        .iter()
        .rev()
        .filter(|g| g.status.at(ctx.now) != GONE)
        .filter(|g| super::scope::listed(ctx, &g.project_id))
        .filter(|g| q("group_id").is_none_or(|x| g.group_id == x))
        .filter(|g| q("name").is_none_or(|x| g.name.as_deref() == Some(x)))
        .filter(|g| q("status").is_none_or(|x| g.status.at(ctx.now) == x))
        .collect();
    let (items, next) = if ctx.mv >= GROUP_SNAPSHOT_PAGINATION {
        page(items, |g| g.id.as_str(), ctx, st.cinder_max_limit)?
    } else {
        let limit = limit_param(ctx, st.cinder_max_limit)?;
        let next = match items.last() {
            Some(last) if items.len() >= limit => Some(next_link(ctx, &last.id)),
            _ => None,
        };
        (items, next)
    };
    let detail = operation.ends_with("detail");
    let list: Vec<Value> = items
        .iter()
        .map(|g| {
            if detail {
                render_group_snapshot(st, g, ctx)
            } else {
                json!({"id": g.id, "name": g.name})
            }
        })
        .collect();
    let mut body = json!({ "group_snapshots": list });
    if let Some(n) = next {
        // Cinder's group-snapshots view names it in the singular.
        body["group_snapshot_links"] = n;
    }
    Ok((StatusCode::OK, body))
}

fn group<'a>(st: &'a State, ctx: &Ctx, id: &str) -> Result<&'a Group, Fail> {
    st.groups
        .find(id, |g| g.status.at(ctx.now) != GONE)
        .ok_or_else(|| Fail::not_found(format!("Group {id} could not be found.")))
}

fn group_snapshot_not_found(id: &str) -> Fail {
    Fail::not_found(format!("GroupSnapshot {id} could not be found."))
}

fn render_group(st: &State, g: &Group, ctx: &Ctx) -> Value {
    let mut body = json!({
        "id": g.id,
        "status": g.status.at(ctx.now),
        "availability_zone": g.availability_zone,
        "created_at": stamp(st, g.created),
        "name": g.name,
        "description": g.description,
        "group_type": g.group_type,
        "volume_types": g.volume_types,
    });
    if ctx.mv >= Mv(3, 14) {
        body["group_snapshot_id"] = json!(g.group_snapshot_id);
        body["source_group_id"] = json!(g.source_group_id);
    }
    if ctx.mv >= Mv(3, 25)
        && ctx
            .q("list_volume")
            .is_some_and(|v| v.eq_ignore_ascii_case("true"))
    {
        let vols: Vec<&str> = st
            .volumes
            .iter()
            .filter(|v| {
                v.group_id.as_deref() == Some(g.id.as_str()) && v.status.at(ctx.now) != GONE
            })
            .map(|v| v.id.as_str())
            .collect();
        body["volumes"] = json!(vols);
    }
    if ctx.mv >= Mv(3, 38) {
        body["replication_status"] = json!("disabled");
    }
    if ctx.mv >= Mv(3, 58) {
        body["project_id"] = json!(g.project_id);
    }
    body
}

fn render_group_snapshot(st: &State, g: &GroupSnapshot, ctx: &Ctx) -> Value {
    let mut body = json!({
        "id": g.id,
        "group_id": g.group_id,
        "group_type_id": g.group_type_id,
        "status": g.status.at(ctx.now),
        "created_at": stamp(st, g.created),
        "name": g.name,
        "description": g.description,
    });
    if ctx.mv >= Mv(3, 58) {
        body["project_id"] = json!(g.project_id);
    }
    body
}

fn create_group(st: &mut State, ctx: &Ctx) -> Reply {
    let body: Value = ctx.json()?;
    let g = &body["group"];
    let group_type = g["group_type"]
        .as_str()
        .ok_or_else(|| Fail::bad_request("'group_type' is a required property"))?;
    // By id or by name (cinder/api/v3/groups.py), never Cinder's reserved type.
    let gt = group_type_by_name_or_id(st, group_type)?;
    if gt.name == CGSNAPSHOT_TYPE_NAME {
        return Err(Fail::bad_request(format!(
            "Group_type {} is reserved for migrating CGs to groups. Migrated group can only be operated by CG APIs.",
            gt.id
        )));
    }
    let group_type = gt.id.clone();
    let volume_types = g["volume_types"]
        .as_array()
        .filter(|a| !a.is_empty())
        .ok_or_else(|| Fail::bad_request("'volume_types' is a required property"))?
        .iter()
        .map(|t| volume_type_id(st, t.as_str().unwrap_or_default()))
        .collect::<Result<Vec<String>, Fail>>()?;
    let id = st.uuid();
    let d = st.durations.volume_create;
    st.groups.push(Group {
        id: id.clone(),
        name: g["name"].as_str().map(str::to_owned),
        description: g["description"].as_str().map(str::to_owned),
        project_id: ctx.caller.project_id.clone(),
        created: ctx.now,
        status: Timeline::new(ctx.now, "creating").then(d, "available"),
        group_type,
        volume_types,
        group_snapshot_id: None,
        source_group_id: None,
        availability_zone: st.default_az(),
    });
    Ok((
        StatusCode::ACCEPTED,
        json!({"group": {"id": id, "name": g["name"]}}),
    ))
}

fn update_group(st: &mut State, ctx: &Ctx, id: &str) -> Reply {
    let body: Value = ctx.json()?;
    group(st, ctx, id)?;
    let g = &body["group"];
    let split = |k: &str| -> Vec<String> {
        g[k].as_str()
            .map(|s| {
                s.split(',')
                    .map(str::trim)
                    .filter(|s| !s.is_empty())
                    .map(str::to_owned)
                    .collect()
            })
            .unwrap_or_default()
    };
    for vid in split("add_volumes") {
        let vol = st
            .volume_mut(&vid, ctx.now)
            .filter(|v| ctx.caller.may_read(&v.project_id))
            .ok_or_else(|| Fail::bad_request(format!("Invalid volume: Cannot add volume {vid} to group {id} because volume cannot be found.")))?;
        vol.group_id = Some(id.to_owned());
    }
    for vid in split("remove_volumes") {
        if let Some(vol) = st.volume_mut(&vid, ctx.now) {
            vol.group_id = None;
        }
    }
    let grp = st.groups.any_mut(id).expect("exists");
    if let Some(n) = g["name"].as_str() {
        grp.name = Some(n.to_owned());
    }
    if let Some(d) = g["description"].as_str() {
        grp.description = Some(d.to_owned());
    }
    Ok((StatusCode::ACCEPTED, Value::Null))
}

fn delete_group(st: &mut State, ctx: &Ctx, id: &str) -> Reply {
    let body: Value = ctx.json()?;
    let Some(del) = body.get("delete") else {
        return Err(Fail::bad_request("There is no such action"));
    };
    group(st, ctx, id)?;
    let delete_volumes = del["delete-volumes"].as_bool().unwrap_or(false);
    let now = ctx.now;
    let members: Vec<String> = st
        .volumes
        .iter()
        .filter(|v| v.group_id.as_deref() == Some(id) && v.status.at(now) != GONE)
        .map(|v| v.id.clone())
        .collect();
    if !members.is_empty() && !delete_volumes {
        return Err(Fail::bad_request(format!(
            "Invalid group: Group {id} still contains volumes. The delete-volumes flag is required to delete it."
        )));
    }
    let d = st.durations.clone();
    for vid in members {
        if let Some(v) = st.volume_mut(&vid, now) {
            v.status.rewrite(now, "deleting");
            v.status.push_after_last(d.volume_delete, GONE);
        }
    }
    let g = st.groups.any_mut(id).expect("exists");
    g.status.rewrite(now, "deleting");
    g.status.push_after_last(d.volume_delete, GONE);
    Ok((StatusCode::ACCEPTED, Value::Null))
}

fn create_group_snapshot(st: &mut State, ctx: &Ctx) -> Reply {
    let body: Value = ctx.json()?;
    let gs = &body["group_snapshot"];
    let group_id = gs["group_id"]
        .as_str()
        .ok_or_else(|| Fail::bad_request("'group_id' is a required property"))?
        .to_owned();
    if let Some(hidden) = super::scope::hidden(st, ctx, "groups", &group_id) {
        return Err(hidden);
    }
    let grp = group(st, ctx, &group_id)?;
    if grp.status.at(ctx.now) != "available" {
        return Err(Fail::bad_request(format!(
            "Invalid group: Group status must be available, but current status is: {}.",
            grp.status.at(ctx.now)
        )));
    }
    let group_type_id = grp.group_type.clone();
    let now = ctx.now;
    let members: Vec<String> = st
        .volumes
        .iter()
        .filter(|v| v.group_id.as_deref() == Some(group_id.as_str()) && v.status.at(now) != GONE)
        .map(|v| v.id.clone())
        .collect();
    // Cinder validates each member before making any snapshot
    // (volume/api.py `_create_snapshot_in_db_validate`): InvalidVolume, a 400.
    for id in &members {
        let status = st.volume(id, now).map_or("", |v| v.status.at(now));
        if status == "maintenance" {
            return Err(Fail::bad_request(
                "Invalid volume: The snapshot cannot be created when the volume is in maintenance mode.",
            ));
        }
        if status == "error" {
            return Err(Fail::bad_request(
                "Invalid volume: The snapshot cannot be created when the volume is in error status.",
            ));
        }
    }
    let used = st.snapshots_used(&ctx.caller.project_id, now);
    let n = i64::try_from(members.len()).unwrap_or(i64::MAX);
    if st.snapshot_quota >= 0 && used + n > st.snapshot_quota {
        return Err(Fail::new(
            StatusCode::PAYLOAD_TOO_LARGE,
            format!(
                "SnapshotLimitExceeded: Maximum number of snapshots allowed ({}) exceeded",
                st.snapshot_quota
            ),
        ));
    }
    let id = st.uuid();
    let name = gs["name"].as_str().map(str::to_owned);
    let mut end = now + st.durations.group_snapshot_create;
    let mut error = false;
    for vid in &members {
        let spec = NewSnapshot {
            volume_id: vid.clone(),
            name: Some(format!("snapshot-{id}")),
            group_snapshot_id: Some(id.clone()),
            owner: Some(ctx.caller.owner()),
            ..NewSnapshot::default()
        };
        let sid = st.create_snapshot(now, "cinder.create_group_snapshot", spec);
        let s = st.snapshot(&sid, now).expect("just created");
        end = end.max(s.status.settles_at());
        error |= s.status.at(s.status.settles_at()) == "error";
        if s.status.pending(now) && s.status.at(s.status.settles_at()) == "creating" {
            end = end.max(now + std::time::Duration::from_secs(86_400 * 365));
        }
    }
    st.group_snapshots.push(GroupSnapshot {
        id: id.clone(),
        name: name.clone(),
        description: gs["description"].as_str().map(str::to_owned),
        group_id,
        group_type_id: group_type_id.clone(),
        project_id: ctx.caller.project_id.clone(),
        created: now,
        status: Timeline::new(now, "creating")
            .then(end - now, if error { "error" } else { "available" }),
    });
    Ok((
        StatusCode::ACCEPTED,
        json!({"group_snapshot": {"id": id, "name": name, "group_type_id": group_type_id}}),
    ))
}

fn delete_group_snapshot(st: &mut State, ctx: &Ctx, id: &str) -> Reply {
    let now = ctx.now;
    let d = st.durations.snapshot_delete;
    let gs = st
        .group_snapshots
        .find_mut(id, |g| g.status.at(now) != GONE)
        .ok_or_else(|| group_snapshot_not_found(id))?;
    let status = gs.status.at(now);
    if !matches!(status, "available" | "error") {
        return Err(Fail::bad_request(format!(
            "Invalid GroupSnapshot: Group snapshot status must be available or error, but current status is: {status}."
        )));
    }
    let _ = gs;
    let fails = st.fault("cinder.delete_group_snapshot", |f| {
        matches!(f, crate::faults::Fault::GroupSnapshotDeleteError)
    });
    let outcome = if fails { "error" } else { GONE };
    let gs = st
        .group_snapshots
        .find_mut(id, |g| g.status.at(now) != GONE)
        .ok_or_else(|| group_snapshot_not_found(id))?;
    gs.status.rewrite(now, "deleting");
    gs.status.push_after_last(d, outcome);
    for s in st
        .snapshots
        .iter_mut()
        .filter(|s| s.group_snapshot_id.as_deref() == Some(id) && s.status.at(now) != GONE)
    {
        s.status.rewrite(now, "deleting");
        s.status.push_after_last(d, outcome);
    }
    Ok((StatusCode::ACCEPTED, Value::Null))
}

/// Where one volume of a new group comes from: a snapshot or a volume.
type Source = (Option<String>, Option<String>);

/// `POST /groups/action` `{"create-from-src": …}` (3.14; cinder/group/api.py
/// `create_from_src`): a new group of the source's type, zone and volume
/// types, with one volume per snapshot of the group snapshot (of the
/// snapshot's size and volume type), or one clone per volume of the source
/// group. The group is `available` once every volume is, `error` if one fails.
fn create_from_src(st: &mut State, ctx: &Ctx) -> Reply {
    let body: Value = ctx.json()?;
    let Some(src) = body.get("create-from-src") else {
        return Err(Fail::bad_request("There is no such action"));
    };
    let field = "create-from-src";
    let (gs_id, group_id) = (src.get("group_snapshot_id"), src.get("source_group_id"));
    let repr = py_repr(src);
    match (gs_id, group_id) {
        (Some(_), Some(_)) => {
            return Err(Fail::bad_request(schema_error(
                field,
                src,
                &format!(
                    "{repr} is valid under each of {{'required': ['source_group_id']}}, {{'required': ['group_snapshot_id']}}"
                ),
            )));
        }
        (None, None) => {
            return Err(Fail::bad_request(schema_error(
                field,
                src,
                &format!("{repr} is not valid under any of the given schemas"),
            )));
        }
        _ => {}
    }
    for (name, v) in [("group_snapshot_id", gs_id), ("source_group_id", group_id)] {
        if let Some(v) = v.filter(|v| !v.as_str().is_some_and(is_uuid)) {
            return Err(Fail::bad_request(schema_error(
                name,
                v,
                &format!("{} is not a 'uuid'", py_repr(v)),
            )));
        }
    }
    let now = ctx.now;
    // The sources: (snapshot id or None, volume id or None) per new volume.
    let (source_group, gs, sources): (String, Option<String>, Vec<Source>) = if let Some(gs_id) =
        gs_id.and_then(Value::as_str)
    {
        if let Some(hidden) = super::scope::hidden(st, ctx, "group_snapshots", gs_id) {
            return Err(hidden);
        }
        let gs = st
            .group_snapshots
            .find(gs_id, |g| g.status.at(now) != GONE)
            .ok_or_else(|| group_snapshot_not_found(gs_id))?;
        let snaps = st
            .snapshots
            .iter()
            .filter(|s| s.group_snapshot_id.as_deref() == Some(gs_id) && s.status.at(now) != GONE)
            .map(|s| (Some(s.id.clone()), None))
            .collect::<Vec<_>>();
        if snaps.is_empty() {
            return Err(Fail::bad_request(
                "Invalid group: Group snapshot is empty. No group will be created.",
            ));
        }
        (gs.group_id.clone(), Some(gs_id.to_owned()), snaps)
    } else {
        let gid = group_id
            .and_then(Value::as_str)
            .unwrap_or_default()
            .to_owned();
        if let Some(hidden) = super::scope::hidden(st, ctx, "groups", &gid) {
            return Err(hidden);
        }
        group(st, ctx, &gid)?;
        let vols = st
            .volumes
            .iter()
            .filter(|v| v.group_id.as_deref() == Some(gid.as_str()) && v.status.at(now) != GONE)
            .map(|v| (None, Some(v.id.clone())))
            .collect::<Vec<_>>();
        if vols.is_empty() {
            return Err(Fail::bad_request(
                "Invalid group: Source Group is empty. No group will be created.",
            ));
        }
        (gid, None, vols)
    };
    // Cinder reads the group snapshot's source group (a 404 if it is gone).
    let source = group(st, ctx, &source_group)?.clone();
    let id = st.uuid();
    st.groups.push(Group {
        id: id.clone(),
        name: src["name"].as_str().map(|n| n.trim().to_owned()),
        description: src["description"].as_str().map(|d| d.trim().to_owned()),
        project_id: ctx.caller.project_id.clone(),
        created: now,
        status: Timeline::new(now, "creating"),
        group_type: source.group_type.clone(),
        volume_types: source.volume_types.clone(),
        group_snapshot_id: gs,
        source_group_id: group_id.and_then(Value::as_str).map(str::to_owned),
        availability_zone: source.availability_zone.clone(),
    });
    let mut made = Vec::new();
    for (snapshot_id, source_volid) in sources {
        let spec = crate::inventory::NewVolume {
            snapshot_id,
            source_volid,
            group_id: Some(id.clone()),
            owner: Some(ctx.caller.owner()),
            operation: Some("cinder.create_group_from_src"),
            ..crate::inventory::NewVolume::default()
        };
        match st.create_volume(now, spec, false) {
            Ok(v) => made.push(v),
            Err(fail) => {
                // Cinder deletes what it made and the group, then answers 400.
                st.volumes.retain(|v| !made.contains(&v.id));
                st.groups.retain(|g| g.id != id);
                return Err(Fail::bad_request(fail.message));
            }
        }
    }
    let (mut end, mut error, mut stuck) = (now, false, false);
    for v in made.iter().filter_map(|v| st.volume(v, now)) {
        let last = v.status.at(v.status.settles_at());
        end = end.max(v.status.settles_at());
        error |= last == "error";
        stuck |= last == "creating";
    }
    let g = st.groups.any_mut(&id).expect("just made");
    if !stuck {
        g.status
            .push_at(end, if error { "error" } else { "available" });
    }
    Ok((
        StatusCode::ACCEPTED,
        json!({"group": {"id": id, "name": g.name}}),
    ))
}
