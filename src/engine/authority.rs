//! Which authority a piece of work acts with, from what is stored for it.
//!
//! A one-off run acts with its caller's token while the token has some life
//! left, then with the trust made at submission, then with the service's own
//! credentials (its `admin` role reads any project's images and snapshots).
//! A policy's work acts with the policy's current trust (a renewed one
//! replaces a broken one), else with the trust its run was made with.

use chrono::{DateTime, TimeDelta, Utc};

use crate::{openstack::Authority, store::trusts::StoredAuthority};

/// A caller's token is not used for a step that could outlast it.
const TOKEN_MARGIN: TimeDelta = TimeDelta::minutes(2);

/// The authority for a job or a target look-up of a run.
pub fn for_work(stored: &StoredAuthority, now: DateTime<Utc>) -> Authority {
    if let Some((token, expires_at)) = &stored.user_token
        && *expires_at - TOKEN_MARGIN > now
    {
        return Authority::UserToken {
            token: token.clone(),
            project_id: stored.project_id.clone(),
            expires_at: *expires_at,
        };
    }
    stored
        .policy_trust
        .as_ref()
        .or(stored.run_trust.as_ref())
        .map_or(Authority::Service, |trust| Authority::Trust(trust.clone()))
}

/// Whether an error says Keystone refuses a delegated authority for good (the
/// trust is gone, or its trustor lost a delegated role), as opposed to
/// Keystone being unreachable for a while.
pub fn is_refusal(error: &crate::openstack::OpenStackError) -> bool {
    use crate::openstack::ErrorKind;
    error.service == "keystone"
        && matches!(
            error.kind,
            ErrorKind::Unauthorized | ErrorKind::Forbidden | ErrorKind::NotFound
        )
}

/// Logs in with `authority` when it is a trust, to learn at once whether
/// Keystone still honours it. Any other failure is left to the step itself,
/// which retries it as it retries every unavailable cloud; and so is a
/// refusal while the service cannot log in with its own password either (a
/// rotated password or a wrong auth URL refuses every trust: an outage of the
/// service, not the policies' fault).
///
/// # Errors
/// Keystone refuses the trust.
pub async fn check(
    cloud: &crate::openstack::OpenStack,
    authority: &Authority,
) -> Result<(), crate::openstack::OpenStackError> {
    if !matches!(authority, Authority::Trust(_)) {
        return Ok(());
    }
    match cloud.session().current_token().await {
        Err(error) if is_refusal(&error) && service_logs_in(cloud).await => Err(error),
        Err(error) if is_refusal(&error) => {
            tracing::error!(error = %error, "the service cannot log in with its own credentials; no policy is blamed");
            Ok(())
        }
        _ => Ok(()),
    }
}

/// [`check`] with a fresh login: after a failed step, a cached token may hide
/// a trust Keystone no longer honours.
///
/// # Errors
/// Keystone refuses the trust.
pub async fn recheck(
    cloud: &crate::openstack::OpenStack,
    authority: &Authority,
) -> Result<(), crate::openstack::OpenStackError> {
    if matches!(authority, Authority::Trust(_)) {
        cloud.session().forget_token().await;
    }
    check(cloud, authority).await
}

/// Whether the service logs in with its own credentials right now (not cached).
async fn service_logs_in(cloud: &crate::openstack::OpenStack) -> bool {
    let service = cloud.service_session();
    crate::openstack::keystone::authenticate(service.http_client(), service.config())
        .await
        .is_ok()
}

/// The error of a policy with no trust while the service authenticates its
/// callers: it was made under `--auth none` (or before trusts), and acting
/// with the service's own credentials would reach beyond its project.
pub fn trust_missing(policy_name: Option<&str>) -> String {
    format!(
        "the policy {:?} holds no Keystone trust (it was made without authentication), and the \
         service acts for a project only with a trust from one of its users; a project member \
         gives it one by updating the policy (PATCH)",
        policy_name.unwrap_or("(deleted)")
    )
}

/// The error of a policy whose trust Keystone refuses: it names the policy,
/// never the trust.
pub fn trust_refused(
    policy_name: Option<&str>,
    error: &crate::openstack::OpenStackError,
) -> String {
    format!(
        "the policy {:?} can no longer act in its project: Keystone refused the authority delegated \
         when it was created (HTTP {}: {}); the user who made it may have lost their role in the \
         project or been removed. A project member renews it by updating the policy (PATCH)",
        policy_name.unwrap_or("(deleted)"),
        error
            .status
            .map_or_else(|| "-".to_owned(), |s| s.to_string()),
        error.message
    )
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::openstack::TrustId;

    fn at(minutes: i64) -> DateTime<Utc> {
        DateTime::UNIX_EPOCH + TimeDelta::minutes(minutes)
    }

    fn stored(
        policy: Option<&str>,
        run: Option<&str>,
        token_until: Option<i64>,
    ) -> StoredAuthority {
        StoredAuthority {
            policy_trust: policy.map(TrustId::new),
            run_trust: run.map(TrustId::new),
            user_token: token_until.map(|m| ("tok".to_owned().into(), at(m))),
            project_id: "p".into(),
            policy_name: None,
            delegated: true,
        }
    }

    fn trust_of(authority: &Authority) -> Option<&str> {
        match authority {
            Authority::Trust(t) => Some(t.expose()),
            _ => None,
        }
    }

    #[test]
    fn a_callers_token_is_used_while_it_has_life_left() {
        let s = stored(None, Some("adhoc"), Some(60));
        assert!(matches!(for_work(&s, at(0)), Authority::UserToken { .. }));
        assert_eq!(trust_of(&for_work(&s, at(58))), Some("adhoc"));
        assert_eq!(trust_of(&for_work(&s, at(90))), Some("adhoc"));
    }

    #[test]
    fn without_token_or_trust_the_service_acts() {
        assert!(matches!(
            for_work(&stored(None, None, Some(1)), at(0)),
            Authority::Service
        ));
    }

    #[test]
    fn the_policys_current_trust_wins_over_the_runs() {
        let s = stored(Some("renewed"), Some("old"), None);
        assert_eq!(trust_of(&for_work(&s, at(0))), Some("renewed"));
        let deleted_policy = stored(None, Some("old"), None);
        assert_eq!(trust_of(&for_work(&deleted_policy, at(0))), Some("old"));
    }
}
