//! Keystone v3: tokens (password and application credential) and the service
//! catalog; [`validation`] asks Keystone about the tokens of callers.

pub mod validation;

use chrono::{DateTime, Utc};
use secrecy::{ExposeSecret as _, SecretString};
use serde::Deserialize;
use serde_json::{Value, json};

pub mod trusts;

use super::{
    config::{AuthMethod, CloudConfig, NamedInDomain},
    error::{ErrorKind, OpenStackError, classify, error_message},
};

/// A scoped token and the catalog that came with it.
#[derive(Debug, Clone)]
pub struct Token {
    pub value: SecretString,
    /// When we received it (our clock), to judge its lifetime.
    pub issued_at: DateTime<Utc>,
    pub expires_at: DateTime<Utc>,
    pub project_id: Option<String>,
    /// The user the token stands for (the trustor, for an impersonating trust).
    pub user_id: Option<String>,
    pub catalog: Vec<CatalogEntry>,
}

/// One service in the catalog.
#[derive(Debug, Clone, Deserialize)]
pub struct CatalogEntry {
    #[serde(rename = "type")]
    pub service_type: String,
    #[serde(default)]
    pub endpoints: Vec<CatalogEndpoint>,
}

/// One endpoint of a service.
#[derive(Debug, Clone, Deserialize)]
pub struct CatalogEndpoint {
    pub interface: String,
    #[serde(default)]
    pub region: Option<String>,
    #[serde(default)]
    pub region_id: Option<String>,
    pub url: String,
}

#[derive(Deserialize)]
struct TokenBody {
    token: TokenFields,
}

#[derive(Deserialize)]
struct TokenFields {
    expires_at: DateTime<Utc>,
    #[serde(default)]
    project: Option<IdOnly>,
    #[serde(default)]
    user: Option<IdOnly>,
    #[serde(default)]
    catalog: Vec<CatalogEntry>,
}

#[derive(Deserialize)]
struct IdOnly {
    id: String,
}

/// The `POST /v3/auth/tokens` body for a credential.
pub fn auth_request(method: &AuthMethod) -> Value {
    match method {
        AuthMethod::Password {
            user,
            password,
            project,
        } => {
            let mut body = json!({"auth": {"identity": {"methods": ["password"],
                "password": {"user": named(user, Some(password.expose_secret()))}}}});
            if let Some(project) = project {
                body["auth"]["scope"] = json!({"project": named(project, None)});
            }
            body
        }
        AuthMethod::ApplicationCredential {
            id,
            name,
            user,
            secret,
        } => {
            let mut credential = json!({"secret": secret.expose_secret()});
            if let Some(id) = id {
                credential["id"] = id.as_str().into();
            } else {
                credential["name"] = name.as_deref().unwrap_or_default().into();
                if let Some(user) = user {
                    credential["user"] = named(user, None);
                }
            }
            json!({"auth": {"identity": {"methods": ["application_credential"], "application_credential": credential}}})
        }
    }
}

/// The `POST /v3/auth/tokens` body of the service user scoped to a trust.
/// Keystone scopes only a password login to a trust (an application
/// credential carries its own fixed scope).
///
/// # Errors
/// The configured credential is not a password.
pub fn trust_auth_request(method: &AuthMethod, trust_id: &str) -> Result<Value, String> {
    let AuthMethod::Password { user, password, .. } = method else {
        return Err(
            "acting with a trust needs the service user to log in with a password \
                    (Keystone does not scope an application credential to a trust)"
                .into(),
        );
    };
    Ok(json!({"auth": {
        "identity": {"methods": ["password"],
            "password": {"user": named(user, Some(password.expose_secret()))}},
        "scope": {"OS-TRUST:trust": {"id": trust_id}}
    }}))
}

fn named(who: &NamedInDomain, password: Option<&str>) -> Value {
    let mut value = match (&who.id, &who.name) {
        (Some(id), _) => json!({"id": id}),
        (None, name) => {
            let domain = match (&who.domain_id, &who.domain_name) {
                (Some(id), _) => json!({"id": id}),
                (None, Some(name)) => json!({"name": name}),
                (None, None) => json!({"id": "default"}),
            };
            json!({"name": name, "domain": domain})
        }
    };
    if let Some(password) = password {
        value["password"] = password.into();
    }
    value
}

/// The token endpoint for an auth URL given with or without `/v3`.
pub fn tokens_url(auth_url: &str) -> String {
    let base = auth_url.trim_end_matches('/');
    if base.ends_with("/v3") {
        format!("{base}/auth/tokens")
    } else {
        format!("{base}/v3/auth/tokens")
    }
}

/// Reads a token answer: the `X-Subject-Token` header and the JSON body.
///
/// # Errors
/// A message saying what is missing.
pub fn parse_token(subject_token: Option<&str>, body: &str) -> Result<Token, String> {
    let value = subject_token.ok_or("no X-Subject-Token header in the answer")?;
    let parsed: TokenBody =
        serde_json::from_str(body).map_err(|e| format!("unreadable token body: {e}"))?;
    Ok(Token {
        value: value.to_owned().into(),
        issued_at: Utc::now(),
        expires_at: parsed.token.expires_at,
        project_id: parsed.token.project.map(|p| p.id),
        user_id: parsed.token.user.map(|u| u.id),
        catalog: parsed.token.catalog,
    })
}

/// The URL of the first service of `types` (in order of preference) with the
/// wanted interface and region.
pub fn endpoint_url(
    catalog: &[CatalogEntry],
    types: &[&str],
    interface: &str,
    region: Option<&str>,
) -> Option<String> {
    types.iter().find_map(|wanted| {
        catalog
            .iter()
            .filter(|entry| entry.service_type == *wanted)
            .flat_map(|entry| &entry.endpoints)
            .find(|e| {
                e.interface == interface
                    && region.is_none_or(|r| {
                        e.region_id.as_deref() == Some(r) || e.region.as_deref() == Some(r)
                    })
            })
            .map(|e| e.url.trim_end_matches('/').to_owned())
    })
}

/// Asks Keystone for a token.
///
/// # Errors
/// Keystone refuses the credentials or cannot be reached.
pub async fn authenticate(
    http: &reqwest::Client,
    config: &CloudConfig,
) -> Result<Token, OpenStackError> {
    request_token(http, config, &auth_request(&config.auth), "authenticate").await
}

/// Asks Keystone for a token of the service user scoped to a trust.
///
/// # Errors
/// Keystone refuses (the trust is gone, or its trustor lost a delegated role),
/// the service does not log in with a password, or Keystone cannot be reached.
/// No error names the trust.
pub async fn authenticate_with_trust(
    http: &reqwest::Client,
    config: &CloudConfig,
    trust_id: &str,
) -> Result<Token, OpenStackError> {
    const OPERATION: &str = "authenticate_with_trust";
    let body = trust_auth_request(&config.auth, trust_id)
        .map_err(|m| OpenStackError::new(ErrorKind::Config, "keystone", OPERATION, m))?;
    request_token(http, config, &body, OPERATION)
        .await
        .map_err(|mut error| {
            // Keystone's own messages name the trust ("Could not find trust: <id>").
            error.message = error.message.replace(trust_id, "[redacted]");
            error
        })
}

async fn request_token(
    http: &reqwest::Client,
    config: &CloudConfig,
    body: &Value,
    operation: &'static str,
) -> Result<Token, OpenStackError> {
    let fail = |kind, message: String| OpenStackError::new(kind, "keystone", operation, message);
    let response = http
        .post(tokens_url(&config.auth_url))
        .json(body)
        .send()
        .await
        .map_err(|e| {
            let kind = if e.is_timeout() {
                ErrorKind::Timeout
            } else {
                ErrorKind::Transport
            };
            fail(kind, format!("cannot reach {}: {e}", config.auth_url))
        })?;
    let status = response.status().as_u16();
    let request_id = response
        .headers()
        .get("x-openstack-request-id")
        .and_then(|v| v.to_str().ok())
        .map(str::to_owned);
    let subject = response
        .headers()
        .get("x-subject-token")
        .and_then(|v| v.to_str().ok())
        .map(str::to_owned);
    let body = response.text().await.unwrap_or_default();
    if !(200..300).contains(&status) {
        let message = error_message(&body);
        let mut error = fail(classify(status, &message, false), message);
        error.status = Some(status);
        error.request_id = request_id;
        return Err(error);
    }
    parse_token(subject.as_deref(), &body).map_err(|m| fail(ErrorKind::Decode, m))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn password_auth_names_user_and_project_by_domain() {
        let method = AuthMethod::Password {
            user: NamedInDomain {
                name: Some("demo".into()),
                domain_name: Some("Default".into()),
                ..Default::default()
            },
            password: "pw".to_owned().into(),
            project: Some(NamedInDomain {
                name: Some("demo".into()),
                domain_id: Some("default".into()),
                ..Default::default()
            }),
        };
        assert_eq!(
            auth_request(&method),
            json!({"auth": {
                "identity": {"methods": ["password"], "password": {"user": {"name": "demo", "domain": {"name": "Default"}, "password": "pw"}}},
                "scope": {"project": {"name": "demo", "domain": {"id": "default"}}}
            }})
        );
    }

    #[test]
    fn application_credentials_carry_no_scope() {
        let method = AuthMethod::ApplicationCredential {
            id: Some("423f19a4ac1e4f48bbb4180756e6eb6c".into()),
            name: None,
            user: None,
            secret: "rEaqvJka48mpv".to_owned().into(),
        };
        assert_eq!(
            auth_request(&method),
            json!({"auth": {"identity": {"methods": ["application_credential"],
                "application_credential": {"id": "423f19a4ac1e4f48bbb4180756e6eb6c", "secret": "rEaqvJka48mpv"}}}})
        );
    }

    #[test]
    fn token_urls_accept_auth_urls_with_or_without_v3() {
        assert_eq!(
            tokens_url("http://k:5000/v3/"),
            "http://k:5000/v3/auth/tokens"
        );
        assert_eq!(
            tokens_url("http://k/identity"),
            "http://k/identity/v3/auth/tokens"
        );
    }

    #[test]
    fn endpoints_are_chosen_by_type_preference_interface_and_region() {
        let catalog: Vec<CatalogEntry> = serde_json::from_value(json!([
            {"type": "block-storage", "endpoints": [
                {"interface": "public", "region": "RegionOne", "region_id": "RegionOne", "url": "http://one/volume/v3/"},
                {"interface": "public", "region": "RegionTwo", "region_id": "RegionTwo", "url": "http://two/volume/v3"}]},
            {"type": "volumev3", "endpoints": [
                {"interface": "internal", "region_id": "RegionOne", "url": "http://internal/v3"}]}
        ]))
        .unwrap();
        let volume = ["volumev3", "block-storage"];
        assert_eq!(
            endpoint_url(&catalog, &volume, "public", Some("RegionTwo")).as_deref(),
            Some("http://two/volume/v3")
        );
        assert_eq!(
            endpoint_url(&catalog, &volume, "internal", None).as_deref(),
            Some("http://internal/v3")
        );
        assert_eq!(
            endpoint_url(&catalog, &volume, "public", None).as_deref(),
            Some("http://one/volume/v3")
        );
        assert_eq!(endpoint_url(&catalog, &["compute"], "public", None), None);
    }
}
