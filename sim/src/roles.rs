//! Keystone's default roles and the implications `keystone-manage bootstrap`
//! creates (keystone/cmd/bootstrap.py): `admin` implies `manager`, which
//! implies `member`, which implies `reader`; `service` implies nothing.
//! Tokens, trusts and the services' policies all read the effective set (the
//! direct roles with everything they imply). Plain data; no HTTP.

use std::collections::BTreeSet;

use serde::{Deserialize, Serialize};

/// One of the roles `keystone-manage bootstrap` creates.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Role {
    Admin,
    Manager,
    Member,
    Reader,
    Service,
}

impl Role {
    /// Every role, in the order tokens list them.
    pub const ALL: [Self; 5] = [
        Self::Admin,
        Self::Manager,
        Self::Member,
        Self::Reader,
        Self::Service,
    ];

    /// The role's name, as tokens and policies spell it.
    pub fn name(self) -> &'static str {
        match self {
            Self::Admin => "admin",
            Self::Manager => "manager",
            Self::Member => "member",
            Self::Reader => "reader",
            Self::Service => "service",
        }
    }

    /// The role named `name` (Keystone's role names are case-sensitive).
    pub fn from_name(name: &str) -> Option<Self> {
        Self::ALL.into_iter().find(|r| r.name() == name)
    }

    /// The role this one implies directly.
    fn implies(self) -> Option<Self> {
        match self {
            Self::Admin => Some(Self::Manager),
            Self::Manager => Some(Self::Member),
            Self::Member => Some(Self::Reader),
            Self::Reader | Self::Service => None,
        }
    }
}

/// A set of effective roles (direct ones and all they imply).
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub(crate) struct Roles(BTreeSet<Role>);

impl Roles {
    /// The effective roles of `direct` assignments.
    pub(crate) fn effective(direct: impl IntoIterator<Item = Role>) -> Self {
        let mut set = BTreeSet::new();
        for role in direct {
            let mut next = Some(role);
            while let Some(r) = next {
                set.insert(r);
                next = r.implies();
            }
        }
        Self(set)
    }

    pub(crate) fn has(&self, role: Role) -> bool {
        self.0.contains(&role)
    }

    pub(crate) fn is_empty(&self) -> bool {
        self.0.is_empty()
    }

    /// Whether every role of `other` is in this set.
    pub(crate) fn covers(&self, other: &Self) -> bool {
        other.0.is_subset(&self.0)
    }

    pub(crate) fn iter(&self) -> impl Iterator<Item = Role> + '_ {
        self.0.iter().copied()
    }

    /// The names, comma-joined (Nova's `boot_roles`).
    pub(crate) fn joined(&self) -> String {
        self.iter().map(Role::name).collect::<Vec<_>>().join(",")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn names(roles: &Roles) -> Vec<&'static str> {
        roles.iter().map(Role::name).collect()
    }

    #[test]
    fn admin_implies_manager_member_and_reader_but_not_service() {
        assert_eq!(
            names(&Roles::effective([Role::Admin])),
            ["admin", "manager", "member", "reader"]
        );
        assert_eq!(
            names(&Roles::effective([Role::Admin, Role::Service])),
            ["admin", "manager", "member", "reader", "service"]
        );
        assert_eq!(
            names(&Roles::effective([Role::Member])),
            ["member", "reader"]
        );
        assert_eq!(names(&Roles::effective([Role::Reader])), ["reader"]);
        assert!(Roles::effective([]).is_empty());
    }

    #[test]
    fn a_set_covers_the_roles_its_members_imply() {
        let member = Roles::effective([Role::Member]);
        assert!(Roles::effective([Role::Admin]).covers(&member));
        assert!(!Roles::effective([Role::Reader]).covers(&member));
        assert!(!Roles::effective([Role::Service]).covers(&member));
    }

    #[test]
    fn roles_are_found_by_their_exact_name() {
        assert_eq!(Role::from_name("member"), Some(Role::Member));
        assert_eq!(Role::from_name("Member"), None);
        assert_eq!(Roles::effective([Role::Member]).joined(), "member,reader");
    }
}
