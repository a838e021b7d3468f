//! A server's volume attachments (`/servers/{id}/os-volume_attachments`),
//! as `nova/api/openstack/compute/volume_attachments.py` serves them: the
//! volume id names the attachment; `tag` shows from 2.70,
//! `delete_on_termination` from 2.79, and from 2.89 `attachment_id` and
//! `bdm_uuid` replace `id`. From 2.85 a project member may change
//! `delete_on_termination` (PUT with the same volume); swapping volumes is
//! an admin's, and only for a volume Cinder is migrating.

use axum::http::StatusCode;
use serde_json::{Value, json};

use super::{
    Reply,
    servers::{find, find_mut},
};
use crate::{
    http::{Ctx, Mv},
    state::{Bdm, Fail, Server, State, VolumeAttachment},
};

pub(super) fn handle(st: &mut State, operation: &str, ctx: &Ctx, id: &str, sub: &str) -> Reply {
    match operation {
        "nova.list_volume_attachments" => {
            let s = find(st, ctx.now, id)?;
            let list: Vec<Value> = s.bdms.iter().map(|b| render(st, s, b, ctx)).collect();
            Ok((StatusCode::OK, json!({"volumeAttachments": list})))
        }
        "nova.get_volume_attachment" => {
            let s = find(st, ctx.now, id)?;
            let b = s
                .bdms
                .iter()
                .find(|b| b.volume_id == sub)
                .ok_or_else(|| not_attached(id, sub))?;
            Ok((
                StatusCode::OK,
                json!({"volumeAttachment": render(st, s, b, ctx)}),
            ))
        }
        "nova.attach_volume" => attach(st, ctx, id),
        "nova.update_volume_attachment" => update(st, ctx, id, sub),
        "nova.detach_volume" => detach(st, ctx, id, sub),
        _ => Err(Fail::not_found("The resource could not be found.")),
    }
}

fn not_attached(server: &str, volume: &str) -> Fail {
    Fail::not_found(format!(
        "Instance {server} is not attached to volume {volume}"
    ))
}

/// Nova's BDM uuid; the simulator keeps none, so one is derived from the
/// server and volume (stable, and no generated id shifts).
fn bdm_uuid(server: &str, volume: &str) -> String {
    let mut a: u64 = 0xcbf2_9ce4_8422_2325;
    let mut b: u64 = 0x6c62_272e_07bb_0142;
    for byte in server.bytes().chain([b'/']).chain(volume.bytes()) {
        a = (a ^ u64::from(byte)).wrapping_mul(0x0100_0000_01b3);
        b = (b ^ u64::from(byte)).wrapping_mul(0x0000_0100_0000_01b3 ^ 0x55);
    }
    let mut bytes = [0u8; 16];
    bytes[..8].copy_from_slice(&a.to_le_bytes());
    bytes[8..].copy_from_slice(&b.to_le_bytes());
    uuid::Builder::from_random_bytes(bytes)
        .into_uuid()
        .hyphenated()
        .to_string()
}

/// `_translate_attachment_detail_view` at the request's microversion.
fn render(st: &State, s: &Server, b: &Bdm, ctx: &Ctx) -> Value {
    let mut body = json!({"volumeId": b.volume_id, "serverId": s.id, "device": b.device_name});
    if ctx.mv < Mv(2, 89) {
        body["id"] = json!(b.volume_id);
    }
    if ctx.mv >= Mv(2, 70) {
        body["tag"] = Value::Null;
    }
    if ctx.mv >= Mv(2, 79) {
        body["delete_on_termination"] = json!(b.delete_on_termination);
    }
    if ctx.mv >= Mv(2, 89) {
        let attachment_id = st
            .volumes
            .any(&b.volume_id)
            .and_then(|v| v.attachments.iter().find(|a| a.server_id == s.id))
            .map(|a| a.id.clone());
        body["attachment_id"] = json!(attachment_id);
        body["bdm_uuid"] = json!(bdm_uuid(&s.id, &b.volume_id));
    }
    body
}

fn attach(st: &mut State, ctx: &Ctx, id: &str) -> Reply {
    let body: Value = ctx.json()?;
    let att = &body["volumeAttachment"];
    let volume_id = att["volumeId"]
        .as_str()
        .ok_or_else(|| Fail::bad_request("'volumeId' is a required property"))?
        .to_owned();
    let delete_on_termination = if ctx.mv >= Mv(2, 79) {
        att["delete_on_termination"].as_bool().unwrap_or(false)
    } else {
        false
    };
    let now = ctx.now;
    find(st, now, id)?;
    // Nova reads the volume with the caller's token: another project's
    // volume is not found.
    let vol = st
        .volume(&volume_id, now)
        .filter(|v| ctx.caller.may_read(&v.project_id))
        .ok_or_else(|| Fail::not_found(format!("Volume {volume_id} could not be found.")))?;
    if vol.status.at(now) != "available" {
        return Err(Fail::bad_request(format!(
            "Invalid volume: volume '{volume_id}' status must be 'available'. Currently in '{}'",
            vol.status.at(now)
        )));
    }
    let size = vol.size;
    let n = find(st, now, id)?.bdms.len();
    let device = format!(
        "/dev/vd{}",
        (b'a' + u8::try_from(n).unwrap_or(25).min(25)) as char
    );
    let attachment_id = st.uuid();
    let attached_at = st.utc(now);
    let d = st.durations.volume_create;
    let vol = st.volume_mut(&volume_id, now).expect("exists");
    vol.status.rewrite(now, "attaching");
    vol.status.push_after_last(d, "in-use");
    vol.attachments.push(VolumeAttachment {
        id: attachment_id,
        server_id: id.to_owned(),
        device: device.clone(),
        attached_at,
    });
    let s = find_mut(st, now, id)?;
    s.bdms.push(Bdm {
        volume_id: volume_id.clone(),
        device_name: device.clone(),
        boot_index: None,
        delete_on_termination,
        volume_size: size,
    });
    if ctx.mv >= Mv(2, 101) {
        return Ok((StatusCode::ACCEPTED, Value::Null));
    }
    let mut shown =
        json!({"id": volume_id, "serverId": id, "volumeId": volume_id, "device": device});
    if ctx.mv >= Mv(2, 70) {
        shown["tag"] = att.get("tag").cloned().unwrap_or(Value::Null);
    }
    if ctx.mv >= Mv(2, 79) {
        shown["delete_on_termination"] = json!(delete_on_termination);
    }
    Ok((StatusCode::OK, json!({ "volumeAttachment": shown })))
}

/// PUT: from 2.85 a regular update (`delete_on_termination`) when the
/// volume stays; otherwise a swap, which only Cinder's migration calls.
fn update(st: &mut State, ctx: &Ctx, id: &str, volume_id: &str) -> Reply {
    let body: Value = ctx.json()?;
    let att = &body["volumeAttachment"];
    let new_volume = att["volumeId"]
        .as_str()
        .ok_or_else(|| Fail::bad_request("'volumeId' is a required property"))?;
    find(st, ctx.now, id)?;
    let swap = ctx.mv < Mv(2, 85) || new_volume != volume_id;
    if swap {
        if !ctx.caller.admin() {
            return Err(Fail::new(
                StatusCode::FORBIDDEN,
                "Policy doesn't allow os_compute_api:os-volumes-attachments:swap to be performed.",
            ));
        }
        return Err(Fail::conflict(format!(
            "volume {volume_id} is not migrating; this API should only be called by Cinder"
        )));
    }
    let s = find_mut(st, ctx.now, id)?;
    let b = s
        .bdms
        .iter_mut()
        .find(|b| b.volume_id == volume_id)
        .ok_or_else(|| {
            Fail::not_found(format!(
                "No volume Block Device Mapping with id {volume_id}."
            ))
        })?;
    let immutable = [
        ("id", Some(volume_id)),
        ("device", Some(b.device_name.as_str())),
    ];
    for (field, current) in immutable {
        if att.get(field).is_some_and(|v| v.as_str() != current) {
            return Err(Fail::bad_request(format!(
                "The {field} property is not mutable"
            )));
        }
    }
    if att.get("serverId").is_some_and(|v| v.as_str() != Some(id)) {
        return Err(Fail::bad_request("The serverId property is not mutable"));
    }
    if let Some(v) = att.get("delete_on_termination") {
        b.delete_on_termination = match v {
            Value::Bool(x) => *x,
            Value::String(x) => match x.to_ascii_lowercase().as_str() {
                "1" | "t" | "true" | "on" | "y" | "yes" => true,
                "0" | "f" | "false" | "off" | "n" | "no" => false,
                _ => {
                    return Err(Fail::bad_request(
                        "Invalid input for field/attribute delete_on_termination.",
                    ));
                }
            },
            _ => {
                return Err(Fail::bad_request(
                    "Invalid input for field/attribute delete_on_termination.",
                ));
            }
        };
    }
    Ok((StatusCode::ACCEPTED, Value::Null))
}

fn detach(st: &mut State, ctx: &Ctx, id: &str, volume_id: &str) -> Reply {
    let now = ctx.now;
    let s = find_mut(st, now, id)?;
    let Some(pos) = s.bdms.iter().position(|b| b.volume_id == volume_id) else {
        return Err(not_attached(id, volume_id));
    };
    if s.bdms[pos].boot_index == Some(0) {
        return Err(Fail::bad_request("Cannot detach a root device volume"));
    }
    s.bdms.remove(pos);
    let d = st.durations.volume_create;
    if let Some(v) = st.volume_mut(volume_id, now) {
        v.attachments.retain(|a| a.server_id != id);
        v.status.rewrite(now, "detaching");
        v.status.push_after_last(d, "available");
    }
    Ok((StatusCode::ACCEPTED, Value::Null))
}
