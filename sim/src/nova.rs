//! Nova (compute v2.1): version discovery, limits, extensions and routing
//! here; servers, tags, metadata and volume attachments in `servers`; the
//! `createImage` action in `snapshot`; flavors in `flavors`; the image
//! proxy in `images`.

mod attachments;
mod flavors;
mod images;
mod keypairs;
pub(crate) mod servers;
mod snapshot;

use axum::{
    http::{Method, StatusCode},
    response::Response,
};
use serde_json::{Value, json};

use super::{
    http::{Ctx, Mv, fault_body, json},
    rbac,
    state::{Fail, Shared, State},
};

/// Nova's `extension_info.py` list, as the rig answers `GET /extensions` (Nova 34).
const EXTENSIONS: &str = include_str!("nova/extensions.json");

/// The operation name of a Nova request; actions are named by their body.
pub(crate) fn operation(method: &Method, segs: &[&str], body: &[u8]) -> &'static str {
    let segs = strip_project(segs);
    match (method.as_str(), segs.as_slice()) {
        ("GET", []) => "nova.versions",
        ("GET", ["v2.1"]) => "nova.version",
        ("GET", ["v2.1", "servers"]) => "nova.list_servers",
        ("GET", ["v2.1", "servers", "detail"]) => "nova.list_servers_detail",
        ("POST", ["v2.1", "servers"]) => "nova.create_server",
        ("GET", ["v2.1", "servers", _]) => "nova.get_server",
        ("PUT", ["v2.1", "servers", _]) => "nova.update_server",
        ("DELETE", ["v2.1", "servers", _]) => "nova.delete_server",
        ("POST", ["v2.1", "servers", _, "action"]) => action_name(body),
        ("GET", ["v2.1", "servers", _, "os-volume_attachments"]) => "nova.list_volume_attachments",
        ("POST", ["v2.1", "servers", _, "os-volume_attachments"]) => "nova.attach_volume",
        ("GET", ["v2.1", "servers", _, "os-volume_attachments", _]) => "nova.get_volume_attachment",
        ("PUT", ["v2.1", "servers", _, "os-volume_attachments", _]) => {
            "nova.update_volume_attachment"
        }
        ("DELETE", ["v2.1", "servers", _, "os-volume_attachments", _]) => "nova.detach_volume",
        ("GET", ["v2.1", "servers", _, "tags"]) => "nova.list_tags",
        ("PUT", ["v2.1", "servers", _, "tags"]) => "nova.replace_tags",
        ("DELETE", ["v2.1", "servers", _, "tags"]) => "nova.delete_all_tags",
        ("GET", ["v2.1", "servers", _, "tags", _]) => "nova.check_tag",
        ("PUT", ["v2.1", "servers", _, "tags", _]) => "nova.add_tag",
        ("DELETE", ["v2.1", "servers", _, "tags", _]) => "nova.delete_tag",
        ("GET", ["v2.1", "servers", _, "metadata"]) => "nova.list_metadata",
        ("POST", ["v2.1", "servers", _, "metadata"]) => "nova.update_metadata",
        ("PUT", ["v2.1", "servers", _, "metadata"]) => "nova.replace_metadata",
        ("GET", ["v2.1", "servers", _, "metadata", _]) => "nova.get_metadata_item",
        ("PUT", ["v2.1", "servers", _, "metadata", _]) => "nova.set_metadata_item",
        ("DELETE", ["v2.1", "servers", _, "metadata", _]) => "nova.delete_metadata_item",
        ("GET", ["v2.1", "flavors"]) => "nova.list_flavors",
        ("GET", ["v2.1", "flavors", "detail"]) => "nova.list_flavors_detail",
        ("POST", ["v2.1", "flavors"]) => "nova.create_flavor",
        ("GET", ["v2.1", "flavors", _]) => "nova.get_flavor",
        ("PUT", ["v2.1", "flavors", _]) => "nova.update_flavor",
        ("DELETE", ["v2.1", "flavors", _]) => "nova.delete_flavor",
        ("POST", ["v2.1", "flavors", _, "action"]) => "nova.flavor_action",
        ("GET", ["v2.1", "flavors", _, "os-flavor-access"]) => "nova.list_flavor_access",
        ("GET", ["v2.1", "flavors", _, "os-extra_specs"]) => "nova.get_flavor_extra_specs",
        ("POST", ["v2.1", "flavors", _, "os-extra_specs"]) => "nova.create_flavor_extra_specs",
        ("GET", ["v2.1", "flavors", _, "os-extra_specs", _]) => "nova.get_flavor_extra_spec",
        ("PUT", ["v2.1", "flavors", _, "os-extra_specs", _]) => "nova.update_flavor_extra_spec",
        ("DELETE", ["v2.1", "flavors", _, "os-extra_specs", _]) => "nova.delete_flavor_extra_spec",
        ("GET", ["v2.1", "images"]) => "nova.list_images",
        ("GET", ["v2.1", "images", "detail"]) => "nova.list_images_detail",
        ("GET", ["v2.1", "images", _]) => "nova.get_image",
        ("DELETE", ["v2.1", "images", _]) => "nova.delete_image",
        ("GET", ["v2.1", "images", _, "metadata"]) => "nova.list_image_metadata",
        ("POST", ["v2.1", "images", _, "metadata"]) => "nova.update_image_metadata",
        ("PUT", ["v2.1", "images", _, "metadata"]) => "nova.replace_image_metadata",
        ("GET", ["v2.1", "images", _, "metadata", _]) => "nova.get_image_metadata_item",
        ("PUT", ["v2.1", "images", _, "metadata", _]) => "nova.set_image_metadata_item",
        ("DELETE", ["v2.1", "images", _, "metadata", _]) => "nova.delete_image_metadata_item",
        ("GET", ["v2.1", "extensions"]) => "nova.list_extensions",
        ("GET", ["v2.1", "os-keypairs"]) => "nova.list_keypairs",
        ("POST", ["v2.1", "os-keypairs"]) => "nova.create_keypair",
        ("GET", ["v2.1", "os-keypairs", _]) => "nova.get_keypair",
        ("DELETE", ["v2.1", "os-keypairs", _]) => "nova.delete_keypair",
        ("GET", ["v2.1", "os-availability-zone"]) => "nova.list_availability_zones",
        ("GET", ["v2.1", "limits"]) => "nova.get_limits",
        _ => "nova.unknown",
    }
}

fn action_name(body: &[u8]) -> &'static str {
    let key = serde_json::from_slice::<serde_json::Map<String, Value>>(body)
        .ok()
        .and_then(|m| m.keys().next().cloned())
        .unwrap_or_default();
    match key.as_str() {
        "createImage" => "nova.create_image",
        "os-stop" => "nova.stop_server",
        "os-start" => "nova.start_server",
        _ => "nova.server_action",
    }
}

/// Drops the project id of `/v2.1/{project_id}/...` URLs.
fn strip_project<'a>(segs: &[&'a str]) -> Vec<&'a str> {
    let mut v = segs.to_vec();
    if v.len() >= 2
        && v[0] == "v2.1"
        && !matches!(
            v[1],
            "servers"
                | "flavors"
                | "limits"
                | "images"
                | "extensions"
                | "os-keypairs"
                | "os-availability-zone"
        )
        && v[1].len() == 32
    {
        v.remove(1);
    }
    v
}

/// Nova's error body.
pub(crate) fn error(fail: &Fail) -> Response {
    fault_body(fail.status, &fail.message, None)
}

pub(crate) async fn handle(shared: &Shared, operation: &str, ctx: &Ctx) -> Response {
    let segs: Vec<&str> = ctx.segs.iter().map(String::as_str).collect();
    let segs = strip_project(&segs);
    let id = segs.get(2).copied().unwrap_or("").to_owned();
    let sub = segs.get(4).copied().unwrap_or("").to_owned();
    if segs.get(1) == Some(&"servers") {
        let st = shared.lock();
        let server = st.server(&id, ctx.now);
        // Nova answers another project's server as "not found" to members.
        if let Some(s) = server.filter(|s| !ctx.caller.may_read(&s.project_id)) {
            return error(&Fail::not_found(format!(
                "Instance {} could not be found.",
                s.id
            )));
        }
        // Then its policy: a write needs `member` (or `admin`).
        let target_known = server.is_some() || operation == "nova.create_server";
        if let Some(fail) =
            rbac::refuse(&ctx.caller, rbac::nova_policy(operation)).filter(|_| target_known)
        {
            return error(&fail);
        }
    }
    if operation == "nova.create_image" {
        return snapshot::create_image(shared, ctx, &id).await;
    }
    let mut st = shared.lock();
    let st = &mut *st;
    let result = match operation {
        "nova.versions" => Ok((StatusCode::OK, versions(shared, &ctx.base))),
        "nova.version" => Ok((
            StatusCode::OK,
            json!({"version": version(shared, &ctx.base)}),
        )),
        op if op.contains("keypair") => keypairs::handle(st, op, ctx, &id),
        "nova.list_availability_zones" => Ok((
            StatusCode::OK,
            json!({"availabilityZoneInfo": st.availability_zones.iter().map(|z| json!({"zoneName": z, "zoneState": {"available": true}, "hosts": null})).collect::<Vec<_>>()}),
        )),
        op if op.contains("flavor") => flavors::handle(st, op, ctx, &id),
        op if op.contains("_image") && op != "nova.create_image" => {
            images::handle(st, op, ctx, &id)
        }
        "nova.list_extensions" => serde_json::from_str(EXTENSIONS)
            .map(|body| (StatusCode::OK, body))
            .map_err(|e| Fail::new(StatusCode::INTERNAL_SERVER_ERROR, e.to_string())),
        "nova.get_limits" => limits(st, ctx),
        "nova.unknown" => Err(Fail::not_found("The resource could not be found.")),
        op => servers::handle(st, op, ctx, &id, &sub),
    };
    match result {
        Ok((status, Value::Null)) => super::http::empty(status),
        Ok((status, body)) => {
            let mut r = json(status, &body);
            if operation == "nova.create_server" {
                let id = body["server"]["id"].as_str().unwrap_or_default();
                let location = format!("{}/compute/v2.1/servers/{id}", ctx.base);
                if let Ok(v) = axum::http::HeaderValue::from_str(&location) {
                    r.headers_mut().insert(axum::http::header::LOCATION, v);
                }
            }
            r
        }
        Err(fail) => error(&fail),
    }
}

/// A result of a Nova handler: status and body (`Null`: no body), or a failure.
pub(crate) type Reply = Result<(StatusCode, Value), Fail>;

fn version(shared: &Shared, base: &str) -> Value {
    json!({
        "id": "v2.1",
        "status": "CURRENT",
        "version": shared.config.nova_max_microversion,
        "min_version": "2.1",
        "updated": "2013-07-23T11:33:21Z",
        "links": [
            {"rel": "self", "href": format!("{base}/compute/v2.1/")},
            {"rel": "describedby", "type": "text/html", "href": "http://docs.openstack.org/"},
        ],
        "media-types": [{"base": "application/json", "type": "application/vnd.openstack.compute+json;version=2.1"}],
    })
}

fn versions(shared: &Shared, base: &str) -> Value {
    json!({"versions": [
        {"id": "v2.0", "status": "DEPRECATED", "version": "", "min_version": "", "updated": "2025-07-04T12:00:00Z",
         "links": [{"rel": "self", "href": format!("{base}/compute/v2/")}]},
        {"id": "v2.1", "status": "CURRENT", "version": shared.config.nova_max_microversion, "min_version": "2.1",
         "updated": "2013-07-23T11:33:21Z", "links": [{"rel": "self", "href": format!("{base}/compute/v2.1/")}]},
    ]})
}

pub(crate) fn links(base: &str, collection: &str, id: &str) -> Value {
    json!([
        {"rel": "self", "href": format!("{base}/compute/v2.1/{collection}/{id}")},
        {"rel": "bookmark", "href": format!("{base}/compute/{collection}/{id}")},
    ])
}

/// `GET /limits` (limits.py and its view): the project's quotas and usage;
/// floating IPs and security groups go at 2.36, `maxImageMeta` at 2.39,
/// personality at 2.57. `tenant_id` names another project (admins only).
fn limits(st: &State, ctx: &Ctx) -> Reply {
    let project = match ctx.q("tenant_id") {
        Some(p) if ctx.caller.admin() => p,
        Some(_) => {
            return Err(Fail::new(
                StatusCode::FORBIDDEN,
                "Policy doesn't allow os_compute_api:limits:other_project to be performed.",
            ));
        }
        None => ctx.caller.project_id.as_str(),
    };
    let mut servers = 0_u64;
    let (mut cores, mut ram) = (0_u64, 0_u64);
    for s in st
        .servers
        .iter()
        .filter(|s| s.vm_state.at(ctx.now) != super::state::GONE && s.project_id == project)
    {
        servers += 1;
        if let Some(f) = st.flavors.iter().find(|f| f.id == s.flavor_id) {
            cores += u64::from(f.vcpus);
            ram += u64::from(f.ram);
        }
    }
    let mut absolute = json!({
        "maxServerMeta": 128, "maxTotalInstances": st.instances_quota, "maxTotalCores": 4000, "maxTotalRAMSize": 4_096_000,
        "maxServerGroups": 1000, "maxServerGroupMembers": 1000, "maxTotalKeypairs": 100,
        "totalInstancesUsed": servers, "totalCoresUsed": cores, "totalRAMUsed": ram,
        "totalServerGroupsUsed": 0,
    });
    if ctx.mv < Mv(2, 36) {
        absolute["maxTotalFloatingIps"] = json!(-1);
        absolute["maxSecurityGroups"] = json!(-1);
        absolute["maxSecurityGroupRules"] = json!(-1);
        absolute["totalFloatingIpsUsed"] = json!(0);
        absolute["totalSecurityGroupsUsed"] = json!(0);
    }
    if ctx.mv < Mv(2, 39) {
        absolute["maxImageMeta"] = json!(128);
    }
    if ctx.mv < Mv(2, 57) {
        absolute["maxPersonality"] = json!(5);
        absolute["maxPersonalitySize"] = json!(10240);
    }
    Ok((
        StatusCode::OK,
        json!({"limits": {"rate": [], "absolute": absolute}}),
    ))
}
