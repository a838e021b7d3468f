//! Keystone trusts (`OS-TRUST`): a user delegates a role in a project to the
//! service user, which then acts as that user long after the user's own token
//! has expired (Heat and Karbor do the same).
//!
//! Made with the trustor's own token; deleted with the service's token (its
//! `admin` role may delete trusts others made).

use secrecy::{ExposeSecret as _, SecretString};
use serde::Deserialize;
use serde_json::json;

use crate::{
    openstack::{
        OpenStack,
        authority::TrustId,
        error::{ErrorKind, OpenStackError, classify, error_message},
    },
    redact,
};

/// The role a policy's trust delegates: enough to snapshot and delete snapshots.
pub const DELEGATED_ROLE: &str = "member";

/// What a new trust delegates.
#[derive(Debug, Clone)]
pub struct NewTrust<'a> {
    pub trustor_user_id: &'a str,
    pub project_id: &'a str,
}

#[derive(Deserialize)]
struct TrustBody {
    trust: TrustFields,
}

#[derive(Deserialize)]
struct TrustFields {
    id: String,
}

/// The Keystone v3 base URL (`.../v3`) of a cloud's auth URL.
fn identity_v3(auth_url: &str) -> String {
    let base = auth_url.trim_end_matches('/');
    if base.ends_with("/v3") {
        base.to_owned()
    } else {
        format!("{base}/v3")
    }
}

impl OpenStack {
    /// The id of the user the service logs in as: the trustee of every trust.
    ///
    /// # Errors
    /// Authentication fails, or Keystone's token names no user.
    pub async fn service_user_id(&self) -> Result<String, OpenStackError> {
        self.service_session()
            .current_token()
            .await?
            .user_id
            .ok_or_else(|| {
                OpenStackError::new(
                    ErrorKind::Decode,
                    "keystone",
                    "authenticate",
                    "the service's token names no user",
                )
            })
    }

    /// Creates a trust from the caller (whose token this is) to the service
    /// user, delegating [`DELEGATED_ROLE`] in `project_id` with impersonation.
    ///
    /// # Errors
    /// Keystone refuses (403 for a token from an application credential or a
    /// trust, or a trustor without the role in the project) or cannot be reached.
    pub async fn create_trust(
        &self,
        caller_token: &SecretString,
        trust: &NewTrust<'_>,
    ) -> Result<TrustId, OpenStackError> {
        const OPERATION: &str = "create_trust";
        let trustee = self.service_user_id().await?;
        let body = json!({"trust": {
            "trustor_user_id": trust.trustor_user_id,
            "trustee_user_id": trustee,
            "project_id": trust.project_id,
            "roles": [{"name": DELEGATED_ROLE}],
            "impersonation": true,
        }});
        let session = self.service_session();
        let url = format!(
            "{}/OS-TRUST/trusts",
            identity_v3(&session.config().auth_url)
        );
        let response = session
            .http_client()
            .post(url)
            .header("X-Auth-Token", caller_token.expose_secret())
            .json(&body)
            .send()
            .await
            .map_err(|e| transport(OPERATION, e))?;
        let (status, text, request_id) = read(response).await;
        if !(200..300).contains(&status) {
            // Keystone may quote the token it was sent.
            let text = redact::scrub(&text, [caller_token.expose_secret()]);
            return Err(refused(OPERATION, status, &text, request_id));
        }
        let parsed: TrustBody = serde_json::from_str(&text).map_err(|e| {
            OpenStackError::new(
                ErrorKind::Decode,
                "keystone",
                OPERATION,
                format!("unreadable trust: {e}"),
            )
        })?;
        Ok(TrustId::new(parsed.trust.id))
    }

    /// Deletes a trust with the service's own token. A trust already gone is deleted.
    ///
    /// # Errors
    /// Keystone refuses or cannot be reached. No error names the trust.
    pub async fn delete_trust(&self, trust: &TrustId) -> Result<(), OpenStackError> {
        const OPERATION: &str = "delete_trust";
        let session = self.service_session();
        let token = session.current_token().await?;
        let url = format!(
            "{}/OS-TRUST/trusts/{}",
            identity_v3(&session.config().auth_url),
            crate::openstack::segment(trust.expose())
        );
        let response = session
            .http_client()
            .delete(url)
            .header("X-Auth-Token", token.value.expose_secret())
            .send()
            .await
            .map_err(|e| transport(OPERATION, e))?;
        let (status, text, request_id) = read(response).await;
        match status {
            200..=299 | 404 => Ok(()),
            _ => {
                let text = redact::scrub(&text, [trust.expose(), token.value.expose_secret()]);
                Err(refused(OPERATION, status, &text, request_id))
            }
        }
    }
}

async fn read(response: reqwest::Response) -> (u16, String, Option<String>) {
    let status = response.status().as_u16();
    let request_id = response
        .headers()
        .get("x-openstack-request-id")
        .and_then(|v| v.to_str().ok())
        .map(str::to_owned);
    (
        status,
        response.text().await.unwrap_or_default(),
        request_id,
    )
}

fn transport(operation: &'static str, error: reqwest::Error) -> OpenStackError {
    let kind = if error.is_timeout() {
        ErrorKind::Timeout
    } else {
        ErrorKind::Transport
    };
    // Without the URL: it may name a trust.
    OpenStackError::new(
        kind,
        "keystone",
        operation,
        format!("cannot reach Keystone: {}", error.without_url()),
    )
}

fn refused(
    operation: &'static str,
    status: u16,
    body: &str,
    request_id: Option<String>,
) -> OpenStackError {
    let message = error_message(body);
    let mut error = OpenStackError::new(
        classify(status, &message, false),
        "keystone",
        operation,
        message,
    );
    error.status = Some(status);
    error.request_id = request_id;
    error
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_identity_base_is_found_with_or_without_v3() {
        assert_eq!(identity_v3("http://k:5000/v3/"), "http://k:5000/v3");
        assert_eq!(identity_v3("http://k/identity"), "http://k/identity/v3");
    }
}
