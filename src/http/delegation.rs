//! The HTTP edge of delegation: a policy's trust made with its creator's
//! token, and a one-off run's caller's token and trust (see `crate::delegation`).

use super::{AppState, error::ApiError, extract::Caller};
use crate::{
    delegation::{self, DelegationError, Delegator},
    openstack::TrustId,
    store::runs::RunAuthority,
};

/// The trust a policy created or renewed by `caller` in `project` acts with;
/// `None` with `--auth none` (the service's own credentials act).
///
/// # Errors
/// 403 with the reason when the token cannot delegate or Keystone refuses,
/// 503 when Keystone cannot be reached.
pub async fn policy_trust(
    state: &AppState,
    caller: &Caller,
    project: &str,
) -> Result<Option<TrustId>, ApiError> {
    let Some(identity) = &caller.identity else {
        // `--auth none`: the service's own credentials act.
        return Ok(None);
    };
    let Some(cloud) = &state.cloud else {
        return Err(ApiError::Unavailable(
            "this replica has no OpenStack credentials to make the policy's trust with".into(),
        ));
    };
    let who = Delegator {
        token: &identity.token,
        user_id: &identity.user_id,
        application_credential: identity.application_credential,
        trust_scoped: identity.trust_scoped,
    };
    delegation::delegate(cloud, &state.db, &who, project, state.clock.now())
        .await
        .map(Some)
        .map_err(to_api)
}

/// The trust a one-off run of `caller` in `project` acts with. In the
/// caller's own project, no trust is no error: the job acts with the caller's
/// token, and tracking that outlives it goes on with the service's own
/// credentials. In another project (an admin's), the caller's token would make
/// the snapshot in the caller's project: only a trust may act there, and
/// Keystone refusing one is a 403, as for a policy.
///
/// # Errors
/// For another project, as [`policy_trust`]; the database fails.
pub async fn adhoc_trust(
    state: &AppState,
    caller: &Caller,
    project: &str,
) -> Result<Option<TrustId>, ApiError> {
    if caller.identity.is_some() && caller.project_id != project {
        return policy_trust(state, caller, project).await;
    }
    match policy_trust(state, caller, project).await {
        Ok(trust) => Ok(trust),
        Err(ApiError::Database(e)) => Err(ApiError::Database(e)),
        Err(error) => {
            tracing::info!(%error, "no trust for a one-off snapshot; its caller's token acts");
            Ok(None)
        }
    }
}

/// The stored form of a one-off run's authority. The caller's token is kept
/// (until the run ends or the token expires) only where no trust could be
/// made and the token is scoped to the run's project: a trust acts as the
/// same user in the same project, and a bearer token at rest is a risk.
pub fn run_authority<'a>(
    caller: &'a Caller,
    project: &str,
    trust: Option<&'a TrustId>,
) -> RunAuthority<'a> {
    use secrecy::ExposeSecret as _;
    let token = caller
        .identity
        .as_ref()
        .filter(|_| trust.is_none() && caller.project_id == project)
        .map(|i| (i.token.expose_secret(), i.expires_at));
    RunAuthority {
        trust_id: trust.map(TrustId::expose),
        user_token: token,
    }
}

fn to_api(error: DelegationError) -> ApiError {
    match error {
        DelegationError::TokenCannotDelegate(why) => ApiError::Forbidden(why.to_owned()),
        DelegationError::Refused(_) => ApiError::Forbidden(error.to_string()),
        DelegationError::Unavailable(e) => ApiError::IdentityUnavailable(e),
        DelegationError::Database(e) => ApiError::Database(e),
    }
}
