//! The client's token: `STACKSNAP_TOKEN`, else one Keystone gives for the
//! credentials of `OS_CLOUD` or the `OS_*` variables (found as the service
//! finds its own). The token is kept secret: never printed, never logged.

use secrecy::SecretString;

use super::error::ClientError;
use crate::openstack::{
    CloudConfig, ErrorKind, SessionOptions, config::ConfigError, keystone, session,
};

/// The variable a pipeline puts a token in.
pub const TOKEN_VAR: &str = "STACKSNAP_TOKEN";

/// The token to send: `STACKSNAP_TOKEN` when set and not empty, else Keystone's.
///
/// # Errors
/// No credentials at all, or Keystone refuses them or cannot be reached.
pub async fn token() -> Result<SecretString, ClientError> {
    if let Some(token) = std::env::var(TOKEN_VAR)
        .ok()
        .filter(|t| !t.trim().is_empty())
    {
        return Ok(SecretString::from(token.trim().to_owned()));
    }
    let config = CloudConfig::from_env().map_err(|e| match e {
        ConfigError::Missing => ClientError::NoCredentials("none are set".into()),
        other => ClientError::NoCredentials(other.to_string()),
    })?;
    from_keystone(&config).await
}

/// Asks Keystone for a token with `config`'s credentials.
///
/// # Errors
/// Keystone refuses them or cannot be reached.
pub async fn from_keystone(config: &CloudConfig) -> Result<SecretString, ClientError> {
    let http = session::http_client(config, &SessionOptions::default()).map_err(|e| {
        ClientError::Keystone {
            message: e.to_string(),
            refused: false,
        }
    })?;
    keystone::authenticate(&http, config)
        .await
        .map(|token| token.value)
        .map_err(|e| ClientError::Keystone {
            refused: matches!(
                e.kind,
                ErrorKind::Unauthorized
                    | ErrorKind::Forbidden
                    | ErrorKind::NotFound
                    | ErrorKind::BadRequest
            ),
            message: e.to_string(),
        })
}
