//! Cinder snapshots: create (with the `force` rules around microversion
//! 3.66 and the snapshot quota), list with filters (as `filters` lets the
//! token use them) and paging, show,
//! update, metadata, delete (only from `available` or `error`).

use std::collections::BTreeMap;

use axum::http::StatusCode;
use serde_json::{Value, json};

use super::{
    Reply,
    filters::{self, Resource},
    links, page, parse_metadata_filter, stamp, volume_not_found,
};
use crate::{
    faults::Fault,
    http::{Ctx, Mv},
    inventory::NewSnapshot,
    state::{Fail, GONE, Snapshot, State},
};

pub(super) fn handle(st: &mut State, operation: &str, ctx: &Ctx, id: &str) -> Reply {
    match operation {
        "cinder.list_snapshots" => list(st, ctx, false),
        "cinder.list_snapshots_detail" => list(st, ctx, true),
        "cinder.create_snapshot" => create(st, ctx),
        "cinder.get_snapshot" => {
            let s = st.snapshot(id, ctx.now).ok_or_else(|| not_found(id))?;
            Ok((
                StatusCode::OK,
                json!({"snapshot": render(st, s, ctx, true)}),
            ))
        }
        "cinder.update_snapshot" => {
            let body: Value = ctx.json()?;
            let s = st.snapshot_mut(id, ctx.now).ok_or_else(|| not_found(id))?;
            if let Some(n) = body["snapshot"]["name"].as_str() {
                s.name = Some(n.to_owned());
            }
            if let Some(d) = body["snapshot"]["description"].as_str() {
                s.description = Some(d.to_owned());
            }
            let s = st.snapshot(id, ctx.now).expect("exists");
            Ok((
                StatusCode::OK,
                json!({"snapshot": render(st, s, ctx, false)}),
            ))
        }
        "cinder.get_snapshot_metadata" => {
            let s = st.snapshot(id, ctx.now).ok_or_else(|| not_found(id))?;
            Ok((StatusCode::OK, json!({"metadata": s.metadata})))
        }
        "cinder.update_snapshot_metadata" => {
            let body: Value = ctx.json()?;
            let meta: BTreeMap<String, String> =
                serde_json::from_value(body["metadata"].clone())
                    .map_err(|_| Fail::bad_request("Malformed request body"))?;
            let replace = ctx.method == axum::http::Method::PUT;
            let s = st.snapshot_mut(id, ctx.now).ok_or_else(|| not_found(id))?;
            if replace {
                s.metadata = meta;
            } else {
                s.metadata.extend(meta);
            }
            Ok((StatusCode::OK, json!({"metadata": s.metadata})))
        }
        "cinder.delete_snapshot" => delete(st, ctx, id),
        _ => Err(Fail::not_found("The resource could not be found.")),
    }
}

fn not_found(id: &str) -> Fail {
    Fail::not_found(format!("Snapshot {id} could not be found."))
}

/// A snapshot as Cinder shows it at the request's microversion.
pub(crate) fn render(st: &State, s: &Snapshot, ctx: &Ctx, extended: bool) -> Value {
    let status = s.status.at(ctx.now);
    let mut body = json!({
        "id": s.id,
        "created_at": stamp(st, s.created),
        "updated_at": if s.status.since(ctx.now) > s.created { Some(stamp(st, s.status.since(ctx.now))) } else { None },
        "name": s.name,
        "description": s.description,
        "volume_id": s.volume_id,
        "status": status,
        "size": s.size,
        "metadata": s.metadata,
    });
    if ctx.mv >= Mv(3, 14) {
        body["group_snapshot_id"] = json!(s.group_snapshot_id);
    }
    if ctx.mv >= Mv(3, 41) {
        body["user_id"] = json!(s.user_id);
    }
    if ctx.mv >= Mv(3, 65) {
        body["consumes_quota"] = json!(true);
    }
    if extended {
        body["os-extended-snapshot-attributes:project_id"] = json!(s.project_id);
        let progress = match status {
            "available" => "100%",
            "creating" => "0%",
            _ => "0%",
        };
        body["os-extended-snapshot-attributes:progress"] = json!(progress);
    }
    body
}

fn list(st: &State, ctx: &Ctx, detail: bool) -> Reply {
    let filters = filters::applied(Resource::Snapshot, &ctx.query, ctx.mv, ctx.caller.admin())?;
    let q = |key: &str| filters::get(&filters, key);
    let metadata = q("metadata").map(parse_metadata_filter).transpose()?;
    let matching: Vec<&Snapshot> = st
        .snapshots
        .iter()
        .rev()
        .filter(|s| s.status.at(ctx.now) != GONE)
        .filter(|s| super::scope::listed(ctx, &s.project_id))
        .filter(|s| q("name").is_none_or(|n| s.name.as_deref() == Some(n)))
        .filter(|s| q("status").is_none_or(|x| s.status.at(ctx.now) == x))
        .filter(|s| q("volume_id").is_none_or(|v| s.volume_id == v))
        .filter(|s| {
            q("group_snapshot_id").is_none_or(|g| s.group_snapshot_id.as_deref() == Some(g))
        })
        .filter(|s| {
            metadata
                .as_ref()
                .is_none_or(|m| m.iter().all(|(k, v)| s.metadata.get(k) == Some(v)))
        })
        .collect();
    let (items, next) = page(matching, |s| s.id.as_str(), ctx, st.cinder_max_limit)?;
    let list: Vec<Value> = items.iter().map(|s| render(st, s, ctx, detail)).collect();
    let mut body = json!({ "snapshots": list });
    if let Some(next) = next {
        body["snapshots_links"] = next;
    }
    Ok((StatusCode::OK, body))
}

/// oslo's `bool_from_string(strict=True)`.
fn parse_force(v: &Value) -> Result<bool, Fail> {
    match v {
        Value::Bool(b) => Ok(*b),
        Value::String(s) => match s.to_ascii_lowercase().as_str() {
            "1" | "t" | "true" | "on" | "y" | "yes" => Ok(true),
            "0" | "f" | "false" | "off" | "n" | "no" => Ok(false),
            _ => Err(Fail::bad_request(format!("Invalid value '{s}' for force."))),
        },
        Value::Number(n) => Ok(n.as_i64() == Some(1)),
        other => Err(Fail::bad_request(format!(
            "Invalid value '{other}' for force."
        ))),
    }
}

fn create(st: &mut State, ctx: &Ctx) -> Reply {
    let body: Value = ctx.json()?;
    let snap = &body["snapshot"];
    if !snap.is_object() {
        return Err(Fail::bad_request(
            "Missing required element 'snapshot' in request body.",
        ));
    }
    let volume_id = snap["volume_id"]
        .as_str()
        .ok_or_else(|| Fail::bad_request("'volume_id' is a required property"))?
        .to_owned();
    let force = snap.get("force").map(parse_force).transpose()?;
    if ctx.mv >= Mv(3, 66) && force == Some(false) {
        return Err(Fail::bad_request(
            "Since microversion 3.66 the 'force' flag is invalid for this request.  For backward compatability, however, when the 'force' flag is passed with a value evaluating to True, it is silently ignored.",
        ));
    }
    let vol = st
        .volume(&volume_id, ctx.now)
        .filter(|v| ctx.caller.may_read(&v.project_id))
        .ok_or_else(|| volume_not_found(&volume_id))?;
    let status = vol.status.at(ctx.now);
    let allowed = if ctx.mv >= Mv(3, 66) || force == Some(true) {
        matches!(status, "available" | "in-use")
    } else {
        status == "available"
    };
    if !allowed {
        let expected = if ctx.mv >= Mv(3, 66) || force == Some(true) {
            "available or in-use"
        } else {
            "available"
        };
        return Err(Fail::bad_request(format!(
            "Invalid volume: Volume {volume_id} status must be {expected}, but current status is: {status}."
        )));
    }
    let used = st.snapshots_used(&ctx.caller.project_id, ctx.now);
    if st.snapshot_quota >= 0 && used + 1 > st.snapshot_quota {
        return Err(Fail::new(
            StatusCode::PAYLOAD_TOO_LARGE,
            format!(
                "SnapshotLimitExceeded: Maximum number of snapshots allowed ({}) exceeded",
                st.snapshot_quota
            ),
        ));
    }
    let metadata: BTreeMap<String, String> =
        serde_json::from_value(snap["metadata"].clone()).unwrap_or_default();
    let spec = NewSnapshot {
        volume_id,
        name: snap["name"]
            .as_str()
            .or(snap["display_name"].as_str())
            .map(str::to_owned),
        description: snap["description"].as_str().map(str::to_owned),
        metadata,
        group_snapshot_id: None,
        owner: Some(ctx.caller.owner()),
    };
    let id = st.create_snapshot(ctx.now, "cinder.create_snapshot", spec);
    let s = st.snapshot(&id, ctx.now).expect("just created");
    Ok((
        StatusCode::ACCEPTED,
        json!({"snapshot": render(st, s, ctx, false)}),
    ))
}

fn delete(st: &mut State, ctx: &Ctx, id: &str) -> Reply {
    let now = ctx.now;
    let status = st
        .snapshot(id, now)
        .ok_or_else(|| not_found(id))?
        .status
        .at(now);
    // Cinder's API takes a member's delete only from `available` or `error`
    // (`error_deleting` needs an administrator's reset-state first).
    let grouped = st
        .snapshot(id, now)
        .is_some_and(|s| s.group_snapshot_id.is_some());
    if !matches!(status, "available" | "error") || grouped {
        return Err(Fail::bad_request(format!(
            "Invalid snapshot: Volume Snapshot status must be available or error and must not be part of a group, but current status is: {status}."
        )));
    }
    let has_dependants = has_dependants(st, id, now);
    let busy = st.fault("cinder.delete_snapshot", |f| {
        matches!(f, Fault::SnapshotDeleteBusy { dependants_only } if !dependants_only || has_dependants)
    });
    let fails = !busy
        && st.fault("cinder.delete_snapshot", |f| {
            matches!(f, Fault::SnapshotDeleteError)
        });
    let d = st.durations.snapshot_delete;
    let s = st.snapshot_mut(id, now).ok_or_else(|| not_found(id))?;
    s.status.rewrite(now, "deleting");
    let outcome = if busy {
        "available"
    } else if fails {
        "error_deleting"
    } else {
        GONE
    };
    s.status.push_after_last(d, outcome);
    let _ = links;
    Ok((StatusCode::ACCEPTED, Value::Null))
}

/// Whether a live volume was made from snapshot `id`.
fn has_dependants(st: &State, id: &str, now: std::time::Instant) -> bool {
    st.volumes
        .iter()
        .any(|v| v.snapshot_id.as_deref() == Some(id) && v.status.at(now) != GONE)
}
