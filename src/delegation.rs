//! A caller delegating its authority in a project to the service: the Keystone
//! trust a policy acts with (made when the policy is created, or renewed by a
//! later update), and the trust a one-off run goes on with once its caller's
//! token has expired.
//!
//! The trust is recorded before anything refers to it, so that one whose
//! policy is never stored is still deleted (see `store::trusts`).

use chrono::{DateTime, Utc};
use secrecy::SecretString;
use sqlx::PgPool;

use crate::{
    openstack::{ErrorKind, OpenStack, OpenStackError, TrustId, keystone::trusts::NewTrust},
    store::trusts,
};

/// Who delegates: the caller as its validated token shows it.
#[derive(Debug, Clone, Copy)]
pub struct Delegator<'a> {
    pub token: &'a SecretString,
    pub user_id: &'a str,
    /// The token came from an application credential: Keystone will not let
    /// it create a trust.
    pub application_credential: bool,
    /// The token is itself scoped to a trust, which cannot delegate further.
    pub trust_scoped: bool,
}

/// Why no trust was made.
#[derive(Debug, thiserror::Error)]
pub enum DelegationError {
    /// The caller's token cannot create a trust (application credential or trust-scoped).
    #[error("{0}")]
    TokenCannotDelegate(&'static str),
    /// Keystone refused, with its reason (e.g. the caller holds no role in the project).
    #[error("Keystone refused to delegate the caller's role to the service: {0}")]
    Refused(String),
    /// Keystone could not be asked.
    #[error("Keystone cannot be reached to delegate the caller's role: {0}")]
    Unavailable(OpenStackError),
    #[error(transparent)]
    Database(#[from] sqlx::Error),
}

/// What a policy needs: stacksnap acts for it long after the request, with a trust.
pub const APPLICATION_CREDENTIAL: &str = "a policy acts with a Keystone trust from the user who creates it, and Keystone does \
     not let a token from an application credential create one: create or update policies with a password or \
     web-login (federated) token; one-off snapshots (POST /v1/snapshots) work with any token";
/// A trust-scoped token cannot make another trust.
pub const TRUST_SCOPED: &str = "a policy acts with a Keystone trust from the user who creates it, and a token scoped \
     to a trust cannot create another: use the user's own token";

/// Creates a trust from `who` to the service user for `project_id` and records it.
///
/// # Errors
/// The token cannot delegate, Keystone refuses or cannot be reached, or the database fails.
pub async fn delegate(
    cloud: &OpenStack,
    db: &PgPool,
    who: &Delegator<'_>,
    project_id: &str,
    now: DateTime<Utc>,
) -> Result<TrustId, DelegationError> {
    if who.application_credential {
        return Err(DelegationError::TokenCannotDelegate(APPLICATION_CREDENTIAL));
    }
    if who.trust_scoped {
        return Err(DelegationError::TokenCannotDelegate(TRUST_SCOPED));
    }
    let trust = cloud
        .create_trust(
            who.token,
            &NewTrust {
                trustor_user_id: who.user_id,
                project_id,
            },
        )
        .await
        .map_err(|e| match e.kind {
            ErrorKind::Forbidden
            | ErrorKind::BadRequest
            | ErrorKind::NotFound
            | ErrorKind::Unauthorized => DelegationError::Refused(e.message),
            _ => DelegationError::Unavailable(e),
        })?;
    trusts::record(db, &trust, project_id, now).await?;
    Ok(trust)
}
