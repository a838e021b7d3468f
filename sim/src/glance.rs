//! Glance v2: version discovery, images (create, upload data, show, list
//! with filters and paging, update, delete, deactivate), with properties
//! flattened into the image JSON as Glance does.
//!
//! Over 400 lines: every image endpoint renders the same flattened JSON and
//! checks the same visibility rules, kept beside each other on purpose.

use std::{collections::BTreeMap, time::Instant};

use axum::{
    http::{Method, StatusCode},
    response::Response,
};
use serde_json::{Map, Value, json};

use super::{
    digest,
    http::{Ctx, empty, html_error, json},
    state::{GONE, Image, Shared, State},
    timeline::Timeline,
};

/// Core attributes a client may not set as properties.
const READ_ONLY: [&str; 12] = [
    "status",
    "size",
    "virtual_size",
    "checksum",
    "os_hash_algo",
    "os_hash_value",
    "created_at",
    "updated_at",
    "self",
    "file",
    "schema",
    "owner",
];

/// Attributes that are part of the image, not properties.
const CORE: [&str; 9] = [
    "id",
    "name",
    "disk_format",
    "container_format",
    "visibility",
    "min_disk",
    "min_ram",
    "protected",
    "tags",
];

/// The operation name of a Glance request.
pub(crate) fn operation(method: &Method, segs: &[&str]) -> &'static str {
    match (method.as_str(), segs) {
        ("GET", [] | ["versions"]) => "glance.versions",
        ("GET", ["v2", "images"]) => "glance.list_images",
        ("POST", ["v2", "images"]) => "glance.create_image",
        ("GET", ["v2", "images", _]) => "glance.get_image",
        ("PATCH", ["v2", "images", _]) => "glance.update_image",
        ("DELETE", ["v2", "images", _]) => "glance.delete_image",
        ("PUT", ["v2", "images", _, "file"]) => "glance.upload_image",
        ("GET", ["v2", "images", _, "file"]) => "glance.download_image",
        ("POST", ["v2", "images", _, "actions", "deactivate"]) => "glance.deactivate_image",
        ("POST", ["v2", "images", _, "actions", "reactivate"]) => "glance.reactivate_image",
        ("PUT", ["v2", "images", _, "tags", _]) => "glance.add_tag",
        ("DELETE", ["v2", "images", _, "tags", _]) => "glance.delete_tag",
        _ => "glance.unknown",
    }
}

pub(crate) fn handle(shared: &Shared, operation: &str, ctx: &Ctx) -> Response {
    let mut st = shared.lock();
    let st = &mut *st;
    let id = ctx.seg(2).to_owned();
    if let Some(img) = st.image(&id, ctx.now) {
        if !readable(img, ctx) {
            return not_found(&id);
        }
        let action = match operation {
            "glance.delete_image" => Some("delete_image"),
            "glance.upload_image" => Some("upload_image"),
            "glance.update_image" | "glance.add_tag" | "glance.delete_tag" => Some("modify_image"),
            "glance.deactivate_image" => Some("deactivate"),
            "glance.reactivate_image" => Some("reactivate"),
            _ => None,
        };
        // The default policies: `admin`, or `member` of the owning project.
        if let Some(action) = action.filter(|_| !ctx.caller.may_write(&img.owner)) {
            return forbidden(action);
        }
    }
    if operation == "glance.create_image" && !ctx.caller.may_write(&ctx.caller.project_id) {
        return forbidden("add_image");
    }
    match operation {
        "glance.versions" => versions(&ctx.base),
        "glance.list_images" => list(st, ctx),
        "glance.create_image" => create(st, ctx),
        "glance.get_image" => match st.image(&id, ctx.now) {
            Some(img) => json(StatusCode::OK, &render(st, img, ctx.now)),
            None => not_found(&id),
        },
        "glance.update_image" => update(st, ctx, &id),
        "glance.delete_image" => delete(st, ctx.now, &id),
        "glance.upload_image" => upload(st, ctx, &id),
        "glance.download_image" => match st.image(&id, ctx.now) {
            Some(_) => empty(StatusCode::NO_CONTENT),
            None => not_found(&id),
        },
        "glance.deactivate_image" | "glance.reactivate_image" => {
            let (from, to) = if operation == "glance.deactivate_image" {
                ("active", "deactivated")
            } else {
                ("deactivated", "active")
            };
            match st.image_mut(&id, ctx.now) {
                None => not_found(&id),
                Some(img) => {
                    let now_status = img.status.at(ctx.now);
                    if now_status != from && now_status != to {
                        return html_error(
                            StatusCode::FORBIDDEN,
                            &format!(
                                "Not allowed to {} image in status '{now_status}'",
                                if to == "deactivated" {
                                    "deactivate"
                                } else {
                                    "reactivate"
                                }
                            ),
                        );
                    }
                    img.status.rewrite(ctx.now, to);
                    empty(StatusCode::NO_CONTENT)
                }
            }
        }
        "glance.add_tag" | "glance.delete_tag" => {
            let tag = ctx.seg(4).to_owned();
            match st.image_mut(&id, ctx.now) {
                None => not_found(&id),
                Some(img) => {
                    img.tags.retain(|t| *t != tag);
                    if operation == "glance.add_tag" {
                        img.tags.push(tag);
                    }
                    empty(StatusCode::NO_CONTENT)
                }
            }
        }
        _ => html_error(StatusCode::NOT_FOUND, "The resource could not be found."),
    }
}

/// Glance's refusal by policy (`glance.common.exception.Forbidden`).
fn forbidden(action: &str) -> Response {
    html_error(
        StatusCode::FORBIDDEN,
        &format!("You are not authorized to complete {action} action."),
    )
}

/// Whether the caller may read an image: admins any, others public and
/// community images, their project's and those shared with it.
pub(crate) fn readable(img: &Image, ctx: &Ctx) -> bool {
    ctx.caller.admin()
        || img.owner == ctx.caller.project_id
        || matches!(img.visibility.as_str(), "public" | "community")
        || (img.visibility == "shared" && img.members.contains(&ctx.caller.project_id))
}

/// The properties of an image beyond Glance's base ones (what Nova calls
/// its metadata), with those its snapshot upload set once uploading.
pub(crate) fn extra_properties(img: &Image, now: Instant) -> Map<String, Value> {
    let uploading = matches!(
        img.status.at(now),
        "saving" | "active" | "killed" | "deactivated"
    );
    let mut m = Map::new();
    for (k, v) in &img.properties {
        m.insert(k.clone(), v.clone());
    }
    if let Some(u) = img.upload.as_ref().filter(|_| uploading) {
        for (k, v) in &u.properties {
            m.insert(k.clone(), v.clone());
        }
    }
    m
}

fn not_found(id: &str) -> Response {
    html_error(
        StatusCode::NOT_FOUND,
        &format!("No image found with ID {id}"),
    )
}

fn versions(base: &str) -> Response {
    let ids = [
        "v2.17", "v2.16", "v2.15", "v2.13", "v2.12", "v2.11", "v2.10", "v2.9", "v2.8", "v2.7",
        "v2.6", "v2.5", "v2.4", "v2.3", "v2.2", "v2.1", "v2.0",
    ];
    let versions: Vec<Value> = ids
        .iter()
        .enumerate()
        .map(|(i, id)| {
            json!({
                "id": id,
                "status": if i == 0 { "CURRENT" } else { "SUPPORTED" },
                "links": [{"rel": "self", "href": format!("{base}/image/v2/")}],
            })
        })
        .collect();
    json(
        StatusCode::MULTIPLE_CHOICES,
        &json!({ "versions": versions }),
    )
}

/// An image as Glance v2 shows it, properties flattened in.
pub(crate) fn render(st: &State, img: &Image, now: Instant) -> Value {
    let status = img.status.at(now);
    let active = matches!(status, "active" | "deactivated");
    let uploading = matches!(status, "saving" | "active" | "killed" | "deactivated");
    let upload = img.upload.as_ref().filter(|_| uploading);
    let mut m = extra_properties(img, now);
    let disk_format = upload
        .map(|u| u.disk_format.clone())
        .or_else(|| img.disk_format.clone());
    let container_format = upload
        .map(|u| u.container_format.clone())
        .or_else(|| img.container_format.clone());
    let stamp = |i: Instant| st.utc(i).format("%Y-%m-%dT%H:%M:%SZ").to_string();
    let fields = json!({
        "name": img.name,
        "disk_format": disk_format,
        "container_format": container_format,
        "visibility": img.visibility,
        "size": if active { img.size.map(Value::from) } else { None },
        "virtual_size": Value::Null,
        "status": status,
        "checksum": if active { img.checksum.clone() } else { None },
        "protected": img.protected,
        "min_ram": img.min_ram,
        "min_disk": img.min_disk,
        "owner": img.owner,
        "os_hidden": false,
        "os_hash_algo": if active { Some("sha512") } else { None },
        "os_hash_value": if active { img.os_hash_value.clone() } else { None },
        "id": img.id,
        "created_at": stamp(img.created),
        "updated_at": stamp(img.status.since(now)),
        "tags": img.tags,
        "self": format!("/v2/images/{}", img.id),
        "file": format!("/v2/images/{}/file", img.id),
        "schema": "/v2/schemas/image",
    });
    if let Value::Object(f) = fields {
        m.extend(f);
    }
    if active {
        m.insert("stores".into(), json!("file"));
    }
    Value::Object(m)
}

fn list(st: &State, ctx: &Ctx) -> Response {
    let limit = match ctx.q("limit").map(str::parse::<usize>) {
        None => 25,
        Some(Ok(n)) => n.min(1000),
        Some(Err(_)) => {
            return html_error(StatusCode::BAD_REQUEST, "limit param must be an integer");
        }
    };
    let reserved = [
        "limit",
        "marker",
        "sort_key",
        "sort_dir",
        "sort",
        "member_status",
    ];
    let filters: Vec<(&str, &str)> = ctx
        .query
        .iter()
        .filter(|(k, _)| !reserved.contains(&k.as_str()))
        .map(|(k, v)| (k.as_str(), v.as_str()))
        .collect();
    if let Some(message) = filters.iter().find_map(|(k, v)| filter_values(k, v).err()) {
        return html_error(StatusCode::BAD_REQUEST, &message);
    }
    let community = ctx.q("visibility") == Some("community");
    // Filtered by id, only those rows are read (the other filters still apply).
    let by_id = filters
        .iter()
        .find(|(k, _)| *k == "id")
        .and_then(|(k, v)| filter_values(k, v).ok())
        .and_then(|ids| st.images.with_ids(&ids));
    let candidates: Box<dyn Iterator<Item = &Image>> = match by_id {
        Some(rows) => Box::new(rows.into_iter().rev()),
        None => Box::new(st.images.iter().rev()),
    };
    let matching: Vec<&Image> = candidates
        .filter(|img| img.status.at(ctx.now) != GONE)
        // Glance lists every image to admins; to others their project's,
        // the public ones, and community ones only when asked for.
        .filter(|img| {
            ctx.caller.admin()
                || img.owner == ctx.caller.project_id
                || img.visibility == "public"
                || (community && img.visibility == "community")
        })
        .filter(|img| {
            filters
                .iter()
                .all(|(k, v)| image_matches(img, ctx.now, k, v))
        })
        .collect();
    let start = match ctx.q("marker") {
        None => 0,
        Some(marker) => match matching.iter().position(|i| i.id == marker) {
            Some(p) => p + 1,
            None => {
                return html_error(
                    StatusCode::BAD_REQUEST,
                    &format!("Invalid marker. Image {marker} could not be found."),
                );
            }
        },
    };
    let page: Vec<&Image> = matching.iter().skip(start).take(limit).copied().collect();
    let mut body = json!({
        "images": page.iter().map(|i| render(st, i, ctx.now)).collect::<Vec<_>>(),
        "first": if ctx.raw_query.is_empty() { "/v2/images".to_owned() } else { format!("/v2/images?{}", ctx.raw_query) },
        "schema": "/v2/schemas/images",
    });
    if let Some(last) = page.last().filter(|_| limit > 0 && page.len() == limit) {
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
            body["next"] = json!(format!("/v2/images?{qs}"));
        }
    }
    json(StatusCode::OK, &body)
}

/// The keys whose filter value Glance reads as `operator:value` (`split_filter_op`).
const OPERATOR_KEYS: [&str; 5] = ["name", "id", "status", "container_format", "disk_format"];

/// The values a filter accepts. On the core keys Glance splits the value at its
/// first colon: `eq:x` is exactly `x` (so a name with a colon can be asked for),
/// `in:a,b` is a list, any other operator is a 400; on other keys the value is literal.
fn filter_values<'a>(key: &str, want: &'a str) -> Result<Vec<&'a str>, String> {
    if !OPERATOR_KEYS.contains(&key) {
        return Ok(vec![want]);
    }
    match want.split_once(':') {
        None => Ok(vec![want]),
        Some(("eq", value)) => Ok(vec![value]),
        Some(("in", list)) => Ok(list.split(',').map(|s| s.trim_matches('"')).collect()),
        Some((operator, _)) => Err(format!(
            "Unable to filter by unknown operator '{operator}'."
        )),
    }
}

fn image_matches(img: &Image, now: Instant, key: &str, want: &str) -> bool {
    let Ok(values) = filter_values(key, want) else {
        return false;
    };
    let actual: Option<String> = match key {
        "id" => Some(img.id.clone()),
        "name" => img.name.clone(),
        "status" => Some(img.status.at(now).to_owned()),
        "visibility" => Some(img.visibility.clone()),
        "owner" => Some(img.owner.clone()),
        "disk_format" => img.disk_format.clone(),
        "container_format" => img.container_format.clone(),
        "tag" => return img.tags.iter().any(|t| t == want),
        "os_hidden" => Some("false".into()),
        _ => img.properties.get(key).map(|v| match v {
            Value::String(s) => s.clone(),
            other => other.to_string(),
        }),
    };
    actual.is_some_and(|a| values.contains(&a.as_str()))
}

fn create(st: &mut State, ctx: &Ctx) -> Response {
    let body: Map<String, Value> = match ctx.json() {
        Ok(b) => b,
        Err(f) => return html_error(StatusCode::BAD_REQUEST, &f.message),
    };
    for key in body.keys() {
        if READ_ONLY.contains(&key.as_str()) {
            return html_error(
                StatusCode::FORBIDDEN,
                &format!("Attribute '{key}' is read-only."),
            );
        }
    }
    let id = match body.get("id").and_then(Value::as_str) {
        Some(id) if st.images.any(id).is_some() => {
            return html_error(
                StatusCode::CONFLICT,
                &format!("Image with identifier {id} already exists!"),
            );
        }
        Some(id) => id.to_owned(),
        None => st.uuid(),
    };
    let get_str = |k: &str| body.get(k).and_then(Value::as_str).map(str::to_owned);
    let properties: BTreeMap<String, Value> = body
        .iter()
        .filter(|(k, _)| !CORE.contains(&k.as_str()))
        .map(|(k, v)| (k.clone(), v.clone()))
        .collect();
    let img = Image {
        id,
        name: get_str("name"),
        owner: ctx.caller.project_id.clone(),
        visibility: get_str("visibility").unwrap_or_else(|| "shared".into()),
        members: Vec::new(),
        protected: body
            .get("protected")
            .and_then(Value::as_bool)
            .unwrap_or(false),
        created: ctx.now,
        status: Timeline::new(ctx.now, "queued"),
        disk_format: get_str("disk_format"),
        container_format: get_str("container_format"),
        size: None,
        checksum: None,
        os_hash_value: None,
        min_disk: body.get("min_disk").and_then(Value::as_u64).unwrap_or(0),
        min_ram: body.get("min_ram").and_then(Value::as_u64).unwrap_or(0),
        tags: body
            .get("tags")
            .and_then(Value::as_array)
            .map(|t| {
                t.iter()
                    .filter_map(|v| v.as_str().map(str::to_owned))
                    .collect()
            })
            .unwrap_or_default(),
        properties,
        upload: None,
    };
    let rendered = render(st, &img, ctx.now);
    st.images.push(img);
    let mut r = json(StatusCode::CREATED, &rendered);
    if let Ok(v) = format!("/v2/images/{}", rendered["id"].as_str().unwrap_or("")).parse() {
        r.headers_mut().insert(axum::http::header::LOCATION, v);
    }
    r
}

/// JSON Patch (`application/openstack-images-v2.1-json-patch`) on an image.
fn update(st: &mut State, ctx: &Ctx, id: &str) -> Response {
    let ops: Vec<Value> = match ctx.json() {
        Ok(o) => o,
        Err(f) => return html_error(StatusCode::BAD_REQUEST, &f.message),
    };
    let now = ctx.now;
    let Some(img) = st.image_mut(id, now) else {
        return not_found(id);
    };
    for op in &ops {
        let kind = op["op"].as_str().unwrap_or("");
        let key = op["path"]
            .as_str()
            .unwrap_or("")
            .trim_start_matches('/')
            .to_owned();
        if READ_ONLY.contains(&key.as_str()) || key == "id" {
            return html_error(
                StatusCode::FORBIDDEN,
                &format!("Attribute '{key}' is read-only."),
            );
        }
        let value = op.get("value").cloned().unwrap_or(Value::Null);
        match (kind, key.as_str()) {
            ("remove", "name") => img.name = None,
            ("remove", k) => {
                if img.properties.remove(k).is_none() {
                    return html_error(
                        StatusCode::CONFLICT,
                        &format!("Property {k} does not exist."),
                    );
                }
            }
            (_, "name") => img.name = value.as_str().map(str::to_owned),
            (_, "visibility") => img.visibility = value.as_str().unwrap_or("shared").to_owned(),
            (_, "protected") => img.protected = value.as_bool().unwrap_or(false),
            (_, "disk_format") => img.disk_format = value.as_str().map(str::to_owned),
            (_, "container_format") => img.container_format = value.as_str().map(str::to_owned),
            (_, "min_disk") => img.min_disk = value.as_u64().unwrap_or(0),
            (_, "min_ram") => img.min_ram = value.as_u64().unwrap_or(0),
            (_, "tags") => {
                img.tags = value
                    .as_array()
                    .map(|t| {
                        t.iter()
                            .filter_map(|v| v.as_str().map(str::to_owned))
                            .collect()
                    })
                    .unwrap_or_default();
            }
            (_, k) => {
                img.properties.insert(k.to_owned(), value);
            }
        }
    }
    let img = img.clone();
    json(StatusCode::OK, &render(st, &img, now))
}

fn delete(st: &mut State, now: Instant, id: &str) -> Response {
    let Some(img) = st.image_mut(id, now) else {
        return not_found(id);
    };
    if img.protected {
        return html_error(
            StatusCode::FORBIDDEN,
            &format!("Image {id} is protected and cannot be deleted."),
        );
    }
    img.status.rewrite(now, GONE);
    empty(StatusCode::NO_CONTENT)
}

fn upload(st: &mut State, ctx: &Ctx, id: &str) -> Response {
    let Some(img) = st.image_mut(id, ctx.now) else {
        return not_found(id);
    };
    let status = img.status.at(ctx.now);
    if status != "queued" {
        return html_error(
            StatusCode::CONFLICT,
            &format!("Image status transition from {status} to saving is not allowed"),
        );
    }
    if img.disk_format.is_none() || img.container_format.is_none() {
        return html_error(
            StatusCode::BAD_REQUEST,
            "Properties disk_format, container_format must be set prior to saving data.",
        );
    }
    img.size = Some(ctx.body.len() as u64);
    img.checksum = Some(digest::md5_hex(&ctx.body));
    img.os_hash_value = Some(digest::sha512_hex(&ctx.body));
    img.status.rewrite(ctx.now, "active");
    empty(StatusCode::NO_CONTENT)
}
