//! Which list filters Cinder applies, as `cinder/api/common.py` decides it:
//! from microversion 3.31 (`RESOURCE_FILTER`) a non-admin token that names a
//! filter its resource does not allow in `resource_filters.json` gets 400
//! "Invalid filters ... are found in query options." (`reject_invalid_filters`;
//! `all_tenants` alone is dropped silently); below 3.31 such filters are
//! silently removed (`remove_invalid_filter_options`), so the list answers as
//! if they had not been sent. Admin tokens may use every filter.

use super::{
    super::{http::Mv, state::Fail},
    info::RESOURCE_FILTERS,
};

/// A Cinder resource that lists with filters.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Resource {
    Volume,
    Snapshot,
    Group,
    GroupSnapshot,
}

/// From this microversion on, disallowed filters are a 400 for non-admins.
const RESOURCE_FILTER: Mv = Mv(3, 31);
/// Group snapshots read pagination and filters only from this microversion on.
pub(crate) const GROUP_SNAPSHOT_PAGINATION: Mv = Mv(3, 29);

impl Resource {
    /// The name of the resource in `resource_filters.json`.
    fn name(self) -> &'static str {
        match self {
            Self::Volume => "volume",
            Self::Snapshot => "snapshot",
            Self::Group => "group",
            Self::GroupSnapshot => "group_snapshot",
        }
    }

    /// What a non-admin may filter on: Cinder's default
    /// `etc/cinder/resource_filters.json`, the one table `GET /resource_filters`
    /// also answers with.
    fn allowed(self) -> &'static [&'static str] {
        RESOURCE_FILTERS
            .iter()
            .find(|(resource, _)| *resource == self.name())
            .map_or(&[], |(_, filters)| *filters)
    }

    /// What a non-admin may filter on below 3.31, where unknown filters are
    /// dropped (`None`: the resource checks nothing there).
    fn allowed_before_resource_filter(self) -> Option<&'static [&'static str]> {
        match self {
            // `_get_volume_filter_options` reads the same configuration file.
            Self::Volume => Some(self.allowed()),
            // `SnapshotsController._get_snapshot_filter_options`.
            Self::Snapshot => Some(&["status", "volume_id", "name", "metadata"]),
            Self::Group | Self::GroupSnapshot => None,
        }
    }

    /// Filters Cinder drops for everyone below the microversion that added them.
    fn added_later(self, mv: Mv) -> &'static [&'static str] {
        match self {
            Self::Snapshot if mv < Mv(3, 22) => &["metadata"],
            Self::Volume if mv < Mv(3, 10) => &["group_id"],
            _ => &[],
        }
    }
}

/// The query parameters that are not filters (`get_pagination_params`,
/// `get_sort_params`, and what each controller pops before filtering).
fn is_control(resource: Resource, key: &str, mv: Mv) -> bool {
    matches!(
        key,
        "marker" | "limit" | "offset" | "sort" | "sort_key" | "sort_dir"
    ) || (key == "with_count"
        && mv >= Mv(3, 45)
        && matches!(resource, Resource::Volume | Resource::Snapshot))
        || (key == "list_volume" && resource == Resource::Group)
}

/// The filters Cinder applies to a list of `resource` asked for with `query`
/// at `mv`, by an admin token or not, in the order they were sent.
///
/// # Errors
/// A 400 naming the disallowed filters (non-admin, from 3.31).
pub(crate) fn applied(
    resource: Resource,
    query: &[(String, String)],
    mv: Mv,
    admin: bool,
) -> Result<Vec<(String, String)>, Fail> {
    if resource == Resource::GroupSnapshot && mv < GROUP_SNAPSHOT_PAGINATION {
        // `filters = None` below 3.29: the list is not filtered at all.
        return Ok(Vec::new());
    }
    let mut filters: Vec<(String, String)> = query
        .iter()
        .filter(|(k, _)| !is_control(resource, k, mv))
        .filter(|(k, _)| !resource.added_later(mv).contains(&k.as_str()))
        .cloned()
        .collect();
    if admin {
        return Ok(filters);
    }
    if mv >= RESOURCE_FILTER {
        let allowed = resource.allowed();
        let mut invalid: Vec<&str> = Vec::new();
        for (k, _) in &filters {
            if !allowed.contains(&k.as_str())
                && k != "all_tenants"
                && !invalid.contains(&k.as_str())
            {
                invalid.push(k);
            }
        }
        if !invalid.is_empty() {
            return Err(Fail::bad_request(format!(
                "Invalid filters {} are found in query options.",
                invalid.join(",")
            )));
        }
        filters.retain(|(k, _)| k != "all_tenants");
    } else if let Some(allowed) = resource.allowed_before_resource_filter() {
        filters.retain(|(k, _)| allowed.contains(&k.as_str()));
    }
    Ok(filters)
}

/// The value of one applied filter.
pub(crate) fn get<'a>(filters: &'a [(String, String)], key: &str) -> Option<&'a str> {
    filters
        .iter()
        .find(|(k, _)| k == key)
        .map(|(_, v)| v.as_str())
}

#[cfg(test)]
mod tests {
    use axum::http::StatusCode;

    use super::*;

    fn q(pairs: &[(&str, &str)]) -> Vec<(String, String)> {
        pairs
            .iter()
            .map(|(k, v)| ((*k).to_owned(), (*v).to_owned()))
            .collect()
    }

    #[test]
    fn a_member_naming_a_disallowed_filter_gets_400_from_3_31() {
        let query = q(&[("group_snapshot_id", "g"), ("limit", "500")]);
        for mv in [Mv(3, 31), Mv(3, 33), Mv(3, 71)] {
            let fail = applied(Resource::Snapshot, &query, mv, false).unwrap_err();
            assert_eq!(fail.status, StatusCode::BAD_REQUEST);
            assert_eq!(
                fail.message,
                "Invalid filters group_snapshot_id are found in query options."
            );
        }
    }

    #[test]
    fn below_3_31_a_members_disallowed_filter_is_silently_dropped() {
        let query = q(&[("group_snapshot_id", "g"), ("volume_id", "v")]);
        assert_eq!(
            applied(Resource::Snapshot, &query, Mv(3, 30), false).unwrap(),
            q(&[("volume_id", "v")])
        );
    }

    #[test]
    fn an_admin_may_use_every_filter() {
        let query = q(&[("group_snapshot_id", "g"), ("all_tenants", "1")]);
        assert_eq!(
            applied(Resource::Snapshot, &query, Mv(3, 71), true).unwrap(),
            query
        );
    }

    #[test]
    fn all_tenants_is_dropped_for_a_member_without_a_400() {
        let query = q(&[("all_tenants", "1"), ("status", "available")]);
        assert_eq!(
            applied(Resource::Snapshot, &query, Mv(3, 71), false).unwrap(),
            q(&[("status", "available")])
        );
    }

    #[test]
    fn every_disallowed_filter_is_named() {
        let query = q(&[("description", "x"), ("group_snapshot_id", "g")]);
        assert_eq!(
            applied(Resource::Snapshot, &query, Mv(3, 71), false)
                .unwrap_err()
                .message,
            "Invalid filters description,group_snapshot_id are found in query options."
        );
    }

    #[test]
    fn paging_and_sorting_are_not_filters() {
        let query = q(&[
            ("limit", "2"),
            ("marker", "m"),
            ("sort", "created_at:desc"),
            ("offset", "0"),
        ]);
        assert!(
            applied(Resource::Snapshot, &query, Mv(3, 71), false)
                .unwrap()
                .is_empty()
        );
    }

    #[test]
    fn a_member_may_list_a_groups_volumes_and_a_volumes_snapshots() {
        let volumes = q(&[("group_id", "g")]);
        assert_eq!(
            applied(Resource::Volume, &volumes, Mv(3, 71), false).unwrap(),
            volumes
        );
        let snapshots = q(&[("volume_id", "v")]);
        assert_eq!(
            applied(Resource::Snapshot, &snapshots, Mv(3, 71), false).unwrap(),
            snapshots
        );
    }

    #[test]
    fn group_snapshots_take_group_id_and_no_filter_below_3_29() {
        let query = q(&[("group_id", "g")]);
        assert_eq!(
            applied(Resource::GroupSnapshot, &query, Mv(3, 71), false).unwrap(),
            query
        );
        assert!(
            applied(Resource::GroupSnapshot, &query, Mv(3, 28), true)
                .unwrap()
                .is_empty()
        );
        assert_eq!(
            applied(
                Resource::GroupSnapshot,
                &q(&[("description", "d")]),
                Mv(3, 71),
                false
            )
            .unwrap_err()
            .message,
            "Invalid filters description are found in query options."
        );
    }

    #[test]
    fn snapshot_metadata_filters_need_3_22_even_for_an_admin() {
        let query = q(&[("metadata", "{\"k\": \"v\"}")]);
        assert!(
            applied(Resource::Snapshot, &query, Mv(3, 21), true)
                .unwrap()
                .is_empty()
        );
        assert_eq!(
            applied(Resource::Snapshot, &query, Mv(3, 22), false).unwrap(),
            query
        );
    }
}
