//! Nova's `createImage` server action, as real Nova does it:
//!
//! * image-backed: the server's task_state goes `image_snapshot_pending` →
//!   `image_snapshot` → `image_pending_upload` → `image_uploading` → null
//!   while the Glance image goes `queued` → `saving` → `active`; a second
//!   request meanwhile gets 409; on failure the image is deleted.
//! * volume-backed: quota check, quiesce (if the guest agent is enabled),
//!   one Cinder snapshot per volume named "snapshot for <image name>" (no
//!   metadata of the caller's), and last, once the call's duration
//!   (`volume_backed_create_image_call`) has passed, a zero-size image,
//!   `active` at once, whose `block_device_mapping` property lists them; the
//!   task_state does not change. The answer comes after the image, so a
//!   client whose timeout is shorter than the call finds the snapshots but
//!   not yet the image, as on a real cloud.
//!
//! The answer is `{"image_id": …}` from microversion 2.45, else a `Location`.
//!
//! Over 400 lines: both branches of `createImage`, kept together because they
//! share Nova's checks in the same order as Nova's own code.

use std::{collections::BTreeMap, time::Instant};

use axum::{
    http::{HeaderValue, StatusCode, header},
    response::{IntoResponse as _, Response},
};
use serde_json::{Value, json};

use super::error;
use crate::{
    digest,
    faults::Fault,
    http::{Ctx, Mv, Notes, hold, json},
    inventory::{NewSnapshot, truthy},
    state::{Fail, GONE, Image, Server, Shared, SnapshotUpload, State},
    timeline::Timeline,
};

/// Image properties a snapshot does not inherit from the boot image.
const NON_INHERITABLE: [&str; 8] = [
    "cinder_encryption_key_id",
    "cinder_encryption_key_deletion_policy",
    "img_signature",
    "img_signature_hash_method",
    "img_signature_key_type",
    "img_signature_certificate_uuid",
    "cache_in_nova",
    "bittorrent",
];

/// The outcome of a createImage the state accepted.
struct Accepted {
    image_id: String,
    notes: Vec<String>,
    /// When the answer is sent: a volume-backed call blocks until its image exists.
    reply_at: Instant,
}

pub(super) async fn create_image(shared: &Shared, ctx: &Ctx, server_id: &str) -> Response {
    let accepted = {
        let mut st = shared.lock();
        start(&mut st, ctx, server_id)
    };
    let accepted = match accepted {
        Ok(a) => a,
        Err(fail) => return error(&fail),
    };
    // Nothing below touches the state: a client that gives up meanwhile
    // changes nothing, the image still appears when its time comes.
    hold(accepted.reply_at.saturating_duration_since(Instant::now())).await;
    let mut response = if ctx.mv >= Mv(2, 45) {
        json(
            StatusCode::ACCEPTED,
            &json!({"image_id": accepted.image_id}),
        )
    } else {
        let mut r = StatusCode::ACCEPTED.into_response();
        let location = format!("{}/image/images/{}", ctx.base, accepted.image_id);
        if let Ok(v) = HeaderValue::from_str(&location) {
            r.headers_mut().insert(header::LOCATION, v);
        }
        r.headers_mut().insert(
            header::CONTENT_TYPE,
            HeaderValue::from_static("text/html; charset=UTF-8"),
        );
        r
    };
    response.extensions_mut().insert(Notes(accepted.notes));
    response
}

fn start(st: &mut State, ctx: &Ctx, server_id: &str) -> Result<Accepted, Fail> {
    let body: Value = ctx.json()?;
    let entity = &body["createImage"];
    let name = entity["name"]
        .as_str()
        .map(str::trim)
        .filter(|n| !n.is_empty())
        .ok_or_else(|| Fail::bad_request("Invalid input for field/attribute createImage. Value: {}. 'name' is a required property"))?
        .to_owned();
    let metadata: BTreeMap<String, String> = match entity.get("metadata") {
        None | Some(Value::Null) => BTreeMap::new(),
        Some(m) => serde_json::from_value(m.clone())
            .map_err(|_| Fail::bad_request("Invalid input for field/attribute metadata."))?,
    };
    let now = ctx.now;
    let server = st
        .server(server_id, now)
        .ok_or_else(|| Fail::not_found(format!("Instance {server_id} could not be found.")))?
        .clone();
    let vm_state = server.vm_state.at(now);
    if !matches!(vm_state, "active" | "stopped" | "paused" | "suspended") {
        return Err(Fail::conflict(format!(
            "Cannot 'createImage' instance {server_id} while it is in vm_state {vm_state}"
        )));
    }
    if let Some(task) = server.task_state.at(now) {
        return Err(Fail::conflict(format!(
            "Cannot 'createImage' instance {server_id} while it is in task_state {task}"
        )));
    }
    let mut props = inherited(&server);
    // Nova keeps the creator's names and roles in the server's system
    // metadata at boot, and a snapshot inherits them.
    let user_name = st.user(&server.user_id).map(|u| u.name.clone());
    let project_name = st
        .projects
        .iter()
        .find(|p| p.id == server.project_id)
        .map(|p| p.name.clone());
    props.insert("owner_user_name".into(), json!(user_name));
    props.insert("owner_project_name".into(), json!(project_name));
    props.insert("boot_roles".into(), json!(server.boot_roles));
    if server.volume_backed() {
        props.insert("base_image_ref".into(), json!(""));
        for (k, v) in &metadata {
            props.insert(k.clone(), json!(v));
        }
        volume_backed(st, ctx, &server, &name, props)
    } else {
        props.insert("base_image_ref".into(), json!(server.image_id));
        props.insert("instance_uuid".into(), json!(server.id));
        props.insert("user_id".into(), json!(server.user_id));
        props.insert("image_type".into(), json!("snapshot"));
        for (k, v) in &metadata {
            props.insert(k.clone(), json!(v));
        }
        Ok(image_backed(st, ctx, &server, &name, props))
    }
}

/// The boot image's properties a snapshot inherits (Nova's system metadata).
fn inherited(server: &Server) -> BTreeMap<String, Value> {
    server
        .image_meta
        .iter()
        .filter(|(k, _)| !NON_INHERITABLE.contains(&k.as_str()) && !k.starts_with("os_glance"))
        .filter(|(k, _)| {
            !matches!(
                k.as_str(),
                "min_disk" | "min_ram" | "disk_format" | "container_format"
            )
        })
        .map(|(k, v)| (k.clone(), v.clone()))
        .collect()
}

/// The snapshot image as Nova asks Glance for it, with the caller's token:
/// Glance makes it the caller's project's, and when that is not the
/// server's project Nova makes it `shared` with the server's project
/// (nova/compute/utils.py `initialize_instance_snapshot_metadata`).
fn new_image(
    st: &mut State,
    ctx: &Ctx,
    server: &Server,
    name: &str,
    props: BTreeMap<String, Value>,
) -> Image {
    let now = ctx.now;
    let owner = ctx.caller.project_id.clone();
    let (visibility, members) = if owner == server.project_id {
        ("private", Vec::new())
    } else {
        ("shared", vec![server.project_id.clone()])
    };
    let min_disk = server
        .image_meta
        .get("min_disk")
        .and_then(Value::as_u64)
        .unwrap_or(0);
    let min_ram = server
        .image_meta
        .get("min_ram")
        .and_then(|v| {
            v.as_u64()
                .or_else(|| v.as_str().and_then(|s| s.parse().ok()))
        })
        .unwrap_or(0);
    Image {
        id: st.uuid(),
        name: Some(name.to_owned()),
        owner,
        visibility: visibility.into(),
        members,
        protected: false,
        created: now,
        status: Timeline::new(now, "queued"),
        disk_format: None,
        container_format: None,
        size: None,
        checksum: None,
        os_hash_value: None,
        min_disk,
        min_ram,
        tags: Vec::new(),
        properties: props,
        upload: None,
    }
}

fn image_backed(
    st: &mut State,
    ctx: &Ctx,
    server: &Server,
    name: &str,
    props: BTreeMap<String, Value>,
) -> Accepted {
    let now = ctx.now;
    let d = st.durations.clone();
    let mut notes = Vec::new();
    let can_quiesce = truthy(server.image_meta.get("hw_qemu_guest_agent"));
    let require = truthy(server.image_meta.get("os_require_quiesce"));
    let unresponsive = can_quiesce
        && st.fault("nova.create_image", |f| {
            matches!(f, Fault::QuiesceUnresponsive)
        });
    let quiesce_failed = require && (!can_quiesce || unresponsive);
    let fails = quiesce_failed
        || st.fault("nova.create_image", |f| {
            matches!(f, Fault::ImageSnapshotFails)
        });
    let killed = !fails && st.fault("nova.create_image", |f| matches!(f, Fault::ImageKilled));
    if vm_is_active(server, now) {
        notes.push(
            if can_quiesce && !unresponsive {
                "quiesced"
            } else {
                "not_quiesced"
            }
            .to_owned(),
        );
    }
    let mut img = new_image(st, ctx, server, name, props);
    let base_size = server
        .image_id
        .as_ref()
        .and_then(|i| st.images.any(i))
        .and_then(|x| x.size)
        .unwrap_or(196_616);
    let data = img.id.clone().into_bytes();
    img.size = Some(base_size);
    img.checksum = Some(digest::md5_hex(&data));
    img.os_hash_value = Some(digest::sha512_hex(&data));
    let mut upload_props = BTreeMap::new();
    upload_props.insert("image_location".to_owned(), json!("snapshot"));
    upload_props.insert("image_state".to_owned(), json!("available"));
    upload_props.insert("owner_id".to_owned(), json!(server.project_id));
    img.upload = Some(SnapshotUpload {
        disk_format: "qcow2".into(),
        container_format: "bare".into(),
        properties: upload_props,
    });
    let t_snapshot = now + d.image_snapshot_pending;
    let t_pending_upload = t_snapshot + d.image_snapshot;
    let t_uploading = t_pending_upload + d.image_pending_upload;
    let t_done = t_uploading + d.image_uploading;
    let mut task = server.task_state.clone();
    task.rewrite(now, Some("image_snapshot_pending"));
    task.push_at(t_snapshot, Some("image_snapshot"));
    if fails {
        // The driver fails while snapshotting: Nova deletes the image and
        // clears the task_state.
        task.push_at(t_pending_upload, None);
        img.status.push_at(t_pending_upload, GONE);
        notes.push(
            if quiesce_failed {
                "snapshot_failed: quiesce required"
            } else {
                "snapshot_failed"
            }
            .to_owned(),
        );
    } else {
        task.push_at(t_pending_upload, Some("image_pending_upload"));
        task.push_at(t_uploading, Some("image_uploading"));
        task.push_at(t_done, None);
        img.status.push_at(t_uploading, "saving");
        img.status
            .push_at(t_done, if killed { "killed" } else { "active" });
        if killed {
            notes.push("image_killed".to_owned());
        }
    }
    let image_id = img.id.clone();
    st.images.push(img);
    if let Some(s) = st.server_mut(&server.id, now) {
        s.task_state = task;
    }
    Accepted {
        image_id,
        notes,
        reply_at: now,
    }
}

fn vm_is_active(server: &Server, now: Instant) -> bool {
    server.vm_state.at(now) == "active"
}

fn volume_backed(
    st: &mut State,
    ctx: &Ctx,
    server: &Server,
    name: &str,
    mut props: BTreeMap<String, Value>,
) -> Result<Accepted, Fail> {
    let now = ctx.now;
    let mut notes = Vec::new();
    // Cinder counts the quota of the project the snapshots go to: the caller's.
    let used = st.snapshots_used(&ctx.caller.project_id, now);
    let wanted = i64::try_from(server.bdms.len()).unwrap_or(i64::MAX);
    if st.snapshot_quota > -1 && used + wanted > st.snapshot_quota {
        return Err(Fail::new(
            StatusCode::FORBIDDEN,
            "Quota exceeded for resources: snapshots",
        ));
    }
    if vm_is_active(server, now) {
        let can_quiesce = truthy(server.image_meta.get("hw_qemu_guest_agent"));
        let require = truthy(server.image_meta.get("os_require_quiesce"));
        if !can_quiesce {
            if require {
                // QemuGuestAgentNotEnabled is an Invalid: Nova answers 400.
                return Err(Fail::bad_request("QEMU guest agent is not enabled"));
            }
            notes.push("not_quiesced".to_owned());
        } else if st.fault("nova.create_image", |f| {
            matches!(f, Fault::QuiesceUnresponsive)
        }) {
            if require {
                return Err(Fail::conflict(format!(
                    "Failed to quiesce instance: Error from libvirt while quiescing instance-{:08x}: [Error Code 86] Guest agent is not responding: QEMU guest agent is not connected, libvirt cannot connect to the qemu-guest-agent inside the instance.",
                    server.instance_number
                )));
            }
            notes.push("not_quiesced".to_owned());
        } else {
            notes.push("quiesced".to_owned());
        }
    }
    let mut mapping = Vec::new();
    for b in &server.bdms {
        // Cinder refuses to snapshot a volume that is not available/in-use
        // (InvalidVolume, 400); Nova turns it into InvalidInput (400), after the
        // snapshots of the earlier volumes were made (nova/compute/api.py).
        let status = st.volume(&b.volume_id, now).map(|v| v.status.at(now));
        if matches!(status, Some("backing-up" | "error" | "maintenance")) {
            return Err(Fail::bad_request(format!(
                "Invalid input received: Invalid volume: Volume {} status must be available, in-use, but current status is: {}.",
                b.volume_id,
                status.unwrap_or_default()
            )));
        }
        let description = st
            .volume(&b.volume_id, now)
            .and_then(|v| v.description.clone());
        let spec = NewSnapshot {
            volume_id: b.volume_id.clone(),
            name: Some(format!("snapshot for {name}")),
            description,
            owner: Some(ctx.caller.owner()),
            ..NewSnapshot::default()
        };
        let snapshot_id = st.create_snapshot(now, "nova.create_image", spec);
        let fields: [(&str, Value); 19] = [
            ("volume_size", json!(b.volume_size)),
            ("tag", Value::Null),
            ("encryption_secret_uuid", Value::Null),
            ("destination_type", json!("volume")),
            ("delete_on_termination", json!(b.delete_on_termination)),
            ("volume_type", Value::Null),
            ("source_type", json!("snapshot")),
            ("volume_id", Value::Null),
            ("boot_index", json!(b.boot_index)),
            ("no_device", Value::Null),
            ("encrypted", Value::Null),
            ("encryption_format", Value::Null),
            ("encryption_options", Value::Null),
            ("device_type", Value::Null),
            ("image_id", Value::Null),
            ("snapshot_id", json!(snapshot_id)),
            ("guest_format", Value::Null),
            ("disk_bus", Value::Null),
            ("device_name", json!(b.device_name)),
        ];
        mapping.push(python_json_object(&fields));
    }
    props.insert("root_device_name".into(), json!("/dev/vda"));
    if !mapping.is_empty() {
        props.insert(
            "block_device_mapping".into(),
            json!(format!("[{}]", mapping.join(", "))),
        );
        props.insert("bdm_v2".into(), json!("True"));
    }
    // Nova creates the image last, after every snapshot, and answers after it.
    let image_at = now + st.durations.volume_backed_create_image_call;
    let mut img = new_image(st, ctx, server, name, props);
    img.created = image_at;
    img.status = if image_at > now {
        Timeline::new(now, GONE).then(image_at - now, "active")
    } else {
        Timeline::new(now, "active")
    };
    img.size = Some(0);
    img.disk_format = Some("raw".into());
    img.container_format = Some("bare".into());
    img.checksum = Some(digest::md5_hex(b""));
    img.os_hash_value = Some(digest::sha512_hex(b""));
    let image_id = img.id.clone();
    st.images.push(img);
    Ok(Accepted {
        image_id,
        notes,
        reply_at: image_at,
    })
}

/// A JSON object as Python's `json.dumps` writes it (Nova stores the
/// `block_device_mapping` property that way): keys in the given order,
/// `", "` and `": "` separators.
fn python_json_object(fields: &[(&str, Value)]) -> String {
    let items: Vec<String> = fields
        .iter()
        .map(|(k, v)| format!("{}: {v}", Value::from(*k)))
        .collect();
    format!("{{{}}}", items.join(", "))
}
