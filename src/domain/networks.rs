//! The networks of a server the service boots (a restore, a restore test),
//! as Nova takes them from compute microversion 2.37, and their checks.

use serde::{Deserialize, Serialize};
use serde_json::{Value, json};
use utoipa::ToSchema;

use super::validation::Violations;

/// The networks of a restored server, as Nova takes them from compute
/// microversion 2.37: `"none"`, `"auto"`, or a list of networks and ports.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
#[serde(untagged)]
#[schema(example = json!("none"))]
pub enum Networks {
    /// `"none"` (no network; the default) or `"auto"` (Nova picks the
    /// project's one network, or allocates one through Neutron's
    /// auto-allocated topology; it fails on a cloud that offers neither).
    Choice(NetworkChoice),
    /// These networks and ports, in order.
    List(Vec<NetworkRef>),
}

/// Nova's two words for networks.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "snake_case")]
#[schema(example = "none")]
pub enum NetworkChoice {
    None,
    Auto,
}

/// One network or one port of a restored server: exactly one of the two.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
#[schema(example = json!({"network": "7f3c1e2a-5b6d-4c8e-9f0a-1b2c3d4e5f60"}))]
pub struct NetworkRef {
    /// A Neutron network id.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub network: Option<String>,
    /// A Neutron port id (not attached to anything).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub port: Option<String>,
}

impl Networks {
    /// The `networks` value of Nova's `POST /servers`.
    pub fn to_nova(&self) -> Value {
        match self {
            Self::Choice(NetworkChoice::None) => json!("none"),
            Self::Choice(NetworkChoice::Auto) => json!("auto"),
            Self::List(list) => Value::Array(
                list.iter()
                    .map(|n| match (&n.network, &n.port) {
                        (_, Some(port)) => json!({"port": port}),
                        (Some(network), None) => json!({"uuid": network}),
                        (None, None) => json!({}),
                    })
                    .collect(),
            ),
        }
    }
}

/// Checks a list of networks (the words need no check: serde parsed them),
/// naming `field` and `field[i]`.
pub fn check_networks(v: &mut Violations, field: &str, networks: &Networks) {
    let Networks::List(list) = networks else {
        return;
    };
    v.check(
        list.is_empty(),
        field,
        "must name at least one network or port; use \"none\" for none",
    );
    for (i, n) in list.iter().enumerate() {
        let at = format!("{field}[{i}]");
        match (&n.network, &n.port) {
            (Some(_), Some(_)) | (None, None) => {
                v.add(at, "must name exactly one of `network` and `port`");
            }
            (Some(id), None) | (None, Some(id)) => v.check(
                id.trim().is_empty() || id.chars().count() > 64,
                at,
                "must be a Neutron id",
            ),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_list_must_name_one_network_or_port_per_entry() {
        let mut v = Violations::default();
        let list: Networks =
            serde_json::from_value(json!([{"network": "n", "port": "p"}, {"port": "p1"}])).unwrap();
        check_networks(&mut v, "options.verify.networks", &list);
        let fields: Vec<String> = v.into_errors().into_iter().map(|e| e.field).collect();
        assert_eq!(fields, ["options.verify.networks[0]"]);
        let mut v = Violations::default();
        check_networks(&mut v, "networks", &Networks::List(Vec::new()));
        assert!(!v.is_empty());
    }
}
