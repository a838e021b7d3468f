//! Validating a caller's token: `GET /v3/auth/tokens` with the token in
//! `X-Subject-Token`, sent with the service's own token (only a user with the
//! `service` or `admin` role may ask about another user's token).
//!
//! It returns what Keystone says the token stands for; what the service makes
//! of it (roles, projects) is decided above this module.

use chrono::{DateTime, Utc};
use reqwest::Method;
use secrecy::SecretString;
use serde::Deserialize;

use super::super::{
    ErrorKind, OpenStackError, Session, decode,
    session::{Call, Service},
};

/// What a valid token stands for.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ValidatedToken {
    pub user_id: String,
    pub user_name: String,
    /// The project the token is scoped to; `None` for an unscoped, domain- or
    /// system-scoped token.
    pub project: Option<ScopedProject>,
    /// Role names, implied roles included (Keystone expands them).
    pub roles: Vec<String>,
    pub expires_at: DateTime<Utc>,
    /// The token was made from an application credential (`token.application_credential`).
    pub application_credential: bool,
    /// The token is scoped to a trust (`token.OS-TRUST:trust`).
    pub trust_scoped: bool,
}

/// The project a token is scoped to.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ScopedProject {
    pub id: String,
    pub name: String,
}

#[derive(Deserialize)]
struct Body {
    token: TokenFields,
}

#[derive(Deserialize)]
struct TokenFields {
    user: Named,
    #[serde(default)]
    project: Option<Named>,
    #[serde(default)]
    roles: Vec<Role>,
    expires_at: DateTime<Utc>,
    #[serde(default)]
    application_credential: Option<serde_json::Value>,
    #[serde(rename = "OS-TRUST:trust", default)]
    trust: Option<serde_json::Value>,
}

#[derive(Deserialize)]
struct Named {
    id: String,
    #[serde(default)]
    name: String,
}

#[derive(Deserialize)]
struct Role {
    name: String,
}

impl From<TokenFields> for ValidatedToken {
    fn from(token: TokenFields) -> Self {
        Self {
            user_id: token.user.id,
            user_name: token.user.name,
            project: token.project.map(|p| ScopedProject {
                id: p.id,
                name: p.name,
            }),
            roles: token.roles.into_iter().map(|r| r.name).collect(),
            expires_at: token.expires_at,
            application_credential: token.application_credential.is_some(),
            trust_scoped: token.trust.is_some(),
        }
    }
}

/// Asks Keystone what `token` stands for.
///
/// Returns `None` when Keystone does not know the token (404: invalid, expired
/// or revoked).
///
/// # Errors
/// Keystone cannot be reached or refuses the service's own request (its
/// credentials, or a missing `service`/`admin` role). The error never holds the
/// caller's token, even where Keystone's message repeats it.
pub async fn validate_token(
    session: &Session,
    token: &SecretString,
) -> Result<Option<ValidatedToken>, OpenStackError> {
    let call = Call::new(
        Service::Identity,
        "validate_token",
        Method::GET,
        "/v3/auth/tokens",
    )
    // The catalog is large and of no use here.
    .query(vec![("nocatalog".to_owned(), "1".to_owned())])
    .subject_token(token.clone());
    match session.send(&call).await {
        Ok(reply) => decode::<Body>(&call, &reply).map(|body| Some(body.token.into())),
        Err(error) if error.kind == ErrorKind::NotFound => Ok(None),
        // The session has scrubbed the token from the error (and from the log
        // lines of its retries).
        Err(error) => Err(error),
    }
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;

    #[test]
    fn a_token_body_gives_its_user_project_roles_and_kind() {
        let body: Body = serde_json::from_value(json!({"token": {
            "methods": ["application_credential"],
            "user": {"id": "u1", "name": "demo", "domain": {"id": "default"}},
            "project": {"id": "p1", "name": "demo", "domain": {"id": "default"}},
            "roles": [{"id": "r1", "name": "member"}, {"id": "r2", "name": "reader"}],
            "expires_at": "2026-12-01T10:00:00.000000Z",
            "application_credential": {"id": "ac", "name": "ci", "restricted": true}
        }}))
        .unwrap();
        let token = ValidatedToken::from(body.token);
        assert_eq!(token.user_id, "u1");
        assert_eq!(
            token.project,
            Some(ScopedProject {
                id: "p1".into(),
                name: "demo".into()
            })
        );
        assert_eq!(token.roles, ["member", "reader"]);
        assert!(token.application_credential && !token.trust_scoped);
    }

    #[test]
    fn an_unscoped_trust_token_has_no_project_and_is_flagged() {
        let body: Body = serde_json::from_value(json!({"token": {
            "user": {"id": "u1", "name": "svc"},
            "expires_at": "2026-12-01T10:00:00Z",
            "OS-TRUST:trust": {"id": "t1", "impersonation": true}
        }}))
        .unwrap();
        let token = ValidatedToken::from(body.token);
        assert_eq!(token.project, None);
        assert!(token.roles.is_empty());
        assert!(token.trust_scoped && !token.application_credential);
    }
}
