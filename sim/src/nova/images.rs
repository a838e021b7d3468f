//! Nova's image proxy (`/images`, up to microversion 2.35) and image
//! metadata (`/images/{id}/metadata`, up to 2.38), as
//! `nova/api/openstack/compute/images.py` and `image_metadata.py` serve
//! them over Glance: an image's metadata is its properties beyond Glance's
//! base ones, and every change replaces them (`purge_props=True`).

use std::time::Instant;

use axum::http::StatusCode;
use serde_json::{Map, Value, json};

use super::Reply;
use crate::{
    glance::{extra_properties, readable},
    http::{Ctx, Mv},
    state::{Fail, GONE, Image, State},
};

/// Nova's `MAX_PROXY_API_SUPPORT_VERSION`.
const PROXY_MAX: Mv = Mv(2, 35);

/// The last microversion with image metadata.
const METADATA_MAX: Mv = Mv(2, 38);

/// Nova's `common.MAX_LIMIT` (`osapi_max_limit`).
const MAX_LIMIT: usize = 1000;

pub(super) fn handle(st: &mut State, operation: &str, ctx: &Ctx, id: &str) -> Reply {
    let max = if operation.contains("metadata") {
        METADATA_MAX
    } else {
        PROXY_MAX
    };
    if ctx.mv > max {
        return Err(Fail::not_found("The resource could not be found."));
    }
    match operation {
        "nova.list_images" => list(st, ctx, false),
        "nova.list_images_detail" => list(st, ctx, true),
        "nova.get_image" => {
            let img = image(st, ctx, id)?;
            Ok((StatusCode::OK, json!({"image": show(st, img, ctx)})))
        }
        "nova.delete_image" => {
            let img = image(st, ctx, id)?;
            // Glance refuses (policy or protection); Nova's proxy answers
            // ImageNotAuthorized with its own words.
            if !ctx.caller.may_write(&img.owner) || img.protected {
                return Err(Fail::new(
                    StatusCode::FORBIDDEN,
                    "You are not allowed to delete the image.",
                ));
            }
            let now = ctx.now;
            if let Some(img) = st.image_mut(id, now) {
                img.status.rewrite(now, GONE);
            }
            Ok((StatusCode::NO_CONTENT, Value::Null))
        }
        _ => metadata(st, operation, ctx, id),
    }
}

fn not_found() -> Fail {
    Fail::not_found("Image not found.")
}

fn image<'a>(st: &'a State, ctx: &Ctx, id: &str) -> Result<&'a Image, Fail> {
    st.image(id, ctx.now)
        .filter(|img| readable(img, ctx))
        .ok_or_else(not_found)
}

fn links(ctx: &Ctx, id: &str) -> Value {
    json!([
        {"rel": "self", "href": format!("{}/compute/v2.1/images/{id}", ctx.base)},
        {"rel": "bookmark", "href": format!("{}/compute/images/{id}", ctx.base)},
        {"rel": "alternate", "type": "application/vnd.openstack.image", "href": format!("{}/image/images/{id}", ctx.base)},
    ])
}

/// The view builder's `_get_status` and `_get_progress`.
fn status_and_progress(glance_status: &str) -> (&'static str, u32) {
    match glance_status {
        "active" => ("ACTIVE", 100),
        "queued" => ("SAVING", 25),
        "saving" => ("SAVING", 50),
        "killed" => ("ERROR", 0),
        _ => ("UNKNOWN", 0),
    }
}

fn show(st: &State, img: &Image, ctx: &Ctx) -> Value {
    let now = ctx.now;
    let status = img.status.at(now);
    let (nova_status, progress) = status_and_progress(status);
    let stamp = |i: Instant| st.utc(i).format("%Y-%m-%dT%H:%M:%SZ").to_string();
    let size = if matches!(status, "active" | "deactivated") {
        img.size.unwrap_or(0)
    } else {
        0
    };
    let metadata = extra_properties(img, now);
    let mut body = json!({
        "id": img.id,
        "name": img.name,
        "minRam": img.min_ram,
        "minDisk": img.min_disk,
        "metadata": metadata,
        "created": stamp(img.created),
        "updated": stamp(img.status.since(now)),
        "status": nova_status,
        "progress": progress,
        "OS-EXT-IMG-SIZE:size": size,
        "links": links(ctx, &img.id),
    });
    if let Some(server) = metadata.get("instance_uuid").and_then(Value::as_str) {
        body["server"] = json!({"id": server, "links": [
            {"rel": "self", "href": format!("{}/compute/v2.1/servers/{server}", ctx.base)},
            {"rel": "bookmark", "href": format!("{}/compute/servers/{server}", ctx.base)},
        ]});
    }
    if let Some(auto) = metadata.get("auto_disk_config") {
        let on = matches!(
            auto.as_str().map(str::to_ascii_lowercase).as_deref(),
            Some("1" | "t" | "true" | "on" | "y" | "yes")
        ) || auto.as_bool() == Some(true);
        body["OS-DCF:diskConfig"] = json!(if on { "AUTO" } else { "MANUAL" });
    }
    body
}

/// `SUPPORTED_FILTERS` of images.py, applied as Glance applies them.
fn matches(img: &Image, ctx: &Ctx) -> Result<bool, Fail> {
    let props = extra_properties(img, ctx.now);
    let prop = |k: &str| props.get(k).and_then(Value::as_str).map(str::to_owned);
    let number = |k: &str| -> Result<Option<u64>, Fail> {
        ctx.q(k)
            .map(|v| {
                v.parse()
                    .map_err(|_| Fail::bad_request(format!("Invalid {k} filter [{v}]")))
            })
            .transpose()
    };
    let server = ctx.q("server").map(|s| s.rsplit('/').next().unwrap_or(s));
    Ok(ctx.q("name").is_none_or(|n| img.name.as_deref() == Some(n))
        && ctx
            .q("status")
            .is_none_or(|s| img.status.at(ctx.now).eq_ignore_ascii_case(s))
        && server.is_none_or(|s| prop("instance_uuid").as_deref() == Some(s))
        && ctx
            .q("type")
            .is_none_or(|t| prop("image_type").as_deref() == Some(t))
        && number("minRam")?.is_none_or(|m| img.min_ram >= m)
        && number("minDisk")?.is_none_or(|m| img.min_disk >= m))
}

fn list(st: &State, ctx: &Ctx, detail: bool) -> Reply {
    let mut images: Vec<&Image> = Vec::new();
    // Glance's default listing for the caller, newest first.
    for img in st.images.iter().rev() {
        if img.status.at(ctx.now) == GONE
            || !(ctx.caller.admin()
                || img.owner == ctx.caller.project_id
                || img.visibility == "public")
        {
            continue;
        }
        if matches(img, ctx)? {
            images.push(img);
        }
    }
    if let Some(marker) = ctx.q("marker") {
        let pos = images
            .iter()
            .position(|i| i.id == marker)
            .ok_or_else(|| Fail::bad_request(format!("marker [{marker}] not found")))?;
        images.drain(..=pos);
    }
    let limit = match ctx.q("limit") {
        None => MAX_LIMIT,
        Some(l) => l
            .parse::<usize>()
            .map_err(|_| Fail::bad_request("limit param must be an integer"))?
            .min(MAX_LIMIT),
    };
    let full = images.len() > limit || (ctx.q("limit").is_some() && images.len() == limit);
    images.truncate(limit);
    let list: Vec<Value> = images
        .iter()
        .map(|img| {
            if detail {
                show(st, img, ctx)
            } else {
                json!({"id": img.id, "name": img.name, "links": links(ctx, &img.id)})
            }
        })
        .collect();
    let mut body = json!({ "images": list });
    if let Some(last) = images.last().filter(|_| full) {
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
        let path = if detail { "images/detail" } else { "images" };
        body["images_links"] =
            json!([{"rel": "next", "href": format!("{}/compute/v2.1/{path}?{qs}", ctx.base)}]);
    }
    Ok((StatusCode::OK, body))
}

/// Nova's `maxImageMeta` quota (`check_img_metadata_properties_quota`).
const MAX_IMAGE_META: usize = 128;

fn metadata(st: &mut State, operation: &str, ctx: &Ctx, id: &str) -> Reply {
    let key = ctx.seg(4).to_owned();
    let body: Option<Value> = if matches!(
        operation,
        "nova.update_image_metadata"
            | "nova.replace_image_metadata"
            | "nova.set_image_metadata_item"
    ) {
        Some(ctx.json()?)
    } else {
        None
    };
    let img = image(st, ctx, id)?;
    let mut props = extra_properties(img, ctx.now);
    let owner = img.owner.clone();
    let object = |v: &Value, field: &str| -> Result<Map<String, Value>, Fail> {
        v.as_object()
            .cloned()
            .ok_or_else(|| Fail::bad_request(format!("Invalid input for field/attribute {field}.")))
    };
    let answer = match operation {
        "nova.list_image_metadata" => return Ok((StatusCode::OK, json!({"metadata": props}))),
        "nova.get_image_metadata_item" => {
            return props
                .get(&key)
                .map(|v| (StatusCode::OK, json!({"meta": {key.as_str(): v}})))
                .ok_or_else(|| Fail::not_found("The resource could not be found."));
        }
        "nova.update_image_metadata" => {
            props.extend(object(&body.unwrap_or_default()["metadata"], "metadata")?);
            json!({"metadata": props})
        }
        "nova.replace_image_metadata" => {
            props = object(&body.unwrap_or_default()["metadata"], "metadata")?;
            json!({"metadata": props})
        }
        "nova.set_image_metadata_item" => {
            let meta = object(&body.unwrap_or_default()["meta"], "meta")?;
            let Some(value) = meta.get(&key) else {
                return Err(Fail::bad_request("Request body and URI mismatch"));
            };
            props.insert(key.clone(), value.clone());
            json!({ "meta": meta })
        }
        _ => {
            if props.remove(&key).is_none() {
                return Err(Fail::not_found("Invalid metadata key"));
            }
            Value::Null
        }
    };
    if props.len() > MAX_IMAGE_META {
        return Err(Fail::new(
            StatusCode::FORBIDDEN,
            "Quota exceeded for metadata items (maxImageMeta).",
        ));
    }
    // Glance answers Nova's update with 403 unless the caller is an admin
    // or a member of the owning project.
    if !ctx.caller.may_write(&owner) {
        return Err(Fail::new(
            StatusCode::FORBIDDEN,
            format!("Not authorized for image {id}."),
        ));
    }
    let now = ctx.now;
    let img = st.image_mut(id, now).ok_or_else(not_found)?;
    // The upload's properties were merged above once uploading; before,
    // they are still to come and stay.
    let merged = matches!(
        img.status.at(now),
        "saving" | "active" | "killed" | "deactivated"
    );
    img.properties = props.into_iter().collect();
    if let Some(upload) = img.upload.as_mut().filter(|_| merged) {
        upload.properties.clear();
    }
    let status = if answer.is_null() {
        StatusCode::NO_CONTENT
    } else {
        StatusCode::OK
    };
    Ok((status, answer))
}
