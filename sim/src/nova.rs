//! Nova (compute v2.1): version discovery, flavors, limits and routing here;
//! servers, tags, metadata and volume attachments in `servers`; the
//! `createImage` action in `snapshot`.

mod servers;
mod snapshot;

use axum::{
    http::{Method, StatusCode},
    response::Response,
};
use serde_json::{Value, json};

use super::{
    http::{Ctx, Mv, fault_body, json},
    state::{Fail, Flavor, Shared},
};

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
        ("GET", ["v2.1", "flavors", _]) => "nova.get_flavor",
        ("GET", ["v2.1", "flavors", _, "os-extra_specs"]) => "nova.get_flavor_extra_specs",
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
        && !matches!(v[1], "servers" | "flavors" | "limits")
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
        "nova.list_flavors" | "nova.list_flavors_detail" => {
            let detail = operation.ends_with("detail");
            let list: Vec<Value> = st
                .flavors
                .iter()
                .map(|f| render_flavor(f, ctx, detail))
                .collect();
            Ok((StatusCode::OK, json!({ "flavors": list })))
        }
        "nova.get_flavor" => st
            .flavors
            .iter()
            .find(|f| f.id == id)
            .map(|f| {
                (
                    StatusCode::OK,
                    json!({"flavor": render_flavor(f, ctx, true)}),
                )
            })
            .ok_or_else(|| Fail::not_found(format!("Flavor {id} could not be found."))),
        "nova.get_flavor_extra_specs" => Ok((StatusCode::OK, json!({"extra_specs": {}}))),
        "nova.get_limits" => Ok((StatusCode::OK, limits(st, ctx))),
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

fn render_flavor(f: &Flavor, ctx: &Ctx, detail: bool) -> Value {
    let mut body = json!({"id": f.id, "name": f.name, "links": links(&ctx.base, "flavors", f.id)});
    if ctx.mv >= Mv(2, 55) {
        body["description"] = Value::Null;
    }
    if detail {
        body["ram"] = json!(f.ram);
        body["disk"] = json!(f.disk);
        body["swap"] = json!("");
        body["OS-FLV-EXT-DATA:ephemeral"] = json!(0);
        body["OS-FLV-DISABLED:disabled"] = json!(false);
        body["vcpus"] = json!(f.vcpus);
        body["os-flavor-access:is_public"] = json!(true);
        body["rxtx_factor"] = json!(1.0);
        if ctx.mv >= Mv(2, 61) {
            body["extra_specs"] = json!({});
        }
    }
    body
}

fn limits(st: &super::state::State, ctx: &Ctx) -> Value {
    let servers = st
        .servers
        .iter()
        .filter(|s| s.vm_state.at(ctx.now) != super::state::GONE)
        .count();
    json!({"limits": {"rate": [], "absolute": {
        "maxServerMeta": 128, "maxTotalInstances": 1000, "maxTotalCores": 4000, "maxTotalRAMSize": 4_096_000,
        "maxServerGroups": 1000, "maxServerGroupMembers": 1000, "maxTotalKeypairs": 100, "maxPersonality": 5,
        "maxPersonalitySize": 10240, "maxImageMeta": 128,
        "totalInstancesUsed": servers, "totalCoresUsed": servers, "totalRAMUsed": servers * 256,
        "totalServerGroupsUsed": 0,
    }}})
}
