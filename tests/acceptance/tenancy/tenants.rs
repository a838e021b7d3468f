//! Who the tenancy test is on a real cloud, each a user of its own:
//! - the service: `STACKSNAP_E2E_SERVICE_CLOUD` (default `osrig-admin`), a user
//!   with the `admin` (or `service`) role who logs in with a password, as
//!   `stacksnap serve` would be configured;
//! - a member of the tenant's project: `STACKSNAP_E2E_CLOUD` (CI: `osrig-demo`);
//! - a reader of the same project, which has no clouds.yaml entry on the rig:
//!   the member's entry with the user `STACKSNAP_E2E_READER` (default
//!   `demo_reader`) and the password `STACKSNAP_E2E_READER_PASSWORD` (default
//!   `demo`, the rig's; see its README);
//! - a member of another project: `STACKSNAP_E2E_OTHER_CLOUD` (default `osrig-alt`).
//!
//! And the few calls the test makes as them: to the service's API with a
//! token, and to Keystone about a trust as the service user (its trustee).

use std::time::Duration;

use reqwest::Method;
use secrecy::{ExposeSecret as _, SecretString};
use serde_json::{Value, json};
use stacksnap::openstack::{
    CloudConfig, OpenStack, SessionOptions,
    config::{AuthMethod, NamedInDomain},
    keystone,
    session::{Call, Service},
};

fn env_or(var: &str, default: &str) -> String {
    std::env::var(var)
        .ok()
        .filter(|v| !v.is_empty())
        .unwrap_or_else(|| default.to_owned())
}

fn named(var: &str, default: &str) -> CloudConfig {
    let name = env_or(var, default);
    CloudConfig::named(&name).unwrap_or_else(|e| panic!("{var}={name} is not a usable cloud: {e}"))
}

/// The service's cloud: its credentials validate tokens, are the trustee of
/// every trust, and (as an admin) read any project's artefacts for the checks.
pub fn service_cloud() -> OpenStack {
    let config = named("STACKSNAP_E2E_SERVICE_CLOUD", "osrig-admin");
    OpenStack::new(config, SessionOptions::default()).unwrap()
}

/// The credentials of another project's member.
pub fn other_project_config() -> CloudConfig {
    named("STACKSNAP_E2E_OTHER_CLOUD", "osrig-alt")
}

/// The credentials of a reader of `member`'s project: the same entry with
/// another user and password.
pub fn reader_config(member: &CloudConfig) -> CloudConfig {
    let AuthMethod::Password { user, project, .. } = &member.auth else {
        panic!("STACKSNAP_E2E_CLOUD must log in with a password: its reader is derived from it");
    };
    let reader = NamedInDomain {
        id: None,
        name: Some(env_or("STACKSNAP_E2E_READER", "demo_reader")),
        ..user.clone()
    };
    CloudConfig {
        auth: AuthMethod::Password {
            user: reader,
            password: SecretString::from(env_or("STACKSNAP_E2E_READER_PASSWORD", "demo")),
            project: project.clone(),
        },
        ..member.clone()
    }
}

/// A user logged in to its project, as `openstack token issue` does.
#[derive(Debug, Clone)]
pub struct Tenant {
    pub name: &'static str,
    pub token: SecretString,
    pub user_id: String,
    pub project_id: String,
}

impl Tenant {
    /// Logs in with `config`; `name` is for messages.
    pub async fn log_in(name: &'static str, config: &CloudConfig) -> Self {
        let token = keystone::authenticate(&reqwest::Client::new(), config)
            .await
            .unwrap_or_else(|e| panic!("{name} cannot log in: {e}"));
        Self {
            name,
            token: token.value,
            user_id: token.user_id.expect("a user"),
            project_id: token.project_id.expect("a project-scoped token"),
        }
    }
}

/// The service's HTTP API.
#[derive(Debug, Clone)]
pub struct Api {
    base: String,
    client: reqwest::Client,
}

impl Api {
    pub fn new(addr: std::net::SocketAddr) -> Self {
        let client = reqwest::Client::builder()
            .timeout(Duration::from_secs(60))
            .build()
            .unwrap();
        Self {
            base: format!("http://{addr}"),
            client,
        }
    }

    /// Sends `method path` with `who`'s token (and `body`: a merge patch for
    /// PATCH, JSON otherwise); the status and the JSON body (`null` if none).
    pub async fn send(
        &self,
        who: &Tenant,
        method: Method,
        path: &str,
        body: Option<&Value>,
    ) -> (u16, Value) {
        let mut request = self
            .client
            .request(method.clone(), format!("{}{path}", self.base))
            .header("X-Auth-Token", who.token.expose_secret());
        if method == Method::PATCH {
            request = request
                .header("content-type", "application/merge-patch+json")
                .body(body.unwrap_or(&json!({})).to_string());
        } else if let Some(body) = body {
            request = request.json(body);
        }
        let response = request.send().await.unwrap();
        let status = response.status().as_u16();
        let text = response.text().await.unwrap();
        let body = if text.is_empty() {
            Value::Null
        } else {
            serde_json::from_str(&text).unwrap_or_else(|_| panic!("{method} {path}: {text}"))
        };
        (status, body)
    }

    /// `send`, failing the test unless the status is `expected`.
    pub async fn expect(
        &self,
        who: &Tenant,
        method: Method,
        path: &str,
        body: Option<&Value>,
        expected: u16,
    ) -> Value {
        let (status, body) = self.send(who, method.clone(), path, body).await;
        assert_eq!(status, expected, "{} {method} {path}: {body}", who.name);
        body
    }
}

/// A trust as Keystone shows it to its trustee, `None` once it is deleted.
pub async fn trust(service: &OpenStack, trust_id: &str) -> Option<Value> {
    let call = Call::new(
        Service::Identity,
        "get_trust",
        Method::GET,
        format!("/v3/OS-TRUST/trusts/{trust_id}"),
    );
    match service.session().send(&call).await {
        Ok(reply) => {
            let body: Value = serde_json::from_slice(&reply.body).unwrap();
            Some(body["trust"].clone())
        }
        Err(e) if e.is_not_found() => None,
        Err(e) => panic!("cannot read a trust: {:?} (HTTP {:?})", e.kind, e.status),
    }
}
