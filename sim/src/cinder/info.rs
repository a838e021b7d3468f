//! What Cinder says about itself: the resource filters a non-admin may use
//! (`GET /resource_filters`, from 3.33; Cinder's default
//! `etc/cinder/resource_filters.json`, which the rig runs), the
//! availability zones and the loaded API extensions (`extensions.json`:
//! the rig's answer, Cinder 29).

use axum::http::StatusCode;
use serde_json::{Value, json};

use super::Reply;
use crate::{
    http::{Ctx, Mv},
    state::Fail,
};

/// Cinder's default `resource_filters.json`, in its order.
pub(crate) const RESOURCE_FILTERS: [(&str, &[&str]); 9] = [
    (
        "volume",
        &[
            "name",
            "status",
            "metadata",
            "bootable",
            "migration_status",
            "availability_zone",
            "group_id",
            "size",
            "created_at",
            "updated_at",
            "consumes_quota",
        ],
    ),
    ("backup", &["name", "status", "volume_id"]),
    (
        "snapshot",
        &[
            "name",
            "status",
            "volume_id",
            "metadata",
            "availability_zone",
            "consumes_quota",
        ],
    ),
    ("group", &["name"]),
    ("group_snapshot", &["name", "status", "group_id"]),
    (
        "attachment",
        &["volume_id", "status", "instance_id", "attach_status"],
    ),
    (
        "message",
        &[
            "resource_uuid",
            "resource_type",
            "event_id",
            "request_id",
            "message_level",
        ],
    ),
    ("pool", &["name", "volume_type"]),
    ("volume_type", &["is_public", "extra_specs"]),
];

const EXTENSIONS: &str = include_str!("extensions.json");

pub(super) fn handle(operation: &str, ctx: &Ctx, zones: &[String]) -> Reply {
    match operation {
        "cinder.list_resource_filters" => {
            if ctx.mv < Mv(3, 33) {
                return Err(Fail::not_found("The resource could not be found."));
            }
            // `?resource=` narrows the list; an unknown resource gives an empty one.
            let list: Vec<Value> = RESOURCE_FILTERS
                .iter()
                .filter(|(resource, _)| ctx.q("resource").is_none_or(|r| r == *resource))
                .map(|(resource, filters)| json!({"resource": resource, "filters": filters}))
                .collect();
            Ok((StatusCode::OK, json!({ "resource_filters": list })))
        }
        "cinder.list_availability_zones" => Ok((
            StatusCode::OK,
            json!({"availabilityZoneInfo": zones.iter().map(|z| json!({"zoneName": z, "zoneState": {"available": true}})).collect::<Vec<_>>()}),
        )),
        _ => {
            let body: Value = serde_json::from_str(EXTENSIONS)
                .map_err(|e| Fail::new(StatusCode::INTERNAL_SERVER_ERROR, e.to_string()))?;
            Ok((StatusCode::OK, body))
        }
    }
}
