//! What a caller's roles allow, as OpenStack's default roles mean them:
//! `reader` reads, `member` (and `manager`) also write, `admin` does anything
//! in any project. Role names compare without case, as oslo.policy's
//! `role:` check does.

/// What an operation needs.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub enum Permission {
    /// Read the caller's project.
    Read,
    /// Change the caller's project.
    Write,
    /// Act on any project, or on what no project owns (the orphan finder).
    Admin,
}

impl Permission {
    /// The roles that grant it, for messages.
    pub fn roles(self) -> &'static str {
        match self {
            Self::Read => "reader, member, manager or admin",
            Self::Write => "member, manager or admin",
            Self::Admin => "admin",
        }
    }
}

/// The role names a token carries.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct Roles(Vec<String>);

impl Roles {
    /// Roles from their names.
    pub fn new(names: impl IntoIterator<Item = impl Into<String>>) -> Self {
        Self(names.into_iter().map(Into::into).collect())
    }

    /// The role names, as Keystone gave them.
    pub fn names(&self) -> &[String] {
        &self.0
    }

    fn has(&self, role: &str) -> bool {
        self.0.iter().any(|r| r.eq_ignore_ascii_case(role))
    }

    /// The strongest permission the roles grant, if any.
    pub fn permission(&self) -> Option<Permission> {
        if self.has("admin") {
            Some(Permission::Admin)
        } else if self.has("member") || self.has("manager") {
            Some(Permission::Write)
        } else if self.has("reader") {
            Some(Permission::Read)
        } else {
            None
        }
    }

    /// Whether the roles grant `needed`.
    pub fn allow(&self, needed: Permission) -> bool {
        self.permission().is_some_and(|held| held >= needed)
    }

    /// Whether the roles include `admin`.
    pub fn is_admin(&self) -> bool {
        self.allow(Permission::Admin)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn each_default_role_grants_what_openstack_means_by_it() {
        let cases = [
            (vec!["reader"], [true, false, false]),
            (vec!["member", "reader"], [true, true, false]),
            (vec!["manager"], [true, true, false]),
            (vec!["admin", "member", "reader"], [true, true, true]),
            (vec!["admin"], [true, true, true]),
            (vec!["service"], [false, false, false]),
            (vec![], [false, false, false]),
        ];
        for (names, expected) in cases {
            let roles = Roles::new(names.clone());
            let granted =
                [Permission::Read, Permission::Write, Permission::Admin].map(|p| roles.allow(p));
            assert_eq!(granted, expected, "{names:?}");
        }
    }

    #[test]
    fn role_names_compare_without_case() {
        assert!(Roles::new(["Admin"]).is_admin());
        assert!(Roles::new(["MEMBER"]).allow(Permission::Write));
        assert!(!Roles::new(["readers"]).allow(Permission::Read));
    }
}
