//! Nova servers: create (image- or volume-backed, `networks: "none"`), list
//! with filters (a non-admin's disallowed ones silently dropped, its
//! `all_tenants` refused) and paging, show, rename, delete, stop/start, tags
//! and metadata (volume attachments in `attachments`).
//!
//! Over 400 lines: Nova's server endpoints as the CLI calls them, sharing the
//! server JSON renderer and the state checks.

use std::{collections::BTreeMap, time::Instant};

use axum::http::StatusCode;
use serde_json::{Value, json};

use super::{Reply, links};
use crate::{
    http::{Ctx, Mv},
    inventory::{BdmSource, NewBdm, NewServer},
    reply::{is_uuid, py_repr, schema_error},
    state::{Fail, GONE, Server, State},
    tenancy::all_tenants,
};

pub(super) fn handle(st: &mut State, operation: &str, ctx: &Ctx, id: &str, sub: &str) -> Reply {
    match operation {
        "nova.list_servers" => list(st, ctx, false),
        "nova.list_servers_detail" => list(st, ctx, true),
        "nova.create_server" => create(st, ctx),
        "nova.get_server" => {
            let s = find(st, ctx.now, id)?;
            Ok((StatusCode::OK, json!({"server": render(st, s, ctx)})))
        }
        "nova.update_server" => {
            let body: Value = ctx.json()?;
            let s = find_mut(st, ctx.now, id)?;
            if let Some(n) = body["server"]["name"].as_str() {
                s.name = n.to_owned();
            }
            let s = find(st, ctx.now, id)?;
            Ok((StatusCode::OK, json!({"server": render(st, s, ctx)})))
        }
        "nova.delete_server" => delete(st, ctx, id),
        "nova.stop_server" | "nova.start_server" => {
            power(st, ctx, id, operation == "nova.stop_server")
        }
        "nova.server_action" => Err(Fail::bad_request(
            "The simulator does not support this server action.",
        )),
        op if op.contains("volume") => super::attachments::handle(st, op, ctx, id, sub),
        op if op.contains("tag") => tags(st, op, ctx, id, sub),
        op => metadata(st, op, ctx, id, sub),
    }
}

pub(super) fn find<'a>(st: &'a State, now: Instant, id: &str) -> Result<&'a Server, Fail> {
    st.server(id, now)
        .ok_or_else(|| Fail::not_found(format!("Instance {id} could not be found.")))
}

pub(super) fn find_mut<'a>(
    st: &'a mut State,
    now: Instant,
    id: &str,
) -> Result<&'a mut Server, Fail> {
    st.server_mut(id, now)
        .ok_or_else(|| Fail::not_found(format!("Instance {id} could not be found.")))
}

fn stamp(st: &State, at: Instant) -> String {
    st.utc(at).format("%Y-%m-%dT%H:%M:%SZ").to_string()
}

/// The status Nova derives from vm_state.
pub(crate) fn status_of(vm_state: &str) -> &'static str {
    match vm_state {
        "building" => "BUILD",
        "active" => "ACTIVE",
        "stopped" => "SHUTOFF",
        "error" => "ERROR",
        _ => "UNKNOWN",
    }
}

/// A server as `GET /servers/{id}` shows it at the request's microversion.
pub(crate) fn render(st: &State, s: &Server, ctx: &Ctx) -> Value {
    let now = ctx.now;
    let vm_state = s.vm_state.at(now);
    let task_state = s.task_state.at(now);
    let flavor = st.flavors.iter().find(|f| f.id == s.flavor_id);
    let flavor_json = match flavor {
        Some(f) if ctx.mv >= Mv(2, 47) => json!({
            "vcpus": f.vcpus, "ram": f.ram, "disk": f.disk, "ephemeral": 0, "swap": 0,
            "original_name": f.name, "extra_specs": {},
        }),
        _ => {
            json!({"id": s.flavor_id, "links": [{"rel": "bookmark", "href": format!("{}/compute/flavors/{}", ctx.base, s.flavor_id)}]})
        }
    };
    let image = match &s.image_id {
        None => json!(""),
        Some(i) => {
            let mut img = json!({"id": i, "links": [{"rel": "bookmark", "href": format!("{}/compute/images/{i}", ctx.base)}]});
            if ctx.mv >= Mv(2, 98) {
                img["properties"] = json!({});
            }
            img
        }
    };
    let launched = s.vm_state.since(now);
    let updated = s.vm_state.since(now).max(s.task_state.since(now));
    let active = vm_state != "building";
    let volumes: Vec<Value> = s
        .bdms
        .iter()
        .map(|b| {
            if ctx.mv >= Mv(2, 3) {
                json!({"id": b.volume_id, "delete_on_termination": b.delete_on_termination})
            } else {
                json!({"id": b.volume_id})
            }
        })
        .collect();
    let mut body = json!({
        "accessIPv4": "", "accessIPv6": "", "addresses": {},
        "created": stamp(st, s.created),
        "flavor": flavor_json,
        "hostId": if active { "8c1e3b6f0c2a4f4e9d7b5a3c1e0f2d4b6a8c0e2f4a6b8d0c2e4f6a8b" } else { "" },
        "id": s.id,
        "image": image,
        "links": links(&ctx.base, "servers", &s.id),
        "metadata": s.metadata,
        "name": s.name,
        "status": status_of(vm_state),
        "tenant_id": s.project_id,
        "user_id": s.user_id,
        "updated": stamp(st, updated),
        "OS-DCF:diskConfig": "MANUAL",
        "progress": 0,
        "OS-EXT-AZ:availability_zone": if active || s.requested_az.is_some() { s.availability_zone.as_str() } else { "" },
        "config_drive": "",
        "key_name": s.key_name,
        "OS-SRV-USG:launched_at": if active { Some(st.utc(launched).format("%Y-%m-%dT%H:%M:%S%.6f").to_string()) } else { None },
        "OS-SRV-USG:terminated_at": null,
        "OS-EXT-SRV-ATTR:host": if active { Some("simhost") } else { None },
        "OS-EXT-SRV-ATTR:instance_name": format!("instance-{:08x}", s.instance_number),
        "OS-EXT-SRV-ATTR:hypervisor_hostname": if active { Some("simhost") } else { None },
        "OS-EXT-STS:task_state": task_state,
        "OS-EXT-STS:vm_state": vm_state,
        "OS-EXT-STS:power_state": match vm_state { "active" => 1, "stopped" => 4, _ => 0 },
        "os-extended-volumes:volumes_attached": volumes,
        "security_groups": [{"name": "default"}],
    });
    // Extended server attributes and host_status are for admins
    // (os-extended-server-attributes, servers:show:host_status); 2.90 shows
    // the hostname to everyone.
    if ctx.caller.admin() && ctx.mv >= Mv(2, 3) {
        body["OS-EXT-SRV-ATTR:hostname"] = json!(s.name);
        body["OS-EXT-SRV-ATTR:kernel_id"] = json!("");
        body["OS-EXT-SRV-ATTR:launch_index"] = json!(0);
        body["OS-EXT-SRV-ATTR:ramdisk_id"] = json!("");
        body["OS-EXT-SRV-ATTR:reservation_id"] = json!(format!("r-{}", &s.id[..8]));
        body["OS-EXT-SRV-ATTR:root_device_name"] =
            json!(if active { Some("/dev/vda") } else { None });
        body["OS-EXT-SRV-ATTR:user_data"] = json!(s.user_data);
    }
    if !ctx.caller.admin() {
        if let Some(o) = body.as_object_mut() {
            o.retain(|k, _| !k.starts_with("OS-EXT-SRV-ATTR:"));
        }
        if ctx.mv >= Mv(2, 90) {
            body["OS-EXT-SRV-ATTR:hostname"] = json!(s.name);
        }
    }
    if ctx.mv >= Mv(2, 9) {
        body["locked"] = json!(false);
    }
    if ctx.caller.admin() && ctx.mv >= Mv(2, 16) {
        body["host_status"] = json!(if active { "UP" } else { "" });
    }
    if ctx.mv >= Mv(2, 19) {
        body["description"] = Value::Null;
    }
    if ctx.mv >= Mv(2, 26) {
        body["tags"] = json!(s.tags);
    }
    if ctx.mv >= Mv(2, 63) {
        body["trusted_image_certificates"] = Value::Null;
    }
    if ctx.mv >= Mv(2, 71) {
        body["server_groups"] = json!([]);
    }
    if ctx.mv >= Mv(2, 73) {
        body["locked_reason"] = Value::Null;
    }
    if ctx.mv >= Mv(2, 96) {
        body["pinned_availability_zone"] = json!(s.requested_az);
    }
    if ctx.mv >= Mv(2, 100) {
        body["scheduler_hints"] = json!({});
    }
    body
}

/// The server-list filters a non-admin may use at `mv`
/// (`ServersController._get_server_search_options`).
fn member_filters(mv: Mv) -> Vec<&'static str> {
    let mut allowed = vec![
        "reservation_id",
        "name",
        "status",
        "image",
        "flavor",
        "ip",
        "changes-since",
        "all_tenants",
    ];
    if mv >= Mv(2, 5) {
        allowed.push("ip6");
    }
    if mv >= Mv(2, 26) {
        allowed.extend(["tags", "tags-any", "not-tags", "not-tags-any"]);
    }
    if mv >= Mv(2, 66) {
        allowed.push("changes-before");
    }
    if mv >= Mv(2, 73) {
        allowed.push("locked");
    }
    if mv >= Mv(2, 83) {
        allowed.extend([
            "availability_zone",
            "config_drive",
            "key_name",
            "created_at",
            "launched_at",
            "terminated_at",
            "power_state",
            "task_state",
            "vm_state",
            "progress",
            "user_id",
        ]);
    }
    if mv >= Mv(2, 90) {
        allowed.push("hostname");
    }
    allowed
}

/// The filters Nova applies to a server list: every one for an admin, and for
/// anyone else only those [`member_filters`] allows; the rest are dropped
/// without an error (`remove_invalid_options`). Paging and sorting are read apart.
fn applied_filters(ctx: &Ctx) -> Vec<(String, String)> {
    let allowed = member_filters(ctx.mv);
    ctx.query
        .iter()
        .filter(|(k, _)| ctx.caller.admin() || allowed.contains(&k.as_str()))
        .cloned()
        .collect()
}

/// Nova's `name` filter is a regular expression; `^` and `$` anchors are
/// honoured, anything else matches as a substring.
fn name_matches(name: &str, pattern: &str) -> bool {
    let (start, p) = pattern
        .strip_prefix('^')
        .map_or((false, pattern), |p| (true, p));
    let (end, p) = p.strip_suffix('$').map_or((false, p), |p| (true, p));
    match (start, end) {
        (true, true) => name == p,
        (true, false) => name.starts_with(p),
        (false, true) => name.ends_with(p),
        (false, false) => name.contains(p),
    }
}

fn list(st: &State, ctx: &Ctx, detail: bool) -> Reply {
    let all_tenants = all_tenants(ctx.q("all_tenants"));
    if all_tenants && !ctx.caller.admin() {
        return Err(Fail::new(
            StatusCode::FORBIDDEN,
            "Policy doesn't allow os_compute_api:servers:index:get_all_tenants to be performed.",
        ));
    }
    let filters = applied_filters(ctx);
    let q = |key: &str| {
        filters
            .iter()
            .find(|(k, _)| k == key)
            .map(|(_, v)| v.as_str())
    };
    let split = |k: &str| -> Option<Vec<&str>> {
        q(k).map(|v| {
            v.split(',')
                .map(str::trim)
                .filter(|t| !t.is_empty())
                .collect()
        })
    };
    let (tags, tags_any, not_tags, not_tags_any) = (
        split("tags"),
        split("tags-any"),
        split("not-tags"),
        split("not-tags-any"),
    );
    let has = |s: &Server, t: &str| s.tags.iter().any(|x| x == t);
    let matching: Vec<&Server> = st
        .servers
        .iter()
        .rev()
        .filter(|s| s.vm_state.at(ctx.now) != GONE)
        // A member lists its project's servers; an admin every project's
        // only with all_tenants.
        .filter(|s| ctx.caller.lists(all_tenants, &s.project_id))
        .filter(|s| q("name").is_none_or(|n| name_matches(&s.name, n)))
        .filter(|s| {
            q("status").is_none_or(|x| status_of(s.vm_state.at(ctx.now)).eq_ignore_ascii_case(x))
        })
        .filter(|s| q("image").is_none_or(|i| s.image_id.as_deref() == Some(i)))
        .filter(|s| q("flavor").is_none_or(|f| s.flavor_id == f))
        .filter(|s| {
            q("project_id")
                .or(q("tenant_id"))
                .is_none_or(|p| s.project_id == p)
        })
        .filter(|s| tags.as_ref().is_none_or(|t| t.iter().all(|x| has(s, x))))
        .filter(|s| {
            tags_any
                .as_ref()
                .is_none_or(|t| t.iter().any(|x| has(s, x)))
        })
        .filter(|s| {
            not_tags
                .as_ref()
                .is_none_or(|t| !t.iter().all(|x| has(s, x)))
        })
        .filter(|s| {
            not_tags_any
                .as_ref()
                .is_none_or(|t| !t.iter().any(|x| has(s, x)))
        })
        .collect();
    let limit = match ctx.q("limit") {
        None => None,
        Some(l) => Some(
            l.parse::<usize>()
                .map_err(|_| Fail::bad_request("limit param must be an integer"))?,
        ),
    };
    let mut items = matching;
    if let Some(marker) = ctx.q("marker") {
        let pos = items
            .iter()
            .position(|s| s.id == marker)
            .ok_or_else(|| Fail::bad_request(format!("marker [{marker}] not found")))?;
        items.drain(..=pos);
    }
    let max = limit.unwrap_or(1000).min(1000);
    let full = items.len() > max || (limit.is_some() && items.len() == max);
    items.truncate(max);
    let list: Vec<Value> = items
        .iter()
        .map(|s| {
            if detail {
                render(st, s, ctx)
            } else {
                json!({"id": s.id, "links": links(&ctx.base, "servers", &s.id), "name": s.name})
            }
        })
        .collect();
    let mut body = json!({ "servers": list });
    if let Some(last) = items.last().filter(|_| full) {
        {
            let mut q: Vec<(String, String)> = ctx
                .query
                .iter()
                .filter(|(k, _)| k != "marker")
                .cloned()
                .collect();
            q.push(("marker".into(), last.id.clone()));
            let qs = form_urlencoded::Serializer::new(String::new())
                .extend_pairs(q)
                .finish();
            let path = if detail { "servers/detail" } else { "servers" };
            body["servers_links"] =
                json!([{"href": format!("{}/compute/v2.1/{path}?{qs}", ctx.base), "rel": "next"}]);
        }
    }
    Ok((StatusCode::OK, body))
}

fn create(st: &mut State, ctx: &Ctx) -> Reply {
    let body: Value = ctx.json()?;
    let s = &body["server"];
    let name = match &s["name"] {
        Value::String(n) if n.trim().is_empty() => {
            return Err(Fail::bad_request(schema_error(
                "name",
                &s["name"],
                &format!("{} should be non-empty", py_repr(&s["name"])),
            )));
        }
        Value::String(n) => n.clone(),
        _ => return Err(Fail::bad_request("Invalid input for field/attribute name.")),
    };
    let flavor = match &s["flavorRef"] {
        Value::String(f) => f.rsplit('/').next().unwrap_or("").to_owned(),
        Value::Number(n) => n.to_string(),
        _ => {
            return Err(Fail::bad_request(
                "Invalid input for field/attribute flavorRef.",
            ));
        }
    };
    let networks = check_networks(s, ctx.mv)?;
    let tags = check_tags(s, ctx.mv)?;
    let metadata = check_metadata(&s["metadata"])?;
    let availability_zone = match &s["availability_zone"] {
        Value::Null => None,
        Value::String(az) => Some(az.clone()),
        other => {
            return Err(Fail::bad_request(schema_error(
                "availability_zone",
                other,
                &format!("{} is not of type 'string'", py_repr(other)),
            )));
        }
    };
    let key_name = s["key_name"].as_str().map(str::to_owned);
    let image_ref = s["imageRef"]
        .as_str()
        .filter(|i| !i.is_empty())
        .map(|i| i.rsplit('/').next().unwrap_or(i).to_owned());
    let mut bdms = Vec::new();
    for b in s["block_device_mapping_v2"]
        .as_array()
        .into_iter()
        .flatten()
    {
        let dest = b["destination_type"].as_str().unwrap_or("volume");
        let uuid = b["uuid"].as_str().unwrap_or("").to_owned();
        let source = match b["source_type"].as_str().unwrap_or("") {
            "image" if dest == "local" => continue,
            "image" => BdmSource::Image(uuid),
            "volume" => BdmSource::Volume(uuid),
            "snapshot" => BdmSource::Snapshot(uuid),
            "blank" if dest == "volume" => BdmSource::Blank,
            "blank" => continue,
            other => {
                return Err(Fail::bad_request(format!(
                    "Block Device Mapping is Invalid: source_type {other} is invalid."
                )));
            }
        };
        let boot_index = match &b["boot_index"] {
            Value::Number(n) => n.as_i64(),
            Value::String(x) => x.parse().ok(),
            _ => None,
        };
        bdms.push(NewBdm {
            source,
            boot_index,
            volume_size: b["volume_size"]
                .as_u64()
                .or_else(|| b["volume_size"].as_str().and_then(|x| x.parse().ok())),
            delete_on_termination: b["delete_on_termination"].as_bool().unwrap_or(false),
            device_name: b["device_name"].as_str().map(str::to_owned),
        });
    }
    // Nova reads the image, volumes and snapshots with the caller's token:
    // another project's private ones are not found.
    check_sources(st, ctx, image_ref.as_deref(), &bdms)?;
    let volume_backed = bdms.iter().any(|b| b.boot_index == Some(0));
    if !volume_backed && image_ref.is_none() {
        return Err(Fail::bad_request(
            "Block Device Mapping is Invalid: Boot sequence for the instance and image/block device mapping combination is not valid.",
        ));
    }
    let maps = |i: &str| {
        st.find_image(i, ctx.now)
            .is_some_and(|img| img.properties.contains_key("block_device_mapping"))
    };
    let spec = NewServer {
        name,
        flavor,
        // A volume-backed snapshot image stays: Nova merges its mapping with
        // the request's and checks its min_disk against the root's size.
        image: if volume_backed && !image_ref.as_deref().is_some_and(maps) {
            None
        } else {
            image_ref
        },
        bdms,
        tags,
        metadata,
        user_data: user_data(&s["user_data"])?,
        owner: Some(ctx.caller.owner()),
        boot_roles: Some(ctx.caller.roles.joined()),
        availability_zone,
        key_name,
        networks,
        operation: Some("nova.create_server"),
    };
    let id = st.create_server(ctx.now, spec, false)?;
    let password: String = st.uuid().replace('-', "")[..12].to_owned();
    Ok((
        StatusCode::ACCEPTED,
        json!({"server": {
            "id": id,
            "links": links(&ctx.base, "servers", &id),
            "OS-DCF:diskConfig": "MANUAL",
            "security_groups": [{"name": "default"}],
            "adminPass": password,
        }}),
    ))
}

/// Nova's schema for `networks` (servers.py `create_v237`): from 2.37
/// required, `"none"`, `"auto"` or a list of `{"uuid"}`/`{"port"}` (with
/// `fixed_ip`, `tag`); before, a list. The simulator has no Neutron: any
/// network or port is taken, and none gives the server an address.
fn check_networks(server: &Value, mv: Mv) -> Result<Value, Fail> {
    let Some(networks) = server.get("networks") else {
        if mv >= Mv(2, 37) {
            return Err(Fail::bad_request(schema_error(
                "server",
                server,
                "'networks' is a required property",
            )));
        }
        return Ok(Value::Null);
    };
    let any_of = || {
        Fail::bad_request(schema_error(
            "networks",
            networks,
            &format!(
                "{} is not valid under any of the given schemas",
                py_repr(networks)
            ),
        ))
    };
    let item_ok = |n: &Value| {
        n.as_object().is_some_and(|o| {
            o.keys()
                .all(|k| matches!(k.as_str(), "uuid" | "port" | "fixed_ip" | "tag"))
                && ["uuid", "port"].iter().all(|k| match o.get(*k) {
                    None | Some(Value::Null) => true,
                    Some(Value::String(v)) => is_uuid(v),
                    Some(_) => false,
                })
        })
    };
    match networks {
        Value::String(v) if mv >= Mv(2, 37) => {
            if matches!(v.as_str(), "none" | "auto") {
                Ok(networks.clone())
            } else {
                Err(any_of())
            }
        }
        Value::Array(items) => {
            if items.iter().all(item_ok) {
                Ok(networks.clone())
            } else if mv >= Mv(2, 37) {
                Err(any_of())
            } else {
                Err(Fail::bad_request(schema_error(
                    "networks",
                    networks,
                    &format!("{} is not valid", py_repr(networks)),
                )))
            }
        }
        _ if mv >= Mv(2, 37) => Err(any_of()),
        _ => Err(Fail::bad_request(schema_error(
            "networks",
            networks,
            &format!("{} is not of type 'array'", py_repr(networks)),
        ))),
    }
}

/// `tags` on create: from 2.52, a list of strings; before, an unexpected property.
fn check_tags(server: &Value, mv: Mv) -> Result<Vec<String>, Fail> {
    let Some(tags) = server.get("tags") else {
        return Ok(Vec::new());
    };
    if mv < Mv(2, 52) {
        return Err(Fail::bad_request(schema_error(
            "server",
            server,
            "Additional properties are not allowed ('tags' was unexpected)",
        )));
    }
    serde_json::from_value(tags.clone()).map_err(|_| {
        let detail = if tags.is_array() {
            format!("{} is not valid", py_repr(tags))
        } else {
            format!("{} is not of type 'array'", py_repr(tags))
        };
        Fail::bad_request(schema_error("tags", tags, &detail))
    })
}

/// `metadata`: string values only.
fn check_metadata(v: &Value) -> Result<BTreeMap<String, String>, Fail> {
    match v {
        Value::Null => Ok(BTreeMap::new()),
        Value::Object(m) => m
            .iter()
            .map(|(k, val)| match val {
                Value::String(x) => Ok((k.clone(), x.clone())),
                other => Err(Fail::bad_request(schema_error(
                    k,
                    other,
                    &format!("{} is not of type 'string'", py_repr(other)),
                ))),
            })
            .collect(),
        other => Err(Fail::bad_request(schema_error(
            "metadata",
            other,
            &format!("{} is not of type 'object'", py_repr(other)),
        ))),
    }
}

fn check_sources(
    st: &State,
    ctx: &Ctx,
    image: Option<&str>,
    bdms: &[crate::inventory::NewBdm],
) -> Result<(), Fail> {
    let now = ctx.now;
    let image_hidden = |i: &str| {
        st.find_image(i, now)
            .is_some_and(|img| !crate::glance::readable(img, ctx))
    };
    if let Some(i) = image.filter(|i| image_hidden(i)) {
        return Err(Fail::bad_request(format!("Image {i} could not be found.")));
    }
    for b in bdms {
        let hidden = match &b.source {
            BdmSource::Volume(v) => st
                .volume(v, now)
                .filter(|x| !ctx.caller.may_read(&x.project_id))
                .map(|_| format!("failed to get volume {v}.")),
            BdmSource::Snapshot(s) => st
                .snapshot(s, now)
                .filter(|x| !ctx.caller.may_read(&x.project_id))
                .map(|_| format!("failed to get snapshot {s}.")),
            BdmSource::Image(i) => image_hidden(i).then(|| format!("failed to get image {i}.")),
            BdmSource::Blank => None,
        };
        if let Some(what) = hidden {
            return Err(Fail::bad_request(format!(
                "Block Device Mapping is Invalid: {what}"
            )));
        }
    }
    Ok(())
}

/// Nova's `user_data`: base64 of at most 65535 bytes.
fn user_data(v: &Value) -> Result<Option<String>, Fail> {
    use base64::Engine as _;
    match v {
        Value::Null => Ok(None),
        Value::String(text)
            if text.len() <= 65535
                && base64::engine::general_purpose::STANDARD
                    .decode(text)
                    .is_ok() =>
        {
            Ok(Some(text.clone()))
        }
        _ => Err(Fail::bad_request(
            "Invalid input for field/attribute user_data. Value: ... is not a 'base64'",
        )),
    }
}

fn delete(st: &mut State, ctx: &Ctx, id: &str) -> Reply {
    let now = ctx.now;
    let d = st.durations.clone();
    let s = find_mut(st, now, id)?;
    let gone_at = now + d.server_delete;
    s.task_state.rewrite(now, Some("deleting"));
    s.vm_state.rewrite(now, s.vm_state.at(now));
    s.vm_state.push_at(gone_at, GONE);
    let bdms = s.bdms.clone();
    for b in bdms {
        // Cinder refuses to delete a volume that has snapshots: Nova logs it
        // and the volume stays, detached (as on the rig).
        let has_snapshots = st
            .snapshots
            .iter()
            .any(|x| x.volume_id == b.volume_id && x.status.at(now) != GONE);
        if let Some(v) = st.volume_mut(&b.volume_id, now) {
            v.status.rewrite(now, v.status.at(now));
            if b.delete_on_termination && !has_snapshots {
                v.status.push_at(gone_at, "deleting");
                v.status.push_at(gone_at + d.volume_delete, GONE);
            } else {
                v.status.push_at(gone_at, "available");
            }
        }
    }
    Ok((StatusCode::NO_CONTENT, Value::Null))
}

fn power(st: &mut State, ctx: &Ctx, id: &str, stop: bool) -> Reply {
    let now = ctx.now;
    let s = find_mut(st, now, id)?;
    let (from, to) = if stop {
        ("active", "stopped")
    } else {
        ("stopped", "active")
    };
    let vm = s.vm_state.at(now);
    if vm != from || s.task_state.at(now).is_some() {
        let action = if stop { "stop" } else { "start" };
        return Err(Fail::conflict(format!(
            "Cannot '{action}' instance {id} while it is in vm_state {vm}"
        )));
    }
    s.vm_state.rewrite(now, to);
    Ok((StatusCode::ACCEPTED, Value::Null))
}

fn tags(st: &mut State, op: &str, ctx: &Ctx, id: &str, tag: &str) -> Reply {
    if ctx.mv < Mv(2, 26) {
        return Err(Fail::not_found("The resource could not be found."));
    }
    let body = if op == "nova.replace_tags" {
        Some(ctx.json::<Value>()?)
    } else {
        None
    };
    let s = find_mut(st, ctx.now, id)?;
    match op {
        "nova.list_tags" => Ok((StatusCode::OK, json!({"tags": s.tags}))),
        "nova.replace_tags" => {
            s.tags = serde_json::from_value(body.unwrap_or_default()["tags"].clone())
                .map_err(|_| Fail::bad_request("Invalid input for field/attribute tags."))?;
            Ok((StatusCode::OK, json!({"tags": s.tags})))
        }
        "nova.delete_all_tags" => {
            s.tags.clear();
            Ok((StatusCode::NO_CONTENT, Value::Null))
        }
        "nova.check_tag" => {
            if s.tags.iter().any(|t| t == tag) {
                Ok((StatusCode::NO_CONTENT, Value::Null))
            } else {
                Err(Fail::not_found(format!("Tag '{tag}' could not be found.")))
            }
        }
        "nova.add_tag" => {
            if s.tags.iter().any(|t| t == tag) {
                return Ok((StatusCode::NO_CONTENT, Value::Null));
            }
            s.tags.push(tag.to_owned());
            Ok((StatusCode::CREATED, Value::Null))
        }
        _ => {
            let before = s.tags.len();
            s.tags.retain(|t| t != tag);
            if s.tags.len() == before {
                return Err(Fail::not_found(format!("Tag '{tag}' could not be found.")));
            }
            Ok((StatusCode::NO_CONTENT, Value::Null))
        }
    }
}

fn metadata(st: &mut State, op: &str, ctx: &Ctx, id: &str, key: &str) -> Reply {
    let body = if matches!(
        op,
        "nova.update_metadata" | "nova.replace_metadata" | "nova.set_metadata_item"
    ) {
        Some(ctx.json::<Value>()?)
    } else {
        None
    };
    let s = find_mut(st, ctx.now, id)?;
    let parse = |v: &Value| -> Result<BTreeMap<String, String>, Fail> {
        serde_json::from_value(v.clone()).map_err(|_| Fail::bad_request("Malformed request body"))
    };
    match op {
        "nova.list_metadata" => Ok((StatusCode::OK, json!({"metadata": s.metadata}))),
        "nova.update_metadata" => {
            s.metadata
                .extend(parse(&body.unwrap_or_default()["metadata"])?);
            Ok((StatusCode::OK, json!({"metadata": s.metadata})))
        }
        "nova.replace_metadata" => {
            s.metadata = parse(&body.unwrap_or_default()["metadata"])?;
            Ok((StatusCode::OK, json!({"metadata": s.metadata})))
        }
        "nova.get_metadata_item" => s
            .metadata
            .get(key)
            .map(|v| (StatusCode::OK, json!({"meta": {key: v}})))
            .ok_or_else(|| Fail::not_found("Metadata item was not found")),
        "nova.set_metadata_item" => {
            let meta = parse(&body.unwrap_or_default()["meta"])?;
            s.metadata.extend(meta.clone());
            Ok((StatusCode::OK, json!({ "meta": meta })))
        }
        "nova.delete_metadata_item" => s
            .metadata
            .remove(key)
            .map(|_| (StatusCode::NO_CONTENT, Value::Null))
            .ok_or_else(|| Fail::not_found("Metadata item was not found")),
        _ => Err(Fail::not_found("The resource could not be found.")),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tag_filters_are_a_members_only_from_2_26() {
        assert!(!member_filters(Mv(2, 25)).contains(&"tags"));
        assert!(member_filters(Mv(2, 26)).contains(&"tags"));
        assert!(member_filters(Mv(2, 96)).contains(&"not-tags-any"));
    }

    #[test]
    fn a_member_may_never_filter_by_host_or_project() {
        for mv in [Mv(2, 1), Mv(2, 96)] {
            let allowed = member_filters(mv);
            assert!(!allowed.contains(&"host") && !allowed.contains(&"project_id"));
        }
    }
}
