//! Whose authority a call to the cloud carries: the service's own credentials,
//! a Keystone trust a user delegated to the service, or a user's own token.

use std::fmt;

use chrono::{DateTime, Utc};
use secrecy::{ExposeSecret as _, SecretString};

/// A Keystone trust id. Secret like a token: whoever holds it and the
/// trustee's password acts as the trustor, so it never reaches a log, an error
/// or an API body.
#[derive(Clone)]
pub struct TrustId(SecretString);

impl TrustId {
    /// Wraps a trust id read from Keystone or the database.
    pub fn new(id: impl Into<String>) -> Self {
        Self(SecretString::from(id.into()))
    }

    /// The id itself, for Keystone requests and the database only.
    pub fn expose(&self) -> &str {
        self.0.expose_secret()
    }
}

impl fmt::Debug for TrustId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("TrustId([redacted])")
    }
}

impl PartialEq for TrustId {
    fn eq(&self, other: &Self) -> bool {
        self.expose() == other.expose()
    }
}

/// Who a session acts as.
#[derive(Clone, Debug)]
pub enum Authority {
    /// The service's own credentials (the configured cloud).
    Service,
    /// The service user scoped to a trust: with impersonation it acts as the
    /// trustor, in the trust's project.
    Trust(TrustId),
    /// A caller's own token, used as it is: it cannot be renewed, so calls
    /// fail as unauthorised once it has expired.
    UserToken {
        token: SecretString,
        project_id: String,
        expires_at: DateTime<Utc>,
    },
}

impl Authority {
    /// Whether calls with this authority act for a tenant rather than the service.
    pub fn is_delegated(&self) -> bool {
        !matches!(self, Self::Service)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn trust_ids_never_print() {
        let id = TrustId::new("0123abcd");
        assert_eq!(format!("{id:?}"), "TrustId([redacted])");
        let authority = Authority::Trust(id.clone());
        assert!(!format!("{authority:?}").contains("0123abcd"));
        let user = Authority::UserToken {
            token: SecretString::from("gAAAAtoken".to_owned()),
            project_id: "p".into(),
            expires_at: Utc::now(),
        };
        assert!(!format!("{user:?}").contains("gAAAAtoken"));
        assert_eq!(id.expose(), "0123abcd");
    }
}
