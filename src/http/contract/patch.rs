//! The body of `PATCH /v1/policies/{id}`: a JSON merge patch (RFC 7396) of a
//! policy, as schemas derived from the policy's own.
//!
//! In a merge patch every field is optional; `null` removes a field, which then
//! takes its default, so fields with a default may be `null` and required ones
//! may not. Objects (`targets`, `retention`, `options`, their selectors and
//! metadata) merge key by key and get patch schemas of their own; arrays are
//! replaced whole. Unknown fields are refused at every level.

use serde_json::json;
use utoipa::{
    PartialSchema, ToSchema,
    openapi::{
        Ref, RefOr, Type,
        schema::{AdditionalProperties, Object, OneOf, Schema, SchemaType},
    },
};

use super::{policy_options, policy_spec, retention, selector, targets};
use crate::domain::{
    policy::{PolicyOptions, PolicySpec, Retention, Selector, Targets},
    validation::FieldError,
};

/// A merge patch of a policy, for the OpenAPI document (the handler merges the raw JSON).
#[derive(Debug)]
pub struct PolicyPatch;

impl PartialSchema for PolicyPatch {
    fn schema() -> RefOr<Schema> {
        let patch = patch_of(
            constrained::<PolicySpec>(policy_spec),
            &[
                ("targets", "TargetsPatch"),
                ("retention", "RetentionPatch"),
                ("options", "PolicyOptionsPatch"),
            ],
            "A JSON merge patch (RFC 7396) of a policy: only the fields to change. `null` removes a \
             field, which then takes its default; required fields cannot be removed. Objects merge \
             key by key, arrays are replaced whole, and unknown fields are refused. The read-only \
             fields (`id`, `version`, ...) may be sent back only unchanged. The patched policy is \
             validated as a whole: a change can be refused because of fields it leaves alone \
             (tags on a volume policy, the last retention rule removed).",
            json!({"enabled": false, "retention": {"keep_daily": 14}}),
        );
        RefOr::T(Schema::Object(patch))
    }
}

impl ToSchema for PolicyPatch {
    fn schemas(schemas: &mut Vec<(String, RefOr<Schema>)>) {
        let parts = [
            (
                "TargetsPatch",
                patch_of(
                    constrained::<Targets>(targets),
                    &[("selector", "SelectorPatch")],
                    "A merge patch of a policy's targets.",
                    json!({"ids": ["4f1d6a52-0b52-4a8e-9c43-1d0c8e3f2a10"]}),
                ),
            ),
            (
                "SelectorPatch",
                patch_of(
                    constrained::<Selector>(selector),
                    &[],
                    "A merge patch of a selector: `null` for a metadata key removes the pair.",
                    json!({"tags": ["backup"], "metadata": {"tier": null}}),
                ),
            ),
            (
                "RetentionPatch",
                patch_of(
                    constrained::<Retention>(retention),
                    &[],
                    "A merge patch of retention rules: `null` removes a rule.",
                    json!({"keep_daily": 14, "keep_weekly": null}),
                ),
            ),
            (
                "PolicyOptionsPatch",
                patch_of(
                    constrained::<PolicyOptions>(policy_options),
                    &[],
                    "A merge patch of a policy's options: `null` restores a default.",
                    json!({"max_concurrent": null, "metadata": {"team": "db"}}),
                ),
            ),
        ];
        for (name, schema) in parts {
            schemas.push((name.to_owned(), RefOr::T(Schema::Object(schema))));
        }
        // The components the patches refer to (resource types, schedules, enums).
        <PolicySpec as ToSchema>::schemas(schemas);
    }
}

/// The schema of `T` with `constrain` applied.
fn constrained<T: PartialSchema>(constrain: fn(&mut Object)) -> Object {
    match T::schema() {
        RefOr::T(Schema::Object(mut object)) => {
            constrain(&mut object);
            object
        }
        _ => panic!("a patched type has an object schema"),
    }
}

/// The merge-patch form of `source`: nothing required, what was optional may be
/// `null`, maps may remove keys with `null`, and the nested objects named in
/// `nested` refer to their own patch schemas.
fn patch_of(
    mut source: Object,
    nested: &[(&str, &str)],
    description: &str,
    example: serde_json::Value,
) -> Object {
    let required = std::mem::take(&mut source.required);
    // A patch may leave every rule alone.
    source.min_properties = None;
    for (name, schema) in source.properties.iter_mut() {
        if let Some((_, patch)) = nested.iter().find(|(field, _)| field == name) {
            *schema = RefOr::Ref(Ref::from_schema_name(*patch));
        } else if let RefOr::T(Schema::Object(map)) = schema
            && let Some(AdditionalProperties::RefOr(values)) =
                map.additional_properties.as_deref_mut()
        {
            // A map merges key by key: `null` removes a key.
            *values = nullable(std::mem::replace(values, RefOr::T(Schema::default())));
        }
        if !required.contains(name) {
            *schema = nullable(std::mem::replace(schema, RefOr::T(Schema::default())));
        }
    }
    source.description = Some(description.to_owned());
    source.example = Some(example);
    source
}

/// `schema`, or `null`.
fn nullable(schema: RefOr<Schema>) -> RefOr<Schema> {
    match schema {
        RefOr::T(Schema::Object(mut object)) if object.schema_type != SchemaType::AnyValue => {
            object.schema_type = with_null(object.schema_type);
            RefOr::T(Schema::Object(object))
        }
        RefOr::T(Schema::Array(mut array)) => {
            array.schema_type = with_null(array.schema_type);
            RefOr::T(Schema::Array(array))
        }
        RefOr::T(Schema::OneOf(one_of)) if one_of.items.iter().any(is_null) => {
            RefOr::T(Schema::OneOf(one_of))
        }
        other => {
            let mut one_of = OneOf::new();
            if let RefOr::Ref(reference) = &other {
                one_of.description = Some(reference.description.clone()).filter(|d| !d.is_empty());
            }
            one_of.items = vec![
                RefOr::T(Schema::Object(Object::with_type(Type::Null))),
                other,
            ];
            RefOr::T(Schema::OneOf(one_of))
        }
    }
}

fn with_null(schema_type: SchemaType) -> SchemaType {
    match schema_type {
        SchemaType::Type(Type::Null) => schema_type,
        SchemaType::Type(single) => SchemaType::Array(vec![single, Type::Null]),
        SchemaType::Array(mut types) => {
            if !types.contains(&Type::Null) {
                types.push(Type::Null);
            }
            SchemaType::Array(types)
        }
        SchemaType::AnyValue => SchemaType::AnyValue,
    }
}

fn is_null(schema: &RefOr<Schema>) -> bool {
    matches!(schema, RefOr::T(Schema::Object(o)) if o.schema_type == Type::Null.into())
}

/// Takes out of `patch` the fields that no policy has, as field errors sorted by path.
///
/// Deserialising the merged policy would catch most of them, but not one sent
/// as `null`: removing a field that is not there leaves nothing to refuse.
/// A field the policy `current`ly holds (as written: a newer build's option,
/// which this build shows broken) is left in, so that a patch can remove it.
pub fn take_unknown_fields(
    patch: &mut serde_json::Value,
    current: &serde_json::Value,
) -> Vec<FieldError> {
    let mut unknown = Vec::new();
    walk(patch, Some(current), &merged_objects(), "", &mut unknown);
    unknown.sort_by(|a, b| a.field.cmp(&b.field));
    unknown
}

/// The objects that merge key by key, by path, with the fields each may have.
/// Maps (`metadata`) are not listed: any key is theirs.
fn merged_objects() -> Vec<(&'static str, Vec<String>)> {
    let fields = |object: Object| object.properties.into_keys().collect::<Vec<_>>();
    vec![
        ("", fields(constrained::<PolicySpec>(policy_spec))),
        ("targets", fields(constrained::<Targets>(targets))),
        (
            "targets.selector",
            fields(constrained::<Selector>(selector)),
        ),
        ("retention", fields(constrained::<Retention>(retention))),
        (
            "options",
            fields(constrained::<PolicyOptions>(policy_options)),
        ),
    ]
}

fn walk(
    value: &mut serde_json::Value,
    current: Option<&serde_json::Value>,
    objects: &[(&str, Vec<String>)],
    path: &str,
    unknown: &mut Vec<FieldError>,
) {
    let (Some((_, known)), serde_json::Value::Object(map)) =
        (objects.iter().find(|(p, _)| *p == path), value)
    else {
        return;
    };
    let path_of = |key: &str| match path {
        "" => key.to_owned(),
        _ => format!("{path}.{key}"),
    };
    map.retain(|key, child| {
        let held = current.and_then(|c| c.get(key));
        let known = known.contains(key) || held.is_some();
        if known {
            walk(child, held, objects, &path_of(key), unknown);
        } else {
            unknown.push(FieldError::new(path_of(key), "unknown field"));
        }
        known
    });
}
