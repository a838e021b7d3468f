//! Cinder v3 (volumev3 / block-storage): version discovery, volumes, quota
//! and limits here; snapshots in `snapshots`, groups and group snapshots in
//! `groups`, the list-filter rules for non-admin tokens in `filters`, volume
//! and group types in `types`, resource filters, zones and extensions in
//! `info`, project scoping in `scope`. URLs with and without the project id are both accepted.
//!
//! Over 400 lines: Cinder's volume endpoints share one set of request
//! checks and JSON shapes; split further, each piece would re-import them.

mod filters;
mod groups;
mod info;
mod scope;
mod snapshots;
mod types;

pub(crate) use types::{DEFAULT_TYPE_ID, seed};

use std::{collections::BTreeMap, time::Instant};

use axum::{
    http::{Method, StatusCode},
    response::Response,
};
use serde_json::{Value, json};

use self::filters::Resource;
use super::{
    http::{Ctx, Mv, empty, fault_body, json},
    rbac,
    state::{Fail, GONE, Shared, State, Volume},
};

/// The collections Cinder serves under `/v3/`.
const COLLECTIONS: [&str; 12] = [
    "volumes",
    "snapshots",
    "groups",
    "group_snapshots",
    "group_types",
    "types",
    "os-quota-sets",
    "limits",
    "attachments",
    "extensions",
    "resource_filters",
    "os-availability-zone",
];

/// The operation name of a Cinder request.
pub(crate) fn operation(method: &Method, segs: &[&str]) -> &'static str {
    let segs = strip_project(segs);
    let m = method.as_str();
    match (m, segs.as_slice()) {
        ("GET", []) => "cinder.versions",
        ("GET", ["v3"]) => "cinder.version",
        ("GET", ["v3", "volumes"]) => "cinder.list_volumes",
        ("GET", ["v3", "volumes", "detail"]) => "cinder.list_volumes_detail",
        ("POST", ["v3", "volumes"]) => "cinder.create_volume",
        ("GET", ["v3", "volumes", _]) => "cinder.get_volume",
        ("PUT", ["v3", "volumes", _]) => "cinder.update_volume",
        ("DELETE", ["v3", "volumes", _]) => "cinder.delete_volume",
        ("POST", ["v3", "volumes", _, "action"]) => "cinder.volume_action",
        ("GET", ["v3", "types"]) => "cinder.list_volume_types",
        ("POST", ["v3", "types"]) => "cinder.create_volume_type",
        ("GET", ["v3", "types", _]) => "cinder.get_volume_type",
        ("PUT", ["v3", "types", _]) => "cinder.update_volume_type",
        ("DELETE", ["v3", "types", _]) => "cinder.delete_volume_type",
        ("GET", ["v3", "resource_filters"]) => "cinder.list_resource_filters",
        ("GET", ["v3", "os-availability-zone"]) => "cinder.list_availability_zones",
        ("GET", ["v3", "extensions"]) => "cinder.list_extensions",
        ("GET", ["v3", "limits"]) => "cinder.get_limits",
        ("GET", ["v3", "os-quota-sets", _]) => "cinder.get_quota",
        ("PUT", ["v3", "os-quota-sets", _]) => "cinder.update_quota",
        ("GET", ["v3", "snapshots"]) => "cinder.list_snapshots",
        ("GET", ["v3", "snapshots", "detail"]) => "cinder.list_snapshots_detail",
        ("POST", ["v3", "snapshots"]) => "cinder.create_snapshot",
        ("GET", ["v3", "snapshots", _]) => "cinder.get_snapshot",
        ("PUT", ["v3", "snapshots", _]) => "cinder.update_snapshot",
        ("DELETE", ["v3", "snapshots", _]) => "cinder.delete_snapshot",
        ("GET", ["v3", "snapshots", _, "metadata"]) => "cinder.get_snapshot_metadata",
        ("POST" | "PUT", ["v3", "snapshots", _, "metadata"]) => "cinder.update_snapshot_metadata",
        ("GET", ["v3", "group_types"]) => "cinder.list_group_types",
        ("POST", ["v3", "group_types"]) => "cinder.create_group_type",
        ("GET", ["v3", "group_types", _]) => "cinder.get_group_type",
        ("PUT", ["v3", "group_types", _]) => "cinder.update_group_type",
        ("DELETE", ["v3", "group_types", _]) => "cinder.delete_group_type",
        ("GET", ["v3", "group_types", _, "group_specs"]) => "cinder.list_group_type_specs",
        ("POST", ["v3", "group_types", _, "group_specs"]) => "cinder.create_group_type_specs",
        ("GET", ["v3", "group_types", _, "group_specs", _]) => "cinder.get_group_type_spec",
        ("PUT", ["v3", "group_types", _, "group_specs", _]) => "cinder.update_group_type_spec",
        ("DELETE", ["v3", "group_types", _, "group_specs", _]) => "cinder.delete_group_type_spec",
        ("GET", ["v3", "groups"]) => "cinder.list_groups",
        ("GET", ["v3", "groups", "detail"]) => "cinder.list_groups_detail",
        ("POST", ["v3", "groups"]) => "cinder.create_group",
        ("GET", ["v3", "groups", _]) => "cinder.get_group",
        ("PUT", ["v3", "groups", _]) => "cinder.update_group",
        // `POST /groups/action` (no id) is `create-from-src` (3.14).
        ("POST", ["v3", "groups", "action"]) => "cinder.create_group_from_src",
        ("POST", ["v3", "groups", _, "action"]) => "cinder.group_action",
        ("GET", ["v3", "group_snapshots"]) => "cinder.list_group_snapshots",
        ("GET", ["v3", "group_snapshots", "detail"]) => "cinder.list_group_snapshots_detail",
        ("POST", ["v3", "group_snapshots"]) => "cinder.create_group_snapshot",
        ("GET", ["v3", "group_snapshots", _]) => "cinder.get_group_snapshot",
        ("DELETE", ["v3", "group_snapshots", _]) => "cinder.delete_group_snapshot",
        _ => "cinder.unknown",
    }
}

/// Drops the project id of `/v3/{project_id}/...` URLs.
fn strip_project<'a>(segs: &[&'a str]) -> Vec<&'a str> {
    let mut v = segs.to_vec();
    if v.len() >= 2 && v[0] == "v3" && !COLLECTIONS.contains(&v[1]) {
        v.remove(1);
    }
    v
}

/// Cinder's error body.
pub(crate) fn error(fail: &Fail) -> Response {
    let retry = (fail.status == StatusCode::PAYLOAD_TOO_LARGE).then_some(0);
    fault_body(fail.status, &fail.message, retry)
}

pub(crate) fn handle(shared: &Shared, operation: &str, ctx: &Ctx) -> Response {
    let segs: Vec<&str> = ctx.segs.iter().map(String::as_str).collect();
    let segs = strip_project(&segs);
    let id = match operation {
        "cinder.create_group_from_src" => String::new(),
        _ => segs.get(2).copied().unwrap_or("").to_owned(),
    };
    let mut st = shared.lock();
    let st = &mut *st;
    let collection = segs.get(1).copied().unwrap_or("");
    if let Some(fail) = scope::hidden(st, ctx, collection, &id) {
        return error(&fail);
    }
    // Then the policy: a write needs `member` (or `admin`); Cinder finds the
    // resource first, so a missing one stays a 404.
    let target_known = id.is_empty() || scope::exists(st, ctx.now, collection, &id);
    if let Some(fail) =
        rbac::refuse(&ctx.caller, rbac::cinder_policy(operation)).filter(|_| target_known)
    {
        return error(&fail);
    }
    let result = match operation {
        "cinder.versions" => {
            return json(StatusCode::MULTIPLE_CHOICES, &versions(shared, &ctx.base));
        }
        "cinder.version" => return json(StatusCode::OK, &versions(shared, &ctx.base)),
        "cinder.list_volumes" => list_volumes(st, ctx, false),
        "cinder.list_volumes_detail" => list_volumes(st, ctx, true),
        "cinder.create_volume" => create_volume(st, ctx),
        "cinder.get_volume" => st
            .volume(&id, ctx.now)
            .map(|v| (StatusCode::OK, json!({"volume": render_volume(st, v, ctx)})))
            .ok_or_else(|| volume_not_found(&id)),
        "cinder.update_volume" => update_volume(st, ctx, &id),
        "cinder.delete_volume" => delete_volume(st, ctx, &id),
        "cinder.volume_action" => Err(Fail::bad_request("There is no such action")),
        "cinder.get_limits" => Ok((StatusCode::OK, limits(st, ctx))),
        "cinder.list_resource_filters"
        | "cinder.list_availability_zones"
        | "cinder.list_extensions" => info::handle(operation, ctx, &st.availability_zones),
        "cinder.get_quota" => Ok((StatusCode::OK, quota(st, ctx, &id))),
        "cinder.update_quota" => update_quota(st, ctx, &id),
        op if op.contains("_type") => types::handle(st, op, ctx, &id),
        op if op.contains("group") => groups::handle(st, op, ctx, &id),
        op => snapshots::handle(st, op, ctx, &id),
    };
    match result {
        Ok((status, Value::Null)) => empty(status),
        Ok((status, body)) => json(status, &body),
        Err(fail) => error(&fail),
    }
}

/// A result of a Cinder handler: status and body, or a failure.
pub(crate) type Reply = Result<(StatusCode, Value), Fail>;

fn versions(shared: &Shared, base: &str) -> Value {
    json!({"versions": [{
        "id": "v3.0",
        "status": "CURRENT",
        "version": shared.config.cinder_max_microversion,
        "min_version": "3.0",
        "updated": "2023-08-31T00:00:00Z",
        "links": [
            {"rel": "describedby", "type": "text/html", "href": "https://docs.openstack.org/"},
            {"rel": "self", "href": format!("{base}/volume/v3/")},
        ],
        "media-types": [{"base": "application/json", "type": "application/vnd.openstack.volume+json;version=3"}],
    }]})
}

/// Cinder's timestamp format: `2026-11-25T22:52:12.251181`.
pub(crate) fn stamp(st: &State, at: Instant) -> String {
    st.utc(at).format("%Y-%m-%dT%H:%M:%S%.6f").to_string()
}

pub(crate) fn volume_not_found(id: &str) -> Fail {
    Fail::not_found(format!("Volume {id} could not be found."))
}

/// A volume as `GET /volumes/{id}` shows it.
pub(crate) fn render_volume(st: &State, v: &Volume, ctx: &Ctx) -> Value {
    let status = v.status.at(ctx.now);
    let volume_type = v.volume_type.as_deref().unwrap_or(DEFAULT_TYPE_ID);
    let attachments: Vec<Value> = if status == "in-use" {
        v.attachments
            .iter()
            .map(|a| {
                json!({
                    "id": v.id, "attachment_id": a.id, "volume_id": v.id, "server_id": a.server_id,
                    "host_name": "simhost", "device": a.device,
                    "attached_at": a.attached_at.format("%Y-%m-%dT%H:%M:%S%.6f").to_string(),
                })
            })
            .collect()
    } else {
        Vec::new()
    };
    let mut body = json!({
        "id": v.id,
        "status": status,
        "size": v.size,
        "availability_zone": v.availability_zone,
        "created_at": stamp(st, v.created),
        "updated_at": stamp(st, v.status.since(ctx.now)),
        "name": v.name,
        "description": v.description,
        "volume_type": types::volume_type_name(st, volume_type),
        "snapshot_id": v.snapshot_id,
        "source_volid": v.source_volid,
        "metadata": v.metadata,
        "links": links(&ctx.base, "volumes", &v.id),
        "user_id": v.user_id,
        "bootable": if v.bootable { "true" } else { "false" },
        "encrypted": false,
        "replication_status": null,
        "consistencygroup_id": null,
        "multiattach": false,
        "attachments": attachments,
        "migration_status": null,
        "os-vol-tenant-attr:tenant_id": v.project_id,
        "os-vol-mig-status-attr:migstat": null,
        "os-vol-mig-status-attr:name_id": null,
        "os-vol-host-attr:host": "simhost@sim#sim",
    });
    if ctx.mv >= Mv(3, 13) {
        body["group_id"] = json!(v.group_id);
    }
    if ctx.mv >= Mv(3, 21) {
        body["provider_id"] = Value::Null;
    }
    if ctx.mv >= Mv(3, 63) {
        body["volume_type_id"] = json!(volume_type);
    }
    if ctx.mv >= Mv(3, 65) {
        body["consumes_quota"] = json!(true);
    }
    if let Some(meta) = &v.image_metadata {
        body["volume_image_metadata"] = json!(meta);
    }
    body
}

pub(crate) fn links(base: &str, collection: &str, id: &str) -> Value {
    json!([
        {"rel": "self", "href": format!("{base}/volume/v3/{collection}/{id}")},
        {"rel": "bookmark", "href": format!("{base}/volume/{collection}/{id}")},
    ])
}

/// Parses Cinder's `metadata` filter: a JSON or Python dict literal.
pub(crate) fn parse_metadata_filter(raw: &str) -> Result<BTreeMap<String, String>, Fail> {
    let attempt = serde_json::from_str::<BTreeMap<String, Value>>(raw)
        .or_else(|_| serde_json::from_str::<BTreeMap<String, Value>>(&raw.replace('\'', "\"")));
    let map = attempt.map_err(|_| Fail::bad_request(format!("Invalid metadata filter: {raw}")))?;
    Ok(map
        .into_iter()
        .map(|(k, v)| {
            let v = v.as_str().map_or_else(|| v.to_string(), str::to_owned);
            (k, v)
        })
        .collect())
}

/// Cinder's `limit` parameter, capped at its `osapi_max_limit`.
pub(crate) fn limit_param(ctx: &Ctx, max_limit: usize) -> Result<usize, Fail> {
    match ctx.q("limit") {
        None => Ok(max_limit),
        Some(l) => l
            .parse::<usize>()
            .map(|l| l.min(max_limit))
            .map_err(|_| Fail::bad_request("limit param must be an integer")),
    }
}

/// The `*_links` value pointing at the page after `last`.
pub(crate) fn next_link(ctx: &Ctx, last: &str) -> Value {
    let mut q: Vec<(String, String)> = ctx
        .query
        .iter()
        .filter(|(k, _)| k != "marker")
        .cloned()
        .collect();
    q.push(("marker".into(), last.to_owned()));
    let qs = form_urlencoded::Serializer::new(String::new())
        .extend_pairs(q)
        .finish();
    let path = ctx.segs.join("/");
    json!([{"href": format!("{}/volume/{path}?{qs}", ctx.base), "rel": "next"}])
}

/// Applies `limit` and `marker` to a newest-first list; adds the next link.
/// As Cinder's `_get_collection_links`: a page as long as the limit (the
/// request's, capped at `max_limit`) gets a next link, even when it is the last.
pub(crate) fn page<T>(
    items: Vec<T>,
    id_of: impl Fn(&T) -> &str,
    ctx: &Ctx,
    max_limit: usize,
) -> Result<(Vec<T>, Option<Value>), Fail> {
    let max = limit_param(ctx, max_limit)?;
    let mut items = items;
    if let Some(marker) = ctx.q("marker") {
        let pos = items
            .iter()
            .position(|i| id_of(i) == marker)
            .ok_or_else(|| Fail::not_found(format!("Marker {marker} could not be found.")))?;
        items.drain(..=pos);
    }
    items.truncate(max);
    let next = match items.last() {
        Some(last) if items.len() >= max => Some(next_link(ctx, id_of(last))),
        _ => None,
    };
    Ok((items, next))
}

fn list_volumes(st: &State, ctx: &Ctx, detail: bool) -> Reply {
    let filters = filters::applied(Resource::Volume, &ctx.query, ctx.mv, ctx.caller.admin())?;
    let q = |key: &str| filters::get(&filters, key);
    let metadata = q("metadata").map(parse_metadata_filter).transpose()?;
    let matching: Vec<&Volume> = st
        .volumes
        .iter()
        .rev()
        .filter(|v| v.status.at(ctx.now) != GONE)
        .filter(|v| scope::listed(ctx, &v.project_id))
        .filter(|v| q("name").is_none_or(|n| v.name.as_deref() == Some(n)))
        .filter(|v| q("status").is_none_or(|s| v.status.at(ctx.now) == s))
        .filter(|v| q("group_id").is_none_or(|g| v.group_id.as_deref() == Some(g)))
        .filter(|v| {
            q("bootable").is_none_or(|b| {
                v.bootable == matches!(b.to_ascii_lowercase().as_str(), "true" | "1")
            })
        })
        .filter(|v| {
            metadata
                .as_ref()
                .is_none_or(|m| m.iter().all(|(k, val)| v.metadata.get(k) == Some(val)))
        })
        .collect();
    let (items, next) = page(matching, |v| v.id.as_str(), ctx, st.cinder_max_limit)?;
    let list: Vec<Value> = items
        .iter()
        .map(|v| {
            if detail {
                render_volume(st, v, ctx)
            } else {
                json!({"id": v.id, "name": v.name, "links": links(&ctx.base, "volumes", &v.id)})
            }
        })
        .collect();
    let mut body = json!({ "volumes": list });
    if let Some(next) = next {
        body["volumes_links"] = next;
    }
    Ok((StatusCode::OK, body))
}

fn create_volume(st: &mut State, ctx: &Ctx) -> Reply {
    let body: Value = ctx.json()?;
    let v = &body["volume"];
    if !v.is_object() {
        return Err(Fail::bad_request(
            "Missing required element 'volume' in request body.",
        ));
    }
    let metadata: BTreeMap<String, String> =
        serde_json::from_value(v["metadata"].clone()).unwrap_or_default();
    let image = v["imageRef"].as_str().filter(|s| !s.is_empty());
    let from_source = v["snapshot_id"].is_string() || v["source_volid"].is_string();
    // Cinder's schema: a positive integer, or digits in a string; none when
    // there is a source (its size is taken).
    let size = match &v["size"] {
        Value::Null if from_source => 0,
        Value::Number(n) => match n.as_u64() {
            Some(s) if s > 0 => s,
            _ => {
                return Err(Fail::bad_request(format!(
                    "Invalid input for field/attribute size. Value: {n}. {n} is less than the minimum of 1"
                )));
            }
        },
        Value::String(x) if !x.is_empty() && x.bytes().all(|b| b.is_ascii_digit()) => {
            match x.parse::<u64>() {
                Ok(s) if s > 0 => s,
                _ => {
                    return Err(Fail::bad_request(format!(
                        "Invalid input for field/attribute size. Value: {x}. {x} is less than the minimum of 1"
                    )));
                }
            }
        }
        Value::String(x) => {
            return Err(Fail::bad_request(format!(
                "Invalid input for field/attribute size. Value: {x}. '{x}' does not match '^[0-9]+$'"
            )));
        }
        _ => return Err(Fail::bad_request("Invalid input for field/attribute size.")),
    };
    // Sources and the group are read with the caller's project scope.
    for (collection, field) in [
        ("snapshots", "snapshot_id"),
        ("volumes", "source_volid"),
        ("groups", "group_id"),
    ] {
        if let Some(hidden) = v[field]
            .as_str()
            .and_then(|id| scope::hidden(st, ctx, collection, id))
        {
            return Err(hidden);
        }
    }
    let spec = super::inventory::NewVolume {
        name: v["name"].as_str().map(str::to_owned),
        description: v["description"].as_str().map(str::to_owned),
        size,
        image: image.map(str::to_owned),
        snapshot_id: v["snapshot_id"].as_str().map(str::to_owned),
        source_volid: v["source_volid"].as_str().map(str::to_owned),
        metadata,
        group_id: v["group_id"].as_str().map(str::to_owned),
        volume_type: v["volume_type"]
            .as_str()
            .map(|t| types::volume_type_id(st, t))
            .transpose()?,
        availability_zone: v["availability_zone"].as_str().map(str::to_owned),
        owner: Some(ctx.caller.owner()),
        operation: Some("cinder.create_volume"),
    };
    let id = st.create_volume(ctx.now, spec, false)?;
    let vol = st.volume(&id, ctx.now).expect("just created");
    Ok((
        StatusCode::ACCEPTED,
        json!({"volume": render_volume(st, vol, ctx)}),
    ))
}

fn update_volume(st: &mut State, ctx: &Ctx, id: &str) -> Reply {
    let body: Value = ctx.json()?;
    let now = ctx.now;
    let vol = st.volume_mut(id, now).ok_or_else(|| volume_not_found(id))?;
    let v = &body["volume"];
    if let Some(n) = v["name"].as_str() {
        vol.name = Some(n.to_owned());
    }
    if let Some(d) = v["description"].as_str() {
        vol.description = Some(d.to_owned());
    }
    if let Ok(m) = serde_json::from_value::<BTreeMap<String, String>>(v["metadata"].clone()) {
        vol.metadata = m;
    }
    let vol = st.volume(id, now).expect("exists");
    Ok((
        StatusCode::OK,
        json!({"volume": render_volume(st, vol, ctx)}),
    ))
}

fn delete_volume(st: &mut State, ctx: &Ctx, id: &str) -> Reply {
    let now = ctx.now;
    let cascade = ctx
        .q("cascade")
        .is_some_and(|c| c.eq_ignore_ascii_case("true"));
    let vol = st.volume(id, now).ok_or_else(|| volume_not_found(id))?;
    let status = vol.status.at(now);
    let has_snapshots = st
        .snapshots
        .iter()
        .any(|s| s.volume_id == id && s.status.at(now) != GONE);
    if !matches!(status, "available" | "error")
        || (has_snapshots && !cascade)
        || vol.group_id.is_some()
    {
        return Err(Fail::bad_request(
            "Invalid volume: Volume status must be available or error or error_restoring or error_extending or error_managing and must not be migrating, attached, belong to a group, have snapshots, awaiting a transfer, or be disassociated from snapshots after volume transfer.",
        ));
    }
    let d = st.durations.clone();
    if cascade {
        for s in st
            .snapshots
            .iter_mut()
            .filter(|s| s.volume_id == id && s.status.at(now) != GONE)
        {
            s.status.rewrite(now, "deleting");
            s.status.push_after_last(d.snapshot_delete, GONE);
        }
    }
    let vol = st.volume_mut(id, now).expect("exists");
    vol.status.rewrite(now, "deleting");
    vol.status.push_after_last(d.volume_delete, GONE);
    Ok((StatusCode::ACCEPTED, Value::Null))
}

/// `GET /limits`: the quotas and what the project uses; from 3.39 an admin
/// may name another project (`project_id` or `tenant_id`), taken as given.
fn limits(st: &State, ctx: &Ctx) -> Value {
    let now = ctx.now;
    let asked = ctx.q("project_id").or_else(|| ctx.q("tenant_id"));
    let project = match asked {
        Some(p) if ctx.caller.admin() && ctx.mv >= Mv(3, 39) => p,
        _ => ctx.caller.project_id.as_str(),
    };
    let used = st.snapshots_used(project, now);
    let live = || {
        st.volumes
            .iter()
            .filter(move |v| v.status.at(now) != GONE && v.project_id == project)
    };
    let volumes = live().count();
    let gigabytes: u64 = live().map(|v| v.size).sum();
    json!({"limits": {"rate": [], "absolute": {
        "totalSnapshotsUsed": used,
        "maxTotalBackups": 10,
        "maxTotalVolumeGigabytes": 1000,
        "maxTotalSnapshots": st.snapshot_quota,
        "maxTotalBackupGigabytes": 1000,
        "totalBackupGigabytesUsed": 0,
        "maxTotalVolumes": 1000,
        "totalVolumesUsed": volumes,
        "totalBackupsUsed": 0,
        "totalGigabytesUsed": gigabytes,
    }}})
}

fn quota(st: &State, ctx: &Ctx, project: &str) -> Value {
    let used = st.snapshots_used(project, ctx.now);
    if ctx
        .q("usage")
        .is_some_and(|u| u.eq_ignore_ascii_case("true"))
    {
        json!({"quota_set": {"id": project, "snapshots": {"limit": st.snapshot_quota, "in_use": used, "reserved": 0, "allocated": 0}}})
    } else {
        json!({"quota_set": {"id": project, "snapshots": st.snapshot_quota, "volumes": 1000, "gigabytes": 1000, "groups": 100, "backups": 10}})
    }
}

fn update_quota(st: &mut State, ctx: &Ctx, project: &str) -> Reply {
    let body: Value = ctx.json()?;
    if let Some(n) = body["quota_set"]["snapshots"].as_i64() {
        st.snapshot_quota = n;
    }
    Ok((StatusCode::OK, quota(st, ctx, project)))
}
