//! The write rules of Nova's and Cinder's default policies: which simulated
//! operations change something, and the policy their refusal names. A caller
//! writes with `admin`, or with `member` in the resource's project (Nova's
//! `project_member_or_admin`, Cinder's `xena_system_admin_or_project_member`);
//! a token with only `reader` gets 403 "Policy doesn't allow <policy> to be
//! performed." (both services' `PolicyNotAuthorized`). The services check
//! after finding the resource, so another project's resource stays a 404.
//! Glance's refusals name an action instead (`glance`). Plain data.

use axum::http::StatusCode;

use super::{state::Fail, tenancy::Caller};

/// The Nova policy a write operation is checked against (nova/policies).
pub(crate) fn nova_policy(operation: &str) -> Option<&'static str> {
    Some(match operation {
        "nova.create_server" => "os_compute_api:servers:create",
        "nova.update_server" => "os_compute_api:servers:update",
        "nova.delete_server" => "os_compute_api:servers:delete",
        "nova.create_image" => "os_compute_api:servers:create_image",
        "nova.start_server" => "os_compute_api:servers:start",
        "nova.stop_server" => "os_compute_api:servers:stop",
        "nova.replace_tags" => "os_compute_api:os-server-tags:update_all",
        "nova.delete_all_tags" => "os_compute_api:os-server-tags:delete_all",
        "nova.add_tag" => "os_compute_api:os-server-tags:update",
        "nova.delete_tag" => "os_compute_api:os-server-tags:delete",
        "nova.update_metadata" => "os_compute_api:server-metadata:create",
        "nova.replace_metadata" => "os_compute_api:server-metadata:update_all",
        "nova.set_metadata_item" => "os_compute_api:server-metadata:update",
        "nova.delete_metadata_item" => "os_compute_api:server-metadata:delete",
        "nova.attach_volume" => "os_compute_api:os-volumes-attachments:create",
        "nova.update_volume_attachment" => "os_compute_api:os-volumes-attachments:update",
        "nova.detach_volume" => "os_compute_api:os-volumes-attachments:delete",
        _ => return None,
    })
}

/// The Cinder policy a write operation is checked against (cinder/policies).
pub(crate) fn cinder_policy(operation: &str) -> Option<&'static str> {
    Some(match operation {
        "cinder.create_volume" => "volume:create",
        "cinder.update_volume" => "volume:update",
        "cinder.delete_volume" => "volume:delete",
        "cinder.create_snapshot" => "volume:create_snapshot",
        "cinder.update_snapshot" => "volume:update_snapshot",
        "cinder.delete_snapshot" => "volume:delete_snapshot",
        "cinder.update_snapshot_metadata" => "volume:update_snapshot_metadata",
        "cinder.create_group" | "cinder.create_group_from_src" => "group:create",
        "cinder.update_group" => "group:update",
        "cinder.group_action" => "group:delete",
        "cinder.create_group_snapshot" => "group:create_group_snapshot",
        "cinder.delete_group_snapshot" => "group:delete_group_snapshot",
        _ => return None,
    })
}

/// The 403 for a write by a caller without `member` or `admin`. Called once
/// the target is known to exist in a project the caller reads, which is
/// then its own (or it is an admin).
pub(crate) fn refuse(caller: &Caller, policy: Option<&str>) -> Option<Fail> {
    let policy = policy?;
    (!caller.may_write(&caller.project_id)).then(|| {
        Fail::new(
            StatusCode::FORBIDDEN,
            format!("Policy doesn't allow {policy} to be performed."),
        )
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::roles::{Role, Roles};

    fn caller(role: Role) -> Caller {
        Caller {
            project_id: "p".into(),
            roles: Roles::effective([role]),
            ..Caller::default()
        }
    }

    #[test]
    fn readers_are_refused_writes_by_the_policy_that_names_them() {
        let fail = refuse(&caller(Role::Reader), nova_policy("nova.create_image")).unwrap();
        assert_eq!(fail.status, StatusCode::FORBIDDEN);
        assert_eq!(
            fail.message,
            "Policy doesn't allow os_compute_api:servers:create_image to be performed."
        );
        let fail = refuse(&caller(Role::Reader), cinder_policy("cinder.create_volume")).unwrap();
        assert_eq!(
            fail.message,
            "Policy doesn't allow volume:create to be performed."
        );
    }

    #[test]
    fn members_and_admins_write_and_reads_are_never_refused() {
        assert!(refuse(&caller(Role::Member), nova_policy("nova.delete_server")).is_none());
        assert!(refuse(&caller(Role::Admin), cinder_policy("cinder.delete_volume")).is_none());
        assert!(refuse(&caller(Role::Reader), nova_policy("nova.get_server")).is_none());
        assert!(refuse(&caller(Role::Reader), cinder_policy("cinder.list_volumes")).is_none());
    }
}
