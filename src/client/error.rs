//! What can go wrong in the client, and the exit code each failure gives.

use std::process::ExitCode;

use reqwest::StatusCode;

/// How a client command ends, as the pipeline sees it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Exit {
    /// Done: the job succeeded, a fresh snapshot was reused, or the call was answered.
    Done = 0,
    /// The job failed, timed out or was cancelled; or the service could not be
    /// reached, or failed itself (a 5xx).
    Failed = 1,
    /// Bad usage (clap's code for its own usage errors too).
    Usage = 2,
    /// `--wait` ran out before the job ended.
    WaitRanOut = 3,
    /// The service (or Keystone) refused the request.
    Refused = 4,
}

impl From<Exit> for ExitCode {
    fn from(exit: Exit) -> Self {
        ExitCode::from(exit as u8)
    }
}

/// Why a client command could not do what it was asked.
#[derive(Debug, thiserror::Error)]
pub enum ClientError {
    /// The command line or its files are wrong.
    #[error("{0}")]
    Usage(String),
    /// No token, and no credentials to ask Keystone for one.
    #[error(
        "no token: set STACKSNAP_TOKEN, or OS_CLOUD (with a clouds.yaml) or OS_AUTH_URL and friends ({0})"
    )]
    NoCredentials(String),
    /// Keystone refused the credentials or could not be reached.
    #[error("Keystone gave no token: {message}")]
    Keystone { message: String, refused: bool },
    /// The HTTP client could not be set up.
    #[error("{0}")]
    Setup(String),
    /// The service could not be reached, or stopped answering.
    #[error("{0}")]
    Unreachable(String),
    /// The service answered, but not with JSON.
    #[error("{0}")]
    Decode(String),
    /// The service refused the request (4xx), or failed on it (5xx, from it or
    /// a proxy in front of it): its status and problem document.
    #[error("the service answered {status}")]
    Refused { status: StatusCode, body: String },
}

impl ClientError {
    /// The exit code this failure gives.
    pub fn exit(&self) -> Exit {
        match self {
            Self::Usage(_) | Self::NoCredentials(_) => Exit::Usage,
            // A 5xx refuses nothing: the service (or its proxy) failed, as when unreachable.
            Self::Refused { status, .. } if status.is_server_error() => Exit::Failed,
            Self::Refused { .. } | Self::Keystone { refused: true, .. } => Exit::Refused,
            Self::Keystone { refused: false, .. }
            | Self::Setup(_)
            | Self::Unreachable(_)
            | Self::Decode(_) => Exit::Failed,
        }
    }

    /// Whether asking again may well be answered: the service could not be
    /// reached, cut the answer off, or failed with a 5xx (a replica restarting,
    /// a proxy's timeout on a long poll).
    pub fn is_transient(&self) -> bool {
        match self {
            Self::Unreachable(_) => true,
            Self::Refused { status, .. } => status.is_server_error(),
            _ => false,
        }
    }

    /// What goes to stderr: the message, and for a refusal the service's problem
    /// document as it came.
    pub fn report(&self) -> String {
        match self {
            Self::Refused { status, body } if body.trim().is_empty() => {
                format!("error: the service answered {status}")
            }
            Self::Refused { body, .. } => body.trim_end().to_owned(),
            other => format!("error: {other}"),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn each_failure_has_its_exit_code() {
        let refused = ClientError::Refused {
            status: StatusCode::FORBIDDEN,
            body: "{\"status\": 403}\n".into(),
        };
        assert_eq!(refused.exit(), Exit::Refused);
        assert_eq!(refused.report(), "{\"status\": 403}");
        assert_eq!(ClientError::Usage("x".into()).exit(), Exit::Usage);
        assert_eq!(ClientError::Unreachable("x".into()).exit(), Exit::Failed);
        let keystone = |refused| ClientError::Keystone {
            message: "x".into(),
            refused,
        };
        assert_eq!(keystone(true).exit(), Exit::Refused);
        assert_eq!(keystone(false).exit(), Exit::Failed);
    }

    #[test]
    fn a_server_error_is_a_failure_not_a_refusal() {
        for status in [
            StatusCode::INTERNAL_SERVER_ERROR,
            StatusCode::BAD_GATEWAY,
            StatusCode::SERVICE_UNAVAILABLE,
            StatusCode::GATEWAY_TIMEOUT,
        ] {
            let error = ClientError::Refused {
                status,
                body: String::new(),
            };
            assert_eq!(error.exit(), Exit::Failed, "{status}");
            assert!(error.is_transient());
        }
        let unprocessable = ClientError::Refused {
            status: StatusCode::UNPROCESSABLE_ENTITY,
            body: String::new(),
        };
        assert!(!unprocessable.is_transient());
    }
}
