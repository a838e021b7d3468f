//! The body of a trust create request, checked as Keystone's
//! `trust_create_request_body` (keystone/trust/schema.py) checks it, with
//! the messages of Keystone's validator (keystone/api/validation):
//! "Invalid input for field/attribute <last path element>. Value: <Python
//! repr>. <jsonschema message>", or the bare message at the top level.
//! Plain data; no HTTP.

use serde_json::{Map, Value};

/// A role of a create request: by id or by name.
#[derive(Debug, PartialEq, Eq)]
pub(super) enum RoleRef {
    Id(String),
    Name(String),
}

/// A create request that passed `trust_create_request_body`.
#[derive(Debug)]
pub(super) struct NewTrust {
    pub(super) trustor_user_id: String,
    pub(super) trustee_user_id: String,
    pub(super) project_id: Option<String>,
    pub(super) impersonation: bool,
    pub(super) roles: Vec<RoleRef>,
    pub(super) expires_at: Option<String>,
    pub(super) remaining_uses: Option<u64>,
    pub(super) allow_redelegation: bool,
}

/// The request, or the message of Keystone's 400.
pub(super) fn parse(body: &Value) -> Result<NewTrust, String> {
    let Some(top) = body.as_object() else {
        return Err(format!("{} is not of type 'object'", py_repr(body)));
    };
    // jsonschema's order: the properties (the trust, its fields, then what
    // it requires), then extra keys, then what the body requires.
    if let Some(trust) = top.get("trust") {
        let Some(t) = trust.as_object() else {
            return Err(invalid("trust", trust, "is not of type 'object'"));
        };
        check_types(t)?;
        for field in ["trustor_user_id", "trustee_user_id", "impersonation"] {
            if !t.contains_key(field) {
                return Err(format!(
                    "Invalid input for field/attribute trust. Value: {}. '{field}' is a required property",
                    py_repr(trust)
                ));
            }
        }
    }
    if let Some(key) = top.keys().find(|k| *k != "trust") {
        return Err(format!(
            "Additional properties are not allowed ('{key}' was unexpected)"
        ));
    }
    let Some(t) = top.get("trust").and_then(Value::as_object) else {
        return Err("'trust' is a required property".into());
    };
    let text = |k: &str| t.get(k).and_then(Value::as_str).map(str::to_owned);
    Ok(NewTrust {
        trustor_user_id: text("trustor_user_id").unwrap_or_default(),
        trustee_user_id: text("trustee_user_id").unwrap_or_default(),
        project_id: text("project_id"),
        impersonation: t["impersonation"].as_bool().unwrap_or(false),
        roles: role_refs(t.get("roles"))?,
        expires_at: text("expires_at"),
        remaining_uses: t.get("remaining_uses").and_then(Value::as_u64),
        allow_redelegation: t
            .get("allow_redelegation")
            .and_then(Value::as_bool)
            .unwrap_or(false),
    })
}

/// The type (and minimum) of each property jsonschema checks, in the
/// schema's order.
fn check_types(t: &Map<String, Value>) -> Result<(), String> {
    let kinds: [(&str, &str, Option<i64>); 8] = [
        ("trustor_user_id", "'string'", None),
        ("trustee_user_id", "'string'", None),
        ("impersonation", "'boolean'", None),
        ("project_id", "'string', 'null'", None),
        ("remaining_uses", "'integer', 'null'", Some(1)),
        ("expires_at", "'null', 'string'", None),
        ("allow_redelegation", "'boolean', 'null'", None),
        ("redelegation_count", "'integer', 'null'", Some(0)),
    ];
    for (key, kind, minimum) in kinds {
        let Some(v) = t.get(key) else { continue };
        let ok = match kind {
            "'string'" => v.is_string(),
            "'boolean'" => v.is_boolean(),
            "'string', 'null'" | "'null', 'string'" => v.is_string() || v.is_null(),
            "'boolean', 'null'" => v.is_boolean() || v.is_null(),
            _ => v.is_i64() || v.is_u64() || v.is_null(),
        };
        if !ok {
            return Err(invalid(key, v, &format!("is not of type {kind}")));
        }
        if let (Some(min), Some(n)) = (minimum, v.as_i64())
            && n < min
        {
            return Err(invalid(
                key,
                v,
                &format!("is less than the minimum of {min}"),
            ));
        }
    }
    Ok(())
}

/// The `roles` of a request: objects with exactly one of `id` or `name`.
fn role_refs(roles: Option<&Value>) -> Result<Vec<RoleRef>, String> {
    let Some(roles) = roles else {
        return Ok(Vec::new());
    };
    let Some(items) = roles.as_array() else {
        return Err(invalid("roles", roles, "is not of type 'array'"));
    };
    items
        .iter()
        .enumerate()
        .map(|(i, item)| {
            let field = i.to_string();
            let Some(obj) = item.as_object() else {
                return Err(invalid(&field, item, "is not of type 'object'"));
            };
            if let Some(key) = obj.keys().find(|k| !matches!(k.as_str(), "id" | "name")) {
                return Err(format!(
                    "Invalid input for field/attribute {field}. Value: {}. Additional properties are not allowed ('{key}' was unexpected)",
                    py_repr(item)
                ));
            }
            match (obj.get("id"), obj.get("name"), obj.len()) {
                (Some(Value::String(id)), None, 1) => Ok(RoleRef::Id(id.clone())),
                (None, Some(Value::String(name)), 1) => Ok(RoleRef::Name(name.clone())),
                (_, _, 0) => Err(invalid(&field, item, "does not have enough properties")),
                (_, _, 2) => Err(invalid(&field, item, "has too many properties")),
                (Some(v), _, _) | (_, Some(v), _) => {
                    Err(invalid(&field, v, "is not of type 'string'"))
                }
                _ => Err(invalid(&field, item, "is not valid")),
            }
        })
        .collect()
}

fn invalid(field: &str, value: &Value, message: &str) -> String {
    let repr = py_repr(value);
    format!("Invalid input for field/attribute {field}. Value: {repr}. {repr} {message}")
}

/// A JSON value as Python's `repr` shows it (what Keystone's messages quote).
fn py_repr(v: &Value) -> String {
    match v {
        Value::Null => "None".into(),
        Value::Bool(true) => "True".into(),
        Value::Bool(false) => "False".into(),
        Value::Number(n) => n.to_string(),
        Value::String(s) => format!("'{}'", s.replace('\\', "\\\\").replace('\'', "\\'")),
        Value::Array(items) => format!(
            "[{}]",
            items.iter().map(py_repr).collect::<Vec<_>>().join(", ")
        ),
        Value::Object(map) => format!(
            "{{{}}}",
            map.iter()
                .map(|(k, v)| format!("'{k}': {}", py_repr(v)))
                .collect::<Vec<_>>()
                .join(", ")
        ),
    }
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;

    fn body(trust: Value) -> Value {
        json!({ "trust": trust })
    }

    #[test]
    fn a_complete_request_parses_with_roles_by_name_or_id() {
        let new = parse(&body(json!({
            "trustor_user_id": "a", "trustee_user_id": "b", "project_id": "p",
            "impersonation": true, "roles": [{"name": "member"}, {"id": "r1"}],
        })))
        .unwrap();
        assert_eq!(new.trustor_user_id, "a");
        assert!(new.impersonation);
        assert_eq!(
            new.roles,
            [RoleRef::Name("member".into()), RoleRef::Id("r1".into())]
        );
    }

    #[test]
    fn missing_and_mistyped_fields_get_keystones_schema_messages() {
        assert_eq!(
            parse(&json!({})).unwrap_err(),
            "'trust' is a required property"
        );
        assert_eq!(
            parse(&body(
                json!({"trustor_user_id": "a", "trustee_user_id": "b"})
            ))
            .unwrap_err(),
            "Invalid input for field/attribute trust. Value: {'trustee_user_id': 'b', 'trustor_user_id': 'a'}. 'impersonation' is a required property"
        );
        assert_eq!(
            parse(&body(
                json!({"trustor_user_id": "a", "trustee_user_id": "b", "impersonation": "yes"})
            ))
            .unwrap_err(),
            "Invalid input for field/attribute impersonation. Value: 'yes'. 'yes' is not of type 'boolean'"
        );
        assert_eq!(
            parse(&body(json!({"trustor_user_id": "a", "trustee_user_id": "b", "impersonation": true, "remaining_uses": 0}))).unwrap_err(),
            "Invalid input for field/attribute remaining_uses. Value: 0. 0 is less than the minimum of 1"
        );
    }
}
