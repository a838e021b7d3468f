//! What the OpenAPI document says about request bodies beyond the schemas the
//! domain types derive: the bounds and forms `PolicySpec::validate` and
//! `AdhocSnapshotRequest::validate` enforce, written as JSON Schema keywords,
//! and the merge-patch schemas of a policy ([`patch`]).
//!
//! The domain types own their fields; this module only tightens their schemas
//! in the document, after every route has added its components. It changes no
//! behaviour. A rule JSON Schema cannot state (a cron expression that never
//! fires, a tag on a volume policy, a duration's upper bound) stays a 422 and
//! is named in the field's description or the operation's.

pub mod forms;
pub mod patch;

use std::collections::BTreeMap;

use utoipa::openapi::{
    OpenApi, RefOr, Type,
    schema::{AdditionalProperties, AllOf, AnyOf, Array, Object, Schema},
};

use self::forms::{
    CONTROL, NO_NUL, SPACE, TRIMMED, cron_pattern, duration_pattern, stamped_key_pattern,
};
use crate::domain::adhoc::MAX_PROJECT_ID_CHARS;
use crate::domain::policy::{
    MAX_CONCURRENT, MAX_DESCRIPTION_CHARS, MAX_KEEP_COUNT, MAX_METADATA_CHARS, MAX_METADATA_ITEMS,
    MAX_NAME_CHARS, MAX_SCHEDULES, MAX_SELECTOR_TERMS, MAX_TAG_CHARS, MAX_TARGET_IDS,
};

/// Tightens the request schemas in `openapi` to what the service accepts.
///
/// # Panics
/// When a schema or property it constrains is missing: the domain renamed it,
/// and the document must follow.
pub fn constrain(openapi: &mut OpenApi) {
    let schemas = &mut openapi
        .components
        .as_mut()
        .expect("the document has components")
        .schemas;
    let mut apply = |name: &str, constrain: fn(&mut Object)| match schemas.get_mut(name) {
        Some(RefOr::T(Schema::Object(object))) => constrain(object),
        _ => panic!("the document has no object schema {name}"),
    };
    apply("PolicySpec", policy_spec);
    apply("PolicySpec", created_in_a_project);
    apply("Targets", targets);
    apply("Selector", selector);
    apply("ScheduleSpec", schedule_spec);
    apply("Retention", retention);
    apply("PolicyOptions", policy_options);
    apply("AdhocSnapshotRequest", adhoc_snapshot_request);
    require_a_target(schemas);
}

/// The writable fields of a policy.
pub fn policy_spec(spec: &mut Object) {
    let name = string(spec, "name");
    name.min_length = Some(1);
    name.max_length = Some(MAX_NAME_CHARS);
    name.pattern = Some(format!(
        "^[^{CONTROL}{SPACE}](?:[^{CONTROL}]*[^{CONTROL}{SPACE}])?$"
    ));
    extend_description(
        name,
        "No control characters, and no white space at either end.",
    );
    let description = string(spec, "description");
    description.max_length = Some(MAX_DESCRIPTION_CHARS);
    description.pattern = Some(NO_NUL.to_owned());
    let schedules = array(spec, "schedules");
    schedules.min_items = Some(1);
    schedules.max_items = Some(MAX_SCHEDULES);
    schedules.unique_items = true;
}

/// Which resources a policy covers.
pub fn targets(targets: &mut Object) {
    let ids = array(targets, "ids");
    ids.max_items = Some(MAX_TARGET_IDS);
    ids.unique_items = true;
    extend_description(
        targets,
        "Name at least one id or one selector term. Volume groups are named by id only, \
         and volumes carry no tags.",
    );
}

/// Makes the `Targets` component name at least one id or one selector term:
/// `allOf` its object schema and an `anyOf` of the ways to name one.
fn require_a_target(schemas: &mut BTreeMap<String, RefOr<Schema>>) {
    let Some(RefOr::T(Schema::Object(mut targets))) = schemas.remove("Targets") else {
        panic!("the document has no object schema Targets");
    };
    let Some(RefOr::T(Schema::Object(selector))) = schemas.get("Selector") else {
        panic!("the document has no object schema Selector");
    };
    // `name` present and, as an array, non-empty or, as a map, not empty.
    let present = |schema: &Object, name: &str| {
        let mut field = schema.properties[name].clone();
        match &mut field {
            RefOr::T(Schema::Array(array)) => array.min_items = Some(1),
            RefOr::T(Schema::Object(map)) => map.min_properties = Some(1),
            _ => panic!("{name} is neither an array nor a map"),
        }
        let mut branch = Object::new();
        branch.required = vec![name.to_owned()];
        branch.properties.insert(name.to_owned(), field);
        RefOr::T(Schema::Object(branch))
    };
    let mut term = AnyOf::new();
    term.items = vec![present(selector, "tags"), present(selector, "metadata")];
    let mut by_selector = Object::new();
    by_selector.required = vec!["selector".to_owned()];
    by_selector
        .properties
        .insert("selector".to_owned(), RefOr::T(Schema::AnyOf(term)));
    let mut named = AnyOf::new();
    named.items = vec![
        present(&targets, "ids"),
        RefOr::T(Schema::Object(by_selector)),
    ];
    let mut all_of = AllOf::new();
    all_of.description = targets.description.take();
    all_of.example = targets.example.take();
    all_of.items = vec![
        RefOr::T(Schema::Object(targets)),
        RefOr::T(Schema::AnyOf(named)),
    ];
    schemas.insert("Targets".to_owned(), RefOr::T(Schema::AllOf(all_of)));
}

/// Tags and metadata that select resources.
pub fn selector(selector: &mut Object) {
    let tags = array(selector, "tags");
    tags.max_items = Some(MAX_SELECTOR_TERMS);
    let tag = items(tags);
    tag.min_length = Some(1);
    tag.max_length = Some(MAX_TAG_CHARS);
    tag.pattern = Some(r"^[^/,\u0000]*$".to_owned());
    metadata(object(selector, "metadata"), false);
}

/// One cron expression and its time zone.
pub fn schedule_spec(schedule: &mut Object) {
    let cron = string(schedule, "cron");
    cron.pattern = Some(cron_pattern());
    extend_description(
        cron,
        "An expression of this form can still be refused when it never fires (`0 0 31 2 *`) \
         or a range runs backwards.",
    );
    let timezone = string(schedule, "timezone");
    timezone.enum_values = Some(
        chrono_tz::TZ_VARIANTS
            .iter()
            .map(|tz| tz.name().into())
            .collect(),
    );
}

/// Retention rules.
pub fn retention(retention: &mut Object) {
    // At least one rule; a rule sent as `null` is no rule, which JSON Schema cannot see here.
    retention.min_properties = Some(1);
    for rule in [
        "keep_last",
        "keep_hourly",
        "keep_daily",
        "keep_weekly",
        "keep_monthly",
        "keep_yearly",
    ] {
        let count = object(retention, rule);
        count.minimum = Some(1.into());
        count.maximum = Some(MAX_KEEP_COUNT.into());
    }
    duration(object(retention, "keep_within"));
}

/// How a policy's snapshots are taken.
pub fn policy_options(options: &mut Object) {
    let template = string(options, "name_template");
    template.min_length = Some(1);
    template.pattern = Some(NO_NUL.to_owned());
    metadata(object(options, "metadata"), true);
    for field in ["timeout", "start_window"] {
        let window = string(options, field);
        duration(window);
        extend_description(window, "Between `1m` and `7d`.");
    }
    duration(object(options, "rpo"));
    let max_concurrent = object(options, "max_concurrent");
    max_concurrent.minimum = Some(1.into());
    max_concurrent.maximum = Some(MAX_CONCURRENT.into());
}

/// A one-off snapshot request.
pub fn adhoc_snapshot_request(request: &mut Object) {
    let name = object(request, "name");
    name.max_length = Some(MAX_NAME_CHARS);
    name.pattern = Some(format!(r"^[^\u0000]*[^\u0000{TRIMMED}][^\u0000]*$"));
    metadata(object(request, "metadata"), true);
    let timeout = object(request, "timeout");
    duration(timeout);
    extend_description(timeout, "Between `1m` and `7d`.");
    project_id(object(request, "project_id"));
    duration(object(request, "if_older_than"));
}

/// A new policy may name the project it is made in (`project_id`, admin only
/// for another project): the handler takes it out of the body before the rest
/// is read as a [`PolicySpec`](crate::domain::policy::PolicySpec), which has no
/// such field (a policy's patch does not take it either).
fn created_in_a_project(spec: &mut Object) {
    let mut field = Object::with_type(Type::String);
    field.description = Some(
        "The project to create the policy in; default the token's. Another project's id \
         needs the `admin` role."
            .to_owned(),
    );
    field.example = Some("8d3c1f0b2a4e4b6c9d7e5f1a2b3c4d5e".into());
    project_id(&mut field);
    spec.properties
        .insert("project_id".to_owned(), RefOr::T(Schema::Object(field)));
}

/// A Keystone project id: 1 to 64 characters, no white space or control characters.
fn project_id(field: &mut Object) {
    field.min_length = Some(1);
    field.max_length = Some(MAX_PROJECT_ID_CHARS);
    field.pattern = Some(format!("^[^{CONTROL}{SPACE}]+$"));
}

fn duration(field: &mut Object) {
    field.pattern = Some(duration_pattern());
}

/// Metadata: at most 50 pairs, keys of 1 to 255 characters, values of at most 255;
/// `stamped` metadata may not use the keys Nova and Glance set themselves.
fn metadata(map: &mut Object, stamped: bool) {
    map.max_properties = Some(MAX_METADATA_ITEMS);
    let key = map
        .property_names
        .as_deref_mut()
        .and_then(as_object)
        .expect("metadata names its keys' schema");
    key.min_length = Some(1);
    key.max_length = Some(MAX_METADATA_CHARS);
    key.pattern = Some(if stamped {
        stamped_key_pattern()
    } else {
        NO_NUL.to_owned()
    });
    let Some(AdditionalProperties::RefOr(RefOr::T(Schema::Object(value)))) =
        map.additional_properties.as_deref_mut()
    else {
        panic!("metadata values have a schema");
    };
    value.max_length = Some(MAX_METADATA_CHARS);
    value.pattern = Some(NO_NUL.to_owned());
    if stamped {
        extend_description(
            map,
            "Keys Nova and Glance set themselves (`name`, `status`, `image_type`, ...) and keys \
             starting `stacksnap_` or `os_glance_` are reserved.",
        );
    }
}

fn extend_description(object: &mut Object, more: &str) {
    object.description = Some(match object.description.take() {
        Some(text) => format!("{text} {more}"),
        None => more.to_owned(),
    });
}

fn as_object(schema: &mut Schema) -> Option<&mut Object> {
    match schema {
        Schema::Object(object) => Some(object),
        _ => None,
    }
}

fn property<'a>(parent: &'a mut Object, name: &str) -> &'a mut Schema {
    match parent.properties.get_mut(name) {
        Some(RefOr::T(schema)) => schema,
        _ => panic!("no inline property {name} to constrain"),
    }
}

/// A property whose schema is an object schema (a string, a number, a map).
fn object<'a>(parent: &'a mut Object, name: &str) -> &'a mut Object {
    as_object(property(parent, name)).unwrap_or_else(|| panic!("{name} is not a plain schema"))
}

/// A property that must be a plain string.
fn string<'a>(parent: &'a mut Object, name: &str) -> &'a mut Object {
    let field = object(parent, name);
    assert!(
        field.schema_type == Type::String.into(),
        "{name} is not a string"
    );
    field
}

fn array<'a>(parent: &'a mut Object, name: &str) -> &'a mut Array {
    match property(parent, name) {
        Schema::Array(array) => array,
        _ => panic!("{name} is not an array"),
    }
}

fn items(array: &mut Array) -> &mut Object {
    match &mut array.items {
        utoipa::openapi::schema::ArrayItems::RefOrSchema(item) => match item.as_mut() {
            RefOr::T(Schema::Object(object)) => object,
            _ => panic!("the items are not a plain schema"),
        },
        _ => panic!("the array has no item schema"),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The pattern the document declares for a query parameter of `GET path`.
    fn query_pattern(doc: &serde_json::Value, method: &str, path: &str, name: &str) -> String {
        doc["paths"][path][method]["parameters"]
            .as_array()
            .unwrap()
            .iter()
            .find(|p| p["name"] == name)
            .and_then(|p| p["schema"]["pattern"].as_str())
            .unwrap_or_else(|| panic!("{method} {path} declares no pattern for {name}"))
            .to_owned()
    }

    #[test]
    fn patterns_written_out_in_annotations_match_the_rules_they_state() {
        use crate::http::pagination::List;
        let doc: serde_json::Value =
            serde_json::from_str(&crate::http::docs::openapi_json()).unwrap();
        for (path, schema, list) in [
            ("/v1/policies", "PolicyList", List::Policies),
            ("/v1/runs", "RunList", List::Runs),
            ("/v1/jobs", "JobList", List::Jobs),
            ("/v1/snapshots", "SnapshotList", List::Snapshots),
        ] {
            assert_eq!(
                query_pattern(&doc, "get", path, "cursor"),
                list.cursor_pattern()
            );
            assert_eq!(
                doc["components"]["schemas"][schema]["properties"]["next_cursor"]["pattern"],
                list.cursor_pattern()
            );
        }
        assert_eq!(
            query_pattern(&doc, "post", "/v1/snapshots", "wait"),
            duration_pattern()
        );
        for path in ["/v1/jobs", "/v1/snapshots"] {
            assert_eq!(query_pattern(&doc, "get", path, "resource_id"), NO_NUL);
        }
    }
}
